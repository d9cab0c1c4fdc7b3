// Shared helpers for the browser tests: the real relay binary, Debian's
// Chromium through playwright-core, axe-core, screenshots.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const root = join(here, '..', '..');
export const artifacts = join(root, 'tests', 'artifacts');
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic'];

/** Builds the relay (with the embedded client) once; returns the binary path. */
export function buildRelay() {
  if (process.env.TROTH_RELAY_BIN) return process.env.TROTH_RELAY_BIN;
  execFileSync('cargo', ['build', '-p', 'troth-relay', '--quiet'], { cwd: root, stdio: 'inherit' });
  const target = process.env.CARGO_TARGET_DIR || join(root, 'target');
  return join(target, 'debug', 'troth-relay');
}

/** Builds the `troth` CLI (unless `TROTH_BIN` names one); returns the binary path. */
export function buildCli() {
  if (process.env.TROTH_BIN) return process.env.TROTH_BIN;
  execFileSync('cargo', ['build', '-p', 'troth-cli', '--quiet'], { cwd: root, stdio: 'inherit' });
  return join(process.env.CARGO_TARGET_DIR || join(root, 'target'), 'debug', 'troth');
}

/** Starts the relay on 127.0.0.1 with a fresh data folder; resolves its URL. */
export function startRelay(bin, extra = []) {
  const data = mkdtempSync(join(tmpdir(), 'troth-relay-'));
  const child = spawn(bin, ['--listen', '127.0.0.1:0', '--data', data, ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TROTH_RELAY_LOG: 'warn' },
  });
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`relay did not start:\n${log}`)), 30000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve({
          url: `http://${m[1]}`, child, log: () => log,
          stop: () => { child.kill('SIGTERM'); rmSync(data, { recursive: true, force: true }); },
        });
      }
    });
    child.on('exit', (c) => { clearTimeout(timer); reject(new Error(`relay exited (${c}):\n${log}`)); });
  });
}

/** Launches Chromium with a fresh user-data folder. */
export async function launch() {
  const dir = mkdtempSync(join(tmpdir(), 'troth-chromium-'));
  const ctx = await chromium.launchPersistentContext(dir, { executablePath: CHROMIUM, args: FLAGS, headless: true,
    viewport: { width: 360, height: 740 } });
  return { ctx, close: async () => { await ctx.close(); rmSync(dir, { recursive: true, force: true }); } };
}

/** A page with console errors and off-origin requests collected. */
export async function openPage(ctx, url, alsoAllowed = []) {
  const page = ctx.pages()[0] || await ctx.newPage();
  const problems = [];
  const origin = new URL(url).origin;
  const allowed = [origin, ...alsoAllowed].flatMap((o) => [o, o.replace('http', 'ws')]);
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`); });
  page.on('request', (r) => {
    const u = r.url();
    if (!allowed.some((o) => u.startsWith(o)) && !u.startsWith('blob:') && !u.startsWith('data:')) problems.push(`off-origin request: ${u}`);
  });
  await page.goto(url);
  return { page, problems };
}

/** Runs axe-core; returns serious and critical violations. */
export async function axe(page) {
  await page.evaluate(axeSource);
  const res = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  });
  return res.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/** Screenshots at phone and desktop sizes. */
export async function shoot(page, name) {
  mkdirSync(artifacts, { recursive: true });
  const size = page.viewportSize();
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.setViewportSize({ width: 360, height: 740 });
  await page.screenshot({ path: join(artifacts, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.screenshot({ path: join(artifacts, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize(size);
}
