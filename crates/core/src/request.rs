//! Request authentication: a device signs each HTTP request it sends to the relay.
//!
//! Signed body (after the label `troth.app/v1/request` and 0x00):
//!
//! ```text
//! u8   version (1)
//! [16] space id (all zero for requests that name no space)
//! str  method (upper case), u32-length-prefixed
//! str  path and query, u32-length-prefixed
//! [32] SHA-256 of the request body
//! u64  time, ms since the Unix epoch
//! [16] nonce
//! ```
//!
//! Sent as four headers: `troth-device`, `troth-time`, `troth-nonce`,
//! `troth-signature` (binary values base64url without padding). The relay
//! refuses a time outside its window and a nonce it has seen.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::encoding::{DecodeError, Writer};
use crate::ids::SpaceId;
use crate::keys::{DeviceId, DeviceSecret};
use crate::sign::{self, Label, SignatureError};

/// Header carrying the device id.
pub const HEADER_DEVICE: &str = "troth-device";
/// Header carrying the time in ms.
pub const HEADER_TIME: &str = "troth-time";
/// Header carrying the nonce.
pub const HEADER_NONCE: &str = "troth-nonce";
/// Header carrying the signature.
pub const HEADER_SIGNATURE: &str = "troth-signature";

/// The authentication fields of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestAuth {
    /// The signing device.
    pub device: DeviceId,
    /// The device's clock, ms since the Unix epoch.
    pub time_ms: u64,
    /// A fresh random nonce.
    pub nonce: [u8; 16],
    /// The signature.
    pub signature: Signature,
}

fn signed_body(
    space: Option<SpaceId>,
    method: &str,
    path: &str,
    body: &[u8],
    time_ms: u64,
    nonce: &[u8; 16],
) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(1)
        .raw(&space.map(|s| s.0).unwrap_or([0; 16]))
        .str(&method.to_ascii_uppercase())
        .str(path)
        .raw(&Sha256::digest(body))
        .u64(time_ms)
        .raw(nonce);
    w.finish()
}

impl RequestAuth {
    /// Signs a request.
    pub fn sign(
        device: &DeviceSecret,
        space: Option<SpaceId>,
        method: &str,
        path: &str,
        body: &[u8],
        time_ms: u64,
        nonce: [u8; 16],
    ) -> Self {
        let msg = signed_body(space, method, path, body, time_ms, &nonce);
        RequestAuth {
            device: device.public().id(),
            time_ms,
            nonce,
            signature: device.sign(Label::Request, &msg),
        }
    }

    /// The full message the signature covers (`troth.app/v1/request || 0x00 ||
    /// body`), for a verifier that batches it with other signatures.
    pub fn signed_message(
        &self,
        space: Option<SpaceId>,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Vec<u8> {
        sign::message(
            Label::Request,
            &signed_body(space, method, path, body, self.time_ms, &self.nonce),
        )
    }

    /// Verifies the signature against the device's key ([`crate::sign::verify`]).
    /// Time window and nonce reuse are the relay's to check.
    pub fn verify(
        &self,
        key: &VerifyingKey,
        space: Option<SpaceId>,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        if key.to_bytes() != self.device.0 {
            return Err(SignatureError);
        }
        let msg = signed_body(space, method, path, body, self.time_ms, &self.nonce);
        sign::verify(key, Label::Request, &msg, &self.signature)
    }

    /// The four header values, in the order device, time, nonce, signature.
    pub fn to_headers(&self) -> [(&'static str, String); 4] {
        [
            (HEADER_DEVICE, self.device.to_b64()),
            (HEADER_TIME, self.time_ms.to_string()),
            (HEADER_NONCE, URL_SAFE_NO_PAD.encode(self.nonce)),
            (
                HEADER_SIGNATURE,
                URL_SAFE_NO_PAD.encode(self.signature.to_bytes()),
            ),
        ]
    }

    /// Parses the four header values.
    pub fn from_headers(
        device: &str,
        time: &str,
        nonce: &str,
        signature: &str,
    ) -> Result<Self, DecodeError> {
        let device = DeviceId::from_b64(device)?;
        let time_ms = time
            .parse::<u64>()
            .map_err(|_| DecodeError::Invalid("request time"))?;
        let nonce: [u8; 16] = URL_SAFE_NO_PAD
            .decode(nonce)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(DecodeError::Invalid("request nonce"))?;
        let sig: [u8; 64] = URL_SAFE_NO_PAD
            .decode(signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(DecodeError::Invalid("request signature"))?;
        Ok(Self {
            device,
            time_ms,
            nonce,
            signature: Signature::from_bytes(&sig),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sign_verify_and_every_field_is_bound() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let dev = DeviceSecret::generate(&mut rng);
        let other = DeviceSecret::generate(&mut rng);
        let space = Some(SpaceId([1; 16]));
        let a = RequestAuth::sign(
            &dev,
            space,
            "POST",
            "/v1/spaces/x/events",
            b"{}",
            1000,
            [9; 16],
        );
        let h = a.to_headers();
        let b = RequestAuth::from_headers(&h[0].1, &h[1].1, &h[2].1, &h[3].1).expect("parse");
        assert_eq!(a, b);
        let key = *dev.public().verifying_key();
        assert!(
            b.verify(&key, space, "post", "/v1/spaces/x/events", b"{}")
                .is_ok()
        );
        assert!(
            b.verify(
                &key,
                Some(SpaceId([2; 16])),
                "POST",
                "/v1/spaces/x/events",
                b"{}"
            )
            .is_err()
        );
        assert!(
            b.verify(&key, space, "GET", "/v1/spaces/x/events", b"{}")
                .is_err()
        );
        assert!(
            b.verify(&key, space, "POST", "/v1/spaces/y/events", b"{}")
                .is_err()
        );
        assert!(
            b.verify(&key, space, "POST", "/v1/spaces/x/events", b"{ }")
                .is_err()
        );
        let mut c = b.clone();
        c.time_ms += 1;
        assert!(
            c.verify(&key, space, "POST", "/v1/spaces/x/events", b"{}")
                .is_err()
        );
        let mut c = b.clone();
        c.nonce[0] ^= 1;
        assert!(
            c.verify(&key, space, "POST", "/v1/spaces/x/events", b"{}")
                .is_err()
        );
        assert!(
            b.verify(
                other.public().verifying_key(),
                space,
                "POST",
                "/v1/spaces/x/events",
                b"{}"
            )
            .is_err()
        );
    }
}
