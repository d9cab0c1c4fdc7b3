//! Linking a device by code through the real `troth` binary and relay
//! (issue 18): `troth device link` prints the code alone on its first line
//! and waits; `troth device join CODE --relay URL` on a fresh key store
//! joins with keys of its own. All devices verify every event and show the
//! same state code; a wrong code fails on both sides and burns the code.

use std::io::{BufReader, Read};
use std::process::{Child, ChildStdout};

use troth_tests::cli::{Person, Relay, assert_one_line, pair, snapshot};

/// Starts `troth device link` as `p`; returns the process, the code from
/// its first line of standard output, and the rest of its output.
fn start_link(p: &Person, extra: &[&str]) -> (Child, String, BufReader<ChildStdout>) {
    let mut args = vec!["device", "link", "--timeout", "60s"];
    args.extend_from_slice(extra);
    p.spawn_with_code(&args)
}

fn finish(mut link: Child, mut stdout: BufReader<ChildStdout>) -> (Option<i32>, String, String) {
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("rest");
    let status = link.wait().expect("wait");
    let mut err = String::new();
    if let Some(mut e) = link.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (status.code(), rest, err)
}

fn sync_code(p: &Person) -> String {
    let v = p.json(&["sync"]);
    v["state_code"].as_str().expect("state code").to_owned()
}

#[test]
fn the_cli_links_a_cli_and_every_device_shows_the_same_state() {
    let relay = Relay::start();
    let a = Person::new();
    let b = Person::new();
    a.ok(&["init"]);
    b.ok(&["init"]);
    pair(&a, &b, &relay);
    b.ok(&["checkin", "at the gym until 7"]);
    a.ok(&["sync"]);

    let a2 = Person::new();
    a2.ok(&["init"]);
    let fresh_device = a2.json(&["id", "--age-recipient"]);

    let (link, code, stdout) = start_link(&a, &["--json"]);
    let joined = a2.json(&["device", "join", &code, "--relay", &relay.url]);
    let (status, rest, err) = finish(link, stdout);
    assert_eq!(status, Some(0), "{rest}\n{err}");
    let added: serde_json::Value = serde_json::from_str(rest.trim()).expect("json");
    assert_eq!(added["device"], joined["device"]);
    assert_eq!(added["from_epoch"], 0);
    assert_eq!(joined["unreadable"], 0);

    // Same identity and safety number as the first device; its own keys
    // (the age recipient `troth init` made on it is still its own).
    let a_id = a.json(&["id"]);
    let a2_id = a2.json(&["id"]);
    assert_eq!(a_id["identity"], a2_id["identity"]);
    for field in ["device", "age_recipient"] {
        assert_eq!(
            a2_id[field], fresh_device[field],
            "the new device kept the keys made on it"
        );
        assert_ne!(
            a_id[field], fresh_device[field],
            "never a copy of the other device's key"
        );
    }
    let st_a = a.json(&["status"]);
    let st_a2 = a2.json(&["status"]);
    assert_eq!(st_a["safety_number"], st_a2["safety_number"]);

    // Every device verifies every event and shows the same state code.
    let code_a = sync_code(&a);
    assert_eq!(sync_code(&a2), code_a);
    assert_eq!(sync_code(&b), code_a);
    for p in [&a, &a2, &b] {
        let v = p.json(&["verify"]);
        assert_eq!(v["ok"], true);
        assert_eq!(v["state_code"], code_a.as_str());
    }
    assert!(a2.ok(&["timeline"]).contains("at the gym until 7"));

    // B is told about the new device until B acknowledges it.
    let st_b = b.json(&["status"]);
    assert_eq!(
        st_b["new_partner_devices"][0]["id"], joined["device"],
        "{st_b}"
    );

    // The new device writes; the others read it.
    a2.ok(&["request-checkin", "could you check in when you leave?"]);
    b.ok(&["sync"]);
    assert!(
        b.ok(&["timeline"])
            .contains("could you check in when you leave?")
    );
    let list = a.json(&["device", "list"]);
    let mine = list["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter(|d| d["owner"] == "you" && d["active"] == true)
        .count();
    assert_eq!(mine, 2);
}

#[test]
fn a_wrong_code_fails_on_both_sides_and_burns_it() {
    let relay = Relay::start();
    let a = Person::new();
    let b = Person::new();
    a.ok(&["init"]);
    b.ok(&["init"]);
    pair(&a, &b, &relay);
    let a2 = Person::new();
    a2.ok(&["init"]);
    let a2_before = snapshot(&a2.home);
    let events_before = a.json(&["sync"])["events"].clone();

    let (link, code, stdout) = start_link(&a, &[]);
    let mut parts = code.split('-');
    let mailbox = parts.next().expect("number");
    let first = parts.next().expect("word");
    let other = if first == "acorn" { "amber" } else { "acorn" };
    let wrong = format!("{mailbox}-{other}-{}", parts.next().expect("word"));

    let out = a2.fails(&["device", "join", &wrong, "--relay", &relay.url]);
    let err = assert_one_line(&out, 6);
    assert!(err.contains("code didn't match"), "{err}");
    let (status, _, err) = finish(link, stdout);
    assert_eq!(status, Some(6), "{err}");
    assert!(err.contains("code didn't match"), "{err}");

    // The right code is burnt; nothing was added or saved anywhere.
    let out = a2.fails(&["device", "join", &code, "--relay", &relay.url]);
    assert_one_line(&out, 6);
    assert_eq!(snapshot(&a2.home), a2_before);
    assert_eq!(a.json(&["sync"])["events"], events_before);

    // A key store already in a space cannot join another.
    let out = b.fails(&["device", "join", &code, "--relay", &relay.url]);
    assert_one_line(&out, 1);

    // A fresh code works.
    let (link, code, stdout) = start_link(&a, &["--no-history"]);
    a2.ok(&["device", "join", &code, "--relay", &relay.url]);
    let (status, _, err) = finish(link, stdout);
    assert_eq!(status, Some(0), "{err}");
}
