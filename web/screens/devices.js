// Devices (issue 18): both partners' devices under Safety (name, when added,
// active or revoked), naming this person's devices, revoking their other
// devices, replacing this device's keys; the banner when the partner adds a
// device (until dismissed; the dismissal is sealed in this browser's meta
// record, like the CLI's sealed `devices-seen`). Loaded by the space screen
// once a space opens (not part of the first download); whether the safety
// number changed is `safetyNote` in safety.js.
import { Keys, Space } from '../troth_wasm.js';
import { store } from '../lib/store.js';
import { spaceApi, Offline } from '../lib/api.js';
import { S, emit } from '../lib/state.js';
import { h, field, say, pause, act, errorLine, when, openDialog, closeDialog } from '../lib/dom.js';
import { persist } from '../lib/vault.js';
import { send, connectLive } from '../lib/sync.js';
import { saveLocal } from '../lib/intents.js';

const unnamed = 'a device without a name yet';

/** The partner's devices added after the last dismissal (those the banner tells of). */
function unseen(devices) {
  const seen = S.meta && typeof S.meta.devicesSeen === 'number' ? S.meta.devicesSeen : -1;
  return devices.filter((d) => !d.mine && d.added && d.addedSeq > seen);
}

/** The banner over every tab while the partner has a device this person has not acknowledged. */
export function deviceBanners() {
  if (!S.space) return [];
  const fresh = unseen(S.space.devices());
  if (!fresh.length) return [];
  const ok = h('button', { type: 'button', class: 'secondary' }, fresh.length > 1 ? "I've seen them" : "I've seen it");
  ok.addEventListener('click', async () => {
    // Sealed with the rest of this browser's saved state; the partner is not told.
    S.meta.devicesSeen = Math.max(...fresh.map((d) => d.addedSeq));
    await persist();
    emit('refresh');
    say('Noted on this device.');
  });
  return [h('section', { class: 'card notice stack', 'aria-labelledby': 'newdev-h', 'data-testid': 'new-device' },
    h('h2', { id: 'newdev-h' }, fresh.length > 1 ? 'Your partner added devices' : 'Your partner added a device'),
    fresh.map((d) => h('p', {}, `Your partner added a device: ${d.name || unnamed}, ${when(d.addedAt)}${d.active ? '' : ' (since removed)'}. If you didn't expect this, talk about it; you can withdraw consent at any time.`)),
    h('p', { class: 'muted' }, 'Every device is listed under Safety → Devices.'), ok)];
}

/** The list of both partners' devices (redrawn with the state). */
export function deviceList() {
  if (!S.space) return [];
  const all = S.space.devices();
  const row = (d) => {
    const state = d.active ? 'active' : `removed ${d.revokedAt ? when(d.revokedAt) : ''}`.trim();
    const kids = [
      h('strong', {}, d.name || 'No name yet'),
      d.thisDevice ? h('span', { class: 'badge in-force' }, 'this device') : null,
      h('span', { class: 'muted rule-meta' }, `Added ${when(d.addedAt)} · ${state}`),
    ];
    if (d.mine && d.active && !d.thisDevice) {
      const rm = h('button', { type: 'button', class: 'gentle-stop' }, 'Remove this device');
      rm.addEventListener('click', () => askRevoke(d));
      kids.push(h('div', { class: 'row' }, rm));
    }
    return h('li', { 'data-id': d.id, 'data-testid': 'device' }, ...kids);
  };
  const mine = all.filter((d) => d.mine);
  const theirs = all.filter((d) => !d.mine);
  return [h('section', { class: 'card stack', 'aria-labelledby': 'dev-h' }, h('h2', { id: 'dev-h' }, 'Devices'),
    h('p', { class: 'muted' }, 'Every device that can read your space. Each person names and removes only their own.'),
    h('h3', {}, 'Yours'), h('ul', { 'data-testid': 'my-devices' }, mine.map(row)),
    h('h3', {}, "Your partner's"), theirs.length ? h('ul', { 'data-testid': 'partner-devices' }, theirs.map(row)) : h('p', { class: 'muted' }, 'Shown once your partner has joined.'))];
}

function askRevoke(d) {
  const err = errorLine();
  const yes = h('button', { type: 'button', class: 'gentle-stop' }, 'Remove it');
  const no = h('button', { type: 'button', class: 'secondary' }, 'Keep it');
  yes.addEventListener('click', () => act(yes, err, async () => {
    await send((now) => S.space.revokeDevice(d.id, now), 'Removed. That device can\'t read anything new.');
    closeDialog();
  }));
  no.addEventListener('click', closeDialog);
  openDialog(`Remove ${d.name || 'this device'}?`,
    h('p', {}, 'It will not be able to read anything written from now on: a new key is made for the devices that stay. What it already has stays on it. Your partner sees that you removed a device.'),
    err, h('div', { class: 'row' }, yes, no));
}

/** Naming this device (both partners see the name). */
export function nameCard() {
  const [nw, name] = field('A name for this device', 'input', { type: 'text', maxlength: '60', autocomplete: 'off', placeholder: 'My phone' },
    'Both of you see it in the list of devices, so you can tell them apart.');
  const err = errorLine();
  const btn = h('button', { type: 'submit', class: 'secondary' }, 'Save the name');
  const form = h('form', { class: 'card stack', 'aria-labelledby': 'dn-h' }, h('h2', { id: 'dn-h' }, 'This device\'s name'), nw, err, btn);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(btn, err, async () => {
      await send((now) => S.space.nameDevice(undefined, name.value, now), 'Saved. Your partner sees the name.');
      name.value = '';
    });
  });
  return form;
}

/** Replacing this device's keys: new keys join as a device of the same identity, then the old device is removed. */
export function rotateCard() {
  const [cw, cur] = field('Your passphrase', 'input', { type: 'password', autocomplete: 'current-password' },
    'Your key file is saved again, with the new keys, under the same passphrase.');
  const err = errorLine();
  const btn = h('button', { type: 'submit', class: 'secondary' }, "Replace this device's keys");
  const form = h('form', { class: 'card stack', 'aria-labelledby': 'rot-h' }, h('h2', { id: 'rot-h' }, 'New keys for this device'),
    h('p', { class: 'muted' }, 'If you think someone copied this device\'s key, give it new keys: the old ones are removed and can\'t read anything new. Your identity, and so the safety number, stays the same. Your partner sees a new device of yours.'),
    cw, err, btn);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(btn, err, async () => {
      if (!navigator.onLine) throw new Error("You seem to be offline. New keys are announced to the space first, so nothing changed. Please try again when you're connected.");
      await rotate(cur.value);
      cur.value = '';
    });
  });
  return form;
}

async function rotate(pass) {
  say('Checking your passphrase… this takes a moment.');
  await pause(30);
  const k = Keys.unlock(new TextEncoder().encode(await store.get('keyfile')), pass);
  const same = k.identityHex === S.keys.identityHex;
  k.free();
  if (!same) throw new Error("That passphrase doesn't open this key. Check it and try again.");
  const oldKeys = S.keys;
  const oldSpace = S.space;
  const oldId = oldKeys.deviceHex;
  const oldName = (oldSpace.devices().find((d) => d.thisDevice) || {}).name;
  const fresh = oldKeys.rotateDevice(Date.now());
  // 1. The old device admits the new one, with every epoch key sealed to it.
  try {
    await send((now) => S.space.addDevice(fresh, now));
  } catch (x) { fresh.free(); throw x instanceof Offline ? new Error('You seem to be offline; nothing changed.') : x; }
  // 2. The new device verifies the whole log and reads it with the keys the AddDevice gave it.
  const a = oldSpace.anchors;
  const space = Space.open(fresh, oldSpace.role, oldSpace.id, a.leading || undefined, a.rebuilding || undefined);
  // The old space may hold only what came after its snapshot: the rest is
  // read from this browser's saved records (sealed under the old keys).
  await persist();
  const saved = (await store.events(0, S.saved)).map((e, i) => oldKeys.openLocal(`idb:event:${i}`, e));
  const r = space.ingest([...saved, ...oldSpace.eventsFrom(saved.length)]);
  if (r.error || space.eventCount !== oldSpace.eventCount) {
    space.free(); fresh.free();
    throw new Error('The new keys could not read your space, so this device keeps its old keys. Please try again later.');
  }
  // 3. The key file and every saved record, sealed for the new keys, in one transaction.
  say('Protecting the new keys with your passphrase… this takes a moment.');
  await pause(30);
  const file = fresh.exportFile(pass);
  const evs = space.eventsFrom(0);
  const meta = { ...S.meta, count: evs.length, head: space.headHash || null };
  const pairs = evs.map((e, i) => [['ev', i], fresh.sealLocal(`idb:event:${i}`, e)]);
  pairs.push(['space', fresh.sealLocal('idb:meta', JSON.stringify(meta))], ['keyfile', file]);
  await store.putAll(pairs);
  if (S.ws) { S.ws.onclose = null; S.ws.close(); S.ws = null; }
  S.keys = fresh; S.space = space; S.api = spaceApi(space); S.meta = meta; S.saved = evs.length;
  S.snapAt = -1; // the snapshot was sealed for the old keys: a new one is written after the next save
  await saveLocal();
  try { oldSpace.free(); } catch { /* */ }
  try { oldKeys.free(); } catch { /* */ }
  connectLive();
  // 4. The new device removes the old one (a new epoch it cannot read), and keeps its name.
  try {
    await send((now) => S.space.revokeDevice(oldId, now));
    if (oldName) await send((now) => S.space.nameDevice(undefined, oldName, now));
  } catch (x) {
    emit('refresh');
    throw new Error(`This device has new keys, but the old ones could not be removed yet (${x.message}). Remove the old device from the list when you are connected.`);
  }
  emit('refresh');
  say('This device has new keys; the old ones are removed. Your partner sees the change.');
}
