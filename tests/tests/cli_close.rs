//! Leaving is a signed event, through the real `troth` binary: `troth
//! delete-space` appends `CloseSpace` before it asks the relay to delete the
//! space, and a space that vanishes from the relay is blamed on the partner
//! only when the local copy holds their signed leave; otherwise it is the
//! relay's doing, and the local copy is kept either way.

use troth_core::event::{Event, Role};
use troth_tests::cli::{PASSPHRASE, Person, assert_one_line, pair_at, snapshot};
use troth_tests::evil::EvilRelay;

fn whats(p: &Person) -> Vec<String> {
    p.json(&["timeline", "--offline"])["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["what"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_vanished_space_is_blamed_on_the_partner_only_with_their_signed_leave() {
    let relay = EvilRelay::start();
    let a = Person::new();
    let b = Person::new();
    a.ok(&["init"]);
    b.ok(&["init"]);
    pair_at(&a, &b, &relay.url);
    b.ok(&["checkin", "at the library until 5"]);
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    let status = b.json(&["status"]);
    let space = status["space"].as_str().expect("space").to_owned();
    let next = status["events"].as_u64().expect("events");
    let seen_before = whats(&b);

    // A leaves: the signed CloseSpace reaches the relay before the delete.
    let out = a.json(&[
        "delete-space",
        "--yes",
        "--comment",
        "I need a pause from this",
    ]);
    assert_eq!(out["deleted"], space);
    assert!(!a.home.join("space.age").exists(), "forgotten on A's side");
    let close = relay
        .seen(&space, next)
        .expect("the leave was appended before the relay deleted the space");
    let close = Event::decode(&close).expect("event");

    // B hadn't synced the leave: the relay's 404 alone is not blamed on A.
    let before = snapshot(&b.home);
    let out = b.fails(&["sync"]);
    let err = assert_one_line(&out, 4);
    assert!(err.contains("relay no longer has this space"), "{err}");
    assert!(err.contains("nothing your partner signed"), "{err}");
    assert!(!err.contains("Your partner closed"), "{err}");
    assert_eq!(snapshot(&b.home), before, "the local copy is kept");
    assert_eq!(whats(&b), seen_before, "nothing was lost");

    // Had B's copy held A's signed leave (synced before the delete), the
    // same 404 says who closed it.
    let home = troth_client::Home::new(&b.home);
    let mut stored = home
        .load_space(home.load_keys(PASSPHRASE).expect("keys"))
        .expect("space");
    let ing = stored.replica.ingest(std::slice::from_ref(&close));
    assert!(ing.error.is_none(), "{:?}", ing.error);
    assert_eq!(
        stored.replica.state().closed,
        Some((Role::Leading, next)),
        "the leave is A's, signed"
    );
    home.save_space(&stored.relay, &stored.replica)
        .expect("save");
    assert!(
        whats(&b)
            .iter()
            .any(|w| w.contains("closed the space for both of you")),
        "{:?}",
        whats(&b)
    );
    let before = snapshot(&b.home);
    let out = b.fails(&["sync"]);
    let err = assert_one_line(&out, 1);
    assert!(err.contains("Your partner closed the space"), "{err}");
    assert_eq!(snapshot(&b.home), before, "the local copy is kept");

    // B may then forget it too: nothing more is appended or asked.
    b.ok(&["delete-space", "--yes"]);
    assert!(!b.home.join("space.age").exists());
}
