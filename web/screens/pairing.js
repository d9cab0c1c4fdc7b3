// Pairing: starting a space and showing the one-time code (with its QR
// code), joining with a code, SPAKE2 over the relay's mailbox, and the
// safety number both partners compare.
import { Space, PairingSession, checkCode } from '../troth_wasm.js';
import { spaceApi, rendezvous, relayUrl } from '../lib/api.js';
import { S } from '../lib/state.js';
import { h, field, say, act, errorLine, screen } from '../lib/dom.js';
import { persist } from '../lib/vault.js';
import { connectLive, sync } from '../lib/sync.js';
import { showSpace } from './space.js';

/** The screen for starting a space or joining with a code. */
export function showStart() {
  const lead = h('button', { type: 'button' }, 'Start our space and get a code');
  const err = errorLine();
  lead.addEventListener('click', () => act(lead, err, startSpace));
  const [cw, code] = field('The code your partner shows you', 'input',
    { type: 'text', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', placeholder: '7-crystal-orbit' },
    'A number and two words, like 7-crystal-orbit.');
  const join = h('button', { type: 'submit', class: 'secondary' }, 'Join with this code');
  const err2 = errorLine();
  const form = h('form', { class: 'card stack', 'aria-labelledby': 'join-h' },
    h('h2', { id: 'join-h' }, 'My partner gave me a code'),
    h('p', {}, 'Your partner sets out what they need; you will see every condition and sign only what you agree to.'),
    cw, err2, join);
  form.addEventListener('submit', (e) => { e.preventDefault(); act(join, err2, () => joinSpace(code.value)); });
  screen('Connect with your partner',
    h('p', {}, 'One of you starts a shared space and gets a short one-time code; the other types it in. It takes about a minute.'),
    h('p', { class: 'muted' }, 'Your key\'s fingerprint: ', h('span', { 'data-testid': 'fingerprint' }, S.keys.fingerprint)),
    whereFrom(),
    h('div', { class: 'two' },
      h('section', { class: 'card stack', 'aria-labelledby': 'lead-h' },
        h('h2', { id: 'lead-h' }, 'I was hurt, and I want to set the conditions'),
        h('p', {}, "You're in the driver's seat: you propose the agreements, and nothing is in force until you both sign it."),
        err, lead),
      form));
}

/** Which relay this is, and who served this copy of the app: both partners see it while pairing. */
function whereFrom() {
  const same = relayUrl() === location.origin;
  return h('p', { class: 'muted', 'data-testid': 'where-from' }, same
    ? `You're using the relay at ${relayUrl()}, which also served this copy of Troth.`
    : `You're using the relay at ${relayUrl()}. This copy of Troth came from ${location.origin}.`);
}

async function startSpace() {
  const space = Space.create(S.keys, Date.now());
  const api = spaceApi(space);
  await api.create(space.eventsFrom(0)[0]);
  S.space = space;
  S.api = api;
  S.meta = { compared: false };
  S.saved = 0;
  await persist();
  connectLive();
  await invite();
}

/** The creator's side: open a mailbox, show the code, run the pairing. */
export async function invite() {
  const box = await rendezvous.open();
  const session = PairingSession.create(S.keys, S.space, box.mailbox);
  const run = { stop: false, box, session };
  S.pairing = run;
  const qr = h('div', { class: 'qr' });
  qr.innerHTML = session.codeSvg(); // SVG drawn by our own wasm from the code
  const waiting = h('p', { class: 'muted', role: 'status' }, 'Waiting for your partner to type the code…');
  const err = errorLine();
  const cancel = h('button', { type: 'button', class: 'secondary' }, 'Stop and go back');
  cancel.addEventListener('click', () => { run.stop = true; rendezvous.close(box.mailbox, box.token); showSpace(); });
  const codeCard = h('section', { class: 'card stack', 'aria-labelledby': 'code-h' },
      h('h2', { id: 'code-h', class: 'visually-hidden' }, 'Code'),
      h('p', {}, 'Show this to your partner, or read it out. They type it in Troth on their phone.'),
      h('p', { class: 'code', 'data-testid': 'pairing-code' }, session.code),
      qr,
      h('p', { class: 'muted' }, 'It works once, for the next 10 minutes. If someone else tries it, it stops working and you both will see that.'));
  screen('Your one-time code', codeCard, waiting, err, cancel);
  try {
    await exchange(run, box.mailbox, box.token, session.takeFirstMessage());
    if (run.stop) return;
    const ev = S.space.admitPartner(session, Date.now());
    await S.api.append(ev);
    S.space.ingest([ev]);
    await persist();
    rendezvous.close(box.mailbox, box.token);
    session.free();
    S.pairing = null;
    showSafety();
  } catch (e) {
    if (run.stop) return;
    rendezvous.close(box.mailbox, box.token);
    waiting.textContent = '';
    codeCard.replaceChildren(h('h2', { id: 'code-h' }, 'This code no longer works'),
      h('p', {}, 'Nothing was shared with anyone. You can make a new code when you are both ready.'));
    err.textContent = e.message;
    const again = h('button', { type: 'button' }, 'Start again with a new code');
    again.addEventListener('click', () => act(again, err, invite));
    cancel.before(again);
  }
}

/** Posts our messages and feeds theirs to the state machine until paired. */
async function exchange(run, n, token, first) {
  await rendezvous.post(n, token, first);
  let after = 0;
  const deadline = Date.now() + 10 * 60 * 1000;
  while (!run.session.isPaired) {
    if (run.stop) return;
    if (Date.now() > deadline) throw new Error('This code has expired. Start again for a new code.');
    const r = await rendezvous.get(n, token, after, 20);
    after = r.next;
    for (const m of r.messages) {
      const out = run.session.receive(m);
      if (out) await rendezvous.post(n, token, out);
      if (run.session.isPaired) break;
    }
    // The other device stopped, and what it left did not finish pairing.
    if (r.closed && !run.session.isPaired) {
      throw new Error('The pairing ended on the other device. Start again with a new code when you are both ready.');
    }
  }
}

async function joinSpace(typed) {
  const mailbox = checkCode(typed);
  const session = PairingSession.join(S.keys, typed);
  const run = { stop: false, session };
  S.pairing = run;
  say('Connecting with your partner…');
  const claim = await rendezvous.claim(mailbox);
  try {
    await exchange(run, mailbox, claim.token, session.takeFirstMessage());
  } catch (e) {
    rendezvous.close(mailbox, claim.token);
    throw e;
  }
  // Done on this side; the creator can still read our last message.
  rendezvous.close(mailbox, claim.token);
  const space = Space.fromPairing(S.keys, session);
  session.free();
  S.pairing = null;
  S.space = space;
  S.api = spaceApi(space);
  S.meta = { compared: false };
  S.saved = 0;
  await persist();
  connectLive();
  sync();
  showSafety();
}

/** The safety number both partners compare, right after pairing. */
export function showSafety() {
  const sn = S.space.safetyNumber;
  const yes = h('button', { type: 'button' }, 'They match — we compared them');
  const later = h('button', { type: 'button', class: 'secondary' }, "We'll compare later");
  yes.addEventListener('click', async () => { S.meta.compared = true; await persist(); say('Thank you. Marked as compared.'); showSpace(); });
  later.addEventListener('click', () => showSpace());
  screen("You're connected",
    h('section', { class: 'card stack', 'aria-labelledby': 'sn-h' },
      h('h2', { id: 'sn-h' }, 'Your safety number'),
      h('p', { class: 'digits', 'data-testid': 'safety-number' }, sn || '—'),
      h('p', {}, 'Your partner sees the same number. When you are together, read them side by side. If they match, nobody is standing between the two of you.'),
      h('p', { class: 'muted' }, "If they don't match, please don't go on: leave this space (under Safety) and pair again side by side.")),
    h('div', { class: 'row' }, yes, later));
}
