// Who sets the conditions: after pairing, both partners confirm it on their
// own screens before anything can be proposed; either can answer "No — we
// should talk about this first", or propose it the other way round. Later,
// either can ask to swap or end the roles; each takes both (issue 17).
// Core's fold enforces it; these cards only offer it.
import { S, me } from '../lib/state.js';
import { h, field, act, errorLine } from '../lib/dom.js';
import { send } from '../lib/sync.js';

const DECLINE = 'No — we should talk about this first';

const SWAP_WORDS = 'Every agreement in force stays as you both signed it: each rule keeps asking the same person. Either of you can still withdraw from any agreement at any time, alone.';

/** Where the roles stand, in words to this device's person. */
function standing(st) {
  return st.roles.sets === st.role
    ? 'You set the conditions for now, and your partner is rebuilding trust.'
    : 'Your partner sets the conditions for now, and you are rebuilding trust.';
}

/** In Safety, once both confirmed: swapping or ending the roles takes both of you. */
export function endRolesCard(st) {
  if (!st.roles.agreed) return [];
  const mineEnd = st.roles.endRequestedBy.some((r) => me(r));
  const theirsEnd = st.roles.endRequestedBy.some((r) => !me(r));
  const mineSwap = st.roles.swapRequestedBy.some((r) => me(r));
  const kids = [h('h2', { id: 'end-roles-h' }, 'Changing the roles'),
    h('p', { 'data-testid': 'roles-now' }, standing(st)),
    h('p', { class: 'muted' }, `When you both feel it is time, you can swap the roles, or end them: then nobody sets the conditions, and nothing new can be proposed unless you both confirm roles again. Each takes both of you. ${SWAP_WORDS}`)];
  if (theirsEnd) kids.push(h('p', {}, 'Your partner asked to end the roles.'));
  const err = errorLine();
  const row = h('div', { class: 'row' });
  if (mineSwap) kids.push(h('p', {}, 'You asked to swap the roles. They swap once your partner agrees; until then nothing changes.'));
  else if (!st.roles.swapRequestedBy.length) {
    const b = h('button', { type: 'button', class: 'secondary' }, 'Ask to swap the roles');
    b.addEventListener('click', () => act(b, err, () => send((now) => S.space.swapRoles(now), 'Asked. The roles swap once your partner agrees.')));
    row.append(b);
  }
  if (mineEnd) kids.push(h('p', {}, 'You asked to end the roles. They end once your partner asks too.'));
  else {
    const b = h('button', { type: 'button', class: 'secondary' }, 'Ask to end the roles');
    b.addEventListener('click', () => act(b, err, () => send((now) => S.space.endRoles(now), 'Asked. The roles end once you have both asked.')));
    row.append(b);
  }
  kids.push(err, row);
  return [h('section', { class: 'card stack', 'aria-labelledby': 'end-roles-h', 'data-testid': 'end-roles' }, ...kids)];
}

/** Yes / "talk first" buttons, and a few optional words with the second. */
function answer(yesWords, yes, said) {
  const err = errorLine();
  const y = h('button', { type: 'button' }, yesWords);
  y.addEventListener('click', () => act(y, err, () => send(yes, said)));
  const [cw, comment] = field('A few words for your partner (optional)', 'input', { type: 'text', maxlength: '400' });
  const no = h('button', { type: 'button', class: 'secondary' }, DECLINE);
  no.addEventListener('click', () => act(no, err, () => send((now) => S.space.declineRoles(comment.value, now),
    'Your partner sees your answer. Take the time you need to talk.')));
  return [cw, err, h('div', { class: 'row' }, y, no)];
}

/** Over every tab: the partner asked to swap the roles (it takes both). */
function swapAskedCard(st) {
  if (!st.roles.agreed || !st.roles.swapRequestedBy.some((r) => !me(r))) return [];
  const after = st.roles.sets === st.role
    ? 'your partner would set the conditions, and you would be rebuilding trust'
    : 'you would set the conditions, and your partner would be rebuilding trust';
  return [h('section', { class: 'card warm stack', 'aria-labelledby': 'swap-h', 'data-testid': 'roles-swap' },
    h('h2', { id: 'swap-h' }, 'Your partner asked to swap the roles'),
    h('p', {}, `If you both agree, ${after}. ${SWAP_WORDS}`),
    h('p', { class: 'muted' }, 'Nothing changes unless you agree too. There is no hurry.'),
    ...answer('Yes, swap them', (now) => S.space.swapRoles(now), 'Agreed. The roles are swapped for both of you.'))];
}

/** The roles cards: while both have not confirmed, or while a swap is asked. */
export function rolesCards(st) {
  if (!st.partnerJoined) return [];
  if (st.roles.agreed) return swapAskedCard(st);
  const mine = st.roles.confirmedBy.some((r) => me(r));
  const theirs = st.roles.confirmedBy.some((r) => !me(r));
  const kids = [
    h('h2', { id: 'roles-h' }, 'Who sets the conditions'),
    st.roles.ended ? h('p', {}, 'You have both ended the roles: nobody sets the conditions now. To propose something new, you both confirm roles again.') : null,
    h('p', { 'data-testid': 'roles-proposed' }, standing(st)),
    h('p', { class: 'muted' }, 'You both confirm this, each on your own device, before anything is proposed. If it should be the other way round, say so: then it is that your partner confirms. Either of you can withdraw from any agreement at any time, alone.'),
    h('p', { 'data-testid': 'roles-status' }, `Confirmed by you: ${mine ? 'yes' : 'not yet'} · by your partner: ${theirs ? 'yes' : 'not yet'}`),
  ];
  const d = st.roles.declined;
  if (d) {
    kids.push(h('p', {}, `${me(d.by) ? 'You' : 'Your partner'} answered “${DECLINE}”${d.comment ? `: “${d.comment}”` : ''}. Take the time you need to talk.`));
  }
  if (!mine) {
    kids.push(...answer("Yes, that's right", (now) => S.space.confirmRoles(now), 'Confirmed. Your partner sees it.'));
  }
  const err = errorLine();
  const flip = h('button', { type: 'button', class: 'quiet' }, 'It should be the other way round');
  flip.addEventListener('click', () => act(flip, err, () => send((now) => S.space.swapRoles(now),
    'Proposed the other way round. Nothing can be proposed until your partner confirms it too.')));
  kids.push(err, flip);
  return [h('section', { class: 'card warm stack', 'aria-labelledby': 'roles-h', 'data-testid': 'roles' }, ...kids)];
}
