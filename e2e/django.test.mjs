// docs/integration.md's quick start, followed literally: its `run` blocks executed in order and
// its `file=` blocks written, in an empty directory, with the repository's Python package, relay
// and widget. Then Chromium signs in to the Django site as alice, under the guide's strict
// content security policy, and a lab result saved from the shell (the `run then` block) raises
// her badge; the webhook view records the delivery, and the page's own "Message Bob" button
// opens their conversation.
import { test, before, after } from 'node:test';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, appendFileSync, readFileSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { launch } from './helpers.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const GUIDE = readFileSync(join(root, 'docs', 'integration.md'), 'utf8');
const SITE = 'http://127.0.0.1:8000';
const RELAY = 'http://127.0.0.1:8080';

/** The guide's fenced blocks, in order: `{ info: ['sh', 'run', …], body }`. */
function blocks() {
  const out = [];
  const re = /^```([^\n]*)\n([\s\S]*?)^```$/gm;
  for (let m; (m = re.exec(GUIDE)); ) out.push({ info: m[1].split(/\s+/).filter(Boolean), body: m[2] });
  return out;
}

let project;
let envFile;
let browser;
const background = [];

/** The shell the guide's commands run in: its virtualenv (tools/venv, where make test installed
 * the package's dependencies) and the built relay on PATH, TALLY_SRC the checkout. */
const env = {
  ...process.env,
  PATH: `${join(root, 'tools', 'venv', 'bin')}:${join(root, 'target', 'release')}:${process.env.PATH}`,
  VIRTUAL_ENV: join(root, 'tools', 'venv'),
  TALLY_SRC: root,
  RUST_LOG: 'error',
  PIP_DISABLE_PIP_VERSION_CHECK: '1',
};

/** Runs one `run` block in bash, in the project, with the variables earlier blocks exported. */
function run(body) {
  const script = `set -euo pipefail\nsource ${JSON.stringify(envFile)}\n${body}\nexport -p > ${JSON.stringify(envFile)}\n`;
  return execFileSync('bash', ['-c', script], { cwd: project, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Starts a `run background` block in a process group of its own. */
function start(body) {
  const child = spawn('bash', ['-c', `source ${JSON.stringify(envFile)}\nexec ${body.trim()}`], {
    cwd: project,
    env,
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  background.push(child);
  return child;
}

async function until(what, f, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await f()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`waited for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function portTaken(port) {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

let later = [];

before(async () => {
  for (const port of [8000, 8080]) {
    assert.equal(await portTaken(port), false, `the guide's port ${port} is free`);
  }
  project = mkdtempSync(join(tmpdir(), 'tally-django-guide-'));
  envFile = join(project, '.guide-env.sh');
  writeFileSync(envFile, '');
  const all = blocks();
  const ran = all.filter((b) => b.info.includes('run') || b.info.some((w) => w.startsWith('file=')));
  assert.ok(ran.length >= 10, `the quick start has its steps: ${ran.length}`);
  for (const b of all) {
    const file = b.info.find((w) => w.startsWith('file='));
    if (file) {
      const path = join(project, file.slice('file='.length));
      mkdirSync(dirname(path), { recursive: true });
      (b.info.includes('append') ? appendFileSync : writeFileSync)(path, b.body);
    } else if (b.info.includes('run') && b.info.includes('then')) {
      later.push(b.body);
    } else if (b.info.includes('run') && b.info.includes('background')) {
      start(b.body);
      if (b.body.includes('tally-relay')) await until('the relay', async () => (await fetch(`${RELAY}/healthz`)).ok);
      if (b.body.includes('runserver')) await until('the Django site', async () => (await fetch(`${SITE}/admin/login/`)).ok);
    } else if (b.info.includes('run')) {
      try {
        run(b.body);
      } catch (e) {
        throw new Error(`the guide's block failed:\n${b.body}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
      }
    }
  }
  browser = await launch();
});

after(async () => {
  await browser?.close();
  // Every process the guide started, and their children, stopped and waited for before the
  // project goes: nothing may outlive the test or write into a directory being removed.
  await Promise.all(
    background.map(
      (child) =>
        new Promise((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const done = setTimeout(() => {
            try {
              process.kill(-child.pid, 'SIGKILL');
            } catch {
              // gone already
            }
            resolve();
          }, 10_000);
          child.once('exit', () => (clearTimeout(done), resolve()));
          try {
            process.kill(-child.pid, 'SIGTERM');
          } catch {
            clearTimeout(done);
            resolve();
          }
        }),
    ),
  );
  try {
    if (project) rmSync(project, { recursive: true, force: true, maxRetries: 3 });
  } catch (e) {
    console.error(`the guide's project was not removed: ${e.message}`);
  }
});

test("the guide's Django project shows alice a badge that rises when a lab result is saved", async () => {
  const password = /DJANGO_SUPERUSER_PASSWORD=(\S+) python manage\.py createsuperuser --noinput --username alice/.exec(GUIDE)[1];
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 760 } });
  const page = await ctx.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  page.on('console', (m) => {
    if (m.location().url.endsWith('/favicon.ico')) return; // the admin's login page has none
    if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) problems.push(`${m.text()} (${m.location().url})`);
  });
  await page.goto(`${SITE}/`);
  await page.fill('#id_username', 'alice');
  await page.fill('#id_password', password);
  await page.click('input[type=submit]');
  await page.waitForURL(`${SITE}/`);
  const policy = (await page.request.get(`${SITE}/`)).headers()['content-security-policy'];
  assert.match(policy, /script-src 'self' http:\/\/127\.0\.0\.1:8080 'wasm-unsafe-eval' 'sha256-/);
  const widget = (f, ...args) => page.waitForFunction(f, ...args);
  await widget(() => document.querySelector('#tally')?.shadowRoot?.querySelector('.tally-launcher'), null, { timeout: 20_000 });
  const badge = () => document.querySelector('#tally').shadowRoot.querySelector('[data-testid=total-badge]')?.dataset.count ?? '';
  assert.equal(await page.evaluate(badge), '');

  for (const body of later) run(body);
  await widget((want) => (document.querySelector('#tally').shadowRoot.querySelector('[data-testid=total-badge]')?.dataset.count ?? '') === want, '1', { timeout: 20_000 });

  // The relay told Django, which verified and recorded the delivery.
  await until('the webhook delivery recorded by Django', () =>
    run(`python manage.py shell -c "from tally_django.models import WebhookDelivery as D; print('deliveries', D.objects.filter(event_type='message_created').count())"`).includes('deliveries 1'),
  );
  // The page's own button opens the conversation with bob, who wrote the message.
  await page.click('#message-bob');
  await widget(() => document.querySelector('#tally').shadowRoot.querySelector('.tally-conv-title')?.textContent.includes('bob'), null, { timeout: 10_000 });
  await widget(() => document.querySelector('#tally').shadowRoot.textContent.includes('Lab results for room 4 are in'), null, { timeout: 10_000 });
  assert.deepEqual(problems, [], 'no errors and no policy violations on the page');
  await ctx.close();
});
