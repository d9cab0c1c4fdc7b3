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

pub mod encoding;
pub mod event;
pub mod ids;
pub mod keys;
pub mod members;
pub mod request;
pub mod sign;

pub use ids::{AgreementId, SpaceId};
