//! Forgetting on schedule (issue 17): how long a space keeps what was
//! written, and which content the fold still holds from forgotten epochs.
//!
//! Epochs rotate at least every [`crate::members::ROTATION_PERIOD_MS`]
//! ([`crate::event::Control::Rotate`]). An epoch that ended more than the
//! retention period ago is *forgotten* on each device: its key is deleted
//! and never opened again from its envelopes, and what the fold held from
//! its events goes, except what keeps the rules working — agreements in
//! force (or still waiting for a signature) with their words and
//! signatures, the roles both confirmed, device names, the retention
//! choices themselves, and a closing of the space. Comments in those are not kept.

use std::collections::{BTreeMap, BTreeSet};

use crate::agreement::AgreementError;
use crate::content::Content;
use crate::encoding::{DecodeError, Reader, Writer};
use crate::event::Role;
use crate::ids::AgreementId;

/// How long a space keeps things unless the partners choose otherwise: 183
/// days (about six months).
pub const DEFAULT_DAYS: u32 = 183;

/// The shortest retention period one may choose: 30 days.
pub const MIN_DAYS: u32 = 30;

/// The longest retention period both may agree to: ten years.
pub const MAX_DAYS: u32 = 3650;

/// Refuses a number of days outside [`MIN_DAYS`]..=[`MAX_DAYS`].
pub fn check_days(days: u32) -> Result<(), AgreementError> {
    if (MIN_DAYS..=MAX_DAYS).contains(&days) {
        Ok(())
    } else {
        Err(AgreementError::RetentionOutOfRange)
    }
}

/// A space's retention period as the fold sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// How long things are kept, in days.
    pub days: u32,
    /// Who last changed it, at which event (`None`: the default).
    pub changed: Option<(Role, u64)>,
    /// A proposal to keep things longer, waiting for the other partner:
    /// who, how many days, at which event.
    pub proposal: Option<(Role, u32, u64)>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            days: DEFAULT_DAYS,
            changed: None,
            proposal: None,
        }
    }
}

/// What a device forgot, as the fold counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// How many epochs are forgotten (epochs `0..epochs`).
    pub epochs: u32,
    /// How many sealed events of those epochs are no longer read.
    pub events: u64,
}

/// What of a forgotten event's content the fold keeps, if anything:
/// content about an agreement in `keep` (free-text comments emptied, change
/// requests dropped), roles, retention choices and a closing of the space.
pub fn kept_part(content: &Content, keep: &BTreeSet<AgreementId>) -> Option<Content> {
    let kept = |id: &AgreementId| keep.contains(id);
    match content {
        Content::Propose(a) if kept(&a.id) => Some(content.clone()),
        Content::Cosign { agreement, .. } | Content::Retire { agreement } if kept(agreement) => {
            Some(content.clone())
        }
        Content::Decline {
            agreement, version, ..
        } if kept(agreement) => Some(Content::Decline {
            agreement: *agreement,
            version: *version,
            comment: String::new(),
        }),
        Content::Withdraw { agreement, .. } if kept(agreement) => Some(Content::Withdraw {
            agreement: *agreement,
            comment: String::new(),
        }),
        Content::ConfirmRoles { .. }
        | Content::DeviceName { .. }
        | Content::Retention { .. }
        | Content::AgreeRetention { .. } => Some(content.clone()),
        Content::DeclineRoles { .. } => Some(Content::DeclineRoles {
            comment: String::new(),
        }),
        Content::CloseSpace { .. } => Some(Content::CloseSpace {
            comment: String::new(),
        }),
        _ => None,
    }
}

/// The most kept entries a saved forgetting record may hold.
const MAX_KEPT: usize = 1 << 20;

/// Encodes a device's forgetting: `u8 1 || u32 epochs || u32 n × (u64 seq
/// || bytes content)`. It holds plaintext: clients keep it only inside
/// their sealed local state.
pub fn encode_record(epochs: u32, kept: &BTreeMap<u64, Content>) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(1).u32(epochs).u32(kept.len() as u32);
    for (seq, c) in kept {
        w.u64(*seq).bytes(&c.encode());
    }
    w.finish()
}

/// Decodes [`encode_record`]'s output.
pub fn decode_record(bytes: &[u8]) -> Result<(u32, BTreeMap<u64, Content>), DecodeError> {
    let mut r = Reader::new(bytes);
    let v = r.u8()?;
    if v != 1 {
        return Err(DecodeError::UnsupportedVersion(v));
    }
    let epochs = r.u32()?;
    let n = r.count(MAX_KEPT)?;
    let mut kept = BTreeMap::new();
    for _ in 0..n {
        let seq = r.u64()?;
        let c = Content::decode(r.bytes(1 << 17)?)?;
        kept.insert(seq, c);
    }
    r.finish()?;
    Ok((epochs, kept))
}
