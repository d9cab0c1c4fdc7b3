//! Web Push (RFC 8030) from the relay, content-free (issue 16).
//!
//! A device that turned notifications on registers its browser's push
//! subscription (endpoint, `p256dh`, `auth`) with a signed request; the
//! relay keeps it in the store against that device. When a device of one
//! partner appends an event, each device of the *other* partner that
//! registered gets one push: an RFC 8291 (aes128gcm) message whose plaintext
//! is the constant [`PAYLOAD`], signed for the push service with the relay's
//! VAPID key (RFC 8292). Nothing of the event, the space or the partner is
//! in it; the push service learns only that *something* happened, when.
//!
//! Pushes are sent by one background task, never on an append's path:
//! appends hand it a job through a bounded queue (a full queue drops the
//! job and counts it). Per device: a short gathering delay, then at most one
//! push per coalescing window; held while the receiver's quiet hours last;
//! retried with exponential backoff on timeouts, 429 and 5xx; forgotten on
//! 404/410 (the subscription is deleted). Each send has a timeout, follows
//! no redirects, reads no answer body, and connects only to public
//! addresses of an allowed push service host (unless the operator listed
//! the endpoint's origin as a test service).
//!
//! Crates: message encryption is `web-push-native` (RustCrypto's aes-gcm,
//! hkdf and p256, already in the tree through age; no OpenSSL), VAPID's
//! ES256 signature is `p256`'s ECDSA, and the HTTPS client is `ureq` (rustls,
//! webpki roots), run on blocking threads. See ARCHITECTURE.md.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::Uri;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use governor::{DefaultKeyedRateLimiter, Quota};
use p256::ecdsa::SigningKey;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use troth_core::SpaceId;
use troth_core::keys::DeviceId;
use troth_core::members::Members;

use crate::error::ApiError;
use crate::state::AppState;

/// What every push says, encrypted to the receiving browser: that there is
/// something new, nothing more.
pub const PAYLOAD: &[u8] = br#"{"troth":1}"#;

/// The name of the VAPID key file in the data folder.
pub const VAPID_FILE: &str = "vapid.key";

/// How long the push service may keep an undelivered push (seconds).
const TTL_SECS: u64 = 12 * 60 * 60;

/// How long a VAPID token is valid (RFC 8292 allows at most 24 h).
const JWT_VALID_SECS: u64 = 12 * 60 * 60;

/// Jobs waiting for the push task; past this, appends' jobs are dropped.
const QUEUE: usize = 10_000;

/// Sends in flight at once.
const SENDING: usize = 16;

/// The push services of the browsers people use, by host (`*.` for a
/// domain and its subdomains).
pub const KNOWN_PUSH_HOSTS: &[&str] = &[
    "fcm.googleapis.com",
    "*.push.services.mozilla.com",
    "*.notify.windows.com",
    "*.push.apple.com",
];

/// `[push]` settings.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct PushSettings {
    /// Whether devices may register for pushes at all.
    pub enabled: bool,
    /// A contact for push services (`mailto:` or `https:`), sent as the
    /// VAPID `sub` claim; Apple's service requires one.
    pub contact: Option<String>,
    /// Hosts a push endpoint may name (`*.` for a domain and its subdomains).
    pub allowed_hosts: Vec<String>,
    /// Origins (`http://127.0.0.1:9000`) of test push services that are
    /// allowed outside every rule above: any scheme, any address. For tests
    /// only; never on a relay that serves people.
    pub test_origins: Vec<String>,
    /// At most one push per device per this many seconds.
    pub coalesce_secs: u64,
    /// Wait this long after the first event before pushing, so that a burst
    /// becomes one push (milliseconds).
    pub gather_ms: u64,
    /// Longest one send may take (seconds).
    pub send_timeout_secs: u64,
    /// Attempts per push before it is given up.
    pub max_attempts: u32,
    /// Registrations (and opt-outs) per device per hour.
    pub registrations_per_hour: u32,
}

impl Default for PushSettings {
    fn default() -> Self {
        PushSettings {
            enabled: true,
            contact: None,
            allowed_hosts: KNOWN_PUSH_HOSTS.iter().map(|s| s.to_string()).collect(),
            test_origins: Vec::new(),
            coalesce_secs: 180,
            gather_ms: 1_500,
            send_timeout_secs: 10,
            max_attempts: 6,
            registrations_per_hour: 20,
        }
    }
}

impl PushSettings {
    /// Checks the settings, naming the first bad one.
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        let bad = |setting: &str, why: &str| {
            Err(crate::config::ConfigError::Invalid {
                setting: setting.into(),
                why: why.into(),
            })
        };
        if let Some(c) = &self.contact {
            if !(c.starts_with("mailto:") || c.starts_with("https://")) {
                return bad("push.contact", "must start with mailto: or https://");
            }
        }
        if self.allowed_hosts.iter().any(|h| {
            let h = h.strip_prefix("*.").unwrap_or(h);
            h.is_empty() || !h.contains('.') || h.contains('*') || h.contains('/')
        }) {
            return bad(
                "push.allowed_hosts",
                "must be host names like fcm.googleapis.com or *.push.apple.com",
            );
        }
        crate::config::check_web_origins("push.test_origins", &self.test_origins)?;
        if !(1..=86_400).contains(&self.coalesce_secs) {
            return bad("push.coalesce_secs", "must be between 1 and 86400");
        }
        if self.gather_ms > 60_000 {
            return bad("push.gather_ms", "must be at most 60000");
        }
        if !(1..=60).contains(&self.send_timeout_secs) {
            return bad("push.send_timeout_secs", "must be between 1 and 60");
        }
        if !(1..=20).contains(&self.max_attempts) {
            return bad("push.max_attempts", "must be between 1 and 20");
        }
        if self.registrations_per_hour == 0 {
            return bad("push.registrations_per_hour", "must be at least 1");
        }
        Ok(())
    }
}

/// The relay's VAPID key pair (ECDSA P-256). The secret zeroizes on drop
/// and is never printed.
pub struct VapidKey(SigningKey);

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey")
            .field("public", &self.public_b64())
            .finish_non_exhaustive()
    }
}

/// Why the VAPID key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VapidError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not a key this relay wrote.
    #[error(
        "{0} is not a VAPID key (32 bytes of a P-256 secret, base64url); move it away to make a new one (devices then register again)"
    )]
    Corrupt(String),
}

impl VapidKey {
    /// The key in `dir/vapid.key`, made (and written with mode 0600) at
    /// the first start. The same key on every start: browsers bind their
    /// subscriptions to it.
    pub fn load_or_create(dir: &Path) -> Result<VapidKey, VapidError> {
        let path = dir.join(VAPID_FILE);
        let shown = path.display().to_string();
        let io = |source| VapidError::Io {
            path: shown.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes = zeroize::Zeroizing::new(
                    URL_SAFE_NO_PAD
                        .decode(text.trim())
                        .map_err(|_| VapidError::Corrupt(shown.clone()))?,
                );
                let key = SigningKey::from_slice(&bytes)
                    .map_err(|_| VapidError::Corrupt(shown.clone()))?;
                Ok(VapidKey(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io)?;
                let key = SigningKey::random(&mut rand::rngs::OsRng);
                let text =
                    zeroize::Zeroizing::new(URL_SAFE_NO_PAD.encode(key.to_bytes().as_slice()));
                let tmp = dir.join(format!("{VAPID_FILE}.{}.tmp", std::process::id()));
                write_private(&tmp, text.as_bytes()).map_err(io)?;
                // Another relay starting on the same folder may have won:
                // keep the first key, whoever wrote it.
                match std::fs::hard_link(&tmp, &path) {
                    Ok(()) => {
                        let _ = std::fs::remove_file(&tmp);
                        Ok(VapidKey(key))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let _ = std::fs::remove_file(&tmp);
                        Self::load_or_create(dir)
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        Err(io(e))
                    }
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A fresh key (tests).
    pub fn generate() -> VapidKey {
        VapidKey(SigningKey::random(&mut rand::rngs::OsRng))
    }

    /// The public key as browsers take it (`applicationServerKey`): the
    /// uncompressed point, base64url without padding.
    pub fn public_b64(&self) -> String {
        let point = self.0.verifying_key().to_encoded_point(false);
        URL_SAFE_NO_PAD.encode(point.as_bytes())
    }

    /// The `Authorization` header for a push to `endpoint` (RFC 8292):
    /// `vapid t=<ES256 JWT>, k=<public key>`, the token for the endpoint's
    /// origin, valid 12 hours from `now_s`.
    pub fn authorization(&self, endpoint: &Uri, now_s: u64, contact: Option<&str>) -> String {
        use p256::ecdsa::signature::Signer as _;
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let mut claims = serde_json::json!({
            "aud": origin_of(endpoint),
            "exp": now_s + JWT_VALID_SECS,
        });
        if let Some(c) = contact {
            claims["sub"] = serde_json::Value::String(c.to_string());
        }
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{claims}");
        let sig: p256::ecdsa::Signature = self.0.sign(input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(sig.to_bytes());
        format!("vapid t={input}.{sig}, k={}", self.public_b64())
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// `scheme://host[:port]` of an endpoint, the port only if not the
/// scheme's default (the VAPID audience, and what `test_origins` lists).
fn origin_of(u: &Uri) -> String {
    let scheme = u.scheme_str().unwrap_or("https").to_ascii_lowercase();
    let host = u.host().unwrap_or("").to_ascii_lowercase();
    match u.port_u16() {
        Some(p) if !(scheme == "https" && p == 443 || scheme == "http" && p == 80) => {
            format!("{scheme}://{host}:{p}")
        }
        _ => format!("{scheme}://{host}"),
    }
}

/// A device's push subscription as the relay stores it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Subscription {
    /// The push service URL the browser gave.
    pub endpoint: String,
    /// The browser's P-256 public key (uncompressed, base64url).
    pub p256dh: String,
    /// The browser's 16-byte authentication secret (base64url).
    pub auth: String,
    /// Quiet hours: `[from, to)` in minutes after midnight UTC, if any.
    pub quiet: Option<(u16, u16)>,
}

impl Subscription {
    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// From the stored form.
    pub fn decode(b: &[u8]) -> Option<Subscription> {
        serde_json::from_slice(b).ok()
    }
}

/// Whether `minute` (after midnight UTC) is inside the window `[from, to)`,
/// which may wrap past midnight.
pub fn in_quiet(minute: u16, (from, to): (u16, u16)) -> bool {
    if from <= to {
        from <= minute && minute < to
    } else {
        minute >= from || minute < to
    }
}

/// When the quiet window around `now_ms` ends (ms), if it holds now.
fn quiet_until(now_ms: u64, quiet: Option<(u16, u16)>) -> Option<u64> {
    let q = quiet?;
    let day = 86_400_000u64;
    let minute = ((now_ms % day) / 60_000) as u16;
    if !in_quiet(minute, q) {
        return None;
    }
    let midnight = now_ms - now_ms % day;
    let mut end = midnight + u64::from(q.1) * 60_000;
    if end <= now_ms {
        end += day;
    }
    Some(end)
}

/// Checks a registration's endpoint against the settings: https on port
/// 443 to an allowed host named by DNS (never an address literal), or an
/// origin listed in `test_origins`.
pub fn check_endpoint(settings: &PushSettings, endpoint: &str) -> Result<Uri, ApiError> {
    let refuse = |why: &str| {
        ApiError::bad_request(
            "push_endpoint_refused",
            format!(
                "This relay sends notifications only to the push services of browsers ({why})."
            ),
        )
    };
    if endpoint.len() > 2048 {
        return Err(ApiError::too_large("endpoint"));
    }
    let uri: Uri = endpoint
        .parse()
        .map_err(|_| refuse("the endpoint is not a URL"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| refuse("the endpoint has no host"))?;
    if authority.as_str().contains('@') {
        return Err(refuse("the endpoint carries a user name"));
    }
    if settings.test_origins.contains(&origin_of(&uri)) {
        return Ok(uri);
    }
    if uri.scheme_str() != Some("https") {
        return Err(refuse("the endpoint is not https"));
    }
    if uri.port_u16().is_some_and(|p| p != 443) {
        return Err(refuse("the endpoint names a port"));
    }
    let host = uri.host().unwrap_or("").to_ascii_lowercase();
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if literal.parse::<IpAddr>().is_ok() {
        return Err(refuse("the endpoint is an address, not a push service"));
    }
    if !host_allowed(&settings.allowed_hosts, &host) {
        return Err(refuse("the endpoint is not a known push service"));
    }
    Ok(uri)
}

fn host_allowed(allowed: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.');
    allowed.iter().any(|a| match a.strip_prefix("*.") {
        Some(domain) => {
            host == domain
                || host
                    .strip_suffix(domain)
                    .is_some_and(|rest| rest.ends_with('.'))
        }
        None => host == a,
    })
}

/// Whether a push may be sent to `ip`: never to loopback, private,
/// link-local, shared, documentation, multicast or other special-purpose
/// addresses.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public_v4(v4);
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64: the IPv4 inside decides; refuse
                || (s[0] == 0x2002)                   // 6to4
                || s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0) // IPv4-compatible
        }
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking
        || o[0] >= 240)
}

/// ureq's resolver, keeping only public addresses (unless the URL's origin
/// is a listed test service). The check is on the addresses actually
/// connected to, so a name that resolves to a private address at send time
/// (DNS rebinding) is refused too.
#[derive(Debug)]
struct PublicOnly {
    inner: ureq::unversioned::resolver::DefaultResolver,
    test_origins: Vec<String>,
}

impl ureq::unversioned::resolver::Resolver for PublicOnly {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let found = self.inner.resolve(uri, config, timeout)?;
        if self.test_origins.contains(&origin_of(uri)) {
            return Ok(found);
        }
        let mut out = self.empty();
        for a in found.iter().filter(|a| is_public(a.ip())) {
            out.push(*a);
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}

/// A job for the push task.
enum Job {
    /// An event was appended by `author`; `members` is the list as of it.
    Appended {
        space: SpaceId,
        author: DeviceId,
        members: Arc<Members>,
    },
    /// A device turned notifications off (or its subscription was replaced).
    Forget { space: SpaceId, device: DeviceId },
    /// A send finished.
    Sent {
        key: (SpaceId, DeviceId),
        outcome: Outcome,
    },
}

/// How a send went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The push service took it (2xx).
    Delivered,
    /// 404 or 410: the subscription is gone.
    Gone,
    /// Worth another try later (timeout, connection failure, 429, 5xx).
    Retry,
    /// Refused for good (another 4xx, an address that is not public, a bad key).
    Refused,
}

/// A push waiting to be sent to one device.
struct Pending {
    sub: Subscription,
    due_ms: u64,
    attempts: u32,
    sending: bool,
    /// Something new came while this push was being sent.
    again: bool,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub(crate) struct PushStats {
    pub sent: AtomicU64,
    pub gone: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
    pub held_quiet: AtomicU64,
    pub dropped: AtomicU64,
    pub pending: AtomicU64,
}

/// The relay's push sender: settings, VAPID key, the queue to its task.
pub struct Push {
    settings: PushSettings,
    key: VapidKey,
    tx: mpsc::Sender<Job>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<Job>>>,
    registrations: DefaultKeyedRateLimiter<[u8; 32]>,
    pub(crate) stats: PushStats,
}

impl std::fmt::Debug for Push {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Push")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Push {
    /// A sender with these settings and key (started by `AppState::with_push`).
    pub fn new(settings: PushSettings, key: VapidKey) -> Push {
        let (tx, rx) = mpsc::channel(QUEUE);
        let per_hour = std::num::NonZeroU32::new(settings.registrations_per_hour)
            .unwrap_or(std::num::NonZeroU32::MIN);
        // A third of the hour's allowance at once (20 an hour: 6).
        let burst = std::num::NonZeroU32::new(settings.registrations_per_hour / 3)
            .unwrap_or(std::num::NonZeroU32::MIN);
        Push {
            registrations: DefaultKeyedRateLimiter::hashmap(
                Quota::per_hour(per_hour).allow_burst(burst),
            ),
            settings,
            key,
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            stats: PushStats::default(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &PushSettings {
        &self.settings
    }

    /// The VAPID public key (base64url).
    pub fn public_key(&self) -> String {
        self.key.public_b64()
    }

    pub(crate) fn check_registration(&self, device: &[u8; 32]) -> Result<(), ApiError> {
        use governor::clock::{Clock as _, DefaultClock};
        self.registrations.check_key(device).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::rate_limited(wait.as_secs().max(1))
        })
    }

    /// Hands an append to the push task (never waits; a full queue drops it).
    pub(crate) fn appended(&self, space: SpaceId, author: DeviceId, members: Arc<Members>) {
        let job = Job::Appended {
            space,
            author,
            members,
        };
        if self.tx.try_send(job).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn forget(&self, space: SpaceId, device: DeviceId) {
        let _ = self.tx.try_send(Job::Forget { space, device });
    }

    pub(crate) fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let s = &self.stats;
        for (name, help, v) in [
            ("sent", "pushes the push service accepted", &s.sent),
            ("gone", "subscriptions deleted on 404/410", &s.gone),
            ("retried", "sends to be tried again", &s.retried),
            ("failed", "pushes given up", &s.failed),
            ("held_quiet", "pushes held for quiet hours", &s.held_quiet),
            ("dropped", "appends not looked at (queue full)", &s.dropped),
        ] {
            let _ = writeln!(
                out,
                "# HELP troth_push_{name}_total Web Push: {help}.\n# TYPE troth_push_{name}_total counter\ntroth_push_{name}_total {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP troth_push_pending Web Push: devices with a push waiting.\n# TYPE troth_push_pending gauge\ntroth_push_pending {}",
            s.pending.load(Ordering::Relaxed)
        );
    }

    fn agent(&self) -> ureq::Agent {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(self.settings.send_timeout_secs)))
            .max_response_header_size(16 * 1024)
            .user_agent("troth-relay")
            .build();
        ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::new(),
            PublicOnly {
                inner: ureq::unversioned::resolver::DefaultResolver::default(),
                test_origins: self.settings.test_origins.clone(),
            },
        )
    }
}

/// Starts the push task on the current runtime.
pub(crate) fn start(state: &AppState, push: &Arc<Push>) {
    let Some(rx) = push.rx.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return;
    };
    let state = state.clone();
    let push = push.clone();
    tokio::spawn(run(state, push, rx));
}

async fn run(state: AppState, push: Arc<Push>, mut rx: mpsc::Receiver<Job>) {
    let agent = push.agent();
    let sending = Arc::new(tokio::sync::Semaphore::new(SENDING));
    let mut pending: HashMap<(SpaceId, DeviceId), Pending> = HashMap::new();
    let mut last_sent: HashMap<(SpaceId, DeviceId), u64> = HashMap::new();
    let coalesce_ms = push.settings.coalesce_secs * 1000;
    restore(&state, &push, &mut pending).await;
    loop {
        // Wake at least every 250 ms: due times are read from the relay's
        // clock (which tests move by hand).
        let job = tokio::time::timeout(Duration::from_millis(250), rx.recv()).await;
        match job {
            Ok(None) => return,
            Ok(Some(job)) => {
                // Take whatever else is queued before sending; appends to
                // one space become one look-up of its subscriptions (under
                // load a drain holds many: the look-ups amortise).
                let mut appended: HashMap<SpaceId, (Vec<DeviceId>, Arc<Members>)> = HashMap::new();
                let mut next = Some(job);
                while let Some(job) = next.take().or_else(|| rx.try_recv().ok()) {
                    match job {
                        Job::Appended {
                            space,
                            author,
                            members,
                        } => {
                            let e = appended
                                .entry(space)
                                .or_insert_with(|| (Vec::new(), members.clone()));
                            if !e.0.contains(&author) {
                                e.0.push(author);
                            }
                            e.1 = members;
                        }
                        other => handle(&state, &push, other, &mut pending, &mut last_sent).await,
                    }
                    if appended.len() >= 4096 {
                        break;
                    }
                }
                for (space, (authors, members)) in appended {
                    appended_to(
                        &state,
                        &push,
                        space,
                        &authors,
                        &members,
                        &mut pending,
                        &mut last_sent,
                    )
                    .await;
                }
            }
            Err(_) => {}
        }
        let now = state.now_ms();
        last_sent.retain(|_, t| now.saturating_sub(*t) < coalesce_ms);
        for (key, p) in pending.iter_mut() {
            if p.sending || p.due_ms > now {
                continue;
            }
            if let Some(until) = quiet_until(now, p.sub.quiet) {
                p.due_ms = until;
                push.stats.held_quiet.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let Ok(permit) = sending.clone().try_acquire_owned() else {
                break;
            };
            p.sending = true;
            let tx = push.tx.clone();
            let agent = agent.clone();
            let push2 = push.clone();
            let sub = p.sub.clone();
            let key = *key;
            let now_s = now / 1000;
            tokio::task::spawn_blocking(move || {
                let outcome = send(&agent, &push2, &sub, now_s);
                drop(permit);
                // The task may have ended (shutdown): nothing to tell.
                let _ = tx.blocking_send(Job::Sent { key, outcome });
            });
        }
        push.stats
            .pending
            .store(pending.len() as u64, Ordering::Relaxed);
    }
}

async fn handle(
    state: &AppState,
    push: &Push,
    job: Job,
    pending: &mut HashMap<(SpaceId, DeviceId), Pending>,
    last_sent: &mut HashMap<(SpaceId, DeviceId), u64>,
) {
    let now = state.now_ms();
    match job {
        Job::Appended {
            space,
            author,
            members,
        } => {
            appended_to(state, push, space, &[author], &members, pending, last_sent).await;
        }
        Job::Forget { space, device } => {
            if pending.remove(&(space, device)).is_some() {
                unmark(state, space, device).await;
            }
        }
        Job::Sent { key, outcome } => {
            let Some(p) = pending.get_mut(&key) else {
                return;
            };
            p.sending = false;
            match outcome {
                Outcome::Delivered => {
                    push.stats.sent.fetch_add(1, Ordering::Relaxed);
                    last_sent.insert(key, now);
                    if p.again {
                        // Told of what came before; what came during the
                        // send is told at the next window.
                        p.again = false;
                        p.attempts = 0;
                        p.due_ms = now + push.settings.coalesce_secs * 1000;
                    } else {
                        pending.remove(&key);
                        unmark(state, key.0, key.1).await;
                    }
                }
                Outcome::Gone => {
                    push.stats.gone.fetch_add(1, Ordering::Relaxed);
                    pending.remove(&key);
                    unmark(state, key.0, key.1).await;
                    if let Err(e) = state.store().push_delete(key.0, &key.1.0).await {
                        tracing::warn!(error = %e, "cannot delete a push subscription");
                    }
                }
                Outcome::Retry if p.attempts + 1 < push.settings.max_attempts => {
                    push.stats.retried.fetch_add(1, Ordering::Relaxed);
                    p.attempts += 1;
                    // 2 s, 8 s, 32 s, … up to 30 minutes.
                    let backoff = 2_000u64
                        .saturating_mul(4u64.saturating_pow(p.attempts - 1))
                        .min(30 * 60 * 1000);
                    p.due_ms = now + backoff;
                }
                Outcome::Retry | Outcome::Refused => {
                    push.stats.failed.fetch_add(1, Ordering::Relaxed);
                    pending.remove(&key);
                    unmark(state, key.0, key.1).await;
                }
            }
        }
    }
}

/// The push for `device` in `space` is no longer held.
async fn unmark(state: &AppState, space: SpaceId, device: DeviceId) {
    if let Err(e) = state.store().push_mark(space, &device.0, false).await {
        tracing::warn!(error = %e, "cannot unmark a held push");
    }
}

/// At start: the pushes held when the relay stopped (quiet hours,
/// coalescing, retries) are due again, for the subscriptions still kept.
async fn restore(
    state: &AppState,
    push: &Push,
    pending: &mut HashMap<(SpaceId, DeviceId), Pending>,
) {
    let marked = match state.store().push_marked().await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the held pushes");
            return;
        }
    };
    let now = state.now_ms();
    for (space, device) in marked {
        let subs = state
            .store()
            .push_subscriptions(space)
            .await
            .unwrap_or_default();
        let sub = subs
            .into_iter()
            .find(|(d, _)| *d == device)
            .and_then(|(_, b)| Subscription::decode(&b));
        match sub {
            Some(sub) => {
                pending.insert(
                    (space, DeviceId(device)),
                    Pending {
                        sub,
                        due_ms: now + push.settings.gather_ms,
                        attempts: 0,
                        sending: false,
                        again: false,
                    },
                );
            }
            None => unmark(state, space, DeviceId(device)).await,
        }
    }
}

/// Events were appended to `space` by `authors` (`members` as of the
/// last): each device of the other partner that registered gets a push
/// queued (gathered, coalesced); a revoked device's subscription is deleted.
async fn appended_to(
    state: &AppState,
    push: &Push,
    space: SpaceId,
    authors: &[DeviceId],
    members: &Members,
    pending: &mut HashMap<(SpaceId, DeviceId), Pending>,
    last_sent: &mut HashMap<(SpaceId, DeviceId), u64>,
) {
    let now = state.now_ms();
    let subs = match state.store().push_subscriptions(space).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read push subscriptions");
            return;
        }
    };
    // The relay knows identities, not roles: a device is told when someone
    // of the other identity wrote.
    let author_identities: Vec<_> = authors
        .iter()
        .filter_map(|a| members.device(a).map(|d| *d.cert.identity()))
        .collect();
    for (device, bytes) in subs {
        let device = DeviceId(device);
        let entry = members.device(&device).filter(|d| d.is_active());
        let Some(entry) = entry else {
            // Revoked (or never a member): its subscription goes.
            let _ = state.store().push_delete(space, &device.0).await;
            if pending.remove(&(space, device)).is_some() {
                unmark(state, space, device).await;
            }
            continue;
        };
        if !author_identities.iter().any(|i| i != entry.cert.identity()) {
            // Only the author's own side wrote: nobody is told of their own writing.
            continue;
        }
        let Some(sub) = Subscription::decode(&bytes) else {
            tracing::warn!("a stored push subscription does not decode; deleted");
            let _ = state.store().push_delete(space, &device.0).await;
            continue;
        };
        let key = (space, device);
        let earliest = last_sent
            .get(&key)
            .map_or(0, |t| t + push.settings.coalesce_secs * 1000);
        let due = (now + push.settings.gather_ms).max(earliest);
        match pending.get_mut(&key) {
            // Already waiting: this event rides along.
            Some(p) if !p.sending => p.sub = sub,
            // Being sent: one more after it, at the next window.
            Some(p) => {
                p.again = true;
                p.sub = sub;
            }
            None => {
                pending.insert(
                    key,
                    Pending {
                        sub,
                        due_ms: due,
                        attempts: 0,
                        sending: false,
                        again: false,
                    },
                );
                // Kept in the store too, so that a restart still sends it.
                if let Err(e) = state.store().push_mark(space, &device.0, true).await {
                    tracing::warn!(error = %e, "cannot mark a held push");
                }
            }
        }
    }
}

/// One send (blocking): encrypt [`PAYLOAD`] to the subscription, sign for
/// the endpoint's origin, POST with a timeout, read the status only.
fn send(agent: &ureq::Agent, push: &Push, sub: &Subscription, now_s: u64) -> Outcome {
    let Ok(uri) = check_endpoint(&push.settings, &sub.endpoint) else {
        return Outcome::Refused;
    };
    let keys = URL_SAFE_NO_PAD
        .decode(&sub.p256dh)
        .ok()
        .and_then(|b| p256::PublicKey::from_sec1_bytes(&b).ok());
    let auth = URL_SAFE_NO_PAD
        .decode(&sub.auth)
        .ok()
        .filter(|a| a.len() == 16);
    let (Some(ua_public), Some(auth)) = (keys, auth) else {
        return Outcome::Refused;
    };
    let auth = web_push_native::Auth::clone_from_slice(&auth);
    let Ok(body) = web_push_native::encrypt(PAYLOAD.to_vec(), &ua_public, &auth) else {
        return Outcome::Refused;
    };
    let authorization = push
        .key
        .authorization(&uri, now_s, push.settings.contact.as_deref());
    let r = agent
        .post(&sub.endpoint)
        .header("TTL", TTL_SECS.to_string())
        .header("Urgency", "normal")
        .header("Content-Encoding", "aes128gcm")
        .header("Content-Type", "application/octet-stream")
        .header("Authorization", authorization)
        .send(&body[..]);
    match r {
        Ok(resp) => match resp.status().as_u16() {
            200..=299 => Outcome::Delivered,
            404 | 410 => Outcome::Gone,
            408 | 429 | 500..=599 => Outcome::Retry,
            _ => Outcome::Refused,
        },
        Err(ureq::Error::HostNotFound) => {
            tracing::warn!(
                "a push endpoint resolves to no public address; not sent (see docs/RELAY.md, push)"
            );
            Outcome::Refused
        }
        Err(_) => Outcome::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_windows_wrap_past_midnight() {
        assert!(in_quiet(23 * 60, (22 * 60, 7 * 60)));
        assert!(in_quiet(3 * 60, (22 * 60, 7 * 60)));
        assert!(!in_quiet(7 * 60, (22 * 60, 7 * 60)));
        assert!(!in_quiet(12 * 60, (22 * 60, 7 * 60)));
        assert!(in_quiet(13 * 60, (12 * 60, 14 * 60)));
        assert!(!in_quiet(14 * 60, (12 * 60, 14 * 60)));
        let day = 86_400_000;
        let at = |h: u64, m: u64| 20_000 * day + h * 3_600_000 + m * 60_000;
        assert_eq!(
            quiet_until(at(23, 0), Some((22 * 60, 7 * 60))),
            Some(at(24 + 7, 0))
        );
        assert_eq!(
            quiet_until(at(3, 0), Some((22 * 60, 7 * 60))),
            Some(at(7, 0))
        );
        assert_eq!(quiet_until(at(8, 0), Some((22 * 60, 7 * 60))), None);
        assert_eq!(quiet_until(at(8, 0), None), None);
    }

    #[test]
    fn only_public_addresses() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
        ] {
            let ip: IpAddr = bad.parse().expect("address");
            assert!(!is_public(ip), "{bad} counted as public");
        }
        for good in ["142.250.74.10", "2a00:1450:4001:80b::200a", "34.107.221.82"] {
            let ip: IpAddr = good.parse().expect("address");
            assert!(is_public(ip), "{good} counted as private");
        }
    }

    #[test]
    fn endpoints_are_checked() {
        let s = PushSettings::default();
        assert!(check_endpoint(&s, "https://fcm.googleapis.com/fcm/send/abc").is_ok());
        assert!(check_endpoint(&s, "https://updates.push.services.mozilla.com/wpush/v2/x").is_ok());
        assert!(check_endpoint(&s, "https://web.push.apple.com/QGx").is_ok());
        assert!(check_endpoint(&s, "https://wns2-par02p.notify.windows.com/w/?token=x").is_ok());
        for bad in [
            "http://fcm.googleapis.com/fcm/send/abc",
            "https://fcm.googleapis.com:8443/x",
            "https://evil.example/x",
            "https://fcm.googleapis.com.evil.example/x",
            "https://evilpush.apple.com/x",
            "https://127.0.0.1/x",
            "https://[::1]/x",
            "https://169.254.169.254/latest/meta-data",
            "https://user@fcm.googleapis.com/x",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(check_endpoint(&s, bad).is_err(), "{bad} accepted");
        }
        let t = PushSettings {
            test_origins: vec!["http://127.0.0.1:9999".into()],
            ..PushSettings::default()
        };
        assert!(check_endpoint(&t, "http://127.0.0.1:9999/push/1").is_ok());
        assert!(check_endpoint(&t, "http://127.0.0.1:9998/push/1").is_err());
    }

    /// An allowed name that resolves to a loopback address at send time
    /// (DNS rebinding, a misconfigured list) is refused by the resolver
    /// before any connection: Refused, where a connection attempt to a
    /// closed port would have been a Retry.
    #[test]
    fn a_name_resolving_to_a_private_address_is_never_connected_to() {
        let settings = PushSettings {
            allowed_hosts: vec!["localhost".into()],
            ..PushSettings::default()
        };
        let push = Push::new(settings, VapidKey::generate());
        use p256::elliptic_curve::sec1::ToEncodedPoint as _;
        let ua = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let point = ua.public_key().to_encoded_point(false);
        let sub = Subscription {
            endpoint: "https://localhost/push/1".into(),
            p256dh: URL_SAFE_NO_PAD.encode(point.as_bytes()),
            auth: URL_SAFE_NO_PAD.encode([7u8; 16]),
            quiet: None,
        };
        assert!(check_endpoint(push.settings(), &sub.endpoint).is_ok());
        assert_eq!(send(&push.agent(), &push, &sub, 1_000), Outcome::Refused);
    }

    #[test]
    fn vapid_key_is_kept_and_tokens_name_the_origin() {
        let dir = std::env::temp_dir().join(format!("troth-vapid-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = VapidKey::load_or_create(&dir).expect("made");
        let b = VapidKey::load_or_create(&dir).expect("read");
        assert_eq!(a.public_b64(), b.public_b64());
        assert_eq!(a.public_b64().len(), 87); // 65 bytes, base64url
        assert!(
            !format!("{a:?}")
                .contains(&std::fs::read_to_string(dir.join(VAPID_FILE)).unwrap_or_default())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join(VAPID_FILE)).map(|m| m.permissions().mode());
            assert_eq!(mode.ok().map(|m| m & 0o777), Some(0o600));
        }
        let uri: Uri = "http://127.0.0.1:9999/p/1".parse().expect("uri");
        let h = a.authorization(&uri, 1_000, Some("mailto:ops@example.org"));
        let token = h
            .strip_prefix("vapid t=")
            .and_then(|r| r.split(", k=").next())
            .unwrap_or("");
        let claims = token.split('.').nth(1).unwrap_or("");
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(claims["aud"], "http://127.0.0.1:9999");
        assert_eq!(claims["exp"], 1_000 + JWT_VALID_SECS);
        std::fs::write(dir.join(VAPID_FILE), "nonsense").ok();
        assert!(matches!(
            VapidKey::load_or_create(&dir),
            Err(VapidError::Corrupt(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
