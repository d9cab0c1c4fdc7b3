//! `cargo xtask`: the project's build glue, in Rust rather than shell.
//!
//! - `cargo xtask test`: everything CI checks, from a fresh clone (installs what
//!   the tests need first, idempotently).
//! - `cargo xtask setup`: only the installs.

use std::process::Command;

use anyhow::{Context, Result, bail};

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn setup() -> Result<()> {
    // The wasm target comes from rust-toolchain.toml; make sure it is there even
    // when a toolchain was installed before the file listed it.
    run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    Ok(())
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
    run(cargo().args(["test", "--workspace", "--locked"]))?;
    Ok(())
}

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "test" => test(),
        "setup" => setup(),
        _ => {
            eprintln!("usage: cargo xtask <test|setup>");
            std::process::exit(2);
        }
    }
}
