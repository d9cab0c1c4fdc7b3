//! Regenerates the fixtures of the CLI's golden tests (crates/cli/tests/cmd)
//! with the real binaries: a co-signed certificate (and a tampered copy) and
//! a key store whose agreement has parameters, for `agreement show`. Run it
//! when a format changes, then refresh the expected output:
//!
//! ```text
//! cargo test -p troth-tests --test cli_fixtures -- --ignored
//! TRYCMD=overwrite cargo test -p troth-cli --test cli
//! ```

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use troth_tests::cli::{PASSPHRASE, paired_couple};

fn cmd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/cli/tests/cmd")
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).expect("folder");
    }
    std::fs::write(path, bytes).expect("write");
}

/// The certificate with one byte of its signed title changed.
fn tampered(cert: &str) -> String {
    let begin = cert
        .lines()
        .position(|l| l.starts_with("-----BEGIN"))
        .expect("armor");
    let end = cert
        .lines()
        .position(|l| l.starts_with("-----END"))
        .expect("armor");
    let lines: Vec<&str> = cert.lines().collect();
    let mut bytes = STANDARD
        .decode(lines[begin + 1..end].concat())
        .expect("base64");
    let title = b"Knowing where you are";
    let at = bytes
        .windows(title.len())
        .position(|w| w == title)
        .expect("title in the proof");
    bytes[at] = b'k';
    let b64 = STANDARD.encode(bytes);
    let mut out: Vec<String> = lines[..=begin].iter().map(|l| (*l).to_owned()).collect();
    out.extend(
        b64.as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned()),
    );
    out.extend(lines[end..].iter().map(|l| (*l).to_owned()));
    out.join("\n") + "\n"
}

#[test]
#[ignore = "writes the golden tests' fixtures; run by hand when a format changes"]
fn regenerate_cli_golden_fixtures() {
    let (_relay, mut a, mut b) = paired_couple();
    a.now = Some("2027-01-01".into());
    b.now = Some("2027-01-01".into());
    let id = a.propose("whereabouts", ["--review-on", "2027-02-01"]);
    b.show_and_sign(&id);
    a.ok(&["sync"]);
    let cert = a.scratch("agreement.cert");
    a.ok(&[
        "agreement",
        "export",
        &id[..8],
        "--out",
        cert.to_str().expect("path"),
    ]);
    let cert = std::fs::read_to_string(&cert).expect("certificate");
    let dir = cmd_dir();
    write(&dir.join("verify-ok.in/agreement.cert"), cert.as_bytes());
    write(
        &dir.join("verify-tampered.in/agreement.cert"),
        tampered(&cert).as_bytes(),
    );

    // A's key store, for `agreement show --offline`.
    for f in ["key.age", "space.age"] {
        let bytes = std::fs::read(a.home.join(f)).expect("key store");
        write(&dir.join("agreement-show.in/home").join(f), &bytes);
    }
    write(
        &dir.join("agreement-show.in/pass.txt"),
        format!("{PASSPHRASE}\n").as_bytes(),
    );
    let toml = format!(
        "bin.name = \"troth\"\nargs = [\"--home\", \"home\", \"--passphrase-file\", \"pass.txt\", \"--offline\", \"agreement\", \"show\", \"{}\"]\n\n\
         # A day before the review date: in force (it lapses after 2027-02-01).\n[env.add]\nTROTH_NOW = \"2027-01-15\"\n",
        &id[..8]
    );
    write(&dir.join("agreement-show.toml"), toml.as_bytes());
    let toml = "bin.name = \"troth\"\nargs = [\"--home\", \"home\", \"--passphrase-file\", \"pass.txt\", \"--offline\", \"--json\", \"agreement\", \"list\"]\n\
         fs.cwd = \"agreement-show.in\"\n\n\
         # A day before the review date: in force (it lapses after 2027-02-01).\n[env.add]\nTROTH_NOW = \"2027-01-15\"\n";
    write(&dir.join("agreement-list-json.toml"), toml.as_bytes());
}

/// Issue 18's goldens: A's key store after B rotated keys (an AddDevice and
/// a revocation), for `device list` and `status` telling of the new device.
#[test]
#[ignore = "writes the golden tests' fixtures; run by hand when a format changes"]
fn regenerate_device_fixtures() {
    let (_relay, mut a, mut b) = paired_couple();
    a.now = Some("2027-01-01".into());
    b.now = Some("2027-01-02".into());
    b.ok(&["key", "rotate"]);
    a.ok(&["sync"]);
    let dir = cmd_dir();
    for f in ["key.age", "space.age"] {
        let bytes = std::fs::read(a.home.join(f)).expect("key store");
        write(&dir.join("device-list.in/home").join(f), &bytes);
    }
    write(
        &dir.join("device-list.in/pass.txt"),
        format!("{PASSPHRASE}\n").as_bytes(),
    );
    for (name, args) in [
        ("device-list", "\"device\", \"list\""),
        ("device-list-json", "\"--json\", \"device\", \"list\""),
        ("status-new-device", "\"status\""),
    ] {
        let toml = format!(
            "bin.name = \"troth\"\nargs = [\"--home\", \"home\", \"--passphrase-file\", \"pass.txt\", \"--offline\", {args}]\n\
             fs.cwd = \"device-list.in\"\n\n[env.add]\nTROTH_NOW = \"2027-01-03\"\n"
        );
        write(&dir.join(format!("{name}.toml")), toml.as_bytes());
    }
}

/// Issue 17's forgetting goldens: A's key store after B shortened retention
/// to 60 days and A proposed keeping things for 90, for `retention`.
#[test]
#[ignore = "writes the golden tests' fixtures; run by hand when a format changes"]
fn regenerate_retention_fixtures() {
    let (_relay, mut a, mut b) = paired_couple();
    a.now = Some("2027-01-01".into());
    b.now = Some("2027-01-01".into());
    b.ok(&["retention", "shorten", "60"]);
    a.ok(&["retention", "propose", "90"]);
    let dir = cmd_dir();
    for f in ["key.age", "space.age"] {
        let bytes = std::fs::read(a.home.join(f)).expect("key store");
        write(&dir.join("retention.in/home").join(f), &bytes);
    }
    write(
        &dir.join("retention.in/pass.txt"),
        format!("{PASSPHRASE}\n").as_bytes(),
    );
    for (name, args) in [
        ("retention", "\"retention\""),
        ("retention-json", "\"--json\", \"retention\""),
    ] {
        let toml = format!(
            "bin.name = \"troth\"\nargs = [\"--home\", \"home\", \"--passphrase-file\", \"pass.txt\", \"--offline\", {args}]\n\
             fs.cwd = \"retention.in\"\n\n[env.add]\nTROTH_NOW = \"2027-01-03\"\n"
        );
        write(&dir.join(format!("{name}.toml")), toml.as_bytes());
    }
    // Out of range: one calm line, before anything is unlocked or sent.
    write(
        &dir.join("retention-out-of-range.toml"),
        b"bin.name = \"troth\"\nargs = [\"--home\", \"home\", \"--passphrase-file\", \"pass.txt\", \"--offline\", \"retention\", \"shorten\", \"7\"]\n\
          fs.cwd = \"retention.in\"\nstatus.code = 1\n\n[env.add]\nTROTH_NOW = \"2027-01-03\"\n",
    );
}
