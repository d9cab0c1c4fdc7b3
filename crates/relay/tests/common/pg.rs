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

/// A three-node PostgreSQL cluster for crash and failover tests, built as
/// ../shared/TOOLCHAIN.md shows: a primary and two synchronous standbys
/// (`synchronous_standby_names = 'ANY 1 (n1, n2, n3)'`, each standby's
/// `primary_conninfo` written by hand with its `application_name`, never
/// `pg_basebackup -R`), `fsync` and `synchronous_commit` on.
pub struct Cluster {
    pub dir: PathBuf,
    /// Each node's name (n1…n3) and port.
    pub nodes: Vec<(String, u16)>,
    /// The index of the current primary.
    pub primary: usize,
}

fn run_ok(mut c: Command, what: &str) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Cluster {
    /// Starts the cluster and waits until both standbys are synchronous candidates.
    pub fn start() -> Cluster {
        let initdb = format!("{BIN}/initdb");
        assert!(
            std::path::Path::new(&initdb).exists(),
            "PostgreSQL 15 is not installed: run `cargo xtask setup`"
        );
        let dir = tempfile::Builder::new()
            .prefix("troth-pgc-")
            .tempdir()
            .expect("tempdir")
            .keep();
        if as_root() {
            run_ok(
                {
                    let mut c = Command::new("chown");
                    c.args(["postgres:", &dir.display().to_string()]);
                    c
                },
                "chown",
            );
        }
        let nodes: Vec<(String, u16)> = (1..=3).map(|i| (format!("n{i}"), free_port())).collect();
        let c = Cluster {
            dir,
            nodes,
            primary: 0,
        };
        let data = c.data(0);
        let mut cmd = pg_command(&initdb);
        cmd.args(["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .args(["--locale=C.UTF-8"]);
        run_ok(cmd, "initdb");
        c.append_conf(
            0,
            &format!(
                "listen_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
                 synchronous_standby_names = 'ANY 1 (n1, n2, n3)'\nsynchronous_commit = on\n\
                 max_connections = 200\nwal_keep_size = '256MB'\n",
                c.dir.display()
            ),
        );
        c.append_hba(0, "host replication postgres 127.0.0.1/32 trust\n");
        c.start_node(0);
        c.watch();
        for i in [1, 2] {
            c.make_standby(i);
        }
        c.wait_sync(2);
        c
    }

    fn data(&self, i: usize) -> String {
        self.dir.join(&self.nodes[i].0).display().to_string()
    }

    fn append_conf(&self, i: usize, text: &str) {
        let p = self.dir.join(&self.nodes[i].0).join("postgresql.conf");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .expect("open postgresql.conf");
        std::io::Write::write_all(
            &mut f,
            format!("port = {}\n{text}", self.nodes[i].1).as_bytes(),
        )
        .expect("write postgresql.conf");
    }

    fn append_hba(&self, i: usize, text: &str) {
        let p = self.dir.join(&self.nodes[i].0).join("pg_hba.conf");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .expect("open pg_hba.conf");
        std::io::Write::write_all(&mut f, text.as_bytes()).expect("write pg_hba.conf");
    }

    fn start_node(&self, i: usize) {
        let log = self.dir.join(format!("{}.log", self.nodes[i].0));
        let mut cmd = pg_command(&format!("{BIN}/pg_ctl"));
        cmd.args(["-D", &self.data(i), "-l"])
            .arg(&log)
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::null());
        let out = cmd.output().unwrap_or_else(|e| panic!("pg_ctl start: {e}"));
        if !out.status.success() {
            // The folder goes with the test: show the server's own words.
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            panic!(
                "pg_ctl start of {} (port {}) failed: {}\n{}",
                self.nodes[i].0,
                self.nodes[i].1,
                String::from_utf8_lossy(&out.stderr),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }

    /// Stops every node and removes the folder once this process is gone.
    fn watch(&self) {
        let me = std::process::id();
        let stops: Vec<String> = (0..3)
            .map(|i| {
                let d = self.data(i);
                if as_root() {
                    format!("runuser -u postgres -- {BIN}/pg_ctl -D '{d}' -m immediate stop")
                } else {
                    format!("{BIN}/pg_ctl -D '{d}' -m immediate stop")
                }
            })
            .collect();
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; {} >/dev/null 2>&1; rm -rf '{}'",
            stops
                .iter()
                .map(|s| format!("{s} >/dev/null 2>&1"))
                .collect::<Vec<_>>()
                .join("; "),
            self.dir.display()
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }

    /// A fresh standby `i` of the current primary (its folder wiped).
    fn make_standby(&self, i: usize) {
        let data = self.data(i);
        let _ = std::fs::remove_dir_all(&data);
        let p = self.nodes[self.primary].1.to_string();
        let mut cmd = pg_command(&format!("{BIN}/pg_basebackup"));
        cmd.args(["-h", "127.0.0.1", "-p", &p, "-U", "postgres", "-D", &data])
            .args(["-X", "stream", "-c", "fast"]);
        run_ok(cmd, "pg_basebackup");
        let mut touch = pg_command("touch");
        touch.arg(format!("{data}/standby.signal"));
        run_ok(touch, "touch standby.signal");
        // Written by hand: `pg_basebackup -R` would put an application_name
        // in postgresql.auto.conf that overrides this one, and the standby
        // would be asynchronous.
        self.append_conf(i, &self.conninfo(i));
        // A postmaster killed with -9 leaves its socket's lock file in the
        // shared socket folder, and while nobody has reaped it yet (its
        // parent is whichever process adopted it) its pid still answers
        // kill(pid, 0): the new server would take it for a live one and
        // refuse to start. It is dead (SIGKILL), so the files are stale.
        let port = self.nodes[i].1;
        for f in [format!(".s.PGSQL.{port}.lock"), format!(".s.PGSQL.{port}")] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
        self.start_node(i);
    }

    fn conninfo(&self, i: usize) -> String {
        format!(
            "primary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name={}'\n",
            self.nodes[self.primary].1, self.nodes[i].0
        )
    }

    /// `psql -Atc sql` on node `i`.
    pub fn psql(&self, i: usize, sql: &str) -> Result<String, String> {
        self.psql_in(i, "postgres", sql)
    }

    /// `psql -Atc sql` on node `i`, database `db`.
    pub fn psql_in(&self, i: usize, db: &str, sql: &str) -> Result<String, String> {
        let out = pg_command(&format!("{BIN}/psql"))
            .args(["-h", "127.0.0.1", "-p", &self.nodes[i].1.to_string()])
            .args(["-U", "postgres", "-d", db, "-Atc", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    /// Waits until the primary has `n` standbys in the synchronous quorum.
    pub fn wait_sync(&self, n: usize) {
        let t = std::time::Instant::now();
        loop {
            let q = self.psql(
                self.primary,
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'quorum' AND state = 'streaming'",
            );
            if q.as_deref().ok().and_then(|s| s.parse::<usize>().ok()) >= Some(n) {
                return;
            }
            assert!(
                t.elapsed() < std::time::Duration::from_secs(60),
                "standbys not synchronous: {q:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// A URL naming every node, for the primary wherever it is.
    pub fn url(&self, db: &str) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|(_, p)| format!("127.0.0.1:{p}"))
            .collect();
        format!(
            "postgres://postgres@{}/{db}?target_session_attrs=read-write&connect_timeout=3",
            hosts.join(",")
        )
    }

    /// Creates database `db` on the primary.
    pub fn create_database(&self, db: &str) {
        self.psql(self.primary, &format!("CREATE DATABASE {db}"))
            .expect("create database");
    }

    /// The failover: `kill -9` the primary's postmaster, promote the standby
    /// that received the most WAL (`pg_last_wal_receive_lsn()`), point the
    /// other standby at it, and rebuild the old primary as a new standby.
    /// Returns when the primary was killed and how long until the standby
    /// was promoted.
    pub fn fail_over(&mut self) -> (std::time::Instant, std::time::Duration) {
        let old = self.primary;
        let pid_file = self.dir.join(&self.nodes[old].0).join("postmaster.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.lines().next().map(str::to_string))
            .expect("the primary's pid");
        let t = std::time::Instant::now();
        run_ok(
            {
                let mut c = Command::new("kill");
                c.args(["-9", &pid]);
                c
            },
            "kill -9 the primary",
        );
        let standbys: Vec<usize> = (0..3).filter(|i| *i != old).collect();
        let lsn = |i: usize| -> u128 {
            self.psql(i, "SELECT pg_last_wal_receive_lsn() - '0/0'")
                .ok()
                .and_then(|s| s.split('.').next().and_then(|n| n.parse().ok()))
                .unwrap_or(0)
        };
        let (a, b) = (standbys[0], standbys[1]);
        let (new, other) = if lsn(a) >= lsn(b) { (a, b) } else { (b, a) };
        let mut cmd = pg_command(&format!("{BIN}/pg_ctl"));
        cmd.args(["-D", &self.data(new), "-w", "-t", "60", "promote"])
            .stdout(Stdio::null());
        run_ok(cmd, "pg_ctl promote");
        self.primary = new;
        let down = t.elapsed();
        // The other standby follows the new primary (recovery_target_timeline
        // is `latest` by default): a new primary_conninfo and a reload.
        self.append_conf(other, &self.conninfo(other));
        let mut cmd = pg_command(&format!("{BIN}/pg_ctl"));
        cmd.args(["-D", &self.data(other), "reload"])
            .stdout(Stdio::null());
        run_ok(cmd, "pg_ctl reload");
        // The old primary's backends die with their postmaster; then its
        // node comes back as a standby of the new primary.
        std::thread::sleep(std::time::Duration::from_millis(300));
        self.make_standby(old);
        self.wait_sync(2);
        (t, down)
    }
}
