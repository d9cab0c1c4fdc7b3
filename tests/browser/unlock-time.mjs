// Compares unlocking a key file (scrypt, work factor 18 = core's default) in
// Chromium's wasm with the same core code run natively. Budget: ≤ 1.5×.
//   npm run unlock-time
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRelay, startRelay, launch, root } from './lib.mjs';

const RUNS = Number(process.env.RUNS || 5);
const pass = 'timing the unlock';
const file = join(mkdtempSync(join(tmpdir(), 'troth-unlock-')), 'key.age');
const cargo = (args) => execFileSync('cargo', ['run', '-q', '--release', '-p', 'troth-wasm', '--example', 'keyfile', '--', ...args],
  { cwd: root }).toString().trim();
cargo(['write', file, pass, '18']);

// Native and browser runs are interleaved, so that load from other processes
// on the machine falls on both alike; medians are compared.
const relay = await startRelay(buildRelay());
const b = await launch();
try {
  const page = await b.ctx.newPage();
  await page.goto(relay.url);
  await page.getByRole('heading', { name: 'Welcome to Troth' }).waitFor({ timeout: 30000 });
  const text = readFileSync(file, 'utf8');
  await page.evaluate(async () => { window.m = await import('/troth_wasm.js'); await window.m.default(); });
  const nat = [];
  const web = [];
  for (let i = 0; i < RUNS; i++) {
    nat.push(Number(cargo(['time', file, pass, '1'])));
    web.push(await page.evaluate(({ text, pass }) => {
      const t = performance.now();
      window.m.Keys.unlock(new TextEncoder().encode(text), pass).free();
      return performance.now() - t;
    }, { text, pass }));
  }
  const median = (xs) => xs.slice().sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  const native = median(nat);
  const browser = median(web);
  const ratio = browser / native;
  console.log(`runs: native ${nat.map((x) => x.toFixed(0)).join(" ")}; browser ${web.map((x) => x.toFixed(0)).join(" ")}`);
  console.log(`native  ${native.toFixed(0)} ms (median of ${RUNS}, release build)`);
  console.log(`browser ${browser.toFixed(0)} ms (median of ${RUNS}, Chromium wasm)`);
  console.log(`ratio   ${ratio.toFixed(2)}× (budget 1.5×)`);
  process.exitCode = ratio <= 1.5 ? 0 : 1;
} finally {
  await b.close();
  relay.stop();
}
