// Browser tests of the chat that example.Caddyfile serves (html/index.html, html/chat.js),
// run by TestChatBrowser (chat_test.go) against a Caddy on example.Caddyfile itself:
//   PUSH_BASE=http://127.0.0.1:<port> node --test --test-concurrency=1 chat/chat-suite.mjs
// The file is not named *.test.mjs so that `node --test ./` of the transport suite, which
// runs against another server, does not pick it up. See e2e/README.md.
//
// CHAT_SCREENSHOT=<path> writes the screenshot of two people chatting there (e2e/chat-screenshot.sh
// makes docs/chat.png with it); without it the screenshot goes to a temporary file.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BASE, launchBrowser, watchProblems } from '../lib.mjs';

const TRANSPORTS = { eventsource: 'EventSource', websocket: 'WebSocket', 'long-poll': 'long-poll' };
const WAIT = 15_000; // bound of each wait for the page (generous: the machine may be busy)

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

// ---- helpers

/** A fresh room name (the chat takes 1 to 32 of a-z, 0-9, - and _). */
function roomName(label) {
  return `${label}-${randomBytes(4).toString('hex')}`;
}

/**
 * Opens the chat in a fresh browser context (its own cookies, storage and network state)
 * as `nick` in `room` over `transport`, and waits until it is live. Collects console and
 * page errors, the WebSockets the page opens and its EventSource requests.
 */
async function openChat({ room, nick, transport = 'eventsource', base = BASE, viewport }) {
  const context = await browser.newContext({ viewport: viewport || { width: 900, height: 700 } });
  const page = await context.newPage();
  const client = {
    context, page, nick, transport, room,
    problems: watchProblems(page), websockets: [], eventSources: 0, closed: false,
  };
  page.on('websocket', (ws) => client.websockets.push(ws.url()));
  page.on('request', (req) => { if (req.resourceType() === 'eventsource') client.eventSources++; });
  const url = `${base}/?${new URLSearchParams({ room, nick, transport })}`;
  const res = await page.goto(url, { timeout: WAIT });
  assert.equal(res && res.status(), 200, `GET ${url}`);
  await waitState(client, 'live');
  return client;
}

async function closeChat(client) {
  if (client && !client.closed) {
    client.closed = true;
    await client.context.close().catch(() => {});
  }
}

/** Bounded wait for a condition in the page; on a timeout the error shows the page's state. */
async function waitIn(client, fn, what, arg) {
  try {
    await client.page.waitForFunction(fn, arg, { timeout: WAIT, polling: 50 });
  } catch (err) {
    throw new Error(`${client.nick}: timed out after ${WAIT} ms waiting for ${what}\n${await describe_(client)}`, { cause: err });
  }
}

function waitState(client, state) {
  return waitIn(client, (s) => document.getElementById('status').dataset.state === s, `state ${state}`, state);
}

/** Waits until the page shows every text of `texts`. */
function waitTexts(client, texts) {
  return waitIn(client, (want) => {
    const shown = [...document.querySelectorAll('#messages .text')].map((e) => e.textContent);
    return want.every((t) => shown.includes(t));
  }, `the messages ${JSON.stringify(texts)}`, texts);
}

function waitCount(client, n) {
  return waitIn(client, (want) => document.getElementById('count').dataset.count === String(want),
    `the subscriber count ${n}`, n);
}

/** The messages the page shows, in order. */
function shown(client) {
  return client.page.$$eval('#messages li', (items) => items.map((li) => ({
    id: li.dataset.id,
    nick: li.querySelector('.nick').textContent,
    text: li.querySelector('.text').textContent,
  })));
}

/** The page's own record: state, connects, duplicates, last id. */
function pageState(client) {
  return client.page.evaluate(() => ({
    state: window.chat.state, transport: window.chat.transport, connects: window.chat.connects,
    duplicates: window.chat.duplicates, lastId: window.chat.lastId,
    status: document.getElementById('status').textContent,
  }));
}

async function describe_(client) {
  try {
    const st = await pageState(client);
    const msgs = await shown(client);
    return [
      `  page state: ${JSON.stringify(st)}`,
      `  shown ${msgs.length}: ${msgs.map((m) => `${m.nick}: ${JSON.stringify(m.text)}@${m.id}`).join(' | ')}`,
      `  console/page errors: ${client.problems.join('; ') || 'none'}`,
    ].join('\n');
  } catch (err) {
    return `  (page state unavailable: ${err.message})`;
  }
}

/** Sends `text` as a person would: types it and presses Send; waits until it was sent. */
async function say(client, text) {
  await client.page.getByLabel('Message', { exact: true }).fill(text);
  await client.page.getByRole('button', { name: 'Send' }).click();
  await waitIn(client, () => document.getElementById('text').value === ''
    && !document.querySelector('#send button').disabled, `"${text}" to be sent`);
  assert.equal(await client.page.locator('#error').textContent(), '', `${client.nick}: an error after sending`);
}

/** POSTs a body to the room as `curl -d <body> <base>/chat/pub?room=<room>` does. */
async function curlPublish(room, body, contentType = 'application/x-www-form-urlencoded') {
  const res = await fetch(`${BASE}/chat/pub?room=${room}`, {
    method: 'POST', headers: { 'Content-Type': contentType }, body, signal: AbortSignal.timeout(5_000),
  });
  await res.arrayBuffer();
  assert.ok(res.status === 201 || res.status === 202, `POST /chat/pub?room=${room}: ${res.status}`);
}

/** The room's channel info, as the page reads it. */
async function roomInfo(room) {
  const res = await fetch(`${BASE}/chat/pub?room=${room}`, {
    headers: { Accept: 'application/json' }, signal: AbortSignal.timeout(5_000),
  });
  assert.equal(res.status, 200);
  return res.json();
}

/** Polls the server (bounded) until cond(info) holds for the room's channel info. */
async function waitInfo(room, cond, what) {
  const deadline = Date.now() + WAIT;
  let info;
  for (;;) {
    info = await roomInfo(room);
    if (cond(info)) return info;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; room info ${JSON.stringify(info)}`);
    await new Promise((ok) => setTimeout(ok, 50)); // polling the server: it has no event for this
  }
}

/**
 * Fails on the page's console or page errors, and on messages it received twice. `allow`
 * lists regular expressions of console errors that are expected (documented per use).
 */
async function assertClean(client, allow = []) {
  if (!client.closed) {
    const st = await pageState(client);
    assert.equal(st.duplicates, 0, `${client.nick}: messages received twice`);
  }
  const problems = client.problems.filter((p) => !allow.some((re) => re.test(p)));
  assert.deepEqual(problems, [], `${client.nick}: console or page errors`);
}

/** Both pages show the same messages (same ids), and these (nick, text) pairs. */
async function assertBothShow(a, b, want) {
  const [la, lb] = [await shown(a), await shown(b)];
  assert.deepEqual(la.map((m) => [m.nick, m.text]), want, `${a.nick}'s page\n${await describe_(a)}`);
  assert.deepEqual(lb, la, `${b.nick}'s page shows what ${a.nick}'s does\n${await describe_(b)}`);
  assert.equal(new Set(la.map((m) => m.id)).size, la.length, 'distinct ids');
}

/**
 * A TCP proxy in front of the server, to cut a page's connections the way a network does
 * (no offline event): cut() destroys every connection through it and holds new ones until
 * release(). `connections` counts the connections it forwarded.
 */
async function startProxy() {
  const upstream = new URL(BASE);
  const live = new Set();
  const held = [];
  let holding = false;
  const proxy = { connections: 0 };
  const forward = (client) => {
    proxy.connections++;
    const server = net.connect(Number(upstream.port), upstream.hostname);
    const pair = [client, server];
    live.add(pair);
    const end = () => { live.delete(pair); client.destroy(); server.destroy(); };
    client.on('error', end).on('close', end);
    server.on('error', end).on('close', end);
    client.pipe(server);
    server.pipe(client);
    client.resume();
  };
  const srv = net.createServer({ pauseOnConnect: true }, (client) => {
    if (holding) held.push(client);
    else forward(client);
  });
  await new Promise((ok) => srv.listen(0, '127.0.0.1', ok));
  proxy.url = `http://127.0.0.1:${srv.address().port}`;
  proxy.cut = () => {
    holding = true;
    for (const [c, s] of live) { c.destroy(); s.destroy(); }
    live.clear();
  };
  proxy.release = () => {
    holding = false;
    for (const c of held.splice(0)) forward(c);
  };
  proxy.close = () => {
    proxy.cut();
    for (const c of held.splice(0)) c.destroy();
    return new Promise((ok) => srv.close(ok));
  };
  return proxy;
}

// ---- the tests

describe('chat (example.Caddyfile)', { concurrency: 3 }, () => {
  for (const [transport, label] of Object.entries(TRANSPORTS)) {
    test(`two people chat over ${label}`, async () => {
      const room = roomName(transport);
      let ada, grace;
      try {
        ada = await openChat({ room, nick: 'Ada', transport });
        grace = await openChat({ room, nick: 'Grace', transport });
        for (const c of [ada, grace]) {
          const st = await pageState(c);
          assert.equal(st.transport, transport);
          assert.equal(st.status, `Live · ${label}`, 'the status names the transport');
          // the page really subscribes the way the picker says
          const ws = c.websockets.filter((u) => u.includes('/chat/sub'));
          assert.equal(ws.length > 0, transport === 'websocket', `${c.nick}: WebSockets ${c.websockets}`);
          assert.equal(c.eventSources > 0, transport === 'eventsource', `${c.nick}: EventSource requests`);
        }
        await say(ada, `Hello from Ada over ${label}`);
        await waitTexts(grace, [`Hello from Ada over ${label}`]);
        await say(grace, 'Hi Ada, Grace here');
        await waitTexts(ada, ['Hi Ada, Grace here']);
        await assertBothShow(ada, grace, [['Ada', `Hello from Ada over ${label}`], ['Grace', 'Hi Ada, Grace here']]);
        await assertClean(ada);
        await assertClean(grace);
      } finally {
        await closeChat(ada);
        await closeChat(grace);
      }
    });
  }

  for (const [transport, label] of Object.entries(TRANSPORTS)) {
    test(`offline over ${label}: the 5 messages sent meanwhile arrive once, in order`, async () => {
      const room = roomName(`off-${transport}`);
      let ada, grace;
      try {
        ada = await openChat({ room, nick: 'Ada', transport });
        grace = await openChat({ room, nick: 'Grace', transport });
        await say(ada, 'before');
        await waitTexts(grace, ['before']);
        const before = await pageState(grace);

        await grace.context.setOffline(true);
        // Proof that Grace's page lost its connection, rather than trusting the emulation
        // (Chromium's offline mode leaves open WebSockets and streams alone): the page
        // says so, and the server no longer counts its subscription, only Ada's.
        await waitState(grace, 'offline');
        assert.match((await pageState(grace)).status, /^Offline · /);
        await waitInfo(room, (info) => info.subscribers === 1, "the server to count Ada's subscription only");

        const texts = [1, 2, 3, 4, 5].map((i) => `while Grace is offline ${i}`);
        for (const text of texts) {
          await say(ada, text);
          await waitTexts(ada, [text]);
        }
        assert.deepEqual((await shown(grace)).map((m) => m.text), ['before'],
          'the offline page got nothing while offline');

        await grace.context.setOffline(false);
        await waitTexts(grace, texts);
        await waitState(grace, 'live');
        await assertBothShow(ada, grace, [['Ada', 'before'], ...texts.map((t) => ['Ada', t])]);
        const afterwards = await pageState(grace);
        assert.equal(afterwards.connects, before.connects + 1, 'one reconnect');
        await assertClean(ada);
        await assertClean(grace);
      } finally {
        await closeChat(ada);
        await closeChat(grace);
      }
    });
  }

  // Console errors Chromium itself logs for the cut, per transport: an EventSource stream
  // cut in the middle is "Failed to load resource: net::ERR_INCOMPLETE_CHUNKED_ENCODING"
  // (the page sees an error event, and the browser reconnects). A cut WebSocket and a cut
  // long-poll log nothing.
  const CUT_CONSOLE = {
    eventsource: [/^console\.error: Failed to load resource: net::ERR_INCOMPLETE_CHUNKED_ENCODING$/],
  };
  for (const [transport, label] of Object.entries(TRANSPORTS)) {
    test(`connection cut over ${label} (no offline event): resumes by id, nothing lost or repeated`, async () => {
      const room = roomName(`cut-${transport}`);
      const proxy = await startProxy();
      let ada, grace;
      try {
        ada = await openChat({ room, nick: 'Ada', transport });
        grace = await openChat({ room, nick: 'Grace', transport, base: proxy.url }); // through the proxy
        await say(ada, 'before the cut');
        await waitTexts(grace, ['before the cut']);
        const connections = proxy.connections;

        proxy.cut(); // every connection of Grace's page ends; reconnects wait
        await waitInfo(room, (info) => info.subscribers <= 1, "the server to drop Grace's subscription");
        const texts = [1, 2, 3, 4, 5].map((i) => `during the cut ${i}`);
        for (const text of texts) await curlPublish(room, JSON.stringify({ nick: 'Ada', text }), 'application/json');
        proxy.release();

        await waitTexts(ada, texts); // Ada's own page may be a poll behind, too
        await waitTexts(grace, texts);
        await assertBothShow(ada, grace, [['Ada', 'before the cut'], ...texts.map((t) => ['Ada', t])]);
        assert.ok(proxy.connections > connections, 'the page reconnected');
        await assertClean(ada);
        await assertClean(grace, CUT_CONSOLE[transport]);
      } finally {
        await closeChat(ada);
        await closeChat(grace);
        await proxy.close();
      }
    });
  }

  test('a message published with curl appears in both pages, as text', async () => {
    const room = roomName('curl');
    let ada, grace;
    try {
      ada = await openChat({ room, nick: 'Ada' });
      grace = await openChat({ room, nick: 'Grace', transport: 'websocket' });
      const plain = 'deploy finished <img src=x onerror="window.pwned=1">';
      const spoof = { nick: '<b>Eve</b>', text: '<script>window.pwned=2</script>' };
      await curlPublish(room, plain); // curl -d '...'
      await curlPublish(room, JSON.stringify(spoof), 'text/html'); // stored as text/plain, still JSON
      await waitTexts(ada, [plain, spoof.text]);
      await waitTexts(grace, [plain, spoof.text]);
      await assertBothShow(ada, grace, [['curl', plain], [spoof.nick, spoof.text]]);
      for (const c of [ada, grace]) {
        assert.equal(await c.page.locator('#messages img, #messages script, #messages b b').count(), 0,
          `${c.nick}: bodies are text, not markup`);
        assert.equal(await c.page.evaluate(() => window.pwned), undefined);
        assert.equal(await c.page.locator('#messages li.plain .nick').textContent(), 'curl');
        await assertClean(c);
      }
    } finally {
      await closeChat(ada);
      await closeChat(grace);
    }
  });

  test('history on join is the last 20 messages; the count drops when someone leaves', async () => {
    const room = roomName('history');
    let ada, grace;
    try {
      const all = Array.from({ length: 25 }, (_, i) => `history ${i + 1}`);
      for (const text of all) await curlPublish(room, JSON.stringify({ nick: 'bot', text }), 'application/json');
      const last20 = all.slice(5).map((t) => ['bot', t]);

      ada = await openChat({ room, nick: 'Ada' });
      await waitTexts(ada, [all[24]]);
      grace = await openChat({ room, nick: 'Grace', transport: 'long-poll' });
      await waitTexts(grace, [all[24]]);
      await assertBothShow(ada, grace, last20);

      // Ada and Grace (long-poll is counted while its request waits, so Grace's page
      // is switched to WebSocket for a steady count).
      await grace.page.getByLabel('Transport').selectOption('websocket');
      await waitState(grace, 'live');
      await waitCount(ada, 2);
      await waitCount(grace, 2);
      assert.equal(await ada.page.locator('#count').textContent(), '2 connected');
      assert.deepEqual((await shown(grace)).map((m) => [m.nick, m.text]), last20,
        'the switch of transport resumed from the last id: nothing shown twice');
      await closeChat(grace); // Grace leaves
      await waitCount(ada, 1);
      assert.equal(await ada.page.locator('#count').textContent(), '1 connected');
      assert.deepEqual((await shown(ada)).map((m) => [m.nick, m.text]), last20, 'nothing shown twice');
      await assertClean(ada);
      await assertClean(grace);
    } finally {
      await closeChat(ada);
      await closeChat(grace);
    }
  });

  test('two people chatting: screenshot, phone and desktop, accessibility basics', async () => {
    const room = 'lobby';
    let ada, grace, frame;
    try {
      const desktop = { width: 780, height: 620 };
      const phone = { width: 390, height: 760 };
      ada = await openChat({ room, nick: 'Ada', viewport: desktop });
      grace = await openChat({ room, nick: 'Grace', transport: 'websocket', viewport: phone });
      await say(ada, 'Hi Grace! Did the deploy go out?');
      await waitTexts(grace, ['Hi Grace! Did the deploy go out?']);
      await say(grace, 'Going out now, the tests are green.');
      await curlPublish(room, 'deploy finished: caddy-push is live');
      await waitTexts(ada, ['deploy finished: caddy-push is live']);
      await say(ada, 'Nice. Same room from curl, EventSource and WebSocket.');
      await waitTexts(grace, ['Nice. Same room from curl, EventSource and WebSocket.']);
      await waitTexts(ada, ['Nice. Same room from curl, EventSource and WebSocket.']);
      await waitCount(ada, 2);
      await waitCount(grace, 2);

      for (const c of [ada, grace]) {
        const page = c.page;
        // readable at this width: nothing wider than the window
        assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= innerWidth),
          `${c.nick}: no horizontal scrolling`);
        // every control has a label; the focus is visible
        assert.equal(await page.evaluate(() => [...document.querySelectorAll('input, select')]
          .filter((el) => !el.labels || el.labels.length === 0).length), 0, 'unlabelled controls');
        await page.getByLabel('Room', { exact: true }).focus();
        await page.keyboard.press('Tab');
        assert.equal(await page.evaluate(() => document.activeElement.id), 'nick');
        assert.equal(await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle), 'solid',
          'a visible focus ring');
        // text contrast of at least 4.5:1 (WCAG AA) for every text the page shows
        const low = await page.evaluate(lowContrast);
        assert.deepEqual(low, [], `${c.nick}: text with a contrast under 4.5:1`);
        // the favicon is served
        assert.equal(await page.evaluate(async () => (await fetch(document.querySelector('link[rel=icon]').href)).status), 200);
        // the curl commands name this room and this server
        assert.equal(await page.locator('#curl-send').textContent(), `curl -d 'hello' '${BASE}/chat/pub?room=lobby'`);
      }
      await ada.page.getByLabel('Message', { exact: true }).focus();
      await grace.page.getByLabel('Message', { exact: true }).focus();

      const shots = [await ada.page.screenshot(), await grace.page.screenshot()];
      const ctx = await browser.newContext({
        viewport: { width: desktop.width + phone.width + 3 * 16, height: Math.max(desktop.height, phone.height) + 2 * 16 },
      });
      frame = { context: ctx, closed: false };
      const page = await ctx.newPage();
      await page.setContent(`<body style="margin:0;padding:16px;display:flex;align-items:flex-start;gap:16px;background:#d5d9df">
        ${shots.map((s) => `<img style="display:block;box-shadow:0 1px 4px #0005" src="data:image/png;base64,${s.toString('base64')}">`).join('')}</body>`);
      await page.waitForFunction(() => [...document.images].every((i) => i.complete && i.naturalWidth > 0));
      const png = await page.screenshot();
      let out = process.env.CHAT_SCREENSHOT;
      let tmp;
      if (!out) {
        tmp = await mkdtemp(path.join(tmpdir(), 'chat-screenshot-'));
        out = path.join(tmp, 'chat.png');
      }
      await writeFile(out, png);
      if (tmp) await rm(tmp, { recursive: true });
      assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], 'a PNG');
      assert.ok(png.length > 20_000, `a screenshot with something in it (${png.length} bytes)`);
      await assertClean(ada);
      await assertClean(grace);
    } finally {
      await closeChat(ada);
      await closeChat(grace);
      await closeChat(frame);
    }
  });
});

/**
 * Runs in the page: the elements with their own text whose colour has a contrast under
 * 4.5:1 against the first opaque background behind them (WCAG 2 relative luminance).
 */
function lowContrast() {
  const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const bad = [];
  for (const el of document.body.querySelectorAll('*')) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.checkVisibility()) continue;
    const style = getComputedStyle(el);
    const fg = rgb(style.color).slice(0, 3);
    const [l1, l2] = [lum(fg), lum(background(el))].sort((x, y) => y - x);
    const ratio = (l1 + 0.05) / (l2 + 0.05);
    if (ratio < 4.5) bad.push(`${el.tagName.toLowerCase()}#${el.id}.${el.className}: ${ratio.toFixed(2)}`);
  }
  return bad;
}
