//! Support for the CLI's end-to-end tests: the real `troth` and
//! `troth-relay` binaries (built once per test process with escargot), a
//! relay on a loopback port, people with their own key stores, pairing,
//! snapshots of a key store, a fake relay that answers garbage, and the Go
//! `age` tool for interop checks.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The passphrase every test person uses.
pub const PASSPHRASE: &str = "quiet river lantern 42";

fn build(package: &str, bin: &str) -> PathBuf {
    // Cargo set these for this test binary's package. Passed on, they would
    // differ from what the outer `cargo test` saw, and build scripts that
    // watch them (ring's) would rebuild ring and all above it, once for the
    // tests and again for the next `cargo test`.
    let mut cargo = escargot::CargoBuild::new();
    for (k, _) in std::env::vars_os() {
        if let Some(k) = k.to_str() {
            if k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_MANIFEST_")
                || k.starts_with("CARGO_BIN_")
                || k == "CARGO_CRATE_NAME"
                || k == "CARGO_PRIMARY_PACKAGE"
            {
                cargo = cargo.env_remove(k);
            }
        }
    }
    let run = cargo
        .package(package)
        .bin(bin)
        .current_release()
        .run()
        .unwrap_or_else(|e| panic!("building {bin}: {e}"));
    run.path().to_path_buf()
}

/// The `troth` binary.
pub fn troth_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build("troth-cli", "troth"))
}

/// The `troth-relay` binary.
pub fn relay_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build("troth-relay", "troth-relay"))
}

/// A relay process on a loopback port, killed on drop.
pub struct Relay {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The port.
    pub port: u16,
    _data: tempfile::TempDir,
}

impl Relay {
    /// Starts a relay on port 0 and waits for its `listening on` line.
    pub fn start() -> Relay {
        let data = tempfile::tempdir().expect("tempdir");
        Self::start_on("127.0.0.1:0", data)
    }

    /// Starts a relay on port 0 with more flags (e.g. `--web-origin …`).
    pub fn start_with(args: &[&str]) -> Relay {
        let data = tempfile::tempdir().expect("tempdir");
        Self::start_args("127.0.0.1:0", data, args)
    }

    fn start_on(listen: &str, data: tempfile::TempDir) -> Relay {
        Self::start_args(listen, data, &[])
    }

    fn start_args(listen: &str, data: tempfile::TempDir, args: &[&str]) -> Relay {
        let mut child = Command::new(relay_bin())
            .args(args)
            .args(["--listen", listen, "--data"])
            .arg(data.path().join("db"))
            .env("TROTH_RELAY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the relay");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("relay line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected relay output: {line:?}"))
            .to_owned();
        let port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        Relay {
            child,
            url: format!("http://{addr}"),
            port,
            _data: data,
        }
    }

    /// Kills the relay and starts it again on the same port and data.
    pub fn restart(mut self) -> Relay {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let data = std::mem::replace(&mut self._data, tempfile::tempdir().expect("tempdir"));
        Self::start_on(&format!("127.0.0.1:{}", self.port), data)
    }

    /// Stops the relay (its port becomes free).
    pub fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One person with their own key store.
pub struct Person {
    /// Their key store folder.
    pub home: PathBuf,
    /// `TROTH_NOW` for their commands, if set.
    pub now: Option<String>,
    _dir: tempfile::TempDir,
}

impl Default for Person {
    fn default() -> Self {
        Self::new()
    }
}

impl Person {
    /// A person with an empty key store folder.
    pub fn new() -> Person {
        let dir = tempfile::tempdir().expect("tempdir");
        Person {
            home: dir.path().join("home"),
            now: None,
            _dir: dir,
        }
    }

    /// A scratch folder beside the key store (for exports).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self._dir.path().join(name)
    }

    /// A `troth` command as this person (passphrase from the environment,
    /// a low scrypt work factor, no colour).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(troth_bin());
        c.args(args)
            .env("TROTH_HOME", &self.home)
            .env("TROTH_PASSPHRASE", PASSPHRASE)
            .env("TROTH_WORK_FACTOR", "10")
            .env("NO_COLOR", "1")
            .env_remove("TROTH_RELAY")
            .env_remove("TROTH_NOW")
            .stdin(Stdio::null());
        if let Some(n) = &self.now {
            c.env("TROTH_NOW", n);
        }
        c
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run troth");
        assert!(
            out.status.success(),
            "troth {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// Runs a command with `--json` that must succeed; returns its JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.ok(&a);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// Proposes (and signs) an agreement from `template` with a review date
    /// (`["--review-in", "30d"]`, `["--review-on", "2027-02-01"]`); returns
    /// its id.
    pub fn propose(&self, template: &str, review: [&str; 2]) -> String {
        let p = self.json(&[
            "agreement",
            "propose",
            "--template",
            template,
            review[0],
            review[1],
        ]);
        p["id"].as_str().expect("id").to_owned()
    }

    /// Reads an agreement's pending version (as signing asks) and signs it.
    pub fn show_and_sign(&self, id: &str) {
        self.ok(&["agreement", "show", &id[..8]]);
        self.ok(&["agreement", "sign", &id[..8]]);
    }

    /// Runs a command that must fail; returns the output.
    pub fn fails(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().expect("run troth");
        assert!(
            !out.status.success(),
            "troth {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        out
    }
}

/// Asserts an output is a failure with `code` and exactly one calm line on stderr.
pub fn assert_one_line(out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(
        err.lines().count(),
        1,
        "one line expected on stderr, got: {err:?}"
    );
    assert!(err.starts_with("troth: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// A relay and two people with keys, paired on it (`a` started, `b` joined).
pub fn paired_couple() -> (Relay, Person, Person) {
    let relay = Relay::start();
    let a = Person::new();
    let b = Person::new();
    a.ok(&["init"]);
    b.ok(&["init"]);
    pair(&a, &b, &relay);
    (relay, a, b)
}

/// Pairs `a` (who starts) and `b` (who joins) on `relay`; returns both outputs.
pub fn pair(a: &Person, b: &Person, relay: &Relay) -> (String, String) {
    pair_at(a, b, &relay.url)
}

/// Pairs `a` and `b` on the relay at `url` (e.g. a malicious one), then
/// both confirm who sets the conditions (`troth roles confirm`), as they
/// must before anything can be proposed.
pub fn pair_at(a: &Person, b: &Person, url: &str) -> (String, String) {
    let out = pair_unconfirmed(a, b, url);
    a.ok(&["roles", "confirm"]);
    b.ok(&["roles", "confirm"]);
    out
}

impl Person {
    /// Starts a command that prints a one-time code alone on the first line
    /// of standard output and then waits (`pair start`, `device link`);
    /// returns the process, the code, and the rest of its standard output.
    /// Panics, with what the command said, if the first line is not a code.
    pub fn spawn_with_code(&self, args: &[&str]) -> (Child, String, BufReader<ChildStdout>) {
        let mut child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn troth");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut code = String::new();
        stdout.read_line(&mut code).expect("code line");
        let code = code.trim().to_owned();
        if code.split('-').count() != 3 {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("not a code alone on the first line: {code:?}; troth {args:?} said: {err}");
        }
        (child, code, stdout)
    }
}

/// Pairs `a` (who starts, in the leading role) and `b` on the relay at
/// `url`; neither confirms the roles yet.
pub fn pair_unconfirmed(a: &Person, b: &Person, url: &str) -> (String, String) {
    let (mut start, code, mut stdout) =
        a.spawn_with_code(&["pair", "start", "--relay", url, "--timeout", "60s"]);
    let joined = b.ok(&["pair", "join", &code, "--relay", url]);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("rest");
    let status = start.wait().expect("wait");
    let mut err = String::new();
    if let Some(mut e) = start.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "pair start failed: {rest}\n{err}");
    (rest, joined)
}

/// Every file under `dir` with its bytes (for "nothing changed" checks).
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(snapshot(&p));
            } else if let Ok(b) = std::fs::read(&p) {
                out.insert(p, b);
            }
        }
    }
    out
}

/// A fake relay: answers every request on `port` with `response` (raw
/// HTTP bytes) until dropped.
pub struct FakeRelay {
    stop: Arc<AtomicBool>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
}

impl FakeRelay {
    /// Listens on `port` (0 for any) and answers with `response`.
    pub fn start(port: u16, response: Vec<u8>) -> FakeRelay {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("bind {port}: {e}"),
            }
        };
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut sock, _)) => {
                        let _ = sock.set_nonblocking(false);
                        let _ = sock.set_read_timeout(Some(Duration::from_millis(500)));
                        let mut buf = [0u8; 65536];
                        let _ = sock.read(&mut buf);
                        let _ = sock.write_all(&response);
                        let _ = sock.flush();
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        FakeRelay {
            stop,
            url: format!("http://127.0.0.1:{port}"),
            port,
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for FakeRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop's next poll; give the port back.
        std::thread::sleep(Duration::from_millis(60));
    }
}

/// An HTTP answer with a status line, a content type and a body.
pub fn http_response(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// The Go `age` tool, if installed (`cargo xtask setup` installs it).
pub fn go_age() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin/age");
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: the Go `age` tool is not installed (/usr/bin/age); run `cargo xtask setup` or `apt-get install age`."
        );
        None
    }
}

/// Decrypts a passphrase-protected age file with the Go `age` tool, which
/// reads passphrases only from a terminal: `script` gives it one.
pub fn go_age_decrypt_passphrase(age: &Path, file: &Path, passphrase: &str) -> Option<Vec<u8>> {
    let out = file.with_extension("decrypted");
    let script = PathBuf::from("/usr/bin/script");
    if !script.exists() {
        eprintln!(
            "SKIPPED: `script` (util-linux) is needed to give `age` a terminal for the passphrase."
        );
        return None;
    }
    let cmdline = format!(
        "{} -d -o {} {}",
        age.display(),
        out.display(),
        file.display()
    );
    let mut child = Command::new(script)
        .args(["-qec", &cmdline, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("script");
    std::thread::sleep(Duration::from_millis(700));
    if let Some(mut i) = child.stdin.take() {
        let _ = writeln!(i, "{passphrase}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let status = child.wait().expect("wait");
    assert!(status.success(), "age -d failed");
    Some(std::fs::read(&out).expect("decrypted output"))
}
