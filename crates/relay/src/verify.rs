//! Signature checks of concurrent appends, queued and checked together.
//!
//! An append's event signature was the largest single cost of an append
//! (about a third of its CPU at 64 connections). Signatures are queued and
//! checked together by `troth_core::sign::verify_batch`: one ZIP-215 batch
//! equation, which accepts exactly what a single check accepts
//! (docs/PROTOCOL.md §3) and costs about half a single check per signature
//! at 32–64. There is no
//! verifier thread: a handler queues its signature, lets the other ready
//! tasks run once (so theirs join the queue), and then, unless another
//! handler is already checking, checks everything queued on its own worker
//! and answers each. A failing check is answered for its sender alone: the
//! others after it are checked on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ed25519_dalek::Signature;
use tokio::sync::oneshot;
use troth_core::sign::{BatchItem, PreparedKey, verify_batch};

/// The most signatures checked in one batch: beyond ~32 a batch of many
/// keys is little cheaper per signature (`batch_curve`), and a worker is
/// busy for longer.
pub const MAX_BATCH: usize = 64;

/// How many batches one handler checks before it hands what is still
/// queued to a task of its own (so its own answer is not held up).
const ROUNDS: usize = 4;

/// One signature to check and where to send the answer.
struct Job {
    key: PreparedKey,
    message: Vec<u8>,
    signature: Signature,
    done: oneshot::Sender<bool>,
}

/// Verifier counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct VerifyStats {
    /// Batches checked.
    pub batches: AtomicU64,
    /// Signatures checked in them.
    pub signatures: AtomicU64,
}

#[derive(Default)]
struct Inner {
    queue: Mutex<Vec<Job>>,
    /// A handler is checking a batch; it looks at the queue again after.
    busy: AtomicBool,
    stats: VerifyStats,
}

/// The handle handlers use to check signatures. Cheap to clone.
#[derive(Clone, Default)]
pub struct Verifier(Arc<Inner>);

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier with an empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters.
    pub fn stats(&self) -> &VerifyStats {
        &self.0.stats
    }

    fn queue(&self) -> MutexGuard<'_, Vec<Job>> {
        self.0.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `signature` over `message` passes under `key` (the protocol's
    /// one rule, checked in a batch with those of concurrent requests). `None` only
    /// if the answer was lost, which does not happen short of a panic.
    pub async fn check(
        &self,
        key: &PreparedKey,
        message: Vec<u8>,
        signature: &Signature,
    ) -> Option<bool> {
        let (done, answer) = oneshot::channel();
        self.queue().push(Job {
            key: key.clone(),
            message,
            signature: *signature,
            done,
        });
        // Let the requests that are ready to run queue theirs first.
        tokio::task::yield_now().await;
        self.combine();
        answer.await.ok()
    }

    /// Checks what is queued unless another handler is at it. Whoever holds
    /// `busy` looks at the queue again after letting go, and a handler that
    /// queued finds `busy` free or held by one who will see its job.
    fn combine(&self) {
        for _ in 0..ROUNDS {
            if self.0.busy.swap(true, Ordering::SeqCst) {
                return;
            }
            let jobs: Vec<Job> = {
                let mut q = self.queue();
                let n = q.len().min(MAX_BATCH);
                q.drain(..n).collect()
            };
            if !jobs.is_empty() {
                let answers = check_all(&jobs);
                let stats = &self.0.stats;
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats
                    .signatures
                    .fetch_add(jobs.len() as u64, Ordering::Relaxed);
                for (job, ok) in jobs.into_iter().zip(answers) {
                    let _ = job.done.send(ok);
                }
            }
            self.0.busy.store(false, Ordering::SeqCst);
            if self.queue().is_empty() {
                return;
            }
        }
        let this = self.clone();
        tokio::spawn(async move { this.combine() });
    }
}

/// Each job's answer: one batch, and if it fails, one by one from the
/// first failure on (`verify_batch` checked those before it alone).
fn check_all(jobs: &[Job]) -> Vec<bool> {
    let items: Vec<BatchItem<'_>> = jobs
        .iter()
        .map(|j| BatchItem {
            key: &j.key,
            message: &j.message,
            signature: &j.signature,
        })
        .collect();
    let mut answers = vec![true; items.len()];
    if let Err(first) = verify_batch(&items) {
        for (i, answer) in answers.iter_mut().enumerate().skip(first) {
            *answer = i != first && verify_batch(&items[i..=i]).is_ok();
        }
    }
    answers
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn job(i: u8, good: bool) -> Job {
        let key = SigningKey::from_bytes(&[i; 32]);
        let message = vec![i; 20];
        let signature = key.sign(if good {
            &message[..]
        } else {
            b"something else"
        });
        Job {
            key: PreparedKey::new(key.verifying_key()),
            message,
            signature,
            done: oneshot::channel().0,
        }
    }

    #[test]
    fn every_answer_is_its_own() {
        for bad in [
            vec![],
            vec![0],
            vec![3],
            vec![7],
            vec![1, 2, 6],
            vec![0, 1, 2, 3, 4, 5, 6, 7],
        ] {
            let jobs: Vec<Job> = (0..8u8)
                .map(|i| job(i + 1, !bad.contains(&usize::from(i))))
                .collect();
            let want: Vec<bool> = (0..8).map(|i| !bad.contains(&i)).collect();
            assert_eq!(check_all(&jobs), want, "bad {bad:?}");
        }
    }

    /// Many concurrent checks, some bad, on both runtime flavours: each
    /// gets its own answer, none is lost, and they were batched.
    async fn concurrent(n: u16) {
        let v = Verifier::new();
        let mut tasks = Vec::new();
        for i in 0..n {
            let v = v.clone();
            tasks.push(tokio::spawn(async move {
                let good = i % 7 != 3;
                let key = SigningKey::from_bytes(&[(i % 250) as u8 + 1; 32]);
                let message = i.to_be_bytes().to_vec();
                let sig = key.sign(if good { &message[..] } else { b"nope" });
                let prepared = PreparedKey::new(key.verifying_key());
                (good, v.check(&prepared, message, &sig).await)
            }));
        }
        for t in tasks {
            let (good, answer) = t.await.expect("task");
            assert_eq!(answer, Some(good));
        }
        let s = v.stats();
        assert_eq!(s.signatures.load(Ordering::Relaxed), u64::from(n));
        assert!(s.batches.load(Ordering::Relaxed) < u64::from(n));
        assert!(v.queue().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_checks_on_two_workers() {
        concurrent(500).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_checks_on_one_thread() {
        concurrent(300).await;
    }
}
