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
