//! # troth-wasm
//!
//! The browser's core: thin `wasm-bindgen` handles over `troth-core`, and
//! nothing else. It owns the translation between JavaScript values and core
//! types (hex ids, base64 events, JSON-friendly state), and three small things
//! core leaves to its shells: the QR code of a pairing code (as SVG), the
//! therapist report (text, and an age file to the therapist's recipient), and
//! randomness and time taken from the browser (`crypto.getRandomValues`
//! through `OsRng`; `Date.now()` passed in by the page).
//!
//! Handles are opaque (`Keys`, `Space`, `PairingSession`, `LinkSession`); names are camelCase;
//! errors are JavaScript `Error`s with words for people. No secret byte
//! crosses into JavaScript: the only way a key leaves is
//! [`Keys::export_file`], the passphrase-protected age file the CLI writes too.
//! What the page saves is sealed here ([`Keys::seal_local`]) under a key
//! derived from the device key, which never leaves wasm.
//! The pairing code's words are shown to the person (they must read them out),
//! and are worthless once the pairing ends.
#![forbid(unsafe_code)]

mod devices;
mod json;
mod link;
mod recovery;
mod report;
mod therapist;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand_core::OsRng;
use troth_core::SpaceId;
use troth_core::agreement::{Agreement, Day, Rule};
use troth_core::content::{Content, PhoneAction, ReportScope};
use troth_core::event::{Event, EventHash, Role};
use troth_core::ids::AgreementId;
use troth_core::keyfile::{self, KeyBundle, MAX_WORK_FACTOR};
use troth_core::keys::{DeviceCert, IdentityKey};
use troth_core::log::TrustAnchors;
use troth_core::pairing::{Paired, Pairing, PairingCode, Step};
use troth_core::replica::Replica;
use troth_core::request::RequestAuth;
use wasm_bindgen::prelude::*;

/// The scrypt work factor new key files get (core's default).
pub const WORK_FACTOR: u8 = troth_core::keyfile::DEFAULT_WORK_FACTOR;

fn err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn ms(now: f64) -> u64 {
    if now.is_finite() && now > 0.0 {
        now as u64
    } else {
        0
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Leading => "leading",
        Role::Rebuilding => "rebuilding",
    }
}

fn parse_role(s: &str) -> Result<Role, JsError> {
    match s {
        "leading" => Ok(Role::Leading),
        "rebuilding" => Ok(Role::Rebuilding),
        _ => Err(err("a role is \"leading\" or \"rebuilding\"")),
    }
}

fn hex_array<const N: usize>(what: &str, s: &str) -> Result<[u8; N], JsError> {
    hex::decode(s.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| err(format!("{what} is not well-formed")))
}

fn agreement_id(s: &str) -> Result<AgreementId, JsError> {
    hex_array("the agreement id", s).map(AgreementId)
}

fn event_hash(s: &str) -> Result<EventHash, JsError> {
    hex_array("the event reference", s).map(EventHash)
}

fn identity(s: &str) -> Result<IdentityKey, JsError> {
    IdentityKey::from_bytes(&hex_array("the identity key", s)?).map_err(err)
}

fn b64(ev: &Event) -> String {
    STANDARD.encode(ev.as_bytes())
}

/// A copy of a key bundle (core's bundle is deliberately not `Clone`).
fn dup(k: &KeyBundle) -> Result<KeyBundle, JsError> {
    Ok(k.duplicate())
}

fn headers(auth: &RequestAuth) -> Result<JsValue, JsError> {
    let h = auth.to_headers();
    let obj = js_sys::Object::new();
    for (name, value) in h {
        js_sys::Reflect::set(&obj, &name.into(), &value.into())
            .map_err(|_| err("could not build the request headers"))?;
    }
    Ok(obj.into())
}

fn nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut OsRng, &mut n);
    n
}

/// The templates core offers, as `[{name, title, rules: [{text, category, asksOf, params}]}]`.
#[wasm_bindgen]
pub fn templates() -> JsValue {
    json::templates()
}

/// Checks a typed pairing code; returns the mailbox number, or an error that
/// says what to fix.
#[wasm_bindgen(js_name = checkCode)]
pub fn check_code(typed: &str) -> Result<u32, JsError> {
    PairingCode::parse(typed).map(|c| c.mailbox()).map_err(err)
}

/// Checks text for invisible or direction-changing characters: an error
/// with core's words (naming the character) when it holds one.
#[wasm_bindgen(js_name = checkText)]
pub fn check_text(s: &str) -> Result<(), JsError> {
    troth_core::text::check_text(s).map_err(err)
}

/// Checks a new passphrase: an error with core's words when it is too weak.
#[wasm_bindgen(js_name = checkPassphrase)]
pub fn check_passphrase(p: &str) -> Result<(), JsError> {
    keyfile::check_passphrase(p).map_err(err)
}

/// Refuses, before scrypt starts, a key file whose work factor needs more
/// memory than this tab can get: the same amount is reserved and released
/// (the allocator then reuses it for scrypt), so a small phone gets words
/// instead of a crashed page.
fn memory_fits(file: &[u8]) -> Result<(), JsError> {
    let Some(log_n) = keyfile::work_factor(file) else {
        return Ok(()); // not a passphrase file: decrypt says so
    };
    if log_n > MAX_WORK_FACTOR {
        return Ok(()); // decrypt refuses it with its own words
    }
    let need = keyfile::scrypt_memory_bytes(log_n);
    let fits = usize::try_from(need)
        .ok()
        .is_some_and(|n| Vec::<u8>::new().try_reserve_exact(n).is_ok());
    if fits {
        return Ok(());
    }
    Err(err(format!(
        "This key file needs about {} MiB of memory to open, more than this browser can give it now. \
         Close other tabs and apps and try again, or open it on a computer.",
        need >> 20
    )))
}

/// Today's date (`YYYY-MM-DD`, UTC) plus `days`.
#[wasm_bindgen(js_name = dayPlus)]
pub fn day_plus(now: f64, days: u32) -> String {
    Day::from_unix_ms(ms(now)).plus(days).to_string()
}

/// A person's keys: identity, this device, and the device certificate.
#[wasm_bindgen]
pub struct Keys {
    inner: KeyBundle,
}

#[wasm_bindgen]
impl Keys {
    /// Makes a new identity with one certified device.
    pub fn generate(now: f64) -> Keys {
        Keys {
            inner: KeyBundle::generate(&mut OsRng, ms(now)),
        }
    }

    /// Opens a key file (armored or binary age, as the CLI writes) with its passphrase.
    pub fn unlock(file: &[u8], passphrase: &str) -> Result<Keys, JsError> {
        memory_fits(file)?;
        KeyBundle::decrypt(file, passphrase, MAX_WORK_FACTOR)
            .map(|inner| Keys { inner })
            .map_err(err)
    }

    /// The key file, encrypted with `passphrase` (armored age text; the only
    /// form in which a secret leaves wasm).
    #[wasm_bindgen(js_name = exportFile)]
    pub fn export_file(
        &self,
        passphrase: &str,
        work_factor: Option<u8>,
    ) -> Result<String, JsError> {
        check_passphrase(passphrase)?;
        self.inner
            .encrypt(passphrase, work_factor.unwrap_or(WORK_FACTOR))
            .map_err(err)
    }

    /// Seals `data` as this browser's saved record named `context` (e.g.
    /// `idb:meta`, `idb:event:42`), under the key derived from this
    /// device's secret: base64, opaque to the page.
    #[wasm_bindgen(js_name = sealLocal)]
    pub fn seal_local(&self, context: &str, data: &str) -> String {
        let sealed = self
            .inner
            .local_key()
            .seal(context, data.as_bytes(), &mut OsRng);
        STANDARD.encode(sealed)
    }

    /// Opens a record sealed by [`Keys::seal_local`] under the same
    /// `context`; anything changed, swapped or sealed by another key is an
    /// error.
    #[wasm_bindgen(js_name = openLocal)]
    pub fn open_local(&self, context: &str, sealed: &str) -> Result<String, JsError> {
        let bytes = STANDARD
            .decode(sealed)
            .map_err(|_| err(troth_core::local::LocalError))?;
        let plain = self.inner.local_key().open(context, &bytes).map_err(err)?;
        String::from_utf8(plain.to_vec()).map_err(|_| err(troth_core::local::LocalError))
    }

    /// The identity's public key, hex.
    #[wasm_bindgen(getter, js_name = identityHex)]
    pub fn identity_hex(&self) -> String {
        hex::encode(self.inner.identity.public().to_bytes())
    }

    /// The identity's fingerprint, for people.
    #[wasm_bindgen(getter)]
    pub fn fingerprint(&self) -> String {
        self.inner.identity.public().fingerprint()
    }

    /// This device's id (base64url).
    #[wasm_bindgen(getter, js_name = deviceId)]
    pub fn device_id(&self) -> String {
        self.inner.cert.device().id().to_b64()
    }

    /// Signs a request that names no space (e.g. rendezvous): the four
    /// `troth-*` header values as an object.
    #[wasm_bindgen(js_name = signRequest)]
    pub fn sign_request(
        &self,
        space: Option<String>,
        method: &str,
        path: &str,
        body: &[u8],
        now: f64,
    ) -> Result<JsValue, JsError> {
        let space = match space {
            Some(s) => Some(SpaceId(hex_array("the space id", &s)?)),
            None => None,
        };
        let a = RequestAuth::sign(
            &self.inner.device,
            space,
            method,
            path,
            body,
            ms(now),
            nonce(),
        );
        headers(&a)
    }
}

/// A local, verified copy of one shared space.
#[wasm_bindgen]
pub struct Space {
    inner: Replica,
}

#[wasm_bindgen]
impl Space {
    /// Starts a new space in which this person leads. The genesis event is
    /// already applied locally; post `eventsFrom(0)[0]` to the relay to create it.
    pub fn create(keys: &Keys, now: f64) -> Result<Space, JsError> {
        let space = SpaceId::random(&mut OsRng);
        let (mut inner, genesis) =
            Replica::create(dup(&keys.inner)?, Role::Leading, space, ms(now), &mut OsRng)
                .map_err(err)?;
        let r = inner.ingest(std::slice::from_ref(&genesis));
        if let Some(e) = r.error {
            return Err(err(e));
        }
        Ok(Space { inner })
    }

    /// Re-opens a space from what this device stored: its role, the space id,
    /// and the identities authenticated at pairing (hex; `undefined` if not yet
    /// known). Then feed it the stored events with `ingest`.
    pub fn open(
        keys: &Keys,
        role: &str,
        space: &str,
        leading: Option<String>,
        rebuilding: Option<String>,
    ) -> Result<Space, JsError> {
        let anchors = TrustAnchors {
            leading: leading.as_deref().map(identity).transpose()?,
            rebuilding: rebuilding.as_deref().map(identity).transpose()?,
        };
        Ok(Space {
            inner: Replica::open(
                dup(&keys.inner)?,
                parse_role(role)?,
                SpaceId(hex_array("the space id", space)?),
                anchors,
            ),
        })
    }

    /// Restores a space from its sealed snapshot (`{seq, head, sealed}` as
    /// `Space.snapshot` gave it), for the role, space and anchors stored in
    /// the meta record. Refused (an error) if it does not open for that
    /// space and head or does not match them: the page then verifies the
    /// stored events from the start. Stored events after `seq` are then
    /// given to `ingestSaved`.
    #[allow(clippy::too_many_arguments)] // one plain argument per stored field, as `open` takes them
    pub fn restore(
        keys: &Keys,
        role: &str,
        space: &str,
        leading: Option<String>,
        rebuilding: Option<String>,
        seq: f64,
        head: &str,
        sealed: &str,
    ) -> Result<Space, JsError> {
        let anchors = TrustAnchors {
            leading: leading.as_deref().map(identity).transpose()?,
            rebuilding: rebuilding.as_deref().map(identity).transpose()?,
        };
        if !(seq.is_finite() && seq >= 0.0) {
            return Err(err(troth_core::replica::SnapshotError));
        }
        let bytes = STANDARD
            .decode(sealed)
            .map_err(|_| err(troth_core::replica::SnapshotError))?;
        let inner = Replica::restore(
            dup(&keys.inner)?,
            parse_role(role)?,
            SpaceId(hex_array("the space id", space)?),
            anchors,
            (seq as u64, event_hash(head)?),
            &bytes,
        )
        .map_err(err)?;
        Ok(Space { inner })
    }

    /// The verified state sealed for this device, bound to the space and
    /// the head: `{seq, head, sealed}` (head hex, sealed base64), or
    /// `undefined` for an empty space or while an event is unreadable here.
    pub fn snapshot(&self) -> JsValue {
        match self.inner.snapshot(&mut OsRng) {
            Some(s) => json::obj(&[
                ("seq", json::n(s.seq)),
                ("head", json::s(&s.head.to_hex())),
                ("sealed", json::s(&STANDARD.encode(&s.sealed))),
            ]),
            None => JsValue::UNDEFINED,
        }
    }

    /// Opens this browser's sealed event records (`idb:event:<from + i>`,
    /// base64) and verifies them on the head, in one call. Returns
    /// `{accepted, error}` like `ingest`; a record that does not open stops
    /// there with an error.
    #[wasm_bindgen(js_name = ingestSaved)]
    pub fn ingest_saved(&mut self, from: f64, sealed: Vec<String>) -> Result<JsValue, JsError> {
        if !(from.is_finite() && from >= 0.0) {
            return Err(err(troth_core::local::LocalError));
        }
        let key = self.inner.keys().local_key();
        let mut decoded = Vec::with_capacity(sealed.len());
        let mut bad = false;
        for (i, rec) in sealed.iter().enumerate() {
            let ev = STANDARD
                .decode(rec)
                .ok()
                .and_then(|b| {
                    key.open(&format!("idb:event:{}", from as u64 + i as u64), &b)
                        .ok()
                })
                .and_then(|plain| STANDARD.decode(plain.as_slice()).ok())
                .and_then(|b| Event::decode(&b).ok());
            match ev {
                Some(ev) => decoded.push(ev),
                None => {
                    bad = true;
                    break;
                }
            }
        }
        let r = self.inner.ingest(&decoded);
        let error = match (&r.error, bad) {
            (Some(e), _) => Some(e.to_string()),
            (None, true) => Some(troth_core::local::LocalError.to_string()),
            _ => None,
        };
        Ok(json::obj(&[
            ("accepted", json::n(r.accepted as u64)),
            ("error", json::opt(error.as_deref(), json::s)),
        ]))
    }

    /// Opens the space a finished pairing joined (the joiner's side).
    #[wasm_bindgen(js_name = fromPairing)]
    pub fn from_pairing(keys: &Keys, pairing: &PairingSession) -> Result<Space, JsError> {
        let p = pairing.paired()?;
        let mut anchors = TrustAnchors::default();
        anchors.set(p.partner_role, p.partner_identity);
        Ok(Space {
            inner: Replica::open(dup(&keys.inner)?, p.partner_role.other(), p.space, anchors),
        })
    }

    /// The creator's side of a finished pairing: trusts the partner's identity
    /// and returns the event (base64) that admits their device.
    #[wasm_bindgen(js_name = admitPartner)]
    pub fn admit_partner(&mut self, pairing: &PairingSession, now: f64) -> Result<String, JsError> {
        let p = pairing.paired()?;
        if p.space != self.inner.space() {
            return Err(err("this pairing was for another space"));
        }
        self.inner.trust_partner(p.partner_identity);
        self.inner
            .compose_add_member(&p.partner_cert, ms(now))
            .map(|e| b64(&e))
            .map_err(err)
    }

    /// The space id (hex).
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.inner.space().to_hex()
    }

    /// This device's role: `"leading"` or `"rebuilding"`.
    #[wasm_bindgen(getter)]
    pub fn role(&self) -> String {
        role_name(self.inner.role()).to_owned()
    }

    /// The partners' identities authenticated at pairing, hex, by role (for storage).
    #[wasm_bindgen(getter)]
    pub fn anchors(&self) -> JsValue {
        let a = self.inner.chain().anchors();
        let h = |k: &Option<IdentityKey>| json::opt(*k, |k| json::s(&hex::encode(k.to_bytes())));
        json::obj(&[("leading", h(&a.leading)), ("rebuilding", h(&a.rebuilding))])
    }

    /// The verified head's event hash (hex), once there is one.
    #[wasm_bindgen(getter, js_name = headHash)]
    pub fn head_hash(&self) -> Option<String> {
        self.inner.chain().head().map(|(_, h)| h.to_hex())
    }

    /// How many verified events this device holds.
    #[wasm_bindgen(getter, js_name = eventCount)]
    pub fn event_count(&self) -> u32 {
        u32::try_from(self.inner.chain().len()).unwrap_or(u32::MAX)
    }

    /// The verified events from `from` on, base64 (what the page stores;
    /// after a restore, only events after the snapshot's head are held).
    #[wasm_bindgen(js_name = eventsFrom)]
    pub fn events_from(&self, from: u32) -> Vec<String> {
        let skip = u64::from(from).saturating_sub(self.inner.first_held());
        self.inner
            .events()
            .iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .map(b64)
            .collect()
    }

    /// Verifies base64 events from the relay and applies the valid prefix.
    /// Returns `{accepted, error}`; `error` is words for people or `null`.
    pub fn ingest(&mut self, events: Vec<String>) -> Result<JsValue, JsError> {
        let mut decoded = Vec::with_capacity(events.len());
        let mut bad = None;
        for (i, e) in events.iter().enumerate() {
            match STANDARD.decode(e).ok().and_then(|b| Event::decode(&b).ok()) {
                Some(ev) => decoded.push(ev),
                None => {
                    bad = Some(i);
                    break;
                }
            }
        }
        let r = self.inner.ingest(&decoded);
        let error = match (&r.error, bad) {
            (Some(e), _) => Some(e.to_string()),
            (None, Some(_)) => Some("an event from the relay could not be read".to_owned()),
            _ => None,
        };
        Ok(json::obj(&[
            ("accepted", json::n(r.accepted as u64)),
            ("error", json::opt(error.as_deref(), json::s)),
        ]))
    }

    /// One page of a sync, through core's `Replica::ingest_page` (the native
    /// client's step too): the relay's claimed head (`seq`, `hash` hex; both
    /// absent when it claims none), its events (base64) and whether it says
    /// there is more. Returns `{accepted, alert, fetchMore}`; `alert` is
    /// `{what, advice}` or `null` (a missing or lower head is a rollback, a
    /// higher one with nothing delivered is withholding; both are kept in
    /// `alerts()` as well).
    #[wasm_bindgen(js_name = ingestPage)]
    pub fn ingest_page(
        &mut self,
        head_seq: Option<f64>,
        head_hash: Option<String>,
        events: Vec<String>,
        more: bool,
    ) -> Result<JsValue, JsError> {
        let head = match (head_seq, head_hash) {
            (Some(seq), Some(h)) if seq.is_finite() && seq >= 0.0 => {
                Some((seq as u64, event_hash(&h)?))
            }
            _ => None,
        };
        // An event that cannot be read ends the page there; what came before
        // it is still verified, and the chain reports the gap.
        let decoded: Vec<Event> = events
            .iter()
            .map_while(|e| STANDARD.decode(e).ok().and_then(|b| Event::decode(&b).ok()))
            .collect();
        let unreadable = decoded.len() < events.len();
        let r = self.inner.ingest_page(head, &decoded, more && !unreadable);
        Ok(json::obj(&[
            ("accepted", json::n(r.accepted as u64)),
            ("alert", json::opt(r.alert.as_ref(), json::alert)),
            ("fetchMore", JsValue::from_bool(r.fetch_more && !unreadable)),
        ]))
    }

    /// Whether the head a `409 stale_head` names (`seq`, `hash` hex) is the
    /// event `event` (base64) itself: an earlier try of this append was
    /// written and its answer lost, so it is done (core's `Event::is_head`,
    /// the native client's rule too). Anything unreadable is `false`.
    #[wasm_bindgen(js_name = isHead)]
    pub fn is_head(event: &str, seq: f64, hash: &str) -> bool {
        let Some(ev) = STANDARD
            .decode(event)
            .ok()
            .and_then(|b| Event::decode(&b).ok())
        else {
            return false;
        };
        match event_hash(hash) {
            Ok(h) if seq.is_finite() && seq >= 0.0 => ev.is_head((seq as u64, h)),
            _ => false,
        }
    }

    /// The index of the first of `sent` (base64 events this device posted
    /// whose answers may have been lost) that the verified log holds at its
    /// own position, or `undefined` (core's `Replica::already_in`): after a
    /// sync, such an action is done and is not posted again.
    #[wasm_bindgen(js_name = alreadyIn)]
    pub fn already_in(&self, sent: Vec<String>) -> Option<u32> {
        let i = sent.iter().position(|e| {
            STANDARD
                .decode(e)
                .ok()
                .and_then(|b| Event::decode(&b).ok())
                .is_some_and(|ev| self.inner.already_in(std::slice::from_ref(&ev)).is_some())
        })?;
        u32::try_from(i).ok()
    }

    /// The state a person sees, as a plain object (see docs/WEB.md). With
    /// `show`, only the newest `show` check-ins, timeline entries, requests
    /// and phone-log entries are handed over (`checkinsTotal`,
    /// `timelineTotal`, `requestsTotal` and `phoneTotal` count them all), so
    /// what crosses into JavaScript grows with what is on screen, not with
    /// the log.
    pub fn state(&self, now: f64, show: Option<u32>) -> JsValue {
        json::state(&self.inner, ms(now), show.map(|k| k as usize))
    }

    /// Integrity alerts: `[{what, advice}]`.
    pub fn alerts(&self) -> JsValue {
        json::arr(self.inner.alerts().iter().map(json::alert))
    }

    /// The state code of the verified head.
    #[wasm_bindgen(getter, js_name = stateCode)]
    pub fn state_code(&self) -> String {
        self.inner.state_code()
    }

    /// The safety number with the partner, once paired.
    #[wasm_bindgen(getter, js_name = safetyNumber)]
    pub fn safety_number(&self) -> Option<String> {
        self.inner.safety_number().map(|s| s.to_string())
    }

    /// Signs a request about this space: the four `troth-*` header values.
    #[wasm_bindgen(js_name = signRequest)]
    pub fn sign_request(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        now: f64,
    ) -> Result<JsValue, JsError> {
        let a = RequestAuth::sign(
            &self.inner.keys().device,
            Some(self.inner.space()),
            method,
            path,
            body,
            ms(now),
            nonce(),
        );
        headers(&a)
    }

    fn seal(&self, c: &Content, now: f64) -> Result<String, JsError> {
        self.inner
            .compose(c, ms(now), &mut OsRng)
            .map(|e| b64(&e))
            .map_err(err)
    }

    /// Proposes an agreement (a new one, or the next version of `amends`):
    /// `{title, rules: [{text, category, asksOf, params}], reviewOn}`.
    /// Returns the event (base64).
    pub fn propose(
        &self,
        draft: JsValue,
        amends: Option<String>,
        now: f64,
    ) -> Result<String, JsError> {
        let title = json::get_str(&draft, "title").trim().to_owned();
        let review_on = Day::parse(&json::get_str(&draft, "reviewOn"))
            .ok_or_else(|| err("Please choose a review date."))?;
        if review_on <= Day::from_unix_ms(ms(now)) {
            return Err(err("Please choose a review date after today."));
        }
        let rules: Vec<Rule> = json::rules(&draft);
        let agreement = match amends {
            None => Agreement {
                id: AgreementId::random(&mut OsRng),
                version: 1,
                supersedes: None,
                title,
                rules,
                review_on,
            },
            Some(id) => {
                let id = agreement_id(&id)?;
                let latest = self
                    .inner
                    .state()
                    .agreements
                    .get(&id)
                    .and_then(|r| r.latest())
                    .ok_or_else(|| err("there is no agreement with that id"))?;
                latest.agreement.amended(title, rules, review_on)
            }
        };
        let c = self.inner.propose(agreement).map_err(err)?;
        self.seal(&c, now)
    }

    /// Notes that a copy of this person's key was exported on `label` (e.g.
    /// "this browser"); appended before the file is handed over.
    #[wasm_bindgen(js_name = keyExported)]
    pub fn key_exported(&self, label: &str, now: f64) -> Result<String, JsError> {
        let c = Content::KeyExported {
            label: label.to_owned(),
        };
        self.seal(&c, now)
    }

    /// Closes the space for both partners; appended before the relay is
    /// asked to delete it.
    #[wasm_bindgen(js_name = closeSpace)]
    pub fn close_space(&self, comment: &str, now: f64) -> Result<String, JsError> {
        let c = Content::CloseSpace {
            comment: comment.trim().to_owned(),
        };
        self.seal(&c, now)
    }

    /// Co-signs a version with this identity.
    pub fn cosign(&self, agreement: &str, version: u32, now: f64) -> Result<String, JsError> {
        let c = self
            .inner
            .cosign(agreement_id(agreement)?, version)
            .map_err(err)?;
        self.seal(&c, now)
    }

    /// Asks for a change to a version before signing.
    #[wasm_bindgen(js_name = requestChange)]
    pub fn request_change(
        &self,
        agreement: &str,
        version: u32,
        comment: &str,
        now: f64,
    ) -> Result<String, JsError> {
        let c = Content::RequestChange {
            agreement: agreement_id(agreement)?,
            version,
            comment: comment.trim().to_owned(),
        };
        self.seal(&c, now)
    }

    /// Declines a proposed version.
    pub fn decline(
        &self,
        agreement: &str,
        version: u32,
        comment: &str,
        now: f64,
    ) -> Result<String, JsError> {
        let c = Content::Decline {
            agreement: agreement_id(agreement)?,
            version,
            comment: comment.trim().to_owned(),
        };
        self.seal(&c, now)
    }

    /// Withdraws consent from an agreement (alone, at any time).
    pub fn withdraw(&self, agreement: &str, comment: &str, now: f64) -> Result<String, JsError> {
        let c = Content::Withdraw {
            agreement: agreement_id(agreement)?,
            comment: comment.trim().to_owned(),
        };
        self.seal(&c, now)
    }

    /// Asks to retire an agreement (retired once both asked).
    pub fn retire(&self, agreement: &str, now: f64) -> Result<String, JsError> {
        let c = Content::Retire {
            agreement: agreement_id(agreement)?,
        };
        self.seal(&c, now)
    }

    /// A check-in; `place` only when the author attached one this time;
    /// `answers` the request's hash (hex).
    #[wasm_bindgen(js_name = checkIn)]
    pub fn check_in(
        &self,
        text: &str,
        place: Option<String>,
        answers: Option<String>,
        now: f64,
    ) -> Result<String, JsError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(err("Please write a few words for your check-in."));
        }
        let c = Content::CheckIn {
            text: text.to_owned(),
            place: place.map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()),
            answers: answers.as_deref().map(event_hash).transpose()?,
        };
        self.seal(&c, now)
    }

    /// Asks the partner for a check-in.
    #[wasm_bindgen(js_name = requestCheckIn)]
    pub fn request_check_in(&self, note: &str, now: f64) -> Result<String, JsError> {
        let c = Content::RequestCheckIn {
            note: note.trim().to_owned(),
        };
        self.seal(&c, now)
    }

    /// Confirms who sets the conditions as things stand (`roles.sets`).
    #[wasm_bindgen(js_name = confirmRoles)]
    pub fn confirm_roles(&self, now: f64) -> Result<String, JsError> {
        let c = self.inner.confirm_roles().map_err(err)?;
        self.seal(&c, now)
    }

    /// Asks for the roles the other way round (before both confirmed, a
    /// different proposal; after, a wish to swap that takes both).
    #[wasm_bindgen(js_name = swapRoles)]
    pub fn swap_roles(&self, now: f64) -> Result<String, JsError> {
        let c = self.inner.swap_roles().map_err(err)?;
        self.seal(&c, now)
    }

    /// Asks to end the roles (nobody sets the conditions once both asked).
    #[wasm_bindgen(js_name = endRoles)]
    pub fn end_roles(&self, now: f64) -> Result<String, JsError> {
        let c = self.inner.end_roles().map_err(err)?;
        self.seal(&c, now)
    }

    /// Keeps things for fewer days (one partner's choice; applies at once).
    #[wasm_bindgen(js_name = retentionShorten)]
    pub fn retention_shorten(&self, days: u32, now: f64) -> Result<String, JsError> {
        let c = self.inner.retention_shorten(days).map_err(err)?;
        self.seal(&c, now)
    }

    /// Proposes keeping things for more days (applies once the partner agrees).
    #[wasm_bindgen(js_name = retentionPropose)]
    pub fn retention_propose(&self, days: u32, now: f64) -> Result<String, JsError> {
        let c = self.inner.retention_propose(days).map_err(err)?;
        self.seal(&c, now)
    }

    /// Agrees to the partner's proposal to keep things longer.
    #[wasm_bindgen(js_name = retentionAgree)]
    pub fn retention_agree(&self, now: f64) -> Result<String, JsError> {
        let c = self.inner.retention_agree().map_err(err)?;
        self.seal(&c, now)
    }

    /// The monthly key change, if it is due at `now` (base64), else `undefined`.
    pub fn rotation(&self, now: f64) -> Result<Option<String>, JsError> {
        Ok(self
            .inner
            .compose_rotation(ms(now), &mut OsRng)
            .map_err(err)?
            .map(|e| b64(&e)))
    }

    /// Forgets, as agreed, the epochs that ended more than the retention
    /// period before `now`; returns how many were newly forgotten.
    pub fn forget(&mut self, now: f64) -> u32 {
        self.inner.forget(ms(now))
    }

    /// Whether forgetting is due at `now` while this space, restored from
    /// its snapshot, lacks the events forgetting reads (core's
    /// `Replica::needs_history`): open it from every stored event instead.
    #[wasm_bindgen(js_name = needsHistory)]
    pub fn needs_history(&self, now: f64) -> bool {
        self.inner.needs_history(ms(now))
    }

    /// How many epochs this device forgot.
    #[wasm_bindgen(getter, js_name = forgottenEpochs)]
    pub fn forgotten_epochs(&self) -> u32 {
        self.inner.forgotten_epochs()
    }

    /// This device's forgetting record (base64; plaintext the fold keeps:
    /// store it only sealed, with `Keys.sealLocal`).
    #[wasm_bindgen(js_name = forgettingRecord)]
    pub fn forgetting_record(&self) -> String {
        STANDARD.encode(self.inner.forgetting_record())
    }

    /// Restores a saved forgetting record, before the saved events are ingested.
    #[wasm_bindgen(js_name = restoreForgetting)]
    pub fn restore_forgetting(&mut self, record: &str) -> Result<(), JsError> {
        let bytes = STANDARD
            .decode(record.trim())
            .map_err(|_| err("the saved forgetting record is damaged"))?;
        self.inner.restore_forgetting(&bytes).map_err(err)
    }

    /// "No — we should talk about this first", with the person's words.
    #[wasm_bindgen(js_name = declineRoles)]
    pub fn decline_roles(&self, comment: &str, now: f64) -> Result<String, JsError> {
        let c = Content::DeclineRoles {
            comment: comment.trim().to_owned(),
        };
        self.seal(&c, now)
    }

    /// An answer that is not compliance to the partner's check-in or phone
    /// request (`to` its hash hex): `talk`, `therapist` or `not-comfortable`.
    pub fn answer(&self, to: &str, answer: &str, note: &str, now: f64) -> Result<String, JsError> {
        let answer = troth_core::content::AnswerKind::from_name(answer)
            .ok_or_else(|| err("an answer is talk, therapist or not-comfortable"))?;
        let c = Content::Answer {
            to: event_hash(to)?,
            answer,
            note: note.trim().to_owned(),
        };
        self.seal(&c, now)
    }

    /// Acknowledges an event (hash hex).
    pub fn ack(&self, event: &str, now: f64) -> Result<String, JsError> {
        let c = Content::Ack {
            event: event_hash(event)?,
        };
        self.seal(&c, now)
    }

    /// The phone-access log: `action` is `asked`, `granted` or `declined`.
    pub fn phone(
        &self,
        action: &str,
        note: &str,
        answers: Option<String>,
        now: f64,
    ) -> Result<String, JsError> {
        let action = match action {
            "asked" => PhoneAction::Asked,
            "granted" => PhoneAction::Granted,
            "declined" => PhoneAction::Declined,
            _ => return Err(err("a phone action is asked, granted or declined")),
        };
        let c = Content::Phone {
            action,
            note: note.trim().to_owned(),
            answers: answers.as_deref().map(event_hash).transpose()?,
        };
        self.seal(&c, now)
    }

    /// Signs this person's consent to share a report with a therapist
    /// (`recipient` an `age1…` key, or empty for a printed copy) until `until`.
    #[wasm_bindgen(js_name = consentReport)]
    pub fn consent_report(
        &self,
        recipient: &str,
        include_checkins: bool,
        until: &str,
        now: f64,
    ) -> Result<String, JsError> {
        let recipient = recipient.trim();
        if !recipient.is_empty() {
            report::parse_recipient(recipient)?;
        }
        let until = Day::parse(until).ok_or_else(|| err("Please choose until when."))?;
        let c = self.inner.consent(ReportScope {
            recipient: recipient.to_owned(),
            include_checkins,
            until,
        });
        self.seal(&c, now)
    }

    /// The readable summary for a therapist; only once both consented.
    #[wasm_bindgen(js_name = reportText)]
    pub fn report_text(&self, recipient: &str, now: f64) -> Result<String, JsError> {
        report::text(&self.inner, recipient.trim(), Day::from_unix_ms(ms(now)))
    }

    /// The summary encrypted to the therapist's age recipient (armored).
    #[wasm_bindgen(js_name = encryptReport)]
    pub fn encrypt_report(&self, recipient: &str, now: f64) -> Result<String, JsError> {
        let text = self.report_text(recipient, now)?;
        report::encrypt(recipient.trim(), &text)
    }
}

/// Pairing over a one-time code through the relay's rendezvous mailbox.
#[wasm_bindgen]
pub struct PairingSession {
    run: Option<Pairing>,
    paired: Option<Paired>,
    code: Option<PairingCode>,
    first: Option<String>,
}

impl PairingSession {
    fn paired(&self) -> Result<&Paired, JsError> {
        self.paired
            .as_ref()
            .ok_or_else(|| err("pairing has not finished"))
    }
}

#[wasm_bindgen]
impl PairingSession {
    /// Starts pairing as the creator of `space`, on the relay's `mailbox`.
    pub fn create(keys: &Keys, space: &Space, mailbox: u32) -> Result<PairingSession, JsError> {
        let code = PairingCode::generate(mailbox, &mut OsRng).map_err(err)?;
        let (run, first) = Pairing::create(
            &code,
            &keys.inner.identity,
            &keys.inner.cert,
            space.inner.space(),
            space.inner.role(),
            &mut OsRng,
        )
        .map_err(err)?;
        Ok(PairingSession {
            run: Some(run),
            paired: None,
            code: Some(code),
            first: Some(STANDARD.encode(first.as_bytes())),
        })
    }

    /// Starts pairing as the joiner, with the code the partner showed.
    pub fn join(keys: &Keys, code: &str) -> Result<PairingSession, JsError> {
        let code = PairingCode::parse(code).map_err(err)?;
        let (run, first) = Pairing::join(&code, &keys.inner.identity, &keys.inner.cert, &mut OsRng)
            .map_err(err)?;
        Ok(PairingSession {
            run: Some(run),
            paired: None,
            code: Some(code),
            first: Some(STANDARD.encode(first.as_bytes())),
        })
    }

    /// The mailbox number.
    #[wasm_bindgen(getter)]
    pub fn mailbox(&self) -> u32 {
        self.code.as_ref().map(|c| c.mailbox()).unwrap_or(0)
    }

    /// The code to show (creator) while pairing runs; empty afterwards.
    #[wasm_bindgen(getter)]
    pub fn code(&self) -> String {
        match (&self.code, &self.paired) {
            (Some(c), None) => c.reveal().to_string(),
            _ => String::new(),
        }
    }

    /// The code as a QR code (SVG markup, black on white).
    #[wasm_bindgen(js_name = codeSvg)]
    pub fn code_svg(&self) -> Result<String, JsError> {
        let code = self.code();
        if code.is_empty() {
            return Err(err("there is no code to show"));
        }
        json::qr_svg(&code)
    }

    /// The first message to post (base64), once.
    #[wasm_bindgen(js_name = takeFirstMessage)]
    pub fn take_first_message(&mut self) -> Option<String> {
        self.first.take()
    }

    /// Takes the partner's next message (base64); returns a message to post,
    /// or `undefined`. Any error ends the pairing: start again with a new code.
    pub fn receive(&mut self, message: &str) -> Result<Option<String>, JsError> {
        let run = self
            .run
            .take()
            .ok_or_else(|| err("This pairing has ended. Start again with a new code."))?;
        let bytes = STANDARD.decode(message.trim()).map_err(|_| {
            err("A pairing message was damaged or changed on the way. Start again with a new code.")
        })?;
        let (step, out) = run.receive(&bytes).map_err(|e| {
            self.code = None;
            err(e)
        })?;
        match step {
            Step::Continue(next) => self.run = Some(next),
            Step::Paired(p) => {
                self.paired = Some(p);
                self.code = None;
            }
        }
        Ok(out.map(|m| STANDARD.encode(m.as_bytes())))
    }

    /// Whether both sides are authenticated.
    #[wasm_bindgen(getter, js_name = isPaired)]
    pub fn is_paired(&self) -> bool {
        self.paired.is_some()
    }

    /// The safety number, once paired.
    #[wasm_bindgen(getter, js_name = safetyNumber)]
    pub fn safety_number(&self) -> Option<String> {
        self.paired.as_ref().map(|p| p.safety_number.to_string())
    }

    /// The partner's device certificate (base64), once paired.
    #[wasm_bindgen(getter, js_name = partnerCert)]
    pub fn partner_cert(&self) -> Option<String> {
        self.paired
            .as_ref()
            .map(|p| STANDARD.encode(DeviceCert::to_bytes(&p.partner_cert)))
    }

    /// The space id (hex), once paired.
    #[wasm_bindgen(getter)]
    pub fn space(&self) -> Option<String> {
        self.paired.as_ref().map(|p| p.space.to_hex())
    }
}
