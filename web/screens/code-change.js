// Pinned code (web/sw.js keeps the verified bundle): registers the service
// worker and, when the server offers other code, keeps running the pinned
// version and shows a calm notice that lets the person choose
// (docs/WEB.md, "Pinned code").
import { h, say, act, errorLine } from '../lib/dom.js';

/**
 * Installs the service worker that pins this copy of the app (web/sw.js),
 * and watches for the server offering other code: a new service worker
 * (`updatefound`) or a different bundle under the same one. Either way the
 * pinned version keeps running, and a calm notice says what changed, how to
 * check it, and lets the person choose.
 */
export async function watchCode() {
  if (!('serviceWorker' in navigator)) return;
  let reg;
  try {
    reg = await navigator.serviceWorker.register('sw.js', { updateViaCache: 'none' });
  } catch { return; }
  const controlled = () => Boolean(navigator.serviceWorker.controller);
  reg.addEventListener('updatefound', () => { if (controlled()) offerCode(reg, 'its service worker'); });
  if (!controlled()) return;
  const b = await bundleChange();
  const what = [reg.waiting && 'its service worker', b && 'the app itself'].filter(Boolean).join(' and ');
  if (what) offerCode(reg, what, b && b.pinned, b && b.offered);
}

async function pinnedBundle() {
  try {
    const r = await (await caches.open('troth-pin')).match('/pinned');
    return r ? r.text() : null;
  } catch { return null; }
}

/** The pinned bundle and the one the server offers now, if they differ. */
async function bundleChange() {
  const pinned = await pinnedBundle();
  let offered = null;
  try { offered = (await (await fetch('release.json?offered', { cache: 'no-store' })).json()).bundle; } catch { return null; }
  return pinned && offered && offered !== pinned ? { pinned, offered } : null;
}

const short = (x) => (x ? `${String(x).slice(0, 16)}…` : 'unknown');

async function offerCode(reg, what, pinned, offered) {
  const box = document.getElementById('code-change');
  if (!box || box.dataset.shown) return;
  box.dataset.shown = '1';
  pinned = pinned || await pinnedBundle();
  const keep = h('button', { type: 'button', class: 'secondary' }, 'Keep using my version');
  const take = h('button', { type: 'button' }, 'Use the offered version');
  const err = errorLine();
  keep.addEventListener('click', () => { box.replaceChildren(); say('You are still using the version you had.'); });
  take.addEventListener('click', () => act(take, err, async () => {
    const sw = navigator.serviceWorker.controller;
    if (sw) {
      const answer = new Promise((resolve) => {
        navigator.serviceWorker.addEventListener('message', (m) => resolve(m.data), { once: true });
      });
      sw.postMessage('pin-offered');
      const a = await answer;
      if (a && a.error) throw new Error(`The offered version did not check out (${a.error}). You are still using yours.`);
    }
    if (reg.waiting) reg.waiting.postMessage('skip-waiting');
    location.reload();
  }));
  box.replaceChildren(h('section', { class: 'card stack notice', 'data-testid': 'code-change' },
    h('h2', {}, 'This server offers different code for Troth'),
    h('p', {}, `It changed ${what}. You are still running the version you had (bundle ${short(pinned)})${offered ? `; the server now offers bundle ${short(offered)}` : ''}. Nothing new runs until you choose.`),
    h('p', { class: 'muted' }, `An update from Troth looks like this too. To check the offered code first, run "troth web verify ${location.origin}" on a computer you trust, or ask whoever runs this server what changed.`),
    err, h('div', { class: 'row' }, keep, take)));
}
