// Devices (issue 18, the browser's side), with the real relay, the real
// `troth` CLI as partner A and Chromium as partner B: B sees A's devices
// with their names, a calm banner live when A adds one (dismissed, and the
// dismissal survives a reload), the safety number unchanged; B names its
// own device (A's CLI sees the name) and replaces its keys, which revokes
// its old device from the browser (a new epoch) — A's CLI sees it revoked
// and still reads what B writes after.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRelay, buildCli, startRelay, launch, openPage, axe, shoot, root } from './lib.mjs';
import { LIVE, createKey, joinCliSpace } from './flows.mjs';

const PASS_B = 'quiet garden evening';
let relay; let B; let pb; let problems;
const home = mkdtempSync(join(tmpdir(), 'troth-cli-a-'));
let trothBin;

/** Runs the troth CLI as partner A; returns stdout (JSON parsed with `json`). */
function troth(args, json = false) {
  const out = execFileSync(trothBin, [...(json ? ['--json'] : []), ...args], {
    env: { ...process.env, TROTH_HOME: home, TROTH_PASSPHRASE: 'river stones at dawn', TROTH_WORK_FACTOR: '10', NO_COLOR: '1' },
  }).toString();
  return json ? JSON.parse(out) : out;
}

async function checked(page, name) {
  const text = await page.locator('body').innerText();
  assert.doesNotMatch(text, /\bnull\b|\bundefined\b|\[object |NaN/, `${name}: a value leaked into the words on screen`);
  assert.deepEqual(await axe(page), [], `${name}: axe-core found serious or critical violations`);
  await shoot(page, name);
}

before(async () => {
  relay = await startRelay(buildRelay());
  trothBin = buildCli();
  B = await launch();
  ({ page: pb, problems } = await openPage(B.ctx, relay.url));
});

afterEach(async (t) => {
  if (t.passed === false) {
    try { await pb.screenshot({ path: join(root, 'tests', 'artifacts', 'failed-devices-B.png'), fullPage: true }); } catch { /* closed */ }
  }
});

after(async () => {
  await B?.close();
  relay?.stop();
  rmSync(home, { recursive: true, force: true });
});

const partnerList = () => pb.getByTestId('partner-devices');

test('the CLI pairs with the browser; both name their devices and each sees the other\'s names', async () => {
  troth(['init']);
  await createKey(pb, PASS_B);
  // A starts from the CLI: the code is alone on the first line.
  await joinCliSpace(pb, trothBin, relay.url,
    { ...process.env, TROTH_HOME: home, TROTH_PASSPHRASE: 'river stones at dawn', TROTH_WORK_FACTOR: '10', NO_COLOR: '1' });

  troth(['device', 'name', "Alex's phone"]);
  await pb.getByRole('tab', { name: 'Safety' }).click();
  await partnerList().getByText("Alex's phone").waitFor(LIVE);
  // Nothing to tell of yet: A's first device came with pairing.
  assert.equal(await pb.getByTestId('new-device').count(), 0);

  await pb.getByLabel('A name for this device').fill("Sam's browser");
  await pb.getByRole('button', { name: 'Save the name' }).click();
  await pb.getByTestId('my-devices').getByText("Sam's browser").waitFor(LIVE);
  troth(['sync']);
  const list = troth(['device', 'list'], true).devices;
  assert.equal(list.find((d) => d.owner === 'partner').name, "Sam's browser");
  // A hidden character is refused next to the field, and nothing is sent.
  await pb.getByLabel('A name for this device').fill('phone\u202Eenohp');
  await pb.getByText('U+202E', { exact: false }).first().waitFor(LIVE);
});

test('B sees a calm banner live when A adds a device; the list shows it; the safety number did not change', async () => {
  const number = (await pb.getByTestId('safety-number').innerText()).trim();
  await pb.getByTestId('safety-unchanged').waitFor(LIVE);
  // A replaces its keys from the CLI: a new device of A's identity, then the old one revoked.
  const r = troth(['key', 'rotate'], true);
  const banner = pb.getByTestId('new-device');
  await banner.waitFor(LIVE);
  assert.match(await banner.innerText(), /Your partner added a device: .+, .+\. If you didn't expect this, talk about it; you can withdraw consent at any time\./);
  troth(['device', 'name', "Alex's laptop"]);
  await banner.getByText("Your partner added a device: Alex's laptop,", { exact: false }).waitFor(LIVE);
  // The list: the new device active, the first one removed.
  const newRow = partnerList().locator(`[data-id="${r.device}"]`);
  await newRow.getByText('active', { exact: false }).waitFor(LIVE);
  await partnerList().locator(`[data-id="${r.revoked}"]`).getByText('removed', { exact: false }).waitFor(LIVE);
  assert.match(await partnerList().locator(`[data-id="${r.revoked}"]`).innerText(), /Alex's phone/);
  // Same identity, same safety number, and the screen says so.
  assert.equal((await pb.getByTestId('safety-number').innerText()).trim(), number);
  await pb.getByTestId('safety-unchanged').waitFor(LIVE);
  assert.equal(await pb.getByTestId('safety-changed').count(), 0);
  await checked(pb, 'D1-new-device-banner');

  // Dismissed, it stays dismissed after a reload (sealed on this device).
  await banner.getByRole('button', { name: "I've seen it" }).click();
  await banner.waitFor({ state: 'detached', timeout: 20000 });
  await pb.reload();
  await pb.getByLabel('Passphrase', { exact: true }).fill(PASS_B);
  await pb.getByRole('button', { name: 'Unlock' }).click();
  await pb.getByRole('heading', { name: 'Our space' }).waitFor(LIVE);
  await pb.getByRole('tab', { name: 'Safety' }).click();
  await partnerList().getByText("Alex's laptop").waitFor(LIVE);
  assert.equal(await pb.getByTestId('new-device').count(), 0, 'the dismissal survived the reload');
});

test('B replaces its keys in the browser: the old device is revoked (a new epoch) and A still reads B', async () => {
  const before = troth(['device', 'list'], true).devices.filter((d) => d.owner === 'partner');
  assert.equal(before.length, 1);
  const oldB = before[0].id;
  await pb.getByLabel('Your passphrase').fill('not my passphrase');
  await pb.getByRole('button', { name: "Replace this device's keys" }).click();
  await pb.getByText("That passphrase doesn't open this key", { exact: false }).first().waitFor(LIVE);
  await pb.getByLabel('Your passphrase').fill(PASS_B);
  await pb.getByRole('button', { name: "Replace this device's keys" }).click();
  await pb.getByTestId('my-devices').locator(`[data-id="${oldB}"]`).getByText('removed', { exact: false }).waitFor({ timeout: 60000 });
  // The new device keeps the old one's name.
  const mine = pb.getByTestId('my-devices');
  await mine.locator('li', { hasText: 'this device' }).getByText("Sam's browser").waitFor(LIVE);
  await checked(pb, 'D2-devices-after-rotation');

  troth(['sync']);
  const after = troth(['device', 'list'], true).devices.filter((d) => d.owner === 'partner');
  assert.equal(after.length, 2);
  assert.equal(after.find((d) => d.id === oldB).active, false, 'the browser revoked its old device');
  const fresh = after.find((d) => d.id !== oldB);
  assert.equal(fresh.active, true);
  assert.equal(fresh.name, "Sam's browser");
  assert.match(troth(['status']), /Your partner added a device on/);

  // Written in the new epoch by the new device, read by A.
  await pb.getByRole('tab', { name: 'Check-ins' }).click();
  await pb.getByLabel('Your check-in').fill('At home with new keys');
  await pb.getByRole('button', { name: 'Send check-in' }).click();
  await pb.getByText('At home with new keys').first().waitFor(LIVE);
  troth(['sync']);
  assert.match(troth(['timeline']), /At home with new keys/);

  // After a reload the new key (saved under the same passphrase) opens everything.
  await pb.reload();
  await pb.getByLabel('Passphrase', { exact: true }).fill(PASS_B);
  await pb.getByRole('button', { name: 'Unlock' }).click();
  await pb.getByRole('heading', { name: 'Our space' }).waitFor(LIVE);
  // The one expected console line: the live connection tried before A's
  // CLI had created the space (it creates it once pairing ends).
  assert.deepEqual(problems.filter((p) => !/WebSocket connection to .*\/live' failed: .* 404/.test(p)), []);
});

test('B links a CLI device, then removes it from the browser: a new epoch, and A is told of both', async () => {
  const home2 = mkdtempSync(join(tmpdir(), 'troth-cli-b2-'));
  const env2 = { ...process.env, TROTH_HOME: home2, TROTH_PASSPHRASE: 'second device of sam', TROTH_WORK_FACTOR: '10', NO_COLOR: '1' };
  try {
    execFileSync(trothBin, ['init'], { env: env2 });
    await pb.getByRole('tab', { name: 'Safety' }).click();
    await pb.getByTestId('add-device').click();
    await pb.getByRole('button', { name: 'Show a code' }).click();
    const code = (await pb.getByTestId('link-code').innerText()).trim();
    const join = spawn(trothBin, ['--json', 'device', 'join', code, '--relay', relay.url], { env: env2 });
    let out = '';
    let err = '';
    join.stdout.on('data', (d) => { out += d; });
    join.stderr.on('data', (d) => { err += d; });
    assert.equal(await new Promise((res) => join.on('exit', res)), 0, `device join: ${err}`);
    const linked = JSON.parse(out.trim().split('\n').pop()).device;
    await pb.getByTestId('device-added').waitFor(LIVE);
    await pb.getByRole('button', { name: 'Back to our space' }).click();
    await pb.getByRole('tab', { name: 'Safety' }).click();
    const row = pb.getByTestId('my-devices').locator(`[data-id="${linked}"]`);
    await row.getByText('active', { exact: false }).waitFor(LIVE);
    troth(['sync']);
    assert.match(troth(['status']), /Your partner added a device on/);

    // Removed from the browser, after a question; a new epoch it cannot read.
    await row.getByRole('button', { name: 'Remove this device' }).click();
    await checked(pb, 'D3-remove-device');
    await pb.getByRole('dialog').getByRole('button', { name: 'Remove it' }).click();
    await row.getByText('removed', { exact: false }).waitFor(LIVE);
    troth(['sync']);
    const seen = troth(['device', 'list'], true).devices.find((d) => d.id === linked);
    assert.equal(seen.active, false, "A's CLI sees B's linked device revoked");
    // The browser's other device list has no button for its own device, nor for the partner's.
    assert.equal(await pb.getByTestId('partner-devices').getByRole('button').count(), 0);
    assert.equal(await pb.getByTestId('my-devices').locator('li', { hasText: 'this device' }).getByRole('button').count(), 0);
  } finally {
    rmSync(home2, { recursive: true, force: true });
  }
});
