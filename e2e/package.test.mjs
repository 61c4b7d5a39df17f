// The widget as a host developer gets it: `make package`'s npm tarball installed into a throwaway
// host project, bundled by esbuild exactly as the package's README says, served from the host's
// own origin and mounted, its badge drawn by the host from onUnread; and the <script>-tag
// loader, with calls queued before it loaded.
import { test, before, after } from 'node:test';
import { execFileSync } from 'node:child_process';
import { createServer, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import * as esbuild from 'esbuild';
import { Relay, launch, newContext } from './helpers.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const packaged = join(root, 'target', 'package');

let browser;
let relay;
let host;
let project;
let serviceKey;

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.wasm': 'application/wasm' };

/** The host app: its built files from `dir`, and `/token`, which answers alice's token. */
async function serve(dir) {
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (path.startsWith('/chat/')) {
      // The relay behind the host's own proxy, as docs/integration.md's nginx location does.
      const upstream = httpRequest(
        { host: '127.0.0.1', port: relay.port, method: req.method, path: req.url.slice('/chat'.length), headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode, up.headers);
          up.pipe(res);
        },
      );
      req.pipe(upstream);
      return;
    }
    if (path === '/token') {
      res.setHeader('content-type', 'text/plain');
      return res.end(relay.token('alice'));
    }
    try {
      const body = readFileSync(join(dir, path === '/' ? 'index.html' : path));
      res.setHeader('content-type', TYPES[extname(path || '.html')] ?? TYPES['.html']);
      res.end(body);
    } catch {
      res.statusCode = 404;
      res.end();
    }
  });
  server.on('upgrade', (req, socket, head) => {
    if (!req.url.startsWith('/chat/')) return socket.destroy();
    const up = connect(relay.port, '127.0.0.1', () => {
      const lines = [`${req.method} ${req.url.slice('/chat'.length)} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(lines.join('\r\n') + '\r\n\r\n');
      up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { server, origin: `http://127.0.0.1:${server.address().port}` };
}

before(async () => {
  const tgz = readdirSync(packaged).find((f) => /^tally-widget-.*\.tgz$/.test(f));
  assert.ok(tgz, 'make package (scripts/package.sh) builds target/package/tally-widget-*.tgz');
  project = mkdtempSync(join(tmpdir(), 'tally-host-'));
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'host-app', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--silent', join(packaged, tgz)], { cwd: project });
  browser = await launch();
  const publicDir = join(project, 'public');
  mkdirSync(publicDir);
  host = await serve(publicDir);
  relay = await new Relay(['alice', 'bob'], { args: ['--allow-origin', host.origin] }).start();
  serviceKey = relay.cli('service-key', 'create', 'work-app');
});

after(async () => {
  await relay?.stop();
  host?.server.close();
  await browser?.close();
  if (project) rmSync(project, { recursive: true, force: true });
});

/** bob writes to alice through the service API. */
async function bobWrites(body) {
  const r = await fetch(`${relay.url}/api/v1/service/messages`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${serviceKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ direct: ['bob', 'alice'], sender: 'bob', body }),
  });
  assert.equal(r.status, 201, await r.text());
}

test('the npm tarball installs, bundles with esbuild and mounts, and the host draws its own badge', async () => {
  const installed = JSON.parse(readFileSync(join(project, 'node_modules', 'tally-widget', 'package.json'), 'utf8'));
  assert.equal(installed.types, './tally.d.ts');
  // The package README's example, as a host writes it.
  writeFileSync(
    join(project, 'main.js'),
    `import init, { mount } from "tally-widget";
import wasmUrl from "tally-widget/tally-frontend_bg.wasm";

await init({ module_or_path: wasmUrl });
const widget = mount(document.getElementById("messenger"), {
  relayUrl: window.RELAY_URL,
  getToken: () =>
    fetch("/token", { credentials: "same-origin" }).then((r) =>
      r.ok ? r.text() : Promise.reject(new Error(\`token: HTTP \${r.status}\`)),
    ),
});
widget.onUnread(({ unread }) => (document.getElementById("badge").textContent = String(unread)));
window.widget = widget;
`,
  );
  const built = await esbuild.build({
    absWorkingDir: project,
    entryPoints: ['main.js'],
    bundle: true,
    format: 'esm',
    target: 'es2022',
    loader: { '.wasm': 'file' },
    outdir: 'public/assets',
    publicPath: '/assets',
    metafile: true,
    logLevel: 'silent',
  });
  const outputs = Object.keys(built.metafile.outputs);
  assert.ok(outputs.some((o) => o.endsWith('.wasm')), `the wasm is an asset: ${outputs}`);
  writeFileSync(
    join(project, 'public', 'index.html'),
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Work app</title><link rel="icon" href="data:,"></head>
<body><header>Messages <span id="badge">-</span></header><div id="messenger"></div>
<script>window.RELAY_URL = ${JSON.stringify(relay.url)};</script>
<script type="module" src="/assets/main.js"></script></body></html>`,
  );
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(host.origin + '/');
  await page.waitForSelector('#messenger .tally-launcher');
  await page.waitForFunction(() => document.getElementById('badge').textContent === '0');
  await bobWrites('from the bundle');
  await page.waitForFunction(() => document.getElementById('badge').textContent === '1');
  await page.evaluate(() => window.widget.open({ direct: 'bob' }));
  await page.waitForFunction(() => document.getElementById('badge').textContent === '0');
  assert.deepEqual(errors, []);
  await ctx.close();
});

test('the script-tag loader runs the calls queued before it loaded, in order', async () => {
  writeFileSync(
    join(project, 'public', 'loader.html'),
    `<!doctype html><html lang="de"><head><meta charset="utf-8"><title>Dienstplan</title><link rel="icon" href="data:,">
<script>window.tally=window.tally||function(){(tally.q=tally.q||[]).push(arguments)}</script>
<script>
  window.seen = [];
  tally("onUnread", (u) => window.seen.push(u.unread));
  tally("open", { direct: "bob" });
  document.addEventListener("tally:ready", () => (window.ready = true));
</script></head>
<body><div id="messenger" data-tally-token-url="/token" data-tally-relay-url=${JSON.stringify(relay.url)}></div>
<script type="module" src=${JSON.stringify(relay.url + '/tally-loader.js')}></script></body></html>`,
  );
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(host.origin + '/loader.html');
  await page.waitForFunction(() => window.ready === true, null, { timeout: 10_000 }).catch(() => assert.fail(`not ready: ${errors}`));
  await page.waitForFunction(() => window.ready === true && typeof window.tally.widget === 'object');
  // The queued open ran: the panel shows the direct conversation with Bob, in German.
  const step = (what, f) =>
    page.waitForFunction(f, null, { timeout: 10_000 }).catch(async () => {
      const html = await page.evaluate(() => $t('.tally-panel')?.outerHTML.slice(0, 1500) ?? $t('*')?.outerHTML.slice(0, 500));
      assert.fail(`${what}: ${errors} seen=${await page.evaluate(() => JSON.stringify(window.seen))} ${html}`);
    });
  await step('the panel', () => $t('.tally-panel'));
  await step('bob', () => $t('.tally-conv-title')?.textContent.includes('Bob'));
  await step('onUnread', () => window.seen.length > 0);
  // Calls after loading go straight to the widget.
  await page.evaluate(() => window.tally('close'));
  await step('closed', () => !$t('.tally-panel'));
  await bobWrites('after the loader');
  await step('one unread', () => window.seen.at(-1) === 1);
  assert.equal(await page.evaluate(() => $t('.tally-launcher').getAttribute('aria-label').includes('Nachrichten')), true);
  assert.deepEqual(errors, []);
  await ctx.close();
});

test('behind the host\'s own proxy, relayUrl "/chat" is on the page\'s origin', async () => {
  writeFileSync(
    join(project, 'public', 'proxied.html'),
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Work app</title><link rel="icon" href="data:,"></head>
<body><div id="messenger"></div>
<script type="module">
  import init, { mount } from "/chat/tally-frontend.js";
  await init({ module_or_path: "/chat/tally-frontend_bg.wasm" });
  window.widget = mount(document.getElementById("messenger"), {
    relayUrl: "/chat",
    getToken: () => fetch("/token").then((r) => (r.ok ? r.text() : Promise.reject(new Error("token")))),
  });
  window.widget.onUnread(({ unread }) => (window.unread = unread));
</script></body></html>`,
  );
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  await page.goto(host.origin + '/proxied.html');
  await page.waitForSelector('#messenger .tally-launcher');
  await page.waitForFunction(() => typeof window.unread === 'number');
  const before = await page.evaluate(() => window.unread);
  await bobWrites('through the proxy');
  await page.waitForFunction((n) => window.unread === n + 1, before);
  assert.ok(sockets.length > 0 && sockets.every((u) => u.startsWith(host.origin.replace('http', 'ws') + '/chat/ws')), `${sockets}`);
  assert.deepEqual(errors, []);
  await ctx.close();
});
