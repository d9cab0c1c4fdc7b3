//! What every command shares: the key store, the passphrase, the clock,
//! the spinner, colours, and the failures with their exit codes.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use troth_client::{Home, RelayClient, Session, Stored};
use troth_core::agreement::Day;
use troth_core::keyfile::{DEFAULT_WORK_FACTOR, KeyBundle, MAX_WORK_FACTOR};
use zeroize::Zeroizing;

/// Exit status: the command could not be done (bad input, state doesn't allow it).
pub const EXIT_FAILED: u8 = 1;
/// Exit status: a key or passphrase problem.
pub const EXIT_KEY: u8 = 3;
/// Exit status: the relay could not be reached, refused, or answered garbage.
pub const EXIT_RELAY: u8 = 4;
/// Exit status: something did not verify.
pub const EXIT_INTEGRITY: u8 = 5;
/// Exit status: pairing did not complete.
pub const EXIT_PAIRING: u8 = 6;

/// A failure with its exit status and one calm sentence.
#[derive(Debug)]
pub struct Fail {
    /// The exit status.
    pub code: u8,
    /// What to tell the person.
    pub message: String,
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fail {}

/// A failure with exit status 1.
pub fn fail(message: impl Into<String>) -> anyhow::Error {
    Fail {
        code: EXIT_FAILED,
        message: message.into(),
    }
    .into()
}

/// A failure with a given exit status.
pub fn fail_with(code: u8, message: impl Into<String>) -> anyhow::Error {
    Fail {
        code,
        message: message.into(),
    }
    .into()
}

/// The exit status for an error.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    use troth_client::Error as E;
    if let Some(f) = e.downcast_ref::<Fail>() {
        return f.code;
    }
    if let Some(c) = e.downcast_ref::<E>() {
        return match c {
            E::Unreachable { .. }
            | E::Refused { .. }
            | E::BadResponse(_)
            | E::BadUrl
            | E::Busy
            | E::NoSpace => EXIT_RELAY,
            E::Integrity(_) | E::LocalIntegrity(_) | E::LocalTampered(_) | E::CorruptState(_) => {
                EXIT_INTEGRITY
            }
            E::Key(_) | E::NoKeys(_) => EXIT_KEY,
            E::Pairing(_)
            | E::Code(_)
            | E::CodeUsed
            | E::PairingEnded
            | E::PairingTimeout
            | E::NotAdmitted
            | E::Link(_)
            | E::LinkEnded
            | E::LinkTimeout
            | E::LinkMismatch => EXIT_PAIRING,
            _ => EXIT_FAILED,
        };
    }
    if e.downcast_ref::<troth_core::keyfile::KeyFileError>()
        .is_some()
    {
        return EXIT_KEY;
    }
    EXIT_FAILED
}

/// The shared context of one command.
pub struct Ctx {
    /// The key store.
    pub home: Home,
    passphrase_file: Option<PathBuf>,
    /// Print JSON.
    pub json: bool,
    /// Skip the sync before a command.
    pub offline: bool,
    /// The clock (overridable for tests with `TROTH_NOW`).
    pub now_ms: u64,
    /// scrypt work factor for files written now.
    pub work_factor: u8,
    colour: bool,
}

/// Parses `TROTH_NOW`: milliseconds since the Unix epoch, or a day
/// (`YYYY-MM-DD`, taken at noon UTC).
fn clock() -> anyhow::Result<u64> {
    if let Some(v) = std::env::var_os("TROTH_NOW") {
        let v = v.to_string_lossy();
        if let Ok(ms) = v.trim().parse::<u64>() {
            return Ok(ms);
        }
        if let Some(d) = Day::parse(&v) {
            return Ok(u64::from(d.0) * 86_400_000 + 43_200_000);
        }
        return Err(fail(
            "TROTH_NOW should be milliseconds since 1970 or a day like 2027-01-15.",
        ));
    }
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0))
}

impl Ctx {
    /// Builds the context from the global options.
    pub fn new(
        home: Option<PathBuf>,
        passphrase_file: Option<PathBuf>,
        json: bool,
        offline: bool,
    ) -> anyhow::Result<Self> {
        let dir = match home {
            Some(d) => d,
            None => Home::default_dir().ok_or_else(|| {
                fail("There's no data folder on this system; choose one with --home DIR or TROTH_HOME.")
            })?,
        };
        let work_factor = std::env::var("TROTH_WORK_FACTOR")
            .ok()
            .and_then(|v| v.parse::<u8>().ok())
            .map(|w| w.clamp(1, MAX_WORK_FACTOR))
            .unwrap_or(DEFAULT_WORK_FACTOR);
        Ok(Self {
            home: Home::new(dir),
            passphrase_file,
            json,
            offline,
            now_ms: clock()?,
            work_factor,
            colour: std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        })
    }

    /// Today, by the (possibly overridden) clock.
    pub fn today(&self) -> Day {
        Day::from_unix_ms(self.now_ms)
    }

    /// Bold text when colour is on.
    pub fn bold(&self, s: &str) -> String {
        if self.colour {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    /// Dimmed text when colour is on.
    pub fn dim(&self, s: &str) -> String {
        if self.colour {
            format!("\x1b[2m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    /// Green text when colour is on.
    pub fn green(&self, s: &str) -> String {
        if self.colour {
            format!("\x1b[32m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    /// The passphrase: `--passphrase-file`, `TROTH_PASSPHRASE`, or a prompt
    /// without echo. `confirm` asks twice (for a new key).
    pub fn passphrase(&self, prompt: &str, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
        if let Some(f) = &self.passphrase_file {
            return read_passphrase_file(f);
        }
        if let Ok(p) = std::env::var("TROTH_PASSPHRASE") {
            let p = Zeroizing::new(p);
            if p.is_empty() {
                return Err(fail_with(
                    EXIT_KEY,
                    "TROTH_PASSPHRASE is empty; a key needs a passphrase.",
                ));
            }
            return Ok(p);
        }
        if !std::io::stdin().is_terminal() && !std::io::stderr().is_terminal() {
            return Err(fail_with(
                EXIT_KEY,
                "A passphrase is needed: type it at a terminal, or set TROTH_PASSPHRASE or --passphrase-file.",
            ));
        }
        let p = Zeroizing::new(rpassword::prompt_password(prompt).map_err(|_| {
            fail_with(
                EXIT_KEY,
                "Couldn't read a passphrase here. Set TROTH_PASSPHRASE or use --passphrase-file.",
            )
        })?);
        if p.is_empty() {
            return Err(fail_with(
                EXIT_KEY,
                "A key needs a passphrase; nothing was changed.",
            ));
        }
        if confirm {
            let again = Zeroizing::new(
                rpassword::prompt_password("Type it again: ")
                    .map_err(|_| fail_with(EXIT_KEY, "Couldn't read the passphrase again."))?,
            );
            if *again != *p {
                return Err(fail_with(
                    EXIT_KEY,
                    "The two passphrases differ; nothing was changed.",
                ));
            }
        }
        Ok(p)
    }

    /// A passphrase chosen now (for a new key): asked twice at a terminal,
    /// and refused when it is too easy to guess
    /// ([`troth_core::keyfile::check_passphrase`]).
    pub fn new_passphrase(&self, prompt: &str) -> anyhow::Result<Zeroizing<String>> {
        let p = self.passphrase(prompt, true)?;
        check_new(&p)?;
        Ok(p)
    }

    /// The passphrase for a key backup: `--new-passphrase-file`, then
    /// `TROTH_NEW_PASSPHRASE`, then a prompt (twice) at a terminal; a script
    /// that gives none of these gets a backup under `current`. Refused when
    /// too easy to guess.
    pub fn backup_passphrase(
        &self,
        file: Option<&Path>,
        current: &Zeroizing<String>,
    ) -> anyhow::Result<Zeroizing<String>> {
        let p = if let Some(f) = file {
            read_passphrase_file(f)?
        } else if let Ok(p) = std::env::var("TROTH_NEW_PASSPHRASE") {
            let p = Zeroizing::new(p);
            if p.is_empty() {
                return Err(fail_with(
                    EXIT_KEY,
                    "TROTH_NEW_PASSPHRASE is empty; a backup needs a passphrase.",
                ));
            }
            p
        } else if std::io::stdin().is_terminal() || std::io::stderr().is_terminal() {
            let p = Zeroizing::new(
                rpassword::prompt_password(
                    "Choose a passphrase for the backup (Enter to use your current one): ",
                )
                .map_err(|_| fail_with(EXIT_KEY, "Couldn't read a passphrase here."))?,
            );
            if p.is_empty() {
                current.clone()
            } else {
                let again = Zeroizing::new(
                    rpassword::prompt_password("Type it again: ")
                        .map_err(|_| fail_with(EXIT_KEY, "Couldn't read the passphrase again."))?,
                );
                if *again != *p {
                    return Err(fail_with(
                        EXIT_KEY,
                        "The two passphrases differ; nothing was written.",
                    ));
                }
                p
            }
        } else {
            current.clone()
        };
        check_new(&p)?;
        Ok(p)
    }

    /// A spinner on stderr while something slow runs (only at a terminal).
    pub fn spinner(&self, msg: &str) -> Spinner {
        if !std::io::stderr().is_terminal() {
            return Spinner(None);
        }
        let pb = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
            pb.set_style(style);
        }
        pb.set_message(msg.to_owned());
        pb.enable_steady_tick(Duration::from_millis(100));
        Spinner(Some(pb))
    }

    /// Unlocks the key file.
    pub fn keys(&self) -> anyhow::Result<KeyBundle> {
        if !self.home.has_keys() {
            return Err(troth_client::Error::NoKeys(self.home.dir().to_path_buf()).into());
        }
        let pass = self.passphrase("Passphrase: ", false)?;
        let _s = self.spinner("Unlocking your key…");
        Ok(self.home.load_keys(&pass)?)
    }

    /// Unlocks the key and opens the space (verifying the local history).
    pub fn stored(&self) -> anyhow::Result<Stored> {
        let keys = self.keys()?;
        if !self.home.has_space() {
            return Err(troth_client::Error::NotPaired.into());
        }
        Ok(self.home.load_space(keys)?)
    }

    /// Unlocks, opens the space and syncs with the relay. Saves what
    /// verified; an integrity problem is an error (after saving).
    pub fn session(&self) -> anyhow::Result<Session> {
        let stored = self.stored()?;
        self.sync_session(stored)
    }

    /// Syncs an opened space with its relay (unless `--offline`), as
    /// [`Ctx::session`] does: commands that must remember what the local copy
    /// held before the sync open it with [`Ctx::stored`] first.
    pub fn sync_session(&self, stored: Stored) -> anyhow::Result<Session> {
        let relay = RelayClient::new(&stored.relay)?;
        let mut s = Session::new(stored.replica, relay);
        if self.offline {
            // Forgetting needs no relay: what ended more than the retention
            // period ago is forgotten on time, online or not (the key change
            // itself waits for the next sync).
            if s.replica_mut().forget(self.now_ms) > 0 {
                self.save(&s)?;
            }
            return Ok(s);
        }
        let r = {
            let _sp = self.spinner("Syncing…");
            match s.sync() {
                Ok(r) => r,
                Err(troth_client::Error::NoSpace) => return Err(space_gone(s.replica())),
                Err(e) => return Err(e.into()),
            }
        };
        if r.accepted > 0 {
            self.save(&s)?;
        }
        if let Some(a) = r.alert {
            return Err(troth_client::Error::Integrity(a).into());
        }
        // Forgetting on schedule: the monthly key change once it is due,
        // then forgetting what ended more than the retention period ago.
        if s.keep_schedule(self.now_ms, &mut rand::rngs::OsRng)? {
            self.save(&s)?;
        }
        Ok(s)
    }

    /// Saves the session's space.
    pub fn save(&self, s: &Session) -> anyhow::Result<()> {
        self.home.save_space(s.relay().url(), s.replica())?;
        Ok(())
    }
}

/// The relay answered that it no longer has the space. Who closed it is
/// for the signed log to say: with a `CloseSpace` event in the local copy,
/// that partner did (exit 1); without one, it is never blamed on the
/// partner (exit 4): the relay removed it, or the partner's note was
/// deleted with the space before this device fetched it (the relay keeps
/// nothing after a delete). The local copy is kept either way.
pub fn space_gone(r: &troth_core::replica::Replica) -> anyhow::Error {
    match r.state().closed {
        Some((by, seq)) if by == r.role() => fail(format!(
            "You closed this space for both of you (#{seq}), and the relay no longer has it. This device keeps its copy: `troth timeline --offline` shows it."
        )),
        Some((_, seq)) => fail(format!(
            "Your partner closed the space for both of you (#{seq}), and the relay no longer has it. This device keeps its copy: `troth timeline --offline` shows it."
        )),
        None => fail_with(
            EXIT_RELAY,
            "The relay no longer has this space, and nothing your partner signed that reached this device says they closed it: either the relay removed it, or your partner closed it before this device could fetch their note. This device keeps its copy (`troth timeline --offline` shows it); talk with your partner before assuming anything.",
        ),
    }
}

/// A spinner that clears itself when dropped.
pub struct Spinner(Option<ProgressBar>);

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

/// Refuses a new passphrase that is too easy to guess, with the core's words.
fn check_new(p: &str) -> anyhow::Result<()> {
    troth_core::keyfile::check_passphrase(p)
        .map_err(|e| fail_with(EXIT_KEY, format!("{e} Nothing was written.")))
}

fn read_passphrase_file(f: &Path) -> anyhow::Result<Zeroizing<String>> {
    let bytes = Zeroizing::new(std::fs::read(f).map_err(|e| {
        fail_with(
            EXIT_KEY,
            format!("Couldn't read the passphrase file {}: {e}", f.display()),
        )
    })?);
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| fail_with(EXIT_KEY, "The passphrase file isn't text."))?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(fail_with(
            EXIT_KEY,
            "The passphrase file's first line is empty.",
        ));
    }
    Ok(Zeroizing::new(line.to_owned()))
}

/// Parses a duration in days: `30d`, `4w`, `12h` (rounded up to a day), or a bare number of days.
pub fn parse_days(s: &str) -> anyhow::Result<u32> {
    let s = s.trim();
    let bad = || fail(format!("“{s}” isn't a duration; try 30d or 4w."));
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "d"),
    };
    let n: u32 = num.parse().map_err(|_| bad())?;
    let days = match unit {
        "d" => Some(n),
        "w" => n.checked_mul(7),
        _ => None,
    }
    .ok_or_else(bad)?;
    if days == 0 || days > 3660 {
        return Err(fail("Choose a duration between 1 day and 10 years."));
    }
    Ok(days)
}

/// Parses a wait: `90s`, `10m`, `1h`.
pub fn parse_wait(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let bad = || fail(format!("“{s}” isn't a length of time; try 90s or 10m."));
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(secs))
}

/// Formats a time for people: `2026-11-29 14:05 UTC`.
pub fn when(ms: u64) -> String {
    let d = Day::from_unix_ms(ms);
    let m = (ms % 86_400_000) / 60_000;
    format!("{d} {:02}:{:02} UTC", m / 60, m % 60)
}

/// Formats a time for JSON: `2026-11-29T14:05:09Z`.
pub fn when_iso(ms: u64) -> String {
    let d = Day::from_unix_ms(ms);
    let s = (ms % 86_400_000) / 1000;
    format!("{d}T{:02}:{:02}:{:02}Z", s / 3600, (s / 60) % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_days("30d").ok(), Some(30));
        assert_eq!(parse_days("4w").ok(), Some(28));
        assert_eq!(parse_days("7").ok(), Some(7));
        assert!(parse_days("0d").is_err());
        assert!(parse_days("soon").is_err());
        assert!(parse_days("3m").is_err());
        assert!(parse_days("99999d").is_err());
        assert_eq!(parse_wait("90s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_wait("10m").ok(), Some(Duration::from_secs(600)));
        assert!(parse_wait("0s").is_err());
        assert!(parse_wait("10x").is_err());
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(when_iso(1_796_000_000_123), "2026-11-30T00:53:20Z");
    }
}
