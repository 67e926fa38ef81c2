// Validates a Keyport access token as a Node resource server does, with
// jose: the issuer's published keys (fetched and cached by
// createRemoteJWKSet), the signature, `iss`, `aud`, `exp` and the `at+jwt`
// type (RFC 9068).
//
//     node validate_token.mjs ISSUER AUDIENCE TOKEN
//
// Prints the token's claims as JSON, or the reason it is refused (exit 1).
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [issuer, audience, token] = process.argv.slice(2);
const jwks = createRemoteJWKSet(new URL(`${issuer}/.well-known/jwks.json`));

try {
  const { payload } = await jwtVerify(token, jwks, {
    issuer,
    audience,
    typ: 'at+jwt',
    algorithms: ['ES256', 'EdDSA', 'RS256'],
    requiredClaims: ['exp', 'iat', 'sub'],
    clockTolerance: 30,
  });
  console.log(JSON.stringify(payload));
} catch (refused) {
  console.error(`refused: ${refused.code ?? ''} ${refused.message}`);
  process.exit(1);
}
