// The space: its tabs, the banners over them (integrity alerts, a space
// that is gone, a partner not joined yet, reviews due) and `refresh`, which
// redraws every part that depends on the state while keeping forms intact.
import { store } from '../lib/store.js';
import { S, me, PAGE } from '../lib/state.js';
import { h, act, errorLine, screen } from '../lib/dom.js';
import { showStart, invite } from './pairing.js';
import { editor, review, agreementCards, draftCards } from './agreements.js';
import { checkInForm, askForm, askedOfMe, intentCards, checkinList, fillAnswers } from './checkins.js';
import { timeline } from './timeline.js';
import { rolesCards, endRolesCard } from './roles.js';
import { privateMoment } from './moment.js';
import { notifyCard, calendarCard } from './notify.js';
import { safetyCards, safetyNote, therapistForm, keyCard, lockCard, codeCard, leaveCard } from './safety.js';

// Devices (list, banner, naming, new keys) load once a space opens: not
// part of the first download. Until then (a few milliseconds) they draw nothing.
let devices = null;
function loadDevices() {
  if (devices) return;
  import('./devices.js').then((m) => { devices = m; fillDeviceForms(); refresh(); }).catch(() => { /* offline and not cached: retried on the next space screen */ });
}
function fillDeviceForms() {
  const at = document.getElementById('device-forms');
  if (at && devices && !at.childElementCount) at.append(devices.nameCard(), devices.rotateCard());
}
import { resume as resumePush } from '../lib/push.js';

const integrityEl = document.getElementById('integrity');

const TABS = [
  ['agreements', 'Agreements'],
  ['keep', 'Check-ins'],
  ['timeline', 'Timeline'],
  ['safety', 'Safety'],
];

/** The space screen: the tabs and the current tab's panel. */
export function showSpace() {
  const tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Sections' },
    TABS.map(([id, label]) => {
      const b = h('button', { type: 'button', role: 'tab', id: `tab-${id}`, 'aria-controls': 'panel',
        'aria-selected': String(S.tab === id), tabindex: S.tab === id ? '0' : '-1' }, label);
      b.addEventListener('click', () => { S.tab = id; showSpace(); document.getElementById(`tab-${id}`).focus(); });
      b.addEventListener('keydown', (e) => {
        const i = TABS.findIndex(([t]) => t === id);
        const j = e.key === 'ArrowRight' ? i + 1 : e.key === 'ArrowLeft' ? i - 1 : null;
        if (j === null) return;
        S.tab = TABS[(j + TABS.length) % TABS.length][0];
        showSpace();
        document.getElementById(`tab-${S.tab}`).focus();
      });
      return b;
    }));
  const panel = h('section', { id: 'panel', role: 'tabpanel', 'aria-labelledby': `tab-${S.tab}` });
  screen('Our space',
    h('p', { id: 'conn' }, connLine()),
    h('div', { id: 'banners' }),
    tabs, panel);
  buildTab(panel);
  loadDevices();
  fillDeviceForms();
  document.getElementById('leave').hidden = false;
  refresh();
  // Once a session: a device with notifications on registers again, so
  // that its quiet hours (kept by the relay in UTC) follow the clock.
  if (!S.pushResumed) { S.pushResumed = true; resumePush(); }
}

function buildTab(panel) {
  const tab = S.tab;
  if (tab === 'agreements') {
    const add = h('button', { type: 'button', id: 'propose-agreement' }, 'Propose an agreement');
    // The templates start with rules about whereabouts: the private moment first.
    add.addEventListener('click', () => privateMoment([{ category: 'whereabouts' }], () => editor()));
    panel.append(h('div', { class: 'row' }, add), h('div', { id: 'drafts' }), h('div', { id: 'live-agreements' }));
  } else if (tab === 'keep') {
    const list = h('div', { id: 'live-checkins' });
    if (S.sets === S.space.role) panel.append(h('div', { id: 'waiting' }), h('div', { id: 'asked-of-me' }), list, askForm(), checkInForm());
    else panel.append(h('div', { id: 'waiting' }), h('div', { id: 'asked-of-me' }), checkInForm(), list, askForm());
  } else if (tab === 'timeline') {
    panel.append(h('h2', {}, 'Everything, newest first'), h('div', { id: 'live-timeline' }));
  } else {
    panel.append(h('div', { id: 'live-safety' }), h('div', { id: 'live-devices' }), addDeviceCard(), kitCard(), h('div', { id: 'device-forms' }), notifyCard(), calendarCard(), therapistForm(), keyCard(), lockCard(), codeCard(), leaveCard());
  }
}

/** Updates everything that depends on the space's state, keeping forms intact. */
export function refresh() {
  renderIntegrity();
  if (!S.space || !document.getElementById('panel')) return;
  // Only what the lists show crosses from wasm (`S.show` newest entries).
  const st = S.space.state(Date.now(), S.show);
  // Who sets the conditions (the partners may have swapped roles): what
  // screens word by role follows it.
  S.sets = st.roles.sets;
  const conn = document.getElementById('conn');
  if (conn) conn.replaceChildren(connLine());
  const banners = document.getElementById('banners');
  if (banners) banners.replaceChildren(...bannerCards(st));
  // Nothing can be proposed until both confirmed who sets the conditions.
  const propose = document.getElementById('propose-agreement');
  if (propose) propose.disabled = !st.roles.agreed;
  // Until the partner's device has welcomed this one in, there is nothing to act on.
  const panel = document.getElementById('panel');
  if (panel) panel.inert = !S.gone && !st.partnerJoined && st.role === 'rebuilding';
  // Live updates re-render lists: keep focus and open <details> where they were.
  const keyOf = (e) => `${e.closest('[data-id]')?.dataset.id || ''}|${e.tagName}|${e.textContent}`;
  const put = (id, ...kids) => {
    const el = document.getElementById(id);
    if (!el) return;
    const active = document.activeElement && el.contains(document.activeElement) ? keyOf(document.activeElement) : null;
    const open = new Set([...el.querySelectorAll('details[open]')].map(keyOf));
    el.replaceChildren(...kids);
    for (const d of el.querySelectorAll('details')) if (open.has(keyOf(d))) d.open = true;
    if (active) {
      const again = [...el.querySelectorAll('button, summary, a')].find((b) => keyOf(b) === active);
      if (again) again.focus({ preventScroll: true });
    }
  };
  put('live-agreements', ...agreementCards(st));
  put('drafts', ...draftCards());
  put('asked-of-me', ...askedOfMe(st));
  put('waiting', ...intentCards());
  put('live-checkins', ...checkinList(st));
  put('live-timeline', ...timeline(st));
  put('live-safety', ...safetyCards(st), ...endRolesCard(st));
  put('live-devices', ...(devices ? devices.deviceList() : []));
  const answers = document.getElementById('answers');
  if (answers) fillAnswers(answers, st);
}

function renderIntegrity() {
  if (!S.space) { integrityEl.replaceChildren(); return; }
  const seen = new Set();
  const alerts = S.space.alerts().filter((a) => !seen.has(a.advice) && seen.add(a.advice));
  if (!alerts.length) { integrityEl.replaceChildren(); return; }
  integrityEl.replaceChildren(h('section', { class: 'warning', 'aria-labelledby': 'warn-h' },
    h('h2', { id: 'warn-h' }, 'Something here does not add up'),
    alerts.map((a) => h('p', {}, a.advice)),
    h('p', {}, 'What to do: compare the state code below with your partner, in person or on a call you trust. If they differ, the server is not showing you both the same thing.'),
    h('p', {}, 'State code on this device: ', h('strong', { class: 'digits' }, S.space.stateCode)),
    h('details', {}, h('summary', {}, 'What the check found'), alerts.map((a) => h('p', { class: 'muted' }, a.what)))));
}

function bannerCards(st) {
  const out = [];
  if (S.gone) {
    const rm = h('button', { type: 'button', class: 'secondary' }, 'Remove the space from this device');
    rm.addEventListener('click', async () => {
      await store.delSpace();
      if (S.ws) { S.ws.onclose = null; S.ws.close(); S.ws = null; }
      try { S.space.free(); } catch { /* */ }
      S.space = null; S.gone = false; showStart();
    });
    // Only a signed CloseSpace event says a person closed it; a space that
    // just vanished was removed by the relay, and the local copy is kept.
    const c = st.closed;
    out.push(c ? h('section', { class: 'card warm stack' }, h('h2', {}, me(c.by) ? 'You closed this shared space' : 'Your partner closed this shared space'),
      h('p', {}, `${me(c.by) ? 'You' : 'Your partner'} chose to close it in Troth, so the server no longer keeps it. What you wrote together stays readable on this device until you remove it.`), rm)
      : h('section', { class: 'card warm stack' }, h('h2', {}, 'The relay no longer has this space'),
        h('p', {}, 'This browser has no signed note from your partner that they closed it: either the relay removed it, or your partner closed it before this browser could fetch their note. Your copy is kept on this device, and nothing in it was lost.'),
        h('p', {}, 'Talk with your partner in a way you trust. If you both want to go on, you can start a new space together; this copy stays here to read until you remove it.'), rm));
    return out;
  }
  if (!st.partnerJoined) {
    if (st.role === 'leading') {
      const b = h('button', { type: 'button' }, 'Show a code for my partner');
      const err = errorLine();
      b.addEventListener('click', () => act(b, err, invite));
      out.push(h('section', { class: 'card warm stack' }, h('h2', {}, 'Your partner has not joined yet'), err, b));
    } else {
      out.push(h('p', { class: 'card warm' }, 'Almost there: waiting for your partner\'s device to welcome you in…'));
    }
  }
  // A changed safety number is shown loudly over every tab, not only under Safety.
  if (S.meta && S.meta.safetySeen && st.safetyNumber && S.meta.safetySeen !== st.safetyNumber) out.push(safetyNote(st));
  if (devices) out.push(...devices.deviceBanners());
  out.push(...rolesCards(st));
  for (const a of st.agreements.filter((x) => x.due)) {
    const b = h('button', { type: 'button' }, `Review “${a.title}”`);
    b.addEventListener('click', () => review(a));
    out.push(h('section', { class: 'card warm stack' },
      h('p', {}, `It's time to look at “${a.title}” together: renew it, change it, or retire it.`), b));
  }
  return out;
}


function connLine() {
  if (S.gone) return '';
  if (S.waitingAdmission) return h('span', { class: 'muted' }, 'Connecting…');
  return S.online
    ? h('span', { class: 'muted' }, 'Connected · updates appear as they happen')
    : h('span', { class: 'offline' }, "Reconnecting… what you see may be behind. Check-ins and requests you make now are kept on this device and sent when you're connected.");
}

/** Redraws the line that says whether the live connection is up. */
export function showConnection() {
  const el = document.getElementById('conn');
  if (el) el.replaceChildren(connLine());
}

/**
 * "Show earlier …" under a list that holds only the newest entries: the
 * cost of drawing follows what is on screen, not the length of the log.
 */
export function showEarlier(shown, total, label) {
  if (total <= shown) return null;
  const b = h('button', { type: 'button', class: 'quiet' }, `${label} (${total - shown} more)`);
  b.addEventListener('click', () => { S.show += PAGE; refresh(); });
  return b;
}

/** The Safety card that starts adding a device of one's own (`link.js` is loaded only then). */
function addDeviceCard() {
  const btn = h('button', { type: 'button', class: 'secondary', 'data-testid': 'add-device' }, 'Add a device');
  const err = errorLine();
  btn.addEventListener('click', () => act(btn, err, async () => (await import('./link.js')).showAddDevice()));
  return h('section', { class: 'card stack', 'aria-labelledby': 'add-dev-h' },
    h('h2', { id: 'add-dev-h' }, 'Your other devices'),
    h('p', {}, 'To use Troth on another phone or computer as well, add it here with a one-time code. It gets keys of its own; your partner is told that you added a device.'),
    err, btn);
}

/** The Safety card for a recovery kit (`recovery.js` is loaded only when opened). */
function kitCard() {
  const btn = h('button', { type: 'button', class: 'secondary', 'data-testid': 'save-kit' }, 'Save a recovery kit');
  const err = errorLine();
  btn.addEventListener('click', () => act(btn, err, async () => (await import('./recovery.js')).showSaveKit()));
  return h('section', { class: 'card stack', 'aria-labelledby': 'kit-card-h' },
    h('h2', { id: 'kit-card-h' }, 'If you lose this device'),
    h('p', {}, 'A recovery kit is a file that lets a new device back into your space, with your whole history. Without one, the way back is to pair again, with your partner.'),
    err, btn);
}
