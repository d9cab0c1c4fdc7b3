//! Sync and append: the loop every client runs against an untrusted relay.
//!
//! [`Session::sync`] fetches the pages after the verified head, checks the
//! head the relay claims (rollback and fork detection) and feeds the events
//! to [`Replica::ingest`], which verifies before it decrypts. [`Session::post`]
//! composes on the verified head and appends; if the relay answers that the
//! log moved on (409), it syncs, composes again on the new head and retries,
//! a bounded number of times. An append whose answer was lost, or a 409
//! naming its own event, counts as done once the verified log shows the
//! event: a client never posts the same thing twice.

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
    ///
    /// An append whose answer was lost (no answer in time, a broken
    /// connection, a relay or database failing over) may have been written
    /// all the same, and a 409 may name a head that is this very event (an
    /// earlier try went through). So before composing again, the client
    /// looks: if the verified log holds any event this call sent, that
    /// append succeeded and nothing is posted twice.
    pub fn post_with(
        &mut self,
        mut compose: impl FnMut(&Replica) -> Result<Event, Error>,
    ) -> Result<Event, Error> {
        self.post_maybe(|r| compose(r).map(Some))?
            .ok_or(Error::Busy)
    }

    /// [`Session::post_with`] for something that may no longer be needed
    /// after a re-base (`compose` gives `None`): nothing is posted then.
    fn post_maybe(
        &mut self,
        mut compose: impl FnMut(&Replica) -> Result<Option<Event>, Error>,
    ) -> Result<Option<Event>, Error> {
        // Every event this call sent whose fate is not known to be "refused".
        let mut sent: Vec<Event> = Vec::new();
        for _ in 0..=MAX_REBASES {
            let Some(ev) = compose(&self.replica)? else {
                return Ok(None);
            };
            sent.push(ev.clone());
            match self.relay.append(&self.replica.keys().device, &ev) {
                Ok(Appended::Done(_)) => return self.accept(ev).map(Some),
                Ok(Appended::Stale(head)) if ev.is_head(head) => {
                    // The head the relay names is this event: it is in.
                    return self.accept(ev).map(Some);
                }
                Ok(Appended::Stale(_)) => {
                    self.sync_strict()?;
                }
                Err(e) if outcome_unknown(&e) => self.sync_after_lost_answer(e)?,
                Err(e) => return Err(e),
            }
            if let Some(ev) = self.already_in(&sent) {
                return Ok(Some(ev));
            }
        }
        Err(Error::Busy)
    }

    /// The scheduled key change, if one is due at `now_ms` (after a sync):
    /// appended on the verified head. If the partner's client rotated first
    /// (a stale head), the re-base sees their rotation and nothing more is
    /// sent, so a race never makes two. Returns whether this device rotated.
    pub fn rotate_if_due(
        &mut self,
        now_ms: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<bool, Error> {
        let ev = self.post_maybe(|r| Ok(r.compose_rotation(now_ms, &mut *rng)?))?;
        Ok(ev.is_some())
    }

    /// What a client does after each sync (issue 17, forgetting on
    /// schedule): the scheduled key change if it is due, then forgetting
    /// the epochs that ended more than the retention period ago. Returns
    /// whether anything changed that must be saved.
    pub fn keep_schedule(
        &mut self,
        now_ms: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<bool, Error> {
        let rotated = self.rotate_if_due(now_ms, rng)?;
        let forgot = self.replica.forget(now_ms) > 0;
        Ok(rotated || forgot)
    }

    /// Adds an event the relay accepted to the verified log.
    fn accept(&mut self, ev: Event) -> Result<Event, Error> {
        let r = self.replica.ingest(std::slice::from_ref(&ev));
        if let Some(e) = r.error {
            return Err(Error::Integrity(Alert { error: e }));
        }
        Ok(ev)
    }

    /// The first of `sent` that the verified log holds at its position
    /// (core's rule, shared with the browser).
    fn already_in(&self, sent: &[Event]) -> Option<Event> {
        self.replica.already_in(sent).cloned()
    }

    /// Syncs after an append whose answer was lost, trying again for a
    /// while if the relay is still unreachable (a failover takes seconds);
    /// gives back `lost` if it never answers.
    fn sync_after_lost_answer(&mut self, lost: Error) -> Result<(), Error> {
        let mut wait = std::time::Duration::from_millis(100);
        let mut waited = std::time::Duration::ZERO;
        loop {
            match self.sync_strict() {
                Ok(_) => return Ok(()),
                Err(e) if transient(&e) && waited < LOST_ANSWER_PATIENCE => {
                    std::thread::sleep(wait);
                    waited += wait;
                    wait = (wait * 2).min(std::time::Duration::from_secs(1));
                }
                Err(e) if transient(&e) => return Err(lost),
                Err(e) => return Err(e),
            }
        }
    }
}

/// How long a client keeps trying to learn the fate of an append whose
/// answer was lost.
pub const LOST_ANSWER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(15);

/// Whether an append that failed this way may have been written all the
/// same: no answer, a broken one, or the relay's (or its database's)
/// temporary failure. A well-formed refusal (4xx) means it was not.
fn outcome_unknown(e: &Error) -> bool {
    match e {
        Error::Unreachable { maybe_sent, .. } => *maybe_sent,
        Error::BadResponse(_) => true,
        Error::Refused { status, .. } => *status >= 500 || *status == 408,
        _ => false,
    }
}

/// Whether a failed request may succeed if tried again soon (the relay, or
/// its database, is restarting or failing over).
fn transient(e: &Error) -> bool {
    matches!(e, Error::Unreachable { .. }) || outcome_unknown(e)
}
