//! Boundary agreements: rules, templates, canonical bytes, co-signatures,
//! the verified *in force* type, and offline-verifiable certificates.
//!
//! An agreement version is identified by (space, agreement id, version) and
//! its *content hash* = SHA-256(`troth.app/v1/agreement-content` || 0x00 ||
//! canonical bytes). A co-signature is an identity signature under
//! `troth.app/v1/agreement-cosign` over `1 || space || agreement id ||
//! version || content hash`. [`InForce`] can only be obtained by verifying two
//! such signatures from two distinct partner identities over the same hash.

use std::fmt;

use ed25519_dalek::Signature;
use thiserror::Error;

use crate::encoding::{DecodeError, Reader, Writer};
use crate::event::{Event, EventHash, Role};
use crate::ids::{AgreementId, SpaceId};
use crate::keys::{DeviceCert, IdentityKey, IdentitySecret};
use crate::sign::{self, Label};
use crate::text::{TextError, check_text};

/// Longest title in bytes.
pub const MAX_TITLE: usize = 200;
/// Longest rule text in bytes.
pub const MAX_RULE_TEXT: usize = 2000;
/// Most rules in one agreement.
pub const MAX_RULES: usize = 32;
/// Most parameters on one rule.
pub const MAX_PARAMS: usize = 16;
/// Longest parameter name or value in bytes.
pub const MAX_PARAM: usize = 200;
/// The furthest a review date may be set: this many days after the day it is
/// proposed. Rules are temporary and reviewed together; a rule that nobody
/// reviews lapses (see `state`), and no rule can be set for longer than this.
pub const MAX_REVIEW_DAYS: u32 = 90;
/// The agreement encoding's format version (2 added request limits).
const AGREEMENT_VERSION: u8 = 2;
/// Furthest a quiet-hours UTC offset may be, in minutes (±18 h).
pub const MAX_UTC_OFFSET_MIN: i16 = 18 * 60;

/// A calendar day: days since 1970-01-01 (UTC).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub u32);

impl Day {
    /// The day containing `ms` since the Unix epoch.
    pub fn from_unix_ms(ms: u64) -> Day {
        Day(u32::try_from(ms / 86_400_000).unwrap_or(u32::MAX))
    }

    /// From a civil date (proleptic Gregorian); `None` if invalid or before 1970.
    pub fn from_ymd(y: i32, m: u32, d: u32) -> Option<Day> {
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        // Howard Hinnant's days_from_civil.
        let y = i64::from(y) - i64::from(m <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (i64::from(m) + 9) % 12;
        let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        u32::try_from(days).ok().map(Day)
    }

    /// The civil date (year, month, day).
    pub fn to_ymd(self) -> (i32, u32, u32) {
        let z = i64::from(self.0) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        ((y + i64::from(m <= 2)) as i32, m, d)
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Day> {
        let mut it = s.trim().splitn(3, '-');
        let y = it.next()?.parse().ok()?;
        let m = it.next()?.parse().ok()?;
        let d = it.next()?.parse().ok()?;
        Day::from_ymd(y, m, d)
    }

    /// This day plus `n` days.
    pub fn plus(self, n: u32) -> Day {
        Day(self.0.saturating_add(n))
    }
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.to_ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl fmt::Debug for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Day({self})")
    }
}

/// What a rule is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Category {
    /// Knowing where the other partner is, through check-ins.
    Whereabouts,
    /// Seeing the phone when asked.
    PhoneAccess,
    /// When the bed is shared.
    SharedBed,
    /// No contact with the affair partner.
    NoContact,
    /// Going to couples therapy.
    Therapy,
    /// Telling the truth about contact that happens anyway.
    Honesty,
    /// Anything else.
    Other,
}

impl Category {
    fn to_u8(self) -> u8 {
        match self {
            Category::Whereabouts => 1,
            Category::PhoneAccess => 2,
            Category::SharedBed => 3,
            Category::NoContact => 4,
            Category::Therapy => 5,
            Category::Honesty => 6,
            Category::Other => 7,
        }
    }

    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        Ok(match v {
            1 => Category::Whereabouts,
            2 => Category::PhoneAccess,
            3 => Category::SharedBed,
            4 => Category::NoContact,
            5 => Category::Therapy,
            6 => Category::Honesty,
            7 => Category::Other,
            _ => {
                return Err(DecodeError::UnknownTag {
                    what: "category",
                    value: u64::from(v),
                });
            }
        })
    }

    /// A stable short name (`whereabouts`, `phone`, …), as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Category::Whereabouts => "whereabouts",
            Category::PhoneAccess => "phone",
            Category::SharedBed => "bed",
            Category::NoContact => "no-contact",
            Category::Therapy => "therapy",
            Category::Honesty => "honesty",
            Category::Other => "other",
        }
    }
}

/// One rule of an agreement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The words both partners sign.
    pub text: String,
    /// What it is about.
    pub category: Category,
    /// Whom the rule asks something of.
    pub asks_of: Role,
    /// Optional parameters, e.g. `("check-in times", "noon and 6pm")`.
    pub params: Vec<(String, String)>,
    /// Limits on the requests the other partner may make under this rule
    /// (signed with the words; the composer and the fold enforce them).
    pub limits: Limits,
}

/// Limits on asking, signed as part of a rule: how often the partner the
/// rule does *not* ask of may ask for a check-in (a whereabouts rule) or to
/// see the phone (a phone-access rule), and when not at all. A request
/// beyond them is refused by the composer and marked by the fold as
/// outside what the couple agreed, never shown as waiting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// At most this many check-in requests in any 24 hours.
    pub checkins_per_day: Option<u8>,
    /// At most this many requests to see the phone in any 7 days.
    pub phone_per_week: Option<u8>,
    /// No requests at all during these hours.
    pub quiet: Option<QuietHours>,
}

/// Hours without requests, in the couple's local time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietHours {
    /// Start, in minutes after local midnight (0..1440).
    pub from_min: u16,
    /// End (exclusive), in minutes after local midnight; earlier than
    /// `from_min` when the quiet hours cross midnight.
    pub to_min: u16,
    /// The local time's offset from UTC, in minutes (e.g. 60 for UTC+01:00).
    pub utc_offset_min: i16,
}

impl QuietHours {
    /// Whether the instant `ms` (since the Unix epoch) falls in these hours.
    pub fn contains(&self, ms: u64) -> bool {
        let local = i64::try_from(ms / 60_000).unwrap_or(i64::MAX) + i64::from(self.utc_offset_min);
        let minute = u16::try_from(local.rem_euclid(1440)).unwrap_or(0);
        if self.from_min <= self.to_min {
            (self.from_min..self.to_min).contains(&minute)
        } else {
            minute >= self.from_min || minute < self.to_min
        }
    }

    /// `22:00–07:00 (UTC+01:00)`.
    pub fn words(&self) -> String {
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        let o = self.utc_offset_min;
        let sign = if o < 0 { '-' } else { '+' };
        let a = o.unsigned_abs();
        format!(
            "{}–{} (UTC{sign}{:02}:{:02})",
            hm(self.from_min),
            hm(self.to_min),
            a / 60,
            a % 60
        )
    }
}

impl Limits {
    /// No limits at all.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// Each limit in plain words ("at most 3 check-in requests a day").
    pub fn words(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(n) = self.checkins_per_day {
            out.push(format!(
                "at most {n} check-in request{} a day",
                if n == 1 { "" } else { "s" }
            ));
        }
        if let Some(n) = self.phone_per_week {
            out.push(format!(
                "at most {n} request{} to see the phone a week",
                if n == 1 { "" } else { "s" }
            ));
        }
        if let Some(q) = self.quiet {
            out.push(format!("no requests {}", q.words()));
        }
        out
    }

    fn check(&self) -> Result<(), AgreementError> {
        if let Some(q) = self.quiet {
            if q.from_min >= 1440
                || q.to_min >= 1440
                || q.from_min == q.to_min
                || q.utc_offset_min.unsigned_abs() > MAX_UTC_OFFSET_MIN.unsigned_abs()
            {
                return Err(AgreementError::BadLimits);
            }
        }
        Ok(())
    }

    fn encode(&self, w: &mut Writer) {
        w.opt(self.checkins_per_day, |w, n| {
            w.u8(n);
        })
        .opt(self.phone_per_week, |w, n| {
            w.u8(n);
        })
        .opt(self.quiet, |w, q| {
            w.u16(q.from_min).u16(q.to_min).u16(q.utc_offset_min as u16);
        });
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Limits {
            checkins_per_day: r.opt(|r| r.u8())?,
            phone_per_week: r.opt(|r| r.u8())?,
            quiet: r.opt(|r| {
                Ok(QuietHours {
                    from_min: r.u16()?,
                    to_min: r.u16()?,
                    utc_offset_min: r.u16()? as i16,
                })
            })?,
        })
    }
}

/// One version of a boundary agreement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agreement {
    /// Shared by all versions.
    pub id: AgreementId,
    /// 1 for the first proposal, then one more for each amendment or renewal.
    pub version: u32,
    /// The content hash of the version this one replaces.
    pub supersedes: Option<ContentHash>,
    /// A short title.
    pub title: String,
    /// The rules.
    pub rules: Vec<Rule>,
    /// The day both partners agreed to look at it again.
    pub review_on: Day,
}

/// The SHA-256 content hash of an agreement version.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", &self.to_hex()[..16])
    }
}

/// Agreement validation errors.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AgreementError {
    /// An agreement needs a title and at least one rule, each with words.
    #[error("an agreement needs a title and at least one rule with words")]
    Empty,
    /// A field is longer than allowed.
    #[error("{0} is too long")]
    TooLong(&'static str),
    /// A device name with no words.
    #[error("Please give the device a name, like “my phone”.")]
    NoDeviceName,
    /// A co-signature does not verify, or both signatures are by one person.
    #[error("the signatures do not show that both partners agreed to these exact words")]
    NotCosigned,
    /// The certificate could not be read.
    #[error("this is not a valid agreement certificate: {0}")]
    Certificate(DecodeError),
    /// The signatures are not tied to a place in the couple's log (a
    /// certificate of the first format, or one whose proposing event does
    /// not match).
    #[error(
        "this certificate isn't tied to a place in the couple's log, so it can't show that these words \
         were ever proposed there; ask for a new certificate from the app or `troth agreement export`"
    )]
    NotInLog,
    /// A title, rule or detail holds a character that hides or reorders words.
    #[error(transparent)]
    Text(#[from] TextError),
    /// The review date is further ahead than [`MAX_REVIEW_DAYS`].
    #[error(
        "Choose a review date at most {MAX_REVIEW_DAYS} days ahead: rules are looked at together again \
         within {MAX_REVIEW_DAYS} days, and you can renew them then."
    )]
    ReviewTooFar,
    /// Quiet hours that cannot be read (a minute past the day, an empty
    /// range, an offset beyond ±18 hours).
    #[error("the quiet hours are not a range of times within one day")]
    BadLimits,
    /// A retention period outside
    /// [`crate::retention::MIN_DAYS`]..=[`crate::retention::MAX_DAYS`].
    #[error(
        "Choose how long things are kept between {} and {} days.",
        crate::retention::MIN_DAYS,
        crate::retention::MAX_DAYS
    )]
    RetentionOutOfRange,
}

impl Agreement {
    /// Checks the bounds the encoding enforces and refuses characters that
    /// hide or reorder words ([`check_text`]).
    pub fn validate(&self) -> Result<(), AgreementError> {
        self.check_bounds()?;
        check_text(&self.title)?;
        for r in &self.rules {
            check_text(&r.text)?;
            for (k, v) in &r.params {
                check_text(k)?;
                check_text(v)?;
            }
        }
        Ok(())
    }

    /// Checks the bounds the encoding enforces (what a decoder needs; the
    /// fold applies [`Agreement::validate`] too).
    pub fn check_bounds(&self) -> Result<(), AgreementError> {
        if self.title.trim().is_empty()
            || self.rules.is_empty()
            || self.rules.iter().any(|r| r.text.trim().is_empty())
        {
            return Err(AgreementError::Empty);
        }
        if self.title.len() > MAX_TITLE {
            return Err(AgreementError::TooLong("the title"));
        }
        if self.rules.len() > MAX_RULES {
            return Err(AgreementError::TooLong("the list of rules"));
        }
        for r in &self.rules {
            if r.text.len() > MAX_RULE_TEXT {
                return Err(AgreementError::TooLong("a rule's text"));
            }
            r.limits.check()?;
            if r.params.len() > MAX_PARAMS
                || r.params
                    .iter()
                    .any(|(k, v)| k.len() > MAX_PARAM || v.len() > MAX_PARAM)
            {
                return Err(AgreementError::TooLong("a rule's details"));
            }
        }
        Ok(())
    }

    /// Whether the review date is within [`MAX_REVIEW_DAYS`] of `today`
    /// (the day it is proposed). The composer and the fold both check it.
    pub fn check_review(&self, today: Day) -> Result<(), AgreementError> {
        if self.review_on > today.plus(MAX_REVIEW_DAYS) {
            return Err(AgreementError::ReviewTooFar);
        }
        Ok(())
    }

    /// Canonical bytes (format version 2).
    pub fn encode(&self, w: &mut Writer) {
        w.u8(AGREEMENT_VERSION)
            .raw(&self.id.0)
            .u32(self.version)
            .opt(self.supersedes, |w, h| {
                w.raw(&h.0);
            })
            .str(&self.title)
            .u32(self.review_on.0)
            .u32(self.rules.len() as u32);
        for r in &self.rules {
            w.str(&r.text)
                .u8(r.category.to_u8())
                .u8(r.asks_of.to_u8())
                .u32(r.params.len() as u32);
            for (k, v) in &r.params {
                w.str(k).str(v);
            }
            r.limits.encode(w);
        }
    }

    /// Canonical bytes as a vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.finish()
    }

    /// Decodes canonical bytes (bounded).
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let v = r.u8()?;
        if v != AGREEMENT_VERSION {
            return Err(DecodeError::UnsupportedVersion(v));
        }
        let id = AgreementId(r.array()?);
        let version = r.u32()?;
        let supersedes = r.opt(|r| r.array().map(ContentHash))?;
        let title = r.str(MAX_TITLE)?.to_owned();
        let review_on = Day(r.u32()?);
        let n = r.count(MAX_RULES)?;
        let mut rules = Vec::with_capacity(n);
        for _ in 0..n {
            let text = r.str(MAX_RULE_TEXT)?.to_owned();
            let category = Category::from_u8(r.u8()?)?;
            let asks_of = Role::from_u8(r.u8()?)?;
            let np = r.count(MAX_PARAMS)?;
            let mut params = Vec::with_capacity(np);
            for _ in 0..np {
                params.push((r.str(MAX_PARAM)?.to_owned(), r.str(MAX_PARAM)?.to_owned()));
            }
            let limits = Limits::decode(r)?;
            rules.push(Rule {
                text,
                category,
                asks_of,
                params,
                limits,
            });
        }
        Ok(Agreement {
            id,
            version,
            supersedes,
            title,
            rules,
            review_on,
        })
    }

    /// The content hash.
    pub fn content_hash(&self) -> ContentHash {
        ContentHash(sign::hash(Label::AgreementContent, &self.to_bytes()))
    }

    fn cosign_body(&self, space: SpaceId, at: &Position) -> Vec<u8> {
        cosign_body(space, self.id, self.version, &self.content_hash(), at)
    }

    /// Signs this exact version, proposed at `at` in the space's log, as one
    /// of the partners.
    pub fn cosign(&self, space: SpaceId, at: &Position, identity: &IdentitySecret) -> Signature {
        identity.sign(Label::AgreementCosign, &self.cosign_body(space, at))
    }

    /// The next version: same id, `version + 1`, superseding this one.
    pub fn amended(&self, title: String, rules: Vec<Rule>, review_on: Day) -> Agreement {
        Agreement {
            id: self.id,
            version: self.version.saturating_add(1),
            supersedes: Some(self.content_hash()),
            title,
            rules,
            review_on,
        }
    }
}

/// Where in a space's log a version was proposed: the proposing event's
/// sequence number and hash. Co-signatures cover it, so a signature cannot
/// be carried to words that were never proposed in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    /// The proposing event's sequence number.
    pub seq: u64,
    /// The proposing event's hash.
    pub event: EventHash,
}

pub(crate) fn cosign_body(
    space: SpaceId,
    id: AgreementId,
    version: u32,
    hash: &ContentHash,
    at: &Position,
) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(COSIGN_VERSION)
        .raw(&space.0)
        .raw(&id.0)
        .u32(version)
        .raw(&hash.0)
        .u64(at.seq)
        .raw(&at.event.0);
    w.finish()
}

/// The co-signature body's format version.
const COSIGN_VERSION: u8 = 2;

/// Checks one partner's co-signature over an agreement version proposed at `at`.
pub fn verify_cosignature(
    space: SpaceId,
    agreement: &Agreement,
    at: &Position,
    signer: &IdentityKey,
    sig: &Signature,
) -> Result<(), AgreementError> {
    signer
        .verify(
            Label::AgreementCosign,
            &agreement.cosign_body(space, at),
            sig,
        )
        .map_err(|_| AgreementError::NotCosigned)
}

/// An agreement version that both partners signed. The only constructor is
/// [`InForce::verify`]; whether a *later* event withdrew, retired or
/// superseded it is for the log's state to say (see `state`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InForce {
    space: SpaceId,
    agreement: Agreement,
    at: Position,
    signers: [(IdentityKey, Signature); 2],
}

impl InForce {
    /// Verifies two co-signatures by two distinct identities over the same
    /// version, proposed at `at`.
    pub fn verify(
        space: SpaceId,
        agreement: Agreement,
        at: Position,
        a: (IdentityKey, Signature),
        b: (IdentityKey, Signature),
    ) -> Result<Self, AgreementError> {
        if a.0 == b.0 {
            return Err(AgreementError::NotCosigned);
        }
        agreement.validate()?;
        verify_cosignature(space, &agreement, &at, &a.0, &a.1)?;
        verify_cosignature(space, &agreement, &at, &b.0, &b.1)?;
        let signers = if a.0 <= b.0 { [a, b] } else { [b, a] };
        Ok(Self {
            space,
            agreement,
            at,
            signers,
        })
    }

    /// The space.
    pub fn space(&self) -> SpaceId {
        self.space
    }

    /// The agreed version.
    pub fn agreement(&self) -> &Agreement {
        &self.agreement
    }

    /// Where in the log it was proposed.
    pub fn position(&self) -> Position {
        self.at
    }

    /// The two signers with their signatures (sorted by key bytes).
    pub fn signatures(&self) -> &[(IdentityKey, Signature); 2] {
        &self.signers
    }

    /// The two signers (sorted by key bytes).
    pub fn signers(&self) -> [&IdentityKey; 2] {
        [&self.signers[0].0, &self.signers[1].0]
    }

    /// A self-contained certificate anyone can verify offline, given the
    /// proposing event and its author's device certificate (from the log).
    pub fn certificate(
        &self,
        proposal: &Event,
        author: &DeviceCert,
    ) -> Result<Certificate, AgreementError> {
        Certificate::check(self.clone(), proposal.clone(), author.clone())
    }
}

/// A self-contained, offline-verifiable proof that two identities signed an
/// agreement version *proposed at a given place in their log*: the words,
/// the proposing event (signed by a device certified by one of the two
/// identities), both public keys and both signatures. It shows the agreement
/// was made then; only the space's log can show it is still in force
/// (`Replica::certificate_status`). A value of this type has been verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    proof: InForce,
    proposal: Event,
    author: DeviceCert,
}

const CERT_BEGIN: &str = "-----BEGIN TROTH AGREEMENT CERTIFICATE-----";
const CERT_END: &str = "-----END TROTH AGREEMENT CERTIFICATE-----";
/// The certificate format version.
const CERT_VERSION: u8 = 2;

impl Certificate {
    /// Ties a verified agreement to its proposing event: the event must be
    /// the one the signatures name, signed by `author`'s device, and
    /// `author` a device of one of the two signers.
    fn check(proof: InForce, proposal: Event, author: DeviceCert) -> Result<Self, AgreementError> {
        let untied = AgreementError::NotInLog;
        let h = proposal.header();
        if h.space != proof.space
            || h.seq != proof.at.seq
            || proposal.hash() != proof.at.event
            || h.author != author.device().id()
            || !proof.signers().contains(&author.identity())
            || !matches!(proposal.body(), crate::event::Body::Sealed(_))
        {
            return Err(untied);
        }
        proposal
            .verify_signature(author.device().verifying_key())
            .map_err(|_| untied)?;
        Ok(Self {
            proof,
            proposal,
            author,
        })
    }

    /// The verified agreement.
    pub fn in_force(&self) -> &InForce {
        &self.proof
    }

    /// The space.
    pub fn space(&self) -> SpaceId {
        self.proof.space
    }

    /// The agreed version.
    pub fn agreement(&self) -> &Agreement {
        &self.proof.agreement
    }

    /// Where in the log it was proposed.
    pub fn position(&self) -> Position {
        self.proof.at
    }

    /// The proposing event's author time (ms since the Unix epoch; the
    /// author's clock).
    pub fn proposed_at_ms(&self) -> u64 {
        self.proposal.header().timestamp_ms
    }

    /// The two signers (sorted by key bytes).
    pub fn signers(&self) -> [&IdentityKey; 2] {
        self.proof.signers()
    }

    /// Canonical bytes: `"troth-cert" || 2 || agreement || bytes(proposing
    /// event) || bytes(author's device certificate) || (key, sig) × 2`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(b"troth-cert").u8(CERT_VERSION);
        self.proof.agreement.encode(&mut w);
        w.bytes(self.proposal.as_bytes())
            .bytes(&self.author.to_bytes());
        for (k, s) in &self.proof.signers {
            w.raw(&k.to_bytes()).raw(&s.to_bytes());
        }
        w.finish()
    }

    /// Decodes and verifies: both signatures over the words and the place
    /// they were proposed, and that place's signed event header. A
    /// certificate of the first format (signatures not tied to the log) is
    /// refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Certificate, AgreementError> {
        let e = AgreementError::Certificate;
        let mut r = Reader::new(bytes);
        if r.take(10).map_err(e)? != b"troth-cert" {
            return Err(e(DecodeError::Invalid("certificate magic")));
        }
        let v = r.u8().map_err(e)?;
        if v == 1 {
            return Err(AgreementError::NotInLog);
        }
        if v != CERT_VERSION {
            return Err(e(DecodeError::UnsupportedVersion(v)));
        }
        let agreement = Agreement::decode(&mut r).map_err(e)?;
        let proposal = Event::decode(r.bytes(crate::event::MAX_EVENT).map_err(e)?).map_err(e)?;
        let author = DeviceCert::from_bytes(r.bytes(1024).map_err(e)?).map_err(e)?;
        let sig = |r: &mut Reader<'_>| -> Result<(IdentityKey, Signature), AgreementError> {
            let k = IdentityKey::from_bytes(&r.array().map_err(e)?)
                .map_err(|k| e(DecodeError::from(k)))?;
            Ok((k, Signature::from_bytes(&r.array().map_err(e)?)))
        };
        let a = sig(&mut r)?;
        let b = sig(&mut r)?;
        r.finish().map_err(e)?;
        let h = proposal.header();
        let at = Position {
            seq: h.seq,
            event: proposal.hash(),
        };
        let proof = InForce::verify(h.space, agreement, at, a, b)?;
        Certificate::check(proof, proposal, author)
    }

    /// A readable text file: every signed field in words, where and when it
    /// was proposed, what the certificate proves and what it does not, then
    /// the armored proof. Roles are worded with `sets`, the partner who sets
    /// the conditions when it is written ([`crate::state::Roles::sets`]).
    pub fn to_text(&self, sets: Role) -> String {
        use base64::Engine;
        let a = &self.proof.agreement;
        let mut s = String::new();
        s.push_str(&format!(
            "Troth agreement: {}
",
            a.title
        ));
        s.push_str(&format!(
            "Version {} · review on {}

",
            a.version, a.review_on
        ));
        s.push_str(&describe_rules(a, sets));
        s.push_str(&format!(
            "
Proposed in space {} as event #{} ({}), dated {} by its author's device.
",
            hex::encode(self.proof.space.0),
            self.proof.at.seq,
            &self.proof.at.event.to_hex()[..16],
            crate::agreement::Day::from_unix_ms(self.proposed_at_ms()),
        ));
        s.push_str(
            "
Signed by:
",
        );
        for (k, _) in &self.proof.signers {
            s.push_str(&format!(
                "  {}
",
                k.fingerprint()
            ));
        }
        s.push_str(
            "
This certificate proves that both partners signed these exact words, proposed at              that place in their log. It proves nothing about today: either partner can withdraw              consent at any moment, and a rule lapses at its review date unless both renew it.              To see where it stands now, check it against the couple's log with              `troth agreement status FILE`; `troth verify-certificate FILE` checks the              signatures alone.

",
        );
        s.push_str(CERT_BEGIN);
        s.push('\n');
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.to_bytes());
        for chunk in b64.as_bytes().chunks(64) {
            s.push_str(&String::from_utf8_lossy(chunk));
            s.push('\n');
        }
        s.push_str(CERT_END);
        s.push('\n');
        s
    }

    /// Reads [`Certificate::to_text`]'s output (only the armored part counts:
    /// the words above it are for people, the proof holds the signed text).
    pub fn from_text(text: &str) -> Result<Certificate, AgreementError> {
        use base64::Engine;
        let bad = || AgreementError::Certificate(DecodeError::Invalid("certificate armor"));
        let start = text.find(CERT_BEGIN).ok_or_else(bad)? + CERT_BEGIN.len();
        let end = text[start..].find(CERT_END).ok_or_else(bad)? + start;
        let b64: String = text[start..end].split_whitespace().collect();
        if b64.len() > 400_000 {
            return Err(bad());
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad())?;
        Certificate::from_bytes(&bytes)
    }
}

/// A partner's role in plain words, given who sets the conditions now
/// ([`crate::state::Roles::sets`]; pairing starts with [`Role::Leading`]).
pub fn asks_of_words(sets: Role, role: Role) -> &'static str {
    if role == sets {
        "the partner who sets the conditions"
    } else {
        "the partner rebuilding trust"
    }
}

/// Every signed field of an agreement's rules, one numbered rule after
/// another: its words, what it is about, whom it asks, and its details.
pub fn describe_rules(a: &Agreement, sets: Role) -> String {
    let mut s = String::new();
    for (i, r) in a.rules.iter().enumerate() {
        s.push_str(&format!(
            "{}. {}
",
            i + 1,
            r.text
        ));
        s.push_str(&format!(
            "   About: {} · asks of: {}
",
            r.category.name(),
            asks_of_words(sets, r.asks_of)
        ));
        for (k, v) in &r.params {
            s.push_str(&format!(
                "   {k}: {v}
"
            ));
        }
        for l in r.limits.words() {
            s.push_str(&format!(
                "   Limit on asking: {l}
"
            ));
        }
    }
    s
}

/// A template rule set, as the practice guide words it. Couples edit the words.
#[derive(Clone, Debug)]
pub struct Template {
    /// Stable name (`whereabouts`, `phone`, `bed`, …).
    pub name: &'static str,
    /// Suggested title.
    pub title: &'static str,
    /// Suggested rules.
    pub rules: Vec<Rule>,
}

fn rule(text: &str, category: Category, asks_of: Role, params: &[(&str, &str)]) -> Rule {
    Rule {
        limits: Limits::default(),
        text: text.to_owned(),
        category,
        asks_of,
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// The templates: the practice guide's three, then others couples often use.
pub fn templates() -> Vec<Template> {
    use Category::*;
    use Role::*;
    vec![
        Template {
            name: "whereabouts",
            title: "Knowing where you are",
            rules: vec![Rule {
                limits: Limits {
                    checkins_per_day: Some(3),
                    ..Limits::default()
                },
                ..rule(
                    "I'll check in when I'm out, saying where I am and until when, so you don't have to wonder.",
                    Whereabouts,
                    Rebuilding,
                    &[("check-in times", "when I leave and when plans change")],
                )
            }],
        },
        Template {
            name: "phone",
            title: "Phone access when asked",
            rules: vec![Rule {
                limits: Limits {
                    phone_per_week: Some(1),
                    ..Limits::default()
                },
                ..rule(
                    "When you ask to see my phone, I'll show it to you openly. Each request is noted here for both of us.",
                    PhoneAccess,
                    Rebuilding,
                    &[],
                )
            }],
        },
        Template {
            name: "bed",
            title: "Sharing the bed",
            rules: vec![rule(
                "You decide when we share the bed again. I'll respect that without pressure.",
                SharedBed,
                Rebuilding,
                &[],
            )],
        },
        Template {
            name: "no-contact",
            title: "No contact",
            rules: vec![rule(
                "I won't contact the other person, and if they contact me I'll tell you within a day.",
                NoContact,
                Rebuilding,
                &[],
            )],
        },
        Template {
            name: "therapy",
            title: "Going to therapy together",
            rules: vec![rule(
                "We'll go to couples therapy together, and each of us will keep the appointments.",
                Therapy,
                Rebuilding,
                &[("how often", "every week")],
            )],
        },
        Template {
            name: "honesty",
            title: "Honesty about contact",
            rules: vec![rule(
                "If I'm in contact with the other person for any reason, I'll tell you honestly, even when it's hard.",
                Honesty,
                Rebuilding,
                &[],
            )],
        },
    ]
}

/// A role as templates name it ([`Role::Leading`] for whoever sets the
/// conditions) given who sets them now: once the partners swapped roles
/// (`sets` is [`Role::Rebuilding`]), a template's rule asks the other role.
pub fn as_roles(sets: Role, role: Role) -> Role {
    if sets == Role::Leading {
        role
    } else {
        role.other()
    }
}

/// A template by name.
pub fn template(name: &str) -> Option<Template> {
    templates().into_iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn sample() -> Agreement {
        let t = template("whereabouts").expect("template");
        Agreement {
            id: AgreementId([4; 16]),
            version: 1,
            supersedes: None,
            title: t.title.into(),
            rules: t.rules,
            review_on: Day::from_ymd(2027, 1, 31).expect("date"),
        }
    }

    #[test]
    fn days() {
        assert_eq!(Day(0).to_string(), "1970-01-01");
        assert_eq!(
            Day::parse("2026-11-29").map(|d| d.to_string()),
            Some("2026-11-29".into())
        );
        assert_eq!(
            Day::parse("2024-02-29").map(|d| d.plus(1).to_string()),
            Some("2024-03-01".into())
        );
        assert_eq!(Day::parse("2023-02-29"), None);
        for n in (0..80_000).step_by(37) {
            let (y, m, d) = Day(n).to_ymd();
            assert_eq!(Day::from_ymd(y, m, d), Some(Day(n)));
        }
    }

    #[test]
    fn cosign_needs_two_distinct_partners_same_text_and_place() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let a = IdentitySecret::generate(&mut rng);
        let b = IdentitySecret::generate(&mut rng);
        let space = SpaceId([1; 16]);
        let at = Position {
            seq: 3,
            event: EventHash([9; 32]),
        };
        let ag = sample();
        let sa = ag.cosign(space, &at, &a);
        let sb = ag.cosign(space, &at, &b);
        let ok = InForce::verify(space, ag.clone(), at, (a.public(), sa), (b.public(), sb));
        assert!(ok.is_ok());
        assert_eq!(
            InForce::verify(space, ag.clone(), at, (a.public(), sa), (a.public(), sa)),
            Err(AgreementError::NotCosigned)
        );
        let mut edited = ag.clone();
        edited.rules[0].text.push('!');
        assert!(InForce::verify(space, edited, at, (a.public(), sa), (b.public(), sb)).is_err());
        assert!(
            InForce::verify(
                SpaceId([2; 16]),
                ag.clone(),
                at,
                (a.public(), sa),
                (b.public(), sb)
            )
            .is_err()
        );
        // The same words proposed at another place in the log: the
        // signatures do not carry over.
        for other in [
            Position { seq: 4, ..at },
            Position {
                event: EventHash([8; 32]),
                ..at
            },
        ] {
            assert_eq!(
                InForce::verify(space, ag.clone(), other, (a.public(), sa), (b.public(), sb)),
                Err(AgreementError::NotCosigned)
            );
        }
    }

    #[test]
    fn hidden_characters_are_refused_in_every_field() {
        let mut ag = sample();
        assert_eq!(ag.validate(), Ok(()));
        ag.rules[0].text = "I will tell you where I am\u{202E}".into();
        assert_eq!(
            ag.validate(),
            Err(AgreementError::Text(TextError::Invisible('\u{202E}')))
        );
        assert_eq!(ag.check_bounds(), Ok(()));
        let mut ag = sample();
        ag.title.push('\u{200B}');
        assert!(ag.validate().is_err());
        let mut ag = sample();
        ag.rules[0]
            .params
            .push(("when".into(), "noon\u{2066}".into()));
        assert!(ag.validate().is_err());
    }

    #[test]
    fn first_format_certificates_are_refused() {
        let mut bytes = b"troth-cert".to_vec();
        bytes.push(1);
        bytes.extend_from_slice(&[0; 16]);
        bytes.extend_from_slice(&sample().to_bytes());
        bytes.extend_from_slice(&[0; 192]);
        assert_eq!(
            Certificate::from_bytes(&bytes),
            Err(AgreementError::NotInLog)
        );
        assert!(
            AgreementError::NotInLog
                .to_string()
                .contains("isn't tied to a place in the couple's log")
        );
    }

    #[test]
    fn encoding_round_trips() {
        let ag = sample();
        let bytes = ag.to_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(Agreement::decode(&mut r).expect("decode"), ag);
        assert!(r.finish().is_ok());
    }
}
