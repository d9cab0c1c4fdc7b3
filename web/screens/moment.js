// A private moment before rules about whereabouts or the phone (issue 17):
// shown on this device only, the first time in this page's life that this
// person proposes or signs such an agreement. Nothing about it is kept,
// written to the log or sent anywhere, so the partner cannot tell whether
// it was shown (the flag below lives in this page's memory only).
import { h, openDialog, closeDialog } from '../lib/dom.js';
import { helpFor } from '../lib/help.js';
import { relayUrl } from '../lib/api.js';

const MONITORING = new Set(['whereabouts', 'phone']);
let shown = false;
const SAFE_LINK = /^(https:\/\/[^\s]+|tel:[0-9+\-() ]+)$/;

function helpSection() {
  const mine = helpFor(navigator.languages && navigator.languages.length ? [...navigator.languages] : [navigator.language || 'en']);
  if (!mine) {
    return h('p', {}, 'If you feel unsafe or controlled, you are not alone: a local domestic-abuse support service, a doctor or someone you trust can help. If you are in danger, call your local emergency number. Quick exit (or Escape twice) leaves this page at once.');
  }
  const links = (Array.isArray(mine.links) ? mine.links : [])
    .filter((l) => l && typeof l.label === 'string' && typeof l.url === 'string' && SAFE_LINK.test(l.url));
  // Said plainly where they come from: whoever runs the server chose them,
  // and a server is not trusted with anything else in Troth.
  let host = '';
  try { host = new URL(relayUrl()).host; } catch { /* shown without it */ }
  return h('div', { 'data-testid': 'operator-help', lang: mine.lang },
    h('p', { class: 'muted', lang: 'en' }, `Help suggested by whoever runs this Troth server${host ? ` (${host})` : ''}:`),
    h('p', {}, mine.words),
    links.length ? h('ul', {}, links.map((l) => h('li', {}, h('a', { href: l.url, rel: 'noopener noreferrer', target: '_blank' }, l.label)))) : null,
    h('p', { class: 'muted', lang: 'en' }, 'Quick exit (or Escape twice) leaves this page at once.'));
}

/** Whether any rule is about whereabouts or the phone. */
export function isMonitoring(rules) {
  return rules.some((r) => MONITORING.has(r.category));
}

/**
 * Runs `go` after the private moment when `rules` are about whereabouts or
 * the phone and it was not shown yet in this page's life; else right away.
 */
export function privateMoment(rules, go) {
  if (shown || !isMonitoring(rules)) return go();
  const cont = h('button', { type: 'button' }, 'Continue');
  cont.addEventListener('click', () => { shown = true; closeDialog(); go(); });
  const notNow = h('button', { type: 'button', class: 'secondary' }, 'Not now');
  notNow.addEventListener('click', closeDialog);
  openDialog('A moment for you',
    h('p', { class: 'muted' }, "Only on this screen. Nothing about it is saved or sent, and your partner can't tell you saw it."),
    h('p', {}, 'Rules about where you are, or about your phone, help only when they are chosen freely. Is anyone pressuring you to agree to this?'),
    h('p', {}, 'You can withdraw from any agreement at any time, on your own, without asking anyone. It is recorded and shown, never hidden.'),
    helpSection(),
    h('div', { class: 'row' }, cont, notNow));
}
