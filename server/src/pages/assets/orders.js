// The order board (/orders) over /api/v2/websocket (SPEC §3.4): the first
// frame is {"accesstoken":"TOKEN"}; then ACTIVE_ORDERS, and one message per
// change (ORDER_CREATED, ORDER_PAGED, ORDER_MODIFIED; a cleared order
// leaves the board). The token is entered once and kept in localStorage;
// a refused token (close 1008) asks for a new one instead of retrying.
// Paged orders stay highlighted until cleared (remembered across reloads).
(function () {
  'use strict';
  const $ = FB.$;
  const KEY = 'floorbell.orders.token';
  const PAGED_KEY = 'floorbell.orders.paged';
  const FRESH_MS = 10000;

  let token = FB.local.get(KEY);
  const orders = new Map(); // uuid → {o, base: ms when elapsedTime was 0, rank}
  let ranks = 0; // first-seen order: ACTIVE_ORDERS is oldest first, new ones follow
  const paged = new Map(FB.local.get(PAGED_KEY) || []); // uuid → ms when paged
  let socket = null;
  let authed = false;

  function showError(text) {
    $('error').textContent = text;
    $('error').hidden = !text;
  }

  function view(which) {
    $('view-token').hidden = which !== 'token';
    $('view-board').hidden = which !== 'board';
    $('forget').hidden = which !== 'board';
    if (which === 'token') $('token').focus();
  }

  function put(o) {
    if (!o || typeof o.uuid !== 'string') return;
    if (o.state === 'cleared') {
      orders.delete(o.uuid);
      paged.delete(o.uuid);
      return;
    }
    const elapsed = typeof o.elapsedTime === 'number' ? o.elapsedTime : 0;
    const known = orders.get(o.uuid);
    orders.set(o.uuid, { o: o, base: Date.now() - elapsed * 1000, rank: known ? known.rank : ranks++ });
  }

  function savePaged() {
    FB.local.set(PAGED_KEY, Array.from(paged));
  }

  function onMessage(text) {
    let m;
    try { m = JSON.parse(text); } catch (e) { return; }
    switch (m.type) {
      case 'ACTIVE_ORDERS':
        authed = true;
        showError('');
        orders.clear();
        (m.items || []).forEach(put);
        for (const uuid of Array.from(paged.keys())) if (!orders.has(uuid)) paged.delete(uuid);
        savePaged();
        break;
      case 'ORDER_PAGED':
        put(m);
        if (m.state !== 'cleared') {
          paged.set(m.uuid, Date.now());
          FB.announce('Order ' + m.name + ' paged');
          setTimeout(render, FRESH_MS + 50);
        }
        savePaged();
        break;
      case 'ORDER_CREATED':
      case 'ORDER_MODIFIED':
        put(m);
        savePaged();
        break;
      default:
        return;
    }
    render();
  }

  function location(o) {
    return o.locationName ? 'Table ' + o.locationName : 'No table yet';
  }

  function render() {
    const list = Array.from(orders.values()).sort((a, b) => a.rank - b.rank);
    const now = Date.now();
    $('orders').replaceChildren(...list.map(({ o, base }) => {
      const at = paged.get(o.uuid);
      const cls = 'card order' + (at ? ' paged' : '') + (at && now - at < FRESH_MS ? ' fresh' : '');
      return FB.el('li', { class: cls, 'data-name': o.name, 'data-uuid': o.uuid, 'data-state': o.state,
        'aria-label': 'Order ' + o.name + ', ' + location(o) + (at ? ', paged' : '') },
        at ? FB.el('span', { class: 'badge', text: 'PAGED' }) : null,
        FB.el('span', { class: 'oname', text: o.name }),
        FB.el('span', { class: 'oloc', text: location(o) }),
        FB.el('span', { class: 'muted', text: o.orderType === 'TO_GO' ? 'To go' : 'Eat in' }),
        FB.el('span', { class: 'oelapsed', 'data-base': base, 'aria-label': 'elapsed time' },
          FB.elapsed((now - base) / 1000)));
    }));
    $('empty').hidden = list.length > 0;
    $('count').textContent = authed ? '(' + list.length + ')' : '';
  }

  function tick() {
    const now = Date.now();
    for (const s of document.querySelectorAll('.oelapsed[data-base]')) {
      s.textContent = FB.elapsed((now - Number(s.dataset.base)) / 1000);
    }
  }
  setInterval(tick, 500);

  function connect() {
    if (!token) { view('token'); return; }
    view('board');
    if (socket) { socket.start(); return; }
    socket = new FB.Socket('/api/v2/websocket', {
      open() {
        authed = false;
        socket.send(JSON.stringify({ accesstoken: token }));
      },
      message: onMessage,
      close(ev) {
        if (ev.code === 1008) {
          // The server refused the token (SPEC §3.4): retrying cannot help.
          showError('The access token was refused. Get a new one from the gateway and enter it below.');
          token = null;
          FB.local.del(KEY);
          orders.clear();
          render();
          view('token');
          return false;
        }
        return true;
      },
      state(s) {
        FB.showConn($('conn'), s);
      },
    });
  }

  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const value = $('token').value.trim();
    if (!value) return;
    token = value;
    FB.local.set(KEY, token);
    $('token').value = '';
    showError('');
    connect();
  });
  $('forget').addEventListener('click', () => {
    token = null;
    FB.local.del(KEY);
    if (socket) socket.stop();
    orders.clear();
    render();
    view('token');
  });

  render();
  connect();
})();
