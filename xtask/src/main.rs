//! `cargo xtask`: the project's build glue, in Rust rather than shell.
//!
//! - `cargo xtask test`: everything CI checks, from a fresh clone. It first
//!   installs what the tests need (idempotently: each step is skipped when its
//!   tool is already there), then runs formatting, lints, the wasm build, every
//!   Rust test and the browser tests.
//! - `cargo xtask setup`: only the installs.
//! - `cargo xtask fuzz [SECONDS]`: every fuzz target for SECONDS each (long runs).
//! - `cargo xtask mutants`: mutation testing of core's security-critical
//!   modules (a long run; SECURITY.md).
//! - `cargo xtask reproduce`: builds the web client's release bundle again
//!   from a copy of the checkout at another path, with a fresh target
//!   folder, and checks that its `release.json` (every asset's SHA-256 and
//!   the bundle hash) is byte-identical to this checkout's (part of `test`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Variables Cargo sets for the package it runs (here xtask). Some build
/// scripts (ring's) rerun when one of them changes, so a nested `cargo`
/// that inherits xtask's values and one that does not (the tests' own
/// builds) would rebuild ring and everything above it, back and forth.
fn clean_env(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || k.starts_with("CARGO_BIN_")
            || k == "CARGO_CRATE_NAME"
            || k == "CARGO_PRIMARY_PACKAGE"
        {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn run(cmd: &mut Command) -> Result<()> {
    let cmd = clean_env(cmd);
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Test counts gathered from the runners' own summary lines.
#[derive(Default)]
struct Counts {
    passed: u64,
    failed: u64,
}

impl Counts {
    /// Reads `test result: ok. N passed; M failed; …` (cargo) and
    /// `# pass N` / `# fail M` (node's test runner).
    fn read(&mut self, line: &str) {
        let num = |s: &str| s.trim().parse::<u64>().ok();
        if let Some(rest) = line.trim().strip_prefix("test result:") {
            for part in rest.split(';') {
                let words: Vec<&str> = part.split_whitespace().collect();
                if let [.., n, what] = words.as_slice() {
                    match *what {
                        "passed" => self.passed += num(n).unwrap_or(0),
                        "failed" => self.failed += num(n).unwrap_or(0),
                        _ => {}
                    }
                }
            }
        } else if let Some(n) = line.trim().strip_prefix("# pass ") {
            self.passed += num(n).unwrap_or(0);
        } else if let Some(n) = line.trim().strip_prefix("# fail ") {
            self.failed += num(n).unwrap_or(0);
        }
    }
}

/// Runs a test command, echoing its output and counting its results.
fn run_counting(cmd: &mut Command, counts: &mut Counts) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let cmd = clean_env(cmd);
    eprintln!("xtask: running {cmd:?}");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.unwrap_or_default();
            println!("{line}");
            counts.read(&line);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs Debian packages that are missing; apt-get update runs once, only
/// when something is missing (checked by the program's presence on the PATH).
fn apt_install(packages: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(program, _)| !have(program))
        .map(|(_, pkg)| *pkg)
        .collect();
    apt_get_install(&missing)
}

/// Installs these Debian packages (none: nothing to do).
fn apt_get_install(missing: &[&str]) -> Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    if !have("apt-get") {
        bail!("these tools are missing and there is no apt-get to install them: {missing:?}");
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let apt = |args: &[&str]| -> Result<()> {
        let mut c = if is_root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut c)
    };
    apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(missing.iter().copied());
    apt(&args)
}

fn setup() -> Result<()> {
    // The wasm target comes from rust-toolchain.toml; make sure it is there even
    // when the toolchain was installed before the file listed it.
    run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    // Go age (interop tests), Chromium (browser tests), PostgreSQL 15 (the
    // relay's PostgreSQL store tests start it themselves: tests/common/pg.rs).
    apt_install(&[
        ("age", "age"),
        ("chromium", "chromium"),
        ("/usr/lib/postgresql/15/bin/initdb", "postgresql"),
    ])?;
    if !have("cargo-fuzz") {
        run(cargo().args(["install", "cargo-fuzz"]))?;
    }
    // Mutation testing (`cargo xtask mutants`, a long run, not CI). It
    // installs from crates.io only without --locked.
    if !have("cargo-mutants") {
        run(cargo().args(["install", "cargo-mutants"]))?;
    }
    push_service_venv()?;
    let browser = root().join("tests/browser");
    if browser.join("package-lock.json").exists() {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&browser))?;
    }
    Ok(())
}

/// The relay's push tests (crates/relay/tests/push.rs) check its Web Push
/// against an implementation nobody here wrote: PyPI's `http_ece` (RFC 8291)
/// and `py_vapid` (RFC 8292), in a venv of their own beside the test push
/// service (tests/pushsvc). Made once; pinned versions.
fn push_service_venv() -> Result<()> {
    let dir = root().join("tests/pushsvc");
    let venv = dir.join(".venv");
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import http_ece, py_vapid"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ready {
        return Ok(());
    }
    // Debian splits the venv module (ensurepip) out of python3: a machine
    // can have python3 without it, so ask Python rather than the PATH.
    let has_venv = Command::new("python3")
        .args(["-c", "import ensurepip, venv"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_venv {
        apt_get_install(&["python3-venv"])?;
    }
    run(Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg("--clear")
        .arg(&venv))?;
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "http-ece==1.2.1",
        "py-vapid==1.9.6",
    ]))
}

fn test() -> Result<()> {
    setup()?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().args([
        "build",
        "--locked",
        "-p",
        "troth-core",
        "--target",
        "wasm32-unknown-unknown",
    ]))?;
    // Every suite runs even when an earlier one failed, so one red test does
    // not hide another; the failures are listed at the end.
    let mut counts = Counts::default();
    let mut failed = Vec::new();
    if let Err(e) = run_counting(
        cargo().args(["test", "--workspace", "--locked", "--no-fail-fast"]),
        &mut counts,
    ) {
        failed.push(e.to_string());
    }
    let browser = root().join("tests/browser");
    if browser.join("package.json").exists() {
        if let Err(e) = run_counting(
            Command::new("npm").args(["test"]).current_dir(&browser),
            &mut counts,
        ) {
            failed.push(e.to_string());
        }
    }
    if let Err(e) = fuzz(20) {
        failed.push(e.to_string());
    }
    if let Err(e) = reproduce() {
        failed.push(e.to_string());
    }
    // One closing line for whoever reads the end of the log.
    println!("tests: {} passed, {} failed", counts.passed, counts.failed);
    if !failed.is_empty() {
        bail!(
            "{} suite(s) failed:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    Ok(())
}

/// The fuzz targets, each run briefly from its committed corpus.
const FUZZ_TARGETS: [&str; 6] = [
    "event_decode",
    "content_decode",
    "certificate_decode",
    "chain_verify",
    "pairing_messages",
    "relay_requests",
];

/// Runs every fuzz target for `seconds` (nightly toolchain, outside the workspace).
fn fuzz(seconds: u32) -> Result<()> {
    let dir = root().join("fuzz");
    for t in FUZZ_TARGETS {
        std::fs::create_dir_all(dir.join("target/corpus-scratch").join(t))?;
        run(Command::new("cargo")
            .args(["+nightly", "fuzz", "run", "-O", t])
            // New inputs go to a scratch folder; the committed corpus is only read.
            .arg(format!("target/corpus-scratch/{t}"))
            .arg(format!("corpus/{t}"))
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-print_final_stats=1",
            ])
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO")
            .current_dir(&dir))?;
    }
    Ok(())
}

/// The security-critical modules mutation testing covers (SECURITY.md).
const MUTATED: [&str; 13] = [
    "crates/core/src/log.rs",
    "crates/core/src/members.rs",
    "crates/core/src/sign.rs",
    "crates/core/src/agreement.rs",
    "crates/core/src/state.rs",
    "crates/core/src/replica.rs",
    "crates/core/src/crypto.rs",
    "crates/core/src/keyfile.rs",
    "crates/core/src/pairing.rs",
    "crates/core/src/session.rs",
    "crates/core/src/request.rs",
    "crates/core/src/local.rs",
    "crates/core/src/text.rs",
];

/// Every mutant of core's security-critical modules against core's tests
/// (a long run: hours on 2 cores; SECURITY.md lists what survived and why).
fn mutants() -> Result<()> {
    setup()?;
    let mut cmd = cargo();
    cmd.args(["mutants", "-p", "troth-core", "-j", "1"]);
    for f in MUTATED {
        cmd.args(["-f", f]);
    }
    cmd.args([
        "--exclude-re",
        "describe|as_str|fmt|advice|impl Debug",
        "--",
        "--lib",
        "--test",
        "review_fixes",
        "--test",
        "journey",
        "--test",
        "vectors",
        "--test",
        "ed25519_edge_cases",
    ]);
    run(cmd.current_dir(root()))
}

/// `release.json` as `troth-web-assets` embeds it, built in `dir`.
fn release_json(dir: &Path, target: Option<&Path>) -> Result<String> {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "--locked",
        "-p",
        "troth-web-assets",
        "--example",
        "release",
    ])
    .current_dir(dir);
    if let Some(t) = target {
        cmd.env("CARGO_TARGET_DIR", t);
    } else {
        cmd.env_remove("CARGO_TARGET_DIR");
    }
    let cmd = clean_env(&mut cmd);
    eprintln!("xtask: running {cmd:?}");
    let out = cmd.output().context("cannot run cargo")?;
    if !out.status.success() {
        bail!(
            "building the web bundle in {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).context("release.json is not UTF-8")
}

/// Builds the release bundle a second time, elsewhere, and compares.
fn reproduce() -> Result<()> {
    let here = release_json(&root(), None)?;
    let scratch = std::env::temp_dir().join(format!("troth-reproduce-{}", std::process::id()));
    let copy = scratch.join("elsewhere");
    // The tracked files as they are in the working tree (uncommitted
    // changes included, so a local run compares like with like).
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root())
        .output()
        .context("cannot run git ls-files")?;
    for name in listed.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let rel = Path::new(std::str::from_utf8(name).context("a path that is not UTF-8")?);
        let from = root().join(rel);
        if !from.is_file() {
            continue;
        }
        let to = copy.join(rel);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::copy(&from, &to).with_context(|| format!("cannot copy {}", rel.display()))?;
    }
    let there = release_json(&copy, Some(&scratch.join("target")));
    let _ = std::fs::remove_dir_all(&scratch);
    let there = there?;
    if here != there {
        bail!(
            "the web bundle is not reproducible: built at {} it differs from this checkout's.\nhere:\n{here}\nthere:\n{there}",
            copy.display()
        );
    }
    let bundle = here
        .lines()
        .find_map(|l| l.trim().strip_prefix("\"bundle\": \""))
        .and_then(|l| l.strip_suffix("\","))
        .unwrap_or("?");
    println!("reproduce: the web bundle {bundle} built again at another path is identical");
    Ok(())
}

/// The failover test (crates/relay/tests/pg_failover.rs) for `cycles`
/// cycles instead of CI's one: a relay `kill -9`ed and restarted and the
/// PostgreSQL primary `kill -9`ed and a standby promoted, each cycle, with
/// the figures printed at the end (FAILOVER SUMMARY).
fn failover(cycles: u32) -> Result<()> {
    setup()?;
    run(cargo()
        .args([
            "test",
            "--locked",
            "-p",
            "troth-relay",
            "--test",
            "pg_failover",
            "--",
            "--nocapture",
        ])
        .env("TROTH_FAILOVER_CYCLES", cycles.to_string())
        .current_dir(root()))
}

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "test" => test(),
        "setup" => setup(),
        "mutants" => mutants(),
        "reproduce" => reproduce(),
        "failover" => {
            let cycles = std::env::args()
                .nth(2)
                .and_then(|s| s.parse().ok())
                .unwrap_or(20);
            failover(cycles)
        }
        "fuzz" => {
            let secs = std::env::args()
                .nth(2)
                .and_then(|s| s.parse().ok())
                .unwrap_or(600);
            fuzz(secs)
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <test|setup|fuzz [SECONDS]|mutants|reproduce|failover [CYCLES]>"
            );
            std::process::exit(2);
        }
    }
}
