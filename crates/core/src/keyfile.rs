//! Key files at rest: a person's identity and device keys in one
//! passphrase-protected age file (scrypt), the same in the CLI and the browser,
//! so a key moves between them, and the standard `age` tool decrypts it with
//! the same passphrase.
//!
//! The plaintext is UTF-8 text, one `name: value` per line:
//!
//! ```text
//! troth-key-bundle: 1
//! identity-seed: <base64 of the 32-byte Ed25519 seed>
//! device-signing-seed: <base64 of the 32-byte Ed25519 seed>
//! device-x25519: AGE-SECRET-KEY-1…
//! device-cert: <base64 of the device certificate>
//! ```

use std::io::{Read, Write};

use age::secrecy::SecretString;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::keys::{DeviceCert, DeviceSecret, IdentitySecret};

/// The scrypt work factor (log2 N) new files are written with: about a second
/// on a laptop, acceptable on a phone.
pub const DEFAULT_WORK_FACTOR: u8 = 18;
/// The largest work factor a reader accepts, so a hostile file cannot stall a client.
pub const MAX_WORK_FACTOR: u8 = 20;
/// Largest key file accepted.
pub const MAX_FILE: usize = 16 * 1024;
/// Room for a key bundle's text (about 500 bytes), reserved once.
const TEXT_CAPACITY: usize = 1024;

/// The fewest characters a new passphrase may have.
pub const MIN_PASSPHRASE_CHARS: usize = 10;
/// The fewest different characters a new passphrase may have.
const MIN_DISTINCT_CHARS: usize = 5;

/// Passphrases (lower case, spaces removed) that guessing tools try first.
const COMMON: &[&str] = &[
    "password",
    "passphrase",
    "password1",
    "password12",
    "password123",
    "passw0rd",
    "1234567890",
    "0123456789",
    "12345678910",
    "123456789a",
    "qwertyuiop",
    "asdfghjkl",
    "1q2w3e4r5t",
    "iloveyou",
    "iloveyou1",
    "letmein123",
    "trustno1",
    "welcome123",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "abc123456",
    "qwerty123",
    "correcthorsebatterystaple",
    "troth",
    "trothtroth",
    "mypassword",
    "secretpassword",
    "changeme",
    "administrator",
    "abcdefghij",
    "loveyouforever",
];

/// A new passphrase that is too easy to guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PassphraseError {
    /// Fewer than [`MIN_PASSPHRASE_CHARS`] characters.
    #[error(
        "Please choose a passphrase of at least {MIN_PASSPHRASE_CHARS} characters. A few words you'll remember work well."
    )]
    TooShort,
    /// Too few different characters, or one that guessing tools try first.
    #[error(
        "That passphrase is one of the first a guessing tool would try. A few unrelated words you'll remember work well."
    )]
    TooCommon,
}

/// Checks a *new* passphrase (not one that opens an existing file): at least
/// [`MIN_PASSPHRASE_CHARS`] characters, at least five different ones, and
/// not one of the most common passwords.
pub fn check_passphrase(p: &str) -> Result<(), PassphraseError> {
    if p.chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(PassphraseError::TooShort);
    }
    let distinct: std::collections::BTreeSet<char> = p.chars().collect();
    let folded = Zeroizing::new(
        p.chars()
            .filter(|c| !c.is_whitespace())
            // The list is ASCII: folding ASCII only (a non-ASCII letter
            // matches none either way) keeps Unicode case tables out of the
            // browser's wasm.
            .map(|c| c.to_ascii_lowercase())
            .collect::<String>(),
    );
    if distinct.len() < MIN_DISTINCT_CHARS || COMMON.contains(&folded.as_str()) {
        return Err(PassphraseError::TooCommon);
    }
    Ok(())
}

/// The scrypt work factor (log2 N) a passphrase-protected age file asks
/// for, read from its header without trying the passphrase; `None` when it
/// is not such a file. Lets a client refuse a file too heavy for the
/// device before it starts.
pub fn work_factor(file: &[u8]) -> Option<u8> {
    let mut head = Vec::with_capacity(512);
    age::armor::ArmoredReader::new(file.get(..file.len().min(MAX_FILE))?)
        .take(512)
        .read_to_end(&mut head)
        .ok()?;
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.lines();
    if lines.next()? != "age-encryption.org/v1" {
        return None;
    }
    let stanza = lines.find(|l| l.starts_with("-> scrypt "))?;
    stanza.split(' ').nth(3)?.parse().ok()
}

/// The memory scrypt needs for work factor `log_n` with age's parameters
/// (r = 8): 128 · r · 2^log_n bytes (256 MiB at 18).
pub fn scrypt_memory_bytes(log_n: u8) -> u64 {
    128u64 * 8 * (1u64 << log_n.min(40))
}

/// Why a key file could not be read or written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The passphrase does not open the file.
    #[error("That passphrase doesn't open this key. Check it and try again.")]
    WrongPassphrase,
    /// The file asks for more scrypt work than allowed.
    #[error(
        "this key file asks for too much work to open (scrypt work factor above {MAX_WORK_FACTOR})"
    )]
    TooMuchWork,
    /// Not an age file, or not a Troth key bundle inside.
    #[error("This is not a Troth key file.")]
    NotAKeyFile,
    /// Encryption failed.
    #[error("The key file could not be written.")]
    Write,
}

/// A person's identity and this device's keys, with the device certificate.
pub struct KeyBundle {
    /// The identity.
    pub identity: IdentitySecret,
    /// This device.
    pub device: DeviceSecret,
    /// The identity's certificate for this device.
    pub cert: DeviceCert,
}

impl std::fmt::Debug for KeyBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyBundle")
            .field("identity", &self.identity.public())
            .field("device", &self.cert.device().id())
            .finish_non_exhaustive()
    }
}

impl KeyBundle {
    /// A new identity with one certified device.
    pub fn generate(rng: &mut impl rand_core::CryptoRngCore, now_ms: u64) -> Self {
        let identity = IdentitySecret::generate(rng);
        let device = DeviceSecret::generate(rng);
        let cert = identity.certify(&device, now_ms);
        Self {
            identity,
            device,
            cert,
        }
    }

    /// A second copy of the same keys, for a caller that must hand one to a
    /// [`crate::replica::Replica`] and keep one (deliberately not `Clone`: every
    /// copy of a secret should be a visible decision). Both copies zeroize on drop.
    pub fn duplicate(&self) -> Self {
        Self {
            identity: IdentitySecret::from_seed(&self.identity.to_seed()),
            device: self.device.duplicate(),
            cert: self.cert.clone(),
        }
    }

    /// The same identity with a fresh device (key rotation).
    pub fn rotate_device(&self, rng: &mut impl rand_core::CryptoRngCore, now_ms: u64) -> Self {
        let device = DeviceSecret::generate(rng);
        let cert = self.identity.certify(&device, now_ms);
        Self {
            identity: IdentitySecret::from_seed(&self.identity.to_seed()),
            device,
            cert,
        }
    }

    fn to_text(&self) -> Zeroizing<String> {
        // Reserved once and never grown: growing a `Zeroizing<String>` moves
        // its bytes and leaves the old buffer behind unzeroized. Every
        // temporary that holds an encoded seed is itself `Zeroizing`.
        let mut s = Zeroizing::new(String::with_capacity(TEXT_CAPACITY));
        let identity = Zeroizing::new(STANDARD.encode(*self.identity.to_seed()));
        let signing = Zeroizing::new(STANDARD.encode(*self.device.signing_seed()));
        let x25519 = self.device.age_secret_string();
        let cert = STANDARD.encode(self.cert.to_bytes());
        for part in [
            "troth-key-bundle: 1\nidentity-seed: ",
            identity.as_str(),
            "\ndevice-signing-seed: ",
            signing.as_str(),
            "\ndevice-x25519: ",
            x25519.as_str(),
            "\ndevice-cert: ",
            cert.as_str(),
            "\n",
        ] {
            if s.len() + part.len() > s.capacity() {
                // Cannot happen with the sizes above; refuse rather than grow.
                return Zeroizing::new(String::new());
            }
            s.push_str(part);
        }
        s
    }

    fn from_text(text: &str) -> Result<Self, KeyFileError> {
        Self::from_text_as(text, "troth-key-bundle").map(|(k, _)| k)
    }

    /// Parses the bundle's fields from text whose first field is `marker: 1`;
    /// returns the other fields too (a recovery kit's).
    fn from_text_as<'t>(
        text: &'t str,
        marker: &str,
    ) -> Result<(Self, std::collections::BTreeMap<&'t str, &'t str>), KeyFileError> {
        let bad = || KeyFileError::NotAKeyFile;
        let mut fields = std::collections::BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once(':').ok_or_else(bad)?;
            fields.insert(k.trim(), v.trim());
        }
        if fields.get(marker) != Some(&"1") {
            return Err(bad());
        }
        let seed = |name: &str| -> Result<Zeroizing<[u8; 32]>, KeyFileError> {
            let v = Zeroizing::new(
                STANDARD
                    .decode(fields.get(name).ok_or_else(bad)?)
                    .map_err(|_| bad())?,
            );
            let mut out = Zeroizing::new([0u8; 32]);
            if v.len() != 32 {
                return Err(bad());
            }
            out.copy_from_slice(&v);
            Ok(out)
        };
        let identity = IdentitySecret::from_seed(&*seed("identity-seed")?);
        let device = DeviceSecret::from_age_secret(
            &*seed("device-signing-seed")?,
            fields.get("device-x25519").ok_or_else(bad)?,
        )
        .map_err(|_| bad())?;
        let cert_bytes = STANDARD
            .decode(fields.get("device-cert").ok_or_else(bad)?)
            .map_err(|_| bad())?;
        let cert = DeviceCert::from_bytes(&cert_bytes).map_err(|_| bad())?;
        if *cert.identity() != identity.public() || *cert.device() != device.public() {
            return Err(bad());
        }
        Ok((
            Self {
                identity,
                device,
                cert,
            },
            fields,
        ))
    }

    /// Encrypts the bundle with a passphrase (armored age text).
    pub fn encrypt(&self, passphrase: &str, work_factor: u8) -> Result<String, KeyFileError> {
        encrypt_text(&self.to_text(), passphrase, work_factor)
    }

    /// Decrypts a key file (armored or binary age), refusing files that ask for
    /// more scrypt work than `max_work_factor`.
    pub fn decrypt(
        file: &[u8],
        passphrase: &str,
        max_work_factor: u8,
    ) -> Result<Self, KeyFileError> {
        let text = decrypt_text(file, passphrase, max_work_factor)?;
        let text = std::str::from_utf8(&text).map_err(|_| KeyFileError::NotAKeyFile)?;
        Self::from_text(text)
    }
}

/// `text` encrypted with `passphrase` (armored age, scrypt at `work_factor`):
/// key files, recovery kits and the therapist's identity file.
pub(crate) fn encrypt_text(
    text: &str,
    passphrase: &str,
    work_factor: u8,
) -> Result<String, KeyFileError> {
    let mut recipient = age::scrypt::Recipient::new(SecretString::from(passphrase.to_owned()));
    recipient.set_work_factor(work_factor);
    let enc = age::Encryptor::with_recipients(std::iter::once(&recipient as _))
        .map_err(|_| KeyFileError::Write)?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|_| KeyFileError::Write)?;
    let mut w = enc.wrap_output(armor).map_err(|_| KeyFileError::Write)?;
    w.write_all(text.as_bytes())
        .map_err(|_| KeyFileError::Write)?;
    w.finish()
        .and_then(|armor| armor.finish())
        .map_err(|_| KeyFileError::Write)?;
    String::from_utf8(out).map_err(|_| KeyFileError::Write)
}

/// Opens a passphrase-protected age file (armored or binary, at most
/// `MAX_FILE`), refusing one that asks for more scrypt work than
/// `max_work_factor`.
pub(crate) fn decrypt_text(
    file: &[u8],
    passphrase: &str,
    max_work_factor: u8,
) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    if file.len() > MAX_FILE {
        return Err(KeyFileError::NotAKeyFile);
    }
    let dec = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(file))
        .map_err(|_| KeyFileError::NotAKeyFile)?;
    if !dec.is_scrypt() {
        return Err(KeyFileError::NotAKeyFile);
    }
    let mut identity = age::scrypt::Identity::new(SecretString::from(passphrase.to_owned()));
    identity.set_max_work_factor(max_work_factor);
    let mut r = dec
        .decrypt(std::iter::once(&identity as _))
        .map_err(|e| match e {
            age::DecryptError::ExcessiveWork { .. } => KeyFileError::TooMuchWork,
            age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => {
                KeyFileError::WrongPassphrase
            }
            _ => KeyFileError::NotAKeyFile,
        })?;
    let mut text = Zeroizing::new(Vec::new());
    r.by_ref()
        .take(MAX_FILE as u64)
        .read_to_end(&mut text)
        .map_err(|_| KeyFileError::NotAKeyFile)?;
    Ok(text)
}

/// A recovery kit (issue 18): a member device that lives in a file. At
/// setup or later, a device adds a *recovery device* to the space like any
/// other device (the partner is told) and writes its keys, with the
/// identity, the space, the relay and the identities to trust, into one
/// passphrase-protected age file. Being an active member, the recovery
/// device keeps receiving every new epoch key, so a device restored from
/// the kit reads the whole history. Restoring adds a fresh device of its
/// own (announced to the partner like any new device) and revokes the
/// recovery device (the kit is spent) and the lost one.
pub struct RecoveryKit {
    /// The identity and the recovery device's keys.
    pub keys: KeyBundle,
    /// The space.
    pub space: crate::SpaceId,
    /// The relay's address.
    pub relay: String,
    /// This person's role.
    pub role: crate::event::Role,
    /// The identities authenticated at pairing.
    pub anchors: crate::log::TrustAnchors,
}

impl std::fmt::Debug for RecoveryKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryKit")
            .field("keys", &self.keys)
            .field("space", &self.space)
            .finish_non_exhaustive()
    }
}

impl RecoveryKit {
    /// Encrypts the kit with a passphrase (armored age text; `age -d` opens it).
    pub fn encrypt(&self, passphrase: &str, work_factor: u8) -> Result<String, KeyFileError> {
        let bundle = self.keys.to_text();
        let rest = bundle
            .strip_prefix("troth-key-bundle: 1\n")
            .ok_or(KeyFileError::Write)?;
        let hex_of = |k: &Option<crate::keys::IdentityKey>| {
            k.map(|k| hex::encode(k.to_bytes())).unwrap_or_default()
        };
        let role = match self.role {
            crate::event::Role::Leading => "leading",
            crate::event::Role::Rebuilding => "rebuilding",
        };
        if self.relay.contains(['\n', '\r']) {
            return Err(KeyFileError::Write);
        }
        let head = format!(
            "troth-recovery-kit: 1\nspace: {}\nrelay: {}\nrole: {role}\nleading: {}\nrebuilding: {}\n",
            self.space.to_hex(),
            self.relay,
            hex_of(&self.anchors.leading),
            hex_of(&self.anchors.rebuilding),
        );
        let mut text = Zeroizing::new(String::with_capacity(head.len() + rest.len()));
        text.push_str(&head);
        text.push_str(rest);
        encrypt_text(&text, passphrase, work_factor)
    }

    /// Opens a kit with its passphrase.
    pub fn decrypt(
        file: &[u8],
        passphrase: &str,
        max_work_factor: u8,
    ) -> Result<Self, KeyFileError> {
        let text = decrypt_text(file, passphrase, max_work_factor)?;
        let text = std::str::from_utf8(&text).map_err(|_| KeyFileError::NotAKeyFile)?;
        let (keys, fields) = KeyBundle::from_text_as(text, "troth-recovery-kit")?;
        let bad = || KeyFileError::NotAKeyFile;
        let field = |k: &str| fields.get(k).copied().ok_or_else(bad);
        let space = crate::SpaceId(
            hex::decode(field("space")?)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(bad)?,
        );
        let role = match field("role")? {
            "leading" => crate::event::Role::Leading,
            "rebuilding" => crate::event::Role::Rebuilding,
            _ => return Err(bad()),
        };
        let identity = |k: &str| -> Result<Option<crate::keys::IdentityKey>, KeyFileError> {
            let v = field(k)?;
            if v.is_empty() {
                return Ok(None);
            }
            let b: [u8; 32] = hex::decode(v)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(bad)?;
            crate::keys::IdentityKey::from_bytes(&b)
                .map(Some)
                .map_err(|_| bad())
        };
        let anchors = crate::log::TrustAnchors {
            leading: identity("leading")?,
            rebuilding: identity("rebuilding")?,
        };
        let mine = match role {
            crate::event::Role::Leading => anchors.leading,
            crate::event::Role::Rebuilding => anchors.rebuilding,
        };
        if mine != Some(keys.identity.public()) {
            return Err(bad());
        }
        Ok(Self {
            keys,
            space,
            relay: field("relay")?.to_owned(),
            role,
            anchors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_recovery_kit_round_trips_and_is_not_a_key_file() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(18);
        let keys = KeyBundle::generate(&mut rng, 1);
        let partner = IdentitySecret::generate(&mut rng).public();
        let kit = RecoveryKit {
            keys: keys.duplicate(),
            space: crate::SpaceId([7; 16]),
            relay: "http://127.0.0.1:8080".into(),
            role: crate::event::Role::Rebuilding,
            anchors: crate::log::TrustAnchors {
                leading: Some(partner),
                rebuilding: Some(keys.identity.public()),
            },
        };
        let file = kit.encrypt("a kit for a rainy day", 4).expect("encrypt");
        let back =
            RecoveryKit::decrypt(file.as_bytes(), "a kit for a rainy day", 8).expect("opens");
        assert_eq!(back.space, kit.space);
        assert_eq!(back.relay, kit.relay);
        assert_eq!(back.role, kit.role);
        assert_eq!(back.anchors, kit.anchors);
        assert_eq!(back.keys.cert, keys.cert);
        assert!(matches!(
            RecoveryKit::decrypt(file.as_bytes(), "not the passphrase", 8),
            Err(KeyFileError::WrongPassphrase)
        ));
        // A kit is not a key file, and a key file is not a kit.
        assert!(KeyBundle::decrypt(file.as_bytes(), "a kit for a rainy day", 8).is_err());
        let key_file = keys.encrypt("a kit for a rainy day", 4).expect("encrypt");
        assert!(RecoveryKit::decrypt(key_file.as_bytes(), "a kit for a rainy day", 8).is_err());
        // A kit whose own identity is not the anchor for its role is refused.
        let bad = RecoveryKit {
            anchors: crate::log::TrustAnchors {
                leading: Some(keys.identity.public()),
                rebuilding: Some(partner),
            },
            ..kit
        };
        let file = bad.encrypt("a kit for a rainy day", 4).expect("encrypt");
        assert!(RecoveryKit::decrypt(file.as_bytes(), "a kit for a rainy day", 8).is_err());
    }

    #[test]
    fn weak_passphrases_are_refused() {
        for p in [
            "",
            "short",
            "ninechars",
            "aaaaaaaaaaaa",
            "abababababab",
            "1212121212",
        ] {
            assert!(check_passphrase(p).is_err(), "{p:?}");
        }
        for p in [
            "Password123",
            "pass word 1 2 3",
            "Correct Horse Battery Staple",
            "1234567890",
        ] {
            assert_eq!(
                check_passphrase(p),
                Err(PassphraseError::TooCommon),
                "{p:?}"
            );
        }
        for p in [
            "river stones at dawn",
            "quiet garden evening",
            "blue-kettle-42",
        ] {
            assert_eq!(check_passphrase(p), Ok(()), "{p:?}");
        }
        assert_eq!(
            check_passphrase("ninechars"),
            Err(PassphraseError::TooShort)
        );
        assert!(PassphraseError::TooShort.to_string().contains("10"));
    }

    #[test]
    fn work_factor_is_read_from_the_header() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let b = KeyBundle::generate(&mut rng, 100);
        let file = b.encrypt("correct horse", 11).expect("encrypt");
        assert_eq!(work_factor(file.as_bytes()), Some(11));
        assert_eq!(work_factor(b"not an age file"), None);
        assert_eq!(work_factor(b""), None);
        assert_eq!(scrypt_memory_bytes(18), 256 * 1024 * 1024);
    }

    #[test]
    fn key_text_is_written_without_growing() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let b = KeyBundle::generate(&mut rng, 100);
        let t = b.to_text();
        assert_eq!(t.capacity(), TEXT_CAPACITY);
        assert!(t.len() > 300 && t.starts_with("troth-key-bundle: 1\n"));
        let back = KeyBundle::from_text(&t).expect("reads");
        assert_eq!(back.cert, b.cert);
    }

    #[test]
    fn round_trip_wrong_passphrase_and_work_cap() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let b = KeyBundle::generate(&mut rng, 100);
        let file = b.encrypt("correct horse", 10).expect("encrypt");
        assert!(file.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        let back = KeyBundle::decrypt(file.as_bytes(), "correct horse", 12).expect("decrypt");
        assert_eq!(back.identity.public(), b.identity.public());
        assert_eq!(back.device.public(), b.device.public());
        assert!(matches!(
            KeyBundle::decrypt(file.as_bytes(), "wrong", 12),
            Err(KeyFileError::WrongPassphrase)
        ));
        assert!(matches!(
            KeyBundle::decrypt(file.as_bytes(), "correct horse", 9),
            Err(KeyFileError::TooMuchWork)
        ));
        assert!(matches!(
            KeyBundle::decrypt(b"garbage", "x", 12),
            Err(KeyFileError::NotAKeyFile)
        ));
        let copy = b.duplicate();
        assert_eq!(copy.identity.public(), b.identity.public());
        assert_eq!(copy.device.public(), b.device.public());
        assert_eq!(
            *copy.device.age_secret_string(),
            *b.device.age_secret_string()
        );
        let dbg = format!("{b:?} {}", KeyFileError::WrongPassphrase);
        assert!(!dbg.contains("AGE-SECRET-KEY"));
    }
}
