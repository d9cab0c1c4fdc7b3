//! The whole journey through the real `troth` binary and a real relay on a
//! loopback port, two key stores in temporary folders: pair, agree, keep,
//! review and renew (with the clock injected), withdraw, certificates, and a
//! therapist report.

use std::io::Read;

use troth_tests::cli::{Person, Relay, assert_one_line, pair};

fn first_id(p: &Person) -> String {
    let v = p.json(&["agreement", "list"]);
    v["agreements"][0]["id"].as_str().expect("id").to_owned()
}

fn status_of(p: &Person, id: &str) -> serde_json::Value {
    let v = p.json(&["agreement", "list"]);
    v["agreements"]
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
        .expect("agreement listed")
}

#[test]
fn pair_agree_keep_review_withdraw_and_report() {
    let relay = Relay::start();
    let mut a = Person::new(); // the partner who was hurt
    let mut b = Person::new(); // the partner rebuilding trust
    a.ok(&["init"]);
    b.ok(&["init"]);

    // Pair: both see the same safety number.
    let (a_out, b_out) = pair(&a, &b, &relay);
    let sn = |s: &str| -> String {
        s.lines()
            .find_map(|l| l.strip_prefix("Paired. Safety number: "))
            .expect("safety number line")
            .to_owned()
    };
    assert_eq!(sn(&a_out), sn(&b_out));
    let sa = a.json(&["status"]);
    let sb = b.json(&["status"]);
    assert_eq!(sa["safety_number"], sb["safety_number"]);
    assert_eq!(sa["role"], "leading");
    assert_eq!(sb["role"], "rebuilding");
    assert_eq!(sa["state_code"], sb["state_code"]);

    // Agree: A proposes from a template (and signs); B co-signs; in force on both sides.
    a.now = Some("2027-01-01".into());
    b.now = Some("2027-01-01".into());
    let id = a.propose("whereabouts", ["--review-in", "30d"]);
    assert_eq!(first_id(&b), id);
    let s = status_of(&b, &id);
    assert_eq!(s["status"], "pending");
    assert_eq!(s["signed_by"], serde_json::json!(["leading"]));
    assert_eq!(s["review_on"], "2027-01-31");
    assert!(
        b.ok(&["agreement", "list"])
            .contains("waiting for your signature")
    );
    let signed = b.json(&["agreement", "sign", &id[..8]]);
    assert_eq!(signed["status"], "in_force");
    for p in [&a, &b] {
        let s = status_of(p, &id);
        assert_eq!(s["status"], "in_force");
        assert_eq!(s["in_force_version"], 1);
    }
    let show = a.json(&["agreement", "show", &id[..8]]);
    assert_eq!(show["versions"][0]["rules"][0]["category"], "whereabouts");

    // Keep: A asks, B answers with a place, A acknowledges.
    let req = a.json(&["request-checkin", "Could you check in?"]);
    let req_seq = req["seq"].as_u64().expect("seq");
    let ci = b.json(&["checkin", "at the gym until 7", "--place", "Riverside gym"]);
    assert!(
        ci["answers"].is_string(),
        "the check-in answers the open request"
    );
    let ci_seq = ci["seq"].as_u64().expect("seq");
    a.ok(&["ack", &ci_seq.to_string()]);
    let tl = b.json(&["timeline"]);
    let events = tl["events"].as_array().expect("events");
    assert!(
        events
            .iter()
            .any(|e| e["seq"] == req_seq && e["by"] == "leading")
    );
    assert!(events.iter().any(|e| {
        e["what"]
            .as_str()
            .is_some_and(|w| w.contains("at the gym until 7") && w.contains("Riverside gym"))
    }));
    assert!(events.iter().any(|e| {
        e["what"]
            .as_str()
            .is_some_and(|w| w.starts_with("acknowledged the check-in"))
    }));
    let sb = b.json(&["status"]);
    assert_eq!(sb["open_requests"], serde_json::json!([]));
    assert_eq!(
        a.json(&["status"])["unacknowledged_checkins"],
        serde_json::json!([])
    );

    // The phone-access log: a request and its answer, noted for both.
    a.ok(&["phone", "ask"]);
    b.ok(&["phone", "later", "after dinner, please"]);
    let tl = a.json(&["timeline"]);
    assert!(
        tl["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(
                |e| e["what"] == "asked to see the phone later: after dinner, please"
                    && e["by"] == "rebuilding"
            )
    );

    // Review: on the review day it is due; B renews, A signs: version 2 in force.
    a.now = Some("2027-01-31".into());
    b.now = Some("2027-01-31".into());
    assert_eq!(
        a.json(&["status"])["due_for_review"],
        serde_json::json!([id])
    );
    let before = a.now.replace("2027-01-30".into());
    assert_eq!(a.json(&["status"])["due_for_review"], serde_json::json!([]));
    a.now = before;
    b.json(&["agreement", "renew", &id[..8], "--review-in", "60d"]);
    // Until both sign the renewal, version 1 stays in force.
    assert_eq!(status_of(&a, &id)["in_force_version"], 1);
    a.ok(&["agreement", "sign", &id[..8]]);
    let s = status_of(&b, &id);
    assert_eq!(s["in_force_version"], 2);
    assert_eq!(s["review_on"], "2027-04-01");
    assert_eq!(b.json(&["status"])["due_for_review"], serde_json::json!([]));

    // Certificate: exported by one, verified with no keys and no relay.
    let cert = a.scratch("cert.txt");
    a.ok(&[
        "agreement",
        "export",
        &id[..8],
        "--out",
        cert.to_str().expect("path"),
    ]);
    let outsider = Person::new();
    let v = outsider.json(&["verify-certificate", cert.to_str().expect("path")]);
    assert_eq!(v["valid"], true);
    assert_eq!(v["version"], 2);
    assert_eq!(v["signers"].as_array().map(|s| s.len()), Some(2));
    assert!(!outsider.home.exists(), "verifying needs no key store");
    // A changed word breaks it.
    let text = std::fs::read_to_string(&cert).expect("cert");
    let start = text.find("-----BEGIN").expect("armor");
    let mut bytes = text.into_bytes();
    bytes[start + 120] = if bytes[start + 120] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let bad = a.scratch("bad-cert.txt");
    std::fs::write(&bad, bytes).expect("write");
    let out = outsider.fails(&["verify-certificate", bad.to_str().expect("path")]);
    assert_one_line(&out, 5);
    // Against the log, today: in force.
    let st = b.json(&["agreement", "status", cert.to_str().expect("path")]);
    assert_eq!(st["status"], "in-force", "{st}");
    // The export is never overwritten.
    let out = a.fails(&[
        "agreement",
        "export",
        &id[..8],
        "--out",
        cert.to_str().expect("path"),
    ]);
    assert_one_line(&out, 1);

    // Withdraw: either partner, alone, at any time; both see it.
    b.ok(&[
        "agreement",
        "withdraw",
        &id[..8],
        "--comment",
        "I need to talk about this one",
    ]);
    for p in [&a, &b] {
        let s = status_of(p, &id);
        assert_eq!(s["in_force_version"], serde_json::Value::Null);
        assert_eq!(s["withdrawn_by"], "rebuilding");
        // The certificate still verifies, and the log says it was withdrawn.
        let st = p.json(&["agreement", "status", cert.to_str().expect("path")]);
        assert_eq!(st["status"], "withdrawn", "{st}");
    }
    // Another couple's log never held these words.
    let (_relay2, c, _d) = troth_tests::cli::paired_couple();
    let out = c.fails(&["agreement", "status", cert.to_str().expect("path")]);
    assert_one_line(&out, 1);
    // A late signature changes nothing: nothing is waiting for one.
    let out = a.fails(&["agreement", "sign", &id[..8]]);
    assert_one_line(&out, 1);

    // Report: refused without both consents, written with both, readable by the therapist.
    let therapist = age::x25519::Identity::generate();
    let to = therapist.to_public().to_string();
    let report = a.scratch("report.age");
    let rp = report.to_str().expect("path");
    let out = a.fails(&["report", "--to", &to, "--out", rp]);
    assert_one_line(&out, 1);
    assert!(!report.exists());
    a.ok(&["consent-report", "--to", &to]);
    let out = a.fails(&["report", "--to", &to, "--out", rp]);
    assert_one_line(&out, 1);
    let c = b.json(&["consent-report", "--to", &to]);
    assert_eq!(c["both"], true);
    b.ok(&["report", "--to", &to, "--out", rp]);
    let file = std::fs::read(&report).expect("report");
    let dec = age::Decryptor::new(age::armor::ArmoredReader::new(&file[..])).expect("age file");
    let mut plain = String::new();
    dec.decrypt(std::iter::once(&therapist as &dyn age::Identity))
        .expect("the therapist's key opens it")
        .read_to_string(&mut plain)
        .expect("text");
    assert!(plain.contains("# Troth report"));
    assert!(plain.contains("Knowing where you are"));
    assert!(plain.contains("at the gym until 7"));
    assert!(plain.contains("Consent was withdrawn by the partner rebuilding trust"));

    // Nothing is readable at rest without the passphrase.
    for p in [&a, &b] {
        for (path, bytes) in troth_tests::cli::snapshot(&p.home) {
            let text = String::from_utf8_lossy(&bytes);
            for secret in [
                "Riverside gym",
                "Knowing where you are",
                "troth-key-bundle",
                "AGE-SECRET-KEY",
            ] {
                assert!(
                    !text.contains(secret),
                    "{} holds {secret:?} in the clear",
                    path.display()
                );
            }
        }
    }

    // Both devices hold the same verified history.
    a.ok(&["sync"]);
    let va = a.json(&["verify"]);
    let vb = b.json(&["sync"]);
    assert_eq!(va["ok"], true);
    assert_eq!(va["state_code"], vb["state_code"]);
}
