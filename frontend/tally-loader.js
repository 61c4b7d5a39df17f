// Tally's loader: the widget from one <script> tag, configured by data attributes, with a queue
// for calls the page makes before the widget has loaded.
//
//   <script>window.tally=window.tally||function(){(tally.q=tally.q||[]).push(arguments)}</script>
//   <div id="tally" data-tally-token-url="/tally/token"></div>
//   <script type="module" src="https://app.example.com/chat/tally-loader.js"></script>
//
// Then, at any time: tally("open", { direct: "bob" }), tally("close"), tally("signOut"),
// tally("unmount"), tally("onUnread", ({ unread, mentions }) => …). Calls made before the widget
// has loaded wait in tally.q and run, in order, once it is mounted; afterwards `tally(…)` calls
// the widget at once, and `tally.widget` is its handle (the one mount() returns).
//
// Data attributes of the element (the first with data-tally-token-url, else a new <div> at the
// end of <body>): data-tally-token-url (required: answers the signed-in person's token as text,
// and not 2xx when nobody is), data-tally-relay-url (default: where this file was loaded from),
// data-tally-locale, data-tally-theme (light | dark | auto), data-tally-title-badge ("false" to
// leave the tab title alone).
const base = new URL('.', import.meta.url);

function element() {
  const found = document.querySelector('[data-tally-token-url]');
  if (found) return found;
  const el = document.createElement('div');
  el.id = 'tally';
  document.body.append(el);
  return el;
}

async function start() {
  const el = element();
  const d = el.dataset;
  if (!d.tallyTokenUrl) {
    console.error('tally-loader: give the element a data-tally-token-url');
  }
  const fetchToken = () =>
    fetch(d.tallyTokenUrl, { credentials: 'same-origin', headers: { Accept: 'text/plain' } }).then((r) =>
      r.ok ? r.text() : Promise.reject(new Error(`token: HTTP ${r.status}`)),
    );
  // Asked for now, while the widget's code loads; the first connection uses it.
  let early = d.tallyTokenUrl ? fetchToken() : null;
  if (early) early.catch(() => {});
  const { default: init, mount } = await import(new URL('tally-frontend.js', base).href);
  await init({ module_or_path: new URL('tally-frontend_bg.wasm', base) });
  const options = {
    relayUrl: d.tallyRelayUrl || base.href.replace(/\/$/, ''),
    getToken: () => {
      const token = early || fetchToken();
      early = null;
      return token;
    },
  };
  if (d.tallyLocale) options.locale = d.tallyLocale;
  if (d.tallyTheme) options.theme = d.tallyTheme;
  if (d.tallyTitleBadge) options.titleBadge = d.tallyTitleBadge !== 'false';
  const widget = mount(el, options);
  const call = (name, ...args) => {
    if (typeof widget[name] !== 'function') {
      console.error(`tally-loader: no method ${String(name)}`);
      return undefined;
    }
    return widget[name](...args);
  };
  const queued = (window.tally && window.tally.q) || [];
  window.tally = call;
  window.tally.widget = widget;
  for (const args of queued) call(...args);
  el.dispatchEvent(new CustomEvent('tally:ready', { bubbles: true, detail: { widget } }));
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', start, { once: true });
} else {
  start();
}
