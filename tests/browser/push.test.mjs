// Notifications (issue 16) in real Chromium against the real relay and the
// loopback test push service (tests/pushsvc, Python: py_vapid checks the
// VAPID token, http_ece decrypts). Headless Chromium has no push service of
// its own to subscribe with (docs/WEB.md, "Notifications"): the plain
// subscribe is shown failing kindly; for the rest, the page's
// PushManager.subscribe hands back a subscription made by the test push
// service, so the relay's real push is checked there, and the service
// worker's handler is driven by CDP's ServiceWorker.deliverPushMessage.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildRelay, startRelay, launch, openPage, axe, shoot, root } from './lib.mjs';

const LIVE = { timeout: 20000 };
let svc; let relay; let A; let B; let pa; let pb; let sub;
const problems = [];

/** The test push service; resolves when it listens. */
function startPushService() {
  const dir = join(root, 'tests', 'pushsvc');
  const python = join(dir, '.venv', 'bin', 'python');
  if (!existsSync(python)) throw new Error(`${python} is missing: run \`cargo xtask setup\``);
  const child = spawn(python, [join(dir, 'push_service.py')], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (\d+)/);
      if (m) {
        const origin = `http://127.0.0.1:${m[1]}`;
        resolve({
          origin,
          stop: () => child.kill('SIGTERM'),
          subscribe: async () => (await fetch(`${origin}/new`, { method: 'POST' })).json(),
          log: async () => (await fetch(`${origin}/log`)).json(),
        });
      }
    });
    child.on('exit', (c) => reject(new Error(`push service exited (${c})`)));
  });
}

async function createKey(page, pass) {
  await page.getByRole('heading', { name: 'Welcome to Troth' }).waitFor(LIVE);
  await page.getByLabel('Choose a passphrase').fill(pass);
  await page.getByLabel('Type it once more').fill(pass);
  await page.getByRole('button', { name: 'Create my key' }).click();
  await page.getByRole('heading', { name: 'Connect with your partner' }).waitFor(LIVE);
}

/** The notifications shown by the page's service worker registration. */
const shown = (page) => page.evaluate(async () => (await (await navigator.serviceWorker.ready).getNotifications())
  .map((n) => ({ title: n.title, body: n.body, tag: n.tag })));

/** Delivers a push to the page's service worker through CDP (no push service involved). */
async function deliver(ctx, page, origin) {
  const cdp = await ctx.newCDPSession(page);
  const regs = [];
  const versions = [];
  cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => regs.push(...e.registrations));
  cdp.on('ServiceWorker.workerVersionUpdated', (e) => versions.push(...e.versions));
  await cdp.send('ServiceWorker.enable');
  const active = () => regs.find((r) => !r.isDeleted && r.scopeURL.startsWith(origin)
    && versions.some((v) => v.registrationId === r.registrationId && v.status === 'activated'));
  for (let i = 0; i < 100 && !active(); i += 1) await new Promise((r) => { setTimeout(r, 100); });
  const reg = active();
  assert.ok(reg, `no active service worker: ${JSON.stringify({ regs, versions })}`);
  await cdp.send('ServiceWorker.deliverPushMessage', { origin, registrationId: reg.registrationId, data: '{"troth":1}' });
  await cdp.detach();
  return JSON.stringify(versions.map((v) => `${v.registrationId}/${v.versionId}:${v.runningStatus}/${v.status}`));
}

/**
 * Delivers pushes until one shows a notification titled `title` (at most
 * three): right after CDP attaches, headless Chromium sometimes drops the
 * first delivery before the worker sees it (docs/WEB.md). Returns what is shown.
 */
async function deliverUntil(ctx, page, origin, title) {
  let n = [];
  for (let i = 0; i < 3; i += 1) {
    await deliver(ctx, page, origin);
    for (let j = 0; j < 30; j += 1) {
      n = await shown(page);
      if (n.some((x) => x.title === title)) return n;
      await new Promise((r) => { setTimeout(r, 100); });
    }
  }
  return n;
}

async function waitShown(page, n) {
  for (let i = 0; i < 100; i += 1) {
    const s = await shown(page);
    if (s.length >= n) return s;
    await new Promise((r) => { setTimeout(r, 100); });
  }
  return shown(page);
}

before(async () => {
  svc = await startPushService();
  sub = await svc.subscribe();
  relay = await startRelay(buildRelay(), ['--push-test-origin', svc.origin]);
  A = await launch();
  B = await launch();
  for (const c of [A, B]) await c.ctx.grantPermissions(['notifications'], { origin: relay.url });
  // B's browser: subscribe() answers with the test push service's subscription.
  await B.ctx.addInitScript((s) => {
    let made = null;
    const fake = {
      endpoint: s.endpoint,
      toJSON: () => ({ endpoint: s.endpoint, expirationTime: null, keys: { p256dh: s.p256dh, auth: s.auth } }),
      unsubscribe: async () => { made = null; return true; },
    };
    if (self.PushManager) {
      PushManager.prototype.subscribe = async function subscribe(opts) {
        if (!opts || !opts.userVisibleOnly || !(opts.applicationServerKey instanceof Uint8Array) || opts.applicationServerKey.length !== 65) {
          throw new Error('subscribe called without the relay key');
        }
        made = fake;
        return fake;
      };
      PushManager.prototype.getSubscription = async function getSubscription() { return made; };
    }
  }, sub);
  ({ page: pa } = await openPage(A.ctx, relay.url).then((r) => { problems.push(r.problems); return r; }));
  ({ page: pb } = await openPage(B.ctx, relay.url).then((r) => { problems.push(r.problems); return r; }));
  await createKey(pa, 'river stones at dawn');
  await createKey(pb, 'quiet garden evening');
  await pa.getByRole('button', { name: 'Start our space and get a code' }).click();
  const code = (await pa.getByTestId('pairing-code').innerText()).trim();
  await pb.getByLabel('The code your partner shows you').fill(code);
  await pb.getByRole('button', { name: 'Join with this code' }).click();
  for (const p of [pa, pb]) await p.getByRole('button', { name: 'They match — we compared them' }).click();
  for (const p of [pa, pb]) await p.getByRole('heading', { name: 'Our space' }).waitFor(LIVE);
  // Both confirm who sets the conditions; the private moment comes before
  // each one's first rule about whereabouts.
  for (const p of [pa, pb]) await p.getByRole('button', { name: "Yes, that's right" }).click();
  for (const p of [pa, pb]) await p.getByTestId('roles').waitFor({ state: 'detached', timeout: 20000 });
  await pa.getByRole('button', { name: 'Propose an agreement' }).click();
  await pa.getByRole('button', { name: 'Continue' }).click();
  await pa.getByLabel('Knowing where you are').check();
  await pa.getByRole('button', { name: 'Propose to my partner' }).click();
  await pa.getByRole('dialog').waitFor({ state: 'hidden' });
  await pb.getByRole('button', { name: 'Sign these words' }).click();
  await pb.getByRole('button', { name: 'Continue' }).click();
  await pa.getByRole('button', { name: 'Sign these words' }).click();
  for (const p of [pa, pb]) await p.getByText('In force — both of you signed these exact words').first().waitFor(LIVE);
});

after(async () => {
  await A?.close();
  await B?.close();
  relay?.stop();
  svc?.stop();
});

test('turning notifications on without a push service says so kindly and changes nothing', async () => {
  await pa.getByRole('tab', { name: 'Safety' }).click();
  await pa.getByRole('button', { name: 'Turn on notifications on this device' }).click();
  await pa.getByText("Your browser couldn't set up notifications just now", { exact: false }).waitFor(LIVE);
  assert.equal((await pa.getByTestId('push-state').innerText()).trim(), 'Notifications are off for this device.');
});

test('a partner with notifications on is pushed to within seconds, and the push says nothing', async () => {
  await pb.getByRole('tab', { name: 'Safety' }).click();
  assert.equal(await pb.getByLabel('Quiet from').isVisible(), false);
  await pb.getByLabel('Hold notifications during quiet hours').check();
  await pb.getByLabel('Quiet from').waitFor(LIVE);
  await pb.getByLabel('Hold notifications during quiet hours').uncheck();
  await pb.getByRole('button', { name: 'Turn on notifications on this device' }).click();
  await pb.getByText('Notifications are on for this device.').waitFor(LIVE);
  assert.deepEqual(await axe(pb), []);
  await shoot(pb, 'notifications-on');

  // A asks for a check-in: B's push service gets one push within seconds.
  await pa.getByRole('tab', { name: 'Check-ins' }).click();
  await pa.getByRole('button', { name: 'Ask for a check-in' }).click();
  let got = [];
  for (let i = 0; i < 100 && !got.length; i += 1) {
    got = (await svc.log()).filter((e) => e.id === sub.id);
    if (!got.length) await new Promise((r) => { setTimeout(r, 100); });
  }
  assert.equal(got.length, 1, JSON.stringify(got));
  assert.equal(got[0].ok, true, got[0].why);
  assert.equal(Buffer.from(got[0].plaintext, 'base64').toString(), '{"troth":1}');
});

test("the service worker shows the neutral notification, or the plainer one, and opening it tells the app", async () => {
  let n = await deliverUntil(B.ctx, pb, relay.url, 'Something new in Troth');
  assert.deepEqual(n, [{ title: 'Something new in Troth', body: '', tag: 'troth' }]);
  await pb.getByLabel('Use a plainer title', { exact: false }).check();
  await pb.getByText('Saved.').waitFor(LIVE);
  n = await deliverUntil(B.ctx, pb, relay.url, 'Something new');
  // Same tag: the new one replaces the old, never a pile.
  assert.deepEqual(n, [{ title: 'Something new', body: '', tag: 'troth' }]);

  // Opening it: headless Chromium cannot click a system notification, so the
  // worker gets the event dispatched; it closes it and tells the open app.
  const told = pb.evaluate(() => new Promise((resolve) => {
    navigator.serviceWorker.addEventListener('message', (m) => resolve(m.data), { once: true });
  }));
  const sw = B.ctx.serviceWorkers().find((w) => w.url().startsWith(relay.url));
  assert.ok(sw, 'no service worker');
  await sw.evaluate(async () => {
    const [note] = await self.registration.getNotifications();
    self.dispatchEvent(new NotificationEvent('notificationclick', { notification: note }));
  });
  assert.deepEqual(await told, { troth: 'opened-from-notification' });
  assert.deepEqual(await waitShown(pb, 0).then(() => shown(pb)), []);
});

test('turning notifications off is kept by the relay and the browser', async () => {
  await pb.getByRole('button', { name: 'Turn notifications off' }).click();
  await pb.getByText('Notifications are off for this device.').first().waitFor(LIVE);
  // The relay forgot the subscription: A's next action pushes nothing.
  const before = (await svc.log()).length;
  await pa.getByRole('tab', { name: 'Agreements' }).click();
  await pa.getByRole('button', { name: 'Propose an agreement' }).click();
  await pa.getByLabel('Phone access when asked').check();
  await pa.getByRole('button', { name: 'Propose to my partner' }).click();
  await pa.getByRole('dialog').waitFor({ state: 'hidden' });
  await pb.getByText('Phone access when asked').first().waitFor(LIVE);
  await new Promise((r) => { setTimeout(r, 2500); });
  assert.equal((await svc.log()).length, before);
});

test('review dates go to the calendar as a file made on the device, with neutral titles', async () => {
  await pa.getByRole('tab', { name: 'Safety' }).click();
  const [dl] = await Promise.all([
    pa.waitForEvent('download'),
    pa.getByRole('button', { name: 'Add review dates to my calendar' }).click(),
  ]);
  assert.equal(dl.suggestedFilename(), 'review-dates.ics');
  const text = readFileSync(await dl.path(), 'utf8');
  const lines = text.split('\r\n');
  assert.equal(lines[0], 'BEGIN:VCALENDAR');
  assert.ok(lines.includes('VERSION:2.0') && lines.includes('END:VCALENDAR'));
  assert.ok(!/[^\r]\n/.test(text), 'every line ends in CRLF');
  const starts = lines.filter((l) => l.startsWith('DTSTART;VALUE=DATE:'));
  assert.equal(starts.length, 2, text);
  assert.match(starts[0], /^DTSTART;VALUE=DATE:\d{8}$/);
  assert.deepEqual(lines.filter((l) => l.startsWith('SUMMARY:')), ['SUMMARY:Review day', 'SUMMARY:Review day']);
  assert.ok(!/where|Troth|partner/i.test(text.replace('PRODID:-//Troth//review dates//EN', '')), text);
  assert.deepEqual(await axe(pa), []);
  await shoot(pa, 'safety-notifications');
});

test('no errors on the pages', () => {
  assert.deepEqual(problems.flat().filter((p) => !/WebSocket/.test(p)), []);
});
