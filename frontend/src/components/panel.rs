//! The panel: a header (connection state, mark all read, new conversation) over either the
//! conversation list or the open conversation.

use tally_shared::Request;
use yew::prelude::*;

use super::conversation::ConversationView;
use super::dialogs::NewConversation;
use super::list::ConversationList;
use super::use_chat;
use crate::state::{Action, ConnectionState};

/// The panel.
#[function_component(Panel)]
pub fn panel() -> Html {
    let chat = use_chat();
    let s = chat.state();
    let new_open = use_state(|| false);
    let status = match &s.connection {
        ConnectionState::Connected => html! {},
        ConnectionState::Connecting => {
            html! { <div class="tally-status" role="status">{"Connecting…"}</div> }
        }
        ConnectionState::Reconnecting { .. } => {
            html! { <div class="tally-status tally-status-warn" role="status" data-testid="reconnecting">{"Reconnecting…"}</div> }
        }
        ConnectionState::Offline(why) => {
            html! { <div class="tally-status tally-status-error" role="alert">{why.clone()}</div> }
        }
    };
    let dispatch = |a: fn() -> Action| chat.callback(move |_: MouseEvent| a());
    let toggle_new = {
        let new_open = new_open.clone();
        Callback::from(move |_| new_open.set(!*new_open))
    };
    let close_new = {
        let new_open = new_open.clone();
        Callback::from(move |_| new_open.set(false))
    };
    let onkeydown = {
        let chat = chat.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Escape" {
                chat.dispatch(Action::TogglePanel);
            }
        })
    };
    let total = s.store.total();
    html! {
        <section class="tally-panel" role="dialog" aria-label="Messages" {onkeydown}>
            <header class="tally-header">
                <h2>{"Messages"}</h2>
                <div class="tally-header-actions">
                    <button class="tally-icon-button" title="Mark all as read" aria-label="Mark all as read"
                        disabled={total.unread == 0 && total.mentions == 0}
                        onclick={dispatch(|| Action::Request(Request::MarkAllRead))}>{"✓✓"}</button>
                    <button class="tally-icon-button" title="New conversation" aria-label="New conversation"
                        onclick={toggle_new}>{"✎"}</button>
                    <button class="tally-icon-button" title="Close" aria-label="Close messages"
                        onclick={dispatch(|| Action::TogglePanel)}>{"✕"}</button>
                </div>
            </header>
            { status }
            if *new_open { <NewConversation on_close={close_new} /> }
            if !s.store.is_ready() {
                <div class="tally-empty">{"Loading…"}</div>
            } else if let Some(id) = s.open {
                <ConversationView key={id.0.to_string()} {id} />
            } else {
                <ConversationList />
            }
        </section>
    }
}
