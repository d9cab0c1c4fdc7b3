// Who sets the conditions: after pairing, both partners confirm it on their
// own screens before anything can be proposed; either can answer "No — we
// should talk about this first" (issue 17). Core's fold enforces it; this
// card only offers it.
import { S, me } from '../lib/state.js';
import { h, field, act, errorLine } from '../lib/dom.js';
import { send } from '../lib/sync.js';

const DECLINE = 'No — we should talk about this first';

/** The roles card, while both have not confirmed (nothing otherwise). */
export function rolesCards(st) {
  if (!st.partnerJoined || st.roles.agreed) return [];
  const mine = st.roles.confirmedBy.some((r) => me(r));
  const theirs = st.roles.confirmedBy.some((r) => !me(r));
  const lead = st.role === 'leading';
  const kids = [
    h('h2', { id: 'roles-h' }, 'Who sets the conditions'),
    h('p', {}, lead
      ? 'You set the conditions for now, and your partner is rebuilding trust.'
      : 'Your partner sets the conditions for now, and you are rebuilding trust.'),
    h('p', { class: 'muted' }, 'You both confirm this, each on your own device, before anything is proposed. Either of you can withdraw from any agreement at any time, alone.'),
    h('p', { 'data-testid': 'roles-status' }, `Confirmed by you: ${mine ? 'yes' : 'not yet'} · by your partner: ${theirs ? 'yes' : 'not yet'}`),
  ];
  const d = st.roles.declined;
  if (d) {
    kids.push(h('p', {}, `${me(d.by) ? 'You' : 'Your partner'} answered “${DECLINE}”${d.comment ? `: “${d.comment}”` : ''}. Take the time you need to talk.`));
  }
  if (!mine) {
    const err = errorLine();
    const yes = h('button', { type: 'button' }, "Yes, that's right");
    yes.addEventListener('click', () => act(yes, err, () => send((now) => S.space.confirmRoles(now), 'Confirmed. Your partner sees it.')));
    const [cw, comment] = field('A few words for your partner (optional)', 'input', { type: 'text', maxlength: '400' });
    const no = h('button', { type: 'button', class: 'secondary' }, DECLINE);
    no.addEventListener('click', () => act(no, err, () => send((now) => S.space.declineRoles(comment.value, now),
      'Your partner sees your answer. Nothing can be proposed until you both confirm.')));
    kids.push(cw, err, h('div', { class: 'row' }, yes, no));
  }
  return [h('section', { class: 'card warm stack', 'aria-labelledby': 'roles-h', 'data-testid': 'roles' }, ...kids)];
}
