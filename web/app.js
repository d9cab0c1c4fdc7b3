// Troth's browser client: screens over the wasm core (troth_wasm.js).
// Everything the relay sends goes through the core's verifier before it is
// shown; everything we send is composed and signed in wasm.
//
// The modules (docs/WEB.md, "Code map"): lib/ holds what the screens share
// (dom.js, state.js, store.js, api.js, vault.js, sync.js, intents.js) and
// never imports a screen; screens/ holds one module per screen or tab. This
// file starts the wasm core, loads the relay setting and shows the first
// screen.
import init from './troth_wasm.js';
import { loadConfig } from './lib/api.js';
import { store } from './lib/store.js';
import { h, screen } from './lib/dom.js';
import { watchCode } from './screens/code-change.js';
import { showWelcome, showUnlock } from './screens/unlock.js';
import { on, S } from './lib/state.js';
import { loadHelp } from './lib/help.js';

// The lower layers say when something changed; the space screen redraws.
// Those events come only once a space is open, so the space's module (loaded
// after the first screen, see screens/unlock.js) is there by then.
on('refresh', () => { import('./screens/space.js').then((m) => m.refresh()); });
on('online', () => { import('./screens/space.js').then((m) => m.showConnection()); });
// Opened from a notification: fetch what is new.
if ('serviceWorker' in navigator) {
  navigator.serviceWorker.addEventListener('message', (m) => {
    if (m.data && m.data.troth === 'opened-from-notification' && S.space) {
      import('./lib/sync.js').then((s) => s.sync()).catch(() => {});
    }
  });
}

async function boot() {
  try {
    await init();
  } catch (e) {
    screen('Troth could not start', h('p', {}, 'This browser could not load the part of Troth that keeps your words encrypted. Please try an up-to-date browser.'));
    return;
  }
  await loadConfig();
  loadHelp();
  watchCode();
  const file = await store.get('keyfile');
  if (file) showUnlock();
  // The therapist page loads on demand: most people never need it.
  else if (await store.get('therapist-key')) (await import('./screens/therapist.js')).showTherapist();
  else showWelcome();
}

boot();
