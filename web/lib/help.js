// The relay operator's help words per language for the private moment
// (screens/moment.js, issue 17): fetched once when the app opens, whether or
// not the moment is ever shown, so the request says nothing about it.
// Untrusted: the moment shows them as text, links https:/tel: only.
import { helpWords } from './api.js';

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
