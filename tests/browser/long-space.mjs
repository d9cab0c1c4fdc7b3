// The long-space benchmark (docs/BENCHMARKS.md): how the browser client
// does after years of use, in real Chromium against the real relay.
//
// For each size (100 and 10,000 events by default) the core makes a space
// on the relay (crates/client/examples/long_space.rs: check-ins,
// acknowledgements and requests, signed and appended through the API), and
// the page is given what a browser that had kept up would hold (every
// event sealed under the device's local key in IndexedDB, the sealed meta
// record, the sealed snapshot of the verified state, the key file). Then,
// in the same page:
//   (a) unlock to interactive, scrypt left out: from the moment the key is
//       open (`troth:unlocked`) to the space drawn (`troth:interactive`),
//       against reading the same records from IndexedDB (getAll) — target
//       ≤ 2× at 10,000 events;
//   (b) one check-in, from "Send check-in" to the words shown in the list,
//       at 10,000 events against the same at 100 — target ≤ 1.5×.
// Medians of RUNS runs (default 5).
//   npm run long-space                  (builds the relay and the generator)
//   SIZES=100,10000 RUNS=5 npm run long-space
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRelay, startRelay, launch, root } from './lib.mjs';

const SIZES = (process.env.SIZES || '100,10000').split(',').map(Number);
const RUNS = Number(process.env.RUNS || 5);
const PASS = 'a long space for the benchmark';
const median = (xs) => xs.slice().sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const fmt = (x) => `${x.toFixed(1)} ms`;

execFileSync('cargo', ['build', '-q', '--release', '-p', 'troth-client', '--example', 'long_space'], { cwd: root, stdio: 'inherit' });
// The generator appends thousands of events from two devices at once: lift
// the per-device rate limits for this relay (nothing else changes).
const config = join(mkdtempSync(join(tmpdir(), 'troth-long-')), 'relay.toml');
writeFileSync(config, '[limits]\nper_device_per_second = 100000\nper_device_burst = 100000\nper_ip_per_second = 100000\nper_ip_burst = 100000\n');
const relay = await startRelay(buildRelay(), ['--config', config]);
const results = {};
try {
  for (const size of SIZES) {
    const t0 = Date.now();
    const out = execFileSync('cargo', ['run', '-q', '--release', '-p', 'troth-client', '--example', 'long_space', '--', relay.url, String(size), PASS],
      { cwd: root, maxBuffer: 1 << 30 }).toString();
    const data = JSON.parse(out);
    console.log(`${size} events: made on the relay in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const b = await launch();
    try {
      const page = await b.ctx.newPage();
      page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
      await page.goto(relay.url);
      await page.getByRole('heading', { name: 'Welcome to Troth' }).waitFor({ timeout: 60000 });
      // What a browser that kept up with the space holds (docs/WEB.md, "What is stored").
      await page.evaluate(async ({ data, pass }) => {
        const m = await import('/troth_wasm.js');
        await m.default();
        const keys = m.Keys.unlock(new TextEncoder().encode(data.keyfile), pass);
        const space = m.Space.open(keys, 'rebuilding', data.space, data.leading, undefined);
        for (let i = 0; i < data.events.length; i += 500) {
          const r = space.ingest(data.events.slice(i, i + 500));
          if (r.error) throw new Error(r.error);
        }
        const meta = { compared: true, id: space.id, role: space.role, anchors: space.anchors, count: space.eventCount,
          head: space.headHash || null, relay: location.origin };
        const pairs = data.events.map((e, i) => [['ev', i], keys.sealLocal(`idb:event:${i}`, e)]);
        pairs.push(['space', keys.sealLocal('idb:meta', JSON.stringify(meta))], ['keyfile', data.keyfile], ['snap', space.snapshot()]);
        const { store } = await import('/lib/store.js');
        await store.putAll(pairs);
        space.free();
        keys.free();
      }, { data, pass: PASS });

      const open = [];
      const idb = [];
      const checkin = [];
      for (let run = 0; run < RUNS; run++) {
        await page.reload();
        await page.getByRole('heading', { name: 'Welcome back' }).waitFor({ timeout: 60000 });
        await page.getByLabel('Passphrase', { exact: true }).fill(PASS);
        await page.getByRole('button', { name: 'Unlock' }).click();
        await page.getByRole('heading', { name: 'Our space' }).waitFor({ timeout: 120000 });
        await page.waitForFunction(() => performance.getEntriesByName('troth:interactive').length > 0, null, { timeout: 120000 });
        open.push(await page.evaluate(() => performance.measure('open', 'troth:unlocked', 'troth:interactive').duration));
        // The same records, read from IndexedDB and nothing else.
        idb.push(await page.evaluate(async () => {
          const t = performance.now();
          const db = await new Promise((resolve, reject) => {
            const q = indexedDB.open('troth');
            q.onsuccess = () => resolve(q.result);
            q.onerror = () => reject(q.error);
          });
          await new Promise((resolve, reject) => {
            const tx = db.transaction('kv', 'readonly');
            const s = tx.objectStore('kv');
            s.get('space');
            s.get('local');
            s.getAll(IDBKeyRange.bound(['ev', 0], ['ev', Infinity]));
            tx.oncomplete = resolve;
            tx.onerror = () => reject(tx.error);
          });
          db.close();
          return performance.now() - t;
        }));
        // One check-in, from the button to the words in the list.
        await page.getByRole('tab', { name: 'Check-ins' }).click();
        await page.getByText('Connected · updates appear as they happen').waitFor({ timeout: 60000 });
        const words = `Benchmark check-in ${size}-${run}`;
        await page.getByLabel('Your check-in').fill(words);
        checkin.push(await page.evaluate((words) => new Promise((resolve) => {
          const list = () => document.getElementById('live-checkins');
          const btn = [...document.querySelectorAll('button')].find((x) => x.textContent === 'Send check-in');
          const t = performance.now();
          const obs = new MutationObserver(() => {
            if (list() && list().textContent.includes(words)) { obs.disconnect(); resolve(performance.now() - t); }
          });
          obs.observe(document.getElementById('main'), { childList: true, subtree: true, characterData: true });
          btn.click();
        }), words));
      }
      // For comparison, once: the same open without the snapshot (every
      // stored event opened and verified again, as after a changed snapshot).
      await page.evaluate(async () => (await import('/lib/store.js')).store.del('snap'));
      await page.reload();
      await page.getByRole('heading', { name: 'Welcome back' }).waitFor({ timeout: 60000 });
      await page.getByLabel('Passphrase', { exact: true }).fill(PASS);
      await page.getByRole('button', { name: 'Unlock' }).click();
      await page.waitForFunction(() => performance.getEntriesByName('troth:interactive').length > 0, null, { timeout: 120000 });
      const full = await page.evaluate(() => performance.measure('full', 'troth:unlocked', 'troth:interactive').duration);
      results[size] = { open: median(open), idb: median(idb), checkin: median(checkin), full };
      console.log(`${size} events: unlock to interactive ${fmt(results[size].open)} (runs ${open.map((x) => x.toFixed(0)).join(' ')}),`
        + ` IndexedDB read ${fmt(results[size].idb)}, check-in ${fmt(results[size].checkin)} (runs ${checkin.map((x) => x.toFixed(0)).join(' ')}),`
        + ` without the snapshot ${fmt(full)}`);
    } finally {
      await b.close();
    }
  }
  const [small, large] = [Math.min(...SIZES), Math.max(...SIZES)];
  const a = results[large].open / results[large].idb;
  const c = results[large].checkin / results[small].checkin;
  console.log(`(a) unlock to interactive at ${large} vs reading its records: ${a.toFixed(2)}× (target ≤ 2×)`);
  console.log(`(b) check-in at ${large} vs at ${small}: ${c.toFixed(2)}× (target ≤ 1.5×)`);
  process.exitCode = a <= 2 && c <= 1.5 ? 0 : 1;
} finally {
  relay.stop();
}
