//! The relay's HTTP API (docs/RELAY.md), as a small blocking client.
//!
//! Every request that names a space is signed by the device
//! ([`RequestAuth`]) with the real clock (never an overridden one: the relay
//! checks a time window). Every answer is untrusted input: bodies are read up
//! to a bound, parsed into exact shapes, and anything else becomes
//! [`Error::BadResponse`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use serde::Deserialize;
use troth_core::SpaceId;
use troth_core::event::{Event, EventHash, MAX_EVENT};
use troth_core::keys::{DeviceId, DeviceSecret};
use troth_core::request::RequestAuth;
use troth_core::session::{SessionId, SessionKey, SessionOpening};

use crate::error::{Error, clean};

/// Events asked for per page.
pub const PAGE: u64 = 64;
/// Largest answer read for a page of events.
const MAX_PAGE_BODY: u64 = (PAGE * (MAX_EVENT as u64) * 4 / 3) + 64 * 1024;
/// Largest answer read for anything else.
const MAX_SMALL_BODY: u64 = 64 * 1024;
/// Largest pairing message accepted from the mailbox.
const MAX_MESSAGE: usize = 8 * 1024;

/// A head the relay claims: sequence number and event hash.
pub type Head = (u64, EventHash);

/// What an append led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// The event is now the head.
    Done(Head),
    /// The log moved on: this is its head now.
    Stale(Head),
}

/// A page of events.
#[derive(Debug)]
pub struct Page {
    /// The events, decoded but not verified.
    pub events: Vec<Event>,
    /// The relay's head.
    pub head: Head,
    /// Whether more events follow.
    pub more: bool,
}

/// What one read of a rendezvous mailbox returned.
#[derive(Debug)]
pub struct MailboxMessages {
    /// The other side's messages, in order.
    pub messages: Vec<Vec<u8>>,
    /// The index to read from next.
    pub next: usize,
    /// The other side has closed: these are the last of its messages.
    pub closed: bool,
}

/// A rendezvous mailbox this side opened or claimed.
pub struct Mailbox {
    /// Its number (the first part of the pairing code).
    pub number: u32,
    token: String,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("number", &self.number)
            .finish_non_exhaustive()
    }
}

/// A request session this client holds for one space and device.
struct HeldSession {
    key: SessionKey,
    counter: u64,
}

/// Sessions by space and device; `None` inside when the relay offers none.
type SessionTable = Arc<Mutex<Option<HashMap<(SpaceId, DeviceId), HeldSession>>>>;

/// A relay at one address.
#[derive(Clone)]
pub struct RelayClient {
    base: String,
    base_path: String,
    agent: ureq::Agent,
    /// Request sessions, when [`RelayClient::with_sessions`] asked for them.
    sessions: Option<SessionTable>,
}

impl std::fmt::Debug for RelayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ApiErrorBody {
    error: String,
    message: Option<String>,
    head: Option<HeadJson>,
}

#[derive(Deserialize)]
struct HeadJson {
    seq: u64,
    hash: String,
}

impl HeadJson {
    fn parse(&self) -> Result<Head, Error> {
        let mut h = [0u8; 32];
        hex::decode_to_slice(&self.hash, &mut h)
            .map_err(|_| Error::BadResponse("a head hash that isn't 64 hex digits"))?;
        Ok((self.seq, EventHash(h)))
    }
}

fn real_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The `error` code of an API error body, if it is one.
fn error_code(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<ApiErrorBody>(bytes)
        .ok()
        .map(|b| b.error)
}

fn parse_json<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &'static str) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|_| Error::BadResponse(what))
}

impl RelayClient {
    /// A client for the relay at `url` (`http://` or `https://`, no query).
    pub fn new(url: &str) -> Result<Self, Error> {
        let url = url.trim().trim_end_matches('/');
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or(Error::BadUrl)?;
        if rest.is_empty() || rest.contains(['?', '#', ' ']) || rest.starts_with('/') {
            return Err(Error::BadUrl);
        }
        let base_path = rest
            .find('/')
            .map(|i| rest[i..].to_owned())
            .unwrap_or_default();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(40)))
            .max_redirects(0)
            .user_agent(concat!("troth/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self {
            base: url.to_owned(),
            base_path,
            agent: config.new_agent(),
            sessions: None,
        })
    }

    /// Authenticates requests through request sessions (troth_core::session)
    /// instead of signing each one: the first request of a space opens a
    /// session with one signed request, and the ones after it carry a MAC.
    /// Worth it for a client that makes many requests (`troth sync --watch`); a
    /// relay without sessions is served signed requests as before.
    pub fn with_sessions(mut self) -> Self {
        self.sessions = Some(Arc::new(Mutex::new(Some(HashMap::new()))));
        self
    }

    /// The address, as given (without a trailing slash).
    pub fn url(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, maybe_sent: bool) -> Error {
        Error::Unreachable {
            url: self.base.clone(),
            maybe_sent,
        }
    }

    /// Sends one request, authenticated by `auth`'s device for its space
    /// (through a session if this client holds or can open one); returns the
    /// status and the bounded body.
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        auth: Option<(&DeviceSecret, SpaceId)>,
        limit: u64,
    ) -> Result<(u16, Vec<u8>), Error> {
        let Some((device, space)) = auth else {
            return self.send_raw(method, path, body, &[], limit);
        };
        let signed_path = format!("{}{}", self.base_path, path);
        // Creating a space and opening a session are always signed.
        let sessions = self
            .sessions
            .as_ref()
            .filter(|_| path != "/v1/spaces" && !path.ends_with("/sessions"));
        if let Some(table) = sessions {
            for _attempt in 0..2 {
                let Some(headers) =
                    self.session_headers(table, device, space, method, &signed_path, body)?
                else {
                    break; // the relay has no sessions: sign instead
                };
                let (status, bytes) = self.send_raw(method, path, body, &headers, limit)?;
                if status == 401 && error_code(&bytes).as_deref() == Some("session_unknown") {
                    // Expired, or the relay restarted: open a new one, once.
                    if let Ok(mut t) = table.lock() {
                        if let Some(map) = t.as_mut() {
                            map.remove(&(space, device.public().id()));
                        }
                    }
                    continue;
                }
                return Ok((status, bytes));
            }
        }
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let a = RequestAuth::sign(
            device,
            Some(space),
            method,
            &signed_path,
            body.unwrap_or(&[]),
            real_now_ms(),
            nonce,
        );
        self.send_raw(method, path, body, &a.to_headers(), limit)
    }

    /// The session headers for one request, opening the session first if
    /// needed. `None` if the relay does not offer sessions.
    fn session_headers(
        &self,
        table: &SessionTable,
        device: &DeviceSecret,
        space: SpaceId,
        method: &str,
        signed_path: &str,
        body: Option<&[u8]>,
    ) -> Result<Option<Vec<(&'static str, String)>>, Error> {
        let slot = (space, device.public().id());
        let lock = || {
            table
                .lock()
                .map_err(|_| Error::BadResponse("a session table in disarray"))
        };
        let held = {
            let mut t = lock()?;
            let Some(map) = t.as_mut() else {
                return Ok(None);
            };
            map.get_mut(&slot).map(|h| {
                h.counter += 1;
                (h.key.clone(), h.counter)
            })
        };
        let (key, counter) = match held {
            Some(k) => k,
            None => {
                let Some(key) = self.open_session(device, space)? else {
                    if let Ok(mut t) = table.lock() {
                        *t = None;
                    }
                    return Ok(None);
                };
                let mut t = lock()?;
                if let Some(map) = t.as_mut() {
                    map.insert(
                        slot,
                        HeldSession {
                            key: key.clone(),
                            counter: 1,
                        },
                    );
                }
                (key, 1)
            }
        };
        let a = key.authenticate(
            method,
            signed_path,
            body.unwrap_or(&[]),
            real_now_ms(),
            counter,
        );
        Ok(Some(a.to_headers().to_vec()))
    }

    /// `POST /v1/spaces/{space}/sessions`: opens a request session. `None`
    /// if this relay does not offer sessions (404).
    fn open_session(
        &self,
        device: &DeviceSecret,
        space: SpaceId,
    ) -> Result<Option<SessionKey>, Error> {
        #[derive(Deserialize)]
        struct Opened {
            session: String,
            ephemeral: String,
        }
        let opening = SessionOpening::new(&mut rand::rngs::OsRng);
        let body =
            serde_json::json!({ "ephemeral": STANDARD.encode(opening.public()) }).to_string();
        let path = format!("/v1/spaces/{}/sessions", space.to_hex());
        let (status, bytes) = self.send(
            "POST",
            &path,
            Some(body.as_bytes()),
            Some((device, space)),
            MAX_SMALL_BODY,
        )?;
        match status {
            201 => {}
            404 if error_code(&bytes).as_deref() != Some("no_space") => return Ok(None),
            _ => return Err(Self::refusal(status, &bytes)),
        }
        let o: Opened = parse_json(&bytes, "a session answer without the API's shape")?;
        let id = SessionId::from_b64(&o.session)
            .map_err(|_| Error::BadResponse("a session id that isn't 16 bytes"))?;
        let theirs: [u8; 32] = STANDARD
            .decode(&o.ephemeral)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(Error::BadResponse("a session key that isn't 32 bytes"))?;
        opening
            .finish(space, device.public().id(), id, theirs)
            .map(Some)
            .map_err(|_| Error::BadResponse("a session key that is a low-order point"))
    }

    /// Sends one request with `headers` as given.
    fn send_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&'static str, String)],
        limit: u64,
    ) -> Result<(u16, Vec<u8>), Error> {
        let url = format!("{}{}", self.base, path);
        let result = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                for (k, v) in headers {
                    r = r.header(*k, v.as_str());
                }
                r.call()
            }
            ("DELETE", _) => {
                let mut r = self.agent.delete(&url);
                for (k, v) in headers {
                    r = r.header(*k, v.as_str());
                }
                r.call()
            }
            (_, b) => {
                let mut r = self
                    .agent
                    .post(&url)
                    .header("content-type", "application/json");
                for (k, v) in headers {
                    r = r.header(*k, v.as_str());
                }
                r.send(b.unwrap_or(&[]))
            }
        };
        let mut resp = result.map_err(|e| match e {
            ureq::Error::Timeout(_) => Error::BadResponse("no answer in time"),
            ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => self.unreachable(false),
            ureq::Error::Io(e) => {
                use std::io::ErrorKind as K;
                // No connection was made: nothing was sent. Anything else
                // (a reset, an early end) may have cut off the answer only.
                let never_connected = matches!(
                    e.kind(),
                    K::ConnectionRefused
                        | K::AddrNotAvailable
                        | K::NotFound
                        | K::HostUnreachable
                        | K::NetworkUnreachable
                );
                self.unreachable(!never_connected)
            }
            ureq::Error::BadUri(_) | ureq::Error::Http(_) => Error::BadUrl,
            _ => Error::BadResponse("not a well-formed HTTP answer"),
        })?;
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => {
                    Error::BadResponse("an answer that is too large")
                }
                _ => Error::BadResponse("an answer that broke off"),
            })?;
        Ok((status, bytes))
    }

    /// Turns a non-success answer into an error.
    fn refusal(status: u16, body: &[u8]) -> Error {
        match serde_json::from_slice::<ApiErrorBody>(body) {
            // Only the relay's word: whether a partner closed the space is
            // for the signed log to say (`State::closed`), not the relay.
            Ok(b) if status == 404 && b.error == "no_space" => Error::NoSpace,
            Ok(b) => Error::Refused {
                status,
                code: clean(&b.error, 40),
                message: clean(b.message.as_deref().unwrap_or(""), 300),
            },
            Err(_) => Error::BadResponse("an error without the API's shape"),
        }
    }

    /// `POST /v1/spaces`: creates a space with its genesis event.
    pub fn create_space(&self, device: &DeviceSecret, genesis: &Event) -> Result<Head, Error> {
        #[derive(Deserialize)]
        struct Created {
            head: HeadJson,
        }
        let space = genesis.header().space;
        let body =
            serde_json::json!({ "genesis": STANDARD.encode(genesis.as_bytes()) }).to_string();
        let (status, bytes) = self.send(
            "POST",
            "/v1/spaces",
            Some(body.as_bytes()),
            Some((device, space)),
            MAX_SMALL_BODY,
        )?;
        if status != 201 {
            return Err(Self::refusal(status, &bytes));
        }
        let c: Created = parse_json(&bytes, "a creation answer without a head")?;
        let head = c.head.parse()?;
        if head != (0, genesis.hash()) {
            return Err(Error::BadResponse("a head that isn't the event just sent"));
        }
        Ok(head)
    }

    /// `POST /v1/spaces/{space}/events`: appends if `event` extends the head.
    pub fn append(&self, device: &DeviceSecret, event: &Event) -> Result<Appended, Error> {
        let space = event.header().space;
        let body = serde_json::json!({ "event": STANDARD.encode(event.as_bytes()) }).to_string();
        let (status, bytes) = self.send(
            "POST",
            &format!("/v1/spaces/{}/events", space.to_hex()),
            Some(body.as_bytes()),
            Some((device, space)),
            MAX_SMALL_BODY,
        )?;
        match status {
            201 => {
                let h: HeadJson = parse_json(&bytes, "an append answer without a head")?;
                let head = h.parse()?;
                if head != (event.header().seq, event.hash()) {
                    return Err(Error::BadResponse("a head that isn't the event just sent"));
                }
                Ok(Appended::Done(head))
            }
            409 => {
                let e: ApiErrorBody = parse_json(&bytes, "a conflict without the API's shape")?;
                match (e.error.as_str(), e.head) {
                    ("stale_head", Some(h)) => Ok(Appended::Stale(h.parse()?)),
                    _ => Err(Self::refusal(status, &bytes)),
                }
            }
            _ => Err(Self::refusal(status, &bytes)),
        }
    }

    /// `GET /v1/spaces/{space}/events?from=N&limit=PAGE`: one page.
    pub fn read(&self, device: &DeviceSecret, space: SpaceId, from: u64) -> Result<Page, Error> {
        #[derive(Deserialize)]
        struct PageJson {
            events: Vec<String>,
            head: HeadJson,
            more: bool,
        }
        let (status, bytes) = self.send(
            "GET",
            &format!(
                "/v1/spaces/{}/events?from={from}&limit={PAGE}",
                space.to_hex()
            ),
            None,
            Some((device, space)),
            MAX_PAGE_BODY,
        )?;
        if status != 200 {
            return Err(Self::refusal(status, &bytes));
        }
        let p: PageJson = parse_json(&bytes, "a page of events without the API's shape")?;
        if p.events.len() as u64 > PAGE {
            return Err(Error::BadResponse("more events than asked for"));
        }
        let events = p
            .events
            .iter()
            .map(|s| {
                if s.len() > MAX_EVENT.div_ceil(3) * 4 {
                    return Err(Error::BadResponse("an event that is too large"));
                }
                let b = STANDARD
                    .decode(s)
                    .map_err(|_| Error::BadResponse("an event that isn't base64"))?;
                Event::decode(&b).map_err(|_| Error::BadResponse("an event that doesn't decode"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            events,
            head: p.head.parse()?,
            more: p.more,
        })
    }

    /// `DELETE /v1/spaces/{space}`: asks the relay to forget the space.
    pub fn delete_space(&self, device: &DeviceSecret, space: SpaceId) -> Result<(), Error> {
        let (status, bytes) = self.send(
            "DELETE",
            &format!("/v1/spaces/{}", space.to_hex()),
            None,
            Some((device, space)),
            MAX_SMALL_BODY,
        )?;
        if status != 204 {
            return Err(Self::refusal(status, &bytes));
        }
        Ok(())
    }

    /// `POST /v1/rendezvous`: opens a pairing mailbox (side A).
    pub fn open_mailbox(&self) -> Result<Mailbox, Error> {
        #[derive(Deserialize)]
        struct Opened {
            mailbox: u32,
            token: String,
        }
        let (status, bytes) =
            self.send("POST", "/v1/rendezvous", Some(b"{}"), None, MAX_SMALL_BODY)?;
        if status != 201 {
            return Err(Self::refusal(status, &bytes));
        }
        let o: Opened = parse_json(&bytes, "a mailbox answer without the API's shape")?;
        if !(1..=troth_core::pairing::MAX_MAILBOX).contains(&o.mailbox) || !valid_token(&o.token) {
            return Err(Error::BadResponse("a mailbox number or token out of range"));
        }
        Ok(Mailbox {
            number: o.mailbox,
            token: o.token,
        })
    }

    /// `POST /v1/rendezvous/{n}/claim`: takes the mailbox as side B, once.
    pub fn claim_mailbox(&self, number: u32) -> Result<Mailbox, Error> {
        #[derive(Deserialize)]
        struct Claimed {
            token: String,
        }
        let (status, bytes) = self.send(
            "POST",
            &format!("/v1/rendezvous/{number}/claim"),
            Some(b"{}"),
            None,
            MAX_SMALL_BODY,
        )?;
        if status == 404 || status == 410 {
            return Err(Error::PairingEnded);
        }
        if status == 409 {
            return Err(Error::CodeUsed);
        }
        if status != 200 && status != 201 {
            return Err(Self::refusal(status, &bytes));
        }
        let c: Claimed = parse_json(&bytes, "a claim answer without the API's shape")?;
        if !valid_token(&c.token) {
            return Err(Error::BadResponse("a mailbox token out of range"));
        }
        Ok(Mailbox {
            number,
            token: c.token,
        })
    }

    /// `POST /v1/rendezvous/{n}/messages`: posts one message for the other side.
    pub fn post_message(&self, mailbox: &Mailbox, message: &[u8]) -> Result<(), Error> {
        let body = serde_json::json!({ "token": mailbox.token, "body": STANDARD.encode(message) })
            .to_string();
        let (status, bytes) = self.send(
            "POST",
            &format!("/v1/rendezvous/{}/messages", mailbox.number),
            Some(body.as_bytes()),
            None,
            MAX_SMALL_BODY,
        )?;
        match status {
            200 | 201 => Ok(()),
            404 | 410 => Err(Error::PairingEnded),
            _ => Err(Self::refusal(status, &bytes)),
        }
    }

    /// `GET /v1/rendezvous/{n}/messages`: the other side's messages from
    /// index `after`, waiting up to `wait_secs` for one.
    pub fn get_messages(
        &self,
        mailbox: &Mailbox,
        after: usize,
        wait_secs: u64,
    ) -> Result<MailboxMessages, Error> {
        #[derive(Deserialize)]
        struct Messages {
            messages: Vec<String>,
            next: usize,
            #[serde(default)]
            closed: bool,
        }
        let (status, bytes) = self.send(
            "GET",
            &format!(
                "/v1/rendezvous/{}/messages?token={}&after={after}&wait={wait_secs}",
                mailbox.number, mailbox.token
            ),
            None,
            None,
            MAX_SMALL_BODY,
        )?;
        match status {
            200 => {}
            404 | 410 => return Err(Error::PairingEnded),
            _ => return Err(Self::refusal(status, &bytes)),
        }
        let m: Messages = parse_json(&bytes, "mailbox messages without the API's shape")?;
        if m.messages.len() > 16 || m.next != after + m.messages.len() {
            return Err(Error::BadResponse("mailbox messages that don't add up"));
        }
        let msgs = m
            .messages
            .iter()
            .map(|s| {
                if s.len() > MAX_MESSAGE.div_ceil(3) * 4 {
                    return Err(Error::BadResponse("a pairing message that is too large"));
                }
                STANDARD
                    .decode(s)
                    .map_err(|_| Error::BadResponse("a pairing message that isn't base64"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MailboxMessages {
            messages: msgs,
            next: m.next,
            closed: m.closed,
        })
    }

    /// `DELETE /v1/rendezvous/{n}`: ends the exchange (best effort).
    pub fn close_mailbox(&self, mailbox: &Mailbox) -> Result<(), Error> {
        let (status, bytes) = self.send(
            "DELETE",
            &format!("/v1/rendezvous/{}?token={}", mailbox.number, mailbox.token),
            None,
            None,
            MAX_SMALL_BODY,
        )?;
        match status {
            200 | 204 | 404 | 410 => Ok(()),
            _ => Err(Self::refusal(status, &bytes)),
        }
    }
}

/// A mailbox token: what the relay hands out is 64 hex digits; accept only
/// short URL-safe text so it can go into a query string as is.
fn valid_token(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(RelayClient::new("http://127.0.0.1:8080").is_ok());
        assert!(RelayClient::new("https://relay.example/").is_ok());
        assert_eq!(
            RelayClient::new("https://relay.example/troth/")
                .map(|r| r.base_path)
                .ok()
                .as_deref(),
            Some("/troth")
        );
        assert!(matches!(
            RelayClient::new("relay.example"),
            Err(Error::BadUrl)
        ));
        assert!(matches!(RelayClient::new("http://"), Err(Error::BadUrl)));
        assert!(matches!(RelayClient::new("http://x?y"), Err(Error::BadUrl)));
    }

    #[test]
    fn tokens() {
        assert!(valid_token(&"ab".repeat(32)));
        assert!(!valid_token("a&b"));
        assert!(!valid_token(""));
    }
}
