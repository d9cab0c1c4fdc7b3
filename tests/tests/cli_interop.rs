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

/// The therapist page's key (core's `TherapistKey`, the same code the
/// browser runs in wasm): its passphrase file is an age identity file the Go
/// `age` tool opens, and a report the CLI writes to its recipient opens both
/// with it and with `age -i`, naming until when it is shared.
#[test]
fn a_therapist_key_from_the_page_opens_cli_reports_with_go_age_too() {
    use troth_core::therapist::{TherapistKey, report_until};
    let relay = Relay::start();
    let a = Person::new();
    let b = Person::new();
    a.ok(&["init"]);
    b.ok(&["init"]);
    pair(&a, &b, &relay);
    let key = TherapistKey::generate();
    let pass = "linden tree by the window";
    let key_file = a.scratch("troth-therapist-key.age");
    std::fs::write(&key_file, key.encrypt(pass, 12).expect("encrypt")).expect("write");
    let to = key.recipient();
    let today = troth_core::agreement::Day::from_unix_ms(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64,
    );
    let (soon, later) = (today.plus(10), today.plus(40));
    a.ok(&["consent-report", "--to", &to, "--until", &later.to_string()]);
    b.ok(&["consent-report", "--to", &to, "--until", &soon.to_string()]);
    let report = a.scratch("report.age");
    a.ok(&[
        "report",
        "--to",
        &to,
        "--out",
        report.to_str().expect("path"),
    ]);

    // Opened as the page opens it: the earlier of the two days.
    let opened = TherapistKey::decrypt(&std::fs::read(&key_file).expect("key"), pass, 20)
        .expect("key file")
        .open_report(&std::fs::read(&report).expect("report"))
        .expect("report opens");
    assert!(opened.contains("# Troth report"));
    assert_eq!(report_until(&opened), Some(soon));

    let Some(age) = go_age() else { return };
    let Some(identity) = go_age_decrypt_passphrase(&age, &key_file, pass) else {
        return;
    };
    let identity_file = a.scratch("identity.txt");
    std::fs::write(&identity_file, &identity).expect("write");
    assert!(
        String::from_utf8_lossy(&identity).contains(&format!("# public key: {to}")),
        "an age-keygen identity file"
    );
    let out = Command::new(age)
        .arg("-d")
        .arg("-i")
        .arg(&identity_file)
        .arg(&report)
        .output()
        .expect("age");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("text");
    assert_eq!(report_until(&text), Some(soon));
}
