#!/usr/bin/env python3
"""An independent OAuth2 client for Keyport, written with off-the-shelf libraries.

It proves that clients nobody wrote for Keyport can use it:

* authlib fetches a client-credentials token, authenticating with HTTP Basic
  (client_secret_basic) and with the secret in the body (client_secret_post);
* PyJWT verifies the token offline against the published JWKS;
* requests calls a report endpoint with the token.

Run by tests/api/python_client.rs. Settings come from the command line or, for
each option, from the environment variable named in its help (the secrets are
best passed through the environment). Prints one JSON line of findings on
stdout and exits 0 only when every check passed.

    python tests/clients/python_client.py --base-url http://127.0.0.1:PORT \
        --client-id kpc_... --issuer http://127.0.0.1:8080 --audience keyport-api \
        --collection invoices --record-id ID    # secret in KEYPORT_CLIENT_SECRET
"""

import argparse
import base64
import json
import os
import sys
import traceback

REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]
ALGORITHMS = ["ES256", "EdDSA", "RS256"]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])

    def option(name, env, help_text, required=True):
        default = os.environ.get(env)
        parser.add_argument(
            name,
            default=default,
            required=required and default is None,
            help=f"{help_text} (env: {env})",
        )

    option("--base-url", "KEYPORT_BASE_URL", "where the server listens, e.g. http://127.0.0.1:8080")
    option("--client-id", "KEYPORT_CLIENT_ID", "the key's client ID")
    option("--client-secret", "KEYPORT_CLIENT_SECRET", "the key's client secret")
    option("--issuer", "KEYPORT_ISSUER", "the expected `iss` claim")
    option("--audience", "KEYPORT_AUDIENCE", "the expected `aud` claim")
    option("--collection", "KEYPORT_COLLECTION", "a report collection holding --record-id")
    option("--record-id", "KEYPORT_RECORD_ID", "a record the key's owner may read")
    option(
        "--wrong-secret",
        "KEYPORT_WRONG_SECRET",
        "a well-formed secret that is not this key's (default: the secret with one character changed)",
        required=False,
    )
    return parser.parse_args(argv)


class Findings:
    """Collects check results; every failed check is listed with its reason."""

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

    def fail(self, name, error):
        self.data["failures"].append(f"{name}: {type(error).__name__}: {error}")

    @property
    def ok(self):
        return not self.data["failures"]

    def emit(self):
        self.data["ok"] = self.ok
        print(json.dumps(self.data, sort_keys=True))
        sys.stdout.flush()


def b64url_json(segment):
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def altered(secret):
    """The secret with its last character changed, so it cannot authenticate."""
    last = secret[-1]
    return secret[:-1] + ("A" if last != "A" else "B")


def fetch_token(OAuth2Session, token_url, client_id, secret, method):
    session = OAuth2Session(
        client_id=client_id,
        client_secret=secret,
        token_endpoint_auth_method=method,
    )
    try:
        return session.fetch_token(token_url, grant_type="client_credentials", timeout=30)
    finally:
        session.close()


def run(args, findings):
    try:
        import jwt
        import requests
        from authlib.integrations.base_client.errors import OAuthError
        from authlib.integrations.requests_client import OAuth2Session
    except ImportError as error:
        findings.fail(
            "imports",
            ImportError(
                f"{error}; install tests/clients/requirements.txt into .venv (scripts/test does it)"
            ),
        )
        return

    findings["authlib"] = __import__("authlib").__version__
    findings["pyjwt"] = jwt.__version__

    base = args.base_url.rstrip("/")
    token_url = base + "/oauth/token"

    # 1. A token with HTTP Basic client authentication.
    token = None
    try:
        token = fetch_token(
            OAuth2Session, token_url, args.client_id, args.client_secret, "client_secret_basic"
        )
    except Exception as error:  # noqa: BLE001 - every failure becomes a finding
        findings.fail("fetch_token_client_secret_basic", error)
    if token is not None:
        findings["token_type"] = token.get("token_type")
        findings["expires_in"] = token.get("expires_in")
        findings["token_scope"] = token.get("scope")
        findings.check(
            "token_type_is_bearer",
            str(token.get("token_type", "")).lower() == "bearer",
            repr(token.get("token_type")),
        )
        findings.check(
            "expires_in_is_positive",
            isinstance(token.get("expires_in"), int) and token["expires_in"] > 0,
            repr(token.get("expires_in")),
        )

    # 2. Offline verification with the published JWKS.
    claims = None
    if token is not None and "access_token" in token:
        access_token = token["access_token"]
        try:
            header = jwt.get_unverified_header(access_token)
            findings["typ"] = header.get("typ")
            findings["alg"] = header.get("alg")
            findings["kid"] = header.get("kid")
            findings.check("typ_is_at_jwt", header.get("typ") == "at+jwt", repr(header.get("typ")))
            jwks = jwt.PyJWKClient(base + "/.well-known/jwks.json", cache_keys=False)
            signing_key = jwks.get_signing_key_from_jwt(access_token)
            claims = jwt.decode(
                access_token,
                signing_key.key,
                algorithms=ALGORITHMS,
                audience=args.audience,
                issuer=args.issuer,
                options={"require": REQUIRED_CLAIMS},
            )
            findings.check("signature_verified", True)
        except Exception as error:  # noqa: BLE001
            findings.fail("verify_token", error)
            signing_key = None

        if claims is not None:
            for name in ("sub", "iss", "aud", "client_id", "scope", "tenant_id", "jti", "exp", "iat"):
                findings[name] = claims.get(name)
            for name in ("client_id", "scope", "tenant_id", "jti"):
                findings.check(f"claim_{name}_present", bool(claims.get(name)), f"claims: {claims}")
            findings.check(
                "client_id_claim_is_the_key",
                claims.get("client_id") == args.client_id,
                repr(claims.get("client_id")),
            )
            findings.check(
                "exp_after_iat",
                isinstance(claims.get("exp"), int) and claims["exp"] > claims.get("iat", 0),
                f"exp={claims.get('exp')} iat={claims.get('iat')}",
            )

        # The verification must be able to fail: a changed signature and a
        # wrong audience are refused.
        if signing_key is not None:
            head, payload, signature = access_token.split(".")
            flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
            try:
                jwt.decode(
                    f"{head}.{payload}.{flipped}",
                    signing_key.key,
                    algorithms=ALGORITHMS,
                    audience=args.audience,
                    issuer=args.issuer,
                )
                findings.check("tampered_signature_refused", False, "PyJWT accepted it")
            except jwt.InvalidSignatureError:
                findings.check("tampered_signature_refused", True)
            except Exception as error:  # noqa: BLE001
                findings.fail("tampered_signature_refused", error)
            try:
                jwt.decode(
                    access_token,
                    signing_key.key,
                    algorithms=ALGORITHMS,
                    audience=args.audience + "-other",
                    issuer=args.issuer,
                )
                findings.check("wrong_audience_refused", False, "PyJWT accepted it")
            except jwt.InvalidAudienceError:
                findings.check("wrong_audience_refused", True)
            except Exception as error:  # noqa: BLE001
                findings.fail("wrong_audience_refused", error)

        # 3. The token opens the report endpoint.
        try:
            response = requests.get(
                f"{base}/api/v1/reports/{args.collection}",
                headers={"Authorization": f"Bearer {access_token}"},
                timeout=30,
            )
            findings["report_status"] = response.status_code
            if findings.check("report_status_200", response.status_code == 200, response.text[:300]):
                body = response.json()
                records = body.get("records", [])
                findings["record_ids"] = [r.get("id") for r in records]
                findings["records"] = [r.get("data") for r in records]
                findings.check(
                    "pushed_record_listed",
                    args.record_id in findings.data["record_ids"],
                    f"ids: {findings.data['record_ids']}",
                )
        except Exception as error:  # noqa: BLE001
            findings.fail("report_request", error)

        # Without the token the endpoint refuses.
        try:
            response = requests.get(f"{base}/api/v1/reports/{args.collection}", timeout=30)
            findings["report_status_without_token"] = response.status_code
            findings.check("report_without_token_is_401", response.status_code == 401, str(response.status_code))
        except Exception as error:  # noqa: BLE001
            findings.fail("report_request_without_token", error)

    # 4. A token with the secret in the body.
    try:
        posted = fetch_token(
            OAuth2Session, token_url, args.client_id, args.client_secret, "client_secret_post"
        )
        findings.check(
            "client_secret_post_token_issued",
            bool(posted.get("access_token")),
            f"response keys: {sorted(posted)}",
        )
        if posted.get("access_token"):
            post_claims = b64url_json(posted["access_token"].split(".")[1])
            findings["post_sub"] = post_claims.get("sub")
            findings["post_client_id"] = post_claims.get("client_id")
    except Exception as error:  # noqa: BLE001
        findings.fail("fetch_token_client_secret_post", error)

    # 5. Wrong secrets are refused with invalid_client.
    wrong_secrets = [("altered", altered(args.client_secret))]
    if args.wrong_secret:
        wrong_secrets.append(("other_keys_secret", args.wrong_secret))
    errors = {}
    for label, wrong in wrong_secrets:
        for method in ("client_secret_basic", "client_secret_post"):
            name = f"wrong_secret_{label}_{method}"
            try:
                fetch_token(OAuth2Session, token_url, args.client_id, wrong, method)
                findings.check(name, False, "a token was issued")
                errors[name] = None
            except OAuthError as error:
                errors[name] = error.error
                findings.check(name, error.error == "invalid_client", f"error={error.error!r}")
            except Exception as error:  # noqa: BLE001
                findings.fail(name, error)
    findings["wrong_secret_errors"] = errors


def main(argv):
    findings = Findings()
    try:
        args = parse_args(argv)
        run(args, findings)
    except SystemExit:
        raise
    except Exception as error:  # noqa: BLE001
        findings.fail("unexpected", error)
        traceback.print_exc(file=sys.stderr)
    findings.emit()
    return 0 if findings.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
