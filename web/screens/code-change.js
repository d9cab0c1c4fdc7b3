// Pinned code (web/sw.js keeps the verified bundle): registers the service
// worker and, when the server offers other code, keeps running the pinned
// version and shows a calm notice that lets the person choose
// (docs/WEB.md, "Pinned code"). The notice itself (code-offer.js) loads
// only when there is something to say, to keep the first download small.

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

/** The bundle hash this browser pinned, if any. */
export async function pinnedBundle() {
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

/** Shows the notice (loaded on demand: most visits never need it). */
function offerCode(reg, what, pinned, offered) {
  import('./code-offer.js').then((m) => m.offerCode(reg, what, pinned, offered)).catch(() => { /* offline and not cached: shown next time */ });
}
