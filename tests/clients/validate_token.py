"""Validates a Keyport access token as a Python resource server does, with
PyJWT: the issuer's published keys (fetched and cached by PyJWKClient), the
signature, `iss`, `aud`, `exp` and the `at+jwt` type (RFC 9068).

    python validate_token.py ISSUER AUDIENCE TOKEN

Prints the token's claims as JSON, or the reason it is refused (exit 1)."""

import json
import sys

import jwt

ALGORITHMS = ["ES256", "EdDSA", "RS256"]


def validate(issuer: str, audience: str, token: str) -> dict:
    jwks = jwt.PyJWKClient(f"{issuer}/.well-known/jwks.json", cache_keys=True)
    if jwt.get_unverified_header(token).get("typ") != "at+jwt":
        raise jwt.InvalidTokenError("not an access token (typ must be at+jwt)")
    key = jwks.get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        key,
        algorithms=ALGORITHMS,
        issuer=issuer,
        audience=audience,
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        leeway=30,
    )


if __name__ == "__main__":
    issuer, audience, token = sys.argv[1:4]
    try:
        claims = validate(issuer, audience, token)
    except jwt.PyJWTError as refused:
        print(f"refused: {refused}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(claims))
