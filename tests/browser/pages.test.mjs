// End-to-end tests of the built-in pages in headless Chromium against the
// real binary. Run by run.mjs (node:test); see README, "Built-in pages".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, api, createStaff, gatewayToken, launchBrowser, openPage, driver, shot, eventually,
  SHOT_DIR, TABLES,
} from './lib.mjs';

const TV = { width: 1280, height: 720 };
const TABLET = { width: 1024, height: 768 };
const TABLET_PORTRAIT = { width: 768, height: 1024 };
const PHONE = { width: 375, height: 667 };

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => {
  if (browser) await browser.close();
  console.log('screenshots in ' + SHOT_DIR);
});

// Starts a server for one test and stops it when the test ends.
async function serverFor(t, options) {
  const s = await startServer(options);
  t.after(() => s.stop());
  return s;
}

function noProblems(...pages) {
  for (const p of pages) assert.deepEqual(p.problems, [], 'the page logged problems');
}

const card = (page, t) => page.locator(`#tables li[data-table="${t}"]`);

test('pages and assets: content types, ETag, 304, HEAD, 405, 404', { timeout: 30000 }, async (t) => {
  const s = await serverFor(t);
  const pages = { '/': 'floorbell', '/display': 'Display board', '/staff': 'Staff console', '/kiosk': 'Take a ticket', '/orders': 'Order board' };
  for (const [p, title] of Object.entries(pages)) {
    const r = await api(s, 'GET', p, { token: null, expect: 200 });
    assert.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.match(r.text, new RegExp(`<title>${title}`));
    assert.match(r.headers.get('content-security-policy'), /default-src 'none'/);
    // Older browsers need the WebSocket origin named (pages/mod.rs, `csp`).
    const host = new URL(s.url).host;
    assert.ok(r.headers.get('content-security-policy').includes(`connect-src 'self' ws://${host} wss://${host};`));
    const etag = r.headers.get('etag');
    assert.match(etag, /^"[0-9a-f]{16}"$/);
    assert.equal(r.headers.get('cache-control'), 'no-cache');
    const again = await fetch(s.url + p, { headers: { 'if-none-match': etag } });
    assert.equal(again.status, 304);
    assert.equal(await again.text(), '');
    const head = await fetch(s.url + p, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(Buffer.byteLength(r.text)));
    assert.equal((await api(s, 'POST', p, { token: null })).status, 405);
  }
  // The tables come from --tables.
  assert.match((await api(s, 'GET', '/display', { token: null })).text, new RegExp(`data-tables="${TABLES}"`));
  // Assets, linked with the build tag, are immutable; without it, revalidated.
  const html = (await api(s, 'GET', '/', { token: null })).text;
  const css = /href="(\/assets\/floorbell\.css\?v=[0-9a-f]+)"/.exec(html)[1];
  const r = await fetch(s.url + css);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'text/css; charset=utf-8');
  assert.match(r.headers.get('cache-control'), /immutable/);
  const js = await fetch(s.url + '/assets/display.js');
  assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
  assert.equal(js.headers.get('cache-control'), 'no-cache');
  assert.equal((await fetch(s.url + '/assets/icon.svg')).headers.get('content-type'), 'image/svg+xml');
  assert.equal((await fetch(s.url + '/assets/nope.js')).status, 404);
  assert.equal((await fetch(s.url + '/assets/nope.js', { method: 'POST' })).status, 404);
  assert.equal((await fetch(s.url + '/assets/common.js', { method: 'DELETE' })).status, 405);
});

test('index: links the four pages, shows the version and that the server is online', { timeout: 60000 }, async (t) => {
  const s = await serverFor(t);
  const version = (await api(s, 'GET', '/api/v2', { token: null, expect: 200 })).json.version;
  const page = await openPage(browser, s, '/', { width: 1024, height: 640 });
  t.after(() => page.context().close());
  await page.locator('#conn[data-state="online"]').waitFor();
  assert.equal(await page.locator('#conn').textContent(), 'Online');
  assert.equal(await page.locator('#version').textContent(), version);
  for (const href of ['/display', '/staff', '/kiosk', '/orders']) {
    assert.equal(await page.locator(`nav a[href="${href}"]`).count(), 1, href);
  }
  await shot(page, 'index', { doc: true });
  // The server stops: the page says so at its next check (every 10 s).
  await s.stop();
  await page.locator('#conn[data-state="offline"]').waitFor({ timeout: 15000 });
  assert.equal(await page.locator('#conn').textContent(), 'Offline');
  noProblems(page);
});

test('kiosk → staff → display: take a ticket, accept it, serve it, complete it', { timeout: 120000 }, async (t) => {
  const s = await serverFor(t);
  const kimToken = await createStaff(s, 'Kim');
  const anaToken = await createStaff(s, 'Ana');
  const benToken = await createStaff(s, 'Ben');

  const display = await openPage(browser, s, '/display', TV);
  t.after(() => display.context().close());
  await display.locator('#conn[data-state="online"]').waitFor();
  assert.equal(await display.locator('#tables li').count(), TABLES);

  // Others on the floor: Ana serves a visitor at table 1, Ben sits at 6.
  const d = await driver(browser, s);
  t.after(() => d.close());
  const kioskWs = await d.ws('/ws/kiosk');
  const ana = await d.ws('/ws/staff');
  const ben = await d.ws('/ws/staff');
  assert.equal(await ana.send(`pick 1 ${anaToken}`), 'success pick 1');
  assert.equal(await ben.send(`pick 6 ${benToken}`), 'success pick 6');
  assert.match(await kioskWs.send('new maria@example.com Maria Garcia'), /^success new \{"id":0,/);
  assert.match(await kioskWs.send('new tom@example.com Tom Becker'), /^success new \{"id":1,/);
  assert.match(await kioskWs.send('new olivia@example.com Olivia Chen'), /^success new \{"id":2,/);
  assert.equal(await ana.send('accept 0'), 'success claimed 0');
  await eventually('table 1 serving ticket 0', async () =>
    (await card(display, 1).getAttribute('data-state')) === 'serving'
    && (await card(display, 1).locator('.tname').textContent()) === 'Maria Garcia');
  assert.equal(await card(display, 6).getAttribute('data-state'), 'staffed');
  assert.equal(await card(display, 3).getAttribute('data-state'), 'free');
  // Names come from /api/tickets/serving: the public screen never opens
  // /ws/staff, where every waiting visitor's email goes.
  assert.deepEqual([...new Set(display.sockets)], ['/ws/display']);

  // Kim signs in at /staff and picks table 3: the waiting tickets are listed.
  const staff = await openPage(browser, s, '/staff', TABLET);
  t.after(() => staff.context().close());
  await staff.locator('#token').fill(kimToken);
  await staff.locator('#signin button[type=submit]').click();
  await staff.locator('#picker button[data-table="1"]:disabled').waitFor(); // Ana's
  await staff.locator('#picker button[data-table="3"]').click();
  await staff.locator('#at', { hasText: 'Table 3' }).waitFor();
  await eventually('tickets 1 and 2 waiting', async () =>
    (await staff.locator('#waiting li').count()) === 2);
  await eventually('display: table 3 staffed', async () =>
    (await card(display, 3).getAttribute('data-state')) === 'staffed');

  // A visitor takes a ticket at /kiosk, by keyboard alone.
  const kiosk = await openPage(browser, s, '/kiosk', TABLET_PORTRAIT);
  t.after(() => kiosk.context().close());
  await kiosk.locator('#conn[data-state="online"]').waitFor();
  await kiosk.locator('#email').focus();
  await kiosk.keyboard.type('sam.okafor@example.com');
  await kiosk.keyboard.press('Tab');
  await kiosk.keyboard.type('Sam Okafor');
  await kiosk.keyboard.press('Enter');
  await kiosk.locator('#view-done:not([hidden])').waitFor();
  assert.equal(await kiosk.locator('#number').textContent(), '3');
  assert.equal(await kiosk.locator('#thanks').textContent(), 'Thank you, Sam Okafor.');
  assert.equal(await kiosk.evaluate(() => document.activeElement.id), 'done-h');
  await shot(kiosk, 'kiosk', { doc: true });

  // It appears at /staff, live; Kim accepts it.
  const item = staff.locator('#waiting li[data-id="3"]');
  await item.waitFor();
  assert.match(await item.textContent(), /Sam Okafor/);
  await item.getByRole('button', { name: 'Accept ticket 3, Sam Okafor' }).click();
  await staff.locator('#serving li[data-id="3"]').waitFor();
  assert.equal(await staff.locator('#waiting li[data-id="3"]').count(), 0);
  // Ana claims ticket 1 elsewhere: it leaves Kim's waiting list.
  assert.equal(await ana.send('accept 1'), 'success claimed 1');
  await eventually('ticket 1 gone from the waiting list', async () =>
    (await staff.locator('#waiting li[data-id="1"]').count()) === 0);
  await shot(staff, 'staff', { doc: true });

  // /display shows table 3 serving ticket 3 and the visitor's name.
  await eventually('display: table 3 serving ticket 3', async () =>
    (await card(display, 3).getAttribute('data-state')) === 'serving'
    && (await card(display, 3).getAttribute('data-ticket')) === '3');
  assert.equal(await card(display, 3).locator('.tname').textContent(), 'Sam Okafor');
  assert.equal(await card(display, 3).locator('.tticket').textContent(), '3');
  assert.match(await card(display, 1).locator('.tmore').textContent(), /#0/); // Ana now holds 0 and 1
  await display.waitForTimeout(300);
  await shot(display, 'display', { doc: true });

  // Complete clears it: the table is staffed again, with no ticket.
  await staff.getByRole('button', { name: 'Complete ticket 3, Sam Okafor' }).click();
  await staff.locator('#serving-empty:not([hidden])').waitFor();
  await eventually('display: table 3 back to staffed', async () =>
    (await card(display, 3).getAttribute('data-state')) === 'staffed'
    && (await card(display, 3).getAttribute('data-ticket')) === '');
  // Completing one of Ana's two tickets: the display resynchronises.
  assert.equal(await ana.send('complete 0'), 'success complete 0');
  await eventually('display: table 1 serving ticket 1 only', async () =>
    (await card(display, 1).getAttribute('data-ticket')) === '1'
    && (await card(display, 1).locator('.tmore').textContent()) === '');

  // Cancel works the same way: Kim takes Olivia's ticket, then cancels it.
  await staff.getByRole('button', { name: 'Accept ticket 2, Olivia Chen' }).click();
  await eventually('display: table 3 serving ticket 2', async () =>
    (await card(display, 3).getAttribute('data-ticket')) === '2'
    && (await card(display, 3).locator('.tname').textContent()) === 'Olivia Chen');
  await staff.getByRole('button', { name: 'Cancel ticket 2, Olivia Chen' }).click();
  await staff.locator('#info', { hasText: 'Ticket 2 cancelled.' }).waitFor();
  await eventually('display: table 3 staffed after the cancel', async () =>
    (await card(display, 3).getAttribute('data-state')) === 'staffed');

  // Name autocompletion at the kiosk: a returning visitor's email fills the name.
  await kiosk.locator('#again').click();
  await kiosk.locator('#email').fill('olivia@example.com');
  await eventually('the name filled in', async () => (await kiosk.locator('#name').inputValue()) === 'Olivia Chen');
  assert.match(await kiosk.locator('#name-hint').textContent(), /Welcome back, Olivia Chen/);
  await kiosk.locator('#email').fill('nobody@example.com');
  await eventually('the name cleared', async () => (await kiosk.locator('#name').inputValue()) === '');

  // Leaving the table frees it on the display.
  await staff.locator('#leave').click();
  await staff.locator('#view-pick:not([hidden])').waitFor();
  await eventually('display: table 3 free', async () =>
    (await card(display, 3).getAttribute('data-state')) === 'free');
  noProblems(display, staff, kiosk);
});

test('staff: the server\'s errors are shown in plain words', { timeout: 60000 }, async (t) => {
  const s = await serverFor(t);
  const lee = await createStaff(s, 'Lee');
  const max = await createStaff(s, 'Max');
  const staff = await openPage(browser, s, '/staff', PHONE);
  t.after(() => staff.context().close());

  // A wrong token: back to the sign-in form, with the reason.
  await staff.locator('#token').fill('not-a-real-token');
  await staff.locator('#signin button[type=submit]').click();
  await staff.locator('#picker button[data-table="2"]').click();
  await staff.locator('#error', { hasText: 'This staff token is not recognised' }).waitFor();
  assert.match(await staff.locator('#error').textContent(),
    /Server: error pick the provided token does not belong to any staff member/);
  await staff.locator('#view-signin:not([hidden])').waitFor();

  // A table someone else took in the meantime.
  await staff.locator('#token').fill(lee);
  await staff.locator('#signin button[type=submit]').click();
  await staff.locator('#view-pick:not([hidden])').waitFor();
  const d = await driver(browser, s);
  t.after(() => d.close());
  const other = await d.ws('/ws/staff');
  // Send the pick before the page hears that table 2 is taken.
  await staff.evaluate(() => { window.__pick2 = document.querySelector('#picker button[data-table="2"]'); });
  assert.equal(await other.send(`pick 2 ${max}`), 'success pick 2');
  await staff.evaluate(() => { window.__pick2.disabled = false; window.__pick2.click(); });
  await staff.locator('#error', { hasText: 'Table 2 is not available: someone else is there' }).waitFor();

  // Finishing a ticket that is not yours.
  await staff.locator('#picker button[data-table="4"]').click();
  await staff.locator('#view-console:not([hidden])').waitFor();
  const kioskWs = await d.ws('/ws/kiosk');
  await kioskWs.send('new a@example.com Ada');
  assert.equal(await other.send('accept 0'), 'success claimed 0');
  await staff.locator('#view-console details summary').click();
  await staff.locator('#byno-id').fill('0');
  await staff.locator('#byno button[value="complete"]').click();
  await staff.locator('#error', { hasText: 'Ticket 0 is not yours' }).waitFor();
  await staff.locator('#byno-id').fill('99');
  await staff.locator('#byno button[value="cancel"]').click();
  await staff.locator('#error', { hasText: 'Ticket 99 does not exist.' }).waitFor();
  await shot(staff, 'staff-error-phone');

  // The account is removed: the console says it lost its table, and a new
  // pick sends it back to the sign-in form.
  await api(s, 'DELETE', '/api/tickets/staff/Lee', { expect: 200 });
  await staff.locator('#error', { hasText: 'You are no longer at table 4' }).waitFor();
  await staff.locator('#view-pick:not([hidden])').waitFor();
  await staff.locator('#picker button[data-table="5"]').click();
  await staff.locator('#error', { hasText: 'This staff token is not recognised' }).waitFor();
  await staff.locator('#view-signin:not([hidden])').waitFor();
  noProblems(staff);
});

test('display: shows it is offline and reconnects by itself after the server restarts', { timeout: 120000 }, async (t) => {
  const dataDir = (await import('./lib.mjs')).tempDir('floorbell-restart-');
  let s = await startServer({ dataDir });
  t.after(() => s.stop());
  const token = await createStaff(s, 'Kim');
  const display = await openPage(browser, s, '/display', TV);
  t.after(() => display.context().close());
  await display.locator('#conn[data-state="online"]').waitFor();
  let d = await driver(browser, s);
  let staffWs = await d.ws('/ws/staff');
  assert.equal(await staffWs.send(`pick 2 ${token}`), 'success pick 2');
  await eventually('table 2 staffed', async () => (await card(display, 2).getAttribute('data-state')) === 'staffed');
  await d.close();

  // The server dies (no close frame): the display says so, plainly.
  const port = s.port;
  await s.stop('SIGKILL');
  await display.locator('#conn[data-state="offline"]').waitFor();
  await display.locator('#offline:not([hidden])').waitFor();
  assert.match(await display.locator('#offline').textContent(), /Offline since \d\d:\d\d/);
  assert.equal(await display.evaluate(() => document.body.classList.contains('offline')), true);
  await shot(display, 'display-offline', { doc: true });
  await display.waitForTimeout(1500); // a few failed attempts while it is down

  // Same port, same data: the display comes back without a reload.
  s = await startServer({ dataDir, port });
  const t0 = Date.now();
  await display.locator('#conn[data-state="online"]').waitFor({ timeout: 15000 });
  assert.ok(Date.now() - t0 < 15000);
  assert.equal(await display.locator('#offline').isHidden(), true);
  // The staff connection died with the old server: table 2 is free now.
  await eventually('table 2 free', async () => (await card(display, 2).getAttribute('data-state')) === 'free');
  // And it is live again.
  d = await driver(browser, s);
  t.after(() => d.close());
  staffWs = await d.ws('/ws/staff');
  const kioskWs = await d.ws('/ws/kiosk');
  assert.equal(await staffWs.send(`pick 5 ${token}`), 'success pick 5');
  await kioskWs.send('new z@example.com Zoe Park');
  assert.equal(await staffWs.send('accept 0'), 'success claimed 0');
  await eventually('table 5 serving Zoe Park', async () =>
    (await card(display, 5).getAttribute('data-ticket')) === '0'
    && (await card(display, 5).locator('.tname').textContent()) === 'Zoe Park');
  // Reloading keeps the names it learnt (localStorage), and the state (server).
  await display.reload();
  await display.locator('#conn[data-state="online"]').waitFor();
  await eventually('table 5 after reload', async () =>
    (await card(display, 5).locator('.tname').textContent()) === 'Zoe Park');
  // A display switched on after the claim (a new browser: nothing stored)
  // still names the ticket, from GET /api/tickets/serving.
  const late = await openPage(browser, s, '/display', TV);
  t.after(() => late.context().close());
  await late.locator('#conn[data-state="online"]').waitFor();
  await eventually('a late display names ticket 0', async () =>
    (await card(late, 5).getAttribute('data-ticket')) === '0'
    && (await card(late, 5).locator('.tname').textContent()) === 'Zoe Park');
  noProblems(late);
  noProblems(display);
});

test('orders: token kept, live orders, a paged order lights up, elapsed time counts', { timeout: 90000 }, async (t) => {
  const s = await serverFor(t);
  const token = await gatewayToken(s);
  const call = (method, p, body) => api(s, method, p, { token, body });
  assert.equal((await call('POST', '/api/v2/activeorders', { name: '12', orderType: 'ON_PREMISE', locationName: '4' })).status, 201);

  const page = await openPage(browser, s, '/orders', TV);
  t.after(() => page.context().close());
  // A wrong token is refused in plain words, and asked for again.
  await page.locator('#token').fill('0'.repeat(48));
  await page.locator('#token-form button').click();
  await page.locator('#error', { hasText: 'The access token was refused' }).waitFor();
  await page.locator('#view-token:not([hidden])').waitFor();
  // The right one: the active orders arrive.
  await page.locator('#token').fill(token);
  await page.locator('#token-form button').click();
  await page.locator('#orders li[data-name="12"]').waitFor();
  assert.equal(await page.locator('#error').isHidden(), true);

  for (const [name, type, loc] of [['66', 'TO_GO', ''], ['7', 'ON_PREMISE', '15'], ['31', 'ON_PREMISE', '22']]) {
    const body = { name, orderType: type };
    if (loc) body.locationName = loc;
    assert.equal((await call('POST', '/api/v2/activeorders', body)).status, 201);
  }
  await page.locator('#orders li[data-name="31"]').waitFor();
  assert.equal(await page.locator('#orders li').count(), 4);
  assert.equal(await page.locator('#orders li[data-name="66"] .oloc').textContent(), 'No table yet');
  assert.equal(await page.locator('#orders li.paged').count(), 0);

  // Paged through the API: it lights up.
  assert.equal((await call('POST', '/api/v2/activeorders/66/page')).status, 200);
  await page.locator('#orders li.paged[data-name="66"]').waitFor();
  assert.equal(await page.locator('#orders li.paged').count(), 1);
  const bg = await page.locator('#orders li[data-name="66"]').evaluate((e) => getComputedStyle(e).backgroundColor);
  assert.equal(bg, 'rgb(253, 224, 71)');
  // A modification (located) updates it in place.
  assert.equal((await call('PUT', '/api/v2/activeorders/66', { locationName: '9' })).status, 200);
  await page.locator('#orders li[data-name="66"] .oloc', { hasText: 'Table 9' }).waitFor();

  // Elapsed time counts up.
  const secs = async () => {
    const [m, sec] = (await page.locator('#orders li[data-name="12"] .oelapsed').textContent()).split(':').map(Number);
    return m * 60 + sec;
  };
  const a = await secs();
  await page.waitForTimeout(3200);
  assert.ok((await secs()) >= a + 2, 'elapsed time did not count up');
  await shot(page, 'orders', { doc: true });

  // Kept in the browser: a reload connects without asking, still highlighted.
  await page.reload();
  await page.locator('#orders li.paged[data-name="66"]').waitFor();
  assert.equal(await page.locator('#view-token').isHidden(), true);
  // Cleared: it leaves the board.
  assert.equal((await call('DELETE', '/api/v2/activeorders/66')).status, 200);
  await eventually('order 66 gone', async () => (await page.locator('#orders li[data-name="66"]').count()) === 0);
  noProblems(page);
});

test('every page fits phone, tablet and TV sizes, with labelled controls', { timeout: 120000 }, async (t) => {
  const s = await serverFor(t);
  for (const viewport of [PHONE, TABLET_PORTRAIT, { width: 1920, height: 1080 }]) {
    for (const p of ['/', '/display', '/staff', '/kiosk', '/orders']) {
      const page = await openPage(browser, s, p, viewport);
      await page.waitForLoadState('load');
      const report = await page.evaluate(() => {
        const named = (el) => (el.getAttribute('aria-label') || el.textContent || '').trim() !== ''
          || (el.labels && el.labels.length > 0);
        const visible = (el) => el.offsetParent !== null;
        return {
          overflow: document.documentElement.scrollWidth - window.innerWidth,
          unlabelledInputs: [...document.querySelectorAll('input')].filter((i) => !i.labels.length).map((i) => i.id),
          unnamedButtons: [...document.querySelectorAll('button')].filter((b) => visible(b) && !named(b)).length,
          smallTargets: [...document.querySelectorAll('button, input')].filter((b) => visible(b)
            && (b.getBoundingClientRect().height < 44)).map((b) => b.id || b.textContent),
          lang: document.documentElement.lang,
          h1: document.querySelectorAll('h1').length,
        };
      });
      const where = `${p} at ${viewport.width}×${viewport.height}`;
      assert.ok(report.overflow <= 0, `${where} scrolls sideways by ${report.overflow}px`);
      assert.deepEqual(report.unlabelledInputs, [], where);
      assert.equal(report.unnamedButtons, 0, where);
      assert.deepEqual(report.smallTargets, [], `${where}: touch targets under 44 px`);
      assert.equal(report.lang, 'en');
      assert.equal(report.h1, 1, where);
      if (p === '/display') {
        // Every table is on screen at once on tablet and TV.
        const allVisible = await page.evaluate(() => [...document.querySelectorAll('#tables li')]
          .every((li) => { const r = li.getBoundingClientRect(); return r.bottom <= window.innerHeight + 1 && r.right <= window.innerWidth + 1; }));
        if (viewport !== PHONE) assert.ok(allVisible, `${where}: some tables are off screen`);
      }
      noProblems(page);
      await page.context().close();
    }
  }
  // The display at phone size, for the record.
  const phone = await openPage(browser, s, '/display', PHONE);
  await phone.locator('#conn[data-state="online"]').waitFor();
  await shot(phone, 'display-phone');
  await phone.context().close();
});
