// Shared helpers: the real relay binary on a free loopback port with a fresh data dir, tokens
// from `tally-relay token`, and one Chromium context per staff member with the widget mounted
// through the documented `mount()` API.
import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const BIN = join(root, 'target', 'release', 'tally-relay');
// TALLY_DIST: another build of the widget (a benchmark's "before").
export const DIST = process.env.TALLY_DIST || join(root, 'dist');

export class Relay {
  /** `args`: more `serve` flags (limits, for instance). */
  constructor(staff, { args = [] } = {}) {
    this.data = mkdtempSync(join(tmpdir(), 'tally-e2e-'));
    for (const id of staff) this.cli('staff', 'add', id, '--name', id[0].toUpperCase() + id.slice(1));
    this.port = 0;
    this.args = args;
  }
  cli(...args) {
    return execFileSync(BIN, ['--data', this.data, ...args], { encoding: 'utf8' }).trim();
  }
  token(staff) {
    return this.cli('token', staff, '--ttl', '1h');
  }
  async start() {
    const listen = `127.0.0.1:${this.port}`;
    this.child = spawn(BIN, ['--data', this.data, 'serve', '--listen', listen, '--static', DIST, ...this.args], {
      env: { ...process.env, RUST_LOG: 'error' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const line = await new Promise((resolve, reject) => {
      let buf = '';
      this.child.stdout.on('data', (d) => {
        buf += d;
        if (buf.includes('\n')) resolve(buf.split('\n')[0]);
      });
      this.child.on('exit', (code) => reject(new Error(`relay exited with ${code}`)));
    });
    this.url = line.trim().split(' ').pop();
    this.port = Number(new URL(this.url).port);
    return this;
  }
  kill9() {
    this.child.kill('SIGKILL');
    return new Promise((r) => this.child.once('exit', r));
  }
  async stop() {
    if (this.child && this.child.exitCode === null && this.url) {
      // No widget may have seen its counts disagree with the relay's, in any test.
      const metrics = await (await fetch(`${this.url}/metrics`)).text();
      const reported = Number(/^tally_client_divergences_total (\d+)$/m.exec(metrics)?.[1]);
      if (reported !== 0) throw new Error(`widgets reported ${reported} divergences`);
    }
    if (this.child && this.child.exitCode === null) {
      this.child.kill('SIGTERM');
      await new Promise((r) => this.child.once('exit', r));
    }
    rmSync(this.data, { recursive: true, force: true });
  }
}

/**
 * What every page of a test context gets before its own scripts: the widget lives in a shadow
 * root, so page functions reach it through `$t(selector)` / `$$t(selector)` (inside the
 * widget of `#messenger`) and `$focus()` (the focused element, inside shadow roots too).
 * Playwright's own selectors (`page.click('#messenger …')`) pierce shadow roots by themselves.
 */
export function pierce() {
  const root = () => document.querySelector('#messenger')?.shadowRoot ?? document;
  window.$t = (selector) => root().querySelector(selector);
  window.$$t = (selector) => [...root().querySelectorAll(selector)];
  window.$focus = () => {
    let el = document.activeElement;
    while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
    return el;
  };
}

/** A browser context whose pages can reach into the widget (see `pierce`). */
export async function newContext(browser, options = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 760 }, ...options });
  await ctx.addInitScript(pierce);
  return ctx;
}

export async function launch() {
  const args = ['--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
  if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
  return chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args });
}

/** A staff member's tab: the relay's page with the widget mounted for them. */
export async function tab(browser, relay, staff, { context } = {}) {
  const ctx = context ?? (await newContext(browser));
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`[${staff}] page error:`, e.message));
  await page.goto(relay.url + '/');
  await page.waitForFunction(() => window.wasmBindings && window.wasmBindings.mount);
  const token = relay.token(staff);
  await page.evaluate(([token, staff]) => {
    const el = document.createElement('div');
    el.id = 'messenger';
    document.body.append(el);
    window.wasmBindings.mount(el, { token, storageKey: `tally.outbox.${staff}` });
  }, [token, staff]);
  await page.waitForSelector('.tally-launcher');
  return { page, context: ctx, staff, token };
}

/** The launcher's total badge ("" when none). */
export async function total(t) {
  return t.page.evaluate(() => $t('[data-testid=total-badge]')?.dataset.count ?? '');
}

/** Waits until the total badge shows `expected` ("" for none). */
export async function expectTotal(t, expected) {
  await t.page.waitForFunction(
    (want) => ($t('[data-testid=total-badge]')?.dataset.count ?? '') === want,
    String(expected),
    { timeout: 10_000 },
  ).catch(async (e) => {
    throw new Error(`${t.staff}: total badge is "${await total(t)}", expected "${expected}" (${e.message})`);
  });
}

/** Waits until a conversation's list badge shows `expected` ("" for none). */
export async function expectItemBadge(t, title, expected) {
  await t.page.waitForFunction(
    ([title, want]) => {
      const item = $$t('.tally-item').find((b) => b.querySelector('.tally-item-title')?.textContent === title);
      if (!item) return false;
      return (item.querySelector('[data-testid=unread-badge]')?.dataset.count ?? '') === want;
    },
    [title, String(expected)],
    { timeout: 10_000 },
  );
}

export async function openPanel(t) {
  if (!(await t.page.$('#messenger .tally-panel'))) await t.page.click('#messenger .tally-launcher');
  await t.page.waitForSelector('#messenger .tally-panel');
}

/** Opens the panel and waits until the widget holds the relay's snapshot (no "Connecting…"):
 * before that its badges say nothing yet, and a count read then would be a guess. */
export async function synced(t) {
  await openPanel(t);
  await t.page.waitForFunction(() => !$t('.tally-panel .tally-status'), null, { timeout: 10_000 });
}

export async function backToList(t) {
  const thread = await t.page.$('#messenger [aria-label="Back to the conversation"]');
  if (thread) await thread.click();
  const back = await t.page.$('#messenger [aria-label="Back to conversations"]');
  if (back) await back.click();
  // The list of every conversation, whichever tab was chosen last.
  const all = await t.page.$('#messenger [data-testid=tab-all][aria-selected=false]');
  if (all) await all.click();
  await t.page.waitForSelector('#messenger [data-testid=conversation-list], #messenger .tally-empty');
}

export async function openConversation(t, title) {
  // Reading counts only in the focused tab, as for a person who clicks into the window.
  await t.page.bringToFront();
  await openPanel(t);
  await backToList(t);
  await t.page.click(`#messenger .tally-item:has(.tally-item-title:text-is("${title}"))`);
  await t.page.waitForSelector('#messenger .tally-conversation');
}

/** Starts a direct conversation with someone through the dialog, and opens it. */
export async function startDirect(t, withName) {
  await openPanel(t);
  await t.page.click('#messenger [aria-label="New conversation"]');
  await t.page.click(`#messenger .tally-dialog label:has-text("${withName}") input`);
  await t.page.click('#messenger .tally-dialog .tally-primary');
  // The one with that person, not whichever was open before (a full run once typed into the
  // group still on screen while the direct conversation was being opened).
  await t.page.waitForSelector(`#messenger .tally-conversation .tally-conv-title h3:text-is("${withName}")`);
}

export async function say(t, text) {
  await t.page.fill('#messenger [data-testid=composer]', text);
  await t.page.press('#messenger [data-testid=composer]', 'Enter');
  await t.page.waitForFunction(
    (text) => $$t('.tally-msg:not(.tally-pending) .tally-text').some((e) => e.textContent === text),
    text,
    { timeout: 10_000 },
  );
}

/** Creates a group with some people through the dialog, and opens it. */
export async function startGroup(t, names, title) {
  await openPanel(t);
  await t.page.click('#messenger [aria-label="New conversation"]');
  for (const n of names) await t.page.click(`#messenger .tally-dialog label:has-text("${n}") input`);
  if (names.length < 2) {
    // One person and a title still makes a group.
  }
  await t.page.fill('#messenger .tally-dialog [aria-label="Group name"]', title).catch(() => {});
  await t.page.click('#messenger .tally-dialog .tally-primary');
  await t.page.waitForSelector(`#messenger .tally-conv-title h3:text-is("${title}")`);
}

/**
 * Sends `n` messages to a conversation as fast as the relay takes them, from a raw WebSocket
 * opened in `t`'s page (as another device of that staff member would); resolves when all are
 * acknowledged, with the time that took.
 */
export async function blast(t, relay, conversation, n, prefix = 'burst') {
  return (await pump(t, relay, n, { type: 'send_message', conversation, prefix })).ms;
}

/**
 * Sends `n` frames as `t.staff` from a raw WebSocket in `t`'s page, at most 200 waiting for
 * their `ack`; resolves with `{ ms, ack }`: the milliseconds until the last was acknowledged,
 * and that `ack`. `frame` is the frame without `req`; for `send_message`, `prefix` numbers
 * each `client_id` and body. With `paceMs`, one frame at a time, that long apart (so a page
 * receiving them handles each in its own task, as it would from people typing).
 */
export async function pump(t, relay, n, frame, { paceMs = 0 } = {}) {
  const token = relay.token(t.staff);
  return t.page.evaluate(async ([url, token, n, frame, paceMs]) => {
    const ws = new WebSocket(url.replace(/^http/, 'ws') + '/ws');
    await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });
    ws.send(JSON.stringify({ type: 'hello', token, protocol: 3 }));
    const started = performance.now();
    let acked = 0;
    let sent = 0;
    let last = null;
    const make = (i) => {
      if (frame.type !== 'send_message') return { ...frame, req: i };
      const { prefix, ...rest } = frame;
      return { ...rest, req: i, client_id: `${prefix}-${i}`, body: `${prefix} ${i}` };
    };
    const window = paceMs ? 1 : 200;
    const send = () => {
      while (sent < n && sent - acked < window) {
        sent += 1;
        ws.send(JSON.stringify(make(sent)));
      }
    };
    await new Promise((done, fail) => {
      ws.onmessage = (e) => {
        const f = JSON.parse(e.data);
        if (f.type === 'error' && f.req) fail(new Error(JSON.stringify(f)));
        if (f.type === 'ack' && f.req) {
          acked += 1;
          last = f;
          if (acked === n) done();
          else if (paceMs) setTimeout(send, paceMs);
          else send();
        }
      };
      send();
    });
    ws.close();
    return { ms: performance.now() - started, ack: last };
  }, [relay.url, token, n, frame, paceMs]);
}

/**
 * A work app's page on its own origin, served by the test: `lang`, its own `css` and content,
 * and the widget loaded from the relay. Start it before the relay (which must be told to allow
 * `origin`), then set `page` (`{ relayUrl, lang, css }`).
 */
export async function hostServer() {
  const host = { page: { relayUrl: '', lang: 'en', css: '' } };
  host.server = createServer((req, res) => {
    const { relayUrl, lang, css } = host.page;
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(`<!doctype html><html lang="${lang}"><head><meta charset="utf-8"><title>Work app</title>
      <meta name="viewport" content="width=device-width, initial-scale=1">
      <style>${css}</style></head>
      <body><h1 id="host-heading">Ward rota</h1><p id="host-text">The work app's own page.</p>
      <button id="host-button">Host button</button>
      <div id="messenger"></div>
      <script type="module">
        import init, { mount } from "${relayUrl}/tally-frontend.js";
        await init({ module_or_path: "${relayUrl}/tally-frontend_bg.wasm" });
        window.tallyMount = (token, extra = {}) => { window.widget = mount(document.getElementById("messenger"), { relayUrl: "${relayUrl}", token, ...extra }); };
      </script></body></html>`);
  });
  await new Promise((r) => host.server.listen(0, '127.0.0.1', r));
  host.origin = `http://127.0.0.1:${host.server.address().port}`;
  return host;
}

/** A staff member on the host's page, in a context of its own (`context` options: viewport,
 * hasTouch, isMobile, colorScheme, locale), mounted with `mount` options. */
export async function guestTab(browser, host, relay, staff, { context = {}, mount = {}, before } = {}) {
  const ctx = await newContext(browser, context);
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`[${staff}] page error:`, e.message));
  await page.goto(host.origin + '/');
  await page.waitForFunction(() => window.tallyMount, null, { timeout: 10_000 });
  if (before) await before(page);
  const token = relay.token(staff);
  await page.evaluate(([token, mount]) => window.tallyMount(token, mount), [token, { storageKey: `tally.${staff}`, ...mount }]);
  await page.waitForSelector('#messenger .tally-launcher');
  return { page, context: ctx, staff, token };
}

/** A long press (touch) on the centre of the element `selector` matches. */
export async function longPress(page, selector) {
  const box = await (await page.$(selector)).boundingBox();
  const cdp = await page.context().newCDPSession(page);
  const point = { x: box.x + box.width / 2, y: box.y + Math.min(box.height / 2, 12) };
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [point] });
  await new Promise((r) => setTimeout(r, 800));
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
}

/**
 * The Notification API, recorded in `window.notes` (headless Chromium shows none): each
 * notification with its `title`, `body` and whether it was `closed`; `window.lastNote` is the
 * newest. Permission is granted.
 */
export async function recordNotifications(context) {
  await context.addInitScript(() => {
    window.notes = [];
    window.Notification = class {
      constructor(title, options) { this.title = title; this.body = options?.body; this.closed = false; window.notes.push(this); window.lastNote = this; }
      close() { this.closed = true; }
      static get permission() { return 'granted'; }
      static requestPermission() { return Promise.resolve('granted'); }
    };
  });
}
