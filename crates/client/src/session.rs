//! Sync and append: the loop every client runs against an untrusted relay.
//!
//! [`Session::sync`] fetches the pages after the verified head, checks the
//! head the relay claims (rollback and fork detection) and feeds the events
//! to [`Replica::ingest`], which verifies before it decrypts. [`Session::post`]
//! composes on the verified head and appends; if the relay answers that the
//! log moved on (409), it syncs, composes again on the new head and retries,
//! a bounded number of times.

use rand_core::CryptoRngCore;
use troth_core::content::Content;
use troth_core::event::Event;
use troth_core::replica::{Alert, Replica};

use crate::error::Error;
use crate::relay::{Appended, RelayClient};

/// How many times an append is composed again after losing a race.
pub const MAX_REBASES: usize = 8;
/// Most pages read in one sync (64 events each).
const MAX_PAGES: usize = 20_000;

/// What a sync did.
#[derive(Debug)]
#[must_use = "an integrity alert must be shown"]
pub struct SyncReport {
    /// New events verified and applied.
    pub accepted: usize,
    /// An integrity problem, if the relay's history did not verify. Events
    /// verified before it are kept.
    pub alert: Option<Alert>,
}

/// A replica talking to its relay.
#[derive(Debug)]
pub struct Session {
    replica: Replica,
    relay: RelayClient,
}

impl Session {
    /// Pairs a replica with its relay.
    pub fn new(replica: Replica, relay: RelayClient) -> Self {
        Self { replica, relay }
    }

    /// The replica.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The replica, mutably.
    pub fn replica_mut(&mut self) -> &mut Replica {
        &mut self.replica
    }

    /// The relay.
    pub fn relay(&self) -> &RelayClient {
        &self.relay
    }

    /// Gives the replica back.
    pub fn into_replica(self) -> Replica {
        self.replica
    }

    /// Fetches and verifies everything after the verified head, one page at
    /// a time through [`troth_core::replica::Replica::ingest_page`] (the
    /// same step the browser takes, so both raise the same alerts).
    pub fn sync(&mut self) -> Result<SyncReport, Error> {
        let mut accepted = 0;
        for _ in 0..MAX_PAGES {
            let from = self.replica.chain().len();
            let page = self
                .relay
                .read(&self.replica.keys().device, self.replica.space(), from)?;
            let out = self
                .replica
                .ingest_page(Some(page.head), &page.events, page.more);
            accepted += out.accepted;
            if out.alert.is_some() || !out.fetch_more {
                return Ok(SyncReport {
                    accepted,
                    alert: out.alert,
                });
            }
        }
        Ok(SyncReport {
            accepted,
            alert: None,
        })
    }

    /// Syncs, and turns an integrity alert into an error.
    pub fn sync_strict(&mut self) -> Result<usize, Error> {
        let r = self.sync()?;
        match r.alert {
            Some(a) => Err(Error::Integrity(a)),
            None => Ok(r.accepted),
        }
    }

    /// Seals `content` on the verified head and appends it, re-basing on a
    /// stale head. Returns the event as the relay accepted it.
    pub fn post(
        &mut self,
        content: &Content,
        now_ms: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Event, Error> {
        self.post_with(|r| Ok(r.compose(content, now_ms, rng)?))
    }

    /// Appends what `compose` makes on the verified head, composing again
    /// after each lost race (at most [`MAX_REBASES`] times).
    pub fn post_with(
        &mut self,
        mut compose: impl FnMut(&Replica) -> Result<Event, Error>,
    ) -> Result<Event, Error> {
        for _ in 0..=MAX_REBASES {
            let ev = compose(&self.replica)?;
            match self.relay.append(&self.replica.keys().device, &ev)? {
                Appended::Done(_) => {
                    let r = self.replica.ingest(std::slice::from_ref(&ev));
                    if let Some(e) = r.error {
                        return Err(Error::Integrity(Alert { error: e }));
                    }
                    return Ok(ev);
                }
                Appended::Stale(_) => {
                    self.sync_strict()?;
                }
            }
        }
        Err(Error::Busy)
    }
}
