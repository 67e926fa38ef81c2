"""Signs `GET /api/v1/whoami` with AWS Signature Version 4, for the load
benches (benches/load.sh, benches/sigv4.sh): one signature reused for every
request. Reads SIGV4_ID (the key's client ID), SIGV4_SECRET and SIGV4_HOST
(host:port) from the environment; prints the X-Amz-Date value, then the
Authorization header value.
"""
import datetime
import hashlib
import hmac
import os

date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
scope = f"{date[:8]}/us-east-1/keyport/aws4_request"
canonical = "\n".join(["GET", "/api/v1/whoami", "", "host:" + os.environ["SIGV4_HOST"],
    "x-amz-date:" + date, "", "host;x-amz-date", hashlib.sha256(b"").hexdigest()])
to_sign = "\n".join(["AWS4-HMAC-SHA256", date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
key = ("AWS4" + os.environ["SIGV4_SECRET"]).encode()
for part in (date[:8], "us-east-1", "keyport", "aws4_request"):
    key = hmac.new(key, part.encode(), hashlib.sha256).digest()
signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
print(date)
print(f"AWS4-HMAC-SHA256 Credential={os.environ['SIGV4_ID']}/{scope}, SignedHeaders=host;x-amz-date, Signature={signature}")
