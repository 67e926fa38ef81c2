// The peer benches/load.sh --peer compares Keyport's token endpoint with:
// node oidc-provider (benches/package.json pins it) with one
// client_credentials client (client_secret_basic) whose tokens are ES256 JWT
// access tokens for one resource server, as Keyport issues. One worker
// process per PEER_WORKERS (node:cluster, one port), as Keyport runs one
// worker thread per core. Environment: PEER_PORT, PEER_WORKERS,
// PEER_CLIENT_SECRET, and for HTTPS (benches/https.sh) PEER_TLS_CERT_FILE and
// PEER_TLS_KEY_FILE: then it serves HTTPS only (node:https, OpenSSL), with
// session tickets sealed under one key shared by every worker, so a client
// resumes whichever worker it lands on, as it does with Keyport's one
// process.
import cluster from 'node:cluster';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';

const port = Number(process.env.PEER_PORT || 3000);
const workers = Number(process.env.PEER_WORKERS || 1);
const secret = process.env.PEER_CLIENT_SECRET;
if (!secret) throw new Error('PEER_CLIENT_SECRET is required');

if (cluster.isPrimary) {
  // One signing key for every worker, made once.
  const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const key = JSON.stringify({ ...jwk, alg: 'ES256', use: 'sig', kid: 'bench-es256' });
  // node's session ticket keys: 48 bytes (name, HMAC and AES keys).
  const ticketKeys = randomBytes(48).toString('hex');
  for (let i = 0; i < workers; i++) cluster.fork({ PEER_SIGNING_KEY: key, PEER_TICKET_KEYS: ticketKeys });
  cluster.on('exit', (worker, code) => {
    console.error(`worker ${worker.process.pid} exited with ${code}`);
    process.exit(1);
  });
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => {
      for (const worker of Object.values(cluster.workers)) worker.process.kill();
      process.exit(0);
    });
  }
} else {
  const { default: Provider } = await import('oidc-provider');
  const tls = process.env.PEER_TLS_CERT_FILE
    ? {
        cert: readFileSync(process.env.PEER_TLS_CERT_FILE),
        key: readFileSync(process.env.PEER_TLS_KEY_FILE),
        ticketKeys: Buffer.from(process.env.PEER_TICKET_KEYS, 'hex'),
      }
    : null;
  const issuer = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const resource = 'https://keyport-api.bench';
  const provider = new Provider(issuer, {
    clients: [{
      client_id: 'bench',
      client_secret: secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      // Its only key is ES256 (the default, RS256, has no key here).
      id_token_signed_response_alg: 'ES256',
    }],
    jwks: { keys: [JSON.parse(process.env.PEER_SIGNING_KEY)] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => resource,
        useGrantedResource: async () => true,
        getResourceServerInfo: async () => ({
          scope: 'reports:read',
          audience: 'keyport-api',
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
  });
  if (tls) {
    https.createServer(tls, provider.callback()).listen(port, '127.0.0.1');
  } else {
    provider.listen(port, '127.0.0.1');
  }
}
