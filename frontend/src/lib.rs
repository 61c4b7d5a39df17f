//! Tally's messenger widget: a Yew app whose `chatStore` is the shared reducer.
//!
//! - [`state`]: the chatStore — `tally_shared::ChatStore` and the widget's actions on it.
//! - [`chat`]: the context components read — the state held in place, `dispatch`, and the path
//!   frames take to the socket.
//! - [`connection`]: the WebSocket — hello/resume, backoff with jitter, outbox resend.
//! - [`inbox`]: received frames applied in batches and time slices, rendered once per batch.
//! - [`api`]: HTTP — history pages, uploads with progress, attachment downloads.
//! - [`options`]: what a host page passes to `mount(element, options)`.
//! - [`i18n`]: the host's language: message catalogs, CLDR plurals and formats from `Intl`.
//! - [`app`]: the root component: the core, the connection, the context, the page title.
//! - [`components`]: launcher, conversation list, conversation, composer, dialogs.
//! - [`drafts`]: what was typed and not sent, per conversation, per staff member.
//! - [`demo`]: the demo host page's sign-in picker (with `tally-relay serve --demo`).
//!
//! Components read every count from the store; none computes one.

pub mod api;
pub mod app;
pub mod chat;
pub mod components;
pub mod connection;
pub mod demo;
pub mod drafts;
pub mod i18n;
pub mod inbox;
pub mod notify;
pub mod options;
pub mod picker;
pub mod quiet;
pub mod shortcuts;
pub mod state;
pub mod util;

use std::rc::Rc;

use wasm_bindgen::prelude::*;

/// The widget's stylesheet: adopted by its shadow root, so it styles nothing of the host's page
/// and the host's styles reach nothing of the widget but what is inherited (and the widget's
/// root resets that) and the `--tally-*` custom properties meant for theming.
pub const STYLE: &str = include_str!("../style.css");

/// A mounted widget, as the host page holds it.
#[wasm_bindgen]
pub struct Widget {
    app: Option<yew::AppHandle<app::App>>,
    shadow: web_sys::ShadowRoot,
    storage_key: String,
    handle: chat::Handle,
}

#[wasm_bindgen]
impl Widget {
    /// Removes the widget from the page (its connection closes with it).
    pub fn unmount(&mut self) {
        if let Some(app) = self.app.take() {
            app.destroy();
        }
        while let Some(child) = self.shadow.first_child() {
            let _ = self.shadow.remove_child(&child);
        }
    }

    /// Opens the panel: on a conversation (`{conversation: 12}`), on the direct conversation
    /// with someone, made if there is none yet (`{direct: "bob"}`: a host's "message this
    /// person" button), or on the list (no argument).
    pub fn open(&self, target: JsValue) -> Result<(), JsValue> {
        let get = |k: &str| {
            js_sys::Reflect::get(&target, &k.into())
                .ok()
                .filter(|v| !v.is_undefined())
        };
        let action = if target.is_undefined() || target.is_null() {
            state::Action::OpenPanel(None)
        } else if let Some(c) = get("conversation").and_then(|v| v.as_f64()) {
            state::Action::Show(tally_shared::ConversationId(c as u64))
        } else if let Some(s) = get("direct").and_then(|v| v.as_string()) {
            let staff = tally_shared::StaffId::new(s).map_err(|e| JsValue::from_str(&e.to_string()))?;
            state::Action::OpenDirect(staff)
        } else {
            return Err(JsValue::from_str(
                "open({conversation: ID}) or open({direct: STAFF_ID})",
            ));
        };
        self.handle.dispatch(action);
        Ok(())
    }

    /// Closes the panel.
    pub fn close(&self) {
        self.handle.dispatch(state::Action::ClosePanel);
    }

    /// Calls `callback({unread, mentions})` with the totals now (once known) and each time they
    /// change. The same goes out as a `tally:unread` event on the element mounted into.
    #[wasm_bindgen(js_name = onUnread)]
    pub fn on_unread(&self, callback: js_sys::Function) {
        self.handle.on_unread(callback);
    }

    /// The staff member signs out of the work app: removes the widget and what this browser
    /// keeps for them (unsent messages, drafts).
    #[wasm_bindgen(js_name = signOut)]
    pub fn sign_out(&mut self) {
        self.unmount();
        if let Ok(Some(storage)) = gloo::utils::window().local_storage() {
            let prefix = format!("{}.drafts.", self.storage_key);
            let keys: Vec<String> = (0..storage.length().unwrap_or(0))
                .filter_map(|i| storage.key(i).ok().flatten())
                .filter(|k| *k == self.storage_key || k.starts_with(&prefix))
                .collect();
            for k in keys {
                let _ = storage.remove_item(&k);
            }
        }
    }
}

/// Mounts the widget into `element`, inside a shadow root of its own. `options`: `{ relayUrl,
/// relayUrls, token, getToken, theme, titleBadge, open, locale, strings }` (all optional; see
/// the README).
#[wasm_bindgen]
pub fn mount(element: web_sys::Element, options: JsValue) -> Result<Widget, JsValue> {
    let options = options::MountOptions::from_js(options)?;
    // Under way while the widget renders for the first time (and its effects connect).
    options.start_early();
    let storage_key = options.storage_key();
    let handle = chat::Handle::default();
    let candidates = i18n::page_candidates(options.locale.as_deref());
    i18n::Locale::new(candidates.iter().map(String::as_str), &options.strings).install();
    let shadow = match element.shadow_root() {
        Some(shadow) => shadow,
        None => element.attach_shadow(&web_sys::ShadowRootInit::new(web_sys::ShadowRootMode::Open))?,
    };
    while let Some(child) = shadow.first_child() {
        shadow.remove_child(&child)?;
    }
    let sheet = web_sys::CssStyleSheet::new()?;
    sheet.replace_sync(STYLE)?;
    shadow.set_adopted_style_sheets(&js_sys::Array::of1(&sheet));
    let root = gloo::utils::document().create_element("div")?;
    shadow.append_child(&root)?;
    let app = yew::Renderer::<app::App>::with_root_and_props(
        root,
        app::AppProps {
            options: Rc::new(options),
            harness: None,
            handle: Some(handle.clone()),
        },
    )
    .render();
    Ok(Widget {
        app: Some(app),
        shadow,
        storage_key,
        handle,
    })
}

/// On the demo host page (an element with `data-tally-demo`), shows the sign-in picker.
#[wasm_bindgen(start)]
pub fn start() {
    let Some(root) = gloo::utils::document()
        .query_selector("[data-tally-demo]")
        .ok()
        .flatten()
    else {
        return;
    };
    yew::Renderer::<demo::DemoHost>::with_root(root).render();
}
