//! The options a host page passes to `mount(element, options)`, read with serde-wasm-bindgen.

use serde::Deserialize;
use wasm_bindgen::{JsCast, JsValue};

/// Widget options.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct MountOptions {
    /// The relay's base URL (`https://chat.example.com`); the page's own origin when absent.
    pub relay_url: Option<String>,
    /// The nodes of a cluster, for a page that does not reach them through one load balancer
    /// (`["https://chat-a.example.com", "https://chat-b.example.com"]`): the widget starts at
    /// one chosen at random and moves to the next each time it has to reconnect, resuming
    /// from where it was. Takes the place of `relayUrl` when given.
    pub relay_urls: Vec<String>,
    /// A token for the signed-in staff member.
    pub token: Option<String>,
    /// `"light"`, `"dark"` or `"auto"` (follows `prefers-color-scheme`, the default).
    pub theme: Option<String>,
    /// Show the total in the page title, like `(3) Work app` (default true).
    pub title_badge: Option<bool>,
    /// Start with the panel open.
    pub open: Option<bool>,
    /// Where the outbox and drafts are kept (default `tally.outbox`, and the drafts under
    /// the same key with `.drafts.STAFF` added); tests use their own.
    pub storage_key: Option<String>,
    /// The widget's language (`"de"`, `"ar-EG"`); by default the page's `lang`, then the
    /// browser's languages, then English. Catalogs: English, German, French, Spanish,
    /// Japanese, Arabic.
    pub locale: Option<String>,
    /// Texts that replace the catalog's, by key (`{"panel.title": "Chat"}`; the keys are those
    /// of `frontend/locales/en.json`).
    pub strings: std::collections::HashMap<String, String>,
    /// A function returning a fresh token (or a promise of one), called on every connect when
    /// given. Not deserialized: read from the JS object by [`MountOptions::from_js`].
    #[serde(skip)]
    pub get_token: Option<TokenSource>,
    /// What [`MountOptions::start_early`] set going before the first render: taken by the
    /// first connection attempt.
    #[serde(skip)]
    pub early: Early,
}

/// A socket already opening and a token already asked for, when the widget mounts.
#[derive(Clone, Default)]
pub struct Early(
    std::rc::Rc<std::cell::RefCell<(Option<gloo::net::websocket::futures::WebSocket>, Option<JsValue>)>>,
);

impl Early {
    /// The socket opened at mount, once.
    pub fn take_socket(&self) -> Option<gloo::net::websocket::futures::WebSocket> {
        self.0.borrow_mut().0.take()
    }

    fn take_token(&self) -> Option<JsValue> {
        self.0.borrow_mut().1.take()
    }
}

impl std::fmt::Debug for Early {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Early")
    }
}

impl PartialEq for Early {
    fn eq(&self, other: &Self) -> bool {
        std::rc::Rc::ptr_eq(&self.0, &other.0)
    }
}

thread_local! {
    /// Which of the relays the widget uses now (chosen at random at first).
    static CURRENT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The `index`-th relay of a list, going round.
pub fn pick(relays: &[String], index: usize) -> &str {
    &relays[index % relays.len()]
}

/// A JS function that yields tokens.
#[derive(Clone, Debug)]
pub struct TokenSource(pub js_sys::Function);

impl PartialEq for TokenSource {
    fn eq(&self, other: &Self) -> bool {
        JsValue::from(&self.0) == JsValue::from(&other.0)
    }
}

impl MountOptions {
    /// Reads the options object a host page passed.
    pub fn from_js(value: JsValue) -> Result<MountOptions, JsValue> {
        if value.is_undefined() || value.is_null() {
            return Ok(MountOptions::default());
        }
        let mut options: MountOptions =
            serde_wasm_bindgen::from_value(value.clone()).map_err(JsValue::from)?;
        let f = js_sys::Reflect::get(&value, &JsValue::from_str("getToken")).unwrap_or(JsValue::UNDEFINED);
        if let Some(f) = f.dyn_ref::<js_sys::Function>() {
            options.get_token = Some(TokenSource(f.clone()));
        }
        Ok(options)
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        let base = self.http_base();
        let base = base
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1);
        format!("{base}/ws")
    }

    /// The base URL for HTTP calls (no trailing slash): the relay the widget uses now.
    pub fn http_base(&self) -> String {
        let relays = self.relays();
        let index = CURRENT.with(|c| {
            let i = c
                .get()
                .unwrap_or_else(|| (js_sys::Math::random() * relays.len() as f64) as usize);
            c.set(Some(i));
            i
        });
        pick(&relays, index).to_string()
    }

    /// After a connection failed or ended: the next relay of `relayUrls` (with one relay,
    /// the same one).
    pub fn next_relay(&self) {
        CURRENT.with(|c| c.set(Some(c.get().map_or(0, |i| i.wrapping_add(1)))));
    }

    /// The relays to choose from (never empty: the page's own origin at least). A path
    /// (`/chat`: the relay behind the host's own proxy) is on the page's origin.
    fn relays(&self) -> Vec<String> {
        let origin = || gloo::utils::window().location().origin().unwrap_or_default();
        let absolute = |u: &str| {
            let u = u.trim_end_matches('/');
            if u.starts_with('/') {
                format!("{}{u}", origin())
            } else {
                u.to_string()
            }
        };
        let listed: Vec<String> = self
            .relay_urls
            .iter()
            .map(|u| absolute(u))
            .filter(|u| !u.is_empty())
            .collect();
        if !listed.is_empty() {
            return listed;
        }
        vec![match &self.relay_url {
            Some(url) => absolute(url),
            None => origin(),
        }]
    }

    /// The outbox's localStorage key.
    pub fn storage_key(&self) -> String {
        self.storage_key.clone().unwrap_or_else(|| "tally.outbox".into())
    }

    /// Opens the socket and asks `getToken()` for a token at once, so both are under way
    /// while the widget renders for the first time and the first connection attempt starts
    /// from them (a page load shows the badge that much sooner).
    pub fn start_early(&self) {
        if self.token.is_none() && self.get_token.is_none() {
            // Nobody to sign in as: the widget says so and never connects.
            return;
        }
        let token = match &self.get_token {
            Some(TokenSource(f)) => f.call0(&JsValue::NULL).ok(),
            None => None,
        };
        let socket = gloo::net::websocket::futures::WebSocket::open(&self.ws_url()).ok();
        *self.early.0.borrow_mut() = (socket, token);
    }

    /// A token: from `getToken()` when given (the one asked for at mount, the first time),
    /// else the fixed one.
    pub async fn token(&self) -> Option<String> {
        if let Some(TokenSource(f)) = &self.get_token {
            let out = match self.early.take_token() {
                Some(early) => early,
                None => f.call0(&JsValue::NULL).ok()?,
            };
            let out = match out.dyn_into::<js_sys::Promise>() {
                Ok(p) => wasm_bindgen_futures::JsFuture::from(p).await.ok()?,
                Err(v) => v,
            };
            return out.as_string();
        }
        self.token.clone()
    }
}
