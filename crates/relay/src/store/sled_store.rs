//! The default backend: an embedded sled database.
//!
//! Every tree, in one place (key → value):
//!
//! | tree        | key                                   | value                         |
//! | ----------- | ------------------------------------- | ----------------------------- |
//! | `spaces`    | space id (16)                         | [`SpaceRecord`] (head, members) |
//! | `events`    | space id (16) ‖ seq (u64 BE)          | the event's bytes             |
//! | `deleting`  | space id (16)                         | empty: a deletion in progress |
//! | `nonces`    | signed time (u64 BE) ‖ device (32) ‖ nonce (16) | empty              |
//! | `mailboxes` | mailbox number (u32 BE)               | the mailbox (see `rendezvous`) |

use std::path::Path;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use troth_core::SpaceId;

use super::{Append, Head, SpaceRecord, Store, StoreError, event_key, nonce_key};

/// The names of sled's trees, in one place.
pub mod trees {
    /// Space id → head and members.
    pub const SPACES: &str = "spaces";
    /// Space id ‖ seq → event bytes.
    pub const EVENTS: &str = "events";
    /// Space id → (): deletions not yet finished (resumed at open).
    pub const DELETING: &str = "deleting";
    /// Signed time ‖ device ‖ nonce → (): request nonces seen.
    pub const NONCES: &str = "nonces";
    /// Mailbox number → mailbox.
    pub const MAILBOXES: &str = "mailboxes";
}

/// Removes this many events per write while forgetting a space.
const DELETE_CHUNK: usize = 1024;

/// The sled backend.
pub struct SledStore {
    db: sled::Db,
    spaces: sled::Tree,
    events: sled::Tree,
    deleting: sled::Tree,
    nonces: sled::Tree,
    mailboxes: sled::Tree,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

fn tx_err(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
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
            db,
        };
        let pending: Vec<sled::IVec> = store
            .deleting
            .iter()
            .keys()
            .collect::<Result<_, _>>()?;
        for k in pending {
            store.finish_deletion(&k)?;
        }
        Ok(store)
    }

    fn finish_deletion(&self, space: &[u8]) -> Result<(), StoreError> {
        loop {
            let keys: Vec<sled::IVec> = self
                .events
                .scan_prefix(space)
                .keys()
                .take(DELETE_CHUNK)
                .collect::<Result<_, _>>()?;
            if keys.is_empty() {
                break;
            }
            let mut batch = sled::Batch::default();
            for k in keys {
                batch.remove(k);
            }
            self.events.apply_batch(batch)?;
        }
        self.deleting.remove(space)?;
        Ok(())
    }
}

impl Store for SledStore {
    fn create_space(
        &self,
        space: SpaceId,
        genesis: &[u8],
        record: &SpaceRecord,
    ) -> Result<bool, StoreError> {
        if self.deleting.contains_key(space.0)? {
            self.finish_deletion(&space.0)?;
        }
        let rec = record.encode();
        let key = event_key(space, 0);
        (&self.spaces, &self.events)
            .transaction(|(spaces, events)| {
                if spaces.get(space.0)?.is_some() {
                    return Ok(false);
                }
                spaces.insert(&space.0[..], rec.as_slice())?;
                events.insert(&key[..], genesis)?;
                Ok(true)
            })
            .map_err(tx_err)
    }

    fn space(&self, space: SpaceId) -> Result<Option<SpaceRecord>, StoreError> {
        match self.spaces.get(space.0)? {
            None => Ok(None),
            Some(v) => SpaceRecord::decode(&v).map(Some),
        }
    }

    fn append_if_head(
        &self,
        space: SpaceId,
        expected: Head,
        event: &[u8],
        record: &SpaceRecord,
    ) -> Result<Append, StoreError> {
        let rec = record.encode();
        let key = event_key(space, expected.seq.saturating_add(1));
        (&self.spaces, &self.events)
            .transaction(|(spaces, events)| {
                let Some(cur) = spaces.get(space.0)? else {
                    return Ok(Append::NoSpace);
                };
                let cur = SpaceRecord::decode(&cur).map_err(ConflictableTransactionError::Abort)?;
                if cur.head != expected {
                    return Ok(Append::Stale(cur.head));
                }
                spaces.insert(&space.0[..], rec.as_slice())?;
                events.insert(&key[..], event)?;
                Ok(Append::Done)
            })
            .map_err(tx_err)
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
            .map(|r| r.map(|v| v.to_vec()).map_err(StoreError::from))
            .collect()
    }

    fn delete_space(&self, space: SpaceId) -> Result<bool, StoreError> {
        let existed = (&self.spaces, &self.deleting)
            .transaction(|(spaces, deleting)| {
                let existed = spaces.remove(&space.0[..])?.is_some();
                if existed {
                    deleting.insert(&space.0[..], &[][..])?;
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(existed)
            })
            .map_err(tx_err)?;
        if existed {
            self.finish_deletion(&space.0)?;
        }
        Ok(existed)
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
        loop {
            let keys: Vec<sled::IVec> = self
                .nonces
                .range(..&end[..])
                .keys()
                .take(DELETE_CHUNK)
                .collect::<Result<_, _>>()?;
            if keys.is_empty() {
                return Ok(n);
            }
            let mut batch = sled::Batch::default();
            n += keys.len();
            for k in keys {
                batch.remove(k);
            }
            self.nonces.apply_batch(batch)?;
        }
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

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}
