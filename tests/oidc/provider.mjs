// Local OAuth 2.0 / OpenID Connect provider for the Lighthouse test suite.
//
// A real third-party issuer (oidc-provider) whose client_credentials access tokens are
// RFC 9068 JWTs, so the "trusted external issuer" path is exercised against tokens that
// Lighthouse did not mint itself.
//
// Environment:
//   OIDC_PORT      port to listen on (127.0.0.1); the issuer is http://127.0.0.1:PORT
//   OIDC_AUDIENCE  the resource server identifier (resource indicator and token `aud`)
//   OIDC_CLIENTS   JSON array of clients:
//                  [{"client_id": "...", "client_secret": "...",
//                    "scope": "space separated allowed scopes",
//                    "claims": {"bureau": "PUBLIC_WORKS", "roles": ["dispatcher"]}}]
//   OIDC_PUBLIC_CLIENTS  optional JSON array of public clients signing people in (authorization
//                  code with PKCE): [{"client_id": "...", "redirect_uris": ["..."]}]; with
//                  "refresh": true, a client is also issued refresh tokens (no offline_access
//                  asked: the city's sign-on decides that by client)
//   OIDC_ACCESS_TOKEN_TTL  optional seconds an access token lives (default 600)
//   OIDC_ACCOUNTS  optional JSON object of the people who may sign in, by login name, with the
//                  claims their access tokens carry: {"alice": {"department": "PWB"}}; any
//                  password is taken (oidc-provider's development login page)
//
// Prints `READY <issuer>` on stdout once listening; exits 0 on SIGTERM or SIGINT.

import { generateKeyPairSync, randomUUID } from 'node:crypto';

function fail(message) {
  console.error(`provider.mjs: ${message}`);
  process.exit(2);
}

function readConfig() {
  const port = Number.parseInt(process.env.OIDC_PORT ?? '', 10);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    fail('OIDC_PORT must be a TCP port number');
  }

  const audience = process.env.OIDC_AUDIENCE;
  if (!audience) {
    fail('OIDC_AUDIENCE must be set');
  }

  let clients;
  try {
    clients = JSON.parse(process.env.OIDC_CLIENTS ?? '[]');
  } catch (err) {
    fail(`OIDC_CLIENTS is not valid JSON: ${err.message}`);
  }
  if (!Array.isArray(clients) || clients.length === 0) {
    fail('OIDC_CLIENTS must be a non-empty JSON array');
  }
  for (const client of clients) {
    if (typeof client?.client_id !== 'string' || typeof client?.client_secret !== 'string') {
      fail('every OIDC_CLIENTS entry needs string client_id and client_secret');
    }
    if (client.claims !== undefined && (typeof client.claims !== 'object' || Array.isArray(client.claims))) {
      fail(`claims of client ${client.client_id} must be a JSON object`);
    }
  }

  let publicClients;
  let accounts;
  try {
    publicClients = JSON.parse(process.env.OIDC_PUBLIC_CLIENTS ?? '[]');
    accounts = JSON.parse(process.env.OIDC_ACCOUNTS ?? '{}');
  } catch (err) {
    fail(`OIDC_PUBLIC_CLIENTS or OIDC_ACCOUNTS is not valid JSON: ${err.message}`);
  }
  if (!Array.isArray(publicClients) || typeof accounts !== 'object' || Array.isArray(accounts)) {
    fail('OIDC_PUBLIC_CLIENTS must be a JSON array and OIDC_ACCOUNTS a JSON object');
  }

  return { port, audience, clients, publicClients, accounts };
}

// Two warnings are expected here and would otherwise land in every test log: the package
// wants Node 22 LTS (it runs on Node 20), and the in-memory adapter is meant for
// development only (exactly right for a throwaway test issuer). Only those are dropped.
const EXPECTED_WARNINGS = ['Unsupported runtime', 'development-only in-memory adapter'];

async function withoutExpectedWarnings(fn) {
  const { warn } = console;
  console.warn = (...args) => {
    const [first] = args;
    if (typeof first === 'string' && EXPECTED_WARNINGS.some((w) => first.includes(w))) return;
    warn(...args);
  };
  try {
    return await fn();
  } finally {
    console.warn = warn;
  }
}

const { port, audience, clients, publicClients, accounts } = readConfig();
const signsPeopleIn = publicClients.length > 0;
const { default: Provider, errors } = await withoutExpectedWarnings(() => import('oidc-provider'));

const issuer = `http://127.0.0.1:${port}`;

// A fresh signing key per run: tests must discover it through jwks_uri, never pin it.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: randomUUID(),
  alg: 'RS256',
  use: 'sig',
};

const accessTokenTTL = Number.parseInt(process.env.OIDC_ACCESS_TOKEN_TTL ?? '600', 10);
if (!Number.isInteger(accessTokenTTL) || accessTokenTTL < 1) {
  fail('OIDC_ACCESS_TOKEN_TTL must be a positive number of seconds');
}
const claimsByClient = new Map(clients.map((c) => [c.client_id, c.claims ?? {}]));
const allScopes = [...new Set(clients.flatMap((c) => (c.scope ?? '').split(' ').filter(Boolean)))];

const provider = await withoutExpectedWarnings(() => new Provider(issuer, {
  clients: clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    ...(c.scope ? { scope: c.scope } : undefined),
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
  })).concat(publicClients.map((c) => ({
    client_id: c.client_id,
    grant_types: c.refresh ? ['authorization_code', 'refresh_token'] : ['authorization_code'],
    redirect_uris: c.redirect_uris,
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  }))),
  // A browser page redeems its code at the token endpoint from another origin.
  clientBasedCORS: () => true,
  pkce: { required: () => true },
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', ...(signsPeopleIn ? ['none'] : [])],
  // Client `scope` metadata may only name scopes the server knows; listing them here also
  // makes a request for a scope outside the client's allow-list fail with invalid_scope
  // instead of being silently dropped.
  scopes: ['openid', ...allScopes],
  jwks: { keys: [signingKey] },
  cookies: { keys: ['lighthouse-test-oidc-cookie-key'] },
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: signsPeopleIn },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => audience,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        if (resourceIndicator !== audience) {
          throw new errors.InvalidTarget(`unknown resource indicator ${resourceIndicator}`);
        }
        return {
          scope: allScopes.join(' '),
          audience,
          accessTokenFormat: 'jwt',
          accessTokenTTL,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  extraTokenClaims: async (_ctx, token) => {
    const claims = token.accountId ? accounts[token.accountId] : claimsByClient.get(token.clientId);
    return claims ? structuredClone(claims) : undefined;
  },
  ttl: {
    ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? accessTokenTTL,
  },
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  findAccount: async (_ctx, id) => (Object.hasOwn(accounts, id)
    ? { accountId: id, claims: async () => ({ sub: id }) }
    : undefined),
}));

provider.on('server_error', (_ctx, err) => {
  console.error('oidc-provider server_error:', err);
});

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${issuer}\n`);
});
server.on('error', (err) => fail(`cannot listen on 127.0.0.1:${port}: ${err.message}`));

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
