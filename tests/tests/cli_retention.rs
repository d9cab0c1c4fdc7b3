//! Forgetting on schedule (issue 17, item 8) through the real `troth`
//! binary and a real relay on a loopback port: `troth retention` shows and
//! changes how long things are kept (shortening alone, lengthening by
//! both); every sync rotates keys monthly (one rotation even when both
//! partners act after the period) and forgets what ended more than the
//! retention period ago, on both devices, while agreements in force stay.

use troth_tests::cli::{Person, Relay, assert_one_line, pair};

fn words(p: &Person) -> Vec<String> {
    p.json(&["timeline"])["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["what"].as_str().map(str::to_owned))
        .collect()
}

fn rotations(p: &Person) -> usize {
    words(p)
        .iter()
        .filter(|w| w.contains("as scheduled"))
        .count()
}

fn at(p: &mut Person, day: &str) {
    p.now = Some(day.into());
}

#[test]
fn retention_is_chosen_together_and_old_epochs_are_forgotten_on_schedule() {
    let relay = Relay::start();
    let mut a = Person::new();
    let mut b = Person::new();
    at(&mut a, "2027-01-01");
    at(&mut b, "2027-01-01");
    a.ok(&["init"]);
    b.ok(&["init"]);
    pair(&a, &b, &relay);

    // The default, in words and for scripts.
    let r = a.json(&["retention"]);
    assert_eq!(r["days"], 183, "{r}");
    assert_eq!(r["epoch"], 0);
    assert_eq!(r["rotation_days"], 30);
    assert!(
        a.ok(&["retention"])
            .contains("Things are kept for 183 days.")
    );

    // Shortening is one partner's choice.
    b.ok(&["retention", "shorten", "30"]);
    let r = a.json(&["retention"]);
    assert_eq!(r["days"], 30, "{r}");
    assert_eq!(r["changed"]["by"], "rebuilding");
    // Lengthening takes both: a proposal, then the other's agreement.
    a.ok(&["retention", "propose", "60"]);
    assert_eq!(b.json(&["retention"])["days"], 30);
    assert_eq!(b.json(&["retention"])["proposal"]["days"], 60);
    assert_one_line(&a.fails(&["retention", "agree"]), 1);
    assert!(b.ok(&["retention"]).contains("troth retention agree"));
    b.ok(&["retention", "agree"]);
    assert_eq!(a.json(&["retention"])["days"], 60);
    // Out of range, or the wrong way, is one calm line and nothing is sent.
    let err = assert_one_line(&a.fails(&["retention", "shorten", "7"]), 1);
    assert!(err.contains("between 30 and 3650 days"), "{err}");
    assert_one_line(&a.fails(&["retention", "shorten", "90"]), 1);
    a.ok(&["retention", "shorten", "30"]);

    // An agreement in force, and a check-in.
    let id = a.propose("whereabouts", ["--review-on", "2027-03-30"]);
    b.show_and_sign(&id);
    b.ok(&["checkin", "at the gym until 7", "--no-answer"]);
    assert!(words(&a).iter().any(|w| w.contains("at the gym")));

    // A month later whoever syncs first changes the key; the other's sync
    // finds it done and adds no second one.
    at(&mut b, "2027-02-01");
    at(&mut a, "2027-02-01");
    b.ok(&["sync"]);
    a.ok(&["sync"]);
    assert_eq!(a.json(&["retention"])["epoch"], 1);
    assert_eq!(rotations(&a), 1);
    assert_eq!(rotations(&b), 1);
    b.ok(&["checkin", "home by six", "--no-answer"]);

    // Epoch 0 ended on 2027-02-01; 30 days later both devices forget it.
    at(&mut a, "2027-03-04");
    at(&mut b, "2027-03-04");
    // Forgetting needs no relay: B, offline, forgets on time.
    let r = b.json(&["--offline", "retention"]);
    assert_eq!(r["forgotten_epochs"], 1, "{r}");
    assert_eq!(r["epoch"], 1, "the key change waits for the relay");
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    // `troth sync` keeps the schedule too: the second month's key change.
    assert_eq!(a.json(&["retention"])["epoch"], 2);
    assert_eq!(rotations(&b), 2);
    for p in [&a, &b] {
        let w = words(p);
        assert!(!w.iter().any(|w| w.contains("at the gym")), "{w:?}");
        assert!(w.iter().any(|w| w.contains("home by six")), "{w:?}");
        let r = p.json(&["retention"]);
        assert_eq!(r["forgotten_epochs"], 1, "{r}");
        assert!(r["forgotten_events"].as_u64().expect("n") >= 1);
        let t = p.ok(&["timeline"]);
        assert!(t.contains("forgotten as agreed"), "{t}");
        // The agreement in force keeps its words and signatures.
        let list = p.json(&["agreement", "list"]);
        let ag = list["agreements"]
            .as_array()
            .expect("list")
            .iter()
            .find(|x| x["id"] == id)
            .cloned()
            .expect("still listed");
        assert_eq!(ag["status"], "in_force", "{ag}");
    }
    // Forgetting survives a restart (the saved copy never reopens old keys).
    let t = a.ok(&["--offline", "timeline"]);
    assert!(!t.contains("at the gym"), "{t}");
    assert!(t.contains("forgotten as agreed"), "{t}");
}
