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

/// A forged `space.age`: attacker anchors and chain, encrypted the first
/// format's way to this device's *public* age recipient (which anyone can
/// do). The CLI refuses it with one line, exit 5, and leaves it in place.
#[test]
fn a_forged_space_file_is_refused_and_left_in_place() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use troth_core::event::Role;
    use troth_core::keyfile::KeyBundle;
    use troth_core::replica::Replica;

    let (_relay, a, _b) = troth_tests::cli::paired_couple();
    let recipient: age::x25519::Recipient = a
        .ok(&["id", "--age-recipient"])
        .trim()
        .parse()
        .expect("recipient");
    let space = a.json(&["status"])["space"]
        .as_str()
        .and_then(|h| troth_core::SpaceId::from_hex(h).ok())
        .expect("space");
    let mut rng = rand::rngs::OsRng;
    let attacker = KeyBundle::generate(&mut rng, 1000);
    let (mut evil, genesis) =
        Replica::create(attacker, Role::Leading, space, 1000, &mut rng).expect("create");
    assert_eq!(evil.ingest(&[genesis]).accepted, 1);
    let forged = serde_json::json!({
        "format": 1,
        "relay": "http://127.0.0.1:9",
        "space": space.to_hex(),
        "role": "leading",
        "anchors": {
            "leading": hex::encode(evil.keys().identity.public().to_bytes()),
            "rebuilding": null,
        },
        "events": evil.events().iter().map(|e| STANDARD.encode(e.as_bytes())).collect::<Vec<_>>(),
    });
    let file =
        troth_client::store::age_encrypt(&recipient, forged.to_string().as_bytes()).expect("age");
    // What a hostile relay knows (the events it stores, the partners' public
    // identities): a shorter chain that verifies, pointing at another relay.
    let real = troth_client::Home::new(&a.home)
        .load_space(
            troth_client::Home::new(&a.home)
                .load_keys(troth_tests::cli::PASSPHRASE)
                .expect("keys"),
        )
        .expect("space");
    let anchors = real.replica.chain().anchors();
    let hex_of =
        |k: &Option<troth_core::keys::IdentityKey>| k.as_ref().map(|k| hex::encode(k.to_bytes()));
    let shorter = serde_json::json!({
        "format": 1,
        "relay": "http://127.0.0.1:9",
        "space": space.to_hex(),
        "role": "leading",
        "anchors": { "leading": hex_of(&anchors.leading), "rebuilding": hex_of(&anchors.rebuilding) },
        "events": real.replica.events()[..1].iter().map(|e| STANDARD.encode(e.as_bytes())).collect::<Vec<_>>(),
    });
    let shorter =
        troth_client::store::age_encrypt(&recipient, shorter.to_string().as_bytes()).expect("age");
    let path = a.home.join("space.age");
    let genuine = std::fs::read(&path).expect("space");
    for bad in [
        shorter.into_bytes(),
        file.into_bytes(),
        // The new header over bytes that were never sealed by this device.
        b"troth-space-file 2\nAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8w\n"
            .to_vec(),
        // A genuine file with one character changed.
        {
            let mut g = genuine.clone();
            let i = g.len() / 2;
            g[i] = if g[i] == b'A' { b'B' } else { b'A' };
            g
        },
    ] {
        std::fs::write(&path, &bad).expect("write");
        let before = troth_tests::cli::snapshot(&a.home);
        for cmd in [
            &["status"][..],
            &["agreement", "list", "--offline"],
            &["verify"],
        ] {
            let out = a.fails(cmd);
            let err = troth_tests::cli::assert_one_line(&out, EXIT_INTEGRITY);
            assert!(err.contains("wasn't sealed by this device's key"), "{err}");
        }
        assert_eq!(
            troth_tests::cli::snapshot(&a.home),
            before,
            "left as it was"
        );
    }
    // The genuine file put back opens again.
    std::fs::write(&path, &genuine).expect("write");
    a.ok(&["verify"]);
}

/// A genuine *older* space file of this device put back in place can't be
/// told from a current one by the sealing alone; it is not trusted over the
/// relay either: the next sync fetches what it lacks, and nothing is lost.
#[test]
fn an_older_genuine_space_file_catches_up_on_sync() {
    let (_relay, a, b) = troth_tests::cli::paired_couple();
    let path = a.home.join("space.age");
    let old = std::fs::read(&path).expect("space");
    b.ok(&["checkin", "at the library until 5"]);
    a.ok(&["sync"]);
    let now = timeline_len(&a);
    std::fs::write(&path, &old).expect("write");
    a.ok(&["sync"]);
    assert_eq!(timeline_len(&a), now);
    assert_eq!(
        a.json(&["status"])["state_code"],
        b.json(&["status"])["state_code"]
    );
}
