//! Storage behind a trait at the level of intent.
//!
//! The store knows nothing of event semantics: the relay checks an event and
//! then asks the store to put its bytes at the next position of a space's log
//! if (and only if) the head is still the one it checked against. Every write
//! becomes durable at the next [`Store::flush`], which the relay's group
//! committer calls before it acknowledges anything.

use troth_core::SpaceId;
use troth_core::event::EventHash;

mod memory;
mod sled_store;

pub use memory::MemoryStore;
pub use sled_store::SledStore;

/// The last event of a space's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Its sequence number.
    pub seq: u64,
    /// Its hash.
    pub hash: EventHash,
}

/// What the store keeps about a space besides its events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpaceRecord {
    /// The current head.
    pub head: Head,
    /// The encoded member list (`troth_core::members::Members::encode`) as of the head.
    pub members: Vec<u8>,
}

/// The outcome of [`Store::append_if_head`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Append {
    /// Written (durable after the next flush).
    Done,
    /// The head moved; here is the current one.
    Stale(Head),
    /// No such space.
    NoSpace,
}

/// A storage failure (never caused by a client's input).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The embedded database failed.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// A sled transaction failed.
    #[error("storage transaction: {0}")]
    Transaction(String),
    /// A stored value does not decode.
    #[error("stored {0} is corrupt")]
    Corrupt(&'static str),
}

/// The relay's storage, at the level of what the relay means to do.
///
/// Methods are synchronous and quick (they never wait for the disk, except
/// [`Store::flush`]); call `flush` from one thread only (the group committer).
pub trait Store: Send + Sync + 'static {
    /// Creates a space whose log is the single genesis event (whose hash and
    /// resulting member list are in `record`), unless it exists (returns `false`).
    fn create_space(
        &self,
        space: SpaceId,
        genesis: &[u8],
        record: &SpaceRecord,
    ) -> Result<bool, StoreError>;

    /// A space's head and member list.
    fn space(&self, space: SpaceId) -> Result<Option<SpaceRecord>, StoreError>;

    /// Appends `event` (whose hash is `hash`) at `expected.seq + 1` if the
    /// head is still `expected`, in one atomic write. `members` is the new
    /// member list if this event changed it.
    fn append_if_head(
        &self,
        space: SpaceId,
        expected: Head,
        hash: EventHash,
        event: &[u8],
        members: Option<&[u8]>,
    ) -> Result<Append, StoreError>;

    /// Up to `limit` events from sequence number `from` on, no further than `upto`.
    fn read_range(
        &self,
        space: SpaceId,
        from: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError>;

    /// Forgets a space and all its events. Returns whether it existed.
    fn delete_space(&self, space: SpaceId) -> Result<bool, StoreError>;

    /// Records a request nonce; `false` if `(time, device, nonce)` was seen.
    fn nonce_fresh(
        &self,
        time_ms: u64,
        device: &[u8; 32],
        nonce: &[u8; 16],
    ) -> Result<bool, StoreError>;

    /// Forgets nonces of requests signed before `before_ms` (the time window
    /// refuses those anyway). Returns how many were removed.
    fn nonce_sweep(&self, before_ms: u64) -> Result<usize, StoreError>;

    /// A rendezvous mailbox's stored value.
    fn mailbox(&self, n: u32) -> Result<Option<Vec<u8>>, StoreError>;

    /// Replaces a mailbox's value if it is still `old` (`None`: absent);
    /// `new = None` deletes it. Returns whether it was replaced.
    fn mailbox_swap(
        &self,
        n: u32,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError>;

    /// Every mailbox number in use (for the expiry sweep).
    fn mailboxes(&self) -> Result<Vec<u32>, StoreError>;

    /// Makes every write so far durable (blocking; see docs/RELAY.md for what
    /// sled promises).
    fn flush(&self) -> Result<(), StoreError>;

    /// Bytes used on disk (an estimate).
    fn size_on_disk(&self) -> u64;
}

pub(crate) fn event_key(space: SpaceId, seq: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(&space.0);
    k[16..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Mutex stripes that make a store's check-then-write per space atomic; each
/// stripe also guards a `T` for the spaces that map to it.
pub(crate) struct Stripes<T>([std::sync::Mutex<T>; 64]);

impl<T: Default> Stripes<T> {
    pub(crate) fn new() -> Self {
        Stripes(std::array::from_fn(|_| std::sync::Mutex::new(T::default())))
    }

    pub(crate) fn lock(&self, space: SpaceId) -> std::sync::MutexGuard<'_, T> {
        let i = usize::from(space.0[0] ^ space.0[15]) % self.0.len();
        self.0[i].lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) fn nonce_key(time_ms: u64, device: &[u8; 32], nonce: &[u8; 16]) -> [u8; 56] {
    let mut k = [0u8; 56];
    k[..8].copy_from_slice(&time_ms.to_be_bytes());
    k[8..40].copy_from_slice(device);
    k[40..].copy_from_slice(nonce);
    k
}
