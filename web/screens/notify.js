// Safety tab: notifications on this device (opt-in, quiet hours, a
// plainer title) and review dates for the person's own calendar.
import { S } from '../lib/state.js';
import { h, field, checkbox, say, act, errorLine, download } from '../lib/dom.js';
import { prefs, supported, turnOn, turnOff, title, setTitle, TITLES, reviewCalendar } from '../lib/push.js';

/** The notifications card. */
export function notifyCard() {
  const p = prefs();
  const state = h('p', { 'data-testid': 'push-state' },
    p.on ? 'Notifications are on for this device.' : 'Notifications are off for this device.');
  const [qw, quietOn] = checkbox('Hold notifications during quiet hours');
  const [fw, from] = field('Quiet from', 'input', { type: 'time', value: (p.quiet && p.quiet.from) || '22:00' });
  const [tw, to] = field('Quiet until', 'input', { type: 'time', value: (p.quiet && p.quiet.to) || '07:00' });
  quietOn.checked = Boolean(p.quiet);
  const times = h('div', { class: 'row' }, fw, tw);
  // (.row's display would win over the hidden attribute.)
  const showTimes = () => { times.style.display = quietOn.checked ? '' : 'none'; };
  showTimes();
  quietOn.addEventListener('change', showTimes);
  const [plainW, plain] = checkbox(`Use a plainer title: “${TITLES[1]}”, without the app's name`);
  title().then((t) => { plain.checked = t === TITLES[1]; }).catch(() => {});
  plain.addEventListener('change', () => {
    setTitle(plain.checked ? TITLES[1] : TITLES[0]).then(() => say('Saved.'), () => say("That couldn't be saved just now."));
  });
  const err = errorLine();
  const on = h('button', { type: 'button' }, p.on ? 'Save these settings' : 'Turn on notifications on this device');
  const off = h('button', { type: 'button', class: 'secondary', hidden: !p.on }, 'Turn notifications off');
  on.addEventListener('click', () => act(on, err, async () => {
    await turnOn(quietOn.checked ? { from: from.value, to: to.value } : null);
    state.textContent = 'Notifications are on for this device.';
    on.textContent = 'Save these settings';
    off.hidden = false;
    say(`Notifications are on. They will only ever say “${plain.checked ? TITLES[1] : TITLES[0]}”.`);
  }));
  off.addEventListener('click', () => act(off, err, async () => {
    await turnOff();
    state.textContent = 'Notifications are off for this device.';
    on.textContent = 'Turn on notifications on this device';
    off.hidden = true;
    say('Notifications are off for this device.');
  }));
  return h('section', { class: 'card stack', 'aria-labelledby': 'push-h' }, h('h2', { id: 'push-h' }, 'Notifications'),
    h('p', {}, `If you like, this device can tell you when your partner adds something — a check-in, a request, a signature. The notification only ever says “${TITLES[0]}”: never words, names or places, so nothing private shows on a lock screen.`),
    h('p', { class: 'muted' }, "To deliver it, the server hands an encrypted, empty note to your browser maker's push service (Google, Mozilla, Apple or Microsoft). That service learns that something happened, and when — never what. Your partner isn't told whether you turned this on, or when your quiet hours are. You can turn it off at any time."),
    supported() ? null : h('p', { class: 'muted' }, "This browser can't show notifications from Troth."),
    state, qw, times, plainW, err, h('div', { class: 'row' }, on, off));
}

/** "Add review dates to my calendar": an .ics made on this device. */
export function calendarCard() {
  const err = errorLine();
  const btn = h('button', { type: 'button', class: 'secondary' }, 'Add review dates to my calendar');
  btn.addEventListener('click', () => act(btn, err, () => {
    const { text, count } = reviewCalendar(S.space.state(Date.now()));
    if (!count) throw new Error('There are no review dates yet. They appear once an agreement is proposed.');
    download('review-dates.ics', text, 'text/calendar');
    say(`Downloaded ${count} review date${count > 1 ? 's' : ''}. Open the file to add ${count > 1 ? 'them' : 'it'} to your calendar.`);
  }));
  return h('section', { class: 'card stack', 'aria-labelledby': 'cal-h' }, h('h2', { id: 'cal-h' }, 'Review dates'),
    h('p', { class: 'muted' }, 'A calendar file made here, on this device: each entry just says “Review day”. The server never learns your dates. Anyone who can see your calendar sees those entries.'),
    err, btn);
}
