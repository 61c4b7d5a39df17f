//! The widget's components. Each reads the chatStore from context.

pub mod composer;
pub mod conversation;
pub mod dialogs;
pub mod icons;
pub mod launcher;
pub mod list;
pub mod panel;
pub mod search;
pub mod switcher;
pub mod thread;

use yew::prelude::*;

use crate::chat::Chat;
use crate::state::Interest;

/// The chat context (the root always provides it), for a component that shows counts or
/// lists: it renders again when any conversation changes (not when someone types).
#[hook]
pub fn use_chat() -> Chat {
    use_chat_for(Interest::Counts)
}

/// The chat context, for a component that renders again only on changes that touch
/// `interest` (see `Changed::touches`); it may change from one render to the next.
#[hook]
pub fn use_chat_for(interest: Interest) -> Chat {
    let chat = use_context::<Chat>().expect("components live inside <App>");
    let update = use_force_update();
    // Watching from the first render on (an effect would run later, and miss what changed
    // in between).
    let watch = {
        let chat = chat.clone();
        use_memo((), move |_| {
            chat.watch(interest, Callback::from(move |()| update.force_update()))
        })
    };
    watch.interest.set(interest);
    {
        let (chat, watch) = (chat.clone(), watch.clone());
        use_effect_with((), move |_| move || chat.unwatch(&watch));
    }
    chat
}

/// Moves focus into `node` when it mounts (to the first element matching the first of `first`
/// that matches any) and back to what had it when it unmounts, as a dialog does for keyboard
/// users.
#[hook]
pub fn use_focus_inside(node: NodeRef, first: &'static [&'static str]) {
    use wasm_bindgen::JsCast;
    use_effect_with((), move |_| {
        let before = crate::util::active_element();
        let target = node.cast::<web_sys::Element>().and_then(|el| {
            first
                .iter()
                .find_map(|selector| el.query_selector(selector).ok().flatten())
        });
        if let Some(target) = target.and_then(|t| t.dyn_into::<web_sys::HtmlElement>().ok()) {
            let _ = target.focus();
        }
        move || {
            if let Some(b) = before.and_then(|b| b.dyn_into::<web_sys::HtmlElement>().ok())
                && b.is_connected()
            {
                let _ = b.focus();
            }
        }
    });
}
