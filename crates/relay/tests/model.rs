//! The sled, memory and PostgreSQL stores against a plain model
//! (`BTreeMap`s) under random operations, including closing and reopening
//! the database.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use troth_core::SpaceId;
use troth_core::event::EventHash;

use troth_relay::store::{Append, Head, MemoryStore, PgStore, SledStore, SpaceRecord, Store};

mod common;

#[derive(Clone, Debug)]
enum Op {
    Create(u8, Vec<u8>),
    Append {
        space: u8,
        stale: bool,
        payload: Vec<u8>,
    },
    Read {
        space: u8,
        from: u64,
        limit: usize,
    },
    Delete(u8),
    Nonce {
        time: u64,
        device: u8,
        nonce: u8,
    },
    Sweep(u64),
    MailboxSwap {
        n: u32,
        expect_current: bool,
        new: Option<Vec<u8>>,
    },
    Reopen {
        flush: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u8..4, prop::collection::vec(any::<u8>(), 1..40)).prop_map(|(s, g)| Op::Create(s, g)),
        4 => (0u8..4, prop::bool::weighted(0.2), prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(space, stale, payload)| Op::Append { space, stale, payload }),
        2 => (0u8..4, 0u64..12, 1usize..6).prop_map(|(space, from, limit)| Op::Read { space, from, limit }),
        1 => (0u8..4).prop_map(Op::Delete),
        2 => (0u64..6, 0u8..3, 0u8..3).prop_map(|(time, device, nonce)| Op::Nonce { time, device, nonce }),
        1 => (0u64..7).prop_map(Op::Sweep),
        2 => (1u32..4, any::<bool>(), prop::option::of(prop::collection::vec(any::<u8>(), 0..20)))
            .prop_map(|(n, expect_current, new)| Op::MailboxSwap { n, expect_current, new }),
        1 => any::<bool>().prop_map(|flush| Op::Reopen { flush }),
    ]
}

#[derive(Default)]
struct Model {
    spaces: BTreeMap<u8, (Vec<Vec<u8>>, Vec<u8>)>,
    nonces: BTreeSet<(u64, u8, u8)>,
    mailboxes: BTreeMap<u32, Vec<u8>>,
}

fn sid(i: u8) -> SpaceId {
    SpaceId([i + 1; 16])
}

fn hash(b: &[u8]) -> EventHash {
    EventHash(Sha256::digest(b).into())
}

fn head_of(log: &[Vec<u8>]) -> Head {
    Head {
        seq: log.len() as u64 - 1,
        hash: log.last().map(|b| hash(b)).unwrap_or(EventHash::ZERO),
    }
}

/// Which backend a run checks.
#[derive(Clone, Copy)]
enum Backend {
    Sled,
    /// The in-memory backend; "reopen" keeps the same store (it has no disk).
    Memory,
    /// A real PostgreSQL (tests/common/pg.rs), a database emptied per case;
    /// "reopen" connects a new pool to the same database.
    Postgres,
}

/// The database the PostgreSQL cases share (one test, its cases in turn),
/// emptied for each case: a fresh database per case cost ~0.4 s each.
async fn postgres_emptied() -> Result<String, TestCaseError> {
    static DB: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let fail = |e: tokio_postgres::Error| TestCaseError::fail(e.to_string());
    let name = DB
        .get_or_init(|| async {
            let name = common::pg::fresh_database().await;
            // Applies the schema.
            drop(common::pg::store_on(&name).await);
            name
        })
        .await
        .clone();
    let (client, conn) = common::pg::config(&name)
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(fail)?;
    let task = tokio::spawn(conn);
    client
        .batch_execute(
            "TRUNCATE spaces, events, deleted_spaces, nonces, mailboxes RESTART IDENTITY",
        )
        .await
        .map_err(fail)?;
    drop(client);
    let _ = task.await;
    Ok(name)
}

/// Where a run's store lives, to open it again.
struct Place {
    backend: Backend,
    dir: tempfile::TempDir,
    memory: Arc<MemoryStore>,
    db: String,
}

impl Place {
    async fn new(backend: Backend) -> Result<Self, TestCaseError> {
        let db = match backend {
            Backend::Postgres => postgres_emptied().await?,
            _ => String::new(),
        };
        Ok(Place {
            backend,
            dir: tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?,
            memory: Arc::new(MemoryStore::new()),
            db,
        })
    }

    async fn open(&self) -> Result<Arc<dyn Store>, TestCaseError> {
        match self.backend {
            Backend::Memory => return Ok(self.memory.clone()),
            Backend::Postgres => {
                let s = PgStore::connect(common::pg::config(&self.db), 2, true)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                return Ok(Arc::new(s));
            }
            Backend::Sled => {}
        }
        // sled releases its file lock a moment after the last handle is dropped.
        let mut tries = 0;
        loop {
            match SledStore::open(self.dir.path(), 4 << 20) {
                Ok(s) => return Ok(Arc::new(s)),
                Err(e) if tries < 500 && e.to_string().contains("lock") => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            }
        }
    }
}

fn run(ops: Vec<Op>, backend: Backend) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    rt.block_on(run_async(ops, backend))
}

async fn run_async(ops: Vec<Op>, backend: Backend) -> Result<(), TestCaseError> {
    let place = Place::new(backend).await?;
    let mut store = place.open().await?;
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Create(s, genesis) => {
                let rec = SpaceRecord {
                    head: Head {
                        seq: 0,
                        hash: hash(&genesis),
                    },
                    members: vec![s],
                };
                let got = store
                    .create_space(sid(s), &genesis, &rec)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let want = !m.spaces.contains_key(&s);
                prop_assert_eq!(got, want);
                if want {
                    m.spaces.insert(s, (vec![genesis], vec![s]));
                }
            }
            Op::Append {
                space,
                stale,
                payload,
            } => {
                let expected = match m.spaces.get(&space) {
                    Some((log, _)) if !stale => head_of(log),
                    Some((log, _)) => Head {
                        seq: log.len() as u64,
                        hash: EventHash([3; 32]),
                    },
                    None => Head {
                        seq: 0,
                        hash: EventHash::ZERO,
                    },
                };
                // Some events change the member list (control events), most do not.
                let members = payload
                    .first()
                    .filter(|b| **b % 4 == 0)
                    .map(|_| payload.iter().take(3).copied().collect::<Vec<u8>>());
                let got = store
                    .append_if_head(
                        sid(space),
                        expected,
                        hash(&payload),
                        &payload,
                        members.as_deref(),
                    )
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                match m.spaces.get_mut(&space) {
                    None => prop_assert_eq!(got, Append::NoSpace),
                    Some((log, _)) if stale => prop_assert_eq!(got, Append::Stale(head_of(log))),
                    Some((log, mem)) => {
                        prop_assert_eq!(got, Append::Done);
                        log.push(payload);
                        if let Some(m) = members {
                            *mem = m;
                        }
                    }
                }
            }
            Op::Read { space, from, limit } => {
                let upto = m
                    .spaces
                    .get(&space)
                    .map(|(l, _)| l.len() as u64 - 1)
                    .unwrap_or(0);
                let got = store
                    .read_range(sid(space), from, upto, limit)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let want: Vec<Vec<u8>> = m
                    .spaces
                    .get(&space)
                    .map(|(l, _)| l.iter().skip(from as usize).take(limit).cloned().collect())
                    .unwrap_or_default();
                prop_assert_eq!(&got, &want);
                // The record and the page read together: the same events,
                // and the record as `space` gives it.
                let page = store
                    .read_page(sid(space), from, limit)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let rec = store
                    .space(sid(space))
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                match (page, rec) {
                    (Some((r, events)), Some(rec)) => {
                        prop_assert_eq!(r, rec);
                        prop_assert_eq!(events, want);
                    }
                    (None, None) => {}
                    (p, r) => prop_assert!(false, "read_page {:?} but space {:?}", p, r),
                }
            }
            Op::Delete(s) => {
                let got = store
                    .delete_space(sid(s))
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(got, m.spaces.remove(&s).is_some());
            }
            Op::Nonce {
                time,
                device,
                nonce,
            } => {
                let got = store
                    .nonce_fresh(time, &[device; 32], &[nonce; 16])
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(got, m.nonces.insert((time, device, nonce)));
            }
            Op::Sweep(before) => {
                let got = store
                    .nonce_sweep(before)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let keep = m.nonces.split_off(&(before, 0, 0));
                prop_assert_eq!(got, m.nonces.len());
                m.nonces = keep;
            }
            Op::MailboxSwap {
                n,
                expect_current,
                new,
            } => {
                let cur = m.mailboxes.get(&n).cloned();
                let old = if expect_current {
                    cur.clone()
                } else {
                    Some(vec![0xee])
                };
                let got = store
                    .mailbox_swap(n, old.as_deref(), new.as_deref())
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let want = old == cur;
                prop_assert_eq!(got, want);
                if want {
                    match new {
                        Some(v) => m.mailboxes.insert(n, v),
                        None => m.mailboxes.remove(&n),
                    };
                }
            }
            Op::Reopen { flush } => {
                if flush {
                    store
                        .flush()
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
                drop(store);
                store = place.open().await?;
            }
        }
        // After every step: heads, members and mailboxes agree.
        for s in 0..4u8 {
            let got = store
                .space(sid(s))
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let want = m.spaces.get(&s).map(|(log, mem)| SpaceRecord {
                head: head_of(log),
                members: mem.clone(),
            });
            prop_assert_eq!(got, want);
        }
        let boxes = store
            .mailboxes()
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(boxes, m.mailboxes.keys().copied().collect::<Vec<u32>>());
    }
    // Finally every log in full, after one more reopen.
    drop(store);
    let store = place.open().await?;
    for (s, (log, _)) in &m.spaces {
        let got = store
            .read_range(sid(*s), 0, u64::MAX, usize::MAX)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&got, log);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn sled_store_matches_the_model(ops in prop::collection::vec(op(), 1..80)) {
        run(ops, Backend::Sled)?;
    }

    #[test]
    fn postgres_store_matches_the_model(ops in prop::collection::vec(op(), 1..80)) {
        run(ops, Backend::Postgres)?;
    }

    #[test]
    fn memory_store_matches_the_model(ops in prop::collection::vec(op(), 1..80)) {
        run(ops, Backend::Memory)?;
    }
}
