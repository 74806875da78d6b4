// Drives a real headless Chromium (Debian's /usr/bin/chromium, through playwright-core)
// through usher's admin console: an admin signs in (the IdP's account picker), opens
// the plan preview, previews a plan, clicks Synchronize and waits for the report, then
// visits the status, audit and person pages; a non-admin in a separate browser context
// signs in and gets 403. Saves one screenshot per page into --out (admin-*.png). Owns
// nothing but its browser; talks to loopback only and never downloads a browser.
//
// Usage:
//   node admin.mjs --base http://127.0.0.1:PORT --admin EMAIL --user EMAIL --out DIR
//        [--timeout-ms 120000]
// Prints one JSON line on stdout: {"plan", "report", "forbidden_status", "screenshots"}
// (plan: the plan table's text, report: the sync report's text). Exits 1 with
// `admin.mjs: ...` on stderr on any failure (a screenshot of the failing page is saved
// as admin-failure.png), 2 on bad arguments.

import { join } from 'node:path';

import { chromium } from 'playwright-core';

import { die as dieAs, parseCli } from './cli.mjs';

const die = (code, message) => dieAs('admin.mjs', code, message);

const [args, timeout] = parseCli(
  'admin.mjs',
  {
    base: { type: 'string' },
    admin: { type: 'string' },
    user: { type: 'string' },
    out: { type: 'string' },
    'timeout-ms': { type: 'string', default: '120000' },
  },
  ['base', 'admin', 'user', 'out'],
);
if (!/^http:\/\/(127\.\d+\.\d+\.\d+|localhost)(:\d+)?$/.test(args.base)) {
  die(2, `--base ${args.base} must be a loopback http://HOST:PORT`);
}
const deadline = Date.now() + timeout;
const left = () => Math.max(1, deadline - Date.now());
const admin = `${args.base}/_usher/admin`;
const shots = [];

const watchdog = setTimeout(() => die(1, `timed out after ${timeout} ms (watchdog)`), timeout + 10000);
watchdog.unref();

async function shot(page, name) {
  const path = join(args.out, name);
  await page.screenshot({ path, fullPage: true, timeout: left() });
  shots.push(name);
}

// Opens `url` signed out, picks `email` on the IdP's account picker, waits to be back
// on `url`; returns the status of the last document response.
async function signIn(page, url, email) {
  let status = 0;
  page.on('response', (r) => {
    if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) status = r.status();
  });
  await page.goto(url, { timeout: left(), waitUntil: 'load' });
  if (!page.url().startsWith(url)) {
    const account = page.locator('button, a, [role=button]').filter({ hasText: email }).first();
    await account.waitFor({ state: 'visible', timeout: left() });
    await Promise.all([
      page.waitForURL((u) => u.toString().startsWith(url), { timeout: left(), waitUntil: 'load' }),
      account.click({ timeout: left() }),
    ]);
  }
  return () => status;
}

// Clicks the button labelled `label` and waits for the report page to show a result.
async function runSync(page, label) {
  await Promise.all([
    page.waitForURL((u) => u.toString().includes('/_usher/admin/report/'), { timeout: left() }),
    page.getByRole('button', { name: label, exact: true }).first().click({ timeout: left() }),
  ]);
  // The running page reloads itself (script, or meta refresh without it) until done.
  await page.locator('#sync-status').waitFor({ state: 'visible', timeout: left() });
  return (await page.innerText('main', { timeout: left() })).trim();
}

let browser;
let current;
async function run() {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    timeout: left(),
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-proxy-server',
    ],
  });
  const adminCtx = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await adminCtx.newPage();
  current = page;
  // The console's own script and stylesheet must load under its strict CSP.
  const violations = [];
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
  });
  await signIn(page, `${admin}/plan`, args.admin);
  await page.getByText('No plan yet').waitFor({ timeout: left() });
  await shot(page, 'admin-plan-empty.png');

  const planReport = await runSync(page, 'Preview plan (dry run)');
  if (!planReport.includes('Sync planned (dry run).')) throw new Error(`dry run did not plan: ${planReport.slice(0, 400)}`);
  await shot(page, 'admin-plan-report.png');

  await page.goto(`${admin}/plan`, { timeout: left(), waitUntil: 'load' });
  const plan = (await page.innerText('table.plan', { timeout: left() })).trim();
  await shot(page, 'admin-plan.png');

  const report = await runSync(page, 'Synchronize');
  await shot(page, 'admin-sync-report.png');

  for (const [path, name] of [
    ['/', 'admin-status.png'],
    ['/audit?since=1h', 'admin-audit.png'],
    [`/person?email=${encodeURIComponent(args.admin)}`, 'admin-person.png'],
  ]) {
    const r = await page.goto(`${admin}${path}`, { timeout: left(), waitUntil: 'load' });
    if (r.status() !== 200) throw new Error(`${path} answered ${r.status()}`);
    await shot(page, name);
  }

  if (violations.length) throw new Error(`CSP violations: ${violations.join(' | ').slice(0, 400)}`);

  const userCtx = await browser.newContext({ viewport: { width: 1000, height: 500 } });
  const other = await userCtx.newPage();
  current = other;
  const status = await signIn(other, `${admin}/`, args.user);
  await shot(other, 'admin-forbidden.png');
  return { plan, report, forbidden_status: status(), screenshots: shots };
}

try {
  const result = await run();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  await browser.close();
  process.exit(0);
} catch (e) {
  if (current) await current.screenshot({ path: join(args.out, 'admin-failure.png'), fullPage: true, timeout: 5000 }).catch(() => {});
  await browser?.close().catch(() => {});
  die(1, `${e.message.split('\n')[0]} (at ${current ? current.url() : '-'})`);
}
