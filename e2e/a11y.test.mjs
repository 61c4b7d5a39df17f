// Accessibility: axe-core on every surface of the widget in light and dark themes (zero serious
// or critical violations), and one person using only the keyboard, focus always visible.
import { test, before, after } from 'node:test';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { Relay, launch, tab, openPanel, openConversation, startDirect, startGroup, say, backToList } from './helpers.mjs';

// Evaluated through the DevTools protocol: the relay's CSP (rightly) refuses inline scripts.
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
let browser;

before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** Serious and critical violations of axe's WCAG 2.x A/AA and best-practice rules in the widget. */
async function audit(t, what) {
  if (!(await t.page.evaluate(() => !!window.axe))) await t.page.evaluate(AXE);
  const result = await t.page.evaluate(async () => {
    const r = await window.axe.run('#messenger', { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => `${n.target.join(' ')}: ${n.failureSummary}`) }));
  });
  return result.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => ({ what, ...v }));
}

test('axe: launcher, list, search, settings, a conversation and each dialog, light and dark: no serious or critical violation', async () => {
  const relay = await new Relay(['alice', 'bob', 'carol']).start();
  try {
    const b = await tab(browser, relay, 'bob');
    const a = await tab(browser, relay, 'alice');
    await startDirect(a, 'Bob');
    await say(a, 'Parcel for you at the desk');
    await startGroup(a, ['Bob', 'Carol'], 'Front desk');
    await say(a, 'Who closes tonight?');
    await openConversation(b, 'Front desk');
    await say(b, 'I do');
    await backToList(b);
    const found = [];
    for (const scheme of ['light', 'dark']) {
      await b.page.emulateMedia({ colorScheme: scheme });
      // The launcher alone (closed panel), with its badge.
      if (await b.page.$('#messenger .tally-panel')) await b.page.click('#messenger [aria-label="Close messages"]');
      found.push(...await audit(b, `${scheme}: launcher`));
      await openPanel(b);
      found.push(...await audit(b, `${scheme}: list`));
      await b.page.click('#messenger [data-testid=bell]');
      found.push(...await audit(b, `${scheme}: notification settings`));
      await b.page.click('#messenger [data-testid=bell]');
      await b.page.click('#messenger [aria-label="New conversation"]');
      found.push(...await audit(b, `${scheme}: new conversation dialog`));
      await b.page.keyboard.press('Escape');
      await b.page.click('#messenger [data-testid=search]');
      await b.page.fill('#messenger [data-testid=search-input]', 'parcel');
      await b.page.waitForSelector('#messenger [data-testid=search-result]');
      found.push(...await audit(b, `${scheme}: search`));
      await b.page.click('#messenger [aria-label="Close search"]');
      await openConversation(b, 'Front desk');
      await b.page.waitForSelector('#messenger .tally-msg');
      found.push(...await audit(b, `${scheme}: conversation`));
      await b.page.hover('#messenger .tally-msg:has(.tally-text:text-is("Who closes tonight?"))');
      await b.page.click('#messenger .tally-msg:has(.tally-text:text-is("Who closes tonight?")) [aria-label="Message actions"]');
      found.push(...await audit(b, `${scheme}: message menu`));
      await b.page.click('#messenger [role=menuitem]:text-is("Forward")');
      await b.page.waitForSelector('#messenger .tally-dialog');
      found.push(...await audit(b, `${scheme}: forward dialog`));
      await b.page.keyboard.press('Escape');
      await b.page.click('#messenger [aria-label="Group settings"]');
      await b.page.waitForSelector('#messenger .tally-dialog');
      found.push(...await audit(b, `${scheme}: group settings dialog`));
      await b.page.keyboard.press('Escape');
      await backToList(b);
    }
    assert.deepEqual(found, [], JSON.stringify(found, null, 2));
  } finally {
    await relay.stop();
  }
});
