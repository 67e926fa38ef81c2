#!/usr/bin/env node
// An independent OAuth client for Keyport: openid-client 6 (panva; Node's
// most used OAuth client, built on oauth4webapi), which nobody wrote for
// Keyport. Run by tests/api/openid_client.rs:
//
//   KEYPORT_CLIENT_SECRET=kps_… KEYPORT_WRONG_SECRET=kps_… \
//     node tests/clients/openid_client.mjs http://127.0.0.1:PORT kpc_…
//
// The first argument is the issuer (RFC 8414 metadata is discovered from it),
// the second the key's client ID; the secrets come from the environment so
// they never show in a process list. With the right secret it discovers the
// server, takes a client-credentials token (client_secret_post, the default,
// and client_secret_basic) and introspects it; with the wrong secret it calls
// the token, introspection and revocation endpoints and records what
// openid-client reports. Prints one JSON line; a failure of the good path
// exits non-zero with the error on stderr.

import * as client from 'openid-client'

const [issuer, clientId] = process.argv.slice(2)
const secret = process.env.KEYPORT_CLIENT_SECRET
const wrongSecret = process.env.KEYPORT_WRONG_SECRET
if (!issuer || !clientId || !secret || !wrongSecret) {
  console.error(
    'usage: KEYPORT_CLIENT_SECRET=… KEYPORT_WRONG_SECRET=… node openid_client.mjs ISSUER CLIENT_ID',
  )
  process.exit(2)
}

// Keyport publishes RFC 8414 metadata (no OpenID Connect document); tests
// run it over plain HTTP on 127.0.0.1.
async function configure(clientSecret, authentication) {
  return client.discovery(new URL(issuer), clientId, clientSecret, authentication, {
    algorithm: 'oauth2',
    execute: [client.allowInsecureRequests],
  })
}

// The members of the error openid-client throws that an integrator's code
// would read. Nothing here carries a secret: the request is not included.
function describe(err) {
  return {
    name: err?.name,
    message: err?.message,
    code: err?.code,
    status: err?.status,
    error: err?.error,
    error_description: err?.error_description,
    cause: err?.cause === undefined ? undefined : JSON.parse(JSON.stringify(err.cause)),
  }
}

async function refusal(call) {
  try {
    await call()
    return { refused: false }
  } catch (err) {
    return { refused: true, ...describe(err) }
  }
}

function tokenFields(response) {
  return {
    access_token: response.access_token,
    token_type: response.token_type,
    expires_in: response.expires_in,
    scope: response.scope,
  }
}

const config = await configure(secret)
const metadata = config.serverMetadata()
const post = await client.clientCredentialsGrant(config)
const basic = await client.clientCredentialsGrant(
  await configure(secret, client.ClientSecretBasic(secret)),
  { scope: 'reports:read' },
)
const introspection = await client.tokenIntrospection(config, post.access_token)

const wrong = await configure(wrongSecret)
const wrongBasic = await configure(wrongSecret, client.ClientSecretBasic(wrongSecret))
const wrongSecretErrors = {
  token_post: await refusal(() => client.clientCredentialsGrant(wrong)),
  token_basic: await refusal(() => client.clientCredentialsGrant(wrongBasic)),
  introspect: await refusal(() => client.tokenIntrospection(wrong, post.access_token)),
  revoke: await refusal(() => client.tokenRevocation(wrong, post.access_token)),
}

console.log(
  JSON.stringify({
    issuer: metadata.issuer,
    token_endpoint: metadata.token_endpoint,
    token_post: tokenFields(post),
    token_basic: tokenFields(basic),
    introspection: { active: introspection.active, client_id: introspection.client_id },
    wrong_secret_errors: wrongSecretErrors,
  }),
)
