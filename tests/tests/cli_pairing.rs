//! Pairing failures through the real `troth` binary: a wrong code fails on
//! both sides and burns the code; a code cannot be used twice; nothing is
//! kept on either side.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use troth_tests::cli::{Person, Relay, assert_one_line, pair, snapshot};

#[test]
fn a_wrong_code_fails_on_both_sides_and_burns_the_code() {
    let relay = Relay::start();
    let a = Person::new();
    let b = Person::new();
    a.ok(&["init"]);
    b.ok(&["init"]);
    let a_before = snapshot(&a.home);
    let b_before = snapshot(&b.home);

    let mut start = a
        .cmd(&["pair", "start", "--relay", &relay.url, "--timeout", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pair start");
    let mut stdout = BufReader::new(start.stdout.take().expect("stdout"));
    let mut code = String::new();
    stdout.read_line(&mut code).expect("code");
    let code = code.trim().to_owned();
    let mut parts = code.split('-');
    let mailbox = parts.next().expect("number");
    let first = parts.next().expect("word");
    let other = if first == "acorn" { "amber" } else { "acorn" };
    let wrong = format!("{mailbox}-{other}-{}", parts.next().expect("word"));

    let out = b.fails(&["pair", "join", &wrong, "--relay", &relay.url]);
    let err = assert_one_line(&out, 6);
    assert!(err.contains("code didn't match"), "{err}");

    let status = start.wait().expect("wait");
    let mut err = String::new();
    start
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    assert_eq!(status.code(), Some(6), "{err}");
    assert!(err.contains("code didn't match"), "{err}");

    // The right code is burnt now.
    let out = b.fails(&["pair", "join", &code, "--relay", &relay.url]);
    assert_one_line(&out, 6);
    assert_eq!(snapshot(&a.home), a_before);
    assert_eq!(snapshot(&b.home), b_before);

    // A malformed code is refused before anything is sent.
    let out = b.fails(&["pair", "join", "seven-crystal-orbit", "--relay", &relay.url]);
    let err = assert_one_line(&out, 6);
    assert!(err.contains("7-crystal-orbit"), "{err}");

    // And they can still pair with a fresh code; then neither can pair again.
    pair(&a, &b, &relay);
    let out = a.fails(&["pair", "start", "--relay", &relay.url]);
    assert_one_line(&out, 1);
}
