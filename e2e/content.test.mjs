// Message bodies and content types arrive intact: multi-line bodies, UTF-8, a JSON body
// with its Content-Type, and a message published without any Content-Type.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertNoErrors, channelId, closeClient, describeState, launchBrowser, openClient, publish,
  snapshot, waitFor,
} from './lib.mjs';

const MESSAGES = [
  { body: 'line one\nline two\n\nline four after an empty line', contentType: 'text/plain' },
  { body: '{"n":1,"text":"JSON with a content type","list":[1,2,3]}', contentType: 'application/json' },
  { body: 'ends with a newline\n', contentType: 'text/plain; charset=utf-8' },
  { body: 'UTF-8: héllo wörld ✓ — 日本語 🎉', contentType: 'text/plain; charset=utf-8' },
  { body: 'no content type\nat all', contentType: null },
  { body: 'last', contentType: 'text/x-e2e-last' },
];

// What each client can tell about a message's content type:
//   'meta'   the ws+meta.nchan header (content-type line left out when the message has none)
//   'header' the long-poll response's Content-Type header (none when the message has none)
//   null     nothing (EventSource never carries it; a plain WebSocket frame is the body only)
const CLIENTS = [
  { transport: 'es', title: 'native EventSource', contentType: null },
  { transport: 'ws-meta', title: 'native WebSocket ws+meta.nchan', contentType: 'meta' },
  { transport: 'ws-plain', title: 'native WebSocket without subprotocol', contentType: null },
  { transport: 'nchan-websocket', title: 'NchanSubscriber websocket', contentType: 'meta' },
  { transport: 'nchan-eventsource', title: 'NchanSubscriber eventsource', contentType: null },
  { transport: 'nchan-longpoll', title: 'NchanSubscriber longpoll', contentType: 'header' },
];

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

describe('message content (/sub)', { concurrency: true }, () => {
  for (const { transport, title, contentType } of CLIENTS) {
    test(`${title}: multi-line, UTF-8 and typed bodies arrive intact`, { timeout: 45_000 }, async () => {
      const channel = channelId(`content-${transport}`);
      let client;
      try {
        client = await openClient(browser, { transport, channel, path: '/sub' });
        for (const m of MESSAGES) await publish(channel, m.body, m.contentType);
        await waitFor(client, (n) => window.received.length >= n,
          `${MESSAGES.length} messages`, 15_000, MESSAGES.length);
        const state = await snapshot(client, { stop: true });
        const why = `\n${await describeState(client)}`;

        assert.deepEqual(state.received.map((m) => m.body), MESSAGES.map((m) => m.body),
          `${transport}: bodies intact, once, in order${why}`);
        if (contentType) {
          // the page reports undefined (meta line absent) or null (no header) as "none"
          const seen = state.received.map((m) => m.contentType ?? null);
          assert.deepEqual(seen, MESSAGES.map((m) => m.contentType),
            `${transport}: content types as published (${contentType})${why}`);
        }
        if (transport === 'ws-meta') {
          const opens = state.events.filter((e) => e.type === 'open');
          assert.deepEqual(opens.map((e) => e.protocol), ['ws+meta.nchan'],
            `ws-meta: the server agreed the subprotocol${why}`);
        }
        assertNoErrors(client, state);
      } finally {
        await closeClient(client);
      }
    });
  }
});

// longpoll_multipart_response (nchan_longpoll_multipart_response on): the messages waiting
// for a long-poll come in one multipart/mixed answer, which NchanSubscriber splits into its
// messages; only the last of them carries an id (the answer's Last-Modified and Etag), the
// client's next poll resumes after it, and a message published later comes alone.
describe('all waiting messages in one long-poll (/sub_multipart)', () => {
  test('NchanSubscriber longpoll: a multipart answer, then a single one', { timeout: 45_000 }, async () => {
    const channel = channelId('multipart-longpoll');
    let client;
    try {
      for (const m of MESSAGES) await publish(channel, m.body, m.contentType);
      client = await openClient(browser, { transport: 'nchan-longpoll', channel, path: '/sub_multipart' });
      await waitFor(client, (n) => window.received.length >= n, `${MESSAGES.length} messages`, 15_000,
        MESSAGES.length);
      await publish(channel, 'after', 'text/plain');
      await waitFor(client, (n) => window.received.length >= n, 'the message published after', 15_000,
        MESSAGES.length + 1);
      const state = await snapshot(client, { stop: true });
      const why = `\n${await describeState(client)}`;
      const want = [...MESSAGES, { body: 'after', contentType: 'text/plain' }];
      // NchanSubscriber 1.0.10 keeps the CR of the CRLF that ends each part's body (its
      // regular expression takes the LF alone), against nginx+nchan 1.3.6 as here: the
      // answer's bytes are nchan's.
      assert.deepEqual(state.received.map((m) => m.body),
        [...MESSAGES.map((m) => `${m.body}\r`), 'after'], `bodies intact, once, in order${why}`);
      assert.deepEqual(state.received.map((m) => m.contentType ?? null), want.map((m) => m.contentType),
        `content types as published, from the parts' headers${why}`);
      const hasId = state.received.map((m) => Boolean(m.id));
      assert.deepEqual(hasId, [false, false, false, false, false, true, true],
        `one multipart answer for the ${MESSAGES.length} waiting (only its last part has an id), ` +
        `then one message alone${why}`);
      assert.notEqual(state.received[5].id, state.received[6].id, `the ids move on${why}`);
      assertNoErrors(client, state);
    } finally {
      await closeClient(client);
    }
  });
});
