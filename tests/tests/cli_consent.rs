//! Issue 17's scripted contract through the real `troth` binary and a real
//! relay on a loopback port: review dates are capped, an agreement lapses
//! after its review date, a check-in request over the signed limit is
//! refused with one calm line, answers that are not compliance are normal
//! answers, and exporting a certificate is an event both partners see.

use troth_tests::cli::{assert_one_line, paired_couple};

fn status_of(p: &troth_tests::cli::Person, id: &str) -> serde_json::Value {
    let v = p.json(&["agreement", "list"]);
    v["agreements"]
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
        .expect("agreement listed")
}

fn timeline_words(p: &troth_tests::cli::Person) -> Vec<String> {
    p.json(&["timeline"])["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["what"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_consent_contract_holds_end_to_end() {
    let (_relay, mut a, mut b) = paired_couple();
    a.now = Some("2027-01-01".into());
    b.now = Some("2027-01-01".into());

    // A review date past the cap is refused before anything is sent, with the cap in the words.
    let out = a.fails(&[
        "agreement",
        "propose",
        "--template",
        "whereabouts",
        "--review-in",
        "400d",
    ]);
    let err = assert_one_line(&out, 1);
    assert!(err.contains("at most 90 days ahead"), "{err}");
    assert_eq!(
        a.json(&["agreement", "list"])["agreements"],
        serde_json::json!([])
    );

    // The whereabouts template carries its limit; both sign; it is in force.
    let id = a.propose("whereabouts", ["--review-in", "30d"]);
    let show = b.json(&["agreement", "show", &id[..8]]);
    assert_eq!(
        show["versions"][0]["rules"][0]["limits"]["checkins_per_day"],
        3
    );
    assert!(
        b.ok(&["agreement", "show", &id[..8]])
            .contains("limit on asking: at most 3 check-in requests a day")
    );
    b.ok(&["agreement", "sign", &id[..8]]);
    assert_eq!(status_of(&a, &id)["status"], "in_force");

    // Three requests a day are within what they agreed; the fourth is refused.
    for _ in 0..3 {
        a.ok(&["request-checkin", "Could you check in?"]);
    }
    let before = a.json(&["status"])["events"].clone();
    let out = a.fails(&["request-checkin", "One more?"]);
    let err = assert_one_line(&out, 1);
    assert!(
        err.contains("at most 3 check-in requests a day") && err.contains("wasn't sent"),
        "{err}"
    );
    assert_eq!(
        a.json(&["status"])["events"],
        before,
        "nothing was appended"
    );

    // B answers one request another way: a normal answer, shown neutrally.
    let open = b.json(&["status"])["open_requests"].clone();
    assert_eq!(open.as_array().map(Vec::len), Some(3));
    let ans = b.json(&["answer", "therapist"]);
    assert_eq!(ans["answer"], "therapist");
    assert_eq!(ans["words"], "Let's bring this to our therapist");
    for p in [&a, &b] {
        assert!(
            timeline_words(p)
                .iter()
                .any(|w| w == "answered: “Let's bring this to our therapist”")
        );
    }
    assert_eq!(
        b.json(&["status"])["open_requests"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // Exporting a certificate is recorded for both before the file is written.
    let cert = a.scratch("cert.txt");
    a.ok(&[
        "agreement",
        "export",
        &id[..8],
        "--out",
        cert.to_str().expect("path"),
    ]);
    assert!(cert.exists());
    assert!(
        timeline_words(&b)
            .iter()
            .any(|w| w == "exported a certificate of “Knowing where you are”, version 1"),
        "{:?}",
        timeline_words(&b)
    );

    // On the review day it is still in force; the day after, it has lapsed on both sides.
    a.now = Some("2027-01-31".into());
    assert_eq!(status_of(&a, &id)["status"], "in_force");
    a.now = Some("2027-02-01".into());
    b.now = Some("2027-02-01".into());
    for p in [&a, &b] {
        let s = status_of(p, &id);
        assert_eq!(s["status"], "lapsed", "{s}");
        assert_eq!(s["in_force_version"], serde_json::Value::Null);
        assert_eq!(s["lapsed_version"], 1);
        assert_eq!(p.json(&["status"])["lapsed"], serde_json::json!([id]));
        assert!(
            p.ok(&["agreement", "list"])
                .contains("lapsed — look at it together")
        );
    }
    let st = b.json(&["agreement", "status", cert.to_str().expect("path")]);
    assert_eq!(st["status"], "lapsed", "{st}");
    // A lapsed agreement no longer governs asking: its limit is gone with it
    // (what applies without an agreement is a few requests a day).
    a.ok(&[
        "request-checkin",
        "Could we look at our agreement together?",
    ]);
}

#[test]
fn roles_are_confirmed_by_both_before_anything_is_proposed() {
    let relay = troth_tests::cli::Relay::start();
    let a = troth_tests::cli::Person::new();
    let b = troth_tests::cli::Person::new();
    a.ok(&["init"]);
    b.ok(&["init"]);
    let (a_out, b_out) = troth_tests::cli::pair_unconfirmed(&a, &b, &relay.url);
    assert!(a_out.contains("You set the conditions"), "{a_out}");
    assert!(
        b_out.contains("Your partner sets the conditions"),
        "{b_out}"
    );

    let propose = ["agreement", "propose", "--template", "whereabouts"];
    let err = assert_one_line(&a.fails(&propose), 1);
    assert!(err.contains("confirmed who sets the conditions"), "{err}");
    let r = a.json(&["roles"]);
    assert_eq!(r["agreed"], false);
    assert_eq!(r["sets_conditions"], "leading");

    // A confirms; B answers "No — we should talk about this first".
    a.ok(&["roles", "confirm"]);
    let r = b.json(&[
        "roles",
        "decline",
        "--comment",
        "Can we talk with our therapist first?",
    ]);
    assert_eq!(r["agreed"], false);
    assert_eq!(r["declined"]["by"], "rebuilding");
    let shown = a.ok(&["roles"]);
    assert!(
        shown.contains("Your partner answered “No — we should talk about this first”: Can we talk with our therapist first?"),
        "{shown}"
    );
    assert_one_line(&a.fails(&propose), 1);

    // Once both confirmed, proposing works.
    let r = b.json(&["roles", "confirm"]);
    assert_eq!(r["agreed"], true);
    assert_eq!(
        r["confirmed_by"],
        serde_json::json!(["leading", "rebuilding"])
    );
    assert_eq!(a.json(&["status"])["roles_confirmed"], true);
    a.ok(&propose);
}

#[test]
fn forgetting_the_space_on_one_device_sends_nothing_and_the_partner_keeps_it() {
    let (_relay, a, b) = paired_couple();
    let before = a.json(&["status"])["events"].clone();
    let out = b.fails(&["forget-space"]);
    let err = assert_one_line(&out, 1);
    assert!(err.contains("troth forget-space --yes"), "{err}");
    assert!(
        b.home.join("space.age").exists(),
        "nothing happens without --yes"
    );
    let v = b.json(&["forget-space", "--yes"]);
    assert_eq!(v["sent"], false);
    assert!(!b.home.join("space.age").exists());
    assert!(b.home.join("key.age").exists(), "the keys stay");
    // Nothing was sent: A's log has no new event, no close, and goes on.
    let s = a.json(&["status"]);
    assert_eq!(s["events"], before);
    assert!(
        timeline_words(&a)
            .iter()
            .all(|w| !w.contains("closed the space"))
    );
    a.ok(&["checkin", "still here"]);
}

#[test]
fn ending_the_roles_takes_both_of_them() {
    let (_relay, a, b) = paired_couple();
    let r = a.json(&["roles", "end"]);
    assert_eq!(r["agreed"], true, "one partner's wish is not enough");
    assert_eq!(r["end_requested_by"], serde_json::json!(["leading"]));
    let r = b.json(&["roles", "end"]);
    assert_eq!(r["agreed"], false);
    assert_eq!(r["ended"], true);
    assert!(a.ok(&["roles"]).contains("nobody sets the conditions now"));
    let err = assert_one_line(
        &a.fails(&["agreement", "propose", "--template", "whereabouts"]),
        1,
    );
    assert!(err.contains("confirmed who sets the conditions"), "{err}");
}

#[test]
fn swapping_the_roles_takes_both_and_each_rule_keeps_asking_the_same_person() {
    let (_relay, a, b) = paired_couple();
    let id = a.propose("whereabouts", ["--review-in", "30d"]);
    b.show_and_sign(&id);
    assert_eq!(status_of(&a, &id)["status"], "in_force");

    // One partner's wish changes nothing; the other is asked in plain words.
    let r = a.json(&["roles", "swap"]);
    assert_eq!(r["sets_conditions"], "leading");
    assert_eq!(r["swap_requested_by"], serde_json::json!(["leading"]));
    let out = assert_one_line(&a.fails(&["roles", "swap"]), 1);
    assert!(out.contains("already asked to swap"), "{out}");
    let shown = b.ok(&["roles"]);
    assert!(
        shown.contains("Your partner asked to swap the roles"),
        "{shown}"
    );
    // "Talk first" sets it aside; asked again, and agreed by both, they swap.
    let r = b.json(&["roles", "decline", "--comment", "Sunday, with Dr. Lee?"]);
    assert_eq!(r["swap_requested_by"], serde_json::json!([]));
    assert_eq!(r["sets_conditions"], "leading");
    a.ok(&["roles", "swap"]);
    let out = b.ok(&["roles", "swap"]);
    assert!(
        out.contains("You set the conditions; your partner is rebuilding trust."),
        "{out}"
    );
    assert!(
        out.contains("each rule still asks the same person"),
        "{out}"
    );
    let r = a.json(&["roles"]);
    assert_eq!(r["sets_conditions"], "rebuilding");
    assert_eq!(r["swapped"], true);
    assert_eq!(r["agreed"], true);
    assert!(
        a.ok(&["status"])
            .contains("You are the partner rebuilding trust.")
    );
    assert_eq!(a.json(&["status"])["sets_conditions"], "rebuilding");
    assert!(
        timeline_words(&a)
            .iter()
            .any(|w| w.contains("agreed to swap the roles"))
    );

    // The agreement in force stays in force and asks B, as both signed;
    // only the words for B changed.
    assert_eq!(status_of(&a, &id)["status"], "in_force");
    let show = a.json(&["agreement", "show", &id[..8]]);
    assert_eq!(show["versions"][0]["rules"][0]["asks_of"], "rebuilding");
    let words = a.ok(&["agreement", "show", &id[..8]]);
    assert!(
        words.contains("asks of: your partner, the partner who sets the conditions"),
        "{words}"
    );

    // A template proposed now asks the partner rebuilding trust: A.
    let phone = b.propose("phone", ["--review-in", "30d"]);
    let show = a.json(&["agreement", "show", &phone[..8]]);
    assert_eq!(show["versions"][0]["rules"][0]["asks_of"], "leading");
}

#[test]
fn asking_without_an_agreement_is_kept_to_a_few_requests() {
    let (_relay, a, b) = paired_couple();
    for _ in 0..3 {
        a.ok(&["request-checkin", "Could you check in?"]);
    }
    let err = assert_one_line(&a.fails(&["request-checkin", "And now?"]), 1);
    assert!(err.contains("No agreement about this is in force"), "{err}");
    assert!(err.contains("at most 3 check-in requests a day"), "{err}");
    a.ok(&["phone", "ask"]);
    let err = assert_one_line(&a.fails(&["phone", "ask"]), 1);
    assert!(
        err.contains("at most 1 request to see the phone a week"),
        "{err}"
    );
    // Nothing of the refused ones was sent; B sees three requests waiting.
    assert_eq!(
        b.json(&["status"])["open_requests"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
}
