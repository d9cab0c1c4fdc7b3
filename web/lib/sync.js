// Sync and live updates: pages from the relay go through core's verifier
// (`ingestPage`), the live WebSocket delivers new events, and `send`
// composes an action on the verified head and appends it (re-basing on a
// stale head). Screens hear of changes through `emit('refresh')`.
import { Space } from '../troth_wasm.js';
import { RelayError, Offline } from './api.js';
import { S, emit, tidy } from './state.js';
import { say, pause } from './dom.js';
import { persist } from './vault.js';
import { flushIntents } from './intents.js';

// ---------------------------------------------------------------- sync and live updates

/** Catches up with the relay, page by page through core's verifier, then saves and redraws (one sync at a time; a call during one runs another after it). */
export async function sync() {
  if (!S.space || S.gone) return;
  if (S.syncing) { S.again = true; return; }
  S.syncing = true;
  const space = S.space;
  try {
    do {
      S.again = false;
      for (;;) {
        const r = await S.api.read(space.eventCount);
        if (space !== S.space) return;
        // Core's page logic (the native client's too): a missing or lower
        // head is a rollback, a higher one with nothing delivered is
        // withholding; both raise an alert.
        const h = r && r.head;
        const res = space.ingestPage(h ? h.seq : undefined, h ? h.hash : undefined, (r && r.events) || [], !!(r && r.more));
        if (!res.fetchMore) break;
      }
      await keepSchedule(space);
      await persist();
    } while (S.again);
    S.waitingAdmission = false;
    if (!S.ws) connectLive();
    if (S.intents.length) setTimeout(flushIntents, 0);
  } catch (e) {
    if (e instanceof RelayError && e.code === 'not_member') {
      S.waitingAdmission = true;
      S.timers.push(setTimeout(sync, 1500));
    } else if (e instanceof RelayError && (e.code === 'no_space' || e.status === 404) && space.eventCount === 0) {
      // A joiner whose partner's CLI creates the space once pairing ends
      // (troth pair start): not there yet, not gone.
      S.waitingAdmission = true;
      S.timers.push(setTimeout(sync, 1500));
    } else if (e instanceof RelayError && (e.code === 'no_space' || e.status === 404)) {
      S.gone = true;
    } else if (e instanceof Offline) {
      setOnline(false);
    }
  } finally {
    S.syncing = false;
    emit('refresh');
  }
}


/**
 * Forgetting on schedule (issue 17), after each sync, as the CLI does: the
 * monthly key change when it is due (if the partner's device did it first,
 * the append is stale and the next sync finds theirs; nothing more is
 * sent), then forgetting the epochs that ended more than the retention
 * period ago (their keys deleted in core; the record saved sealed).
 */
async function keepSchedule(space) {
  const ev = space.rotation(Date.now());
  if (ev) {
    try {
      await S.api.append(ev);
      space.ingest([ev]);
    } catch (e) {
      if (!(e instanceof RelayError && e.code === 'stale_head')) throw e;
      S.again = true;
    }
  }
  // (A space opened from its snapshot forgets at the next open that reads
  // every stored event: see space.needsHistory.)
  if (space.forget(Date.now()) > 0) { S.snapAt = -1; emit('refresh'); }
}

/** Notes whether the live connection is up, and tells the screens. */
function setOnline(on) {
  S.online = on;
  emit('online');
}


/** Opens the live connection (reconnects with backoff, 1 s doubling to 15 s). */
export function connectLive() {
  if (!S.space || S.ws || S.gone) return;
  let sock;
  try { sock = new WebSocket(S.api.liveUrl()); } catch { return; }
  S.ws = sock;
  const space = S.space;
  sock.onopen = () => sock.send(S.api.liveAuth());
  sock.onmessage = (m) => {
    let f;
    try { f = JSON.parse(m.data); } catch { return; }
    if (space !== S.space) return;
    if (f.ready) { S.backoff = 1000; setOnline(true); sync(); return; }
    if (typeof f.seq === 'number' && typeof f.event === 'string') {
      if (f.seq < space.eventCount) return;
      if (f.seq > space.eventCount) { sync(); return; }
      const r = space.ingest([f.event]);
      if (r.error) { sync(); return; }
      persist();
      emit('refresh');
      // It may be one of this device's own, sent while its answer was lost.
      if (S.intents.length) setTimeout(flushIntents, 0);
      const tl = space.state(Date.now(), 1).timeline;
      const last = tl[tl.length - 1];
      if (last && last.by !== space.role) say(`Your partner ${tidy(last.what)}`);
    }
  };
  sock.onclose = (e) => {
    if (S.ws !== sock) return;
    S.ws = null;
    setOnline(false);
    if (e.code === 4404) { S.gone = true; emit('refresh'); return; }
    const wait = S.backoff;
    S.backoff = Math.min(S.backoff * 2, 15000);
    S.timers.push(setTimeout(() => { connectLive(); }, wait));
  };
}
window.addEventListener('online', () => {
  S.backoff = 1000;
  if (S.ws && S.ws.readyState === WebSocket.OPEN) setOnline(true);
  else if (S.ws) { S.ws.onclose = null; S.ws.close(); S.ws = null; }
  if (S.space && !S.ws) connectLive();
  sync();
});
window.addEventListener('offline', () => setOnline(false));

/**
 * Composes on the verified head and appends; re-bases on a stale head.
 *
 * An append whose answer was lost may have been written all the same, so
 * nothing is posted twice (core's rule, the native client's too): a
 * `409 stale_head` naming the event just sent means an earlier try went
 * through, and after each sync the verified log is searched for every
 * event sent (`tried`: those of earlier attempts, kept with an intent). An
 * error whose outcome is unknown carries the events sent (`e.sent`).
 */
export async function send(compose, done, tried = []) {
  if (!navigator.onLine) throw new Offline();
  const sent = [...tried];
  const finish = async () => {
    await persist();
    emit('refresh');
    if (done) say(done);
  };
  if (sent.length && S.space.alreadyIn(sent) !== undefined) return finish();
  for (let i = 0; i < 5; i++) {
    const ev = compose(Date.now());
    sent.push(ev);
    try {
      await S.api.append(ev);
      S.space.ingest([ev]);
      return finish();
    } catch (e) {
      if (e instanceof RelayError && e.code === 'stale_head') {
        if (e.head && Space.isHead(ev, e.head.seq, e.head.hash)) {
          S.space.ingest([ev]);
          return finish();
        }
        await syncNow();
        if (S.space.alreadyIn(sent) !== undefined) return finish();
        continue;
      }
      // The browser sent the same request again after a broken connection
      // (the relay refuses a signed request it has seen): the first one's
      // fate is unknown, so look for it before composing again.
      if (e instanceof RelayError && e.code === 'auth_replayed') {
        await syncNow();
        if (S.space.alreadyIn(sent) !== undefined) return finish();
        continue;
      }
      // No answer, or the relay's own failure: it may have been written.
      if (e instanceof Offline || (e instanceof RelayError && (e.status >= 500 || e.status === 408))) e.sent = sent;
      throw e;
    }
  }
  throw new Error('Your partner was writing at the same moment. Please try again.');
}

async function syncNow() {
  while (S.syncing) await pause(50);
  await sync();
}
