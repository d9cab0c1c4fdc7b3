// Steps several browser tests take: a new key, pairing two profiles (or a
// profile with the CLI), and confirming who sets the conditions.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

/** How long a test waits for something to appear (live updates, scrypt). */
export const LIVE = { timeout: 20000 };

/** Makes a new key on the welcome screen. */
export async function createKey(page, pass) {
  await page.getByLabel('Choose a passphrase').fill(pass);
  await page.getByLabel('Type it once more').fill(pass);
  await page.getByRole('button', { name: 'Create my key' }).click();
  await page.getByRole('heading', { name: 'Connect with your partner' }).waitFor(LIVE);
}

/** Pairs `p1` (starts the space) with `p2` (types the code); returns the code and both safety numbers. */
export async function pair(p1, p2) {
  await p1.getByRole('button', { name: 'Start our space and get a code' }).click();
  const codeEl = p1.getByTestId('pairing-code');
  await codeEl.waitFor(LIVE);
  const code = (await codeEl.innerText()).trim();
  assert.match(code, /^\d+-[a-z]+-[a-z]+$/);
  await p2.getByLabel('The code your partner shows you').fill(code);
  await p2.getByRole('button', { name: 'Join with this code' }).click();
  await p1.getByRole('heading', { name: "You're connected" }).waitFor(LIVE);
  await p2.getByRole('heading', { name: "You're connected" }).waitFor(LIVE);
  const s1 = (await p1.getByTestId('safety-number').innerText()).trim();
  const s2 = (await p2.getByTestId('safety-number').innerText()).trim();
  return { code, s1, s2 };
}

/** Both partners confirm who sets the conditions. */
export async function confirmRoles(p1, p2) {
  for (const p of [p1, p2]) await p.getByRole('button', { name: "Yes, that's right" }).click();
  for (const p of [p1, p2]) await p.getByTestId('roles').waitFor({ state: 'detached', timeout: 20000 });
}

/** Both mark the safety number as compared and reach their space. */
export async function enterSpace(p1, p2) {
  for (const p of [p1, p2]) await p.getByRole('button', { name: 'They match — we compared them' }).click();
  for (const p of [p1, p2]) await p.getByRole('heading', { name: 'Our space' }).waitFor(LIVE);
}

const SLOW = { timeout: 30000 };

/** Opens the Safety tab and waits for its state code. */
export async function safetyTab(page) {
  await page.getByRole('tab', { name: 'Safety' }).click();
  await page.getByTestId('state-code').waitFor(SLOW);
}

/** On a new device's first screen: joins one's own space with the code another device shows. */
export async function joinWithCode(page, code, pass) {
  await page.getByRole('button', { name: 'I already use Troth on another device' }).click();
  await page.getByLabel('A passphrase for this device').fill(pass);
  await page.getByLabel('That passphrase again').fill(pass);
  await page.getByLabel('The code your other device shows').fill(code);
  await page.getByRole('button', { name: 'Join my space with this code' }).click();
  await page.getByRole('heading', { name: "You're connected" }).waitFor(SLOW);
}

/**
 * The `troth` CLI (`bin`, with `env`) starts a space on `relayUrl` and the
 * browser `page` joins it with the code from the CLI's first line, then
 * marks the safety number as compared and reaches the space.
 */
export async function joinCliSpace(page, bin, relayUrl, env) {
  const start = spawn(bin, ['pair', 'start', '--relay', relayUrl, '--timeout', '60s'], { env });
  let out = '';
  let err = '';
  start.stderr.on('data', (d) => { err += d; });
  const code = await new Promise((resolve, reject) => {
    start.stdout.on('data', (d) => { out += d; const m = out.match(/^(\S+)\n/); if (m) resolve(m[1]); });
    start.on('exit', () => reject(new Error(`pair start ended: ${out}${err}`)));
  });
  const done = new Promise((resolve) => start.on('exit', resolve));
  await page.getByLabel('The code your partner shows you').fill(code);
  await page.getByRole('button', { name: 'Join with this code' }).click();
  await page.getByRole('heading', { name: "You're connected" }).waitFor(LIVE);
  assert.equal(await done, 0, `pair start: ${err}`);
  await page.getByRole('button', { name: 'They match — we compared them' }).click();
  await page.getByRole('heading', { name: 'Our space' }).waitFor(LIVE);
}
