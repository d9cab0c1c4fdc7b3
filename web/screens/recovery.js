// Recovery kits (issue 18): a device of one's own that lives in a file.
// Saving one adds a recovery device to the space (the partner is told, like
// any device) and downloads its keys, the identity, the space and the relay
// under a passphrase; restoring on a fresh browser adds a device of its own
// and removes the kit's device (the kit is used up) and the lost one
// (docs/PROTOCOL.md §8.2). The file is the one `troth key recovery-kit` writes.
import { OpenedKit, Space, recoveryKitFile, checkPassphrase } from '../troth_wasm.js';
import { spaceApi, relayUrl, RelayError } from '../lib/api.js';
import { S } from '../lib/state.js';
import { h, field, passHint, say, pause, act, errorLine, screen, download } from '../lib/dom.js';
import { store } from '../lib/store.js';
import { persist } from '../lib/vault.js';
import { send } from '../lib/sync.js';
import { showSpace } from './space.js';

/** Saving a kit: what it is, a passphrase for it, the download. */
export function showSaveKit() {
  const [p1w, p1] = field('A passphrase for the kit', 'input', { type: 'password', autocomplete: 'new-password' },
    'Write it down and keep it apart from the file. Anyone with both can be you in this space.');
  passHint(p1, p1w);
  const [p2w, p2] = field('The kit passphrase again', 'input', { type: 'password', autocomplete: 'new-password' });
  const err = errorLine();
  const save = h('button', { type: 'submit' }, 'Save the recovery kit');
  const back = h('button', { type: 'button', class: 'secondary' }, 'Back');
  back.addEventListener('click', () => showSpace());
  const form = h('form', { class: 'card stack', 'aria-labelledby': 'kit-h' },
    h('h2', { id: 'kit-h' }, 'A recovery kit'),
    h('p', {}, 'If you lose this device, a recovery kit lets a new one back into your space, with your whole history. It is a device of yours that lives in a file: your partner is told that you added a device, and it counts as one of your five.'),
    p1w, p2w, err, h('div', { class: 'row' }, save, back));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(save, err, async () => {
      if (p1.value !== p2.value) throw new Error("The two passphrases aren't the same. Please type them again.");
      checkPassphrase(p1.value);
      if (!navigator.onLine) throw new Error("You seem to be offline. The kit's device is added to the space first, so nothing changed. Please try again when you're connected.");
      const kit = S.keys.rotateDevice(Date.now());
      try {
        await send((now) => S.space.addDevice(kit, now));
        say('Protecting the kit with its passphrase… this takes a moment.');
        await pause(30);
        download('troth-recovery-kit.age', recoveryKitFile(kit, S.space, relayUrl(), p1.value), 'text/plain');
      } finally {
        kit.free();
      }
      screen('Recovery kit saved',
        h('section', { class: 'card stack', role: 'status', 'data-testid': 'kit-saved' },
          h('p', {}, 'Your browser saved troth-recovery-kit.age. Keep it somewhere safe, apart from this device, and its passphrase apart from it.'),
          h('p', {}, 'To use it: open Troth on a new device and choose "Restore from a recovery kit". Your partner is told that you added a device.')),
        h('button', { type: 'button', onclick: () => showSpace() }, 'Back to our space'));
    });
  });
  screen('Save a recovery kit', form);
}

/** The first screen's restore form; `onRestored(keys)` opens the saved space. */
export function restoreForm(onRestored) {
  const [fw, file] = field('Recovery kit file', 'input', { type: 'file', accept: '.age,.txt,text/plain' });
  const [pw, pass] = field("The kit's passphrase", 'input', { type: 'password', autocomplete: 'current-password' },
    'It also protects your key on this device from now on.');
  const err = errorLine();
  const btn = h('button', { type: 'submit', class: 'secondary' }, 'Restore from this kit');
  const form = h('form', { class: 'card stack', 'aria-labelledby': 'restore-h' },
    h('h2', { id: 'restore-h' }, 'Restore from a recovery kit'), fw, pw, err, btn);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(btn, err, async () => {
      if (!file.files || !file.files[0]) throw new Error('Choose your recovery kit file first.');
      const text = await file.files[0].text();
      await onRestored(await restore(text, pass.value));
    });
  });
  return form;
}

/** Reads the space with the kit's device, adds a device of this browser's, removes the kit's and the lost one. */
async function restore(text, passphrase) {
  say('Opening the kit… this takes a moment.');
  await pause(30);
  const kit = OpenedKit.open(new TextEncoder().encode(text), passphrase);
  const frees = [kit];
  try {
    if (kit.relay !== relayUrl()) {
      throw new Error(`This kit is for the relay at ${kit.relay}. Open Troth there to restore it.`);
    }
    const kitKeys = kit.keys(); frees.push(kitKeys);
    const old = kit.openSpace(); frees.push(old);
    const api = spaceApi(old);
    try {
      for (;;) {
        const r = await api.read(old.eventCount);
        const hd = r && r.head;
        const res = old.ingestPage(hd ? hd.seq : undefined, hd ? hd.hash : undefined, (r && r.events) || [], !!(r && r.more));
        if (res.alert) throw new Error(res.alert.advice || res.alert.what);
        if (!res.fetchMore) break;
      }
    } catch (e) {
      if (e instanceof RelayError && e.status === 403) {
        throw new Error("This recovery kit has been used or removed already, so it can't open the space. Nothing was saved. Your partner can pair with you again.");
      }
      throw e;
    }
    const kitId = kitKeys.deviceHex;
    // The kit's device admits a fresh device of this browser's.
    const keys = kitKeys.rotateDevice(Date.now());
    const add = old.addDevice(keys, Date.now());
    await api.append(add);
    old.ingest([add]);
    const a = old.anchors;
    const space = Space.open(keys, old.role, old.id, a.leading || undefined, a.rebuilding || undefined);
    const r = space.ingest(old.eventsFrom(0));
    if (r.error) throw new Error('This device could not verify your space, so nothing was saved. Please try again.');
    // The new device removes the kit's device (the kit is used up) and the
    // lost one, when it is the only other device of yours.
    const mine = space.devices().filter((d) => d.mine && d.active && !d.thisDevice && d.id !== kitId);
    const api2 = spaceApi(space);
    for (const id of [kitId, ...(mine.length === 1 ? [mine[0].id] : [])]) {
      const ev = space.revokeDevice(id, Date.now());
      await api2.append(ev);
      space.ingest([ev]);
    }
    say('Protecting your key with the passphrase… this takes a moment.');
    await pause(30);
    await store.set('keyfile', keys.exportFile(passphrase));
    S.keys = keys;
    S.space = space;
    S.api = api2;
    S.meta = { compared: false };
    S.saved = 0;
    await persist();
    S.space = null;
    S.api = null;
    space.free();
    say('You are back in your space on this device. Your partner is told that you added a device.');
    return keys;
  } finally {
    for (const x of frees) { try { x.free(); } catch { /* */ } }
  }
}
