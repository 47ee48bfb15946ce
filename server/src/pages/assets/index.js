// The index page: asks GET /api/v2 (the gateway's online check, SPEC §3.1)
// every 10 s and shows whether the server answers, and its version.
(function () {
  'use strict';
  const conn = FB.$('conn');
  const version = FB.$('version');
  async function check() {
    try {
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), 5000);
      const r = await fetch('/api/v2', { cache: 'no-store', signal: ctl.signal });
      clearTimeout(timer);
      const body = await r.json();
      if (!r.ok || body.message !== 'online') throw new Error('not online');
      version.textContent = body.version;
      conn.dataset.state = 'online';
      conn.textContent = 'Online';
    } catch (e) {
      conn.dataset.state = 'offline';
      conn.textContent = 'Offline';
    }
  }
  check();
  setInterval(check, 10000);
})();
