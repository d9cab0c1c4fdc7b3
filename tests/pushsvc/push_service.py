"""A loopback Web Push service for the relay's push tests (issue 16).

It plays both a browser vendor's push service and the browser behind it,
with code nobody in this project wrote: py_vapid checks the VAPID token's
ES256 signature (RFC 8292), http_ece decrypts the aes128gcm body (RFC 8291)
with the "browser's" P-256 key and auth secret. It checks the token's
audience (this service's origin) and expiry (in the future, at most 24 h).

Control (JSON over HTTP on the same port):
  POST /new                 -> {"endpoint", "p256dh", "auth", "id"}: a new subscription
  POST /status/<id>/<code>  -> push answers for <id> are <code> from now on
  POST /delay/<id>/<ms>     -> push answers for <id> wait <ms> first
  GET  /log                 -> every push received: {"id", "ok", "why", "plaintext" (base64), "aud", "exp", "sub", "at"}
The push itself: POST /push/<id>.

Prints "listening on <port>" once ready. Run with the venv `cargo xtask setup` makes.
"""

import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

LOCK = threading.Lock()
SUBS = {}  # id -> {"key": private key, "auth": bytes, "status": int}
LOG = []


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, code, obj=None):
        body = json.dumps(obj).encode() if obj is not None else b""
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def origin(self):
        return "http://" + self.headers.get("Host", "")

    def do_GET(self):
        if self.path == "/log":
            with LOCK:
                return self.answer(200, LOG)
        self.answer(404, {"error": "no such path"})

    def do_POST(self):
        parts = self.path.strip("/").split("/")
        if parts == ["new"]:
            self.body()
            key = ec.generate_private_key(ec.SECP256R1())
            auth = os.urandom(16)
            sid = b64u(os.urandom(9))
            with LOCK:
                SUBS[sid] = {"key": key, "auth": auth, "status": 201, "delay": 0}
            pub = key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            return self.answer(
                200,
                {
                    "id": sid,
                    "endpoint": self.origin() + "/push/" + sid,
                    "p256dh": b64u(pub),
                    "auth": b64u(auth),
                },
            )
        if len(parts) == 3 and parts[0] == "status":
            self.body()
            with LOCK:
                if parts[1] in SUBS:
                    SUBS[parts[1]]["status"] = int(parts[2])
            return self.answer(200, {})
        if len(parts) == 3 and parts[0] == "delay":
            self.body()
            with LOCK:
                if parts[1] in SUBS:
                    SUBS[parts[1]]["delay"] = int(parts[2])
            return self.answer(200, {})
        if len(parts) == 2 and parts[0] == "push":
            return self.push(parts[1], self.body())
        self.answer(404, {"error": "no such path"})

    def push(self, sid, body):
        entry = {"id": sid, "ok": False, "why": "", "at": time.time()}
        with LOCK:
            sub = SUBS.get(sid)
        status = sub["status"] if sub else 404
        try:
            if sub is None:
                raise ValueError("unknown subscription")
            if self.headers.get("Content-Encoding") != "aes128gcm":
                raise ValueError("Content-Encoding is not aes128gcm")
            if not self.headers.get("TTL"):
                raise ValueError("no TTL header")
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("vapid "):
                raise ValueError("no vapid authorization")
            params = {}
            for tok in auth[len("vapid ") :].split(","):
                k, _, v = tok.strip().partition("=")
                params[k] = v
            # py_vapid's own parser wants "t=…,k=…" without spaces.
            if not Vapid02.verify("vapid t=%s,k=%s" % (params["t"], params["k"])):
                raise ValueError("VAPID signature does not verify")
            header, claims, _ = params["t"].split(".")
            header = json.loads(unb64u(header))
            claims = json.loads(unb64u(claims))
            if header.get("alg") != "ES256":
                raise ValueError("alg is not ES256")
            now = time.time()
            if claims.get("aud") != self.origin():
                raise ValueError("aud %r is not %r" % (claims.get("aud"), self.origin()))
            if not (now < claims.get("exp", 0) <= now + 24 * 3600):
                raise ValueError("exp out of range")
            entry.update(aud=claims.get("aud"), exp=claims.get("exp"), sub=claims.get("sub"))
            plain = http_ece.decrypt(
                body, private_key=sub["key"], auth_secret=sub["auth"], version="aes128gcm"
            )
            entry["plaintext"] = base64.b64encode(plain).decode()
            entry["size"] = len(body)
            entry["ok"] = True
        except Exception as e:  # noqa: BLE001 - every failure is recorded for the test
            entry["why"] = "%s: %s" % (type(e).__name__, e)
            status = 400 if sub is not None else 404
        with LOCK:
            LOG.append(entry)
        if sub is not None and sub.get("delay"):
            time.sleep(sub["delay"] / 1000)
        self.answer(status, {})


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client closing an idle keep-alive connection is not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main():
    server = Server(("127.0.0.1", 0), Handler)
    print("listening on %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
