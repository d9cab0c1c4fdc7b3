// A private moment before rules about whereabouts or the phone (issue 17):
// shown on this device only, the first time in this page's life that this
// person proposes or signs such an agreement. Nothing about it is kept,
// written to the log or sent anywhere, so the partner cannot tell whether
// it was shown (the flag below lives in this page's memory only).
import { h, openDialog, closeDialog } from '../lib/dom.js';
import { helpWords } from '../lib/api.js';

const MONITORING = new Set(['whereabouts', 'phone']);
let shown = false;
// The relay operator's help words per language (issue 17): fetched once
// when the app opens, whether or not this moment is ever shown, so the
// request says nothing about it. Untrusted: shown as text, links https:/tel: only.
let operatorHelp = [];

/** Fetches the operator's help words (called once at start; failures keep the default). */
export async function loadHelp() {
  try {
    const r = await helpWords();
    if (r && Array.isArray(r.help)) operatorHelp = r.help.filter((x) => x && typeof x.lang === 'string' && typeof x.words === 'string');
  } catch { /* offline or an older relay: the neutral default */ }
}

/** The operator's help for this browser's languages (exact tag, then its language), if any. */
export function helpFor(languages) {
  const by = (tag) => operatorHelp.find((x) => x.lang.toLowerCase() === tag);
  for (const l of languages.map((x) => String(x).toLowerCase())) {
    const hit = by(l) || by(l.split('-')[0]);
    if (hit) return hit;
  }
  return null;
}

const SAFE_LINK = /^(https:\/\/[^\s]+|tel:[0-9+\-() ]+)$/;

function helpSection() {
  const mine = helpFor(navigator.languages && navigator.languages.length ? [...navigator.languages] : [navigator.language || 'en']);
  if (!mine) {
    return h('p', {}, 'If you feel unsafe or controlled, you are not alone: a local domestic-abuse support service, a doctor or someone you trust can help. If you are in danger, call your local emergency number. Quick exit (or Escape twice) leaves this page at once.');
  }
  const links = (Array.isArray(mine.links) ? mine.links : [])
    .filter((l) => l && typeof l.label === 'string' && typeof l.url === 'string' && SAFE_LINK.test(l.url));
  return h('div', { 'data-testid': 'operator-help', lang: mine.lang },
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
