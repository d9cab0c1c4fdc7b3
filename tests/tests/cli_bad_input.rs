//! Bad input through the real `troth` binary: a wrong passphrase, a damaged
//! key file, an unreachable relay, and relays answering garbage or lying.
//! Each time: one readable line on stderr, a non-zero exit, and nothing in
//! the key store changed.

use troth_tests::cli::{
    FakeRelay, Person, assert_one_line, http_response, paired_couple, snapshot,
};

#[test]
fn wrong_passphrase_and_damaged_key_files_change_nothing() {
    let a = Person::new();
    a.ok(&["init"]);
    // A second init never replaces the key.
    let before = snapshot(&a.home);
    let out = a.fails(&["init"]);
    assert_one_line(&out, 1);
    assert_eq!(snapshot(&a.home), before);

    let out = a
        .cmd(&["id"])
        .env("TROTH_PASSPHRASE", "not my passphrase")
        .output()
        .expect("run");
    let err = assert_one_line(&out, 3);
    assert!(err.contains("passphrase"), "{err}");
    assert_eq!(snapshot(&a.home), before);

    let backup = a.scratch("backup.age");
    let out = a
        .cmd(&["key", "export", "--out", backup.to_str().expect("path")])
        .env("TROTH_PASSPHRASE", "not my passphrase")
        .output()
        .expect("run");
    assert_one_line(&out, 3);
    assert!(!backup.exists());

    // A passphrase file works like the variable; an empty one is refused.
    let pf = a.scratch("pass.txt");
    std::fs::write(&pf, format!("{}\n", troth_tests::cli::PASSPHRASE)).expect("write");
    a.cmd(&["id", "--passphrase-file", pf.to_str().expect("path")])
        .env_remove("TROTH_PASSPHRASE")
        .output()
        .map(|o| assert!(o.status.success()))
        .expect("run");
    std::fs::write(&pf, "\n").expect("write");
    let out = a
        .cmd(&["id", "--passphrase-file", pf.to_str().expect("path")])
        .env_remove("TROTH_PASSPHRASE")
        .output()
        .expect("run");
    assert_one_line(&out, 3);

    // Damaged key files: garbage, and a truncated age file.
    let key = a.home.join("key.age");
    let good = std::fs::read(&key).expect("key");
    for bad in [
        b"garbage".to_vec(),
        good[..good.len() / 2].to_vec(),
        Vec::new(),
    ] {
        std::fs::write(&key, &bad).expect("write");
        let before = snapshot(&a.home);
        let out = a.fails(&["id"]);
        let err = assert_one_line(&out, 3);
        assert!(
            err.contains("Troth key") || err.contains("passphrase"),
            "{err}"
        );
        assert_eq!(snapshot(&a.home), before);
    }

    // No key store at all.
    let nobody = Person::new();
    let out = nobody.fails(&["status"]);
    let err = assert_one_line(&out, 3);
    assert!(err.contains("troth init"), "{err}");
}

#[test]
fn unreachable_and_garbage_relays_change_nothing() {
    let (relay, a, _b) = paired_couple();
    a.ok(&["agreement", "propose", "--template", "bed"]);
    let port = relay.stop();
    let before = snapshot(&a.home);

    // Unreachable: the relay is gone.
    for args in [
        vec!["sync"],
        vec!["checkin", "home"],
        vec!["agreement", "list"],
    ] {
        let out = a.fails(&args);
        let err = assert_one_line(&out, 4);
        assert!(err.contains("Can't reach the relay"), "{err}");
        assert_eq!(snapshot(&a.home), before);
    }
    // What this device verified before is still there to read.
    let list = a.json(&["agreement", "list", "--offline"]);
    assert_eq!(list["agreements"][0]["title"], "Sharing the bed");
    assert_eq!(snapshot(&a.home), before);

    let fresh = Person::new();
    fresh.ok(&["init"]);
    let fresh_before = snapshot(&fresh.home);
    let out = fresh.fails(&[
        "pair",
        "start",
        "--relay",
        &format!("http://127.0.0.1:{port}"),
    ]);
    assert_one_line(&out, 4);
    let out = fresh.fails(&["pair", "start", "--relay", "relay.example"]);
    assert_one_line(&out, 4);
    assert_eq!(snapshot(&fresh.home), fresh_before);

    // Something else answers on the relay's port.
    let zero = "0".repeat(64);
    let answers: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02 not http at all\r\n\r\n".to_vec(),
        http_response("200 OK", "text/html", b"<html>hello</html>"),
        http_response("200 OK", "application/json", br#"{"events": "x"}"#),
        http_response(
            "200 OK",
            "application/json",
            br#"{"events": ["bm90IGFuIGV2ZW50"], "head": {"seq": 9, "hash": "00"}, "more": false}"#,
        ),
        http_response("500 Internal Server Error", "text/plain", b"oops"),
        http_response("200 OK", "application/json", &vec![b' '; 12 * 1024 * 1024]),
        http_response(
            "200 OK",
            "application/json",
            format!(
                r#"{{"events": ["{}"], "head": {{"seq": 9, "hash": "{zero}"}}, "more": false}}"#,
                "A".repeat(200)
            )
            .as_bytes(),
        ),
    ];
    for answer in answers {
        let fake = FakeRelay::start(port, answer);
        let out = a.fails(&["sync"]);
        let err = assert_one_line(&out, 4);
        assert!(err.contains("relay"), "{err}");
        assert_eq!(snapshot(&a.home), before);
        let out = a.fails(&["request-checkin"]);
        assert_one_line(&out, 4);
        assert_eq!(snapshot(&a.home), before);
        // Pairing against it fails cleanly too.
        let out = fresh.fails(&["pair", "start", "--relay", &fake.url]);
        assert_one_line(&out, 4);
        assert_eq!(snapshot(&fresh.home), fresh_before);
        drop(fake);
    }

    // A relay that lies about the history (claims it is shorter: a rollback).
    let lie = format!(r#"{{"events": [], "head": {{"seq": 0, "hash": "{zero}"}}, "more": false}}"#);
    let fake = FakeRelay::start(
        port,
        http_response("200 OK", "application/json", lie.as_bytes()),
    );
    let out = a.fails(&["sync"]);
    let err = assert_one_line(&out, 5);
    assert!(err.contains("Compare the state code"), "{err}");
    assert_eq!(snapshot(&a.home), before);
    drop(fake);
}

/// `troth … | head`: a reader that closes the pipe early gets no panic and
/// no backtrace on the terminal, only a quiet exit (141, as a tool stopped
/// by SIGPIPE), or success if everything fit before the pipe closed.
#[test]
fn a_reader_closing_the_pipe_early_gets_a_quiet_exit() {
    let a = Person::new();
    for _ in 0..3 {
        let mut child = a
            .cmd(&["agreement", "templates"])
            .env("RUST_BACKTRACE", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run troth");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || out.status.code() == Some(141),
            "{:?}: {err}",
            out.status
        );
        assert!(err.is_empty(), "nothing on stderr: {err}");
    }
}
