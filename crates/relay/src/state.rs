//! The relay's shared state: the store, the clock, the group committer, the
//! signature verifier, a cache of each space's head and members, live
//! subscribers, rate limiters and metrics.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tokio::sync::{Notify, broadcast};
use troth_core::SpaceId;
use troth_core::members::Members;

use crate::clock::Clock;
use crate::commit::Committer;
use crate::config::Limits;
use crate::error::ApiError;
use crate::store::{Head, Store};

/// Events buffered per space for slow live subscribers; one that falls
/// further behind is disconnected and catches up with a GET.
const LIVE_BUFFER: usize = 16;

/// A cached space unused for this long is forgotten by the maintenance task.
pub const IDLE_EVICT_MS: u64 = 5 * 60 * 1000;

/// An event as pushed to live subscribers (already JSON text).
pub type LiveFrame = Arc<str>;

/// The relay's view of one space, as of its last durable head.
pub(crate) struct View {
    pub head: Head,
    /// The decoded member list, once an HTTP request needed it. (A space
    /// that only has live listeners does not keep it: decoded, it is several
    /// KiB, most of an idle connection's cost.)
    pub members: Option<Arc<Members>>,
    pub deleted: bool,
}

/// One cached space.
pub(crate) struct Slot {
    /// Serialises writers (appends, delete) of this space, held across the flush.
    pub write: tokio::sync::Mutex<()>,
    /// The durable head and the member list.
    pub view: RwLock<View>,
    /// Live subscribers.
    pub live: broadcast::Sender<LiveFrame>,
    /// The head live subscribers were sent frames up to (`None` while
    /// nobody listens); frames are sent only under this lock (`fanout`).
    pub feed: tokio::sync::Mutex<Option<Head>>,
    /// When a request last used this slot (ms, the injected clock).
    pub used_ms: AtomicU64,
    /// On a shared store: the member list's encoding as last read, and its
    /// decoding (decoding a list costs tens of µs: each request reads the
    /// encoding afresh and decodes it again only if it changed).
    pub decoded: Mutex<Option<(Vec<u8>, Arc<Members>)>>,
}

impl Slot {
    pub fn view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn view_mut(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// A cached space and its member list.
pub(crate) type Loaded = (Arc<Slot>, Arc<Members>);

/// Counters for `/metrics`.
#[derive(Default)]
pub(crate) struct Metrics {
    /// Requests by route, then status (nested so that counting one needs no
    /// allocation once its route was seen).
    pub requests: Mutex<HashMap<String, HashMap<u16, u64>>>,
    pub appends: AtomicU64,
    pub live: AtomicUsize,
}

pub(crate) struct Inner {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub committer: Committer,
    pub verifier: crate::verify::Verifier,
    pub spaces: Mutex<HashMap<SpaceId, Arc<Slot>>>,
    pub mailbox_wakers: Mutex<HashMap<u32, Arc<Notify>>>,
    pub metrics: Metrics,
    pub fanout: crate::fanout::FanoutStats,
    pub per_ip: DefaultKeyedRateLimiter<IpAddr>,
    pub per_device: DefaultKeyedRateLimiter<[u8; 32]>,
    pub rendezvous: DefaultKeyedRateLimiter<IpAddr>,
    pub sessions: crate::sessions::Sessions,
    /// Permits for requests in progress (`limits.max_concurrent_requests`).
    pub concurrency: tokio::sync::Semaphore,
    /// Origins whose pages may call the API from a browser (CORS); set once.
    pub web_origins: std::sync::OnceLock<Vec<String>>,
    /// Web Push (issue 16), once turned on; set once.
    pub push: std::sync::OnceLock<Arc<crate::push::Push>>,
    /// The operator's help words per language (`GET /v1/help`); set once.
    pub help: std::sync::OnceLock<Vec<crate::help::Help>>,
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

fn quota_per_second(rate: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AppState {
    /// State over `store`, reading time from `clock`, with `limits`. Starts
    /// the group-commit flusher thread.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> std::io::Result<Self> {
        let committer = Committer::start(store.clone())?;
        let verifier = crate::verify::Verifier::new();
        let rdv_rate =
            NonZeroU32::new(limits.rendezvous_per_ip_per_minute).unwrap_or(NonZeroU32::MIN);
        let rdv_burst = NonZeroU32::new(limits.rendezvous_burst).unwrap_or(NonZeroU32::MIN);
        let state = AppState(Arc::new(Inner {
            per_ip: DefaultKeyedRateLimiter::hashmap(quota_per_second(
                limits.per_ip_per_second,
                limits.per_ip_burst,
            )),
            per_device: DefaultKeyedRateLimiter::hashmap(quota_per_second(
                limits.per_device_per_second,
                limits.per_device_burst,
            )),
            rendezvous: DefaultKeyedRateLimiter::hashmap(
                Quota::per_minute(rdv_rate).allow_burst(rdv_burst),
            ),
            concurrency: tokio::sync::Semaphore::new(
                limits
                    .max_concurrent_requests
                    .min(tokio::sync::Semaphore::MAX_PERMITS),
            ),
            store,
            clock,
            limits,
            committer,
            verifier,
            spaces: Mutex::new(HashMap::new()),
            mailbox_wakers: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            fanout: crate::fanout::FanoutStats::default(),
            sessions: crate::sessions::Sessions::default(),
            web_origins: std::sync::OnceLock::new(),
            help: std::sync::OnceLock::new(),
            push: std::sync::OnceLock::new(),
        }));
        // Other relay processes' appends reach this one's live subscribers
        // (needs a runtime; every caller of `new` in the relay has one).
        if state.0.store.shared() && tokio::runtime::Handle::try_current().is_ok() {
            crate::fanout::start(&state);
        }
        Ok(state)
    }

    /// Tells other relay processes on a shared store about a committed change.
    pub(crate) fn announce(&self, notice: crate::store::Notice) {
        if self.0.store.shared() {
            self.0.store.announce(notice);
        }
    }

    /// The cached slot of a space, if any.
    pub(crate) fn cached_slot(&self, space: SpaceId) -> Option<Arc<Slot>> {
        lock(&self.0.spaces).get(&space).cloned()
    }

    /// The cached slot of a space that has live subscribers here.
    pub(crate) fn live_slot(&self, space: SpaceId) -> Option<Arc<Slot>> {
        self.cached_slot(space)
            .filter(|s| s.live.receiver_count() > 0)
    }

    /// Every space with live subscribers here.
    pub(crate) fn live_spaces(&self) -> Vec<(SpaceId, Arc<Slot>)> {
        lock(&self.0.spaces)
            .iter()
            .filter(|(_, s)| s.live.receiver_count() > 0)
            .map(|(k, s)| (*k, s.clone()))
            .collect()
    }

    /// Forgets `slot` if it is still the one cached for `space`.
    pub(crate) fn forget_this_slot(&self, space: SpaceId, slot: &Slot) {
        let mut g = lock(&self.0.spaces);
        if g.get(&space)
            .is_some_and(|s| std::ptr::eq(Arc::as_ptr(s), slot))
        {
            g.remove(&space);
        }
    }

    /// Lets pages from these origins call the API from a browser (CORS;
    /// `Config::web_origins`). Takes effect once; later calls are ignored.
    pub fn with_web_origins(self, origins: Vec<String>) -> Self {
        let _ = self.0.web_origins.set(origins);
        self
    }

    /// Sets the operator's help words per language (checked by
    /// [`crate::help::check`]). Takes effect once.
    pub fn with_help(self, help: Vec<crate::help::Help>) -> Self {
        let _ = self.0.help.set(help);
        self
    }

    /// The operator's help words per language (empty: the clients' default).
    pub fn help(&self) -> &[crate::help::Help] {
        self.0.help.get().map_or(&[], Vec::as_slice)
    }

    /// Turns Web Push on (issue 16) and starts its task on the current
    /// runtime. Takes effect once; later calls are ignored. Without it the
    /// push routes answer 404 `push_off`.
    pub fn with_push(self, push: crate::push::Push) -> Self {
        if push.settings().enabled {
            let push = Arc::new(push);
            if self.0.push.set(push.clone()).is_ok() {
                crate::push::start(&self, &push);
            }
        }
        self
    }

    /// The push sender, if push is on.
    pub fn push(&self) -> Option<&Arc<crate::push::Push>> {
        self.0.push.get()
    }

    /// Origins whose pages may call the API from a browser.
    pub fn web_origins(&self) -> &[String] {
        self.0.web_origins.get().map_or(&[], Vec::as_slice)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    /// Now, by the injected clock.
    pub fn now_ms(&self) -> u64 {
        self.0.clock.now_ms()
    }

    /// Permits for requests in progress.
    pub(crate) fn concurrency(&self) -> &tokio::sync::Semaphore {
        &self.0.concurrency
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.0.limits
    }

    /// Waits until every write made so far is durable.
    pub(crate) async fn durable(&self) -> Result<(), ApiError> {
        // PostgreSQL's writes committed before they returned.
        if self.0.store.durable_on_write() || self.0.committer.durable().await {
            Ok(())
        } else {
            Err(ApiError::internal())
        }
    }

    /// The cached slot of a space and its member list, loading them from
    /// the store on first use; `keep` caches the decoded member list in the
    /// slot. `Ok(None)` if the space does not exist. With a store other
    /// relay processes write to ([`crate::store::Store::shared`]), the head
    /// and member list are read from the store every time.
    pub(crate) async fn space(
        &self,
        space: SpaceId,
        keep: bool,
    ) -> Result<Option<Loaded>, ApiError> {
        if self.0.store.shared() {
            return self.space_fresh(space).await;
        }
        let now = self.now_ms();
        let cached = lock(&self.0.spaces).get(&space).cloned();
        if let Some(slot) = cached {
            slot.used_ms
                .store(now, std::sync::atomic::Ordering::Relaxed);
            let m = slot.view().members.clone();
            if let Some(m) = m {
                return Ok(Some((slot, m)));
            }
            let Some(rec) = self.0.store.space(space).await? else {
                return Ok(None);
            };
            let m = Arc::new(decode_members(space, &rec.members)?);
            if keep {
                let mut v = slot.view_mut();
                if v.members.is_none() && v.head == rec.head {
                    v.members = Some(m.clone());
                }
            }
            return Ok(Some((slot, m)));
        }
        let Some(rec) = self.0.store.space(space).await? else {
            return Ok(None);
        };
        let m = Arc::new(decode_members(space, &rec.members)?);
        let slot = self.new_slot(now, rec.head, keep.then(|| m.clone()));
        let slot = lock(&self.0.spaces).entry(space).or_insert(slot).clone();
        Ok(Some((slot, m)))
    }

    /// A space's head and member list as the store has them now.
    pub(crate) async fn record(
        &self,
        space: SpaceId,
    ) -> Result<Option<(Head, Arc<Members>)>, ApiError> {
        let Some(rec) = self.0.store.space(space).await? else {
            return Ok(None);
        };
        Ok(Some((
            rec.head,
            Arc::new(decode_members(space, &rec.members)?),
        )))
    }

    fn new_slot(&self, now: u64, head: Head, members: Option<Arc<Members>>) -> Arc<Slot> {
        Arc::new(Slot {
            write: tokio::sync::Mutex::new(()),
            view: RwLock::new(View {
                head,
                members,
                deleted: false,
            }),
            live: broadcast::channel(LIVE_BUFFER).0,
            feed: tokio::sync::Mutex::new(None),
            used_ms: AtomicU64::new(now),
            decoded: Mutex::new(None),
        })
    }

    /// [`AppState::space`] over a shared store: the head and members as the
    /// store has them now, written into the slot (which then only serves
    /// this process's live subscribers and its writers' lock).
    async fn space_fresh(&self, space: SpaceId) -> Result<Option<Loaded>, ApiError> {
        Ok(self.space_fresh_head(space).await?.map(|(l, _)| l))
    }

    /// [`AppState::space`] for an append: on a shared store also the head
    /// read together with the member list, which the append's
    /// compare-and-swap then expects (if another process moved it since,
    /// the swap fails and the client gets the current head: a membership
    /// change moves the head too, so the member list checked is the one in
    /// force at the head the event extends).
    pub(crate) async fn space_for_append(
        &self,
        space: SpaceId,
        fresh: bool,
    ) -> Result<Option<(Arc<Slot>, Arc<Members>, Option<Head>)>, ApiError> {
        if self.0.store.shared() {
            if !fresh {
                // The head and member list as this process last saw them
                // together (its own appends, or a fresh read): the append's
                // compare-and-swap checks that the head is still this one.
                if let Some(slot) = self.cached_slot(space) {
                    let pair = {
                        let v = slot.view();
                        (!v.deleted)
                            .then(|| v.members.clone().map(|m| (v.head, m)))
                            .flatten()
                    };
                    if let Some((head, m)) = pair {
                        slot.used_ms
                            .store(self.now_ms(), std::sync::atomic::Ordering::Relaxed);
                        return Ok(Some((slot, m, Some(head))));
                    }
                }
            }
            return Ok(self
                .space_fresh_head(space)
                .await?
                .map(|((s, m), h)| (s, m, Some(h))));
        }
        Ok(self.space(space, true).await?.map(|(s, m)| (s, m, None)))
    }

    async fn space_fresh_head(&self, space: SpaceId) -> Result<Option<(Loaded, Head)>, ApiError> {
        let Some(rec) = self.0.store.space(space).await? else {
            // Deleted through another process: this one's live subscribers go too.
            if let Some(slot) = self.cached_slot(space) {
                crate::fanout::close_subscribers(self, space, &slot);
            }
            return Ok(None);
        };
        Ok(Some(self.adopt(space, rec)?))
    }

    /// Caches a record just read from a shared store: the space's slot
    /// (created if needed) with this head and member list (decoded only if
    /// the encoding changed since the slot last saw it).
    pub(crate) fn adopt(
        &self,
        space: SpaceId,
        rec: crate::store::SpaceRecord,
    ) -> Result<(Loaded, Head), ApiError> {
        let now = self.now_ms();
        let head = rec.head;
        let slot = self.cached_slot(space).unwrap_or_else(|| {
            let slot = self.new_slot(now, head, None);
            lock(&self.0.spaces).entry(space).or_insert(slot).clone()
        });
        let m = {
            let mut d = lock(&slot.decoded);
            match &*d {
                Some((bytes, m)) if *bytes == rec.members => m.clone(),
                _ => {
                    let m = Arc::new(decode_members(space, &rec.members)?);
                    *d = Some((rec.members, m.clone()));
                    m
                }
            }
        };
        slot.used_ms
            .store(now, std::sync::atomic::Ordering::Relaxed);
        {
            let mut v = slot.view_mut();
            v.head = head;
            v.members = Some(m.clone());
            v.deleted = false;
        }
        Ok(((slot, m), head))
    }

    /// Drops a space from the cache (after a delete, or a failed flush so
    /// the next request reloads it from the store).
    pub(crate) fn forget_slot(&self, space: SpaceId) {
        lock(&self.0.spaces).remove(&space);
    }

    /// Per-address limit: `Err(seconds to wait)` when exceeded.
    pub(crate) fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        check(&self.0.per_ip, &ip)
    }

    /// Per-device limit.
    pub(crate) fn check_device(&self, device: &[u8; 32]) -> Result<(), ApiError> {
        check(&self.0.per_device, device)
    }

    /// Rendezvous open/claim limit per address.
    pub(crate) fn check_rendezvous(&self, ip: IpAddr) -> Result<(), ApiError> {
        check(&self.0.rendezvous, &ip)
    }

    pub(crate) fn mailbox_waker(&self, n: u32) -> Arc<Notify> {
        lock(&self.0.mailbox_wakers).entry(n).or_default().clone()
    }

    /// Wakes the long polls of mailbox `n` here and in the other relay
    /// processes on a shared store.
    pub(crate) fn wake_mailbox(&self, n: u32, forget: bool) {
        self.announce(crate::store::Notice::Mailbox(n));
        self.wake_mailbox_local(n, forget);
    }

    /// Wakes the long polls of mailbox `n` in this process (another
    /// process announced a change).
    pub(crate) fn wake_mailbox_here(&self, n: u32) {
        self.wake_mailbox_local(n, false);
    }

    /// Wakes every long poll here (after notices may have been missed).
    pub(crate) fn wake_all_mailboxes(&self) {
        for w in lock(&self.0.mailbox_wakers).values() {
            w.notify_waiters();
        }
    }

    fn wake_mailbox_local(&self, n: u32, forget: bool) {
        let mut g = lock(&self.0.mailbox_wakers);
        let w = if forget {
            g.remove(&n)
        } else {
            g.get(&n).cloned()
        };
        if let Some(w) = w {
            w.notify_waiters();
        }
    }

    /// The batched signature checker (its counters: `.stats()`).
    pub fn verifier(&self) -> &crate::verify::Verifier {
        &self.0.verifier
    }

    /// Group-commit counters.
    pub fn flush_stats(&self) -> &crate::commit::FlushStats {
        self.0.committer.stats()
    }

    pub(crate) fn sessions(&self) -> &crate::sessions::Sessions {
        &self.0.sessions
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub(crate) fn fanout_stats(&self) -> &crate::fanout::FanoutStats {
        &self.0.fanout
    }

    pub(crate) fn record_request(&self, route: &str, status: u16) {
        let mut g = lock(&self.0.metrics.requests);
        let by_status = match g.get_mut(route) {
            Some(m) => m,
            None => g.entry(route.to_string()).or_default(),
        };
        *by_status.entry(status).or_insert(0) += 1;
    }

    /// Housekeeping: forgets expired nonces and mailboxes and idle rate-limit
    /// entries. Run every minute by [`AppState::spawn_maintenance`].
    pub async fn maintain(&self) -> Result<(), crate::store::StoreError> {
        let now = self.now_ms();
        let window = self.0.limits.time_window_secs.saturating_mul(1000);
        self.0.store.nonce_sweep(now.saturating_sub(window)).await?;
        self.evict_idle(now);
        self.0.sessions.sweep(now);
        crate::routes::rendezvous::sweep(self, now).await?;
        self.0.store.housekeep().await?;
        self.0.per_ip.retain_recent();
        self.0.per_device.retain_recent();
        self.0.rendezvous.retain_recent();
        Ok(())
    }

    /// Keeps the cache of spaces bounded: forgets spaces nobody used for
    /// [`IDLE_EVICT_MS`] and nobody listens to (they reload from the store on
    /// the next request), and the decoded member list of idle spaces that
    /// only have listeners.
    fn evict_idle(&self, now: u64) {
        let mut g = lock(&self.0.spaces);
        g.retain(|_, slot| {
            let idle = now.saturating_sub(slot.used_ms.load(std::sync::atomic::Ordering::Relaxed))
                > IDLE_EVICT_MS;
            let Ok(_writer) = slot.write.try_lock() else {
                return true;
            };
            if !idle {
                return true;
            }
            if slot.live.receiver_count() > 0 {
                slot.view_mut().members = None;
                return true;
            }
            false
        });
    }

    /// How many spaces are cached (for tests and metrics).
    pub fn cached_spaces(&self) -> usize {
        lock(&self.0.spaces).len()
    }

    /// Runs [`AppState::maintain`] every `every` on the current runtime.
    pub fn spawn_maintenance(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            loop {
                t.tick().await;
                let s = state.clone();
                // On a blocking thread: sled's sweeps may take a while.
                let rt = tokio::runtime::Handle::current();
                match tokio::task::spawn_blocking(move || rt.block_on(s.maintain())).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "maintenance failed"),
                    Err(e) => tracing::error!(error = %e, "maintenance task failed"),
                }
            }
        })
    }
}

fn decode_members(space: SpaceId, bytes: &[u8]) -> Result<Members, ApiError> {
    Members::decode(bytes).map_err(|e| {
        tracing::error!(space = %space, error = %e, "stored member list does not decode");
        ApiError::internal()
    })
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), ApiError> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        ApiError::rate_limited(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
    })
}

/// The client's address, as the rate limits see it (request extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);
