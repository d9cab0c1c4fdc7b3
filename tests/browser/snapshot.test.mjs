// Opening a space from its sealed snapshot (docs/WEB.md, "What is stored in
// the browser"): the core makes a space on the real relay, the page is
// given what a browser that kept up holds (the events sealed one by one,
// the meta record, the snapshot, the key file), and unlocking opens it from
// the snapshot. A snapshot changed by one character is not used: the space
// opens all the same, every stored event verified again, with the same
// state code, and a fresh snapshot is saved for next time. A snapshot
// older than the saved head (a check-in sent just before reloading) is
// used with the events after it verified on top.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRelay, startRelay, launch, openPage, root } from './lib.mjs';

const PASS = 'a snapshot keeps the space quick';
const LIVE = { timeout: 30000 };
let relay; let B; let page; let problems;

before(async () => {
  const bin = buildRelay();
  execFileSync('cargo', ['build', '-q', '-p', 'troth-client', '--example', 'long_space'], { cwd: root, stdio: 'inherit' });
  const config = join(mkdtempSync(join(tmpdir(), 'troth-snap-')), 'relay.toml');
  writeFileSync(config, '[limits]\nper_device_per_second = 100000\nper_device_burst = 100000\nper_ip_per_second = 100000\nper_ip_burst = 100000\n');
  relay = await startRelay(bin, ['--config', config]);
  const target = process.env.CARGO_TARGET_DIR || join(root, 'target');
  const data = JSON.parse(execFileSync(join(target, 'debug', 'examples', 'long_space'), [relay.url, '60', PASS],
    { maxBuffer: 1 << 28 }).toString());
  B = await launch();
  ({ page, problems } = await openPage(B.ctx, relay.url));
  await page.getByRole('heading', { name: 'Welcome to Troth' }).waitFor(LIVE);
  await page.evaluate(async ({ data, pass }) => {
    const m = await import('/troth_wasm.js');
    await m.default();
    const keys = m.Keys.unlock(new TextEncoder().encode(data.keyfile), pass);
    const space = m.Space.open(keys, 'rebuilding', data.space, data.leading, undefined);
    const r = space.ingest(data.events);
    if (r.error) throw new Error(r.error);
    const meta = { compared: true, id: space.id, role: space.role, anchors: space.anchors, count: space.eventCount,
      head: space.headHash || null, relay: location.origin };
    const pairs = data.events.map((e, i) => [['ev', i], keys.sealLocal(`idb:event:${i}`, e)]);
    pairs.push(['space', keys.sealLocal('idb:meta', JSON.stringify(meta))], ['keyfile', data.keyfile], ['snap', space.snapshot()]);
    const { store } = await import('/lib/store.js');
    await store.putAll(pairs);
    space.free();
    keys.free();
  }, { data, pass: PASS });
});

after(async () => {
  await B?.close();
  relay?.stop();
});

/** Reloads and unlocks; returns whether the space opened from its snapshot, and the state code it shows. */
async function reopen() {
  await page.reload();
  await page.getByRole('heading', { name: 'Welcome back' }).waitFor(LIVE);
  await page.getByLabel('Passphrase', { exact: true }).fill(PASS);
  await page.getByRole('button', { name: 'Unlock' }).click();
  await page.getByRole('heading', { name: 'Our space' }).waitFor(LIVE);
  await page.waitForFunction(() => performance.getEntriesByName('troth:interactive').length > 0, null, LIVE);
  const fromSnapshot = await page.evaluate(() => performance.getEntriesByName('troth:from-snapshot').length > 0);
  await page.getByRole('tab', { name: 'Check-ins' }).click();
  await page.getByText('At the gym until seven (58)').first().waitFor(LIVE);
  await page.getByRole('tab', { name: 'Safety' }).click();
  const code = (await page.getByTestId('state-code').innerText()).trim();
  return { fromSnapshot, code };
}

const snap = () => page.evaluate(async () => (await import('/lib/store.js')).store.get('snap'));

test('the space opens from its snapshot, and a changed snapshot is set aside for the full check', async () => {
  const first = await reopen();
  assert.equal(first.fromSnapshot, true, 'opened from the snapshot');
  assert.match(first.code, /^60 · /);

  // One character of the sealed snapshot changed outside Troth.
  await page.evaluate(async () => {
    const { store } = await import('/lib/store.js');
    const s = await store.get('snap');
    const i = Math.floor(s.sealed.length / 2);
    s.sealed = s.sealed.slice(0, i) + (s.sealed[i] === 'A' ? 'B' : 'A') + s.sealed.slice(i + 1);
    await store.set('snap', s);
  });
  const tampered = await snap();
  const second = await reopen();
  assert.equal(second.fromSnapshot, false, 'the changed snapshot was not used');
  assert.equal(second.code, first.code, 'the full check shows the same state');
  // A fresh snapshot replaces it once the space is drawn.
  for (let i = 0; ; i++) {
    const s = await snap();
    if (s && s.sealed !== tampered.sealed) break;
    assert.ok(i < 100, 'a fresh snapshot was saved');
    await new Promise((r) => setTimeout(r, 100));
  }
  const third = await reopen();
  assert.equal(third.fromSnapshot, true);
  assert.equal(third.code, first.code);
});

test('a snapshot older than the saved head is used with the newer events verified on top', async () => {
  const before = await snap();
  await page.getByRole('tab', { name: 'Check-ins' }).click();
  await page.getByText('Connected · updates appear as they happen').waitFor(LIVE);
  await page.getByLabel('Your check-in').fill('Home by nine');
  await page.getByRole('button', { name: 'Send check-in' }).click();
  await page.getByText('Home by nine').first().waitFor(LIVE);
  // Reloaded at once: the snapshot (written a little after a save) still
  // describes the head before the check-in.
  assert.equal((await snap()).seq, before.seq);
  const after = await reopen();
  assert.equal(after.fromSnapshot, true);
  assert.match(after.code, /^61 · /);
  await page.getByRole('tab', { name: 'Check-ins' }).click();
  await page.getByText('Home by nine').first().waitFor(LIVE);
  assert.deepEqual(problems, []);
});
