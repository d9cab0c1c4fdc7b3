//! Request sessions: one signed request opens a session with the relay, and
//! the requests after it carry an HMAC under the session's key instead of an
//! Ed25519 signature each.
//!
//! Why: verifying one Ed25519 signature costs more CPU than the rest of a
//! read on the relay, and a phone pays for signing every request too. A
//! session keeps the same promises (only an active member device can make the
//! request; method, path, body, time and a fresh counter are bound; a request
//! cannot be replayed or moved to another space) at the cost of a MAC.
//!
//! # Opening
//!
//! The device sends `POST /v1/spaces/{space}/sessions` with a fresh X25519
//! public key `E_d` in the body, authenticated by a signed request
//! ([`crate::request`]), so the key is bound to the device and the space. The
//! relay answers with a 16-byte session id and its own fresh X25519 key `E_r`.
//! Both compute `shared = X25519(e, E)` (refused if it was not contributory,
//! i.e. a low-order point) and
//!
//! ```text
//! key = HKDF-SHA256(salt = "troth.app/v1/session-key",
//!                   ikm  = shared,
//!                   info = version || space || device id || session id || E_d || E_r)
//! ```
//!
//! A passive observer of the two messages cannot compute the key; the relay
//! holds it, which is fine: it authenticates the device *to the relay*.
//!
//! # Each request
//!
//! ```text
//! tag = HMAC-SHA256(key, "troth.app/v1/request-mac" || 0x00 || version (1)
//!                        || session id [16] || space id [16]
//!                        || method (u32-length-prefixed, upper case)
//!                        || path and query (u32-length-prefixed)
//!                        || SHA-256(body) [32] || time ms (u64) || counter (u64))
//! ```
//!
//! Sent as the headers `troth-session`, `troth-time`, `troth-counter`,
//! `troth-mac` (binary values base64url without padding). The counter starts
//! at 1 and rises with each request; the relay keeps a window of the last
//! [`ReplayWindow::SIZE`] counters, so requests may overtake each other but
//! none is accepted twice.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use hkdf::hmac::{Hmac, Mac};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use thiserror::Error;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::encoding::{DecodeError, Writer};
use crate::ids::SpaceId;
use crate::keys::DeviceId;

/// Header carrying the session id.
pub const HEADER_SESSION: &str = "troth-session";
/// Header carrying the time in ms (the same header as signed requests use).
pub const HEADER_TIME: &str = crate::request::HEADER_TIME;
/// Header carrying the request counter.
pub const HEADER_COUNTER: &str = "troth-counter";
/// Header carrying the MAC.
pub const HEADER_MAC: &str = "troth-mac";

/// Domain label of the session key derivation (the HKDF salt).
pub const KEY_LABEL: &str = "troth.app/v1/session-key";
/// Domain label of a request MAC.
pub const MAC_LABEL: &str = "troth.app/v1/request-mac";
/// Format version covered by the key derivation and every MAC.
pub const VERSION: u8 = 1;

type HmacSha256 = Hmac<Sha256>;

/// Why a session could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The other side's X25519 key is a low-order point: no shared secret.
    #[error("the other side's session key is not acceptable (low-order point)")]
    NotContributory,
}

/// A session id: 16 random bytes the relay picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    /// A fresh random id.
    pub fn random(rng: &mut impl CryptoRngCore) -> Self {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        SessionId(id)
    }

    /// base64url without padding, as in the header.
    pub fn to_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parses [`SessionId::to_b64`].
    pub fn from_b64(s: &str) -> Result<Self, DecodeError> {
        URL_SAFE_NO_PAD
            .decode(s)
            .ok()
            .and_then(|v| v.try_into().ok())
            .map(SessionId)
            .ok_or(DecodeError::Invalid("session id"))
    }
}

/// The device's half of opening a session: an ephemeral X25519 key.
pub struct SessionOpening {
    secret: StaticSecret,
    public: [u8; 32],
}

impl std::fmt::Debug for SessionOpening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionOpening")
            .field("public", &URL_SAFE_NO_PAD.encode(self.public))
            .finish_non_exhaustive()
    }
}

impl SessionOpening {
    /// A fresh ephemeral key.
    pub fn new(rng: &mut impl CryptoRngCore) -> Self {
        let secret = StaticSecret::random_from_rng(&mut *rng);
        let public = PublicKey::from(&secret).to_bytes();
        SessionOpening { secret, public }
    }

    /// The public key to send (`E_d`).
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// Completes the session with the relay's answer.
    pub fn finish(
        self,
        space: SpaceId,
        device: DeviceId,
        id: SessionId,
        relay_public: [u8; 32],
    ) -> Result<SessionKey, SessionError> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(relay_public));
        if !shared.was_contributory() {
            return Err(SessionError::NotContributory);
        }
        Ok(SessionKey::derive(
            shared.as_bytes(),
            space,
            device,
            id,
            &self.public,
            &relay_public,
        ))
    }
}

/// The shared key of one session, on either side. Zeroized on drop; never
/// printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SessionKey {
    key: [u8; 32],
    #[zeroize(skip)]
    id: SessionId,
    #[zeroize(skip)]
    space: SpaceId,
    #[zeroize(skip)]
    device: DeviceId,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKey")
            .field("id", &self.id)
            .field("space", &self.space)
            .finish_non_exhaustive()
    }
}

impl SessionKey {
    /// The relay's side: answers a device's `E_d` with a fresh id and `E_r`.
    pub fn accept(
        rng: &mut impl CryptoRngCore,
        space: SpaceId,
        device: DeviceId,
        device_public: [u8; 32],
    ) -> Result<(SessionKey, [u8; 32]), SessionError> {
        let id = SessionId::random(rng);
        let secret = StaticSecret::random_from_rng(&mut *rng);
        let public = PublicKey::from(&secret).to_bytes();
        let shared = secret.diffie_hellman(&PublicKey::from(device_public));
        if !shared.was_contributory() {
            return Err(SessionError::NotContributory);
        }
        let key = Self::derive(
            shared.as_bytes(),
            space,
            device,
            id,
            &device_public,
            &public,
        );
        Ok((key, public))
    }

    fn derive(
        shared: &[u8; 32],
        space: SpaceId,
        device: DeviceId,
        id: SessionId,
        device_public: &[u8; 32],
        relay_public: &[u8; 32],
    ) -> SessionKey {
        let hk = Hkdf::<Sha256>::new(Some(KEY_LABEL.as_bytes()), shared);
        let mut info = Vec::with_capacity(1 + 16 + 32 + 16 + 64);
        info.push(VERSION);
        info.extend_from_slice(&space.0);
        info.extend_from_slice(&device.0);
        info.extend_from_slice(&id.0);
        info.extend_from_slice(device_public);
        info.extend_from_slice(relay_public);
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit of 8160.
        let _ = hk.expand(&info, &mut key);
        SessionKey {
            key,
            id,
            space,
            device,
        }
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The space the session is for.
    pub fn space(&self) -> SpaceId {
        self.space
    }

    /// The device that opened it.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    fn hmac(&self) -> HmacSha256 {
        let mut m = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        m.update(MAC_LABEL.as_bytes());
        m.update(&[0]);
        m
    }

    fn mac_input(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        time_ms: u64,
        counter: u64,
    ) -> HmacSha256 {
        let mut w = Writer::new();
        w.u8(VERSION)
            .raw(&self.id.0)
            .raw(&self.space.0)
            .str(&method.to_ascii_uppercase())
            .str(path)
            .raw(&Sha256::digest(body))
            .u64(time_ms)
            .u64(counter);
        let mut m = self.hmac();
        m.update(&w.finish());
        m
    }

    /// Authenticates one request.
    pub fn authenticate(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        time_ms: u64,
        counter: u64,
    ) -> SessionAuth {
        let tag = self
            .mac_input(method, path, body, time_ms, counter)
            .finalize()
            .into_bytes()
            .into();
        SessionAuth {
            session: self.id,
            time_ms,
            counter,
            mac: tag,
        }
    }

    /// Checks a request's MAC in constant time. Time window and counter
    /// reuse are the relay's to check.
    pub fn verify(&self, auth: &SessionAuth, method: &str, path: &str, body: &[u8]) -> bool {
        auth.session == self.id
            && self
                .mac_input(method, path, body, auth.time_ms, auth.counter)
                .verify_slice(&auth.mac)
                .is_ok()
    }
}

/// The authentication fields of one session request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionAuth {
    /// The session.
    pub session: SessionId,
    /// The device's clock, ms since the Unix epoch.
    pub time_ms: u64,
    /// This request's counter (from 1, rising).
    pub counter: u64,
    /// The MAC.
    pub mac: [u8; 32],
}

impl SessionAuth {
    /// The four header values, in the order session, time, counter, MAC.
    pub fn to_headers(&self) -> [(&'static str, String); 4] {
        [
            (HEADER_SESSION, self.session.to_b64()),
            (HEADER_TIME, self.time_ms.to_string()),
            (HEADER_COUNTER, self.counter.to_string()),
            (HEADER_MAC, URL_SAFE_NO_PAD.encode(self.mac)),
        ]
    }

    /// Parses the four header values.
    pub fn from_headers(
        session: &str,
        time: &str,
        counter: &str,
        mac: &str,
    ) -> Result<Self, DecodeError> {
        let number = |s: &str, what| {
            if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(DecodeError::Invalid(what));
            }
            s.parse::<u64>().map_err(|_| DecodeError::Invalid(what))
        };
        Ok(SessionAuth {
            session: SessionId::from_b64(session)?,
            time_ms: number(time, "request time")?,
            counter: number(counter, "request counter")?,
            mac: URL_SAFE_NO_PAD
                .decode(mac)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or(DecodeError::Invalid("request MAC"))?,
        })
    }
}

/// The counters a session has seen: the highest, and which of the
/// [`ReplayWindow::SIZE`] below it. A counter is accepted once; one older
/// than the window is refused.
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    top: u64,
    /// Bit `i` of word `w` marks counter `top - (64 * w + i)` as seen.
    bits: [u64; Self::WORDS],
}

impl ReplayWindow {
    const WORDS: usize = 16;
    /// How far behind the highest counter a request may arrive.
    pub const SIZE: u64 = 64 * Self::WORDS as u64;

    /// Marks `counter` as seen; `false` if it was seen already, is 0, or is
    /// older than the window.
    pub fn accept(&mut self, counter: u64) -> bool {
        if counter == 0 {
            return false;
        }
        if counter > self.top {
            self.shift(counter - self.top);
            self.top = counter;
            self.bits[0] |= 1;
            return true;
        }
        let back = self.top - counter;
        if back >= Self::SIZE {
            return false;
        }
        let (w, i) = ((back / 64) as usize, back % 64);
        let seen = self.bits[w] >> i & 1 == 1;
        self.bits[w] |= 1 << i;
        !seen
    }

    /// Moves the window up by `n` counters.
    fn shift(&mut self, n: u64) {
        if n >= Self::SIZE {
            self.bits = [0; Self::WORDS];
            return;
        }
        let (words, rest) = ((n / 64) as usize, (n % 64) as u32);
        for w in (0..Self::WORDS).rev() {
            let lo = w.checked_sub(words).map_or(0, |s| self.bits[s]);
            let carry = w
                .checked_sub(words + 1)
                .filter(|_| rest > 0)
                .map_or(0, |s| self.bits[s] >> (64 - rest));
            self.bits[w] = if rest == 0 { lo } else { lo << rest | carry };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn pair() -> (SessionKey, SessionKey) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let space = SpaceId([3; 16]);
        let device = DeviceId([4; 32]);
        let opening = SessionOpening::new(&mut rng);
        let (relay, relay_public) =
            SessionKey::accept(&mut rng, space, device, opening.public()).expect("accept");
        let dev = opening
            .finish(space, device, relay.id(), relay_public)
            .expect("finish");
        (dev, relay)
    }

    #[test]
    fn both_sides_derive_the_same_key_and_every_field_is_bound() {
        let (dev, relay) = pair();
        assert_eq!(dev.key, relay.key);
        let a = dev.authenticate("get", "/v1/spaces/x/events?from=1", b"", 1000, 7);
        let h = a.to_headers();
        let b = SessionAuth::from_headers(&h[0].1, &h[1].1, &h[2].1, &h[3].1).expect("parse");
        assert_eq!(a, b);
        assert!(relay.verify(&b, "GET", "/v1/spaces/x/events?from=1", b""));
        assert!(!relay.verify(&b, "POST", "/v1/spaces/x/events?from=1", b""));
        assert!(!relay.verify(&b, "GET", "/v1/spaces/x/events?from=2", b""));
        assert!(!relay.verify(&b, "GET", "/v1/spaces/x/events?from=1", b"x"));
        for change in 0..4 {
            let mut c = b.clone();
            match change {
                0 => c.time_ms += 1,
                1 => c.counter += 1,
                2 => c.mac[31] ^= 1,
                _ => c.session.0[0] ^= 1,
            }
            assert!(!relay.verify(&c, "GET", "/v1/spaces/x/events?from=1", b""));
        }
        // Another session (another space or device) does not accept it.
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let o = SessionOpening::new(&mut rng);
        let (other, _) =
            SessionKey::accept(&mut rng, SpaceId([9; 16]), dev.device(), o.public()).expect("ok");
        assert!(!other.verify(&b, "GET", "/v1/spaces/x/events?from=1", b""));
    }

    #[test]
    fn low_order_points_are_refused_on_both_sides() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let low = [0u8; 32];
        let r = SessionKey::accept(&mut rng, SpaceId([1; 16]), DeviceId([2; 32]), low);
        assert_eq!(r.err(), Some(SessionError::NotContributory));
        let o = SessionOpening::new(&mut rng);
        let r = o.finish(SpaceId([1; 16]), DeviceId([2; 32]), SessionId([0; 16]), low);
        assert_eq!(r.err(), Some(SessionError::NotContributory));
    }

    #[test]
    fn secrets_do_not_print() {
        let (dev, _) = pair();
        let s = format!("{dev:?}");
        assert!(!s.contains(&format!("{:?}", dev.key)), "{s}");
    }

    #[test]
    fn headers_refuse_junk() {
        let ok = SessionAuth {
            session: SessionId([1; 16]),
            time_ms: 5,
            counter: 6,
            mac: [7; 32],
        }
        .to_headers();
        for (i, bad) in ["", "+5", "-1", "1e3", "99999999999999999999999", "AAAA"]
            .iter()
            .enumerate()
        {
            let mut h: Vec<String> = ok.iter().map(|(_, v)| v.clone()).collect();
            h[i % 4] = (*bad).to_string();
            assert!(SessionAuth::from_headers(&h[0], &h[1], &h[2], &h[3]).is_err());
        }
    }

    /// The window against a plain set of seen counters.
    #[test]
    fn replay_window_matches_a_model() {
        use rand::Rng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..50 {
            let mut w = ReplayWindow::default();
            let mut seen = std::collections::BTreeSet::new();
            let mut top = 0u64;
            for _ in 0..2000 {
                let c = match rng.gen_range(0..4) {
                    0 => top + rng.gen_range(1..3),
                    1 => top + rng.gen_range(1..3000),
                    2 => top.saturating_sub(rng.gen_range(0..1100)),
                    _ => *seen.iter().next_back().unwrap_or(&1),
                };
                let expect =
                    c != 0 && !seen.contains(&c) && (c > top || top - c < ReplayWindow::SIZE);
                assert_eq!(w.accept(c), expect, "counter {c}, top {top}");
                if expect {
                    seen.insert(c);
                    top = top.max(c);
                }
            }
        }
    }
}
