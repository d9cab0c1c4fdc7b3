//! What you sign is what you saw, through the real `troth` binary: a
//! version proposed between `agreement show` and `agreement sign` is never
//! signed unseen, every signed field (category, whom a rule asks of, its
//! parameters) is shown wherever an agreement is, and invisible or
//! direction-changing characters are refused before anything is sent.

use troth_tests::cli::{Person, assert_one_line, paired_couple};

fn version(p: &Person, id: &str, n: usize) -> serde_json::Value {
    let show = p.json(&["agreement", "show", id]);
    show["versions"][n - 1].clone()
}

#[test]
fn a_version_proposed_after_show_is_never_signed_unseen() {
    let (_relay, a, b) = paired_couple();
    let p = a.json(&["agreement", "propose", "--template", "whereabouts"]);
    let id = p["id"].as_str().expect("id").to_owned();
    let short = &id[..8];

    // B reads version 1: every signed field is on the screen.
    let shown = b.ok(&["agreement", "show", short]);
    assert!(shown.contains("version 1"), "{shown}");
    assert!(
        shown.contains("category: whereabouts (check-ins)"),
        "{shown}"
    );
    assert!(
        shown.contains("asks of: you, the partner rebuilding trust"),
        "{shown}"
    );
    assert!(
        shown.contains("check-in times: when I leave and when plans change"),
        "{shown}"
    );

    // Meanwhile A proposes other words (version 2 replaces version 1).
    a.ok(&[
        "agreement",
        "amend",
        short,
        "--text",
        "I'll check in every hour, wherever I am.",
    ]);

    // B signs what B read: refused, with the new words and how to sign them.
    let out = b.fails(&["agreement", "sign", short]);
    let err = assert_one_line(&out, 1);
    assert!(err.contains("version 2"), "{err}");
    assert!(
        err.contains(&format!("troth agreement sign {short} --version 2")),
        "{err}"
    );
    let words = String::from_utf8_lossy(&out.stdout);
    assert!(
        words.contains("I'll check in every hour, wherever I am."),
        "{words}"
    );
    assert!(words.contains("asks of: you"), "{words}");

    // Naming version 1: no longer open (the fold replaced it), so refused too.
    let out = b.fails(&["agreement", "sign", short, "--version", "1"]);
    assert_one_line(&out, 1);

    // Nothing was signed on B's behalf.
    assert_eq!(
        version(&a, short, 2)["signed_by"],
        serde_json::json!(["leading"])
    );
    assert_eq!(
        version(&a, short, 1)["signed_by"],
        serde_json::json!(["leading"])
    );

    // Naming the version B has now read signs it.
    let signed = b.json(&["agreement", "sign", short, "--version", "2"]);
    assert_eq!(signed["version"], 2);
    assert_eq!(signed["status"], "in_force");
    assert_eq!(version(&a, short, 2)["status"], "in_force");
}

#[test]
fn an_agreement_this_device_never_showed_is_not_signed_blind() {
    let (_relay, a, b) = paired_couple();
    let p = a.json(&["agreement", "propose", "--template", "therapy"]);
    let id = p["id"].as_str().expect("id").to_owned();

    // B's local copy has never held it: the words are printed, nothing is signed.
    let out = b.fails(&["agreement", "sign", &id[..8]]);
    let err = assert_one_line(&out, 1);
    assert!(err.contains("--version 1"), "{err}");
    let words = String::from_utf8_lossy(&out.stdout);
    assert!(words.contains("how often: every week"), "{words}");
    assert_eq!(
        version(&a, &id, 1)["signed_by"],
        serde_json::json!(["leading"])
    );

    // A wrong version number is refused; the right one signs.
    let out = b.fails(&["agreement", "sign", &id[..8], "--version", "7"]);
    assert_one_line(&out, 1);
    b.ok(&["agreement", "sign", &id[..8], "--version", "1"]);

    // `list --json` carries every signed field of the version in force.
    let list = a.json(&["agreement", "list"]);
    let words = &list["agreements"][0]["in_force"];
    assert_eq!(words["rules"][0]["category"], "therapy", "{list}");
    assert_eq!(words["rules"][0]["asks_of"], "rebuilding", "{list}");
    assert_eq!(
        words["rules"][0]["params"],
        serde_json::json!([{ "name": "how often", "value": "every week" }]),
        "{list}"
    );
}
