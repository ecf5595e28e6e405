// Test client driven by the e2e suite. See client.html for the query parameters.
// State for the tests:
//   window.received  [{body, id, contentType, t}]   every message, in arrival order
//   window.events    [{type, t, ...}]               connection events (open, close, error, ...)
//   window.connects  number of successful connects (opens)
//   window.protocolErrors  [string]                  frames or events the client could not parse
//   window.e2eStop() stops the client (no more reconnects)
(function () {
  'use strict';
  const params = new URLSearchParams(location.search);
  const transport = params.get('transport') || '';
  const channel = params.get('channel') || '';
  const path = params.get('path') || '/sub';
  const reconnectDelay = Number(params.get('reconnectDelay') || 200); // native WebSocket only

  const t0 = performance.now();
  const now = () => Math.round(performance.now() - t0);
  const logEl = document.getElementById('log');
  const log = (line) => { logEl.textContent += now() + ' ' + line + '\n'; };

  window.received = [];
  window.events = [];
  window.connects = 0;
  window.protocolErrors = [];
  window.transport = transport;
  let stopped = false;
  let stopFn = () => {};
  window.e2eStop = () => { stopped = true; stopFn(); };

  function event(type, extra) {
    const e = Object.assign({ type, t: now() }, extra || {});
    window.events.push(e);
    if (type === 'open' || type === 'connect') window.connects++;
    log(type + ' ' + JSON.stringify(extra || {}));
  }
  function message(body, id, contentType) {
    window.received.push({ body, id, contentType, t: now() });
    log('message id=' + id + ' ct=' + contentType + ' ' + JSON.stringify(body));
  }
  function protocolError(text) {
    window.protocolErrors.push(text);
    log('PROTOCOL ERROR ' + text);
  }

  const subUrl = new URL(path + '?id=' + encodeURIComponent(channel), location.href);
  const wsUrl = new URL(subUrl.href);
  wsUrl.protocol = subUrl.protocol === 'https:' ? 'wss:' : 'ws:';

  // ---- native EventSource: the browser reconnects by itself, sending Last-Event-ID
  function nativeEventSource() {
    const es = new EventSource(subUrl.href);
    stopFn = () => es.close();
    es.onopen = () => event('open');
    es.onmessage = (e) => message(e.data, e.lastEventId, undefined);
    es.onerror = () => {
      event('error', { readyState: es.readyState });
      if (es.readyState === EventSource.CLOSED) event('closed'); // the browser gave up
    };
  }

  // ---- native WebSocket, subprotocol ws+meta.nchan: frames are
  //      "id: <id>\n[content-type: <type>\n]\n<body>"; resume with ?last_event_id=<id>
  const META = /^id: ([^\n]*)\n(?:content-type: ([^\n]*)\n)?\n/;
  function nativeWebSocket(meta) {
    let lastId = null;
    let ws = null;
    let timer = null;
    stopFn = () => { clearTimeout(timer); if (ws) ws.close(); };
    function connect() {
      if (stopped) return;
      let url = wsUrl.href;
      if (meta && lastId) url += '&last_event_id=' + encodeURIComponent(lastId);
      ws = meta ? new WebSocket(url, 'ws+meta.nchan') : new WebSocket(url);
      ws.binaryType = 'arraybuffer';
      const sock = ws;
      sock.onopen = () => {
        if (meta && sock.protocol !== 'ws+meta.nchan') {
          protocolError('server agreed subprotocol ' + JSON.stringify(sock.protocol));
        }
        if (!meta && sock.protocol !== '') {
          protocolError('server chose subprotocol ' + JSON.stringify(sock.protocol) + ' though none was offered');
        }
        event('open', { protocol: sock.protocol, resumeFrom: meta ? lastId : null });
      };
      sock.onmessage = (e) => {
        const binary = typeof e.data !== 'string';
        const text = binary ? new TextDecoder().decode(e.data) : e.data;
        if (!meta) { message(text, undefined, undefined); return; }
        const m = META.exec(text);
        if (!m) { protocolError('frame without meta header: ' + JSON.stringify(text.slice(0, 80))); return; }
        lastId = m[1];
        message(text.slice(m[0].length), m[1], m[2]);
      };
      sock.onerror = () => event('error');
      sock.onclose = (e) => {
        event('close', { code: e.code, reason: e.reason, wasClean: e.wasClean });
        if (!stopped) timer = setTimeout(connect, reconnectDelay);
      };
    }
    connect();
  }

  // ---- NchanSubscriber from the npm package, reconnect on (its default)
  function nchanSubscriber(kind) {
    const s = document.createElement('script');
    s.src = '../node_modules/nchan/NchanSubscriber.js';
    s.onerror = () => protocolError('could not load NchanSubscriber.js');
    s.onload = () => {
      const sub = new window.NchanSubscriber(subUrl.href, { subscriber: kind });
      window.sub = sub;
      stopFn = () => { if (sub.running) sub.stop(); };
      sub.on('message', (body, meta) => {
        if (typeof body !== 'string') body = '[' + Object.prototype.toString.call(body) + ']';
        message(body, meta && meta.id, meta && meta['content-type']);
      });
      sub.on('connect', () => event('connect', { transport: sub.transport && sub.transport.name }));
      sub.on('disconnect', (code, text) => event('disconnect', { code: describe(code), text: describe(text) }));
      sub.on('error', (code, text) => event('error', { code: describe(code), text: describe(text) }));
      sub.start();
      if (sub.transport && sub.transport.name !== kind) {
        protocolError('NchanSubscriber picked ' + sub.transport.name + ' instead of ' + kind);
      }
    };
    document.head.appendChild(s);
  }
  function describe(v) {
    if (v === undefined || v === null) return v;
    if (typeof v === 'object') return v.type || Object.prototype.toString.call(v);
    return typeof v === 'string' ? v.slice(0, 100) : v;
  }

  log('transport=' + transport + ' channel=' + channel + ' path=' + path);
  switch (transport) {
    case 'es': nativeEventSource(); break;
    case 'ws-meta': nativeWebSocket(true); break;
    case 'ws-plain': nativeWebSocket(false); break;
    case 'nchan-websocket': nchanSubscriber('websocket'); break;
    case 'nchan-eventsource': nchanSubscriber('eventsource'); break;
    case 'nchan-longpoll': nchanSubscriber('longpoll'); break;
    default: protocolError('unknown transport ' + JSON.stringify(transport));
  }
})();
