//! # troth
//!
//! The command line for Troth: keys, pairing, agreements, check-ins,
//! verification and exports, for a person at a terminal and for scripts.
//! It is a thin shell over `troth-core` (the protocol) and `troth-client`
//! (relay, sync, pairing, the encrypted key store). See docs/CLI.md.
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod ctx;
mod report;
mod view;
mod web;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = ctx::exit_code(&e);
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            let prefix = if colour {
                "\x1b[33mtroth:\x1b[0m"
            } else {
                "troth:"
            };
            // One line: the top-level message only (causes stay out of it).
            let msg = e.to_string().replace('\n', " ");
            let _ = writeln!(std::io::stderr(), "{prefix} {msg}");
            ExitCode::from(code)
        }
    }
}

/// `troth … | head`: once the reader has what it wanted and closed the pipe,
/// printing more fails; the standard library turns that into a panic with a
/// backtrace. Exit quietly instead, as a Unix tool killed by SIGPIPE would
/// (status 141), without any `unsafe` to restore the signal. Every other
/// panic is reported as before.
fn quiet_on_closed_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let msg = p
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        report(info);
    }));
}
