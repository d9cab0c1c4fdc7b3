//! Agreements in their own words through the real `troth` binary: propose
//! custom rules, ask for a change, amend, decline, amend again, co-sign,
//! then retire together.

use troth_tests::cli::{Person, assert_one_line, paired_couple};

fn latest(p: &Person, id: &str) -> serde_json::Value {
    let show = p.json(&["agreement", "show", id]);
    show["versions"]
        .as_array()
        .and_then(|v| v.last())
        .cloned()
        .expect("a version")
}

#[test]
fn own_words_change_requests_amendments_and_retirement() {
    let (_relay, mut a, mut b) = paired_couple();
    // Review dates are at most 90 days ahead: the clock is set for that.
    a.now = Some("2098-11-01".into());
    b.now = Some("2098-11-01".into());

    let p = a.json(&[
        "agreement",
        "propose",
        "--title",
        "Evenings",
        "--text",
        "We eat dinner together on weekdays.",
        "--text",
        "If plans change, we say so by 5pm.",
        "--review-on",
        "2099-01-01",
    ]);
    let id = p["id"].as_str().expect("id").to_owned();
    let v = latest(&b, &id);
    assert_eq!(v["title"], "Evenings");
    assert_eq!(v["rules"].as_array().map(|r| r.len()), Some(2));
    assert_eq!(v["review_on"], "2099-01-01");
    assert_eq!(v["rules"][0]["category"], "other");

    b.ok(&[
        "agreement",
        "request-change",
        &id,
        "--comment",
        "Could it be 6pm?",
    ]);
    let v = latest(&a, &id);
    assert_eq!(v["change_requests"][0]["comment"], "Could it be 6pm?");
    assert_eq!(v["change_requests"][0]["by"], "rebuilding");

    a.ok(&[
        "agreement",
        "amend",
        &id,
        "--text",
        "We eat dinner together on weekdays.",
        "--text",
        "If plans change, we say so by 6pm.",
    ]);
    let v = latest(&b, &id);
    assert_eq!(v["version"], 2);
    assert_eq!(v["status"], "pending");
    assert_eq!(
        v["review_on"], "2099-01-01",
        "an amendment keeps the review date"
    );
    b.ok(&["agreement", "decline", &id, "--comment", "Let's talk first"]);
    assert_eq!(latest(&a, &id)["status"], "declined");
    let out = b.fails(&["agreement", "sign", &id]);
    assert_one_line(&out, 1);

    a.ok(&["agreement", "amend", &id, "--title", "Our evenings"]);
    // B names the version it signs (its local copy hadn't shown version 3).
    b.ok(&["agreement", "sign", &id, "--version", "3"]);
    let v = latest(&a, &id);
    assert_eq!(v["version"], 3);
    assert_eq!(v["title"], "Our evenings");
    assert_eq!(v["status"], "in_force");
    assert_eq!(v["rules"][1]["text"], "If plans change, we say so by 6pm.");

    let r = a.json(&["agreement", "retire", &id]);
    assert_eq!(r["retired"], false, "retired only when both ask");
    assert_eq!(latest(&b, &id)["status"], "in_force");
    let r = b.json(&["agreement", "retire", &id]);
    assert_eq!(r["retired"], true);
    assert_eq!(latest(&a, &id)["status"], "retired");
}
