// The display board (/display): every table, live over /ws/display
// (SPEC §2.4: pick / unpick / claimed T ID / complete T / cancel T).
//
// Display frames carry ticket ids only. The visitors' names come from
// GET /api/tickets/serving (number and name of every ticket in service, no
// emails), read when the display (re)connects and after a claim of a
// ticket it cannot name yet. (Until session 18 the display listened on a
// second, /ws/staff connection, which put every waiting visitor's email
// address into the browser of a public screen.) Names are remembered in
// localStorage (id → name only, the last 300), so a reloaded display still
// names the tickets it saw.
(function () {
  'use strict';
  const N = Math.max(1, parseInt(document.body.dataset.tables, 10) || 16);
  const list = FB.$('tables');
  const conn = FB.$('conn');
  const banner = FB.$('offline');
  const summary = FB.$('summary');
  const NAMES_KEY = 'floorbell.display.names';
  const MAX_NAMES = 300;

  const names = new Map(FB.local.get(NAMES_KEY) || []);
  let tables = fresh();
  let before = fresh(); // the state before the last reconnect: no flash for what was already there
  let quietUntil = 0; // no flash for the state drawn on first load
  let connected = false;
  let offlineSince = null;

  function fresh() {
    return Array.from({ length: N }, () => ({ staffed: false, tickets: [] }));
  }

  // ------------------------------------------------------------ the cards
  const cards = [];
  for (let t = 0; t < N; t++) {
    const card = {
      li: FB.el('li', { class: 'table free', 'data-table': t }),
      state: FB.el('div', { class: 'tstate' }),
      ticket: FB.el('div', { class: 'tticket' }),
      name: FB.el('div', { class: 'tname' }),
      more: FB.el('div', { class: 'tmore' }),
    };
    card.li.append(FB.el('div', { class: 'tnum', text: 'Table ' + t }), card.state, card.ticket, card.name, card.more);
    cards.push(card);
    list.append(card.li);
  }

  let scheduled = false;
  function render() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(draw);
  }

  function draw() {
    scheduled = false;
    let serving = 0, staffed = 0;
    tables.forEach((tb, t) => {
      const c = cards[t];
      const kind = tb.tickets.length ? 'serving' : tb.staffed ? 'staffed' : 'free';
      const id = tb.tickets.length ? tb.tickets[tb.tickets.length - 1] : null;
      const name = id === null ? '' : names.get(id) || '';
      if (kind === 'serving') serving++;
      else if (kind === 'staffed') staffed++;
      c.li.classList.remove('free', 'staffed', 'serving');
      c.li.classList.add(kind);
      c.li.dataset.state = kind;
      c.li.dataset.ticket = id === null ? '' : id;
      c.state.textContent = kind === 'serving' ? 'Serving' : kind === 'staffed' ? 'Staffed' : 'Free';
      c.ticket.textContent = id === null ? '' : id;
      c.name.textContent = name;
      const others = tb.tickets.slice(0, -1);
      c.more.textContent = others.length ? 'also ' + others.map((i) => '#' + i).join(', ') : '';
      c.li.setAttribute('aria-label', 'Table ' + t + ': ' +
        (kind === 'serving' ? 'serving ticket ' + id + (name ? ', ' + name : '') : kind));
    });
    summary.textContent = serving + ' serving · ' + staffed + ' staffed · ' + (N - serving - staffed) + ' free';
  }

  function flash(t) {
    const li = cards[t].li;
    li.classList.remove('flash');
    void li.offsetWidth; // restart the animation
    li.classList.add('flash');
    setTimeout(() => li.classList.remove('flash'), 4200);
  }

  // ------------------------------------------------------------ layout
  // As many columns as make the cards largest (a little wider than tall);
  // on a small screen with many tables the board scrolls instead.
  function layout() {
    const r = list.getBoundingClientRect();
    const W = r.width || window.innerWidth, H = r.height || window.innerHeight;
    let best = 1, bestScore = 0;
    for (let c = 1; c <= N; c++) {
      const rows = Math.ceil(N / c);
      const score = Math.min(W / c, (H / rows) * 1.5);
      if (score > bestScore) { bestScore = score; best = c; }
    }
    const rows = Math.ceil(N / best);
    list.style.setProperty('--cols', best);
    list.style.setProperty('--rows', rows);
    list.classList.toggle('scroll', H / rows < 120);
  }
  window.addEventListener('resize', layout);
  layout();

  // ------------------------------------------------------------ /ws/display
  function table(word) {
    const t = parseInt(word, 10);
    return t >= 0 && t < N ? t : -1;
  }

  const display = new FB.Socket('/ws/display', {
    open() {
      before = tables;
      tables = fresh(); // the server sends the whole state right after connecting
      if (!connected) quietUntil = Date.now() + 500;
      connected = true;
      fetchServing();
      render();
    },
    message(text) {
      const w = text.split(' ');
      const t = table(w[1]);
      if (t < 0) return; // `error ping malformed command`: the probe's answer
      const tb = tables[t];
      switch (w[0]) {
        case 'pick':
          tb.staffed = true;
          break;
        case 'unpick':
          tb.staffed = false;
          tb.tickets = [];
          break;
        case 'claimed': {
          const id = parseInt(w[2], 10);
          if (!(id >= 0)) return;
          tb.staffed = true;
          if (!tb.tickets.includes(id)) tb.tickets.push(id);
          const isNew = Date.now() > quietUntil && !before[t].tickets.includes(id);
          if (isNew) flash(t);
          const announce = () => {
            if (!isNew) return;
            const name = names.get(id);
            FB.announce('Table ' + t + ' now serving ticket ' + id + (name ? ', ' + name : ''));
          };
          if (names.has(id)) announce();
          else fetchServing().then(announce);
          break;
        }
        case 'complete':
        case 'cancel':
          // The frame names the table, not the ticket: with one ticket there
          // it is that one; with several, connecting again gives the exact state.
          if (tb.tickets.length > 1) { display.reconnectNow(); return; }
          tb.tickets = [];
          before[t].tickets = [];
          break;
        default:
          return;
      }
      render();
    },
    state(s) {
      FB.showConn(conn, s);
      if (s === 'offline' && offlineSince === null) offlineSince = new Date();
      if (s === 'online') offlineSince = null;
      document.body.classList.toggle('offline', s === 'offline');
      banner.hidden = s !== 'offline';
      if (s === 'offline') {
        banner.textContent = 'Offline since ' + hhmm(offlineSince) + ' – reconnecting… showing the last known state';
      }
    },
  }, { every: 25000, text: 'ping' });

  // ------------------------------------------------------------ names
  let saveTimer = 0;
  function remember(ticket) {
    if (!ticket || typeof ticket.id !== 'number' || typeof ticket.name !== 'string') return;
    if (names.get(ticket.id) === ticket.name) return;
    names.delete(ticket.id);
    names.set(ticket.id, ticket.name);
    while (names.size > MAX_NAMES) names.delete(names.keys().next().value);
    clearTimeout(saveTimer);
    saveTimer = setTimeout(saveNames, 300);
    render();
  }
  function saveNames() {
    clearTimeout(saveTimer);
    FB.local.set(NAMES_KEY, Array.from(names));
  }
  window.addEventListener('pagehide', saveNames);
  // One read at a time; claims that come meanwhile get one more read after
  // it (a burst of claims costs two reads). Resolves when the names it
  // read are remembered.
  let reading = null;
  let again = null;
  function fetchServing() {
    if (reading) {
      if (!again) again = reading.then(() => { again = null; return fetchServing(); });
      return again;
    }
    reading = fetch('/api/tickets/serving', { cache: 'no-store' })
      .then((r) => (r.ok ? r.json() : null))
      .then((body) => {
        if (body && Array.isArray(body.serving)) body.serving.forEach(remember);
      })
      .catch(() => {}) // offline: the socket's reconnect reads again
      .finally(() => { reading = null; });
    return reading;
  }

  // ------------------------------------------------------------ clock, full screen
  function hhmm(d) {
    return (d.getHours() < 10 ? '0' : '') + d.getHours() + ':' + (d.getMinutes() < 10 ? '0' : '') + d.getMinutes();
  }
  const clock = FB.$('clock');
  const tick = () => { clock.textContent = hhmm(new Date()); };
  tick();
  setInterval(tick, 1000);

  const fs = FB.$('fullscreen');
  const canFull = document.documentElement.requestFullscreen;
  fs.hidden = !canFull;
  function toggleFull() {
    if (!canFull) return;
    if (document.fullscreenElement) document.exitFullscreen();
    else document.documentElement.requestFullscreen().catch(() => {});
  }
  fs.addEventListener('click', toggleFull);
  document.addEventListener('fullscreenchange', () => {
    fs.textContent = document.fullscreenElement ? 'Exit full screen' : 'Full screen';
    setTimeout(layout, 50);
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'f' && !e.ctrlKey && !e.metaKey && !e.altKey) toggleFull();
  });
  render();
})();
