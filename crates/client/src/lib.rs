//! # troth-client
//!
//! What every Troth client needs besides the protocol itself: a blocking
//! client for the relay's HTTP API that signs each request with the device
//! key ([`relay`]), the sync and append loop with re-basing on a stale head
//! ([`session`]), the pairing driver over the rendezvous mailbox ([`pair`]), linking a
//! device of one's own over the same mailbox ([`link`]),
//! and the local key store, encrypted at rest and written atomically
//! ([`store`]).
//!
//! The relay is untrusted: its answers are bounded, parsed into exact shapes
//! and verified by `troth-core` before anything is used. The `troth` CLI and
//! the end-to-end tests are built on this crate.
#![forbid(unsafe_code)]

pub mod error;
pub mod link;
pub mod pair;
pub mod relay;
pub mod session;
pub mod store;

pub use error::Error;
pub use relay::RelayClient;
pub use session::{Session, SyncReport};
pub use store::{Home, Stored};
