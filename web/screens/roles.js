// Who sets the conditions: after pairing, both partners confirm it on their
// own screens before anything can be proposed; either can answer "No — we
// should talk about this first" (issue 17). Core's fold enforces it; this
// card only offers it.
import { S, me } from '../lib/state.js';
import { h, field, act, errorLine } from '../lib/dom.js';
import { send } from '../lib/sync.js';

const DECLINE = 'No — we should talk about this first';

/** In Safety, once both confirmed: ending the roles takes both of you. */
export function endRolesCard(st) {
  if (!st.roles.agreed) return [];
  const mine = st.roles.endRequestedBy.some((r) => me(r));
  const theirs = st.roles.endRequestedBy.some((r) => !me(r));
  const kids = [h('h2', { id: 'end-roles-h' }, 'Ending the roles'),
    h('p', { class: 'muted' }, 'When you both feel it is time, you can end the roles: then nobody sets the conditions, and nothing new can be proposed unless you both confirm roles again. Agreements in force stay until they are withdrawn, retired or reach their review date.')];
  if (theirs) kids.push(h('p', {}, 'Your partner asked to end the roles.'));
  if (mine) kids.push(h('p', {}, 'You asked to end the roles. They end once your partner asks too.'));
  else {
    const err = errorLine();
    const b = h('button', { type: 'button', class: 'secondary' }, 'Ask to end the roles');
    b.addEventListener('click', () => act(b, err, () => send((now) => S.space.endRoles(now), 'Asked. The roles end once you have both asked.')));
    kids.push(err, b);
  }
  return [h('section', { class: 'card stack', 'aria-labelledby': 'end-roles-h', 'data-testid': 'end-roles' }, ...kids)];
}

/** The roles card, while both have not confirmed (nothing otherwise). */
export function rolesCards(st) {
  if (!st.partnerJoined || st.roles.agreed) return [];
  const mine = st.roles.confirmedBy.some((r) => me(r));
  const theirs = st.roles.confirmedBy.some((r) => !me(r));
  const lead = st.role === 'leading';
  const kids = [
    h('h2', { id: 'roles-h' }, 'Who sets the conditions'),
    st.roles.ended ? h('p', {}, 'You have both ended the roles: nobody sets the conditions now. To propose something new, you both confirm roles again.') : null,
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
