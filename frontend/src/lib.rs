//! Tally's messenger widget: a Yew app whose `chatStore` is the shared reducer.
//!
//! - [`state`]: the chatStore — `tally_shared::ChatStore` and the widget's actions on it.
//! - [`chat`]: the context components read — the state held in place, `dispatch`, and the path
//!   frames take to the socket.
//! - [`connection`]: the WebSocket — hello/resume, backoff with jitter, outbox resend.
//! - [`inbox`]: received frames applied in batches and time slices, rendered once per batch.
//! - [`api`]: HTTP — history pages, uploads with progress, attachment downloads.
//! - [`options`]: what a host page passes to `mount(element, options)`.
//! - [`app`]: the root component: the core, the connection, the context, the page title.
//! - [`components`]: launcher, conversation list, conversation, composer, dialogs.
//! - [`demo`]: the demo host page's sign-in picker (with `tally-relay serve --demo`).
//!
//! Components read every count from the store; none computes one.

pub mod api;
pub mod app;
pub mod chat;
pub mod components;
pub mod connection;
pub mod demo;
pub mod inbox;
pub mod notify;
pub mod options;
pub mod state;
pub mod util;

use std::rc::Rc;

use wasm_bindgen::prelude::*;

/// Mounts the widget into `element`. `options`: `{ relayUrl, token, getToken, theme,
/// titleBadge, open }` (all optional; see the README).
#[wasm_bindgen]
pub fn mount(element: web_sys::Element, options: JsValue) -> Result<(), JsValue> {
    let options = options::MountOptions::from_js(options)?;
    yew::Renderer::<app::App>::with_root_and_props(
        element,
        app::AppProps {
            options: Rc::new(options),
            harness: None,
        },
    )
    .render();
    Ok(())
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
