// "I'm a therapist" (issue 17): three Chromium profiles against one real
// relay. The therapist (profile T) makes a key in the browser; the partners
// (A and B) pair, both consent to share with T's recipient, and A exports the
// report; T opens it (picked and dropped) and sees until when it is shared.
// T's page sends nothing to the relay; its key is stored only encrypted; the
// same key and report open with the Go `age` tool.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRelay, startRelay, launch, openPage, axe, shoot, root } from './lib.mjs';
import { LIVE, createKey, pair, enterSpace } from './flows.mjs';

const PASS_A = 'river stones at dawn';
const PASS_B = 'quiet garden evening';
const PASS_T = 'linden tree by the window';

let relay; let A; let B; let T; let pa; let pb; let pt;
const problems = [];
const dir = mkdtempSync(join(tmpdir(), 'troth-therapist-'));
let recipient = '';
const tRequests = [];
const tSockets = [];
const tSigned = [];

async function checked(page, name) {
  const text = await page.locator('body').innerText();
  assert.doesNotMatch(text, /\bnull\b|\bundefined\b|\[object |NaN/, `${name}: a value leaked into the words on screen`);
  assert.deepEqual(await axe(page), [], `${name}: axe-core found serious or critical violations`);
  await shoot(page, name);
}

/** Today plus `days`, as YYYY-MM-DD (UTC). */
const dayPlus = (days) => new Date(Date.now() + days * 86400000).toISOString().slice(0, 10);

before(async () => {
  relay = await startRelay(buildRelay());
  A = await launch();
  B = await launch();
  T = await launch();
  for (const [ctx, set] of [[A.ctx, (p) => { pa = p; }], [B.ctx, (p) => { pb = p; }], [T.ctx, (p) => { pt = p; }]]) {
    const r = await openPage(ctx, relay.url);
    problems.push(r.problems);
    set(r.page);
  }
});

afterEach(async (t) => {
  if (t.passed === false) {
    for (const [p, n] of [[pa, 'A'], [pb, 'B'], [pt, 'T']]) {
      try { await p.screenshot({ path: join(root, 'tests', 'artifacts', `failed-therapist-${n}.png`), fullPage: true }); } catch { /* closed */ }
    }
  }
});

after(async () => {
  await A?.close();
  await B?.close();
  await T?.close();
  relay?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('a therapist makes a key in the browser, kept only encrypted, and nothing is sent', async () => {
  await pt.getByRole('heading', { name: 'Welcome to Troth' }).waitFor(LIVE);
  await checked(pt, 'T0-welcome');
  // From here on, every request and socket of the therapist's page is kept.
  pt.on('request', (r) => {
    tRequests.push(`${r.method()} ${r.url()}`);
    if (Object.keys(r.headers()).some((k) => k.startsWith('troth-'))) tSigned.push(r.url());
  });
  pt.on('websocket', (w) => tSockets.push(w.url()));
  await pt.getByRole('button', { name: "I'm a therapist" }).click();
  await pt.getByRole('heading', { name: "I'm a therapist" }).waitFor(LIVE);
  await checked(pt, 'T1-therapist-new');
  // A weak passphrase and two different ones are refused with words.
  await pt.getByLabel('Choose a passphrase').fill('short');
  await pt.getByLabel('Type it once more').fill('short');
  await pt.getByRole('button', { name: 'Make my key' }).click();
  await pt.getByText('Please choose a passphrase of at least 10 characters', { exact: false }).first().waitFor(LIVE);
  await pt.getByLabel('Choose a passphrase').fill(PASS_T);
  await pt.getByLabel('Type it once more').fill(PASS_T);
  await pt.getByRole('button', { name: 'Make my key' }).click();
  await pt.getByRole('heading', { name: 'Reports from couples' }).waitFor(LIVE);
  recipient = (await pt.getByTestId('therapist-recipient').innerText()).trim();
  assert.match(recipient, /^age1[0-9a-z]{58}$/);

  // The copy button puts exactly the recipient on the clipboard.
  await T.ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: relay.url });
  await pt.getByRole('button', { name: 'Copy', exact: true }).click();
  await pt.getByText('Copied. Give it to the couple.').waitFor(LIVE);
  assert.equal(await pt.evaluate(() => navigator.clipboard.readText()), recipient);
  await checked(pt, 'T2-therapist-key');

  // Stored only as a passphrase-protected age file, never in clear.
  const stored = await pt.evaluate(() => new Promise((resolve, reject) => {
    const q = indexedDB.open('troth');
    q.onsuccess = () => {
      const t = q.result.transaction('kv', 'readonly');
      const all = t.objectStore('kv').getAll();
      const keys = t.objectStore('kv').getAllKeys();
      t.oncomplete = () => { q.result.close(); resolve({ keys: keys.result, values: all.result }); };
      t.onerror = () => reject(t.error);
    };
  }));
  assert.deepEqual(stored.keys, ['therapist-key']);
  const file = stored.values[0];
  assert.match(file, /^-----BEGIN AGE ENCRYPTED FILE-----/);
  assert.doesNotMatch(JSON.stringify(stored.values), /AGE-SECRET-KEY/i);
  const header = Buffer.from(file.split('\n').slice(1, -2).join(''), 'base64').toString('latin1');
  assert.match(header, /^age-encryption\.org\/v1\n-> scrypt /, 'an age scrypt (passphrase) file');
});

test('two partners consent to share with that key and one exports the report', async () => {
  assert.ok(recipient, 'the therapist made a key');
  await createKey(pa, PASS_A);
  await createKey(pb, PASS_B);
  const { s1, s2 } = await pair(pa, pb);
  assert.equal(s1, s2);
  await enterSpace(pa, pb);
  // A agrees until 20 days from now, B until 30: the report is shared until the earlier.
  for (const [p, days] of [[pa, 20], [pb, 30]]) {
    await p.getByRole('tab', { name: 'Safety' }).click();
    await p.getByLabel("Therapist's age key (leave empty for a printed copy)").fill(recipient);
    await p.getByLabel('Until', { exact: true }).fill(dayPlus(days));
    await p.getByRole('button', { name: 'I agree to share' }).click();
    await p.getByText('Your consent is recorded', { exact: false }).first().waitFor(LIVE);
  }
  await pa.getByRole('button', { name: 'Download the encrypted report' }).waitFor(LIVE);
  const [dl] = await Promise.all([pa.waitForEvent('download'), pa.getByRole('button', { name: 'Download the encrypted report' }).click()]);
  await dl.saveAs(join(dir, 'troth-report.age'));
  assert.match(readFileSync(join(dir, 'troth-report.age'), 'utf8'), /^-----BEGIN AGE ENCRYPTED FILE-----/);
});

test('the therapist opens the report (picked, then dropped) and sees until when it is shared', async () => {
  const report = join(dir, 'troth-report.age');
  await pt.getByLabel('Choose a report file').setInputFiles(report);
  const until = pt.getByTestId('report-until');
  await until.waitFor(LIVE);
  assert.match(await until.innerText(), new RegExp(`until .*\\(${dayPlus(20)}\\)\\.`));
  const shown = await pt.getByRole('region', { name: 'The report' }).innerText();
  assert.match(shown, /Troth — shared report/);
  assert.match(shown, new RegExp(`Shared until: ${dayPlus(20)}`));
  await checked(pt, 'T3-therapist-report');

  // Dropped onto the page: a file that is not a report gets words, then the report opens.
  const drop = async (name, text) => {
    const dt = await pt.evaluateHandle(([n, t]) => { const d = new DataTransfer(); d.items.add(new File([t], n)); return d; }, [name, text]);
    await pt.dispatchEvent('.dropzone', 'drop', { dataTransfer: dt });
  };
  await pt.evaluate(() => document.getElementById('report').replaceChildren());
  await drop('notes.txt', 'just some notes');
  await pt.getByText("This file isn't a Troth report.", { exact: false }).waitFor(LIVE);
  await drop('troth-report.age', readFileSync(report, 'utf8'));
  await pt.getByTestId('report-until').waitFor(LIVE);
  assert.match(await pt.getByRole('region', { name: 'The report' }).innerText(), /Troth — shared report/);
});

test('after a reload the key opens with its passphrase only, and is the same', async () => {
  await pt.reload();
  await pt.getByRole('heading', { name: "I'm a therapist" }).waitFor(LIVE);
  await pt.getByLabel('Passphrase', { exact: true }).fill('not my passphrase at all');
  await pt.getByRole('button', { name: 'Open my key' }).click();
  await pt.getByText("That passphrase doesn't open this key. Check it and try again.").waitFor(LIVE);
  await checked(pt, 'T4-therapist-unlock');
  await pt.getByLabel('Passphrase', { exact: true }).fill(PASS_T);
  await pt.getByRole('button', { name: 'Open my key' }).click();
  await pt.getByRole('heading', { name: 'Reports from couples' }).waitFor(LIVE);
  assert.equal((await pt.getByTestId('therapist-recipient').innerText()).trim(), recipient);
  // Locking drops the key from the page; the unlock screen comes back.
  await pt.getByRole('button', { name: 'Lock' }).click();
  await pt.getByText('Locked. Your key is safe here until you open it again.').waitFor(LIVE);
  await pt.getByLabel('Passphrase', { exact: true }).fill(PASS_T);
  await pt.getByRole('button', { name: 'Open my key' }).click();
  await pt.getByRole('heading', { name: 'Reports from couples' }).waitFor(LIVE);
});

test('the saved key and the report open with the Go age tool', async (t) => {
  if (!existsSync('/usr/bin/age') || !existsSync('/usr/bin/script')) { t.skip('Go age or script(1) is not installed'); return; }
  const [dl] = await Promise.all([pt.waitForEvent('download'), pt.getByRole('button', { name: 'Save a copy of my key' }).click()]);
  const keyFile = join(dir, 'troth-therapist-key.age');
  await dl.saveAs(keyFile);
  // age reads a passphrase only from a terminal: script(1) gives it one.
  const identity = join(dir, 'identity.txt');
  const r = spawnSync('/usr/bin/script', ['-qec', `/usr/bin/age -d -o ${identity} ${keyFile}`, '/dev/null'],
    { input: `${PASS_T}\n`, timeout: 30000 });
  assert.equal(r.status, 0, `age -d of the key file: ${r.stdout}${r.stderr}`);
  const idText = readFileSync(identity, 'utf8');
  assert.match(idText, new RegExp(`# public key: ${recipient}`));
  const text = execFileSync('/usr/bin/age', ['-d', '-i', identity, join(dir, 'troth-report.age')]).toString();
  assert.match(text, /Troth — shared report/);
  assert.match(text, new RegExp(`Shared until: ${dayPlus(20)}`));
});

test("the therapist's page sent nothing to the relay and opened no connection", async () => {
  // The app's start (after the reload) fetches the operator's help words
  // for everyone, unsigned, whichever screen follows: it says nothing of
  // the therapist. Nothing else of the relay's API is asked, and nothing signed.
  const api = tRequests.filter((r) => /\/v1\//.test(r) && !/^GET \S+\/v1\/help$/.test(r));
  assert.deepEqual(api, [], 'no request to the relay API');
  assert.deepEqual(tSigned, [], 'no signed request');
  assert.deepEqual(tSockets, [], 'no live connection');
  const origin = new URL(relay.url).origin;
  assert.deepEqual(tRequests.filter((r) => !r.split(' ')[1].startsWith(origin) && !/ (blob|data):/.test(r)), [], 'no other origin');
  // Only the app's own files (already pinned, so few or none) were fetched, and no POST at all.
  assert.deepEqual(tRequests.filter((r) => !r.startsWith('GET ')), []);
  for (const p of problems) assert.deepEqual(p, []);
});
