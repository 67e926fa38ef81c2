"""A webhook receiver for tests/api/signed_webhooks.rs: a real HTTP server that
verifies every delivery with the `standardwebhooks` library, given only the
`whsec_...` key(s) Keyport showed at key creation.

    webhook_receiver.py DIR WHSEC [WHSEC...]

Prints `listening on port N`, then for each POST appends one JSON line to
DIR/deliveries.jsonl: the headers, the body, whether it verified with each key,
and whether a tampered body, a stale timestamp and a stranger's key were all
refused by the library. Answers with the status in DIR/status (default 200),
after waiting DIR/delay seconds (default 0); DIR/location, when present,
makes it answer 302 to that location instead.
"""
import base64
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

DIR = sys.argv[1]
KEYS = sys.argv[2:]
STRANGER = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def refused(key, body, headers):
    try:
        Webhook(key).verify(body, headers)
    except WebhookVerificationError:
        return True
    return False


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        started_at = time.time()
        delay_file = os.path.join(DIR, "delay")
        if os.path.exists(delay_file):
            time.sleep(float(open(delay_file).read().strip() or "0"))
        body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified = []
        for key in KEYS:
            try:
                Webhook(key).verify(body, headers)
                verified.append(True)
            except WebhookVerificationError:
                verified.append(False)
        stale = dict(headers)
        stale["webhook-timestamp"] = str(int(headers.get("webhook-timestamp", "0")) - 600)
        record = {
            "id": headers.get("webhook-id"),
            "timestamp": headers.get("webhook-timestamp"),
            "signature": headers.get("webhook-signature"),
            "traceparent": headers.get("traceparent"),
            "body": body,
            "verified": verified,
            "tampered_refused": refused(KEYS[0], body + " ", headers),
            "stale_refused": refused(KEYS[0], body, stale),
            "stranger_refused": refused(STRANGER, body, headers),
            "started_at": started_at,
            "received_at": time.time(),
        }
        with open(os.path.join(DIR, "deliveries.jsonl"), "a") as out:
            out.write(json.dumps(record) + "\n")
        location_file = os.path.join(DIR, "location")
        if os.path.exists(location_file):
            self.send_response(302)
            self.send_header("Location", open(location_file).read().strip())
            self.end_headers()
            return
        status_file = os.path.join(DIR, "status")
        status = int(open(status_file).read().strip()) if os.path.exists(status_file) else 200
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.end_headers()
        self.wfile.write(f"answered {status}".encode())

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"listening on port {server.server_address[1]}", flush=True)
server.serve_forever()
