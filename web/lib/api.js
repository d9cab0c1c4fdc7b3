// The relay's API: the space's events (signed by the device), the live
// connection's address and first frame, and the rendezvous mailboxes used
// for pairing. Everything it returns is untrusted until core verifies it.

/** An error from the relay, with its kind words. */
export class RelayError extends Error {
  constructor(status, body) {
    super((body && body.message) || `The relay answered ${status}.`);
    this.status = status;
    this.code = body && body.error;
    this.head = body && body.head;
  }
}

/** Thrown when the network is down: the action was not sent. */
export class Offline extends Error {
  constructor() {
    super("You seem to be offline, so this wasn't sent. Nothing is lost: try again when you're connected.");
    this.offline = true;
  }
}

const enc = new TextEncoder();

// The relay this copy of Troth talks to: the origin it was loaded from,
// unless the page that serves it says otherwise (`troth web serve` answers
// /troth-config.json with the relay its user chose).
let relay = location.origin;

/** Sets the relay's address (`https://relay.example.org`, no trailing slash). */
export function setRelay(url) {
  relay = String(url).replace(/\/+$/, '');
}

/** The relay's address, as the app uses it. */
export function relayUrl() {
  return relay;
}

/** Reads /troth-config.json if the server offers one (a copy served apart from the relay). */
export async function loadConfig() {
  try {
    const res = await fetch('troth-config.json', { cache: 'no-store' });
    if (!res.ok) return;
    const cfg = await res.json();
    if (cfg && typeof cfg.relay === 'string' && /^https?:\/\/[^\s/?#]+/.test(cfg.relay)) setRelay(cfg.relay);
  } catch { /* served by the relay itself */ }
}

async function call(method, path, { body, sign, query = '' } = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  const bytes = enc.encode(text);
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (sign) Object.assign(headers, sign(method, path + query, bytes));
  let res;
  try {
    res = await fetch(relay + path + query, { method, headers, body: body === undefined ? undefined : text, cache: 'no-store' });
  } catch {
    throw new Offline();
  }
  let json = null;
  if (res.status !== 204) {
    try { json = await res.json(); } catch { json = null; }
  }
  if (!res.ok) throw new RelayError(res.status, json);
  return json;
}

/** The relay API for one space, signing with the space handle. */
export function spaceApi(space) {
  const sign = (m, p, b) => space.signRequest(m, p, b, Date.now());
  const base = `/v1/spaces/${space.id}`;
  return {
    create: (genesis) => call('POST', '/v1/spaces', { body: { genesis }, sign }),
    append: (event) => call('POST', `${base}/events`, { body: { event }, sign }),
    read: (from) => call('GET', `${base}/events`, { query: `?from=${from}&limit=1000`, sign }),
    remove: () => call('DELETE', base, { sign }),
    // Notifications: this device's push subscription and quiet hours (signed; docs/RELAY.md).
    pushOn: (registration) => call('POST', `${base}/push`, { body: registration, sign }),
    pushOff: () => call('DELETE', `${base}/push`, { sign }),
    liveUrl: () => `${relay.replace(/^http/, 'ws')}${base}/live`,
    liveAuth: () => {
      const h = space.signRequest('GET', `${base}/live`, new Uint8Array(), Date.now());
      return JSON.stringify({
        device: h['troth-device'], time: Number(h['troth-time']),
        nonce: h['troth-nonce'], signature: h['troth-signature'],
      });
    },
  };
}

/** The operator's help words per language (`{help: [{lang, words, links}]}`). */
export const helpWords = () => call('GET', '/v1/help');

/** The relay's VAPID public key (base64url), for subscribing to notifications. */
export const pushKey = () => call('GET', '/v1/push/key');

/** The rendezvous mailbox API used for pairing. */
export const rendezvous = {
  open: () => call('POST', '/v1/rendezvous'),
  claim: (n) => call('POST', `/v1/rendezvous/${n}/claim`),
  post: (n, token, msg) => call('POST', `/v1/rendezvous/${n}/messages`, { body: { token, body: msg } }),
  get: (n, token, after, wait) => call('GET', `/v1/rendezvous/${n}/messages`,
    { query: `?token=${encodeURIComponent(token)}&after=${after}&wait=${wait}` }),
  close: (n, token) => call('DELETE', `/v1/rendezvous/${n}`, { query: `?token=${encodeURIComponent(token)}` }).catch(() => {}),
};
