//! Pairing: two partners' devices meet over a short one-time code.
//!
//! Partner A (the *creator*, who already holds the space) asks the relay for a
//! rendezvous mailbox, gets its number, and shows a code such as
//! `7-crystal-orbit`: the mailbox number and two words drawn at random from a
//! list of 2048 ([`PairingCode`]). Partner B (the *joiner*) types the code in.
//! Both then run this state machine over the mailbox. The relay, and anyone
//! else who can write into the mailbox, is untrusted: it may drop, replay,
//! reorder, alter or inject messages. Nothing here does I/O; randomness is
//! passed in.
//!
//! # Guessing odds
//!
//! The two words carry 22 bits (2048 × 2048 = 4 194 304 codes per mailbox).
//! SPAKE2 lets an attacker who does not know the code test exactly one guess
//! per run of the protocol, and a wrong guess makes *both* honest sides fail
//! key confirmation, so the code is burnt: the creator's app closes the
//! mailbox and the couple start again with a new code. One attacker, one
//! guess: a chance of 1 in 4 194 304 of pairing in the victim's place, and a
//! failed attempt is visible to both partners. Whoever wins the race anyway is
//! still shown to both partners through the safety number, which differs from
//! the one they would see together.
//!
//! # Message flow
//!
//! Every message is `version (1) || kind (1) || body`, with a fixed body
//! length for each kind, so it is canonical and bounded ([`MAX_MESSAGE_LEN`]
//! bytes); carry it as base64 ([`Message::to_base64`]). Each kind is sent by
//! one side only, so a message echoed back to its sender is refused.
//!
//! ```text
//!  A: creator (has space S, role R)              B: joiner
//!  ---------------------------------             ---------------------------
//!  1 CreatorPake   SPAKE2 msg (A side)   ──▶
//!                                        ◀──  2 JoinerPake   SPAKE2 msg (B side)
//!  (both: K = SPAKE2 key; T = transcript hash; keys derived from K and T)
//!  3 CreatorConfirm  tag_A               ──▶
//!                                        ◀──  4 JoinerConfirm  tag_B
//!  A checks tag_B                              B checks tag_A
//!                                        ◀──  5 JoinerKeys  seal_BA#0(id_B || cert_B)
//!  6 CreatorKeys  seal_AB#0(id_A || cert_A     ──▶
//!       || S || R || sig_A)                    B checks cert_A, sig_A: paired
//!                                        ◀──  7 JoinerSignature  seal_BA#1(sig_B)
//!  A checks sig_B: paired
//! ```
//!
//! Messages 1 and 2 may cross (B can send 2 before it has seen 1), and so may
//! 3 and 4; every later message waits for the one before it.
//!
//! * **SPAKE2** (`spake2` 0.4, Ed25519 group, asymmetric A/B roles) on the
//!   password = the normalised code (`7-crystal-orbit`), with identities
//!   `troth.app/v1/pair/creator/<mailbox>` and `troth.app/v1/pair/joiner/<mailbox>`.
//! * **Transcript** `T = SHA-256("troth.app/v1/pair/transcript" || 0x00 ||
//!   version || mailbox (u32 BE) || message 1 body || message 2 body)`, where a
//!   body is the 33-byte SPAKE2 message (side byte and point).
//! * **Keys**: HKDF-SHA256 with salt `T` and input `K`, expanded to 32 bytes
//!   each under the infos `troth.app/v1/pair/confirm/creator`,
//!   `…/confirm/joiner`, `…/key/creator-to-joiner`, `…/key/joiner-to-creator`.
//! * **Key confirmation**: `tag_X = HMAC-SHA256(confirm key of X,
//!   "troth.app/v1/pair/confirm-tag" || 0x00 || T)`, compared in constant
//!   time. Neither side sends anything but its tag before it has checked the
//!   other's. A wrong code fails here, on both sides ([`PairingError::WrongCode`]).
//! * **Sealed messages** (5, 6, 7): ChaCha20-Poly1305 under the key of their
//!   direction, nonce = 4 zero bytes || a per-direction counter (u64 BE), which
//!   starts at 0 and is never sent, so a replayed or reordered message fails
//!   to open; associated data = `version || kind || T`.
//! * **Signatures**: `sig_X` is X's identity signature under
//!   `troth.app/v1/pair-confirm` ([`Label::PairConfirm`]) over `version ||
//!   signer (1 = creator, 2 = joiner) || S || id_A || id_B || device id of A ||
//!   device id of B || R || T`. It proves X holds the identity key it claims,
//!   binds both partners' keys, the space and the creator's role to this run.
//!   Verification is `verify_strict`.
//! * Each side refuses a certificate whose identity is not the identity sent
//!   beside it ([`PairingError::IdentityMismatch`]), a partner presenting our
//!   own identity ([`PairingError::SamePerson`]), and weak or non-canonical
//!   keys (refused by the key parsers: [`PairingError::Malformed`]).
//!
//! The result on each side is a [`Paired`]: the space, the partner's identity,
//! device certificate and role, and the safety number both should see. The
//! creator then adds the joiner to the space's log; the joiner reads the log
//! and checks it against the creator's identity.
//!
//! # Secrets
//!
//! Derived keys are zeroized on drop, and nothing here has a `Debug` that
//! prints a secret. The `spake2` 0.4 crate keeps its own copy of the password
//! and its ephemeral scalar without zeroizing them on drop; that is outside
//! this module's reach.
//!
//! # The word list
//!
//! `wordlist.txt` is the BIP-39 English list (as shipped by the `age` crate)
//! with 118 words replaced that could hurt or alarm someone in this situation
//! (`affair`, `betray`, `divorce`, `secret`, `liar`, `spy`, …) by neutral ones
//! (`acorn`, `amber`, …). Every word is 3 to 8 lowercase letters and is
//! identified by its first four letters, so apps may complete a word after
//! four keystrokes.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use ed25519_dalek::Signature;
use hkdf::Hkdf;
use hkdf::hmac::{Hmac, Mac};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity as SpakeIdentity, Password, Spake2};
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::encoding::{Reader, Writer};
use crate::event::Role;
use crate::ids::SpaceId;
use crate::keys::{DeviceCert, DeviceId, IdentityKey, IdentitySecret, SafetyNumber};
use crate::sign::Label;

/// The pairing protocol version, the first byte of every message.
pub const VERSION: u8 = 1;

/// The highest mailbox number a code may carry (the lowest is 1).
pub const MAX_MAILBOX: u32 = 99_999;

/// How many words the list has (2^11).
pub const WORD_COUNT: usize = 2048;

/// The longest pairing message, in bytes.
pub const MAX_MESSAGE_LEN: usize = 2 + CREATOR_KEYS_LEN + TAG_LEN;

const WORDLIST: &str = include_str!("wordlist.txt");

const PAKE_LEN: usize = 33;
const CONFIRM_LEN: usize = 32;
const TAG_LEN: usize = 16;
const SIG_LEN: usize = 64;
const JOINER_KEYS_LEN: usize = 32 + DeviceCert::LEN;
const CREATOR_KEYS_LEN: usize = 32 + DeviceCert::LEN + 16 + 1 + SIG_LEN;

const TRANSCRIPT_DOMAIN: &[u8] = b"troth.app/v1/pair/transcript";
const CONFIRM_TAG_DOMAIN: &[u8] = b"troth.app/v1/pair/confirm-tag";
const INFO_CONFIRM_CREATOR: &[u8] = b"troth.app/v1/pair/confirm/creator";
const INFO_CONFIRM_JOINER: &[u8] = b"troth.app/v1/pair/confirm/joiner";
const INFO_KEY_CREATOR_TO_JOINER: &[u8] = b"troth.app/v1/pair/key/creator-to-joiner";
const INFO_KEY_JOINER_TO_CREATOR: &[u8] = b"troth.app/v1/pair/key/joiner-to-creator";

type HmacSha256 = Hmac<Sha256>;

// ---------------------------------------------------------------- errors

/// Why pairing stopped. Every variant ends the attempt: start again with a new
/// code. Deliberately coarse, and worded for the person holding the phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PairingError {
    /// Key confirmation failed: the two sides did not use the same code.
    #[error(
        "The code didn't match. If you didn't mistype it, someone else may have tried to use it. \
         Start again with a new code."
    )]
    WrongCode,
    /// A message could not be read, or did not open: damaged or altered on the way.
    #[error("A pairing message was damaged or changed on the way. Start again with a new code.")]
    Malformed,
    /// A well-formed message arrived at the wrong moment (replayed, reordered or echoed).
    #[error("A pairing message arrived out of order or twice. Start again with a new code.")]
    UnexpectedMessage,
    /// The other app speaks a pairing version this one does not.
    #[error(
        "The other device uses a different version of pairing ({0}). Update both apps, then start \
         again with a new code."
    )]
    UnsupportedVersion(u8),
    /// The partner's identity signature over this pairing did not verify.
    #[error(
        "Your partner's keys could not be confirmed. Start again with a new code; if it happens \
         again, pair side by side and compare the safety numbers."
    )]
    BadSignature,
    /// A device certificate belongs to another identity than the one presented with it.
    #[error(
        "A device certificate doesn't belong to the identity it came with. Start again with a new \
         code."
    )]
    IdentityMismatch,
    /// The other side presented our own identity.
    #[error(
        "This device tried to pair with your own identity. Enter the code on your partner's \
         device, with your partner's key, and start again with a new code."
    )]
    SamePerson,
}

/// Why a typed code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CodeError {
    /// Not a number followed by two words.
    #[error("A code looks like 7-crystal-orbit: a number and two words. Check what you typed.")]
    Shape,
    /// The number is not between 1 and 99999.
    #[error(
        "The number at the start of the code should be between 1 and 99999. Check what you typed."
    )]
    Mailbox,
    /// A word is not on the list (`position` is 1 or 2).
    #[error("Word {position} of the code isn't one Troth uses. Check its spelling.")]
    UnknownWord {
        /// Which word: 1 or 2.
        position: u8,
    },
}

// ---------------------------------------------------------------- words

fn words() -> &'static [&'static str] {
    static WORDS: OnceLock<Vec<&'static str>> = OnceLock::new();
    WORDS.get_or_init(|| {
        WORDLIST
            .lines()
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .collect()
    })
}

/// The word list, sorted: 2048 distinct lowercase words.
pub fn wordlist() -> &'static [&'static str] {
    words()
}

/// Words of the list that start with `prefix` (lowercased), for completion as
/// someone types. Four letters always single out one word.
pub fn words_with_prefix(prefix: &str) -> impl Iterator<Item = &'static str> {
    let prefix = prefix.trim().to_lowercase();
    let list = words();
    let start = list.partition_point(|w| *w < prefix.as_str());
    list[start..]
        .iter()
        .copied()
        .take_while(move |w| w.starts_with(prefix.as_str()))
}

fn word_index(word: &str) -> Option<u16> {
    words()
        .binary_search(&word)
        .ok()
        .and_then(|i| u16::try_from(i).ok())
}

fn word_at(i: u16) -> &'static str {
    words().get(usize::from(i)).copied().unwrap_or("")
}

// ---------------------------------------------------------------- the code

/// A one-time pairing code: a mailbox number and two secret words.
///
/// The words are secret until the pairing ends: there is no `Display`, `Debug`
/// shows only the mailbox, and the words are zeroized on drop. [`reveal`]
/// gives the text to show the person.
///
/// [`reveal`]: PairingCode::reveal
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct PairingCode {
    mailbox: u32,
    words: [u16; 2],
}

impl PairingCode {
    /// A fresh code for the relay's `mailbox` (1..=99999), words drawn from `rng`.
    pub fn generate(mailbox: u32, rng: &mut impl CryptoRngCore) -> Result<Self, CodeError> {
        if !(1..=MAX_MAILBOX).contains(&mailbox) {
            return Err(CodeError::Mailbox);
        }
        // 2048 is a power of two: masking is uniform.
        let mask = (WORD_COUNT - 1) as u32;
        let mut pick = || (rng.next_u32() & mask) as u16;
        let words = [pick(), pick()];
        Ok(Self { mailbox, words })
    }

    /// Parses what a person typed, leniently: any case, spaces around, and
    /// `-` or spaces (one or more) between the parts; leading zeros in the
    /// number are ignored.
    pub fn parse(typed: &str) -> Result<Self, CodeError> {
        let lower = Zeroizing::new(typed.trim().to_lowercase());
        let mut parts = lower
            .split(|c: char| c == '-' || c.is_whitespace())
            .filter(|p| !p.is_empty());
        let (Some(number), Some(w1), Some(w2), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(CodeError::Shape);
        };
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CodeError::Shape);
        }
        let digits = number.trim_start_matches('0');
        if digits.len() > 5 {
            return Err(CodeError::Mailbox);
        }
        let mailbox: u32 = digits.parse().unwrap_or(0);
        if !(1..=MAX_MAILBOX).contains(&mailbox) {
            return Err(CodeError::Mailbox);
        }
        let first = word_index(w1).ok_or(CodeError::UnknownWord { position: 1 })?;
        let second = word_index(w2).ok_or(CodeError::UnknownWord { position: 2 })?;
        Ok(Self {
            mailbox,
            words: [first, second],
        })
    }

    /// The mailbox number (public: the relay knows it).
    pub fn mailbox(&self) -> u32 {
        self.mailbox
    }

    /// The normalised code, `7-crystal-orbit`: to show, and the SPAKE2 password.
    pub fn reveal(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{}-{}-{}",
            self.mailbox,
            word_at(self.words[0]),
            word_at(self.words[1])
        ))
    }
}

impl FromStr for PairingCode {
    type Err = CodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairingCode")
            .field("mailbox", &self.mailbox)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------- messages

/// The kinds of pairing message. Each is sent by one side only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    CreatorPake = 1,
    JoinerPake = 2,
    CreatorConfirm = 3,
    JoinerConfirm = 4,
    JoinerKeys = 5,
    CreatorKeys = 6,
    JoinerSignature = 7,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Kind::CreatorPake,
            2 => Kind::JoinerPake,
            3 => Kind::CreatorConfirm,
            4 => Kind::JoinerConfirm,
            5 => Kind::JoinerKeys,
            6 => Kind::CreatorKeys,
            7 => Kind::JoinerSignature,
            _ => return None,
        })
    }

    fn body_len(self) -> usize {
        match self {
            Kind::CreatorPake | Kind::JoinerPake => PAKE_LEN,
            Kind::CreatorConfirm | Kind::JoinerConfirm => CONFIRM_LEN,
            Kind::JoinerKeys => JOINER_KEYS_LEN + TAG_LEN,
            Kind::CreatorKeys => CREATOR_KEYS_LEN + TAG_LEN,
            Kind::JoinerSignature => SIG_LEN + TAG_LEN,
        }
    }
}

/// One pairing message, to carry through the mailbox as it is.
#[derive(Clone, PartialEq, Eq)]
pub struct Message(Vec<u8>);

impl Message {
    fn new(kind: Kind, body: &[u8]) -> Self {
        let mut w = Writer::with_capacity(2 + body.len());
        w.u8(VERSION).u8(kind as u8).raw(body);
        Self(w.finish())
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The encoded bytes, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Base64url without padding, for the mailbox.
    pub fn to_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.0)
    }

    /// Parses base64url (no padding), refusing anything longer than a message can be.
    /// The content is checked by [`Pairing::receive`].
    pub fn from_base64(s: &str) -> Result<Self, PairingError> {
        use base64::Engine;
        if s.len() > MAX_MESSAGE_LEN.div_ceil(3) * 4 {
            return Err(PairingError::Malformed);
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim())
            .map(Self)
            .map_err(|_| PairingError::Malformed)
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.0.get(1).copied().and_then(Kind::from_u8);
        write!(f, "Message({kind:?}, {} bytes)", self.0.len())
    }
}

/// Splits a message into its kind and body, checking version, kind and length.
fn open_envelope(msg: &[u8], expected: Kind) -> Result<&[u8], PairingError> {
    if msg.len() > MAX_MESSAGE_LEN {
        return Err(PairingError::Malformed);
    }
    let mut r = Reader::new(msg);
    let version = r.u8().map_err(|_| PairingError::Malformed)?;
    if version != VERSION {
        return Err(PairingError::UnsupportedVersion(version));
    }
    let kind = r
        .u8()
        .ok()
        .and_then(Kind::from_u8)
        .ok_or(PairingError::Malformed)?;
    if kind != expected {
        return Err(PairingError::UnexpectedMessage);
    }
    let body = r
        .take(kind.body_len())
        .map_err(|_| PairingError::Malformed)?;
    r.finish().map_err(|_| PairingError::Malformed)?;
    Ok(body)
}

// ---------------------------------------------------------------- key schedule

fn spake_identities(mailbox: u32) -> (SpakeIdentity, SpakeIdentity) {
    (
        SpakeIdentity::new(format!("troth.app/v1/pair/creator/{mailbox}").as_bytes()),
        SpakeIdentity::new(format!("troth.app/v1/pair/joiner/{mailbox}").as_bytes()),
    )
}

fn transcript_hash(mailbox: u32, creator_pake: &[u8], joiner_pake: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(TRANSCRIPT_DOMAIN);
    h.update([0u8, VERSION]);
    h.update(mailbox.to_be_bytes());
    h.update(creator_pake);
    h.update(joiner_pake);
    h.finalize().into()
}

type Secret32 = Zeroizing<[u8; 32]>;

fn expand(hk: &Hkdf<Sha256>, info: &[u8]) -> Result<Secret32, PairingError> {
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    hk.expand(info, out.as_mut())
        .map_err(|_| PairingError::Malformed)?;
    Ok(out)
}

fn confirm_tag(key: &[u8; 32], transcript: &[u8; 32]) -> Result<HmacSha256, PairingError> {
    let mac = <HmacSha256 as Mac>::new_from_slice(key).map_err(|_| PairingError::Malformed)?;
    Ok(mac
        .chain_update(CONFIRM_TAG_DOMAIN)
        .chain_update([0u8])
        .chain_update(transcript))
}

/// A ChaCha20-Poly1305 key for one direction and its message counter.
struct DirectionKey {
    key: Secret32,
    counter: u64,
}

impl DirectionKey {
    fn new(key: Secret32) -> Self {
        Self { key, counter: 0 }
    }

    fn next_nonce(&mut self) -> Result<Nonce, PairingError> {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter = self.counter.checked_add(1).ok_or(PairingError::Malformed)?;
        Ok(Nonce::from(n))
    }

    fn cipher(&self) -> Result<ChaCha20Poly1305, PairingError> {
        <ChaCha20Poly1305 as KeyInit>::new_from_slice(self.key.as_ref())
            .map_err(|_| PairingError::Malformed)
    }

    fn seal(
        &mut self,
        kind: Kind,
        transcript: &[u8; 32],
        plaintext: &[u8],
    ) -> Result<Message, PairingError> {
        let nonce = self.next_nonce()?;
        let aad = aad(kind, transcript);
        let ct = self
            .cipher()?
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| PairingError::Malformed)?;
        Ok(Message::new(kind, &ct))
    }

    fn open(
        &mut self,
        kind: Kind,
        transcript: &[u8; 32],
        body: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, PairingError> {
        let nonce = self.next_nonce()?;
        let aad = aad(kind, transcript);
        self.cipher()?
            .decrypt(
                &nonce,
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| PairingError::Malformed)
    }
}

fn aad(kind: Kind, transcript: &[u8; 32]) -> [u8; 34] {
    let mut a = [0u8; 34];
    a[0] = VERSION;
    a[1] = kind as u8;
    a[2..].copy_from_slice(transcript);
    a
}

/// Everything derived from the SPAKE2 key, from one side's point of view.
struct Session {
    transcript: [u8; 32],
    my_confirm: Secret32,
    their_confirm: Secret32,
    send: DirectionKey,
    recv: DirectionKey,
}

impl Session {
    fn derive(
        side: Side,
        mailbox: u32,
        spake_key: &[u8],
        creator_pake: &[u8],
        joiner_pake: &[u8],
    ) -> Result<Self, PairingError> {
        let transcript = transcript_hash(mailbox, creator_pake, joiner_pake);
        let hk = Hkdf::<Sha256>::new(Some(&transcript), spake_key);
        let confirm_creator = expand(&hk, INFO_CONFIRM_CREATOR)?;
        let confirm_joiner = expand(&hk, INFO_CONFIRM_JOINER)?;
        let creator_to_joiner = DirectionKey::new(expand(&hk, INFO_KEY_CREATOR_TO_JOINER)?);
        let joiner_to_creator = DirectionKey::new(expand(&hk, INFO_KEY_JOINER_TO_CREATOR)?);
        Ok(match side {
            Side::Creator => Self {
                transcript,
                my_confirm: confirm_creator,
                their_confirm: confirm_joiner,
                send: creator_to_joiner,
                recv: joiner_to_creator,
            },
            Side::Joiner => Self {
                transcript,
                my_confirm: confirm_joiner,
                their_confirm: confirm_creator,
                send: joiner_to_creator,
                recv: creator_to_joiner,
            },
        })
    }

    fn my_tag(&self) -> Result<[u8; 32], PairingError> {
        Ok(confirm_tag(&self.my_confirm, &self.transcript)?
            .finalize()
            .into_bytes()
            .into())
    }

    fn check_their_tag(&self, tag: &[u8]) -> Result<(), PairingError> {
        confirm_tag(&self.their_confirm, &self.transcript)?
            .verify_slice(tag)
            .map_err(|_| PairingError::WrongCode)
    }
}

// ---------------------------------------------------------------- signatures

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Creator = 1,
    Joiner = 2,
}

/// What both partners' `PairConfirm` signatures cover.
struct Binding<'a> {
    space: SpaceId,
    creator: &'a IdentityKey,
    joiner: &'a IdentityKey,
    creator_device: DeviceId,
    joiner_device: DeviceId,
    creator_role: Role,
    transcript: &'a [u8; 32],
}

impl Binding<'_> {
    fn body(&self, signer: Side) -> Vec<u8> {
        let mut w = Writer::with_capacity(2 + 16 + 4 * 32 + 1 + 32);
        w.u8(VERSION)
            .u8(signer as u8)
            .raw(&self.space.0)
            .raw(&self.creator.to_bytes())
            .raw(&self.joiner.to_bytes())
            .raw(&self.creator_device.0)
            .raw(&self.joiner_device.0)
            .u8(self.creator_role.to_u8())
            .raw(self.transcript);
        w.finish()
    }

    fn sign(&self, signer: Side, identity: &IdentitySecret) -> [u8; 64] {
        identity
            .sign(Label::PairConfirm, &self.body(signer))
            .to_bytes()
    }

    fn verify(&self, signer: Side, key: &IdentityKey, sig: &[u8; 64]) -> Result<(), PairingError> {
        key.verify(
            Label::PairConfirm,
            &self.body(signer),
            &Signature::from_bytes(sig),
        )
        .map_err(|_| PairingError::BadSignature)
    }
}

/// Checks a partner's claimed identity and certificate.
fn check_partner(
    me: &IdentityKey,
    claimed: &IdentityKey,
    cert: &DeviceCert,
) -> Result<(), PairingError> {
    if cert.identity() != claimed {
        return Err(PairingError::IdentityMismatch);
    }
    if claimed == me {
        return Err(PairingError::SamePerson);
    }
    Ok(())
}

fn read_identity(r: &mut Reader<'_>) -> Result<IdentityKey, PairingError> {
    let bytes: [u8; 32] = r.array().map_err(|_| PairingError::Malformed)?;
    IdentityKey::from_bytes(&bytes).map_err(|_| PairingError::Malformed)
}

fn read_cert(r: &mut Reader<'_>) -> Result<DeviceCert, PairingError> {
    DeviceCert::decode(r).map_err(|_| PairingError::Malformed)
}

// ---------------------------------------------------------------- the state machine

/// This device's own keys, kept for the run.
struct Me {
    identity: IdentitySecret,
    cert: DeviceCert,
    mailbox: u32,
}

impl Me {
    fn new(
        code: &PairingCode,
        identity: &IdentitySecret,
        cert: &DeviceCert,
    ) -> Result<Self, PairingError> {
        if *cert.identity() != identity.public() {
            return Err(PairingError::IdentityMismatch);
        }
        Ok(Self {
            identity: IdentitySecret::from_seed(&identity.to_seed()),
            cert: cert.clone(),
            mailbox: code.mailbox(),
        })
    }

    fn public(&self) -> IdentityKey {
        self.identity.public()
    }
}

/// What only the creator brings.
#[derive(Clone, Copy)]
struct Space {
    id: SpaceId,
    role: Role,
}

enum State {
    CreatorAwaitPake {
        spake: Spake2<Ed25519Group>,
        my_pake: Vec<u8>,
        space: Space,
    },
    CreatorAwaitConfirm {
        session: Session,
        space: Space,
    },
    CreatorAwaitKeys {
        session: Session,
        space: Space,
    },
    CreatorAwaitSignature {
        session: Session,
        space: Space,
        joiner: Box<(IdentityKey, DeviceCert)>,
    },
    JoinerAwaitPake {
        spake: Spake2<Ed25519Group>,
        my_pake: Vec<u8>,
    },
    JoinerAwaitConfirm {
        session: Session,
    },
    JoinerAwaitKeys {
        session: Session,
    },
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::CreatorAwaitPake { .. } => "creator, awaiting the joiner's SPAKE2 message",
            State::CreatorAwaitConfirm { .. } => "creator, awaiting the joiner's confirmation",
            State::CreatorAwaitKeys { .. } => "creator, awaiting the joiner's keys",
            State::CreatorAwaitSignature { .. } => "creator, awaiting the joiner's signature",
            State::JoinerAwaitPake { .. } => "joiner, awaiting the creator's SPAKE2 message",
            State::JoinerAwaitConfirm { .. } => "joiner, awaiting the creator's confirmation",
            State::JoinerAwaitKeys { .. } => "joiner, awaiting the creator's keys",
        }
    }
}

/// A pairing in progress, on one device. Consumed by every step, so a step
/// cannot be taken twice, and any error ends it.
#[must_use = "a pairing does nothing until it receives the partner's messages"]
pub struct Pairing(Box<Inner>);

struct Inner {
    me: Me,
    state: State,
}

impl Pairing {
    fn new(me: Me, state: State) -> Self {
        Self(Box::new(Inner { me, state }))
    }
}

/// What a step led to.
#[must_use = "the next state (or the result) must be kept"]
#[derive(Debug)]
// `Paired` is larger than the boxed `Pairing`, but a run ends in it once.
#[allow(clippy::large_enum_variant)]
pub enum Step {
    /// Waiting for the partner's next message.
    Continue(Pairing),
    /// Done: the partner's keys are authenticated.
    Paired(Paired),
}

/// The outcome of a successful pairing, on either side.
#[must_use = "the partner's keys must be stored (and the safety number shown)"]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Paired {
    /// The shared space.
    pub space: SpaceId,
    /// The partner's identity key, proven by a signature over this pairing.
    pub partner_identity: IdentityKey,
    /// The partner's device, certified by `partner_identity`.
    pub partner_cert: DeviceCert,
    /// The partner's role in the space.
    pub partner_role: Role,
    /// The number both partners should see (and may compare in person).
    pub safety_number: SafetyNumber,
}

impl Pairing {
    /// Starts pairing as the creator of `space`, who takes `role` in it (the
    /// partner who was hurt creates the space: [`Role::Leading`]). Returns the
    /// first message to post to the mailbox.
    ///
    /// Fails only if `cert` does not certify a device of `identity`.
    pub fn create(
        code: &PairingCode,
        identity: &IdentitySecret,
        cert: &DeviceCert,
        space: SpaceId,
        role: Role,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Pairing, Message), PairingError> {
        let me = Me::new(code, identity, cert)?;
        let password = Password::new(code.reveal().as_bytes());
        let (id_a, id_b) = spake_identities(me.mailbox);
        let (spake, my_pake) =
            Spake2::<Ed25519Group>::start_a_with_rng(&password, &id_a, &id_b, rng);
        let msg = Message::new(Kind::CreatorPake, &my_pake);
        let state = State::CreatorAwaitPake {
            spake,
            my_pake,
            space: Space { id: space, role },
        };
        Ok((Pairing::new(me, state), msg))
    }

    /// Starts pairing as the joiner, with the code the partner showed. Returns
    /// the first message to post to the mailbox.
    ///
    /// Fails only if `cert` does not certify a device of `identity`.
    pub fn join(
        code: &PairingCode,
        identity: &IdentitySecret,
        cert: &DeviceCert,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Pairing, Message), PairingError> {
        let me = Me::new(code, identity, cert)?;
        let password = Password::new(code.reveal().as_bytes());
        let (id_a, id_b) = spake_identities(me.mailbox);
        let (spake, my_pake) =
            Spake2::<Ed25519Group>::start_b_with_rng(&password, &id_a, &id_b, rng);
        let msg = Message::new(Kind::JoinerPake, &my_pake);
        let state = State::JoinerAwaitPake { spake, my_pake };
        Ok((Pairing::new(me, state), msg))
    }

    /// The mailbox this pairing runs through.
    pub fn mailbox(&self) -> u32 {
        self.0.me.mailbox
    }

    /// Takes the partner's next message. Returns the next step and, maybe, a
    /// message to post to the mailbox. Any error ends the pairing.
    pub fn receive(self, msg: &[u8]) -> Result<(Step, Option<Message>), PairingError> {
        let Inner { me, state } = *self.0;
        match state {
            State::CreatorAwaitPake {
                spake,
                my_pake,
                space,
            } => {
                let body = open_envelope(msg, Kind::JoinerPake)?;
                let key = Zeroizing::new(spake.finish(body).map_err(|_| PairingError::Malformed)?);
                let session = Session::derive(Side::Creator, me.mailbox, &key, &my_pake, body)?;
                let out = Message::new(Kind::CreatorConfirm, &session.my_tag()?);
                let state = State::CreatorAwaitConfirm { session, space };
                Ok((Step::Continue(Pairing::new(me, state)), Some(out)))
            }
            State::CreatorAwaitConfirm { session, space } => {
                let body = open_envelope(msg, Kind::JoinerConfirm)?;
                session.check_their_tag(body)?;
                let state = State::CreatorAwaitKeys { session, space };
                Ok((Step::Continue(Pairing::new(me, state)), None))
            }
            State::CreatorAwaitKeys { mut session, space } => {
                let body = open_envelope(msg, Kind::JoinerKeys)?;
                let plain = session
                    .recv
                    .open(Kind::JoinerKeys, &session.transcript, body)?;
                let mut r = Reader::new(&plain);
                let joiner = read_identity(&mut r)?;
                let joiner_cert = read_cert(&mut r)?;
                r.finish().map_err(|_| PairingError::Malformed)?;
                let creator = me.public();
                check_partner(&creator, &joiner, &joiner_cert)?;

                let binding = Binding {
                    space: space.id,
                    creator: &creator,
                    joiner: &joiner,
                    creator_device: me.cert.device().id(),
                    joiner_device: joiner_cert.device().id(),
                    creator_role: space.role,
                    transcript: &session.transcript,
                };
                let sig = binding.sign(Side::Creator, &me.identity);
                let mut w = Writer::with_capacity(CREATOR_KEYS_LEN);
                w.raw(&creator.to_bytes());
                me.cert.encode(&mut w);
                w.raw(&space.id.0).u8(space.role.to_u8()).raw(&sig);
                let plain = Zeroizing::new(w.finish());
                let out = session
                    .send
                    .seal(Kind::CreatorKeys, &session.transcript, &plain)?;
                let state = State::CreatorAwaitSignature {
                    session,
                    space,
                    joiner: Box::new((joiner, joiner_cert)),
                };
                Ok((Step::Continue(Pairing::new(me, state)), Some(out)))
            }
            State::CreatorAwaitSignature {
                mut session,
                space,
                joiner,
            } => {
                let (joiner, joiner_cert) = *joiner;
                let body = open_envelope(msg, Kind::JoinerSignature)?;
                let plain = session
                    .recv
                    .open(Kind::JoinerSignature, &session.transcript, body)?;
                let mut r = Reader::new(&plain);
                let sig: [u8; 64] = r.array().map_err(|_| PairingError::Malformed)?;
                r.finish().map_err(|_| PairingError::Malformed)?;
                let creator = me.public();
                let binding = Binding {
                    space: space.id,
                    creator: &creator,
                    joiner: &joiner,
                    creator_device: me.cert.device().id(),
                    joiner_device: joiner_cert.device().id(),
                    creator_role: space.role,
                    transcript: &session.transcript,
                };
                binding.verify(Side::Joiner, &joiner, &sig)?;
                let paired = Paired {
                    space: space.id,
                    safety_number: SafetyNumber::new(&creator, &joiner),
                    partner_identity: joiner,
                    partner_cert: joiner_cert,
                    partner_role: space.role.other(),
                };
                Ok((Step::Paired(paired), None))
            }
            State::JoinerAwaitPake { spake, my_pake } => {
                let body = open_envelope(msg, Kind::CreatorPake)?;
                let key = Zeroizing::new(spake.finish(body).map_err(|_| PairingError::Malformed)?);
                let session = Session::derive(Side::Joiner, me.mailbox, &key, body, &my_pake)?;
                let out = Message::new(Kind::JoinerConfirm, &session.my_tag()?);
                let state = State::JoinerAwaitConfirm { session };
                Ok((Step::Continue(Pairing::new(me, state)), Some(out)))
            }
            State::JoinerAwaitConfirm { mut session } => {
                let body = open_envelope(msg, Kind::CreatorConfirm)?;
                session.check_their_tag(body)?;
                let mut w = Writer::with_capacity(JOINER_KEYS_LEN);
                w.raw(&me.public().to_bytes());
                me.cert.encode(&mut w);
                let plain = w.finish();
                let out = session
                    .send
                    .seal(Kind::JoinerKeys, &session.transcript, &plain)?;
                let state = State::JoinerAwaitKeys { session };
                Ok((Step::Continue(Pairing::new(me, state)), Some(out)))
            }
            State::JoinerAwaitKeys { mut session } => {
                let body = open_envelope(msg, Kind::CreatorKeys)?;
                let plain = session
                    .recv
                    .open(Kind::CreatorKeys, &session.transcript, body)?;
                let mut r = Reader::new(&plain);
                let creator = read_identity(&mut r)?;
                let creator_cert = read_cert(&mut r)?;
                let space = SpaceId(r.array().map_err(|_| PairingError::Malformed)?);
                let role = Role::from_u8(r.u8().map_err(|_| PairingError::Malformed)?)
                    .map_err(|_| PairingError::Malformed)?;
                let sig: [u8; 64] = r.array().map_err(|_| PairingError::Malformed)?;
                r.finish().map_err(|_| PairingError::Malformed)?;
                let joiner = me.public();
                check_partner(&joiner, &creator, &creator_cert)?;
                let binding = Binding {
                    space,
                    creator: &creator,
                    joiner: &joiner,
                    creator_device: creator_cert.device().id(),
                    joiner_device: me.cert.device().id(),
                    creator_role: role,
                    transcript: &session.transcript,
                };
                binding.verify(Side::Creator, &creator, &sig)?;
                let my_sig = binding.sign(Side::Joiner, &me.identity);
                let out = session
                    .send
                    .seal(Kind::JoinerSignature, &session.transcript, &my_sig)?;
                let paired = Paired {
                    space,
                    safety_number: SafetyNumber::new(&creator, &joiner),
                    partner_identity: creator,
                    partner_cert: creator_cert,
                    partner_role: role,
                };
                Ok((Step::Paired(paired), Some(out)))
            }
        }
    }
}

impl fmt::Debug for Pairing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pairing")
            .field("mailbox", &self.0.me.mailbox)
            .field("identity", &self.0.me.public())
            .field("state", &self.0.state.name())
            .finish_non_exhaustive()
    }
}
