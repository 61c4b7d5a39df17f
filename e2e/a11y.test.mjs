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
    // Edited, so that it has earlier versions to show.
    await b.page.hover('#messenger .tally-msg:has(.tally-text:text-is("I do"))');
    await b.page.click('#messenger .tally-msg:has(.tally-text:text-is("I do")) [aria-label="Message actions"]');
    await b.page.click('#messenger [role=menuitem]:text-is("Edit")');
    await b.page.fill('#messenger [data-testid=composer]', 'I do, until 9');
    await b.page.press('#messenger [data-testid=composer]', 'Enter');
    await b.page.waitForSelector('#messenger .tally-msg .tally-text:text-is("I do, until 9")');
    // A thread under Alice's question, which Alice follows (she wrote it) and Bob replied in.
    await b.page.hover('#messenger .tally-msg:has(.tally-text:text-is("Who closes tonight?"))');
    await b.page.click('#messenger .tally-msg:has(.tally-text:text-is("Who closes tonight?")) [aria-label="Message actions"]');
    await b.page.click('#messenger [role=menuitem]:text-is("Reply in thread")');
    await b.page.fill('#messenger .tally-thread [data-testid=composer]', 'Carol said she would');
    await b.page.press('#messenger .tally-thread [data-testid=composer]', 'Enter');
    await b.page.waitForSelector('#messenger .tally-thread .tally-msg:not(.tally-pending):has-text("Carol said she would")');
    await b.page.click('#messenger [aria-label="Back to the conversation"]');
    await backToList(b);
    await openConversation(a, 'Front desk');
    await a.page.click('#messenger [data-testid=thread-line]');
    await a.page.waitForSelector('#messenger [data-testid=thread-pane] .tally-msg');
    const found = [];
    for (const scheme of ['light', 'dark']) {
      await a.page.emulateMedia({ colorScheme: scheme });
      found.push(...await audit(a, `${scheme}: thread pane`));
      await a.page.click('#messenger [aria-label="Back to the conversation"]');
      await backToList(a);
      await a.page.click('#messenger [data-testid=tab-unreads]');
      found.push(...await audit(a, `${scheme}: unreads inbox`));
      await a.page.click('#messenger [data-testid=tab-threads]');
      await a.page.waitForSelector('#messenger [data-testid=threads]');
      found.push(...await audit(a, `${scheme}: threads view`));
      await a.page.click('#messenger [data-testid=thread-item]');
      await a.page.waitForSelector('#messenger [data-testid=thread-pane]');
    }
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
      // The quick switcher and the shortcuts (issue 30).
      await b.page.keyboard.press('Control+K');
      await b.page.waitForSelector('#messenger [data-testid=switcher-option]');
      found.push(...await audit(b, `${scheme}: quick switcher`));
      await b.page.keyboard.press('Escape');
      await b.page.keyboard.press('Control+/');
      await b.page.waitForSelector('#messenger [data-testid=shortcuts]');
      found.push(...await audit(b, `${scheme}: keyboard shortcuts`));
      await b.page.keyboard.press('Escape');
      await b.page.click('#messenger [data-testid=search]');
      await b.page.fill('#messenger [data-testid=search-input]', 'parcel');
      await b.page.waitForSelector('#messenger [data-testid=search-result]');
      found.push(...await audit(b, `${scheme}: search`));
      await b.page.click('#messenger [aria-label="Close search"]');
      await openConversation(b, 'Front desk');
      await b.page.waitForSelector('#messenger .tally-msg');
      found.push(...await audit(b, `${scheme}: conversation`));
      await b.page.click('#messenger [data-testid=edited]');
      await b.page.waitForSelector('#messenger [data-testid=versions] .tally-version');
      found.push(...await audit(b, `${scheme}: earlier versions`));
      await b.page.keyboard.press('Escape');
      await b.page.hover('#messenger .tally-msg:has(.tally-text:text-is("Who closes tonight?"))');
      await b.page.click('#messenger .tally-msg:has(.tally-text:text-is("Who closes tonight?")) [aria-label="Message actions"]');
      found.push(...await audit(b, `${scheme}: message menu`));
      // The full emoji picker, and a reaction's chip under the message once chosen.
      await b.page.click('#messenger [data-testid=more-reactions]');
      await b.page.waitForSelector('#messenger [data-testid=emoji-picker]');
      found.push(...await audit(b, `${scheme}: emoji picker`));
      await b.page.keyboard.press('Escape');
      if (!(await b.page.$('#messenger .tally-reaction'))) {
        await b.page.hover('#messenger .tally-msg:has(.tally-text:text-is("Who closes tonight?"))');
        await b.page.click('#messenger .tally-msg:has(.tally-text:text-is("Who closes tonight?")) [aria-label="Message actions"]');
        await b.page.click('#messenger [data-testid=quick-reaction]');
        await b.page.waitForSelector('#messenger .tally-reaction');
      }
      found.push(...await audit(b, `${scheme}: reactions`));
      // The mention picker's list.
      await b.page.fill('#messenger [data-testid=composer]', '');
      await b.page.type('#messenger [data-testid=composer]', '@');
      await b.page.waitForSelector('#messenger [data-testid=mention-list]');
      found.push(...await audit(b, `${scheme}: mention list`));
      await b.page.keyboard.press('Escape');
      await b.page.fill('#messenger [data-testid=composer]', '');
      await b.page.hover('#messenger .tally-msg:has(.tally-text:text-is("Who closes tonight?"))');
      await b.page.click('#messenger .tally-msg:has(.tally-text:text-is("Who closes tonight?")) [aria-label="Message actions"]');
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

/** What has focus: a description, and whether the focus is drawn (outline or ring). */
function focused(t) {
  return t.page.evaluate(() => {
    const el = $focus();
    if (!el || el === document.body) return { inWidget: false, what: 'body', visible: false };
    const style = getComputedStyle(el);
    const ring = (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0) || style.boxShadow !== 'none';
    const what = `${el.tagName.toLowerCase()} ${el.getAttribute('aria-label') || el.getAttribute('role') || ''} ${(el.textContent || '').trim().slice(0, 40)}`;
    return { inWidget: el.getRootNode().host?.id === 'messenger', what, visible: el.matches(':focus-visible') && ring };
  });
}

/** Presses `key` until `want(focus)` (at most `max` times), checking the focus is visible after each press. */
async function pressUntil(t, key, want, max = 30) {
  for (let i = 0; i < max; i++) {
    await t.page.keyboard.press(key);
    const f = await focused(t);
    if (f.inWidget) assert.ok(f.visible, `focus not visible on ${f.what}`);
    if (want(f)) return f;
  }
  throw new Error(`pressed ${key} ${max} times without reaching what was wanted (at ${(await focused(t)).what})`);
}

/** Waits (up to 10 s: focus may move after the render a key causes, and a busy machine
 * renders late) for the focus to be on something matching `pattern` in the widget, and checks
 * that it is drawn. */
async function expectFocus(t, where, pattern) {
  let f;
  for (let waited = 0; waited < 10_000; waited += 50) {
    f = await focused(t);
    if (f.inWidget && pattern.test(f.what)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.match(f.what, pattern, `${where}: focus on ${f.what}`);
  assert.ok(f.inWidget && f.visible, `${where}: focus on ${f.what} is not visible`);
}

test('keyboard only: open the widget, move through the list, open, send, reply, mark unread, close; focus always visible', async () => {
  const relay = await new Relay(['alice', 'bob', 'carol']).start();
  try {
    const a = await tab(browser, relay, 'alice');
    await startGroup(a, ['Bob', 'Carol'], 'Front desk');
    await say(a, 'Desk is open');
    await startDirect(a, 'Bob');
    await say(a, 'Can you cover at noon?');
    const b = await tab(browser, relay, 'bob');
    await b.page.bringToFront();
    // From the page to the launcher, then open it: focus lands on the first conversation.
    await pressUntil(b, 'Tab', (f) => f.what.includes('Messages, 3 unread'));
    await b.page.keyboard.press('Enter');
    await b.page.waitForSelector('#messenger .tally-panel');
    await expectFocus(b, 'panel opened', /Alice: Can you cover/);
    await b.page.keyboard.press('ArrowDown');
    await expectFocus(b, 'arrow down', /Front desk/);
    await b.page.keyboard.press('ArrowUp');
    await expectFocus(b, 'arrow up', /Alice: Can you cover/);
    // Open it: the composer has focus. Send.
    await b.page.keyboard.press('Enter');
    await b.page.waitForSelector('#messenger .tally-conversation');
    await expectFocus(b, 'conversation opened', /^textarea Message/);
    await b.page.keyboard.type('Yes, I can');
    await b.page.keyboard.press('Enter');
    await b.page.waitForSelector('#messenger .tally-msg:not(.tally-pending) .tally-text:text-is("Yes, I can")');
    // Reply to Alice's message: back through the list to its actions, the menu, Reply.
    await pressUntil(b, 'Shift+Tab', (f) => f.what.startsWith('button Message actions') && f.what !== '');
    const onAlices = () => b.page.evaluate(() => $focus().closest('.tally-msg')?.querySelector('.tally-text')?.textContent);
    while ((await onAlices()) !== 'Can you cover at noon?') await pressUntil(b, 'Shift+Tab', (f) => f.what.startsWith('button Message actions'));
    await b.page.keyboard.press('Enter');
    await expectFocus(b, 'menu opened', /menuitem.*Reply/);
    await b.page.keyboard.press('Enter');
    await expectFocus(b, 'replying', /^textarea Message/);
    await b.page.keyboard.type('Noon it is');
    await b.page.keyboard.press('Enter');
    await b.page.waitForSelector('#messenger .tally-msg:has(.tally-quote):has(.tally-text:text-is("Noon it is"))');
    // Mark unread from Alice's message: the menu, arrows to the item, Enter. (Once in about
    // seven runs the menu that opened here was another message's; which one, and from where,
    // is logged so it can be found: the retry keeps the rest of the test meaningful.)
    for (let attempt = 0; ; attempt++) {
      while ((await onAlices()) !== 'Can you cover at noon?') await pressUntil(b, 'Shift+Tab', (f) => f.what.startsWith('button Message actions'));
      await b.page.keyboard.press('Enter');
      await expectFocus(b, 'menu opened', /menuitem.*Reply/);
      const on = await onAlices();
      if (on === 'Can you cover at noon?') break;
      console.log(`keyboard test: Enter on Alice's message opened the menu of "${on}" (attempt ${attempt})`);
      assert.ok(attempt < 2, 'the menu keeps opening on another message');
      await b.page.keyboard.press('Escape');
    }
    await pressUntil(b, 'ArrowDown', (f) => f.what.includes('Mark unread from here'), 5);
    await b.page.keyboard.press('Enter');
    await expectFocus(b, 'marked unread: back on the menu button', /Message actions/);
    // Escape leaves the conversation for the list (it stays unread: it was marked so here),
    // with the focus on its row; a second Escape closes the panel, and the launcher has the
    // focus and counts it.
    await b.page.keyboard.press('Escape');
    await b.page.waitForSelector('#messenger .tally-conversation', { state: 'detached' });
    await expectFocus(b, 'back on the list', /Alice/);
    await b.page.keyboard.press('Escape');
    await b.page.waitForSelector('#messenger .tally-panel', { state: 'detached' });
    // (3: the group's notice and message, and the one marked unread.)
    await expectFocus(b, 'panel closed', /Messages, 3 unread/);
  } finally {
    await relay.stop();
  }
});

test('keyboard only, threads: the tabs by arrows, the inbox, a thread pane; reply from it; Escape goes back to the conversation; focus always visible', async () => {
  const relay = await new Relay(['alice', 'bob']).start();
  try {
    const a = await tab(browser, relay, 'alice');
    await startDirect(a, 'Bob');
    await say(a, 'Who has the keys?');
    const b = await tab(browser, relay, 'bob');
    await openConversation(b, 'Alice');
    await b.page.hover('#messenger .tally-msg:has(.tally-text:text-is("Who has the keys?"))');
    await b.page.click('#messenger .tally-msg:has(.tally-text:text-is("Who has the keys?")) [aria-label="Message actions"]');
    await b.page.click('#messenger [role=menuitem]:text-is("Reply in thread")');
    await b.page.fill('#messenger .tally-thread [data-testid=composer]', 'I do');
    await b.page.press('#messenger .tally-thread [data-testid=composer]', 'Enter');
    await b.page.waitForSelector('#messenger .tally-thread .tally-msg:not(.tally-pending):has-text("I do")');
    // Alice, by keyboard: close and reopen the panel, back from the first conversation to the
    // tabs, arrow to Unreads, choose it, into the list, open the thread.
    await a.page.bringToFront();
    await backToList(a);
    if (await a.page.$('#messenger .tally-panel')) await a.page.click('#messenger [aria-label="Close messages"]');
    await pressUntil(a, 'Tab', (f) => f.what.includes('Messages, 1 unread'));
    await a.page.keyboard.press('Enter');
    await a.page.waitForSelector('#messenger .tally-panel');
    await pressUntil(a, 'Shift+Tab', (f) => f.what.startsWith('button tab'), 5);
    await a.page.keyboard.press('ArrowRight');
    await expectFocus(a, 'arrow right', /tab.*Unreads/);
    await a.page.keyboard.press('Enter');
    await a.page.waitForSelector('#messenger [data-testid=inbox]');
    await pressUntil(a, 'Tab', (f) => f.what.includes('Who has the keys?'), 5);
    await a.page.keyboard.press('Enter');
    await a.page.waitForSelector('#messenger [data-testid=thread-pane]');
    await expectFocus(a, 'thread opened', /^textarea Message/);
    await a.page.keyboard.type('Thanks Bob');
    await a.page.keyboard.press('Enter');
    await a.page.waitForSelector('#messenger .tally-thread .tally-msg:not(.tally-pending) .tally-text:text-is("Thanks Bob")');
    // Escape leaves the thread for its conversation; the panel stays open.
    await a.page.keyboard.press('Escape');
    await a.page.waitForSelector('#messenger .tally-conversation:not(.tally-thread)');
    assert.ok(await a.page.$('#messenger .tally-panel'), 'the panel is still open');
  } finally {
    await relay.stop();
  }
});
