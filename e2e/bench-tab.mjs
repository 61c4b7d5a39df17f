// Benchmark (not a test): how fast a tab keeps up with messages, and how flat that is in what
// it already holds. The real release relay and widget in headless Chromium; Alice's other
// device blasts messages to Bob as fast as the relay takes them; Bob's tab, panel closed, is
// timed until its own count (the launcher's badge) is exact. Then, with a conversation open,
// what a typing frame and a message to another conversation cost (docs/benchmarks.md, "With a
// conversation open"). Main-thread work comes from the DevTools protocol (TaskDuration), long
// tasks from the Long Tasks API.
//
//   make frontend relay && node e2e/bench-tab.mjs
import { Relay, launch, tab, startDirect, say, blast, pump, openConversation } from './helpers.mjs';

const browser = await launch();
const relay = await new Relay(['alice', 'bob', 'carol'], { args: ['--writes-per-sec', '1e9', '--write-burst', '1e9', '--typing-per-sec', '1e9', '--typing-burst', '1e9'] }).start();

/** Main-thread seconds so far: all tasks, and of those script, style and layout. */
async function busySeconds(cdp) {
  const { metrics } = await cdp.send('Performance.getMetrics');
  const get = (name) => metrics.find((m) => m.name === name).value;
  return { task: get('TaskDuration'), script: get('ScriptDuration'), style: get('RecalcStyleDuration'), layout: get('LayoutDuration') };
}

async function expectUnread(b, n, timeout = 120_000) {
  // The badge's number, not the launcher's label: that one is formatted for the locale ("1,001").
  await b.page.waitForFunction((n) => $t('[data-testid=total-badge]')?.dataset.count === String(n), n, { timeout, polling: 5 });
}

try {
  const a = await tab(browser, relay, 'alice');
  const b = await tab(browser, relay, 'bob');
  await startDirect(a, 'Bob');
  await say(a, 'hello');
  const dm = Number(await a.page.getAttribute('#messenger .tally-conversation', 'data-conversation'));
  // The blasts come from a page without the widget: Alice's own tab, with the conversation
  // open, would render every message it sends and slow the sender down.
  const sender = { page: await browser.newPage(), staff: 'alice' };
  await sender.page.goto(relay.url + '/healthz');
  await b.page.bringToFront();
  await expectUnread(b, 1);
  const cdp = await b.context.newCDPSession(b.page);
  await cdp.send('Performance.enable');
  await b.page.evaluate(() => {
    window.longTasks = [];
    new PerformanceObserver((l) => window.longTasks.push(...l.getEntries().map((e) => e.duration))).observe({ type: 'longtask' });
  });
  let unread = 1;
  const rows = [];
  const burst = async (n, label) => {
    await b.page.evaluate(() => { window.longTasks = []; });
    const busy0 = await busySeconds(cdp);
    const ackedIn = await blast(sender, relay, dm, n, `${label}-${unread}`);
    const acked = Date.now();
    unread += n;
    await expectUnread(b, unread);
    const lag = Date.now() - acked;
    const busy1 = await busySeconds(cdp);
    const perMessage = (k) => +((busy1[k] - busy0[k]) * 1000 / n).toFixed(3);
    const longTasks = await b.page.evaluate(() => window.longTasks);
    const row = { label, loadedBefore: unread - n, messages: n, ackedInMs: Math.round(ackedIn), countExactAfterLastAckMs: lag, mainThreadMsPerMessage: perMessage('task'), scriptMs: perMessage('script'), styleMs: perMessage('style'), layoutMs: perMessage('layout'), longestTaskMs: Math.round(Math.max(0, ...longTasks)) };
    rows.push(row);
    console.log(JSON.stringify(row));
  };
  await burst(1000, 'at-100');
  await burst(14000, 'fill');
  await burst(8000, 'at-15000');

  // Sleep and wake: Bob's tab loses the network while 10,000 messages arrive, then resumes.
  await b.context.setOffline(true);
  await b.page.waitForSelector('#messenger .tally-launcher');
  await blast(sender, relay, dm, 10000, 'asleep');
  unread += 10000;
  const woke = Date.now();
  await b.context.setOffline(false);
  await expectUnread(b, unread);
  const resume = { label: 'resume after 10,000 events', badgeExactMs: Date.now() - woke };
  rows.push(resume);
  console.log(JSON.stringify(resume));

  // A conversation open, holding every message above: what a frame that changes nothing on
  // screen costs (someone typing there), and one for a conversation that is not open (Carol's
  // messages, each a `message` event and an `unread_updated`). Each phase ends with one
  // message from Carol, so the badge says when the tab has handled everything before it.
  const carol = { page: sender.page, staff: 'carol' };
  const other = (await pump(carol, relay, 1, { type: 'create_direct', staff: 'bob' })).ack.conversation;
  // Caught up on another device first, so the conversation opens at its newest messages.
  await pump({ page: sender.page, staff: 'bob' }, relay, 1, { type: 'mark_conversation_read', conversation: dm });
  await b.page.waitForFunction(() => !$t('[data-testid=total-badge]'), null, { timeout: 120_000 });
  await openConversation(b, 'Alice');
  let carolSent = 0;
  // `shown`: a text that is on screen once the tab has handled the phase (instead of the end
  // message from Carol).
  const opened = async (label, n, send, shown) => {
    await new Promise((r) => setTimeout(r, 1000));
    await b.page.evaluate(() => { window.longTasks = []; });
    const busy0 = await busySeconds(cdp);
    await send();
    if (shown) {
      await b.page.waitForFunction((text) => $$t('.tally-msg .tally-text').some((e) => e.textContent === text), shown, { timeout: 120_000, polling: 5 });
    } else {
      await blast(carol, relay, other, 1, `end-${carolSent}`);
      carolSent += 1;
      await b.page.waitForFunction((n) => $t('[data-testid=total-badge]')?.dataset.count === String(n), carolSent, { timeout: 120_000, polling: 5 });
    }
    const busy1 = await busySeconds(cdp);
    const perFrame = (k) => +((busy1[k] - busy0[k]) * 1000 / n).toFixed(3);
    const longTasks = await b.page.evaluate(() => window.longTasks);
    const row = { label, held: unread, frames: n, mainThreadMsPerFrame: perFrame('task'), scriptMs: perFrame('script'), styleMs: perFrame('style'), layoutMs: perFrame('layout'), longestTaskMs: Math.round(Math.max(0, ...longTasks)) };
    rows.push(row);
    console.log(JSON.stringify(row));
  };
  // One at a time, 20 ms apart: each in its own task and render, as from people typing.
  await opened('open: typing frames, one at a time', 300, () => pump(sender, relay, 300, { type: 'typing', conversation: dm }, { paceMs: 20 }));
  await opened('open: messages to a closed conversation, one at a time', 300, async () => {
    await pump(carol, relay, 300, { type: 'send_message', conversation: other, prefix: 'paced' }, { paceMs: 20 });
    carolSent += 300;
  });
  // A message to the conversation that is open (it renders its rows again; read at once).
  await opened('open: messages to the open conversation, one at a time', 300, () =>
    pump(sender, relay, 300, { type: 'send_message', conversation: dm, prefix: 'here' }, { paceMs: 20 }), 'here 300');
  // As fast as the relay sends them (many frames per task, renders coalesced).
  await opened('open: typing frames, a burst', 2000, () => pump(sender, relay, 2000, { type: 'typing', conversation: dm }));
  await opened('open: messages to a closed conversation, a burst', 2000, async () => {
    await blast(carol, relay, other, 2000, 'closed');
    carolSent += 2000;
  });
} finally {
  await relay.stop();
  await browser.close();
}
