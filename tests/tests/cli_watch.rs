//! `troth sync --watch`: the other partner's updates appear as they happen.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use troth_tests::cli::paired_couple;

#[test]
fn watch_prints_updates_as_they_arrive() {
    let (relay, a, b) = paired_couple();
    // A has seen both confirmations of who sets the conditions.
    a.ok(&["sync"]);
    let mut watcher = a
        .cmd(&["sync", "--watch", "--every", "1s", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch");
    let mut lines = BufReader::new(watcher.stdout.take().expect("stdout")).lines();
    b.ok(&["checkin", "leaving work now"]);
    let line = lines.next().expect("a line").expect("read");
    let _ = watcher.kill();
    let _ = watcher.wait();
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(v["by"], "rebuilding");
    assert_eq!(v["what"], "checked in: leaving work now");
    // What the watcher saw was saved: the timeline has it without the relay.
    drop(relay);
    let v = a.json(&["verify"]);
    assert_eq!(
        v["events"], 5,
        "genesis, the partner's admission, both confirmations of roles, the check-in: {v}"
    );
}

#[test]
fn deleting_the_space_needs_a_yes_and_then_both_sides_know() {
    let (_relay, a, b) = paired_couple();
    let before = troth_tests::cli::snapshot(&a.home);
    let out = a.fails(&["delete-space"]);
    troth_tests::cli::assert_one_line(&out, 1);
    assert_eq!(troth_tests::cli::snapshot(&a.home), before);
    a.ok(&["delete-space", "--yes"]);
    assert!(!a.home.join("space.age").exists());
    assert!(a.home.join("key.age").exists(), "keys stay");
    // B hadn't synced A's signed leave before the relay deleted the space:
    // B is told the relay no longer has it (not who closed it), and B's
    // copy stays (tests/tests/cli_close.rs has the rest).
    let b_before = troth_tests::cli::snapshot(&b.home);
    let out = b.fails(&["sync"]);
    let err = troth_tests::cli::assert_one_line(&out, 4);
    assert!(err.contains("relay no longer has this space"), "{err}");
    assert_eq!(troth_tests::cli::snapshot(&b.home), b_before);
}
