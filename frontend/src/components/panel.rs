//! The panel: a header (connection state, mark all read, new conversation) over either the
//! conversation list or the open conversation.

use tally_shared::Request;
use yew::prelude::*;

use super::conversation::ConversationView;
use super::dialogs::NewConversation;
use super::use_chat;
use crate::i18n::t;
use crate::state::{Action, ConnectionState};

/// The bell's settings: desktop notifications (asking the browser's permission from this very
/// click), a sound, and mentions in muted conversations.
#[function_component(NotificationSettings)]
fn notification_settings() -> Html {
    use crate::notify::{self, Settings};
    let chat = use_chat();
    let share_reads = !chat.state().store.hides_read_state();
    let on_share_reads = chat.callback(|e: Event| {
        let checked = e.target_unchecked_into::<web_sys::HtmlInputElement>().checked();
        Action::Request(Request::SetPreferences {
            hide_read_state: !checked,
        })
    });
    let settings = use_state(Settings::load);
    let blocked = use_state(|| false);
    let save = {
        let settings = settings.clone();
        move |s: Settings| {
            s.save();
            settings.set(s);
        }
    };
    let on_enabled = {
        let (settings, blocked, save) = (settings.clone(), blocked.clone(), save.clone());
        Callback::from(move |e: Event| {
            let checked = e.target_unchecked_into::<web_sys::HtmlInputElement>().checked();
            if !checked {
                save(Settings {
                    enabled: false,
                    ..*settings
                });
                return;
            }
            let (settings, blocked, save) = (settings.clone(), blocked.clone(), save.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let granted = notify::permitted() || notify::ask().await;
                blocked.set(!granted);
                save(Settings {
                    enabled: granted,
                    ..*settings
                });
            });
        })
    };
    let toggle = |f: fn(&mut Settings, bool)| {
        let (settings, save) = (settings.clone(), save.clone());
        Callback::from(move |e: Event| {
            let mut s = *settings;
            f(
                &mut s,
                e.target_unchecked_into::<web_sys::HtmlInputElement>().checked(),
            );
            save(s);
        })
    };
    html! {
        <div class="tally-notify-settings" data-testid="notification-settings">
            <label><input type="checkbox" checked={settings.enabled} onchange={on_enabled} data-testid="notify-enabled" />
                <span>{ t("settings.desktop") }</span></label>
            <label><input type="checkbox" checked={settings.sound} disabled={!settings.enabled}
                onchange={toggle(|s, v| s.sound = v)} /><span>{ t("settings.sound") }</span></label>
            <label><input type="checkbox" checked={settings.mentions_when_muted} disabled={!settings.enabled}
                onchange={toggle(|s, v| s.mentions_when_muted = v)} /><span>{ t("settings.muted_mentions") }</span></label>
            if *blocked { <p class="tally-status-error" role="alert">{ t("settings.blocked") }</p> }
            <label><input type="checkbox" checked={share_reads} onchange={on_share_reads} data-testid="share-reads" />
                <span>{ t("settings.share_reads") }</span></label>
            <button class="tally-link" data-testid="shortcuts-button" onclick={chat.callback(|_: MouseEvent| Action::Shortcuts(true))}>
                { t("shortcuts.title") }</button>
        </div>
    }
}

/// The panel.
#[function_component(Panel)]
pub fn panel() -> Html {
    let chat = use_chat();
    let s = chat.state();
    let new_open = use_state(|| false);
    let searching = use_state(|| false);
    // Opened (from the launcher, by keyboard too): focus goes to the first conversation, and
    // back to the launcher when the panel closes.
    let node = use_node_ref();
    super::use_focus_inside(node.clone(), &[".tally-item", ".tally-header button"]);
    let status = match &s.connection {
        ConnectionState::Connected => html! {},
        ConnectionState::Connecting => {
            html! { <div class="tally-status" role="status">{ t("status.connecting") }</div> }
        }
        ConnectionState::Reconnecting { .. } => {
            html! { <div class="tally-status tally-status-warn" role="status" data-testid="reconnecting">{ t("status.reconnecting") }</div> }
        }
        ConnectionState::Offline(why) => {
            html! { <div class="tally-status tally-status-error" role="alert">{ t(why) }</div> }
        }
    };
    let dispatch = |a: fn() -> Action| chat.callback(move |_: MouseEvent| a());
    let bell_open = use_state(|| false);
    let toggle_bell = {
        let bell_open = bell_open.clone();
        Callback::from(move |_| bell_open.set(!*bell_open))
    };
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
    // Marking all read keeps focus on the button (it no longer goes disabled under the
    // keyboard: focus fell to the page, and Escape stopped closing the panel).
    let mark_all = {
        let chat = chat.clone();
        Callback::from(move |_: MouseEvent| {
            let total = chat.state().store.total();
            if total.unread > 0 || total.mentions > 0 {
                chat.dispatch(Action::Request(Request::MarkAllRead));
            }
        })
    };
    html! {
        <section class="tally-panel" role="dialog" aria-label={t("panel.title")} ref={node} {onkeydown}>
            <header class="tally-header">
                <h2>{ t("panel.title") }</h2>
                <div class="tally-header-actions">
                    <button class="tally-icon-button" title={t("panel.mark_all_read")} aria-label={t("panel.mark_all_read")}
                        aria-disabled={(total.unread == 0 && total.mentions == 0).to_string()} data-testid="mark-all-read"
                        onclick={mark_all}>{ super::icons::check_all() }</button>
                    <button class="tally-icon-button" title={t("panel.search")} aria-label={t("panel.search")}
                        aria-expanded={searching.to_string()} data-testid="search"
                        onclick={let s = searching.clone(); move |_| s.set(!*s)}>{ super::icons::search() }</button>
                    <button class="tally-icon-button" title={t("panel.new")} aria-label={t("panel.new")}
                        onclick={toggle_new}>{ super::icons::compose() }</button>
                    <button class="tally-icon-button" title={t("panel.notifications")} aria-label={t("panel.notifications")}
                        aria-expanded={bell_open.to_string()} data-testid="bell" onclick={toggle_bell}>{ super::icons::bell() }</button>
                    <button class="tally-icon-button" title={t("panel.close")} aria-label={t("panel.close")}
                        onclick={dispatch(|| Action::TogglePanel)}>{ super::icons::close() }</button>
                </div>
            </header>
            { status }
            if *bell_open { <NotificationSettings /> }
            if *new_open { <NewConversation on_close={close_new} /> }
            if s.switcher { <super::switcher::QuickSwitcher /> }
            if s.shortcuts { <super::switcher::ShortcutsHelp /> }
            if !s.store.is_ready() {
                <div class="tally-empty">{ t("status.loading") }</div>
            } else if *searching {
                <super::search::SearchView on_close={let s = searching.clone(); Callback::from(move |_| s.set(false))} />
            } else if let Some((conversation, root)) = s.open_thread {
                <super::thread::ThreadPane key={format!("t-{conversation}-{root}")} {conversation} {root} />
            } else if let Some(id) = s.open {
                <ConversationView key={id.0.to_string()} {id} />
            } else {
                <super::list::Lists />
            }
        </section>
    }
}
