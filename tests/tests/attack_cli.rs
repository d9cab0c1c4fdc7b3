//! The malicious relay against the real `troth` binary: attacks are reported
//! in plain words with exit status 5, and nothing verified is lost.

use troth_tests::cli::{Person, pair_at};
use troth_tests::evil::{Attack, EvilRelay};

const EXIT_INTEGRITY: i32 = 5;

fn timeline_len(p: &Person) -> usize {
    p.json(&["timeline"])["events"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0)
}

#[test]
fn cli_reports_rollback_and_fork_and_keeps_its_history() {
    let relay = EvilRelay::start();
    let a = Person::new();
    let b = Person::new();
    a.ok(&["init"]);
    b.ok(&["init"]);
    pair_at(&a, &b, &relay.url);
    b.ok(&["checkin", "at the library until 5"]);
    b.ok(&["checkin", "home now"]);
    a.ok(&["sync"]);
    let before = timeline_len(&a);
    assert!(before >= 4);

    // Rollback: the relay serves an old snapshot.
    relay.set(Attack::Rollback(2));
    let out = a.fails(&["sync"]);
    assert_eq!(out.status.code(), Some(EXIT_INTEGRITY));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Nothing you had is lost"), "{err}");
    assert!(!err.contains("panicked"));
    relay.set(Attack::None);
    assert_eq!(timeline_len(&a), before, "the local history is intact");

    // Equivocation: B is shown a branch of its own; A is then shown B's branch.
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    let split = before as u64;
    let device_hex = b.json(&["id"])["device"].as_str().map(str::to_owned);
    let bytes: [u8; 32] = device_hex
        .and_then(|h| hex::decode(h).ok())
        .and_then(|v| v.try_into().ok())
        .expect("`troth id --json` shows the device id");
    let victim = troth_core::keys::DeviceId(bytes).to_b64();
    relay.set(Attack::Equivocate {
        victim,
        from: split,
    });
    a.ok(&["request-checkin"]);
    b.ok(&["checkin", "a branch only I see"]);
    relay.set(Attack::Append(relay.branch()));
    let out = a.fails(&["sync"]);
    assert_eq!(out.status.code(), Some(EXIT_INTEGRITY));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("state code"), "{err}");
    relay.set(Attack::None);
    assert_eq!(timeline_len(&a), before + 1);
}
