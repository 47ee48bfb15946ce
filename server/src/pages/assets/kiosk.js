// The kiosk (/kiosk) over /ws/kiosk (SPEC §2.3): `query EMAIL` fills in the
// name of a returning visitor, `new EMAIL NAME` takes the ticket. Replies
// come one per command, in order, and are matched to a queue.
(function () {
  'use strict';
  const $ = FB.$;
  const email = $('email'), name = $('name'), submit = $('submit');
  const EMAIL_RE = /^[^\s@]+@[^\s@]+$/;
  const RESET_AFTER_MS = 30000;

  let pending = [];
  let online = false;
  let autofilled = null; // the name the last query filled in
  let lastQueried = '';
  let queryTimer = 0;
  let resetTimer = 0;
  let busy = false;

  function showError(text) {
    $('error').textContent = text;
    $('error').hidden = !text;
  }

  function updateButton() {
    submit.disabled = busy || !online;
    submit.textContent = busy ? 'Getting your ticket…' : online ? 'Get my ticket' : 'Kiosk offline – reconnecting…';
  }

  // The server counts UTF-8 bytes (254 for an email, 200 for a name).
  function bytes(text) {
    return new TextEncoder().encode(text).length;
  }

  function send(cmd, text) {
    if (!socket.send(text)) return false;
    pending.push(cmd);
    return true;
  }

  // ------------------------------------------------------------ autocomplete
  function query() {
    const e = email.value.trim();
    if (!EMAIL_RE.test(e) || e === lastQueried || bytes(e) > 254) return;
    if (send({ word: 'query', email: e }, 'query ' + e)) lastQueried = e;
  }
  email.addEventListener('input', () => {
    clearTimeout(queryTimer);
    queryTimer = setTimeout(query, 300);
  });
  email.addEventListener('change', query);

  function suggested(forEmail, visitor) {
    if (email.value.trim() !== forEmail) return; // the visitor typed on
    $('name-suggestions').replaceChildren(FB.el('option', { value: visitor }));
    if (!name.value.trim() || name.value === autofilled) {
      name.value = visitor;
      autofilled = visitor;
      $('name-hint').textContent = 'Welcome back, ' + visitor + '! Change the name if you like.';
    }
  }
  function unknown(forEmail) {
    if (email.value.trim() !== forEmail) return;
    $('name-suggestions').replaceChildren();
    if (autofilled !== null && name.value === autofilled) name.value = '';
    autofilled = null;
    $('name-hint').textContent = '';
  }

  // ------------------------------------------------------------ taking a ticket
  $('form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (busy) return;
    const e = email.value.trim();
    const n = name.value.replace(/\s+/g, ' ').trim();
    if (!EMAIL_RE.test(e) || bytes(e) > 254) {
      showError('Please enter your email address, like name@example.com.');
      email.focus();
      return;
    }
    if (!n || bytes(n) > 200) {
      showError(n ? 'Please use a shorter name.' : 'Please enter your name.');
      name.focus();
      return;
    }
    showError('');
    if (!send({ word: 'new', email: e, name: n }, 'new ' + e + ' ' + n)) {
      showError('The kiosk is offline. Please wait a moment and try again.');
      return;
    }
    busy = true;
    updateButton();
  });

  function done(ticket) {
    busy = false;
    updateButton();
    $('number').textContent = ticket.id;
    $('thanks').textContent = 'Thank you, ' + ticket.name + '.';
    $('view-form').hidden = true;
    $('view-done').hidden = false;
    $('done-h').focus();
    clearTimeout(resetTimer);
    resetTimer = setTimeout(reset, RESET_AFTER_MS);
  }

  function reset() {
    clearTimeout(resetTimer);
    $('form').reset();
    $('name-suggestions').replaceChildren();
    $('name-hint').textContent = '';
    autofilled = null;
    lastQueried = '';
    showError('');
    $('view-done').hidden = true;
    $('view-form').hidden = false;
    email.focus();
  }
  $('again').addEventListener('click', reset);

  function reply(cmd, text) {
    if (!cmd) return;
    if (cmd.word === 'query') {
      if (text.startsWith('success query ')) suggested(cmd.email, text.slice('success query '.length));
      else unknown(cmd.email);
      return;
    }
    busy = false;
    updateButton();
    const ticket = text.startsWith('success new ') ? FB.jsonAfter(text, 'success new') : null;
    if (ticket && typeof ticket.id === 'number') done(ticket);
    else showError('Sorry, that did not work. Please check your email and name and try again.');
  }

  // ------------------------------------------------------------ the socket
  const socket = new FB.Socket('/ws/kiosk', {
    open() {
      online = true;
      pending = [];
      lastQueried = '';
      updateButton();
    },
    message(text) {
      reply(pending.shift(), text);
    },
    close() {
      online = false;
      if (busy) {
        showError('The connection was lost before your ticket was confirmed. Please check the display board, or try again.');
      }
      busy = false;
      pending = [];
      updateButton();
    },
    state(s) {
      FB.showConn($('conn'), s, { online: 'Ready' });
    },
  });

  updateButton();
  email.focus();
})();
