//! One error type for the client, worded for the person at the terminal.

use std::path::PathBuf;

use thiserror::Error;
use troth_core::keyfile::KeyFileError;
use troth_core::link::LinkError;
use troth_core::pairing::{CodeError, PairingError};
use troth_core::replica::{Alert, ReplicaError};

/// Why a client operation did not complete. Every message is one calm
/// sentence (or two) that says what to do next; none carries a secret.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The relay could not be reached at all.
    #[error(
        "Can't reach the relay at {url}. Check the address and your connection, then try again."
    )]
    Unreachable {
        /// The relay's address.
        url: String,
        /// Whether the request may have reached the relay before the
        /// connection broke (then an append's outcome is unknown); `false`
        /// when no connection was made.
        maybe_sent: bool,
    },
    /// The relay answered with a well-formed refusal.
    #[error("The relay said no ({code}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The relay's machine-readable code.
        code: String,
        /// The relay's sentence (cleaned of control characters, shortened).
        message: String,
    },
    /// The relay answered with something that is not the API's shape.
    #[error(
        "The relay answered with something this app can't read ({0}). It may be misconfigured or \
         misbehaving; nothing was changed."
    )]
    BadResponse(&'static str),
    /// The address given for the relay is not usable.
    #[error("The relay address should look like https://relay.example or http://127.0.0.1:8080.")]
    BadUrl,
    /// The log kept moving while this device tried to add to it.
    #[error("The space kept changing while sending. Nothing was lost; please try again.")]
    Busy,
    /// The relay answered that it has no such space (404 `no_space`). That
    /// is the relay's claim alone: a partner's closing is a signed
    /// `CloseSpace` event in the log, so callers check `State::closed`
    /// before saying who closed it. Nothing local is removed.
    #[error(
        "The relay no longer has this space. This device keeps its copy (`troth timeline --offline` shows it)."
    )]
    NoSpace,
    /// The relay showed a history that does not verify.
    #[error("{}", .0.advice())]
    Integrity(Alert),
    /// The local copy of the space does not verify (damaged or altered on disk).
    #[error(
        "The local copy of the space in {0} doesn't verify; it may be damaged. Restore the folder \
         from a backup, or pair again."
    )]
    LocalIntegrity(PathBuf),
    /// The local space file does not open under this device's local key: it
    /// was written outside Troth (forged or edited), by another key, or in
    /// the first format. It is refused and left in place, never replaced.
    #[error(
        "The local copy of the space in {0} wasn't sealed by this device's key (it was changed outside \
         Troth, or written by an older version), so it was not used and nothing was changed. Restore \
         the folder from a backup, or pair again with another --home."
    )]
    LocalTampered(PathBuf),
    /// A key file problem (wrong passphrase, not a key file, too much work).
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// An action the space's state does not allow now.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// Pairing failed; the code is used up.
    #[error(transparent)]
    Pairing(#[from] PairingError),
    /// A typed pairing code was refused.
    #[error(transparent)]
    Code(#[from] CodeError),
    /// The pairing mailbox went away (expired, or closed by the other device).
    #[error(
        "The pairing ended on the other device, or the code expired. Start again with a new code."
    )]
    PairingEnded,
    /// Someone already used this pairing code.
    #[error(
        "This pairing code was already used. If that wasn't your partner, tell them; then start \
         again with a new code."
    )]
    CodeUsed,
    /// Nobody joined in time.
    #[error(
        "Nobody joined with the code in time. Start again with a new code when you're both ready."
    )]
    PairingTimeout,
    /// The partner paired but the space never showed this device.
    #[error(
        "Your partner's device hasn't added this one to the space yet. Keep `troth pair start` \
         running on their side, then run `troth sync`."
    )]
    NotAdmitted,
    /// Linking a device failed; the code is used up.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The linking mailbox went away (expired, or closed by the other device).
    #[error(
        "Adding the device stopped on the other device, or the code expired. Nothing was added; \
         start again with a new code."
    )]
    LinkEnded,
    /// No device joined in time.
    #[error("No device joined with the code in time. Start again with a new code when it's ready.")]
    LinkTimeout,
    /// The space shows another event where the other device said it added this one.
    #[error(
        "The space doesn't show this device where your other device said it added it. Nothing was \
         saved here; look at `troth device list` on your other device, then start again."
    )]
    LinkMismatch,
    /// No key store in the folder.
    #[error("There is no Troth key in {0}. Run `troth init` first (or pass --home).")]
    NoKeys(PathBuf),
    /// Refusing to overwrite a file.
    #[error("{0} already exists; nothing was changed. Choose another file or move it away first.")]
    Exists(PathBuf),
    /// The key store holds no space yet.
    #[error(
        "This key store isn't paired with a partner yet. Run `troth pair start` or `troth pair join CODE`."
    )]
    NotPaired,
    /// The key store already holds a space.
    #[error("This key store is already paired. Use another --home for another space.")]
    AlreadyPaired,
    /// A local file could not be read or written.
    #[error("Couldn't {action} {path}: {reason}")]
    Io {
        /// What was being done ("read", "write", …).
        action: &'static str,
        /// Which file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The local state file could not be read.
    #[error(
        "The local copy of the space in {0} can't be read. It may be damaged; restore the folder from a backup."
    )]
    CorruptState(PathBuf),
}

impl Error {
    pub(crate) fn io(action: &'static str, path: &std::path::Path, e: &std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }
}

/// Keeps a string from an untrusted source printable: no control characters,
/// at most `max` characters.
pub(crate) fn clean(s: &str, max: usize) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(max).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}
