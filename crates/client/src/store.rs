//! The local key store: one folder holding this person's key file and their
//! space's state, both encrypted at rest.
//!
//! ```text
//! <home>/key.age     the key bundle: age, scrypt passphrase, ASCII armor (troth-core's keyfile)
//! <home>/space.age   the space: sealed under this device's local key (troth-core's `local`)
//! ```
//!
//! `space.age` holds JSON (`format` 2, `relay`, `space`, `role`, `anchors`,
//! `head`, `events`): the relay's address, the identities authenticated at
//! pairing, the verified head and every verified event as the relay sent it
//! (still sealed). The JSON is sealed with [`KeyBundle::local_key`]
//! (XChaCha20-Poly1305, context `space-file`), a key derived from the
//! device's secret and so from the passphrase: a file that anyone could
//! write (the first format was encrypted to the device's *public* age
//! recipient) no longer opens, and what fails to open is refused, never
//! replaced. The text file is a header line and one base64 line per sealed
//! copy (two only while a key rotation is under way: one for the old device
//! key, one for the new). Opening re-verifies the whole chain and checks it
//! ends at the sealed head. Files are written with mode 0600 through a
//! temporary file and a rename (a crash leaves the old file or the new one,
//! never half of one), and the key file is never replaced by accident.
//!
//! What sealing cannot show: a genuine *older* space file of this device put
//! back in place (a local rollback). The next sync fetches what it lacks
//! again, and the partner's state code shows the difference.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use troth_core::SpaceId;
use troth_core::event::{Event, Role};
use troth_core::keyfile::{KeyBundle, MAX_WORK_FACTOR};
use troth_core::keys::IdentityKey;
use troth_core::log::TrustAnchors;
use troth_core::replica::Replica;
use zeroize::Zeroizing;

use crate::error::Error;

/// The key file's name inside the home folder.
pub const KEY_FILE: &str = "key.age";
/// The space file's name inside the home folder.
pub const SPACE_FILE: &str = "space.age";
/// Largest space file read (a million small events fit).
const MAX_SPACE_FILE: u64 = 512 * 1024 * 1024;

/// A key store folder.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

/// A space as kept on disk, opened and verified.
#[derive(Debug)]
pub struct Stored {
    /// The relay's address.
    pub relay: String,
    /// The verified replica.
    pub replica: Replica,
}

/// The space file's first line: what it is and its format.
const SPACE_HEADER: &str = "troth-space-file 2";
/// The sealed JSON's format (1 was age to the device's public recipient).
const SPACE_FORMAT: u32 = 2;
/// The context the space file is sealed under.
const SPACE_CONTEXT: &str = "space-file";

#[derive(Serialize, Deserialize)]
struct SpaceFile {
    format: u32,
    relay: String,
    space: String,
    role: String,
    anchors: AnchorsJson,
    /// The verified head: `[seq, hash hex]`, or null before the genesis.
    head: Option<(u64, String)>,
    events: Vec<String>,
    /// What this device forgot as agreed (issue 17): base64 of
    /// `Replica::forgetting_record`, absent while nothing was forgotten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    forgetting: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct AnchorsJson {
    leading: Option<String>,
    rebuilding: Option<String>,
}

/// `leading` or `rebuilding`: how roles are written in files and JSON output.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leading => "leading",
        Role::Rebuilding => "rebuilding",
    }
}

/// Parses [`role_name`]'s output.
pub fn parse_role(s: &str) -> Option<Role> {
    match s {
        "leading" => Some(Role::Leading),
        "rebuilding" => Some(Role::Rebuilding),
        _ => None,
    }
}

fn identity_hex(k: &IdentityKey) -> String {
    hex::encode(k.to_bytes())
}

fn identity_from_hex(s: &str) -> Option<IdentityKey> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(s, &mut b).ok()?;
    IdentityKey::from_bytes(&b).ok()
}

/// A second handle on the same keys (the replica takes its keys by value).
pub fn clone_keys(keys: &KeyBundle) -> Result<KeyBundle, Error> {
    Ok(keys.duplicate())
}

impl Home {
    /// The key store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The default folder: `<data dir>/troth` (e.g. `~/.local/share/troth`).
    pub fn default_dir() -> Option<PathBuf> {
        dirs::data_dir().map(|d| d.join("troth"))
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key file's path.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    /// The space file's path.
    pub fn space_path(&self) -> PathBuf {
        self.dir.join(SPACE_FILE)
    }

    /// Whether a key file exists.
    pub fn has_keys(&self) -> bool {
        self.key_path().exists()
    }

    /// Whether a space file exists.
    pub fn has_space(&self) -> bool {
        self.space_path().exists()
    }

    fn ensure_dir(&self) -> Result<(), Error> {
        let mut b = fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(&self.dir)
            .map_err(|e| Error::io("create the folder", &self.dir, &e))
    }

    /// Writes a new key file; refuses if one exists.
    pub fn create_keys(
        &self,
        keys: &KeyBundle,
        passphrase: &str,
        work_factor: u8,
    ) -> Result<(), Error> {
        if self.has_keys() {
            return Err(Error::Exists(self.key_path()));
        }
        let armored = keys.encrypt(passphrase, work_factor)?;
        self.ensure_dir()?;
        write_new(&self.key_path(), armored.as_bytes())
    }

    /// Replaces the key file (after a key rotation), atomically.
    pub fn replace_keys(
        &self,
        keys: &KeyBundle,
        passphrase: &str,
        work_factor: u8,
    ) -> Result<(), Error> {
        let armored = keys.encrypt(passphrase, work_factor)?;
        write_atomic(&self.key_path(), armored.as_bytes())
    }

    /// Reads the key file's bytes (bounded).
    pub fn key_file(&self) -> Result<Vec<u8>, Error> {
        let path = self.key_path();
        if !path.exists() {
            return Err(Error::NoKeys(self.dir.clone()));
        }
        read_bounded(&path, troth_core::keyfile::MAX_FILE as u64 + 1)
    }

    /// Unlocks the key file.
    pub fn load_keys(&self, passphrase: &str) -> Result<KeyBundle, Error> {
        let bytes = self.key_file()?;
        Ok(KeyBundle::decrypt(&bytes, passphrase, MAX_WORK_FACTOR)?)
    }

    /// Opens the space with the unlocked keys and re-verifies every event.
    /// A file that does not open under this device's local key (forged,
    /// altered, or from the first format) is refused with
    /// [`Error::LocalTampered`] and left as it is.
    pub fn load_space(&self, keys: KeyBundle) -> Result<Stored, Error> {
        let path = self.space_path();
        if !path.exists() {
            return Err(Error::NotPaired);
        }
        let tampered = || Error::LocalTampered(path.clone());
        let corrupt = || Error::CorruptState(path.clone());
        let bytes = read_bounded(&path, MAX_SPACE_FILE)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| tampered())?;
        let mut lines = text.lines();
        if lines.next() != Some(SPACE_HEADER) {
            return Err(tampered());
        }
        let local = keys.local_key();
        let plain = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| STANDARD.decode(l.trim()).ok())
            .find_map(|sealed| local.open(SPACE_CONTEXT, &sealed).ok())
            .ok_or_else(tampered)?;
        drop(local);
        let f: SpaceFile = serde_json::from_slice(&plain).map_err(|_| corrupt())?;
        if f.format != SPACE_FORMAT {
            return Err(corrupt());
        }
        let space = SpaceId::from_hex(&f.space).map_err(|_| corrupt())?;
        let role = parse_role(&f.role).ok_or_else(corrupt)?;
        let anchor = |s: &Option<String>| -> Result<Option<IdentityKey>, Error> {
            match s {
                None => Ok(None),
                Some(h) => identity_from_hex(h).map(Some).ok_or_else(corrupt),
            }
        };
        let anchors = TrustAnchors {
            leading: anchor(&f.anchors.leading)?,
            rebuilding: anchor(&f.anchors.rebuilding)?,
        };
        let events = f
            .events
            .iter()
            .map(|s| {
                STANDARD
                    .decode(s)
                    .ok()
                    .and_then(|b| Event::decode(&b).ok())
                    .ok_or_else(corrupt)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut replica = Replica::open(keys, role, space, anchors);
        if let Some(rec) = &f.forgetting {
            let bytes = Zeroizing::new(STANDARD.decode(rec).map_err(|_| corrupt())?);
            replica.restore_forgetting(&bytes).map_err(|_| corrupt())?;
        }
        let ing = replica.ingest(&events);
        if ing.error.is_some() || ing.accepted != events.len() {
            return Err(Error::LocalIntegrity(path));
        }
        // The chain must end where the sealed head says it does.
        let head = replica.chain().head().map(|(seq, h)| (seq, h.to_hex()));
        if head != f.head {
            return Err(Error::LocalIntegrity(path));
        }
        Ok(Stored {
            relay: f.relay,
            replica,
        })
    }

    /// Writes the space (atomically), sealed under this device's local key.
    pub fn save_space(&self, relay: &str, replica: &Replica) -> Result<(), Error> {
        self.save_space_for(relay, replica, &[])
    }

    /// Writes the space sealed under this device's local key and under the
    /// local keys of `also` (other key bundles of the same person): used
    /// while rotating keys, so that a crash between writing the new key file
    /// and the space leaves the space readable with either.
    pub fn save_space_for(
        &self,
        relay: &str,
        replica: &Replica,
        also: &[&KeyBundle],
    ) -> Result<(), Error> {
        let anchors = replica.chain().anchors();
        let f = SpaceFile {
            format: SPACE_FORMAT,
            relay: relay.to_owned(),
            space: replica.space().to_hex(),
            role: role_name(replica.role()).to_owned(),
            anchors: AnchorsJson {
                leading: anchors.leading.as_ref().map(identity_hex),
                rebuilding: anchors.rebuilding.as_ref().map(identity_hex),
            },
            head: replica.chain().head().map(|(seq, h)| (seq, h.to_hex())),
            events: replica
                .events()
                .iter()
                .map(|e| STANDARD.encode(e.as_bytes()))
                .collect(),
            forgetting: (replica.forgotten_epochs() > 0)
                .then(|| STANDARD.encode(Zeroizing::new(replica.forgetting_record()))),
        };
        let plain = Zeroizing::new(
            serde_json::to_vec(&f).map_err(|_| Error::CorruptState(self.space_path()))?,
        );
        let mut out = String::with_capacity(plain.len() * 4 / 3 + 128);
        out.push_str(SPACE_HEADER);
        out.push('\n');
        let mut rng = rand::rngs::OsRng;
        for keys in std::iter::once(replica.keys()).chain(also.iter().copied()) {
            let sealed = keys.local_key().seal(SPACE_CONTEXT, &plain, &mut rng);
            out.push_str(&STANDARD.encode(sealed));
            out.push('\n');
        }
        self.ensure_dir()?;
        write_atomic(&self.space_path(), out.as_bytes())
    }
}

/// The context the acknowledged-devices file is sealed under.
const SEEN_CONTEXT: &str = "devices-seen";

#[derive(Serialize, Deserialize)]
struct SeenFile {
    space: String,
    through: u64,
}

impl Home {
    /// `devices-seen`: up to which sequence number this person acknowledged
    /// their partner's new devices, sealed under this device's local key.
    pub fn seen_path(&self) -> PathBuf {
        self.dir.join("devices-seen")
    }

    /// The sequence number through which the partner's new devices in
    /// `space` were acknowledged on this device. `None` when never, or when
    /// this device can't open the file (another space, other keys, a
    /// damaged file): then every new device is told of again, the safe side.
    pub fn devices_seen(&self, keys: &KeyBundle, space: SpaceId) -> Option<u64> {
        let bytes = read_bounded(&self.seen_path(), 4096).ok()?;
        let sealed = STANDARD
            .decode(std::str::from_utf8(&bytes).ok()?.trim())
            .ok()?;
        let plain = keys.local_key().open(SEEN_CONTEXT, &sealed).ok()?;
        let f: SeenFile = serde_json::from_slice(&plain).ok()?;
        (f.space == space.to_hex()).then_some(f.through)
    }

    /// Records that the partner's devices added up to `through` in `space`
    /// were acknowledged (atomically).
    pub fn set_devices_seen(
        &self,
        keys: &KeyBundle,
        space: SpaceId,
        through: u64,
    ) -> Result<(), Error> {
        let f = SeenFile {
            space: space.to_hex(),
            through,
        };
        let plain = serde_json::to_vec(&f).map_err(|_| Error::CorruptState(self.seen_path()))?;
        let sealed = keys
            .local_key()
            .seal(SEEN_CONTEXT, &plain, &mut rand::rngs::OsRng);
        self.ensure_dir()?;
        let mut out = STANDARD.encode(sealed);
        out.push('\n');
        write_atomic(&self.seen_path(), out.as_bytes())
    }
}

/// Encrypts `plain` to one age recipient, ASCII-armored.
pub fn age_encrypt(recipient: &age::x25519::Recipient, plain: &[u8]) -> std::io::Result<String> {
    age_encrypt_to(std::slice::from_ref(recipient), plain)
}

/// Encrypts `plain` to age X25519 recipients, ASCII-armored.
pub fn age_encrypt_to(
    recipients: &[age::x25519::Recipient],
    plain: &[u8],
) -> std::io::Result<String> {
    let enc = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(std::io::Error::other)?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)?;
    let mut w = enc.wrap_output(armor)?;
    w.write_all(plain)?;
    w.finish().and_then(|a| a.finish())?;
    String::from_utf8(out).map_err(std::io::Error::other)
}

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, Error> {
    let f = File::open(path).map_err(|e| Error::io("read", path, &e))?;
    let mut v = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut v)
        .map_err(|e| Error::io("read", path, &e))?;
    if v.len() as u64 > max {
        return Err(Error::CorruptState(path.to_path_buf()));
    }
    Ok(v)
}

fn temp_beside(path: &Path) -> PathBuf {
    let mut r = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut r);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", hex::encode(r)))
}

fn write_temp(tmp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(tmp)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(path: &Path) {
    if let Some(d) = path.parent() {
        // Best effort: makes the rename durable where the platform allows.
        let _ = File::open(d).and_then(|f| f.sync_all());
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, mode 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = temp_beside(path);
    let r = write_temp(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = r {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("write", path, &e));
    }
    sync_dir(path);
    Ok(())
}

/// Writes a new file at `path`, mode 0600, never replacing one that exists
/// (even one that appears meanwhile): temporary file, then a hard link.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    if path.exists() {
        return Err(Error::Exists(path.to_path_buf()));
    }
    let tmp = temp_beside(path);
    if let Err(e) = write_temp(&tmp, bytes) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("write", path, &e));
    }
    let r = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match r {
        Ok(()) => {
            sync_dir(path);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(Error::Exists(path.to_path_buf()))
        }
        Err(e) => Err(Error::io("write", path, &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_never_overwritten_and_space_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path().join("h"));
        let mut rng = rand::rngs::OsRng;
        let keys = KeyBundle::generate(&mut rng, 1000);
        home.create_keys(&keys, "a test passphrase", 4)
            .expect("create");
        assert!(matches!(
            home.create_keys(&keys, "a test passphrase", 4),
            Err(Error::Exists(_))
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(home.key_path())
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(home.load_keys("nope").is_err());
        let keys = home.load_keys("a test passphrase").expect("load");
        let space = SpaceId::random(&mut rng);
        let (mut rep, genesis) =
            Replica::create(keys, Role::Leading, space, 1000, &mut rng).expect("create");
        assert_eq!(rep.ingest(&[genesis]).accepted, 1);
        home.save_space("http://127.0.0.1:1", &rep).expect("save");
        let text = fs::read_to_string(home.space_path()).expect("read");
        assert!(text.starts_with("troth-space-file 2\n"));
        let back = home
            .load_space(clone_keys(rep.keys()).expect("clone"))
            .expect("load");
        assert_eq!(back.replica.state_code(), rep.state_code());
        assert_eq!(back.relay, "http://127.0.0.1:1");
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(home.dir())
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_space_file_not_sealed_by_this_device_is_refused_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path().join("h"));
        let mut rng = rand::rngs::OsRng;
        let keys = KeyBundle::generate(&mut rng, 1000);
        let space = SpaceId::random(&mut rng);
        let (mut rep, genesis) = Replica::create(
            clone_keys(&keys).expect("clone"),
            Role::Leading,
            space,
            1000,
            &mut rng,
        )
        .expect("create");
        assert_eq!(rep.ingest(&[genesis]).accepted, 1);
        home.save_space("http://127.0.0.1:1", &rep).expect("save");

        // The first format: anyone can encrypt to the device's public recipient.
        let attacker = KeyBundle::generate(&mut rng, 1000);
        let (mut evil, g) =
            Replica::create(attacker, Role::Leading, space, 1000, &mut rng).expect("create");
        assert_eq!(evil.ingest(&[g]).accepted, 1);
        let forged = serde_json::json!({
            "format": 1,
            "relay": "http://evil.example",
            "space": space.to_hex(),
            "role": "leading",
            "anchors": { "leading": identity_hex(&evil.keys().identity.public()), "rebuilding": null },
            "events": evil.events().iter().map(|e| STANDARD.encode(e.as_bytes())).collect::<Vec<_>>(),
        });
        let recipient: age::x25519::Recipient = keys
            .cert
            .device()
            .age_recipient_string()
            .parse()
            .expect("recipient");
        let old_way = age_encrypt(&recipient, forged.to_string().as_bytes()).expect("encrypt");
        // Another device's genuine file, and the right header over garbage.
        let other = Home::new(dir.path().join("other"));
        other
            .save_space("http://evil.example", &evil)
            .expect("save");
        let others = fs::read(other.space_path()).expect("read");
        for bad in [
            old_way.into_bytes(),
            others,
            format!("{SPACE_HEADER}\nAAAA\n").into_bytes(),
        ] {
            fs::write(home.space_path(), &bad).expect("write");
            let r = home.load_space(clone_keys(&keys).expect("clone"));
            assert!(matches!(r, Err(Error::LocalTampered(_))), "{r:?}");
            assert_eq!(
                fs::read(home.space_path()).expect("read"),
                bad,
                "left as it was"
            );
        }
    }
}
