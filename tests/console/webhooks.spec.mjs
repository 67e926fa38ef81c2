// The console's Webhooks pages end to end, in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core), against the real binary.
// tests/api/console_webhooks.rs starts two `keyport serve` on fresh databases
// and runs this file with:
//
//   BASE_URL, SETUP_URL   a server that may send to this machine
//                         (KEYPORT_WEBHOOK_ALLOW_HTTP, …_ALLOW_PRIVATE_TARGETS,
//                         …_POLL_INTERVAL_MS=100), and its first-run link
//   STRICT_BASE_URL, STRICT_SETUP_URL  a server with the default policy
//                         (https to public addresses only), and its link
//   SCREENSHOT_DIR        where every page is saved at 1280 and 400 px wide
//
// One journey: an admin signs up, creates a key in the console (keeping the
// `whsec_…` its dialog shows), adds an endpoint pointing at a real receiver
// started here (node:http on port 0, recording every request), sends a test
// event, verifies the receiver got it signed with that key (HMAC-SHA256 per
// Standard Webhooks, with node:crypto), reads the attempt (status 200, the
// answer escaped), delivers it again, disables and deletes the endpoint.
// Refusals (a scheme, a loopback URL under the default policy, no event, a
// double submit, a missing Origin) show next to the field and change nothing.
// axe (no violation of any impact), 400 px and console errors are checked on
// every page and asserted by the last three tests.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { chromium } from 'playwright-core';
import { AxeBuilder } from '@axe-core/playwright';

const BASE_URL = (process.env.BASE_URL ?? '').replace(/\/$/, '');
const SETUP_URL = process.env.SETUP_URL ?? '';
const STRICT_BASE_URL = (process.env.STRICT_BASE_URL ?? '').replace(/\/$/, '');
const STRICT_SETUP_URL = process.env.STRICT_SETUP_URL ?? '';
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR ?? 'target/console-screenshots';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

assert.match(BASE_URL, /^http:\/\/127\.0\.0\.1:\d+$/, 'BASE_URL must be the server, e.g. http://127.0.0.1:8080');
assert.match(SETUP_URL, /\/console\/setup\?token=kpsetup_/, 'SETUP_URL must be the first-run link serve logged');
assert.match(STRICT_BASE_URL, /^http:\/\/127\.0\.0\.1:\d+$/, 'STRICT_BASE_URL must be the second server');
assert.match(STRICT_SETUP_URL, /\/console\/setup\?token=kpsetup_/, 'STRICT_SETUP_URL must be its first-run link');
mkdirSync(SCREENSHOT_DIR, { recursive: true });

const ADMIN = { email: 'wen@acme.io', password: 'webhooks want long passphrases' };
const NARROW = 400;
const WIDE = 1280;
// What the receiver answers: markup that must show as text, never run.
const ANSWER = '<b>received</b> <img src="x" id="injected" alt="">';

const state = {
  signedIn: false,
  key: null, // { name, clientId, whsec }
  endpoint: null, // { id, url }
  testEventId: null,
};

const a11yIssues = []; // every axe violation, whatever its impact
const narrowIssues = [];
const consoleErrors = [];
const expectedHttpErrors = []; // { path, status, host }
const screenshots = [];
const pages = new Map();
let currentStep = '';

// ---------------------------------------------------------------- receiver

/** Every request the receiver got: { method, path, headers, body, at }. */
const received = [];
let receiver;
let receiverUrl;

function startReceiver() {
  return new Promise((resolve) => {
    receiver = createServer((req, res) => {
      const chunks = [];
      req.on('data', (chunk) => chunks.push(chunk));
      req.on('end', () => {
        received.push({
          method: req.method,
          path: req.url,
          headers: req.headers,
          body: Buffer.concat(chunks).toString('utf8'),
          at: Date.now(),
        });
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
        res.end(ANSWER);
      });
    });
    receiver.listen(0, '127.0.0.1', () => {
      receiverUrl = `http://127.0.0.1:${receiver.address().port}/hooks/keyport`;
      resolve();
    });
  });
}

/** Waits until `predicate` holds for the requests received, at most `ms`. */
async function receivedWhere(predicate, what, ms = 15_000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const found = received.filter(predicate);
    if (found.length) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`the receiver never got ${what}; it got ${JSON.stringify(received.map((r) => [r.method, r.path, r.headers['webhook-id']]))}`);
}

/**
 * Standard Webhooks: v1 = base64(HMAC-SHA256(key, "id.timestamp.body")),
 * the key being the base64 after `whsec_`; several signatures are
 * space-separated. Returns why it does not verify, or null.
 */
function signatureProblem(whsec, request) {
  const id = request.headers['webhook-id'];
  const timestamp = request.headers['webhook-timestamp'];
  const header = request.headers['webhook-signature'];
  if (!id || !timestamp || !header) return `missing webhook-* headers: ${JSON.stringify(request.headers)}`;
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) return `timestamp ${timestamp} is not within 5 minutes`;
  const key = Buffer.from(whsec.replace(/^whsec_/, ''), 'base64');
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${request.body}`).digest();
  const matches = header.split(' ').some((part) => {
    const [version, signature] = part.split(',');
    const given = Buffer.from(signature ?? '', 'base64');
    return version === 'v1' && given.length === expected.length && timingSafeEqual(given, expected);
  });
  return matches ? null : `no v1 signature in "${header}" verifies with the key's whsec_`;
}

// ---------------------------------------------------------------- helpers

function expectHttpError(base, path, status) {
  expectedHttpErrors.push({ path, status, host: new URL(base).host });
}

function isExpectedHttpError(url, text) {
  const status = Number((/status of (\d{3})/.exec(text) ?? [])[1]);
  if (!status || !url) return false;
  const { host, pathname } = new URL(url);
  return expectedHttpErrors.some((e) => e.status === status && e.path === pathname && e.host === host);
}

function watch(page, label) {
  pages.set(label, page);
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const url = message.location()?.url ?? '';
    if (isExpectedHttpError(url, message.text())) return;
    if (url && new URL(url).pathname === '/favicon.ico') return;
    consoleErrors.push({ step: currentStep, page: label, at: page.url(), text: message.text(), source: url });
  });
  page.on('pageerror', (error) => {
    consoleErrors.push({ step: currentStep, page: label, at: page.url(), text: `uncaught: ${error.stack ?? error}` });
  });
}

let browser;

async function newContext(label, baseURL) {
  const context = await browser.newContext({ baseURL, viewport: { width: WIDE, height: 800 } });
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(15_000);
  const page = await context.newPage();
  watch(page, label);
  return { context, page };
}

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
  key: { what: 'the key that signs webhooks', ok: () => Boolean(state.key) },
  endpoint: { what: 'the endpoint added', ok: () => Boolean(state.endpoint) },
  testEvent: { what: 'the test event delivered', ok: () => Boolean(state.testEventId) },
};

async function describePages(stepName) {
  let out = '';
  for (const [label, page] of pages) {
    if (page.isClosed()) continue;
    const file = join(SCREENSHOT_DIR, `FAILED-webhooks-${slug(stepName)}-${label}.png`);
    await page.screenshot({ path: file, fullPage: true }).catch(() => {});
    const text = await page.evaluate(() => document.body?.innerText ?? '').catch((e) => `(unreadable: ${e.message})`);
    out += `\n--- ${label} page at ${page.url()} (screenshot ${file}) ---\n${text.slice(0, 2500)}`;
  }
  return out;
}

function slug(text) {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);
}

async function settle(page) {
  await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
}

/** Saves `name`-1280.png and `name`-400.png; at 400 px, records sideways scrolling. */
async function shoot(page, name, { fullPage = true } = {}) {
  await page.setViewportSize({ width: WIDE, height: 800 });
  await settle(page);
  const wide = join(SCREENSHOT_DIR, `${name}-${WIDE}.png`);
  await page.screenshot({ path: wide, fullPage });
  await page.setViewportSize({ width: NARROW, height: 800 });
  await settle(page);
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  if (width > NARROW + 2) {
    const culprits = await page.evaluate((limit) => [...document.body.querySelectorAll('*')]
      .filter((el) => el.getBoundingClientRect().right > limit + 2)
      .slice(0, 5)
      .map((el) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${el.classList.length ? `.${[...el.classList].join('.')}` : ''}`), NARROW);
    narrowIssues.push({ page: name, scrollWidth: width, culprits });
  }
  const narrow = join(SCREENSHOT_DIR, `${name}-${NARROW}.png`);
  await page.screenshot({ path: narrow, fullPage });
  await page.setViewportSize({ width: WIDE, height: 800 });
  await settle(page);
  screenshots.push(wide, narrow);
}

async function axe(page, name) {
  const results = await new AxeBuilder({ page }).analyze();
  for (const violation of results.violations) {
    a11yIssues.push({
      page: name,
      id: violation.id,
      impact: violation.impact,
      help: violation.help,
      nodes: violation.nodes.slice(0, 5).map((n) => `${n.target.join(' ')}: ${n.html.slice(0, 160)}`),
    });
  }
}

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

async function notice(page) {
  const box = page.locator('main .notice[role="status"]');
  return (await box.count()) ? (await box.first().textContent()).trim() : '(no notice)';
}

/** First-run setup: the company and its admin, signed in, on the keys page. */
async function setUp(page, setupUrl) {
  await goto(page, setupUrl);
  await page.getByLabel('Company name').fill('Acme');
  await page.getByLabel('Your email').fill(ADMIN.email);
  await page.getByLabel('Password').fill(ADMIN.password);
  await navigation(page, () => page.getByRole('button', { name: 'Create company' }).click());
  await page.waitForURL(/\/console\/overview$/);
  await goto(page, '/console/keys');
}

/** Submits the add form and waits for the answer's page. */
async function submitAdd(page, base) {
  const answer = page.waitForResponse((r) => r.url() === `${base}/console/webhooks` && r.request().method() === 'POST');
  await navigation(page, () => page.getByRole('button', { name: 'Add endpoint' }).click());
  return answer;
}

function endpointRow(page, url) {
  return page.locator(`table.webhooks tbody tr[data-url="${url}"]`);
}

/** Reloads the endpoint's page until `rows` attempts of `webhookId` are listed. */
async function attemptsOf(page, webhookId, rows, ms = 15_000) {
  const until = Date.now() + ms;
  const locator = page.locator(`table.attempts tbody tr[data-webhook-id="${webhookId}"]`);
  for (;;) {
    if ((await locator.count()) >= rows) return locator;
    if (Date.now() > until) {
      assert.fail(`the attempts page never listed ${rows} attempt(s) of ${webhookId}: ${await page.locator('table.attempts').textContent()}`);
    }
    await page.waitForTimeout(200);
    await navigation(page, () => page.getByRole('link', { name: 'Refresh' }).click());
  }
}

// ---------------------------------------------------------------- journey

let admin;

before(async () => {
  await startReceiver();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  admin = await newContext('admin', BASE_URL);
});

after(async () => {
  await browser?.close();
  await new Promise((done) => (receiver ? receiver.close(done) : done()));
  console.log(`\nscreenshots (${screenshots.length}) in ${SCREENSHOT_DIR}:\n  ${screenshots.map((s) => s.split('/').pop()).join('\n  ')}`);
  console.log(`the receiver got ${received.length} request(s)`);
});

step('an admin signs up and creates a key in the console: it signs webhooks, and its whsec_ is shown once', [], async () => {
  const { page } = admin;
  await setUp(page, SETUP_URL);
  state.signedIn = true;
  await page.locator('#create-open').click();
  const form = page.locator('#create-key');
  await form.getByLabel('Name', { exact: true }).fill('Webhook signer');
  await form.getByLabel('Read reports').check();
  await form.getByRole('button', { name: 'Create key' }).click();
  const dialog = page.getByRole('dialog', { name: 'Copy your new secret' });
  await dialog.waitFor({ state: 'visible' });
  const clientId = (await dialog.locator('#created-client-id').textContent()).trim();
  const whsec = (await dialog.locator('#created-webhook-key').textContent()).trim();
  assert.match(clientId, /^kpc_/);
  assert.match(whsec, /^whsec_[A-Za-z0-9+/]+=*$/, `the dialog shows the webhook signing key: ${whsec}`);
  await dialog.getByLabel('I have stored the secret').check();
  await navigation(page, () => dialog.getByRole('button', { name: 'Done' }).click());
  const row = page.locator(`tr[data-client-id="${clientId}"]`);
  assert.equal(await row.locator('.badge', { hasText: 'Signs webhooks' }).count(), 1, 'the first key signs webhooks');
  state.key = { name: 'Webhook signer', clientId, whsec };
});

step('the Webhooks link leads to the page, which says how deliveries are signed and which key signs them', [needs.admin, needs.key], async () => {
  const { page } = admin;
  const link = page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Webhooks' });
  await navigation(page, () => link.click());
  assert.equal(new URL(page.url()).pathname, '/console/webhooks');
  assert.equal(await page.locator('h1').textContent(), 'Webhooks');
  assert.equal(await link.getAttribute('aria-current'), 'page');
  const note = page.locator('section.signing');
  const text = (await note.textContent()).replace(/\s+/g, ' ');
  assert.match(text, /Signs webhooks/);
  assert.match(text, /whsec_/);
  assert.ok(text.includes(state.key.name) && text.includes(state.key.clientId), `the note names the signing key: ${text}`);
  assert.equal(await note.getByRole('link', { name: 'keys page' }).getAttribute('href'), '/console/keys?owner=me');
  assert.match(await page.locator('table.webhooks caption').textContent(), /^0 endpoints/);
  await axe(page, 'webhooks-empty');
  await shoot(page, 'webhooks-empty');
});

step('a refused scheme and a missing event are shown next to their fields, keep what was typed, and add nothing', [needs.admin], async () => {
  const { page } = admin;
  await goto(page, '/console/webhooks');
  expectHttpError(BASE_URL, '/console/webhooks', 422);
  // ftp:// passes the browser's URL check; the service refuses it whatever
  // the policy.
  await page.getByLabel('URL', { exact: true }).fill('ftp://127.0.0.1/x');
  await page.locator('input[name="event"][value="key.created"]').check();
  await page.getByLabel('Description (optional)').fill('Nightly import');
  const refused = await submitAdd(page, BASE_URL);
  assert.equal(refused.status(), 422);
  const csp = refused.headers()['content-security-policy'] ?? '';
  assert.ok(csp.includes("script-src 'self'") && !/unsafe-inline/.test(csp), `the refusal keeps the CSP: ${csp}`);
  const url = page.getByLabel('URL', { exact: true });
  assert.match(await page.locator('#url-error').textContent(), /must use https/);
  assert.equal(await url.getAttribute('aria-invalid'), 'true');
  assert.match(await url.getAttribute('aria-describedby'), /url-error/, 'the error is tied to the field');
  assert.ok(await url.evaluate((el) => el === document.activeElement), 'the field at fault has focus');
  assert.equal(await url.inputValue(), 'ftp://127.0.0.1/x', 'the URL typed is kept');
  assert.equal(await page.getByLabel('Description (optional)').inputValue(), 'Nightly import');
  assert.equal(await page.locator('input[name="event"][value="key.created"]').isChecked(), true, 'the events ticked stay ticked');
  await axe(page, 'webhooks-refused-scheme');
  await shoot(page, 'webhooks-refused-scheme');

  await url.fill(receiverUrl);
  await page.locator('input[name="event"][value="key.created"]').uncheck();
  await submitAdd(page, BASE_URL);
  assert.match(await page.locator('#events-error').textContent(), /at least one event/);
  assert.equal(await page.locator('#url-error').count(), 0, 'the corrected URL is no longer marked');
  assert.equal(await page.locator('table.webhooks tbody tr').count(), 0, 'nothing was added');
  await axe(page, 'webhooks-no-event');
});

step('add an endpoint pointing at the receiver: it is listed with its events, collections and description', [needs.admin], async () => {
  const { page } = admin;
  await goto(page, '/console/webhooks');
  await page.getByLabel('URL', { exact: true }).fill(receiverUrl);
  await page.locator('input[name="event"][value="key.created"]').check();
  await page.locator('input[name="event"][value="record.created"]').check();
  await page.getByLabel('Collections (optional)').fill('orders, invoices');
  await page.getByLabel('Description (optional)').fill('ERP <b>order</b> import');
  const answer = await submitAdd(page, BASE_URL);
  assert.equal(answer.status(), 303, 'a added endpoint redirects to the list');
  assert.equal(new URL(page.url()).pathname, '/console/webhooks');
  assert.equal(await notice(page), `Endpoint ${receiverUrl} added.`);
  const row = endpointRow(page, receiverUrl);
  assert.equal(await row.count(), 1, 'the endpoint is listed');
  const cells = async (label) => (await row.locator(`td[data-label="${label}"]`).textContent()).trim();
  assert.equal(await cells('Events'), 'key.created, record.created');
  assert.equal(await cells('Collections'), 'invoices, orders');
  assert.equal(await cells('Description'), 'ERP <b>order</b> import', 'markup in a description shows as text');
  assert.equal(await cells('Status'), 'enabled');
  assert.equal(await cells('Failing since'), 'not failing');
  state.endpoint = { id: await row.getAttribute('data-endpoint-id'), url: receiverUrl };
  await axe(page, 'webhooks');
  await shoot(page, 'webhooks');
});

step('Send test event: the receiver gets it with the three webhook-* headers, signed with the key\'s whsec_', [needs.endpoint, needs.key], async () => {
  const { page } = admin;
  const row = endpointRow(page, state.endpoint.url);
  await navigation(page, () => row.getByRole('button', { name: 'Send test event' }).click());
  const said = await notice(page);
  const id = /webhook-id (msg_[0-9a-z]+)/.exec(said)?.[1];
  assert.ok(id, `the notice gives the webhook-id: ${said}`);
  const [request] = await receivedWhere((r) => r.headers['webhook-id'] === id, `the test event ${id}`);
  assert.equal(request.method, 'POST');
  assert.equal(request.path, '/hooks/keyport');
  assert.match(request.headers['webhook-timestamp'], /^\d+$/);
  assert.match(request.headers['webhook-signature'], /^v1,/);
  assert.equal(signatureProblem(state.key.whsec, request), null, signatureProblem(state.key.whsec, request) ?? '');
  const tampered = { ...request, body: request.body.replace('webhook.test', 'webhook.tesT') };
  assert.notEqual(signatureProblem(state.key.whsec, tampered), null, 'a tampered body does not verify');
  const event = JSON.parse(request.body);
  assert.equal(event.type, 'webhook.test');
  assert.equal(event.data.endpoint_id, state.endpoint.id);
  state.testEventId = id;
});

step('the attempts page lists the attempt: time, event, webhook-id, 200, latency, and the answer as text', [needs.testEvent], async () => {
  const { page } = admin;
  await navigation(page, () => endpointRow(page, state.endpoint.url).getByRole('link', { name: 'Attempts' }).click());
  assert.equal(new URL(page.url()).pathname, `/console/webhooks/${state.endpoint.id}`);
  assert.equal(await page.locator('h1').textContent(), 'Webhook endpoint');
  assert.equal(await page.locator('#endpoint-url').textContent(), state.endpoint.url);
  const rows = await attemptsOf(page, state.testEventId, 1);
  const row = rows.first();
  const cell = async (label) => (await row.locator(`td[data-label="${label}"]`).textContent()).trim();
  assert.equal(await cell('Event'), 'webhook.test');
  assert.equal(await cell('webhook-id'), state.testEventId);
  assert.equal(await cell('Result'), '200');
  assert.match(await cell('Latency'), /^\d+ ms$/);
  assert.equal(await cell('Delivery'), 'delivered');
  assert.match(await row.locator('th time').getAttribute('datetime'), /^\d{4}-\d\d-\d\dT/);
  const answer = row.locator('details');
  await answer.locator('summary').click();
  assert.equal(await answer.locator('pre').textContent(), ANSWER, 'the answer shows as sent');
  assert.equal(await page.locator('#injected').count(), 0, 'markup in the answer is escaped, never rendered');
  assert.match((await page.locator('section.signing').textContent()).replace(/\s+/g, ' '), /Deliveries to this endpoint are signed with Webhook signer/);
  await axe(page, 'webhook-attempts');
  await shoot(page, 'webhook-attempts');
});

step('Deliver again sends the same webhook-id once more, and a second attempt is listed', [needs.testEvent, needs.key], async () => {
  const { page } = admin;
  const before = received.filter((r) => r.headers['webhook-id'] === state.testEventId).length;
  const row = page.locator(`table.attempts tbody tr[data-webhook-id="${state.testEventId}"]`).first();
  await navigation(page, () => row.getByRole('button', { name: 'Deliver again' }).click());
  assert.equal(new URL(page.url()).pathname, `/console/webhooks/${state.endpoint.id}`);
  assert.match(await notice(page), /Queued again, with the same webhook-id/);
  const again = await receivedWhere(
    (r) => r.headers['webhook-id'] === state.testEventId && received.filter((o) => o.headers['webhook-id'] === state.testEventId).length > before,
    `a second delivery of ${state.testEventId}`,
  );
  const latest = again[again.length - 1];
  assert.equal(signatureProblem(state.key.whsec, latest), null, 'the redelivery is signed too');
  const rows = await attemptsOf(page, state.testEventId, 2);
  assert.equal(await rows.count(), 2, 'two attempts of one delivery');
  assert.equal(
    await page.locator('table.attempts').getByRole('button', { name: 'Deliver again' }).count(),
    1,
    'Deliver again is offered once per delivery (on its newest attempt)',
  );
});

step('a double submit of the add form adds one endpoint; a change without Origin is refused', [needs.endpoint], async () => {
  const { page } = admin;
  await goto(page, '/console/webhooks');
  expectHttpError(BASE_URL, '/console/webhooks', 409);
  const second = `${receiverUrl}/second`;
  const statuses = await page.evaluate(async (url) => {
    const form = document.getElementById('add-endpoint');
    form.querySelector('[name="url"]').value = url;
    form.querySelector('input[name="event"][value="user.locked"]').checked = true;
    const send = () => fetch(form.action, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(new FormData(form)),
      redirect: 'manual',
    }).then((r) => (r.type === 'opaqueredirect' ? 'redirect' : r.status));
    return Promise.all([send(), send()]);
  }, second);
  assert.deepEqual(statuses.map(String).sort(), ['409', 'redirect'], `two sends of one form: ${statuses}`);
  await page.reload();
  assert.equal(await endpointRow(page, second).count(), 1, 'one endpoint was added');

  // The page's CSRF token and the session cookie, but no Origin: refused.
  const id = await endpointRow(page, second).getAttribute('data-endpoint-id');
  const csrf = await page.locator('input[name="csrf"]').first().inputValue();
  const bare = await page.request.post(`/console/webhooks/${id}/delete`, { form: { csrf, form_id: 'f'.repeat(32) } });
  assert.equal(bare.status(), 403, `a delete without Origin: ${bare.status()}`);
  await page.reload();
  assert.equal(await endpointRow(page, second).count(), 1, 'the refused delete deleted nothing');
  // Tidy up through the page.
  await endpointRow(page, second).getByRole('button', { name: 'Delete' }).click();
  await navigation(page, () => page.getByRole('dialog', { name: 'Delete this endpoint?' }).getByRole('button', { name: 'Delete endpoint' }).click());
  assert.equal(await endpointRow(page, second).count(), 0);
});

step('disable the endpoint: it says so, with the reason, and Enable comes back', [needs.endpoint], async () => {
  const { page } = admin;
  await goto(page, '/console/webhooks');
  const row = endpointRow(page, state.endpoint.url);
  await navigation(page, () => row.getByRole('button', { name: 'Disable' }).click());
  assert.equal(await notice(page), `${state.endpoint.url} is disabled: nothing is sent to it until it is enabled.`);
  assert.equal((await row.locator('td[data-label="Status"]').textContent()).trim(), 'disabled: disabled by a person');
  assert.equal(await row.getByRole('button', { name: 'Enable' }).count(), 1);
  await axe(page, 'webhooks-disabled');
  await goto(page, `/console/webhooks/${state.endpoint.id}`);
  assert.equal(await page.locator('#endpoint-status').textContent(), 'disabled');
});

step('delete the endpoint with a confirmation: Cancel keeps it, Delete endpoint removes it', [needs.endpoint], async () => {
  const { page } = admin;
  await goto(page, '/console/webhooks');
  const row = endpointRow(page, state.endpoint.url);
  const opener = row.getByRole('button', { name: 'Delete' });
  await opener.click();
  const dialog = page.getByRole('dialog', { name: 'Delete this endpoint?' });
  await dialog.waitFor();
  assert.ok((await dialog.textContent()).includes(state.endpoint.url), 'the dialog names the URL');
  assert.ok(await dialog.evaluate((d) => d.contains(document.activeElement)), 'focus moved into the dialog');
  await axe(page, 'webhook-delete-dialog');
  await shoot(page, 'webhook-delete-dialog', { fullPage: false });
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await dialog.waitFor({ state: 'hidden' });
  assert.ok(await opener.evaluate((b) => b === document.activeElement), 'focus returned to Delete');
  assert.equal(await row.count(), 1, 'Cancel deleted nothing');

  await opener.click();
  await navigation(page, () => dialog.getByRole('button', { name: 'Delete endpoint' }).click());
  assert.equal(await notice(page), `${state.endpoint.url} is deleted, with its pending deliveries.`);
  assert.equal(await row.count(), 0, 'the endpoint is gone');
  expectHttpError(BASE_URL, `/console/webhooks/${state.endpoint.id}`, 404);
  const gone = await page.goto(`/console/webhooks/${state.endpoint.id}`);
  assert.equal(gone.status(), 404, 'its page is gone too');
});

step('with the default policy, https://127.0.0.1/x is refused next to the URL field', [], async () => {
  const { context, page } = await newContext('strict', STRICT_BASE_URL);
  try {
    await setUp(page, STRICT_SETUP_URL);
    await goto(page, '/console/webhooks');
    expectHttpError(STRICT_BASE_URL, '/console/webhooks', 422);
    await page.getByLabel('URL', { exact: true }).fill('https://127.0.0.1/x');
    await page.locator('input[name="event"][value="key.revoked"]').check();
    const answer = await submitAdd(page, STRICT_BASE_URL);
    assert.equal(answer.status(), 422);
    const error = (await page.locator('#url-error').textContent()).trim();
    assert.match(error, /127\.0\.0\.1 is a loopback address/, `the SSRF refusal is next to the URL: ${error}`);
    assert.equal(await page.getByLabel('URL', { exact: true }).getAttribute('aria-invalid'), 'true');
    assert.equal(await page.locator('table.webhooks tbody tr').count(), 0, 'nothing was added');
    await axe(page, 'webhooks-refused-loopback');
    await shoot(page, 'webhooks-refused-loopback');
  } finally {
    await context.close();
    pages.delete('strict');
  }
});

// ----------------------------------------------------------- every page

test('axe-core: no violation at all on any Webhooks page', () => {
  assert.ok(screenshots.length > 0, 'the journey reached no page');
  assert.deepEqual(a11yIssues, [], `axe found violations:\n${JSON.stringify(a11yIssues, null, 2)}`);
});

test('at 400 px wide, no Webhooks page scrolls sideways', () => {
  assert.deepEqual(narrowIssues, [], `pages wider than ${NARROW} px:\n${JSON.stringify(narrowIssues, null, 2)}`);
});

test('no console errors and no uncaught exceptions on any Webhooks page', () => {
  assert.deepEqual(consoleErrors, [], `console errors:\n${JSON.stringify(consoleErrors, null, 2)}`);
});
