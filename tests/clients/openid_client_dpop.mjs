#!/usr/bin/env node
// openid-client 6 with DPoP (RFC 9449) against Keyport, run by
// tests/api/openid_client.rs:
//
//   KEYPORT_CLIENT_SECRET=kps_… node tests/clients/openid_client_dpop.mjs http://127.0.0.1:PORT kpc_…
//
// It discovers the server, makes an ES256 key pair, takes a DPoP-bound
// client-credentials token (openid-client signs the proofs and, when the
// server asks for a nonce, retries with it by itself), calls
// GET /api/v1/whoami with it (`Authorization: DPoP` and a proof with `ath`),
// and presents the same token as Bearer to see it refused. Prints one JSON
// line; a failure of the good path exits non-zero with the error on stderr.
// Never prints the secret or the token.

import { createHash, webcrypto } from 'node:crypto'
import * as client from 'openid-client'

const [issuer, clientId] = process.argv.slice(2)
const secret = process.env.KEYPORT_CLIENT_SECRET
if (!issuer || !clientId || !secret) {
  console.error('usage: KEYPORT_CLIENT_SECRET=… node openid_client_dpop.mjs ISSUER CLIENT_ID')
  process.exit(2)
}

const config = await client.discovery(new URL(issuer), clientId, secret, undefined, {
  algorithm: 'oauth2',
  execute: [client.allowInsecureRequests],
})
const keyPair = await client.randomDPoPKeyPair('ES256')
const DPoP = client.getDPoPHandle(config, keyPair)

// RFC 7638 thumbprint of the client's public key, to compare with cnf.jkt.
const jwk = await webcrypto.subtle.exportKey('jwk', keyPair.publicKey)
const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y })
const thumbprint = createHash('sha256').update(canonical).digest('base64url')

const tokens = await client.clientCredentialsGrant(config, { scope: 'reports:read' }, { DPoP })
const claims = JSON.parse(Buffer.from(tokens.access_token.split('.')[1], 'base64url').toString())

const whoamiUrl = new URL('/api/v1/whoami', issuer)
const whoami = await client.fetchProtectedResource(
  config,
  tokens.access_token,
  whoamiUrl,
  'GET',
  undefined,
  undefined,
  { DPoP },
)
const whoamiBody = await whoami.json()
// And again: a fresh proof (new jti) each time.
const again = await client.fetchProtectedResource(
  config,
  tokens.access_token,
  whoamiUrl,
  'GET',
  undefined,
  undefined,
  { DPoP },
)

// The bound token as Bearer: refused.
let bearer
try {
  const response = await client.fetchProtectedResource(config, tokens.access_token, whoamiUrl, 'GET')
  bearer = { refused: false, status: response.status }
} catch (err) {
  bearer = {
    refused: true,
    status: err?.status ?? err?.response?.status,
    challenge: err?.response?.headers?.get('www-authenticate') ?? null,
    code: err?.code,
  }
}

console.log(
  JSON.stringify({
    token_type: tokens.token_type,
    cnf_jkt: claims.cnf?.jkt ?? null,
    client_thumbprint: thumbprint,
    whoami_status: whoami.status,
    whoami_client_id: whoamiBody.client_id,
    second_whoami_status: again.status,
    bearer,
  }),
)
