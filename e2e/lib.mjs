// Shared helpers of the browser e2e suite (not a test file).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

/** Origin of the server under test, e.g. http://127.0.0.1:19101 (see README.md). */
export const BASE = (process.env.PUSH_BASE || '').replace(/\/+$/, '');
if (!BASE) {
  throw new Error('PUSH_BASE is not set (e.g. PUSH_BASE=http://127.0.0.1:19101); see e2e/README.md');
}
/** "nchan" when the server under test is nginx+nchan (set by run-against-nchan.sh). */
export const SERVER = process.env.PUSH_SERVER || '';
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
];

/** Launches headless chromium; Playwright gives it a fresh temporary user data dir. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 30_000,
  });
}

/** A fresh random channel id, prefixed with the test's name for the server logs. */
export function channelId(label) {
  return `e2e-${label}-${randomBytes(6).toString('hex')}`;
}

/** POST one message. `contentType` null sends no Content-Type header at all. */
export async function publish(channel, body, contentType = 'text/plain') {
  const headers = {};
  let payload = body;
  if (contentType === null) {
    payload = new TextEncoder().encode(body); // a byte body makes fetch send no Content-Type
  } else {
    headers['Content-Type'] = contentType;
  }
  const res = await fetch(`${BASE}/pub?id=${encodeURIComponent(channel)}`, {
    method: 'POST', headers, body: payload, signal: AbortSignal.timeout(5_000),
  });
  await res.arrayBuffer();
  assert.ok(res.status >= 200 && res.status < 300, `publish to ${channel}: HTTP ${res.status}`);
}

/**
 * Publishes `count` numbered messages ("<prefix> 1" .. "<prefix> N"), one every `every` ms,
 * pausing `pause` ms after each message number listed in `pauseAfter`. The pauses are
 * longer than the 2 s subscriber timeout, so the timeout fires even on a server that
 * restarts it with every message (nchan does), and each pause forces a reconnect. 4.5 s:
 * - Chromium resends a request answered 408 on a reused keep-alive connection once, by
 *   itself, so a long-poll ended by nchan's 408 reaches the page only after two timeouts
 *   (4 s); a shorter pause would hide nchan's long-poll timeout from NchanSubscriber;
 * - it leaves room for Chromium's 3 s EventSource reconnect delay: a client that
 *   reconnects late in a pause still sits 2 s without a message before the next group.
 * Returns the bodies in publish order.
 */
export async function publishPaced(channel, {
  count = 30, every = 180, pauseAfter = [10, 20], pause = 4_500, prefix = 'msg',
} = {}) {
  const bodies = [];
  for (let i = 1; i <= count; i++) {
    const body = `${prefix} ${i}`;
    const t = performance.now();
    await publish(channel, body);
    if (process.env.E2E_DEBUG) console.error(`${Math.round(t)} ${channel} published ${body} in ${Math.round(performance.now() - t)} ms`);
    bodies.push(body);
    // the interval counts from the end of the previous publish, so a slow publish
    // never shortens a pause
    if (i < count) await sleep(pauseAfter.includes(i) ? pause : every); // pacing
  }
  return bodies;
}

/**
 * Opens pages/client.html for one client in a fresh browser context, collecting console
 * errors and page errors. Waits (bounded) for the first connect.
 */
export async function openClient(browser, { transport, channel, path = '/sub', extra = {} }) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = watchProblems(page);
  const q = new URLSearchParams({ transport, channel, path, ...extra });
  const url = `${BASE}/e2e/pages/client.html?${q}`;
  const res = await page.goto(url, { timeout: 10_000 });
  assert.equal(res && res.status(), 200, `GET ${url}`);
  const client = { context, page, problems, transport, channel, url };
  await waitFor(client, () => window.connects >= 1, 'the first connect', 10_000);
  return client;
}

/**
 * Collects a page's console errors (and failed console.asserts), page errors and crashes
 * into the returned array, as `console.error: <text>`, `pageerror: <message>`, `page crashed`.
 */
export function watchProblems(page) {
  const problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'assert') {
      problems.push(`console.${msg.type()}: ${msg.text()}`);
    }
  });
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('crash', () => problems.push('page crashed'));
  return problems;
}

/** Bounded page.waitForFunction that reports the page's state when it times out. */
export async function waitFor(client, fn, what, timeout = 30_000, arg = undefined) {
  try {
    await client.page.waitForFunction(fn, arg, { timeout, polling: 50 });
  } catch (err) {
    throw new Error(`${client.transport}: timed out after ${timeout} ms waiting for ${what}\n`
      + await describeState(client), { cause: err });
  }
}

/** The page's received messages, events and errors, for failure messages. */
export async function describeState(client) {
  let state;
  try {
    state = await client.page.evaluate(() => ({
      received: window.received, events: window.events, protocolErrors: window.protocolErrors,
    }));
  } catch (err) {
    return `  (page state unavailable: ${err.message})`;
  }
  const lines = [];
  lines.push(`  page: ${client.url}`);
  lines.push(`  received ${state.received.length}: ${state.received.map((m) => `${JSON.stringify(m.body)}@${m.id}`).join(' ')}`);
  lines.push(`  events: ${state.events.map((e) => JSON.stringify(e)).join('\n          ')}`);
  if (state.protocolErrors.length) lines.push(`  protocol errors: ${state.protocolErrors.join('; ')}`);
  if (client.problems.length) lines.push(`  console/page errors: ${client.problems.join('; ')}`);
  return lines.join('\n');
}

/** The page's state; stops the client first when `stop` is set. */
export async function snapshot(client, { stop = false } = {}) {
  return client.page.evaluate((doStop) => {
    if (doStop) window.e2eStop();
    return {
      received: window.received, events: window.events, connects: window.connects,
      protocolErrors: window.protocolErrors,
    };
  }, stop);
}

/**
 * Fails on console errors, page errors and protocol errors the page saw. `allow` lists
 * regular expressions of console errors that are expected (documented per use).
 */
export function assertNoErrors(client, state, allow = []) {
  const problems = client.problems.filter((p) => !allow.some((re) => re.test(p)));
  assert.deepEqual(problems, [], `${client.transport}: console or page errors`);
  assert.deepEqual(state.protocolErrors, [], `${client.transport}: protocol errors`);
}

export async function closeClient(client) {
  if (client) await client.context.close().catch(() => {});
}
