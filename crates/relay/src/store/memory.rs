//! An in-memory backend for tests: the same behaviour as sled, nothing durable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use troth_core::SpaceId;
use troth_core::event::EventHash;

use super::{Append, Head, PushSubscriptions, SpaceRecord, StoreError, SyncStore};

#[derive(Default)]
struct Inner {
    spaces: HashMap<SpaceId, (SpaceRecord, BTreeMap<u64, Vec<u8>>)>,
    nonces: BTreeSet<(u64, [u8; 32], [u8; 16])>,
    mailboxes: BTreeMap<u32, Vec<u8>>,
    push: BTreeMap<(SpaceId, [u8; 32]), Vec<u8>>,
    held: BTreeSet<(SpaceId, [u8; 32])>,
}

/// Keeps everything in a mutex-guarded map.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-written
        // (every method writes at its end), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SyncStore for MemoryStore {
    fn create_space(
        &self,
        space: SpaceId,
        genesis: &[u8],
        record: &SpaceRecord,
    ) -> Result<bool, StoreError> {
        let mut g = self.lock();
        if g.spaces.contains_key(&space) {
            return Ok(false);
        }
        let mut log = BTreeMap::new();
        log.insert(0, genesis.to_vec());
        g.spaces.insert(space, (record.clone(), log));
        Ok(true)
    }

    fn space(&self, space: SpaceId) -> Result<Option<SpaceRecord>, StoreError> {
        Ok(self.lock().spaces.get(&space).map(|(r, _)| r.clone()))
    }

    fn append_if_head(
        &self,
        space: SpaceId,
        expected: Head,
        hash: EventHash,
        event: &[u8],
        members: Option<&[u8]>,
    ) -> Result<Append, StoreError> {
        let mut g = self.lock();
        let Some((rec, log)) = g.spaces.get_mut(&space) else {
            return Ok(Append::NoSpace);
        };
        if rec.head != expected {
            return Ok(Append::Stale(rec.head));
        }
        let seq = expected.seq.saturating_add(1);
        log.insert(seq, event.to_vec());
        rec.head = Head { seq, hash };
        if let Some(m) = members {
            rec.members = m.to_vec();
        }
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
        Ok(self
            .lock()
            .spaces
            .get(&space)
            .map(|(_, log)| {
                log.range(from..=upto)
                    .take(limit)
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    fn delete_space(&self, space: SpaceId) -> Result<bool, StoreError> {
        let mut g = self.lock();
        g.push.retain(|(s, _), _| *s != space);
        g.held.retain(|(s, _)| *s != space);
        Ok(g.spaces.remove(&space).is_some())
    }

    fn push_put(&self, space: SpaceId, device: &[u8; 32], record: &[u8]) -> Result<(), StoreError> {
        self.lock().push.insert((space, *device), record.to_vec());
        Ok(())
    }

    fn push_subscriptions(&self, space: SpaceId) -> Result<PushSubscriptions, StoreError> {
        Ok(self
            .lock()
            .push
            .range((space, [0; 32])..=(space, [0xff; 32]))
            .map(|((_, d), v)| (*d, v.clone()))
            .collect())
    }

    fn push_delete(&self, space: SpaceId, device: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self.lock().push.remove(&(space, *device)).is_some())
    }

    fn push_mark(&self, space: SpaceId, device: &[u8; 32], held: bool) -> Result<(), StoreError> {
        let mut g = self.lock();
        if held {
            g.held.insert((space, *device));
        } else {
            g.held.remove(&(space, *device));
        }
        Ok(())
    }

    fn push_marked(&self) -> Result<Vec<(SpaceId, [u8; 32])>, StoreError> {
        Ok(self.lock().held.iter().copied().collect())
    }

    fn nonce_fresh(
        &self,
        time_ms: u64,
        device: &[u8; 32],
        nonce: &[u8; 16],
    ) -> Result<bool, StoreError> {
        Ok(self.lock().nonces.insert((time_ms, *device, *nonce)))
    }

    fn nonce_sweep(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut g = self.lock();
        let keep = g.nonces.split_off(&(before_ms, [0; 32], [0; 16]));
        let removed = g.nonces.len();
        g.nonces = keep;
        Ok(removed)
    }

    fn mailbox(&self, n: u32) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().mailboxes.get(&n).cloned())
    }

    fn mailbox_swap(
        &self,
        n: u32,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let mut g = self.lock();
        if g.mailboxes.get(&n).map(Vec::as_slice) != old {
            return Ok(false);
        }
        match new {
            Some(v) => g.mailboxes.insert(n, v.to_vec()),
            None => g.mailboxes.remove(&n),
        };
        Ok(true)
    }

    fn mailboxes(&self) -> Result<Vec<u32>, StoreError> {
        Ok(self.lock().mailboxes.keys().copied().collect())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn size_on_disk(&self) -> u64 {
        let g = self.lock();
        g.spaces
            .values()
            .flat_map(|(_, log)| log.values())
            .map(|v| v.len() as u64)
            .sum()
    }
}
