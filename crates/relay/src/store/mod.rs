//! Storage behind a trait at the level of intent.
//!
//! The store knows nothing of event semantics: the relay checks an event and
//! then asks the store to put its bytes at the next position of a space's log
//! if (and only if) the head is still the one it checked against. Every write
//! becomes durable at the next [`Store::flush`], which the relay's group
//! committer calls before it acknowledges anything — or, with PostgreSQL,
//! when the write's transaction committed.

use std::future::Future;
use std::pin::Pin;

use troth_core::SpaceId;
use troth_core::event::EventHash;

mod memory;
pub mod postgres;
mod sled_store;

pub use memory::MemoryStore;
pub use postgres::PgStore;
pub use sled_store::SledStore;

/// A space's push subscriptions: (device id, stored record) pairs.
pub type PushSubscriptions = Vec<([u8; 32], Vec<u8>)>;

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

/// A change one relay process announces to the others through a shared
/// store ([`Store::announce`]), or that reaches this one ([`Store::notices`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// An append committed: the space's head is now `head`.
    Appended {
        /// The space.
        space: SpaceId,
        /// Its new head.
        head: Head,
    },
    /// A space was deleted.
    Deleted(SpaceId),
    /// A rendezvous mailbox changed.
    Mailbox(u32),
    /// The listener (re)connected: notices may have been missed meanwhile,
    /// so every live space and mailbox is to be looked at again.
    Resync,
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
    /// PostgreSQL failed (or could not be reached).
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection could be taken from the pool.
    #[error("postgres pool: {0}")]
    Pool(String),
    /// The database cannot be used as it is (settings, schema version).
    #[error("database: {0}")]
    Unusable(String),
}

/// What a [`Store`] method returns: a boxed future, so that the trait stays
/// usable as `dyn Store`. sled's and the memory store's methods do their
/// (quick, non-blocking) work when called and return a ready future;
/// PostgreSQL's wait for the database.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A future that is already done (for the synchronous backends).
pub(crate) fn ready<'a, T: Send + 'a>(r: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(r))
}

/// The relay's storage, at the level of what the relay means to do.
///
/// Every method but [`Store::flush`] is async (PostgreSQL's must wait for
/// the network); sled's and the memory store's are quick and never wait for
/// the disk, except `flush`. Call `flush` from one thread only (the group
/// committer), and only if [`Store::durable_on_write`] is `false`.
pub trait Store: Send + Sync + 'static {
    /// Creates a space whose log is the single genesis event (whose hash and
    /// resulting member list are in `record`), unless it exists (returns `false`).
    fn create_space<'a>(
        &'a self,
        space: SpaceId,
        genesis: &'a [u8],
        record: &'a SpaceRecord,
    ) -> StoreFuture<'a, bool>;

    /// A space's head and member list.
    fn space(&self, space: SpaceId) -> StoreFuture<'_, Option<SpaceRecord>>;

    /// Appends `event` (whose hash is `hash`) at `expected.seq + 1` if the
    /// head is still `expected`, in one atomic write. `members` is the new
    /// member list if this event changed it.
    fn append_if_head<'a>(
        &'a self,
        space: SpaceId,
        expected: Head,
        hash: EventHash,
        event: &'a [u8],
        members: Option<&'a [u8]>,
    ) -> StoreFuture<'a, Append>;

    /// Up to `limit` events from sequence number `from` on, no further than `upto`.
    fn read_range(
        &self,
        space: SpaceId,
        from: u64,
        upto: u64,
        limit: usize,
    ) -> StoreFuture<'_, Vec<Vec<u8>>>;

    /// A space's record and up to `limit` of its events from sequence
    /// number `from` on, no further than its head, as of one moment (one
    /// statement on PostgreSQL: a page costs one round trip). `None` if the
    /// space does not exist.
    fn read_page(
        &self,
        space: SpaceId,
        from: u64,
        limit: usize,
    ) -> StoreFuture<'_, Option<(SpaceRecord, Vec<Vec<u8>>)>> {
        Box::pin(async move {
            let Some(rec) = self.space(space).await? else {
                return Ok(None);
            };
            let events = self.read_range(space, from, rec.head.seq, limit).await?;
            Ok(Some((rec, events)))
        })
    }

    /// Forgets a space and all its events. Returns whether it existed.
    fn delete_space(&self, space: SpaceId) -> StoreFuture<'_, bool>;

    /// Records a request nonce; `false` if `(time, device, nonce)` was seen.
    fn nonce_fresh<'a>(
        &'a self,
        time_ms: u64,
        device: &'a [u8; 32],
        nonce: &'a [u8; 16],
    ) -> StoreFuture<'a, bool>;

    /// Forgets nonces of requests signed before `before_ms` (the time window
    /// refuses those anyway). Returns how many were removed.
    fn nonce_sweep(&self, before_ms: u64) -> StoreFuture<'_, usize>;

    /// A rendezvous mailbox's stored value.
    fn mailbox(&self, n: u32) -> StoreFuture<'_, Option<Vec<u8>>>;

    /// Replaces a mailbox's value if it is still `old` (`None`: absent);
    /// `new = None` deletes it. Returns whether it was replaced.
    fn mailbox_swap<'a>(
        &'a self,
        n: u32,
        old: Option<&'a [u8]>,
        new: Option<&'a [u8]>,
    ) -> StoreFuture<'a, bool>;

    /// Every mailbox number in use (for the expiry sweep).
    fn mailboxes(&self) -> StoreFuture<'_, Vec<u32>>;

    /// Keeps `record` (a push subscription, `crate::push::Subscription`) as
    /// `device`'s in `space`, replacing the one it had.
    fn push_put<'a>(
        &'a self,
        space: SpaceId,
        device: &'a [u8; 32],
        record: &'a [u8],
    ) -> StoreFuture<'a, ()>;

    /// Every push subscription kept in `space`, by device.
    fn push_subscriptions(&self, space: SpaceId) -> StoreFuture<'_, PushSubscriptions>;

    /// Forgets `device`'s push subscription in `space`. Returns whether it had one.
    fn push_delete<'a>(&'a self, space: SpaceId, device: &'a [u8; 32]) -> StoreFuture<'a, bool>;

    /// Marks (or unmarks) `device` in `space` as having a push held for it
    /// (quiet hours, coalescing, retries), so that a restart sends it.
    fn push_mark<'a>(
        &'a self,
        space: SpaceId,
        device: &'a [u8; 32],
        held: bool,
    ) -> StoreFuture<'a, ()>;

    /// Every (space, device) marked by [`Store::push_mark`].
    fn push_marked(&self) -> StoreFuture<'_, Vec<(SpaceId, [u8; 32])>>;

    /// Makes every write so far durable (blocking; see docs/RELAY.md for what
    /// sled promises). A no-op for a store whose writes are durable when they
    /// return ([`Store::durable_on_write`]).
    fn flush(&self) -> Result<(), StoreError>;

    /// Whether each write is durable once its method returned (PostgreSQL:
    /// committed), so that the relay need not wait for a group commit.
    fn durable_on_write(&self) -> bool {
        false
    }

    /// Whether other relay processes may write to the same store: then no
    /// head or member list may be trusted from this process's cache.
    fn shared(&self) -> bool {
        false
    }

    /// Background work of the store (PostgreSQL: removing deleted spaces'
    /// events in batches). Returns how many items it removed.
    fn housekeep(&self) -> StoreFuture<'_, usize> {
        ready(Ok(0))
    }

    /// Tells the other relay processes on this store about a change that
    /// has committed (sent after the commit, outside its transaction; best
    /// effort: a lost notice is made up for by [`Store::heads`]).
    fn announce(&self, _notice: Notice) {}

    /// The notices of other relay processes, from now on (`None` for a store
    /// no other process writes to). Call once.
    fn notices(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Notice>> {
        None
    }

    /// The current heads of those of `spaces` that exist, as durable as an
    /// acknowledged append (PostgreSQL: read in a transaction whose commit
    /// waits for the synchronous standbys, so no head is reported that a
    /// failover could still lose). The live fan-out's safety net.
    fn heads<'a>(&'a self, spaces: &'a [SpaceId]) -> StoreFuture<'a, Vec<(SpaceId, Head)>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(spaces.len());
            for s in spaces {
                if let Some(r) = self.space(*s).await? {
                    out.push((*s, r.head));
                }
            }
            Ok(out)
        })
    }

    /// Appends the backend's own figures to `/metrics` (Prometheus text).
    fn write_metrics(&self, _out: &mut String) {}

    /// Whether the store can serve now (for `/healthz`).
    fn health(&self) -> StoreFuture<'_, ()> {
        ready(Ok(()))
    }

    /// The backend's name (`sled`, `memory`, `postgres`).
    fn kind(&self) -> &'static str;

    /// Bytes used on disk (an estimate).
    fn size_on_disk(&self) -> StoreFuture<'_, u64>;
}

/// The synchronous backends (sled, memory): the same operations as
/// [`Store`], done at once. Every `SyncStore` is a `Store` whose futures are
/// ready when returned.
pub trait SyncStore: Send + Sync + 'static {
    /// See [`Store::create_space`].
    fn create_space(
        &self,
        space: SpaceId,
        genesis: &[u8],
        record: &SpaceRecord,
    ) -> Result<bool, StoreError>;
    /// See [`Store::space`].
    fn space(&self, space: SpaceId) -> Result<Option<SpaceRecord>, StoreError>;
    /// See [`Store::append_if_head`].
    fn append_if_head(
        &self,
        space: SpaceId,
        expected: Head,
        hash: EventHash,
        event: &[u8],
        members: Option<&[u8]>,
    ) -> Result<Append, StoreError>;
    /// See [`Store::read_range`].
    fn read_range(
        &self,
        space: SpaceId,
        from: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError>;
    /// See [`Store::delete_space`].
    fn delete_space(&self, space: SpaceId) -> Result<bool, StoreError>;
    /// See [`Store::nonce_fresh`].
    fn nonce_fresh(
        &self,
        time_ms: u64,
        device: &[u8; 32],
        nonce: &[u8; 16],
    ) -> Result<bool, StoreError>;
    /// See [`Store::nonce_sweep`].
    fn nonce_sweep(&self, before_ms: u64) -> Result<usize, StoreError>;
    /// See [`Store::mailbox`].
    fn mailbox(&self, n: u32) -> Result<Option<Vec<u8>>, StoreError>;
    /// See [`Store::mailbox_swap`].
    fn mailbox_swap(
        &self,
        n: u32,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError>;
    /// See [`Store::mailboxes`].
    fn mailboxes(&self) -> Result<Vec<u32>, StoreError>;
    /// See [`Store::push_put`].
    fn push_put(&self, space: SpaceId, device: &[u8; 32], record: &[u8]) -> Result<(), StoreError>;
    /// See [`Store::push_subscriptions`].
    fn push_subscriptions(&self, space: SpaceId) -> Result<PushSubscriptions, StoreError>;
    /// See [`Store::push_delete`].
    fn push_delete(&self, space: SpaceId, device: &[u8; 32]) -> Result<bool, StoreError>;
    /// See [`Store::push_mark`].
    fn push_mark(&self, space: SpaceId, device: &[u8; 32], held: bool) -> Result<(), StoreError>;
    /// See [`Store::push_marked`].
    fn push_marked(&self) -> Result<Vec<(SpaceId, [u8; 32])>, StoreError>;
    /// See [`Store::flush`].
    fn flush(&self) -> Result<(), StoreError>;
    /// See [`Store::kind`].
    fn kind(&self) -> &'static str;
    /// See [`Store::size_on_disk`].
    fn size_on_disk(&self) -> u64;
}

impl<T: SyncStore> Store for T {
    fn create_space<'a>(
        &'a self,
        space: SpaceId,
        genesis: &'a [u8],
        record: &'a SpaceRecord,
    ) -> StoreFuture<'a, bool> {
        ready(SyncStore::create_space(self, space, genesis, record))
    }
    fn space(&self, space: SpaceId) -> StoreFuture<'_, Option<SpaceRecord>> {
        ready(SyncStore::space(self, space))
    }
    fn append_if_head<'a>(
        &'a self,
        space: SpaceId,
        expected: Head,
        hash: EventHash,
        event: &'a [u8],
        members: Option<&'a [u8]>,
    ) -> StoreFuture<'a, Append> {
        ready(SyncStore::append_if_head(
            self, space, expected, hash, event, members,
        ))
    }
    fn read_range(
        &self,
        space: SpaceId,
        from: u64,
        upto: u64,
        limit: usize,
    ) -> StoreFuture<'_, Vec<Vec<u8>>> {
        ready(SyncStore::read_range(self, space, from, upto, limit))
    }
    fn delete_space(&self, space: SpaceId) -> StoreFuture<'_, bool> {
        ready(SyncStore::delete_space(self, space))
    }
    fn nonce_fresh<'a>(
        &'a self,
        time_ms: u64,
        device: &'a [u8; 32],
        nonce: &'a [u8; 16],
    ) -> StoreFuture<'a, bool> {
        ready(SyncStore::nonce_fresh(self, time_ms, device, nonce))
    }
    fn nonce_sweep(&self, before_ms: u64) -> StoreFuture<'_, usize> {
        ready(SyncStore::nonce_sweep(self, before_ms))
    }
    fn mailbox(&self, n: u32) -> StoreFuture<'_, Option<Vec<u8>>> {
        ready(SyncStore::mailbox(self, n))
    }
    fn mailbox_swap<'a>(
        &'a self,
        n: u32,
        old: Option<&'a [u8]>,
        new: Option<&'a [u8]>,
    ) -> StoreFuture<'a, bool> {
        ready(SyncStore::mailbox_swap(self, n, old, new))
    }
    fn mailboxes(&self) -> StoreFuture<'_, Vec<u32>> {
        ready(SyncStore::mailboxes(self))
    }
    fn push_put<'a>(
        &'a self,
        space: SpaceId,
        device: &'a [u8; 32],
        record: &'a [u8],
    ) -> StoreFuture<'a, ()> {
        ready(SyncStore::push_put(self, space, device, record))
    }
    fn push_subscriptions(&self, space: SpaceId) -> StoreFuture<'_, PushSubscriptions> {
        ready(SyncStore::push_subscriptions(self, space))
    }
    fn push_delete<'a>(&'a self, space: SpaceId, device: &'a [u8; 32]) -> StoreFuture<'a, bool> {
        ready(SyncStore::push_delete(self, space, device))
    }
    fn push_mark<'a>(
        &'a self,
        space: SpaceId,
        device: &'a [u8; 32],
        held: bool,
    ) -> StoreFuture<'a, ()> {
        ready(SyncStore::push_mark(self, space, device, held))
    }
    fn push_marked(&self) -> StoreFuture<'_, Vec<(SpaceId, [u8; 32])>> {
        ready(SyncStore::push_marked(self))
    }
    fn flush(&self) -> Result<(), StoreError> {
        SyncStore::flush(self)
    }
    fn kind(&self) -> &'static str {
        SyncStore::kind(self)
    }
    fn size_on_disk(&self) -> StoreFuture<'_, u64> {
        ready(Ok(SyncStore::size_on_disk(self)))
    }
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

pub(crate) fn push_key(space: SpaceId, device: &[u8; 32]) -> [u8; 48] {
    let mut k = [0u8; 48];
    k[..16].copy_from_slice(&space.0);
    k[16..].copy_from_slice(device);
    k
}
