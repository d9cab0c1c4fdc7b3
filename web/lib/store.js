// Local storage (IndexedDB). The key file is passphrase-protected; every
// other record is sealed in wasm under a key derived from it (docs/WEB.md,
// and lib/vault.js), so this file only moves opaque strings.

const DB = 'troth';
const STORE = 'kv';

function db() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function tx(mode, fn) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const t = d.transaction(STORE, mode);
    const s = t.objectStore(STORE);
    const r = fn(s);
    t.oncomplete = () => { d.close(); resolve(r && 'result' in r ? r.result : undefined); };
    t.onerror = () => { d.close(); reject(t.error); };
    t.onabort = () => { d.close(); reject(t.error); };
  });
}

/** The `kv` store of the `troth` IndexedDB database. */
export const store = {
  get: (k) => tx('readonly', (s) => s.get(k)),
  set: (k, v) => tx('readwrite', (s) => s.put(v, k)),
  del: (k) => tx('readwrite', (s) => s.delete(k)),
  clear: () => tx('readwrite', (s) => s.clear()),
  /** Writes `v` at `k` only while the record `other` is there (one transaction: a space removed meanwhile stays removed). */
  setIf: (k, v, other) => tx('readwrite', (s) => { const g = s.get(other); g.onsuccess = () => { if (g.result !== undefined) s.put(v, k); }; }),
  /** Writes several [key, value] pairs in one transaction (all or nothing). */
  putAll: (pairs) => tx('readwrite', (s) => { for (const [k, v] of pairs) s.put(v, k); }),
  /** Removes the space's records (the key file stays). */
  delSpace: () => tx('readwrite', (s) => { s.delete('space'); s.delete('local'); s.delete('snap'); s.delete(IDBKeyRange.bound(['ev', 0], ['ev', Infinity])); }),
  /** The stored events `from` ≤ seq < `to`, in order (keys ['ev', seq]). */
  events: (from = 0, to = Infinity) => tx('readonly', (s) => s.getAll(IDBKeyRange.bound(['ev', from], ['ev', to], false, true))),
};
