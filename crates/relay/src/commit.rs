//! Group commit: one flusher thread makes writes durable in batches.
//!
//! A writer first writes to the store, then calls [`Committer::durable`]; the
//! flusher takes every waiter queued so far (under load, after letting more
//! gather for [`GATHER`]), calls the store's blocking `flush()` once, and
//! wakes them all. A flush that starts after a waiter was
//! queued covers that waiter's write. (sled 0.34's `flush_async` deadlocks
//! when many tasks call it at once; this never does.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::store::Store;

type Waiter = oneshot::Sender<bool>;

/// How long the flusher lets writes gather under load: at most this is added
/// to an acknowledgement's latency (measured: 2.7 → ~13 writes per flush and
/// ~1.4× the appends per second at 64 connections; since appends' signatures
/// are checked in batches, 250 µs does as well as 500 µs with less latency;
/// docs/BENCHMARKS.md).
const GATHER: std::time::Duration = std::time::Duration::from_micros(250);

/// Flush counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct FlushStats {
    /// Flushes done.
    pub flushes: AtomicU64,
    /// Writers woken by those flushes.
    pub waiters: AtomicU64,
    /// Time spent flushing, in µs.
    pub micros: AtomicU64,
}

/// The handle writers use to wait for durability.
#[derive(Clone, Debug)]
pub struct Committer {
    tx: mpsc::UnboundedSender<Waiter>,
    stats: Arc<FlushStats>,
}

impl Committer {
    /// Starts the flusher thread for `store`. It stops when every handle is gone.
    pub fn start(store: Arc<dyn Store>) -> std::io::Result<Self> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
        let stats = Arc::new(FlushStats::default());
        let st = stats.clone();
        std::thread::Builder::new()
            .name("troth-relay-flusher".into())
            .spawn(move || {
                let mut batch = Vec::new();
                let mut last = 0usize;
                while let Some(w) = rx.blocking_recv() {
                    batch.push(w);
                    // Under load (the last flush covered several writes),
                    // let a few more writes join before flushing: each flush
                    // costs sled's IO threads a round of wake-ups and a sync,
                    // so fewer, larger flushes leave more CPU for requests.
                    // One writer alone is flushed at once.
                    if last > 1 {
                        std::thread::sleep(GATHER);
                    }
                    while let Ok(w) = rx.try_recv() {
                        batch.push(w);
                    }
                    let t = Instant::now();
                    let ok = match store.flush() {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::error!(error = %e, "flush failed");
                            false
                        }
                    };
                    st.flushes.fetch_add(1, Ordering::Relaxed);
                    st.waiters.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    st.micros
                        .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                    last = batch.len();
                    for w in batch.drain(..) {
                        let _ = w.send(ok);
                    }
                }
            })?;
        Ok(Committer { tx, stats })
    }

    /// Flush counters.
    pub fn stats(&self) -> &FlushStats {
        &self.stats
    }

    /// Waits until everything written before this call is durable. `false` if
    /// the flush failed.
    pub async fn durable(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(tx).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}
