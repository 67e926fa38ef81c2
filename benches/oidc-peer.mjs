// The peer benches/load.sh --peer compares Keyport's token endpoint with:
// node oidc-provider (benches/package.json pins it) with one
// client_credentials client (client_secret_basic) whose tokens are ES256 JWT
// access tokens for one resource server, as Keyport issues. One worker
// process per PEER_WORKERS (node:cluster, one port), as Keyport runs one
// worker thread per core. Environment: PEER_PORT, PEER_WORKERS,
// PEER_CLIENT_SECRET.
import cluster from 'node:cluster';
import { generateKeyPairSync } from 'node:crypto';

const port = Number(process.env.PEER_PORT || 3000);
const workers = Number(process.env.PEER_WORKERS || 1);
const secret = process.env.PEER_CLIENT_SECRET;
if (!secret) throw new Error('PEER_CLIENT_SECRET is required');

if (cluster.isPrimary) {
  // One signing key for every worker, made once.
  const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const key = JSON.stringify({ ...jwk, alg: 'ES256', use: 'sig', kid: 'bench-es256' });
  for (let i = 0; i < workers; i++) cluster.fork({ PEER_SIGNING_KEY: key });
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
  const issuer = `http://127.0.0.1:${port}`;
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
  provider.listen(port, '127.0.0.1');
}
