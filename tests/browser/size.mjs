// Measures the web client's first download in real Chromium: every response
// the page needs until its first screen is shown (HTML, JS, CSS, wasm, icon),
// as transferred (gzip) bytes. Budget: 300 KiB.
//   npm run size            (builds and starts the relay itself)
//   TROTH_URL=http://… npm run size
import { buildRelay, startRelay, launch } from './lib.mjs';

const BUDGET = 300 * 1024;
const relay = process.env.TROTH_URL ? null : await startRelay(buildRelay());
const url = process.env.TROTH_URL || relay.url;
const b = await launch();
try {
  const page = await b.ctx.newPage();
  const responses = [];
  page.on('requestfinished', async (req) => { responses.push(req); });
  await page.goto(url);
  await page.getByRole('heading', { name: 'Welcome to Troth' }).waitFor({ timeout: 30000 });
  await page.waitForLoadState('networkidle');
  let total = 0;
  const rows = [];
  for (const req of responses) {
    const sizes = await req.sizes();
    const res = await req.response();
    const enc = res ? (await res.allHeaders())['content-encoding'] || 'identity' : '?';
    total += sizes.responseBodySize;
    rows.push([new URL(req.url()).pathname, sizes.responseBodySize, enc]);
  }
  for (const [p, n, e] of rows.sort((x, y) => y[1] - x[1])) console.log(`${String(n).padStart(8)}  ${e.padEnd(8)}  ${p}`);
  console.log(`${String(total).padStart(8)}  bytes in all = ${(total / 1024).toFixed(1)} KiB (budget ${BUDGET / 1024} KiB)`);
  process.exitCode = total <= BUDGET ? 0 : 1;
} finally {
  await b.close();
  relay?.stop();
}
