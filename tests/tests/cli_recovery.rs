//! Recovery kits through the real `troth` binary and relay (issue 18): a
//! kit is a device of one's own that lives in a passphrase-protected file;
//! after a lost device, a fresh key store recovers from it, reads the whole
//! history, appears to the partner as a new device, and revokes the lost
//! device and the kit's.

use troth_tests::cli::{Person, assert_one_line, paired_couple};

#[test]
fn a_recovery_kit_brings_a_person_back_after_a_lost_device() {
    let (relay, a, b) = paired_couple();
    b.ok(&["checkin", "at the gym until 7"]);
    let kit = a.scratch("troth-recovery.age");
    let kit_s = kit.to_str().expect("utf-8 path");
    let made = a.json(&["key", "recovery-kit", "--out", kit_s]);
    assert!(kit.exists());
    // The partner is told of the kit's device, like any device.
    let st_b = b.json(&["status"]);
    assert_eq!(
        st_b["new_partner_devices"][0]["id"], made["device"],
        "{st_b}"
    );
    b.ok(&["device", "ack"]);
    // A kit is never overwritten.
    let out = a.fails(&["key", "recovery-kit", "--out", kit_s]);
    assert_one_line(&out, 1);

    // Later writes reach the kit's device too (it is a member).
    b.ok(&["checkin", "home by 9"]);
    let lost_device = a.json(&["id"])["device"].clone();
    let sn = a.json(&["status"])["safety_number"].clone();

    // A loses the device. A fresh key store recovers with the kit.
    let a2 = Person::new();
    let wrong = a2
        .cmd(&["key", "recover", kit_s])
        .env("TROTH_PASSPHRASE", "not the kit's passphrase")
        .output()
        .expect("run");
    assert_one_line(&wrong, 3);
    assert!(!a2.home.join("key.age").exists(), "nothing saved");

    let back = a2.json(&["key", "recover", kit_s]);
    let revoked = back["revoked"].as_array().expect("revoked").to_vec();
    assert!(revoked.contains(&made["device"]), "the kit is spent");
    assert!(revoked.contains(&lost_device), "the lost device is revoked");

    // Same identity and safety number, keys of its own, the whole history.
    assert_eq!(a2.json(&["status"])["safety_number"], sn);
    assert_ne!(a2.json(&["id"])["device"], lost_device);
    let tl = a2.ok(&["timeline"]);
    assert!(tl.contains("at the gym until 7"), "{tl}");
    assert!(tl.contains("home by 9"), "{tl}");
    let code = a2.json(&["sync"])["state_code"].clone();
    assert_eq!(b.json(&["sync"])["state_code"], code);
    assert_eq!(a2.json(&["verify"])["ok"], true);

    // The partner is told of the new device; the lost one reads nothing new.
    let st_b = b.json(&["status"]);
    assert_eq!(
        st_b["new_partner_devices"][0]["id"], back["device"],
        "{st_b}"
    );
    a2.ok(&["checkin", "back on a new phone"]);
    b.ok(&["sync"]);
    assert!(b.ok(&["timeline"]).contains("back on a new phone"));
    let out = a.fails(&["sync"]);
    assert_ne!(out.status.code(), Some(0));

    // The kit is used up.
    let a3 = Person::new();
    let out = a3.fails(&["key", "recover", kit_s]);
    let err = assert_one_line(&out, 1);
    assert!(err.contains("used or revoked"), "{err}");
    drop(relay);
}
