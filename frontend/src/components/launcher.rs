//! The launcher: a round button in the corner with the total unread badge and a mention marker.

use yew::prelude::*;

use super::use_chat;
use crate::i18n::{t, tn};
use crate::state::Action;

/// The launcher button.
#[function_component(Launcher)]
pub fn launcher() -> Html {
    let chat = use_chat();
    let (total, open) = {
        let state = chat.state();
        // Signed out or deactivated: the counts are not live any more, so none are shown.
        let stale = matches!(&state.connection, crate::state::ConnectionState::Offline(why)
            if why == "status.signed_out" || why == "status.deactivated");
        let total = if stale {
            tally_shared::Totals::default()
        } else {
            state.store.total()
        };
        (total, state.panel_open)
    };
    let onclick = chat.callback(|_| Action::TogglePanel);
    let label = match total.unread {
        0 => t("launcher.label_none"),
        n => tn("launcher.label", u64::from(n)),
    };
    let locale = crate::i18n::Locale::current();
    html! {
        <>
            <button class="tally-launcher" aria-label={label} aria-expanded={open.to_string()} {onclick}>
                <svg viewBox="0 0 24 24" aria-hidden="true" width="26" height="26">
                    <path fill="currentColor" d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/>
                </svg>
                if total.unread > 0 {
                    <span class="tally-badge tally-total" data-testid="total-badge" data-count={total.unread.to_string()}>
                        { if total.unread > 99 { format!("{}+", locale.number(99)) } else { locale.number(u64::from(total.unread)) } }
                    </span>
                }
                if total.mentions > 0 {
                    <span class="tally-mention-marker" data-testid="mention-marker" title={t("launcher.mentioned")}>{"@"}</span>
                }
            </button>
            <span class="tally-sr-only" aria-live="polite">
                { if total.unread == 0 { t("launcher.announce_none") } else { tn("launcher.announce", u64::from(total.unread)) } }
            </span>
        </>
    }
}
