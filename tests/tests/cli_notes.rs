//! Author times through the real `troth` binary: an event dated before the
//! one before it, or ahead of the reading device's clock, can't be refused
//! without a trusted clock, but it never passes silently: `troth timeline`
//! notes it, in words and in JSON.

use troth_tests::cli::paired_couple;

fn notes_of(p: &troth_tests::cli::Person, what: &str) -> Vec<String> {
    let tl = p.json(&["timeline"]);
    let e = tl["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["what"].as_str().is_some_and(|w| w.contains(what)))
        .cloned()
        .unwrap_or_else(|| panic!("no event {what:?}: {tl}"));
    e["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn times_out_of_order_or_ahead_are_noted_in_the_timeline() {
    let (_relay, mut a, b) = paired_couple();
    // A's clock runs ahead of everyone's: A's check-in is dated in 2099.
    a.now = Some("2099-01-01".into());
    a.ok(&["checkin", "from the future"]);
    a.now = None;
    // B's next check-in (real clock) is dated before A's, the event before it.
    b.ok(&["checkin", "back in the present"]);

    let ahead = notes_of(&b, "from the future");
    assert_eq!(ahead.len(), 1, "{ahead:?}");
    let earlier = notes_of(&b, "back in the present");
    assert_eq!(earlier.len(), 1, "{earlier:?}");
    assert!(ahead[0].contains("in the future"), "{ahead:?}");
    assert!(
        earlier[0].contains("earlier than the event before it"),
        "{earlier:?}"
    );
    // An ordinary event carries no note.
    assert!(notes_of(&b, "created this space").is_empty());
    let text = b.ok(&["timeline"]);
    // A's device also changed the key on schedule (by its clock, decades had
    // passed), and that event is dated in the future too: three notes.
    let rotation = notes_of(&b, "changed the key for new messages");
    assert_eq!(rotation.len(), 1, "{text}");
    assert!(rotation[0].contains("in the future"), "{rotation:?}");
    assert_eq!(text.matches("note: ").count(), 3, "{text}");
    // A's device, back on the real clock, notes the 2099 date too.
    assert_eq!(notes_of(&a, "from the future"), ahead);
}
