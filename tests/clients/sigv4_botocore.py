"""Signs requests to Keyport with botocore's SigV4Auth and SigV4QueryAuth,
as AWS SDK users do, and sends them with requests (tests/api/sigv4.rs).

Reads KEYPORT_BASE_URL, KEYPORT_ACCESS_KEY, KEYPORT_SECRET_KEY,
KEYPORT_REGION and KEYPORT_SERVICE from the environment; prints one JSON
object, {check: [status, expected]}, on its last line. Never prints the
secret.
"""

import json
import os
import sys
from urllib.parse import quote

import requests
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

BASE = os.environ["KEYPORT_BASE_URL"].rstrip("/")
REGION = os.environ["KEYPORT_REGION"]
SERVICE = os.environ["KEYPORT_SERVICE"]
CREDENTIALS = Credentials(os.environ["KEYPORT_ACCESS_KEY"], os.environ["KEYPORT_SECRET_KEY"])
WRONG = Credentials(os.environ["KEYPORT_ACCESS_KEY"], "kps_not_the_secret")


def send(method, path, body=None, headers=None, credentials=CREDENTIALS):
    request = AWSRequest(method=method, url=BASE + path, data=body, headers=headers or {})
    SigV4Auth(credentials, SERVICE, REGION).add_auth(request)
    prepared = request.prepare()
    return requests.request(
        method, prepared.url, headers=dict(prepared.headers), data=prepared.body, timeout=30
    )


def presigned(path, expires=300):
    request = AWSRequest(method="GET", url=BASE + path)
    SigV4QueryAuth(CREDENTIALS, SERVICE, REGION, expires=expires).add_auth(request)
    return requests.get(request.url, timeout=30)


checks = {}
failures = []


def check(name, response, expected, predicate=None):
    checks[name] = [response.status_code, expected]
    ok = response.status_code == expected and (predicate is None or predicate(response.json()))
    if not ok:
        failures.append(f"{name}: {response.status_code} {response.text[:600]}")
        checks[name] = [response.status_code, f"{expected} and its body"]


who = send("GET", "/api/v1/whoami")
check("GET whoami", who, 200, lambda b: b["credential"] == "sigv4")

# A body, with its SHA-256 in the canonical request (botocore also sends
# X-Amz-Content-Sha256 only for S3; Keyport hashes the body it received).
marker = "botocore café / ünïcode & more"
pushed = send(
    "POST",
    "/api/v1/webhooks/invoices",
    body=json.dumps({"marker": marker}).encode(),
    headers={"Content-Type": "application/json"},
)
check("POST push with a body", pushed, 201)

# A query that needs encoding: botocore signs the URL's query as given,
# sorted, so it is written encoded (RFC 3986, %20 for a space).
label = quote("env=prod & eu/1", safe="")
listed = send("GET", f"/api/v1/keys?label={label}")
check("GET with an encoded query", listed, 200, lambda b: b["keys"] == [])

page = send("GET", "/api/v1/reports/invoices?limit=10")
check(
    "GET the pushed record",
    page,
    200,
    lambda b: b["records"][0]["data"]["marker"] == marker,
)

# A POST without a body: roll the key itself (the answer is its successor).
# With an explicit X-Amz-Content-Sha256 too, which Keyport checks and signs.
keys = send("GET", "/api/v1/keys").json()["keys"]
other = [k for k in keys if k["client_id"] != os.environ["KEYPORT_ACCESS_KEY"]][0]
disabled = send("POST", f"/api/v1/keys/{other['id']}/disable")
check("POST without a body", disabled, 200, lambda b: b["status"] == "disabled")
request = AWSRequest(
    method="POST",
    url=f"{BASE}/api/v1/keys/{other['id']}/enable",
    headers={"X-Amz-Content-Sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
)
SigV4Auth(CREDENTIALS, SERVICE, REGION).add_auth(request)
prepared = request.prepare()
enabled = requests.post(prepared.url, headers=dict(prepared.headers), timeout=30)
check("POST with X-Amz-Content-Sha256", enabled, 200, lambda b: b["status"] == "active")

check("presigned GET", presigned("/api/v1/whoami"), 200, lambda b: b["credential"] == "sigv4")
check(
    "presigned GET with its own query",
    presigned(f"/api/v1/reports/invoices?limit=1"),
    200,
    lambda b: len(b["records"]) == 1,
)

wrong = send("GET", "/api/v1/whoami", credentials=WRONG)
check(
    "a wrong secret",
    wrong,
    401,
    lambda b: b["error"] == "signature_mismatch" and b["canonical_request"].startswith("GET\n"),
)

# A push with an Idempotency-Key: botocore signs every header it sends but
# a few hop-by-hop ones, so the key is signed (Keyport refuses an unsigned
# one). The same prepared request sent again is refused: a signed write is
# accepted once. A retry signed again (botocore signs each attempt anew and
# numbers it in the signed amz-sdk-request header) with the same key
# answers the original response and stores nothing new.
def signed_push(attempt):
    request = AWSRequest(
        method="POST",
        url=f"{BASE}/api/v1/webhooks/retried",
        data=json.dumps({"invoice": 7}).encode(),
        headers={
            "Content-Type": "application/json",
            "Idempotency-Key": "invoice-7",
            "amz-sdk-request": f"attempt={attempt}; max=3",
        },
    )
    SigV4Auth(CREDENTIALS, SERVICE, REGION).add_auth(request)
    return request.prepare()


def send_prepared(prepared):
    return requests.post(prepared.url, headers=dict(prepared.headers), data=prepared.body, timeout=30)


first_attempt = signed_push(1)
signed_names = first_attempt.headers["Authorization"].split("SignedHeaders=")[1].split(",")[0]
stored = send_prepared(first_attempt)
check(
    "POST with a signed Idempotency-Key",
    stored,
    201,
    lambda b: "idempotency-key" in signed_names.split(";") and b["count"] == 1,
)
check(
    "the same signed POST sent again",
    send_prepared(first_attempt),
    401,
    lambda b: b["error"] == "signature_replayed",
)
retried = send_prepared(signed_push(2))
check(
    "a retry signed again with the same Idempotency-Key",
    retried,
    201,
    lambda b: retried.headers.get("Idempotent-Replayed") == "true" and b["ids"] == stored.json()["ids"],
)
check(
    "the retried push stored once",
    send("GET", "/api/v1/reports/retried?limit=10"),
    200,
    lambda b: len(b["records"]) == 1,
)

for failure in failures:
    print(failure, file=sys.stderr)
print(json.dumps(checks))
