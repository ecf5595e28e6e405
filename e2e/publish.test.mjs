// A browser publishes over a WebSocket to the publisher location (/pub), as pages do with
// nchan_publisher: each frame is published and answered with a text frame holding the
// channel info; an EventSource on the same channel, in another browser context, gets
// every message once, in order.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BASE, assertNoErrors, channelId, closeClient, launchBrowser, openClient, snapshot, waitFor,
} from './lib.mjs';

const BODIES = ['first', 'second: UTF-8 ✓ 日本語', 'third\nwith a line break'];

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

test('native WebSocket publishing to /pub: an answer per frame, delivered in order', { timeout: 45_000 }, async () => {
  const channel = channelId('wspub');
  let listener;
  let publisher;
  try {
    listener = await openClient(browser, { transport: 'es', channel, path: '/sub' });
    publisher = await openClient(browser, { transport: 'ws-plain', channel: `${channel}-page`, path: '/sub' });
    // The publishing socket is opened by the page, which the server under test served:
    // the same origin, as a page of a real site.
    const answers = await publisher.page.evaluate(async ({ url, bodies }) => {
      const ws = new WebSocket(url);
      const got = [];
      await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = () => reject(new Error('the publishing WebSocket failed to open'));
      });
      for (const body of bodies) {
        const answer = new Promise((resolve, reject) => {
          ws.onmessage = (e) => resolve(e.data);
          ws.onclose = (e) => reject(new Error(`closed ${e.code} ${e.reason}`));
          setTimeout(() => reject(new Error(`no answer to ${JSON.stringify(body)} within 5 s`)), 5000);
        });
        ws.send(body);
        got.push(await answer);
      }
      const closed = new Promise((resolve) => { ws.onclose = (e) => resolve(e.code); });
      ws.close(1000, 'done');
      got.push(await closed);
      return got;
    }, { url: `${BASE.replace(/^http/, 'ws')}/pub?id=${channel}`, bodies: BODIES });

    const closeCode = answers.pop();
    assert.equal(closeCode, 1000, 'the publishing socket closed cleanly');
    answers.forEach((a, i) => {
      assert.equal(typeof a, 'string', `answer ${i + 1} is a text frame`);
      assert.match(a, new RegExp(`^queued messages: ${i + 1}\\r\\nlast requested: `), `answer ${i + 1}: ${JSON.stringify(a)}`);
      assert.match(a, /\r\nactive subscribers: 1(\r\n|$)/, `answer ${i + 1} counts the EventSource: ${JSON.stringify(a)}`);
    });
    await waitFor(listener, (n) => window.received.length >= n, `${BODIES.length} messages`, 15_000, BODIES.length);
    const state = await snapshot(listener, { stop: true });
    assert.deepEqual(state.received.map((m) => m.body), BODIES, 'the EventSource got every frame once, in order');
    assertNoErrors(listener, state);
    assertNoErrors(publisher, await snapshot(publisher, { stop: true }));
  } finally {
    await closeClient(listener);
    await closeClient(publisher);
  }
});
