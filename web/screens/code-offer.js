// The notice shown when the server offers code other than the pinned copy
// (see code-change.js, which watches for it): calm words, the two bundle
// hashes, how to check, and the person's choice.
import { h, say, act, errorLine } from '../lib/dom.js';
import { pinnedBundle } from './code-change.js';

const short = (x) => (x ? `${String(x).slice(0, 16)}…` : 'unknown');

/** Shows the notice in #code-change (once per page). */
export async function offerCode(reg, what, pinned, offered) {
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
