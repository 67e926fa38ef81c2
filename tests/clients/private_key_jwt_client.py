#!/usr/bin/env python3
"""An independent private_key_jwt client for Keyport: Authlib's PrivateKeyJWT.

Authlib (nobody wrote it for Keyport) signs the RFC 7523 client assertion
with the client's private key and sends it to the token endpoint; no secret
exists. Checks:

* Authlib as it comes: its PrivateKeyJWT makes assertions that live an hour
  (`expires_in` 3600), which Keyport accepts by default (at most 3600 s);
* Authlib with a 60-second assertion (a small subclass passing
  `expires_in=60`, what an integrator writes for a stricter server) gets a
  token, twice (a fresh `jti` each time), and the token works at
  /api/v1/whoami.

Run by tests/api/private_key_jwt_clients.rs. The private key (PKCS#8 PEM)
comes from the environment, never the command line; nothing secret is
printed. Prints one JSON line of findings; exits 0 only when every check
passed.

    KEYPORT_CLIENT_PRIVATE_KEY="$(cat key.pem)" python tests/clients/private_key_jwt_client.py \
        --base-url http://127.0.0.1:PORT --client-id kpc_... --kid erp-2026-12 --alg ES256
"""

import argparse
import json
import os
import sys
import traceback


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--kid", default=None, help="the `kid` the public key was registered with")
    parser.add_argument("--alg", default="ES256", choices=["ES256", "EdDSA", "RS256"])
    return parser.parse_args(argv)


def run(args, findings):
    import requests
    from authlib.integrations.base_client.errors import OAuthError
    from authlib.integrations.requests_client import OAuth2Session
    from authlib.oauth2.rfc7523 import PrivateKeyJWT
    from authlib.oauth2.rfc7523.assertion import private_key_jwt_sign
    from joserfc.jwk import ECKey, OKPKey, RSAKey

    findings["authlib"] = __import__("authlib").__version__
    pem = os.environ["KEYPORT_CLIENT_PRIVATE_KEY"]
    key_type = {"ES256": ECKey, "EdDSA": OKPKey, "RS256": RSAKey}[args.alg]
    private_key = key_type.import_key(pem)

    base = args.base_url.rstrip("/")
    token_url = base + "/oauth/token"
    headers = {"kid": args.kid} if args.kid else None

    class ShortLivedPrivateKeyJWT(PrivateKeyJWT):
        """PrivateKeyJWT whose assertions live 60 s instead of an hour."""

        def sign(self, auth, token_endpoint):
            return private_key_jwt_sign(
                auth.client_secret,
                client_id=auth.client_id,
                token_endpoint=token_endpoint,
                header=dict(self.headers or {}),
                alg=self.alg,
                expires_in=60,
            )

    def session_with(method):
        return OAuth2Session(
            client_id=args.client_id,
            client_secret=private_key,
            token_endpoint_auth_method=method,
        )

    # 1. Authlib's default: an hour-long assertion, accepted.
    session = session_with(PrivateKeyJWT(token_url, headers=headers, alg=args.alg))
    try:
        token = session.fetch_token(token_url, grant_type="client_credentials", timeout=30)
        findings.check("default_lifetime_accepted", bool(token.get("access_token")), "no access_token")
    except OAuthError as error:
        findings.check("default_lifetime_accepted", False, f"{error.error}: {error.description}")
    finally:
        session.close()

    # 2. 60-second assertions: two tokens (each assertion with its own jti).
    session = session_with(ShortLivedPrivateKeyJWT(token_url, headers=headers, alg=args.alg))
    try:
        for n in (1, 2):
            token = session.fetch_token(token_url, grant_type="client_credentials", timeout=30)
            findings.check(f"token_{n}", bool(token.get("access_token")), "no access_token")
            findings["token_type"] = token.get("token_type")
        whoami = requests.get(
            base + "/api/v1/whoami",
            headers={"Authorization": f"Bearer {token['access_token']}"},
            timeout=30,
        )
        findings.check("whoami", whoami.status_code == 200, f"status {whoami.status_code}")
        if whoami.status_code == 200:
            findings["whoami_client_id"] = whoami.json().get("client_id")
    finally:
        session.close()


class Findings:
    def __init__(self):
        self.data = {"checks": [], "failures": []}

    def __setitem__(self, key, value):
        self.data[key] = value

    def check(self, name, condition, detail=""):
        if condition:
            self.data["checks"].append(name)
        else:
            self.data["failures"].append(f"{name}: {detail}" if detail else name)
        return condition

    def emit(self):
        self.data["ok"] = not self.data["failures"]
        print(json.dumps(self.data, sort_keys=True))
        sys.stdout.flush()


def main(argv):
    args = parse_args(argv)
    findings = Findings()
    try:
        run(args, findings)
    except Exception as error:  # noqa: BLE001 - every failure becomes a finding
        findings.data["failures"].append(f"unexpected: {type(error).__name__}: {error}")
        traceback.print_exc(file=sys.stderr)
    findings.emit()
    return 0 if findings.data["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
