// The first screens and locking: welcome (a new key or an imported one),
// unlock, opening the saved space, the screen for a saved copy that does not
// open, auto-lock and quick exit.
import { Keys, checkPassphrase } from '../troth_wasm.js';
import { store } from '../lib/store.js';
import { S, resetSession } from '../lib/state.js';
import { h, field, passHint, say, pause, act, errorLine, screen, openDialog, closeDialog } from '../lib/dom.js';

// Most of the app's code (the space, its tabs, sync and the saved copy) is
// not needed for this first screen, so it loads after it: fetching starts
// when a key is made, imported or unlocked, while scrypt runs, and is
// awaited once the key is open. Keeps the first download small (docs/WEB.md).
let later = null;
let vaultLoaded = null;
/** The modules the space needs, loaded once (a failed load is tried again next time). */
export function loadLater() {
  if (!later) {
    later = Promise.all([import('../lib/vault.js'), import('../lib/intents.js'), import('./pairing.js'), import('./space.js')])
      .then(([vault, intents, pairing, space]) => { vaultLoaded = vault; return { vault, intents, pairing, space }; })
      .catch((e) => { later = null; throw e; });
  }
  return later;
}
const startLoading = () => { loadLater().catch(() => { /* awaited again after the key opens */ }); };
/** The therapist page, loaded on demand (most people never need it). */
const showTherapist = async (note) => (await import('./therapist.js')).showTherapist(note);

// Lock after five minutes without a touch or a key press (another time may
// be chosen under Safety, kept in localStorage `troth.autolock.ms`; never more
// than 30 minutes, whatever is stored there).
const MAX_LOCK_MS = 30 * 60 * 1000;
/** How long the page waits without a touch before it locks. */
export const lockMs = () => Math.min(Number(localStorage.getItem('troth.autolock.ms')) || 5 * 60 * 1000, MAX_LOCK_MS);
const integrityEl = document.getElementById('integrity');
const lockBtn = document.getElementById('lock');

/** Locks and leaves for a blank page at once, replacing this history entry. */
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

/** Locks: frees the wasm handles, closes the live connection, and (unless `show` is false) shows the unlock screen. */
export function lock(show = true) {
  closeDialog();
  for (const t of S.timers) clearTimeout(t);
  if (S.ws) { S.ws.onclose = null; S.ws.close(); }
  if (S.pairing) S.pairing.stop = true;
  if (vaultLoaded) vaultLoaded.snapshotOnLock();
  try { S.space && S.space.free(); } catch { /* already freed */ }
  try { S.keys && S.keys.free(); } catch { /* already freed */ }
  const therapist = !!S.therapist;
  try { S.therapist && S.therapist.free(); } catch { /* already freed */ }
  resetSession();
  integrityEl.replaceChildren();
  lockBtn.hidden = true;
  document.getElementById('leave').hidden = true;
  if (show && therapist) showTherapist('Locked. Your key is safe here until you open it again.');
  else if (show) showUnlock('Locked. Your words are safe here until you unlock again.');
}
lockBtn.addEventListener('click', () => lock());

let idle;
/** Restarts the auto-lock countdown (on every touch or key press). */
export function touch() {
  clearTimeout(idle);
  if (S.keys || S.therapist) idle = setTimeout(() => lock(), lockMs());
}
for (const ev of ['pointerdown', 'keydown', 'input']) document.addEventListener(ev, touch, { passive: true });

/** The first screen: make a new key or import one. */
export function showWelcome() {
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
      startLoading();
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
      startLoading();
      say('Opening your key… this takes a moment.');
      await pause(30);
      const keys = Keys.unlock(new TextEncoder().encode(text), pass.value);
      await store.set('keyfile', text);
      await unlocked(keys);
    });
  });

  const therapist = h('button', { type: 'button', class: 'secondary' }, "I'm a therapist");
  therapist.addEventListener('click', () => showTherapist());
  screen('Welcome to Troth',
    h('p', {}, 'A private place for the two of you to agree on what helps rebuild trust, and to keep those agreements in the open. Everything is encrypted on your devices; the server only ever sees scrambled data.'),
    h('div', { class: 'two' }, createForm, importForm),
    joinCard(), restoreCard(),
    h('section', { class: 'card stack', 'aria-labelledby': 'therapist-h' }, h('h2', { id: 'therapist-h' }, 'For therapists'),
      h('p', {}, 'A couple you work with wants to share a report with you? Make a key here to receive it. No account, and nothing is sent.'),
      therapist));
}

/** "Restore from a recovery kit": the form comes with `recovery.js`, loaded only when asked for. */
function restoreCard() {
  const btn = h('button', { type: 'button', class: 'secondary' }, 'Restore from a recovery kit');
  const err = errorLine();
  const card = h('section', { class: 'card stack', 'aria-labelledby': 'kit-in-h' },
    h('h2', { id: 'kit-in-h' }, 'I lost my device'),
    h('p', {}, "If you saved a recovery kit, this device can take the lost one's place."), err, btn);
  btn.addEventListener('click', () => act(btn, err, async () => {
    const { restoreForm } = await import('./recovery.js');
    const form = restoreForm(unlocked);
    card.replaceWith(form);
    form.querySelector('input').focus();
  }));
  return card;
}

/** "I already use Troth on another device": the form comes with `link.js`, loaded only when asked for. */
function joinCard() {
  const btn = h('button', { type: 'button', class: 'secondary' }, 'I already use Troth on another device');
  const err = errorLine();
  const card = h('section', { class: 'card stack', 'aria-labelledby': 'other-dev-h' },
    h('h2', { id: 'other-dev-h' }, 'Another device of yours'),
    h('p', {}, 'Add this device to the space you already have, with a code your other device shows.'), err, btn);
  btn.addEventListener('click', () => act(btn, err, async () => {
    const { joinDeviceForm } = await import('./link.js');
    const form = joinDeviceForm(unlocked);
    card.replaceWith(form);
    form.querySelector('input').focus();
  }));
  return card;
}

/** The unlock screen (with an optional note, e.g. after a lock). */
export function showUnlock(note) {
  const [pw, pass] = field('Passphrase', 'input', { type: 'password', autocomplete: 'current-password' });
  const err = errorLine();
  const btn = h('button', { type: 'submit' }, 'Unlock');
  const form = h('form', { class: 'card stack' }, pw, err, btn);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(btn, err, async () => {
      const file = await store.get('keyfile');
      if (!file) { showWelcome(); return; }
      startLoading();
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
  // Marks on this page's own timeline (never sent anywhere): the
  // long-space benchmark measures opening a space between them.
  performance.mark('troth:unlocked');
  S.keys = keys;
  lockBtn.hidden = false;
  touch();
  const { vault, intents, pairing, space } = await loadLater();
  const sealed = await store.get('space');
  if (!sealed) { pairing.showStart(); return; }
  if (!await vault.openSpace(sealed)) { showChanged(); return; }
  await intents.loadLocal();
  if (!S.meta.compared && S.space.safetyNumber) pairing.showSafety(); else space.showSpace();
  performance.mark('troth:interactive');
}

function showChanged() {
  const rm = h('button', { type: 'button', class: 'gentle-stop' }, 'Remove the saved copy of the space');
  rm.addEventListener('click', () => {
    const yes = h('button', { type: 'button', class: 'gentle-stop' }, 'Remove the saved copy');
    const no = h('button', { type: 'button', class: 'secondary' }, 'Keep it for now');
    yes.addEventListener('click', async () => { await store.delSpace(); closeDialog(); (await loadLater()).pairing.showStart(); });
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
