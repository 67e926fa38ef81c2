"""Plays a trusted external issuer for tests/api/token_exchange.rs, as a CI
platform (GitHub Actions, a Kubernetes cluster) does: PyJWT and
cryptography, libraries nobody wrote for Keyport, make the keys and sign the
tokens.

Reads a JSON spec on stdin:
  {"issuer": "...", "keys": ["k1", "k2"], "tokens": [
      {"kid": "k1", "claims": {...}, "exp_in": 300, "alg": "ES256"}, ...]}
- "keys": the kids of the issuer's EC P-256 keys (published in the JWKS).
- each token: signed by the key named "kid" (or, with "sign_with":
  "stranger", by a key the JWKS does not hold, under that kid); "alg"
  ES256 (default), "HS256" (signed with the kid as HMAC secret) or "none";
  iss, iat and exp (now + exp_in) are added unless "claims" sets them.
Writes {"jwks": {...}, "tokens": ["...", ...]} on stdout.
"""

import base64
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main() -> None:
    spec = json.load(sys.stdin)
    issuer = spec["issuer"]
    keys = {kid: ec.generate_private_key(ec.SECP256R1()) for kid in spec["keys"]}
    stranger = ec.generate_private_key(ec.SECP256R1())

    jwks = {"keys": []}
    for kid, key in keys.items():
        jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
        jwk.update({"kid": kid, "use": "sig", "alg": "ES256"})
        jwks["keys"].append(jwk)

    now = int(time.time())
    tokens = []
    for token in spec["tokens"]:
        claims = {"iss": issuer, "iat": now, "exp": now + token.get("exp_in", 300)}
        claims.update(token.get("claims", {}))
        kid = token.get("kid")
        alg = token.get("alg", "ES256")
        headers = {"kid": kid} if kid else {}
        if alg == "none":
            header = {"alg": "none", "typ": "JWT", **headers}
            tokens.append(
                b64url(json.dumps(header).encode())
                + "."
                + b64url(json.dumps(claims).encode())
                + "."
            )
            continue
        if alg == "HS256":
            tokens.append(jwt.encode(claims, (kid or "secret").encode() * 4, "HS256", headers))
            continue
        signer = stranger if token.get("sign_with") == "stranger" else keys[kid]
        tokens.append(jwt.encode(claims, signer, "ES256", headers))

    json.dump({"jwks": jwks, "tokens": tokens}, sys.stdout)


if __name__ == "__main__":
    main()
