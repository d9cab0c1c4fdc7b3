// Notifications on this device (issue 16), and review dates for the
// person's own calendar. Turning notifications on subscribes this browser
// with its push service and registers the subscription, and this device's
// quiet hours, with the relay in a signed request; the relay then tells
// this device — with the same content-free push for every event — when the
// partner writes. The quiet hours are kept by the relay in UTC: registering
// again each time the app opens follows a change of clock or zone. The
// calendar file is made here, on the device: the relay never learns a date.
import { pushKey, RelayError } from './api.js';
import { S } from './state.js';

/** The titles the service worker may show (sw.js holds the same list). */
export const TITLES = ['Something new in Troth', 'Something new'];

const ON = 'troth.push.on';
const QUIET = 'troth.push.quiet';

/** This device's choices: whether on, and quiet hours ({from, to} as "HH:MM" local, or null). */
export function prefs() {
  let quiet = null;
  try { quiet = JSON.parse(localStorage.getItem(QUIET) || 'null'); } catch { quiet = null; }
  return { on: localStorage.getItem(ON) === '1', quiet };
}

/** Whether this browser can show notifications from a web app at all. */
export function supported() {
  return 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
}

/** The title the service worker shows, kept where it can read it (the pin cache). */
export async function title() {
  const r = await (await caches.open('troth-pin')).match('/push-title');
  return r ? r.text() : TITLES[0];
}

/** Chooses the title (one of TITLES). */
export async function setTitle(t) {
  if (!TITLES.includes(t)) return;
  await (await caches.open('troth-pin')).put('/push-title', new Response(t));
}

/** Local "HH:MM" today as minutes after midnight UTC. */
function utcMinutes(hhmm) {
  const [hh, mm] = String(hhmm).split(':').map(Number);
  const d = new Date();
  d.setHours(hh, mm, 0, 0);
  return d.getUTCHours() * 60 + d.getUTCMinutes();
}

function bytes(b64url) {
  const s = atob(b64url.replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

async function registration() {
  const reg = await Promise.race([
    navigator.serviceWorker.ready,
    new Promise((resolve) => { setTimeout(() => resolve(null), 5000); }),
  ]);
  if (!reg) throw new Error("This copy of Troth isn't installed in this browser yet, so it can't receive notifications. Reload the page once and try again.");
  return reg;
}

/** What the relay is sent: the browser's subscription and the quiet hours in UTC. */
function body(sub, quiet) {
  const j = sub.toJSON();
  const out = { endpoint: j.endpoint, keys: { p256dh: j.keys.p256dh, auth: j.keys.auth } };
  if (quiet && quiet.from && quiet.to && quiet.from !== quiet.to) {
    const from = utcMinutes(quiet.from);
    const to = utcMinutes(quiet.to);
    if (from !== to) out.quiet = { from, to };
  }
  return out;
}

/**
 * Turns notifications on for this device with these quiet hours
 * (`{from, to}` as "HH:MM" local, or null). Throws an Error whose message
 * says what went wrong and what to do; nothing is changed then.
 */
export async function turnOn(quiet) {
  if (!supported()) throw new Error("This browser can't show notifications from Troth. Nothing was changed.");
  const perm = await Notification.requestPermission();
  if (perm !== 'granted') {
    throw new Error("Notifications are blocked for this page in your browser's settings. If you want them, allow them there and try again.");
  }
  const reg = await registration();
  let key;
  try {
    key = (await pushKey()).key;
  } catch (e) {
    if (e instanceof RelayError && e.code === 'push_off') throw new Error("This relay doesn't send notifications. Its operator can turn them on; nothing was changed.");
    throw e;
  }
  // A browser whose push service cannot be reached may never answer.
  const within = (p) => Promise.race([p, new Promise((resolve, reject) => { setTimeout(() => reject(new Error('timeout')), 10000); })]);
  let sub;
  try {
    sub = (await within(reg.pushManager.getSubscription()))
      || await within(reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: bytes(key) }));
  } catch {
    throw new Error("Your browser couldn't set up notifications just now (its push service didn't answer). Nothing was changed; you can try again later.");
  }
  await S.api.pushOn(body(sub, quiet));
  localStorage.setItem(ON, '1');
  localStorage.setItem(QUIET, JSON.stringify(quiet || null));
}

/** Turns them off: the relay forgets this device's subscription, then the browser does. */
export async function turnOff() {
  await S.api.pushOff();
  localStorage.removeItem(ON);
  if (supported()) {
    const reg = await navigator.serviceWorker.getRegistration();
    const sub = reg && await reg.pushManager.getSubscription();
    if (sub) await sub.unsubscribe().catch(() => {});
  }
}

/** When the app opens with notifications on: registers again (quiet hours follow the clock). */
export async function resume() {
  const p = prefs();
  if (!p.on || !supported() || Notification.permission !== 'granted') return;
  try {
    const reg = await navigator.serviceWorker.getRegistration();
    const sub = reg && await reg.pushManager.getSubscription();
    if (sub) await S.api.pushOn(body(sub, p.quiet));
  } catch { /* tried again next time; the registration the relay has still works */ }
}

const pad = (n) => String(n).padStart(2, '0');

/**
 * An iCalendar file (RFC 5545) with one all-day event on each review date
 * of the agreements in force or waiting, titled only "Review day": no
 * agreement, no partner, no app name in it.
 */
export function reviewCalendar(st, now = new Date()) {
  const stamp = `${now.getUTCFullYear()}${pad(now.getUTCMonth() + 1)}${pad(now.getUTCDate())}T${pad(now.getUTCHours())}${pad(now.getUTCMinutes())}${pad(now.getUTCSeconds())}Z`;
  const lines = ['BEGIN:VCALENDAR', 'VERSION:2.0', 'PRODID:-//Troth//review dates//EN', 'CALSCALE:GREGORIAN', 'METHOD:PUBLISH'];
  let n = 0;
  for (const a of st.agreements) {
    const v = a.inForce ? a.versions[a.inForce - 1] : (a.pending ? a.versions[a.pending - 1] : null);
    if (!v || !/^\d{4}-\d{2}-\d{2}$/.test(v.reviewOn)) continue;
    const day = v.reviewOn.replace(/-/g, '');
    const next = new Date(`${v.reviewOn}T00:00:00Z`);
    next.setUTCDate(next.getUTCDate() + 1);
    const end = `${next.getUTCFullYear()}${pad(next.getUTCMonth() + 1)}${pad(next.getUTCDate())}`;
    lines.push('BEGIN:VEVENT', `UID:${a.id}-${v.version}@review.invalid`, `DTSTAMP:${stamp}`,
      `DTSTART;VALUE=DATE:${day}`, `DTEND;VALUE=DATE:${end}`, 'SUMMARY:Review day', 'TRANSP:TRANSPARENT', 'END:VEVENT');
    n += 1;
  }
  lines.push('END:VCALENDAR');
  return { text: `${lines.join('\r\n')}\r\n`, count: n };
}
