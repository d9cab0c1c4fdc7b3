//! Live fan-out: each space's live subscribers in this process get every
//! durable event once and in order, whichever relay process appended it.
//!
//! Each cached space ([`Slot`]) keeps a *feed*: the head its subscribers
//! have been sent up to. Frames are sent only under the feed's lock and only
//! for the position right after it, so they go out in order and never twice,
//! however the news of an append arrives:
//!
//! - an append through this process, after its commit returned (the event
//!   is at hand: no read);
//! - a notice from another process (PostgreSQL LISTEN/NOTIFY, sent after
//!   that process's commit returned): the events between the feed and the
//!   announced head are read from the store — which also fills any gap left
//!   by a notice that was lost or arrived out of order;
//! - the head check every [`HEAD_CHECK`] (and after the listener
//!   reconnected): the heads of every space with subscribers, read in a
//!   transaction that commits only once a synchronous standby has
//!   everything it saw ([`crate::store::Store::heads`]). The safety net for
//!   notices lost while a process crashed between its commit and its NOTIFY,
//!   or while the listener was reconnecting.
//!
//! A subscriber's `ready` frame carries the feed's head, so it gets every
//! event after that one. With sled (one process) only the first source exists.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::json;
use tokio::sync::broadcast;
use troth_core::SpaceId;
use troth_core::event::{Body, Event};

use crate::error::ApiError;
use crate::routes::to_b64;
use crate::state::{AppState, Inner, LiveFrame, Slot};
use crate::store::{Head, Notice};

/// How often the heads of spaces with live subscribers are checked against
/// the store (shared stores only).
pub const HEAD_CHECK: Duration = Duration::from_secs(2);

/// Events read per catch-up query.
const CATCH_UP_PAGE: usize = 64;

/// Counters for `/metrics`.
#[derive(Default)]
pub(crate) struct FanoutStats {
    /// Frames sent to live subscribers (once per event per process).
    pub frames: AtomicU64,
    /// Of those, events read from the store (another process appended them).
    pub caught_up: AtomicU64,
    /// Head checks run.
    pub head_checks: AtomicU64,
    /// Notices of other processes handled.
    pub notices: AtomicU64,
}

/// The frame live subscribers get for an event.
pub(crate) fn frame(head: Head, event: &[u8]) -> LiveFrame {
    let f = json!({ "seq": head.seq, "hash": head.hash.to_hex(), "event": to_b64(event) });
    Arc::from(f.to_string())
}

/// Subscribes to a space's live events: the receiver and the head after
/// which its frames start.
pub(crate) async fn subscribe(
    state: &AppState,
    space: SpaceId,
    slot: &Slot,
) -> Result<(broadcast::Receiver<LiveFrame>, Head), ApiError> {
    let mut feed = slot.feed.lock().await;
    if slot.view().deleted {
        return Err(ApiError::no_space());
    }
    let others = slot.live.receiver_count() > 0;
    let rx = slot.live.subscribe();
    let at = match *feed {
        // Frames were sent to others up to here: go on from there.
        Some(h) if others => h,
        // Nobody listened: nothing kept the feed current. Start from the
        // head as the store has it now (this process's view, with sled).
        _ => {
            let h = if state.store().shared() {
                state.record(space).await?.ok_or_else(ApiError::no_space)?.0
            } else {
                slot.view().head
            };
            *feed = Some(h);
            h
        }
    };
    Ok((rx, at))
}

/// Brings a space's live subscribers up to `target` (a durable head):
/// `known` is the event at `target` when it is at hand (this process
/// appended it); anything else is read from the store.
pub(crate) async fn pump(
    state: &AppState,
    space: SpaceId,
    slot: &Arc<Slot>,
    target: Head,
    known: Option<&Event>,
) {
    if slot.live.receiver_count() == 0 {
        return;
    }
    let mut feed = slot.feed.lock().await;
    if slot.live.receiver_count() == 0 {
        *feed = None;
        return;
    }
    let Some(mut at) = *feed else { return };
    if target.seq <= at.seq {
        return;
    }
    let stats = &state.0.fanout;
    if let Some(ev) = known {
        let h = ev.header();
        if h.seq == at.seq.saturating_add(1) && h.seq == target.seq && h.prev == at.hash {
            let _ = slot.live.send(frame(target, ev.as_bytes()));
            stats.frames.fetch_add(1, Ordering::Relaxed);
            *feed = Some(target);
            return;
        }
    }
    // Catch up from the store, no further than the durable target.
    while at.seq < target.seq {
        let from = at.seq.saturating_add(1);
        let page = match state
            .store()
            .read_range(space, from, target.seq, CATCH_UP_PAGE)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                // The next notice or head check tries again from `at`.
                tracing::warn!(space = %space, error = %e, "live catch-up read failed");
                break;
            }
        };
        if page.is_empty() {
            break;
        }
        for bytes in page {
            let Ok(ev) = Event::decode(&bytes) else {
                tracing::error!(space = %space, "a stored event does not decode");
                *feed = None;
                close_subscribers(state, space, slot);
                return;
            };
            let h = ev.header();
            if h.seq != at.seq.saturating_add(1) || h.prev != at.hash {
                // Not the log the subscribers followed (deleted and created
                // again): they reconnect and start over.
                *feed = None;
                close_subscribers(state, space, slot);
                return;
            }
            let head = Head {
                seq: h.seq,
                hash: ev.hash(),
            };
            if matches!(ev.body(), Body::Control(_)) {
                // A membership change: the live loop checks each frame's
                // recipient against the member list, so refresh it first.
                match state.record(space).await {
                    Ok(Some((h, m))) => {
                        // Head and members stay a pair read together.
                        let mut v = slot.view_mut();
                        v.head = h;
                        v.members = Some(m);
                    }
                    Ok(None) => {
                        *feed = None;
                        close_subscribers(state, space, slot);
                        return;
                    }
                    Err(_) => break,
                }
            }
            let _ = slot.live.send(frame(head, &bytes));
            stats.frames.fetch_add(1, Ordering::Relaxed);
            stats.caught_up.fetch_add(1, Ordering::Relaxed);
            at = head;
            *feed = Some(at);
        }
    }
}

/// Tells a space's live subscribers in this process that it is gone, and
/// forgets its slot.
pub(crate) fn close_subscribers(state: &AppState, space: SpaceId, slot: &Slot) {
    slot.view_mut().deleted = true;
    // An empty frame tells live subscribers the space is gone.
    let _ = slot.live.send(Arc::from(""));
    state.forget_this_slot(space, slot);
}

/// Starts the fan-out across processes for a shared store: a task that
/// handles other processes' notices and checks the heads of live spaces
/// every [`HEAD_CHECK`]. Ends when the state is dropped.
pub(crate) fn start(state: &AppState) {
    let Some(mut notices) = state.store().notices() else {
        return;
    };
    let weak: Weak<Inner> = Arc::downgrade(&state.0);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEAD_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let notice = tokio::select! {
                n = notices.recv() => match n {
                    Some(n) => Some(n),
                    None => return,
                },
                _ = tick.tick() => None,
            };
            let Some(inner) = weak.upgrade() else { return };
            let state = AppState(inner);
            match notice {
                Some(n) => handle(&state, n),
                None => {
                    tokio::spawn(async move { head_check(&state).await });
                }
            }
        }
    });
}

fn handle(state: &AppState, notice: Notice) {
    state.0.fanout.notices.fetch_add(1, Ordering::Relaxed);
    match notice {
        Notice::Appended { space, head } => {
            let Some(slot) = state.live_slot(space) else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move { pump(&state, space, &slot, head, None).await });
        }
        Notice::Deleted(space) => {
            state.sessions().forget_space(space);
            if let Some(slot) = state.cached_slot(space) {
                close_subscribers(state, space, &slot);
            }
        }
        Notice::Mailbox(n) => state.wake_mailbox_here(n),
        Notice::Resync => {
            state.wake_all_mailboxes();
            let state = state.clone();
            tokio::spawn(async move { head_check(&state).await });
        }
    }
}

/// Compares the heads of this process's live spaces with the store's and
/// catches up (or closes the subscribers of a space that is gone).
async fn head_check(state: &AppState) {
    let live = state.live_spaces();
    if live.is_empty() {
        return;
    }
    state.0.fanout.head_checks.fetch_add(1, Ordering::Relaxed);
    let ids: Vec<SpaceId> = live.iter().map(|(s, _)| *s).collect();
    let heads = match state.store().heads(&ids).await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "live head check failed");
            return;
        }
    };
    let heads: std::collections::HashMap<SpaceId, Head> = heads.into_iter().collect();
    for (space, slot) in live {
        match heads.get(&space) {
            Some(h) => pump(state, space, &slot, *h, None).await,
            None => close_subscribers(state, space, &slot),
        }
    }
}
