//! A client's local copy of a space: its keys, the verified chain, the epoch
//! keys it could open, the decrypted state, and any integrity alerts.
//!
//! Everything the relay sends goes through [`Replica::ingest`], which verifies
//! before it decrypts, and decrypts before it folds. New events are made with
//! the `compose_*` methods on top of the verified head; they take effect
//! locally only once the relay accepted them and they come back through
//! `ingest` (so a client that lost a race re-bases by composing again).

use std::collections::BTreeMap;

use rand_core::CryptoRngCore;
use thiserror::Error;

use crate::agreement::{Agreement, AgreementError, Certificate, Day, Position};
use crate::content::{Content, ReportScope};
use crate::crypto::{self, CryptoError, EpochKey};
use crate::event::{Body, Control, Event, EventHash, Header, KeyCommitment, Role};
use crate::ids::{AgreementId, SpaceId};
use crate::keyfile::KeyBundle;
use crate::keys::{DeviceCert, DeviceId, IdentityKey, SafetyNumber};
use crate::log::{ChainError, ChainVerifier, TrustAnchors};
use crate::state::{Applied, Ask, Beyond, State, VersionStatus, sign_consent};

mod snapshot;
pub use snapshot::{Snapshot, SnapshotError};

/// Why an event could not be composed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// The space has no events yet on this device.
    #[error("this device hasn't received the space yet; sync first")]
    Empty,
    /// This device holds no key for the current epoch.
    #[error("this device can't read the space's current messages")]
    NoEpochKey,
    /// Encryption failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The agreement is not valid.
    #[error(transparent)]
    Agreement(#[from] AgreementError),
    /// No such agreement or version.
    #[error("there is no agreement with that id and version")]
    UnknownAgreement,
    /// The action does not fit the agreement's state.
    #[error("{0}")]
    NotNow(&'static str),
    /// Nothing can be proposed before both partners confirmed who sets the conditions.
    #[error(
        "Nothing can be proposed until both of you have confirmed who sets the conditions. \
         Each of you confirms it on your own device."
    )]
    RolesNotConfirmed,
    /// A request beyond the limits both partners signed (the limit in words).
    #[error(
        "That would be more than you both agreed to ({0}), so it wasn't sent. \
         If the limit no longer fits, talk it over and amend the agreement together."
    )]
    OutsideLimits(String),
    /// A request beyond what is kept while no agreement in force covers it.
    #[error(
        "No agreement about this is in force, and until there is one, asking is kept to {0}. \
         It wasn't sent. If you both want something else, you could agree on it together."
    )]
    UnagreedLimit(String),
}

/// An integrity problem the client detected, with words for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// What the verifier found.
    pub error: ChainError,
}

impl Alert {
    /// What it means and what to do, in plain words.
    pub fn advice(&self) -> &'static str {
        match self.error {
            ChainError::Fork { .. } | ChainError::Rollback { .. } => {
                "The relay showed this device a history that doesn't match what it saw before. \
                 Nothing you had is lost. Compare the state code with your partner in person, and \
                 consider moving to a relay you trust."
            }
            ChainError::BadSignature { .. } | ChainError::WrongSpace { .. } => {
                "Something arrived that neither of you wrote. It was ignored and nothing you had is \
                 lost. If this keeps happening, the relay may be misbehaving."
            }
            ChainError::EpochKey {
                from_partner: true, ..
            } => {
                "Your partner's device sent this device a key for new messages that doesn't match \
                 the key it signed for everyone. Messages sealed with it are set aside, never shown \
                 differently from what your partner sees. Nothing you had is lost. Talk with your \
                 partner and compare the state code in person: their app may have been changed."
            }
            ChainError::EpochKey { .. } => {
                "One of your own devices sent this device a key for new messages that doesn't \
                 match the key it signed. Messages sealed with it are set aside. Nothing you had \
                 is lost; check your other devices and compare the state code with your partner."
            }
            ChainError::Membership { .. } | ChainError::UnexpectedIdentity { .. } => {
                "Something arrived from a device or key this space doesn't know. It was ignored. \
                 Check the safety number with your partner in person."
            }
            _ => {
                "Some updates arrived incomplete or out of order. Nothing you had is lost; \
                 syncing again usually fixes this."
            }
        }
    }
}

/// What one page of a sync did ([`Replica::ingest_page`]).
#[derive(Debug)]
pub struct PageOutcome {
    /// How many new events were verified and applied.
    pub accepted: usize,
    /// An integrity problem, if the page showed one (also kept in `alerts`).
    pub alert: Option<Alert>,
    /// Whether to ask for the next page.
    pub fetch_more: bool,
}

/// How far ahead of this device's clock an event's time may be before it is noted.
pub const FUTURE_SLACK_MS: u64 = 5 * 60 * 1000;

/// The note shown on an event dated ahead of this device's clock.
pub const NOTE_DATED_AHEAD: &str =
    "dated in the future by this device's clock; the author's clock may be off";

/// Where a certificate's agreement stands in a space's verified log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateStatus {
    /// The certificate is for another space.
    NotInThisSpace,
    /// Its proposing event, or its words, are not in this log.
    NotInLog,
    /// Signed by both, and nothing since has ended it.
    InForce,
    /// Still waiting for a signature here (this log has not seen both).
    Pending,
    /// A later version took its place.
    Superseded,
    /// Declined.
    Declined,
    /// A partner withdrew consent.
    Withdrawn,
    /// Both partners retired it.
    Retired,
    /// Its review day passed without both renewing it.
    Lapsed,
}

impl CertificateStatus {
    /// A short word for scripts (`in-force`, `withdrawn`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::NotInThisSpace => "not-in-this-space",
            CertificateStatus::NotInLog => "not-in-log",
            CertificateStatus::InForce => "in-force",
            CertificateStatus::Pending => "pending",
            CertificateStatus::Superseded => "superseded",
            CertificateStatus::Declined => "declined",
            CertificateStatus::Withdrawn => "withdrawn",
            CertificateStatus::Retired => "retired",
            CertificateStatus::Lapsed => "lapsed",
        }
    }

    /// Calm words for people.
    pub fn describe(self) -> &'static str {
        match self {
            CertificateStatus::NotInThisSpace => {
                "This certificate belongs to another space, so this log can't say where it stands."
            }
            CertificateStatus::NotInLog => {
                "These words were never proposed at that place in your log, so this certificate \
                 doesn't describe your agreement."
            }
            CertificateStatus::InForce => {
                "In force: both of you signed it and nothing since has ended it."
            }
            CertificateStatus::Pending => {
                "Not yet in force in this log: a signature is still missing."
            }
            CertificateStatus::Superseded => "A later version took its place.",
            CertificateStatus::Declined => "It was declined.",
            CertificateStatus::Withdrawn => "Consent was withdrawn: it is no longer in force.",
            CertificateStatus::Retired => "You both retired it: it is no longer in force.",
            CertificateStatus::Lapsed => {
                "Lapsed: its review date passed without both of you renewing it, so it is no \
                 longer in force. Look at it together."
            }
        }
    }
}

/// What one call to [`Replica::ingest`] did.
#[derive(Debug)]
pub struct Ingested {
    /// How many new events were verified and applied.
    pub accepted: usize,
    /// Why the rest were refused.
    pub error: Option<ChainError>,
}

/// A client's local copy of one space.
pub struct Replica {
    keys: KeyBundle,
    role: Role,
    chain: ChainVerifier,
    epoch_keys: BTreeMap<u32, EpochKey>,
    /// Each epoch's key commitment, from the signed event that started it.
    commitments: BTreeMap<u32, KeyCommitment>,
    /// Verified events from `first` on (all of them unless restored).
    events: Vec<Event>,
    /// The sequence number of `events[0]`: 0 unless restored from a
    /// [`Snapshot`], then its head + 1.
    first: u64,
    /// Before `first` (restored from a snapshot): only the control events
    /// and the events that proposed an agreement version, in order.
    earlier: Vec<Event>,
    /// The author times of the events before `first`.
    earlier_times: Vec<u64>,
    /// The epochs of the events before `first`.
    earlier_epochs: Vec<u32>,
    /// The fold at `first` (restored from a snapshot), to fold again from
    /// when an epoch key arrives for events already folded unreadable.
    base: Option<Box<State>>,
    state: State,
    alerts: Vec<Alert>,
    /// Epochs `0..forgotten` are forgotten: their keys are deleted and
    /// their envelopes are never opened again.
    forgotten: u32,
    /// What the fold still holds from forgotten events, by seq.
    kept: BTreeMap<u64, Content>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("space", &self.chain.space())
            .field("role", &self.role)
            .field("events", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Starts a new space: returns the replica (still empty) and the genesis
    /// event to send to the relay, then to [`Replica::ingest`].
    pub fn create(
        keys: KeyBundle,
        role: Role,
        space: SpaceId,
        now_ms: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Self, Event), ReplicaError> {
        let key = EpochKey::generate(rng);
        let env = crypto::seal_envelope(&key, space, 0, keys.cert.device())?;
        let header = Header {
            space,
            seq: 0,
            prev: EventHash::ZERO,
            author: keys.cert.device().id(),
            epoch: 0,
            timestamp_ms: now_ms,
        };
        let genesis = Event::sign(
            header,
            Body::Control(Control::Genesis {
                cert: keys.cert.clone(),
                commitment: key.commitment(space, 0),
                envelopes: vec![env],
            }),
            &keys.device,
        );
        let mut anchors = TrustAnchors::default();
        anchors.set(role, keys.identity.public());
        Ok((Self::with_anchors(keys, role, space, anchors), genesis))
    }

    /// Opens a space this device joined (after pairing) or restores one from
    /// local storage: `anchors` are the identities authenticated at pairing.
    pub fn open(keys: KeyBundle, role: Role, space: SpaceId, anchors: TrustAnchors) -> Self {
        Self::with_anchors(keys, role, space, anchors)
    }

    fn with_anchors(
        keys: KeyBundle,
        role: Role,
        space: SpaceId,
        mut anchors: TrustAnchors,
    ) -> Self {
        anchors.set(role, keys.identity.public());
        Self {
            keys,
            role,
            chain: ChainVerifier::new(space, anchors),
            epoch_keys: BTreeMap::new(),
            commitments: BTreeMap::new(),
            events: Vec::new(),
            first: 0,
            earlier: Vec::new(),
            earlier_times: Vec::new(),
            earlier_epochs: Vec::new(),
            base: None,
            state: State::default(),
            alerts: Vec::new(),
            forgotten: 0,
            kept: BTreeMap::new(),
        }
    }

    /// The space.
    pub fn space(&self) -> SpaceId {
        self.chain.space()
    }

    /// This device's partner role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The keys.
    pub fn keys(&self) -> &KeyBundle {
        &self.keys
    }

    /// The verified chain.
    pub fn chain(&self) -> &ChainVerifier {
        &self.chain
    }

    /// The decrypted state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The verified events held in memory, in order: every one, unless the
    /// replica was restored from a [`Snapshot`] — then those from
    /// [`Replica::first_held`] on (what a client has yet to store).
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The sequence number of `events()[0]`: 0 unless restored from a
    /// snapshot (then the snapshot's head + 1).
    pub fn first_held(&self) -> u64 {
        self.first
    }

    /// A verified event this replica holds (after a restore, the events
    /// before the snapshot's head are held only if they are control events
    /// or proposed an agreement version).
    pub fn event_at(&self, seq: u64) -> Option<&Event> {
        match seq.checked_sub(self.first) {
            Some(i) => usize::try_from(i).ok().and_then(|i| self.events.get(i)),
            None => self
                .earlier
                .binary_search_by_key(&seq, |e| e.header().seq)
                .ok()
                .and_then(|i| self.earlier.get(i)),
        }
    }

    /// The epoch of every verified event, in order.
    fn epochs(&self) -> impl Iterator<Item = u32> + '_ {
        self.earlier_epochs
            .iter()
            .copied()
            .chain(self.events.iter().map(|e| e.header().epoch))
    }

    /// The author time of every verified event, in order.
    fn times(&self) -> impl Iterator<Item = u64> + '_ {
        self.earlier_times
            .iter()
            .copied()
            .chain(self.events.iter().map(|e| e.header().timestamp_ms))
    }

    /// Integrity alerts raised so far.
    pub fn alerts(&self) -> &[Alert] {
        &self.alerts
    }

    /// The state code of the verified head.
    pub fn state_code(&self) -> String {
        self.chain.state_code()
    }

    /// The role of a member identity (from this device's trust anchors: the
    /// log itself carries no roles).
    pub fn role_of(&self, id: &IdentityKey) -> Option<Role> {
        self.chain.role_of(id)
    }

    /// The partner's identity, once known.
    pub fn partner(&self) -> Option<&IdentityKey> {
        self.chain.anchors_partner(self.role)
    }

    /// The safety number with the partner, once paired.
    pub fn safety_number(&self) -> Option<SafetyNumber> {
        self.partner()
            .map(|p| SafetyNumber::new(&self.keys.identity.public(), p))
    }

    /// Records the partner identity authenticated at pairing.
    pub fn trust_partner(&mut self, key: IdentityKey) {
        self.chain.trust(self.role.other(), key);
    }

    /// Verifies events from the relay and applies the valid prefix.
    ///
    /// Epoch keys are opened before anything is folded, and if a key arrives
    /// for an epoch whose events were already folded unreadable (a device added
    /// after the history began receives every earlier epoch key in its
    /// `AddDevice` envelopes), the state is folded again from the start.
    pub fn ingest(&mut self, events: &[Event]) -> Ingested {
        let ext = self.chain.extend(events);
        let accepted = &events[..ext.accepted];
        let had_unreadable = !self.state.problems.is_empty();
        let mut new_epochs = false;
        for ev in accepted {
            new_epochs |= self.note_control(ev);
        }
        self.events.extend_from_slice(accepted);
        if had_unreadable && new_epochs {
            self.refold();
        } else {
            for ev in accepted {
                self.apply(ev);
            }
        }
        if let Some(e) = &ext.error {
            if !matches!(e, ChainError::Duplicate { .. }) {
                self.alerts.push(Alert { error: e.clone() });
            }
        }
        Ingested {
            accepted: ext.accepted,
            error: ext.error,
        }
    }

    /// Checks the head the relay claims (rollback and fork detection).
    pub fn check_remote_head(
        &mut self,
        remote: Option<(u64, EventHash)>,
    ) -> Result<(), ChainError> {
        let r = self.chain.check_remote_head(remote);
        if let Err(e) = &r {
            self.alerts.push(Alert { error: e.clone() });
        }
        r
    }

    /// Notes a verified control event's epoch commitment and opens its
    /// envelopes (true if it yielded a key for an epoch not held before).
    fn note_control(&mut self, ev: &Event) -> bool {
        if let Body::Control(c) = ev.body() {
            if let Some(k) = c.commitment() {
                self.commitments.insert(ev.header().epoch, *k);
            }
        }
        self.open_envelopes(ev)
    }

    /// Opens the envelopes addressed to this device in a verified control
    /// event and checks each key against the commitment signed when its
    /// epoch started; true if it yielded a key for an epoch not held before.
    /// An envelope that does not open, or whose key does not match, raises
    /// an alert naming its author, and its key is not used (events of that
    /// epoch stay unreadable here rather than read differently).
    fn open_envelopes(&mut self, ev: &Event) -> bool {
        let Body::Control(c) = ev.body() else {
            return false;
        };
        let me = self.keys.cert.device().id();
        let mut new = false;
        let mut bad = None;
        for env in c.envelopes().iter().filter(|e| e.device == me) {
            if self.epoch_keys.contains_key(&env.epoch) || env.epoch < self.forgotten {
                continue;
            }
            let key = crypto::open_envelope(env, ev.header().space, &self.keys.device)
                .ok()
                .filter(|k| {
                    self.commitments.get(&env.epoch)
                        == Some(&k.commitment(ev.header().space, env.epoch))
                });
            match key {
                Some(k) => {
                    self.epoch_keys.insert(env.epoch, k);
                    new = true;
                }
                None => bad = bad.or(Some(env.epoch)),
            }
        }
        if let Some(epoch) = bad {
            let from_partner = self
                .chain
                .members()
                .device(&ev.header().author)
                .is_some_and(|d| d.cert.identity() != &self.keys.identity.public());
            self.alerts.push(Alert {
                error: ChainError::EpochKey {
                    seq: ev.header().seq,
                    epoch,
                    from_partner,
                },
            });
        }
        new
    }

    fn apply(&mut self, ev: &Event) {
        let h = ev.header();
        let members = self.chain.members();
        let Some(entry) = members.device(&h.author) else {
            return;
        };
        let identity = *entry.cert.identity();
        // Every member identity has a role once the chain verified: Genesis
        // and AddMember are checked against the trust anchors.
        let Some(by) = self.chain.role_of(&identity) else {
            return;
        };
        let applied = Applied {
            space: h.space,
            seq: h.seq,
            hash: ev.hash(),
            by,
            identity: &identity,
            at_ms: h.timestamp_ms,
        };
        self.state.observe_time(&applied);
        if h.epoch < self.forgotten {
            // Forgotten as agreed: only what the fold keeps is applied, and
            // the timeline holds nothing from these epochs.
            let lines = self.state.timeline.len();
            match (ev.body(), self.kept.get(&h.seq)) {
                (Body::Control(c), _) => self.state.apply_control(&applied, c),
                (Body::Sealed(_), Some(c)) => self.state.apply(&applied, c),
                (Body::Sealed(_), None) => self.state.apply_forgotten(&applied),
            }
            self.state.timeline.truncate(lines);
            return;
        }
        match ev.body() {
            Body::Control(c) => self.state.apply_control(&applied, c),
            Body::Sealed(ct) => {
                let content = self
                    .epoch_keys
                    .get(&h.epoch)
                    .and_then(|k| crypto::open(k, &h.to_bytes(), ct).ok())
                    .and_then(|pt| Content::decode(&pt).ok());
                match content {
                    Some(c) => self.state.apply(&applied, &c),
                    None => self.state.apply_unreadable(&applied),
                }
            }
        }
    }

    /// Folds every verified event again from the start.
    fn refold(&mut self) {
        // Restored from a snapshot: from its fold (no event before it was
        // unreadable, so folding those again would give the same).
        self.state = self.base.as_deref().cloned().unwrap_or_default();
        self.state.forgotten.epochs = self.forgotten;
        for i in 0..self.events.len() {
            let ev = self.events[i].clone();
            self.apply(&ev);
        }
    }

    fn next_header(&self, now_ms: u64, epoch: u32) -> Result<Header, ReplicaError> {
        let (seq, prev) = self.chain.head().ok_or(ReplicaError::Empty)?;
        Ok(Header {
            space: self.space(),
            seq: seq + 1,
            prev,
            author: self.keys.cert.device().id(),
            epoch,
            timestamp_ms: now_ms,
        })
    }

    /// Seals content as the next event on the verified head. Refuses what
    /// the fold would not apply: a review date more than
    /// [`crate::agreement::MAX_REVIEW_DAYS`] ahead, and a request beyond
    /// the limits both partners signed.
    pub fn compose(
        &self,
        content: &Content,
        now_ms: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Event, ReplicaError> {
        content.validate()?;
        let ask = match content {
            Content::Propose(_) if !self.state.roles.agreed() => {
                return Err(ReplicaError::RolesNotConfirmed);
            }
            Content::Propose(a) => {
                a.check_review(crate::agreement::Day::from_unix_ms(now_ms))?;
                None
            }
            Content::DeviceName { device, .. }
                if self.state.device_owners.get(device) != Some(&self.keys.identity.public()) =>
            {
                return Err(ReplicaError::NotNow(
                    "you can name only your own devices; your partner names theirs",
                ));
            }
            Content::RequestCheckIn { .. } => Some(Ask::CheckIn),
            Content::Phone {
                action: crate::content::PhoneAction::Asked,
                ..
            } => Some(Ask::Phone),
            _ => None,
        };
        if let Some(ask) = ask {
            self.request_allowed(ask, now_ms)?;
        }
        self.seal_content(content, now_ms, rng)
    }

    /// What a modified client could send: content sealed without the
    /// composer's checks of review dates and request limits (text is still
    /// checked). Tests use it to show that the fold enforces them too.
    #[cfg(feature = "testkit")]
    pub fn compose_unchecked(
        &self,
        content: &Content,
        now_ms: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Event, ReplicaError> {
        content.validate()?;
        self.seal_content(content, now_ms, rng)
    }

    fn seal_content(
        &self,
        content: &Content,
        now_ms: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Event, ReplicaError> {
        let epoch = self.chain.members().epoch();
        let key = self
            .epoch_keys
            .get(&epoch)
            .ok_or(ReplicaError::NoEpochKey)?;
        let header = self.next_header(now_ms, epoch)?;
        let ct = crypto::seal(key, &header.to_bytes(), &content.encode(), rng)?;
        Ok(Event::sign(header, Body::Sealed(ct), &self.keys.device))
    }

    fn envelopes_for(
        &self,
        device: &crate::keys::DeviceKey,
    ) -> Result<Vec<crate::event::Envelope>, ReplicaError> {
        // Every epoch key this device still holds (older ones may have been
        // forgotten as agreed).
        self.envelopes_range(self.history_from(), device)
    }

    fn envelopes_range(
        &self,
        from: u32,
        device: &crate::keys::DeviceKey,
    ) -> Result<Vec<crate::event::Envelope>, ReplicaError> {
        let current = self.chain.members().epoch();
        (from..=current)
            .map(|e| {
                let k = self.epoch_keys.get(&e).ok_or(ReplicaError::NoEpochKey)?;
                Ok(crypto::seal_envelope(k, self.space(), e, device)?)
            })
            .collect()
    }

    /// Admits the partner paired with (their certificate came through pairing).
    pub fn compose_add_member(
        &self,
        partner: &DeviceCert,
        now_ms: u64,
    ) -> Result<Event, ReplicaError> {
        let header = self.next_header(now_ms, self.chain.members().epoch())?;
        let control = Control::AddMember {
            cert: partner.clone(),
            envelopes: self.envelopes_for(partner.device())?,
        };
        Ok(Event::sign(
            header,
            Body::Control(control),
            &self.keys.device,
        ))
    }

    /// Admits another device of this identity (after a key rotation).
    ///
    /// Refused, before anything is signed, for a certificate of another
    /// identity or when this identity already has
    /// [`MAX_ACTIVE_DEVICES`](crate::members::MAX_ACTIVE_DEVICES) active
    /// devices (the membership rules would refuse the event).
    pub fn compose_add_device(
        &self,
        cert: &DeviceCert,
        now_ms: u64,
    ) -> Result<Event, ReplicaError> {
        self.compose_add_device_from(cert, self.history_from(), now_ms)
    }

    /// The earliest epoch `k` such that this device holds every epoch key
    /// `k..=current`: the most history it can give a device it adds.
    pub fn history_from(&self) -> u32 {
        let current = self.chain.members().epoch();
        let mut k = current;
        while k > 0 && self.epoch_keys.contains_key(&(k - 1)) {
            k -= 1;
        }
        k
    }

    /// How many verified events of epochs before `from` a device added
    /// with history from epoch `from` would not be able to read.
    pub fn events_before_epoch(&self, from: u32) -> usize {
        self.epochs().filter(|e| *e < from).count()
    }

    /// Admits another device of this identity, sealing it the epoch keys
    /// `from..=current` (`from` = [`Replica::history_from`]: all the
    /// history this device holds; the current epoch: none of the earlier
    /// ones). Refused like [`Replica::compose_add_device`], and when
    /// `from` is later than the current epoch or names a key this device
    /// does not hold.
    pub fn compose_add_device_from(
        &self,
        cert: &DeviceCert,
        from: u32,
        now_ms: u64,
    ) -> Result<Event, ReplicaError> {
        let me = self.keys.identity.public();
        if *cert.identity() != me {
            return Err(ReplicaError::NotNow(
                "only a device certified by your own identity can be added",
            ));
        }
        if self.chain.members().active_count(&me) >= crate::members::MAX_ACTIVE_DEVICES {
            return Err(ReplicaError::NotNow(
                "you already have 5 active devices, the most a person may have; revoke one you no longer use first",
            ));
        }
        let header = self.next_header(now_ms, self.chain.members().epoch())?;
        let current = self.chain.members().epoch();
        if from > current {
            return Err(ReplicaError::NotNow(
                "a new device is always given the current key",
            ));
        }
        let control = Control::AddDevice {
            cert: cert.clone(),
            envelopes: self.envelopes_range(from, cert.device())?,
        };
        Ok(Event::sign(
            header,
            Body::Control(control),
            &self.keys.device,
        ))
    }

    /// Revokes one of this identity's devices and starts a new epoch.
    ///
    /// Refused, before anything is signed, for a device that is not an
    /// active device of this identity (a partner's devices are theirs to
    /// revoke) and for this identity's last active device.
    pub fn compose_revoke(
        &self,
        device: DeviceId,
        now_ms: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Event, ReplicaError> {
        let members = self.chain.members();
        let me = self.keys.identity.public();
        match members.device(&device) {
            Some(d) if d.is_active() && *d.cert.identity() == me => {}
            Some(d) if d.is_active() => {
                return Err(ReplicaError::NotNow(
                    "that is one of your partner's devices; only they can revoke it",
                ));
            }
            Some(_) => return Err(ReplicaError::NotNow("that device is already revoked")),
            None => {
                return Err(ReplicaError::NotNow(
                    "there is no such device in this space",
                ));
            }
        }
        if members.active_count(&me) <= 1 {
            return Err(ReplicaError::NotNow(
                "that is your only active device; add another before revoking it",
            ));
        }
        let epoch = members
            .epoch()
            .checked_add(1)
            .ok_or(ReplicaError::NotNow("too many key changes"))?;
        let key = EpochKey::generate(rng);
        let envelopes = members
            .devices()
            .filter(|(id, d)| d.is_active() && **id != device)
            .map(|(_, d)| crypto::seal_envelope(&key, self.space(), epoch, d.cert.device()))
            .collect::<Result<Vec<_>, _>>()?;
        let header = self.next_header(now_ms, epoch)?;
        Ok(Event::sign(
            header,
            Body::Control(Control::RevokeDevice {
                device,
                commitment: key.commitment(self.space(), epoch),
                envelopes,
            }),
            &self.keys.device,
        ))
    }

    /// Whether a scheduled key change is due at `now_ms`: the current epoch
    /// is at least [`crate::members::ROTATION_PERIOD_MS`] old.
    pub fn rotation_due(&self, now_ms: u64) -> bool {
        self.chain.members().rotation_due(now_ms)
    }

    /// The scheduled key change, if one is due at `now_ms`: a new epoch key
    /// sealed to every active device, on the verified head. Clients append
    /// it before anything else they send once it is due; a client that lost
    /// the race re-bases, sees its partner's rotation, and composes none
    /// (the membership rules refuse a second one within the period).
    pub fn compose_rotation(
        &self,
        now_ms: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Option<Event>, ReplicaError> {
        let members = self.chain.members();
        if !members.rotation_due(now_ms) {
            return Ok(None);
        }
        let epoch = members
            .epoch()
            .checked_add(1)
            .ok_or(ReplicaError::NotNow("too many key changes"))?;
        let key = EpochKey::generate(rng);
        let envelopes = members
            .devices()
            .filter(|(_, d)| d.is_active())
            .map(|(_, d)| crypto::seal_envelope(&key, self.space(), epoch, d.cert.device()))
            .collect::<Result<Vec<_>, _>>()?;
        let header = self.next_header(now_ms, epoch)?;
        Ok(Some(Event::sign(
            header,
            Body::Control(Control::Rotate {
                commitment: key.commitment(self.space(), epoch),
                envelopes,
            }),
            &self.keys.device,
        )))
    }

    /// How many epochs this device has forgotten (epochs `0..n`).
    pub fn forgotten_epochs(&self) -> u32 {
        self.forgotten
    }

    /// Whether this device holds the key of `epoch`.
    pub fn holds_epoch_key(&self, epoch: u32) -> bool {
        self.epoch_keys.contains_key(&epoch)
    }

    /// Whether the event at `seq` was forgotten as agreed (sealed, in a
    /// forgotten epoch): it is in the log but this device no longer reads it.
    pub fn is_forgotten(&self, seq: u64) -> bool {
        self.event_at(seq)
            .is_some_and(|e| e.header().epoch < self.forgotten)
    }

    /// Whether forgetting is due on `now_ms` while this replica, restored
    /// from a [`Snapshot`], does not hold the events forgetting reads: the
    /// client then opens the space from every stored event (and forgets).
    pub fn needs_history(&self, now_ms: u64) -> bool {
        self.first > 0 && self.forget_upto(now_ms) > self.forgotten
    }

    /// The epochs `0..upto` that are due to be forgotten on `now_ms`.
    fn forget_upto(&self, now_ms: u64) -> u32 {
        let retention_ms =
            u64::from(self.state.retention.days).saturating_mul(crate::state::DAY_MS);
        // epoch -> (seq, author time) of the event that started it.
        let starts: BTreeMap<u32, (u64, u64)> = self
            .earlier
            .iter()
            .chain(self.events.iter())
            .filter(|e| matches!(e.body(), Body::Control(c) if c.commitment().is_some()))
            .map(|e| (e.header().epoch, (e.header().seq, e.header().timestamp_ms)))
            .collect();
        let current = self.chain.members().epoch();
        let mut upto = self.forgotten;
        while upto < current {
            match starts.get(&(upto + 1)) {
                Some((_, ended)) if ended.saturating_add(retention_ms) <= now_ms => upto += 1,
                _ => break,
            }
        }
        upto
    }

    /// Forgets, as agreed, the epochs that ended more than the space's
    /// retention period before `now_ms` (this device's clock): their keys
    /// are deleted (and zeroized) and never opened again from their
    /// envelopes, and the fold is made again without their events, keeping
    /// only [`crate::retention::kept_part`] of them (agreements in force or
    /// waiting for a signature on `now_ms`'s day, roles, retention choices).
    /// An epoch ends when the next one starts (the author time of the
    /// `RevokeDevice` or `Rotate` that started it); epochs are forgotten
    /// from the oldest on, and the current epoch never. Returns how many
    /// epochs were newly forgotten. Clients call it on every sync and save
    /// [`Replica::forgetting_record`] with their local state.
    ///
    /// A replica restored from a [`Snapshot`] does not hold the events
    /// before it, so it forgets nothing (0); opened from every stored event,
    /// it does.
    pub fn forget(&mut self, now_ms: u64) -> u32 {
        if self.first > 0 {
            return 0;
        }
        let upto = self.forget_upto(now_ms);
        if upto <= self.forgotten {
            return 0;
        }
        let today = Day::from_unix_ms(now_ms);
        let keep: std::collections::BTreeSet<AgreementId> = self
            .state
            .agreements
            .values()
            .filter(|r| {
                r.in_force_on(today).is_some()
                    || r.pending().is_some_and(|v| v.agreement.review_on >= today)
            })
            .map(|r| r.id)
            .collect();
        let mut kept: BTreeMap<u64, Content> = self
            .kept
            .iter()
            .filter_map(|(seq, c)| Some((*seq, crate::retention::kept_part(c, &keep)?)))
            .collect();
        for ev in &self.events {
            let h = ev.header();
            if h.epoch < self.forgotten || h.epoch >= upto {
                continue;
            }
            let Body::Sealed(ct) = ev.body() else {
                continue;
            };
            let content = self
                .epoch_keys
                .get(&h.epoch)
                .and_then(|k| crypto::open(k, &h.to_bytes(), ct).ok())
                .and_then(|pt| Content::decode(&pt).ok());
            if let Some(part) = content.and_then(|c| crate::retention::kept_part(&c, &keep)) {
                kept.insert(h.seq, part);
            }
        }
        let newly = upto - self.forgotten;
        self.kept = kept;
        self.forgotten = upto;
        self.epoch_keys.retain(|e, _| *e >= upto);
        self.refold();
        newly
    }

    /// This device's forgetting, to keep with its sealed local state (it
    /// holds the plaintext the fold keeps from forgotten events):
    /// [`crate::retention::encode_record`].
    pub fn forgetting_record(&self) -> Vec<u8> {
        crate::retention::encode_record(self.forgotten, &self.kept)
    }

    /// Restores a saved [`Replica::forgetting_record`] before the saved
    /// events are ingested again (so forgotten epochs' envelopes are never
    /// opened). Refused once events were ingested.
    pub fn restore_forgetting(&mut self, record: &[u8]) -> Result<(), ReplicaError> {
        if !self.events.is_empty() || self.first > 0 {
            return Err(ReplicaError::NotNow(
                "forgetting is restored before the saved events are read",
            ));
        }
        let (epochs, kept) = crate::retention::decode_record(record)
            .map_err(|_| ReplicaError::NotNow("the saved forgetting record is damaged"))?;
        self.forgotten = epochs;
        self.kept = kept;
        self.state.forgotten.epochs = epochs;
        Ok(())
    }

    /// Content shortening how long things are kept (one partner's choice).
    pub fn retention_shorten(&self, days: u32) -> Result<Content, ReplicaError> {
        crate::retention::check_days(days)?;
        if days >= self.state.retention.days {
            return Err(ReplicaError::NotNow(
                "that isn't shorter than now; keeping things longer takes both of you (propose it)",
            ));
        }
        Ok(Content::Retention { days })
    }

    /// Content proposing to keep things longer (applies once the partner agrees).
    pub fn retention_propose(&self, days: u32) -> Result<Content, ReplicaError> {
        crate::retention::check_days(days)?;
        if days <= self.state.retention.days {
            return Err(ReplicaError::NotNow(
                "that isn't longer than now; to keep things for less time, shorten it",
            ));
        }
        Ok(Content::Retention { days })
    }

    /// Content agreeing to the partner's proposal to keep things longer.
    pub fn retention_agree(&self) -> Result<Content, ReplicaError> {
        match self.state.retention.proposal {
            Some((by, days, _)) if by != self.role => Ok(Content::AgreeRetention { days }),
            Some(_) => Err(ReplicaError::NotNow(
                "that proposal is yours; your partner is the one to agree to it",
            )),
            None => Err(ReplicaError::NotNow(
                "there is no proposal to keep things longer right now",
            )),
        }
    }

    /// Whether this partner may make a request now, within the limits both
    /// signed ([`State::beyond_limits`]).
    pub fn request_allowed(&self, ask: Ask, now_ms: u64) -> Result<(), ReplicaError> {
        match self.state.beyond_limits(self.role, ask, now_ms) {
            Some(Beyond::Agreed(limit)) => Err(ReplicaError::OutsideLimits(limit)),
            Some(Beyond::Unagreed(limit)) => Err(ReplicaError::UnagreedLimit(limit)),
            None => Ok(()),
        }
    }

    /// The identity of the partner in `role`, once both joined.
    fn identity_of(&self, role: Role) -> Option<IdentityKey> {
        if self.state.partners.len() < 2 {
            return None;
        }
        if role == self.role {
            Some(self.keys.identity.public())
        } else {
            self.partner().copied()
        }
    }

    /// Content confirming who sets the conditions as things stand
    /// ([`crate::state::Roles::sets`]: the partner paired as leading, unless
    /// either partner proposed the other, or both swapped).
    pub fn confirm_roles(&self) -> Result<Content, ReplicaError> {
        let sets = self
            .identity_of(self.state.roles.sets)
            .ok_or(ReplicaError::NotNow(
                "your partner hasn't joined yet; confirm who sets the conditions once they have",
            ))?;
        Ok(Content::ConfirmRoles {
            sets_conditions: Some(sets),
        })
    }

    /// Content asking for the roles the other way round: before both
    /// confirmed, a different proposal (only this partner's confirmation
    /// counts until the other confirms it); once agreed, a wish to swap them,
    /// which takes effect when both asked. Each rule keeps asking the same
    /// person it asked when it was signed.
    pub fn swap_roles(&self) -> Result<Content, ReplicaError> {
        let other = self
            .identity_of(self.state.roles.sets.other())
            .ok_or(ReplicaError::NotNow(
                "your partner hasn't joined yet; you can choose roles together once they have",
            ))?;
        if self.state.roles.swap_requests.contains_key(&self.role) {
            return Err(ReplicaError::NotNow(
                "you have already asked to swap the roles; it takes effect once your partner agrees",
            ));
        }
        Ok(Content::ConfirmRoles {
            sets_conditions: Some(other),
        })
    }

    /// Content asking to end the roles: nobody sets the conditions once both
    /// asked, and nothing new can be proposed until both confirm roles again.
    pub fn end_roles(&self) -> Result<Content, ReplicaError> {
        if !self.state.roles.agreed() {
            return Err(ReplicaError::NotNow(
                "the roles aren't confirmed, so there is nothing to end",
            ));
        }
        Ok(Content::ConfirmRoles {
            sets_conditions: None,
        })
    }

    /// Content proposing an agreement version.
    pub fn propose(&self, agreement: Agreement) -> Result<Content, ReplicaError> {
        agreement.validate()?;
        Ok(Content::Propose(agreement))
    }

    /// Content co-signing an agreement version with this identity.
    pub fn cosign(&self, id: AgreementId, version: u32) -> Result<Content, ReplicaError> {
        let rec = self
            .state
            .agreements
            .get(&id)
            .ok_or(ReplicaError::UnknownAgreement)?;
        let v = rec
            .versions
            .get(version.saturating_sub(1) as usize)
            .ok_or(ReplicaError::UnknownAgreement)?;
        if v.signatures.contains_key(&self.role) {
            return Err(ReplicaError::NotNow("you have already signed this version"));
        }
        if v.status != crate::state::VersionStatus::Pending {
            return Err(ReplicaError::NotNow(
                "this version is no longer open for signing",
            ));
        }
        Ok(Content::Cosign {
            agreement: id,
            version,
            hash: v.hash,
            signature: v.agreement.cosign(
                self.space(),
                &Position {
                    seq: v.proposed_at,
                    event: v.proposed_hash,
                },
                &self.keys.identity,
            ),
        })
    }

    /// A certificate for an agreement version that came into force (it may
    /// have ended since: the certificate proves the signing, not today's
    /// status), carrying the proposing event and its author's device
    /// certificate from the verified log.
    pub fn certificate(&self, id: AgreementId, version: u32) -> Result<Certificate, ReplicaError> {
        let v = self
            .state
            .agreements
            .get(&id)
            .and_then(|r| r.versions.get(version.checked_sub(1)? as usize))
            .ok_or(ReplicaError::UnknownAgreement)?;
        let proof = v.in_force.as_ref().ok_or(ReplicaError::NotNow(
            "this version was never signed by both of you, so there is no certificate for it",
        ))?;
        let ev = self
            .event_at(v.proposed_at)
            .ok_or(ReplicaError::UnknownAgreement)?;
        let author = self
            .chain
            .members()
            .device(&ev.header().author)
            .ok_or(ReplicaError::UnknownAgreement)?;
        Ok(proof.certificate(ev, &author.cert)?)
    }

    /// Where a (verified) certificate's agreement stands in this space's
    /// verified log on `today` (a version in force lapses after its review day).
    pub fn certificate_status(&self, cert: &Certificate, today: Day) -> CertificateStatus {
        if cert.space() != self.space() {
            return CertificateStatus::NotInThisSpace;
        }
        let at = cert.position();
        let in_log = self.chain.hash_at(at.seq) == Some(at.event);
        if !in_log {
            return CertificateStatus::NotInLog;
        }
        let a = cert.agreement();
        let v = self
            .state
            .agreements
            .get(&a.id)
            .and_then(|r| r.versions.get(a.version.checked_sub(1)? as usize));
        match v {
            Some(v) if v.hash == a.content_hash() && v.proposed_at == at.seq => {
                match v.status_on(today) {
                    VersionStatus::Pending => CertificateStatus::Pending,
                    VersionStatus::InForce => CertificateStatus::InForce,
                    VersionStatus::Superseded => CertificateStatus::Superseded,
                    VersionStatus::Declined => CertificateStatus::Declined,
                    VersionStatus::Withdrawn => CertificateStatus::Withdrawn,
                    VersionStatus::Retired => CertificateStatus::Retired,
                    VersionStatus::Lapsed => CertificateStatus::Lapsed,
                }
            }
            _ => CertificateStatus::NotInLog,
        }
    }

    /// Notes about events dated more than [`FUTURE_SLACK_MS`] ahead of this
    /// device's clock (`now_ms`): the author's clock may be wrong. They
    /// cannot be refused without a trusted clock, but they must not pass
    /// silently.
    pub fn future_notes(&self, now_ms: u64) -> Vec<(u64, String)> {
        self.times()
            .zip(0u64..)
            .filter(|(t, _)| *t > now_ms.saturating_add(FUTURE_SLACK_MS))
            .map(|(_, seq)| (seq, NOTE_DATED_AHEAD.to_owned()))
            .collect()
    }

    /// Verifies one page from the relay: the relay's claimed head (`None`:
    /// it claims the space is empty), the events it sent from this device's
    /// verified head on, and whether it says there is more. The one sync
    /// step both clients use, so both raise the same alerts: a claimed head
    /// below what was verified (or none) is a rollback, one that differs at
    /// a verified position a fork, and a claimed head above what was
    /// verified once the relay stopped sending is withholding (a gap).
    pub fn ingest_page(
        &mut self,
        head: Option<(u64, EventHash)>,
        events: &[Event],
        more: bool,
    ) -> PageOutcome {
        let stop = |accepted, alert| PageOutcome {
            accepted,
            alert,
            fetch_more: false,
        };
        if let Err(e) = self.check_remote_head(head) {
            return stop(0, Some(Alert { error: e }));
        }
        let mut accepted = 0;
        if !events.is_empty() {
            let r = self.ingest(events);
            accepted = r.accepted;
            match r.error {
                None | Some(ChainError::Duplicate { .. }) => {}
                Some(e) => return stop(accepted, Some(Alert { error: e })),
            }
        }
        let len = self.chain.len();
        if accepted == 0 || !more {
            // The relay stopped sending: its head must be one this device verified.
            if let Some((seq, _)) = head {
                if seq >= len {
                    let e = ChainError::Gap {
                        expected: len,
                        got: seq,
                    };
                    self.alerts.push(Alert { error: e.clone() });
                    return stop(accepted, Some(Alert { error: e }));
                }
            }
            return stop(accepted, None);
        }
        PageOutcome {
            accepted,
            alert: None,
            fetch_more: true,
        }
    }

    /// The first of `sent` that the verified log holds at its own position.
    ///
    /// `sent` are events this device posted whose outcome is not known to
    /// be a refusal: an append whose answer was lost (no answer, a broken
    /// connection, a relay or database failing over) may have been written
    /// all the same. After a sync, an event found here went through, so the
    /// action is done and must not be composed and posted again. Both
    /// clients (native and browser) decide with this.
    #[must_use]
    pub fn already_in<'a>(&self, sent: &'a [Event]) -> Option<&'a Event> {
        sent.iter()
            .find(|e| self.chain.hash_at(e.header().seq) == Some(e.hash()))
    }

    /// Content consenting to a report.
    pub fn consent(&self, scope: ReportScope) -> Content {
        let signature = sign_consent(self.space(), &scope, &self.keys.identity);
        Content::ReportConsent { scope, signature }
    }
}

impl ChainVerifier {
    pub(crate) fn anchors_partner(&self, role: Role) -> Option<&IdentityKey> {
        match role.other() {
            Role::Leading => self.anchors().leading.as_ref(),
            Role::Rebuilding => self.anchors().rebuilding.as_ref(),
        }
    }
}
