// Issue 18's journey in one run, four Chromium profiles against the real
// relay: A links a second browser; B sees the banner live and the device
// list; A's second device checks in and B reads it; A removes the first
// device from the second; a recovery kit brings A back on a fourth, fresh
// profile, the lost device is removed, and B is told each time.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { buildRelay, startRelay, launch, openPage, axe, shoot, root } from './lib.mjs';
import { createKey, pair, safetyTab, joinWithCode } from './flows.mjs';

const LIVE = { timeout: 30000 };
const PASS_A = 'river stones at dawn';
const PASS_B = 'quiet garden evening';
const PASS_A2 = 'a laptop by the window';
const KIT = 'a kit in the drawer at home';

let relay;
const open = [];
const violations = [];
const problems = [];

async function browser() {
  const b = await launch();
  open.push(b);
  const r = await openPage(b.ctx, relay.url);
  problems.push(r.problems);
  await r.page.getByRole('heading', { name: 'Welcome to Troth' }).waitFor(LIVE);
  return r.page;
}

async function checked(page, name) {
  for (const v of await axe(page)) violations.push({ screen: name, ...v });
  await shoot(page, name);
}

/** This page's own device id, from its device list. */
async function ownDevice(page) {
  await safetyTab(page);
  const row = page.getByTestId('my-devices').locator('li')
    .filter({ has: page.locator('.badge', { hasText: /^this device$/ }) });
  await row.waitFor(LIVE);
  return row.getAttribute('data-id');
}

/** Waits until `pages` all show the same state code. */
async function sameState(pages) {
  await safetyTab(pages[0]);
  const want = (await pages[0].getByTestId('state-code').innerText()).trim();
  for (const p of pages.slice(1)) {
    await safetyTab(p);
    await p.waitForFunction((w) => document.querySelector('[data-testid="state-code"]')?.textContent.trim() === w, want, LIVE);
  }
  return want;
}

before(async () => {
  relay = await startRelay(buildRelay());
});

afterEach(async (t) => {
  if (t.passed === false) {
    let i = 0;
    for (const b of open) {
      for (const p of b.ctx.pages()) {
        try { await p.screenshot({ path: join(root, 'tests', 'artifacts', `failed-journey-devices-${i++}.png`), fullPage: true }); } catch { /* closed */ }
      }
    }
  }
});

after(async () => {
  for (const b of open) await b.close();
  relay?.stop();
});

test('A links a second browser, moves to it, loses it and comes back from a kit; B is told each time', async () => {
  const a1 = await browser();
  const b = await browser();
  await createKey(a1, PASS_A);
  await createKey(b, PASS_B);
  const { s1: number } = await pair(a1, b);
  for (const p of [a1, b]) await p.getByRole('button', { name: "We'll compare later" }).click();
  const first = await ownDevice(a1);

  // A links a second profile with a code.
  const a2 = await browser();
  await safetyTab(a1);
  await a1.getByTestId('add-device').click();
  await a1.getByRole('button', { name: 'Show a code' }).click();
  await a1.getByTestId('link-code').waitFor(LIVE);
  const code = (await a1.getByTestId('link-code').innerText()).trim();
  await joinWithCode(a2, code, PASS_A2);
  assert.equal((await a2.getByTestId('safety-number').innerText()).trim(), number, 'same identity, same number');
  await a2.getByRole('button', { name: "We'll compare later" }).click();
  await a1.getByTestId('device-added').waitFor(LIVE);
  await a1.getByRole('button', { name: 'Back to our space' }).click();
  const second = await ownDevice(a2);
  assert.notEqual(second, first, 'a device of its own');

  // B sees it live: the banner, the list, and a safety number that did not change.
  await safetyTab(b);
  const banner = b.getByTestId('new-device');
  await banner.waitFor(LIVE);
  assert.match(await banner.innerText(), /Your partner added a device: .+\. If you didn't expect this, talk about it; you can withdraw consent at any time\./);
  const partners = b.getByTestId('partner-devices');
  await partners.locator(`[data-id="${second}"]`).getByText('active', { exact: false }).waitFor(LIVE);
  await partners.locator(`[data-id="${first}"]`).getByText('active', { exact: false }).waitFor(LIVE);
  assert.equal((await b.getByTestId('safety-number').innerText()).trim(), number);
  await b.getByTestId('safety-unchanged').waitFor(LIVE);
  await checked(b, 'J1-partner-linked-a-device');
  await banner.getByRole('button', { name: "I've seen it" }).click();
  await banner.waitFor({ state: 'detached', timeout: 20000 });

  // A's second device checks in; B reads it.
  await a2.getByRole('tab', { name: 'Check-ins' }).click();
  await a2.getByLabel('Your check-in').fill('On the laptop now, at the library until six');
  await a2.getByRole('button', { name: 'Send check-in' }).click();
  await b.getByRole('tab', { name: 'Check-ins' }).click();
  await b.getByText('On the laptop now, at the library until six').first().waitFor(LIVE);

  // From the second device, A removes the first (a new epoch it cannot read).
  await safetyTab(a2);
  const row = a2.getByTestId('my-devices').locator(`[data-id="${first}"]`);
  await row.getByRole('button', { name: 'Remove this device' }).click();
  await a2.getByRole('dialog').getByRole('button', { name: 'Remove it' }).click();
  await row.getByText('removed', { exact: false }).waitFor(LIVE);
  await safetyTab(b);
  await partners.locator(`[data-id="${first}"]`).getByText('removed', { exact: false }).waitFor(LIVE);
  await sameState([a2, b]);

  // A saves a recovery kit on the second device (B is told of the kit's device)…
  await a2.getByTestId('save-kit').click();
  await a2.getByLabel('A passphrase for the kit').fill(KIT);
  await a2.getByLabel('The kit passphrase again').fill(KIT);
  const [dl] = await Promise.all([
    a2.waitForEvent('download', LIVE),
    a2.getByRole('button', { name: 'Save the recovery kit' }).click(),
  ]);
  const kitPath = await dl.path();
  await a2.getByTestId('kit-saved').waitFor(LIVE);
  await banner.waitFor(LIVE);
  await banner.getByRole('button', { name: "I've seen it" }).click();
  await banner.waitFor({ state: 'detached', timeout: 20000 });

  // …then loses it. A fresh profile restores from the kit: a device of its
  // own, the lost one and the kit's removed, the same safety number.
  const a3 = await browser();
  await a3.getByRole('button', { name: 'Restore from a recovery kit' }).click();
  await a3.getByLabel('Recovery kit file').setInputFiles(kitPath);
  await a3.getByLabel("The kit's passphrase").fill(KIT);
  await a3.getByRole('button', { name: 'Restore from this kit' }).click();
  await a3.getByRole('heading', { name: "You're connected" }).waitFor(LIVE);
  assert.equal((await a3.getByTestId('safety-number').innerText()).trim(), number);
  await a3.getByRole('button', { name: "We'll compare later" }).click();
  const third = await ownDevice(a3);
  assert.ok(![first, second].includes(third));

  // B is told: the banner again, the lost device removed, the new one active.
  await safetyTab(b);
  await banner.waitFor(LIVE);
  await partners.locator(`[data-id="${second}"]`).getByText('removed', { exact: false }).waitFor(LIVE);
  await partners.locator(`[data-id="${third}"]`).getByText('active', { exact: false }).waitFor(LIVE);
  await checked(b, 'J2-partner-recovered');
  await sameState([a3, b]);
  // The restored device reads what the second one wrote before it was lost.
  await a3.getByRole('tab', { name: 'Check-ins' }).click();
  await a3.getByText('On the laptop now, at the library until six').first().waitFor(LIVE);
});

test('no serious or critical accessibility violations, no errors, no other origins', () => {
  assert.deepEqual(violations, []);
  assert.deepEqual(problems.flat(), []);
});
