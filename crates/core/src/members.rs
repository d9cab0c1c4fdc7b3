//! Who may read and write a space: the membership rules, applied to control
//! events. The relay and every client run this same code, so they agree on
//! which device keys are members at every sequence number.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use thiserror::Error;

use crate::encoding::{DecodeError, Reader, Writer};
use crate::event::{Body, Control, Envelope, Event, Header};
use crate::keys::{DeviceCert, DeviceId, IdentityKey};
use crate::sign::PreparedKey;

/// The most devices one person may have active in a space at once.
///
/// A device added unnoticed is a way to watch someone, so the number is
/// small: a phone, a laptop, a tablet and room to replace one before
/// revoking it. The relay and every client refuse an `AddDevice` beyond it.
pub const MAX_ACTIVE_DEVICES: usize = 5;

/// How long an epoch lasts before a scheduled [`Control::Rotate`] may start
/// the next one: 30 days, by the authors' clocks (the timestamp of the event
/// that started the epoch, and the rotation's own). Scheduled rotation lets
/// clients forget old epochs' keys (docs/PROTOCOL.md §4, "Forgetting on
/// schedule"); a rotation before the period is refused by the relay and by
/// every client, so neither a partner nor a modified client can churn keys,
/// and two clients racing after the period cannot both rotate.
pub const ROTATION_PERIOD_MS: u64 = 30 * 86_400_000;

/// A membership rule that an event breaks.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The author is not a device of a member (or never was).
    #[error("the author is not a device of this space")]
    UnknownAuthor,
    /// The author's device was revoked.
    #[error("the author's device was revoked")]
    RevokedAuthor,
    /// Seq 0 must be a genesis event and only seq 0 may be one.
    #[error("a genesis event is out of place")]
    Genesis,
    /// The change is not allowed (wrong identity, third member…).
    #[error("this membership change is not allowed: {0}")]
    NotAllowed(&'static str),
    /// The envelopes do not match the devices and epochs the change requires.
    #[error("the key envelopes do not match the members")]
    Envelopes,
    /// The event's key epoch is not the space's current one.
    #[error("the event uses key epoch {got}, expected {expected}")]
    Epoch {
        /// The epoch the rules require.
        expected: u32,
        /// The epoch in the event.
        got: u32,
    },
}

/// One device known to the space.
#[derive(Clone, Debug)]
pub struct DeviceEntry {
    /// Its certificate.
    pub cert: DeviceCert,
    /// The sequence number of the event that revoked it, if any.
    pub revoked_at: Option<u64>,
    /// The sequence number of the event that admitted it.
    pub added_at: u64,
    prepared: PreparedKey,
}

impl DeviceEntry {
    /// The prepared verifying key (for batch verification).
    pub fn prepared(&self) -> &PreparedKey {
        &self.prepared
    }

    /// Whether it may still read and write.
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// The members of a space as of some sequence number.
#[derive(Clone, Debug, Default)]
pub struct Members {
    devices: BTreeMap<DeviceId, DeviceEntry>,
    /// The creator's identity first, then the joiner's.
    identities: Vec<IdentityKey>,
    epoch: u32,
    /// The author time of the event that started the current epoch.
    epoch_started_ms: u64,
}

impl Members {
    /// No members (before genesis).
    pub fn new() -> Self {
        Self::default()
    }

    /// The current key epoch.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The author time (ms) of the event that started the current epoch.
    pub fn epoch_started_ms(&self) -> u64 {
        self.epoch_started_ms
    }

    /// Whether a scheduled rotation may start a new epoch at `now_ms`
    /// (author time): the current epoch is at least
    /// [`ROTATION_PERIOD_MS`] old.
    pub fn rotation_due(&self, now_ms: u64) -> bool {
        !self.devices.is_empty()
            && now_ms >= self.epoch_started_ms.saturating_add(ROTATION_PERIOD_MS)
    }

    /// The member identities (one or two): the creator's first. Roles are
    /// not public, so the member list has none; a client maps identities to
    /// roles through its trust anchors.
    pub fn identities(&self) -> &[IdentityKey] {
        &self.identities
    }

    /// Whether `id` is one of the (at most two) member identities.
    pub fn is_member(&self, id: &IdentityKey) -> bool {
        self.identities.contains(id)
    }

    /// Every device ever admitted, revoked ones included.
    pub fn devices(&self) -> impl Iterator<Item = (&DeviceId, &DeviceEntry)> {
        self.devices.iter()
    }

    /// A device entry, active or revoked.
    pub fn device(&self, id: &DeviceId) -> Option<&DeviceEntry> {
        self.devices.get(id)
    }

    /// The verifying key of an *active* device.
    pub fn active_key(&self, id: &DeviceId) -> Option<&VerifyingKey> {
        self.devices
            .get(id)
            .filter(|d| d.is_active())
            .map(|d| d.prepared.key())
    }

    /// Looks up the author of an event and checks it may write now.
    pub fn author(&self, id: &DeviceId) -> Result<&DeviceEntry, MembershipError> {
        match self.devices.get(id) {
            None => Err(MembershipError::UnknownAuthor),
            Some(d) if !d.is_active() => Err(MembershipError::RevokedAuthor),
            Some(d) => Ok(d),
        }
    }

    /// How many devices of `identity` are active.
    pub fn active_count(&self, identity: &IdentityKey) -> usize {
        self.devices
            .values()
            .filter(|d| d.is_active() && d.cert.identity() == identity)
            .count()
    }

    /// Whether `id` came by `AddDevice`: a device of its identity after the
    /// first one (which came with Genesis or AddMember). These are the
    /// devices a partner is told about.
    pub fn was_added(&self, id: &DeviceId) -> bool {
        let Some(d) = self.devices.get(id) else {
            return false;
        };
        self.devices
            .values()
            .any(|o| o.cert.identity() == d.cert.identity() && o.added_at < d.added_at)
    }

    fn active_ids(&self) -> Vec<DeviceId> {
        self.devices
            .iter()
            .filter(|(_, d)| d.is_active())
            .map(|(k, _)| *k)
            .collect()
    }

    fn check_envelopes(
        envelopes: &[Envelope],
        want: impl IntoIterator<Item = (u32, DeviceId)>,
    ) -> Result<(), MembershipError> {
        let mut want: Vec<(u32, DeviceId)> = want.into_iter().collect();
        let mut got: Vec<(u32, DeviceId)> = envelopes.iter().map(|e| (e.epoch, e.device)).collect();
        want.sort();
        got.sort();
        if want == got {
            Ok(())
        } else {
            Err(MembershipError::Envelopes)
        }
    }

    /// An `AddDevice`'s envelopes: all for the new device, exactly one for
    /// each epoch `k..=current`, for some `k` the adder chose (0: the whole
    /// history; `current`: only from the current epoch on).
    fn check_history_envelopes(
        envelopes: &[Envelope],
        device: DeviceId,
        current: u32,
    ) -> Result<(), MembershipError> {
        let mut epochs: Vec<u32> = Vec::with_capacity(envelopes.len());
        for e in envelopes {
            if e.device != device {
                return Err(MembershipError::Envelopes);
            }
            epochs.push(e.epoch);
        }
        epochs.sort_unstable();
        let Some(&first) = epochs.first() else {
            return Err(MembershipError::Envelopes);
        };
        let contiguous = epochs
            .iter()
            .enumerate()
            .all(|(i, &e)| u64::from(e) == u64::from(first) + i as u64);
        if contiguous && epochs.last() == Some(&current) {
            Ok(())
        } else {
            Err(MembershipError::Envelopes)
        }
    }

    fn admit(&mut self, cert: &DeviceCert, seq: u64) -> Result<(), MembershipError> {
        let id = cert.device().id();
        if self.devices.contains_key(&id) {
            return Err(MembershipError::NotAllowed(
                "this device was admitted before",
            ));
        }
        self.devices.insert(
            id,
            DeviceEntry {
                cert: cert.clone(),
                revoked_at: None,
                added_at: seq,
                prepared: PreparedKey::new(*cert.device().verifying_key()),
            },
        );
        Ok(())
    }

    /// Checks that `header`'s author may write a sealed event (which changes
    /// no membership): an active member, at the current epoch, not at seq 0.
    /// The same check [`Members::apply`] makes for a sealed body, without
    /// needing a mutable (or cloned) member list.
    pub fn check_sealed(&self, header: &Header) -> Result<(), MembershipError> {
        if header.seq == 0 {
            return Err(MembershipError::Genesis);
        }
        self.author(&header.author)?;
        self.expect_epoch(header, self.epoch)
    }

    /// Checks that `header`'s author may write an event with this body, and
    /// applies the membership change if it is a control event. Nothing changes
    /// on error. Does not check the signature or the chain.
    pub fn apply(&mut self, header: &Header, body: &Body) -> Result<(), MembershipError> {
        let control = match body {
            Body::Sealed(_) => return self.check_sealed(header),
            Body::Control(c) => c,
        };
        if let Control::Genesis {
            cert, envelopes, ..
        } = control
        {
            if header.seq != 0 || !self.devices.is_empty() {
                return Err(MembershipError::Genesis);
            }
            if cert.device().id() != header.author {
                return Err(MembershipError::UnknownAuthor);
            }
            self.expect_epoch(header, 0)?;
            Self::check_envelopes(envelopes, [(0, header.author)])?;
            let mut next = self.clone();
            next.epoch_started_ms = header.timestamp_ms;
            next.identities.push(*cert.identity());
            next.admit(cert, 0)?;
            *self = next;
            return Ok(());
        }
        if header.seq == 0 {
            return Err(MembershipError::Genesis);
        }
        let author = self.author(&header.author)?;
        let author_identity = *author.cert.identity();
        let mut next = self.clone();
        match control {
            Control::Genesis { .. } => return Err(MembershipError::Genesis),
            Control::AddMember { cert, envelopes } => {
                self.expect_epoch(header, self.epoch)?;
                if self.identities.len() != 1 {
                    return Err(MembershipError::NotAllowed(
                        "a space has exactly two partners",
                    ));
                }
                if *cert.identity() == author_identity {
                    return Err(MembershipError::NotAllowed(
                        "a partner cannot pair with themself",
                    ));
                }
                let dev = cert.device().id();
                Self::check_history_envelopes(envelopes, dev, self.epoch)?;
                next.identities.push(*cert.identity());
                next.admit(cert, header.seq)?;
            }
            Control::AddDevice { cert, envelopes } => {
                self.expect_epoch(header, self.epoch)?;
                if *cert.identity() != author_identity {
                    return Err(MembershipError::NotAllowed(
                        "a partner can add only their own devices",
                    ));
                }
                if self.active_count(&author_identity) >= MAX_ACTIVE_DEVICES {
                    return Err(MembershipError::NotAllowed(
                        "a partner may have at most 5 active devices",
                    ));
                }
                Self::check_history_envelopes(envelopes, cert.device().id(), self.epoch)?;
                next.admit(cert, header.seq)?;
            }
            Control::RevokeDevice {
                device, envelopes, ..
            } => {
                let new_epoch = self
                    .epoch
                    .checked_add(1)
                    .ok_or(MembershipError::NotAllowed("too many epochs"))?;
                self.expect_epoch(header, new_epoch)?;
                let target = self
                    .devices
                    .get(device)
                    .filter(|d| d.is_active())
                    .ok_or(MembershipError::NotAllowed("no such active device"))?;
                if *target.cert.identity() != author_identity {
                    return Err(MembershipError::NotAllowed(
                        "a partner can revoke only their own devices",
                    ));
                }
                if let Some(d) = next.devices.get_mut(device) {
                    d.revoked_at = Some(header.seq);
                }
                if next.active_count(&author_identity) == 0 {
                    return Err(MembershipError::NotAllowed(
                        "a partner's last device cannot be revoked",
                    ));
                }
                let remaining = next.active_ids();
                Self::check_envelopes(envelopes, remaining.into_iter().map(|d| (new_epoch, d)))?;
                next.epoch = new_epoch;
                next.epoch_started_ms = header.timestamp_ms;
            }
            Control::Rotate { envelopes, .. } => {
                let new_epoch = self
                    .epoch
                    .checked_add(1)
                    .ok_or(MembershipError::NotAllowed("too many epochs"))?;
                self.expect_epoch(header, new_epoch)?;
                if !self.rotation_due(header.timestamp_ms) {
                    return Err(MembershipError::NotAllowed(
                        "a scheduled key change comes at most once a period",
                    ));
                }
                let active = self.active_ids();
                Self::check_envelopes(envelopes, active.into_iter().map(|d| (new_epoch, d)))?;
                next.epoch = new_epoch;
                next.epoch_started_ms = header.timestamp_ms;
            }
        }
        *self = next;
        Ok(())
    }

    /// [`Members::apply`] for a whole event.
    pub fn apply_event(&mut self, event: &Event) -> Result<(), MembershipError> {
        self.apply(event.header(), event.body())
    }

    fn expect_epoch(&self, header: &Header, expected: u32) -> Result<(), MembershipError> {
        if header.epoch == expected {
            Ok(())
        } else {
            Err(MembershipError::Epoch {
                expected,
                got: header.epoch,
            })
        }
    }

    /// Canonical bytes, for a relay that stores the member list beside the
    /// log (version 3 also keeps when the current epoch started; version 2
    /// is still read).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(3)
            .u32(self.epoch)
            .u64(self.epoch_started_ms)
            .u32(self.devices.len() as u32);
        for d in self.devices.values() {
            w.u64(d.added_at);
            w.opt(d.revoked_at, |w, s| {
                w.u64(s);
            });
            d.cert.encode(&mut w);
        }
        w.finish()
    }

    /// Decodes [`Members::encode`]'s output (certificates are re-verified).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = r.u8()?;
        // Version 1 carried each device's role; roles are no longer public.
        // Version 2 did not keep when the epoch started (version 3 does).
        if v != 2 && v != 3 {
            return Err(DecodeError::UnsupportedVersion(v));
        }
        let epoch = r.u32()?;
        // Version 2 (before scheduled rotation) did not keep the start time:
        // a rotation is then allowed at once, as it would be after a period.
        let epoch_started_ms = if v == 3 { r.u64()? } else { 0 };
        let n = r.count(1024)?;
        let mut m = Members {
            epoch,
            epoch_started_ms,
            ..Self::default()
        };
        // (when first admitted, identity): the creator's identity came first.
        let mut first: Vec<(u64, IdentityKey)> = Vec::new();
        for _ in 0..n {
            let added_at = r.u64()?;
            let revoked_at = r.opt(|r| r.u64())?;
            let cert = DeviceCert::decode(&mut r)?;
            match first.iter_mut().find(|(_, k)| k == cert.identity()) {
                Some(f) => f.0 = f.0.min(added_at),
                None => first.push((added_at, *cert.identity())),
            }
            m.devices.insert(
                cert.device().id(),
                DeviceEntry {
                    prepared: PreparedKey::new(*cert.device().verifying_key()),
                    cert,
                    revoked_at,
                    added_at,
                },
            );
        }
        r.finish()?;
        if first.len() > 2 {
            return Err(DecodeError::Invalid("member list"));
        }
        first.sort_by_key(|(at, _)| *at);
        m.identities = first.into_iter().map(|(_, k)| k).collect();
        Ok(m)
    }
}
