// Agreements: the cards (every signed field of each rule, each version's
// status), signing, asking for a change, withdrawing, retiring, the review
// dialog, drafts and the editor.
import { templates, dayPlus } from '../troth_wasm.js';
import { S, me, who, roleWords, asRoles } from '../lib/state.js';
import { h, field, nextId, say, act, errorLine, openDialog, closeDialog } from '../lib/dom.js';
import { send } from '../lib/sync.js';
import { saveLocal } from '../lib/intents.js';
import { refresh } from './space.js';
import { privateMoment } from './moment.js';

function statusWords(a, v) {
  switch (v.statusToday || v.status) {
    case 'in-force': return 'In force — both of you signed these exact words';
    case 'lapsed': return 'Lapsed — look at it together: the review date passed without you both renewing it';
    case 'pending':
      if (v.signedBy.includes(S.space.role)) return 'Waiting for your partner to sign';
      return 'Waiting for your signature';
    case 'withdrawn': return a.withdrawn ? `${who(a.withdrawn.by)} withdrew consent` : 'Consent withdrawn';
    case 'retired': return 'Retired together';
    case 'declined': return 'Not agreed for now';
    default: return 'Replaced by a later version';
  }
}

const KINDS = { whereabouts: 'knowing where you are', phone: 'phone access', bed: 'sharing the bed', 'no-contact': 'no contact',
  therapy: 'therapy', honesty: 'honesty', other: 'other' };
/** Every signed field of a rule: what it asks of whom, its kind and its details. */
function ruleMeta(r) {
  return h('span', { class: 'muted rule-meta' }, `Asks this of ${me(r.asksOf) ? 'you' : 'your partner'} · kind: ${KINDS[r.category] || r.category}`,
    r.params.map(([k, val]) => ` · ${k}: ${val}`).join(''),
    (r.limits?.words || []).map((w) => ` · limit on asking: ${w}`).join(''));
}

function rulesList(v) {
  return h('ul', { class: 'rules' }, v.rules.map((r) => h('li', {}, r.text, ruleMeta(r))));
}

/** One card per agreement. */
export function agreementCards(st) {
  if (!st.agreements.length) {
    return [h('p', { class: 'card calm' }, st.roles.sets === st.role
      ? 'No agreements yet. When you are ready, propose one — start from a template and change the words to fit you both.'
      : 'No agreements yet. When your partner proposes one, it appears here for you to read and sign — or to ask for a change.')];
  }
  return st.agreements.map((a) => {
    const inForce = a.inForce ? a.versions[a.inForce - 1] : null;
    const pending = a.pending ? a.versions[a.pending - 1] : null;
    const shown = inForce || pending || a.versions[a.versions.length - 1];
    const card = h('article', { class: 'card stack', 'aria-labelledby': `ag-${a.id}`, 'data-id': a.id });
    card.append(h('h3', { id: `ag-${a.id}` }, shown.title),
      h('p', {}, h('span', { class: `badge ${shown.statusToday || shown.status}` }, statusWords(a, shown)), ' ',
        h('span', { class: 'muted' }, `Version ${shown.version} · review on ${shown.reviewOn}`)),
      rulesList(shown));
    if (shown.status === 'withdrawn' && a.withdrawn && a.withdrawn.comment) {
      card.append(h('p', { class: 'muted' }, `${who(a.withdrawn.by)} said: “${a.withdrawn.comment}”`));
    }
    if (inForce && pending) {
      card.append(h('div', { class: 'card warm stack' },
        h('p', {}, h('strong', {}, `A new version (${pending.version}) is waiting. `), statusWords(a, pending)),
        rulesList(pending), ...pendingActions(a, pending)));
    } else if (pending) {
      card.append(...pendingActions(a, pending));
    }
    if (inForce) card.append(inForceActions(a, inForce));
    if (a.retireRequests.length === 1 && !inForce?.status?.startsWith('retired')) {
      card.append(h('p', { class: 'muted' }, `${who(a.retireRequests[0])} asked to retire this. It is retired once you both have.`));
    }
    card.append(h('details', {}, h('summary', {}, `All versions (${a.versions.length})`),
      a.versions.slice().reverse().map((v) => h('div', { class: 'card' },
        h('p', {}, h('strong', {}, `Version ${v.version}: ${v.title}`), ' ', h('span', { class: `badge ${v.status}` }, statusWords(a, v))),
        h('p', { class: 'muted' }, `Proposed by ${who(v.proposedBy).toLowerCase()} · signed by ${v.signedBy.length ? v.signedBy.map((r) => who(r).toLowerCase()).join(' and ') : 'nobody yet'} · review on ${v.reviewOn}`),
        rulesList(v),
        v.changeRequests.map((c) => h('p', { class: 'muted' }, `${who(c.by)} asked for a change: “${c.comment}”`))))));
    return card;
  });
}

function pendingActions(a, v) {
  const out = [];
  for (const c of v.changeRequests) out.push(h('p', { class: 'card calm' }, `${who(c.by)} asked for a change: “${c.comment}”`));
  const err = errorLine();
  if (!v.signedBy.includes(S.space.role)) {
    const sign = h('button', { type: 'button' }, 'Sign these words');
    sign.addEventListener('click', () => privateMoment(v.rules, () => act(sign, err, async () => {
      await send((now) => S.space.cosign(a.id, v.version, now));
      const now = S.space.state(Date.now(), 0).agreements.find((x) => x.id === a.id);
      say(now && now.inForce === v.version ? 'Signed by both of you. It is now in force.'
        : 'Signed. It comes into force once your partner signs too.');
    })));
    const change = h('button', { type: 'button', class: 'secondary' }, 'Ask for a change');
    change.addEventListener('click', () => askChange(a, v));
    out.push(h('div', { class: 'row' }, sign, change));
  } else {
    out.push(h('p', { class: 'muted' }, 'You signed this version. Your partner can sign it or ask for a change.'));
  }
  const edit = h('button', { type: 'button', class: 'quiet' }, 'Propose different words');
  edit.addEventListener('click', () => editor(v, a.id));
  out.push(h('div', { class: 'row' }, edit), err);
  return out;
}

function inForceActions(a, v) {
  const err = errorLine();
  const withdraw = h('button', { type: 'button', class: 'gentle-stop' }, 'Withdraw my consent');
  withdraw.addEventListener('click', () => confirmWithdraw(a, v));
  const amend = h('button', { type: 'button', class: 'secondary' }, 'Suggest a change');
  amend.addEventListener('click', () => editor(v, a.id));
  const retire = h('button', { type: 'button', class: 'quiet' }, 'Retire together');
  retire.addEventListener('click', () => act(retire, err, () => send((now) => S.space.retire(a.id, now),
    'Asked to retire. It is retired once you both have.')));
  if (a.retireRequests.includes(S.space.role)) retire.disabled = true;
  return h('div', { class: 'stack' }, h('div', { class: 'row' }, withdraw, amend, retire), err);
}

function confirmWithdraw(a, v) {
  const [cw, comment] = field('Anything you want to say (optional)', 'textarea', { rows: '2' });
  const err = errorLine();
  const yes = h('button', { type: 'button', class: 'gentle-stop' }, 'Withdraw consent');
  const no = h('button', { type: 'button', class: 'secondary' }, 'Not now');
  yes.addEventListener('click', () => act(yes, err, async () => {
    await send((now) => S.space.withdraw(a.id, comment.value, now), 'Your consent is withdrawn. Your partner will see it.');
    closeDialog();
  }));
  no.addEventListener('click', closeDialog);
  openDialog(`Withdraw consent from “${v.title}”?`,
    h('p', {}, 'You can do this at any time, on your own. It is recorded and shown to you both; the agreement is no longer in force. You can always agree on new words later.'),
    cw, err, h('div', { class: 'row' }, yes, no));
  yes.focus();
}

function askChange(a, v) {
  const [cw, comment] = field('What would you like to change?', 'textarea', { rows: '3' },
    'Your partner sees your words next to the proposal.');
  const err = errorLine();
  const ok = h('button', { type: 'button' }, 'Send my request');
  const no = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
  ok.addEventListener('click', () => act(ok, err, async () => {
    if (!comment.value.trim()) throw new Error('Please say what you would like to change.');
    await send((now) => S.space.requestChange(a.id, v.version, comment.value, now), 'Your request was sent.');
    closeDialog();
  }));
  no.addEventListener('click', closeDialog);
  openDialog(`Ask for a change to “${v.title}”`, cw, err, h('div', { class: 'row' }, ok, no));
}

/** The review dialog for an agreement whose review date has come. */
export function review(a) {
  const v = a.versions[a.inForce - 1];
  const [dw, date] = field('Next review date', 'input', { type: 'date', value: dayPlus(Date.now(), 30), min: dayPlus(Date.now(), 1) });
  const err = errorLine();
  const renew = h('button', { type: 'button' }, 'Renew these words');
  renew.addEventListener('click', () => act(renew, err, async () => {
    const draft = { title: v.title, rules: v.rules, reviewOn: date.value };
    await send((now) => S.space.propose(draft, a.id, now), 'Proposed to renew. It is in force again once you both sign.');
    closeDialog();
  }));
  const change = h('button', { type: 'button', class: 'secondary' }, 'Change the words');
  change.addEventListener('click', () => { closeDialog(); editor(v, a.id); });
  const retire = h('button', { type: 'button', class: 'secondary' }, 'Retire it');
  retire.addEventListener('click', () => act(retire, err, async () => {
    await send((now) => S.space.retire(a.id, now), 'Asked to retire. It is retired once you both have.');
    closeDialog();
  }));
  const no = h('button', { type: 'button', class: 'quiet' }, 'Later');
  no.addEventListener('click', closeDialog);
  openDialog(`Review “${v.title}”`, h('p', {}, 'Decide together: keep these words for another while, change them, or let this agreement go.'),
    rulesList(v), dw, err, h('div', { class: 'row' }, renew, change, retire, no));
}

/** The drafts kept on this device. */
export function draftCards() {
  return S.drafts.map((d, i) => {
    const open = h('button', { type: 'button', class: 'secondary' }, 'Continue');
    open.addEventListener('click', () => { S.drafts.splice(i, 1); saveLocal(); editor(d, d.amends, d); refresh(); });
    const drop = h('button', { type: 'button', class: 'quiet' }, 'Discard');
    drop.addEventListener('click', () => { S.drafts.splice(i, 1); saveLocal(); refresh(); });
    return h('div', { class: 'card' }, h('p', {}, h('span', { class: 'badge' }, 'Draft'), ' ', d.title || '(no title yet)'),
      h('p', { class: 'muted' }, 'Only on this screen until you lock; not sent.'), h('div', { class: 'row' }, open, drop));
  });
}

/** The agreement editor: from a template, an existing version (amend), or a draft. */
export function editor(from, amends, draft) {
  const tpl = templates();
  const rulesBox = h('div', { class: 'stack' });
  const [tw, title] = field('Title', 'input', { type: 'text', maxlength: '200' });
  const [dw, date] = field('Review date', 'input', { type: 'date', min: dayPlus(Date.now(), 1) },
    'Every agreement has a date when you look at it again together.');
  date.value = (draft && draft.reviewOn) || dayPlus(Date.now(), 30);
  let rules = [];
  const drawRules = () => {
    rulesBox.replaceChildren(...rules.map((r, i) => {
      const [rw, text] = field(`Rule ${i + 1} in your words`, 'textarea', { rows: '3' });
      text.value = r.text;
      text.addEventListener('input', () => { r.text = text.value; });
      const [sw, sel] = field('This asks something of', 'select');
      // A role names a person: label each by who they are and their role now.
      sel.append(...[asRoles('rebuilding'), asRoles('leading')].map((role) =>
        h('option', { value: role }, `${me(role) ? 'you' : 'your partner'}, ${roleWords(role)}`)));
      sel.value = r.asksOf || asRoles('rebuilding');
      sel.addEventListener('change', () => { r.asksOf = sel.value; });
      // The details are signed too: each is shown and can be changed.
      const ps = r.params.map((p) => {
        const [pw, pin] = field(`Rule ${i + 1}: ${p[0]}`, 'input', { type: 'text', value: p[1] });
        pin.addEventListener('input', () => { p[1] = pin.value; });
        return pw;
      });
      const rm = h('button', { type: 'button', class: 'quiet' }, `Remove rule ${i + 1}`);
      rm.addEventListener('click', () => { rules.splice(i, 1); drawRules(); });
      return h('div', { class: 'card' }, rw, h('p', { class: 'muted' }, `Kind: ${KINDS[r.category] || r.category}`), sw, ps, rules.length > 1 ? rm : null);
    }));
  };
  // Templates name 'leading' for whoever sets the conditions: as the roles stand now.
  const fromTpl = (t) => ({ ...t, rules: t.rules.map((r) => ({ ...r, asksOf: asRoles(r.asksOf) })) });
  const use = (t) => {
    title.value = t.title;
    rules = t.rules.map((r) => ({ ...r, params: r.params.map((p) => p.slice()) }));
    drawRules();
  };
  let chooser = null;
  if (!from) {
    const name = `tpl${nextId()}`;
    chooser = h('fieldset', { class: 'stack' }, h('legend', {}, 'Start from'),
      tpl.map((t, i) => {
        const id = `${name}-${i}`;
        const r = h('input', { type: 'radio', name, id, value: t.name, checked: i === 0 });
        r.addEventListener('change', () => use(fromTpl(t)));
        return h('label', { class: 'inline', for: id }, r, t.title);
      }),
      (() => {
        const id = `${name}-blank`;
        const r = h('input', { type: 'radio', name, id, value: '' });
        r.addEventListener('change', () => use({ title: '', rules: [{ text: '', category: 'other', asksOf: asRoles('rebuilding'), params: [] }] }));
        return h('label', { class: 'inline', for: id }, r, 'My own words');
      })());
    use(fromTpl(tpl[0]));
  } else {
    use(from);
  }
  const addRule = h('button', { type: 'button', class: 'quiet' }, 'Add a rule');
  addRule.addEventListener('click', () => { rules.push({ text: '', category: 'other', asksOf: asRoles('rebuilding'), params: [] }); drawRules(); });
  const err = errorLine();
  const propose = h('button', { type: 'button' }, 'Propose to my partner');
  propose.addEventListener('click', () => act(propose, err, async () => {
    const d = { title: title.value, rules, reviewOn: date.value };
    await send((now) => S.space.propose(d, amends, now), 'Proposed. Your partner can now read it and sign, or ask for a change.');
    closeDialog();
  }));
  const keep = h('button', { type: 'button', class: 'secondary' }, 'Keep as a draft');
  keep.addEventListener('click', () => {
    S.drafts.push({ title: title.value, rules, reviewOn: date.value, amends });
    saveLocal();
    closeDialog();
    refresh();
  });
  const cancel = h('button', { type: 'button', class: 'quiet' }, 'Cancel');
  cancel.addEventListener('click', closeDialog);
  openDialog(amends ? `New version of “${from.title}”` : 'Propose an agreement',
    h('p', { class: 'muted' }, 'Nothing is in force until you have both signed the same words.'),
    chooser, tw, rulesBox, addRule, dw, err, h('div', { class: 'row' }, propose, keep, cancel));
}
