// Troth's service worker: it pins one verified copy of the app and serves
// it, online or not. It fetches release.json, then every file it lists,
// checks each against its SHA-256 and the bundle hash against the list,
// and keeps them in a cache named after the bundle hash. Later it serves
// only that copy: a server offering other code (a new release.json, or a
// new service worker) changes nothing until the person using the app
// accepts it in the app. It never calls skipWaiting on its own. The API
// (/v1/…) always goes to the network. Kept small and stable across
// releases: it names no bundle itself (docs/WEB.md, "Pinned code").
const PIN = 'troth-pin';

const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
const sha256 = async (bytes) => hex(await crypto.subtle.digest('SHA-256', bytes));

async function pinned() {
  const r = await (await caches.open(PIN)).match('/pinned');
  return r ? r.text() : null;
}

/** Fetches the bundle the server offers, checks every file, and pins it. */
async function pinOffered() {
  const rel = await (await fetch('/release.json?offered', { cache: 'no-store' })).json();
  const lines = rel.assets.map((a) => `${a.sha256}  ${a.path.replace(/^\//, '')}\n`).join('');
  if (await sha256(new TextEncoder().encode(lines)) !== rel.bundle) throw new Error('release.json does not add up');
  const cache = await caches.open(`troth-${rel.bundle}`);
  for (const a of rel.assets) {
    const res = await fetch(a.path, { cache: 'no-cache' });
    if (!res.ok || await sha256(await res.clone().arrayBuffer()) !== a.sha256) throw new Error(`${a.path} does not match release.json`);
    await cache.put(a.path, res);
  }
  await cache.put('/release.json', new Response(JSON.stringify(rel), { headers: { 'content-type': 'application/json' } }));
  const pin = await caches.open(PIN);
  await pin.put('/pinned', new Response(rel.bundle));
  for (const k of await caches.keys()) if (k.startsWith('troth-') && k !== PIN && k !== `troth-${rel.bundle}`) await caches.delete(k);
  return rel.bundle;
}

self.addEventListener('install', (e) => {
  e.waitUntil((async () => {
    const p = await pinned();
    if (!p || !(await caches.has(`troth-${p}`))) await pinOffered();
  })());
});

self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));

self.addEventListener('message', (e) => {
  const reply = (m) => e.source && e.source.postMessage(m);
  if (e.data === 'pin-offered') pinOffered().then((b) => reply({ pinned: b }), (err) => reply({ error: String(err.message || err) }));
  if (e.data === 'skip-waiting') self.skipWaiting();
});

async function fromPin(path) {
  const p = await pinned();
  if (!p) return null;
  return (await caches.open(`troth-${p}`)).match(path === '/' ? '/index.html' : path);
}

async function config(request) {
  const pin = await caches.open(PIN);
  try {
    const res = await fetch(request);
    if (res.ok) await pin.put('/troth-config.json', res.clone());
    return res;
  } catch {
    return (await pin.match('/troth-config.json')) || new Response('{}', { headers: { 'content-type': 'application/json' } });
  }
}

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (url.pathname.startsWith('/v1/') || url.search === '?offered') return;
  if (url.pathname === '/troth-config.json') { e.respondWith(config(e.request)); return; }
  e.respondWith(fromPin(url.pathname).then((r) => r || fetch(e.request)));
});

// Notifications (issue 16). A push carries nothing to show (the relay sends
// the same encrypted constant for every event), and neither does the
// notification: the same neutral words whatever happened, or plainer ones
// if the person chose them (the app keeps the choice in the pin cache).
const TITLES = ['Something new in Troth', 'Something new'];

self.addEventListener('push', (e) => {
  e.waitUntil((async () => {
    const r = await (await caches.open(PIN)).match('/push-title');
    const chosen = r ? await r.text() : '';
    const title = TITLES.includes(chosen) ? chosen : TITLES[0];
    await self.registration.showNotification(title, { tag: 'troth', renotify: false, icon: '/icon.svg' });
  })());
});

/** Opening the notification: the app's open window comes forward (and is told), or the app opens. */
async function openApp() {
  const wins = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  for (const w of wins) {
    w.postMessage({ troth: 'opened-from-notification' });
    try { return await w.focus(); } catch { /* focusing needs the click itself */ }
  }
  return wins.length ? null : self.clients.openWindow('/');
}

self.addEventListener('notificationclick', (e) => {
  e.notification.close();
  const done = openApp();
  // Only the browser's own events may be extended (a test dispatches one).
  try { e.waitUntil(done); } catch { /* untrusted event */ }
});
