//! The PostgreSQL backend (`--store postgres`), for operators who outgrow
//! one machine (issue 19).
//!
//! Tables (created by the versioned migrations in [`MIGRATIONS`]):
//!
//! | table            | key                      | columns                                  |
//! | ---------------- | ------------------------ | ---------------------------------------- |
//! | `spaces`         | `id` (16 bytes)          | `sid` (this incarnation's number), the head (`head_seq`, `head_hash`), the current `members` |
//! | `events`         | (`sid`, `seq`)           | `event`: the event's bytes               |
//! | `deleted_spaces` | `sid`                    | events still to remove after a delete    |
//! | `nonces`         | (`time_ms`, `device`, `nonce`) | –                                  |
//! | `mailboxes`      | `n`                      | `value`: the mailbox (see `rendezvous`)  |
//! | `push_subscriptions` | (`space`, `device`)  | `record`: the device's push subscription (`push::Subscription`, JSON) |
//! | `push_held`      | (`space`, `device`)      | – (a push is held for the device)        |
//! | `troth_schema`   | `version`                | the migrations applied                   |
//!
//! Every write is one statement (its own transaction) and is durable when it
//! returns: the relay acknowledges after the commit, with no group commit of
//! its own. An append is a single statement that moves the head in `spaces`
//! only if it is still the expected one and inserts the event in the same
//! statement; a concurrent writer waits for the row lock, finds the head
//! moved and inserts nothing, so the loser of a race learns the current
//! head and no position is ever written twice (also the primary key
//! `(sid, seq)`). A delete removes the `spaces` row at once (every read
//! joins it), and the old events are removed in batches by
//! [`Store::housekeep`]; a space created again gets a new `sid`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};
use troth_core::SpaceId;
use troth_core::event::EventHash;

use super::{Append, Head, Notice, PushSubscriptions, SpaceRecord, Store, StoreError, StoreFuture};

/// The LISTEN/NOTIFY channel relay processes announce changes on.
pub const CHANNEL: &str = "troth_relay";

/// Most notices sent in one statement.
const NOTIFY_BATCH: usize = 256;

/// How often the listener checks that its connection still answers.
const LISTENER_PING: Duration = Duration::from_secs(5);

/// Longest wait between two attempts to connect the listener.
const LISTENER_MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The schema migrations, in order: (version, what it does, SQL). Applied at
/// start-up (or by `troth-relay migrate`) in one transaction under an
/// advisory lock, so relays starting together apply each once.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "spaces, events, deleted spaces, nonces, mailboxes",
        "CREATE TABLE spaces (
        id bytea PRIMARY KEY,
        sid bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        head_seq bigint NOT NULL,
        head_hash bytea NOT NULL,
        members bytea NOT NULL
    );
    CREATE TABLE events (
        sid bigint NOT NULL,
        seq bigint NOT NULL,
        event bytea NOT NULL,
        PRIMARY KEY (sid, seq)
    );
    CREATE TABLE deleted_spaces (sid bigint PRIMARY KEY);
    CREATE TABLE nonces (
        time_ms bigint NOT NULL,
        device bytea NOT NULL,
        nonce bytea NOT NULL,
        PRIMARY KEY (time_ms, device, nonce)
    );
    CREATE TABLE mailboxes (n bigint PRIMARY KEY, value bytea NOT NULL);",
    ),
    (
        2,
        "push subscriptions (issue 16)",
        "CREATE TABLE push_subscriptions (
        space bytea NOT NULL,
        device bytea NOT NULL,
        record bytea NOT NULL,
        PRIMARY KEY (space, device)
    );",
    ),
    (
        3,
        "pushes held across restarts (issue 16)",
        "CREATE TABLE push_held (
        space bytea NOT NULL,
        device bytea NOT NULL,
        PRIMARY KEY (space, device)
    );",
    ),
];

/// The advisory lock key migrations hold ("troth" in ASCII).
const MIGRATION_LOCK: i64 = 0x74_72_6f_74_68;

/// Events removed per statement when purging a deleted space.
const PURGE_BATCH: i64 = 5000;

/// Statements per [`Store::housekeep`] call at most (so one call stays short).
const PURGE_STATEMENTS: usize = 64;

/// The PostgreSQL backend: a pool of connections to one database, a task
/// that sends this process's notices after their commits, and (once
/// [`Store::notices`] is called) a listener on a connection of its own.
pub struct PgStore {
    pool: Pool,
    max_connections: usize,
    /// The connection settings (the listener connects with them too: a
    /// multi-host URL with `target_session_attrs=read-write` follows the primary).
    config: tokio_postgres::Config,
    /// Notices to send, as payloads.
    outbox: mpsc::UnboundedSender<String>,
    /// This store's random tag in its notices, so that it skips its own.
    origin: String,
    listening: AtomicBool,
    /// Set by tests: notices are dropped, as when a process dies between
    /// its commit and its NOTIFY.
    muted: AtomicBool,
    stats: Arc<PgStats>,
}

/// The listener's and the notifier's counters (for `/metrics`).
#[derive(Default, Debug)]
pub struct PgStats {
    /// 1 while the listener's LISTEN is in force.
    pub listener_connected: AtomicU64,
    /// Times the listener connected and ran LISTEN.
    pub listener_connects: AtomicU64,
    /// Notices of other processes received.
    pub notices_received: AtomicU64,
    /// Notices this process sent.
    pub notices_sent: AtomicU64,
    /// Notices this process could not send (the fan-out's head check makes up for them).
    pub notices_failed: AtomicU64,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

fn pool_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Pool(e.to_string())
}

/// A `u64` as PostgreSQL's `bigint`, saturating (the relay's sequence
/// numbers and times are far below `i64::MAX`).
fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn seq_of(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt("sequence number"))
}

fn hash_of(b: &[u8]) -> Result<EventHash, StoreError> {
    Ok(EventHash(
        b.try_into()
            .map_err(|_| StoreError::Corrupt("event hash"))?,
    ))
}

impl PgStore {
    /// A pool of at most `max_connections` connections to the database
    /// `config` names. Connects once to check that the database answers and
    /// that `synchronous_commit` is not off, and applies the migrations when
    /// `migrate` is set (else refuses a database whose schema is behind).
    pub async fn connect(
        mut config: tokio_postgres::Config,
        max_connections: usize,
        migrate: bool,
    ) -> Result<Self, StoreError> {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_keepalives_idle() > Duration::from_secs(30) {
            config.keepalives_idle(Duration::from_secs(30));
        }
        let mgr = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(pool_err)?;
        let (outbox, queued) = mpsc::unbounded_channel();
        let stats = Arc::new(PgStats::default());
        tokio::spawn(notifier(pool.clone(), queued, stats.clone()));
        let store = PgStore {
            pool,
            max_connections: max_connections.max(1),
            config,
            outbox,
            origin: format!("{:016x}", rand::random::<u64>()),
            listening: AtomicBool::new(false),
            muted: AtomicBool::new(false),
            stats,
        };
        {
            let c = store.pool.get().await.map_err(pool_err)?;
            let row = c.query_one("SHOW synchronous_commit", &[]).await?;
            let sc: String = row.try_get(0)?;
            if sc == "off" {
                return Err(StoreError::Unusable(
                    "synchronous_commit is off on this database; the relay acknowledges only committed appends (set it to on)".into(),
                ));
            }
        }
        if migrate {
            store.migrate().await?;
        } else {
            let (have, want) = store.schema_version().await?;
            if have != want {
                return Err(StoreError::Unusable(format!(
                    "the database schema is at version {have}, this relay needs {want}: run `troth-relay migrate`"
                )));
            }
        }
        Ok(store)
    }

    /// The schema version applied and the one this relay needs.
    pub async fn schema_version(&self) -> Result<(i32, i32), StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let want = MIGRATIONS.last().map_or(0, |m| m.0);
        let exists: bool = c
            .query_one("SELECT to_regclass('troth_schema') IS NOT NULL", &[])
            .await?
            .try_get(0)?;
        if !exists {
            return Ok((0, want));
        }
        let have: Option<i32> = c
            .query_one("SELECT max(version) FROM troth_schema", &[])
            .await?
            .try_get(0)?;
        Ok((have.unwrap_or(0), want))
    }

    /// Applies the migrations not applied yet, in one transaction (so
    /// idempotent, and safe when several relays start at once). Returns the
    /// versions it applied. Refuses a database whose schema is newer than
    /// this relay knows.
    pub async fn migrate(&self) -> Result<Vec<i32>, StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS troth_schema (
                version integer PRIMARY KEY,
                description text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await?;
        let applied: Vec<i32> = tx
            .query("SELECT version FROM troth_schema", &[])
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if let Some(newer) = applied.iter().find(|v| **v > known) {
            return Err(StoreError::Unusable(format!(
                "the database schema is at version {newer}, newer than this relay knows ({known})"
            )));
        }
        let mut done = Vec::new();
        for (version, description, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO troth_schema (version, description) VALUES ($1, $2)",
                &[version, description],
            )
            .await?;
            done.push(*version);
        }
        tx.commit().await?;
        for v in &done {
            tracing::info!(version = v, "database migration applied");
        }
        Ok(done)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_err)
    }

    async fn head(
        c: &deadpool_postgres::Object,
        space: SpaceId,
    ) -> Result<Option<Head>, StoreError> {
        let st = c
            .prepare_cached("SELECT head_seq, head_hash FROM spaces WHERE id = $1")
            .await?;
        let Some(row) = c.query_opt(&st, &[&&space.0[..]]).await? else {
            return Ok(None);
        };
        Ok(Some(Head {
            seq: seq_of(row.try_get(0)?)?,
            hash: hash_of(row.try_get(1)?)?,
        }))
    }

    /// Pool figures: (connections open, idle, tasks waiting for one).
    pub fn pool_status(&self) -> (usize, usize, usize) {
        let s = self.pool.status();
        (s.size, s.available, s.waiting)
    }

    /// Drops this store's notices from now on (`true`) or sends them again:
    /// for tests of what makes up for a notice lost when a relay process dies
    /// between an append's commit and its NOTIFY.
    pub fn mute_notices(&self, muted: bool) {
        self.muted.store(muted, Ordering::Relaxed);
    }

    /// The listener's and notifier's counters.
    pub fn stats(&self) -> &PgStats {
        &self.stats
    }
}

/// A notice as a NOTIFY payload: `<origin> e <space> <seq> <hash>`,
/// `<origin> d <space>` or `<origin> m <n>` (at most ~120 bytes; NOTIFY
/// allows 8000). Never the event itself: the receiver reads it from the table.
fn payload(origin: &str, n: Notice) -> Option<String> {
    Some(match n {
        Notice::Appended { space, head } => format!(
            "{origin} e {} {} {}",
            space.to_hex(),
            head.seq,
            head.hash.to_hex()
        ),
        Notice::Deleted(space) => format!("{origin} d {}", space.to_hex()),
        Notice::Mailbox(m) => format!("{origin} m {m}"),
        Notice::Resync => return None,
    })
}

/// Parses a payload; `None` for this process's own notices and for
/// anything malformed (the channel is ours, but a payload is still input).
fn parse_payload(own: &str, p: &str) -> Option<Notice> {
    let mut it = p.split(' ');
    let origin = it.next()?;
    if origin == own {
        return None;
    }
    let space = |s: Option<&str>| -> Option<SpaceId> {
        let mut b = [0u8; 16];
        hex::decode_to_slice(s?, &mut b).ok()?;
        Some(SpaceId(b))
    };
    let n = match it.next()? {
        "e" => {
            let space = space(it.next())?;
            let seq = it.next()?.parse().ok()?;
            let mut h = [0u8; 32];
            hex::decode_to_slice(it.next()?, &mut h).ok()?;
            Notice::Appended {
                space,
                head: Head {
                    seq,
                    hash: EventHash(h),
                },
            }
        }
        "d" => Notice::Deleted(space(it.next())?),
        "m" => Notice::Mailbox(it.next()?.parse().ok()?),
        _ => return None,
    };
    it.next().is_none().then_some(n)
}

/// Sends queued notices, many per statement, each in its own short
/// transaction after the commit it announces (a NOTIFY inside the append's
/// transaction would hold a database-wide lock through its commit and
/// serialise every append: ../shared/TOOLCHAIN.md).
async fn notifier(pool: Pool, mut queued: mpsc::UnboundedReceiver<String>, stats: Arc<PgStats>) {
    while let Some(first) = queued.recv().await {
        let mut batch = vec![first];
        while batch.len() < NOTIFY_BATCH {
            match queued.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let sent = async {
            let c = pool.get().await.map_err(pool_err)?;
            let st = c
                .prepare_cached("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
                .await?;
            c.execute(&st, &[&CHANNEL, &batch]).await?;
            Ok::<_, StoreError>(())
        };
        match sent.await {
            Ok(()) => {
                stats.notices_sent.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                stats.notices_failed.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(error = %e, notices = n, "could not send notices; the head check will catch up");
            }
        }
    }
}

/// Keeps a LISTEN connection (outside the pool) up: connects, listens,
/// announces [`Notice::Resync`] (so the relay catches up on what it missed
/// while not listening), and forwards notices until the connection fails;
/// then connects again with a growing backoff. Ends when nobody receives.
async fn listener(
    config: tokio_postgres::Config,
    own: String,
    out: mpsc::UnboundedSender<Notice>,
    stats: Arc<PgStats>,
) {
    let mut backoff = Duration::from_millis(50);
    while !out.is_closed() {
        match listen_once(&config, &own, &out, &stats).await {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(e) => tracing::warn!(error = %e, "notification listener: connection failed"),
        }
        stats.listener_connected.store(0, Ordering::Relaxed);
        if out.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LISTENER_MAX_BACKOFF);
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    own: &str,
    out: &mpsc::UnboundedSender<Notice>,
    stats: &Arc<PgStats>,
) -> Result<(), StoreError> {
    let (client, mut conn) = config.connect(NoTls).await?;
    // Notifications arrive only while the connection is driven with
    // poll_message (which also carries the client's own queries).
    let (fwd, own2, st) = (out.clone(), own.to_string(), stats.clone());
    let mut driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if n.channel() != CHANNEL {
                        continue;
                    }
                    if let Some(notice) = parse_payload(&own2, n.payload()) {
                        st.notices_received.fetch_add(1, Ordering::Relaxed);
                        if fwd.send(notice).is_err() {
                            return Ok(());
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    let listen = tokio::time::timeout(
        Duration::from_secs(10),
        client.batch_execute(&format!("LISTEN {CHANNEL}")),
    )
    .await;
    match listen {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            driver.abort();
            return Err(e.into());
        }
        Err(_) => {
            driver.abort();
            return Err(StoreError::Unusable("LISTEN did not answer in 10 s".into()));
        }
    }
    stats.listener_connected.store(1, Ordering::Relaxed);
    stats.listener_connects.fetch_add(1, Ordering::Relaxed);
    if out.send(Notice::Resync).is_err() {
        driver.abort();
        return Ok(());
    }
    loop {
        tokio::select! {
            r = &mut driver => {
                return match r {
                    Ok(Ok(())) => Err(StoreError::Unusable("the listener's connection closed".into())),
                    Ok(Err(e)) => Err(e.into()),
                    Err(e) => Err(StoreError::Unusable(format!("listener task: {e}"))),
                };
            }
            () = tokio::time::sleep(LISTENER_PING) => {
                // A connection to a primary that vanished without a reset
                // would wait forever: check that it answers.
                let ping = tokio::time::timeout(Duration::from_secs(5), client.simple_query("SELECT 1")).await;
                if !matches!(ping, Ok(Ok(_))) {
                    driver.abort();
                    return Err(StoreError::Unusable("the listener's connection stopped answering".into()));
                }
            }
            () = out.closed() => {
                driver.abort();
                return Ok(());
            }
        }
    }
}

impl Store for PgStore {
    fn create_space<'a>(
        &'a self,
        space: SpaceId,
        genesis: &'a [u8],
        record: &'a SpaceRecord,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached(
                    "WITH s AS (
                        INSERT INTO spaces (id, head_seq, head_hash, members)
                        VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING RETURNING sid)
                    INSERT INTO events (sid, seq, event) SELECT sid, $2, $5 FROM s",
                )
                .await?;
            let n = c
                .execute(
                    &st,
                    &[
                        &&space.0[..],
                        &big(record.head.seq),
                        &&record.head.hash.0[..],
                        &record.members.as_slice(),
                        &genesis,
                    ],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn space(&self, space: SpaceId) -> StoreFuture<'_, Option<SpaceRecord>> {
        Box::pin(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached("SELECT head_seq, head_hash, members FROM spaces WHERE id = $1")
                .await?;
            let Some(row) = c.query_opt(&st, &[&&space.0[..]]).await? else {
                return Ok(None);
            };
            Ok(Some(SpaceRecord {
                head: Head {
                    seq: seq_of(row.try_get(0)?)?,
                    hash: hash_of(row.try_get(1)?)?,
                },
                members: row.try_get(2)?,
            }))
        })
    }

    fn append_if_head<'a>(
        &'a self,
        space: SpaceId,
        expected: Head,
        hash: EventHash,
        event: &'a [u8],
        members: Option<&'a [u8]>,
    ) -> StoreFuture<'a, Append> {
        Box::pin(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached(
                    "WITH up AS (
                        UPDATE spaces SET head_seq = $4, head_hash = $5,
                            members = COALESCE($6, members)
                        WHERE id = $1 AND head_seq = $2 AND head_hash = $3 RETURNING sid)
                    INSERT INTO events (sid, seq, event) SELECT sid, $4, $7 FROM up",
                )
                .await?;
            let seq = expected.seq.saturating_add(1);
            // A head equal to the expected one after a failed update means
            // the space was replaced in between (deleted and created again
            // with the same genesis): try again, a few times.
            for _ in 0..3 {
                let n = c
                    .execute(
                        &st,
                        &[
                            &&space.0[..],
                            &big(expected.seq),
                            &&expected.hash.0[..],
                            &big(seq),
                            &&hash.0[..],
                            &members,
                            &event,
                        ],
                    )
                    .await?;
                if n == 1 {
                    return Ok(Append::Done);
                }
                match Self::head(&c, space).await? {
                    None => return Ok(Append::NoSpace),
                    Some(h) if h != expected => return Ok(Append::Stale(h)),
                    Some(_) => {}
                }
            }
            Err(StoreError::Unusable(
                "an append found the expected head but could not move it".into(),
            ))
        })
    }

    fn read_range(
        &self,
        space: SpaceId,
        from: u64,
        upto: u64,
        limit: usize,
    ) -> StoreFuture<'_, Vec<Vec<u8>>> {
        Box::pin(async move {
            if from > upto || limit == 0 {
                return Ok(Vec::new());
            }
            let c = self.client().await?;
            let st = c
                .prepare_cached(
                    "SELECT e.event FROM spaces s JOIN events e ON e.sid = s.sid
                    WHERE s.id = $1 AND e.seq >= $2 AND e.seq <= $3
                    ORDER BY e.seq LIMIT $4",
                )
                .await?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            c.query(&st, &[&&space.0[..], &big(from), &big(upto), &limit])
                .await?
                .iter()
                .map(|r| r.try_get(0).map_err(StoreError::from))
                .collect()
        })
    }

    fn read_page(
        &self,
        space: SpaceId,
        from: u64,
        limit: usize,
    ) -> StoreFuture<'_, Option<(SpaceRecord, Vec<Vec<u8>>)>> {
        Box::pin(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached(
                    "SELECT s.head_seq, s.head_hash, s.members, ARRAY(
                        SELECT e.event FROM events e
                        WHERE e.sid = s.sid AND e.seq >= $2 AND e.seq <= s.head_seq
                        ORDER BY e.seq LIMIT $3)
                    FROM spaces s WHERE s.id = $1",
                )
                .await?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let Some(row) = c
                .query_opt(&st, &[&&space.0[..], &big(from), &limit])
                .await?
            else {
                return Ok(None);
            };
            let rec = SpaceRecord {
                head: Head {
                    seq: seq_of(row.try_get(0)?)?,
                    hash: hash_of(row.try_get(1)?)?,
                },
                members: row.try_get(2)?,
            };
            let events: Vec<Vec<u8>> = row.try_get(3)?;
            Ok(Some((rec, events)))
        })
    }

    fn delete_space(&self, space: SpaceId) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached(
                    "WITH p AS (DELETE FROM push_subscriptions WHERE space = $1),
                    h AS (DELETE FROM push_held WHERE space = $1),
                    d AS (DELETE FROM spaces WHERE id = $1 RETURNING sid)
                    INSERT INTO deleted_spaces (sid) SELECT sid FROM d",
                )
                .await?;
            Ok(c.execute(&st, &[&&space.0[..]]).await? == 1)
        })
    }

    fn push_put<'a>(
        &'a self,
        space: SpaceId,
        device: &'a [u8; 32],
        record: &'a [u8],
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached(
                    "INSERT INTO push_subscriptions (space, device, record) VALUES ($1, $2, $3)
                    ON CONFLICT (space, device) DO UPDATE SET record = EXCLUDED.record",
                )
                .await?;
            c.execute(&st, &[&&space.0[..], &&device[..], &record])
                .await?;
            Ok(())
        })
    }

    fn push_subscriptions(&self, space: SpaceId) -> StoreFuture<'_, PushSubscriptions> {
        Box::pin(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached("SELECT device, record FROM push_subscriptions WHERE space = $1")
                .await?;
            let mut out = Vec::new();
            for row in c.query(&st, &[&&space.0[..]]).await? {
                let device: Vec<u8> = row.try_get(0)?;
                let device: [u8; 32] = device
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("push subscription device"))?;
                out.push((device, row.try_get(1)?));
            }
            Ok(out)
        })
    }

    fn push_delete<'a>(&'a self, space: SpaceId, device: &'a [u8; 32]) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached("DELETE FROM push_subscriptions WHERE space = $1 AND device = $2")
                .await?;
            Ok(c.execute(&st, &[&&space.0[..], &&device[..]]).await? == 1)
        })
    }

    fn push_mark<'a>(
        &'a self,
        space: SpaceId,
        device: &'a [u8; 32],
        held: bool,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let c = self.client().await?;
            let sql = if held {
                "INSERT INTO push_held (space, device) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM push_held WHERE space = $1 AND device = $2"
            };
            let st = c.prepare_cached(sql).await?;
            c.execute(&st, &[&&space.0[..], &&device[..]]).await?;
            Ok(())
        })
    }

    fn push_marked(&self) -> StoreFuture<'_, Vec<(SpaceId, [u8; 32])>> {
        Box::pin(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached("SELECT space, device FROM push_held")
                .await?;
            let mut out = Vec::new();
            for row in c.query(&st, &[]).await? {
                let space: Vec<u8> = row.try_get(0)?;
                let device: Vec<u8> = row.try_get(1)?;
                let bad = || StoreError::Corrupt("push_held row");
                out.push((
                    SpaceId(space.try_into().map_err(|_| bad())?),
                    device.try_into().map_err(|_| bad())?,
                ));
            }
            Ok(out)
        })
    }

    fn nonce_fresh<'a>(
        &'a self,
        time_ms: u64,
        device: &'a [u8; 32],
        nonce: &'a [u8; 16],
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached(
                    "INSERT INTO nonces (time_ms, device, nonce) VALUES ($1, $2, $3)
                    ON CONFLICT DO NOTHING",
                )
                .await?;
            let n = c
                .execute(&st, &[&big(time_ms), &&device[..], &&nonce[..]])
                .await?;
            Ok(n == 1)
        })
    }

    fn nonce_sweep(&self, before_ms: u64) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached("DELETE FROM nonces WHERE time_ms < $1")
                .await?;
            let n = c.execute(&st, &[&big(before_ms)]).await?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn mailbox(&self, n: u32) -> StoreFuture<'_, Option<Vec<u8>>> {
        Box::pin(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached("SELECT value FROM mailboxes WHERE n = $1")
                .await?;
            match c.query_opt(&st, &[&i64::from(n)]).await? {
                Some(row) => Ok(Some(row.try_get(0)?)),
                None => Ok(None),
            }
        })
    }

    fn mailbox_swap<'a>(
        &'a self,
        n: u32,
        old: Option<&'a [u8]>,
        new: Option<&'a [u8]>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let c = self.client().await?;
            let n = i64::from(n);
            let changed = match (old, new) {
                (None, None) => {
                    let st = c
                        .prepare_cached("SELECT NOT EXISTS (SELECT 1 FROM mailboxes WHERE n = $1)")
                        .await?;
                    let absent: bool = c.query_one(&st, &[&n]).await?.try_get(0)?;
                    return Ok(absent);
                }
                (None, Some(new)) => {
                    let st = c
                        .prepare_cached(
                            "INSERT INTO mailboxes (n, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        )
                        .await?;
                    c.execute(&st, &[&n, &new]).await?
                }
                (Some(old), Some(new)) => {
                    let st = c
                        .prepare_cached(
                            "UPDATE mailboxes SET value = $3 WHERE n = $1 AND value = $2",
                        )
                        .await?;
                    c.execute(&st, &[&n, &old, &new]).await?
                }
                (Some(old), None) => {
                    let st = c
                        .prepare_cached("DELETE FROM mailboxes WHERE n = $1 AND value = $2")
                        .await?;
                    c.execute(&st, &[&n, &old]).await?
                }
            };
            Ok(changed == 1)
        })
    }

    fn mailboxes(&self) -> StoreFuture<'_, Vec<u32>> {
        Box::pin(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached("SELECT n FROM mailboxes ORDER BY n")
                .await?;
            c.query(&st, &[])
                .await?
                .iter()
                .map(|r| {
                    let n: i64 = r.try_get(0)?;
                    u32::try_from(n).map_err(|_| StoreError::Corrupt("mailbox number"))
                })
                .collect()
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn durable_on_write(&self) -> bool {
        true
    }

    fn shared(&self) -> bool {
        true
    }

    fn housekeep(&self) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            let c = self.client().await?;
            let pending = c
                .prepare_cached("SELECT sid FROM deleted_spaces ORDER BY sid LIMIT 16")
                .await?;
            let purge = c
                .prepare_cached(
                    "DELETE FROM events WHERE sid = $1 AND seq IN
                    (SELECT seq FROM events WHERE sid = $1 ORDER BY seq LIMIT $2)",
                )
                .await?;
            let done = c
                .prepare_cached("DELETE FROM deleted_spaces WHERE sid = $1")
                .await?;
            let mut removed = 0usize;
            let mut statements = 0usize;
            for row in c.query(&pending, &[]).await? {
                let sid: i64 = row.try_get(0)?;
                loop {
                    if statements >= PURGE_STATEMENTS {
                        return Ok(removed);
                    }
                    statements += 1;
                    let n = c.execute(&purge, &[&sid, &PURGE_BATCH]).await?;
                    removed = removed.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
                    if n < PURGE_BATCH as u64 {
                        break;
                    }
                }
                c.execute(&done, &[&sid]).await?;
            }
            Ok(removed)
        })
    }

    fn announce(&self, notice: Notice) {
        if self.muted.load(Ordering::Relaxed) {
            return;
        }
        if let Some(p) = payload(&self.origin, notice) {
            let _ = self.outbox.send(p);
        }
    }

    fn notices(&self) -> Option<mpsc::UnboundedReceiver<Notice>> {
        if self.listening.swap(true, Ordering::SeqCst) {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(listener(
            self.config.clone(),
            self.origin.clone(),
            tx,
            self.stats.clone(),
        ));
        Some(rx)
    }

    fn heads<'a>(&'a self, spaces: &'a [SpaceId]) -> StoreFuture<'a, Vec<(SpaceId, Head)>> {
        Box::pin(async move {
            if spaces.is_empty() {
                return Ok(Vec::new());
            }
            let mut c = self.client().await?;
            let ids: Vec<&[u8]> = spaces.iter().map(|s| &s.0[..]).collect();
            let tx = c.transaction().await?;
            let rows = tx
                .query(
                    "SELECT id, head_seq, head_hash FROM spaces WHERE id = ANY($1)",
                    &[&ids],
                )
                .await?;
            // Taking a transaction id makes the commit write WAL past every
            // commit this read saw, and wait (synchronous_commit) until a
            // synchronous standby has it: a head visible on the primary but
            // not yet on a standby is not reported before it is safe.
            tx.execute("SELECT txid_current()", &[]).await?;
            tx.commit().await?;
            rows.iter()
                .map(|r| {
                    let id: &[u8] = r.try_get(0)?;
                    let id: [u8; 16] =
                        id.try_into().map_err(|_| StoreError::Corrupt("space id"))?;
                    Ok((
                        SpaceId(id),
                        Head {
                            seq: seq_of(r.try_get(1)?)?,
                            hash: hash_of(r.try_get(2)?)?,
                        },
                    ))
                })
                .collect()
        })
    }

    fn write_metrics(&self, out: &mut String) {
        let s = self.pool.status();
        let st = &self.stats;
        let _ = writeln!(
            out,
            "# HELP troth_relay_pg_pool_connections PostgreSQL connections open in the pool.\n# TYPE troth_relay_pg_pool_connections gauge\ntroth_relay_pg_pool_connections {}\n\
             # HELP troth_relay_pg_pool_idle Pooled connections not in use.\n# TYPE troth_relay_pg_pool_idle gauge\ntroth_relay_pg_pool_idle {}\n\
             # HELP troth_relay_pg_pool_waiting Tasks waiting for a pooled connection.\n# TYPE troth_relay_pg_pool_waiting gauge\ntroth_relay_pg_pool_waiting {}\n\
             # HELP troth_relay_pg_pool_max Most connections the pool opens.\n# TYPE troth_relay_pg_pool_max gauge\ntroth_relay_pg_pool_max {}\n\
             # HELP troth_relay_pg_listener_connected 1 while the notification listener is connected and listening.\n# TYPE troth_relay_pg_listener_connected gauge\ntroth_relay_pg_listener_connected {}\n\
             # HELP troth_relay_pg_listener_connects_total Times the listener connected (more than one: it reconnected, and caught up).\n# TYPE troth_relay_pg_listener_connects_total counter\ntroth_relay_pg_listener_connects_total {}\n\
             # HELP troth_relay_pg_notices_received_total Notices of other relay processes received.\n# TYPE troth_relay_pg_notices_received_total counter\ntroth_relay_pg_notices_received_total {}\n\
             # HELP troth_relay_pg_notices_sent_total Notices this process sent after its commits.\n# TYPE troth_relay_pg_notices_sent_total counter\ntroth_relay_pg_notices_sent_total {}\n\
             # HELP troth_relay_pg_notices_failed_total Notices that could not be sent (the head check makes up for them).\n# TYPE troth_relay_pg_notices_failed_total counter\ntroth_relay_pg_notices_failed_total {}",
            s.size,
            s.available,
            s.waiting,
            self.max_connections,
            st.listener_connected.load(Ordering::Relaxed),
            st.listener_connects.load(Ordering::Relaxed),
            st.notices_received.load(Ordering::Relaxed),
            st.notices_sent.load(Ordering::Relaxed),
            st.notices_failed.load(Ordering::Relaxed),
        );
    }

    fn health(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let c = self.client().await?;
            c.simple_query("SELECT 1").await?;
            Ok(())
        })
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn size_on_disk(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let c = self.client().await?;
            let n: i64 = c
                .query_one("SELECT pg_database_size(current_database())", &[])
                .await?
                .try_get(0)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }
}
