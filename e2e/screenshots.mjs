// Takes the README's screenshots from the real relay in demo mode: `make screenshots`.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, DIST, launch } from './helpers.mjs';

const out = join(import.meta.dirname, '..', 'docs', 'screenshots');
const data = mkdtempSync(join(tmpdir(), 'tally-shots-'));
const relay = spawn(BIN, ['--data', data, 'serve', '--demo', '--listen', '127.0.0.1:0', '--static', DIST], {
  stdio: ['ignore', 'pipe', 'inherit'],
  env: { ...process.env, RUST_LOG: 'error' },
});
const url = await new Promise((r) => relay.stdout.once('data', (d) => r(String(d).trim().split(' ').pop())));
const browser = await launch();
async function signIn(scheme) {
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 720 }, colorScheme: scheme });
  const page = await ctx.newPage();
  await page.goto(url + '/');
  await page.click('[data-staff="alice"]');
  await page.waitForSelector('[data-testid=total-badge]');
  return page;
}
try {
  let page = await signIn('light');
  await page.screenshot({ path: join(out, 'launcher-badge.png'), clip: { x: 760, y: 560, width: 240, height: 160 } });
  await page.click('.tally-launcher');
  await page.waitForSelector('.tally-list');
  await page.screenshot({ path: join(out, 'conversation-list.png') });
  await page.click('.tally-item:has-text("Front desk")');
  await page.waitForSelector('[data-testid=new-divider]');
  await page.waitForTimeout(300); // let the view settle for the picture (not a test)
  await page.screenshot({ path: join(out, 'conversation-divider.png') });
  page = await signIn('dark');
  await page.click('.tally-launcher');
  await page.waitForSelector('.tally-list');
  await page.screenshot({ path: join(out, 'dark-theme.png') });
} finally {
  await browser.close();
  relay.kill('SIGTERM');
  rmSync(data, { recursive: true, force: true });
}
