//! Key rotation and revocation through the real `troth` binary: the partner
//! sees the change, the rotated device still reads and signs the history
//! from before the rotation, and the old device is revoked.

use troth_tests::cli::{assert_one_line, paired_couple};

#[test]
fn rotate_keeps_history_and_revokes_the_old_device() {
    let (_relay, a, b) = paired_couple();
    let p = a.json(&["agreement", "propose", "--template", "phone"]);
    let id = p["id"].as_str().expect("id").to_owned();
    let p2 = a.json(&["agreement", "propose", "--template", "therapy"]);
    let id2 = p2["id"].as_str().expect("id").to_owned();
    // B reads it first: signing takes only words this device has shown.
    b.ok(&["agreement", "show", &id[..8]]);
    b.ok(&["agreement", "sign", &id[..8]]);
    let old_device = b.json(&["id"])["device"]
        .as_str()
        .expect("device")
        .to_owned();
    let before = b.json(&["id"]);

    let r = b.json(&["key", "rotate"]);
    assert_eq!(r["revoked"], old_device);
    let after = b.json(&["id"]);
    assert_eq!(after["identity"], before["identity"], "same identity");
    assert_ne!(after["device"], before["device"], "new device keys");
    assert_ne!(after["age_recipient"], before["age_recipient"]);

    // The rotated device still reads the history and can sign what was pending.
    let list = b.json(&["agreement", "list"]);
    let agreements = list["agreements"].as_array().expect("list");
    assert_eq!(agreements.len(), 2, "{list}");
    b.ok(&["agreement", "sign", &id2[..8]]);
    b.ok(&["checkin", "home after work"]);
    b.ok(&["verify"]);

    // The partner sees both changes, and both agreements in force.
    let tl = a.json(&["timeline"]);
    let whats: Vec<&str> = tl["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["what"].as_str())
        .collect();
    assert!(whats.contains(&"added a new device"), "{whats:?}");
    assert!(
        whats.iter().any(|w| w.starts_with("removed a device")),
        "{whats:?}"
    );
    assert!(
        whats.iter().any(|w| w.contains("home after work")),
        "{whats:?}"
    );
    let list = a.json(&["agreement", "list"]);
    for ag in list["agreements"].as_array().expect("list") {
        assert_eq!(ag["status"], "in_force", "{ag}");
    }
    let devices = a.json(&["key", "devices"]);
    let devs = devices["devices"].as_array().expect("devices");
    assert_eq!(devs.len(), 3);
    assert_eq!(devs.iter().filter(|d| d["active"] == false).count(), 1);
    assert_eq!(
        a.json(&["status"])["state_code"],
        b.json(&["status"])["state_code"]
    );

    // Revoking: not this device, not a device that is already revoked.
    let this = after["device"].as_str().expect("device");
    let out = b.fails(&["key", "revoke", &this[..8]]);
    assert_one_line(&out, 1);
    let out = b.fails(&["key", "revoke", &old_device[..8]]);
    assert_one_line(&out, 1);
}
