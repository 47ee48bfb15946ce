// The staff console (/staff) over /ws/staff (SPEC §2.1, §2.2).
//
// Every command gets exactly one reply, in order, so replies are matched to
// a queue of the commands sent on this connection. The token, the table and
// the tickets being served are kept in sessionStorage (this tab only): after
// a reload or a server restart the console signs in again at the same table
// by itself, and can still finish the tickets it accepted.
(function () {
  'use strict';
  const N = Math.max(1, parseInt(document.body.dataset.tables, 10) || 16);
  const KEY = { token: 'floorbell.staff.token', table: 'floorbell.staff.table', serving: 'floorbell.staff.serving' };
  const $ = FB.$;

  let token = FB.session.get(KEY.token);
  let table = null; // the table the server confirmed
  let wantTable = FB.session.get(KEY.table); // the table to (re)pick on connect
  let taken = new Set();
  const waiting = new Map(); // id → ticket
  const serving = new Map(FB.session.get(KEY.serving) || []); // id → ticket
  let pending = []; // commands awaiting their reply: {word, id, table}
  let online = false;

  function save() {
    if (token) FB.session.set(KEY.token, token); else FB.session.del(KEY.token);
    if (wantTable !== null && wantTable !== undefined) FB.session.set(KEY.table, wantTable); else FB.session.del(KEY.table);
    FB.session.set(KEY.serving, Array.from(serving));
  }

  // ------------------------------------------------------------ messages
  const PLAIN = {
    'error pick the provided token does not belong to any staff member':
      'This staff token is not recognised. Check it, or ask your manager for a new one, and sign in again.',
    'error the chosen table is not available':
      'Table {table} is not available: someone else is there. Choose another table.',
    'error unpick you do not have a table assigned': 'You are not at a table.',
    'error accept your session token was found to be invalid. please relogin':
      'Your staff account was removed or changed. Please sign in again.',
    'error accept you do not have a table chosen': 'Choose a table before accepting a ticket.',
    'error accept ticket id does not exist': 'Ticket {id} does not exist.',
    'error accept this ticket is now claimed': 'Ticket {id} was just taken by another staff member.',
    'error accept the ticket has already been completed or cancelled': 'Ticket {id} is already finished.',
  };
  for (const w of ['cancel', 'complete']) {
    PLAIN['error ' + w + ' you are not assigned to any table'] = 'Choose a table before you ' + w + ' a ticket.';
    PLAIN['error ' + w + ' ticket id does not exist'] = 'Ticket {id} does not exist.';
    PLAIN['error ' + w + ' you do not own this ticket'] =
      'Ticket {id} is not yours: only the staff member serving it can ' + w + ' it.';
    PLAIN['error ' + w + ' the ticket has already been completed or cancelled'] = 'Ticket {id} is already finished.';
  }

  function plain(cmd, text) {
    let words = PLAIN[text];
    if (!words) {
      const m = /^error (\S+) malformed command$/.exec(text);
      words = m ? 'The server did not understand this request (' + m[1] + '). Reload the page and try again.'
        : 'The server refused: ' + text;
    }
    return words.replace('{id}', cmd && cmd.id !== undefined ? cmd.id : '?')
      .replace('{table}', cmd && cmd.table !== undefined ? cmd.table : '?');
  }

  function showError(words, serverText) {
    const box = $('error');
    box.replaceChildren(words, serverText ? FB.el('span', { class: 'detail', text: 'Server: ' + serverText }) : '');
    box.hidden = false;
    $('info').hidden = true;
  }
  function showInfo(words) {
    $('error').hidden = true;
    $('info').textContent = words;
    $('info').hidden = false;
  }

  // ------------------------------------------------------------ commands
  function send(cmd, text) {
    if (!socket.send(text)) {
      showError('Not connected to the server. Wait until the console shows “Live”, then try again.');
      return false;
    }
    pending.push(cmd);
    return true;
  }
  const pick = (t) => send({ word: 'pick', table: t }, 'pick ' + t + ' ' + token);
  const accept = (id) => send({ word: 'accept', id: id }, 'accept ' + id);
  const finish = (word, id) => send({ word: word, id: id }, word + ' ' + id);

  function signOut(message, serverText) {
    if (table !== null) send({ word: 'unpick', quiet: true }, 'unpick');
    token = null;
    table = null;
    wantTable = null;
    serving.clear();
    save();
    if (message) showError(message, serverText); else showInfo('Signed out.');
    render(true);
  }

  function reply(cmd, text) {
    const ok = text.startsWith('success ');
    if (!cmd || cmd.quiet) return;
    if (ok) {
      switch (cmd.word) {
        case 'pick':
          table = cmd.table;
          wantTable = table;
          showInfo('You are at table ' + table + '.');
          break;
        case 'unpick':
          table = null;
          wantTable = null;
          break;
        case 'accept': {
          const t = waiting.get(cmd.id) || serving.get(cmd.id) || { id: cmd.id, name: 'Ticket ' + cmd.id, email: '' };
          waiting.delete(cmd.id);
          serving.set(cmd.id, t);
          showInfo('Ticket ' + cmd.id + ' is yours' + (t.name ? ': ' + t.name : '') + '.');
          break;
        }
        case 'complete':
        case 'cancel':
          serving.delete(cmd.id);
          showInfo('Ticket ' + cmd.id + (cmd.word === 'complete' ? ' completed.' : ' cancelled.'));
          break;
      }
      save();
      render(cmd.word === 'pick' || cmd.word === 'unpick');
      return;
    }
    const words = plain(cmd, text);
    if (/token does not belong|please relogin/.test(text)) {
      signOut(words, text);
      return;
    }
    if (/table is not available/.test(text) || /not assigned to any table|do not have a table/.test(text)) {
      table = null;
      wantTable = null;
    }
    if (cmd.word === 'accept' && /does not exist|now claimed|already been/.test(text)) waiting.delete(cmd.id);
    if ((cmd.word === 'complete' || cmd.word === 'cancel') && /does not exist|do not own|already been/.test(text)) {
      serving.delete(cmd.id);
    }
    save();
    showError(words, text);
    render(cmd.word === 'pick');
  }

  // ------------------------------------------------------------ the socket
  const socket = new FB.Socket('/ws/staff', {
    open() {
      online = true;
      pending = [];
      waiting.clear(); // the server sends every waiting ticket now
      table = null; // a new connection sits at no table
      if (token && wantTable !== null && wantTable !== undefined) pick(wantTable);
      render();
    },
    message(text) {
      if (text.startsWith('success ') || text.startsWith('error ')) {
        reply(pending.shift(), text);
      } else if (text.startsWith('new ')) {
        const t = FB.jsonAfter(text, 'new');
        if (t && typeof t.id === 'number' && !serving.has(t.id)) waiting.set(t.id, t);
        render();
      } else if (text.startsWith('claimed ')) {
        const t = FB.jsonAfter(text, 'claimed');
        if (t) waiting.delete(t.id);
        render();
      } else if (text === 'taken' || text.startsWith('taken ')) {
        taken = new Set(text.split(' ').slice(1).map(Number));
        // Only consoles without a table get this: if this one thought it had
        // one, it lost it (the member picked on another console, or the
        // account was removed).
        if (table !== null && !pending.some((c) => c.word === 'pick' || c.word === 'unpick')) {
          showError('You are no longer at table ' + table +
            ': you chose a table on another device, or your account was changed. Choose a table again.');
          table = null;
          wantTable = null;
          save();
          render(true);
          return;
        }
        render();
      }
    },
    close() {
      online = false;
      pending = [];
      render();
    },
    state(s) {
      FB.showConn($('conn'), s);
    },
  });

  // ------------------------------------------------------------ drawing
  const picker = $('picker');
  const pickButtons = [];
  for (let t = 0; t < N; t++) {
    const b = FB.el('button', { type: 'button', class: 'secondary', 'data-table': t, onclick: () => pick(t) });
    pickButtons.push(b);
    picker.append(b);
  }

  // "waiting 3:07" / "arrived 3:07 ago", counting up from the ticket's start.
  function since(t, serving) {
    const start = Date.parse(t.start);
    return FB.el('span', { class: 'since num', 'data-start': isNaN(start) ? '' : start,
      'data-words': serving ? 'arrived {} ago' : 'waiting {}' });
  }

  function ticketItem(t, buttons) {
    const serving = buttons.length > 1;
    return FB.el('li', { class: 'card ticket' + (serving ? ' two' : ''), 'data-id': t.id },
      FB.el('span', { class: 'id', 'aria-hidden': 'true', text: t.id }),
      FB.el('div', { class: 'who' },
        FB.el('strong', { text: t.name }),
        t.email ? FB.el('span', { text: t.email, title: t.email }) : null,
        since(t, serving)),
      FB.el('div', { class: 'actions' }, ...buttons));
  }

  function tickClocks() {
    const now = Date.now();
    for (const s of document.querySelectorAll('.since[data-start]')) {
      if (s.dataset.start) s.textContent = s.dataset.words.replace('{}', FB.elapsed((now - Number(s.dataset.start)) / 1000));
    }
  }
  setInterval(tickClocks, 500);

  function show(view, focus) {
    for (const v of ['signin', 'pick', 'console']) $('view-' + v).hidden = v !== view;
    if (focus) {
      const h = view === 'signin' ? $('signin-h') : view === 'pick' ? $('pick-h') : $('at');
      h.focus();
      if (view === 'signin') $('token').focus();
    }
  }

  function render(focus) {
    $('signout').hidden = !token;
    if (!token) { show('signin', focus); return; }
    if (table === null) {
      show('pick', focus);
      pickButtons.forEach((b, t) => {
        const isTaken = taken.has(t);
        b.disabled = isTaken || !online;
        b.replaceChildren('Table ' + t, FB.el('small', { text: isTaken ? 'taken' : 'free' }));
        b.setAttribute('aria-label', 'Table ' + t + (isTaken ? ', taken' : ''));
      });
      $('pick-waiting').textContent = waiting.size ? waiting.size + ' waiting.' : '';
      $('title').textContent = 'Staff console';
      return;
    }
    show('console', focus);
    $('at').textContent = 'Table ' + table;
    $('title').textContent = 'Staff console · table ' + table;
    const w = Array.from(waiting.values()).sort((a, b) => a.id - b.id);
    $('waiting').replaceChildren(...w.map((t) => ticketItem(t, [
      FB.el('button', { type: 'button', class: 'ok', disabled: !online, onclick: () => accept(t.id),
        'aria-label': 'Accept ticket ' + t.id + ', ' + t.name }, 'Accept'),
    ])));
    $('waiting-empty').hidden = w.length > 0;
    $('waiting-count').textContent = w.length ? '(' + w.length + ')' : '';
    const s = Array.from(serving.values()).sort((a, b) => a.id - b.id);
    $('serving').replaceChildren(...s.map((t) => ticketItem(t, [
      FB.el('button', { type: 'button', class: 'ok', disabled: !online, onclick: () => finish('complete', t.id),
        'aria-label': 'Complete ticket ' + t.id + ', ' + t.name }, 'Complete'),
      FB.el('button', { type: 'button', class: 'danger', disabled: !online, onclick: () => finish('cancel', t.id),
        'aria-label': 'Cancel ticket ' + t.id + ', ' + t.name }, 'Cancel'),
    ])));
    $('serving-empty').hidden = s.length > 0;
    tickClocks();
  }

  // ------------------------------------------------------------ forms
  $('signin').addEventListener('submit', (e) => {
    e.preventDefault();
    const value = $('token').value.trim();
    if (!value) return;
    if (/\s/.test(value)) { showError('A staff token has no spaces. Check it and try again.'); return; }
    token = value;
    $('token').value = '';
    save();
    showInfo('Signed in. Choose your table.');
    render(true);
  });
  $('signout').addEventListener('click', () => signOut());
  $('leave').addEventListener('click', () => send({ word: 'unpick' }, 'unpick'));
  $('byno').addEventListener('submit', (e) => {
    e.preventDefault();
    const id = parseInt($('byno-id').value, 10);
    if (!(id >= 0)) return;
    const word = e.submitter && e.submitter.value === 'cancel' ? 'cancel' : 'complete';
    if (finish(word, id)) $('byno-id').value = '';
  });

  render(false);
})();
