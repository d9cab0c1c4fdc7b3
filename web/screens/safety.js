// Safety: the safety number and state code, sharing with a therapist,
// exporting the key, locking, this copy of Troth, and leaving the space.
import { Keys, checkPassphrase, dayPlus } from '../troth_wasm.js';
import { store } from '../lib/store.js';
import { RelayError, Offline } from '../lib/api.js';
import { S, who, me } from '../lib/state.js';
import { h, field, passHint, checkbox, say, pause, act, errorLine, download, openDialog, closeDialog } from '../lib/dom.js';
import { persist } from '../lib/vault.js';
import { send } from '../lib/sync.js';
import { lock, lockMs, touch, showWelcome } from './unlock.js';
import { refresh } from './space.js';

/**
 * Whether the safety number is the one this browser first saw (a new
 * device of the same person never changes it; a different identity would).
 * The first number seen is kept, sealed, in the meta record.
 */
export function safetyNote(st) {
  if (!st.safetyNumber || !S.meta) return null;
  if (!S.meta.safetySeen) { S.meta.safetySeen = st.safetyNumber; persist(); }
  if (S.meta.safetySeen === st.safetyNumber) {
    return h('p', { 'data-testid': 'safety-unchanged' }, 'Unchanged since this device first saw it. New devices of yours or your partner\'s never change it.');
  }
  const again = h('button', { type: 'button', class: 'secondary' }, 'We compared the new number in person');
  again.addEventListener('click', async () => { S.meta.safetySeen = st.safetyNumber; S.meta.compared = true; await persist(); refresh(); });
  return h('section', { class: 'warning', role: 'alert', 'data-testid': 'safety-changed' },
    h('h3', {}, 'The safety number changed'),
    h('p', {}, `It was ${S.meta.safetySeen}. A new device never changes it: a change means one of you now has a different identity key, or someone is pretending to be one of you.`),
    h('p', {}, 'Compare the number with your partner in person before you share anything more. If it differs, stop and talk.'), again);
}

/** The cards redrawn with the state: safety number, state code, sharing. */
export function safetyCards(st) {
  const compared = S.meta && S.meta.compared;
  const mark = h('button', { type: 'button', class: 'secondary' }, 'We compared it in person');
  mark.addEventListener('click', async () => { S.meta.compared = true; await persist(); refresh(); say('Marked as compared.'); });
  const consent = Object.entries(st.consents);
  return [
    h('section', { class: 'card stack', 'aria-labelledby': 'sn2-h' }, h('h2', { id: 'sn2-h' }, 'Safety number'),
      h('p', { class: 'digits', 'data-testid': 'safety-number' }, st.safetyNumber || 'Shown once your partner has joined.'),
      st.safetyNumber ? (compared ? h('p', {}, 'You marked this as compared in person.') : mark) : null, safetyNote(st)),
    h('section', { class: 'card stack', 'aria-labelledby': 'sc-h' }, h('h2', { id: 'sc-h' }, 'State code'),
      h('p', { class: 'digits', 'data-testid': 'state-code' }, st.stateCode),
      h('p', { class: 'muted' }, 'When both of you are up to date, your codes are the same. If they differ after a refresh, the server may be showing you different things.')),
    h('section', { class: 'card stack', 'aria-labelledby': 'share-h' }, h('h2', { id: 'share-h' }, 'Sharing with a therapist'),
      consent.length ? h('ul', {}, consent.map(([role, c]) => h('li', {},
        `${who(role)} agreed to share ${c.includeCheckins ? 'agreements and check-ins' : 'agreements'} ${c.recipient ? 'with the therapist\'s key' : 'as a printed copy'} until ${c.until}${c.current ? '' : ' (ended)'}.`)))
        : h('p', { class: 'muted' }, 'Nothing is shared unless you both agree.'),
      ...reportButtons(st)),
    retentionCard(st),
  ];
}

/**
 * How long things are kept (issue 17, forgetting on schedule): in calm
 * words, with "keep for less time" (one person's choice), "propose keeping
 * longer" and, for a partner's proposal, "agree".
 */
function retentionCard(st) {
  const r = st.retention;
  if (!r) return null;
  const err = errorLine();
  const [daysField, days] = field('Days (30 to 3650)', 'input', { id: 'ret-days', type: 'number', min: '30', max: '3650', inputmode: 'numeric', value: String(S.retentionDays || r.days) });
  // The card is redrawn with every update: what is typed stays.
  days.addEventListener('input', () => { S.retentionDays = days.value; });
  const shorter = h('button', { type: 'button', class: 'secondary' }, 'Keep for less time');
  shorter.addEventListener('click', () => act(shorter, err, () => {
    const n = Number(days.value);
    return send((now) => S.space.retentionShorten(n, now), `From now on things are kept for ${n} days on both of your devices.`)
      .then(() => { S.retentionDays = undefined; });
  }));
  const longer = h('button', { type: 'button', class: 'secondary' }, 'Propose keeping longer');
  longer.addEventListener('click', () => act(longer, err, () => {
    const n = Number(days.value);
    return send((now) => S.space.retentionPropose(n, now), `You proposed keeping things for ${n} days. It applies once your partner agrees.`)
      .then(() => { S.retentionDays = undefined; });
  }));
  const p = r.proposal;
  let proposal = null;
  if (p && me(p.by)) {
    proposal = h('p', {}, `You proposed keeping things for ${p.days} days; waiting for your partner.`);
  } else if (p) {
    const agree = h('button', { type: 'button' }, `Agree to keep things for ${p.days} days`);
    agree.addEventListener('click', () => act(agree, err, () =>
      send((now) => S.space.retentionAgree(now), `You agreed; things are kept for ${p.days} days from now on.`)));
    proposal = h('div', { class: 'stack' }, h('p', {}, `Your partner proposed keeping things for ${p.days} days.`), agree);
  }
  return h('section', { class: 'card stack', 'aria-labelledby': 'ret-h', 'data-testid': 'retention' },
    h('h2', { id: 'ret-h' }, 'How long things are kept'),
    h('p', { 'data-testid': 'retention-days' }, `Things are kept for ${r.days} days. After that, both of your devices forget them: the keys that open them are deleted, and agreements still in force are kept.`),
    r.forgottenEpochs ? h('p', { 'data-testid': 'forgotten' }, `${r.forgottenEvents} older events were forgotten as agreed.`) : null,
    h('p', { class: 'muted' }, 'You can keep things for less time on your own. Keeping them longer takes both of you. What your partner already saved, screenshots, and a device that never syncs are outside what this can reach.'),
    proposal,
    daysField,
    h('div', { class: 'row' }, shorter, longer), err);
}

function reportButtons(st) {
  const l = st.consents.leading;
  const r = st.consents.rebuilding;
  if (!l || !r || !l.current || !r.current || l.recipient !== r.recipient) return [];
  const err = errorLine();
  const out = [];
  if (l.recipient) {
    const dl = h('button', { type: 'button' }, 'Download the encrypted report');
    dl.addEventListener('click', () => act(dl, err, () => {
      download('troth-report.age', S.space.encryptReport(l.recipient, Date.now()), 'text/plain');
      say('Downloaded. Only your therapist can open it.');
    }));
    out.push(dl);
  }
  const pr = h('button', { type: 'button', class: 'secondary' }, 'Print a readable summary');
  pr.addEventListener('click', () => act(pr, err, () => {
    const text = S.space.reportText(l.recipient, Date.now());
    const sheet = h('pre', { class: 'print-sheet', tabindex: '0', role: 'region', 'aria-label': 'Report summary' }, text);
    openDialog('Summary for your therapist', sheet, h('div', { class: 'row' },
      h('button', { type: 'button', onclick: () => window.print() }, 'Print'),
      h('button', { type: 'button', class: 'secondary', onclick: closeDialog }, 'Close')));
  }));
  out.push(pr);
  return [h('div', { class: 'row' }, ...out), err];
}

/** The form to agree to share a report with a therapist. */
export function therapistForm() {
  const [rw, recipient] = field("Therapist's age key (leave empty for a printed copy)", 'input',
    { type: 'text', placeholder: 'age1…', autocomplete: 'off', spellcheck: 'false' });
  const [cw, include] = checkbox('Include check-ins, not only agreements');
  const [uw, until] = field('Until', 'input', { type: 'date', value: dayPlus(Date.now(), 30), min: dayPlus(Date.now(), 0) });
  const err = errorLine();
  const btn = h('button', { type: 'submit' }, 'I agree to share');
  const form = h('form', { class: 'card stack', 'aria-labelledby': 'consent-h' }, h('h2', { id: 'consent-h' }, 'Agree to share a report'),
    h('p', { class: 'muted' }, 'A report is made only when both of you agree to the same therapist. Your signature is recorded for both of you.'),
    rw, cw, uw, err, btn);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(btn, err, () => send((now) => S.space.consentReport(recipient.value, include.checked, until.value, now),
      'Your consent is recorded. Your partner sees it.'));
  });
  return form;
}

/** Exporting the key (the current passphrase is asked again; the export is noted for both). */
export function keyCard() {
  const [cw, cur] = field('Your current passphrase', 'input', { type: 'password', autocomplete: 'current-password' },
    'Asked again, so that nobody can take a copy of your key from an unlocked screen.');
  const [pw, pass] = field('Passphrase for the exported file', 'input', { type: 'password', autocomplete: 'new-password' },
    'The file is encrypted with it; the troth command line and other browsers open it with the same passphrase.');
  passHint(pass, pw);
  const err = errorLine();
  const btn = h('button', { type: 'submit', class: 'secondary' }, 'Export my key');
  const form = h('form', { class: 'card stack', 'aria-labelledby': 'key-h' }, h('h2', { id: 'key-h' }, 'Your key'),
    h('p', { class: 'muted' }, 'Fingerprint: ', h('span', { 'data-testid': 'fingerprint' }, S.keys.fingerprint)),
    h('p', { class: 'muted' }, 'Each export is noted in your shared timeline, so your partner sees it.'), cw, pw, err, btn);
  const offline = "You seem to be offline. An export is noted for both of you before the file is made, so nothing was exported. Please try again when you're connected.";
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(btn, err, async () => {
      if (!navigator.onLine) throw new Error(offline);
      say('Checking your passphrase… this takes a moment.');
      await pause(30);
      // The stored key file must open with the passphrase typed now.
      let k;
      try {
        k = Keys.unlock(new TextEncoder().encode(await store.get('keyfile')), cur.value);
      } catch (x) { cur.select(); throw x; }
      const same = k.identityHex === S.keys.identityHex;
      k.free();
      if (!same) throw new Error("That passphrase doesn't open this key. Check it and try again.");
      checkPassphrase(pass.value);
      say('Encrypting your key… this takes a moment.');
      await pause(30);
      const file = S.keys.exportFile(pass.value);
      // Noted first, for both of you; only then the file is handed over.
      try {
        await send((now) => S.space.keyExported('a browser', now));
      } catch (x) { throw x instanceof Offline ? new Error(offline) : x; }
      download('troth-key.age', file, 'text/plain');
      cur.value = ''; pass.value = '';
      say('Exported. Your partner sees that you exported a copy of your key.');
    });
  });
  return form;
}

/** Choosing when this browser locks itself. */
export function lockCard() {
  const [lw, sel] = field('Lock this browser after', 'select', {}, 'Without a touch or a key press. Never longer than 30 minutes.');
  for (const m of [1, 2, 5, 10, 15, 30]) sel.append(h('option', { value: String(m * 60000) }, `${m} minute${m > 1 ? 's' : ''}`));
  sel.value = String(lockMs());
  sel.addEventListener('change', () => { localStorage.setItem('troth.autolock.ms', sel.value); touch(); say('Saved.'); });
  return h('section', { class: 'card stack', 'aria-labelledby': 'lk-h' }, h('h2', { id: 'lk-h' }, 'Locking'), lw);
}

/**
 * "This copy of Troth": the version and bundle hash of the code running now
 * (release.json, written by the build beside every file it lists) and the
 * origin it came from. The page cannot vouch for itself — a server that
 * changed the code could change this card too — so the card says how to
 * check from outside: `troth web verify`, or the hash published for the
 * version.
 */
export function codeCard() {
  const hash = h('p', { class: 'digits', 'data-testid': 'bundle-hash' }, '…');
  const ver = h('p', {}, `This copy of Troth came from ${location.origin}.`);
  const card = h('section', { class: 'card stack', 'aria-labelledby': 'code-h' }, h('h2', { id: 'code-h' }, 'This copy of Troth'),
    ver, hash,
    h('p', { class: 'muted' }, `To check that this is the code Troth published, and not a changed copy, run "troth web verify ${location.origin}" on a computer you trust, or compare the bundle above with the one published for this version.`));
  fetch('release.json', { cache: 'no-cache' }).then((r) => (r.ok ? r.json() : Promise.reject(new Error(String(r.status)))))
    .then((rel) => {
      ver.textContent = `Version ${rel.version}, from ${location.origin}.`;
      hash.textContent = `Bundle ${String(rel.bundle).match(/.{1,8}/g).join(' ')}`;
    })
    .catch(() => { hash.textContent = 'The bundle hash could not be read just now.'; });
  return card;
}

/** Asks before removing Troth from this browser only (nothing is sent). */
function askRemoveHere() {
  const err = errorLine();
  const yes = h('button', { type: 'button', class: 'gentle-stop' }, 'Remove from this device');
  const no = h('button', { type: 'button', class: 'secondary' }, 'Keep it');
  yes.addEventListener('click', () => act(yes, err, async () => {
    // Nothing is sent: the relay and the partner are not told.
    closeDialog();
    await store.clear();
    lock(false);
    showWelcome();
    say('Troth is removed from this browser. Nothing was sent.');
  }));
  no.addEventListener('click', closeDialog);
  openDialog('Remove Troth from this device?',
    h('p', {}, 'This removes your key and everything of your space from this browser only. Nothing is sent: your partner is not told, and the space stays on the server for them.'),
    h('p', {}, "Your partner's devices keep what they already have. You can pair again later with a new key, or restore yours from a backup."),
    h('p', { class: 'muted' }, 'If you might want your key later, export it first.'),
    err, h('div', { class: 'row' }, yes, no));
}

/** Asks before closing the space for both (a signed close, then the relay deletes it, then this browser forgets it). */
function askCloseForBoth() {
  const [cw, comment] = field('Anything you want to say (optional)', 'textarea', { rows: '2' });
  const err = errorLine();
  const yes = h('button', { type: 'button', class: 'gentle-stop' }, 'Close it for both of us');
  const no = h('button', { type: 'button', class: 'secondary' }, 'Stay');
  const still = (e) => (e instanceof RelayError && e.status === 404 ? null
    : new Error(`${e.message} The space is still here; you can try again, or use "Remove the key from this browser" on the unlock screen.`));
  yes.addEventListener('click', () => act(yes, err, async () => {
    // First a signed "closed the space" both of you see; then the relay
    // is asked to delete it (a space that vanishes without it is the
    // relay's doing, and is reported so).
    if (!S.gone && !S.space.state(Date.now(), 0).closed) {
      try { await send((now) => S.space.closeSpace(comment.value, now)); } catch (e) { if (still(e)) throw still(e); }
    }
    try { await S.api.remove(); } catch (e) { if (still(e)) throw still(e); }
    closeDialog();
    await store.clear();
    lock(false);
    showWelcome();
    say('You closed the space. Its keys are gone from this browser.');
  }));
  no.addEventListener('click', closeDialog);
  openDialog('Close our space for both of us?',
    h('p', {}, 'This notes for both of you that you closed the space, asks the server to delete it, and removes your key and everything of this space from this browser. Your partner will see that you closed it.'),
    h('p', {}, "Your partner's devices keep what they already have: closing can't take it back from them."),
    h('p', { class: 'muted' }, 'If you might want your key later, export it first.'),
    cw, err, h('div', { class: 'row' }, yes, no));
}

/** The two ways of leaving, each honest about what the partner's devices keep (issue 17). */
function leaveButtons() {
  const local = h('button', { type: 'button', class: 'secondary' }, 'Remove Troth from this device');
  local.addEventListener('click', askRemoveHere);
  const both = h('button', { type: 'button', class: 'gentle-stop' }, 'Close our space for both of us');
  both.addEventListener('click', askCloseForBoth);
  return h('div', { class: 'row' }, local, both);
}

const LEAVE_WORDS = 'You can leave at any time. Nobody needs to agree.';

/** Leaving, under Safety. */
export function leaveCard() {
  return h('section', { class: 'card stack', 'aria-labelledby': 'leave-h' }, h('h2', { id: 'leave-h' }, 'Leaving'),
    h('p', { class: 'muted' }, LEAVE_WORDS), leaveButtons());
}

// Leaving, from the header beside Quick exit (shown while a space is open):
// the same two choices, one tap away.
const leaveBtn = document.getElementById('leave');
leaveBtn.addEventListener('click', () => {
  const stay = h('button', { type: 'button', class: 'quiet' }, 'Not now');
  stay.addEventListener('click', closeDialog);
  openDialog('Leaving', h('p', {}, LEAVE_WORDS), leaveButtons(), h('div', { class: 'row' }, stay));
});
