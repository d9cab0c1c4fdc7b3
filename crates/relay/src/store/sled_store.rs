//! The default backend: an embedded sled database.
//!
//! Every tree, in one place (key → value):
//!
//! | tree        | key                                   | value                          |
//! | ----------- | ------------------------------------- | ------------------------------ |
//! | `spaces`    | space id (16)                         | empty: the space exists        |
//! | `events`    | space id (16) ‖ seq (u64 BE)          | an [`Entry`]: the event, its hash, the seq of the last membership change, and the member list if this event changed it |
//! | `deleting`  | space id (16)                         | empty: a deletion in progress  |
//! | `nonces`    | signed time (u64 BE) ‖ device (32) ‖ nonce (16) | empty                |
//! | `mailboxes` | mailbox number (u32 BE)               | the mailbox (see `rendezvous`) |
//! | `push`      | space id (16) ‖ device id (32)        | the device's push subscription (`push::Subscription`, JSON) |
//! | `push_held` | space id (16) ‖ device id (32)        | empty: a push is held for the device |
//!
//! Every append is one single-key insert, so it is atomic without sled
//! transactions or batches. (Those take a process-wide write lock in sled
//! 0.34 that also stalls every reader for the length of a flush; this
//! backend never uses them.) The head is the last entry of a space; the
//! member list is found through the head entry's pointer to the last
//! membership change. Check-then-write is made atomic per space by a
//! striped mutex; only one process opens a sled database, so each stripe also
//! caches the heads of its recently written spaces (finding the last entry
//! of a space in sled was ~7% of an append's CPU; docs/BENCHMARKS.md). The
//! cache only ever holds what sled holds: it is filled from sled and changed
//! under the stripe's lock right after sled accepted the write.

use std::collections::HashMap;
use std::path::Path;

use troth_core::SpaceId;
use troth_core::event::EventHash;

use super::{
    Append, Head, PushSubscriptions, SpaceRecord, StoreError, Stripes, SyncStore, event_key,
    nonce_key,
};

/// The names of sled's trees, in one place.
pub mod trees {
    /// Space id → (): the space exists.
    pub const SPACES: &str = "spaces";
    /// Space id ‖ seq → entry.
    pub const EVENTS: &str = "events";
    /// Space id → (): deletions not yet finished (resumed at open).
    pub const DELETING: &str = "deleting";
    /// Signed time ‖ device ‖ nonce → (): request nonces seen.
    pub const NONCES: &str = "nonces";
    /// Mailbox number → mailbox.
    pub const MAILBOXES: &str = "mailboxes";
    /// Space id ‖ device id → push subscription.
    pub const PUSH: &str = "push";
    /// Space id ‖ device id → (): a push held for the device.
    pub const PUSH_HELD: &str = "push_held";
}

/// One stored event: `1 ‖ hash (32) ‖ last membership change seq (u64) ‖
/// has members (u8) [‖ u32 length ‖ members] ‖ event bytes`.
struct Entry<'a> {
    hash: EventHash,
    members_at: u64,
    members: Option<&'a [u8]>,
    event: &'a [u8],
}

impl<'a> Entry<'a> {
    fn encode(&self) -> Vec<u8> {
        let m = self.members.map(|m| m.len() + 4).unwrap_or(0);
        let mut v = Vec::with_capacity(1 + 32 + 8 + 1 + m + self.event.len());
        v.push(1);
        v.extend_from_slice(&self.hash.0);
        v.extend_from_slice(&self.members_at.to_be_bytes());
        match self.members {
            None => v.push(0),
            Some(m) => {
                v.push(1);
                v.extend_from_slice(&(m.len() as u32).to_be_bytes());
                v.extend_from_slice(m);
            }
        }
        v.extend_from_slice(self.event);
        v
    }

    fn decode(b: &'a [u8]) -> Result<Self, StoreError> {
        let bad = || StoreError::Corrupt("event entry");
        if b.len() < 42 || b[0] != 1 {
            return Err(bad());
        }
        let hash = EventHash(b[1..33].try_into().map_err(|_| bad())?);
        let members_at = u64::from_be_bytes(b[33..41].try_into().map_err(|_| bad())?);
        let (members, rest) = match b[41] {
            0 => (None, &b[42..]),
            1 => {
                let len_bytes: [u8; 4] = b
                    .get(42..46)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(bad)?;
                let len = u32::from_be_bytes(len_bytes) as usize;
                let m = b.get(46..46 + len).ok_or_else(bad)?;
                (Some(m), &b[46 + len..])
            }
            _ => return Err(bad()),
        };
        Ok(Entry {
            hash,
            members_at,
            members,
            event: rest,
        })
    }
}

/// A space's head and the seq of its last membership change.
type Cached = (Head, u64);

/// Heads cached per stripe; past this many, one is dropped for each new one
/// (64 stripes: at most 65,536 spaces, a few MiB).
const CACHED_PER_STRIPE: usize = 1024;

/// The heads cached in one stripe.
#[derive(Default)]
struct Heads(HashMap<SpaceId, Cached>);

impl Heads {
    fn put(&mut self, space: SpaceId, c: Cached) {
        if self.0.len() >= CACHED_PER_STRIPE && !self.0.contains_key(&space) {
            if let Some(k) = self.0.keys().next().copied() {
                self.0.remove(&k);
            }
        }
        self.0.insert(space, c);
    }
}

/// The sled backend.
pub struct SledStore {
    db: sled::Db,
    spaces: sled::Tree,
    events: sled::Tree,
    deleting: sled::Tree,
    nonces: sled::Tree,
    mailboxes: sled::Tree,
    push: sled::Tree,
    push_held: sled::Tree,
    stripes: Stripes<Heads>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (or creates) the database in `dir`, with a page cache of
    /// `cache_bytes`, and finishes any space deletion a crash interrupted.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()?;
        let store = SledStore {
            spaces: db.open_tree(trees::SPACES)?,
            events: db.open_tree(trees::EVENTS)?,
            deleting: db.open_tree(trees::DELETING)?,
            nonces: db.open_tree(trees::NONCES)?,
            mailboxes: db.open_tree(trees::MAILBOXES)?,
            push: db.open_tree(trees::PUSH)?,
            push_held: db.open_tree(trees::PUSH_HELD)?,
            db,
            stripes: Stripes::new(),
        };
        let pending: Vec<sled::IVec> = store.deleting.iter().keys().collect::<Result<_, _>>()?;
        for k in pending {
            store.remove_events(&k)?;
            store.deleting.remove(k)?;
        }
        Ok(store)
    }

    fn remove_events(&self, space: &[u8]) -> Result<(), StoreError> {
        for k in self.events.scan_prefix(space).keys() {
            self.events.remove(k?)?;
        }
        for k in self.push.scan_prefix(space).keys() {
            self.push.remove(k?)?;
        }
        for k in self.push_held.scan_prefix(space).keys() {
            self.push_held.remove(k?)?;
        }
        Ok(())
    }

    /// The last entry of a space: (seq, raw value).
    fn last(&self, space: SpaceId) -> Result<Option<(u64, sled::IVec)>, StoreError> {
        let Some((k, v)) = self.events.scan_prefix(space.0).next_back().transpose()? else {
            return Ok(None);
        };
        let seq: [u8; 8] = k
            .get(16..24)
            .and_then(|s| s.try_into().ok())
            .ok_or(StoreError::Corrupt("event key"))?;
        Ok(Some((u64::from_be_bytes(seq), v)))
    }

    fn head(&self, space: SpaceId) -> Result<Option<Cached>, StoreError> {
        let Some((seq, v)) = self.last(space)? else {
            return Ok(None);
        };
        let e = Entry::decode(&v)?;
        Ok(Some((Head { seq, hash: e.hash }, e.members_at)))
    }

    /// A space's head: from the stripe's cache, else from sled (then cached).
    /// `None` when the space does not exist. Call with the stripe locked.
    fn cached_head(&self, heads: &mut Heads, space: SpaceId) -> Result<Option<Cached>, StoreError> {
        if let Some(c) = heads.0.get(&space) {
            return Ok(Some(*c));
        }
        if !self.spaces.contains_key(space.0)? {
            return Ok(None);
        }
        let Some(c) = self.head(space)? else {
            return Err(StoreError::Corrupt("space without events"));
        };
        heads.put(space, c);
        Ok(Some(c))
    }
}

impl SyncStore for SledStore {
    fn create_space(
        &self,
        space: SpaceId,
        genesis: &[u8],
        record: &SpaceRecord,
    ) -> Result<bool, StoreError> {
        let mut heads = self.stripes.lock(space);
        if self.spaces.contains_key(space.0)? {
            return Ok(false);
        }
        heads.0.remove(&space);
        // Leftovers of an interrupted create or delete.
        self.remove_events(&space.0)?;
        self.deleting.remove(space.0)?;
        let entry = Entry {
            hash: record.head.hash,
            members_at: 0,
            members: Some(&record.members),
            event: genesis,
        };
        self.events.insert(event_key(space, 0), entry.encode())?;
        self.spaces.insert(space.0, &[][..])?;
        heads.put(space, (record.head, 0));
        Ok(true)
    }

    fn space(&self, space: SpaceId) -> Result<Option<SpaceRecord>, StoreError> {
        let Some((head, members_at)) = self.cached_head(&mut self.stripes.lock(space), space)?
        else {
            return Ok(None);
        };
        let raw = self
            .events
            .get(event_key(space, members_at))?
            .ok_or(StoreError::Corrupt("membership entry"))?;
        let members = Entry::decode(&raw)?
            .members
            .ok_or(StoreError::Corrupt("membership entry"))?
            .to_vec();
        Ok(Some(SpaceRecord { head, members }))
    }

    fn append_if_head(
        &self,
        space: SpaceId,
        expected: Head,
        hash: EventHash,
        event: &[u8],
        members: Option<&[u8]>,
    ) -> Result<Append, StoreError> {
        let mut heads = self.stripes.lock(space);
        let Some((head, members_at)) = self.cached_head(&mut heads, space)? else {
            return Ok(Append::NoSpace);
        };
        if head != expected {
            return Ok(Append::Stale(head));
        }
        let seq = expected.seq.saturating_add(1);
        let members_at = if members.is_some() { seq } else { members_at };
        let entry = Entry {
            hash,
            members_at,
            members,
            event,
        };
        // Forgotten first: should sled fail, the next append reads sled again.
        heads.0.remove(&space);
        self.events.insert(event_key(space, seq), entry.encode())?;
        heads.put(space, (Head { seq, hash }, members_at));
        Ok(Append::Done)
    }

    fn read_range(
        &self,
        space: SpaceId,
        from: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        if from > upto {
            return Ok(Vec::new());
        }
        self.events
            .range(event_key(space, from)..=event_key(space, upto))
            .values()
            .take(limit)
            .map(|r| {
                let v = r?;
                Ok(Entry::decode(&v)?.event.to_vec())
            })
            .collect()
    }

    fn delete_space(&self, space: SpaceId) -> Result<bool, StoreError> {
        let mut heads = self.stripes.lock(space);
        heads.0.remove(&space);
        if !self.spaces.contains_key(space.0)? {
            return Ok(false);
        }
        // Marked first, so a crash part-way is finished at the next open.
        self.deleting.insert(space.0, &[][..])?;
        self.spaces.remove(space.0)?;
        self.remove_events(&space.0)?;
        self.deleting.remove(space.0)?;
        Ok(true)
    }

    fn push_put(&self, space: SpaceId, device: &[u8; 32], record: &[u8]) -> Result<(), StoreError> {
        self.push.insert(super::push_key(space, device), record)?;
        Ok(())
    }

    fn push_subscriptions(&self, space: SpaceId) -> Result<PushSubscriptions, StoreError> {
        let mut out = Vec::new();
        for kv in self.push.scan_prefix(space.0) {
            let (k, v) = kv?;
            let device: [u8; 32] = k
                .get(16..48)
                .and_then(|d| d.try_into().ok())
                .ok_or(StoreError::Corrupt("push key"))?;
            out.push((device, v.to_vec()));
        }
        Ok(out)
    }

    fn push_delete(&self, space: SpaceId, device: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self.push.remove(super::push_key(space, device))?.is_some())
    }

    fn push_mark(&self, space: SpaceId, device: &[u8; 32], held: bool) -> Result<(), StoreError> {
        let k = super::push_key(space, device);
        if held {
            self.push_held.insert(k, &[][..])?;
        } else {
            self.push_held.remove(k)?;
        }
        Ok(())
    }

    fn push_marked(&self) -> Result<Vec<(SpaceId, [u8; 32])>, StoreError> {
        let mut out = Vec::new();
        for k in self.push_held.iter().keys() {
            let k = k?;
            let (Some(space), Some(device)) = (
                k.get(..16).and_then(|s| <[u8; 16]>::try_from(s).ok()),
                k.get(16..48).and_then(|d| <[u8; 32]>::try_from(d).ok()),
            ) else {
                return Err(StoreError::Corrupt("push_held key"));
            };
            out.push((SpaceId(space), device));
        }
        Ok(out)
    }

    fn nonce_fresh(
        &self,
        time_ms: u64,
        device: &[u8; 32],
        nonce: &[u8; 16],
    ) -> Result<bool, StoreError> {
        let key = nonce_key(time_ms, device, nonce);
        Ok(self
            .nonces
            .compare_and_swap(key, None as Option<&[u8]>, Some(&[][..]))?
            .is_ok())
    }

    fn nonce_sweep(&self, before_ms: u64) -> Result<usize, StoreError> {
        let end = before_ms.to_be_bytes();
        let mut n = 0;
        for k in self.nonces.range(..&end[..]).keys() {
            self.nonces.remove(k?)?;
            n += 1;
        }
        Ok(n)
    }

    fn mailbox(&self, n: u32) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.mailboxes.get(n.to_be_bytes())?.map(|v| v.to_vec()))
    }

    fn mailbox_swap(
        &self,
        n: u32,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        Ok(self
            .mailboxes
            .compare_and_swap(n.to_be_bytes(), old, new)?
            .is_ok())
    }

    fn mailboxes(&self) -> Result<Vec<u32>, StoreError> {
        self.mailboxes
            .iter()
            .keys()
            .map(|k| {
                let k = k?;
                let b: [u8; 4] = k
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("mailbox key"))?;
                Ok(u32::from_be_bytes(b))
            })
            .collect()
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "sled"
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}
