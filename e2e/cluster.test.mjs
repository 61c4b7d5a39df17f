// End to end on a cluster: `make cluster`'s script (a throwaway PostgreSQL, nats-server and
// three release relay nodes with the demo), Alice's browser on one node and Bob's on another.
import { test, before, after } from 'node:test';
import { spawn, execFileSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { BIN, launch, tab, total, expectTotal, expectItemBadge, openPanel, openConversation, say } from './helpers.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
let browser;
let cluster;

/** The script's nodes, PostgreSQL URL, and a way to stop it all. */
async function startCluster() {
  const base = 20000 + Math.floor(Math.random() * 20000);
  const child = spawn('bash', [join(root, 'scripts', 'cluster.sh')], {
    cwd: root,
    env: { ...process.env, BASE_PORT: String(base), RUST_LOG: 'error' },
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
  const nodes = [...out.matchAll(/node \d: (http:\/\/\S+)/g)].map((m) => m[1]);
  const postgres = /PostgreSQL: (\S+)/.exec(out)[1];
  assert.equal(nodes.length, 3, out);
  const node = (url) => ({
    url,
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

before(async () => {
  browser = await launch();
  cluster = await startCluster();
});
after(async () => {
  await browser?.close();
  await cluster?.stop();
});

test('on a cluster, Alice on one node and Bob on another see the same counts move', async () => {
  const [n1, n2, n3] = cluster.nodes;
  const a = await tab(browser, n1, 'alice');
  const b = await tab(browser, n2, 'bob');
  // The demo left Bob some unread messages; his badge is what it is, the same on any node.
  await b.page.waitForSelector('#messenger .tally-launcher');
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
    () => [...document.querySelectorAll('#messenger .tally-msg .tally-text')].some((e) => e.textContent === 'Across the cluster'),
  );
});
