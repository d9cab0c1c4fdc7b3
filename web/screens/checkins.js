// Check-ins: the form (a place only when chosen, each time), asking for a
// check-in or to see the phone, what was asked of this person, the list of
// check-ins with acknowledgements, and what waits to be sent.
import { S, PAGE, me, who } from '../lib/state.js';
import { h, field, checkbox, say, act, errorLine, when } from '../lib/dom.js';
import { sendOrKeep, saveLocal } from '../lib/intents.js';
import { refresh, showEarlier } from './space.js';

/** The check-in form (kept as an intent when offline). */
export function checkInForm() {
  const [tw, text] = field('Your check-in', 'textarea', { rows: '2', placeholder: 'At the gym until 7' },
    'Where you are, or anything you want your partner to know.');
  const [pc, attach] = checkbox('Attach a place this time');
  const [pw, place] = field('Place', 'input', { type: 'text', maxlength: '300' }, 'Only sent with this check-in, because you chose to.');
  pw.hidden = true;
  attach.addEventListener('change', () => { pw.hidden = !attach.checked; if (attach.checked) place.focus(); });
  const [aw, answers] = field('This answers', 'select', { id: 'answers' });
  answers.addEventListener('change', () => { answers.dataset.touched = '1'; });
  const err = errorLine();
  const btn = h('button', { type: 'submit' }, 'Send check-in');
  const form = h('form', { class: 'card stack', 'aria-labelledby': 'ci-h' }, h('h2', { id: 'ci-h' }, 'Check in'), tw, pc, pw, aw, err, btn);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    // What is sent is what the form held at "Send"; words typed while it
    // was on its way stay in the form.
    const sent = { text: text.value, place: attach.checked ? place.value : '' };
    act(btn, err, async () => {
      await sendOrKeep('checkIn', [sent.text, sent.place, answers.value || ''],
        `Check-in: ${sent.text}`, 'Check-in sent.');
      if (text.value === sent.text) text.value = '';
      if (place.value === sent.place) { place.value = ''; attach.checked = false; pw.hidden = true; }
      delete answers.dataset.touched;
      refresh();
    });
  });
  return form;
}

/** Fills the "This answers" choice with the partner's open requests. */
export function fillAnswers(sel, st) {
  const open = st.requests.filter((q) => !me(q.by) && q.open).slice(-S.asked);
  const cur = sel.value;
  sel.replaceChildren(h('option', { value: '' }, 'Nothing in particular'),
    ...open.map((q) => h('option', { value: q.hash }, `Your partner's request${q.note ? `: ${q.note}` : ''} (${when(q.atMs)})`)));
  if (sel.dataset.touched && [...sel.options].some((o) => o.value === cur)) sel.value = cur;
  else sel.value = open.length ? open[open.length - 1].hash : '';
  sel.parentElement.hidden = open.length === 0;
}

/** Asking the partner for a check-in or to see the phone. */
export function askForm() {
  const [nw, note] = field('A note (optional)', 'input', { type: 'text', placeholder: 'Could you let me know where you are?' });
  const err = errorLine();
  const ask = h('button', { type: 'button' }, 'Ask for a check-in');
  ask.addEventListener('click', () => {
    const sent = note.value;
    act(ask, err, async () => {
      await sendOrKeep('requestCheckIn', [sent], sent ? `Ask for a check-in: ${sent}` : 'Ask for a check-in',
        'Asked. Your partner sees your request.');
      if (note.value === sent) note.value = '';
    });
  });
  const phone = h('button', { type: 'button', class: 'secondary' }, 'Ask to see the phone');
  phone.addEventListener('click', () => {
    const sent = note.value;
    act(phone, err, async () => {
      await sendOrKeep('phone', ['asked', sent], 'Ask to see the phone', 'Asked. The request is noted for both of you.');
      if (note.value === sent) note.value = '';
    });
  });
  return h('section', { class: 'card stack', 'aria-labelledby': 'ask-h' }, h('h2', { id: 'ask-h' }, 'Ask your partner'),
    h('p', { class: 'muted' }, 'Every request is shown to your partner; nothing is watched in secret.'), nw, err, h('div', { class: 'row' }, ask, phone));
}

/** Answers that are not compliance: normal answers, shown calmly, never failures. */
const ANSWERS = [
  ['talk', 'Not now — can we talk about it?'],
  ['therapist', "Let's bring this to our therapist"],
  ['not-comfortable', "I'm not comfortable with this"],
];

function answerButtons(hash, err) {
  return ANSWERS.map(([kind, words]) => {
    const b = h('button', { type: 'button', class: 'quiet' }, words);
    b.addEventListener('click', () => act(b, err, () => sendOrKeep('answer', [hash, kind, ''], words, 'Answered. Your partner sees your answer.')));
    return b;
  });
}

/** Where a request stands, in neutral words. */
function requestState(q, answeredWord) {
  if (q.outside) return `outside what you agreed (${q.outside}) · no answer needed`;
  if (q.answer) return `answered: “${q.answer}”`;
  return answeredWord;
}

/** What the partner asked of this person, newest first, with a way to answer. */
export function askedOfMe(st) {
  const reqs = st.requests.filter((q) => !me(q.by));
  const phones = st.phone.filter((p) => p.action === 'asked' && !me(p.by));
  if (!reqs.length && !phones.length) return [];
  const items = [
    ...reqs.map((q) => {
      const li = h('li', {}, h('span', { class: 'who' }, 'Your partner'), ` asked for a check-in${q.note ? `: “${q.note}”` : ''} · `,
        h('span', { class: 'muted' }, when(q.atMs)), ' · ', q.open ? h('strong', {}, 'waiting for your check-in') : requestState(q, 'answered'));
      if (q.open) {
        const err = errorLine();
        li.append(h('div', { class: 'row' }, ...answerButtons(q.hash, err)), err);
      }
      return { at: q.atMs, el: li };
    }),
    ...phones.map((p) => {
      const answered = p.answer || p.outside || st.phone.some((x) => x.seq > p.seq && me(x.by) && x.action !== 'asked');
      const li = h('li', {}, h('span', { class: 'who' }, 'Your partner'), ` asked to see your phone${p.note ? `: “${p.note}”` : ''} · `, h('span', { class: 'muted' }, when(p.atMs)));
      if (p.answer || p.outside) li.append(` · ${requestState(p, 'answered')}`);
      else if (!answered) {
        const err = errorLine();
        const show = h('button', { type: 'button', class: 'secondary' }, 'I showed it');
        show.addEventListener('click', () => act(show, err, () => sendOrKeep('phone', ['granted', ''], 'I showed the phone', 'Noted.')));
        const later = h('button', { type: 'button', class: 'quiet' }, 'Later, please');
        later.addEventListener('click', () => act(later, err, () => sendOrKeep('phone', ['declined', 'later, please'], 'Later, please', 'Noted.')));
        li.append(h('div', { class: 'row' }, show, later, ...answerButtons(p.hash, err)), err);
      } else li.append(' · answered');
      return { at: p.atMs, el: li };
    }),
  ].sort((x, y) => y.at - x.at);
  // The newest few, like every list here: what is drawn follows the screen.
  const more = items.length > S.asked || st.requests.length < st.requestsTotal || st.phone.length < st.phoneTotal;
  const earlier = more ? h('button', { type: 'button', class: 'quiet' }, 'Show earlier requests') : null;
  if (earlier) earlier.addEventListener('click', () => { S.asked += PAGE; S.show = Math.max(S.show, S.asked); refresh(); });
  return [h('section', { class: 'card warm stack', 'aria-labelledby': 'asked-h' }, h('h2', { id: 'asked-h' }, 'Asked of you'),
    h('ol', { class: 'timeline' }, items.slice(0, S.asked).map((i) => i.el)), earlier)];
}

function myRequests(st) {
  const mine = [
    ...st.requests.filter((q) => me(q.by)).map((q) => ({ at: q.atMs, what: `You asked for a check-in${q.note ? `: “${q.note}”` : ''}`,
      state: requestState(q, q.answeredBy !== null ? 'answered' : 'not answered yet') })),
    ...st.phone.filter((p) => me(p.by) && p.action === 'asked').map((p) => ({ at: p.atMs, what: `You asked to see the phone${p.note ? `: “${p.note}”` : ''}`,
      state: requestState(p, st.phone.some((x) => x.seq > p.seq && !me(x.by) && x.action !== 'asked') ? 'answered' : 'not answered yet') })),
  ].sort((x, y) => y.at - x.at);
  if (!mine.length) return [];
  return [h('details', {}, h('summary', {}, `What you asked (${mine.length})`),
    h('ol', { class: 'timeline' }, mine.map((m) => h('li', {}, m.what, ' ', h('span', { class: 'muted' }, `· ${when(m.at)} · ${m.state}`)))))];
}

/** The check-ins, newest first, with acknowledgements. */
export function checkinList(st) {
  if (!st.checkins.length) return [h('p', { class: 'muted' }, 'No check-ins yet.'), ...myRequests(st)];
  return [h('h2', {}, 'Check-ins'), ...myRequests(st), h('ol', { class: 'timeline', 'aria-label': 'Check-ins, newest first' },
    st.checkins.slice().reverse().map((c) => {
      const li = h('li', {}, h('span', { class: 'who' }, who(c.by)), ': ', c.text,
        c.place ? h('span', {}, ` — at ${c.place}`) : null, ' ', h('span', { class: 'muted' }, `· ${when(c.atMs)}`));
      if (c.ackedAt !== null) li.append(h('span', { class: 'muted' }, ' · acknowledged'));
      else if (!me(c.by)) {
        const ack = h('button', { type: 'button', class: 'secondary' }, 'Acknowledge');
        ack.setAttribute('aria-label', `Acknowledge the check-in “${c.text}”`);
        ack.addEventListener('click', () => act(ack, null, () => sendOrKeep('ack', [c.hash], `Acknowledge “${c.text}”`, 'Acknowledged. Thank you.')));
        li.append(' ', ack);
      }
      return li;
    })), showEarlier(st.checkins.length, st.checkinsTotal, 'Show earlier check-ins')].filter(Boolean);
}

/** What waits to be sent, each with "Don't send". */
export function intentCards() {
  if (!S.intents.length) return [];
  return [h('section', { class: 'card stack', 'aria-labelledby': 'wait-h', 'data-testid': 'waiting' },
    h('h2', { id: 'wait-h' }, 'Waiting to send'),
    h('p', { class: 'muted' }, "Kept on this device while you're offline. Each is sent as you see it here once you're connected."),
    h('ul', { class: 'stack' }, S.intents.map((it) => {
      const cancel = h('button', { type: 'button', class: 'quiet' }, `Don't send “${it.what}”`);
      cancel.addEventListener('click', async () => {
        S.intents = S.intents.filter((x) => x !== it);
        await saveLocal();
        refresh();
        say('It will not be sent.');
      });
      return h('li', {}, h('p', {}, it.what, ' ', h('span', { class: 'muted' }, `(${when(it.at)})`)),
        it.error ? h('p', { class: 'muted' }, `Not sent: ${it.error}`) : null, cancel);
    })))];
}
