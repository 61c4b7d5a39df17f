//! The launcher: a round button in the corner with the total unread badge and a mention marker.

use yew::prelude::*;

use super::use_chat;
use crate::state::Action;

/// The launcher button.
#[function_component(Launcher)]
pub fn launcher() -> Html {
    let chat = use_chat();
    let (total, open) = {
        let state = chat.state();
        (state.store.total(), state.panel_open)
    };
    let onclick = chat.callback(|_| Action::TogglePanel);
    let label = match total.unread {
        0 => "Messages, no unread".to_string(),
        1 => "Messages, 1 unread".to_string(),
        n => format!("Messages, {n} unread"),
    };
    html! {
        <>
            <button class="tally-launcher" aria-label={label} aria-expanded={open.to_string()} {onclick}>
                <svg viewBox="0 0 24 24" aria-hidden="true" width="26" height="26">
                    <path fill="currentColor" d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/>
                </svg>
                if total.unread > 0 {
                    <span class="tally-badge tally-total" data-testid="total-badge">
                        { if total.unread > 99 { "99+".to_string() } else { total.unread.to_string() } }
                    </span>
                }
                if total.mentions > 0 {
                    <span class="tally-mention-marker" data-testid="mention-marker" title="You were mentioned">{"@"}</span>
                }
            </button>
            <span class="tally-sr-only" aria-live="polite">
                { if total.unread == 0 { "No unread messages".to_string() } else { format!("{} unread messages", total.unread) } }
            </span>
        </>
    }
}
