//! The state a person sees, complete even on a device that joined after the
//! history began.
//!
//! [`Replica`] folds each event as it verifies it, with the epoch keys it
//! holds *at that moment*. A device added later (after `troth key rotate`)
//! receives every earlier epoch key in its `AddDevice` envelopes, but only
//! when that event is reached, so the replica's own fold shows the earlier
//! events as unreadable. [`state`] folds the verified events again with every
//! epoch key this device can open anywhere in the log. Nothing here trusts
//! anything the replica has not verified: it reads only `Replica::events()`.
//! (This belongs in `troth-core`'s replica; until it is there, it lives here.)

use std::borrow::Cow;
use std::collections::BTreeMap;

use troth_core::AgreementId;
use troth_core::content::Content;
use troth_core::crypto;
use troth_core::event::Body;
use troth_core::replica::{Replica, ReplicaError};
use troth_core::state::{Applied, State, VersionStatus};

use crate::error::Error;

/// The replica's state, re-folded with every epoch key this device can open
/// when the replica's own fold could not read some events.
pub fn state(replica: &Replica) -> Cow<'_, State> {
    if replica.state().problems.is_empty() {
        return Cow::Borrowed(replica.state());
    }
    let keys = replica.keys();
    let me = keys.cert.device().id();
    let space = replica.space();
    let mut epoch_keys = BTreeMap::new();
    for ev in replica.events() {
        if let Body::Control(c) = ev.body() {
            for env in c.envelopes().iter().filter(|e| e.device == me) {
                if let Ok(k) = crypto::open_envelope(env, space, &keys.device) {
                    epoch_keys.insert(env.epoch, k);
                }
            }
        }
    }
    let members = replica.chain().members();
    let mut st = State::default();
    for ev in replica.events() {
        let h = ev.header();
        let Some(entry) = members.device(&h.author) else {
            continue;
        };
        let identity = *entry.cert.identity();
        let applied = Applied {
            space: h.space,
            seq: h.seq,
            hash: ev.hash(),
            by: entry.role,
            identity: &identity,
            at_ms: h.timestamp_ms,
        };
        match ev.body() {
            Body::Control(c) => st.apply_control(&applied, c),
            Body::Sealed(ct) => {
                let content = epoch_keys
                    .get(&h.epoch)
                    .and_then(|k| crypto::open(k, &h.to_bytes(), ct).ok())
                    .and_then(|pt| Content::decode(&pt).ok());
                match content {
                    Some(c) => st.apply(&applied, &c),
                    None => st.apply_unreadable(&applied),
                }
            }
        }
    }
    Cow::Owned(st)
}

/// Content co-signing an agreement version, checked against the complete
/// [`state`] (the same checks as `Replica::cosign`).
pub fn cosign(replica: &Replica, id: AgreementId, version: u32) -> Result<Content, Error> {
    let st = state(replica);
    let v = st
        .agreements
        .get(&id)
        .and_then(|rec| rec.versions.get(version.saturating_sub(1) as usize))
        .ok_or(ReplicaError::UnknownAgreement)?;
    if v.signatures.contains_key(&replica.role()) {
        return Err(ReplicaError::NotNow("you have already signed this version").into());
    }
    if v.status != VersionStatus::Pending {
        return Err(ReplicaError::NotNow("this version is no longer open for signing").into());
    }
    Ok(Content::Cosign {
        agreement: id,
        version,
        hash: v.hash,
        signature: v
            .agreement
            .cosign(replica.space(), &replica.keys().identity),
    })
}
