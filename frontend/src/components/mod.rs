//! The widget's components. Each reads the chatStore from context.

pub mod composer;
pub mod conversation;
pub mod dialogs;
pub mod icons;
pub mod launcher;
pub mod list;
pub mod panel;
pub mod search;

use yew::prelude::*;

use crate::chat::Chat;

/// The chat context (the root always provides it).
#[hook]
pub fn use_chat() -> Chat {
    use_context::<Chat>().expect("components live inside <App>")
}
