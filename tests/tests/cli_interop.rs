//! Interop with an independent age implementation (the Go `age` tool):
//! `troth key export` opens with the passphrase, and `troth report` opens
//! with the therapist's identity file. Skipped, with a message, where the
//! tool is not installed (`cargo xtask setup` installs it).

use std::process::Command;

use troth_tests::cli::{
    PASSPHRASE, Person, Relay, assert_one_line, go_age, go_age_decrypt_passphrase, pair, snapshot,
};

#[test]
fn key_export_opens_with_go_age_and_imports_back() {
    let a = Person::new();
    a.ok(&["init"]);
    let id = a.json(&["id"]);
    let backup = a.scratch("backup.age");
    a.ok(&["key", "export", "--out", backup.to_str().expect("path")]);
    let text = std::fs::read_to_string(&backup).expect("backup");
    assert!(text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never overwritten.
    let out = a.fails(&["key", "export", "--out", backup.to_str().expect("path")]);
    assert_one_line(&out, 1);

    if let Some(age) = go_age() {
        if let Some(plain) = go_age_decrypt_passphrase(&age, &backup, PASSPHRASE) {
            let plain = String::from_utf8(plain).expect("text");
            assert!(plain.starts_with("troth-key-bundle: 1\n"), "{plain}");
        }
    }

    // Restored on another device: the same identity.
    let b = Person::new();
    b.ok(&["key", "import", backup.to_str().expect("path")]);
    assert_eq!(b.json(&["id"])["identity"], id["identity"]);
    // Import never replaces a key.
    let before = snapshot(&b.home);
    let out = b.fails(&["key", "import", backup.to_str().expect("path")]);
    assert_one_line(&out, 1);
    assert_eq!(snapshot(&b.home), before);
}

#[test]
fn report_opens_with_go_age() {
    let Some(age) = go_age() else { return };
    let relay = Relay::start();
    let a = Person::new();
    let b = Person::new();
    a.ok(&["init"]);
    b.ok(&["init"]);
    pair(&a, &b, &relay);
    a.ok(&["agreement", "propose", "--template", "phone"]);
    let identity = age::x25519::Identity::generate();
    let key_file = a.scratch("therapist.key");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(
            &key_file,
            format!("{}\n", identity.to_string().expose_secret()),
        )
        .expect("write");
    }
    let to = identity.to_public().to_string();
    a.ok(&["consent-report", "--to", &to, "--no-checkins"]);
    b.ok(&["consent-report", "--to", &to]);
    let report = a.scratch("report.age");
    let j = a.json(&[
        "report",
        "--to",
        &to,
        "--out",
        report.to_str().expect("path"),
    ]);
    assert_eq!(
        j["include_checkins"], false,
        "one partner shared agreements only"
    );
    let out = Command::new(age)
        .arg("-d")
        .arg("-i")
        .arg(&key_file)
        .arg(&report)
        .output()
        .expect("age");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("text");
    assert!(text.contains("# Troth report"));
    assert!(text.contains("Phone access when asked"));
    assert!(!text.contains("## Check-ins"));
}
