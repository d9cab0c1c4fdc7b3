// Troth's browser client: screens over the wasm core (troth_wasm.js).
// Everything the relay sends goes through the core's verifier before it is
// shown; everything we send is composed and signed in wasm.
import init, { Keys, Space, PairingSession, templates, checkCode, checkText, checkPassphrase, dayPlus } from './troth_wasm.js';
import { store, spaceApi, rendezvous, RelayError, Offline, loadConfig, relayUrl } from './net.js';

// Lock after five minutes without a touch or a key press (another time may
// be chosen under Safety, kept in localStorage `troth.autolock.ms`; never more
// than 30 minutes, whatever is stored there).
const MAX_LOCK_MS = 30 * 60 * 1000;
const lockMs = () => Math.min(Number(localStorage.getItem('troth.autolock.ms')) || 5 * 60 * 1000, MAX_LOCK_MS);
const main = document.getElementById('main');
const dialog = document.getElementById('dialog');
const statusEl = document.getElementById('status');
const integrityEl = document.getElementById('integrity');
const lockBtn = document.getElementById('lock');

/** Session state: dropped on lock. */
let S = fresh();
function fresh() {
  return { keys: null, space: null, api: null, meta: null, ws: null, tab: 'agreements', drafts: [], intents: [],
    online: false, syncing: false, again: false, backoff: 1000, pairing: null, gone: false, timers: [] };
}

// ---------------------------------------------------------------- helpers

/** Builds an element: h('button', {onclick}, 'Text'). */
function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

let uid = 0;
/** A labelled field: returns [wrapper, input]. */
function field(label, tag, attrs = {}, hint) {
  const id = attrs.id || `f${++uid}`;
  const hintId = hint ? `${id}-hint` : undefined;
  const input = h(tag, { id, 'aria-describedby': hintId, ...attrs });
  const wrap = h('div', {}, h('label', { for: id }, label), hint ? h('p', { id: hintId, class: 'muted' }, hint) : null, input);
  if (tag === 'textarea' || attrs.type === 'text') {
    // Core's check for invisible and direction-changing characters, shown
    // next to the field as it is typed (the composer refuses them too).
    const e = h('p', { class: 'error', id: `${id}-err`, role: 'alert' });
    input.setAttribute('aria-errormessage', e.id);
    input.addEventListener('input', () => {
      let msg = '';
      try { checkText(input.value); } catch (x) { msg = x.message; }
      e.textContent = msg;
      if (msg) input.setAttribute('aria-invalid', 'true'); else input.removeAttribute('aria-invalid');
    });
    wrap.append(e);
  }
  return [wrap, input];
}

/** A strength hint under a new passphrase's field (core's check_passphrase). */
function passHint(input, wrap) {
  const p = h('p', { class: 'muted', id: `${input.id}-str`, 'aria-live': 'polite' });
  input.setAttribute('aria-describedby', `${input.getAttribute('aria-describedby') || ''} ${p.id}`.trim());
  input.addEventListener('input', () => {
    try { checkPassphrase(input.value); p.textContent = input.value ? 'That works.' : ''; } catch (x) { p.textContent = x.message; }
  });
  wrap.append(p);
}

function checkbox(label, attrs = {}) {
  const id = `f${++uid}`;
  const input = h('input', { type: 'checkbox', id, ...attrs });
  return [h('label', { class: 'inline', for: id }, input, label), input];
}

function say(msg) {
  statusEl.textContent = msg;
  clearTimeout(say.t);
  say.t = setTimeout(() => { statusEl.textContent = ''; }, 6000);
}

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

/** Runs an action from a button: disables it, shows errors kindly next to it. */
async function act(btn, errEl, fn) {
  if (btn) btn.disabled = true;
  if (errEl) errEl.textContent = '';
  try {
    await fn();
  } catch (e) {
    const raw = e && e.message ? e.message : String(e);
    const msg = raw.charAt(0).toUpperCase() + raw.slice(1);
    if (errEl) errEl.textContent = msg; else say(msg);
    // A field that holds what was refused (e.g. a hidden character) gets the focus.
    const bad = errEl && errEl.closest('form, dialog')?.querySelector('[aria-invalid]');
    if (bad) bad.focus();
  } finally {
    if (btn && btn.isConnected) btn.disabled = false;
    // A "please wait" note is over once the action is.
    if (/…/.test(statusEl.textContent)) statusEl.textContent = '';
  }
}

function errorLine() {
  return h('p', { class: 'error', role: 'alert' });
}

function screen(title, ...kids) {
  main.replaceChildren(h('h1', { id: 'screen-title' }, title), ...kids.filter((k) => k !== null && k !== undefined && k !== false));
  document.title = `${title} · Troth`;
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

function when(ms) {
  return new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

function download(name, text, type = 'application/octet-stream') {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 5000);
}

function openDialog(title, ...kids) {
  dialog.replaceChildren(h('h2', { id: 'dialog-title' }, title), ...kids.filter((k) => k !== null && k !== undefined));
  if (!dialog.open) dialog.showModal();
  const first = dialog.querySelector('input, textarea, select, button');
  if (first) first.focus();
}

function closeDialog() {
  if (dialog.open) dialog.close();
}

// ---------------------------------------------------------------- leaving, locking

function quickExit() {
  try { lock(false); } catch { /* leave anyway */ }
  location.replace('/exit.html');
}
document.getElementById('quick-exit').addEventListener('click', quickExit);
let lastEsc = 0;
document.addEventListener('keydown', (e) => {
  if (e.key !== 'Escape') return;
  const now = Date.now();
  if (now - lastEsc < 800) quickExit();
  lastEsc = now;
});

function lock(show = true) {
  closeDialog();
  for (const t of S.timers) clearTimeout(t);
  if (S.ws) { S.ws.onclose = null; S.ws.close(); }
  if (S.pairing) S.pairing.stop = true;
  try { S.space && S.space.free(); } catch { /* already freed */ }
  try { S.keys && S.keys.free(); } catch { /* already freed */ }
  S = fresh();
  integrityEl.replaceChildren();
  lockBtn.hidden = true;
  if (show) showUnlock('Locked. Your words are safe here until you unlock again.');
}
lockBtn.addEventListener('click', () => lock());

let idle;
function touch() {
  clearTimeout(idle);
  if (S.keys) idle = setTimeout(() => lock(), lockMs());
}
for (const ev of ['pointerdown', 'keydown', 'input']) document.addEventListener(ev, touch, { passive: true });

// ---------------------------------------------------------------- start

// ---------------------------------------------------------------- pinned code

/**
 * Installs the service worker that pins this copy of the app (web/sw.js),
 * and watches for the server offering other code: a new service worker
 * (`updatefound`) or a different bundle under the same one. Either way the
 * pinned version keeps running, and a calm notice says what changed, how to
 * check it, and lets the person choose.
 */
async function watchCode() {
  if (!('serviceWorker' in navigator)) return;
  let reg;
  try {
    reg = await navigator.serviceWorker.register('sw.js', { updateViaCache: 'none' });
  } catch { return; }
  const controlled = () => Boolean(navigator.serviceWorker.controller);
  reg.addEventListener('updatefound', () => { if (controlled()) offerCode(reg, 'its service worker'); });
  if (!controlled()) return;
  const b = await bundleChange();
  const what = [reg.waiting && 'its service worker', b && 'the app itself'].filter(Boolean).join(' and ');
  if (what) offerCode(reg, what, b && b.pinned, b && b.offered);
}

async function pinnedBundle() {
  try {
    const r = await (await caches.open('troth-pin')).match('/pinned');
    return r ? r.text() : null;
  } catch { return null; }
}

/** The pinned bundle and the one the server offers now, if they differ. */
async function bundleChange() {
  const pinned = await pinnedBundle();
  let offered = null;
  try { offered = (await (await fetch('release.json?offered', { cache: 'no-store' })).json()).bundle; } catch { return null; }
  return pinned && offered && offered !== pinned ? { pinned, offered } : null;
}

const short = (x) => (x ? `${String(x).slice(0, 16)}…` : 'unknown');

async function offerCode(reg, what, pinned, offered) {
  const box = document.getElementById('code-change');
  if (!box || box.dataset.shown) return;
  box.dataset.shown = '1';
  pinned = pinned || await pinnedBundle();
  const keep = h('button', { type: 'button', class: 'secondary' }, 'Keep using my version');
  const take = h('button', { type: 'button' }, 'Use the offered version');
  const err = errorLine();
  keep.addEventListener('click', () => { box.replaceChildren(); say('You are still using the version you had.'); });
  take.addEventListener('click', () => act(take, err, async () => {
    const sw = navigator.serviceWorker.controller;
    if (sw) {
      const answer = new Promise((resolve) => {
        navigator.serviceWorker.addEventListener('message', (m) => resolve(m.data), { once: true });
      });
      sw.postMessage('pin-offered');
      const a = await answer;
      if (a && a.error) throw new Error(`The offered version did not check out (${a.error}). You are still using yours.`);
    }
    if (reg.waiting) reg.waiting.postMessage('skip-waiting');
    location.reload();
  }));
  box.replaceChildren(h('section', { class: 'card stack notice', 'data-testid': 'code-change' },
    h('h2', {}, 'This server offers different code for Troth'),
    h('p', {}, `It changed ${what}. You are still running the version you had (bundle ${short(pinned)})${offered ? `; the server now offers bundle ${short(offered)}` : ''}. Nothing new runs until you choose.`),
    h('p', { class: 'muted' }, `An update from Troth looks like this too. To check the offered code first, run "troth web verify ${location.origin}" on a computer you trust, or ask whoever runs this server what changed.`),
    err, h('div', { class: 'row' }, keep, take)));
}

async function boot() {
  try {
    await init();
  } catch (e) {
    screen('Troth could not start', h('p', {}, 'This browser could not load the part of Troth that keeps your words encrypted. Please try an up-to-date browser.'));
    return;
  }
  await loadConfig();
  watchCode();
  const file = await store.get('keyfile');
  if (file) showUnlock(); else showWelcome();
}

function showWelcome() {
  const [p1w, p1] = field('Choose a passphrase', 'input', { type: 'password', autocomplete: 'new-password' },
    'A few words you will remember. It never leaves this device; nobody can reset it for you.');
  passHint(p1, p1w);
  const [p2w, p2] = field('Type it once more', 'input', { type: 'password', autocomplete: 'new-password' });
  const err1 = errorLine();
  const create = h('button', { type: 'submit' }, 'Create my key');
  const createForm = h('form', { class: 'card stack', 'aria-labelledby': 'new-key' },
    h('h2', { id: 'new-key' }, 'New here'), p1w, p2w, err1, create);
  createForm.addEventListener('submit', (e) => {
    e.preventDefault();
    act(create, err1, async () => {
      if (p1.value !== p2.value) throw new Error("The two passphrases aren't the same. Please type them again.");
      checkPassphrase(p1.value);
      say('Making your key… this takes a moment.');
      await pause(30);
      const keys = Keys.generate(Date.now());
      const file = keys.exportFile(p1.value);
      await store.set('keyfile', file);
      await unlocked(keys);
    });
  });

  const [fw, fileInput] = field('Key file', 'input', { type: 'file', accept: '.age,.txt,text/plain' },
    'The file the troth command line (or another browser) exported.');
  const [tw, pasted] = field('…or paste it here', 'textarea', { rows: '4', spellcheck: 'false', placeholder: '-----BEGIN AGE ENCRYPTED FILE-----' });
  const [pw, pass] = field('Its passphrase', 'input', { type: 'password', autocomplete: 'current-password' });
  const err2 = errorLine();
  const imp = h('button', { type: 'submit', class: 'secondary' }, 'Import my key');
  const importForm = h('form', { class: 'card stack', 'aria-labelledby': 'import-key' },
    h('h2', { id: 'import-key' }, 'I already have a key'), fw, tw, pw, err2, imp);
  importForm.addEventListener('submit', (e) => {
    e.preventDefault();
    act(imp, err2, async () => {
      let text = pasted.value.trim();
      if (fileInput.files && fileInput.files[0]) text = await fileInput.files[0].text();
      if (!text) throw new Error('Choose your key file or paste it first.');
      say('Opening your key… this takes a moment.');
      await pause(30);
      const keys = Keys.unlock(new TextEncoder().encode(text), pass.value);
      await store.set('keyfile', text);
      await unlocked(keys);
    });
  });

  screen('Welcome to Troth',
    h('p', {}, 'A private place for the two of you to agree on what helps rebuild trust, and to keep those agreements in the open. Everything is encrypted on your devices; the server only ever sees scrambled data.'),
    h('div', { class: 'two' }, createForm, importForm));
}

function showUnlock(note) {
  const [pw, pass] = field('Passphrase', 'input', { type: 'password', autocomplete: 'current-password' });
  const err = errorLine();
  const btn = h('button', { type: 'submit' }, 'Unlock');
  const form = h('form', { class: 'card stack' }, pw, err, btn);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(btn, err, async () => {
      const file = await store.get('keyfile');
      if (!file) { showWelcome(); return; }
      say('Unlocking… this takes a moment.');
      await pause(30);
      let keys;
      try {
        keys = Keys.unlock(new TextEncoder().encode(file), pass.value);
      } catch (e2) {
        pass.select();
        throw e2;
      }
      await unlocked(keys);
    });
  });
  const forget = h('button', { type: 'button', class: 'quiet' }, 'Use a different key on this device');
  forget.addEventListener('click', () => confirmForget());
  screen('Welcome back', note ? h('p', { class: 'card calm' }, note) : null,
    h('p', {}, 'Type your passphrase to open your space.'), form, forget);
  pass.focus();
}

function confirmForget() {
  const yes = h('button', { type: 'button', class: 'gentle-stop' }, 'Remove it from this browser');
  const no = h('button', { type: 'button', class: 'secondary' }, 'Keep it');
  yes.addEventListener('click', async () => { await store.clear(); closeDialog(); showWelcome(); });
  no.addEventListener('click', closeDialog);
  openDialog('Remove the key from this browser?',
    h('p', {}, 'This removes your key and your copy of the space from this browser. If you have no exported copy of the key, you will not be able to open this space again here.'),
    h('div', { class: 'row' }, yes, no));
}

async function unlocked(keys) {
  S.keys = keys;
  lockBtn.hidden = false;
  touch();
  const sealed = await store.get('space');
  if (!sealed) { showStart(); return; }
  if (!await openSpace(sealed)) { showChanged(); return; }
  await loadLocal();
  if (!S.meta.compared && S.space.safetyNumber) showSafety(); else showSpace();
}

/**
 * Opens the space this browser saved. Every record is sealed in wasm under a
 * key derived from the device key, its context naming the record; the meta
 * record carries the role, the anchors authenticated at pairing, the
 * "compared" mark, the relay and the verified head. Anything that does not
 * open, or a chain that does not end at that head, is refused (false) and
 * nothing is used, sent or overwritten.
 */
async function openSpace(sealed) {
  const keys = S.keys;
  let space;
  try {
    const meta = JSON.parse(keys.openLocal('idb:meta', sealed));
    const a = meta.anchors;
    space = Space.open(keys, meta.role, meta.id, a.leading || undefined, a.rebuilding || undefined);
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
  connectLive();
  sync();
  return true;
}

/** Saves the meta record and the events not saved yet, sealed, in one transaction (one at a time). */
function persist() {
  const run = async () => {
    const { space, keys } = S;
    if (!space || !keys) return;
    try {
      const from = S.saved || 0;
      const evs = space.eventsFrom(from);
      S.meta = { ...S.meta, id: space.id, role: space.role, anchors: space.anchors, count: from + evs.length,
        head: space.headHash || null, relay: relayUrl() };
      const pairs = evs.map((e, i) => [['ev', from + i], keys.sealLocal(`idb:event:${from + i}`, e)]);
      pairs.push(['space', keys.sealLocal('idb:meta', JSON.stringify(S.meta))]);
      await store.putAll(pairs);
      if (space === S.space) S.saved = from + evs.length;
    } catch { /* locked meanwhile: nothing to save */ }
  };
  persist.q = (persist.q || Promise.resolve()).then(run);
  return persist.q;
}

function showChanged() {
  const rm = h('button', { type: 'button', class: 'gentle-stop' }, 'Remove the saved copy of the space');
  rm.addEventListener('click', () => {
    const yes = h('button', { type: 'button', class: 'gentle-stop' }, 'Remove the saved copy');
    const no = h('button', { type: 'button', class: 'secondary' }, 'Keep it for now');
    yes.addEventListener('click', async () => { await store.delSpace(); closeDialog(); showStart(); });
    no.addEventListener('click', closeDialog);
    openDialog('Remove the saved copy of the space?',
      h('p', {}, 'Your key stays on this browser. To be in a space with your partner again, you pair again, side by side, and compare the safety number.'),
      h('div', { class: 'row' }, yes, no));
  });
  screen('Your saved space was not opened',
    h('section', { class: 'card warm stack' },
      h('p', {}, "This browser's saved copy of your space was changed outside Troth, so it wasn't used. Nothing was sent."),
      h('p', {}, 'Your key is fine, and your partner\'s copy is not affected. If you did not expect this, someone may have had this device or its files in their hands.'),
      h('p', {}, 'What you can do: lock and unlock again; if this message stays, remove the saved copy below and pair again with your partner side by side.')),
    rm);
}

// ---------------------------------------------------------------- pairing

function showStart() {
  const lead = h('button', { type: 'button' }, 'Start our space and get a code');
  const err = errorLine();
  lead.addEventListener('click', () => act(lead, err, startSpace));
  const [cw, code] = field('The code your partner shows you', 'input',
    { type: 'text', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', placeholder: '7-crystal-orbit' },
    'A number and two words, like 7-crystal-orbit.');
  const join = h('button', { type: 'submit', class: 'secondary' }, 'Join with this code');
  const err2 = errorLine();
  const form = h('form', { class: 'card stack', 'aria-labelledby': 'join-h' },
    h('h2', { id: 'join-h' }, 'My partner gave me a code'),
    h('p', {}, 'Your partner sets out what they need; you will see every condition and sign only what you agree to.'),
    cw, err2, join);
  form.addEventListener('submit', (e) => { e.preventDefault(); act(join, err2, () => joinSpace(code.value)); });
  screen('Connect with your partner',
    h('p', {}, 'One of you starts a shared space and gets a short one-time code; the other types it in. It takes about a minute.'),
    h('p', { class: 'muted' }, 'Your key\'s fingerprint: ', h('span', { 'data-testid': 'fingerprint' }, S.keys.fingerprint)),
    whereFrom(),
    h('div', { class: 'two' },
      h('section', { class: 'card stack', 'aria-labelledby': 'lead-h' },
        h('h2', { id: 'lead-h' }, 'I was hurt, and I want to set the conditions'),
        h('p', {}, "You're in the driver's seat: you propose the agreements, and nothing is in force until you both sign it."),
        err, lead),
      form));
}

/** Which relay this is, and who served this copy of the app: both partners see it while pairing. */
function whereFrom() {
  const same = relayUrl() === location.origin;
  return h('p', { class: 'muted', 'data-testid': 'where-from' }, same
    ? `You're using the relay at ${relayUrl()}, which also served this copy of Troth.`
    : `You're using the relay at ${relayUrl()}. This copy of Troth came from ${location.origin}.`);
}

async function startSpace() {
  const space = Space.create(S.keys, Date.now());
  const api = spaceApi(space);
  await api.create(space.eventsFrom(0)[0]);
  S.space = space;
  S.api = api;
  S.meta = { compared: false };
  S.saved = 0;
  await persist();
  connectLive();
  await invite();
}

/** The creator's side: open a mailbox, show the code, run the pairing. */
async function invite() {
  const box = await rendezvous.open();
  const session = PairingSession.create(S.keys, S.space, box.mailbox);
  const run = { stop: false, box, session };
  S.pairing = run;
  const qr = h('div', { class: 'qr' });
  qr.innerHTML = session.codeSvg(); // SVG drawn by our own wasm from the code
  const waiting = h('p', { class: 'muted', role: 'status' }, 'Waiting for your partner to type the code…');
  const err = errorLine();
  const cancel = h('button', { type: 'button', class: 'secondary' }, 'Stop and go back');
  cancel.addEventListener('click', () => { run.stop = true; rendezvous.close(box.mailbox, box.token); showSpace(); });
  const codeCard = h('section', { class: 'card stack', 'aria-labelledby': 'code-h' },
      h('h2', { id: 'code-h', class: 'visually-hidden' }, 'Code'),
      h('p', {}, 'Show this to your partner, or read it out. They type it in Troth on their phone.'),
      h('p', { class: 'code', 'data-testid': 'pairing-code' }, session.code),
      qr,
      h('p', { class: 'muted' }, 'It works once, for the next 10 minutes. If someone else tries it, it stops working and you both will see that.'));
  screen('Your one-time code', codeCard, waiting, err, cancel);
  try {
    await exchange(run, box.mailbox, box.token, session.takeFirstMessage());
    if (run.stop) return;
    const ev = S.space.admitPartner(session, Date.now());
    await S.api.append(ev);
    S.space.ingest([ev]);
    await persist();
    rendezvous.close(box.mailbox, box.token);
    session.free();
    S.pairing = null;
    showSafety();
  } catch (e) {
    if (run.stop) return;
    rendezvous.close(box.mailbox, box.token);
    waiting.textContent = '';
    codeCard.replaceChildren(h('h2', { id: 'code-h' }, 'This code no longer works'),
      h('p', {}, 'Nothing was shared with anyone. You can make a new code when you are both ready.'));
    err.textContent = e.message;
    const again = h('button', { type: 'button' }, 'Start again with a new code');
    again.addEventListener('click', () => act(again, err, invite));
    cancel.before(again);
  }
}

/** Posts our messages and feeds theirs to the state machine until paired. */
async function exchange(run, n, token, first) {
  await rendezvous.post(n, token, first);
  let after = 0;
  const deadline = Date.now() + 10 * 60 * 1000;
  while (!run.session.isPaired) {
    if (run.stop) return;
    if (Date.now() > deadline) throw new Error('This code has expired. Start again for a new code.');
    const r = await rendezvous.get(n, token, after, 20);
    after = r.next;
    for (const m of r.messages) {
      const out = run.session.receive(m);
      if (out) await rendezvous.post(n, token, out);
      if (run.session.isPaired) break;
    }
    // The other device stopped, and what it left did not finish pairing.
    if (r.closed && !run.session.isPaired) {
      throw new Error('The pairing ended on the other device. Start again with a new code when you are both ready.');
    }
  }
}

async function joinSpace(typed) {
  const mailbox = checkCode(typed);
  const session = PairingSession.join(S.keys, typed);
  const run = { stop: false, session };
  S.pairing = run;
  say('Connecting with your partner…');
  const claim = await rendezvous.claim(mailbox);
  try {
    await exchange(run, mailbox, claim.token, session.takeFirstMessage());
  } catch (e) {
    rendezvous.close(mailbox, claim.token);
    throw e;
  }
  // Done on this side; the creator can still read our last message.
  rendezvous.close(mailbox, claim.token);
  const space = Space.fromPairing(S.keys, session);
  session.free();
  S.pairing = null;
  S.space = space;
  S.api = spaceApi(space);
  S.meta = { compared: false };
  S.saved = 0;
  await persist();
  connectLive();
  sync();
  showSafety();
}

function showSafety() {
  const sn = S.space.safetyNumber;
  const yes = h('button', { type: 'button' }, 'They match — we compared them');
  const later = h('button', { type: 'button', class: 'secondary' }, "We'll compare later");
  yes.addEventListener('click', async () => { S.meta.compared = true; await persist(); say('Thank you. Marked as compared.'); showSpace(); });
  later.addEventListener('click', () => showSpace());
  screen("You're connected",
    h('section', { class: 'card stack', 'aria-labelledby': 'sn-h' },
      h('h2', { id: 'sn-h' }, 'Your safety number'),
      h('p', { class: 'digits', 'data-testid': 'safety-number' }, sn || '—'),
      h('p', {}, 'Your partner sees the same number. When you are together, read them side by side. If they match, nobody is standing between the two of you.'),
      h('p', { class: 'muted' }, "If they don't match, please don't go on: leave this space (under Safety) and pair again side by side.")),
    h('div', { class: 'row' }, yes, later));
}

// ---------------------------------------------------------------- sync and live updates

async function sync() {
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
      await persist();
    } while (S.again);
    S.waitingAdmission = false;
    if (!S.ws) connectLive();
    if (S.intents.length) setTimeout(flushIntents, 0);
  } catch (e) {
    if (e instanceof RelayError && e.code === 'not_member') {
      S.waitingAdmission = true;
      S.timers.push(setTimeout(sync, 1500));
    } else if (e instanceof RelayError && (e.code === 'no_space' || e.status === 404)) {
      S.gone = true;
    } else if (e instanceof Offline) {
      setOnline(false);
    }
  } finally {
    S.syncing = false;
    refresh();
  }
}

function setOnline(on) {
  S.online = on;
  const el = document.getElementById('conn');
  if (el) el.replaceChildren(connLine());
}

function connLine() {
  if (S.gone) return '';
  if (S.waitingAdmission) return h('span', { class: 'muted' }, 'Connecting…');
  return S.online
    ? h('span', { class: 'muted' }, 'Connected · updates appear as they happen')
    : h('span', { class: 'offline' }, "Reconnecting… what you see may be behind. Check-ins and requests you make now are kept on this device and sent when you're connected.");
}

function connectLive() {
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
      refresh();
      const tl = space.state(Date.now()).timeline;
      const last = tl[tl.length - 1];
      if (last && last.by !== space.role) say(`Your partner ${tidy(last.what)}`);
    }
  };
  sock.onclose = (e) => {
    if (S.ws !== sock) return;
    S.ws = null;
    setOnline(false);
    if (e.code === 4404) { S.gone = true; refresh(); return; }
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

// ---------------------------------------------------------------- drafts and intents

/**
 * Drafts of agreements and intents (actions taken offline), sealed on this
 * device in one record ('local', context `idb:local`) so they survive a lock
 * and a reload; nothing of them is sent until the person sends it.
 */
async function loadLocal() {
  try {
    const sealed = await store.get('local');
    if (!sealed) return;
    const v = JSON.parse(S.keys.openLocal('idb:local', sealed));
    S.drafts = Array.isArray(v.drafts) ? v.drafts : [];
    S.intents = Array.isArray(v.intents) ? v.intents.filter((i) => INTENTS[i.kind]) : [];
  } catch { /* unreadable: nothing kept is used */ }
}

async function saveLocal() {
  if (!S.keys) return;
  try { await store.set('local', S.keys.sealLocal('idb:local', JSON.stringify({ drafts: S.drafts, intents: S.intents }))); } catch { /* locked meanwhile */ }
}

/** What an intent does once online: composed then, on the verified head. */
const INTENTS = {
  checkIn: (a, now) => S.space.checkIn(a[0], a[1] || undefined, a[2] || undefined, now),
  requestCheckIn: (a, now) => S.space.requestCheckIn(a[0], now),
  phone: (a, now) => S.space.phone(a[0], a[1], undefined, now),
  ack: (a, now) => S.space.ack(a[0], now),
};

/**
 * Sends now; offline, keeps it as an intent (sealed on this device, shown as
 * "waiting to send" with a way to cancel) and sends it when the connection
 * is back. `what` is the person's own words for it.
 */
async function sendOrKeep(kind, args, what, done) {
  try {
    await send((now) => INTENTS[kind](args, now), done);
  } catch (e) {
    if (!(e instanceof Offline)) throw e;
    S.intents.push({ id: `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`, kind, args, what, at: Date.now() });
    await saveLocal();
    refresh();
    say("You seem to be offline. It's kept on this device and will be sent when you're connected again.");
  }
}

/** Sends the kept intents in order, each composed on the head verified now. */
async function flushIntents() {
  if (S.flushing || !S.space || !S.intents.length || S.gone) return;
  S.flushing = true;
  let sent = 0;
  try {
    for (const it of [...S.intents]) {
      if (!S.intents.includes(it)) continue;
      try {
        await send((now) => INTENTS[it.kind](it.args, now));
      } catch (e) {
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
    refresh();
  }
  if (sent) say(sent === 1 ? 'Sent what you kept while offline.' : `Sent the ${sent} things you kept while offline.`);
}

function intentCards() {
  if (!S.intents.length) return [];
  return [h('section', { class: 'card stack', 'aria-labelledby': 'wait-h', 'data-testid': 'waiting' },
    h('h2', { id: 'wait-h' }, 'Waiting to send'),
    h('p', { class: 'muted' }, "Kept on this device while you're offline. Each is sent as you see it here once you're connected."),
    h('ul', { class: 'stack' }, S.intents.map((it) => {
      const cancel = h('button', { type: 'button', class: 'quiet' }, `Don't send “${it.what}”`);
      cancel.addEventListener('click', async () => {
        S.intents = S.intents.filter((x) => x !== it);
        await saveLocal();
        refresh();
        say('It will not be sent.');
      });
      return h('li', {}, h('p', {}, it.what, ' ', h('span', { class: 'muted' }, `(${when(it.at)})`)),
        it.error ? h('p', { class: 'muted' }, `Not sent: ${it.error}`) : null, cancel);
    })))];
}

/** Composes on the verified head and appends; re-bases on a stale head. */
async function send(compose, done) {
  if (!navigator.onLine) throw new Offline();
  for (let i = 0; i < 5; i++) {
    const ev = compose(Date.now());
    try {
      await S.api.append(ev);
      S.space.ingest([ev]);
      await persist();
      refresh();
      if (done) say(done);
      return;
    } catch (e) {
      if (e instanceof RelayError && e.code === 'stale_head') {
        await syncNow();
        continue;
      }
      throw e;
    }
  }
  throw new Error('Your partner was writing at the same moment. Please try again.');
}

async function syncNow() {
  while (S.syncing) await pause(50);
  await sync();
}

// ---------------------------------------------------------------- the space

const TABS = [
  ['agreements', 'Agreements'],
  ['keep', 'Check-ins'],
  ['timeline', 'Timeline'],
  ['safety', 'Safety'],
];

function me(role) { return role === S.space.role; }
/** Core's timeline words end in ": " when someone left no comment. */
function tidy(what) { return what.replace(/:\s*$/, ''); }
function who(role) { return me(role) ? 'You' : 'Your partner'; }

function showSpace() {
  const tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Sections' },
    TABS.map(([id, label]) => {
      const b = h('button', { type: 'button', role: 'tab', id: `tab-${id}`, 'aria-controls': 'panel',
        'aria-selected': String(S.tab === id), tabindex: S.tab === id ? '0' : '-1' }, label);
      b.addEventListener('click', () => { S.tab = id; showSpace(); document.getElementById(`tab-${id}`).focus(); });
      b.addEventListener('keydown', (e) => {
        const i = TABS.findIndex(([t]) => t === id);
        const j = e.key === 'ArrowRight' ? i + 1 : e.key === 'ArrowLeft' ? i - 1 : null;
        if (j === null) return;
        S.tab = TABS[(j + TABS.length) % TABS.length][0];
        showSpace();
        document.getElementById(`tab-${S.tab}`).focus();
      });
      return b;
    }));
  const panel = h('section', { id: 'panel', role: 'tabpanel', 'aria-labelledby': `tab-${S.tab}` });
  screen('Our space',
    h('p', { id: 'conn' }, connLine()),
    h('div', { id: 'banners' }),
    tabs, panel);
  buildTab(panel);
  refresh();
}

function buildTab(panel) {
  const tab = S.tab;
  if (tab === 'agreements') {
    const add = h('button', { type: 'button' }, 'Propose an agreement');
    add.addEventListener('click', () => editor());
    panel.append(h('div', { class: 'row' }, add), h('div', { id: 'drafts' }), h('div', { id: 'live-agreements' }));
  } else if (tab === 'keep') {
    const list = h('div', { id: 'live-checkins' });
    if (S.space.role === 'leading') panel.append(h('div', { id: 'waiting' }), h('div', { id: 'asked-of-me' }), list, askForm(), checkInForm());
    else panel.append(h('div', { id: 'waiting' }), h('div', { id: 'asked-of-me' }), checkInForm(), list, askForm());
  } else if (tab === 'timeline') {
    panel.append(h('h2', {}, 'Everything, newest first'), h('div', { id: 'live-timeline' }));
  } else {
    panel.append(h('div', { id: 'live-safety' }), therapistForm(), keyCard(), lockCard(), codeCard(), leaveCard());
  }
}

/** Updates everything that depends on the space's state, keeping forms intact. */
function refresh() {
  renderIntegrity();
  if (!S.space || !document.getElementById('panel')) return;
  const st = S.space.state(Date.now());
  const conn = document.getElementById('conn');
  if (conn) conn.replaceChildren(connLine());
  const banners = document.getElementById('banners');
  if (banners) banners.replaceChildren(...bannerCards(st));
  // Until the partner's device has welcomed this one in, there is nothing to act on.
  const panel = document.getElementById('panel');
  if (panel) panel.inert = !S.gone && !st.partnerJoined && st.role === 'rebuilding';
  // Live updates re-render lists: keep focus and open <details> where they were.
  const keyOf = (e) => `${e.closest('[data-id]')?.dataset.id || ''}|${e.tagName}|${e.textContent}`;
  const put = (id, ...kids) => {
    const el = document.getElementById(id);
    if (!el) return;
    const active = document.activeElement && el.contains(document.activeElement) ? keyOf(document.activeElement) : null;
    const open = new Set([...el.querySelectorAll('details[open]')].map(keyOf));
    el.replaceChildren(...kids);
    for (const d of el.querySelectorAll('details')) if (open.has(keyOf(d))) d.open = true;
    if (active) {
      const again = [...el.querySelectorAll('button, summary, a')].find((b) => keyOf(b) === active);
      if (again) again.focus({ preventScroll: true });
    }
  };
  put('live-agreements', ...agreementCards(st));
  put('drafts', ...draftCards());
  put('asked-of-me', ...askedOfMe(st));
  put('waiting', ...intentCards());
  put('live-checkins', ...checkinList(st));
  put('live-timeline', timeline(st));
  put('live-safety', ...safetyCards(st));
  const answers = document.getElementById('answers');
  if (answers) fillAnswers(answers, st);
}

function renderIntegrity() {
  if (!S.space) { integrityEl.replaceChildren(); return; }
  const seen = new Set();
  const alerts = S.space.alerts().filter((a) => !seen.has(a.advice) && seen.add(a.advice));
  if (!alerts.length) { integrityEl.replaceChildren(); return; }
  integrityEl.replaceChildren(h('section', { class: 'warning', 'aria-labelledby': 'warn-h' },
    h('h2', { id: 'warn-h' }, 'Something here does not add up'),
    alerts.map((a) => h('p', {}, a.advice)),
    h('p', {}, 'What to do: compare the state code below with your partner, in person or on a call you trust. If they differ, the server is not showing you both the same thing.'),
    h('p', {}, 'State code on this device: ', h('strong', { class: 'digits' }, S.space.stateCode)),
    h('details', {}, h('summary', {}, 'What the check found'), alerts.map((a) => h('p', { class: 'muted' }, a.what)))));
}

function bannerCards(st) {
  const out = [];
  if (S.gone) {
    const rm = h('button', { type: 'button', class: 'secondary' }, 'Remove the space from this device');
    rm.addEventListener('click', async () => {
      await store.delSpace();
      if (S.ws) { S.ws.onclose = null; S.ws.close(); S.ws = null; }
      try { S.space.free(); } catch { /* */ }
      S.space = null; S.gone = false; showStart();
    });
    // Only a signed CloseSpace event says a person closed it; a space that
    // just vanished was removed by the relay, and the local copy is kept.
    const c = st.closed;
    out.push(c ? h('section', { class: 'card warm stack' }, h('h2', {}, me(c.by) ? 'You closed this shared space' : 'Your partner closed this shared space'),
      h('p', {}, `${me(c.by) ? 'You' : 'Your partner'} chose to close it in Troth, so the server no longer keeps it. What you wrote together stays readable on this device until you remove it.`), rm)
      : h('section', { class: 'card warm stack' }, h('h2', {}, 'The relay no longer has this space'),
        h('p', {}, 'This browser has no signed note from your partner that they closed it: either the relay removed it, or your partner closed it before this browser could fetch their note. Your copy is kept on this device, and nothing in it was lost.'),
        h('p', {}, 'Talk with your partner in a way you trust. If you both want to go on, you can start a new space together; this copy stays here to read until you remove it.'), rm));
    return out;
  }
  if (!st.partnerJoined) {
    if (st.role === 'leading') {
      const b = h('button', { type: 'button' }, 'Show a code for my partner');
      const err = errorLine();
      b.addEventListener('click', () => act(b, err, invite));
      out.push(h('section', { class: 'card warm stack' }, h('h2', {}, 'Your partner has not joined yet'), err, b));
    } else {
      out.push(h('p', { class: 'card warm' }, 'Almost there: waiting for your partner\'s device to welcome you in…'));
    }
  }
  for (const a of st.agreements.filter((x) => x.due)) {
    const b = h('button', { type: 'button' }, `Review “${a.title}”`);
    b.addEventListener('click', () => review(a));
    out.push(h('section', { class: 'card warm stack' },
      h('p', {}, `It's time to look at “${a.title}” together: renew it, change it, or retire it.`), b));
  }
  return out;
}

// ---------------------------------------------------------------- agreements

function statusWords(a, v) {
  switch (v.status) {
    case 'in-force': return 'In force — both of you signed these exact words';
    case 'pending':
      if (v.signedBy.includes(S.space.role)) return 'Waiting for your partner to sign';
      return 'Waiting for your signature';
    case 'withdrawn': return a.withdrawn ? `${who(a.withdrawn.by)} withdrew consent` : 'Consent withdrawn';
    case 'retired': return 'Retired together';
    case 'declined': return 'Not agreed for now';
    default: return 'Replaced by a later version';
  }
}

const KINDS = { whereabouts: 'knowing where you are', phone: 'phone access', bed: 'sharing the bed', 'no-contact': 'no contact',
  therapy: 'therapy', honesty: 'honesty', other: 'other' };
/** Every signed field of a rule: what it asks of whom, its kind and its details. */
function ruleMeta(r) {
  return h('span', { class: 'muted rule-meta' }, `Asks this of ${me(r.asksOf) ? 'you' : 'your partner'} · kind: ${KINDS[r.category] || r.category}`,
    r.params.map(([k, val]) => ` · ${k}: ${val}`).join(''));
}

function rulesList(v) {
  return h('ul', { class: 'rules' }, v.rules.map((r) => h('li', {}, r.text, ruleMeta(r))));
}

function agreementCards(st) {
  if (!st.agreements.length) {
    return [h('p', { class: 'card calm' }, st.role === 'leading'
      ? 'No agreements yet. When you are ready, propose one — start from a template and change the words to fit you both.'
      : 'No agreements yet. When your partner proposes one, it appears here for you to read and sign — or to ask for a change.')];
  }
  return st.agreements.map((a) => {
    const inForce = a.inForce ? a.versions[a.inForce - 1] : null;
    const pending = a.pending ? a.versions[a.pending - 1] : null;
    const shown = inForce || pending || a.versions[a.versions.length - 1];
    const card = h('article', { class: 'card stack', 'aria-labelledby': `ag-${a.id}`, 'data-id': a.id });
    card.append(h('h3', { id: `ag-${a.id}` }, shown.title),
      h('p', {}, h('span', { class: `badge ${shown.status}` }, statusWords(a, shown)), ' ',
        h('span', { class: 'muted' }, `Version ${shown.version} · review on ${shown.reviewOn}`)),
      rulesList(shown));
    if (shown.status === 'withdrawn' && a.withdrawn && a.withdrawn.comment) {
      card.append(h('p', { class: 'muted' }, `${who(a.withdrawn.by)} said: “${a.withdrawn.comment}”`));
    }
    if (inForce && pending) {
      card.append(h('div', { class: 'card warm stack' },
        h('p', {}, h('strong', {}, `A new version (${pending.version}) is waiting. `), statusWords(a, pending)),
        rulesList(pending), ...pendingActions(a, pending)));
    } else if (pending) {
      card.append(...pendingActions(a, pending));
    }
    if (inForce) card.append(inForceActions(a, inForce));
    if (a.retireRequests.length === 1 && !inForce?.status?.startsWith('retired')) {
      card.append(h('p', { class: 'muted' }, `${who(a.retireRequests[0])} asked to retire this. It is retired once you both have.`));
    }
    card.append(h('details', {}, h('summary', {}, `All versions (${a.versions.length})`),
      a.versions.slice().reverse().map((v) => h('div', { class: 'card' },
        h('p', {}, h('strong', {}, `Version ${v.version}: ${v.title}`), ' ', h('span', { class: `badge ${v.status}` }, statusWords(a, v))),
        h('p', { class: 'muted' }, `Proposed by ${who(v.proposedBy).toLowerCase()} · signed by ${v.signedBy.length ? v.signedBy.map((r) => who(r).toLowerCase()).join(' and ') : 'nobody yet'} · review on ${v.reviewOn}`),
        rulesList(v),
        v.changeRequests.map((c) => h('p', { class: 'muted' }, `${who(c.by)} asked for a change: “${c.comment}”`))))));
    return card;
  });
}

function pendingActions(a, v) {
  const out = [];
  for (const c of v.changeRequests) out.push(h('p', { class: 'card calm' }, `${who(c.by)} asked for a change: “${c.comment}”`));
  const err = errorLine();
  if (!v.signedBy.includes(S.space.role)) {
    const sign = h('button', { type: 'button' }, 'Sign these words');
    sign.addEventListener('click', () => act(sign, err, async () => {
      await send((now) => S.space.cosign(a.id, v.version, now));
      const now = S.space.state(Date.now()).agreements.find((x) => x.id === a.id);
      say(now && now.inForce === v.version ? 'Signed by both of you. It is now in force.'
        : 'Signed. It comes into force once your partner signs too.');
    }));
    const change = h('button', { type: 'button', class: 'secondary' }, 'Ask for a change');
    change.addEventListener('click', () => askChange(a, v));
    out.push(h('div', { class: 'row' }, sign, change));
  } else {
    out.push(h('p', { class: 'muted' }, 'You signed this version. Your partner can sign it or ask for a change.'));
  }
  const edit = h('button', { type: 'button', class: 'quiet' }, 'Propose different words');
  edit.addEventListener('click', () => editor(v, a.id));
  out.push(h('div', { class: 'row' }, edit), err);
  return out;
}

function inForceActions(a, v) {
  const err = errorLine();
  const withdraw = h('button', { type: 'button', class: 'gentle-stop' }, 'Withdraw my consent');
  withdraw.addEventListener('click', () => confirmWithdraw(a, v));
  const amend = h('button', { type: 'button', class: 'secondary' }, 'Suggest a change');
  amend.addEventListener('click', () => editor(v, a.id));
  const retire = h('button', { type: 'button', class: 'quiet' }, 'Retire together');
  retire.addEventListener('click', () => act(retire, err, () => send((now) => S.space.retire(a.id, now),
    'Asked to retire. It is retired once you both have.')));
  if (a.retireRequests.includes(S.space.role)) retire.disabled = true;
  return h('div', { class: 'stack' }, h('div', { class: 'row' }, withdraw, amend, retire), err);
}

function confirmWithdraw(a, v) {
  const [cw, comment] = field('Anything you want to say (optional)', 'textarea', { rows: '2' });
  const err = errorLine();
  const yes = h('button', { type: 'button', class: 'gentle-stop' }, 'Withdraw consent');
  const no = h('button', { type: 'button', class: 'secondary' }, 'Not now');
  yes.addEventListener('click', () => act(yes, err, async () => {
    await send((now) => S.space.withdraw(a.id, comment.value, now), 'Your consent is withdrawn. Your partner will see it.');
    closeDialog();
  }));
  no.addEventListener('click', closeDialog);
  openDialog(`Withdraw consent from “${v.title}”?`,
    h('p', {}, 'You can do this at any time, on your own. It is recorded and shown to you both; the agreement is no longer in force. You can always agree on new words later.'),
    cw, err, h('div', { class: 'row' }, yes, no));
  yes.focus();
}

function askChange(a, v) {
  const [cw, comment] = field('What would you like to change?', 'textarea', { rows: '3' },
    'Your partner sees your words next to the proposal.');
  const err = errorLine();
  const ok = h('button', { type: 'button' }, 'Send my request');
  const no = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
  ok.addEventListener('click', () => act(ok, err, async () => {
    if (!comment.value.trim()) throw new Error('Please say what you would like to change.');
    await send((now) => S.space.requestChange(a.id, v.version, comment.value, now), 'Your request was sent.');
    closeDialog();
  }));
  no.addEventListener('click', closeDialog);
  openDialog(`Ask for a change to “${v.title}”`, cw, err, h('div', { class: 'row' }, ok, no));
}

function review(a) {
  const v = a.versions[a.inForce - 1];
  const [dw, date] = field('Next review date', 'input', { type: 'date', value: dayPlus(Date.now(), 30), min: dayPlus(Date.now(), 1) });
  const err = errorLine();
  const renew = h('button', { type: 'button' }, 'Renew these words');
  renew.addEventListener('click', () => act(renew, err, async () => {
    const draft = { title: v.title, rules: v.rules, reviewOn: date.value };
    await send((now) => S.space.propose(draft, a.id, now), 'Proposed to renew. It is in force again once you both sign.');
    closeDialog();
  }));
  const change = h('button', { type: 'button', class: 'secondary' }, 'Change the words');
  change.addEventListener('click', () => { closeDialog(); editor(v, a.id); });
  const retire = h('button', { type: 'button', class: 'secondary' }, 'Retire it');
  retire.addEventListener('click', () => act(retire, err, async () => {
    await send((now) => S.space.retire(a.id, now), 'Asked to retire. It is retired once you both have.');
    closeDialog();
  }));
  const no = h('button', { type: 'button', class: 'quiet' }, 'Later');
  no.addEventListener('click', closeDialog);
  openDialog(`Review “${v.title}”`, h('p', {}, 'Decide together: keep these words for another while, change them, or let this agreement go.'),
    rulesList(v), dw, err, h('div', { class: 'row' }, renew, change, retire, no));
}

function draftCards() {
  return S.drafts.map((d, i) => {
    const open = h('button', { type: 'button', class: 'secondary' }, 'Continue');
    open.addEventListener('click', () => { S.drafts.splice(i, 1); saveLocal(); editor(d, d.amends, d); refresh(); });
    const drop = h('button', { type: 'button', class: 'quiet' }, 'Discard');
    drop.addEventListener('click', () => { S.drafts.splice(i, 1); saveLocal(); refresh(); });
    return h('div', { class: 'card' }, h('p', {}, h('span', { class: 'badge' }, 'Draft'), ' ', d.title || '(no title yet)'),
      h('p', { class: 'muted' }, 'Only on this screen until you lock; not sent.'), h('div', { class: 'row' }, open, drop));
  });
}

/** The agreement editor: from a template, an existing version (amend), or a draft. */
function editor(from, amends, draft) {
  const tpl = templates();
  const rulesBox = h('div', { class: 'stack' });
  const [tw, title] = field('Title', 'input', { type: 'text', maxlength: '200' });
  const [dw, date] = field('Review date', 'input', { type: 'date', min: dayPlus(Date.now(), 1) },
    'Every agreement has a date when you look at it again together.');
  date.value = (draft && draft.reviewOn) || dayPlus(Date.now(), 30);
  let rules = [];
  const drawRules = () => {
    rulesBox.replaceChildren(...rules.map((r, i) => {
      const [rw, text] = field(`Rule ${i + 1} in your words`, 'textarea', { rows: '3' });
      text.value = r.text;
      text.addEventListener('input', () => { r.text = text.value; });
      const [sw, sel] = field('This asks something of', 'select');
      sel.append(h('option', { value: 'rebuilding' }, 'the partner rebuilding trust'), h('option', { value: 'leading' }, 'the partner who leads'));
      sel.value = r.asksOf || 'rebuilding';
      sel.addEventListener('change', () => { r.asksOf = sel.value; });
      // The details are signed too: each is shown and can be changed.
      const ps = r.params.map((p) => {
        const [pw, pin] = field(`Rule ${i + 1}: ${p[0]}`, 'input', { type: 'text', value: p[1] });
        pin.addEventListener('input', () => { p[1] = pin.value; });
        return pw;
      });
      const rm = h('button', { type: 'button', class: 'quiet' }, `Remove rule ${i + 1}`);
      rm.addEventListener('click', () => { rules.splice(i, 1); drawRules(); });
      return h('div', { class: 'card' }, rw, h('p', { class: 'muted' }, `Kind: ${KINDS[r.category] || r.category}`), sw, ps, rules.length > 1 ? rm : null);
    }));
  };
  const use = (t) => {
    title.value = t.title;
    rules = t.rules.map((r) => ({ ...r, params: r.params.map((p) => p.slice()) }));
    drawRules();
  };
  let chooser = null;
  if (!from) {
    const name = `tpl${++uid}`;
    chooser = h('fieldset', { class: 'stack' }, h('legend', {}, 'Start from'),
      tpl.map((t, i) => {
        const id = `${name}-${i}`;
        const r = h('input', { type: 'radio', name, id, value: t.name, checked: i === 0 });
        r.addEventListener('change', () => use(t));
        return h('label', { class: 'inline', for: id }, r, t.title);
      }),
      (() => {
        const id = `${name}-blank`;
        const r = h('input', { type: 'radio', name, id, value: '' });
        r.addEventListener('change', () => use({ title: '', rules: [{ text: '', category: 'other', asksOf: 'rebuilding', params: [] }] }));
        return h('label', { class: 'inline', for: id }, r, 'My own words');
      })());
    use(tpl[0]);
  } else {
    use(from);
  }
  const addRule = h('button', { type: 'button', class: 'quiet' }, 'Add a rule');
  addRule.addEventListener('click', () => { rules.push({ text: '', category: 'other', asksOf: 'rebuilding', params: [] }); drawRules(); });
  const err = errorLine();
  const propose = h('button', { type: 'button' }, 'Propose to my partner');
  propose.addEventListener('click', () => act(propose, err, async () => {
    const d = { title: title.value, rules, reviewOn: date.value };
    await send((now) => S.space.propose(d, amends, now), 'Proposed. Your partner can now read it and sign, or ask for a change.');
    closeDialog();
  }));
  const keep = h('button', { type: 'button', class: 'secondary' }, 'Keep as a draft');
  keep.addEventListener('click', () => {
    S.drafts.push({ title: title.value, rules, reviewOn: date.value, amends });
    saveLocal();
    closeDialog();
    refresh();
  });
  const cancel = h('button', { type: 'button', class: 'quiet' }, 'Cancel');
  cancel.addEventListener('click', closeDialog);
  openDialog(amends ? `New version of “${from.title}”` : 'Propose an agreement',
    h('p', { class: 'muted' }, 'Nothing is in force until you have both signed the same words.'),
    chooser, tw, rulesBox, addRule, dw, err, h('div', { class: 'row' }, propose, keep, cancel));
}

// ---------------------------------------------------------------- check-ins

function checkInForm() {
  const [tw, text] = field('Your check-in', 'textarea', { rows: '2', placeholder: 'At the gym until 7' },
    'Where you are, or anything you want your partner to know.');
  const [pc, attach] = checkbox('Attach a place this time');
  const [pw, place] = field('Place', 'input', { type: 'text', maxlength: '300' }, 'Only sent with this check-in, because you chose to.');
  pw.hidden = true;
  attach.addEventListener('change', () => { pw.hidden = !attach.checked; if (attach.checked) place.focus(); });
  const [aw, answers] = field('This answers', 'select', { id: 'answers' });
  answers.addEventListener('change', () => { answers.dataset.touched = '1'; });
  const err = errorLine();
  const btn = h('button', { type: 'submit' }, 'Send check-in');
  const form = h('form', { class: 'card stack', 'aria-labelledby': 'ci-h' }, h('h2', { id: 'ci-h' }, 'Check in'), tw, pc, pw, aw, err, btn);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(btn, err, async () => {
      await sendOrKeep('checkIn', [text.value, attach.checked ? place.value : '', answers.value || ''],
        `Check-in: ${text.value}`, 'Check-in sent.');
      text.value = ''; place.value = ''; attach.checked = false; pw.hidden = true;
      delete answers.dataset.touched;
      refresh();
    });
  });
  return form;
}

function fillAnswers(sel, st) {
  const open = st.requests.filter((q) => !me(q.by) && q.answeredBy === null);
  const cur = sel.value;
  sel.replaceChildren(h('option', { value: '' }, 'Nothing in particular'),
    ...open.map((q) => h('option', { value: q.hash }, `Your partner's request${q.note ? `: ${q.note}` : ''} (${when(q.atMs)})`)));
  if (sel.dataset.touched && [...sel.options].some((o) => o.value === cur)) sel.value = cur;
  else sel.value = open.length ? open[open.length - 1].hash : '';
  sel.parentElement.hidden = open.length === 0;
}

function askForm() {
  const [nw, note] = field('A note (optional)', 'input', { type: 'text', placeholder: 'Could you let me know where you are?' });
  const err = errorLine();
  const ask = h('button', { type: 'button' }, 'Ask for a check-in');
  ask.addEventListener('click', () => act(ask, err, async () => {
    await sendOrKeep('requestCheckIn', [note.value], note.value ? `Ask for a check-in: ${note.value}` : 'Ask for a check-in',
      'Asked. Your partner sees your request.');
    note.value = '';
  }));
  const phone = h('button', { type: 'button', class: 'secondary' }, 'Ask to see the phone');
  phone.addEventListener('click', () => act(phone, err, async () => {
    await sendOrKeep('phone', ['asked', note.value], 'Ask to see the phone', 'Asked. The request is noted for both of you.');
    note.value = '';
  }));
  return h('section', { class: 'card stack', 'aria-labelledby': 'ask-h' }, h('h2', { id: 'ask-h' }, 'Ask your partner'),
    h('p', { class: 'muted' }, 'Every request is shown to your partner; nothing is watched in secret.'), nw, err, h('div', { class: 'row' }, ask, phone));
}

function askedOfMe(st) {
  const reqs = st.requests.filter((q) => !me(q.by));
  const phones = st.phone.filter((p) => p.action === 'asked' && !me(p.by));
  if (!reqs.length && !phones.length) return [];
  const items = [
    ...reqs.map((q) => ({ at: q.atMs, el: h('li', {}, h('span', { class: 'who' }, 'Your partner'), ` asked for a check-in${q.note ? `: “${q.note}”` : ''} · `,
      h('span', { class: 'muted' }, when(q.atMs)), ' · ', q.answeredBy !== null ? 'answered' : h('strong', {}, 'waiting for your check-in')) })),
    ...phones.map((p) => {
      const answered = st.phone.some((x) => x.seq > p.seq && me(x.by) && x.action !== 'asked');
      const li = h('li', {}, h('span', { class: 'who' }, 'Your partner'), ` asked to see your phone${p.note ? `: “${p.note}”` : ''} · `, h('span', { class: 'muted' }, when(p.atMs)));
      if (!answered) {
        const err = errorLine();
        const show = h('button', { type: 'button', class: 'secondary' }, 'I showed it');
        show.addEventListener('click', () => act(show, err, () => sendOrKeep('phone', ['granted', ''], 'I showed the phone', 'Noted.')));
        const later = h('button', { type: 'button', class: 'quiet' }, 'Later, please');
        later.addEventListener('click', () => act(later, err, () => sendOrKeep('phone', ['declined', 'later, please'], 'Later, please', 'Noted.')));
        li.append(h('div', { class: 'row' }, show, later), err);
      } else li.append(' · answered');
      return { at: p.atMs, el: li };
    }),
  ].sort((x, y) => y.at - x.at);
  return [h('section', { class: 'card warm stack', 'aria-labelledby': 'asked-h' }, h('h2', { id: 'asked-h' }, 'Asked of you'),
    h('ol', { class: 'timeline' }, items.map((i) => i.el)))];
}

function myRequests(st) {
  const mine = [
    ...st.requests.filter((q) => me(q.by)).map((q) => ({ at: q.atMs, what: `You asked for a check-in${q.note ? `: “${q.note}”` : ''}`,
      state: q.answeredBy !== null ? 'answered' : 'not answered yet' })),
    ...st.phone.filter((p) => me(p.by) && p.action === 'asked').map((p) => ({ at: p.atMs, what: `You asked to see the phone${p.note ? `: “${p.note}”` : ''}`,
      state: st.phone.some((x) => x.seq > p.seq && !me(x.by) && x.action !== 'asked') ? 'answered' : 'not answered yet' })),
  ].sort((x, y) => y.at - x.at);
  if (!mine.length) return [];
  return [h('details', {}, h('summary', {}, `What you asked (${mine.length})`),
    h('ol', { class: 'timeline' }, mine.map((m) => h('li', {}, m.what, ' ', h('span', { class: 'muted' }, `· ${when(m.at)} · ${m.state}`)))))];
}

function checkinList(st) {
  if (!st.checkins.length) return [h('p', { class: 'muted' }, 'No check-ins yet.'), ...myRequests(st)];
  return [h('h2', {}, 'Check-ins'), ...myRequests(st), h('ol', { class: 'timeline', 'aria-label': 'Check-ins, newest first' },
    st.checkins.slice().reverse().map((c) => {
      const li = h('li', {}, h('span', { class: 'who' }, who(c.by)), ': ', c.text,
        c.place ? h('span', {}, ` — at ${c.place}`) : null, ' ', h('span', { class: 'muted' }, `· ${when(c.atMs)}`));
      if (c.ackedAt !== null) li.append(h('span', { class: 'muted' }, ' · acknowledged'));
      else if (!me(c.by)) {
        const ack = h('button', { type: 'button', class: 'secondary' }, 'Acknowledge');
        ack.setAttribute('aria-label', `Acknowledge the check-in “${c.text}”`);
        ack.addEventListener('click', () => act(ack, null, () => sendOrKeep('ack', [c.hash], `Acknowledge “${c.text}”`, 'Acknowledged. Thank you.')));
        li.append(' ', ack);
      }
      return li;
    }))];
}

function timeline(st) {
  return h('ol', { class: 'timeline' }, st.timeline.slice().reverse().map((t) =>
    h('li', {}, h('span', { class: 'who' }, who(t.by)), ` ${tidy(me(t.by) ? t.what.replace(/^exported a copy of their/, 'exported a copy of your') : t.what)} `,
      h('span', { class: 'muted' }, `· ${when(t.atMs)}`),
      // Core's time notes (dated before the event it follows, or ahead of this device's clock).
      st.notes.filter((n) => n.seq === t.seq).map((n) => h('p', { class: 'note' }, n.what)))));
}

// ---------------------------------------------------------------- safety, therapist, key, leaving

function safetyCards(st) {
  const compared = S.meta && S.meta.compared;
  const mark = h('button', { type: 'button', class: 'secondary' }, 'We compared it in person');
  mark.addEventListener('click', async () => { S.meta.compared = true; await persist(); refresh(); say('Marked as compared.'); });
  const consent = Object.entries(st.consents);
  return [
    h('section', { class: 'card stack', 'aria-labelledby': 'sn2-h' }, h('h2', { id: 'sn2-h' }, 'Safety number'),
      h('p', { class: 'digits', 'data-testid': 'safety-number' }, st.safetyNumber || 'Shown once your partner has joined.'),
      st.safetyNumber ? (compared ? h('p', {}, 'You marked this as compared in person.') : mark) : null),
    h('section', { class: 'card stack', 'aria-labelledby': 'sc-h' }, h('h2', { id: 'sc-h' }, 'State code'),
      h('p', { class: 'digits', 'data-testid': 'state-code' }, st.stateCode),
      h('p', { class: 'muted' }, 'When both of you are up to date, your codes are the same. If they differ after a refresh, the server may be showing you different things.')),
    h('section', { class: 'card stack', 'aria-labelledby': 'share-h' }, h('h2', { id: 'share-h' }, 'Sharing with a therapist'),
      consent.length ? h('ul', {}, consent.map(([role, c]) => h('li', {},
        `${who(role)} agreed to share ${c.includeCheckins ? 'agreements and check-ins' : 'agreements'} ${c.recipient ? 'with the therapist\'s key' : 'as a printed copy'} until ${c.until}${c.current ? '' : ' (ended)'}.`)))
        : h('p', { class: 'muted' }, 'Nothing is shared unless you both agree.'),
      ...reportButtons(st)),
  ];
}

function reportButtons(st) {
  const l = st.consents.leading;
  const r = st.consents.rebuilding;
  if (!l || !r || !l.current || !r.current || l.recipient !== r.recipient) return [];
  const err = errorLine();
  const out = [];
  if (l.recipient) {
    const dl = h('button', { type: 'button' }, 'Download the encrypted report');
    dl.addEventListener('click', () => act(dl, err, () => {
      download('troth-report.age', S.space.encryptReport(l.recipient, Date.now()), 'text/plain');
      say('Downloaded. Only your therapist can open it.');
    }));
    out.push(dl);
  }
  const pr = h('button', { type: 'button', class: 'secondary' }, 'Print a readable summary');
  pr.addEventListener('click', () => act(pr, err, () => {
    const text = S.space.reportText(l.recipient, Date.now());
    const sheet = h('pre', { class: 'print-sheet', tabindex: '0', role: 'region', 'aria-label': 'Report summary' }, text);
    openDialog('Summary for your therapist', sheet, h('div', { class: 'row' },
      h('button', { type: 'button', onclick: () => window.print() }, 'Print'),
      h('button', { type: 'button', class: 'secondary', onclick: closeDialog }, 'Close')));
  }));
  out.push(pr);
  return [h('div', { class: 'row' }, ...out), err];
}

function therapistForm() {
  const [rw, recipient] = field("Therapist's age key (leave empty for a printed copy)", 'input',
    { type: 'text', placeholder: 'age1…', autocomplete: 'off', spellcheck: 'false' });
  const [cw, include] = checkbox('Include check-ins, not only agreements');
  const [uw, until] = field('Until', 'input', { type: 'date', value: dayPlus(Date.now(), 30), min: dayPlus(Date.now(), 0) });
  const err = errorLine();
  const btn = h('button', { type: 'submit' }, 'I agree to share');
  const form = h('form', { class: 'card stack', 'aria-labelledby': 'consent-h' }, h('h2', { id: 'consent-h' }, 'Agree to share a report'),
    h('p', { class: 'muted' }, 'A report is made only when both of you agree to the same therapist. Your signature is recorded for both of you.'),
    rw, cw, uw, err, btn);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(btn, err, () => send((now) => S.space.consentReport(recipient.value, include.checked, until.value, now),
      'Your consent is recorded. Your partner sees it.'));
  });
  return form;
}

function keyCard() {
  const [cw, cur] = field('Your current passphrase', 'input', { type: 'password', autocomplete: 'current-password' },
    'Asked again, so that nobody can take a copy of your key from an unlocked screen.');
  const [pw, pass] = field('Passphrase for the exported file', 'input', { type: 'password', autocomplete: 'new-password' },
    'The file is encrypted with it; the troth command line and other browsers open it with the same passphrase.');
  passHint(pass, pw);
  const err = errorLine();
  const btn = h('button', { type: 'submit', class: 'secondary' }, 'Export my key');
  const form = h('form', { class: 'card stack', 'aria-labelledby': 'key-h' }, h('h2', { id: 'key-h' }, 'Your key'),
    h('p', { class: 'muted' }, 'Fingerprint: ', h('span', { 'data-testid': 'fingerprint' }, S.keys.fingerprint)),
    h('p', { class: 'muted' }, 'Each export is noted in your shared timeline, so your partner sees it.'), cw, pw, err, btn);
  const offline = "You seem to be offline. An export is noted for both of you before the file is made, so nothing was exported. Please try again when you're connected.";
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(btn, err, async () => {
      if (!navigator.onLine) throw new Error(offline);
      say('Checking your passphrase… this takes a moment.');
      await pause(30);
      // The stored key file must open with the passphrase typed now.
      let k;
      try {
        k = Keys.unlock(new TextEncoder().encode(await store.get('keyfile')), cur.value);
      } catch (x) { cur.select(); throw x; }
      const same = k.identityHex === S.keys.identityHex;
      k.free();
      if (!same) throw new Error("That passphrase doesn't open this key. Check it and try again.");
      checkPassphrase(pass.value);
      say('Encrypting your key… this takes a moment.');
      await pause(30);
      const file = S.keys.exportFile(pass.value);
      // Noted first, for both of you; only then the file is handed over.
      try {
        await send((now) => S.space.keyExported('a browser', now));
      } catch (x) { throw x instanceof Offline ? new Error(offline) : x; }
      download('troth-key.age', file, 'text/plain');
      cur.value = ''; pass.value = '';
      say('Exported. Your partner sees that you exported a copy of your key.');
    });
  });
  return form;
}

function lockCard() {
  const [lw, sel] = field('Lock this browser after', 'select', {}, 'Without a touch or a key press. Never longer than 30 minutes.');
  for (const m of [1, 2, 5, 10, 15, 30]) sel.append(h('option', { value: String(m * 60000) }, `${m} minute${m > 1 ? 's' : ''}`));
  sel.value = String(lockMs());
  sel.addEventListener('change', () => { localStorage.setItem('troth.autolock.ms', sel.value); touch(); say('Saved.'); });
  return h('section', { class: 'card stack', 'aria-labelledby': 'lk-h' }, h('h2', { id: 'lk-h' }, 'Locking'), lw);
}

/**
 * "This copy of Troth": the version and bundle hash of the code running now
 * (release.json, written by the build beside every file it lists) and the
 * origin it came from. The page cannot vouch for itself — a server that
 * changed the code could change this card too — so the card says how to
 * check from outside: `troth web verify`, or the hash published for the
 * version.
 */
function codeCard() {
  const hash = h('p', { class: 'digits', 'data-testid': 'bundle-hash' }, '…');
  const ver = h('p', {}, `This copy of Troth came from ${location.origin}.`);
  const card = h('section', { class: 'card stack', 'aria-labelledby': 'code-h' }, h('h2', { id: 'code-h' }, 'This copy of Troth'),
    ver, hash,
    h('p', { class: 'muted' }, `To check that this is the code Troth published, and not a changed copy, run "troth web verify ${location.origin}" on a computer you trust, or compare the bundle above with the one published for this version.`));
  fetch('release.json', { cache: 'no-cache' }).then((r) => (r.ok ? r.json() : Promise.reject(new Error(String(r.status)))))
    .then((rel) => {
      ver.textContent = `Version ${rel.version}, from ${location.origin}.`;
      hash.textContent = `Bundle ${String(rel.bundle).match(/.{1,8}/g).join(' ')}`;
    })
    .catch(() => { hash.textContent = 'The bundle hash could not be read just now.'; });
  return card;
}

function leaveCard() {
  const btn = h('button', { type: 'button', class: 'gentle-stop' }, 'Leave this space');
  btn.addEventListener('click', () => {
    const [cw, comment] = field('Anything you want to say (optional)', 'textarea', { rows: '2' });
    const err = errorLine();
    const yes = h('button', { type: 'button', class: 'gentle-stop' }, 'Leave and delete');
    const no = h('button', { type: 'button', class: 'secondary' }, 'Stay');
    const still = (e) => (e instanceof RelayError && e.status === 404 ? null
      : new Error(`${e.message} The space is still here; you can try again, or use "Remove the key from this browser" on the unlock screen.`));
    yes.addEventListener('click', () => act(yes, err, async () => {
      // First a signed "closed the space" both of you see; then the relay
      // is asked to delete it (a space that vanishes without it is the
      // relay's doing, and is reported so).
      if (!S.gone && !S.space.state(Date.now()).closed) {
        try { await send((now) => S.space.closeSpace(comment.value, now)); } catch (e) { if (still(e)) throw still(e); }
      }
      try { await S.api.remove(); } catch (e) { if (still(e)) throw still(e); }
      closeDialog();
      await store.clear();
      lock(false);
      showWelcome();
      say('You left the space. Its keys are gone from this browser.');
    }));
    no.addEventListener('click', closeDialog);
    openDialog('Leave this space?',
      h('p', {}, 'This notes for both of you that you closed the space, asks the server to delete it, and removes your key and everything of this space from this browser. Your partner will see that you closed it.'),
      h('p', { class: 'muted' }, 'If you might want your key later, export it first.'),
      cw, err, h('div', { class: 'row' }, yes, no));
  });
  return h('section', { class: 'card stack', 'aria-labelledby': 'leave-h' }, h('h2', { id: 'leave-h' }, 'Leaving'),
    h('p', { class: 'muted' }, 'You can leave at any time. Nobody needs to agree.'), btn);
}

boot();
