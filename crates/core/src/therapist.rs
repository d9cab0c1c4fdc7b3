//! The therapist's side of a report (issue 17): a therapist who does not use
//! Troth holds one age X25519 identity, gives its `age1…` recipient to the
//! couple, and opens the reports they export to it.
//!
//! At rest the identity is an age file encrypted with the therapist's
//! passphrase (scrypt, like [`crate::keyfile`]), and its plaintext is exactly
//! the identity file `age-keygen` writes:
//!
//! ```text
//! # created: troth therapist page
//! # public key: age1…
//! AGE-SECRET-KEY-1…
//! ```
//!
//! so the Go `age` tool and `rage` open reports with the same file
//! (`age -d -i therapist-key.age report.age` asks for its passphrase), and a
//! key made with `age-keygen` can be brought in after `age -p` protects it.
//!
//! A report says until when the couple agreed to share it on a line of its
//! own, [`UNTIL_PREFIX`] followed by the day (`Shared until: 2027-01-31`):
//! [`until_line`] writes it (both clients' reports), [`report_until`] reads it.

use std::io::Read;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::agreement::Day;
use crate::keyfile::KeyFileError;

/// Largest report a reader opens (a report of a long space is well under this).
pub const MAX_REPORT: usize = 4 * 1024 * 1024;

/// The start of the line that says until when a report may be read.
pub const UNTIL_PREFIX: &str = "Shared until: ";

/// The line a report carries for its `until` day.
pub fn until_line(until: Day) -> String {
    format!("{UNTIL_PREFIX}{until}")
}

/// The `until` day a report's text names, if it names one.
pub fn report_until(text: &str) -> Option<Day> {
    text.lines()
        .find_map(|l| l.trim_start_matches(['#', ' ']).strip_prefix(UNTIL_PREFIX))
        .and_then(|d| Day::parse(d.trim().trim_end_matches('.')))
}

/// Why a report could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Not an age file at all.
    #[error(
        "This file isn't a Troth report. A report is the file the couple exported for you, usually named troth-report.age."
    )]
    NotAReport,
    /// An age file, but encrypted to someone else (or with a passphrase).
    #[error(
        "This report was made for a different key. Ask the couple to make it again for the key shown on this page."
    )]
    OtherKey,
    /// Larger than [`MAX_REPORT`].
    #[error("This file is too large to be a Troth report.")]
    TooLarge,
    /// It opened, but is damaged or not text.
    #[error(
        "This report is damaged: it opened, but not all of it could be read. Ask the couple to export it again."
    )]
    Damaged,
}

/// A therapist's age identity. The secret zeroizes on drop (age's
/// `StaticSecret`) and is never printed.
pub struct TherapistKey {
    identity: age::x25519::Identity,
}

impl std::fmt::Debug for TherapistKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TherapistKey")
            .field("recipient", &self.recipient())
            .finish_non_exhaustive()
    }
}

impl TherapistKey {
    /// A new identity (age draws its randomness from the system, or the
    /// browser's `crypto.getRandomValues`).
    pub fn generate() -> Self {
        Self {
            identity: age::x25519::Identity::generate(),
        }
    }

    /// The `age1…` recipient the couple encrypts reports to.
    pub fn recipient(&self) -> String {
        self.identity.to_public().to_string()
    }

    /// The identity file's text (`age-keygen`'s format).
    fn to_text(&self) -> Zeroizing<String> {
        let secret = self.identity.to_string();
        Zeroizing::new(format!(
            "# created: troth therapist page\n# public key: {}\n{}\n",
            self.recipient(),
            secret.expose_secret()
        ))
    }

    /// Reads an identity file: comments and blank lines, and exactly one
    /// `AGE-SECRET-KEY-1…` line.
    fn from_text(text: &str) -> Result<Self, KeyFileError> {
        let mut keys = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let line = keys.next().ok_or(KeyFileError::NotAKeyFile)?;
        if keys.next().is_some() {
            return Err(KeyFileError::NotAKeyFile);
        }
        age::x25519::Identity::from_str(line)
            .map(|identity| Self { identity })
            .map_err(|_| KeyFileError::NotAKeyFile)
    }

    /// The identity file encrypted with `passphrase` (armored age text,
    /// scrypt at `work_factor`).
    pub fn encrypt(&self, passphrase: &str, work_factor: u8) -> Result<String, KeyFileError> {
        crate::keyfile::encrypt_text(&self.to_text(), passphrase, work_factor)
    }

    /// Opens a passphrase-protected identity file (armored or binary),
    /// refusing one that asks for more scrypt work than `max_work_factor`.
    pub fn decrypt(
        file: &[u8],
        passphrase: &str,
        max_work_factor: u8,
    ) -> Result<Self, KeyFileError> {
        let text = crate::keyfile::decrypt_text(file, passphrase, max_work_factor)?;
        let text = std::str::from_utf8(&text).map_err(|_| KeyFileError::NotAKeyFile)?;
        Self::from_text(text)
    }

    /// Opens a report (an age file to this identity, armored or binary):
    /// its text.
    pub fn open_report(&self, file: &[u8]) -> Result<Zeroizing<String>, ReportError> {
        if file.len() > MAX_REPORT {
            return Err(ReportError::TooLarge);
        }
        let dec = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(file))
            .map_err(|_| ReportError::NotAReport)?;
        if dec.is_scrypt() {
            return Err(ReportError::OtherKey);
        }
        let mut r = dec
            .decrypt(std::iter::once(&self.identity as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed => {
                    ReportError::OtherKey
                }
                _ => ReportError::NotAReport,
            })?;
        let mut text = Zeroizing::new(Vec::new());
        r.by_ref()
            .take(MAX_REPORT as u64 + 1)
            .read_to_end(&mut text)
            .map_err(|_| ReportError::Damaged)?;
        if text.len() > MAX_REPORT {
            return Err(ReportError::TooLarge);
        }
        let s = std::str::from_utf8(&text).map_err(|_| ReportError::Damaged)?;
        Ok(Zeroizing::new(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn encrypt_to(recipient: &str, text: &str) -> Vec<u8> {
        let r: age::x25519::Recipient = recipient.parse().expect("recipient");
        let enc = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
            .expect("encryptor");
        let mut out = Vec::new();
        let mut w = enc.wrap_output(&mut out).expect("wrap");
        w.write_all(text.as_bytes()).expect("write");
        w.finish().expect("finish");
        out
    }

    #[test]
    fn a_key_survives_its_passphrase_file_and_opens_reports() {
        let k = TherapistKey::generate();
        assert!(k.recipient().starts_with("age1"));
        let file = k.encrypt("willow bench at noon", 10).expect("encrypt");
        assert!(file.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!file.contains("AGE-SECRET-KEY"));
        let again =
            TherapistKey::decrypt(file.as_bytes(), "willow bench at noon", 20).expect("open");
        assert_eq!(again.recipient(), k.recipient());
        assert!(matches!(
            TherapistKey::decrypt(file.as_bytes(), "not the passphrase", 20),
            Err(KeyFileError::WrongPassphrase)
        ));
        assert!(matches!(
            TherapistKey::decrypt(file.as_bytes(), "willow bench at noon", 9),
            Err(KeyFileError::TooMuchWork)
        ));

        let report = encrypt_to(
            &k.recipient(),
            "Troth — shared report\nShared until: 2027-01-31\n",
        );
        let text = again.open_report(&report).expect("report");
        assert_eq!(report_until(&text), Day::parse("2027-01-31"));
        // Another key's report, a passphrase file and plain text are refused with words.
        let other = TherapistKey::generate();
        assert_eq!(
            other.open_report(&report).map(|_| ()),
            Err(ReportError::OtherKey)
        );
        assert_eq!(
            k.open_report(file.as_bytes()).map(|_| ()),
            Err(ReportError::OtherKey)
        );
        assert_eq!(
            k.open_report(b"hello").map(|_| ()),
            Err(ReportError::NotAReport)
        );
        assert!(!format!("{k:?}").contains("AGE-SECRET-KEY"));
    }

    #[test]
    fn an_age_keygen_file_is_read_and_a_troth_key_file_is_not() {
        let k = TherapistKey::generate();
        let text = k.to_text();
        assert!(text.contains("# public key: age1"));
        let back = TherapistKey::from_text(&text).expect("identity file");
        assert_eq!(back.recipient(), k.recipient());
        // Two keys, or none, is not one therapist key.
        let two = format!(
            "{}{}",
            text.as_str(),
            TherapistKey::generate().to_text().as_str()
        );
        assert!(TherapistKey::from_text(&two).is_err());
        assert!(TherapistKey::from_text("troth-key-bundle: 1\n").is_err());
    }

    #[test]
    fn the_until_line_reads_back_in_both_report_forms() {
        let d = Day::parse("2027-03-04").expect("day");
        assert_eq!(until_line(d), "Shared until: 2027-03-04");
        assert_eq!(
            report_until(&format!("# Troth report\n\n{}.\n", until_line(d))),
            Some(d)
        );
        assert_eq!(report_until("no date here"), None);
        assert_eq!(report_until("Shared until: someday"), None);
    }
}
