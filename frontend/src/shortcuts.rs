//! Keyboard shortcuts, heard on the whole page: Ctrl/Cmd+K opens the quick switcher,
//! Alt+↑/↓ moves to the previous or next conversation, Alt+Shift+↑/↓ to the previous or next
//! one with something unread, Ctrl/Cmd+/ (or `?` inside the widget) shows them all. Escape
//! (read and close) is the conversation view's own.
//!
//! The widget is a guest: no shortcut fires while one of the host page's own text fields,
//! selects or editable areas has focus, and a key the widget's own controls already handled
//! (`preventDefault`) is left alone.

use wasm_bindgen::JsCast;
use web_sys::{Element, KeyboardEvent};

use crate::state::Action;

/// Whether `el` takes typing: a text field, a select, or an editable area.
fn takes_typing(el: &Element) -> bool {
    match el.tag_name().to_ascii_lowercase().as_str() {
        "textarea" | "select" => true,
        "input" => !matches!(
            el.get_attribute("type")
                .unwrap_or_default()
                .to_ascii_lowercase()
                .as_str(),
            "checkbox" | "radio" | "button" | "submit" | "reset" | "range" | "color" | "file"
        ),
        _ => el
            .dyn_ref::<web_sys::HtmlElement>()
            .is_some_and(|h| h.is_content_editable()),
    }
}

/// Whether an event's path passes through a widget's root (`.tally`).
pub fn in_a_widget(path: &js_sys::Array) -> bool {
    path.iter()
        .filter_map(|n| n.dyn_into::<Element>().ok())
        .any(|el| {
            el.get_attribute("class")
                .is_some_and(|c| c.split_whitespace().any(|c| c == "tally"))
        })
}

/// What a key pressed on the page means for the widget. `inside`: the key came from within
/// the widget (its path passes through the widget's root); `panel_open`: the panel shows.
pub fn action_for(e: &KeyboardEvent, inside: bool, panel_open: bool) -> Option<Action> {
    let key = e.key();
    let arrow = key == "ArrowUp" || key == "ArrowDown";
    if e.default_prevented() || e.is_composing() || (e.repeat() && !arrow) {
        return None;
    }
    let origin = e.composed_path().get(0).dyn_into::<Element>().ok();
    let typing = origin.as_ref().is_some_and(takes_typing);
    if typing && !inside {
        return None;
    }
    let command = e.ctrl_key() || e.meta_key();
    match key.as_str() {
        "k" | "K" if command && !e.alt_key() && !e.shift_key() => Some(Action::Switcher(true)),
        "/" if command && !e.alt_key() => Some(Action::Shortcuts(true)),
        "?" if inside && !typing && !command && !e.alt_key() => Some(Action::Shortcuts(true)),
        "ArrowUp" | "ArrowDown" if e.alt_key() && !command && (inside || panel_open) => Some(Action::Step {
            step: if key == "ArrowDown" { 1 } else { -1 },
            unread: e.shift_key(),
        }),
        _ => None,
    }
}

/// The shortcuts, as (keys, what they do) catalog keys, for the help dialog.
pub const LIST: &[(&str, &str)] = &[
    ("shortcuts.key_switcher", "shortcuts.switcher"),
    ("shortcuts.key_next", "shortcuts.next"),
    ("shortcuts.key_next_unread", "shortcuts.next_unread"),
    ("shortcuts.key_escape", "shortcuts.escape"),
    ("shortcuts.key_send", "shortcuts.send"),
    ("shortcuts.key_newline", "shortcuts.newline"),
    ("shortcuts.key_mention", "shortcuts.mention"),
    ("shortcuts.key_help", "shortcuts.help"),
];
