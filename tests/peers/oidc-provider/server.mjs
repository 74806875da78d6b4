// A Google-shaped OpenID Provider for usher's sign-in tests, built on panva
// `oidc-provider` (a certified OP). It owns: one confidential client, RS256 keys
// persisted to a file (stable `kid` across restarts; a missing file = rotation),
// accounts from a JSON file, a non-interactive login route and a small account
// picker for the browser test. It must never bind anything but 127.0.0.1.
//
// Usage:
//   node server.mjs --accounts FILE --keys FILE --client-id ID --client-secret S \
//        --redirect-uri URI [--redirect-uri URI2] [--port N]
// Each flag may also come from the environment: OP_ACCOUNTS, OP_KEYS, OP_CLIENT_ID,
// OP_CLIENT_SECRET, OP_REDIRECT_URIS (comma separated), OP_PORT.
// Prints `READY http://127.0.0.1:PORT` on stdout once listening; exits on SIGTERM.
//
// Login without a browser: the interaction page `/interaction/:uid` signs in the
// account given by `?email=` or by the authorize request's `login_hint` at once;
// `?deny=1` answers the client with `error=access_denied`. Without either it shows
// a form listing the accounts (one button per email) and a Cancel button.
//
// Accounts file: [{ "sub", "email", "email_verified", "hd", "given_name",
// "family_name", "name", "groups": ["..."] }]. The ID token carries email, names,
// hd and `groups` (a list of strings) itself, as Google's carries email and names.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

function fail(message) {
  process.stderr.write(`oidc-provider peer: ${message}\n`);
  process.exit(2);
}

const { values: args } = parseArgs({
  options: {
    accounts: { type: 'string', default: process.env.OP_ACCOUNTS },
    keys: { type: 'string', default: process.env.OP_KEYS },
    'client-id': { type: 'string', default: process.env.OP_CLIENT_ID },
    'client-secret': { type: 'string', default: process.env.OP_CLIENT_SECRET },
    'redirect-uri': {
      type: 'string',
      multiple: true,
      default: (process.env.OP_REDIRECT_URIS || '').split(',').filter(Boolean),
    },
    port: { type: 'string', default: process.env.OP_PORT || '0' },
  },
});

for (const name of ['accounts', 'keys', 'client-id', 'client-secret']) {
  if (!args[name]) fail(`--${name} is required (see the usage at the top of server.mjs)`);
}
if (args['redirect-uri'].length === 0) fail('at least one --redirect-uri is required');
const port = Number.parseInt(args.port, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port ${args.port} is not a port number`);

/** Accounts keyed by sub, plus an email index (case-insensitive). */
let accounts;
try {
  accounts = JSON.parse(readFileSync(args.accounts, 'utf8'));
} catch (e) {
  fail(`cannot read the accounts file ${args.accounts}: ${e.message}`);
}
if (!Array.isArray(accounts) || accounts.some((a) => !a || typeof a.sub !== 'string' || typeof a.email !== 'string')) {
  fail(`${args.accounts} must be a JSON array of objects with string "sub" and "email"`);
}
const bySub = new Map(accounts.map((a) => [a.sub, a]));
const byEmail = new Map(accounts.map((a) => [a.email.toLowerCase(), a]));

/** The signing key: loaded from the keys file, or generated and written there. */
function signingKeys(path) {
  if (existsSync(path)) {
    try {
      const jwks = JSON.parse(readFileSync(path, 'utf8'));
      if (Array.isArray(jwks.keys) && jwks.keys.length > 0) return jwks;
    } catch (e) {
      fail(`cannot read the keys file ${path}: ${e.message}`);
    }
  }
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = {
    ...privateKey.export({ format: 'jwk' }),
    kid: randomBytes(20).toString('hex'),
    alg: 'RS256',
    use: 'sig',
  };
  const jwks = { keys: [jwk] };
  writeFileSync(path, JSON.stringify(jwks), { mode: 0o600 });
  return jwks;
}

function account(sub) {
  const a = bySub.get(sub);
  if (!a) return undefined;
  return {
    accountId: a.sub,
    async claims() {
      const claims = {
        sub: a.sub,
        email: a.email,
        email_verified: a.email_verified ?? true,
        given_name: a.given_name,
        family_name: a.family_name,
        name: a.name,
        groups: Array.isArray(a.groups) ? a.groups.map(String) : [],
      };
      if (a.hd) claims.hd = a.hd;
      return claims;
    },
  };
}

const jwks = signingKeys(args.keys);
const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: args['client-id'],
      client_secret: args['client-secret'],
      redirect_uris: args['redirect-uri'],
      response_types: ['code'],
      grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks,
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  // Numbers, not the defaults' functions (which print a notice on stdout).
  ttl: { Interaction: 600, Grant: 3600, Session: 3600, IdToken: 3600, AccessToken: 3600, AuthorizationCode: 60 },
  scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
  claims: {
    openid: ['sub', 'hd', 'groups'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name', 'picture', 'locale'],
    groups: ['groups'],
  },
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: false }, // Google has no end_session_endpoint
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: (ctx, sub) => account(sub),
  // Every grant is created on the spot with what was asked for: no consent prompt.
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(ctx.oidc.params.scope || 'openid');
    await grant.save();
    return grant;
  },
  renderError(ctx, out) {
    ctx.type = 'text/plain; charset=utf-8';
    ctx.body = `oidc-provider error: ${out.error}: ${out.error_description || ''}\n`;
  },
});
provider.on('server_error', (ctx, err) => process.stderr.write(`server_error: ${err.stack}\n`));

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

function pickerPage(uid, note) {
  const buttons = accounts
    .map((a) => `<li><button type="submit" name="email" value="${escapeHtml(a.email)}">${escapeHtml(a.name || a.email)} &lt;${escapeHtml(a.email)}&gt;</button></li>`)
    .join('\n');
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Choose an account</title></head>
<body><h1>Choose an account</h1>${note ? `<p class="note">${escapeHtml(note)}</p>` : ''}
<form method="get" action="/interaction/${escapeHtml(uid)}">
<ul>
${buttons}
</ul>
<button type="submit" name="deny" value="1">Cancel</button>
</form></body></html>\n`;
}

/** `/interaction/:uid`: log in, deny, or show the account picker. */
async function interaction(req, res, url) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;
  if (url.searchParams.get('deny')) {
    return provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'the person cancelled the sign-in' },
      { mergeWithLastSubmission: false },
    );
  }
  if (prompt.name === 'login') {
    const email = url.searchParams.get('email') || params.login_hint;
    if (!email) return send(res, 200, 'text/html; charset=utf-8', pickerPage(uid));
    const a = byEmail.get(email.toLowerCase());
    if (!a) return send(res, 200, 'text/html; charset=utf-8', pickerPage(uid, `No account ${email}.`));
    return provider.interactionFinished(req, res, { login: { accountId: a.sub } }, { mergeWithLastSubmission: false });
  }
  // loadExistingGrant always yields a grant, so consent is not expected; accept it anyway.
  const grant = new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
  grant.addOIDCScope(params.scope || 'openid');
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const oidc = provider.callback();
server.on('request', (req, res) => {
  const url = new URL(req.url, issuer);
  if (req.method === 'GET' && /^\/interaction\/[^/]+$/.test(url.pathname)) {
    interaction(req, res, url).catch((e) => {
      send(res, 400, 'text/plain; charset=utf-8', `interaction failed: ${e.name}: ${e.message}\n`);
    });
    return;
  }
  oidc(req, res);
});

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 500).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

process.stdout.write(`READY ${issuer} kid=${jwks.keys.map((k) => k.kid).join(',')}\n`);
