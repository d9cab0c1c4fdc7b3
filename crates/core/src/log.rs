//! The chain verifier: takes events from an untrusted source (the relay) and
//! either extends the head this client verified or says precisely what is wrong.
//!
//! It keeps the hash of every verified event, so it can tell a harmless replay
//! (the same event again) from a fork (a different event for a sequence number
//! it already verified), and a rollback (a relay claiming a shorter history).
//! A page's signatures are checked in one batch, which accepts exactly what
//! single checks accept (see [`crate::sign::verify_batch`]).

use thiserror::Error;

use crate::event::{Body, Control, Event, EventHash, Role};
use crate::ids::SpaceId;
use crate::keys::{IdentityKey, digit_groups};
use crate::members::{Members, MembershipError};
use crate::sign::{self, BatchItem, Label};

/// Why a batch of events could not extend the verified head.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The event names another space.
    #[error("event {seq} belongs to another space")]
    WrongSpace {
        /// Its sequence number.
        seq: u64,
    },
    /// Events are missing before this one.
    #[error("events are missing: expected {expected}, got {got}")]
    Gap {
        /// The next sequence number this client needs.
        expected: u64,
        /// What it was given.
        got: u64,
    },
    /// Events arrived out of order.
    #[error("events arrived out of order at {seq}")]
    Reorder {
        /// The sequence number that went backwards.
        seq: u64,
    },
    /// An event this client already verified was sent again.
    #[error("event {seq} was sent again")]
    Duplicate {
        /// Its sequence number.
        seq: u64,
    },
    /// A different event for a sequence number already verified, or one that
    /// does not build on the head this client verified: the histories split.
    #[error("the history split at event {seq}")]
    Fork {
        /// Where.
        seq: u64,
    },
    /// The relay claims a shorter history than this client verified.
    #[error(
        "the relay's history ({offered} events) is shorter than what was verified ({verified})"
    )]
    Rollback {
        /// How many events this client verified.
        verified: u64,
        /// How many the relay now claims.
        offered: u64,
    },
    /// A signature does not verify.
    #[error("event {seq} has an invalid signature")]
    BadSignature {
        /// Its sequence number.
        seq: u64,
    },
    /// The author or the membership change is not allowed.
    #[error("event {seq}: {error}")]
    Membership {
        /// Its sequence number.
        seq: u64,
        /// Which rule.
        error: MembershipError,
    },
    /// A member identity is not the one this client authenticated at pairing.
    #[error("event {seq} names a partner key this device never confirmed")]
    UnexpectedIdentity {
        /// Its sequence number.
        seq: u64,
    },
    /// An epoch key sealed to this device (in a verified control event) did
    /// not open, or did not match the commitment signed when its epoch
    /// started. Raised by the replica after verification, not by the chain
    /// verifier: the event is a valid part of the log, its key is not used.
    #[error(
        "event {seq} sent this device a key for epoch {epoch} that doesn't match its commitment"
    )]
    EpochKey {
        /// The control event carrying the envelope.
        seq: u64,
        /// The epoch of the key.
        epoch: u32,
        /// Whether the author is the partner (otherwise one's own device).
        from_partner: bool,
    },
}

impl ChainError {
    /// The sequence number concerned, where there is one.
    pub fn seq(&self) -> Option<u64> {
        match self {
            ChainError::WrongSpace { seq }
            | ChainError::Reorder { seq }
            | ChainError::Duplicate { seq }
            | ChainError::Fork { seq }
            | ChainError::BadSignature { seq }
            | ChainError::Membership { seq, .. }
            | ChainError::UnexpectedIdentity { seq }
            | ChainError::EpochKey { seq, .. } => Some(*seq),
            ChainError::Gap { got, .. } => Some(*got),
            ChainError::Rollback { .. } => None,
        }
    }
}

/// The identities this client authenticated out of band (at pairing), by role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustAnchors {
    /// The partner who leads (creates the space).
    pub leading: Option<IdentityKey>,
    /// The partner rebuilding trust.
    pub rebuilding: Option<IdentityKey>,
}

impl TrustAnchors {
    fn get(&self, role: Role) -> Option<&IdentityKey> {
        match role {
            Role::Leading => self.leading.as_ref(),
            Role::Rebuilding => self.rebuilding.as_ref(),
        }
    }

    /// Records an identity authenticated for a role.
    pub fn set(&mut self, role: Role, key: IdentityKey) {
        match role {
            Role::Leading => self.leading = Some(key),
            Role::Rebuilding => self.rebuilding = Some(key),
        }
    }
}

/// What [`ChainVerifier::extend`] accepted.
#[derive(Debug)]
pub struct Extension {
    /// How many of the given events now extend the head (a prefix).
    pub accepted: usize,
    /// Why the rest were refused, if any were.
    pub error: Option<ChainError>,
}

/// A space's verified history: member list and the hash of every event.
#[derive(Clone, Debug)]
pub struct ChainVerifier {
    space: SpaceId,
    anchors: TrustAnchors,
    members: Members,
    hashes: Vec<EventHash>,
}

impl ChainVerifier {
    /// An empty history for `space`, trusting the given identities.
    pub fn new(space: SpaceId, anchors: TrustAnchors) -> Self {
        Self {
            space,
            anchors,
            members: Members::new(),
            hashes: Vec::new(),
        }
    }

    /// A history verified before (a replica's saved snapshot): the member
    /// list and the hash of every event, as they were at its head.
    pub(crate) fn restored(
        space: SpaceId,
        anchors: TrustAnchors,
        members: Members,
        hashes: Vec<EventHash>,
    ) -> Self {
        Self {
            space,
            anchors,
            members,
            hashes,
        }
    }

    /// The space.
    pub fn space(&self) -> SpaceId {
        self.space
    }

    /// Members as of the head.
    pub fn members(&self) -> &Members {
        &self.members
    }

    /// The trust anchors.
    pub fn anchors(&self) -> &TrustAnchors {
        &self.anchors
    }

    /// Adds a partner identity authenticated after creation (at pairing).
    pub fn trust(&mut self, role: Role, key: IdentityKey) {
        self.anchors.set(role, key);
    }

    /// How many events are verified.
    pub fn len(&self) -> u64 {
        self.hashes.len() as u64
    }

    /// True before the genesis event.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The verified head: (seq, hash).
    pub fn head(&self) -> Option<(u64, EventHash)> {
        self.hashes.last().map(|h| (self.len() - 1, *h))
    }

    /// The hash of a verified event.
    pub fn hash_at(&self, seq: u64) -> Option<EventHash> {
        usize::try_from(seq)
            .ok()
            .and_then(|i| self.hashes.get(i))
            .copied()
    }

    /// A short code both partners can compare: equal codes mean equal histories
    /// up to that event.
    pub fn state_code(&self) -> String {
        match self.head() {
            None => "empty".into(),
            Some((seq, h)) => {
                let mut body = self.space.0.to_vec();
                body.extend_from_slice(&seq.to_be_bytes());
                body.extend_from_slice(&h.0);
                let d = sign::hash(Label::StateCode, &body);
                format!("{} · {}", seq + 1, digit_groups(&d, 2))
            }
        }
    }

    /// Checks a head the relay claims against what was verified.
    pub fn check_remote_head(&self, remote: Option<(u64, EventHash)>) -> Result<(), ChainError> {
        let offered = remote.map_or(0, |(s, _)| s.saturating_add(1));
        if offered < self.len() {
            return Err(ChainError::Rollback {
                verified: self.len(),
                offered,
            });
        }
        if let Some((seq, h)) = remote {
            if let Some(mine) = self.hash_at(seq) {
                if mine != h {
                    return Err(ChainError::Fork { seq });
                }
            }
        }
        Ok(())
    }

    /// Genesis must come from an identity this client authenticated (either
    /// role); AddMember's identity must be the other authenticated one once
    /// both are known. The public log carries no roles, so this is where each
    /// member identity gets its role ([`ChainVerifier::role_of`]).
    fn check_identity(&self, seq: u64, control: &Control) -> Result<(), ChainError> {
        let anchored = |k: &IdentityKey| self.role_of_anchored(k).is_some();
        match control {
            Control::Genesis { cert, .. } if !anchored(cert.identity()) => {
                Err(ChainError::UnexpectedIdentity { seq })
            }
            Control::AddMember { cert, .. }
                if self.anchors.leading.is_some()
                    && self.anchors.rebuilding.is_some()
                    && !anchored(cert.identity()) =>
            {
                Err(ChainError::UnexpectedIdentity { seq })
            }
            _ => Ok(()),
        }
    }

    /// The role of a member identity: from the trust anchors, or (for a
    /// partner not yet anchored) the other role than the anchored member's.
    pub fn role_of(&self, id: &IdentityKey) -> Option<Role> {
        if let Some(role) = self.role_of_anchored(id) {
            return Some(role);
        }
        if !self.members.is_member(id) {
            return None;
        }
        let other = self.members.identities().iter().find(|k| *k != id)?;
        self.role_of_anchored(other).map(Role::other)
    }

    fn role_of_anchored(&self, id: &IdentityKey) -> Option<Role> {
        [Role::Leading, Role::Rebuilding]
            .into_iter()
            .find(|r| self.anchors.get(*r) == Some(id))
    }

    /// Extends the head with as long a valid prefix of `events` as possible.
    /// State changes only for the accepted prefix; what was verified before is
    /// never lost or overwritten.
    pub fn extend(&mut self, events: &[Event]) -> Extension {
        // Structural pass on copies: sequence, chain, space, membership.
        let mut members = self.members.clone();
        let mut last = self.hashes.last().copied();
        let mut prev_seq: Option<u64> = None;
        let mut keys = Vec::with_capacity(events.len());
        let mut hashes = Vec::with_capacity(events.len());
        let mut structural_error = None;
        for ev in events {
            let h = ev.header();
            let next = self.len() + hashes.len() as u64;
            if let Err(e) = self.check_structure(ev, next, last, prev_seq, &hashes) {
                structural_error = Some(e);
                break;
            }
            let key = match members.author(&h.author) {
                Ok(d) => d.prepared().clone(),
                // Genesis: the author is the device it admits.
                Err(_) => match ev.body() {
                    Body::Control(Control::Genesis { cert, .. }) if h.seq == 0 => {
                        sign::PreparedKey::new(*cert.device().verifying_key())
                    }
                    _ => {
                        structural_error = Some(ChainError::Membership {
                            seq: h.seq,
                            error: MembershipError::UnknownAuthor,
                        });
                        break;
                    }
                },
            };
            if let Err(error) = members.apply_event(ev) {
                structural_error = Some(ChainError::Membership { seq: h.seq, error });
                break;
            }
            let hash = ev.hash();
            keys.push(key);
            hashes.push(hash);
            last = Some(hash);
            prev_seq = Some(h.seq);
        }
        // Signatures for the structurally valid prefix, in one batch.
        let n = keys.len();
        let messages: Vec<Vec<u8>> = events[..n].iter().map(|e| e.signed_message()).collect();
        let items: Vec<BatchItem<'_>> = (0..n)
            .map(|i| BatchItem {
                key: &keys[i],
                message: &messages[i],
                signature: events[i].signature(),
            })
            .collect();
        let (accepted, error) = match sign::verify_batch(&items) {
            Ok(()) => (n, structural_error),
            Err(i) => (
                i,
                Some(ChainError::BadSignature {
                    seq: events[i].header().seq,
                }),
            ),
        };
        if accepted == n {
            self.members = members;
        } else {
            for ev in &events[..accepted] {
                // Already checked above on an identical copy; cannot fail.
                let _ = self.members.apply_event(ev);
            }
        }
        self.hashes.extend_from_slice(&hashes[..accepted]);
        Extension { accepted, error }
    }

    fn check_structure(
        &self,
        ev: &Event,
        next: u64,
        last: Option<EventHash>,
        prev_seq: Option<u64>,
        batch_hashes: &[EventHash],
    ) -> Result<(), ChainError> {
        let h = ev.header();
        let seq = h.seq;
        if h.space != self.space {
            return Err(ChainError::WrongSpace { seq });
        }
        if prev_seq.is_some_and(|p| seq <= p) {
            return Err(ChainError::Reorder { seq });
        }
        if seq < next {
            let known = self.hash_at(seq).or_else(|| {
                usize::try_from(seq - self.len())
                    .ok()
                    .and_then(|i| batch_hashes.get(i).copied())
            });
            return Err(if known == Some(ev.hash()) {
                ChainError::Duplicate { seq }
            } else {
                ChainError::Fork { seq }
            });
        }
        if seq > next {
            return Err(ChainError::Gap {
                expected: next,
                got: seq,
            });
        }
        if h.prev != last.unwrap_or(EventHash::ZERO) {
            return Err(ChainError::Fork { seq });
        }
        if let Body::Control(c) = ev.body() {
            self.check_identity(seq, c)?;
        }
        Ok(())
    }
}
