// Every message arrives exactly once and in order, across the reconnects forced by the
// 2 s subscriber timeout of /sub_timeout, for each browser client.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertNoErrors, channelId, closeClient, describeState, launchBrowser, openClient,
  publishPaced, snapshot, waitFor,
} from './lib.mjs';

// Clients that resume after a reconnect, and how their ids reach the server again.
const RESUMING = [
  { transport: 'es', title: 'native EventSource (browser reconnects, Last-Event-ID)' },
  { transport: 'ws-meta', title: 'native WebSocket ws+meta.nchan (reconnect with ?last_event_id=)' },
  { transport: 'nchan-websocket', title: 'NchanSubscriber websocket' },
  { transport: 'nchan-eventsource', title: 'NchanSubscriber eventsource' },
  { transport: 'nchan-longpoll', title: 'NchanSubscriber longpoll' },
];

// Console errors Chromium itself logs for expected HTTP errors, per client.
//   nchan-longpoll: when the subscriber timeout ends a long-poll, nchan answers 408 (caddy-push
//   answers 304, which Chromium does not log); NchanSubscriber treats both as an error and
//   reconnects after 1 s. Chromium logs "Failed to load resource: ... status of 408". (It
//   also resends a request answered 408 on a reused connection once by itself; see
//   publishPaced in lib.mjs.)
const EXPECTED_CONSOLE = {
  'nchan-longpoll': [/^console\.error: Failed to load resource: the server responded with a status of 408 /],
};

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

describe('delivery across reconnects (/sub_timeout, 2 s timeout)', { concurrency: true }, () => {
  for (const { transport, title } of RESUMING) {
    test(`${title}: 30 messages over >5 s arrive once, in order`, { timeout: 90_000 }, async () => {
      const channel = channelId(transport);
      let client;
      try {
        client = await openClient(browser, { transport, channel, path: '/sub_timeout' });
        const bodies = await publishPaced(channel);
        const last = bodies[bodies.length - 1];
        await waitFor(client, (b) => window.received.some((m) => m.body === b),
          `the last message ${JSON.stringify(last)}`, 30_000, last);
        const state = await snapshot(client, { stop: true });
        const why = `\n${await describeState(client)}`;
        if (process.env.E2E_DEBUG) console.error(`${transport}:${why}`);

        assert.deepEqual(state.received.map((m) => m.body), bodies,
          `${transport}: every message exactly once and in order${why}`);
        const ids = state.received.map((m) => m.id);
        assert.ok(ids.every((id) => typeof id === 'string' && id !== ''),
          `${transport}: every message carries an id${why}`);
        assert.equal(new Set(ids).size, ids.length, `${transport}: ids are distinct${why}`);
        assert.ok(state.connects >= 3,
          `${transport}: the 2 s timeout forced at least two reconnects (connects: ${state.connects})${why}`);
        assertNoErrors(client, state, EXPECTED_CONSOLE[transport]);
      } finally {
        await closeClient(client);
      }
    });
  }

  test('native WebSocket without subprotocol: live messages arrive once, in order (/sub)',
    { timeout: 90_000 }, async () => {
      const transport = 'ws-plain';
      const channel = channelId(transport);
      let client;
      try {
        client = await openClient(browser, { transport, channel, path: '/sub' });
        const bodies = await publishPaced(channel, { pauseAfter: [] });
        const last = bodies[bodies.length - 1];
        await waitFor(client, (b) => window.received.some((m) => m.body === b),
          `the last message ${JSON.stringify(last)}`, 30_000, last);
        const state = await snapshot(client, { stop: true });
        const why = `\n${await describeState(client)}`;
        assert.deepEqual(state.received.map((m) => m.body), bodies,
          `${transport}: every message exactly once and in order${why}`);
        assert.equal(state.connects, 1, `${transport}: one connection, no timeout on /sub${why}`);
        assertNoErrors(client, state);
      } finally {
        await closeClient(client);
      }
    });
});
