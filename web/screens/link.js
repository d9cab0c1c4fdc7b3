// Another device of one's own (issue 18): "Add a device" in Safety shows a
// one-time code (and its QR code) and admits the new device once it proved
// its own key; "I already use Troth on another device" on the first screen
// joins with such a code. The new device makes keys of its own and receives
// this person's identity over the code (docs/PROTOCOL.md §8.1).
import { Keys, LinkSession, checkCode, checkPassphrase } from '../troth_wasm.js';
import { spaceApi, rendezvous } from '../lib/api.js';
import { S } from '../lib/state.js';
import { h, field, passHint, say, pause, act, errorLine, screen } from '../lib/dom.js';
import { store } from '../lib/store.js';
import { persist } from '../lib/vault.js';
import { showSpace } from './space.js';

const TEN_MINUTES = 10 * 60 * 1000;

/** Posts our messages and feeds theirs to the run until `done()`. */
async function exchange(run, n, token, first, done) {
  await rendezvous.post(n, token, first);
  let after = 0;
  const deadline = Date.now() + TEN_MINUTES;
  while (!done()) {
    if (run.stop) return;
    if (Date.now() > deadline) throw new Error('This code has expired. Start again for a new code.');
    const r = await rendezvous.get(n, token, after, 20);
    after = r.next;
    for (const m of r.messages) {
      const out = run.link.receive(m);
      if (out) await rendezvous.post(n, token, out);
      if (done()) return;
    }
    if (r.closed && !done()) {
      throw new Error('Adding the device stopped on the other device, or the code expired. Nothing was added; start again with a new code.');
    }
  }
}

/** Step one: what the new device may read; then the code. */
export function showAddDevice() {
  const hidden = LinkSession.hiddenWithoutHistory(S.space);
  const name = 'history';
  const all = h('input', { type: 'radio', name, id: 'hist-all', value: 'all', checked: '' });
  const recent = h('input', { type: 'radio', name, id: 'hist-recent', value: 'recent' });
  const recentWords = hidden === 0
    ? 'Only the current keys. (Your keys have not changed since the space began, so it reads everything either way.)'
    : `Only what was written since your keys last changed. The ${hidden} earlier ${hidden === 1 ? 'entry stays' : 'entries stay'} unreadable on it.`;
  const err = errorLine();
  const go = h('button', { type: 'submit' }, 'Show a code');
  const back = h('button', { type: 'button', class: 'secondary' }, 'Back');
  back.addEventListener('click', () => showSpace());
  const form = h('form', { class: 'card stack', 'aria-labelledby': 'hist-h' },
    h('fieldset', { class: 'stack' },
      h('legend', { id: 'hist-h' }, 'What may the new device read?'),
      h('label', { class: 'inline', for: 'hist-all' }, all, 'Our whole history, as this device has it'),
      h('label', { class: 'inline', for: 'hist-recent' }, recent, recentWords)),
    err, h('div', { class: 'row' }, go, back));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(go, err, () => runAdd(all.checked));
  });
  screen('Add a device',
    h('p', {}, 'Have the new device at hand. On it, open Troth, choose "I already use Troth on another device" and type the code this screen shows.'),
    form);
}

async function runAdd(history) {
  const box = await rendezvous.open();
  const link = LinkSession.add(S.keys, S.space, box.mailbox, Date.now());
  const run = { stop: false, link };
  S.pairing = run;
  const qr = h('div', { class: 'qr' });
  qr.innerHTML = link.codeSvg(); // SVG drawn by our own wasm from the code
  const waiting = h('p', { class: 'muted', role: 'status' }, 'Waiting for the new device…');
  const err = errorLine();
  const cancel = h('button', { type: 'button', class: 'secondary' }, 'Stop and go back');
  cancel.addEventListener('click', () => { run.stop = true; rendezvous.close(box.mailbox, box.token); showSpace(); });
  const card = h('section', { class: 'card stack', 'aria-labelledby': 'link-code-h' },
    h('h2', { id: 'link-code-h', class: 'visually-hidden' }, 'Code'),
    h('p', {}, "Type this on the new device. (A phone's camera app can read the QR code and copy the words for you.)"),
    h('p', { class: 'code', 'data-testid': 'link-code' }, link.code),
    qr,
    h('p', { class: 'muted' }, 'It works once, for the next 10 minutes. If someone else tries it, it stops working and you will see that here.'));
  screen('Add a device', card, waiting, err, cancel);
  try {
    await exchange(run, box.mailbox, box.token, link.takeFirstMessage(), () => link.isAdmitted);
    if (run.stop) return;
    waiting.textContent = 'Adding the new device…';
    const ev = link.admitEvent(S.space, history, Date.now());
    await S.api.append(ev);
    S.space.ingest([ev]);
    await persist();
    await rendezvous.post(box.mailbox, box.token, link.added(ev));
    rendezvous.close(box.mailbox, box.token);
    link.free();
    S.pairing = null;
    screen('Device added',
      h('section', { class: 'card stack', role: 'status', 'data-testid': 'device-added' },
        h('p', {}, 'The new device is now one of yours in this space, with keys of its own.'),
        h('p', {}, 'Your partner is told that you added a device. Your safety number stays the same.')),
      h('button', { type: 'button', onclick: () => showSpace() }, 'Back to our space'));
  } catch (e) {
    if (run.stop) return;
    rendezvous.close(box.mailbox, box.token);
    S.pairing = null;
    waiting.textContent = '';
    card.replaceChildren(h('h2', { id: 'link-code-h' }, 'This code no longer works'),
      h('p', {}, 'Nothing was added. You can make a new code when the new device is ready.'));
    err.textContent = e.message;
    const again = h('button', { type: 'button' }, 'Start again with a new code');
    again.addEventListener('click', () => showAddDevice());
    cancel.before(again);
  }
}

/**
 * The first screen's way in for a second device: a passphrase for this
 * device, and the code. `onJoined(keys)` opens the saved space.
 */
export function joinDeviceForm(onJoined) {
  const [p1w, p1] = field('A passphrase for this device', 'input', { type: 'password', autocomplete: 'new-password' },
    'It protects your key on this device only. It never leaves it.');
  passHint(p1, p1w);
  const [p2w, p2] = field('That passphrase again', 'input', { type: 'password', autocomplete: 'new-password' });
  const [cw, code] = field('The code your other device shows', 'input',
    { type: 'text', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', placeholder: '7-crystal-orbit' },
    'On your other device: Safety, then "Add a device".');
  const err = errorLine();
  const btn = h('button', { type: 'submit', class: 'secondary' }, 'Join my space with this code');
  const form = h('form', { class: 'card stack', 'aria-labelledby': 'join-dev-h' },
    h('h2', { id: 'join-dev-h' }, 'I already use Troth on another device'),
    p1w, p2w, cw, err, btn);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(btn, err, async () => {
      if (p1.value !== p2.value) throw new Error("The two passphrases aren't the same. Please type them again.");
      checkPassphrase(p1.value);
      checkCode(code.value);
      await onJoined(await joinDevice(code.value, p1.value));
    });
  });
  return form;
}

async function joinDevice(typed, passphrase) {
  const mailbox = checkCode(typed);
  const fresh = Keys.generate(Date.now());
  const link = LinkSession.join(fresh, typed, Date.now());
  fresh.free();
  const run = { stop: false, link };
  say('Connecting with your other device…');
  const claim = await rendezvous.claim(mailbox);
  try {
    await exchange(run, mailbox, claim.token, link.takeFirstMessage(), () => link.isLinked);
  } finally {
    rendezvous.close(mailbox, claim.token);
  }
  const keys = link.linkedKeys();
  const space = link.openSpace(keys);
  // Read the whole log from its first event, verified against the
  // identities learned through the code, up to the event that added us.
  const api = spaceApi(space);
  for (;;) {
    const r = await api.read(space.eventCount);
    const hd = r && r.head;
    const res = space.ingestPage(hd ? hd.seq : undefined, hd ? hd.hash : undefined, (r && r.events) || [], !!(r && r.more));
    if (res.alert) throw new Error(res.alert.advice || res.alert.what);
    if (!res.fetchMore) break;
  }
  link.checkAdmitted(space);
  link.free();
  say('Protecting your key with your passphrase… this takes a moment.');
  await pause(30);
  await store.set('keyfile', keys.exportFile(passphrase));
  // Saved sealed under this device's key, like any space; then opened the
  // usual way (`onJoined`), which verifies it again from the first event.
  S.keys = keys;
  S.space = space;
  S.api = api;
  S.meta = { compared: false };
  S.saved = 0;
  await persist();
  S.space = null;
  S.api = null;
  space.free();
  say('This device is now one of yours in the space. Your partner is told that you added a device.');
  return keys;
}
