// End to end: the real relay binary, Debian's Chromium, two (or three) staff at once. Every
// assertion is about what a person sees, with waits on conditions, never fixed sleeps.
import { test, before, after } from 'node:test';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { Relay, launch, tab, newContext, total, expectTotal, expectItemBadge, openPanel, openConversation, startDirect, startGroup, say, backToList, blast, longPress, recordNotifications } from './helpers.mjs';

let browser;

/** Alice in one tab, Bob in two tabs of one browser context, and their direct conversation. */
async function aliceAndTwoTabsOfBob(relay) {
  const a = await tab(browser, relay, 'alice');
  const b1 = await tab(browser, relay, 'bob');
  const b2 = await tab(browser, relay, 'bob', { context: b1.context });
  await startDirect(a, 'Bob');
  return { a, b1, b2 };
}

before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test('A sends to B: B sees 1, A sees 0; B opens it and both badges clear', async () => {
  const relay = await new Relay(['alice', 'bob']).start();
  try {
    const a = await tab(browser, relay, 'alice');
    const b = await tab(browser, relay, 'bob');
    await startDirect(a, 'Bob');
    await say(a, 'Hello Bob!');
    await expectTotal(b, 1);
    await openPanel(b);
    await expectItemBadge(b, 'Alice', 1);
    await expectTotal(a, '');
    await b.page.bringToFront();
    await openConversation(b, 'Alice');
    await expectTotal(b, '');
    await backToList(b);
    await expectItemBadge(b, 'Alice', '');
    await expectTotal(a, '');
  } finally {
    await relay.stop();
  }
});

test('edit keeps the count, delete of an unread message lowers it, mark unread brings it back', async () => {
  const relay = await new Relay(['alice', 'bob']).start();
  try {
    const a = await tab(browser, relay, 'alice');
    const b = await tab(browser, relay, 'bob');
    await startDirect(a, 'Bob');
    await say(a, 'first');
    await say(a, 'second');
    await expectTotal(b, 2);
    // Edit: B's count stays 2, the text changes.
    await a.page.hover('#messenger .tally-msg:has-text("second")');
    await a.page.click('#messenger .tally-msg:has-text("second") [aria-label="Message actions"]');
    await a.page.click('#messenger .tally-menu >> text=Edit');
    await a.page.fill('#messenger [data-testid=composer]', 'second, edited');
    await a.page.press('#messenger [data-testid=composer]', 'Enter');
    await openConversation(b, 'Alice');
    await b.page.waitForSelector('#messenger .tally-msg:has-text("second, edited")');
    await expectTotal(b, '');
    await backToList(b);
    // Reading happened when B opened it; A writes again and deletes it before B reads.
    await say(a, 'oops');
    await expectTotal(b, 1);
    a.page.once('dialog', (d) => d.accept());
    await a.page.hover('#messenger .tally-msg:has-text("oops")');
    await a.page.click('#messenger .tally-msg:has-text("oops") [aria-label="Message actions"]');
    await a.page.click('#messenger .tally-menu >> text=Delete');
    await expectTotal(b, '');
    // B marks unread from "first": the badge comes back with both live messages.
    await openConversation(b, 'Alice');
    await b.page.hover('#messenger .tally-msg:has-text("first")');
    await b.page.click('#messenger .tally-msg:has-text("first") [aria-label="Message actions"]');
    await b.page.click('#messenger .tally-menu >> text=Mark unread from here');
    // It stays unread while Bob's view stays open on it (longer than the view's reading
    // debounce: CI once saw a late report of the viewport read it straight back), and after.
    await expectTotal(b, 2);
    await b.page.waitForTimeout(600);
    await expectTotal(b, 2);
    await backToList(b);
    await expectTotal(b, 2);
  } finally {
    await relay.stop();
  }
});

test('two tabs of B stay in step; mark all read clears both', async () => {
  const relay = await new Relay(['alice', 'bob']).start();
  try {
    const { a, b1, b2 } = await aliceAndTwoTabsOfBob(relay);
    await say(a, 'one');
    await say(a, 'two');
    await expectTotal(b1, 2);
    await expectTotal(b2, 2);
    await openPanel(b2);
    await b2.page.click('#messenger [aria-label="Mark all as read"]');
    await expectTotal(b2, '');
    await expectTotal(b1, '');
  } finally {
    await relay.stop();
  }
});

test('reading counts what scrolls into view; the header button reads the rest; both tabs follow', async () => {
  const relay = await new Relay(['alice', 'bob']).start();
  try {
    const { a, b1, b2 } = await aliceAndTwoTabsOfBob(relay);
    const n = 40;
    for (let i = 1; i <= n; i++) await say(a, `line ${i}`);
    await expectTotal(b2, n);
    // The number B's other tab shows, once it moves below `above`.
    const drops = async (above) => {
      await b2.page.waitForFunction(
        (above) => Number($t('[data-testid=total-badge]')?.dataset.count ?? 0) < above,
        above,
        { timeout: 10_000 },
      );
      return Number((await b2.page.textContent('#messenger [data-testid=total-badge]').catch(() => '0')) || 0);
    };
    // Opening shows the divider and the first unread lines: only those are read.
    await openConversation(b1, 'Alice');
    const afterOpen = await drops(n);
    assert.ok(afterOpen > 0, `opening read everything (${afterOpen} left), not just what is in view`);
    // Scrolling one screen down reads what comes into view, and no more.
    await b1.page.evaluate(() => {
      const list = $t('.tally-messages');
      list.scrollTop += list.clientHeight / 2;
    });
    const afterScroll = await drops(afterOpen);
    assert.ok(afterScroll > 0, `half a screen read everything (${afterScroll} left)`);
    await expectTotal(b1, afterScroll);
    // The header's button reads the rest, wherever the view is.
    await b1.page.click('#messenger [aria-label="Mark conversation as read"]');
    await expectTotal(b1, '');
    await expectTotal(b2, '');
    await expectTotal(a, '');
  } finally {
    await relay.stop();
  }
});

test('the relay is killed with SIGKILL and restarted: both reconnect, nothing acknowledged is lost', async () => {
  const relay = await new Relay(['alice', 'bob']).start();
  try {
    const a = await tab(browser, relay, 'alice');
    const b = await tab(browser, relay, 'bob');
    await startDirect(a, 'Bob');
    await say(a, 'before the crash');
    await expectTotal(b, 1);
    await relay.kill9();
    await a.page.waitForSelector('#messenger [data-testid=reconnecting]');
    await relay.start();
    await a.page.waitForSelector('#messenger [data-testid=reconnecting]', { state: 'detached', timeout: 20_000 });
    await say(a, 'after the restart');
    await expectTotal(b, 2);
  } finally {
    await relay.stop();
  }
});

test('B goes offline, writes two messages, comes back: each is delivered exactly once', async () => {
  const relay = await new Relay(['alice', 'bob']).start();
  try {
    const a = await tab(browser, relay, 'alice');
    const b = await tab(browser, relay, 'bob');
    await startDirect(a, 'Bob');
    await say(a, 'are you there?');
    await openConversation(b, 'Alice');
    await b.context.setOffline(true);
    for (const text of ['offline one', 'offline two']) {
      await b.page.fill('#messenger [data-testid=composer]', text);
      await b.page.press('#messenger [data-testid=composer]', 'Enter');
    }
    await b.page.waitForFunction(() => $$t('[data-testid=pending]').length === 2);
    await b.context.setOffline(false);
    await expectTotal(a, 2);
    await openConversation(a, 'Bob');
    await a.page.waitForFunction(() => {
      const texts = [...$$t('.tally-msg .tally-text')].map((e) => e.textContent);
      return texts.filter((t) => t === 'offline one').length === 1 && texts.filter((t) => t === 'offline two').length === 1;
    });
    await b.page.waitForFunction(() => $$t('[data-testid=pending]').length === 0, null, { timeout: 20_000 });
  } finally {
    await relay.stop();
  }
});

test('a hostile script in B’s tab cannot send as A nor read a conversation B is not in', async () => {
  const relay = await new Relay(['alice', 'bob', 'carol']).start();
  try {
    const a = await tab(browser, relay, 'alice');
    const c = await tab(browser, relay, 'carol');
    const b = await tab(browser, relay, 'bob');
    await startDirect(a, 'Carol');
    await say(a, 'private to carol');
    await expectTotal(c, 1);
    const result = await b.page.evaluate(async (token) => {
      const ws = new WebSocket(location.origin.replace('http', 'ws') + '/ws');
      const frames = [];
      ws.onmessage = (e) => frames.push(JSON.parse(e.data));
      await new Promise((r) => (ws.onopen = r));
      ws.send(JSON.stringify({ type: 'hello', token, protocol: 3 }));
      const wait = (pred) => new Promise((r) => { const t = setInterval(() => { const f = frames.find(pred); if (f) { clearInterval(t); r(f); } }, 20); });
      await wait((f) => f.type === 'snapshot');
      // Alice and Carol's conversation is 1; Bob is not in it.
      ws.send(JSON.stringify({ type: 'send_message', req: 1, client_id: 'forged', conversation: 1, body: 'from alice, honest', sender: 'alice' }));
      ws.send(JSON.stringify({ type: 'mark_read', req: 2, conversation: 1, up_to: 1 }));
      const e1 = await wait((f) => f.req === 1);
      const e2 = await wait((f) => f.req === 2);
      const history = await fetch('/api/conversations/1/messages', { headers: { Authorization: `Bearer ${token}` } });
      return { e1, e2, history: history.status, leaked: frames.some((f) => f.type === 'message_created') };
    }, b.token);
    assert.equal(result.e1.code, 'not_participant');
    assert.equal(result.e2.code, 'not_participant');
    assert.equal(result.history, 403);
    assert.equal(result.leaked, false);
    await expectTotal(c, 1);
    await expectTotal(a, '');
  } finally {
    await relay.stop();
  }
});

async function menu(t, text, action) {
  await t.page.hover(`#messenger .tally-msg:has-text("${text}")`);
  await t.page.click(`#messenger .tally-msg:has-text("${text}") [aria-label="Message actions"]`);
  await t.page.click(`#messenger .tally-menu >> text=${action}`);
}

test('attachment, reply, forward and a group notice each reach B with the right count', async () => {
  const relay = await new Relay(['alice', 'bob', 'carol']).start();
  try {
    const a = await tab(browser, relay, 'alice');
    const b = await tab(browser, relay, 'bob');
    const c = await tab(browser, relay, 'carol');
    // Attachment: A uploads and sends; B can open it, Carol (outside) gets 403.
    await startDirect(a, 'Bob');
    const file = join(tmpdir(), 'rota.txt');
    writeFileSync(file, 'Monday: Alice\nTuesday: Bob\n');
    await a.page.setInputFiles('#messenger [data-testid=file-input]', file);
    await a.page.waitForSelector('#messenger .tally-uploads .tally-ok');
    await a.page.press('#messenger [data-testid=composer]', 'Enter');
    await expectTotal(b, 1);
    // Alice leaves the conversation: Bob's replies must count for her, not be read by a tab of
    // hers that still has the focus (CI once saw her tab read them as they came).
    await backToList(a);
    await openConversation(b, 'Alice');
    await b.page.waitForSelector('#messenger [data-testid=attachment]');
    const id = await a.page.evaluate(async (token) => {
      const r = await fetch('/api/conversations/1/messages', { headers: { Authorization: `Bearer ${token}` } });
      return (await r.json()).messages.find((m) => m.attachments).attachments[0].id;
    }, a.token);
    const status = (t) => t.page.evaluate(async ([token, id]) => (await fetch(`/api/attachments/${id}`, { headers: { Authorization: `Bearer ${token}` } })).status, [t.token, id]);
    assert.equal(await status(b), 200);
    assert.equal(await status(c), 403);
    // Reply: B replies to the file; A's count rises by one and the quote shows.
    await say(b, 'Thanks!');
    await menu(b, 'Thanks!', 'Reply');
    await say(b, 'See you Tuesday');
    await expectTotal(a, 2);
    await backToList(b);
    // A group with Carol; then A adds B: B sees the group with only the notice unread.
    await startGroup(a, ['Carol'], 'Front desk');
    await say(a, 'history before Bob');
    await a.page.click('#messenger [aria-label="Group settings"]');
    await a.page.click('#messenger .tally-dialog button:has-text("+ Bob")');
    await expectTotal(b, 1);
    await openPanel(b);
    await expectItemBadge(b, 'Front desk', 1);
    // Forward: A forwards the group message into the direct conversation with B.
    await menu(a, 'history before Bob', 'Forward');
    await a.page.click('#messenger .tally-dialog button:has-text("Bob")');
    await expectItemBadge(b, 'Alice', 1);
    await expectTotal(b, 2);
    await openConversation(b, 'Alice');
    await b.page.waitForSelector('#messenger .tally-forwarded');
  } finally {
    await relay.stop();
  }
});

test('mentions raise a marker; muting a group takes it out of the total but keeps its badge', async () => {
  const relay = await new Relay(['alice', 'bob', 'carol']).start();
  try {
    const a = await tab(browser, relay, 'alice');
    const b = await tab(browser, relay, 'bob');
    await startGroup(a, ['Bob', 'Carol'], 'Ops');
    await say(a, '@bob can you check the door?');
    await expectTotal(b, 2); // the creation notice and the mention
    await b.page.waitForSelector('#messenger [data-testid=mention-marker]');
    await openPanel(b);
    await b.page.waitForSelector('#messenger .tally-item:has-text("Ops") [data-testid=mention-badge]');
    await startDirect(a, 'Bob');
    await say(a, 'and a direct one');
    await expectTotal(b, 3);
    // Mute from the conversation header, then look at the list without reading anything new.
    // Bob reads Ops by opening it (what is in view, once the view reports it: wait for that, a
    // busy machine once muted and left before it had, and Ops kept its two unread).
    await openConversation(b, 'Ops');
    await expectTotal(b, 1);
    await b.page.click('#messenger [aria-label="Mute"]');
    await backToList(b);
    await expectTotal(b, 1);
    await say(a, 'another direct one');
    await expectTotal(b, 2);
    await expectItemBadge(b, 'Alice', 2);
    // News in the muted group: its own badge shows it, the total does not.
    await openConversation(a, 'Ops');
    await say(a, 'muted news');
    await expectItemBadge(b, 'Ops', 1);
    await expectTotal(b, 2);
  } finally {
    await relay.stop();
  }
});

test('a burst of 2,000 messages: the badge, the list and the conversation are exact, and the page stays responsive', async () => {
  const relay = await new Relay(['alice', 'bob'], { args: ['--writes-per-sec', '1e9', '--write-burst', '1e9'] }).start();
  try {
    const a = await tab(browser, relay, 'alice');
    const b = await tab(browser, relay, 'bob');
    await startDirect(a, 'Bob');
    await say(a, 'Brace yourself');
    const dm = Number(await a.page.getAttribute('#messenger .tally-conversation', 'data-conversation'));
    await b.page.bringToFront();
    await openPanel(b);
    await expectItemBadge(b, 'Alice', 1);
    // During the burst: long tasks are recorded, and a click is timed from the input event to
    // its handler (how long a person waits for the page to react).
    await b.page.evaluate(() => {
      window.longTasks = [];
      new PerformanceObserver((l) => window.longTasks.push(...l.getEntries().map((e) => e.duration))).observe({ type: 'longtask' });
      const button = document.createElement('button');
      button.id = 'probe';
      button.textContent = 'probe';
      button.onclick = (e) => { window.clickDelay = performance.now() - e.timeStamp; };
      document.body.append(button);
    });
    const burst = blast(a, relay, dm, 2000);
    await b.page.waitForFunction(() => $t('.tally-launcher').getAttribute('aria-label') !== 'Messages, 1 unread');
    await b.page.click('#probe');
    const took = await burst;
    await b.page.waitForFunction(() => $t('.tally-launcher').getAttribute('aria-label') === 'Messages, 2,001 unread', null, { timeout: 20_000 });
    await expectItemBadge(b, 'Alice', 2001);
    const { clickDelay, longTasks } = await b.page.evaluate(() => ({ clickDelay: window.clickDelay, longTasks: window.longTasks }));
    // Printed, not asserted: a test on a busy machine cannot judge time (CI's is busy too, and
    // this failed there under load). `make bench-tab` measures it on a quiet one.
    console.log(`burst acknowledged in ${Math.round(took)} ms; click answered in ${Math.round(clickDelay)} ms; long tasks: ${longTasks.map(Math.round).join(', ') || 'none'}`);
    assert.ok(clickDelay !== undefined, 'a click during the burst was answered');
    // The open conversation renders a window: from the first unread message ("Brace
    // yourself", at the divider), 120 rows; what is in view is read, not the 1,900 below it.
    // Scrolling down renders the rest, 50 at a time, to the newest.
    await openConversation(b, 'Alice');
    const texts = () => b.page.evaluate(() => [...$$t('.tally-msg .tally-text')].map((e) => e.textContent));
    await b.page.waitForFunction(() => {
      const texts = [...$$t('.tally-msg .tally-text')].map((e) => e.textContent);
      return texts.length === 120 && texts[0] === 'Brace yourself';
    }, null, { timeout: 20_000 });
    const unread = () => b.page.evaluate(() => Number($t(".tally-total")?.dataset.count ?? 0));
    await b.page.waitForFunction(() => !$t('.tally-launcher').getAttribute('aria-label').includes('2,001'));
    assert.ok((await unread()) > 1800, `${await unread()} left unread after opening`);
    // Scrolling down renders the next 50 each time, and releases rows far above: never more
    // than 240 in the page, however far the reader goes.
    let last = (await texts()).at(-1);
    for (let step = 0; last !== 'burst 2000'; step++) {
      assert.ok(step < 60, `still not at the newest after ${step} steps (at ${last})`);
      await b.page.evaluate(() => { const l = $t('.tally-messages'); l.scrollTop = l.scrollHeight; });
      await b.page.waitForFunction((was) => $$t('.tally-msg .tally-text').at(-1)?.textContent !== was, last);
      const now = await texts();
      assert.ok(now.length <= 240, `${now.length} rows rendered`);
      last = now.at(-1);
    }
    const all = await texts();
    assert.ok(all.length <= 240 && all[0] !== 'Brace yourself', `rows above were released: ${all.length}, from ${all[0]}`);
    // And back up: the released rows come back, and those below are released in turn.
    for (let step = 0; (await texts())[0] !== 'Brace yourself'; step++) {
      assert.ok(step < 60, 'never back at the first unread message');
      const first = (await texts())[0];
      await b.page.evaluate(() => { $t('.tally-messages').scrollTop = 0; });
      await b.page.waitForFunction((was) => $$t('.tally-msg .tally-text')[0]?.textContent !== was, first);
      assert.ok((await texts()).length <= 240);
    }
  } finally {
    await relay.stop();
  }
});

/** A tiny static server on another origin: a host page that loads the widget from `relayUrl`. */
async function hostPage(relayUrl, port = 0) {
  const server = createServer((req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(`<!doctype html><html><head><title>Other app</title>
      </head><body><div id="messenger"></div>
      <script type="module">
        import init, { mount } from "${relayUrl}/tally-frontend.js";
        await init({ module_or_path: "${relayUrl}/tally-frontend_bg.wasm" });
        window.tallyMount = (token) => mount(document.getElementById("messenger"), { relayUrl: "${relayUrl}", token, storageKey: "cross" });
      </script></body></html>`);
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${server.address().port}` };
}

test('a host page on another, allowed origin mounts the widget, sends, uploads and pages history; one not allowed gets nothing', async () => {
  // A free port for the host page, known before the relay starts (it is told to allow it).
  const probe = await hostPage('');
  const port = probe.server.address().port;
  await new Promise((r) => probe.server.close(r));
  const relay = new Relay(['alice', 'bob'], { args: ['--allow-origin', `http://127.0.0.1:${port}`, '--writes-per-sec', '1e9', '--write-burst', '1e9'] });
  await relay.start();
  const host = await hostPage(relay.url, port);
  const stranger = await hostPage(relay.url);
  try {
    const a = await tab(browser, relay, 'alice');
    await startDirect(a, 'Bob');
    const dm = Number(await a.page.getAttribute('#messenger .tally-conversation', 'data-conversation'));
    await blast(a, relay, dm, 230, 'older');
    const ctx = await newContext(browser, { viewport: { width: 1000, height: 760 } });
    const page = await ctx.newPage();
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.waitForFunction(() => window.tallyMount, null, { timeout: 10_000 });
    await page.evaluate((token) => window.tallyMount(token), relay.token('bob'));
    const b = { page, context: ctx, staff: 'bob' };
    await b.page.waitForFunction(() => $t('.tally-launcher')?.getAttribute('aria-label') === 'Messages, 230 unread');
    // Pages history: the snapshot carried the newest 200 of the 230, so opening the
    // conversation loads the rest back to the first unread over HTTP (a preflight), and opens
    // there, the divider above it.
    await openConversation(b, 'Alice');
    await b.page.waitForFunction(() => $t('.tally-msg .tally-text')?.textContent === 'older 1', null, { timeout: 10_000 });
    await b.page.waitForSelector('#messenger [data-testid=new-divider] + .tally-msg:has-text("older 1")');
    // Sends, and uploads an attachment (HTTP with an Authorization header, cross-origin).
    await say(b, 'from the other app');
    await b.page.setInputFiles('#messenger [data-testid=file-input]', { name: 'note.txt', mimeType: 'text/plain', buffer: Buffer.from('cross-origin file') });
    await b.page.waitForSelector('#messenger .tally-uploads .tally-ok');
    await b.page.press('#messenger [data-testid=composer]', 'Enter');
    await a.page.waitForSelector('#messenger [data-testid=attachment]:has-text("note.txt")');
    await a.page.waitForFunction(() => [...$$t('.tally-text')].some((e) => e.textContent === 'from the other app'));
    // An origin the relay was not told about cannot even load the widget.
    const other = await (await newContext(browser)).newPage();
    await other.goto(stranger.url);
    await other.waitForTimeout(1500);
    assert.equal(await other.evaluate(() => typeof window.tallyMount), 'undefined');
  } finally {
    host.server.close();
    stranger.server.close();
    await relay.stop();
  }
});

test('the work app posts through the service API: the badge rises, its notice shows as a card, the API reads the same count', async () => {
  const relay = await new Relay(['alice', 'bob', 'carol']).start();
  try {
    const key = relay.cli('service-key', 'create', 'work-app');
    const api = async (method, path, body) => {
      const r = await fetch(`${relay.url}/api/v1/service${path}`, {
        method,
        headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: r.status, body: await r.json() };
    };
    const a = await tab(browser, relay, 'alice');
    const b = await tab(browser, relay, 'bob');
    // A message from Alice, posted by the backend into a direct conversation it opens.
    const sent = await api('POST', '/messages', { direct: ['alice', 'bob'], sender: 'alice', body: 'Lab results for room 12 are in', client_id: 'lab-1' });
    assert.equal(sent.status, 201);
    await expectTotal(b, 1);
    await expectTotal(a, '');
    // Its retry changes nothing.
    assert.equal((await api('POST', '/messages', { direct: ['alice', 'bob'], sender: 'alice', body: 'Lab results for room 12 are in', client_id: 'lab-1' })).status, 200);
    // A group the backend makes, and its notice: both count for Bob.
    const group = await api('POST', '/conversations', { title: 'Ward 3', participants: ['bob', 'carol'], client_id: 'ward-3' });
    assert.equal(group.status, 201);
    await expectTotal(b, 2);
    const notice = await api('POST', '/messages', { conversation: group.body.conversation.id, notice: { title: 'Shift change', text: 'Night shift starts at 22:00' } });
    assert.equal(notice.status, 201);
    await expectTotal(b, 3);
    await openPanel(b);
    await expectItemBadge(b, 'Ward 3', 2);
    assert.equal((await api('GET', '/staff/bob/unread')).body.total.unread, 3);
    // Bob reads the group: the card shows the title and text; the API agrees with the badge.
    await openConversation(b, 'Ward 3');
    await b.page.waitForSelector('#messenger .tally-notice-app:has-text("Shift change"):has-text("Night shift starts at 22:00")');
    await expectTotal(b, 1);
    // The read reaches the relay just after the badge moves: wait for it, then compare.
    let unread;
    for (let i = 0; i < 100 && unread !== 1; i++) {
      unread = (await api('GET', '/staff/bob/unread')).body.total.unread;
      if (unread !== 1) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(unread, 1);
  } finally {
    await relay.stop();
  }
});

test('typing shows in the other browser, ends with the message, and expires when she stops', async () => {
  const relay = await new Relay(['alice', 'bob']).start();
  try {
    const a = await tab(browser, relay, 'alice');
    const b = await tab(browser, relay, 'bob');
    await startDirect(a, 'Bob');
    await say(a, 'Morning');
    await openConversation(b, 'Alice');
    const typingLine = (t) => t.page.textContent('#messenger [data-testid=typing]');
    // Alice types: Bob sees it; she sends: it goes.
    await a.page.type('#messenger [data-testid=composer]', 'Room 4 is', { delay: 30 });
    await b.page.waitForSelector('#messenger [data-testid=typing]:has-text("Alice is typing…")');
    assert.equal(await typingLine(a), '', 'not shown to the typist');
    await a.page.type('#messenger [data-testid=composer]', ' ready');
    await a.page.press('#messenger [data-testid=composer]', 'Enter');
    await b.page.waitForSelector('#messenger .tally-text:text-is("Room 4 is ready")');
    await b.page.waitForFunction(() => $t('[data-testid=typing]').textContent === '', null, { timeout: 10_000 });
    // She types and stops: it expires on its own (after about six seconds: not at once, and
    // without anything else happening; how long exactly is not for a busy machine to judge).
    await a.page.type('#messenger [data-testid=composer]', 'Actually', { delay: 30 });
    await b.page.waitForSelector('#messenger [data-testid=typing]:has-text("Alice is typing…")');
    const shown = Date.now();
    await b.page.waitForFunction(() => $t('[data-testid=typing]').textContent === '', null, { timeout: 20_000 });
    const lasted = Date.now() - shown;
    assert.ok(lasted > 4_000, `shown for only ${lasted} ms`);
  } finally {
    await relay.stop();
  }
});

test('presence: Bob sees Alice online, away when her tab is hidden, offline when she leaves', async () => {
  const relay = await new Relay(['alice', 'bob']).start();
  try {
    const a = await tab(browser, relay, 'alice');
    const b = await tab(browser, relay, 'bob');
    await startDirect(a, 'Bob');
    await say(a, 'Hi');
    await openPanel(b);
    const dot = (state) => b.page.waitForSelector(`#messenger .tally-item:has-text("Alice") [data-testid=presence][data-presence=${state}]`, { state: 'attached', timeout: 10_000 });
    await dot('online');
    // Her tab is hidden (as the browser says when she switches tabs).
    await a.page.evaluate(() => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    await dot('away');
    await a.page.evaluate(() => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => false });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    await dot('online');
    await a.context.close();
    await dot('offline');
  } finally {
    await relay.stop();
  }
});

test('"Seen" moves when Bob reads; "Seen by" in a group on hover; hiding his read state hides it', async () => {
  const relay = await new Relay(['alice', 'bob', 'carol']).start();
  try {
    const a = await tab(browser, relay, 'alice');
    const b = await tab(browser, relay, 'bob');
    await startDirect(a, 'Bob');
    await say(a, 'Are you in?');
    await say(a, 'Room 4');
    const seenUnder = () => a.page.evaluate(() => [...$$t('[data-testid=seen]')].map((s) => s.closest('.tally-msg').querySelector('.tally-text').textContent));
    assert.deepEqual(await seenUnder(), [], 'Bob has not read anything');
    await openConversation(b, 'Alice');
    await a.page.waitForFunction(() => $$t('[data-testid=seen]').length === 1);
    assert.deepEqual(await seenUnder(), ['Room 4'], 'under her newest message he read');
    await a.page.bringToFront();
    await say(a, 'Bring the keys');
    await b.page.bringToFront();
    await b.page.waitForSelector('#messenger .tally-text:text-is("Bring the keys")');
    await a.page.waitForFunction(() => [...$$t('[data-testid=seen]')].map((s) => s.closest('.tally-msg').querySelector('.tally-text').textContent).join() === 'Bring the keys');

    // A group: "Seen by Bob" on hover over her message, once he has read it.
    await a.page.bringToFront();
    await startGroup(a, ['Bob', 'Carol'], 'Lunch');
    await say(a, 'Pizza?');
    await openConversation(b, 'Lunch');
    // Bob reads it while his tab has the focus (reading waits a moment for the view to settle).
    await expectTotal(b, '');
    await a.page.bringToFront();
    const mine = '#messenger .tally-msg:has(.tally-text:text-is("Pizza?"))';
    await a.page.waitForSelector(`${mine} [data-testid=seen-by]`, { state: 'attached' });
    await a.page.hover(mine);
    assert.equal(await a.page.textContent(`${mine} [data-testid=seen-by]`), 'Seen by Bob');
    assert.ok(await a.page.isVisible(`${mine} [data-testid=seen-by]`));

    // Bob stops sharing: Alice's "Seen by" goes; Bob's own view shows nobody's.
    await b.page.click('#messenger [data-testid=bell]');
    // (The box follows the relay: it shows unchecked once the preference is recorded.)
    await b.page.click('#messenger [data-testid=share-reads]');
    await b.page.waitForFunction(() => !$t('[data-testid=share-reads]').checked);
    await a.page.waitForSelector(`${mine} [data-testid=seen-by]`, { state: 'detached' });
    await openConversation(a, 'Bob');
    await a.page.waitForSelector('#messenger [data-testid=seen]', { state: 'detached' });
  } finally {
    await relay.stop();
  }
});

test('search finds only what Bob may read; a result opens the conversation at it, history loaded around it', async () => {
  const relay = await new Relay(['alice', 'bob', 'carol'], { args: ['--writes-per-sec', '1e9', '--write-burst', '1e9'] }).start();
  try {
    const a = await tab(browser, relay, 'alice');
    await startDirect(a, 'Carol');
    await say(a, 'A parcel for Carol only');
    await startDirect(a, 'Bob');
    await say(a, 'The parcel code is 8841');
    const dm = Number(await a.page.getAttribute('#messenger .tally-conversation', 'data-conversation'));
    await blast(a, relay, dm, 300, 'filler');
    // Bob signs in after: his snapshot holds the newest messages, not the first one.
    const b = await tab(browser, relay, 'bob');
    await openPanel(b);
    await b.page.click('#messenger [data-testid=search]');
    await b.page.fill('#messenger [data-testid=search-input]', 'parc*');
    await b.page.waitForSelector('#messenger [data-testid=search-result]');
    const results = await b.page.$$eval('#messenger [data-testid=search-result]', (rs) => rs.map((r) => r.textContent));
    assert.equal(results.length, 1, `Carol's conversation is not Bob's: ${results}`);
    assert.match(results[0], /The parcel code is 8841/);
    assert.equal(await b.page.textContent('#messenger [data-testid=search-result] mark'), 'parcel');
    await b.page.fill('#messenger [data-testid=search-input]', 'carol only');
    await b.page.waitForSelector('#messenger .tally-search p:text-is("No messages found.")');
    // A result: the conversation opens at it (300 messages later), marked, in view.
    await b.page.fill('#messenger [data-testid=search-input]', 'code 8841');
    await b.page.click('#messenger [data-testid=search-result]');
    const row = '#messenger .tally-msg:has(.tally-text:text-is("The parcel code is 8841"))';
    await b.page.waitForSelector(`${row}[data-found]`, { timeout: 10_000 });
    const inView = () => b.page.$eval(row, (r) => {
      const l = r.closest('.tally-messages').getBoundingClientRect();
      const m = r.getBoundingClientRect();
      return m.top >= l.top && m.bottom <= l.bottom;
    });
    assert.ok(await inView(), 'the message is on screen');
    // History around it: the messages after it are there too, in order.
    const texts = await b.page.$$eval('#messenger .tally-msg .tally-text', (es) => es.map((e) => e.textContent));
    const at = texts.indexOf('The parcel code is 8841');
    assert.deepEqual(texts.slice(at, at + 3), ['The parcel code is 8841', 'filler 1', 'filler 2']);
  } finally {
    await relay.stop();
  }
});

test('scrolled up, Bob sees "N new messages ↓"; clicking it jumps down and reads them', async () => {
  const relay = await new Relay(['alice', 'bob'], { args: ['--writes-per-sec', '1e9', '--write-burst', '1e9'] }).start();
  try {
    const a = await tab(browser, relay, 'alice');
    const b = await tab(browser, relay, 'bob');
    await startDirect(a, 'Bob');
    await say(a, 'Rota follows');
    const dm = Number(await a.page.getAttribute('#messenger .tally-conversation', 'data-conversation'));
    await blast(a, relay, dm, 40, 'line');
    await expectTotal(b, 41);
    await openConversation(b, 'Alice');
    const list = '#messenger .tally-messages';
    const atBottom = () => b.page.$eval(list, (l) => l.scrollHeight - l.scrollTop - l.clientHeight < 80);
    // Opened at the first unread message, with the rest below: the pill says how many.
    const pill = await b.page.waitForSelector('#messenger [data-testid=jump-pill]');
    assert.match(await pill.textContent(), /^\d+ new messages ↓$/);
    assert.equal(await pill.textContent(), `${await pill.getAttribute('data-count')} new messages ↓`);
    await pill.click();
    await b.page.waitForFunction(() => { const l = $t('.tally-messages'); return l.scrollHeight - l.scrollTop - l.clientHeight < 80; });
    await expectTotal(b, '');
    assert.equal(await b.page.$('#messenger [data-testid=jump-pill]'), null);
    // Scrolled back up, three more arrive: "3 new messages ↓"; a click takes him down to them.
    await b.page.$eval(list, (l) => { l.scrollTop = 0; l.dispatchEvent(new Event('scroll')); });
    await blast(a, relay, dm, 3, 'late');
    await b.page.waitForSelector('#messenger [data-testid=jump-pill][data-count="3"]:has-text("3 new messages")');
    await b.page.click('#messenger [data-testid=jump-pill]');
    await expectTotal(b, '');
    assert.ok(await atBottom());
  } finally {
    await relay.stop();
  }
});

test('notifications: one of Bob’s two hidden tabs notifies, none while a tab is visible, a click opens it', async () => {
  const relay = await new Relay(['alice', 'bob']).start();
  try {
    const a = await tab(browser, relay, 'alice');
    const context = await newContext(browser, { viewport: { width: 1000, height: 760 } });
    await recordNotifications(context);
    const b1 = await tab(browser, relay, 'bob', { context });
    const b2 = await tab(browser, relay, 'bob', { context });
    // Bob turns them on from the bell (the click is what may ask the browser's permission).
    await openPanel(b1);
    await b1.page.click('#messenger [data-testid=bell]');
    await b1.page.check('#messenger [data-testid=notify-enabled]');
    await startDirect(a, 'Bob');
    await say(a, 'first');
    const hide = (t, hidden) => t.page.evaluate((hidden) => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
      document.dispatchEvent(new Event('visibilitychange'));
    }, hidden);
    const notes = async () => (await b1.page.evaluate(() => window.notes.length)) + (await b2.page.evaluate(() => window.notes.length));
    const settle = () => new Promise((r) => setTimeout(r, 2_500)); // tabs hear each other's heartbeat
    await hide(b1, true);
    await hide(b2, true);
    await settle();
    const before = await notes();
    await say(a, 'Lab results are in');
    await expectTotal(b2, 2);
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal(await notes(), before + 1, 'exactly one tab notified');
    const notifier = (await b1.page.evaluate(() => window.notes.length)) > 0 ? b1 : b2;
    const note = await notifier.page.evaluate(() => { const { title, body } = window.notes.at(-1); return { title, body }; });
    assert.deepEqual(note, { title: 'Alice', body: 'Alice: Lab results are in' });
    // One tab visible: nobody notifies.
    await hide(b1, false);
    await settle();
    await say(a, 'are you there?');
    await expectTotal(b1, 3);
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal(await notes(), before + 1, 'a visible tab shows it already');
    // Clicking the notification opens the conversation in that tab.
    await notifier.page.evaluate(() => window.lastNote.onclick());
    await notifier.page.waitForSelector('#messenger .tally-conversation');
  } finally {
    await relay.stop();
  }
});

test('threads: Bob replies in a thread Alice follows; her badge rises, not the conversation; reading it clears her other tab; mark unread brings it back; the inbox sums to the badge', async () => {
  const relay = await new Relay(['alice', 'bob']).start();
  try {
    const a1 = await tab(browser, relay, 'alice');
    const a2 = await tab(browser, relay, 'alice', { context: a1.context });
    const b = await tab(browser, relay, 'bob');
    await startDirect(a1, 'Bob');
    await say(a1, 'Who has the keys?');
    await backToList(a1);
    await openConversation(b, 'Alice');
    await expectTotal(b, '');
    // Bob replies in the thread under Alice's message: she wrote its root, so she follows it.
    await menu(b, 'Who has the keys?', 'Reply in thread');
    await b.page.waitForSelector('#messenger [data-testid=thread-pane]');
    await b.page.fill('#messenger .tally-thread [data-testid=composer]', 'I do, at reception');
    await b.page.press('#messenger .tally-thread [data-testid=composer]', 'Enter');
    await b.page.waitForSelector('#messenger .tally-thread .tally-msg:not(.tally-pending):has-text("I do, at reception")');
    await expectTotal(a1, 1);
    await expectTotal(a2, 1);
    // The conversation's own count does not rise: the reply counts in its thread.
    await openPanel(a2);
    await expectItemBadge(a2, 'Bob', '');
    // The Unreads inbox lists the thread, and its numbers sum to the badge.
    await a2.page.click('#messenger [data-testid=tab-unreads]');
    await a2.page.waitForSelector('#messenger [data-testid=inbox] [data-testid=thread-item][data-count="1"]');
    const inboxSum = await a2.page.evaluate(() =>
      $$t('[data-testid=inbox] [data-testid=unread-badge]').reduce((n, e) => n + Number(e.dataset.count), 0));
    assert.equal(String(inboxSum), await total(a2));
    // Alice reads the thread in her first tab: the second tab's badge clears.
    await a1.page.bringToFront();
    await openConversation(a1, 'Bob');
    await a1.page.waitForSelector('#messenger [data-testid=thread-line][data-unread="1"]');
    await a1.page.click('#messenger [data-testid=thread-line]');
    await a1.page.waitForSelector('#messenger [data-testid=thread-pane] .tally-msg:has-text("I do, at reception")');
    await expectTotal(a2, '');
    await a2.page.waitForSelector('#messenger [data-testid=inbox-empty]');
    // Mark thread unread from Bob's reply: it counts again, in both tabs.
    await menu(a1, 'I do, at reception', 'Mark unread from here');
    await expectTotal(a1, 1);
    await expectTotal(a2, 1);
    await a2.page.waitForSelector('#messenger [data-testid=inbox] [data-testid=thread-item][data-count="1"]');
  } finally {
    await relay.stop();
  }
});

test('talk: Alice mentions "Bob Chen" through the picker; his mention count rises and it is highlighted; a reaction shows for both and changes no count; formatting renders', async () => {
  const relay = new Relay(['alice']);
  relay.cli('staff', 'add', 'bob', '--name', 'Bob Chen');
  await relay.start();
  try {
    const a = await tab(browser, relay, 'alice');
    const b = await tab(browser, relay, 'bob');
    await startDirect(a, 'Bob Chen');
    // The picker: "@bo" offers Bob Chen; Enter writes his name.
    await a.page.click('#messenger [data-testid=composer]');
    await a.page.keyboard.type('@bo');
    await a.page.waitForSelector('#messenger [data-testid=mention-list] [role=option][aria-selected=true]:has-text("Bob Chen")');
    await a.page.keyboard.press('Enter');
    await a.page.waitForFunction(() => $t('[data-testid=composer]').value === '@Bob Chen ');
    await a.page.keyboard.type('can you **check** the door?');
    await a.page.keyboard.press('Enter');
    await a.page.waitForSelector('#messenger .tally-msg:not(.tally-pending) .tally-text strong:text-is("check")');
    await expectTotal(b, 1);
    await b.page.waitForSelector('#messenger [data-testid=mention-marker]');
    await openConversation(b, 'Alice');
    await b.page.waitForSelector('#messenger .tally-mention-me:text-is("@Bob Chen")');
    await expectTotal(b, '');
    // Bob reacts from the message's menu; both see it, and no count moves.
    await b.page.hover('#messenger .tally-msg');
    await b.page.click('#messenger .tally-msg .tally-menu-button');
    await b.page.click('#messenger [data-testid=quick-reaction]:has-text("👍")');
    for (const t of [a, b]) {
      await t.page.waitForSelector('#messenger .tally-reaction[data-emoji="👍"][data-count="1"]');
    }
    const who = await a.page.evaluate(() => $t('.tally-reaction').getAttribute('title'));
    assert.equal(who, '👍 1 from Bob Chen');
    assert.equal(await total(a), '');
    assert.equal(await total(b), '');
    // Alice joins it from her side: two, and still no count.
    await a.page.click('#messenger .tally-reaction[data-emoji="👍"]');
    await b.page.waitForSelector('#messenger .tally-reaction[data-emoji="👍"][data-count="2"]');
    assert.equal(await total(b), '');
  } finally {
    await relay.stop();
  }
});

test('notifications follow reading: the tab that showed one closes it when Bob reads the message in his other tab', async () => {
  const relay = await new Relay(['alice', 'bob']).start();
  try {
    const a = await tab(browser, relay, 'alice');
    const context = await newContext(browser, { viewport: { width: 1000, height: 760 } });
    await recordNotifications(context);
    const b1 = await tab(browser, relay, 'bob', { context });
    const b2 = await tab(browser, relay, 'bob', { context });
    await openPanel(b1);
    await b1.page.click('#messenger [data-testid=bell]');
    await b1.page.check('#messenger [data-testid=notify-enabled]');
    await startDirect(a, 'Bob');
    const hide = (t, hidden) => t.page.evaluate((hidden) => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
      document.dispatchEvent(new Event('visibilitychange'));
    }, hidden);
    await hide(b1, true);
    await hide(b2, true);
    await new Promise((r) => setTimeout(r, 2_500));
    await say(a, 'The van is here');
    const shown = async (t) => t.page.evaluate(() => window.notes.filter((n) => !n.closed).length);
    await expectTotal(b1, 1);
    let notifier;
    for (let i = 0; i < 50 && !notifier; i++) {
      if (await shown(b1)) notifier = b1;
      else if (await shown(b2)) notifier = b2;
      else await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(notifier, 'one tab notified');
    const other = notifier === b1 ? b2 : b1;
    // Bob reads it in the other tab: the notification closes where it stands, and both badges clear.
    await hide(other, false);
    await openConversation(other, 'Alice');
    await expectTotal(notifier, '');
    await notifier.page.waitForFunction(() => window.notes.length > 0 && window.notes.every((n) => n.closed), null, { timeout: 10_000 });
  } finally {
    await relay.stop();
  }
});

test('the keyboard moves through unreads: Ctrl+K finds Carol, Alt+Shift+↓ the next unread, Escape reads and closes; a host field keeps its keys', async () => {
  const relay = await new Relay(['alice', 'bob', 'carol']).start();
  try {
    const a = await tab(browser, relay, 'alice');
    const c = await tab(browser, relay, 'carol');
    const b = await tab(browser, relay, 'bob');
    await startDirect(a, 'Bob');
    await say(a, 'Are you on today?');
    await startDirect(c, 'Bob');
    await say(c, 'A parcel came for you');
    await expectTotal(b, 2);
    await b.page.bringToFront();
    // In the host page's own text field, Ctrl+K is the page's.
    await b.page.evaluate(() => {
      const field = document.createElement('input');
      field.id = 'host-field';
      document.body.prepend(field);
    });
    await b.page.focus('#host-field');
    await b.page.keyboard.press('Control+K');
    assert.equal(await b.page.$('#messenger .tally-panel'), null, 'nothing opened');
    // Anywhere else, Ctrl+K opens the switcher, unread first; typing filters; Enter opens.
    await b.page.evaluate(() => document.activeElement.blur());
    await b.page.keyboard.press('Control+K');
    await b.page.waitForSelector('#messenger [data-testid=switcher-input]');
    const unreadFirst = await b.page.evaluate(() => [...document.querySelector('#messenger').shadowRoot.querySelectorAll('[data-testid=switcher-option]')].slice(0, 2).map((o) => o.textContent));
    assert.ok(unreadFirst.every((t) => /Alice|Carol/.test(t)), unreadFirst.join(' | '));
    await b.page.keyboard.type('car');
    await b.page.waitForSelector('#messenger [role=option][aria-selected=true]:has-text("Carol")');
    await b.page.keyboard.press('Enter');
    await b.page.waitForSelector('#messenger .tally-conversation .tally-text:text-is("A parcel came for you")');
    await expectTotal(b, 1);
    // Alt+Shift+↓: the next conversation with something unread, from the composer too.
    await b.page.keyboard.press('Alt+Shift+ArrowDown');
    await b.page.waitForSelector('#messenger .tally-conversation .tally-text:text-is("Are you on today?")');
    // Escape reads it and goes back to the list; the panel stays until a second Escape.
    await b.page.keyboard.press('Escape');
    await b.page.waitForSelector('#messenger .tally-conversation', { state: 'detached' });
    await expectTotal(b, '');
    await b.page.waitForSelector('#messenger [data-testid=conversation-list]');
    // The shortcuts are listed (Ctrl+/), and Escape closes only that dialog.
    await b.page.keyboard.press('Control+/');
    await b.page.waitForSelector('#messenger [data-testid=shortcuts]');
    await b.page.keyboard.press('Escape');
    await b.page.waitForSelector('#messenger [data-testid=shortcuts]', { state: 'detached' });
    assert.ok(await b.page.$('#messenger .tally-panel'));
    await b.page.keyboard.press('Escape');
    await b.page.waitForSelector('#messenger .tally-panel', { state: 'detached' });
  } finally {
    await relay.stop();
  }
});

test('snooze: Bob’s snooze holds his notifications while his badge still rises; Alice sees "do not disturb"; a mention breaks through when he lets it', async () => {
  const relay = await new Relay(['alice', 'bob']).start();
  try {
    const a = await tab(browser, relay, 'alice');
    const context = await newContext(browser, { viewport: { width: 1000, height: 900 } });
    await recordNotifications(context);
    const b = await tab(browser, relay, 'bob', { context });
    await openPanel(b);
    await b.page.click('#messenger [data-testid=bell]');
    await b.page.check('#messenger [data-testid=notify-enabled]');
    await startDirect(a, 'Bob');
    // Bob snoozes for 30 minutes, from the bell.
    await b.page.click('#messenger [data-testid=snooze-30]');
    await b.page.waitForSelector('#messenger [data-testid=quiet-status]');
    // Alice sees him as "do not disturb" in her list.
    await backToList(a);
    await a.page.waitForSelector('#messenger [data-testid=presence][data-dnd=true]');
    await openConversation(a, 'Bob');
    await b.page.click('#messenger [aria-label="Close messages"]');
    await b.page.evaluate(() => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    await say(a, 'Lunch at one?');
    await expectTotal(b, 1);
    // The badge rose and the page title with it, but no notification and no sound.
    await b.page.waitForFunction(() => document.title.startsWith('(1)'));
    await new Promise((r) => setTimeout(r, 1_500));
    assert.equal(await b.page.evaluate(() => window.notes.length), 0, 'snoozed: nothing shown');
    // Mentions may break through: Bob lets them, and Alice's @bob notifies.
    await openPanel(b);
    await b.page.click('#messenger [data-testid=bell]');
    await b.page.check('#messenger [data-testid=quiet-mentions]');
    await b.page.click('#messenger [aria-label="Close messages"]');
    await say(a, '@bob the van is here');
    await expectTotal(b, 2);
    await b.page.waitForFunction(() => window.notes.length === 1 && window.notes[0].body.includes('van'), null, { timeout: 10_000 });
    // He resumes: an ordinary message notifies again.
    await openPanel(b);
    await b.page.click('#messenger [data-testid=bell]');
    await b.page.click('#messenger [data-testid=snooze-off]');
    await b.page.waitForSelector('#messenger [data-testid=quiet-status]', { state: 'detached' });
    await backToList(a);
    await a.page.waitForSelector('#messenger [data-testid=presence]:not([data-dnd])');
    await openConversation(a, 'Bob');
    await b.page.click('#messenger [aria-label="Close messages"]');
    await say(a, 'Never mind, sorted');
    await b.page.waitForFunction(() => window.notes.length === 2, null, { timeout: 10_000 });
  } finally {
    await relay.stop();
  }
});

test('edits keep their history for whoever saw them; a phone reacts from the menu; the owner turns @here off', async () => {
  const relay = await new Relay(['alice', 'bob', 'carol']).start();
  try {
    const a = await tab(browser, relay, 'alice');
    const phone = await newContext(browser, { viewport: { width: 320, height: 640 }, hasTouch: true });
    const b = await tab(browser, relay, 'bob', { context: phone });
    await startGroup(a, ['Bob', 'Carol'], 'Rota');
    await say(a, 'Meet at 9');
    // Alice edits it twice.
    for (const text of ['Meet at 10', 'Meet at 10:30']) {
      await a.page.hover('#messenger .tally-msg:has(.tally-text:text-matches("^Meet at"))');
      await a.page.click('#messenger .tally-msg:has(.tally-text:text-matches("^Meet at")) .tally-menu-button');
      await a.page.click('#messenger [role=menuitem]:text-is("Edit")');
      await a.page.fill('#messenger [data-testid=composer]', text);
      await a.page.press('#messenger [data-testid=composer]', 'Enter');
      await a.page.waitForSelector(`#messenger .tally-msg .tally-text:text-is("${text}")`);
    }
    // Bob, on a phone, opens "edited": the earlier versions, oldest first, and the text now.
    await openConversation(b, 'Rota');
    await b.page.tap('#messenger .tally-msg [data-testid=edited]');
    await b.page.waitForSelector('#messenger [data-testid=versions] .tally-version:has-text("Meet at 9")');
    const versions = await b.page.evaluate(() => [...document.querySelector('#messenger').shadowRoot.querySelectorAll('[data-testid=versions] .tally-version .tally-text')].map((v) => v.textContent));
    assert.deepEqual(versions, ['Meet at 9', 'Meet at 10', 'Meet at 10:30']);
    await b.page.keyboard.press('Escape');
    await b.page.waitForSelector('#messenger [data-testid=versions]', { state: 'detached' });
    // A long press opens the menu; on a phone "React…" opens the full picker.
    await longPress(b.page, '#messenger .tally-msg .tally-bubble');
    await b.page.waitForSelector('#messenger [data-testid=react-item]', { state: 'visible' });
    assert.equal(await b.page.$eval('#messenger .tally-quick-reactions', (q) => getComputedStyle(q).display), 'none');
    await b.page.tap('#messenger [data-testid=react-item]');
    await b.page.waitForSelector('#messenger [data-testid=emoji-picker]');
    await b.page.tap('#messenger [data-testid=emoji-picker] .tally-emoji >> nth=0');
    await a.page.waitForSelector('#messenger .tally-reaction[data-count="1"]');
    // The owner's switch: with @here off, her picker offers it no more.
    await a.page.click('#messenger [aria-label="Group settings"]');
    // (The box follows the relay's event: it shows unchecked once the switch is logged.)
    await a.page.click('#messenger [data-testid=everyone-mentions]');
    await a.page.waitForSelector('#messenger [data-testid=everyone-mentions]:not(:checked)');
    await a.page.keyboard.press('Escape');
    await a.page.fill('#messenger [data-testid=composer]', '');
    await a.page.type('#messenger [data-testid=composer]', '@');
    await a.page.waitForSelector('#messenger [data-testid=mention-list] [role=option]:has-text("Bob")');
    assert.equal(await a.page.$('#messenger [data-testid=mention-list] [role=option]:has-text("@here")'), null);
  } finally {
    await relay.stop();
  }
});
