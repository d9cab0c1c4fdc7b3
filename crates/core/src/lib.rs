//! # troth-core
//!
//! Troth's protocol, pure and synchronous: identity and device keys, device
//! certificates, domain-separated signatures, the signed hash-chained event log
//! and its verifier, epoch-key encryption of payloads, boundary agreements with
//! co-signatures and certificates, pairing (SPAKE2), and the fold of verified
//! events into the state a person sees.
//!
//! It does no I/O and reads no clock: time and randomness are passed in. (The
//! one exception is age, which draws its own randomness for envelopes and key
//! files from the operating system or the browser through `getrandom`.)
#![forbid(unsafe_code)]

pub mod agreement;
pub mod content;
pub mod crypto;
pub mod encoding;
pub mod event;
pub mod ids;
pub mod keyfile;
pub mod keys;
pub mod link;
pub mod local;
pub mod log;
pub mod members;
pub mod pairing;
pub mod replica;
pub mod request;
pub mod retention;
pub mod session;
pub mod sign;
pub mod state;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod text;
pub mod therapist;

pub use ids::{AgreementId, SpaceId};
