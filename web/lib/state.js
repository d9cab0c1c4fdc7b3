// The session's state, in one place that every screen reads (the truth is
// never kept a second time in the DOM), and a tiny event hub through which
// the lower layers (sync, intents) tell the screens that something changed
// without importing them.

/** How many more check-ins and timeline entries each "Show earlier" draws. */
export const PAGE = 50;

/** How many requests "Asked of you" draws at first (more on "Show earlier requests"). */
export const ASKED = 10;

/** Session state: dropped on lock (`resetSession`). */
export let S = fresh();

function fresh() {
  return { keys: null, therapist: null, space: null, api: null, meta: null, ws: null, tab: 'agreements', drafts: [], intents: [],
    online: false, syncing: false, again: false, backoff: 1000, pairing: null, gone: false, timers: [], pushResumed: false,
    show: PAGE, asked: ASKED, sets: 'leading' };
}

/** Starts a new, empty session (after locking). */
export function resetSession() {
  S = fresh();
}

const handlers = new Map();

/**
 * Listens for a change: `'refresh'` (the space's state or what is kept on
 * this device changed: redraw what depends on it), `'online'` (the
 * connection came or went).
 */
export function on(name, fn) {
  if (!handlers.has(name)) handlers.set(name, []);
  handlers.get(name).push(fn);
}

/** Tells every listener of `name`. */
export function emit(name, ...args) {
  for (const fn of handlers.get(name) || []) fn(...args);
}

/** Whether `role` is this device's person. */
export function me(role) { return role === S.space.role; }
/** The other partner's role. */
export function other(role) { return role === 'leading' ? 'rebuilding' : 'leading'; }
/**
 * A role (which names a person for the life of the space) in words, as the
 * roles stand now: `S.sets` is who sets the conditions ('leading' until the
 * partners swap roles; `refresh` keeps it from core's state).
 */
export function roleWords(role) { return role === S.sets ? 'the partner who sets the conditions' : 'the partner rebuilding trust'; }
/** Templates name 'leading' for whoever sets the conditions: the role that means now. */
export function asRoles(role) { return S.sets === 'leading' ? role : other(role); }
/** Core's timeline words end in ": " when someone left no comment. */
export function tidy(what) { return what.replace(/:\s*$/, ''); }
/** "You" or "Your partner". */
export function who(role) { return me(role) ? 'You' : 'Your partner'; }
