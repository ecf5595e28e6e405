// The chat of example.Caddyfile: a small client of caddy-push's subscriber protocol
// (nchan's), with no library and no build step.
//
//   GET  /chat/sub?room=R   subscribe, as EventSource, WebSocket or long-poll
//   POST /chat/pub?room=R   send: {"nick": ..., "text": ...} as application/json
//   GET  /chat/pub?room=R   the room's info (Accept: application/json), for its subscriber count
//
// Every message has an id, "<time>:<tag>" (its publication second, and its place in that
// second). The page keeps the id of the last message it showed, and each way of
// subscribing resumes from it after a reconnect, so nothing is lost or shown twice:
//   EventSource  the browser reconnects by itself and sends the id as Last-Event-ID; a new
//                EventSource (after going offline, or a change of transport) is given
//                ?last_event_id=<id>
//   WebSocket    subprotocol ws+meta.nchan: each frame is "id: <id>\n[content-type: <type>\n]\n"
//                and the body; the page reconnects with ?last_event_id=<id>
//   long-poll    each answer's Last-Modified and Etag are the cursor, sent back as
//                If-Modified-Since and If-None-Match; the next answer is the next message
// A subscriber with no id starts at the room's last 20 messages (first_message -20).
//
// Bodies are JSON {"nick", "text"} when the page sent them; anything else (curl -d 'hi')
// is shown as plain text from "curl". Every body is shown with textContent, never as HTML.
'use strict';

const TRANSPORTS = { eventsource: 'EventSource', websocket: 'WebSocket', 'long-poll': 'long-poll' };
const STATES = { connecting: 'Connecting', live: 'Live', reconnecting: 'Reconnecting', offline: 'Offline' };
const COUNT_EVERY = 5000; // ms between two reads of the room's subscriber count
const MAX_BODY = 2048;    // the max_message_size of /chat/pub

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);

const chat = {
  room: roomName(query.get('room') || '') || 'lobby',
  nick: (query.get('nick') || stored('nick') || 'guest-' + Math.floor(Math.random() * 9000 + 1000)).slice(0, 24),
  transport: Object.hasOwn(TRANSPORTS, query.get('transport') || '') ? query.get('transport') : 'eventsource',
  lastId: '',       // the id of the last message shown: every (re)connect resumes after it
  state: '',        // connecting, live, reconnecting or offline
  connects: 0,      // how many times a subscription opened
  duplicates: 0,    // messages received again (never, when resuming by id works)
};
window.chat = chat; // read by the browser tests (e2e/chat/)

// ---- message ids: "time:tag", compared by time, then tag

function idParts(id) {
  const [time, tag] = id.split(':');
  return [Number(time), Number(tag)];
}

function isAfter(id, than) {
  if (!than) return true;
  const [t1, g1] = idParts(id);
  const [t2, g2] = idParts(than);
  return t1 > t2 || (t1 === t2 && g1 > g2);
}

// ---- the three ways of subscribing; each calls on.open(), on.message(id, body) and
// on.lost() (the connection is gone: the page reconnects), and returns a close function.

function subUrl(lastId, scheme) {
  const url = new URL('/chat/sub', location.href);
  url.searchParams.set('room', chat.room);
  if (lastId) url.searchParams.set('last_event_id', lastId);
  if (scheme) url.protocol = scheme;
  return url.href;
}

function eventSource(on) {
  const es = new EventSource(subUrl(chat.lastId));
  es.onopen = on.open;
  es.onmessage = (e) => on.message(e.lastEventId, e.data);
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) on.lost(); // refused: the browser gave up
    else setState('reconnecting'); // the browser reconnects by itself, with Last-Event-ID
  };
  return () => es.close();
}

function webSocket(on) {
  const ws = new WebSocket(subUrl(chat.lastId, location.protocol === 'https:' ? 'wss:' : 'ws:'), 'ws+meta.nchan');
  ws.binaryType = 'arraybuffer'; // binary frames: bodies that are not UTF-8
  ws.onopen = () => {
    if (ws.protocol === 'ws+meta.nchan') on.open();
    else ws.close(); // frames without ids could not resume
  };
  ws.onmessage = (e) => {
    const frame = typeof e.data === 'string' ? e.data : new TextDecoder().decode(e.data);
    const end = frame.indexOf('\n\n'); // the header ends at the first empty line
    const id = /^id: (.+)$/m.exec(frame.slice(0, end))?.[1];
    if (end >= 0 && id) on.message(id, frame.slice(end + 2));
  };
  ws.onclose = on.lost;
  return () => {
    ws.onclose = null;
    ws.close();
  };
}

function longPoll(on) {
  const stop = new AbortController();
  let cursor = {};
  if (chat.lastId) { // resume from an id another transport gave
    const [time, tag] = idParts(chat.lastId);
    cursor = { 'If-Modified-Since': new Date(time * 1000).toUTCString(), 'If-None-Match': String(tag) };
  }
  (async () => {
    on.open(); // a long-poll is live while its request waits on the server
    for (;;) {
      let res, body;
      try {
        res = await fetch(subUrl(''), { headers: cursor, cache: 'no-store', signal: stop.signal });
        body = await res.text();
      } catch {
        if (!stop.signal.aborted) on.lost();
        return;
      }
      if (stop.signal.aborted) return;
      if (res.status === 200) {
        const lastModified = res.headers.get('Last-Modified');
        const etag = res.headers.get('Etag');
        cursor = { 'If-Modified-Since': lastModified, 'If-None-Match': etag };
        on.message(Date.parse(lastModified) / 1000 + ':' + /\d+/.exec(etag)[0], body);
      } else if (res.status !== 304) { // 304: the server's timeout, ask again
        on.lost(); // 409, 410, 5xx: start over, from the last id
        return;
      }
    }
  })();
  return () => stop.abort();
}

const SUBSCRIBE = { eventsource: eventSource, websocket: webSocket, 'long-poll': longPoll };

// ---- the connection: one subscription at a time, reconnecting with a growing delay

let closeSubscription = null;
let retryTimer = 0;
let failures = 0;

function connect(state = 'connecting') {
  disconnect();
  if (!navigator.onLine) return setState('offline');
  setState(state);
  closeSubscription = SUBSCRIBE[chat.transport]({
    open() {
      failures = 0;
      chat.connects++;
      setState('live');
      refreshCount();
    },
    message: receive,
    lost() {
      disconnect();
      setState('reconnecting');
      const delay = Math.min(10_000, 500 * 2 ** failures++) * (0.5 + Math.random() / 2);
      retryTimer = setTimeout(() => connect('reconnecting'), delay);
    },
  });
}

function disconnect() {
  clearTimeout(retryTimer);
  if (closeSubscription) closeSubscription();
  closeSubscription = null;
}

// The browser knows when the network goes and comes back: close at once rather than wait
// for a dead connection to time out, and reconnect as soon as it is back. Resuming does
// not depend on these events: it is by id, whatever ended the connection.
addEventListener('offline', () => {
  disconnect();
  setState('offline');
});
addEventListener('online', () => connect('reconnecting'));

function setState(state) {
  chat.state = state;
  const el = $('status');
  el.dataset.state = state;
  el.dataset.transport = chat.transport;
  el.textContent = STATES[state] + ' · ' + TRANSPORTS[chat.transport];
}

// ---- messages

function receive(id, body) {
  if (!isAfter(id, chat.lastId)) {
    chat.duplicates++;
    return;
  }
  chat.lastId = id;
  show(id, body);
}

// A body is {"nick", "text"} JSON, or plain text (curl) shown as from "curl".
function parse(body) {
  try {
    const m = JSON.parse(body);
    if (m && typeof m.text === 'string') {
      const nick = typeof m.nick === 'string' && m.nick.trim() ? m.nick.trim().slice(0, 24) : 'anonymous';
      return { nick, text: m.text, plain: false };
    }
  } catch { /* not JSON: plain text */ }
  return { nick: 'curl', text: body, plain: true };
}

function show(id, body) {
  const { nick, text, plain } = parse(body);
  const item = document.createElement('li');
  item.dataset.id = id;
  item.classList.toggle('plain', plain);
  item.classList.toggle('mine', !plain && nick === chat.nick);
  const sent = new Date(idParts(id)[0] * 1000);
  const time = document.createElement('time');
  time.dateTime = sent.toISOString();
  time.textContent = sent.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const who = document.createElement('b');
  who.className = 'nick';
  who.textContent = nick;
  const what = document.createElement('span');
  what.className = 'text';
  what.textContent = text;
  item.append(time, ' ', who, ' ', what);

  const scroller = document.querySelector('main');
  const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 48;
  $('messages').append(item);
  if (atBottom) scroller.scrollTop = scroller.scrollHeight;
}

// ---- sending

function pubUrl() {
  return '/chat/pub?room=' + encodeURIComponent(chat.room);
}

async function send(event) {
  event.preventDefault();
  const input = $('text');
  const text = input.value.trim();
  if (!text) return;
  const body = JSON.stringify({ nick: chat.nick, text });
  if (!navigator.onLine) return showError('You are offline: not sent.');
  if (new TextEncoder().encode(body).length > MAX_BODY) return showError('That message is too long.');
  const button = event.submitter || $('send').querySelector('button');
  button.disabled = true;
  try {
    const res = await fetch(pubUrl(), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
    if (!res.ok) throw new Error((await res.text()) || res.statusText);
    input.value = '';
    showError('');
  } catch (err) {
    showError('Not sent: ' + err.message);
  } finally {
    button.disabled = false;
    input.focus();
  }
}

function showError(text) {
  $('error').textContent = text;
}

// ---- the room's subscriber count, from its channel info

let countTimer = 0;

async function refreshCount() {
  clearTimeout(countTimer);
  countTimer = setTimeout(refreshCount, COUNT_EVERY);
  if (chat.state !== 'live') return;
  const room = chat.room;
  try {
    const res = await fetch(pubUrl(), { headers: { Accept: 'application/json' }, cache: 'no-store' });
    const info = await res.json();
    if (room !== chat.room || typeof info.subscribers !== 'number') return;
    const el = $('count');
    el.dataset.count = info.subscribers;
    el.textContent = info.subscribers === 1 ? '1 connected' : info.subscribers + ' connected';
  } catch { /* the next round tries again */ }
}

// ---- the settings form, and the page's start

function roomName(text) {
  const name = text.trim().toLowerCase().replace(/\s+/g, '-');
  return /^[a-z0-9_-]{1,32}$/.test(name) ? name : '';
}

function stored(key, value) {
  try {
    if (value === undefined) return localStorage.getItem(key);
    localStorage.setItem(key, value);
  } catch { /* storage may be off */ }
  return null;
}

function showRoom() {
  $('room').value = chat.room;
  $('nick').value = chat.nick;
  $('transport').value = chat.transport;
  document.title = '#' + chat.room + ' · caddy-push chat';
  const origin = location.origin;
  const room = encodeURIComponent(chat.room);
  $('curl-send').textContent = `curl -d 'hello' '${origin}/chat/pub?room=${room}'`;
  $('curl-follow').textContent = `curl -N -H 'Accept: text/event-stream' '${origin}/chat/sub?room=${room}'`;
  $('curl-info').textContent = `curl '${origin}/chat/pub?room=${room}'`;
  const url = new URL(location.href);
  url.search = '?room=' + room + (chat.transport === 'eventsource' ? '' : '&transport=' + chat.transport);
  history.replaceState(null, '', url);
}

$('join').addEventListener('submit', (event) => {
  event.preventDefault();
  const room = roomName($('room').value);
  if (!room) return showError('A room name is 1 to 32 of a-z, 0-9, - and _.');
  chat.nick = $('nick').value.trim().slice(0, 24) || chat.nick;
  stored('nick', chat.nick);
  showError('');
  if (room !== chat.room) {
    chat.room = room;
    chat.lastId = '';
    $('messages').replaceChildren();
    $('count').textContent = '';
    delete $('count').dataset.count;
    showRoom();
    connect();
  }
  $('text').focus();
});

$('nick').addEventListener('change', () => {
  chat.nick = $('nick').value.trim().slice(0, 24) || chat.nick;
  stored('nick', chat.nick);
});

$('transport').addEventListener('change', () => {
  chat.transport = $('transport').value;
  showRoom();
  connect(); // from the last id: the room's messages stay as they are
});

$('send').addEventListener('submit', send);

stored('nick', chat.nick);
showRoom();
connect();
