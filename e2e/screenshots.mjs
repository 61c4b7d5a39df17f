// Takes the README's screenshots from the real relay in demo mode: `make screenshots`.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, DIST, launch, newContext } from './helpers.mjs';

const out = join(import.meta.dirname, '..', 'docs', 'screenshots');
const data = mkdtempSync(join(tmpdir(), 'tally-shots-'));
const relay = spawn(BIN, ['--data', data, 'serve', '--demo', '--listen', '127.0.0.1:0', '--static', DIST], {
  stdio: ['ignore', 'pipe', 'inherit'],
  env: { ...process.env, RUST_LOG: 'error' },
});
const url = await new Promise((r) => relay.stdout.once('data', (d) => r(String(d).trim().split(' ').pop())));
const browser = await launch();
async function signIn(scheme, staff = 'alice', { lang, viewport = { width: 1000, height: 720 }, touch = false } = {}) {
  const ctx = await newContext(browser, { viewport, colorScheme: scheme, hasTouch: touch, isMobile: touch });
  const page = await ctx.newPage();
  await page.goto(url + '/' + (lang ? `?lang=${lang}` : ''));
  await page.click(`[data-staff="${staff}"]`);
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
  // Two people: Bob reads and types in his direct conversation with Alice, and reads the group.
  await page.click('[aria-label="Back to conversations"]');
  await page.click('.tally-item:has(.tally-item-title:text-is("Bob Chen"))');
  await page.fill('[data-testid=composer]', 'The parcel is here, at the front desk.');
  await page.press('[data-testid=composer]', 'Enter');
  const bob = await signIn('light', 'bob');
  await bob.bringToFront(); // reading counts only in the focused page
  await bob.click('.tally-launcher');
  await bob.click('.tally-item:has(.tally-item-title:text-is("Alice Martin"))');
  await page.waitForSelector('[data-testid=seen]');
  await bob.type('[data-testid=composer]', 'Great, coming down', { delay: 40 });
  await page.waitForSelector('[data-testid=typing]:has-text("typing")');
  await page.screenshot({ path: join(out, 'seen-typing.png') });
  await page.bringToFront();
  await page.click('[aria-label="Back to conversations"]');
  await page.click('.tally-item:has(.tally-item-title:text-is("Front desk"))');
  await page.fill('[data-testid=composer]', 'Courier came: parcels for Bob and Dan at reception.');
  await page.press('[data-testid=composer]', 'Enter');
  await bob.bringToFront();
  await bob.click('[aria-label="Back to conversations"]');
  await bob.click('.tally-item:has(.tally-item-title:text-is("Front desk"))');
  await bob.waitForSelector('.tally-msg');
  await bob.$eval('.tally-messages', (l) => { l.scrollTop = l.scrollHeight; }); // read to the newest
  const mine = '.tally-msg:has(.tally-text:text-is("Courier came: parcels for Bob and Dan at reception."))';
  await page.waitForSelector(`${mine} [data-testid=seen-by]`, { state: 'attached' });
  await page.bringToFront();
  await page.hover(mine);
  await page.$eval('.tally-messages', (l) => { l.scrollTop = l.scrollHeight; });
  await page.screenshot({ path: join(out, 'seen-by.png') });
  await page.click('[data-testid=search]');
  await page.fill('[data-testid=search-input]', 'parcel');
  await page.waitForSelector('[data-testid=search-result]');
  await page.screenshot({ path: join(out, 'search.png') });
  // Threads: the Unreads inbox (a conversation and two followed threads), then a thread's pane.
  page = await signIn('light');
  await page.click('.tally-launcher');
  await page.click('[data-testid=tab-unreads]');
  await page.waitForSelector('[data-testid=inbox] [data-testid=thread-item]');
  await page.screenshot({ path: join(out, 'unreads-inbox.png') });
  await page.click('[data-testid=inbox] [data-testid=thread-item]:has-text("Inventory")');
  await page.waitForSelector('[data-testid=thread-pane] [data-testid=thread-divider]');
  await page.waitForTimeout(300); // let the view settle for the picture (not a test)
  await page.screenshot({ path: join(out, 'thread-pane.png') });
  // How staff talk: formatting, a mention of Alice and reactions in the front desk group, then
  // the mention picker filtering as she types.
  page = await signIn('light');
  await page.click('.tally-launcher');
  await page.click('.tally-item:has-text("Front desk")');
  await page.waitForSelector('[data-testid=reactions]');
  await page.$eval('.tally-messages', (l) => { l.scrollTop = l.scrollHeight; });
  await page.waitForTimeout(300); // let the view settle for the picture (not a test)
  await page.screenshot({ path: join(out, 'reactions-formatting.png') });
  await page.click('[data-testid=composer]');
  await page.keyboard.type('Thanks @', { delay: 30 });
  await page.waitForSelector('[data-testid=mention-list]');
  await page.keyboard.type('b', { delay: 30 });
  await page.waitForTimeout(200);
  await page.screenshot({ path: join(out, 'mention-picker.png') });
  // The quick switcher (Ctrl+K), then "Do not disturb" in the bell's settings.
  await page.keyboard.press('Escape');
  await page.keyboard.press('Control+K');
  await page.waitForSelector('[data-testid=switcher-option]');
  await page.keyboard.type('o', { delay: 30 });
  await page.waitForTimeout(200);
  await page.screenshot({ path: join(out, 'quick-switcher.png') });
  await page.keyboard.press('Escape');
  await page.click('[data-testid=bell]');
  await page.check('[data-testid=quiet-hours]');
  await page.waitForSelector('.tally-quiet-days');
  await page.click('[data-testid=snooze-30]');
  await page.waitForSelector('[data-testid=quiet-status]');
  await page.$eval('.tally-quiet', (q) => q.scrollIntoView());
  await page.screenshot({ path: join(out, 'quiet-hours.png') });
  await page.click('[data-testid=snooze-off]');
  await page.uncheck('[data-testid=quiet-hours]').catch(() => {});
  page = await signIn('dark');
  await page.click('.tally-launcher');
  await page.waitForSelector('.tally-list');
  await page.screenshot({ path: join(out, 'dark-theme.png') });
  // On a phone, in German and in Arabic (right to left): the panel is the whole screen.
  for (const lang of ['de', 'ar']) {
    const phone = await signIn('light', 'alice', { lang, viewport: { width: 390, height: 844 }, touch: true });
    await phone.tap('.tally-launcher');
    await phone.waitForSelector('.tally-list');
    await phone.screenshot({ path: join(out, `phone-list-${lang}.png`) });
    await phone.tap('.tally-item:has-text("Front desk")');
    await phone.waitForSelector('.tally-msg');
    await phone.waitForTimeout(300); // let the view settle for the picture (not a test)
    await phone.screenshot({ path: join(out, `phone-conversation-${lang}.png`) });
  }
} catch (e) {
  console.error(e);
  process.exitCode = 1;
} finally {
  await browser.close();
  relay.kill('SIGTERM');
  await new Promise((r) => relay.once('exit', r));
  rmSync(data, { recursive: true, force: true });
}
