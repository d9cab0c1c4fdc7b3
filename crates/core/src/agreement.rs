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
use crate::event::Role;
use crate::ids::{AgreementId, SpaceId};
use crate::keys::{IdentityKey, IdentitySecret};
use crate::sign::{self, Label};

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
    /// A co-signature does not verify, or both signatures are by one person.
    #[error("the signatures do not show that both partners agreed to these exact words")]
    NotCosigned,
    /// The certificate could not be read.
    #[error("this is not a valid agreement certificate: {0}")]
    Certificate(DecodeError),
}

impl Agreement {
    /// Checks the bounds the encoding enforces.
    pub fn validate(&self) -> Result<(), AgreementError> {
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

    /// Canonical bytes (format version 1).
    pub fn encode(&self, w: &mut Writer) {
        w.u8(1)
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
        if v != 1 {
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
            rules.push(Rule {
                text,
                category,
                asks_of,
                params,
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

    fn cosign_body(&self, space: SpaceId) -> Vec<u8> {
        cosign_body(space, self.id, self.version, &self.content_hash())
    }

    /// Signs this exact version as one of the partners.
    pub fn cosign(&self, space: SpaceId, identity: &IdentitySecret) -> Signature {
        identity.sign(Label::AgreementCosign, &self.cosign_body(space))
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

pub(crate) fn cosign_body(
    space: SpaceId,
    id: AgreementId,
    version: u32,
    hash: &ContentHash,
) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(1).raw(&space.0).raw(&id.0).u32(version).raw(&hash.0);
    w.finish()
}

/// Checks one partner's co-signature over an agreement version.
pub fn verify_cosignature(
    space: SpaceId,
    agreement: &Agreement,
    signer: &IdentityKey,
    sig: &Signature,
) -> Result<(), AgreementError> {
    signer
        .verify(Label::AgreementCosign, &agreement.cosign_body(space), sig)
        .map_err(|_| AgreementError::NotCosigned)
}

/// An agreement version that both partners signed. The only constructor is
/// [`InForce::verify`]; whether a *later* event withdrew, retired or
/// superseded it is for the log's state to say (see `state`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InForce {
    space: SpaceId,
    agreement: Agreement,
    signers: [(IdentityKey, Signature); 2],
}

impl InForce {
    /// Verifies two co-signatures by two distinct identities over the same version.
    pub fn verify(
        space: SpaceId,
        agreement: Agreement,
        a: (IdentityKey, Signature),
        b: (IdentityKey, Signature),
    ) -> Result<Self, AgreementError> {
        if a.0 == b.0 {
            return Err(AgreementError::NotCosigned);
        }
        agreement.validate()?;
        verify_cosignature(space, &agreement, &a.0, &a.1)?;
        verify_cosignature(space, &agreement, &b.0, &b.1)?;
        let signers = if a.0 <= b.0 { [a, b] } else { [b, a] };
        Ok(Self {
            space,
            agreement,
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

    /// The two signers (sorted by key bytes).
    pub fn signers(&self) -> [&IdentityKey; 2] {
        [&self.signers[0].0, &self.signers[1].0]
    }

    /// A self-contained certificate anyone can verify offline.
    pub fn certificate(&self) -> Certificate {
        Certificate(self.clone())
    }
}

/// A self-contained, offline-verifiable proof that two identities signed an
/// agreement version: content, both public keys and both signatures. It shows
/// the agreement was made; only the space's log can show it is still in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate(InForce);

const CERT_BEGIN: &str = "-----BEGIN TROTH AGREEMENT CERTIFICATE-----";
const CERT_END: &str = "-----END TROTH AGREEMENT CERTIFICATE-----";

impl Certificate {
    /// Canonical bytes: `"troth-cert" || 1 || space || agreement || (key, sig) × 2`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(b"troth-cert").u8(1).raw(&self.0.space.0);
        self.0.agreement.encode(&mut w);
        for (k, s) in &self.0.signers {
            w.raw(&k.to_bytes()).raw(&s.to_bytes());
        }
        w.finish()
    }

    /// Decodes and verifies.
    pub fn from_bytes(bytes: &[u8]) -> Result<InForce, AgreementError> {
        let e = AgreementError::Certificate;
        let mut r = Reader::new(bytes);
        if r.take(10).map_err(e)? != b"troth-cert" {
            return Err(e(DecodeError::Invalid("certificate magic")));
        }
        let v = r.u8().map_err(e)?;
        if v != 1 {
            return Err(e(DecodeError::UnsupportedVersion(v)));
        }
        let space = SpaceId(r.array().map_err(e)?);
        let agreement = Agreement::decode(&mut r).map_err(e)?;
        let sig = |r: &mut Reader<'_>| -> Result<(IdentityKey, Signature), AgreementError> {
            let k = IdentityKey::from_bytes(&r.array().map_err(e)?)
                .map_err(|k| e(DecodeError::from(k)))?;
            Ok((k, Signature::from_bytes(&r.array().map_err(e)?)))
        };
        let a = sig(&mut r)?;
        let b = sig(&mut r)?;
        r.finish().map_err(e)?;
        InForce::verify(space, agreement, a, b)
    }

    /// A readable text file: the agreement in words, then the armored proof.
    pub fn to_text(&self) -> String {
        use base64::Engine;
        let a = &self.0.agreement;
        let mut s = String::new();
        s.push_str(&format!("Troth agreement: {}\n", a.title));
        s.push_str(&format!(
            "Version {} · review on {}\n\n",
            a.version, a.review_on
        ));
        for (i, r) in a.rules.iter().enumerate() {
            s.push_str(&format!("{}. {}\n", i + 1, r.text));
        }
        s.push_str("\nSigned by:\n");
        for (k, _) in &self.0.signers {
            s.push_str(&format!("  {}\n", k.fingerprint()));
        }
        s.push_str("\nCheck it with `troth verify-certificate FILE`.\n\n");
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
    pub fn from_text(text: &str) -> Result<InForce, AgreementError> {
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
            rules: vec![rule(
                "I'll check in when I'm out, saying where I am and until when, so you don't have to wonder.",
                Whereabouts,
                Rebuilding,
                &[("check-in times", "when I leave and when plans change")],
            )],
        },
        Template {
            name: "phone",
            title: "Phone access when asked",
            rules: vec![rule(
                "When you ask to see my phone, I'll show it to you openly. Each request is noted here for both of us.",
                PhoneAccess,
                Rebuilding,
                &[],
            )],
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
    fn cosign_needs_two_distinct_partners_and_same_text() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let a = IdentitySecret::generate(&mut rng);
        let b = IdentitySecret::generate(&mut rng);
        let space = SpaceId([1; 16]);
        let ag = sample();
        let sa = ag.cosign(space, &a);
        let sb = ag.cosign(space, &b);
        let ok = InForce::verify(space, ag.clone(), (a.public(), sa), (b.public(), sb));
        assert!(ok.is_ok());
        assert_eq!(
            InForce::verify(space, ag.clone(), (a.public(), sa), (a.public(), sa)),
            Err(AgreementError::NotCosigned)
        );
        let mut edited = ag.clone();
        edited.rules[0].text.push('!');
        assert!(InForce::verify(space, edited, (a.public(), sa), (b.public(), sb)).is_err());
        assert!(
            InForce::verify(
                SpaceId([2; 16]),
                ag.clone(),
                (a.public(), sa),
                (b.public(), sb)
            )
            .is_err()
        );

        let cert = ok.expect("in force").certificate();
        let text = cert.to_text();
        let back = Certificate::from_text(&text).expect("verifies");
        assert_eq!(back.agreement(), &ag);
        // The words above the armor are for people; only the signed proof counts.
        let reworded = text.replacen("Knowing where you are", "Something else", 1);
        let proof = Certificate::from_text(&reworded).expect("still verifies");
        assert_eq!(proof.agreement(), &ag);
        let mut bytes = cert.to_bytes();
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        assert!(Certificate::from_bytes(&bytes).is_err());
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
