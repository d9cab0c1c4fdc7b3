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

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use troth_core::SpaceId;
use troth_core::event::EventHash;

use super::{Append, Head, SpaceRecord, Store, StoreError, StoreFuture};

/// The schema migrations, in order: (version, what it does, SQL). Applied at
/// start-up (or by `troth-relay migrate`) in one transaction under an
/// advisory lock, so relays starting together apply each once.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(
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
)];

/// The advisory lock key migrations hold ("troth" in ASCII).
const MIGRATION_LOCK: i64 = 0x74_72_6f_74_68;

/// Events removed per statement when purging a deleted space.
const PURGE_BATCH: i64 = 5000;

/// Statements per [`Store::housekeep`] call at most (so one call stays short).
const PURGE_STATEMENTS: usize = 64;

/// The PostgreSQL backend: a pool of connections to one database.
pub struct PgStore {
    pool: Pool,
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
        let mgr = Manager::from_config(
            config,
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
        let store = PgStore { pool };
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

    fn delete_space(&self, space: SpaceId) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached(
                    "WITH d AS (DELETE FROM spaces WHERE id = $1 RETURNING sid)
                    INSERT INTO deleted_spaces (sid) SELECT sid FROM d",
                )
                .await?;
            Ok(c.execute(&st, &[&&space.0[..]]).await? == 1)
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
