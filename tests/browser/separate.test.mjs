// The web client served apart from the relay: `troth web serve` (the copy
// embedded in the troth binary) on one origin, the relay on another that
// lists it (--web-origin). Two Chromium profiles pair, co-sign and check in
// through it; every API call goes to the relay, none to the app's origin;
// a copy on an origin the relay does not list is refused by the browser.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import http from 'node:http';
import { join } from 'node:path';
import { startRelay, launch, openPage, axe, root } from './lib.mjs';

const LIVE = { timeout: 20000 };
let relay; let app; let other; let A; let B; let pa; let pb;
const problems = [];
const apiCalls = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

/** `troth web serve --relay URL --listen 127.0.0.1:PORT`; resolves when it prints its address. */
function serveApp(bin, relayUrl, port) {
  const child = spawn(bin, ['web', 'serve', '--relay', relayUrl, '--listen', `127.0.0.1:${port}`],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('troth web serve did not start')), 30000);
    child.stdout.on('data', (d) => {
      out += d;
      const first = out.split('\n')[0];
      if (out.includes('\n')) { clearTimeout(timer); resolve({ url: first.trim(), stop: () => child.kill('SIGTERM') }); }
    });
    child.on('exit', (c) => { clearTimeout(timer); reject(new Error(`troth web serve exited (${c})`)); });
  });
}

async function createKey(page, pass) {
  await page.getByRole('heading', { name: 'Welcome to Troth' }).waitFor(LIVE);
  await page.getByLabel('Choose a passphrase').fill(pass);
  await page.getByLabel('Type it once more').fill(pass);
  await page.getByRole('button', { name: 'Create my key' }).click();
  await page.getByRole('heading', { name: 'Connect with your partner' }).waitFor(LIVE);
}

before(async () => {
  execFileSync('cargo', ['build', '-p', 'troth-relay', '-p', 'troth-cli', '--quiet'], { cwd: root, stdio: 'inherit' });
  const target = process.env.CARGO_TARGET_DIR || join(root, 'target');
  const port = await freePort();
  relay = await startRelay(join(target, 'debug', 'troth-relay'), ['--web-origin', `http://127.0.0.1:${port}`]);
  app = await serveApp(join(target, 'debug', 'troth'), relay.url, port);
  other = await serveApp(join(target, 'debug', 'troth'), relay.url, await freePort());
  A = await launch();
  B = await launch();
  ({ page: pa } = await openPage(A.ctx, app.url, [relay.url]).then((r) => { problems.push(r.problems); return r; }));
  ({ page: pb } = await openPage(B.ctx, app.url, [relay.url]).then((r) => { problems.push(r.problems); return r; }));
  for (const p of [pa, pb]) p.on('request', (r) => { if (new URL(r.url()).pathname.startsWith('/v1/')) apiCalls.push(r.url()); });
});

after(async () => {
  await A?.close();
  await B?.close();
  app?.stop();
  other?.stop();
  relay?.stop();
});

test('two partners pair, co-sign and check in with the app served apart from the relay', async () => {
  await createKey(pa, 'river stones at dawn');
  await createKey(pb, 'quiet garden evening');
  for (const p of [pa, pb]) {
    const where = (await p.getByTestId('where-from').innerText()).trim();
    assert.equal(where, `You're using the relay at ${relay.url}. This copy of Troth came from ${app.url}.`);
  }
  await pa.getByRole('button', { name: 'Start our space and get a code' }).click();
  const code = (await pa.getByTestId('pairing-code').innerText()).trim();
  await pb.getByLabel('The code your partner shows you').fill(code);
  await pb.getByRole('button', { name: 'Join with this code' }).click();
  await pa.getByRole('heading', { name: "You're connected" }).waitFor(LIVE);
  await pb.getByRole('heading', { name: "You're connected" }).waitFor(LIVE);
  await pa.getByRole('button', { name: 'They match — we compared them' }).click();
  await pb.getByRole('button', { name: 'They match — we compared them' }).click();
  await pa.getByRole('heading', { name: 'Our space' }).waitFor(LIVE);

  // Both confirm who sets the conditions before anything is proposed.
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

  await pa.getByRole('tab', { name: 'Check-ins' }).click();
  await pa.getByRole('button', { name: 'Ask for a check-in' }).click();
  await pb.getByRole('tab', { name: 'Check-ins' }).click();
  await pb.getByText('waiting for your check-in').first().waitFor(LIVE);
  await pb.getByLabel('Your check-in').fill('At the library until 6');
  await pb.getByRole('button', { name: 'Send check-in' }).click();
  await pa.getByText('At the library until 6').first().waitFor(LIVE);

  // Every API call went to the relay; the app's origin served only files.
  assert.ok(apiCalls.length > 5, `${apiCalls.length} API calls`);
  for (const u of apiCalls) assert.equal(new URL(u).origin, relay.url, u);
  // The page's policy allows exactly this origin and the relay.
  const res = await fetch(app.url);
  const csp = res.headers.get('content-security-policy');
  assert.match(csp, new RegExp(`connect-src 'self' ${relay.url} ${relay.url.replace('http', 'ws')};`));
  const v = await axe(pa);
  assert.deepEqual(v.filter((x) => x.impact === 'serious' || x.impact === 'critical').map((x) => x.id), []);
});

test('the installed copy reloads and shows the space with its server gone and the network off', async () => {
  // The service worker pinned this copy on the first visit; it controls the page.
  await pa.reload();
  await pa.waitForFunction(() => navigator.serviceWorker.controller !== null, null, LIVE);
  const pinned = await pa.evaluate(async () => (await (await caches.open('troth-pin')).match('/pinned')).text());
  const release = await (await fetch(`${app.url}/release.json`)).json();
  assert.equal(pinned, release.bundle);
  app.stop();
  await A.ctx.setOffline(true);
  try {
    await pa.reload();
    await pa.getByLabel('Passphrase', { exact: true }).fill('river stones at dawn');
    await pa.getByRole('button', { name: 'Unlock' }).click();
    await pa.getByRole('heading', { name: 'Our space' }).waitFor(LIVE);
    await pa.getByRole('tab', { name: 'Check-ins' }).click();
    await pa.getByText('At the library until 6').first().waitFor(LIVE);
  } finally {
    await A.ctx.setOffline(false);
  }
});

test('a check-in made offline is kept, survives a lock, and is sent once when the network returns', async () => {
  await B.ctx.setOffline(true);
  try {
    await pb.getByRole('tab', { name: 'Check-ins' }).click();
    await pb.getByLabel('Your check-in').fill('Walking home now');
    await pb.getByRole('button', { name: 'Send check-in' }).click();
    const waiting = pb.getByTestId('waiting');
    await waiting.getByText('Check-in: Walking home now').first().waitFor(LIVE);
    // Kept sealed on the device: it survives locking and unlocking.
    await pb.getByRole('button', { name: 'Lock' }).click();
    await pb.getByLabel('Passphrase', { exact: true }).fill('quiet garden evening');
    await pb.getByRole('button', { name: 'Unlock' }).click();
    await pb.getByRole('heading', { name: 'Our space' }).waitFor(LIVE);
    await pb.getByRole('tab', { name: 'Check-ins' }).click();
    await pb.getByTestId('waiting').getByText('Check-in: Walking home now').first().waitFor(LIVE);
    // One more, then cancelled: never sent.
    await pb.getByLabel('Your check-in').fill('Not this one');
    await pb.getByRole('button', { name: 'Send check-in' }).click();
    await pb.getByRole('button', { name: "Don't send “Check-in: Not this one”" }).click();
    await pb.getByText('Check-in: Not this one').first().waitFor({ state: 'detached' });
  } finally {
    await B.ctx.setOffline(false);
  }
  await pb.getByTestId('waiting').waitFor({ state: 'detached', timeout: 30000 });
  await pa.getByRole('tab', { name: 'Check-ins' }).click();
  await pa.getByText('Walking home now').first().waitFor(LIVE);
  await pa.waitForTimeout(1500);
  assert.equal(await pa.locator('#live-checkins li', { hasText: 'Walking home now' }).count(), 1, 'sent once');
  assert.equal(await pa.getByText('Not this one').count(), 0, 'the cancelled one was never sent');
});

/** A proxy in front of the relay that can offer other code: a changed service worker, or another bundle. */
function codeProxy(target) {
  const state = { sw: false, bundle: false };
  const server = http.createServer((req, res) => {
    const up = http.request(`${target}${req.url}`, { method: req.method, headers: { ...req.headers, host: new URL(target).host, 'accept-encoding': 'identity' } }, (r) => {
      const chunks = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => {
        let body = Buffer.concat(chunks);
        const path = req.url.split('?')[0];
        if (state.sw && path === '/sw.js') body = Buffer.concat([body, Buffer.from('\n// another release\n')]);
        if (state.bundle && req.url === '/release.json?offered') {
          const rel = JSON.parse(body.toString());
          rel.bundle = 'f'.repeat(64);
          body = Buffer.from(JSON.stringify(rel));
        }
        const headers = { ...r.headers, 'content-length': String(body.length) };
        delete headers.etag;
        res.writeHead(r.statusCode, headers);
        res.end(body);
      });
    });
    req.pipe(up);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${server.address().port}`, state, close: () => server.close(),
  })));
}

test('a server offering other code is noticed; the pinned copy keeps running until the person chooses', async () => {
  const proxy = await codeProxy(relay.url);
  const C = await launch();
  try {
    const { page } = await openPage(C.ctx, proxy.url);
    await page.getByRole('heading', { name: 'Welcome to Troth' }).waitFor(LIVE);
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, LIVE);
    const script = await page.evaluate(() => navigator.serviceWorker.controller.scriptURL);

    // A new service worker: installed, left waiting, and the person is told.
    proxy.state.sw = true;
    await page.evaluate(async () => (await navigator.serviceWorker.getRegistration()).update());
    const notice = page.getByTestId('code-change');
    await notice.getByText('It changed its service worker', { exact: false }).waitFor(LIVE);
    assert.equal(await page.evaluate(() => navigator.serviceWorker.controller.scriptURL), script);
    await page.waitForFunction(async () => Boolean((await navigator.serviceWorker.getRegistration()).waiting), null, LIVE);
    await checkA11yClean(page);
    await page.getByRole('button', { name: 'Keep using my version' }).click();
    await notice.waitFor({ state: 'detached' });

    // Another bundle under the same service worker: named, both hashes shown.
    proxy.state.sw = false;
    proxy.state.bundle = true;
    await page.reload();
    await page.getByTestId('code-change').getByText('the app itself', { exact: false }).waitFor(LIVE);
    const text = await page.getByTestId('code-change').innerText();
    assert.match(text, /bundle [0-9a-f]{16}…\); the server now offers bundle f{16}…/);
    assert.match(text, new RegExp(`troth web verify ${proxy.url}`));
  } finally {
    await C.close();
    proxy.close();
  }
});

async function checkA11yClean(page) {
  const v = await axe(page);
  assert.deepEqual(v.filter((x) => x.impact === 'serious' || x.impact === 'critical').map((x) => x.id), []);
}

test('a copy on an origin the relay does not list cannot use it', async () => {
  const C = await launch();
  try {
    const { page } = await openPage(C.ctx, other.url);
    await page.getByRole('heading', { name: 'Welcome to Troth' }).waitFor(LIVE);
    const outcome = await page.evaluate(async (url) => {
      try {
        await fetch(`${url}/v1/rendezvous`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
        return 'answered';
      } catch { return 'refused'; }
    }, relay.url);
    assert.equal(outcome, 'refused');
  } finally {
    await C.close();
  }
});

test('long lists draw the newest 50 and show earlier ones on request', async () => {
  await pb.getByRole('tab', { name: 'Check-ins' }).click();
  await pa.getByRole('tab', { name: 'Check-ins' }).click();
  const items = pa.locator('#live-checkins ol[aria-label="Check-ins, newest first"] > li');
  const before = await items.count();
  const n = 52 - before;
  for (let i = 1; i <= n; i++) {
    await pb.getByLabel('Your check-in').fill(`Long list ${i}`);
    await pb.getByRole('button', { name: 'Send check-in' }).click();
    await pb.locator('#live-checkins li', { hasText: `Long list ${i} ` }).first().waitFor({ timeout: 30000 });
    // The form is cleared once the send is over: only then type the next one.
    await pb.waitForFunction(() => [...document.querySelectorAll('#panel textarea')].every((x) => x.value === ''));
  }
  await pa.locator('#live-checkins li', { hasText: `Long list ${n} ` }).first().waitFor(LIVE);
  // The timeline pages the same way: the newest fifty events.
  await pa.getByRole('tab', { name: 'Timeline' }).click();
  await pa.getByRole('button', { name: /^Show earlier events \(\d+ more\)$/ }).waitFor(LIVE);
  assert.equal(await pa.locator('#live-timeline > ol > li').count(), 50);
  await pa.getByRole('tab', { name: 'Check-ins' }).click();
  // Fifty check-ins drawn, the newest; the rest a click away.
  const more = pa.getByRole('button', { name: 'Show earlier check-ins (2 more)' });
  await more.waitFor(LIVE);
  assert.equal(await items.count(), 50);
  const v = await axe(pa);
  assert.deepEqual(v.filter((x) => x.impact === 'serious' || x.impact === 'critical'), []);
  await more.click();
  await items.nth(51).waitFor(LIVE);
  assert.equal(await items.count(), 52);
  assert.equal(await pa.getByRole('button', { name: /Show earlier check-ins/ }).count(), 0);
});

test('no errors on the pages of the copy the relay lists', () => {
  const flat = problems.flat().filter((p) => !/WebSocket/.test(p));
  assert.deepEqual(flat, []);
});
