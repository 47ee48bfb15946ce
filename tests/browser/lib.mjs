// Helpers for the browser tests: the real floorbell binary on 127.0.0.1,
// Debian's Chromium driven by playwright-core, admin calls, screenshots, and
// a "driver" that opens WebSockets from inside a page to play other staff
// members and kiosks. Every process started here is killed when the test
// process exits, whatever the outcome.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = process.env.FLOORBELL_BIN || path.join(ROOT, 'target', 'debug', 'floorbell');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const ADMIN = 'browser-test-admin-token';
export const TABLES = 12;

const children = new Set();
process.on('exit', () => {
  for (const c of children) {
    try { c.kill('SIGKILL'); } catch (e) { /* gone */ }
  }
});

// Screenshots: always into a temporary folder (printed at the end); with
// FLOORBELL_SCREENSHOTS=DIR (relative to the repository) the ones marked
// `doc` also into DIR: `FLOORBELL_SCREENSHOTS=docs` refreshes those
// committed under docs/ (README, "Built-in pages").
export const SHOT_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'floorbell-shots-'));
const KEEP = process.env.FLOORBELL_SCREENSHOTS ? path.resolve(ROOT, process.env.FLOORBELL_SCREENSHOTS) : null;

export async function shot(page, name, { doc = false } = {}) {
  const file = path.join(SHOT_DIR, name + '.png');
  await page.screenshot({ path: file });
  if (KEEP && doc) {
    fs.mkdirSync(KEEP, { recursive: true });
    fs.copyFileSync(file, path.join(KEEP, name + '.png'));
  }
  return file;
}

export function tempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

// Starts `floorbell serve` and resolves when it prints its address.
export function startServer({ dataDir, port = 0, tables = TABLES } = {}) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`${BIN} is missing: build it first (cargo build -p floorbell-server)`);
  }
  dataDir = dataDir || tempDir('floorbell-browser-');
  const args = ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir,
    '--admin-token', ADMIN, '--tables', String(tables), '--no-mdns', '--reactors', '1'];
  const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
  proc.on('exit', () => children.delete(proc));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error('floorbell did not print its address within 20 s\n' + stderr));
    }, 20000);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`floorbell exited (${code}) before listening\n${stderr}`));
    });
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/127\.0\.0\.1:(\d+))/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({
          url: m[1],
          port: Number(m[2]),
          dataDir,
          proc,
          // Stops it (SIGTERM, then SIGKILL after 5 s) and waits for the exit.
          stop(signal = 'SIGTERM') {
            if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
            return new Promise((res) => {
              const kill = setTimeout(() => proc.kill('SIGKILL'), 5000);
              proc.once('exit', () => { clearTimeout(kill); res(); });
              proc.kill(signal);
            });
          },
        });
      }
    });
  });
}

export async function api(server, method, urlPath, { body, token = ADMIN, expect } = {}) {
  const headers = {};
  if (token) headers.authorization = 'Bearer ' + token;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(server.url + urlPath, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10000),
  });
  const text = await r.text();
  if (expect !== undefined && r.status !== expect) {
    throw new Error(`${method} ${urlPath}: ${r.status} ${text}`);
  }
  let json = null;
  try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
  return { status: r.status, headers: r.headers, text, json };
}

export async function createStaff(server, name) {
  const r = await api(server, 'POST', '/api/tickets/staff', { body: { name }, expect: 201 });
  return r.json.token;
}

// A gateway access token: press the button, then generate (SPEC §3.2).
export async function gatewayToken(server) {
  await api(server, 'POST', '/api/v2/button', { expect: 200 });
  const r = await api(server, 'GET', '/api/v2/accesstoken/generate', { token: null, expect: 201 });
  return r.json.token.token;
}

export const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'];

export async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium`);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: 30000 });
}

// A page in its own context that fails the test on any script error, any
// console error, and any request that leaves 127.0.0.1 (the pages must need
// no network but their server). `problems` collects what went wrong.
export async function openPage(browser, server, urlPath, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport, reducedMotion: 'reduce' });
  context.setDefaultTimeout(10000);
  const problems = [];
  await context.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (u.hostname === '127.0.0.1') return route.continue();
    problems.push('request outside the server: ' + u.href);
    return route.abort();
  });
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => {
    // A connection refused while the server is down is expected in the
    // tests that stop it; anything else logged as an error is a failure.
    if (m.type() === 'error' && !/WebSocket connection to .* failed|ERR_CONNECTION_REFUSED/.test(m.text())) {
      problems.push('console error: ' + m.text());
    }
  });
  page.problems = problems;
  // The WebSocket paths the page opened, in order.
  page.sockets = [];
  page.on('websocket', (ws) => page.sockets.push(new URL(ws.url()).pathname));
  if (urlPath !== null) await page.goto(server.url + urlPath);
  return page;
}

// Opens WebSockets from inside a page (same origin) to act as other staff
// members, kiosks and displays. Each `ws(path)` returns {send(text) → the
// reply, close()}; replies are matched in order, broadcasts are kept.
export async function driver(browser, server) {
  const page = await openPage(browser, server, '/assets/icon.svg');
  await page.evaluate(() => {
    window.socks = {};
    window.nextSock = 0;
  });
  return {
    page,
    async ws(urlPath) {
      const id = await page.evaluate((p) => new Promise((resolve, reject) => {
        const n = window.nextSock++;
        const ws = new WebSocket('ws://' + location.host + p);
        const s = (window.socks[n] = { ws, waiting: [], seen: [] });
        ws.onmessage = (e) => {
          s.seen.push(e.data);
          if (/^(success|error) /.test(e.data) && s.waiting.length) s.waiting.shift()(e.data);
        };
        ws.onopen = () => resolve(n);
        ws.onerror = () => reject(new Error('cannot connect ' + p));
      }), urlPath);
      return {
        send: (text) => page.evaluate(([n, t]) => new Promise((resolve) => {
          const s = window.socks[n];
          s.waiting.push(resolve);
          s.ws.send(t);
        }), [id, text]),
        seen: () => page.evaluate((n) => window.socks[n].seen.slice(), id),
        close: () => page.evaluate((n) => window.socks[n].ws.close(), id),
      };
    },
    close: () => page.context().close(),
  };
}

// Waits for a condition in Node (polling), with a message when it fails.
export async function eventually(what, fn, timeoutMs = 10000) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
