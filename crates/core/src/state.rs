//! The fold of verified, decrypted events into what a person sees: partners,
//! agreements and their status, pending proposals, rules due for review,
//! check-ins and requests, the phone-access log, report consents, and a
//! timeline of everything with who did what and when.
//!
//! The fold is deterministic: two clients that verified the same history hold
//! equal states. Content that breaks a rule (a co-signature that does not
//! verify, a version out of order) is not applied and is listed in `problems`.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::Signature;

use crate::agreement::{Agreement, Category, ContentHash, Day, InForce, Position};
use crate::content::{AnswerKind, Content, ExportKind, PhoneAction, ReportScope};
use crate::encoding::Writer;
use crate::event::{Control, EventHash, Role};
use crate::ids::{AgreementId, SpaceId};
use crate::keys::{DeviceId, IdentityKey, IdentitySecret};
use crate::retention::{Forgotten, Retention};
use crate::sign::Label;

/// Where an agreement version stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionStatus {
    /// Proposed; waiting for one or both signatures.
    Pending,
    /// Both partners signed these exact words and nothing later ended it.
    InForce,
    /// A later version came into force, or a later proposal replaced this draft.
    Superseded,
    /// A partner declined it.
    Declined,
    /// A partner withdrew consent.
    Withdrawn,
    /// Both partners retired it.
    Retired,
    /// Both signed it, but its review date has passed without both renewing
    /// it: no longer in force ("lapsed — look at it together"). The fold
    /// never stores this status; [`VersionRecord::status_on`] gives it for a
    /// day.
    Lapsed,
}

/// One day in milliseconds.
pub const DAY_MS: u64 = 86_400_000;

/// One version of an agreement and what happened to it.
#[derive(Clone, Debug)]
pub struct VersionRecord {
    /// The words.
    pub agreement: Agreement,
    /// Its content hash.
    pub hash: ContentHash,
    /// Who proposed it.
    pub proposed_by: Role,
    /// At which event.
    pub proposed_at: u64,
    /// That event's hash (co-signatures cover it, with `proposed_at`).
    pub proposed_hash: EventHash,
    /// Valid co-signatures so far, by role.
    pub signatures: BTreeMap<Role, Signature>,
    /// Requests for changes: who, what, at which event.
    pub change_requests: Vec<(Role, String, u64)>,
    /// Where it stands.
    pub status: VersionStatus,
    /// The verified proof, once in force.
    pub in_force: Option<InForce>,
}

impl VersionRecord {
    /// Where this version stands on `today`: a version in force lapses once
    /// its review day has passed (it is in force through its review day).
    pub fn status_on(&self, today: Day) -> VersionStatus {
        if self.status == VersionStatus::InForce && today > self.agreement.review_on {
            VersionStatus::Lapsed
        } else {
            self.status
        }
    }
}

/// An agreement: all its versions and its history.
#[derive(Clone, Debug)]
pub struct AgreementRecord {
    /// The id.
    pub id: AgreementId,
    /// Every version, in order (index = version - 1).
    pub versions: Vec<VersionRecord>,
    /// The last withdrawal: who, at which event, and their words.
    pub withdrawn: Option<(Role, u64, String)>,
    /// Who asked to retire it (retired when both have).
    pub retire_requests: BTreeSet<Role>,
}

impl AgreementRecord {
    /// The version in force now, if any.
    pub fn in_force(&self) -> Option<&VersionRecord> {
        self.versions
            .iter()
            .rev()
            .find(|v| v.status == VersionStatus::InForce)
    }

    /// The version in force on `today` (none once it lapsed).
    pub fn in_force_on(&self, today: Day) -> Option<&VersionRecord> {
        self.in_force()
            .filter(|v| v.status_on(today) == VersionStatus::InForce)
    }

    /// The version that lapsed by `today`, if that is where it stands.
    pub fn lapsed_on(&self, today: Day) -> Option<&VersionRecord> {
        self.in_force()
            .filter(|v| v.status_on(today) == VersionStatus::Lapsed)
    }

    /// The latest version, whatever its status.
    pub fn latest(&self) -> Option<&VersionRecord> {
        self.versions.last()
    }

    /// A version waiting for signatures, if any.
    pub fn pending(&self) -> Option<&VersionRecord> {
        self.versions
            .iter()
            .rev()
            .find(|v| v.status == VersionStatus::Pending)
    }
}

/// A check-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckInRecord {
    /// The event.
    pub seq: u64,
    /// Its hash (what acknowledgements name).
    pub hash: EventHash,
    /// Who checked in.
    pub by: Role,
    /// Author's time, ms.
    pub at_ms: u64,
    /// The words.
    pub text: String,
    /// A place, only if the author attached one.
    pub place: Option<String>,
    /// The request it answers.
    pub answers: Option<EventHash>,
    /// Acknowledged by the partner (at which event).
    pub acked_at: Option<u64>,
}

/// A request for a check-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// The event.
    pub seq: u64,
    /// Its hash.
    pub hash: EventHash,
    /// Who asked.
    pub by: Role,
    /// Author's time, ms.
    pub at_ms: u64,
    /// The note.
    pub note: String,
    /// The check-in that answered it.
    pub answered_by: Option<u64>,
    /// An answer that is not a check-in ("Let's bring this to our
    /// therapist"), at which event.
    pub answer: Option<(AnswerKind, u64)>,
    /// Set when the request was beyond the limits both signed: the limit,
    /// in words. Such a request is never shown as waiting.
    pub outside: Option<String>,
}

impl RequestRecord {
    /// Waiting for an answer: within what was agreed and not answered yet.
    pub fn is_open(&self) -> bool {
        self.answered_by.is_none() && self.answer.is_none() && self.outside.is_none()
    }
}

/// A phone-access log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneRecord {
    /// The event.
    pub seq: u64,
    /// Who.
    pub by: Role,
    /// Author's time, ms.
    pub at_ms: u64,
    /// Asked, granted, declined.
    pub action: PhoneAction,
    /// The note.
    pub note: String,
    /// The event's hash (what answers name).
    pub hash: EventHash,
    /// For a request: an answer that is not compliance, at which event.
    pub answer: Option<(AnswerKind, u64)>,
    /// For a request beyond the limits both signed: the limit, in words.
    pub outside: Option<String>,
}

/// One line of the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineEntry {
    /// The event.
    pub seq: u64,
    /// Its hash.
    pub hash: EventHash,
    /// Who did it.
    pub by: Role,
    /// Author's time, ms since the Unix epoch.
    pub at_ms: u64,
    /// What happened, in calm words ("checked in: at the gym until 7").
    pub what: String,
}

/// The current view of a space.
#[derive(Clone, Debug, Default)]
pub struct State {
    /// The partners' identities.
    pub partners: BTreeMap<Role, IdentityKey>,
    /// Every agreement.
    pub agreements: BTreeMap<AgreementId, AgreementRecord>,
    /// Every check-in, oldest first.
    pub checkins: Vec<CheckInRecord>,
    /// Every check-in request, oldest first.
    pub requests: Vec<RequestRecord>,
    /// The phone-access log.
    pub phone: Vec<PhoneRecord>,
    /// Report consents by role: scope and event.
    pub consents: BTreeMap<Role, (ReportScope, u64)>,
    /// Everything, in order.
    pub timeline: Vec<TimelineEntry>,
    /// Events that were signed by a member but could not be applied.
    pub problems: Vec<(u64, String)>,
    /// Key exports: who, at which event, and where ("this browser").
    pub key_exports: Vec<(Role, u64, String)>,
    /// Who closed the space for both, at which event.
    pub closed: Option<(Role, u64)>,
    /// Notes about events whose author's clock looks wrong (dated before
    /// the event before them), by event.
    pub notes: Vec<(u64, String)>,
    /// The latest author time seen so far (for the notes above).
    pub latest_at_ms: u64,
    /// Certificates and reports exported: who, at which event, what, which.
    pub exports: Vec<(Role, u64, ExportKind, String)>,
    /// Who sets the conditions, as both confirmed it.
    pub roles: Roles,
    /// Every device admitted to the space (Genesis, AddMember, AddDevice)
    /// and its identity: who may name it.
    pub device_owners: BTreeMap<DeviceId, IdentityKey>,
    /// Device names chosen by their owners: the latest name and the event
    /// that gave it (issue 18).
    pub device_names: BTreeMap<DeviceId, (String, u64)>,
    /// How long things are kept, and a proposal to keep them longer.
    pub retention: Retention,
    /// What this device forgot as agreed (epochs, events): those events are
    /// in the log but no longer read, and the fold holds nothing of them but
    /// what [`crate::retention::kept_part`] keeps.
    pub forgotten: Forgotten,
}

/// Who sets the conditions, as the partners confirmed it. Pairing names a
/// partner for each role; nothing can be proposed until *both* confirmed the
/// same partner as setting the conditions (the one paired as leading, unless
/// either proposed the other). Later, either can propose swapping the roles
/// or ending them; each takes both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roles {
    /// The partner who sets the conditions (once [`Roles::agreed`]), or whom
    /// the confirmations so far name (before).
    pub sets: Role,
    /// Who confirmed [`Roles::sets`], at which event.
    pub confirmed: BTreeMap<Role, u64>,
    /// The latest "No — we should talk about this first": who, at which
    /// event, and their words (cleared when that partner confirms).
    pub declined: Option<(Role, u64, String)>,
    /// The event at which both had confirmed (`None` again once both
    /// ended the roles).
    pub agreed_at: Option<u64>,
    /// Who asked to end the roles (nobody sets conditions), at which event.
    pub end_requests: BTreeMap<Role, u64>,
    /// The event at which both had asked to end the roles, last time.
    pub ended_at: Option<u64>,
    /// While the roles are agreed: who asked to swap them, at which event.
    pub swap_requests: BTreeMap<Role, u64>,
    /// The event at which both had agreed to swap the roles, last time.
    pub swapped_at: Option<u64>,
}

impl Roles {
    /// Both partners confirmed who sets the conditions.
    pub fn agreed(&self) -> bool {
        self.agreed_at.is_some()
    }

    /// Whether `role` is (or, before both confirmed, would be) the partner
    /// who sets the conditions.
    pub fn sets_conditions(&self, role: Role) -> bool {
        self.sets == role
    }

    /// The partner's role in words, as things stand: "the partner who sets
    /// the conditions" or "the partner rebuilding trust".
    pub fn words(&self, role: Role) -> &'static str {
        crate::agreement::asks_of_words(self.sets, role)
    }
}

/// The words of the answer that does not confirm roles.
pub const ROLES_DECLINE_WORDS: &str = "No — we should talk about this first";

/// How many check-in requests a partner may make a day while no agreement
/// in force has a whereabouts rule asking it of the other (issue 17).
pub const UNAGREED_CHECKINS_PER_DAY: u8 = 3;
/// How many requests to see the phone a partner may make a week while no
/// agreement in force has a phone rule asking it of the other (issue 17).
pub const UNAGREED_PHONE_PER_WEEK: u8 = 1;

/// A limit a request would go beyond ([`State::beyond_limits`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Beyond {
    /// A limit both partners signed with a rule in force, in words.
    Agreed(String),
    /// The limit that applies while no rule in force covers the request, in
    /// words ("at most 3 check-in requests a day").
    Unagreed(String),
}

impl Beyond {
    /// The limit in words, saying which kind it is.
    pub fn words(&self) -> String {
        match self {
            Beyond::Agreed(w) => w.clone(),
            Beyond::Unagreed(w) => format!("{w} while no agreement about it is in force"),
        }
    }
}

/// What kind of request a limit applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// A request for a check-in (limited by whereabouts rules).
    CheckIn,
    /// A request to see the phone (limited by phone-access rules).
    Phone,
}

/// The problem listed for a sealed event this device could not read.
pub const PROBLEM_UNREADABLE: &str = "an event could not be read on this device";

/// The words on a request beyond what both signed.
pub const OUTSIDE_WORDS: &str = "outside what you agreed";

/// The note shown on an event dated before the one before it.
pub const NOTE_DATED_EARLIER: &str =
    "dated earlier than the event before it; the author's clock may be off";

/// One verified event, as the fold sees it.
pub struct Applied<'a> {
    /// The space.
    pub space: SpaceId,
    /// Sequence number.
    pub seq: u64,
    /// Event hash.
    pub hash: EventHash,
    /// The author's role.
    pub by: Role,
    /// The author's identity.
    pub identity: &'a IdentityKey,
    /// Author's time.
    pub at_ms: u64,
}

/// The body `Label::Export` signs for a report consent.
pub fn consent_body(space: SpaceId, scope: &ReportScope) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(1).raw(&space.0);
    scope.encode(&mut w);
    w.finish()
}

/// Signs a report consent with one's identity.
pub fn sign_consent(space: SpaceId, scope: &ReportScope, id: &IdentitySecret) -> Signature {
    id.sign(Label::Export, &consent_body(space, scope))
}

/// "what: words", or just "what" when the author wrote nothing.
fn with_words(what: String, words: &str) -> String {
    if words.trim().is_empty() {
        what
    } else {
        format!("{what}: {words}")
    }
}

impl State {
    fn push(&mut self, e: &Applied<'_>, what: String) {
        self.timeline.push(TimelineEntry {
            seq: e.seq,
            hash: e.hash,
            by: e.by,
            at_ms: e.at_ms,
            what,
        });
    }

    fn problem(&mut self, e: &Applied<'_>, what: &str) {
        self.problems.push((e.seq, what.to_owned()));
    }

    /// Notes an event whose author's time is earlier than the latest time
    /// seen before it (it cannot be refused without a trusted clock, but it
    /// must not pass silently). Called for every verified event, in order.
    pub fn observe_time(&mut self, e: &Applied<'_>) {
        if e.at_ms < self.latest_at_ms {
            self.notes.push((e.seq, NOTE_DATED_EARLIER.to_owned()));
        }
        self.latest_at_ms = self.latest_at_ms.max(e.at_ms);
    }

    /// Applies a membership change.
    pub fn apply_control(&mut self, e: &Applied<'_>, control: &Control) {
        match control {
            // The author's role comes from the client's trust anchors (the
            // log carries none); the member it adds has the other role.
            Control::Genesis { cert, .. } => {
                self.partners.insert(e.by, *cert.identity());
                self.device_owners
                    .insert(cert.device().id(), *cert.identity());
                self.push(e, "created this space".into());
            }
            Control::AddMember { cert, .. } => {
                self.partners.insert(e.by.other(), *cert.identity());
                self.device_owners
                    .insert(cert.device().id(), *cert.identity());
                self.push(
                    e,
                    "completed pairing; both partners are in the space".into(),
                );
            }
            Control::AddDevice { cert, .. } => {
                self.device_owners
                    .insert(cert.device().id(), *cert.identity());
                self.push(e, "added a new device".into())
            }
            Control::RevokeDevice { .. } => {
                self.push(e, "removed a device; new messages use a new key".into())
            }
            Control::Rotate { .. } => self.push(
                e,
                "changed the key for new messages, as scheduled (so older ones can be forgotten on time)"
                    .into(),
            ),
        }
    }

    /// Counts a sealed event of a forgotten epoch that left nothing in the
    /// fold (it is not a problem: it was forgotten as agreed).
    pub fn apply_forgotten(&mut self, _e: &Applied<'_>) {
        self.forgotten.events += 1;
    }

    /// Records a sealed event this device could not decrypt or decode.
    pub fn apply_unreadable(&mut self, e: &Applied<'_>) {
        self.problem(e, PROBLEM_UNREADABLE);
        self.push(e, "(an event this device cannot read)".into());
    }

    /// Applies decrypted content. Content a correct client could not have
    /// composed (hidden characters, bounds) is listed as a problem and not
    /// applied.
    pub fn apply(&mut self, e: &Applied<'_>, content: &Content) {
        if let Err(err) = content.validate() {
            self.push(
                e,
                "(something that couldn't be shown safely; it was set aside)".into(),
            );
            return self.problem(e, &err.to_string());
        }
        match content {
            Content::Propose(a) => self.propose(e, a),
            Content::Cosign {
                agreement,
                version,
                hash,
                signature,
            } => self.cosign(e, *agreement, *version, hash, signature),
            Content::RequestChange {
                agreement,
                version,
                comment,
            } => {
                let Some(v) = self.version_mut(*agreement, *version) else {
                    return self.problem(e, "a change request for an unknown agreement");
                };
                v.change_requests.push((e.by, comment.clone(), e.seq));
                let title = v.agreement.title.clone();
                self.push(
                    e,
                    with_words(format!("asked for a change to “{title}”"), comment),
                );
            }
            Content::Decline {
                agreement,
                version,
                comment,
            } => {
                let Some(v) = self.version_mut(*agreement, *version) else {
                    return self.problem(e, "a reply to an unknown agreement");
                };
                if v.status != VersionStatus::Pending {
                    return self.problem(e, "a reply to a version that is no longer open");
                }
                v.status = VersionStatus::Declined;
                let title = v.agreement.title.clone();
                self.push(
                    e,
                    with_words(format!("declined “{title}” for now"), comment),
                );
            }
            Content::Withdraw { agreement, comment } => {
                let Some(rec) = self.agreements.get_mut(agreement) else {
                    return self.problem(e, "a withdrawal from an unknown agreement");
                };
                for v in &mut rec.versions {
                    if matches!(v.status, VersionStatus::Pending | VersionStatus::InForce) {
                        v.status = VersionStatus::Withdrawn;
                    }
                }
                rec.withdrawn = Some((e.by, e.seq, comment.clone()));
                let title = rec
                    .latest()
                    .map(|v| v.agreement.title.clone())
                    .unwrap_or_default();
                self.push(
                    e,
                    with_words(format!("withdrew consent from “{title}”"), comment),
                );
            }
            Content::Retire { agreement } => {
                let Some(rec) = self.agreements.get_mut(agreement) else {
                    return self.problem(e, "retiring an unknown agreement");
                };
                rec.retire_requests.insert(e.by);
                let both = rec.retire_requests.len() == 2;
                if both {
                    for v in &mut rec.versions {
                        if matches!(v.status, VersionStatus::Pending | VersionStatus::InForce) {
                            v.status = VersionStatus::Retired;
                        }
                    }
                }
                let title = rec
                    .latest()
                    .map(|v| v.agreement.title.clone())
                    .unwrap_or_default();
                self.push(
                    e,
                    if both {
                        format!("agreed to retire “{title}”; it is retired")
                    } else {
                        format!("asked to retire “{title}”")
                    },
                );
            }
            Content::CheckIn {
                text,
                place,
                answers,
            } => {
                if let Some(req) = answers {
                    if let Some(r) = self.requests.iter_mut().find(|r| r.hash == *req) {
                        if r.answered_by.is_none() && r.by != e.by {
                            r.answered_by = Some(e.seq);
                        }
                    }
                }
                self.checkins.push(CheckInRecord {
                    seq: e.seq,
                    hash: e.hash,
                    by: e.by,
                    at_ms: e.at_ms,
                    text: text.clone(),
                    place: place.clone(),
                    answers: *answers,
                    acked_at: None,
                });
                let place = place
                    .as_ref()
                    .map(|p| format!(" (at {p})"))
                    .unwrap_or_default();
                self.push(e, format!("checked in: {text}{place}"));
            }
            Content::RequestCheckIn { note } => {
                let outside = self
                    .beyond_limits(e.by, Ask::CheckIn, e.at_ms)
                    .map(|b| b.words());
                self.requests.push(RequestRecord {
                    seq: e.seq,
                    hash: e.hash,
                    by: e.by,
                    at_ms: e.at_ms,
                    note: note.clone(),
                    answered_by: None,
                    answer: None,
                    outside: outside.clone(),
                });
                let what = with_words("asked for a check-in".to_owned(), note);
                self.push(
                    e,
                    match outside {
                        Some(l) => format!("{what} ({OUTSIDE_WORDS}: {l})"),
                        None => what,
                    },
                );
            }
            Content::Ack { event } => {
                if let Some(c) = self
                    .checkins
                    .iter_mut()
                    .find(|c| c.hash == *event && c.by != e.by)
                {
                    c.acked_at.get_or_insert(e.seq);
                    let text = c.text.clone();
                    self.push(e, format!("acknowledged the check-in “{text}”"));
                } else {
                    self.push(e, "acknowledged an update".into());
                }
            }
            Content::Phone { action, note, .. } => {
                let outside = if *action == PhoneAction::Asked {
                    self.beyond_limits(e.by, Ask::Phone, e.at_ms)
                        .map(|b| b.words())
                } else {
                    None
                };
                self.phone.push(PhoneRecord {
                    seq: e.seq,
                    by: e.by,
                    at_ms: e.at_ms,
                    action: *action,
                    note: note.clone(),
                    hash: e.hash,
                    answer: None,
                    outside: outside.clone(),
                });
                let what = match action {
                    PhoneAction::Asked => "asked to see the phone",
                    PhoneAction::Granted => "showed the phone",
                    PhoneAction::Declined => "asked to see the phone later",
                };
                let what = if note.is_empty() {
                    what.to_owned()
                } else {
                    format!("{what}: {note}")
                };
                self.push(
                    e,
                    match outside {
                        Some(l) => format!("{what} ({OUTSIDE_WORDS}: {l})"),
                        None => what,
                    },
                );
            }
            Content::Answer { to, answer, note } => {
                let at = Some((*answer, e.seq));
                if let Some(r) = self
                    .requests
                    .iter_mut()
                    .find(|r| r.hash == *to && r.by != e.by)
                {
                    r.answer = r.answer.or(at);
                } else if let Some(p) = self
                    .phone
                    .iter_mut()
                    .find(|p| p.hash == *to && p.by != e.by && p.action == PhoneAction::Asked)
                {
                    p.answer = p.answer.or(at);
                } else {
                    return self.problem(e, "an answer to a request this space doesn't hold");
                }
                self.push(
                    e,
                    with_words(format!("answered: “{}”", answer.words()), note),
                );
            }
            Content::ConfirmRoles {
                sets_conditions: None,
            } => {
                if !self.roles.agreed() {
                    return self.problem(e, "asking to end roles that are not confirmed");
                }
                self.roles.end_requests.insert(e.by, e.seq);
                self.roles.swap_requests.remove(&e.by);
                let both = self.roles.end_requests.len() == 2;
                if both {
                    self.roles.ended_at = Some(e.seq);
                    self.roles.agreed_at = None;
                    self.roles.confirmed.clear();
                    self.roles.end_requests.clear();
                    self.roles.swap_requests.clear();
                }
                self.push(
                    e,
                    if both {
                        "agreed to end the roles: nobody sets the conditions now, and nothing new can be proposed unless you both confirm roles again".into()
                    } else {
                        "asked to end the roles (nobody would set the conditions); it takes both of you".into()
                    },
                );
            }
            Content::ConfirmRoles {
                sets_conditions: Some(sets_conditions),
            } => {
                if self.partners.len() < 2 {
                    return self.problem(e, "a confirmation of roles before both partners joined");
                }
                let Some(named) = self
                    .partners
                    .iter()
                    .find(|(_, k)| *k == sets_conditions)
                    .map(|(r, _)| *r)
                else {
                    return self.problem(
                        e,
                        "a confirmation of roles naming someone not in this space",
                    );
                };
                if named == self.roles.sets {
                    // Confirming (again) withdraws one's own request to end
                    // or swap them, and one's own "talk first".
                    self.roles.confirmed.insert(e.by, e.seq);
                    self.roles.end_requests.remove(&e.by);
                    let withdrew_swap = self.roles.swap_requests.remove(&e.by).is_some();
                    if self.roles.declined.as_ref().is_some_and(|d| d.0 == e.by) {
                        self.roles.declined = None;
                    }
                    let now_both =
                        self.roles.confirmed.len() == 2 && self.roles.agreed_at.is_none();
                    if now_both {
                        self.roles.agreed_at = Some(e.seq);
                    }
                    self.push(
                        e,
                        if now_both {
                            "confirmed who sets the conditions; you have both confirmed".into()
                        } else if withdrew_swap {
                            "confirmed the roles as they are, and no longer asks to swap them"
                                .into()
                        } else {
                            "confirmed who sets the conditions".into()
                        },
                    );
                } else if !self.roles.agreed() {
                    // Before both confirmed: naming the other partner is a
                    // different proposal; earlier confirmations were of
                    // something else, so only the author's counts.
                    self.roles.sets = named;
                    self.roles.confirmed.clear();
                    self.roles.confirmed.insert(e.by, e.seq);
                    if self.roles.declined.as_ref().is_some_and(|d| d.0 == e.by) {
                        self.roles.declined = None;
                    }
                    self.push(
                        e,
                        "proposed the roles the other way round; it takes both of you".into(),
                    );
                } else {
                    // A swap: it takes both. Agreements stay as signed —
                    // each rule keeps asking the same person.
                    self.roles.swap_requests.insert(e.by, e.seq);
                    self.roles.end_requests.remove(&e.by);
                    if self.roles.declined.as_ref().is_some_and(|d| d.0 == e.by) {
                        self.roles.declined = None;
                    }
                    let both = self.roles.swap_requests.len() == 2;
                    if both {
                        self.roles.sets = named;
                        self.roles.swapped_at = Some(e.seq);
                        self.roles.agreed_at = Some(e.seq);
                        self.roles.confirmed = [(Role::Leading, e.seq), (Role::Rebuilding, e.seq)]
                            .into_iter()
                            .collect();
                        self.roles.swap_requests.clear();
                        self.roles.end_requests.clear();
                    }
                    self.push(
                        e,
                        if both {
                            "agreed to swap the roles, so who sets the conditions changed; agreements in force stay as you both signed them".into()
                        } else {
                            "asked to swap the roles (who sets the conditions); it takes both of you".into()
                        },
                    );
                }
            }
            Content::DeclineRoles { comment } => {
                if !self.roles.agreed() {
                    self.roles.confirmed.remove(&e.by);
                }
                // "Talk first" answers a partner's wish to swap: it is set
                // aside (asking again is one step).
                let answered_swap = self.roles.swap_requests.remove(&e.by.other()).is_some();
                self.roles.swap_requests.remove(&e.by);
                self.roles.declined = Some((e.by, e.seq, comment.clone()));
                self.push(
                    e,
                    with_words(
                        format!(
                            "answered “{ROLES_DECLINE_WORDS}” about {}",
                            if answered_swap {
                                "swapping the roles"
                            } else {
                                "who sets the conditions"
                            }
                        ),
                        comment,
                    ),
                );
            }
            Content::Exported { what, detail } => {
                self.exports.push((e.by, e.seq, *what, detail.clone()));
                let what = match what {
                    ExportKind::Certificate => "exported a certificate of",
                    ExportKind::Report => "wrote a report",
                };
                self.push(e, format!("{what} {detail}"));
            }
            Content::ReportConsent { scope, signature } => {
                if e.identity
                    .verify(Label::Export, &consent_body(e.space, scope), signature)
                    .is_err()
                {
                    return self.problem(e, "a report consent whose signature does not verify");
                }
                self.consents.insert(e.by, (scope.clone(), e.seq));
                self.push(e, format!("agreed to share a report until {}", scope.until));
            }
            Content::Retention { days } => {
                let days = *days;
                let now = self.retention.days;
                if days < now {
                    self.retention.days = days;
                    self.retention.changed = Some((e.by, e.seq));
                    self.retention.proposal = None;
                    self.push(
                        e,
                        format!("chose to keep things for {days} days (before: {now} days)"),
                    );
                } else if days == now {
                    self.push(e, format!("chose to keep things for {days} days, as now"));
                } else {
                    self.retention.proposal = Some((e.by, days, e.seq));
                    self.push(
                        e,
                        format!(
                            "proposed keeping things for {days} days (now {now}); it takes both of you"
                        ),
                    );
                }
            }
            Content::AgreeRetention { days } => {
                let days = *days;
                match self.retention.proposal {
                    Some((by, d, _)) if by != e.by && d == days => {
                        let now = self.retention.days;
                        self.retention.days = days;
                        self.retention.changed = Some((e.by, e.seq));
                        self.retention.proposal = None;
                        self.push(
                            e,
                            format!("agreed to keep things for {days} days (before: {now} days)"),
                        );
                    }
                    _ => self.problem(
                        e,
                        "agreeing to keep things longer without a matching proposal from the other partner",
                    ),
                }
            }
            Content::KeyExported { label } => {
                self.key_exports.push((e.by, e.seq, label.clone()));
                self.push(e, format!("exported a copy of their key on {label}"));
            }
            Content::DeviceName { device, name } => {
                // Only a device's owner names it: a partner's name for
                // your device could make it look like something else.
                if self.device_owners.get(device) != Some(e.identity) {
                    return self.problem(e, "a name for a device that is not the author's");
                }
                let name = name.trim().to_owned();
                self.push(e, format!("named a device “{name}”"));
                self.device_names.insert(*device, (name, e.seq));
            }
            Content::CloseSpace { comment } => {
                self.closed.get_or_insert((e.by, e.seq));
                self.push(
                    e,
                    with_words("closed the space for both of you".to_owned(), comment),
                );
            }
        }
    }

    fn version_mut(&mut self, id: AgreementId, version: u32) -> Option<&mut VersionRecord> {
        let i = usize::try_from(version.checked_sub(1)?).ok()?;
        self.agreements.get_mut(&id)?.versions.get_mut(i)
    }

    fn propose(&mut self, e: &Applied<'_>, a: &Agreement) {
        if !self.roles.agreed() {
            return self.problem(
                e,
                "a proposal before both partners confirmed who sets the conditions",
            );
        }
        let rec = self
            .agreements
            .entry(a.id)
            .or_insert_with(|| AgreementRecord {
                id: a.id,
                versions: Vec::new(),
                withdrawn: None,
                retire_requests: BTreeSet::new(),
            });
        if a.check_review(Day::from_unix_ms(e.at_ms)).is_err() {
            if rec.versions.is_empty() {
                self.agreements.remove(&a.id);
            }
            return self.problem(e, "a proposal whose review date is too far ahead");
        }
        let expected = rec.versions.len() as u32 + 1;
        let supersedes = rec.versions.last().map(|v| v.hash);
        if a.version != expected || a.supersedes != supersedes {
            if rec.versions.is_empty() {
                self.agreements.remove(&a.id);
            }
            return self.problem(e, "a proposal that does not follow the previous version");
        }
        for v in &mut rec.versions {
            if v.status == VersionStatus::Pending {
                v.status = VersionStatus::Superseded;
            }
        }
        // A new proposal after a retirement starts the agreement afresh.
        rec.retire_requests.clear();
        rec.versions.push(VersionRecord {
            agreement: a.clone(),
            hash: a.content_hash(),
            proposed_by: e.by,
            proposed_at: e.seq,
            proposed_hash: e.hash,
            signatures: BTreeMap::new(),
            change_requests: Vec::new(),
            status: VersionStatus::Pending,
            in_force: None,
        });
        let what = if a.version == 1 {
            format!("proposed “{}” (review on {})", a.title, a.review_on)
        } else {
            format!(
                "proposed version {} of “{}” (review on {})",
                a.version, a.title, a.review_on
            )
        };
        self.push(e, what);
    }

    fn cosign(
        &mut self,
        e: &Applied<'_>,
        id: AgreementId,
        version: u32,
        hash: &ContentHash,
        sig: &Signature,
    ) {
        let space = e.space;
        let partners = self.partners.clone();
        let Some(v) = self.version_mut(id, version) else {
            return self.problem(e, "a signature on an unknown agreement");
        };
        if v.hash != *hash {
            return self.problem(e, "a signature on different words than proposed");
        }
        if v.status != VersionStatus::Pending {
            return self.problem(e, "a signature on a version that is no longer open");
        }
        let at = Position {
            seq: v.proposed_at,
            event: v.proposed_hash,
        };
        if crate::agreement::verify_cosignature(space, &v.agreement, &at, e.identity, sig).is_err()
        {
            return self.problem(e, "a co-signature that does not verify");
        }
        v.signatures.insert(e.by, *sig);
        let title = v.agreement.title.clone();
        let both = match (
            v.signatures.get(&Role::Leading),
            v.signatures.get(&Role::Rebuilding),
            partners.get(&Role::Leading),
            partners.get(&Role::Rebuilding),
        ) {
            (Some(sl), Some(sr), Some(kl), Some(kr)) => {
                InForce::verify(space, v.agreement.clone(), at, (*kl, *sl), (*kr, *sr)).ok()
            }
            _ => None,
        };
        let in_force = both.is_some();
        if let Some(proof) = both {
            v.status = VersionStatus::InForce;
            v.in_force = Some(proof);
            if let Some(rec) = self.agreements.get_mut(&id) {
                for old in &mut rec.versions {
                    if old.status == VersionStatus::InForce && old.agreement.version != version {
                        old.status = VersionStatus::Superseded;
                    }
                }
            }
        }
        self.push(
            e,
            if in_force {
                format!("co-signed “{title}”; it is now in force for both of you")
            } else {
                format!("signed “{title}”")
            },
        );
    }

    /// The limit a request by `by` at `at_ms` would go beyond, or `None`
    /// when it is within every limit. Limits come from the rules in force at
    /// that time (not lapsed) that ask something of the *other* partner:
    /// whereabouts rules for check-in requests, phone-access rules for phone
    /// requests. While no such rule is in force (never agreed, withdrawn,
    /// lapsed), asking is kept to [`UNAGREED_CHECKINS_PER_DAY`] and
    /// [`UNAGREED_PHONE_PER_WEEK`]: leaving every agreement must not leave
    /// asking without limit. Requests already beyond a limit do not count
    /// towards it. The times are the authors' (the only clock a log has); a
    /// request dated earlier than one before it still counts that one.
    pub fn beyond_limits(&self, by: Role, ask: Ask, at_ms: u64) -> Option<Beyond> {
        let day = Day::from_unix_ms(at_ms);
        let category = match ask {
            Ask::CheckIn => Category::Whereabouts,
            Ask::Phone => Category::PhoneAccess,
        };
        let within = |then: u64, span: u64| at_ms.saturating_sub(then) < span;
        let count = match ask {
            Ask::CheckIn => self
                .requests
                .iter()
                .filter(|r| r.by == by && r.outside.is_none())
                .filter(|r| within(r.at_ms, DAY_MS))
                .count(),
            Ask::Phone => self
                .phone
                .iter()
                .filter(|p| p.by == by && p.action == PhoneAction::Asked)
                .filter(|p| p.outside.is_none() && within(p.at_ms, 7 * DAY_MS))
                .count(),
        };
        let words = |n: u8| match ask {
            Ask::CheckIn => format!(
                "at most {n} check-in request{} a day",
                if n == 1 { "" } else { "s" }
            ),
            Ask::Phone => format!(
                "at most {n} request{} to see the phone a week",
                if n == 1 { "" } else { "s" }
            ),
        };
        let mut covered = false;
        for rec in self.agreements.values() {
            let Some(v) = rec.in_force_on(day) else {
                continue;
            };
            for rule in &v.agreement.rules {
                if rule.category != category || rule.asks_of == by {
                    continue;
                }
                covered = true;
                let l = &rule.limits;
                if let Some(q) = l.quiet.filter(|q| q.contains(at_ms)) {
                    return Some(Beyond::Agreed(format!("no requests {}", q.words())));
                }
                let limit = match ask {
                    Ask::CheckIn => l.checkins_per_day,
                    Ask::Phone => l.phone_per_week,
                };
                if let Some(n) = limit.filter(|n| count >= usize::from(*n)) {
                    return Some(Beyond::Agreed(words(n)));
                }
            }
        }
        let unagreed = match ask {
            Ask::CheckIn => UNAGREED_CHECKINS_PER_DAY,
            Ask::Phone => UNAGREED_PHONE_PER_WEEK,
        };
        (!covered && count >= usize::from(unagreed)).then(|| Beyond::Unagreed(words(unagreed)))
    }

    /// Agreements that lapsed by `today`: both signed them, their review day
    /// passed and nobody renewed them.
    pub fn lapsed(&self, today: Day) -> Vec<&VersionRecord> {
        self.agreements
            .values()
            .filter_map(|r| r.lapsed_on(today))
            .collect()
    }

    /// Agreements in force whose review day has come.
    pub fn due_for_review(&self, today: Day) -> Vec<&VersionRecord> {
        self.agreements
            .values()
            .filter_map(|r| r.in_force())
            .filter(|v| v.agreement.review_on <= today)
            .collect()
    }

    /// Until when a report to `recipient` may be shared: the earlier of the
    /// two partners' `until` days, once both consented to that recipient
    /// (whether or not that day has passed).
    pub fn report_until(&self, recipient: &str) -> Option<Day> {
        let days = [Role::Leading, Role::Rebuilding].map(|r| {
            self.consents
                .get(&r)
                .filter(|(s, _)| s.recipient == recipient)
                .map(|(s, _)| s.until)
        });
        match days {
            [Some(a), Some(b)] => Some(a.min(b)),
            _ => None,
        }
    }

    /// Whether both partners consent to a report to `recipient` on `today`.
    pub fn report_consented(&self, recipient: &str, today: Day) -> bool {
        [Role::Leading, Role::Rebuilding].iter().all(|r| {
            self.consents
                .get(r)
                .is_some_and(|(s, _)| s.recipient == recipient && s.until >= today)
        })
    }
}
