// The space saved in this browser: one sealed meta record and each verified
// event sealed once under its own key (docs/WEB.md, "What is stored in the
// browser"). Opening it starts from the sealed snapshot of the verified
// state when one matches, and re-checks the chain against the saved head.
import { Space } from '../troth_wasm.js';
import { store } from './store.js';
import { spaceApi, relayUrl } from './api.js';
import { S } from './state.js';
import { connectLive, sync } from './sync.js';

/**
 * Opens the space this browser saved. Every record is sealed in wasm under a
 * key derived from the device key, its context naming the record; the meta
 * record carries the role, the anchors authenticated at pairing, the
 * "compared" mark, the relay and the verified head. The sealed snapshot of
 * the verified state (`snap`) is used when it opens for this space at a head
 * on the stored chain: the stored events after it are verified on top, and
 * the result must end at the meta record's head. Otherwise every stored
 * event is verified again. Anything that does not open, or a chain that
 * does not end at that head, is refused (false) and nothing is used, sent or
 * overwritten.
 */
export async function openSpace(sealed) {
  const keys = S.keys;
  let space;
  try {
    const meta = JSON.parse(keys.openLocal('idb:meta', sealed));
    if (meta.relay !== relayUrl()) throw new Error('changed');
    const ends = (sp) => sp.eventCount === meta.count && (sp.headHash || null) === meta.head;
    const restored = await fromSnapshot(keys, meta);
    space = restored && restored.space;
    if (space && !ends(space)) { space.free(); space = null; }
    S.snapAt = space ? restored.seq + 1 : -1;
    // On this page's own timeline only (tests and the benchmark read it).
    if (space) performance.mark('troth:from-snapshot');
    if (!space) {
      const a = meta.anchors;
      space = Space.open(keys, meta.role, meta.id, a.leading || undefined, a.rebuilding || undefined);
      // What this browser forgot as agreed: never reopened from old envelopes.
      if (meta.forgetting) space.restoreForgetting(meta.forgetting);
      const events = meta.count ? await store.events(0, meta.count) : [];
      if ((events.length && space.ingestSaved(0, events).error) || !ends(space)) throw new Error('changed');
    }
    if (keys !== S.keys) { space.free(); return true; }
    S.meta = meta;
    S.saved = meta.count;
  } catch {
    try { space && space.free(); } catch { /* */ }
    return false;
  }
  S.space = space;
  S.api = spaceApi(space);
  // Forgetting on schedule runs on opening as well as after each sync, so
  // it happens on time even while the relay can't be reached.
  if (space.forget(Date.now()) > 0) { S.snapAt = -1; persist(); }
  // Opened the long way (or many events after the snapshot): save one
  // once the first screen is drawn.
  if (S.snapAt < 0) snapshotSoon(500);
  else if (S.saved - S.snapAt > 50) snapshotSoon();
  connectLive();
  sync();
  return true;
}

/** The space restored from its sealed snapshot and the stored events after it, and the snapshot's head (`{space, seq}`), or null (the full path then decides). */
async function fromSnapshot(keys, meta) {
  let space = null;
  try {
    const snap = await store.get('snap');
    if (!snap || !Number.isInteger(snap.seq) || snap.seq >= meta.count) return null;
    const a = meta.anchors;
    space = Space.restore(keys, meta.role, meta.id, a.leading || undefined, a.rebuilding || undefined, snap.seq, snap.head, snap.sealed);
    // The stored records from its head on: exactly up to the saved head,
    // the newest (or, at the head itself, the snapshot's own) verified on top.
    const from = snap.seq + 1;
    const recs = await store.events(snap.seq, meta.count + 1);
    if (recs.length !== meta.count - snap.seq) throw new Error('changed');
    const head = keys.openLocal(`idb:event:${snap.seq}`, recs[0]);
    if (!Space.isHead(head, snap.seq, snap.head)) throw new Error('changed');
    if (from < meta.count && space.ingestSaved(from, recs.slice(1)).error) throw new Error('changed');
    // It must have forgotten exactly what this browser forgot, and
    // forgetting must not be due (that reads the old events: full path).
    if ((space.forgottenEpochs ? space.forgettingRecord() : undefined) !== meta.forgetting
      || space.needsHistory(Date.now())) throw new Error('stale');
    return { space, seq: snap.seq };
  } catch {
    try { space && space.free(); } catch { /* */ }
    return null;
  }
}

/**
 * Saves a sealed snapshot of the verified state (core's `Replica::snapshot`,
 * bound to the space and the head) a little after the last save, in the save
 * queue, so that writing it (it grows with the state) is never part of an
 * action. Only a head already saved is snapshotted.
 */
export function snapshotSoon(delay = 2000) {
  clearTimeout(snapshotSoon.t);
  snapshotSoon.t = setTimeout(() => { persist.q = (persist.q || Promise.resolve()).then(writeSnapshot); }, delay);
}

async function writeSnapshot() {
  const { space } = S;
  try {
    if (!space || S.saved !== space.eventCount || S.snapAt === S.saved) return;
    const snap = space.snapshot();
    if (!snap) return;
    await store.setIf('snap', snap, 'space');
    if (space === S.space) S.snapAt = snap.seq + 1;
  } catch { /* locked meanwhile: the next open verifies the rest */ }
}

/** On locking, before the handles are freed: seals the snapshot now if the saved head has none yet (the write itself needs no handle). */
export function snapshotOnLock() {
  clearTimeout(snapshotSoon.t);
  const { space } = S;
  try {
    if (!space || S.saved !== space.eventCount || S.snapAt === S.saved) return;
    const snap = space.snapshot();
    if (snap) store.setIf('snap', snap, 'space').catch(() => {});
  } catch { /* already freed */ }
}

/** Saves the meta record and the events not saved yet, sealed, in one transaction (one at a time). */
export function persist() {
  const run = async () => {
    const { space, keys } = S;
    if (!space || !keys) return;
    try {
      const from = S.saved || 0;
      const evs = space.eventsFrom(from);
      S.meta = { ...S.meta, id: space.id, role: space.role, anchors: space.anchors, count: from + evs.length,
        head: space.headHash || null, relay: relayUrl(),
        forgetting: space.forgottenEpochs ? space.forgettingRecord() : undefined };
      const pairs = evs.map((e, i) => [['ev', from + i], keys.sealLocal(`idb:event:${from + i}`, e)]);
      pairs.push(['space', keys.sealLocal('idb:meta', JSON.stringify(S.meta))]);
      await store.putAll(pairs);
      if (space === S.space) S.saved = from + evs.length;
      if (evs.length || S.snapAt < 0) snapshotSoon();
    } catch { /* locked meanwhile: nothing to save */ }
  };
  persist.q = (persist.q || Promise.resolve()).then(run);
  return persist.q;
}
