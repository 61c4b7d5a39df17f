//! Inline SVG icons (emoji glyphs are missing on machines without an emoji font).

use yew::prelude::*;

fn icon(path: &'static str) -> Html {
    html! {
        <svg class="tally-icon" viewBox="0 0 24 24" width="18" height="18" aria-hidden="true" focusable="false">
            <path fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" d={path} />
        </svg>
    }
}

/// A bell (notifications on).
pub fn bell() -> Html {
    icon("M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9M13.7 21a2 2 0 0 1-3.4 0")
}

/// A struck-through bell (muted).
pub fn bell_off() -> Html {
    icon(
        "M13.7 21a2 2 0 0 1-3.4 0M18.6 13A17.9 17.9 0 0 1 18 8M6.3 6.3A5.9 5.9 0 0 0 6 8c0 7-3 9-3 9h14M18 8a6 6 0 0 0-9.3-5M1 1l22 22",
    )
}

/// A paperclip (attachments).
pub fn paperclip() -> Html {
    icon("M21.4 11.1l-9.2 9.2a6 6 0 0 1-8.5-8.5l9.2-9.2a4 4 0 0 1 5.7 5.7l-9.2 9.2a2 2 0 0 1-2.8-2.8l8.5-8.5")
}

/// A magnifying glass (search).
pub fn search() -> Html {
    icon("M11 18a7 7 0 1 0 0-14 7 7 0 0 0 0 14zM21 21l-4.35-4.35")
}

/// An icon that points in the reading direction: mirrored in a right-to-left page.
fn directional(path: &'static str) -> Html {
    html! {
        <svg class="tally-icon tally-flip" viewBox="0 0 24 24" width="18" height="18" aria-hidden="true" focusable="false">
            <path fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" d={path} />
        </svg>
    }
}

/// Two check marks (mark all as read).
pub fn check_all() -> Html {
    icon("M2 12l5 5L18 6M10 16l1 1L22 6")
}

/// One check mark (mark as read).
pub fn check() -> Html {
    icon("M4 12l5 5L20 6")
}

/// A pencil on a page (new conversation).
pub fn compose() -> Html {
    icon("M12 20h9M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4z")
}

/// A cross (close).
pub fn close() -> Html {
    icon("M18 6L6 18M6 6l12 12")
}

/// An arrow pointing back (to the start of the line: left, or right in a right-to-left page).
pub fn back() -> Html {
    directional("M19 12H5M12 19l-7-7 7-7")
}

/// A paper plane pointing forward (send).
pub fn send() -> Html {
    directional("M4 12l16-8-6 16-2-7zM12 13l8-9")
}

/// Three dots (more actions).
pub fn more() -> Html {
    icon("M5 12h.01M12 12h.01M19 12h.01")
}

/// A gear (settings).
pub fn gear() -> Html {
    icon(
        "M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6zM19.4 15a1.7 1.7 0 0 0 .3 1.8l.1.1a2 2 0 1 1-2.8 2.8l-.1-.1a1.7 1.7 0 0 0-1.8-.3 1.7 1.7 0 0 0-1 1.5V21a2 2 0 1 1-4 0v-.1a1.7 1.7 0 0 0-1.1-1.5 1.7 1.7 0 0 0-1.8.3l-.1.1a2 2 0 1 1-2.8-2.8l.1-.1a1.7 1.7 0 0 0 .3-1.8 1.7 1.7 0 0 0-1.5-1H3a2 2 0 1 1 0-4h.1a1.7 1.7 0 0 0 1.5-1.1 1.7 1.7 0 0 0-.3-1.8l-.1-.1a2 2 0 1 1 2.8-2.8l.1.1a1.7 1.7 0 0 0 1.8.3H9a1.7 1.7 0 0 0 1-1.5V3a2 2 0 1 1 4 0v.1a1.7 1.7 0 0 0 1 1.5 1.7 1.7 0 0 0 1.8-.3l.1-.1a2 2 0 1 1 2.8 2.8l-.1.1a1.7 1.7 0 0 0-.3 1.8V9a1.7 1.7 0 0 0 1.5 1H21a2 2 0 1 1 0 4h-.1a1.7 1.7 0 0 0-1.5 1z",
    )
}

/// Two speech bubbles (a thread).
pub fn thread() -> Html {
    icon("M21 12a7 7 0 0 1-7 7H8l-4 3v-5a7 7 0 0 1 3-5.7M14 5h0a7 7 0 0 1 7 7")
}
