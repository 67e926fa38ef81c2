// The web console end to end, in headless Chromium (Debian's package at
// /usr/bin/chromium, driven by playwright-core; no browser download), against
// the real binary on a fresh database. tests/api/console.rs starts
// `keyport serve` and runs this file with:
//
//   BASE_URL        http://127.0.0.1:PORT
//   SETUP_URL       the first-run link `serve` logged (…/console/setup?token=kpsetup_…)
//   SECOND_SETUP_URL (optional) the link of a second fresh server, for a
//                   first-run setup that goes wrong once (setup works once)
//   SCREENSHOT_DIR  where every page is saved at 1280 and 400 px wide
//   KEYPORT_BIN, KEYPORT_DATABASE_URL (optional) the CLI, as an independent
//                   look at the database
//
// One journey, in order, sharing one server: each step builds on the last
// (a step whose prerequisite failed is skipped, saying which). The quality
// checks that apply to every page (axe, 400 px, console errors) are collected
// along the way and asserted by the last three tests, so one bad page does not
// hide the rest of the journey.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { chromium } from 'playwright-core';
import { AxeBuilder } from '@axe-core/playwright';

const BASE_URL = (process.env.BASE_URL ?? '').replace(/\/$/, '');
const SETUP_URL = process.env.SETUP_URL ?? '';
const SECOND_SETUP_URL = process.env.SECOND_SETUP_URL ?? '';
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR ?? 'target/console-screenshots';
const KEYPORT_BIN = process.env.KEYPORT_BIN ?? '';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

assert.match(BASE_URL, /^http:\/\/127\.0\.0\.1:\d+$/, 'BASE_URL must be the server, e.g. http://127.0.0.1:8080');
assert.match(SETUP_URL, /\/console\/setup\?token=kpsetup_/, 'SETUP_URL must be the first-run link serve logged');
mkdirSync(SCREENSHOT_DIR, { recursive: true });

const ADMIN = { email: 'ana@acme.io', password: 'correct horse battery staple' };
const MEMBER = { email: 'ben@acme.io', password: 'ben likes long passphrases' };
const REFUSAL = 'The email or password is wrong, or the account is locked';
const NARROW = 400;
const WIDE = 1280;

// What the journey learns, for the steps after it.
const state = {
  signedIn: false,
  keys: {}, // name -> { name, id, clientId, secret }
  memberAdded: false,
  memberSignedIn: false,
};

// Collected on every page, asserted at the end.
const a11yIssues = []; // serious or critical axe violations
const a11yNotes = []; // minor or moderate ones: reported, not failed
const narrowIssues = []; // horizontal scrolling at 400 px
const consoleErrors = []; // console errors and uncaught exceptions
const expectedHttpErrors = []; // { path, status }: refusals the journey provokes on purpose
const favicon = []; // console errors about /favicon.ico, which Chromium asks for by itself
const requestUrls = []; // every URL the browser asked for
const referers = []; // every Referer header the browser sent
const screenshots = [];

let browser;
let currentStep = '';
const pages = new Map(); // label -> page, for failure reports

// ---------------------------------------------------------------- helpers

function expectHttpError(path, status, host = new URL(BASE_URL).host) {
  expectedHttpErrors.push({ path, status, host });
}

function isExpectedHttpError(url, text) {
  const status = Number((/status of (\d{3})/.exec(text) ?? [])[1]);
  if (!status || !url) return false;
  const { host, pathname } = new URL(url);
  return expectedHttpErrors.some((e) => e.status === status && pathname === e.path && (!e.host || e.host === host));
}

function watch(page, label) {
  pages.set(label, page);
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const url = message.location()?.url ?? '';
    if (isExpectedHttpError(url, message.text())) return;
    // Chromium asks for /favicon.ico by itself; reported, not failed.
    if (url && new URL(url).pathname === '/favicon.ico') {
      favicon.push({ page: label, text: message.text() });
      return;
    }
    consoleErrors.push({ step: currentStep, page: label, at: page.url(), text: message.text(), source: url });
  });
  page.on('pageerror', (error) => {
    consoleErrors.push({ step: currentStep, page: label, at: page.url(), text: `uncaught: ${error.stack ?? error}` });
  });
}

async function newContext(label) {
  const context = await browser.newContext({
    baseURL: BASE_URL,
    viewport: { width: WIDE, height: 800 },
    acceptDownloads: true,
  });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE_URL });
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(15_000);
  context.on('request', (request) => {
    requestUrls.push(request.url());
    const referer = request.headers().referer;
    if (referer) referers.push(referer);
  });
  const page = await context.newPage();
  watch(page, label);
  return { context, page };
}

/** A journey step: on failure, says what each open page showed. */
function step(name, needs, body) {
  test(name, async (t) => {
    const missing = needs.filter((need) => !need.ok());
    if (missing.length > 0) {
      t.skip(`needs ${missing.map((m) => m.what).join(', ')} from an earlier step that failed`);
      return;
    }
    currentStep = name;
    try {
      await body(t);
    } catch (error) {
      error.message += await describePages(name);
      throw error;
    }
  });
}

const needs = {
  admin: { what: 'the signed-in admin', ok: () => state.signedIn },
  key: (name) => ({ what: `the key "${name}"`, ok: () => Boolean(state.keys[name]) }),
  member: { what: 'the member added on the Users page', ok: () => state.memberAdded },
  memberSignedIn: { what: 'the member signed in', ok: () => state.memberSignedIn },
};

async function describePages(stepName) {
  let out = '';
  for (const [label, page] of pages) {
    if (page.isClosed()) continue;
    const file = join(SCREENSHOT_DIR, `FAILED-${slug(stepName)}-${label}.png`);
    await page.screenshot({ path: file, fullPage: true }).catch(() => {});
    const text = await page
      .evaluate(() => document.body?.innerText ?? '')
      .catch((e) => `(unreadable: ${e.message})`);
    const open = await page
      .evaluate(() => [...document.querySelectorAll('dialog[open]')].map((d) => d.id))
      .catch(() => []);
    out += `\n--- ${label} page at ${page.url()} (open dialogs: ${open.join(', ') || 'none'}; screenshot ${file}) ---\n`;
    out += text.slice(0, 2500);
  }
  return out;
}

function slug(text) {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);
}

/** Saves `name`-1280.png and `name`-400.png; at 400 px, records horizontal scrolling. */
async function shoot(page, name, { fullPage = true } = {}) {
  await page.setViewportSize({ width: WIDE, height: 800 });
  await settle(page);
  const wide = join(SCREENSHOT_DIR, `${name}-${WIDE}.png`);
  await page.screenshot({ path: wide, fullPage });
  await page.setViewportSize({ width: NARROW, height: 800 });
  await settle(page);
  const overflow = await page.evaluate((limit) => {
    const width = document.documentElement.scrollWidth;
    if (width <= limit + 2) return { width, culprits: [] };
    // The outermost elements that reach past the right edge and are not
    // inside a scrolling container of their own.
    const culprits = [];
    const scrolls = (el) => ['auto', 'scroll', 'hidden'].includes(getComputedStyle(el).overflowX);
    for (const el of document.body.querySelectorAll('*')) {
      const rect = el.getBoundingClientRect();
      if (rect.width === 0 || rect.right <= limit + 2) continue;
      let inner = false;
      for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
        if (scrolls(up) || up.getBoundingClientRect().right > limit + 2) { inner = true; break; }
      }
      if (inner) continue;
      const id = el.id ? `#${el.id}` : '';
      const cls = el.classList.length ? `.${[...el.classList].join('.')}` : '';
      culprits.push(`${el.tagName.toLowerCase()}${id}${cls} (right edge ${Math.round(rect.right)} px)`);
      if (culprits.length >= 5) break;
    }
    return { width, culprits };
  }, NARROW);
  if (overflow.width > NARROW + 2) {
    narrowIssues.push({ page: name, scrollWidth: overflow.width, culprits: overflow.culprits });
  }
  const narrow = join(SCREENSHOT_DIR, `${name}-${NARROW}.png`);
  await page.screenshot({ path: narrow, fullPage });
  await page.setViewportSize({ width: WIDE, height: 800 });
  await settle(page);
  screenshots.push(wide, narrow);
}

async function settle(page) {
  await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
}

/** axe-core on the page as it is now. */
async function axe(page, name) {
  const results = await new AxeBuilder({ page }).analyze();
  for (const violation of results.violations) {
    const entry = {
      page: name,
      id: violation.id,
      impact: violation.impact,
      help: violation.help,
      nodes: violation.nodes.slice(0, 5).map((n) => `${n.target.join(' ')}: ${n.html.slice(0, 160)}`),
    };
    if (violation.impact === 'serious' || violation.impact === 'critical') a11yIssues.push(entry);
    else a11yNotes.push(entry);
  }
}

/** Runs `trigger` and waits for the page it leads to (a form post, a redirect). */
async function navigation(page, trigger) {
  const navigated = page.waitForEvent('framenavigated', { predicate: (frame) => frame === page.mainFrame() });
  await trigger();
  await navigated;
  await page.waitForLoadState('load');
}

async function goto(page, path, status = 200) {
  const response = await page.goto(path);
  assert.ok(response, `no response for ${path}`);
  assert.equal(response.status(), status, `GET ${path} answered ${response.status()}, not ${status}`);
  return response;
}

async function heading(page) {
  return (await page.locator('h1').first().textContent())?.trim();
}

async function notice(page) {
  const box = page.locator('main .notice[role="status"]');
  return (await box.count()) ? (await box.first().textContent()).trim() : '(no notice)';
}

async function signIn(page, who, { expect = 'ok' } = {}) {
  if (!new URL(page.url()).pathname.endsWith('/console/sign-in')) await goto(page, '/console/sign-in');
  await page.getByLabel('Email').fill(who.email);
  await page.getByLabel('Password').fill(who.password);
  const answer = page.waitForResponse(
    (r) => r.url() === `${BASE_URL}/console/sign-in` && r.request().method() === 'POST',
  );
  await navigation(page, () => page.getByRole('button', { name: 'Sign in' }).click());
  const response = await answer;
  if (expect === 'ok') {
    assert.equal(response.status(), 303, `signing in as ${who.email} answered ${response.status()}`);
    await page.waitForURL(/\/console\/overview$/);
  } else {
    assert.equal(
      new URL(page.url()).pathname,
      '/console/sign-in',
      `a refused sign-in as ${who.email} stays on the sign-in page`,
    );
    const error = (await page.locator('#sign-in-error').textContent())?.trim();
    assert.ok(error?.includes(REFUSAL), `the refusal is the generic one, got: ${error}`);
  }
  return response;
}

async function signOut(page) {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/console\/sign-in$/);
}

function row(page, key) {
  return page.locator(`tr[data-client-id="${key.clientId}"]`);
}

/** Waits until focus is inside an open Actions menu (the script moves it there). */
async function focusInMenu(page) {
  await page.waitForFunction(() => Boolean(document.activeElement?.closest('.row-menu:popover-open')));
}

/** Opens the row's Actions menu (one button per row) and returns the menu. */
async function rowMenu(page, key) {
  const line = row(page, key);
  const menu = line.locator('.row-menu');
  if (!(await menu.isVisible())) await line.getByRole('button', { name: /^Actions/ }).click();
  await menu.waitFor({ state: 'visible' });
  await focusInMenu(page);
  return menu;
}

/** The item `name` of the row's Actions menu, the menu opened. */
async function rowAction(page, key, name, { role = 'button', exact = false } = {}) {
  return (await rowMenu(page, key)).getByRole(role, { name, exact });
}

async function keyStatus(page, key) {
  return (await row(page, key).locator('.status').textContent())?.trim();
}

/** Opens the "Create key" dialog; returns its form. */
async function openCreate(page) {
  await page.locator('#create-open').click();
  const form = page.locator('#create-key');
  await form.waitFor({ state: 'visible' });
  return form;
}

/** Ticks every permission the form offers. */
async function tickAll(form) {
  for (const box of await form.locator('input[name="scope"]').all()) await box.check();
}

/**
 * Creates a key from the "Create key" dialog, with every permission the
 * person holds (none is ticked to start with); leaves the secret's dialog open.
 */
async function createKey(page, name, { sigv4 = false } = {}) {
  const form = await openCreate(page);
  const ticked = await form.locator('input[name="scope"]:checked').count();
  assert.equal(ticked, 0, 'the create form starts with no permission ticked');
  assert.equal(await form.locator('input[name="expiry"][value="90"]').isChecked(), true, 'expiry defaults to 90 days');
  await form.getByLabel('Name', { exact: true }).fill(name);
  await tickAll(form);
  if (sigv4) {
    await form.locator('details.advanced summary').click();
    await form.getByLabel('Allow signed requests (Signature Version 4)').check();
  }
  const answer = page.waitForResponse(
    (r) => r.url() === `${BASE_URL}/console/keys` && r.request().method() === 'POST',
  );
  await form.getByRole('button', { name: 'Create key' }).click();
  const response = await answer;
  const body = await response.json();
  assert.equal(response.status(), 201, `creating "${name}" answered ${response.status()}: ${JSON.stringify(body)}`);
  assert.equal(response.headers()['cache-control'], 'no-store', 'the answer that carries a secret is never cached');
  const dialog = page.getByRole('dialog', { name: 'Copy your new secret' });
  await dialog.waitFor({ state: 'visible' });
  const clientId = (await dialog.locator('#created-client-id').textContent()).trim();
  const secret = (await dialog.locator('#created-secret').textContent()).trim();
  assert.match(clientId, /^kpc_/, 'the dialog shows the client ID');
  assert.match(secret, /^kps_/, 'the dialog shows the secret');
  assert.equal(clientId, body.client_id);
  const key = { name, id: body.id, clientId, secret };
  return { key, dialog };
}

/** Ticks "I have stored the secret" and closes the dialog with Done, which reloads the page. */
async function closeCreated(page, dialog) {
  const done = dialog.getByRole('button', { name: 'Done' });
  assert.equal(await done.isDisabled(), true, 'Done waits for "I have stored the secret"');
  await dialog.getByLabel('I have stored the secret').check();
  const reloaded = page.waitForResponse(
    (r) => new URL(r.url()).pathname === '/console/keys' && r.request().method() === 'GET' && r.request().resourceType() === 'document',
  );
  await navigation(page, () => done.click());
  return reloaded;
}

async function createAndClose(page, name) {
  const { key, dialog } = await createKey(page, name);
  await closeCreated(page, dialog);
  state.keys[name] = key;
  return key;
}

async function noSecretIn(page, secret, where) {
  const html = await page.content();
  assert.ok(!html.includes(secret), `the secret is in the page HTML ${where}`);
  const storage = await page.evaluate(() => JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage } }));
  assert.ok(!storage.includes(secret), `the secret is in localStorage or sessionStorage ${where}: ${storage}`);
  assert.ok(!page.url().includes(secret), `the secret is in the URL ${where}`);
}

/** Presses Tab until `target` has focus (keyboard only), at most 200 times. */
async function tabTo(page, target) {
  const handle = await target.elementHandle();
  for (let i = 0; i < 200; i += 1) {
    if (await handle.evaluate((el) => el === document.activeElement)) return i;
    await page.keyboard.press('Tab');
  }
  assert.fail('Tab never reached the button');
}

/** The day `days` from today (UTC), as a date input wants it. */
function isoDay(days) {
  return new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10);
}

function cli(...args) {
  return promisify(execFile)(KEYPORT_BIN, ['--json', ...args], { env: process.env, timeout: 30_000 })
    .then(({ stdout }) => JSON.parse(stdout));
}

// ---------------------------------------------------------------- journey

let admin; // { context, page }
let member;

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  admin = await newContext('admin');
});

after(async () => {
  await browser?.close();
  console.log(`\nscreenshots (${screenshots.length}) in ${SCREENSHOT_DIR}:\n  ${screenshots.map((s) => s.split('/').pop()).join('\n  ')}`);
  console.log(
    favicon.length
      ? `favicon: ${favicon.length} console error(s) for /favicon.ico (not failed), e.g. "${favicon[0].text}"`
      : 'favicon: no console error for /favicon.ico',
  );
  if (a11yNotes.length) {
    console.log(`axe, minor and moderate (not failed):\n${JSON.stringify(a11yNotes, null, 2)}`);
  }
});

step('first-run setup creates Acme and its admin, and the link works once', [], async () => {
  const { page } = admin;
  await goto(page, SETUP_URL);
  assert.equal(await heading(page), 'Set up Keyport');
  await axe(page, 'setup');
  await shoot(page, 'setup');

  // Too short a password (the browser's own check bypassed): refused on
  // the page, and the link still works.
  await page.locator('form').evaluate((form) => { form.noValidate = true; });
  await page.getByLabel('Company name').fill('Acme');
  await page.getByLabel('Your email').fill(ADMIN.email);
  await page.getByLabel('Password').fill('too short');
  expectHttpError('/console/setup', 422);
  await page.getByRole('button', { name: 'Create company' }).click();
  await page.locator('#setup-error').waitFor();
  assert.match(await page.locator('#setup-error').textContent(), /at least 12 characters/);
  assert.equal(await page.getByLabel('Company name').inputValue(), 'Acme', 'the form keeps what was typed');

  await page.getByLabel('Password').fill(ADMIN.password);
  await page.getByRole('button', { name: 'Create company' }).click();
  await page.waitForURL(/\/console\/overview$/);
  assert.equal(await heading(page), 'Overview');
  assert.match(await page.locator('nav .who').textContent(), /ana@acme\.io \(admin\)/);
  state.signedIn = true;

  const cookie = (await admin.context.cookies()).find((c) => c.name === 'keyport_session');
  assert.ok(cookie, 'a session cookie is set');
  assert.equal(cookie.httpOnly, true, 'the session cookie is HttpOnly');
  assert.equal(cookie.sameSite, 'Strict', 'the session cookie is SameSite=Strict');

  const again = await admin.context.newPage();
  watch(again, 'setup-again');
  expectHttpError('/console/setup', 404);
  const response = await again.goto(SETUP_URL);
  assert.equal(response.status(), 404, 'the used setup link is refused');
  assert.match(await again.locator('body').textContent(), /not valid/);
  await again.close();
  pages.delete('setup-again');
});

step('sign out, then sign in again', [needs.admin], async () => {
  const { page } = admin;
  await signOut(page);
  state.signedIn = false;
  assert.equal(await notice(page), 'You are signed out.');
  await axe(page, 'sign-in');
  await shoot(page, 'sign-in');
  // The old session is over: the keys page sends us back to sign in.
  await page.goto('/console/keys');
  await page.waitForURL(/\/console\/sign-in$/);
  await signIn(page, ADMIN);
  assert.equal(await heading(page), 'Overview');
  state.signedIn = true;
});

step('create a key: the secret is shown once, copied, and left out of the Postman collection', [needs.admin], async () => {
  const { page } = admin;
  await goto(page, '/console/keys');
  await axe(page, 'keys-empty');
  const { key, dialog } = await createKey(page, 'ERP nightly sync');
  await axe(page, 'create-dialog');
  await shoot(page, 'create-dialog', { fullPage: false });
  assert.match(await dialog.textContent(), /shown only once/);
  assert.ok(
    await dialog.evaluate((d) => d.contains(document.activeElement)),
    'focus moved into the dialog',
  );

  await dialog.getByRole('button', { name: 'Copy secret' }).click();
  await dialog.getByRole('button', { name: 'Copied' }).waitFor();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert.equal(copied, key.secret, 'Copy secret puts the secret on the clipboard');

  const curl = await dialog.locator('#created-curl').textContent();
  assert.ok(curl.includes(key.clientId), `the curl snippet names the client ID: ${curl}`);
  assert.match(curl, /grant_type=client_credentials/);

  const [download] = await Promise.all([
    page.waitForEvent('download'),
    dialog.getByRole('link', { name: 'Download Postman collection' }).click(),
  ]);
  const text = readFileSync(await download.path(), 'utf8');
  const collection = JSON.parse(text);
  const variable = (name) => collection.variable?.find((v) => v.key === name)?.value;
  assert.equal(variable('client_id'), key.clientId, 'the collection carries the client ID');
  assert.equal(variable('base_url'), BASE_URL, 'the collection carries the server');
  assert.ok(!text.includes(key.secret), 'the collection never carries the secret');
  state.keys[key.name] = key;
});

step('Test connection in the creation dialog shows who the key acts as, a token and a countdown', [needs.key('ERP nightly sync')], async () => {
  const { page } = admin;
  const dialog = page.getByRole('dialog', { name: 'Copy your new secret' });
  await dialog.getByRole('button', { name: 'Test connection' }).click();
  const result = dialog.locator('#created-test-result .result.ok');
  await result.waitFor({ timeout: 10_000 }).catch(async () => {
    assert.fail(`no success result: ${await dialog.locator('#created-test-result').textContent()}`);
  });
  const text = await result.textContent();
  assert.match(text, /Acts as .+\(admin\)/, `says who the key acts as: ${text}`);
  assert.match(await result.locator('[data-field="scope"]').textContent(), /keys:manage/);
  assert.match(await result.locator('[data-field="token"]').textContent(), /^eyJ[\w-]+\.[\w-]+\.[\w-]+$/);
  const countdown = async () => Number(/expires in (\d+) s/.exec(await result.locator('[data-field="countdown"]').textContent())?.[1]);
  const first = await countdown();
  assert.ok(first > 0 && first <= 600, `a countdown in seconds: ${first}`);
  await page.waitForTimeout(2100);
  const later = await countdown();
  assert.ok(later < first, `the countdown runs (${first} s, then ${later} s)`);
});

step('closing the dialog loses the secret: not in the page, after a reload, in storage or a cache', [needs.key('ERP nightly sync')], async () => {
  const { page } = admin;
  const key = state.keys['ERP nightly sync'];
  const dialog = page.getByRole('dialog', { name: 'Copy your new secret' });
  const reloaded = await closeCreated(page, dialog);
  assert.equal(reloaded.headers()['cache-control'], 'no-store', 'GET /console/keys has Cache-Control: no-store');
  const csp = reloaded.headers()['content-security-policy'] ?? '';
  assert.ok(csp.includes("frame-ancestors 'none'") && !/unsafe-(inline|eval)/.test(csp), `a strict CSP: ${csp}`);
  assert.equal(await page.getByRole('dialog').count(), 0, 'no dialog is open after closing');
  await noSecretIn(page, key.secret, 'after closing the dialog');
  await page.reload();
  await noSecretIn(page, key.secret, 'after a reload');
  assert.equal(await row(page, key).count(), 1, 'the key is listed');
  assert.equal(await keyStatus(page, key), 'active');
  const leaked = requestUrls.filter((url) => url.includes(key.secret));
  assert.deepEqual(leaked, [], 'the secret never appears in a URL the browser asked for');
  await axe(page, 'keys');
  await shoot(page, 'keys');
});

step('Test connection from a row: a wrong secret shows invalid_client, the right one a token', [needs.key('ERP nightly sync')], async () => {
  const { page } = admin;
  const erp = state.keys['ERP nightly sync'];
  const other = await createAndClose(page, 'Power BI dashboard');
  // The row's menu, open, at both widths (opened anew at each, beside its button).
  await page.setViewportSize({ width: WIDE, height: 800 });
  await rowMenu(page, erp);
  await axe(page, 'keys-menu');
  await page.screenshot({ path: join(SCREENSHOT_DIR, `keys-menu-${WIDE}.png`) });
  await page.keyboard.press('Escape');
  await page.setViewportSize({ width: NARROW, height: 800 });
  await row(page, erp).getByRole('button', { name: /^Actions/ }).evaluate((b) => b.scrollIntoView({ block: 'start' }));
  await rowMenu(page, erp);
  await settle(page);
  await page.screenshot({ path: join(SCREENSHOT_DIR, `keys-menu-${NARROW}.png`) });
  screenshots.push(join(SCREENSHOT_DIR, `keys-menu-${WIDE}.png`), join(SCREENSHOT_DIR, `keys-menu-${NARROW}.png`));
  await page.keyboard.press('Escape');
  await page.setViewportSize({ width: WIDE, height: 800 });
  await (await rowAction(page, erp, 'Test connection')).click();
  const dialog = page.getByRole('dialog', { name: 'Test connection' });
  await dialog.waitFor();
  assert.equal(await dialog.getByLabel('Client ID').inputValue(), erp.clientId);
  assert.ok(await dialog.getByLabel('Secret').evaluate((el) => el === document.activeElement), 'the secret field has focus');
  // A real secret of another key: well formed, but not this key's.
  await dialog.getByLabel('Secret').fill(other.secret);
  expectHttpError('/oauth/token', 401);
  await dialog.getByRole('button', { name: 'Test', exact: true }).click();
  const refused = dialog.locator('#test-result .result.bad');
  await refused.waitFor();
  assert.match(await refused.textContent(), /invalid_client/, 'the exact error code is shown');
  assert.match(await refused.textContent(), /The secret does not match this key/, 'it says the secret is wrong');
  await axe(page, 'test-dialog');
  await shoot(page, 'test-dialog', { fullPage: false });

  await dialog.getByLabel('Secret').fill(erp.secret);
  await dialog.getByRole('button', { name: 'Test', exact: true }).click();
  await dialog.locator('#test-result .result.ok').waitFor();
  assert.match(await dialog.locator('#test-result').textContent(), /expires in \d+ s/);

  // The right secret of a key disabled meanwhile: it says the key is
  // disabled, not that the secret is wrong.
  const csrf = await page.locator('input[name="csrf"]').first().inputValue();
  const change = (what) => page.request.post(`/console/keys/${erp.id}/${what}`, {
    form: { csrf }, headers: { Origin: BASE_URL }, maxRedirects: 0,
  });
  assert.equal((await change('disable')).status(), 303, 'disabled');
  await dialog.getByRole('button', { name: 'Test', exact: true }).click();
  const disabled = dialog.locator('#test-result .result.bad');
  await disabled.waitFor();
  assert.match(await disabled.textContent(), /This key is disabled: enable it/, `it says why: ${await disabled.textContent()}`);
  assert.doesNotMatch(await disabled.textContent(), /secret does not match/);
  assert.equal((await change('enable')).status(), 303, 'enabled again');
  await dialog.getByRole('button', { name: 'Close' }).click();
  await dialog.waitFor({ state: 'hidden' });
});

step('a SigV4 key: the checkbox, its curl --aws-sigv4 command, and Test connection signed in the browser', [needs.key('ERP nightly sync')], async () => {
  const { page } = admin;
  const erp = state.keys['ERP nightly sync'];
  const tokenRequests = () => requestUrls.filter((url) => url.endsWith('/oauth/token')).length;
  const before = tokenRequests();
  const { key, dialog } = await createKey(page, 'ERP sync', { sigv4: true });
  const command = (await dialog.locator('#created-sigv4-curl').textContent()).trim();
  assert.equal(
    command,
    `curl --aws-sigv4 "aws:amz:us-east-1:keyport" --user "${key.clientId}:${key.secret}" ${BASE_URL}/api/v1/whoami`,
  );
  await dialog.getByRole('button', { name: 'Copy command' }).nth(1).click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), command);
  await dialog.getByRole('button', { name: 'Test connection' }).click();
  const result = dialog.locator('#created-test-result .result.ok');
  await result.waitFor({ timeout: 10_000 }).catch(async () => {
    assert.fail(`no success result: ${await dialog.locator('#created-test-result').textContent()}`);
  });
  assert.match(await result.textContent(), /Signed with Signature Version 4: acts as .+\(admin\)/);
  assert.equal(tokenRequests(), before, 'a SigV4 test asks for no token');
  await closeCreated(page, dialog);
  await noSecretIn(page, key.secret, 'after closing the SigV4 dialog');

  // Its row: a SigV4 badge, the command (without the secret), and a signed test.
  const line = row(page, key);
  assert.match(await line.textContent(), /SigV4/);
  assert.doesNotMatch(await row(page, erp).textContent(), /SigV4/);
  await (await rowAction(page, key, 'Copy curl (SigV4)')).click();
  assert.equal(
    await page.evaluate(() => navigator.clipboard.readText()),
    `curl --aws-sigv4 "aws:amz:us-east-1:keyport" --user "${key.clientId}:SECRET" ${BASE_URL}/api/v1/whoami`,
  );
  await (await rowAction(page, key, 'Test connection')).click();
  const test = page.getByRole('dialog', { name: 'Test connection' });
  await test.waitFor();
  assert.match(await test.textContent(), /the secret never leaves it/);
  await test.getByLabel('Secret').fill(erp.secret);
  expectHttpError('/api/v1/whoami', 401);
  await test.getByRole('button', { name: 'Test', exact: true }).click();
  const refused = test.locator('#test-result .result.bad');
  await refused.waitFor();
  assert.match(await refused.textContent(), /signature_mismatch/, 'the exact error code is shown');
  await test.getByLabel('Secret').fill(key.secret);
  await test.getByRole('button', { name: 'Test', exact: true }).click();
  await test.locator('#test-result .result.ok').waitFor();
  assert.match(await test.locator('#test-result').textContent(), /Signed with Signature Version 4/);
  await axe(page, 'test-dialog-sigv4');
  await test.getByRole('button', { name: 'Close' }).click();
  await test.waitFor({ state: 'hidden' });
  assert.equal(tokenRequests(), before, 'still no token request');
  assert.deepEqual(requestUrls.filter((url) => url.includes(key.secret)), []);

  // Revoked again, so the journey's key count is as before.
  await (await rowAction(page, key, 'Revoke')).click();
  const revoke = page.getByRole('dialog', { name: `Revoke ${key.name}?` });
  await navigation(page, () => revoke.getByRole('button', { name: 'Revoke' }).click());
  assert.equal(await keyStatus(page, key), 'revoked');
});

step('revoke a key with one confirmation', [needs.key('Power BI dashboard')], async () => {
  const { page } = admin;
  const key = state.keys['Power BI dashboard'];
  await (await rowAction(page, key, 'Revoke')).click();
  const dialog = page.getByRole('dialog', { name: `Revoke ${key.name}?` });
  await dialog.waitFor();
  await axe(page, 'revoke-dialog');
  await shoot(page, 'revoke-dialog', { fullPage: false });
  await navigation(page, () => dialog.getByRole('button', { name: 'Revoke' }).click());
  assert.equal(new URL(page.url()).pathname, '/console/keys');
  assert.equal(await notice(page), `Key ${key.name} is revoked.`);
  assert.equal(await keyStatus(page, key), 'revoked');
  const menu = await rowMenu(page, key);
  assert.equal(await menu.getByRole('button', { name: 'Test connection' }).count(), 0, 'a revoked key offers no Test connection');
  assert.equal(await menu.getByRole('button', { name: 'Revoke' }).count(), 0, 'nor Revoke again');
  assert.equal(await menu.getByRole('button', { name: 'Delete…' }).count(), 1, 'Delete is still offered');
  await page.keyboard.press('Escape');
  await menu.waitFor({ state: 'hidden' });
});

step('delete by typing the key\'s name (keyboard only, any case); the webhook-signing key cannot be deleted', [needs.key('ERP nightly sync')], async () => {
  const { page } = admin;
  const erp = state.keys['ERP nightly sync'];
  const key = await createAndClose(page, 'Old importer');

  // The first key signs webhooks: its Delete is disabled, and says why.
  const erpRow = row(page, erp);
  assert.equal(await erpRow.locator('.badge', { hasText: 'Signs webhooks' }).count(), 1, 'the first key signs webhooks');
  const blocked = await rowAction(page, erp, 'Delete…', { exact: true });
  assert.equal(await blocked.isDisabled(), true, 'Delete is disabled on the key that signs webhooks');
  const why = await blocked.evaluate((b) => document.getElementById(b.getAttribute('aria-describedby'))?.textContent ?? '');
  assert.match(why, /Signs webhooks/, `the disabled Delete explains itself: "${why}"`);

  // Keyboard only: Tab to Delete, Enter, focus is inside, Escape closes,
  // focus returns to the button.
  await page.keyboard.press('Escape'); // the webhook key's menu
  // Keyboard only: Tab to the row's Actions, Enter opens the menu with
  // focus on its first item, End reaches Delete, Enter opens the dialog,
  // Escape closes it and focus returns to Actions.
  const opener = row(page, key).getByRole('button', { name: /^Actions/ });
  const menu = row(page, key).locator('.row-menu');
  await page.locator('body').evaluate(() => document.activeElement?.blur());
  await tabTo(page, opener);
  await page.keyboard.press('Enter');
  await menu.waitFor({ state: 'visible' });
  await focusInMenu(page);
  assert.equal(await opener.getAttribute('aria-expanded'), 'true', 'the Actions button says the menu is open');
  assert.ok(await menu.evaluate((m) => m.contains(document.activeElement)), 'Enter opened the menu and moved focus into it');
  await page.keyboard.press('End');
  assert.equal(await page.evaluate(() => document.activeElement.textContent.trim()), 'Delete…', 'End reaches Delete, the last item');
  await page.keyboard.press('Escape');
  await menu.waitFor({ state: 'hidden' });
  assert.ok(await opener.evaluate((b) => b === document.activeElement), 'Escape closed the menu and focus returned to Actions');
  assert.equal(await opener.getAttribute('aria-expanded'), 'false', 'the Actions button says the menu is closed');
  await page.keyboard.press('Enter');
  await menu.waitFor({ state: 'visible' });
  await focusInMenu(page);
  await page.keyboard.press('End');
  await page.keyboard.press('Enter');
  const dialog = page.getByRole('dialog', { name: `Delete ${key.name}?` });
  await dialog.waitFor();
  assert.equal(await menu.isVisible(), false, 'the menu closed when its item opened the dialog');
  assert.ok(await dialog.evaluate((d) => d.contains(document.activeElement)), 'Enter opened the dialog and moved focus into it');
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  assert.ok(await opener.evaluate((b) => b === document.activeElement), 'Escape closed the dialog and focus returned to Actions');

  await page.keyboard.press('Enter');
  await menu.waitFor({ state: 'visible' });
  await focusInMenu(page);
  await page.keyboard.press('End');
  await page.keyboard.press('Enter');
  await dialog.waitFor();
  const phrase = await dialog.locator('.phrase').textContent();
  assert.equal(phrase, key.name, 'the dialog asks for the key\'s name');
  const submit = dialog.getByRole('button', { name: 'Delete key' });
  const says = dialog.locator('[data-mismatch]');
  assert.equal(await submit.isDisabled(), true, 'disabled before anything is typed');
  await page.keyboard.type(key.name.slice(0, -1));
  assert.equal(await submit.isDisabled(), true, 'disabled with a name one character short');
  assert.match(await says.textContent(), /not complete/);
  await dialog.getByLabel('The key\'s name').fill('Old exporter');
  assert.equal(await submit.isDisabled(), true, 'disabled with another name');
  assert.match(await says.textContent(), /does not match/, 'it says when the name does not match');
  await dialog.getByLabel('The key\'s name').fill(key.name.toUpperCase());
  assert.equal(await submit.isDisabled(), false, 'the name in other case is accepted');
  await dialog.getByLabel('The key\'s name').fill('');
  await axe(page, 'delete-dialog');
  await shoot(page, 'delete-dialog', { fullPage: false });

  // The server refuses a wrong phrase too (the page's check bypassed).
  expectHttpError(`/console/keys/${key.id}/delete`, 409);
  await dialog.locator('form').evaluate((form) => {
    form.querySelector('[name="confirm"]').value = 'Old exporter';
    form.submit();
  });
  await page.waitForURL(new RegExp(`/console/keys/${key.id}/delete$`));
  assert.match(await page.locator('main > p.error').textContent(), /not the key's name/);
  assert.equal(await row(page, key).count(), 1, 'a wrong phrase deleted nothing');

  await goto(page, '/console/keys');
  await tabTo(page, row(page, key).getByRole('button', { name: /^Actions/ }));
  await page.keyboard.press('Enter');
  await row(page, key).locator('.row-menu').waitFor({ state: 'visible' });
  await focusInMenu(page);
  await page.keyboard.press('End');
  await page.keyboard.press('Enter');
  await dialog.waitFor();
  await page.keyboard.type(key.name);
  assert.equal(await submit.isDisabled(), false, 'the name enables Delete key');
  await page.keyboard.press('Tab'); // past the phrase field, to "Delete key"
  assert.ok(await submit.evaluate((b) => b === document.activeElement), 'Tab reaches Delete key');
  await navigation(page, () => page.keyboard.press('Enter'));
  assert.equal(new URL(page.url()).pathname, '/console/keys');
  assert.equal(await notice(page), `Key ${key.name} is deleted.`);
  assert.equal(await row(page, key).count(), 0, 'the key is gone');
  delete state.keys[key.name];
});

step('"Use with webhooks" moves the Signs webhooks badge after a confirmation', [needs.key('ERP nightly sync')], async () => {
  const { page } = admin;
  const erp = state.keys['ERP nightly sync'];
  const key = await createAndClose(page, 'Webhook sender');
  const badge = (k) => row(page, k).locator('.badge', { hasText: 'Signs webhooks' });

  // Cancel changes nothing.
  await (await rowAction(page, key, 'Use with webhooks')).click();
  const dialog = page.getByRole('dialog', { name: `Use ${key.name} with webhooks?` });
  await dialog.waitFor();
  await axe(page, 'webhook-dialog');
  await shoot(page, 'webhook-dialog', { fullPage: false });
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await badge(erp).count(), 1, 'Cancel left the mark where it was');

  await (await rowAction(page, key, 'Use with webhooks')).click();
  await navigation(page, () => dialog.getByRole('button', { name: 'Confirm' }).click());
  assert.equal(new URL(page.url()).pathname, '/console/keys');
  assert.equal(await notice(page), `Key ${key.name} now signs webhooks.`);
  assert.equal(await badge(key).count(), 1, 'the badge is on the new key');
  assert.equal(await badge(erp).count(), 0, 'and no longer on the old one');
  assert.equal(await (await rowAction(page, key, 'Delete…', { exact: true })).isDisabled(), true);
  await page.keyboard.press('Escape');
  assert.equal(await (await rowAction(page, erp, 'Delete…', { exact: true })).isDisabled(), false);
  await page.keyboard.press('Escape');
});

step('roll a key: its successor\'s secret is shown once and takes the webhook mark; the old key stays active for the grace', [needs.key('Webhook sender')], async () => {
  const { page } = admin;
  const old = state.keys['Webhook sender'];
  await (await rowAction(page, old, 'Roll')).click();
  const dialog = page.getByRole('dialog', { name: `Roll ${old.name}?` });
  await dialog.waitFor();
  await axe(page, 'roll-dialog');
  await dialog.getByLabel('Grace period').selectOption('3600');
  const answer = page.waitForResponse((r) => new URL(r.url()).pathname === `/console/keys/${old.id}/roll`);
  await navigation(page, () => dialog.getByRole('button', { name: 'Roll key' }).click());
  const response = await answer;
  assert.equal(response.status(), 201);
  assert.equal(response.headers()['cache-control'], 'no-store', 'the page that carries the new secret is never cached');
  const created = page.getByRole('dialog', { name: 'Copy your new secret' });
  await created.waitFor({ state: 'visible' });
  const clientId = (await created.locator('#created-client-id').textContent()).trim();
  const secret = (await created.locator('#created-secret').textContent()).trim();
  assert.match(secret, /^kps_/);
  assert.notEqual(clientId, old.clientId);
  await closeCreated(page, created);
  await noSecretIn(page, secret, 'the keys page after closing the roll dialog');
  const successor = { name: old.name, clientId };
  assert.equal(await row(page, successor).locator('.badge', { hasText: 'Signs webhooks' }).count(), 1, 'the mark moved to the successor');
  assert.equal(await keyStatus(page, old), 'active', 'the old key works during the grace');
  assert.notEqual((await row(page, old).locator('td[data-label="Expires"]').textContent()).trim(), 'never');
});

step('disable a key, then enable it again', [needs.key('ERP nightly sync')], async () => {
  const { page } = admin;
  const key = state.keys['ERP nightly sync'];
  const disable = await rowAction(page, key, 'Disable', { exact: true });
  await navigation(page, () => disable.click());
  assert.equal(await notice(page), `Key ${key.name} is disabled: it is refused until enabled.`);
  assert.equal(await keyStatus(page, key), 'disabled');
  // Refused at once at the token endpoint.
  const refused = await page.request.post('/oauth/token', {
    headers: { Authorization: 'Basic ' + Buffer.from(`${key.clientId}:${key.secret}`).toString('base64') },
    form: { grant_type: 'client_credentials' },
  });
  assert.equal(refused.status(), 401, 'a disabled key gets no token');
  const enable = await rowAction(page, key, 'Enable', { exact: true });
  await navigation(page, () => enable.click());
  assert.equal(await keyStatus(page, key), 'active');
  const back = await page.request.post('/oauth/token', {
    headers: { Authorization: 'Basic ' + Buffer.from(`${key.clientId}:${key.secret}`).toString('base64') },
    form: { grant_type: 'client_credentials' },
  });
  assert.equal(back.status(), 200, 'enabled again, it gets tokens');
});

step('a key\'s page: status, a usage chart with its table, events, settings, and the danger zone last', [needs.key('ERP nightly sync')], async () => {
  const { page } = admin;
  const key = state.keys['ERP nightly sync'];
  await goto(page, '/console/keys');
  await navigation(page, () => row(page, key).getByRole('link', { name: key.name }).click());
  assert.equal(new URL(page.url()).pathname, `/console/keys/${key.id}`);
  assert.equal(await heading(page), key.name);
  const chart = page.getByRole('img', { name: /Use over the last 24 hours/ });
  assert.equal(await chart.count(), 1, 'the chart is an image with a title');
  assert.match(await page.locator('#chart-desc').textContent(), /Tokens issued: \d+/);
  assert.equal(await page.locator('#usage-table tfoot td').count(), 5, 'the table totals every outcome');
  const sections = await page.locator('main > section > h2').evaluateAll((hs) => hs.map((h) => h.textContent.trim()));
  assert.equal(sections.at(-1), 'Danger zone', `the danger zone is last: ${sections.join(', ')}`);
  assert.ok(sections.includes('Events'), 'an admin sees the key\'s events');
  assert.match(await page.locator('ul.events').textContent(), /Key created by ana@acme\.io/);
  await axe(page, 'key-page');
  await shoot(page, 'key-page');
  await navigation(page, () => page.getByRole('link', { name: '30 days' }).click());
  assert.equal(await page.getByRole('img', { name: /last 30 days/ }).count(), 1);
  await axe(page, 'key-page-30d');
  await shoot(page, 'key-page-30d');
  // Disable from the danger zone comes back to the page.
  await navigation(page, () => page.locator('.danger-zone').getByRole('button', { name: 'Disable' }).click());
  assert.equal(new URL(page.url()).pathname, `/console/keys/${key.id}`);
  assert.equal((await page.locator('#key-status').textContent()).trim(), 'disabled');
  await navigation(page, () => page.locator('.danger-zone').getByRole('button', { name: 'Enable' }).click());
  assert.equal((await page.locator('#key-status').textContent()).trim(), 'active');
});

step('a key\'s settings change on its page, and the API shows the change; a bad address is refused in a sentence', [needs.key('ERP nightly sync')], async () => {
  const { page } = admin;
  const key = state.keys['ERP nightly sync'];
  await goto(page, `/console/keys/${key.id}`);
  const settings = page.locator('#key-settings');
  const save = () => navigation(page, () => settings.getByRole('button', { name: 'Save settings' }).click());
  await settings.getByLabel('Allowed addresses').fill('127.0.0.0/8\nnot-an-address');
  expectHttpError(`/console/keys/${key.id}/settings`, 422);
  await save();
  const error = (await page.locator('#settings-error').textContent()).trim();
  assert.match(error, /^An allowed address is not valid: .*Nothing was changed\.$/s, `a plain sentence: ${error}`);
  assert.doesNotMatch(error, /allowed_sources/, 'no setting names in the sentence');
  assert.equal(await settings.getByLabel('Allowed addresses').getAttribute('aria-invalid'), 'true');
  await axe(page, 'key-settings-refused');

  await settings.getByLabel('Allowed addresses').fill('127.0.0.0/8\n10.0.0.0/8');
  await settings.getByLabel('Rate for reports and webhooks').fill('600/min');
  await settings.getByLabel('Description').fill('The warehouse export, nightly');
  await save();
  assert.equal(new URL(page.url()).pathname, `/console/keys/${key.id}`);
  assert.equal(await notice(page), `Settings of ${key.name} saved.`);
  assert.equal(await settings.getByLabel('Rate for reports and webhooks').inputValue(), '600/60s');

  // The API, with a token of the key itself, shows the new settings.
  const token = await page.request.post('/oauth/token', {
    headers: { Authorization: 'Basic ' + Buffer.from(`${key.clientId}:${key.secret}`).toString('base64') },
    form: { grant_type: 'client_credentials' },
  });
  assert.equal(token.status(), 200, 'the key still gets tokens from 127.0.0.1');
  const { access_token: bearer } = await token.json();
  const shown = await (await page.request.get(`/api/v1/keys/${key.id}`, { headers: { Authorization: `Bearer ${bearer}` } })).json();
  assert.deepEqual(shown.allowed_sources, ['127.0.0.0/8', '10.0.0.0/8'], JSON.stringify(shown));
  assert.equal(shown.rate_limit?.requests, 600, JSON.stringify(shown));
  assert.equal(shown.rate_limit?.per_seconds, 60);
  assert.equal(shown.description, 'The warehouse export, nightly');
  await axe(page, 'key-settings');
});

step('the key list: one line per key with one Actions menu, calm destructive items, at 400 px and without script', [needs.key('ERP nightly sync')], async () => {
  const { page } = admin;
  const erp = state.keys['ERP nightly sync'];
  await goto(page, '/console/keys');
  await page.setViewportSize({ width: WIDE, height: 800 });
  const rows = await page.locator('table.keys tbody tr').evaluateAll((trs) => trs.map((tr) => {
    const lines = (el) => (el ? el.getClientRects().length : 1);
    const visible = [...tr.querySelectorAll('button, a')]
      .filter((el) => !el.closest('dialog, [popover], noscript') && el.getClientRects().length > 0);
    return {
      name: tr.querySelector('th a')?.textContent.trim(),
      clientIdLines: lines(tr.querySelector('td[data-label="Client ID"] code')),
      timeLines: [...tr.querySelectorAll('time')].map(lines),
      controls: visible.map((el) => el.textContent.trim()),
    };
  }));
  assert.ok(rows.length >= 3, `keys are listed: ${rows.length}`);
  for (const r of rows) {
    assert.equal(r.clientIdLines, 1, `the client ID of ${r.name} is on one line`);
    assert.ok(r.timeLines.every((n) => n === 1), `the dates of ${r.name} do not break: ${r.timeLines}`);
    const actions = r.controls.filter((c) => c.startsWith('Actions'));
    assert.equal(actions.length, 1, `one Actions button on ${r.name}: ${r.controls}`);
    assert.deepEqual(r.controls.filter((c) => !c.startsWith('Actions') && c !== 'Copy' && c !== r.name), [], `nothing else on the row of ${r.name}: ${r.controls}`);
  }

  // The destructive items are neither filled nor primary; Delete is red text.
  // (ERP no longer signs webhooks: every item is enabled.)
  const old = erp;
  const menu = await rowMenu(page, old);
  const look = (name) => menu.getByRole('button', { name, exact: true }).evaluate((b) => {
    const style = getComputedStyle(b);
    return { background: style.backgroundColor, color: style.color };
  });
  for (const name of ['Disable', 'Revoke…', 'Delete…']) {
    const { background } = await look(name);
    assert.ok(['rgba(0, 0, 0, 0)', 'rgb(255, 255, 255)', 'rgb(238, 243, 251)'].includes(background), `${name} is not filled: ${background}`);
  }
  assert.equal((await look('Delete…')).color, 'rgb(179, 38, 30)', 'Delete is the danger item');
  assert.notEqual((await look('Revoke…')).color, 'rgb(179, 38, 30)', 'Revoke is not red');
  await page.keyboard.press('Escape');

  // Revoke from the menu asks first.
  await (await rowAction(page, old, 'Revoke…', { exact: true })).click();
  const confirm = page.getByRole('dialog', { name: `Revoke ${old.name}?` });
  await confirm.waitFor();
  await confirm.getByRole('button', { name: 'Cancel' }).click();
  assert.equal(await keyStatus(page, old), 'active', 'Cancel revoked nothing');

  // Sign out is a plain link-style button, lighter than the page's actions.
  const signOut = page.getByRole('button', { name: 'Sign out' });
  const weight = await signOut.evaluate((b) => {
    const style = getComputedStyle(b);
    return { background: style.backgroundColor, border: style.borderTopWidth };
  });
  assert.equal(weight.background, 'rgba(0, 0, 0, 0)', `Sign out is not filled: ${JSON.stringify(weight)}`);
  assert.equal(weight.border, '0px', 'Sign out has no border');

  // At 400 px: the header is one line with a Menu, the row's menu fits.
  await page.setViewportSize({ width: NARROW, height: 800 });
  await settle(page);
  const header = await page.evaluate(() => {
    const shown = [...document.querySelectorAll('header.top > *, header.top nav li, header.top .sign-out > *')]
      .filter((el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden');
    const tops = [...new Set(shown.map((el) => Math.round(el.getBoundingClientRect().top / 8)))];
    return { lines: tops.length, scrollWidth: document.documentElement.scrollWidth };
  });
  assert.ok(header.lines <= 2, `the header takes ${header.lines} lines at 400 px`);
  assert.ok(header.scrollWidth <= NARROW + 2, `no sideways scroll: ${header.scrollWidth}`);
  const toggle = page.getByRole('button', { name: 'Menu' });
  assert.equal(await toggle.isVisible(), true, 'a header menu at 400 px');
  assert.equal(await signOut.isVisible(), false, 'Sign out waits in the menu');
  await toggle.click();
  assert.equal(await signOut.isVisible(), true, 'the menu shows Sign out');
  await toggle.click();
  const narrowMenu = await rowMenu(page, erp);
  const box = await narrowMenu.boundingBox();
  assert.ok(box.x >= 0 && box.x + box.width <= NARROW, `the row's menu fits at 400 px: ${JSON.stringify(box)}`);
  await page.keyboard.press('Escape');
  await page.setViewportSize({ width: WIDE, height: 800 });

  // Without script: no Actions button, a link to the key's page instead.
  const plain = await browser.newContext({ baseURL: BASE_URL, javaScriptEnabled: false, storageState: await admin.context.storageState() });
  const still = await plain.newPage();
  watch(still, 'no-script');
  await goto(still, '/console/keys');
  const line = still.locator(`tr[data-client-id="${erp.clientId}"]`);
  assert.equal(await line.getByRole('button', { name: /^Actions/ }).isVisible(), false, 'no Actions button without script');
  const manage = line.getByRole('link', { name: 'Manage' });
  assert.equal(await manage.isVisible(), true, 'a Manage link without script');
  assert.equal(await manage.getAttribute('href'), `/console/keys/${erp.id}`);
  // There, the confirmations open in place: a mistyped name is refused in
  // words, the confirmation stays open, and the key stays.
  await navigation(still, () => manage.click());
  assert.equal(await still.locator('[data-open]').count(), 0, 'nothing on the key page needs script');
  const revokeConfirm = still.locator('#revoke-confirm');
  await revokeConfirm.locator('summary').click();
  assert.equal(await revokeConfirm.getByRole('button', { name: `Revoke ${erp.name}` }).isVisible(), true, 'Revoke opens in place without script');
  const del = still.locator('#delete-confirm');
  await del.locator('summary').click();
  await del.getByLabel("The key's name").fill(`${erp.name} (typo)`);
  expectHttpError(`/console/keys/${erp.id}/delete`, 409);
  await navigation(still, () => del.getByRole('button', { name: `Delete ${erp.name}` }).click());
  assert.match(await still.getByRole('alert').textContent(), /not the key's name/);
  assert.equal(await still.locator('#delete-confirm').getAttribute('open'), '', 'the confirmation stays open');
  assert.equal((await still.locator('#key-status').textContent()).trim(), 'active');
  await plain.close();
  pages.delete('no-script');
});

step('the overview is home: a key expiring in 3 days needs attention and links to its page', [needs.admin], async () => {
  const { page } = admin;
  await goto(page, '/console/keys');
  const form = await openCreate(page);
  await form.getByLabel('Name', { exact: true }).fill('Short-lived import');
  await form.getByLabel('Read reports').check();
  await form.getByLabel('Never').check();
  assert.equal(await page.locator('#no-expiry-warning').isVisible(), true, '"Never" shows its warning');
  await form.getByLabel('On a day I choose').check();
  assert.equal(await page.locator('#no-expiry-warning').isVisible(), false);
  await form.getByLabel('Expiry day').fill(isoDay(3));
  await axe(page, 'create-form');
  await shoot(page, 'create-form', { fullPage: false });
  const answer = page.waitForResponse((r) => r.url() === `${BASE_URL}/console/keys` && r.request().method() === 'POST');
  await form.getByRole('button', { name: 'Create key' }).click();
  const body = await (await answer).json();
  assert.ok(body.client_id, JSON.stringify(body));
  const created = page.getByRole('dialog', { name: 'Copy your new secret' });
  assert.equal(await created.locator('#created-webhook').isVisible(), false, 'a key that signs no webhooks shows no whsec_');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    created.getByRole('button', { name: 'Download .env' }).click(),
  ]);
  const env = readFileSync(await download.path(), 'utf8');
  assert.match(env, new RegExp(`^KEYPORT_CLIENT_ID=${body.client_id}$`, 'm'));
  assert.match(env, /^KEYPORT_CLIENT_SECRET=kps_/m);
  await created.getByRole('button', { name: 'Copy client ID' }).click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), body.client_id);
  await closeCreated(page, created);

  await goto(page, '/console/');
  assert.equal(new URL(page.url()).pathname, '/console/overview');
  assert.equal(await heading(page), 'Overview');
  const item = page.locator(`ul.attention li[data-subject="${body.client_id}"]`);
  assert.equal(await item.getAttribute('data-kind'), 'expiring');
  assert.match(await item.textContent(), /expires in [23] days/);
  const healthy = state.keys['ERP nightly sync'];
  if (healthy) assert.equal(await page.locator(`ul.attention li[data-subject="${healthy.clientId}"]`).count(), 0, 'a healthy key is not listed');
  await axe(page, 'overview');
  await shoot(page, 'overview');
  await navigation(page, () => item.getByRole('link').click());
  assert.equal(new URL(page.url()).pathname, `/console/keys/${body.id}`);
  assert.equal(await page.locator('time.soon').count(), 1, 'the key page highlights the close expiry');
});

step('an admin adds a member, who sets a password and signs in to their own keys only', [needs.admin], async () => {
  const { page } = admin;
  await goto(page, '/console/users');
  assert.equal(await heading(page), 'Users');
  await axe(page, 'users');
  await shoot(page, 'users');

  const form = page.locator('#add-user');
  await form.getByLabel('Email').fill(MEMBER.email);
  await form.getByLabel('Role').selectOption('member');
  for (const [scope, held] of [['reports:read', true], ['webhooks:write', false], ['keys:manage', true], ['webhooks:manage', false]]) {
    await form.locator(`input[name="permission"][value="${scope}"]`).setChecked(held);
  }
  await form.getByRole('button', { name: 'Add user' }).click();
  const invite = page.getByRole('dialog', { name: `${MEMBER.email} was added` });
  await invite.waitFor();
  const link = await invite.getByLabel('Invitation link').inputValue();
  assert.match(link, new RegExp(`^${BASE_URL}/console/set-password#code=kpset_[A-Za-z0-9]+$`), `one absolute link, the code in its fragment: ${link}`);
  const code = new URL(link).hash.slice('#code='.length);
  assert.equal(await invite.locator('#invite-code').count(), 0, 'no bare code beside the link');
  await invite.getByRole('button', { name: 'Copy link' }).click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), link, 'Copy link copies the link');
  state.memberAdded = true;
  await axe(page, 'invite-dialog');
  await shoot(page, 'invite-dialog', { fullPage: false });
  await invite.getByRole('button', { name: 'Close' }).click();
  await invite.waitFor({ state: 'hidden' });
  const memberRow = page.locator(`tr[data-email="${MEMBER.email}"]`);
  assert.match(await memberRow.textContent(), /member/);
  const held = await memberRow.locator('input[name="permission"]:checked').evaluateAll((inputs) => inputs.map((i) => i.value).sort());
  assert.deepEqual(held, ['keys:manage', 'reports:read']);

  member = await newContext('member');
  const mp = member.page;
  // The member opens the link: the page's script takes the code from the
  // fragment into the form, and out of the address bar.
  await goto(mp, link);
  assert.equal(await mp.getByLabel('Set-password code').inputValue(), code, 'the code from the link is filled in');
  assert.equal(new URL(mp.url()).hash, '', `the code left the address bar: ${mp.url()}`);
  assert.equal(await mp.locator('#code-from-link').isVisible(), true, 'the page says the code came from the link');
  assert.ok(await mp.getByLabel('New password').evaluate((el) => el === document.activeElement), 'focus is on the new password');
  await axe(mp, 'set-password');
  await shoot(mp, 'set-password');
  await mp.getByLabel('New password').fill(MEMBER.password);
  await mp.getByRole('button', { name: 'Set password' }).click();
  await mp.waitForURL(/\/console\/sign-in$/);
  assert.equal(await notice(mp), 'Your password is set: sign in with it.');

  await signIn(mp, MEMBER);
  state.memberSignedIn = true;
  assert.equal(await heading(mp), 'Overview');
  // The code never went to the server in a URL or a Referer, nor into
  // the audit trail.
  assert.deepEqual(requestUrls.filter((url) => url.includes(code)), [], 'no request URL carries the code');
  assert.deepEqual(referers.filter((referer) => referer.includes(code)), [], 'no Referer carries the code');
  const audit = await (await page.request.get('/console/audit.csv')).text();
  assert.match(audit, /user\.set_password_with_token/, 'the audit trail records the invitation used');
  assert.ok(!audit.includes(code), 'the audit trail never holds the code');
  await axe(mp, 'overview-member');
  await goto(mp, '/console/keys?owner=me');
  assert.equal(await heading(mp), 'My keys');
  const nav = mp.getByRole('navigation', { name: 'Console' });
  assert.equal(await nav.getByRole('link', { name: 'My keys' }).count(), 1, 'the nav has My keys');
  for (const hidden of ['API Keys', 'Users', 'Audit']) {
    assert.equal(await nav.getByRole('link', { name: hidden }).count(), 0, `the member's nav has no ${hidden}`);
  }
  const offered = await mp.locator('#create-key input[name="scope"]').evaluateAll((inputs) => inputs.map((i) => i.value).sort());
  assert.deepEqual(offered, ['keys:manage', 'reports:read'], 'a member is offered only the scopes they hold');
  const own = await createAndClose(mp, 'Ben laptop script');
  assert.equal(await row(mp, own).count(), 1);
  await axe(mp, 'my-keys');
  await shoot(mp, 'my-keys');

  const adminKeys = Object.values(state.keys).filter((k) => k !== own);
  for (const path of ['/console/keys?owner=me', '/console/keys']) {
    await goto(mp, path);
    const html = await mp.content();
    for (const key of adminKeys) {
      assert.ok(!html.includes(key.clientId), `${path} shows the member the admin's key ${key.name}`);
    }
  }
  for (const path of ['/console/users', '/console/audit']) {
    expectHttpError(path, 403);
    const response = await mp.goto(path);
    assert.equal(response.status(), 403, `a member forcing ${path} gets 403, got ${response.status()}`);
  }
  const erp = state.keys['ERP nightly sync'];
  if (erp) {
    const postman = await mp.request.get(`/console/keys/${erp.id}/postman.json`);
    assert.ok([403, 404].includes(postman.status()), `the member downloads the admin's Postman collection: ${postman.status()}`);
    // A well-formed revoke (the member's own CSRF token, from their page) of
    // the admin's key changes nothing.
    await goto(mp, '/console/keys?owner=me');
    expectHttpError(`/console/keys/${erp.id}/revoke`, 403);
    expectHttpError(`/console/keys/${erp.id}/revoke`, 404);
    const answer = await mp.evaluate(async (id) => {
      const csrf = document.querySelector('input[name="csrf"]').value;
      const r = await fetch(`/console/keys/${id}/revoke`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ csrf }),
      });
      return r.status;
    }, erp.id);
    assert.ok([403, 404].includes(answer), `the member's revoke of the admin's key answered ${answer}`);
    await goto(page, '/console/keys');
    assert.equal(await keyStatus(page, erp), 'active', "the admin's key is still active");
    assert.match(await row(page, own).textContent(), /ben@acme\.io/, "the admin sees the member's key, with its owner");
    // Only a key's owner may roll it: the admin's menu on it offers no Roll.
    const his = await rowMenu(page, own);
    assert.equal(await his.getByRole('button', { name: 'Roll' }).count(), 0, "the admin is not offered Roll on the member's key");
    assert.equal(await his.getByRole('button', { name: 'Disable' }).count(), 1, 'but may disable it');
    await page.keyboard.press('Escape');
    assert.equal(await (await rowMenu(page, erp)).getByRole('button', { name: 'Roll' }).count(), 1, 'the admin may roll their own');
    await page.keyboard.press('Escape');
  }
});

step('five wrong passwords lock the member (the refusal stays generic); the admin unlocks them', [needs.memberSignedIn], async () => {
  const mp = member.page;
  await signOut(mp);
  expectHttpError('/console/sign-in', 401);
  for (let attempt = 1; attempt <= 5; attempt += 1) {
    await signIn(mp, { email: MEMBER.email, password: `wrong password number ${attempt}` }, { expect: 'refused' });
  }
  await signIn(mp, MEMBER, { expect: 'refused' });
  await axe(mp, 'sign-in-refused');
  await shoot(mp, 'sign-in-refused');

  const { page } = admin;
  await goto(page, '/console/overview');
  const locked = page.locator('ul.attention li[data-kind="locked"]', { hasText: MEMBER.email });
  assert.equal(await locked.count(), 1, 'the overview lists the locked member');
  assert.equal(await locked.getByRole('link').getAttribute('href'), '/console/users');
  await goto(page, '/console/users');
  const memberRow = page.locator(`tr[data-email="${MEMBER.email}"]`);
  const lock = memberRow.locator('.badge', { hasText: 'Locked until' });
  assert.equal(await lock.count(), 1, 'the admin sees "Locked until" on the member');
  assert.match(await lock.locator('time').getAttribute('datetime'), /^\d{4}-\d\d-\d\dT/);
  await shoot(page, 'users-locked');
  await navigation(page, () => memberRow.getByRole('button', { name: 'Unlock' }).click());
  assert.equal(new URL(page.url()).pathname, '/console/users');
  assert.equal(await notice(page), 'The account is unlocked.');
  assert.equal(await memberRow.locator('.badge', { hasText: 'Locked until' }).count(), 0);

  await signIn(mp, MEMBER);
  assert.equal(await heading(mp), 'Overview');
});

step('a state change without the page\'s CSRF token or Origin is refused and changes nothing', [needs.key('ERP nightly sync')], async () => {
  const { page } = admin;
  const key = state.keys['ERP nightly sync'];
  await goto(page, '/console/keys');
  const path = `/console/keys/${key.id}/revoke`;
  expectHttpError(path, 403);

  // From the page itself (Origin is right), with a modified token.
  const fromPage = await page.evaluate(async (url) => {
    const csrf = document.querySelector('input[name="csrf"]').value;
    const wrong = (csrf[0] === 'a' ? 'b' : 'a') + csrf.slice(1);
    const r = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf: wrong }),
    });
    return { status: r.status, body: await r.text() };
  }, path);
  assert.equal(fromPage.status, 403, `a wrong CSRF token: ${fromPage.status} ${fromPage.body}`);
  assert.match(fromPage.body, /csrf_failed/);

  // The right token and the session cookie, but no Origin (nor Referer),
  // then a foreign Origin.
  const csrf = await page.locator('input[name="csrf"]').first().inputValue();
  const control = await page.request.get('/console/keys');
  assert.ok((await control.text()).includes(ADMIN.email), 'the raw requests carry the session cookie');
  const bare = await page.request.post(path, { form: { csrf } });
  assert.equal(bare.status(), 403, `no Origin: ${bare.status()} ${await bare.text()}`);
  const foreign = await page.request.post(path, { form: { csrf }, headers: { Origin: 'http://evil.example' } });
  assert.equal(foreign.status(), 403, `a foreign Origin: ${foreign.status()} ${await foreign.text()}`);

  await page.reload();
  assert.equal(await keyStatus(page, key), 'active', 'the key is still active');
  if (KEYPORT_BIN) {
    const listed = await cli('key', 'list', '--tenant', 'Acme');
    const keys = Array.isArray(listed) ? listed : listed.keys;
    const found = keys?.find((k) => k.client_id === key.clientId);
    assert.equal(found?.status, 'active', `the CLI sees the key active: ${JSON.stringify(found)}`);
  }
});

step('bad input on the create form (no name, a past expiry) is refused next to the form and creates nothing', [needs.memberSignedIn], async () => {
  const mp = member.page;
  await goto(mp, '/console/keys?owner=me');
  const rows = mp.locator('table.keys tbody tr');
  const before = await rows.count();
  const form = await openCreate(mp);
  const error = form.locator('#create-error');
  // The browser's own checks (required, min) bypassed: the server's are tested.
  await form.evaluate((f) => { f.noValidate = true; });
  expectHttpError('/console/keys', 422);

  await form.getByLabel('Name', { exact: true }).fill('   ');
  await form.getByRole('button', { name: 'Create key' }).click();
  await error.waitFor({ state: 'visible' });
  assert.match(await error.textContent(), /give the key a name.*invalid_input/s);
  assert.equal(await form.getByLabel('Name', { exact: true }).getAttribute('aria-invalid'), 'true');

  await form.getByLabel('Name', { exact: true }).fill('Nightly export');
  await tickAll(form);
  await form.getByLabel('On a day I choose').check();
  await form.getByLabel('Expiry day').fill(isoDay(-1));
  await form.getByRole('button', { name: 'Create key' }).click();
  await mp.waitForFunction(() => /future/.test(document.getElementById('create-error').textContent));
  assert.match(await error.textContent(), /expiry date must be in the future.*invalid_input/s);
  assert.equal(await form.getByLabel('Expiry day').getAttribute('aria-invalid'), 'true');

  await mp.reload();
  assert.equal(await rows.count(), before, 'nothing was created');
});

step('a create the server refuses (a name with a bidirectional override) can be corrected and sent again from the same page', [needs.memberSignedIn], async () => {
  const mp = member.page;
  await goto(mp, '/console/keys?owner=me');
  const form = await openCreate(mp);
  const error = form.locator('#create-error');
  await tickAll(form);
  // The date field stops an expiry beyond ten years in the browser already.
  assert.ok(await form.getByLabel('Expiry day').getAttribute('max'), 'the expiry date has a maximum');
  // Only the server refuses this name: U+202E would make it display reversed.
  expectHttpError('/console/keys', 422);
  await form.getByLabel('Name', { exact: true }).fill('Quarterly \u202Etidua');
  await form.getByRole('button', { name: 'Create key' }).click();
  await error.waitFor({ state: 'visible' });
  assert.match(await error.textContent(), /bidirectional/, 'the service refusal is shown next to the form');
  assert.equal(await form.getByLabel('Name', { exact: true }).getAttribute('aria-invalid'), 'true');

  // The person fixes the name and presses Create key again.
  await form.getByLabel('Name', { exact: true }).fill('Quarterly audit');
  const answer = mp.waitForResponse((r) => r.url() === `${BASE_URL}/console/keys` && r.request().method() === 'POST');
  await form.getByRole('button', { name: 'Create key' }).click();
  const response = await answer;
  const body = await response.json().catch(() => ({}));
  assert.equal(
    response.status(),
    201,
    `the corrected form is refused: ${response.status()} ${JSON.stringify(body)}`,
  );
  await closeCreated(mp, mp.getByRole('dialog', { name: 'Copy your new secret' }));
  assert.equal(await mp.locator('table.keys tbody tr', { hasText: 'Quarterly audit' }).count(), 1);
});

step('a double submit of the create form creates one key', [needs.memberSignedIn], async () => {
  const mp = member.page;
  await goto(mp, '/console/keys?owner=me');
  expectHttpError('/console/keys', 409);
  const statuses = await mp.evaluate(async () => {
    const form = document.getElementById('create-key');
    form.querySelector('[name="name"]').value = 'Double submit';
    form.querySelector('[name="scope"]').checked = true;
    const send = () => fetch(form.action, {
      method: 'POST',
      headers: { Accept: 'application/json', 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(new FormData(form)),
    }).then(async (r) => ({ status: r.status, body: await r.json() }));
    return Promise.all([send(), send()]);
  });
  const codes = statuses.map((s) => s.status).sort();
  assert.deepEqual(codes, [201, 409], `two sends of one form: ${JSON.stringify(statuses.map((s) => [s.status, s.body.error]))}`);
  assert.equal(statuses.find((s) => s.status === 409).body.error, 'already_submitted');
  await mp.reload();
  assert.equal(await mp.locator('table.keys tbody tr', { hasText: 'Double submit' }).count(), 1);
});

step('a session that ended mid-form says so next to the form and creates nothing', [needs.memberSignedIn], async () => {
  const mp = member.page;
  await goto(mp, '/console/keys?owner=me');
  const other = await member.context.newPage();
  watch(other, 'member-2');
  await goto(other, '/console/keys?owner=me');
  await signOut(other);
  await other.close();
  pages.delete('member-2');
  state.memberSignedIn = false;

  expectHttpError('/console/keys', 401);
  const form = await openCreate(mp);
  await form.getByLabel('Name', { exact: true }).fill('After sign-out');
  await tickAll(form);
  await form.getByRole('button', { name: 'Create key' }).click();
  const error = form.locator('#create-error');
  await error.waitFor({ state: 'visible' });
  assert.match(await error.textContent(), /session.*session_expired/s);
  await signIn(mp, MEMBER);
  state.memberSignedIn = true;
  await goto(mp, '/console/keys?owner=me');
  assert.equal(await mp.locator('table.keys tbody tr', { hasText: 'After sign-out' }).count(), 0);
});

step('a first-run setup refused for a bad email can be corrected and sent again with the same link', [{ what: 'SECOND_SETUP_URL', ok: () => Boolean(SECOND_SETUP_URL) }], async () => {
  const { context, page } = await newContext('second-server');
  const host = new URL(SECOND_SETUP_URL).host;
  await goto(page, SECOND_SETUP_URL);
  // "ana@acme" passes the browser's email check; the server refuses it.
  expectHttpError('/console/setup', 422, host);
  await page.getByLabel('Company name').fill('Acme');
  await page.getByLabel('Your email').fill('ana@acme');
  await page.getByLabel('Password').fill(ADMIN.password);
  await navigation(page, () => page.getByRole('button', { name: 'Create company' }).click());
  assert.match(await page.locator('#setup-error').textContent(), /not an email address/);

  await page.getByLabel('Your email').fill(ADMIN.email);
  await page.getByLabel('Password').fill(ADMIN.password);
  await navigation(page, () => page.getByRole('button', { name: 'Create company' }).click());
  const errorBox = page.locator('#setup-error');
  const refused = (await errorBox.count()) ? (await errorBox.textContent()).trim() : null;
  assert.equal(refused, null, `the corrected setup is refused: ${refused}`);
  assert.equal(new URL(page.url()).pathname, '/console/overview');
  await context.close();
  pages.delete('second-server');
});

step('the audit page lists the journey\'s events newest first, and filters by action', [needs.admin], async () => {
  const { page } = admin;
  await goto(page, '/console/audit');
  assert.equal(await heading(page), 'Audit');
  const times = await page.locator('table.audit tbody tr time').evaluateAll((ts) => ts.map((t) => t.getAttribute('datetime')));
  assert.ok(times.length > 2, 'events are listed');
  assert.deepEqual([...times].sort().reverse(), times, 'newest first');
  assert.equal(await page.locator('table.audit tbody tr').first().getAttribute('data-action'), 'session.sign_in', 'the first row is the newest: this sign-in');
  await page.locator('table.audit tbody tr').first().getByText('Details').click();
  await axe(page, 'audit');
  await shoot(page, 'audit');
  const seen = new Map();
  for (let pageNo = 0; pageNo < 20; pageNo += 1) {
    for (const action of await page.locator('table.audit tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.action))) {
      seen.set(action, (seen.get(action) ?? 0) + 1);
    }
    const next = page.getByRole('link', { name: 'Older events' });
    if ((await next.count()) === 0) break;
    await next.click();
    await page.waitForLoadState('load');
  }
  const summary = JSON.stringify(Object.fromEntries(seen));
  console.log(`audit events seen: ${summary}`);
  const wanted = [
    'key.create', 'key.revoke', 'key.delete', 'key.mark_webhook_signing',
    'user.create', 'session.sign_in', 'session.sign_in_failed', 'session.sign_out',
    'user.lock', 'user.unlock',
  ];
  const missing = wanted.filter((action) => !seen.has(action));
  assert.deepEqual(missing, [], `the audit page lacks these events (it shows ${summary})`);
  assert.ok(seen.get('session.sign_in_failed') >= 5, `five failed sign-ins are listed: ${summary}`);

  await goto(page, '/console/audit');
  await page.getByLabel('Action').selectOption('key.create');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL(/action=key\.create/);
  const actions = await page.locator('table.audit tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.action));
  assert.ok(actions.length >= 5, `every key created is listed (${actions.length})`);
  assert.deepEqual([...new Set(actions)], ['key.create'], 'the filter shows key.create events only');
  const erp = state.keys['ERP nightly sync'];
  if (erp) {
    const named = page.locator('table.audit tbody tr td[data-label="On"] a', { hasText: erp.name });
    assert.ok((await named.count()) >= 1, 'the events name their key and link to it');
    assert.equal(await named.first().getAttribute('href'), `/console/keys/${erp.id}`);
  }
  const [csv] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: 'Export CSV' }).click(),
  ]);
  const lines = readFileSync(await csv.path(), 'utf8').trim().split('\r\n');
  assert.equal(lines.length - 1, actions.length, 'the CSV holds the filtered events');
  assert.match(lines[1], /key\.create/);
  await shoot(page, 'audit-filtered');
});

// ----------------------------------------------------------- every page

test('axe-core: no serious or critical violation on any page', () => {
  assert.ok(screenshots.length > 0, 'the journey reached no page');
  assert.deepEqual(a11yIssues, [], `axe found serious or critical violations:\n${JSON.stringify(a11yIssues, null, 2)}`);
});

test('at 400 px wide, no page scrolls sideways', () => {
  assert.deepEqual(narrowIssues, [], `pages wider than ${NARROW} px:\n${JSON.stringify(narrowIssues, null, 2)}`);
});

test('no console errors and no uncaught exceptions on any page', () => {
  // A "Failed to load resource" here is an HTTP error the journey did not
  // provoke on purpose: see the step it happened in.
  assert.deepEqual(consoleErrors, [], `console errors:\n${JSON.stringify(consoleErrors, null, 2)}`);
});
