//! `troth-client` as a library against the real relay binary: pairing in two
//! threads, a lost race (409) re-based and re-sent, paging past one page,
//! and a relay that stops answering mid-way.

use std::time::Duration;

use rand::rngs::OsRng;
use troth_client::pair::{Invitation, await_admission, create_space, join};
use troth_client::{Error, RelayClient, Session};
use troth_core::content::Content;
use troth_core::event::Role;
use troth_core::keyfile::KeyBundle;
use troth_tests::cli::Relay;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn paired(relay: &Relay) -> (Session, Session) {
    paired_with(RelayClient::new(&relay.url).expect("url"))
}

fn paired_with(client: RelayClient) -> (Session, Session) {
    let ka = KeyBundle::generate(&mut OsRng, now());
    let kb = KeyBundle::generate(&mut OsRng, now());
    let inv = Invitation::open(&client, &ka, Role::Leading, &mut OsRng).expect("open");
    let code = inv.code().to_string();
    let c2 = client.clone();
    let joiner = std::thread::spawn(move || {
        let p = join(&c2, &kb, &code, Duration::from_secs(30), &mut OsRng).expect("join");
        let r = await_admission(&c2, kb, &p, Duration::from_secs(30)).expect("admitted");
        (p.safety_number, r)
    });
    let p = inv.wait(Duration::from_secs(30)).expect("paired");
    let ra = create_space(&client, ka, Role::Leading, &p, now(), &mut OsRng).expect("space");
    let (sn, rb) = joiner.join().expect("joiner thread");
    assert_eq!(sn, p.safety_number);
    assert_eq!(ra.safety_number(), rb.safety_number());
    (Session::new(ra, client.clone()), Session::new(rb, client))
}

fn checkin(text: &str) -> Content {
    Content::CheckIn {
        text: text.into(),
        place: None,
        answers: None,
    }
}

#[test]
fn a_lost_race_is_rebased_and_long_logs_are_paged() {
    let relay = Relay::start();
    let (mut a, mut b) = paired(&relay);
    assert_eq!(b.sync().expect("sync").accepted, 0);

    // B writes; A, not yet synced, writes on its stale head: 409, re-base, retry.
    b.post(&checkin("on my way"), now(), &mut OsRng)
        .expect("b posts");
    let stale_head = a.replica().chain().head();
    let ev = a
        .post(
            &Content::RequestCheckIn { note: "ok".into() },
            now(),
            &mut OsRng,
        )
        .expect("a posts after re-basing");
    assert_eq!(ev.header().seq, 3, "composed again on the new head");
    assert_ne!(a.replica().chain().head(), stale_head);
    assert_eq!(b.sync_strict().expect("sync"), 1);
    assert_eq!(a.replica().state_code(), b.replica().state_code());
    assert_eq!(a.replica().state().checkins.len(), 1);

    // More than one page (64 events) arrives in order and verifies.
    for i in 0..70 {
        b.post(&checkin(&format!("check-in {i}")), now(), &mut OsRng)
            .expect("post");
    }
    assert_eq!(a.sync_strict().expect("sync"), 70);
    assert_eq!(a.replica().state().checkins.len(), 71);
    assert_eq!(a.replica().state_code(), b.replica().state_code());

    // The relay goes away: a clear error, and the replica is untouched.
    let before = a.replica().state_code();
    drop(relay);
    match a.sync() {
        Err(Error::Unreachable { .. }) => {}
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(matches!(
        a.post(&checkin("x"), now(), &mut OsRng),
        Err(Error::Unreachable { .. })
    ));
    assert_eq!(a.replica().state_code(), before);
}

/// The relay's `troth_relay_sessions` gauge.
fn open_sessions(relay: &Relay) -> u64 {
    let body = ureq::get(&format!("{}/metrics", relay.url))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default();
    body.lines()
        .find_map(|l| l.strip_prefix("troth_relay_sessions "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn request_sessions_carry_a_couple_across_a_relay_restart() {
    let relay = Relay::start();
    let client = RelayClient::new(&relay.url).expect("url").with_sessions();
    let (mut a, mut b) = paired_with(client);
    a.post(&checkin("home soon"), now(), &mut OsRng)
        .expect("a posts");
    assert_eq!(b.sync_strict().expect("b syncs"), 1);
    assert_eq!(open_sessions(&relay), 2, "one session per device");
    // A restart forgets the sessions; the clients open new ones by themselves.
    let relay = relay.restart();
    assert_eq!(open_sessions(&relay), 0);
    b.post(&checkin("see you"), now(), &mut OsRng)
        .expect("b posts");
    assert_eq!(a.sync_strict().expect("a syncs"), 1);
    assert_eq!(a.replica().state_code(), b.replica().state_code());
    assert_eq!(open_sessions(&relay), 2);
}
