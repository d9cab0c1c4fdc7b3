//! End-to-end test support: a real relay, real clients, attacks.
//!
//! [`evil`] is a malicious relay the attack tests control.
//! [`cli`] drives the real `troth` and `troth-relay` binaries for the CLI's
//! end-to-end, interop and bad-input tests (`tests/cli_*.rs`).

pub mod cli;
pub mod evil;
pub mod inproc;
