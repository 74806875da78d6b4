// Drives a real headless Chromium (Debian's /usr/bin/chromium, through playwright-core)
// through a sign-in: open the start URL (usher), follow the IdP's account picker,
// click the account with the given email, wait to land on the expected URL prefix,
// then report where it ended. It owns nothing but a fresh temporary profile, which it
// deletes; it never downloads a browser and talks to loopback only.
//
// Usage:
//   node login.mjs --start URL --email EMAIL --expect-prefix URL_PREFIX \
//        --screenshot FILE.png [--timeout-ms 30000] [--map-host NAME=127.0.0.1:PORT ...]
// --map-host makes Chromium resolve NAME (any port) to the given loopback address, so a
// test can open usher under its public host name (e.g. http://jira.test/) while usher
// listens on an ephemeral port. Only loopback targets are accepted.
// Prints one JSON line on stdout: {"final_url", "status", "text"} (status: the HTTP
// status of the last document response, text: the page's visible text). Exits 1 with
// `login.mjs: ...` on stderr on any failure or timeout (a screenshot is still taken
// when a page is open), 2 on bad arguments.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

import { die as dieAs, parseCli } from './cli.mjs';

const die = (code, message) => dieAs('login.mjs', code, message);

const [args, timeout] = parseCli(
  'login.mjs',
  {
    start: { type: 'string' },
    email: { type: 'string' },
    'expect-prefix': { type: 'string' },
    screenshot: { type: 'string' },
    'timeout-ms': { type: 'string', default: '30000' },
    'map-host': { type: 'string', multiple: true, default: [] },
  },
  ['start', 'email', 'expect-prefix', 'screenshot'],
);
const hostRules = args['map-host'].map((m) => {
  const found = /^([A-Za-z0-9.-]+)=(127\.\d+\.\d+\.\d+|localhost)(?::(\d+))?$/.exec(m);
  if (!found) die(2, `--map-host ${m} is not NAME=127.0.0.1:PORT (loopback only)`);
  return `MAP ${found[1]} ${found[2]}${found[3] ? `:${found[3]}` : ''}`;
});
const deadline = Date.now() + timeout;
const left = () => Math.max(1, deadline - Date.now());

const profile = mkdtempSync(join(tmpdir(), 'usher-chromium-'));
let context;
// The whole run is bounded even if Chromium hangs somewhere playwright does not time out.
const watchdog = setTimeout(() => {
  rmSync(profile, { recursive: true, force: true });
  die(1, `timed out after ${timeout} ms (watchdog)`);
}, timeout + 10000);
watchdog.unref();

async function run() {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    timeout: left(),
    viewport: { width: 1000, height: 700 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-proxy-server', // loopback only, whatever the environment's proxy variables say
      ...(hostRules.length ? [`--host-resolver-rules=${hostRules.join(', ')}`] : []),
    ],
  });
  const page = context.pages()[0] || (await context.newPage());
  let status = 0;
  page.on('response', (r) => {
    if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) status = r.status();
  });
  const prefix = args['expect-prefix'];
  const landed = (u) => u.toString().startsWith(prefix);
  try {
    await page.goto(args.start, { timeout: left(), waitUntil: 'load' });
    if (!landed(page.url())) {
      // The IdP's account picker: one button (or link) per account, labelled with the email.
      const account = page
        .locator('button, a, [role=button]')
        .filter({ hasText: args.email })
        .first();
      try {
        await account.waitFor({ state: 'visible', timeout: left() });
      } catch {
        throw new Error(`no account button for ${args.email} on ${page.url()}: ${(await page.innerText('body', { timeout: 2000 }).catch(() => '')).replace(/\s+/g, ' ').slice(0, 300)}`);
      }
      await Promise.all([
        page.waitForURL(landed, { timeout: left(), waitUntil: 'load' }),
        account.click({ timeout: left() }),
      ]);
    }
    const text = (await page.innerText('body', { timeout: left() })).trim();
    await page.screenshot({ path: args.screenshot, fullPage: true, timeout: left() });
    return { final_url: page.url(), status, text };
  } catch (e) {
    await page.screenshot({ path: args.screenshot, fullPage: true, timeout: 5000 }).catch(() => {});
    throw new Error(`${e.message.split('\n')[0]} (at ${page.url()}, last status ${status})`);
  }
}

try {
  const result = await run();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  process.exit(0);
} catch (e) {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  die(1, e.message);
}
