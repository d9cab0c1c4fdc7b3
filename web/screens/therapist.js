// "I'm a therapist" (issue 17): for a therapist who does not use Troth. The
// page makes an age key in this browser, kept in IndexedDB only inside a
// file encrypted with the therapist's passphrase (age scrypt, made in wasm),
// shows the `age1…` recipient to give the couple, and opens the report files
// they export to it. Nothing on this page talks to the relay: no request, no
// live connection, no notification; the key and the reports stay here.
import { TherapistKey, checkPassphrase } from '../troth_wasm.js';
import { store } from '../lib/store.js';
import { S } from '../lib/state.js';
import { h, field, passHint, say, pause, act, errorLine, screen, download, when } from '../lib/dom.js';
import { touch, showWelcome } from './unlock.js';

/** The IndexedDB record holding the therapist's passphrase-protected key file. */
const RECORD = 'therapist-key';
/** Files larger than this are not read (a report is far smaller). */
const MAX_FILE = 4 * 1024 * 1024;

/** The therapist page: make a key, unlock it, or (unlocked) show it and open reports. */
export async function showTherapist(note) {
  if (S.therapist) { showReports(); return; }
  const file = await store.get(RECORD);
  if (file) showTherapistUnlock(note); else showMakeKey();
}

function showMakeKey() {
  const [p1w, p1] = field('Choose a passphrase', 'input', { type: 'password', autocomplete: 'new-password' },
    'It protects your key on this device. It never leaves this browser, and nobody can reset it for you.');
  passHint(p1, p1w);
  const [p2w, p2] = field('Type it once more', 'input', { type: 'password', autocomplete: 'new-password' });
  const err = errorLine();
  const make = h('button', { type: 'submit' }, 'Make my key');
  const form = h('form', { class: 'card stack', 'aria-labelledby': 'tk-h' }, h('h2', { id: 'tk-h' }, 'Your key for reports'),
    p1w, p2w, err, make);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(make, err, async () => {
      if (p1.value !== p2.value) throw new Error("The two passphrases aren't the same. Please type them again.");
      checkPassphrase(p1.value);
      say('Making your key… this takes a moment.');
      await pause(30);
      const key = TherapistKey.generate();
      // Only the passphrase-protected file is stored, never the key itself.
      await store.set(RECORD, key.exportFile(p1.value));
      p1.value = ''; p2.value = '';
      opened(key);
    });
  });
  const back = h('button', { type: 'button', class: 'quiet' }, 'Back to the first screen');
  back.addEventListener('click', () => showWelcome());
  screen("I'm a therapist",
    h('p', {}, 'A couple you work with can share a report from Troth with you: their agreements and, if they chose, their check-ins. Only you can read it.'),
    h('p', {}, 'This page makes a key in this browser. You give the couple the short public part; they make the report for it; you open the file here. You need no account, and nothing about you or the reports is sent anywhere.'),
    form, back);
  p1.focus();
}

function showTherapistUnlock(note) {
  const [pw, pass] = field('Passphrase', 'input', { type: 'password', autocomplete: 'current-password' });
  const err = errorLine();
  const btn = h('button', { type: 'submit' }, 'Open my key');
  const form = h('form', { class: 'card stack' }, pw, err, btn);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(btn, err, async () => {
      say('Opening your key… this takes a moment.');
      await pause(30);
      let key;
      try {
        key = TherapistKey.unlock(new TextEncoder().encode(await store.get(RECORD)), pass.value);
      } catch (x) { pass.select(); throw x; }
      pass.value = '';
      opened(key);
    });
  });
  const back = h('button', { type: 'button', class: 'quiet' }, 'Back to the first screen');
  back.addEventListener('click', () => showWelcome());
  screen("I'm a therapist", note ? h('p', { class: 'card calm' }, note) : null,
    h('p', {}, 'Type your passphrase to open your key for reports.'), form, back);
  pass.focus();
}

function opened(key) {
  S.therapist = key;
  document.getElementById('lock').hidden = false;
  touch();
  showReports();
}

/** The unlocked page: the recipient to give, and the place to open reports. */
function showReports() {
  const key = S.therapist;
  const recipient = key.recipient;
  const copyErr = errorLine();
  const copy = h('button', { type: 'button', class: 'secondary' }, 'Copy');
  const shown = h('p', { class: 'code', 'data-testid': 'therapist-recipient' }, recipient);
  copy.addEventListener('click', () => act(copy, copyErr, async () => {
    try {
      await navigator.clipboard.writeText(recipient);
    } catch {
      getSelection().selectAllChildren(shown);
      throw new Error("This browser didn't let the page copy it. The key is selected: copy it with your keyboard or menu.");
    }
    say('Copied. Give it to the couple.');
  }));

  const result = h('div', { id: 'report', 'aria-live': 'polite' });
  const openErr = errorLine();
  const [fw, input] = field('Choose a report file', 'input', { type: 'file', accept: '.age,.txt,text/plain' },
    'Or drop the file here. It is opened on this device only.');
  const openFile = (f) => act(null, openErr, async () => {
    if (!f) return;
    if (f.size > MAX_FILE) throw new Error('This file is too large to be a Troth report.');
    const r = key.openReport(new Uint8Array(await f.arrayBuffer()));
    result.replaceChildren(...reportView(f.name, r));
    result.querySelector('h2')?.focus();
  });
  input.addEventListener('change', () => openFile(input.files && input.files[0]));
  const drop = h('section', { class: 'card stack dropzone', 'aria-labelledby': 'open-h' },
    h('h2', { id: 'open-h' }, 'Open a report'), fw, openErr);
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    openFile(e.dataTransfer && e.dataTransfer.files[0]);
  });

  const save = h('button', { type: 'button', class: 'secondary' }, 'Save a copy of my key');
  save.addEventListener('click', async () => {
    download('troth-therapist-key.age', await store.get(RECORD), 'text/plain');
    say('Saved. It opens only with your passphrase.');
  });
  const rm = h('button', { type: 'button', class: 'gentle-stop' }, 'Remove my key from this browser');
  const rmErr = errorLine();
  rm.addEventListener('click', () => act(rm, rmErr, async () => {
    if (!rm.dataset.sure) {
      rm.dataset.sure = '1';
      rm.textContent = 'Yes, remove it: reports made for it can no longer be opened here';
      return;
    }
    await store.del(RECORD);
    try { key.free(); } catch { /* already freed */ }
    S.therapist = null;
    document.getElementById('lock').hidden = true;
    showWelcome();
    say('Your key is removed from this browser.');
  }));

  screen('Reports from couples',
    h('section', { class: 'card stack', 'aria-labelledby': 'rcpt-h' }, h('h2', { id: 'rcpt-h' }, 'Your key for couples'),
      h('p', {}, 'Give this to the couple. Each of them types it under Safety → “Sharing with a therapist”; a report is made only when both agree.'),
      shown, h('div', { class: 'row' }, copy), copyErr,
      h('p', { class: 'muted' }, 'It is the public part of your key: safe to send by email or message. Anyone who has it can make a report only you can open.')),
    drop, result,
    h('section', { class: 'card stack', 'aria-labelledby': 'keep-h' }, h('h2', { id: 'keep-h' }, 'Keeping your key'),
      h('p', { class: 'muted' }, 'Your key is kept in this browser, encrypted with your passphrase. A saved copy opens with the same passphrase in the age or rage tools (age -d -i troth-therapist-key.age report.age), on any computer.'),
      h('div', { class: 'row' }, save, rm), rmErr));
}

/** A day `YYYY-MM-DD` in words, in the reader's locale. */
function longDay(day) {
  const d = new Date(`${day}T00:00:00Z`);
  return Number.isNaN(d.getTime()) ? day : `${d.toLocaleDateString(undefined, { dateStyle: 'long', timeZone: 'UTC' })} (${day})`;
}

function reportView(name, r) {
  const today = new Date().toISOString().slice(0, 10);
  const until = r.until
    ? (r.until >= today
      ? h('p', { class: 'card calm', 'data-testid': 'report-until' }, `The couple agreed to share this with you until ${longDay(r.until)}.`)
      : h('p', { class: 'card warm', 'data-testid': 'report-until' }, `The couple agreed to share this with you until ${longDay(r.until)}; that day has passed. If you still need it, ask them to share it again.`))
    : h('p', { class: 'card warm', 'data-testid': 'report-until' }, "This report doesn't say until when it may be shared. Ask the couple if you are unsure.");
  return [
    h('h2', { tabindex: '-1' }, 'Report'),
    h('p', { class: 'muted' }, `From the file ${name}, opened ${when(Date.now())}.`),
    until,
    h('pre', { class: 'print-sheet', tabindex: '0', role: 'region', 'aria-label': 'The report' }, r.text),
  ];
}
