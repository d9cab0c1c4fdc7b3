//! Key rotation and revocation through the real `troth` binary: the partner
//! sees the change, the rotated device still reads and signs the history
//! from before the rotation, and the old device is revoked.

use troth_tests::cli::{Person, assert_one_line, paired_couple, snapshot};

/// What `troth timeline --json` says happened, in order.
fn whats(p: &Person) -> Vec<String> {
    p.json(&["timeline"])["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["what"].as_str().map(str::to_owned))
        .collect()
}

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

const EXPORTED: &str = "exported a copy of their key on the troth command line";

#[test]
fn key_export_asks_for_the_current_passphrase_and_the_partner_sees_it() {
    let (relay, a, b) = paired_couple();
    let backup = a.scratch("backup.age");
    let path = backup.to_str().expect("path");
    let fresh = "a fresh backup phrase";
    let before = snapshot(&a.home);

    // A wrong current passphrase: refused before anything else, nothing written.
    let out = a
        .cmd(&["key", "export", "--out", path])
        .env("TROTH_PASSPHRASE", "not my passphrase at all")
        .env("TROTH_NEW_PASSPHRASE", fresh)
        .output()
        .expect("run");
    let err = assert_one_line(&out, 3);
    assert!(err.contains("passphrase"), "{err}");
    assert!(!backup.exists());
    assert_eq!(snapshot(&a.home), before);

    // A backup passphrase that is too easy to guess: refused, nothing written.
    for weak in ["short", "correct horse battery staple"] {
        let out = a
            .cmd(&["key", "export", "--out", path])
            .env("TROTH_NEW_PASSPHRASE", weak)
            .output()
            .expect("run");
        let err = assert_one_line(&out, 3);
        assert!(err.contains("passphrase"), "{err}");
        assert!(!backup.exists());
    }

    // Offline, the export can't be recorded first: refused, nothing written.
    let out = a.fails(&["key", "export", "--out", path, "--offline"]);
    let err = assert_one_line(&out, 1);
    assert!(err.contains("recorded"), "{err}");
    assert!(!backup.exists());
    assert_eq!(snapshot(&a.home), before);
    assert!(!whats(&b).iter().any(|w| w.contains(EXPORTED)));

    // The right passphrase: the export is recorded, then written.
    let out = a
        .cmd(&["key", "export", "--out", path, "--json"])
        .env("TROTH_NEW_PASSPHRASE", fresh)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(backup.exists());
    let w = whats(&b);
    assert!(w.iter().any(|w| w.contains(EXPORTED)), "{w:?}");

    // The backup opens with its own passphrase, and restores the same identity.
    let c = Person::new();
    let out = c
        .cmd(&["key", "import", path])
        .env("TROTH_PASSPHRASE", fresh)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c
        .cmd(&["id", "--json"])
        .env("TROTH_PASSPHRASE", fresh)
        .output()
        .expect("run");
    let id: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(id["identity"], a.json(&["id"])["identity"]);

    // The relay is gone: the export can't be recorded, so nothing is written.
    relay.stop();
    let other = a.scratch("other.age");
    let out = a.fails(&["key", "export", "--out", other.to_str().expect("path")]);
    let err = assert_one_line(&out, 4);
    assert!(err.contains("nothing was written"), "{err}");
    assert!(!other.exists());
}

#[test]
fn weak_passphrases_are_refused_for_a_new_key() {
    let a = Person::new();
    for weak in ["short", "aaaaaaaaaaaa", "correct horse battery staple"] {
        let out = a
            .cmd(&["init"])
            .env("TROTH_PASSPHRASE", weak)
            .output()
            .expect("run");
        let err = assert_one_line(&out, 3);
        assert!(err.contains("passphrase"), "{err}");
        assert!(!a.home.join("key.age").exists());
    }
    a.ok(&["init"]);
}

/// Issue 18: A sees every device, and `troth status` tells A of B's new
/// device until A acknowledges it (on this device; the acknowledgement is
/// sealed under the device's key).
#[test]
fn the_partner_is_told_of_a_new_device_until_they_acknowledge_it() {
    let (_relay, a, b) = paired_couple();
    let status = a.ok(&["status"]);
    assert!(!status.contains("added a device"), "{status}");
    assert_eq!(
        a.json(&["status"])["new_partner_devices"],
        serde_json::json!([])
    );

    let old = b.json(&["id"])["device"].as_str().expect("id").to_owned();
    let r = b.json(&["key", "rotate"]);
    let new = r["device"].as_str().expect("new id").to_owned();

    // Both partners' devices, with whose they are and when they came.
    let list = a.json(&["device", "list"]);
    let devices = list["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 3, "{list}");
    let find = |id: &str| {
        devices
            .iter()
            .find(|d| d["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {list}"))
    };
    assert_eq!(find(&old)["owner"], "partner");
    assert_eq!(find(&old)["active"], false);
    assert_eq!(
        find(&old)["new"],
        false,
        "the first device came with pairing"
    );
    assert_eq!(find(&new)["owner"], "partner");
    assert_eq!(find(&new)["active"], true);
    assert_eq!(find(&new)["new"], true);
    assert!(
        find(&new)["added_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let mine: Vec<_> = devices.iter().filter(|d| d["owner"] == "you").collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["this_device"], true);
    let text = a.ok(&["device", "list"]);
    assert!(text.contains("Your partner's devices:"), "{text}");
    assert!(
        text.contains(&format!("{}  added on", &new[..16])),
        "{text}"
    );

    // Status says so, calmly, every time, until acknowledged.
    for _ in 0..2 {
        let status = a.ok(&["status"]);
        assert!(
            status.contains("Your partner added a device on")
                && status.contains(
                    "If you didn't expect this, talk about it; you can withdraw consent at any time"
                ),
            "{status}"
        );
        let j = a.json(&["status"]);
        assert_eq!(j["new_partner_devices"][0]["id"], new.as_str());
    }
    // B's own status never tells B of B's devices.
    assert!(!b.ok(&["status"]).contains("added a device"));

    // B names the new device (this one, by default); both see the name,
    // and the partner cannot name B's devices.
    let named = b.json(&["device", "name", "Sam's laptop"]);
    assert_eq!(named["device"], new.as_str());
    let list = a.json(&["device", "list"]);
    let named_dev = list["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .find(|d| d["id"] == new.as_str())
        .expect("new device")
        .clone();
    assert_eq!(named_dev["name"], "Sam's laptop", "{list}");
    assert!(a.ok(&["device", "list"]).contains("“Sam's laptop”"));
    assert!(a.ok(&["status"]).contains(", named “Sam's laptop”."));
    let out = a.fails(&["device", "name", "Not yours", "--device", &new[..12]]);
    assert_one_line(&out, 1);
    let out = b.fails(&["device", "name", "   "]);
    assert_one_line(&out, 1);

    let ack = a.json(&["device", "ack"]);
    assert_eq!(ack["acknowledged"], 1);
    let status = a.ok(&["status"]);
    assert!(!status.contains("added a device"), "{status}");
    assert_eq!(
        a.json(&["device", "list"])["devices"]
            .as_array()
            .expect("d")
            .iter()
            .filter(|d| d["new"] == true)
            .count(),
        0
    );

    // A later device is told of again.
    b.ok(&["key", "rotate"]);
    assert!(a.ok(&["status"]).contains("Your partner added a device on"));
    // A damaged acknowledgement file errs on the side of telling.
    a.ok(&["device", "ack"]);
    assert!(!a.ok(&["status"]).contains("added a device"));
    std::fs::write(a.home.join("devices-seen"), b"not sealed\n").expect("write");
    assert!(a.ok(&["status"]).contains("Your partner added a device on"));
}
