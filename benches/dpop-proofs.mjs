#!/usr/bin/env node
// DPoP proofs for benches/load.sh (each proof is single-use, so wrk needs one
// per request): Node's own crypto, no package.
//
//   node benches/dpop-proofs.mjs key > KEY.json
//       a fresh P-256 private key, as a JWK
//   KP_DPOP_KEY=KEY.json [KP_TOKEN=…] node benches/dpop-proofs.mjs proofs N METHOD URL > FILE
//       N ES256 proofs for METHOD URL, one per line, each with its own jti
//       and iat now; with KP_TOKEN, `ath` for that access token
import { createHash, createPrivateKey, generateKeyPairSync, randomUUID, sign } from 'node:crypto'
import { readFileSync } from 'node:fs'

const [command, ...args] = process.argv.slice(2)
const b64 = (data) => Buffer.from(data).toString('base64url')

if (command === 'key') {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  console.log(JSON.stringify(privateKey.export({ format: 'jwk' })))
} else if (command === 'proofs') {
  const [count, htm, htu] = args
  const jwk = JSON.parse(readFileSync(process.env.KP_DPOP_KEY, 'utf8'))
  const key = createPrivateKey({ key: jwk, format: 'jwk' })
  const header = b64(JSON.stringify({
    typ: 'dpop+jwt',
    alg: 'ES256',
    jwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y },
  }))
  const token = process.env.KP_TOKEN
  const ath = token ? b64(createHash('sha256').update(token).digest()) : undefined
  const iat = Math.floor(Date.now() / 1000)
  const lines = []
  for (let i = 0; i < Number(count); i++) {
    const input = `${header}.${b64(JSON.stringify({ jti: randomUUID(), htm, htu, iat, ath }))}`
    const signature = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' })
    lines.push(`${input}.${b64(signature)}`)
    if (lines.length === 10000) {
      process.stdout.write(lines.join('\n') + '\n')
      lines.length = 0
    }
  }
  if (lines.length) process.stdout.write(lines.join('\n') + '\n')
} else {
  console.error('usage: dpop-proofs.mjs key | proofs N METHOD URL')
  process.exit(2)
}
