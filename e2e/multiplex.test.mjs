// NchanSubscriber and native clients on a multiplexed location (two channels,
// `channel_id {query.id}-a {query.id}-b`, 2 s timeout): compound ids resumed across the
// reconnects the timeout forces. Messages alternate between the two channels.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  assertNoErrors, channelId, closeClient, describeState, launchBrowser, openClient,
  publish, snapshot, waitFor,
} from './lib.mjs';

const CLIENTS = ['es', 'ws-meta', 'nchan-websocket', 'nchan-eventsource', 'nchan-longpoll'];
const EXPECTED_CONSOLE = {
  'nchan-longpoll': [/^console\.error: Failed to load resource: the server responded with a status of 408 /],
};

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

describe('multiplexed delivery across reconnects (/multi_timeout)', { concurrency: true }, () => {
  for (const transport of CLIENTS) {
    test(`${transport}: 24 messages over two channels arrive once, in order`, { timeout: 90_000 }, async () => {
      const channel = channelId(transport);
      let client;
      try {
        client = await openClient(browser, { transport, channel, path: '/multi_timeout' });
        const bodies = [];
        for (let i = 1; i <= 24; i++) {
          const side = i % 3 === 0 ? 'b' : 'a';
          const body = `m${i}${side}`;
          await publish(`${channel}-${side}`, body);
          bodies.push(body);
          await sleep([8, 16].includes(i) ? 4_500 : 150);
        }
        const last = bodies[bodies.length - 1];
        await waitFor(client, (b) => window.received.some((m) => m.body === b), `the last message ${last}`, 30_000, last);
        await sleep(500);
        const state = await snapshot(client, { stop: true });
        const why = `\n${await describeState(client)}`;
        if (process.env.E2E_DEBUG) console.error(why);
        assert.deepEqual(state.received.map((m) => m.body), bodies, `${transport}: once, in order${why}`);
        assert.ok(state.connects >= 3, `${transport}: reconnects ${state.connects}${why}`);
        assertNoErrors(client, state, EXPECTED_CONSOLE[transport]);
      } finally {
        await closeClient(client);
      }
    });
  }
});
