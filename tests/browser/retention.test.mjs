// Forgetting on schedule (issue 17, item 8), with the real relay, the real
// `troth` CLI as partner A and Chromium as partner B: B's Safety tab says how
// long things are kept in calm words; B shortens it alone, A proposes keeping
// longer and B agrees; A's CLI changes the key each month (its clock moved
// with TROTH_NOW), and once B's clock is past the retention period, B's
// browser forgets the old epoch: the old check-in is gone, the timeline says
// "forgotten as agreed" (not an error), and it stays forgotten after a reload.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRelay, buildCli, startRelay, launch, openPage, axe, shoot, root } from './lib.mjs';
import { LIVE, createKey, joinCliSpace } from './flows.mjs';

const PASS_B = 'quiet garden evening';
const DAY = 86400000;
let relay; let B; let pb; let problems;
const home = mkdtempSync(join(tmpdir(), 'troth-cli-a-'));
let trothBin;
const t0 = Date.now();

/** The CLI's environment as partner A (in `dir`), its clock `days` after the test began. */
function envA(dir, days) {
  return { ...process.env, TROTH_HOME: dir, TROTH_PASSPHRASE: 'river stones at dawn', TROTH_WORK_FACTOR: '10', NO_COLOR: '1',
    TROTH_NOW: String(t0 + days * DAY) };
}

/** Runs the troth CLI as partner A, its clock `days` after the test began. */
function troth(args, { json = false, days = 0, dir = home } = {}) {
  const out = execFileSync(trothBin, [...(json ? ['--json'] : []), ...args], { env: envA(dir, days) }).toString();
  return json ? JSON.parse(out) : out;
}

/** A's CLI (in `dir`, its clock `days` after the test began) starts a space; the browser `page` joins it. */
async function pairWithCli(page, dir, days) {
  troth(['init'], { dir, days });
  await createKey(page, PASS_B);
  await joinCliSpace(page, trothBin, relay.url, envA(dir, days));
}

async function unlock(page) {
  await page.getByLabel('Passphrase', { exact: true }).fill(PASS_B);
  await page.getByRole('button', { name: 'Unlock' }).click();
  await page.getByRole('heading', { name: 'Our space' }).waitFor(LIVE);
}

before(async () => {
  relay = await startRelay(buildRelay());
  trothBin = buildCli();
  B = await launch();
  ({ page: pb, problems } = await openPage(B.ctx, relay.url));
});

afterEach(async (t) => {
  if (t.passed === false) {
    console.log('page problems:', JSON.stringify(problems));
    try { await pb.screenshot({ path: join(root, 'tests', 'artifacts', 'failed-retention-B.png'), fullPage: true }); } catch { /* closed */ }
  }
});

after(async () => {
  await B?.close();
  relay?.stop();
  rmSync(home, { recursive: true, force: true });
});

test('Safety shows how long things are kept; shorter alone, longer together', async () => {
  await pairWithCli(pb, home, 0);

  await pb.getByRole('tab', { name: 'Safety' }).click();
  const card = pb.getByTestId('retention');
  await card.getByText('Things are kept for 183 days.', { exact: false }).waitFor(LIVE);
  // B keeps things for less time, alone.
  await card.getByLabel('Days (30 to 3650)').fill('60');
  await card.getByRole('button', { name: 'Keep for less time' }).click();
  await card.getByText('Things are kept for 60 days.', { exact: false }).waitFor(LIVE);
  assert.equal(troth(['retention'], { json: true }).days, 60);
  // A proposes keeping longer; B agrees on the Safety tab.
  troth(['retention', 'propose', '90']);
  const agree = card.getByRole('button', { name: 'Agree to keep things for 90 days' });
  await agree.waitFor(LIVE);
  assert.deepEqual(await axe(pb), [], 'axe-core found serious or critical violations');
  await shoot(pb, 'R1-retention-proposal');
  await agree.click();
  await card.getByText('Things are kept for 90 days.', { exact: false }).waitFor(LIVE);
  assert.equal(troth(['retention'], { json: true }).days, 90);
  // Back to 30 days, so the test need not wait half a year.
  await card.getByLabel('Days (30 to 3650)').fill('30');
  await card.getByRole('button', { name: 'Keep for less time' }).click();
  await card.getByText('Things are kept for 30 days.', { exact: false }).waitFor(LIVE);
});

test('after the retention period the browser forgets the old epoch, and says so calmly', async () => {
  troth(['checkin', 'at the gym until 7', '--no-answer']);
  await pb.getByRole('tab', { name: 'Timeline' }).click();
  await pb.getByText('at the gym until 7', { exact: false }).first().waitFor(LIVE);
  // A month on, A's CLI changes the key (once), and writes in the new epoch.
  troth(['sync'], { days: 31 });
  assert.equal(troth(['retention'], { json: true, days: 31 }).epoch, 1);
  troth(['checkin', 'home by six', '--no-answer'], { days: 31 });
  await pb.getByText('home by six', { exact: false }).first().waitFor(LIVE);
  // Another month: the second key change; epoch 0 ended 31 days ago.
  troth(['sync'], { days: 62 });
  await pb.getByText('changed the key for new messages, as scheduled', { exact: false }).nth(1).waitFor(LIVE);
  // B's clock moves past the retention period (the relay would refuse B's
  // signed requests now; forgetting runs when the space opens, too).
  await B.ctx.clock.setFixedTime(t0 + 63 * DAY);
  await pb.reload();
  await unlock(pb);
  await pb.getByRole('tab', { name: 'Timeline' }).click();
  const note = pb.getByTestId('forgotten-note');
  await note.waitFor(LIVE);
  assert.match(await note.innerText(), /Older events were forgotten as agreed \(\d+ of them\): they were kept for 30 days\./);
  assert.equal(await pb.getByText('at the gym until 7', { exact: false }).count(), 0);
  await pb.getByText('home by six', { exact: false }).first().waitFor(LIVE);
  assert.doesNotMatch(await pb.locator('body').innerText(), /could not be read|cannot read|\bnull\b|\bundefined\b|NaN/);
  assert.deepEqual(await axe(pb), [], 'axe-core found serious or critical violations');
  await shoot(pb, 'R2-forgotten-as-agreed');
  await pb.getByRole('tab', { name: 'Safety' }).click();
  await pb.getByTestId('forgotten').waitFor(LIVE);
  // Still forgotten after another reload: the old key is never reopened.
  await pb.reload();
  await unlock(pb);
  await pb.getByRole('tab', { name: 'Timeline' }).click();
  await pb.getByTestId('forgotten-note').waitFor(LIVE);
  assert.equal(await pb.getByText('at the gym until 7', { exact: false }).count(), 0);
});

test('the browser changes the key itself once a month, and only once', async () => {
  // A space whose key is 40 days old: A's CLI started it with its clock 40
  // days back (the relay judges requests by their signatures' time, not
  // events' dates). The browser, on its real clock, finds the scheduled key
  // change due after its first sync and makes it; A's CLI reads it.
  const dir = mkdtempSync(join(tmpdir(), 'troth-cli-a2-'));
  const C = await launch();
  try {
    const { page: pc } = await openPage(C.ctx, relay.url);
    await pairWithCli(pc, dir, -40);
    await pc.getByRole('tab', { name: 'Timeline' }).click();
    await pc.getByText('changed the key for new messages, as scheduled', { exact: false }).first().waitFor(LIVE);
    let a = troth(['retention'], { json: true, dir });
    assert.equal(a.epoch, 1, 'the browser started the new epoch');
    const ev = troth(['timeline'], { json: true, dir }).events.find((e) => /changed the key for new messages, as scheduled/.test(e.what));
    assert.ok(ev, 'A reads the key change');
    assert.notEqual(ev.by, troth(['status'], { json: true, dir }).role, "the partner's device made it");
    // Reopened the same day, it does not change the key again.
    await pc.reload();
    await pc.getByLabel('Passphrase', { exact: true }).fill(PASS_B);
    await pc.getByRole('button', { name: 'Unlock' }).click();
    await pc.getByRole('heading', { name: 'Our space' }).waitFor(LIVE);
    await pc.getByText('Connected · updates appear as they happen').waitFor(LIVE);
    troth(['checkin', 'still the same key', '--no-answer'], { dir });
    await pc.getByRole('tab', { name: 'Timeline' }).click();
    await pc.getByText('still the same key', { exact: false }).first().waitFor(LIVE);
    a = troth(['retention'], { json: true, dir });
    assert.equal(a.epoch, 1, 'once a period, not at every open');
  } finally {
    await C.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
