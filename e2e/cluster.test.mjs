// End to end on a cluster: `make cluster`'s script (a throwaway PostgreSQL, nats-server and
// three release relay nodes with the demo), Alice's browser on one node and Bob's on another.
import { test, before, after } from 'node:test';
import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { BIN, launch, tab, newContext, total, expectTotal, expectItemBadge, openPanel, openConversation, say, synced } from './helpers.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
let browser;
let cluster;

/** The script's nodes, PostgreSQL URL, and a way to stop it all. */
async function startCluster(allowOrigin) {
  const base = 20000 + Math.floor(Math.random() * 20000);
  const child = spawn('bash', [join(root, 'scripts', 'cluster.sh')], {
    cwd: root,
    env: { ...process.env, BASE_PORT: String(base), RUST_LOG: 'error', ALLOW_ORIGIN: allowOrigin },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const out = await new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      if (buf.includes('Logs in')) resolve(buf);
    });
    child.on('exit', (code) => reject(new Error(`cluster.sh exited with ${code}: ${buf}`)));
  });
  const nodes = [...out.matchAll(/node \d: (http:\/\/\S+) \(pid (\d+)\)/g)].map((m) => [m[1], Number(m[2])]);
  const postgres = /PostgreSQL: (\S+)/.exec(out)[1];
  assert.equal(nodes.length, 3, out);
  const node = ([url, pid]) => ({
    url,
    pid,
    token: (staff) => execFileSync(BIN, ['--postgres', postgres, 'token', staff, '--ttl', '1h'], { encoding: 'utf8' }).trim(),
  });
  return {
    nodes: nodes.map(node),
    stop: () => new Promise((r) => {
      child.once('exit', r);
      child.kill('SIGTERM');
    }),
  };
}

/** The work app's page on an origin of its own: the widget from `scripts`' node, told to use `relays`. */
let host;
const hostHtml = { body: '' };

before(async () => {
  browser = await launch();
  host = createServer((req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(hostHtml.body);
  });
  await new Promise((r) => host.listen(0, '127.0.0.1', r));
  cluster = await startCluster(`http://127.0.0.1:${host.address().port}`);
});
after(async () => {
  await browser?.close();
  await cluster?.stop();
  host?.close();
});

test('on a cluster, Alice on one node and Bob on another see the same counts move', async () => {
  const [n1, n2, n3] = cluster.nodes;
  const a = await tab(browser, n1, 'alice');
  const b = await tab(browser, n2, 'bob');
  // The demo left Bob some unread messages; his badge is what it is, the same on any node
  // (read once his widget holds its snapshot: CI once read it before, as nothing).
  await synced(b);
  const before = Number((await total(b)) || 0);
  const b3 = await tab(browser, n3, 'bob');
  await expectTotal(b3, before || '');
  // Alice writes through node 1; Bob's tabs on nodes 2 and 3 count it, her own count does not.
  await openConversation(a, 'Bob Chen');
  const alice = await total(a);
  await say(a, 'Across the cluster');
  await expectTotal(b, before + 1);
  await expectTotal(b3, before + 1);
  // Bob reads it on node 2: his tab on node 3 follows.
  await openConversation(b, 'Alice Martin');
  await openPanel(b3);
  await expectItemBadge(b3, 'Alice Martin', '');
  await expectTotal(a, alice);
  await b.page.waitForFunction(
    () => [...$$t('.tally-msg .tally-text')].some((e) => e.textContent === 'Across the cluster'),
  );
});

/** How many WebSocket connections a node holds. */
async function connections(node) {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  return Number(/^tally_connections (\d+)$/m.exec(text)[1]);
}

test('a page listing the nodes in relayUrls moves to another node when its node dies, and resumes', async () => {
  const [n1, n2, n3] = cluster.nodes;
  const a = await tab(browser, n1, 'alice');
  // Bob's work app (its own origin) loads the widget from node 1 and lists nodes 2 and 3;
  // his widget picks one of them.
  hostHtml.body = `<!doctype html><html><head><title>Work app</title>
    </head><body><div id="messenger"></div>
    <script type="module">
      import init, { mount } from "${n1.url}/tally-frontend.js";
      await init({ module_or_path: "${n1.url}/tally-frontend_bg.wasm" });
      window.tallyMount = (token, relayUrls) => mount(document.getElementById("messenger"), { relayUrls, token, storageKey: "cluster" });
    </script></body></html>`;
  const before = [await connections(n2), await connections(n3)];
  const ctx = await newContext(browser, { viewport: { width: 1000, height: 760 } });
  const page = await ctx.newPage();
  await page.goto(`http://127.0.0.1:${host.address().port}/`);
  await page.waitForFunction(() => window.tallyMount, null, { timeout: 10_000 });
  await page.evaluate(([token, relays]) => window.tallyMount(token, relays), [n2.token('bob'), [n2.url, n3.url]]);
  const b = { page, context: ctx, staff: 'bob' };
  await page.waitForSelector('#messenger .tally-launcher');
  let on;
  for (let i = 0; i < 100 && on === undefined; i++) {
    const now = [await connections(n2), await connections(n3)];
    on = now[0] > before[0] ? n2 : now[1] > before[1] ? n3 : undefined;
    if (on === undefined) await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(on, 'Bob connected to node 2 or 3');
  const other = on === n2 ? n3 : n2;
  await synced(b);
  const start = Number((await total(b)) || 0);
  // His node dies without a word; his widget moves to the other one (a fraction of a second:
  // too short for its "Reconnecting…" to be sure to show).
  const elsewhere = await connections(other);
  process.kill(on.pid, 'SIGKILL');
  for (let i = 0; i < 200 && (await connections(other)) <= elsewhere; i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok((await connections(other)) > elsewhere, 'Bob is on the other node now');
  // Alice writes through node 1: Bob, now on the other node, counts it.
  await openConversation(a, 'Bob Chen');
  await say(a, 'After your node died');
  await expectTotal(b, start + 1);
});
