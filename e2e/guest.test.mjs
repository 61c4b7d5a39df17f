// The widget as a guest on a work app's page: phones to wide screens, with touch and keyboard;
// the host's page left exactly as it was, even by a hostile stylesheet; German and Arabic pages;
// and the defects a first-time user found, each checked where a person sees it.
import { test, before, after } from 'node:test';
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { Relay, launch, tab, newContext, hostServer, guestTab, expectTotal, openPanel, openConversation, startDirect, say, blast, longPress } from './helpers.mjs';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

let browser;
let host;
let relay;

before(async () => {
  browser = await launch();
  host = await hostServer();
  relay = await new Relay(['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina', 'harry', 'ivan', 'jane'], {
    args: ['--allow-origin', host.origin, '--writes-per-sec', '1e9', '--write-burst', '1e9', '--reads-per-sec', '1e9', '--read-burst', '1e9'],
  }).start();
  host.page.relayUrl = relay.url;
});
after(async () => {
  await relay?.stop();
  host?.server.close();
  await browser?.close();
});

/** Serious and critical axe violations in the widget. */
async function audit(page, what) {
  if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(AXE);
  const found = await page.evaluate(async () => {
    const r = await window.axe.run('#messenger', { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => `${n.target.join(' ')}: ${n.failureSummary}`) }));
  });
  return found.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => ({ what, ...v }));
}

/** Each widget control matching `selector` that is not the element under its own centre. */
function covered(page, selector) {
  return page.evaluate((selector) => {
    const root = document.querySelector('#messenger').shadowRoot;
    const out = [];
    for (const el of root.querySelectorAll(selector)) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      const x = r.left + r.width / 2;
      const y = r.top + r.height / 2;
      const hit = root.elementFromPoint(x, y);
      const inside = x >= 0 && y >= 0 && x <= innerWidth && y <= innerHeight;
      if (!inside || !(hit === el || el.contains(hit))) {
        out.push(`${el.getAttribute('aria-label') || el.dataset.testid || el.textContent.trim().slice(0, 20)} at ${Math.round(x)},${Math.round(y)} is under ${hit ? hit.className || hit.tagName : 'nothing'}`);
      }
    }
    return out;
  }, selector);
}

/** Each control matching `selector` smaller than `min` px in either direction. */
function tooSmall(page, selector, min) {
  return page.evaluate(([selector, min]) => {
    const root = document.querySelector('#messenger').shadowRoot;
    return [...root.querySelectorAll(selector)]
      .map((el) => [el, el.getBoundingClientRect()])
      .filter(([, r]) => r.width > 0 && (r.width < min || r.height < min))
      .map(([el, r]) => `${el.getAttribute('aria-label') || el.textContent.trim().slice(0, 20)}: ${Math.round(r.width)}×${Math.round(r.height)}`);
  }, [selector, min]);
}


const SIZES = [
  { name: 'phone 320', viewport: { width: 320, height: 568 }, touch: true },
  { name: 'phone 375', viewport: { width: 375, height: 667 }, touch: true },
  { name: 'phone 390', viewport: { width: 390, height: 844 }, touch: true },
  { name: 'tablet 768', viewport: { width: 768, height: 1024 }, touch: true },
  { name: 'desktop 1440', viewport: { width: 1440, height: 900 }, touch: false },
];

for (const size of SIZES) {
  test(`${size.name}: every control is the element under its own centre, big enough to touch, and a tap on Send sends`, async () => {
    const context = { viewport: size.viewport, hasTouch: size.touch, isMobile: size.touch && size.viewport.width < 600 };
    const a = await tab(browser, relay, 'alice');
    const b = await guestTab(browser, host, relay, 'bob', { context });
    try {
      await startDirect(a, 'Bob');
      await say(a, `Hello at ${size.name}`);
      await expectTotal(b, 1);
      const press = (sel) => (size.touch ? b.page.tap(sel) : b.page.click(sel));
      await press('#messenger .tally-launcher');
      await b.page.waitForSelector('#messenger .tally-panel');
      assert.deepEqual(await covered(b.page, '.tally-header button, .tally-item'), [], 'panel');
      await press('#messenger .tally-item');
      await b.page.waitForSelector('#messenger .tally-conversation');
      assert.deepEqual(await covered(b.page, '.tally-conv-header button, .tally-composer button:not([hidden]), .tally-composer textarea'), [], 'conversation');
      if (size.touch) {
        assert.deepEqual(await tooSmall(b.page, '.tally-conv-header button, .tally-composer button, .tally-header button', 44), []);
        // A long press on the message opens its menu, whose items are all reachable.
        await longPress(b.page, `#messenger .tally-msg:has-text("Hello at ${size.name}") .tally-bubble`);
        await b.page.waitForSelector('#messenger .tally-menu');
        assert.deepEqual(await covered(b.page, '.tally-menu [role=menuitem]'), [], 'menu');
        assert.deepEqual(await tooSmall(b.page, '.tally-menu [role=menuitem]', 44), []);
        await b.page.keyboard.press('Escape');
      }
      if (size.viewport.width <= 600) {
        // The open panel is the whole screen, and the launcher is out of its way.
        const panel = await b.page.$eval('#messenger .tally-panel', (p) => p.getBoundingClientRect().toJSON());
        assert.equal(Math.round(panel.width), size.viewport.width);
        assert.equal(await b.page.$eval('#messenger .tally-launcher', (l) => getComputedStyle(l).display), 'none');
      }
      await b.page.fill('#messenger [data-testid=composer]', `Reply from ${size.name}`);
      await press('#messenger [data-testid=send]');
      await a.page.waitForSelector(`#messenger .tally-text:text-is("Reply from ${size.name}")`);
      assert.equal(await b.page.$('#messenger .tally-panel') !== null, true, 'Send did not close the panel');
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });
}

/** The computed styles of the host's body and its own elements that a widget must not touch. */
function hostStyles(page) {
  return page.evaluate(() => {
    const props = ['margin', 'padding', 'font-family', 'font-size', 'line-height', 'color', 'background-color', 'direction', 'box-sizing', 'overflow'];
    const of = (el) => Object.fromEntries(props.map((p) => [p, getComputedStyle(el).getPropertyValue(p)]));
    return {
      html: of(document.documentElement),
      body: of(document.body),
      heading: of(document.getElementById('host-heading')),
      text: of(document.getElementById('host-text')),
      button: of(document.getElementById('host-button')),
    };
  });
}

test('mounting leaves the host page exactly as it was, in light and in dark', async () => {
  host.page = { ...host.page, lang: 'en', css: 'body { background: #fffdf5; color: #222; font: 16px Georgia, serif; } #host-text { margin: 12px; }' };
  for (const colorScheme of ['light', 'dark']) {
    const ctx = await newContext(browser, { colorScheme });
    const page = await ctx.newPage();
    await page.goto(host.origin + '/');
    await page.waitForFunction(() => window.tallyMount);
    const before = await hostStyles(page);
    await page.evaluate((token) => window.tallyMount(token, { theme: 'light' }), relay.token('carol'));
    await page.waitForSelector('#messenger .tally-launcher');
    await page.click('#messenger .tally-launcher');
    await page.waitForSelector('#messenger .tally-panel');
    assert.deepEqual(await hostStyles(page), before, `${colorScheme}: the host's styles changed`);
    await ctx.close();
  }
});

test('a hostile host stylesheet breaks nothing: the widget keeps its fonts, sizes, buttons and direction', async () => {
  host.page = {
    ...host.page,
    lang: 'en',
    css: '* { box-sizing: content-box !important; font: 20px serif !important; } button { all: unset !important; } body { direction: rtl; } div { padding: 9px; }',
  };
  const a = await tab(browser, relay, 'alice');
  const b = await guestTab(browser, host, relay, 'dave');
  try {
    await startDirect(a, 'Dave');
    await say(a, 'Can you read me?');
    await expectTotal(b, 1);
    const launcher = await b.page.$eval('#messenger .tally-launcher', (l) => {
      const r = l.getBoundingClientRect();
      const s = getComputedStyle(l);
      return { width: r.width, height: r.height, radius: s.borderRadius, right: innerWidth - r.right };
    });
    assert.deepEqual([launcher.width, launcher.height, launcher.radius], [56, 56, '50%']);
    assert.ok(launcher.right >= 14 && launcher.right <= 30, `the launcher sits at the end of an English page: ${launcher.right}`);
    await b.page.click('#messenger .tally-launcher');
    await openConversation(b, 'Alice');
    const looks = await b.page.evaluate(() => {
      const root = $t('.tally');
      const text = $t('.tally-text');
      const send = $t('[data-testid=send]');
      return {
        dir: getComputedStyle(root).direction,
        size: getComputedStyle(text).fontSize,
        family: getComputedStyle(text).fontFamily,
        sizing: getComputedStyle(send).boxSizing,
        sendWidth: send.getBoundingClientRect().width,
      };
    });
    assert.equal(looks.dir, 'ltr');
    assert.equal(looks.size, '14px');
    assert.ok(!/^serif$/.test(looks.family), looks.family);
    assert.equal(looks.sizing, 'border-box');
    assert.ok(looks.sendWidth >= 38 && looks.sendWidth <= 44, `${looks.sendWidth}`);
    assert.deepEqual(await covered(b.page, '.tally-conv-header button, .tally-composer button:not([hidden]), .tally-composer textarea'), []);
    await say(b, 'Loud and clear');
  } finally {
    await a.context.close();
    await b.context.close();
    host.page.css = '';
  }
});

test('a German page: German words, plurals, numbers and dates, and nothing axe finds serious', async () => {
  host.page = { ...host.page, lang: 'de', css: '' };
  const a = await tab(browser, relay, 'alice');
  const b = await guestTab(browser, host, relay, 'erin');
  try {
    await startDirect(a, 'Erin');
    await say(a, 'Guten Morgen');
    await expectTotal(b, 1);
    assert.equal(await b.page.getAttribute('#messenger .tally-launcher', 'aria-label'), 'Nachrichten, 1 ungelesen');
    assert.equal(await b.page.textContent('#messenger .tally-sr-only[aria-live]'), '1 ungelesene Nachricht');
    await say(a, 'Noch eine');
    await expectTotal(b, 2);
    assert.equal(await b.page.textContent('#messenger .tally-sr-only[aria-live]'), '2 ungelesene Nachrichten');
    await b.page.click('#messenger .tally-launcher');
    assert.equal(await b.page.textContent('#messenger .tally-header h2'), 'Nachrichten');
    await openConversation(b, 'Alice');
    assert.equal(await b.page.getAttribute('#messenger [data-testid=composer]', 'placeholder'), 'Nachricht schreiben…');
    assert.equal(await b.page.textContent('#messenger .tally-day'), 'Heute');
    const time = await b.page.textContent('#messenger .tally-msg-meta time');
    assert.match(time, /^\d{1,2}:\d{2}$/, `a 24-hour German time: ${time}`);
    for (const scheme of ['light', 'dark']) {
      await b.page.emulateMedia({ colorScheme: scheme });
      assert.deepEqual(await audit(b.page, `de ${scheme}`), []);
    }
  } finally {
    await a.context.close();
    await b.context.close();
  }
});

test('an Arabic page: right to left, arrows that point the right way, text that keeps its own direction', async () => {
  host.page = { ...host.page, lang: 'ar', css: '' };
  const a = await tab(browser, relay, 'alice');
  const b = await guestTab(browser, host, relay, 'frank', { context: { viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true } });
  try {
    await startDirect(a, 'Frank');
    await say(a, 'Meeting at 10:00, room 4!');
    await expectTotal(b, 1);
    await b.page.tap('#messenger .tally-launcher');
    const root = await b.page.evaluate(() => ({ dir: $t('.tally').getAttribute('dir'), lang: $t('.tally').getAttribute('lang'), title: $t('.tally-header h2').textContent }));
    assert.deepEqual(root, { dir: 'rtl', lang: 'ar', title: 'الرسائل' });
    await openConversation(b, 'Alice');
    const looks = await b.page.evaluate(() => {
      const arrow = $t('[data-testid=send] .tally-flip');
      const header = $t('.tally-conv-header').getBoundingClientRect();
      const back = $t('.tally-conv-header button').getBoundingClientRect();
      return {
        flipped: getComputedStyle(arrow).transform,
        backOnTheRight: back.left - header.left > header.width / 2,
        textDir: getComputedStyle($t('.tally-text')).direction,
        composerDir: $t('[data-testid=composer]').getAttribute('dir'),
      };
    });
    assert.equal(looks.flipped, 'matrix(-1, 0, 0, 1, 0, 0)', 'the send arrow points left');
    assert.ok(looks.backOnTheRight, 'the back button starts the line, on the right');
    assert.equal(looks.textDir, 'ltr', 'English text in an Arabic page keeps its punctuation where it belongs');
    assert.equal(looks.composerDir, 'auto');
    await b.page.fill('#messenger [data-testid=composer]', 'شكرًا، سأكون هناك');
    await b.page.tap('#messenger [data-testid=send]');
    await a.page.waitForSelector('#messenger .tally-text:text-is("شكرًا، سأكون هناك")');
    assert.deepEqual(await audit(b.page, 'ar'), []);
  } finally {
    await a.context.close();
    await b.context.close();
  }
});

test('the first-time user\'s defects: focus after mark all read, forwarding says so, long names can be read, theming in dark, an image moves nothing', async () => {
  host.page = { ...host.page, lang: 'en', css: '#messenger { --tally-accent: rgb(10, 125, 85); --tally-accent-fg: rgb(255, 255, 255); }' };
  const a = await tab(browser, relay, 'alice');
  const b = await guestTab(browser, host, relay, 'gina', { mount: { theme: 'dark' } });
  try {
    // Theming applies in the dark theme too.
    assert.equal(await b.page.$eval('#messenger .tally-launcher', (l) => getComputedStyle(l).backgroundColor), 'rgb(10, 125, 85)');
    await startDirect(a, 'Gina');
    await say(a, 'First');
    await expectTotal(b, 1);
    // Mark all as read from the keyboard: focus stays in the widget, and Escape still closes.
    await openPanel(b);
    await b.page.focus('#messenger [data-testid=mark-all-read]');
    await b.page.keyboard.press('Enter');
    await expectTotal(b, '');
    assert.equal(await b.page.evaluate(() => $focus()?.dataset.testid), 'mark-all-read');
    await b.page.keyboard.press('Escape');
    await b.page.waitForSelector('#messenger .tally-panel', { state: 'detached' });
    // A long group name wraps and can be read whole.
    const long = 'Night shift handover for the surgical wards, east wing, second and third floors, weekdays';
    await a.page.click('#messenger [aria-label="New conversation"]');
    await a.page.click('#messenger .tally-dialog label:has-text("Gina") input');
    await a.page.click('#messenger .tally-dialog label:has-text("Carol") input');
    await a.page.fill('#messenger .tally-dialog [aria-label="Group name"]', long);
    await a.page.click('#messenger .tally-dialog .tally-primary');
    await openPanel(b);
    await b.page.waitForSelector(`#messenger .tally-item-title[title="${long}"]`);
    const lines = await b.page.$eval(`#messenger .tally-item-title[title="${long}"]`, (t) => Math.round(t.getBoundingClientRect().height / parseFloat(getComputedStyle(t).lineHeight)));
    assert.equal(lines, 2, 'a long name takes two lines, not one cut short');
    // Forwarding confirms where it went.
    await openConversation(b, 'Alice');
    await b.page.hover('#messenger .tally-msg:has-text("First")');
    await b.page.click('#messenger .tally-msg:has-text("First") [aria-label="Message actions"]');
    await b.page.click('#messenger [role=menuitem]:text-is("Forward")');
    await b.page.click(`#messenger .tally-dialog button:has-text("Night shift")`);
    await b.page.waitForSelector('#messenger [data-testid=toast]:has-text("Forwarded to Night shift")');
    // A picture that loads after the view went to the newest message leaves it in view.
    const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP4z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==', 'base64');
    const path = join(tmpdir(), 'tally-pixel.png');
    writeFileSync(path, png);
    await openConversation(a, 'Gina');
    await a.page.setInputFiles('#messenger [data-testid=file-input]', path);
    await a.page.waitForSelector('#messenger .tally-uploads .tally-ok');
    await a.page.press('#messenger [data-testid=composer]', 'Enter');
    await say(a, 'after the picture');
    await b.page.waitForSelector('#messenger img.tally-image');
    await b.page.waitForFunction(() => $t('img.tally-image').complete);
    const inView = await b.page.evaluate(() => {
      const list = $t('.tally-messages').getBoundingClientRect();
      const last = [...$$t('.tally-text')].at(-1).getBoundingClientRect();
      return last.bottom <= list.bottom + 1 && last.top >= list.top;
    });
    assert.ok(inView, 'the newest message is in view after the picture loaded');
  } finally {
    await a.context.close();
    await b.context.close();
    host.page.css = '';
  }
});

test('3,000 unread: the divider is at the first of them, and the numbers on screen agree', async () => {
  host.page = { ...host.page, lang: 'en', css: '' };
  const a = await tab(browser, relay, 'alice');
  const b = await guestTab(browser, host, relay, 'harry');
  try {
    await startDirect(a, 'Harry');
    await say(a, 'The first of many');
    const dm = Number(await a.page.getAttribute('#messenger .tally-conversation', 'data-conversation'));
    await blast(a, relay, dm, 2999, 'many');
    await expectTotal(b, 3000);
    await b.page.click('#messenger .tally-launcher');
    await openConversation(b, 'Alice');
    // Opened at the first unread message, loaded from history: "The first of many".
    await b.page.waitForSelector('#messenger [data-testid=new-divider] + .tally-msg:has-text("The first of many")', { timeout: 20_000 });
    // Once reading what is in view has settled: the pill, the list and the launcher say the same.
    await b.page.waitForFunction(() => {
      const pill = $t('[data-testid=jump-pill]')?.dataset.count;
      const total = $t('.tally-total')?.dataset.count;
      return pill && total && pill === total && Number(total) < 3000;
    }, null, { timeout: 20_000 });
    // And scrolling up through the history keeps what is rendered bounded.
    assert.ok((await b.page.evaluate(() => $$t('.tally-msg').length)) <= 240);
  } finally {
    await a.context.close();
    await b.context.close();
  }
});

test('a draft survives a reload, and signing out forgets it', async () => {
  host.page = { ...host.page, lang: 'en', css: '' };
  const a = await tab(browser, relay, 'alice');
  const b = await guestTab(browser, host, relay, 'ivan');
  try {
    await startDirect(a, 'Ivan');
    await say(a, 'Plans for Friday?');
    await b.page.click('#messenger .tally-launcher');
    await openConversation(b, 'Alice');
    await b.page.fill('#messenger [data-testid=composer]', 'Let me check the rota and');
    await b.page.reload();
    await b.page.waitForFunction(() => window.tallyMount);
    await b.page.evaluate((token) => window.tallyMount(token, { storageKey: 'tally.ivan' }), b.token);
    await b.page.click('#messenger .tally-launcher');
    await b.page.waitForSelector('#messenger [data-testid=draft-mark]');
    await openConversation(b, 'Alice');
    assert.equal(await b.page.inputValue('#messenger [data-testid=composer]'), 'Let me check the rota and');
    const connections = async () => Number(/^tally_connections (\d+)$/m.exec(await (await fetch(`${relay.url}/metrics`)).text())[1]);
    const before = await connections();
    await b.page.evaluate(() => window.widget.signOut());
    const kept = await b.page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('tally.ivan')));
    assert.deepEqual(kept, []);
    assert.equal(await b.page.evaluate(() => document.querySelector('#messenger').shadowRoot.childNodes.length), 0);
    // Its connection closed with it.
    for (let i = 0; i < 100 && (await connections()) >= before; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await connections(), before - 1);
  } finally {
    await a.context.close();
    await b.context.close();
  }
});

test('the host talks to the widget through its handle: open a direct conversation, hear the counts', async () => {
  host.page = { ...host.page, lang: 'en', css: '' };
  const a = await tab(browser, relay, 'alice');
  const b = await guestTab(browser, host, relay, 'gina', {
    before: (page) => page.evaluate(() => {
      window.heard = [];
      document.getElementById('messenger').addEventListener('tally:unread', (e) => window.heard.push(['event', e.detail.unread]));
    }),
  });
  try {
    await b.page.evaluate(() => window.widget.onUnread((t) => window.heard.push(['callback', t.unread])));
    await startDirect(a, 'Gina');
    await say(a, 'Counted by the host');
    await b.page.waitForFunction((n) => window.heard.some(([, u]) => u >= n), 1);
    const heard = await b.page.evaluate(() => window.heard);
    assert.ok(heard.some(([how]) => how === 'event') && heard.some(([how]) => how === 'callback'), JSON.stringify(heard));
    // A "message this person" button of the work app: the panel opens on that conversation.
    await b.page.evaluate(() => window.widget.open({ direct: 'alice' }));
    await b.page.waitForSelector('#messenger .tally-conversation .tally-conv-title h3:text-is("Alice")');
    // And one with someone there is no conversation with yet: it is made.
    await b.page.evaluate(() => window.widget.close());
    await b.page.waitForSelector('#messenger .tally-panel', { state: 'detached' });
    await b.page.evaluate(() => window.widget.open({ direct: 'harry' }));
    await b.page.waitForSelector('#messenger .tally-conversation .tally-conv-title h3:text-is("Harry")');
  } finally {
    await a.context.close();
    await b.context.close();
  }
});

test('getToken handing over a login page means signed out: no stale badge, and asked again less and less often', async () => {
  host.page = { ...host.page, lang: 'en', css: '' };
  // Someone no other test writes to: the badge must say exactly this test's one message.
  const a = await tab(browser, relay, 'alice');
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  try {
    await startDirect(a, 'Jane');
    await say(a, 'Before the session ended');
    await page.goto(host.origin + '/');
    await page.waitForFunction(() => window.tallyMount);
    const token = relay.token('jane');
    // The host's session has ended: its token endpoint answers with its sign-in page.
    await page.evaluate((token) => {
      window.asked = [];
      window.session = false;
      window.widget = null;
      window.tallyMount(undefined, {
        storageKey: 'tally.jane',
        getToken: () => { window.asked.push(performance.now()); return window.session ? token : '<!doctype html><title>Sign in</title>'; },
      });
    }, token);
    await page.waitForSelector('#messenger .tally-launcher');
    await page.click('#messenger .tally-launcher');
    await page.waitForSelector('#messenger .tally-status-error:has-text("Signed out")');
    assert.equal(await page.evaluate(() => $t('[data-testid=total-badge]')), null, 'no badge while signed out');
    await new Promise((r) => setTimeout(r, 6_000));
    const asked = await page.evaluate(() => window.asked.length);
    assert.ok(asked >= 2 && asked <= 5, `getToken asked ${asked} times in 6 s (once a second before)`);
    // The session is back: the widget connects by itself and shows the count.
    await page.evaluate(() => { window.session = true; });
    // Within the longest backoff (30 s) and a connection: 65 s leaves room on a loaded machine.
    await page.waitForFunction(() => $t('[data-testid=total-badge]')?.dataset.count === '1', null, { timeout: 65_000 });
  } finally {
    await a.context.close();
    await ctx.close();
  }
});
