//! A snapshot of a replica's verified state, sealed for this device, so that
//! opening a long-lived space does not verify, decrypt and fold every event
//! again (docs/PROTOCOL.md §10, "The snapshot").
//!
//! What it holds is what a full open of the stored events would rebuild:
//! the hash, author time and epoch of every verified event (fork and duplicate
//! checks, `already_in`, the notes on events dated ahead), the member list,
//! the control events (replayed on restore to open this device's epoch keys
//! against their signed commitments — no key is written down here — and to
//! raise the same alerts), the events that proposed an agreement version
//! (certificates carry them), the forgetting record (epochs forgotten as
//! agreed and what the fold keeps of them), and the fold ([`State`], encoded field by
//! field: a field added to `State` fails to compile here until it is
//! saved too).
//!
//! It is sealed with the device's [`LocalKey`](crate::local::LocalKey) under
//! associated data `"troth.app/v2/local-snapshot" || 0x00 || space (16) ||
//! seq (u64) || head hash (32)`: it opens only for the space and the head
//! it describes, and the caller names that head from what it stored.
//! Anything that does not open, or decodes to another space, role or trust
//! anchors, is refused ([`SnapshotError`]); the caller then verifies the
//! stored events from the start.

use std::collections::BTreeMap;

use ed25519_dalek::Signature;
use rand_core::CryptoRngCore;
use thiserror::Error;
use zeroize::Zeroizing;

use super::Replica;
use crate::agreement::{Agreement, ContentHash, InForce, Position};
use crate::content::{AnswerKind, ExportKind, PhoneAction, ReportScope};
use crate::encoding::{DecodeError, Reader, Writer};
use crate::event::{Body, Event, EventHash, Role};
use crate::ids::{AgreementId, SpaceId};
use crate::keyfile::KeyBundle;
use crate::keys::{DeviceId, IdentityKey};
use crate::log::{ChainVerifier, TrustAnchors};
use crate::members::Members;
use crate::retention::{Forgotten, Retention};
use crate::sign::Label;
use crate::state::{
    AgreementRecord, CheckInRecord, PhoneRecord, RequestRecord, Roles, State, TimelineEntry,
    VersionRecord, VersionStatus,
};

/// The snapshot's format version (inside the sealed record).
const FORMAT: u8 = 2;
/// Bounds for decoding (the record is authenticated; these only keep a
/// decoder from allocating on a corrupt length).
const MANY: usize = 1 << 26;
const TEXT: usize = 1 << 20;

/// A snapshot was not used: it does not open for this space and head, or
/// does not describe this device's view of the space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the saved snapshot doesn't match this space's saved events, so it wasn't used")]
pub struct SnapshotError;

impl From<DecodeError> for SnapshotError {
    fn from(_: DecodeError) -> Self {
        SnapshotError
    }
}

/// A sealed snapshot and the head it describes.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The head's sequence number.
    pub seq: u64,
    /// The head's hash.
    pub head: EventHash,
    /// The sealed record (`u8 1 || nonce || ciphertext || tag`).
    pub sealed: Vec<u8>,
}

fn aad(space: SpaceId, seq: u64, head: &EventHash) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + 8 + 32);
    body.extend_from_slice(&space.0);
    body.extend_from_slice(&seq.to_be_bytes());
    body.extend_from_slice(&head.0);
    crate::sign::message(Label::LocalSnapshot, &body)
}

impl Replica {
    /// Seals the verified state as a [`Snapshot`] of the current head.
    ///
    /// `None` for an empty space, and while some event could not be read
    /// on this device (a late epoch key folds everything again, which
    /// needs every event).
    pub fn snapshot(&self, rng: &mut impl CryptoRngCore) -> Option<Snapshot> {
        let (seq, head) = self.chain.head()?;
        if self
            .state
            .problems
            .iter()
            .any(|(_, w)| w == crate::state::PROBLEM_UNREADABLE)
        {
            return None;
        }
        let mut w = Writer::with_capacity(64 * (self.chain.len() as usize + 16));
        w.u8(FORMAT).raw(&self.space().0).u8(self.role.to_u8());
        let anchors = self.chain.anchors();
        for a in [&anchors.leading, &anchors.rebuilding] {
            w.opt(a.as_ref(), |w, k| {
                w.raw(&k.to_bytes());
            });
        }
        w.u64(self.chain.len());
        for s in 0..self.chain.len() {
            w.raw(&self.chain.hash_at(s).unwrap_or(EventHash::ZERO).0);
        }
        for t in self.times() {
            w.u64(t);
        }
        for e in self.epochs() {
            w.u32(e);
        }
        w.bytes(&self.chain.members().encode());
        // A few per agreement: searched in a plain list (a set or a sort
        // would add their code to the browser's download).
        let proposals: Vec<u64> = self
            .state
            .agreements
            .values()
            .flat_map(|a| a.versions.iter().map(|v| v.proposed_at))
            .collect();
        let kept: Vec<&Event> = self
            .earlier
            .iter()
            .chain(self.events.iter())
            .filter(|e| matches!(e.body(), Body::Control(_)) || proposals.contains(&e.header().seq))
            .collect();
        w.u32(kept.len() as u32);
        for e in kept {
            w.bytes(e.as_bytes());
        }
        w.bytes(&crate::retention::encode_record(self.forgotten, &self.kept));
        encode_state(&mut w, &self.state);
        let plain = Zeroizing::new(w.finish());
        let sealed = self
            .keys
            .local_key()
            .seal_with(&aad(self.space(), seq, &head), &plain, rng);
        Some(Snapshot { seq, head, sealed })
    }

    /// Restores a replica from a [`Snapshot`] sealed by this device for
    /// `space` at `head` — the newest event the caller stored and verified
    /// before. `role` and `anchors` are what the caller stored with it;
    /// a snapshot of another space, head, role or anchors is refused, and
    /// so is anything altered. Events after `head` are then given to
    /// [`Replica::ingest`] as usual.
    pub fn restore(
        keys: KeyBundle,
        role: Role,
        space: SpaceId,
        anchors: TrustAnchors,
        head: (u64, EventHash),
        sealed: &[u8],
    ) -> Result<Self, SnapshotError> {
        let plain = keys
            .local_key()
            .open_with(&aad(space, head.0, &head.1), sealed)
            .map_err(|_| SnapshotError)?;
        let mut r = Reader::new(&plain);
        if r.u8()? != FORMAT || SpaceId(r.array()?) != space || Role::from_u8(r.u8()?)? != role {
            return Err(SnapshotError);
        }
        let mut saved = TrustAnchors::default();
        if let Some(k) = r.opt(identity)? {
            saved.set(Role::Leading, k);
        }
        if let Some(k) = r.opt(identity)? {
            saved.set(Role::Rebuilding, k);
        }
        let mut replica = Replica::open(keys, role, space, anchors);
        if *replica.chain.anchors() != saved {
            return Err(SnapshotError);
        }
        let n = usize::try_from(r.u64()?).map_err(|_| SnapshotError)?;
        if n.checked_mul(44).is_none_or(|b| b > r.remaining()) {
            return Err(SnapshotError);
        }
        let hashes: Vec<EventHash> = (0..n)
            .map(|_| r.array().map(EventHash))
            .collect::<Result<_, _>>()?;
        if n == 0 || n as u64 != head.0.wrapping_add(1) || hashes.last() != Some(&head.1) {
            return Err(SnapshotError);
        }
        let times: Vec<u64> = (0..n).map(|_| r.u64()).collect::<Result<_, _>>()?;
        let epochs: Vec<u32> = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
        let members = Members::decode(r.bytes(MANY)?)?;
        let k = r.count(MANY)?;
        let mut earlier: Vec<Event> = Vec::with_capacity(k.min(r.remaining()));
        for _ in 0..k {
            let e = Event::decode(r.bytes(MANY)?)?;
            let seq = e.header().seq;
            let after_last = earlier.last().is_none_or(|l| l.header().seq < seq);
            if !after_last || hashes.get(seq as usize) != Some(&e.hash()) {
                return Err(SnapshotError);
            }
            earlier.push(e);
        }
        let (forgotten, kept) = crate::retention::decode_record(r.bytes(MANY)?)?;
        let state = decode_state(&mut r, space)?;
        r.finish()?;
        replica.chain = ChainVerifier::restored(space, saved, members, hashes);
        // Forgotten epochs' envelopes are never opened again.
        replica.forgotten = forgotten;
        replica.kept = kept;
        // The control events, in order, give the epoch commitments and this
        // device's epoch keys (and their alerts) exactly as a full open does.
        let controls: Vec<Event> = earlier
            .iter()
            .filter(|e| matches!(e.body(), Body::Control(_)))
            .cloned()
            .collect();
        for ev in &controls {
            replica.note_control(ev);
        }
        replica.first = n as u64;
        replica.earlier = earlier;
        replica.earlier_times = times;
        replica.earlier_epochs = epochs;
        replica.base = Some(Box::new(state.clone()));
        replica.state = state;
        Ok(replica)
    }
}

fn identity(r: &mut Reader<'_>) -> Result<IdentityKey, DecodeError> {
    IdentityKey::from_bytes(&r.array()?).map_err(|_| DecodeError::Invalid("identity key"))
}

fn role(r: &mut Reader<'_>) -> Result<Role, DecodeError> {
    Role::from_u8(r.u8()?)
}

fn text(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    Ok(r.str(TEXT)?.to_owned())
}

fn hash(r: &mut Reader<'_>) -> Result<EventHash, DecodeError> {
    Ok(EventHash(r.array()?))
}

fn signature(r: &mut Reader<'_>) -> Result<Signature, DecodeError> {
    Ok(Signature::from_bytes(&r.array()?))
}

fn list<T>(
    r: &mut Reader<'_>,
    mut f: impl FnMut(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let n = r.count(MANY)?;
    let mut out = Vec::with_capacity(n.min(r.remaining()));
    for _ in 0..n {
        out.push(f(r)?);
    }
    Ok(out)
}

fn bad(what: &'static str, v: u8) -> DecodeError {
    DecodeError::UnknownTag {
        what,
        value: u64::from(v),
    }
}

fn status_u8(s: VersionStatus) -> u8 {
    match s {
        VersionStatus::Pending => 1,
        VersionStatus::InForce => 2,
        VersionStatus::Superseded => 3,
        VersionStatus::Declined => 4,
        VersionStatus::Withdrawn => 5,
        VersionStatus::Retired => 6,
        VersionStatus::Lapsed => 7,
    }
}

fn status(r: &mut Reader<'_>) -> Result<VersionStatus, DecodeError> {
    Ok(match r.u8()? {
        1 => VersionStatus::Pending,
        2 => VersionStatus::InForce,
        3 => VersionStatus::Superseded,
        4 => VersionStatus::Declined,
        5 => VersionStatus::Withdrawn,
        6 => VersionStatus::Retired,
        7 => VersionStatus::Lapsed,
        v => return Err(bad("version status", v)),
    })
}

fn answer_u8(a: AnswerKind) -> u8 {
    match a {
        AnswerKind::TalkFirst => 1,
        AnswerKind::Therapist => 2,
        AnswerKind::NotComfortable => 3,
    }
}

fn answer(r: &mut Reader<'_>) -> Result<(AnswerKind, u64), DecodeError> {
    let kind = match r.u8()? {
        1 => AnswerKind::TalkFirst,
        2 => AnswerKind::Therapist,
        3 => AnswerKind::NotComfortable,
        v => return Err(bad("answer", v)),
    };
    Ok((kind, r.u64()?))
}

fn phone_u8(a: PhoneAction) -> u8 {
    match a {
        PhoneAction::Asked => 1,
        PhoneAction::Granted => 2,
        PhoneAction::Declined => 3,
    }
}

fn export_u8(k: ExportKind) -> u8 {
    match k {
        ExportKind::Certificate => 1,
        ExportKind::Report => 2,
    }
}

fn role_seq_text(w: &mut Writer, (by, seq, t): &(Role, u64, String)) {
    w.u8(by.to_u8()).u64(*seq).str(t);
}

fn read_role_seq_text(r: &mut Reader<'_>) -> Result<(Role, u64, String), DecodeError> {
    Ok((role(r)?, r.u64()?, text(r)?))
}

fn seq_text(r: &mut Reader<'_>) -> Result<(u64, String), DecodeError> {
    Ok((r.u64()?, text(r)?))
}

fn role_map(w: &mut Writer, m: &BTreeMap<Role, u64>) {
    w.u32(m.len() as u32);
    for (k, v) in m {
        w.u8(k.to_u8()).u64(*v);
    }
}

fn read_role_map(r: &mut Reader<'_>) -> Result<BTreeMap<Role, u64>, DecodeError> {
    let mut m = BTreeMap::new();
    read_into(r, &mut m, |r| Ok((role(r)?, r.u64()?)))?;
    Ok(m)
}

/// Reads a counted list into a map by inserting (collecting into a map
/// would bring a sort into the browser's download for each kind of map).
fn read_into<K: Ord, V>(
    r: &mut Reader<'_>,
    m: &mut BTreeMap<K, V>,
    mut f: impl FnMut(&mut Reader<'_>) -> Result<(K, V), DecodeError>,
) -> Result<(), DecodeError> {
    for _ in 0..r.count(MANY)? {
        let (k, v) = f(r)?;
        m.insert(k, v);
    }
    Ok(())
}

/// Encodes every field of the fold (the destructuring is exhaustive on
/// purpose: a new field must be saved here too).
fn encode_state(w: &mut Writer, s: &State) {
    let State {
        partners,
        agreements,
        checkins,
        requests,
        phone,
        consents,
        timeline,
        problems,
        key_exports,
        closed,
        notes,
        latest_at_ms,
        exports,
        roles,
        device_owners,
        device_names,
        retention,
        forgotten,
    } = s;
    w.u32(partners.len() as u32);
    for (r, k) in partners {
        w.u8(r.to_u8()).raw(&k.to_bytes());
    }
    w.u32(agreements.len() as u32);
    for a in agreements.values() {
        let AgreementRecord {
            id,
            versions,
            withdrawn,
            retire_requests,
        } = a;
        w.raw(&id.0).u32(versions.len() as u32);
        for v in versions {
            encode_version(w, v);
        }
        w.opt(withdrawn.as_ref(), role_seq_text);
        w.u32(retire_requests.len() as u32);
        for r in retire_requests {
            w.u8(r.to_u8());
        }
    }
    w.u32(checkins.len() as u32);
    for c in checkins {
        let CheckInRecord {
            seq,
            hash,
            by,
            at_ms,
            text,
            place,
            answers,
            acked_at,
        } = c;
        w.u64(*seq)
            .raw(&hash.0)
            .u8(by.to_u8())
            .u64(*at_ms)
            .str(text);
        w.opt(place.as_deref(), |w, p| {
            w.str(p);
        });
        w.opt(answers.as_ref(), |w, h| {
            w.raw(&h.0);
        });
        w.opt(*acked_at, |w, s| {
            w.u64(s);
        });
    }
    w.u32(requests.len() as u32);
    for q in requests {
        let RequestRecord {
            seq,
            hash,
            by,
            at_ms,
            note,
            answered_by,
            answer,
            outside,
        } = q;
        w.u64(*seq)
            .raw(&hash.0)
            .u8(by.to_u8())
            .u64(*at_ms)
            .str(note);
        w.opt(*answered_by, |w, s| {
            w.u64(s);
        });
        w.opt(*answer, |w, (a, s)| {
            w.u8(answer_u8(a)).u64(s);
        });
        w.opt(outside.as_deref(), |w, o| {
            w.str(o);
        });
    }
    w.u32(phone.len() as u32);
    for p in phone {
        let PhoneRecord {
            seq,
            by,
            at_ms,
            action,
            note,
            hash,
            answer,
            outside,
        } = p;
        w.u64(*seq).u8(by.to_u8()).u64(*at_ms).u8(phone_u8(*action));
        w.str(note).raw(&hash.0);
        w.opt(*answer, |w, (a, s)| {
            w.u8(answer_u8(a)).u64(s);
        });
        w.opt(outside.as_deref(), |w, o| {
            w.str(o);
        });
    }
    w.u32(consents.len() as u32);
    for (r, (scope, seq)) in consents {
        w.u8(r.to_u8());
        scope.encode(w);
        w.u64(*seq);
    }
    w.u32(timeline.len() as u32);
    for t in timeline {
        let TimelineEntry {
            seq,
            hash,
            by,
            at_ms,
            what,
        } = t;
        w.u64(*seq)
            .raw(&hash.0)
            .u8(by.to_u8())
            .u64(*at_ms)
            .str(what);
    }
    for l in [problems, notes] {
        w.u32(l.len() as u32);
        for (seq, t) in l {
            w.u64(*seq).str(t);
        }
    }
    w.u32(key_exports.len() as u32);
    for k in key_exports {
        role_seq_text(w, k);
    }
    w.opt(*closed, |w, (r, s)| {
        w.u8(r.to_u8()).u64(s);
    });
    w.u64(*latest_at_ms);
    w.u32(exports.len() as u32);
    for (r, seq, kind, detail) in exports {
        w.u8(r.to_u8()).u64(*seq).u8(export_u8(*kind)).str(detail);
    }
    let Roles {
        sets,
        confirmed,
        declined,
        agreed_at,
        end_requests,
        ended_at,
        swap_requests,
        swapped_at,
    } = roles;
    w.u8(sets.to_u8());
    role_map(w, confirmed);
    w.opt(declined.as_ref(), role_seq_text);
    w.opt(*agreed_at, |w, s| {
        w.u64(s);
    });
    role_map(w, end_requests);
    w.opt(*ended_at, |w, s| {
        w.u64(s);
    });
    role_map(w, swap_requests);
    w.opt(*swapped_at, |w, s| {
        w.u64(s);
    });
    w.u32(device_owners.len() as u32);
    for (d, k) in device_owners {
        w.raw(&d.0).raw(&k.to_bytes());
    }
    w.u32(device_names.len() as u32);
    for (d, (name, seq)) in device_names {
        w.raw(&d.0).str(name).u64(*seq);
    }
    let Retention {
        days,
        changed,
        proposal,
    } = retention;
    w.u32(*days);
    w.opt(*changed, |w, (r, s)| {
        w.u8(r.to_u8()).u64(s);
    });
    w.opt(*proposal, |w, (r, d, s)| {
        w.u8(r.to_u8()).u32(d).u64(s);
    });
    let Forgotten { epochs, events } = forgotten;
    w.u32(*epochs).u64(*events);
}

fn encode_version(w: &mut Writer, v: &VersionRecord) {
    let VersionRecord {
        agreement,
        hash,
        proposed_by,
        proposed_at,
        proposed_hash,
        signatures,
        change_requests,
        status,
        in_force,
    } = v;
    agreement.encode(w);
    w.raw(&hash.0)
        .u8(proposed_by.to_u8())
        .u64(*proposed_at)
        .raw(&proposed_hash.0);
    w.u32(signatures.len() as u32);
    for (r, s) in signatures {
        w.u8(r.to_u8()).raw(&s.to_bytes());
    }
    w.u32(change_requests.len() as u32);
    for c in change_requests {
        w.u8(c.0.to_u8()).str(&c.1).u64(c.2);
    }
    w.u8(status_u8(*status));
    // The proof is checked again on restore (two signatures per agreement
    // in force), so only its signatures are kept.
    w.opt(in_force.as_ref(), |w, p| {
        for (k, s) in p.signatures() {
            w.raw(&k.to_bytes()).raw(&s.to_bytes());
        }
    });
}

fn decode_version(r: &mut Reader<'_>, space: SpaceId) -> Result<VersionRecord, DecodeError> {
    let agreement = Agreement::decode(r)?;
    let hash = ContentHash(r.array()?);
    let proposed_by = role(r)?;
    let proposed_at = r.u64()?;
    let proposed_hash = self::hash(r)?;
    let mut signatures = BTreeMap::new();
    read_into(r, &mut signatures, |r| Ok((role(r)?, signature(r)?)))?;
    let change_requests = list(r, |r| Ok((role(r)?, text(r)?, r.u64()?)))?;
    let status = status(r)?;
    let in_force = r.opt(|r| {
        let a = (identity(r)?, signature(r)?);
        let b = (identity(r)?, signature(r)?);
        let at = Position {
            seq: proposed_at,
            event: proposed_hash,
        };
        InForce::verify(space, agreement.clone(), at, a, b)
            .map_err(|_| DecodeError::Invalid("agreement proof"))
    })?;
    Ok(VersionRecord {
        agreement,
        hash,
        proposed_by,
        proposed_at,
        proposed_hash,
        signatures,
        change_requests,
        status,
        in_force,
    })
}

fn decode_state(r: &mut Reader<'_>, space: SpaceId) -> Result<State, DecodeError> {
    let mut partners = BTreeMap::new();
    read_into(r, &mut partners, |r| Ok((role(r)?, identity(r)?)))?;
    let mut agreements = BTreeMap::new();
    for _ in 0..r.count(MANY)? {
        let id = AgreementId(r.array()?);
        let versions = list(r, |r| decode_version(r, space))?;
        let withdrawn = r.opt(read_role_seq_text)?;
        let mut retire_requests = std::collections::BTreeSet::new();
        for _ in 0..r.count(MANY)? {
            retire_requests.insert(role(r)?);
        }
        agreements.insert(
            id,
            AgreementRecord {
                id,
                versions,
                withdrawn,
                retire_requests,
            },
        );
    }
    let checkins = list(r, |r| {
        Ok(CheckInRecord {
            seq: r.u64()?,
            hash: hash(r)?,
            by: role(r)?,
            at_ms: r.u64()?,
            text: text(r)?,
            place: r.opt(text)?,
            answers: r.opt(hash)?,
            acked_at: r.opt(|r| r.u64())?,
        })
    })?;
    let requests = list(r, |r| {
        Ok(RequestRecord {
            seq: r.u64()?,
            hash: hash(r)?,
            by: role(r)?,
            at_ms: r.u64()?,
            note: text(r)?,
            answered_by: r.opt(|r| r.u64())?,
            answer: r.opt(answer)?,
            outside: r.opt(text)?,
        })
    })?;
    let phone = list(r, |r| {
        Ok(PhoneRecord {
            seq: r.u64()?,
            by: role(r)?,
            at_ms: r.u64()?,
            action: match r.u8()? {
                1 => PhoneAction::Asked,
                2 => PhoneAction::Granted,
                3 => PhoneAction::Declined,
                v => return Err(bad("phone action", v)),
            },
            note: text(r)?,
            hash: hash(r)?,
            answer: r.opt(answer)?,
            outside: r.opt(text)?,
        })
    })?;
    let mut consents = BTreeMap::new();
    read_into(r, &mut consents, |r| {
        Ok((role(r)?, (ReportScope::decode(r)?, r.u64()?)))
    })?;
    let timeline = list(r, |r| {
        Ok(TimelineEntry {
            seq: r.u64()?,
            hash: hash(r)?,
            by: role(r)?,
            at_ms: r.u64()?,
            what: text(r)?,
        })
    })?;
    let problems = list(r, seq_text)?;
    let notes = list(r, seq_text)?;
    let key_exports = list(r, read_role_seq_text)?;
    let closed = r.opt(|r| Ok((role(r)?, r.u64()?)))?;
    let latest_at_ms = r.u64()?;
    let exports = list(r, |r| {
        Ok((
            role(r)?,
            r.u64()?,
            match r.u8()? {
                1 => ExportKind::Certificate,
                2 => ExportKind::Report,
                v => return Err(bad("export kind", v)),
            },
            text(r)?,
        ))
    })?;
    let roles = Roles {
        sets: role(r)?,
        confirmed: read_role_map(r)?,
        declined: r.opt(read_role_seq_text)?,
        agreed_at: r.opt(|r| r.u64())?,
        end_requests: read_role_map(r)?,
        ended_at: r.opt(|r| r.u64())?,
        swap_requests: read_role_map(r)?,
        swapped_at: r.opt(|r| r.u64())?,
    };
    let mut device_owners = BTreeMap::new();
    read_into(r, &mut device_owners, |r| {
        Ok((DeviceId(r.array()?), identity(r)?))
    })?;
    let mut device_names = BTreeMap::new();
    read_into(r, &mut device_names, |r| {
        Ok((DeviceId(r.array()?), (text(r)?, r.u64()?)))
    })?;
    let retention = Retention {
        days: r.u32()?,
        changed: r.opt(|r| Ok((role(r)?, r.u64()?)))?,
        proposal: r.opt(|r| Ok((role(r)?, r.u32()?, r.u64()?)))?,
    };
    let forgotten = Forgotten {
        epochs: r.u32()?,
        events: r.u64()?,
    };
    Ok(State {
        partners,
        agreements,
        checkins,
        requests,
        phone,
        consents,
        timeline,
        problems,
        key_exports,
        closed,
        notes,
        latest_at_ms,
        exports,
        roles,
        device_owners,
        device_names,
        retention,
        forgotten,
    })
}
