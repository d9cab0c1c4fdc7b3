//! A real PostgreSQL for tests: Debian's PostgreSQL 15, started once per
//! test process in a temporary folder on a free loopback port (as the
//! `postgres` user when run as root: the server refuses root), exactly as
//! ../shared/TOOLCHAIN.md shows; a fresh database per test. A watcher
//! process stops the server and removes its folder when the test process
//! exits, however it exits. `cargo xtask setup` installs the package.
//!
//! `fsync=off` (API and model tests only; never for crash tests):
//! `synchronous_commit` stays on, as the relay requires.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use troth_relay::store::PgStore;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// The running server.
pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
}

fn as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command run as the `postgres` user when we are root.
fn pg_command(program: &str) -> Command {
    if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn start() -> Server {
    let initdb = format!("{BIN}/initdb");
    assert!(
        std::path::Path::new(&initdb).exists(),
        "PostgreSQL 15 is not installed ({initdb} is missing): run `cargo xtask setup` \
         (or `apt-get install -y postgresql`)"
    );
    let dir = tempfile::Builder::new()
        .prefix("troth-pg-")
        .tempdir()
        .expect("tempdir")
        .keep();
    if as_root() {
        let ok = Command::new("chown")
            .args(["postgres:", &dir.display().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "chown postgres: {}", dir.display());
    }
    let db = dir.join("db");
    let out = pg_command(&initdb)
        .args(["-D", &db.display().to_string()])
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ])
        .stdout(Stdio::null())
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another process may take the port between our check and the start: try a few.
    for attempt in 0..5 {
        let port = free_port();
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c fsync=off -c full_page_writes=off -c max_connections=300",
            dir.display()
        );
        let out = pg_command(&format!("{BIN}/pg_ctl"))
            .args(["-D", &db.display().to_string()])
            .args(["-l", &dir.join("log").display().to_string()])
            .args(["-w", "-t", "60", "start", "-o", &opts])
            .stdout(Stdio::null())
            .output()
            .expect("run pg_ctl");
        if out.status.success() {
            watch(&dir, &db);
            return Server { port, dir };
        }
        eprintln!(
            "postgres did not start on port {port} (attempt {attempt}): {}",
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
    }
    panic!("PostgreSQL did not start; its log is in {}", dir.display());
}

/// Stops the server and removes its folder once this process is gone.
fn watch(dir: &std::path::Path, db: &std::path::Path) {
    let me = std::process::id();
    let stop = if as_root() {
        format!(
            "runuser -u postgres -- {BIN}/pg_ctl -D '{}' -m immediate stop",
            db.display()
        )
    } else {
        format!("{BIN}/pg_ctl -D '{}' -m immediate stop", db.display())
    };
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf '{}'",
        dir.display()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// The test process's server, started on first use.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(start)
}

/// Connection settings for database `name` on the test server.
pub fn config(name: &str) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(server().port)
        .user("postgres")
        .dbname(name);
    c
}

/// The URL of database `name` (for the binary's `--database-url`).
pub fn url(name: &str) -> String {
    format!("postgres://postgres@127.0.0.1:{}/{name}", server().port)
}

/// Creates a fresh, empty database and returns its name.
pub async fn fresh_database() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "troth_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let (client, conn) = config("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    let task = tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    drop(client);
    let _ = task.await;
    name
}

/// A PostgreSQL store on a fresh database (schema applied).
pub async fn fresh_store() -> (PgStore, String) {
    let name = fresh_database().await;
    let store = PgStore::connect(config(&name), 8, true)
        .await
        .expect("connect the store");
    (store, name)
}

/// A store on an existing database (another relay process's view of it).
pub async fn store_on(name: &str) -> PgStore {
    PgStore::connect(config(name), 8, true)
        .await
        .expect("connect the store")
}
