// The timeline: everything, newest first, in core's words, with core's
// time notes under the events they concern.
import { me, who, tidy } from '../lib/state.js';
import { h, when } from '../lib/dom.js';
import { showEarlier } from './space.js';

/** The timeline list, newest first (the newest `S.show` entries), and "Show earlier". */
export function timeline(st) {
  const f = st.retention && st.retention.forgottenEpochs
    ? h('p', { class: 'muted', 'data-testid': 'forgotten-note' }, `Older events were forgotten as agreed (${st.retention.forgottenEvents} of them): they were kept for ${st.retention.days} days.`)
    : null;
  return [f, h('ol', { class: 'timeline' }, st.timeline.slice().reverse().map((t) =>
    h('li', {}, h('span', { class: 'who' }, who(t.by)), ` ${tidy(me(t.by) ? t.what.replace(/^exported a copy of their/, 'exported a copy of your') : t.what)} `,
      h('span', { class: 'muted' }, `· ${when(t.atMs)}`),
      // Core's time notes (dated before the event it follows, or ahead of this device's clock).
      st.notes.filter((n) => n.seq === t.seq).map((n) => h('p', { class: 'note' }, n.what))))),
  showEarlier(st.timeline.length, st.timelineTotal, 'Show earlier events')].filter(Boolean);
}
