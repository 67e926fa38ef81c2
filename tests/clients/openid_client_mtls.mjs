#!/usr/bin/env node
// openid-client 6 with mutual TLS (RFC 8705), run by tests/api/mutual_tls.rs:
//
//   KEYPORT_CLIENT_CERT=client.pem KEYPORT_CLIENT_KEY=client-key.pem \
//   KEYPORT_SERVER_CA=server-ca.pem \
//     node tests/clients/openid_client_mtls.mjs https://127.0.0.1:PORT kpc_…
//
// It discovers Keyport (RFC 8414), authenticates with TlsClientAuth() at the
// mutual-TLS endpoint the metadata names (`use_mtls_endpoint_aliases`), takes
// a client-credentials token, and calls a protected resource (whoami) with
// it over mutual TLS; then the same resource without the certificate. Every
// request goes through undici's fetch with an `Agent` whose TLS connections
// carry the certificate, as openid-client's documentation shows for mutual
// TLS. Prints one JSON line.

import { readFileSync } from 'node:fs'
import { Agent, fetch as undiciFetch } from 'undici'
import * as client from 'openid-client'

const [issuer, clientId] = process.argv.slice(2)
const cert = readFileSync(process.env.KEYPORT_CLIENT_CERT)
const key = readFileSync(process.env.KEYPORT_CLIENT_KEY)
const ca = readFileSync(process.env.KEYPORT_SERVER_CA)

// A Fetch API function whose connections present `tls` (with or without
// the certificate).
function fetchWith(tls) {
  const dispatcher = new Agent({ connect: tls })
  return (url, options) => undiciFetch(url, { ...options, dispatcher })
}

const withCertificate = fetchWith({ cert, key, ca })
const withoutCertificate = fetchWith({ ca })

const config = await client.discovery(
  new URL(issuer),
  clientId,
  { use_mtls_endpoint_aliases: true },
  client.TlsClientAuth(),
  { algorithm: 'oauth2', [client.customFetch]: withCertificate },
)
config[client.customFetch] = withCertificate
const tokens = await client.clientCredentialsGrant(config, { scope: 'reports:read' })

// The resource is on the mutual-TLS listener too: the token needs the
// certificate it is bound to.
const mtlsBase = new URL(config.serverMetadata().mtls_endpoint_aliases.token_endpoint)
const resource = new URL('/api/v1/whoami', mtlsBase)
const withCert = await client.fetchProtectedResource(config, tokens.access_token, resource, 'GET')
// Without the certificate: openid-client throws on the 401's challenge.
config[client.customFetch] = withoutCertificate
let withoutCert
try {
  const answer = await client.fetchProtectedResource(config, tokens.access_token, resource, 'GET')
  withoutCert = { status: answer.status, www_authenticate: answer.headers.get('www-authenticate') }
} catch (err) {
  withoutCert = {
    status: err?.response?.status,
    www_authenticate: err?.response?.headers?.get('www-authenticate'),
    error: err?.name,
  }
}

console.log(
  JSON.stringify({
    token_type: tokens.token_type,
    access_token: tokens.access_token,
    token_endpoint: mtlsBase.href,
    resource_with_certificate: { status: withCert.status, body: await withCert.json() },
    resource_without_certificate: withoutCert,
  }),
)
