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
const native = Number(cargo(['time', file, pass, String(RUNS)]));

const relay = await startRelay(buildRelay());
const b = await launch();
try {
  const page = await b.ctx.newPage();
  await page.goto(relay.url);
  await page.getByRole('heading', { name: 'Welcome to Troth' }).waitFor({ timeout: 30000 });
  const text = readFileSync(file, 'utf8');
  const browser = await page.evaluate(async ({ text, pass, runs }) => {
    const m = await import('/troth_wasm.js');
    await m.default();
    const bytes = new TextEncoder().encode(text);
    const times = [];
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      m.Keys.unlock(bytes, pass).free();
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    return times[Math.floor(times.length / 2)];
  }, { text, pass, runs: RUNS });
  const ratio = browser / native;
  console.log(`native  ${native.toFixed(0)} ms (median of ${RUNS}, release build)`);
  console.log(`browser ${browser.toFixed(0)} ms (median of ${RUNS}, Chromium wasm)`);
  console.log(`ratio   ${ratio.toFixed(2)}× (budget 1.5×)`);
  process.exitCode = ratio <= 1.5 ? 0 : 1;
} finally {
  await b.close();
  relay.stop();
}
