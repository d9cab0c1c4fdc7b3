// The space saved in this browser: one sealed meta record and each verified
// event sealed once under its own key (docs/WEB.md, "What is stored in the
// browser"). Opening it re-checks the chain against the saved head.
import { Space } from '../troth_wasm.js';
import { store } from './store.js';
import { spaceApi, relayUrl } from './api.js';
import { S } from './state.js';
import { connectLive, sync } from './sync.js';

/**
 * Opens the space this browser saved. Every record is sealed in wasm under a
 * key derived from the device key, its context naming the record; the meta
 * record carries the role, the anchors authenticated at pairing, the
 * "compared" mark, the relay and the verified head. Anything that does not
 * open, or a chain that does not end at that head, is refused (false) and
 * nothing is used, sent or overwritten.
 */
export async function openSpace(sealed) {
  const keys = S.keys;
  let space;
  try {
    const meta = JSON.parse(keys.openLocal('idb:meta', sealed));
    const a = meta.anchors;
    space = Space.open(keys, meta.role, meta.id, a.leading || undefined, a.rebuilding || undefined);
    // What this browser forgot as agreed: never reopened from old envelopes.
    if (meta.forgetting) space.restoreForgetting(meta.forgetting);
    const events = (await store.events()).slice(0, meta.count).map((e, i) => keys.openLocal(`idb:event:${i}`, e));
    if ((events.length && space.ingest(events).error) || space.eventCount !== meta.count
      || (space.headHash || null) !== meta.head || meta.relay !== relayUrl()) throw new Error('changed');
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
  if (space.forget(Date.now()) > 0) persist();
  connectLive();
  sync();
  return true;
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
    } catch { /* locked meanwhile: nothing to save */ }
  };
  persist.q = (persist.q || Promise.resolve()).then(run);
  return persist.q;
}
