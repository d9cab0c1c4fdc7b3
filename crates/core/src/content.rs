//! The plaintext inside a sealed event: agreement lifecycle and transparency.
//!
//! Encoding: `u8 version (1) || u8 kind || fields`, bounded like everything else.

use ed25519_dalek::Signature;

use crate::agreement::{Agreement, ContentHash, Day};
use crate::encoding::{DecodeError, Reader, Writer};
use crate::event::EventHash;
use crate::ids::AgreementId;
use crate::keys::{DeviceId, IdentityKey};

/// Longest free text (check-ins, comments, notes) in bytes.
pub const MAX_TEXT: usize = 4000;
/// Longest place in bytes.
pub const MAX_PLACE: usize = 300;

/// What happened about a phone-access request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhoneAction {
    /// One partner asked to see the other's phone.
    Asked,
    /// The phone was shown.
    Granted,
    /// Not now (with a note, ideally).
    Declined,
}

/// An answer to a request that is not compliance, and never a failure:
/// shown neutrally to both, counted nowhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnswerKind {
    /// "Not now — can we talk about it?"
    TalkFirst,
    /// "Let's bring this to our therapist"
    Therapist,
    /// "I'm not comfortable with this"
    NotComfortable,
}

impl AnswerKind {
    /// Every answer, in the order clients offer them.
    pub const ALL: [AnswerKind; 3] = [
        AnswerKind::TalkFirst,
        AnswerKind::Therapist,
        AnswerKind::NotComfortable,
    ];

    /// The words both partners see.
    pub fn words(self) -> &'static str {
        match self {
            AnswerKind::TalkFirst => "Not now — can we talk about it?",
            AnswerKind::Therapist => "Let's bring this to our therapist",
            AnswerKind::NotComfortable => "I'm not comfortable with this",
        }
    }

    /// A stable short name for scripts (`talk`, `therapist`, `not-comfortable`).
    pub fn name(self) -> &'static str {
        match self {
            AnswerKind::TalkFirst => "talk",
            AnswerKind::Therapist => "therapist",
            AnswerKind::NotComfortable => "not-comfortable",
        }
    }

    /// From [`AnswerKind::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    fn to_u8(self) -> u8 {
        match self {
            AnswerKind::TalkFirst => 1,
            AnswerKind::Therapist => 2,
            AnswerKind::NotComfortable => 3,
        }
    }
}

/// What left the space in a file (recorded before the file is written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    /// An agreement certificate.
    Certificate,
    /// A report for a therapist.
    Report,
}

/// What a partner may share with a therapist, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportScope {
    /// The therapist's age recipient (`age1…`), or empty for a printed copy.
    pub recipient: String,
    /// Include check-ins (not only agreements).
    pub include_checkins: bool,
    /// The consent lapses after this day.
    pub until: Day,
}

/// The decrypted payload of a sealed event.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Content {
    /// Propose an agreement version (a first version, an amendment or a renewal).
    Propose(Agreement),
    /// Co-sign an agreement version with one's identity key.
    Cosign {
        /// Which agreement.
        agreement: AgreementId,
        /// Which version.
        version: u32,
        /// The content hash signed.
        hash: ContentHash,
        /// The identity signature (label `troth.app/v1/agreement-cosign`).
        signature: Signature,
    },
    /// Ask for a change before signing.
    RequestChange {
        /// Which agreement.
        agreement: AgreementId,
        /// Which version.
        version: u32,
        /// What to change, in the partner's words.
        comment: String,
    },
    /// Decline a proposed version.
    Decline {
        /// Which agreement.
        agreement: AgreementId,
        /// Which version.
        version: u32,
        /// Why, if they wish to say.
        comment: String,
    },
    /// Withdraw consent from an agreement: always allowed, alone, at any time.
    Withdraw {
        /// Which agreement.
        agreement: AgreementId,
        /// Anything they wish to say.
        comment: String,
    },
    /// Ask to retire an agreement; it is retired once both partners have asked.
    Retire {
        /// Which agreement.
        agreement: AgreementId,
    },
    /// A check-in: where one is, or anything else worth saying.
    CheckIn {
        /// The words.
        text: String,
        /// A place, only when the author chose to attach one this time.
        place: Option<String>,
        /// The check-in request this answers, if any.
        answers: Option<EventHash>,
    },
    /// Ask the partner for a check-in.
    RequestCheckIn {
        /// A gentle note.
        note: String,
    },
    /// Acknowledge an event ("seen, thank you").
    Ack {
        /// The event acknowledged.
        event: EventHash,
    },
    /// The phone-access log.
    Phone {
        /// Asked, granted or declined.
        action: PhoneAction,
        /// A note.
        note: String,
        /// The request this answers, if any.
        answers: Option<EventHash>,
    },
    /// Consent to share a report with a therapist, signed by the identity key.
    ReportConsent {
        /// What and with whom.
        scope: ReportScope,
        /// Identity signature (label `troth.app/v1/export`).
        signature: Signature,
    },
    /// A copy of the author's key was exported (recorded before the file
    /// is written, so a key never leaves silently).
    KeyExported {
        /// Where, as the exporting client calls itself ("a browser", "the troth command line").
        label: String,
    },
    /// An answer to a check-in or phone request that is not compliance
    /// ("Let's bring this to our therapist"): a normal answer, never a failure.
    Answer {
        /// The request answered.
        to: EventHash,
        /// Which answer.
        answer: AnswerKind,
        /// Anything else they wish to say.
        note: String,
    },
    /// A certificate or a report was exported (recorded before the file is
    /// written, so nothing leaves silently).
    Exported {
        /// What.
        what: ExportKind,
        /// Which, in words ("“Knowing where you are”, version 2").
        detail: String,
    },
    /// The author confirms who sets the conditions (after pairing, both
    /// must, before anything can be proposed), or, with `None`, asks to end
    /// the roles (nobody sets conditions; it takes both).
    ConfirmRoles {
        /// The identity of the partner who sets the conditions, or `None`
        /// for nobody.
        sets_conditions: Option<IdentityKey>,
    },
    /// "No — we should talk about this first": the author does not confirm
    /// the roles (yet).
    DeclineRoles {
        /// Anything they wish to say.
        comment: String,
    },
    /// How long things are kept (issue 17, forgetting on schedule), in days.
    /// Shorter than the space's period now applies at once (one partner's
    /// choice); longer is a proposal that applies once the other partner
    /// sends [`Content::AgreeRetention`] with the same number.
    Retention {
        /// Days, within [`crate::retention::MIN_DAYS`]..=[`crate::retention::MAX_DAYS`].
        days: u32,
    },
    /// The author agrees to the partner's proposal to keep things longer.
    AgreeRetention {
        /// The days proposed.
        days: u32,
    },
    /// The author closed the space for both partners (appended before the
    /// relay is asked to delete it, so a space that vanishes without it was
    /// removed by the relay, not by the partner).
    CloseSpace {
        /// Anything they wish to say.
        comment: String,
    },
    /// The author names one of their own devices ("Sam's phone"), so both
    /// partners can tell their devices apart; the latest name wins (issue 18).
    DeviceName {
        /// The device named: one of the author's identity's devices.
        device: DeviceId,
        /// Its name ([`MAX_DEVICE_NAME`] characters at most, not empty).
        name: String,
    },
}

/// Longest label of an exporting client.
pub const MAX_LABEL: usize = 200;

/// Longest device name, in characters.
pub const MAX_DEVICE_NAME: usize = 60;

impl Content {
    /// Checks every text field for characters that hide or reorder words
    /// ([`crate::text::check_text`]); agreements also get their bounds checked.
    pub fn validate(&self) -> Result<(), crate::agreement::AgreementError> {
        use crate::text::check_text;
        match self {
            Content::Propose(a) => a.validate()?,
            Content::RequestChange { comment, .. }
            | Content::Decline { comment, .. }
            | Content::Withdraw { comment, .. }
            | Content::CloseSpace { comment }
            | Content::DeclineRoles { comment } => check_text(comment)?,
            Content::CheckIn { text, place, .. } => {
                check_text(text)?;
                if let Some(p) = place {
                    check_text(p)?;
                }
            }
            Content::RequestCheckIn { note } | Content::Phone { note, .. } => check_text(note)?,
            Content::KeyExported { label } => check_text(label)?,
            Content::DeviceName { name, .. } => {
                if name.trim().is_empty() {
                    return Err(crate::agreement::AgreementError::NoDeviceName);
                }
                if name.chars().count() > MAX_DEVICE_NAME {
                    return Err(crate::agreement::AgreementError::TooLong(
                        "the device's name",
                    ));
                }
                check_text(name)?
            }
            Content::Answer { note, .. } => check_text(note)?,
            Content::Exported { detail, .. } => {
                if detail.len() > MAX_LABEL {
                    return Err(crate::agreement::AgreementError::TooLong(
                        "what was exported",
                    ));
                }
                check_text(detail)?
            }
            Content::ReportConsent { scope, .. } => check_text(&scope.recipient)?,
            Content::Retention { days } | Content::AgreeRetention { days } => {
                crate::retention::check_days(*days)?
            }
            Content::Cosign { .. }
            | Content::Retire { .. }
            | Content::Ack { .. }
            | Content::ConfirmRoles { .. } => {}
        }
        Ok(())
    }
}

impl Content {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(1);
        match self {
            Content::Propose(a) => {
                w.u8(1);
                a.encode(&mut w);
            }
            Content::Cosign {
                agreement,
                version,
                hash,
                signature,
            } => {
                w.u8(2)
                    .raw(&agreement.0)
                    .u32(*version)
                    .raw(&hash.0)
                    .raw(&signature.to_bytes());
            }
            Content::RequestChange {
                agreement,
                version,
                comment,
            } => {
                w.u8(3).raw(&agreement.0).u32(*version).str(comment);
            }
            Content::Decline {
                agreement,
                version,
                comment,
            } => {
                w.u8(4).raw(&agreement.0).u32(*version).str(comment);
            }
            Content::Withdraw { agreement, comment } => {
                w.u8(5).raw(&agreement.0).str(comment);
            }
            Content::Retire { agreement } => {
                w.u8(6).raw(&agreement.0);
            }
            Content::CheckIn {
                text,
                place,
                answers,
            } => {
                w.u8(7).str(text);
                w.opt(place.as_deref(), |w, p| {
                    w.str(p);
                });
                w.opt(*answers, |w, h| {
                    w.raw(&h.0);
                });
            }
            Content::RequestCheckIn { note } => {
                w.u8(8).str(note);
            }
            Content::Ack { event } => {
                w.u8(9).raw(&event.0);
            }
            Content::Phone {
                action,
                note,
                answers,
            } => {
                let a = match action {
                    PhoneAction::Asked => 1,
                    PhoneAction::Granted => 2,
                    PhoneAction::Declined => 3,
                };
                w.u8(10).u8(a).str(note);
                w.opt(*answers, |w, h| {
                    w.raw(&h.0);
                });
            }
            Content::ReportConsent { scope, signature } => {
                w.u8(11);
                scope.encode(&mut w);
                w.raw(&signature.to_bytes());
            }
            Content::KeyExported { label } => {
                w.u8(12).str(label);
            }
            Content::CloseSpace { comment } => {
                w.u8(13).str(comment);
            }
            Content::Answer { to, answer, note } => {
                w.u8(14).raw(&to.0).u8(answer.to_u8()).str(note);
            }
            Content::Exported { what, detail } => {
                let k = match what {
                    ExportKind::Certificate => 1,
                    ExportKind::Report => 2,
                };
                w.u8(15).u8(k).str(detail);
            }
            Content::ConfirmRoles { sets_conditions } => {
                w.u8(16).opt(sets_conditions.map(|k| k.to_bytes()), |w, b| {
                    w.raw(&b);
                });
            }
            Content::DeclineRoles { comment } => {
                w.u8(17).str(comment);
            }
            Content::DeviceName { device, name } => {
                w.u8(18).raw(&device.0).str(name);
            }
            Content::Retention { days } => {
                w.u8(19).u32(*days);
            }
            Content::AgreeRetention { days } => {
                w.u8(20).u32(*days);
            }
        }
        w.finish()
    }

    /// Decodes (bounded, never panics).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = r.u8()?;
        if v != 1 {
            return Err(DecodeError::UnsupportedVersion(v));
        }
        let kind = r.u8()?;
        let c = match kind {
            1 => {
                let a = Agreement::decode(&mut r)?;
                a.check_bounds()
                    .map_err(|_| DecodeError::Invalid("agreement"))?;
                Content::Propose(a)
            }
            2 => Content::Cosign {
                agreement: AgreementId(r.array()?),
                version: r.u32()?,
                hash: ContentHash(r.array()?),
                signature: Signature::from_bytes(&r.array()?),
            },
            3 => Content::RequestChange {
                agreement: AgreementId(r.array()?),
                version: r.u32()?,
                comment: r.str(MAX_TEXT)?.to_owned(),
            },
            4 => Content::Decline {
                agreement: AgreementId(r.array()?),
                version: r.u32()?,
                comment: r.str(MAX_TEXT)?.to_owned(),
            },
            5 => Content::Withdraw {
                agreement: AgreementId(r.array()?),
                comment: r.str(MAX_TEXT)?.to_owned(),
            },
            6 => Content::Retire {
                agreement: AgreementId(r.array()?),
            },
            7 => Content::CheckIn {
                text: r.str(MAX_TEXT)?.to_owned(),
                place: r.opt(|r| r.str(MAX_PLACE).map(str::to_owned))?,
                answers: r.opt(|r| r.array().map(EventHash))?,
            },
            8 => Content::RequestCheckIn {
                note: r.str(MAX_TEXT)?.to_owned(),
            },
            9 => Content::Ack {
                event: EventHash(r.array()?),
            },
            10 => {
                let action = match r.u8()? {
                    1 => PhoneAction::Asked,
                    2 => PhoneAction::Granted,
                    3 => PhoneAction::Declined,
                    v => {
                        return Err(DecodeError::UnknownTag {
                            what: "phone action",
                            value: u64::from(v),
                        });
                    }
                };
                Content::Phone {
                    action,
                    note: r.str(MAX_TEXT)?.to_owned(),
                    answers: r.opt(|r| r.array().map(EventHash))?,
                }
            }
            11 => Content::ReportConsent {
                scope: ReportScope::decode(&mut r)?,
                signature: Signature::from_bytes(&r.array()?),
            },
            12 => Content::KeyExported {
                label: r.str(MAX_LABEL)?.to_owned(),
            },
            13 => Content::CloseSpace {
                comment: r.str(MAX_TEXT)?.to_owned(),
            },
            14 => Content::Answer {
                to: EventHash(r.array()?),
                answer: match r.u8()? {
                    1 => AnswerKind::TalkFirst,
                    2 => AnswerKind::Therapist,
                    3 => AnswerKind::NotComfortable,
                    v => {
                        return Err(DecodeError::UnknownTag {
                            what: "answer",
                            value: u64::from(v),
                        });
                    }
                },
                note: r.str(MAX_TEXT)?.to_owned(),
            },
            15 => Content::Exported {
                what: match r.u8()? {
                    1 => ExportKind::Certificate,
                    2 => ExportKind::Report,
                    v => {
                        return Err(DecodeError::UnknownTag {
                            what: "export",
                            value: u64::from(v),
                        });
                    }
                },
                detail: r.str(MAX_LABEL)?.to_owned(),
            },
            16 => Content::ConfirmRoles {
                sets_conditions: r
                    .opt(|r| IdentityKey::from_bytes(&r.array()?).map_err(DecodeError::from))?,
            },
            17 => Content::DeclineRoles {
                comment: r.str(MAX_TEXT)?.to_owned(),
            },
            18 => Content::DeviceName {
                device: DeviceId(r.array()?),
                name: r.str(MAX_DEVICE_NAME * 4)?.to_owned(),
            },
            19 => Content::Retention { days: r.u32()? },
            20 => Content::AgreeRetention { days: r.u32()? },
            v => {
                return Err(DecodeError::UnknownTag {
                    what: "content kind",
                    value: u64::from(v),
                });
            }
        };
        r.finish()?;
        Ok(c)
    }
}

impl ReportScope {
    /// Canonical bytes.
    pub fn encode(&self, w: &mut Writer) {
        w.str(&self.recipient)
            .u8(u8::from(self.include_checkins))
            .u32(self.until.0);
    }

    /// Decodes.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            recipient: r.str(200)?.to_owned(),
            include_checkins: match r.u8()? {
                0 => false,
                1 => true,
                v => {
                    return Err(DecodeError::UnknownTag {
                        what: "flag",
                        value: u64::from(v),
                    });
                }
            },
            until: Day(r.u32()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let cases = vec![
            Content::CheckIn {
                text: "at the gym until 7".into(),
                place: Some("Riverside gym".into()),
                answers: Some(EventHash([2; 32])),
            },
            Content::CheckIn {
                text: "home".into(),
                place: None,
                answers: None,
            },
            Content::RequestCheckIn {
                note: "where are you?".into(),
            },
            Content::Ack {
                event: EventHash([1; 32]),
            },
            Content::Withdraw {
                agreement: AgreementId([3; 16]),
                comment: "I need to step back from this one".into(),
            },
            Content::Retire {
                agreement: AgreementId([3; 16]),
            },
            Content::Phone {
                action: PhoneAction::Declined,
                note: "after dinner, please".into(),
                answers: None,
            },
            Content::KeyExported {
                label: "this browser".into(),
            },
            Content::CloseSpace {
                comment: "we're done with this for now".into(),
            },
            Content::Answer {
                to: EventHash([4; 32]),
                answer: AnswerKind::Therapist,
                note: String::new(),
            },
            Content::Exported {
                what: ExportKind::Report,
                detail: "for age1example".into(),
            },
            Content::DeclineRoles {
                comment: "let's talk first".into(),
            },
            Content::Retention { days: 60 },
            Content::AgreeRetention { days: 365 },
        ];
        for c in cases {
            assert_eq!(Content::decode(&c.encode()).as_ref(), Ok(&c));
        }
        assert!(Content::decode(&[1, 99]).is_err());
        assert!(Content::decode(&[2, 7]).is_err());
        assert!(Content::decode(&[]).is_err());
    }
}
