// Linking a device of one's own by code (issue 18), in real Chromium against
// the real relay: a browser links a second browser profile, and the CLI
// links a browser. Every device verifies the whole log and shows the same
// state code; the new device keeps keys of its own (its own device id).
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRelay, buildCli, startRelay, launch, openPage, axe, shoot, root } from './lib.mjs';
import { createKey, safetyTab, joinWithCode } from './flows.mjs';

const LIVE = { timeout: 30000 };
const PASS_A = 'river stones at dawn';
const PASS_B = 'quiet garden evening';
const PASS_A2 = 'a laptop by the window';

let relay;
const open = [];
const violations = [];
const problems = [];

async function checked(page, name) {
  const text = await page.locator('body').innerText();
  assert.doesNotMatch(text, /\bnull\b|\bundefined\b|\[object |NaN/, `${name}: a value leaked into the words on screen`);
  for (const v of await axe(page)) violations.push({ screen: name, ...v });
  await shoot(page, name);
}

async function browser() {
  const b = await launch();
  open.push(b);
  const r = await openPage(b.ctx, relay.url);
  problems.push(r.problems);
  await r.page.getByRole('heading', { name: 'Welcome to Troth' }).waitFor(LIVE);
  return r.page;
}

async function pair(p1, p2) {
  await p1.getByRole('button', { name: 'Start our space and get a code' }).click();
  const codeEl = p1.getByTestId('pairing-code');
  await codeEl.waitFor(LIVE);
  const code = (await codeEl.innerText()).trim();
  await p2.getByLabel('The code your partner shows you').fill(code);
  await p2.getByRole('button', { name: 'Join with this code' }).click();
  for (const p of [p1, p2]) {
    await p.getByRole('heading', { name: "You're connected" }).waitFor(LIVE);
  }
  const sn = (await p1.getByTestId('safety-number').innerText()).trim();
  for (const p of [p1, p2]) await p.getByRole('button', { name: "We'll compare later" }).click();
  return sn;
}

async function stateCode(page) {
  await safetyTab(page);
  return (await page.getByTestId('state-code').innerText()).trim();
}

/** Waits until every page shows the same state code as `want` (live updates). */
async function sameCode(pages, want) {
  for (const p of pages) {
    await safetyTab(p);
    await p.waitForFunction((w) => document.querySelector('[data-testid="state-code"]')?.textContent.trim() === w, want, LIVE);
  }
}

before(async () => {
  relay = await startRelay(buildRelay());
});

afterEach(async (t) => {
  if (t.passed === false) {
    let i = 0;
    for (const b of open) {
      for (const p of b.ctx.pages()) {
        try { await p.screenshot({ path: join(root, 'tests', 'artifacts', `failed-link-${i++}.png`), fullPage: true }); } catch { /* closed */ }
      }
    }
  }
});

after(async () => {
  for (const b of open) await b.close();
  relay?.stop();
});

test('a browser links a second browser profile; every device shows the same state', async () => {
  const pa = await browser();
  const pb = await browser();
  await createKey(pa, PASS_A);
  await createKey(pb, PASS_B);
  const sn = await pair(pa, pb);

  const pa2 = await browser();
  await checked(pa2, 'link-01-welcome-with-join');

  await safetyTab(pa);
  await pa.getByTestId('add-device').click();
  await pa.getByRole('heading', { name: 'Add a device' }).waitFor(LIVE);
  await checked(pa, 'link-02-add-device-choice');
  await pa.getByRole('button', { name: 'Show a code' }).click();
  const codeEl = pa.getByTestId('link-code');
  await codeEl.waitFor(LIVE);
  const code = (await codeEl.innerText()).trim();
  assert.match(code, /^\d+-[a-z]+-[a-z]+$/);
  assert.equal(await pa.locator('.qr svg').count(), 1, 'a QR code of the code');
  await checked(pa, 'link-03-add-device-code');

  await joinWithCode(pa2, code, PASS_A2);
  await pa.getByTestId('device-added').waitFor(LIVE);
  await checked(pa, 'link-04-device-added');
  // Same identity, so the same safety number; a device of its own.
  assert.equal((await pa2.getByTestId('safety-number').innerText()).trim(), sn);
  await checked(pa2, 'link-05-new-device-connected');
  await pa2.getByRole('button', { name: "We'll compare later" }).click();
  await pa.getByRole('button', { name: 'Back to our space' }).click();

  const want = await stateCode(pa2);
  await sameCode([pa, pb], want);

  // A wrong code fails on the new device and on the adding one, and burns it.
  const pa3 = await browser();
  await safetyTab(pa);
  await pa.getByTestId('add-device').click();
  await pa.getByRole('button', { name: 'Show a code' }).click();
  await pa.getByTestId('link-code').waitFor(LIVE);
  const right = (await pa.getByTestId('link-code').innerText()).trim();
  const [n, w1, w2] = right.split('-');
  await pa3.getByRole('button', { name: 'I already use Troth on another device' }).click();
  const wrong = `${n}-${w1 === 'acorn' ? 'amber' : 'acorn'}-${w2}`;
  await pa3.getByLabel('A passphrase for this device').fill(PASS_A2);
  await pa3.getByLabel('That passphrase again').fill(PASS_A2);
  await pa3.getByLabel('The code your other device shows').fill(wrong);
  await pa3.getByRole('button', { name: 'Join my space with this code' }).click();
  await pa3.getByText(/code didn't match/).waitFor(LIVE);
  await pa.getByText(/code didn't match/).waitFor(LIVE);
  await pa.getByRole('heading', { name: 'This code no longer works' }).waitFor(LIVE);
  await checked(pa, 'link-06-wrong-code');
  await pa3.getByLabel('The code your other device shows').fill(right);
  await pa3.getByRole('button', { name: 'Join my space with this code' }).click();
  await pa3.getByRole('alert').filter({ hasText: /\S/ }).first().waitFor(LIVE);
  assert.equal(await pa3.getByRole('heading', { name: 'Welcome to Troth' }).count(), 1, 'still on the first screen');
});

let trothBin;
/** The `troth` CLI, built the first time a test needs it. */
const bin = () => (trothBin ??= buildCli());

function cli(home, args, pass) {
  return execFileSync(bin(), args,
    { env: { ...process.env, TROTH_HOME: home, TROTH_PASSPHRASE: pass, TROTH_WORK_FACTOR: '10', NO_COLOR: '1' } }).toString();
}

/** Starts a CLI command that prints a code alone on its first line; resolves it with the process. */
function firstLine(home, args, pass) {
  const child = spawn(bin(), args,
    { env: { ...process.env, TROTH_HOME: home, TROTH_PASSPHRASE: pass, TROTH_WORK_FACTOR: '10', NO_COLOR: '1' } });
  let out = ''; let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const done = new Promise((resolve) => child.on('exit', (c) => resolve({ code: c, out, err: () => err })));
  const code = new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      const i = out.indexOf('\n');
      if (i >= 0) resolve(out.slice(0, i).trim());
    });
    child.on('exit', () => reject(new Error(`no code: ${err}`)));
  });
  return { code, done };
}

test('the CLI links a browser; both verify everything and show the same state code', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'troth-link-cli-'));
  const a = join(dir, 'a'); const b = join(dir, 'b');
  cli(a, ['init'], PASS_A);
  cli(b, ['init'], PASS_B);
  const start = firstLine(a, ['pair', 'start', '--relay', relay.url, '--timeout', '60s'], PASS_A);
  const pairCode = await start.code;
  cli(b, ['pair', 'join', pairCode, '--relay', relay.url], PASS_B);
  assert.equal((await start.done).code, 0);
  cli(b, ['checkin', 'at the gym until 7'], PASS_B);

  const page = await browser();
  const link = firstLine(a, ['device', 'link', '--timeout', '60s', '--json'], PASS_A);
  const code = await link.code;
  assert.match(code, /^\d+-[a-z]+-[a-z]+$/, 'the code alone on the first line');
  await joinWithCode(page, code, PASS_A2);
  const r = await link.done;
  assert.equal(r.code, 0, r.err());
  const added = JSON.parse(r.out.split('\n')[1]);

  const statusA = JSON.parse(cli(a, ['status', '--json'], PASS_A));
  assert.equal((await page.getByTestId('safety-number').innerText()).trim(), statusA.safety_number);
  await page.getByRole('button', { name: "We'll compare later" }).click();
  const want = await stateCode(page);
  for (const [home, pass] of [[a, PASS_A], [b, PASS_B]]) {
    const v = JSON.parse(cli(home, ['verify', '--json'], pass));
    assert.equal(v.ok, true);
    const s = JSON.parse(cli(home, ['sync', '--json'], pass));
    assert.equal(s.state_code, want);
  }
  // The partner is told of the new device, which is the browser's own.
  const statusB = JSON.parse(cli(b, ['status', '--json'], PASS_B));
  assert.equal(statusB.new_partner_devices[0].id, added.device);
  await page.getByRole('tab', { name: 'Check-ins' }).click();
  await page.getByText('at the gym until 7').first().waitFor(LIVE);
});

test('a recovery kit brings a person back on a fresh profile; the lost device and the kit are removed', async () => {
  const pa = await browser();
  const pb = await browser();
  await createKey(pa, PASS_A);
  await createKey(pb, PASS_B);
  const sn = await pair(pa, pb);

  await safetyTab(pa);
  await pa.getByTestId('save-kit').click();
  await pa.getByRole('heading', { name: 'Save a recovery kit' }).waitFor(LIVE);
  const KIT = 'a kit in the drawer at home';
  await pa.getByLabel('A passphrase for the kit').fill(KIT);
  await pa.getByLabel('The kit passphrase again').fill(KIT);
  await checked(pa, 'kit-01-save');
  const [dl] = await Promise.all([
    pa.waitForEvent('download', LIVE),
    pa.getByRole('button', { name: 'Save the recovery kit' }).click(),
  ]);
  const kitPath = await dl.path();
  await pa.getByTestId('kit-saved').waitFor(LIVE);
  await checked(pa, 'kit-02-saved');

  // A loses that browser. A fresh profile restores from the kit.
  const pa4 = await browser();
  await pa4.getByRole('button', { name: 'Restore from a recovery kit' }).click();
  await pa4.getByLabel('Recovery kit file').setInputFiles(kitPath);
  await pa4.getByLabel("The kit's passphrase").fill('not the right one at all');
  await checked(pa4, 'kit-03-restore');
  await pa4.getByRole('button', { name: 'Restore from this kit' }).click();
  await pa4.getByRole('alert').filter({ hasText: /passphrase/i }).first().waitFor(LIVE);
  await pa4.getByLabel("The kit's passphrase").fill(KIT);
  await pa4.getByRole('button', { name: 'Restore from this kit' }).click();
  await pa4.getByRole('heading', { name: "You're connected" }).waitFor(LIVE);
  assert.equal((await pa4.getByTestId('safety-number').innerText()).trim(), sn);
  await pa4.getByRole('button', { name: "We'll compare later" }).click();
  const want = await stateCode(pa4);
  await sameCode([pb], want);
  // The lost device and the kit's are removed: both show as removed to the partner.
  const devices = await pb.evaluate(() => document.body.innerText);
  assert.match(devices, /removed/i);
});

test('no serious or critical accessibility violations, no errors, no other origins', () => {
  assert.deepEqual(violations, []);
  assert.deepEqual(problems.flat(), []);
});
