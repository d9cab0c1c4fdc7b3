// A relay that lies: an HTTP + WebSocket proxy in front of the real relay.
// Each lie is switched on in `state`:
//   tamper   flips one byte inside every event it forwards (paged reads and live frames);
//   headNull answers paged reads with `head: null` (claims the space is empty);
//   withhold answers paged reads with no events under the real (higher) head,
//            and drops live events;
//   gone     answers 404 for the space and refuses its live connection, as if
//            the space had been deleted (without anyone closing it);
//   dropAnswers  passes the next N appends (or retries of one) to the relay,
//            which handles them, then cuts the connection instead of
//            answering (answers lost in transit; counts itself down).
// The client must notice each (and must not post a lost answer's event twice).
import http from 'node:http';
import net from 'node:net';

function flip(b64) {
  const buf = Buffer.from(b64, 'base64');
  if (buf.length > 40) buf[buf.length - 40] ^= 0x01; // inside the signature or ciphertext
  return buf.toString('base64');
}

function rewrite(json) {
  if (json && Array.isArray(json.events)) json.events = json.events.map(flip);
  if (json && typeof json.event === 'string') json.event = flip(json.event);
  return json;
}

/** Encodes one unmasked server-to-client text frame. */
function frame(text) {
  const payload = Buffer.from(text);
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x81, n])
    : n < 65536 ? Buffer.from([0x81, 126, n >> 8, n & 255])
      : Buffer.concat([Buffer.from([0x81, 127, 0, 0, 0, 0]), Buffer.from([n >>> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255])]);
  return Buffer.concat([head, payload]);
}

/** Parses server frames (unmasked) from a buffer; returns [frames, rest]. */
function parse(buf) {
  const out = [];
  for (;;) {
    if (buf.length < 2) break;
    let len = buf[1] & 127;
    let off = 2;
    if (len === 126) { if (buf.length < 4) break; len = buf.readUInt16BE(2); off = 4; }
    else if (len === 127) { if (buf.length < 10) break; len = Number(buf.readBigUInt64BE(2)); off = 10; }
    if (buf.length < off + len) break;
    out.push({ op: buf[0] & 15, raw: buf.subarray(0, off + len), payload: buf.subarray(off, off + len) });
    buf = buf.subarray(off + len);
  }
  return [out, buf];
}

export function startTamperProxy(target) {
  const t = new URL(target);
  const state = { tamper: false, headNull: false, withhold: false, gone: false, dropAnswers: 0 };
  const server = http.createServer((req, res) => {
    if (state.gone && /^\/v1\/spaces\/[0-9a-f]+/.test(req.url)) {
      req.resume();
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'no_space', message: 'This relay has no such space. It may have been deleted.' }));
      return;
    }
    const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url,
      headers: { ...req.headers, host: t.host, 'accept-encoding': 'identity' } }, (r) => {
      const chunks = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => {
        if (state.dropAnswers > 0 && req.method === 'POST' && /\/events$/.test(req.url)) {
          state.dropAnswers -= 1;
          req.socket.destroy();
          return;
        }
        let body = Buffer.concat(chunks);
        const headers = { ...r.headers };
        const lying = state.tamper || state.headNull || state.withhold;
        if (lying && /\/events/.test(req.url) && req.method === 'GET' && r.statusCode === 200) {
          const json = JSON.parse(body.toString());
          if (state.tamper) rewrite(json);
          if (state.headNull) json.head = null;
          if (state.withhold) { json.events = []; json.more = false; }
          body = Buffer.from(JSON.stringify(json));
          headers['content-length'] = String(body.length);
        }
        res.writeHead(r.statusCode, headers);
        res.end(body);
      });
    });
    req.pipe(up);
    up.on('error', () => { res.writeHead(502); res.end(); });
  });
  server.on('upgrade', (req, sock, head) => {
    if (state.gone) { sock.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n'); return; }
    const up = net.connect(Number(t.port), t.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const k = req.rawHeaders[i];
        lines.push(`${k}: ${k.toLowerCase() === 'host' ? t.host : req.rawHeaders[i + 1]}`);
      }
      up.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length) up.write(head);
      sock.pipe(up);
      let handshake = true;
      let pending = Buffer.alloc(0);
      up.on('data', (d) => {
        if (handshake) {
          const i = d.indexOf('\r\n\r\n');
          if (i < 0) { sock.write(d); return; }
          sock.write(d.subarray(0, i + 4));
          handshake = false;
          d = d.subarray(i + 4);
        }
        pending = Buffer.concat([pending, d]);
        const [frames, rest] = parse(pending);
        pending = rest;
        for (const f of frames) {
          if ((state.tamper || state.withhold) && f.op === 1) {
            let j;
            try { j = JSON.parse(f.payload.toString()); } catch { j = null; }
            if (j && j.event && state.withhold) continue;
            if (j && j.event) { sock.write(frame(JSON.stringify(rewrite(j)))); continue; }
          }
          sock.write(f.raw);
        }
      });
    });
    up.on('error', () => sock.destroy());
    sock.on('error', () => up.destroy());
    up.on('close', () => sock.destroy());
    sock.on('close', () => up.destroy());
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    resolve({ url: `http://127.0.0.1:${server.address().port}`, state, close: () => server.close() });
  }));
}
