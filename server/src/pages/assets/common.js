// floorbell pages: shared helpers. No dependencies, no build step; every
// page loads this first (window.FB). Text from the server is only ever put
// into the page as text (textContent), never as HTML.
(function () {
  'use strict';
  const FB = (window.FB = {});

  FB.$ = (id) => document.getElementById(id);

  // el('li', {class: 'x', 'aria-label': 'y', onclick: f}, 'text', child, …)
  FB.el = function (tag, props) {
    const node = document.createElement(tag);
    for (const k in props || {}) {
      const v = props[k];
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else node.setAttribute(k, v === true ? '' : v);
    }
    for (let i = 2; i < arguments.length; i++) {
      const c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      node.append(typeof c === 'object' ? c : String(c));
    }
    return node;
  };

  // Storage that never throws (private mode, full quota, disabled).
  function storage(kind) {
    return {
      get(k) {
        try { const v = window[kind].getItem(k); return v === null ? null : JSON.parse(v); } catch (e) { return null; }
      },
      set(k, v) { try { window[kind].setItem(k, JSON.stringify(v)); } catch (e) { /* ignore */ } },
      del(k) { try { window[kind].removeItem(k); } catch (e) { /* ignore */ } },
    };
  }
  FB.local = storage('localStorage');
  FB.session = storage('sessionStorage');

  FB.wsUrl = (path) => (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path;

  // "3:07", "1:02:09".
  FB.elapsed = function (secs) {
    secs = Math.max(0, Math.floor(secs));
    const h = Math.floor(secs / 3600), m = Math.floor((secs % 3600) / 60), s = secs % 60;
    const ss = (s < 10 ? '0' : '') + s;
    return h ? h + ':' + (m < 10 ? '0' : '') + m + ':' + ss : m + ':' + ss;
  };

  // The JSON after "word " in a frame, or null.
  FB.jsonAfter = function (line, word) {
    try { return JSON.parse(line.slice(word.length + 1)); } catch (e) { return null; }
  };

  // A WebSocket that reconnects by itself: after 0.5 s, 1 s, 2 s, 4 s, then
  // every 8 s (±25 %), and at once when the network comes back or the page
  // becomes visible. handlers: open(), message(text), close(event) → false
  // to stop retrying, state('connecting' | 'online' | 'offline' | 'stopped').
  // probe: {every: ms, text}: when nothing arrived for that long, send text
  // and reconnect if nothing answers within another period (a TV on Wi-Fi
  // can lose its connection without ever seeing it close).
  function Socket(path, handlers, probe) {
    this.path = path;
    this.h = handlers;
    this.ws = null;
    this.tries = 0;
    this.timer = 0;
    this.stopped = false;
    this.state = '';
    this.lastRx = 0;
    this.probing = false;
    const again = () => { if (!this.stopped && this.state !== 'online') this.reconnectNow(); };
    window.addEventListener('online', again);
    document.addEventListener('visibilitychange', () => { if (!document.hidden) again(); });
    if (probe) {
      setInterval(() => {
        if (!this.ws || this.state !== 'online' || Date.now() - this.lastRx < probe.every) return;
        if (this.probing) this.reconnectNow();
        else { this.probing = true; this.send(probe.text); }
      }, probe.every);
    }
    this.connect();
  }
  Socket.prototype.setState = function (s) {
    if (s === this.state) return;
    this.state = s;
    if (this.h.state) this.h.state(s);
  };
  Socket.prototype.connect = function () {
    clearTimeout(this.timer);
    this.timer = 0;
    if (this.stopped) return;
    let ws;
    try { ws = new WebSocket(FB.wsUrl(this.path)); } catch (e) { this.retry(); return; }
    this.ws = ws;
    if (this.state !== 'offline') this.setState('connecting');
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.tries = 0;
      this.lastRx = Date.now();
      this.probing = false;
      this.setState('online');
      if (this.h.open) this.h.open();
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.lastRx = Date.now();
      this.probing = false;
      if (typeof ev.data === 'string' && this.h.message) this.h.message(ev.data);
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.ws = null;
      const retry = this.h.close ? this.h.close(ev) !== false : true;
      if (retry) this.retry();
      else this.stop();
    };
    ws.onerror = () => {}; // a close event follows
  };
  Socket.prototype.retry = function () {
    if (this.stopped) return;
    const base = Math.min(8000, 500 * Math.pow(2, this.tries++));
    this.setState('offline');
    this.timer = setTimeout(() => this.connect(), base * (0.75 + Math.random() * 0.5));
  };
  // Drops the connection (if any) and connects again now.
  Socket.prototype.reconnectNow = function () {
    if (this.stopped) return;
    const ws = this.ws;
    this.ws = null;
    if (ws) { try { ws.close(); } catch (e) { /* ignore */ } }
    this.tries = 0;
    this.connect();
  };
  Socket.prototype.send = function (text) {
    if (!this.ws || this.ws.readyState !== 1) return false;
    this.ws.send(text);
    return true;
  };
  Socket.prototype.stop = function () {
    this.stopped = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws) { try { ws.close(); } catch (e) { /* ignore */ } }
    this.setState('stopped');
  };
  Socket.prototype.start = function () {
    if (!this.stopped) return;
    this.stopped = false;
    this.tries = 0;
    this.connect();
  };
  FB.Socket = Socket;

  // Shows a socket's state in a .conn element.
  FB.showConn = function (node, state, words) {
    words = words || {};
    node.dataset.state = state;
    node.textContent =
      state === 'online' ? words.online || 'Live'
        : state === 'connecting' ? 'Connecting…'
          : state === 'stopped' ? 'Not connected'
          : words.offline || 'Offline – reconnecting…';
  };

  // A polite announcement for screen readers.
  FB.announce = function (text) {
    const region = FB.$('announce');
    if (!region) return;
    region.textContent = '';
    setTimeout(() => { region.textContent = text; }, 30);
  };
})();
