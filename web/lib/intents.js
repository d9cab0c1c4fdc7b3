// Drafts of agreements and intents (actions taken offline): sealed on this
// device, shown as "waiting to send", and composed and signed on the
// verified head once the app is back online (docs/WEB.md, "Offline").
import { store } from './store.js';
import { Offline } from './api.js';
import { S, emit } from './state.js';
import { say } from './dom.js';
import { send } from './sync.js';

// ---------------------------------------------------------------- drafts and intents

/**
 * Drafts of agreements and intents (actions taken offline), sealed on this
 * device in one record ('local', context `idb:local`) so they survive a lock
 * and a reload; nothing of them is sent until the person sends it.
 */
export async function loadLocal() {
  try {
    const sealed = await store.get('local');
    if (!sealed) return;
    const v = JSON.parse(S.keys.openLocal('idb:local', sealed));
    S.drafts = Array.isArray(v.drafts) ? v.drafts : [];
    S.intents = Array.isArray(v.intents) ? v.intents.filter((i) => INTENTS[i.kind]) : [];
  } catch { /* unreadable: nothing kept is used */ }
}

/** Seals and saves the drafts and intents (one record, `local`). */
export async function saveLocal() {
  if (!S.keys) return;
  try { await store.set('local', S.keys.sealLocal('idb:local', JSON.stringify({ drafts: S.drafts, intents: S.intents }))); } catch { /* locked meanwhile */ }
}

/** What an intent does once online: composed then, on the verified head. */
const INTENTS = {
  checkIn: (a, now) => S.space.checkIn(a[0], a[1] || undefined, a[2] || undefined, now),
  requestCheckIn: (a, now) => S.space.requestCheckIn(a[0], now),
  phone: (a, now) => S.space.phone(a[0], a[1], undefined, now),
  ack: (a, now) => S.space.ack(a[0], now),
  answer: (a, now) => S.space.answer(a[0], a[1], a[2] || '', now),
};

/**
 * Sends now; offline, keeps it as an intent (sealed on this device, shown as
 * "waiting to send" with a way to cancel) and sends it when the connection
 * is back. `what` is the person's own words for it.
 */
export async function sendOrKeep(kind, args, what, done) {
  try {
    await send((now) => INTENTS[kind](args, now), done);
  } catch (e) {
    if (!(e instanceof Offline)) throw e;
    // Its answer was lost, but the live connection already showed it written.
    if (e.sent && S.space.alreadyIn(e.sent) !== undefined) {
      emit('refresh');
      if (done) say(done);
      return;
    }
    // `sent`: signed events that may have reached the relay; looked for in
    // the verified log before the intent is composed again.
    S.intents.push({ id: `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`, kind, args, what, at: Date.now(), sent: e.sent || [] });
    await saveLocal();
    emit('refresh');
    say("You seem to be offline. It's kept on this device and will be sent when you're connected again.");
  }
}

/** Sends the kept intents in order, each composed on the head verified now. */
export async function flushIntents() {
  if (S.flushing || !S.space || !S.intents.length || S.gone) return;
  S.flushing = true;
  let sent = 0;
  try {
    for (const it of [...S.intents]) {
      if (!S.intents.includes(it)) continue;
      try {
        await send((now) => INTENTS[it.kind](it.args, now), undefined, Array.isArray(it.sent) ? it.sent : []);
      } catch (e) {
        if (e.sent) it.sent = e.sent;
        if (e instanceof Offline) break;
        it.error = e.message;
        continue;
      }
      S.intents = S.intents.filter((x) => x !== it);
      sent += 1;
      await saveLocal();
    }
  } finally {
    S.flushing = false;
    await saveLocal();
    emit('refresh');
  }
  if (sent) say(sent === 1 ? 'Sent what you kept while offline.' : `Sent the ${sent} things you kept while offline.`);
}
