#!/usr/bin/env node
// An independent private_key_jwt client for Keyport: openid-client 6
// (panva; built on oauth4webapi), authenticating with
// `client.PrivateKeyJwt(privateKey)`: an RFC 7523 assertion signed with the
// client's private key, `aud` the issuer, a fresh `jti` and 60 s of life
// each time. Run by tests/api/private_key_jwt_clients.rs:
//
//   KEYPORT_CLIENT_PRIVATE_KEY="$(cat key.pem)" \
//     node tests/clients/private_key_jwt_openid_client.mjs http://127.0.0.1:PORT kpc_… KID
//
// It discovers the server, takes two client-credentials tokens, introspects
// one, revokes it and introspects it again, all authenticated by assertions;
// then tries a key that is not registered. The private key (PKCS#8 PEM,
// P-256) comes from the environment; no token or key is printed. Prints one
// JSON line; a failure of the good path exits non-zero.

import * as client from 'openid-client'

const [issuer, clientId, kid] = process.argv.slice(2)
const pem = process.env.KEYPORT_CLIENT_PRIVATE_KEY
if (!issuer || !clientId || !pem) {
  console.error(
    'usage: KEYPORT_CLIENT_PRIVATE_KEY=… node private_key_jwt_openid_client.mjs ISSUER CLIENT_ID [KID]',
  )
  process.exit(2)
}

const P256 = { name: 'ECDSA', namedCurve: 'P-256' }
const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64')
const privateKey = await crypto.subtle.importKey('pkcs8', der, P256, false, ['sign'])

async function configure(key, keyId) {
  return client.discovery(
    new URL(issuer),
    clientId,
    undefined,
    client.PrivateKeyJwt(keyId ? { key, kid: keyId } : key),
    { algorithm: 'oauth2', execute: [client.allowInsecureRequests] },
  )
}

const config = await configure(privateKey, kid)
const metadata = config.serverMetadata()
const first = await client.clientCredentialsGrant(config)
const second = await client.clientCredentialsGrant(config, { scope: 'reports:read' })
const introspection = await client.tokenIntrospection(config, first.access_token)
await client.tokenRevocation(config, first.access_token)
const afterRevocation = await client.tokenIntrospection(config, first.access_token)

const stranger = await crypto.subtle.generateKey(P256, false, ['sign', 'verify'])
let unregistered
try {
  await client.clientCredentialsGrant(await configure(stranger.privateKey))
  unregistered = { refused: false }
} catch (err) {
  // A 401 carries a WWW-Authenticate challenge, which oauth4webapi reads
  // before the body: the error is then in the challenge's parameters.
  unregistered = {
    refused: true,
    code: err?.code,
    status: err?.status,
    error: err?.error ?? err?.cause?.[0]?.parameters?.error,
  }
}

console.log(
  JSON.stringify({
    auth_methods: metadata.token_endpoint_auth_methods_supported,
    signing_algs: metadata.token_endpoint_auth_signing_alg_values_supported,
    first: { token_type: first.token_type, has_token: Boolean(first.access_token) },
    second: { token_type: second.token_type, scope: second.scope },
    introspection: { active: introspection.active, client_id: introspection.client_id },
    after_revocation: { active: afterRevocation.active },
    unregistered,
  }),
)
