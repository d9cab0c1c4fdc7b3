//! What you sign is what you saw, through the real `troth` binary: a
//! version proposed between `agreement show` and `agreement sign` is never
//! signed unseen, every signed field (category, whom a rule asks of, its
//! parameters) is shown wherever an agreement is, and invisible or
//! direction-changing characters are refused before anything is sent.

use troth_tests::cli::{Person, assert_one_line, paired_couple, snapshot};

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

#[test]
fn invisible_and_direction_changing_characters_are_refused_before_anything_is_sent() {
    let (relay, a, b) = paired_couple();
    let p = a.json(&["agreement", "propose", "--template", "phone"]);
    let id = p["id"].as_str().expect("id").to_owned();
    b.ok(&["agreement", "show", &id[..8]]);
    // With the relay stopped, a refusal that comes back as one calm line
    // (not "can't reach the relay") was made before anything was synced.
    relay.stop();
    let a_before = snapshot(&a.home);
    let b_before = snapshot(&b.home);
    let rlo = "\u{202E}";
    let cases: Vec<(&Person, Vec<String>)> = vec![
        (
            &a,
            vec![
                "agreement".into(),
                "propose".into(),
                "--title".into(),
                "Money".into(),
                "--text".into(),
                format!("I pay back {rlo}001 a month"),
            ],
        ),
        (
            &a,
            vec![
                "agreement".into(),
                "propose".into(),
                "--template".into(),
                "bed".into(),
                "--title".into(),
                "Sharing\u{200B} the bed".into(),
            ],
        ),
        (
            &a,
            vec![
                "agreement".into(),
                "amend".into(),
                id.clone(),
                "--text".into(),
                format!("When you ask {rlo}I'll show it"),
            ],
        ),
        (&b, vec!["checkin".into(), format!("home {rlo}won")]),
        (
            &b,
            vec![
                "checkin".into(),
                "at the gym".into(),
                "--place".into(),
                format!("Riverside{rlo}"),
            ],
        ),
        (&a, vec!["request-checkin".into(), format!("where{rlo}?")]),
        (
            &b,
            vec!["phone".into(), "later".into(), format!("{rlo}soon")],
        ),
        (
            &b,
            vec![
                "agreement".into(),
                "request-change".into(),
                id.clone(),
                "--comment".into(),
                format!("could it {rlo}say"),
            ],
        ),
        (
            &b,
            vec![
                "agreement".into(),
                "decline".into(),
                id.clone(),
                "--comment".into(),
                format!("no{rlo}"),
            ],
        ),
        (
            &a,
            vec![
                "agreement".into(),
                "withdraw".into(),
                id.clone(),
                "--comment".into(),
                format!("\u{2066}because"),
            ],
        ),
    ];
    for (who, args) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = who.fails(&args);
        let err = assert_one_line(&out, 1);
        assert!(err.contains("(U+"), "{args:?}: {err}");
        assert!(err.contains("Please remove it"), "{args:?}: {err}");
    }
    assert_eq!(snapshot(&a.home), a_before);
    assert_eq!(snapshot(&b.home), b_before);
}
