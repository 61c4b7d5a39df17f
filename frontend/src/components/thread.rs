//! A thread's pane, over its conversation: the root, its replies with their own "new replies"
//! divider, a follow toggle, and a composer that replies in the thread. Reading follows the
//! conversation's rules with the thread watermark (`ChatStore::read_thread_seen`): what comes
//! into view is read, a mark unread holds until the thread is opened again.

use tally_shared::{ConversationId, Message, MessageId, Request, Seq};
use wasm_bindgen::JsCast;
use yew::prelude::*;

use super::composer::Composer;
use super::conversation::message::{MessageRow, RowActions, SeenLine, ThreadRow};
use super::conversation::reading::use_reading;
use super::dialogs::{EmojiPicker, ForwardDialog, VersionsDialog};
use super::{icons, use_chat_for};
use crate::i18n::{t, tn};
use crate::state::{Action, Interest};

/// Properties.
#[derive(Properties, PartialEq)]
pub struct ThreadProps {
    /// The conversation.
    pub conversation: ConversationId,
    /// The root's seq.
    pub root: Seq,
}

/// The pane.
#[function_component(ThreadPane)]
pub fn thread_pane(props: &ThreadProps) -> Html {
    let chat = use_chat_for(Interest::Conversation(props.conversation));
    let (id, root) = (props.conversation, props.root);
    // The divider stays where the thread watermark was when the pane opened (or moved back to).
    let watermark = chat.state().store.thread_last_read(id, root);
    let divider = use_mut_ref(|| watermark);
    if watermark.is_some() && (divider.borrow().is_none() || watermark < *divider.borrow()) {
        *divider.borrow_mut() = watermark;
    }
    let divider_at = *divider.borrow();
    // A root older than what the store has loaded: its page comes from the relay.
    let fetched = use_state(|| None::<Vec<Message>>);
    let root_loaded = chat
        .state()
        .store
        .conversation(id)
        .is_some_and(|v| v.messages.first().is_some_and(|m| m.seq <= root));
    {
        let (options, fetched) = (chat.options.clone(), fetched.clone());
        use_effect_with((id, root, root_loaded), move |&(id, root, loaded)| {
            if !loaded {
                wasm_bindgen_futures::spawn_local(async move {
                    if let Ok(page) = crate::api::thread(&options, id, root).await {
                        fetched.set(Some(page));
                    }
                });
            }
        });
    }
    let editing = use_state(|| None::<Message>);
    let forwarding = use_state(|| None::<MessageId>);
    let picker = use_state(|| None::<MessageId>);
    let history = use_state(|| None::<MessageId>);
    let ui = RowActions {
        menu: use_state(|| None::<MessageId>),
        reply_to: use_state(|| None::<Message>),
        editing: editing.clone(),
        forwarding: forwarding.clone(),
        unfolded: use_state(std::collections::HashSet::<MessageId>::new),
        press: use_mut_ref(|| None),
        menu_up: use_state(|| false),
        picker: picker.clone(),
        history: history.clone(),
    };
    let list_ref = use_node_ref();
    let observer = use_reading(&chat, id, Some(root));
    let state = chat.state();
    let store = &state.store;
    // The store's loaded messages, after what the relay's page had (which may be older).
    let mut messages: Vec<Message> = fetched.as_ref().cloned().unwrap_or_default();
    let newest_fetched = messages.last().map_or(Seq(0), |m| m.seq);
    if let Some(v) = store.conversation(id) {
        messages.extend(
            v.messages
                .iter()
                .filter(|m| m.seq > newest_fetched && (m.seq == root || m.thread == Some(root)))
                .cloned(),
        );
    }
    // Keep the store's current version of what both have (an edit or delete since the fetch).
    if let Some(v) = store.conversation(id) {
        for m in &mut messages {
            let i = v.messages.partition_point(|x| x.seq < m.seq);
            if let Some(x) = v.messages.get(i).filter(|x| x.seq == m.seq) {
                *m = x.clone();
            }
        }
    }
    let rendered = messages.len();
    {
        let (list, observer) = (list_ref.clone(), observer.clone());
        use_effect_with((id, root, rendered), move |_| {
            if let Some(list) = list.cast::<web_sys::Element>() {
                if let Some(obs) = &observer.0
                    && let Ok(nodes) = list.query_selector_all("[data-seq]")
                {
                    for i in 0..nodes.length() {
                        if let Some(n) = nodes.item(i).and_then(|n| n.dyn_into::<web_sys::Element>().ok()) {
                            obs.observe(&n);
                        }
                    }
                }
                list.set_scroll_top(list.scroll_height());
            }
        });
    }
    // (After every hook: a render must call the same hooks in the same order.)
    if store.conversation(id).is_none() {
        // Left, or removed, while the thread was open.
        return html! { <div class="tally-empty">{ t("conversation.gone") }</div> };
    }
    let first_unread = divider_at.and_then(|w| store.first_unread_reply_after(id, root, w));
    let mut rows: Vec<Html> = Vec::new();
    let root_message = messages.iter().find(|m| m.seq == root);
    if root_message.is_none() {
        rows.push(html! { <li class="tally-empty" key="loading">{ t("conversation.loading") }</li> });
    }
    for m in &messages {
        if first_unread == Some(m.seq) {
            rows.push(html! { <li class="tally-divider" key="divider" data-testid="thread-divider"><span>{ t("thread.divider") }</span></li> });
        }
        rows.push(html! {
            <MessageRow key={format!("m-{}", m.seq)} chat={chat.clone()} message={m.clone()} grouped={false}
                ui={ui.clone()} seen={SeenLine::Nothing} thread={ThreadRow::Pane} epoch={state.epoch} />
        });
        if m.seq == root {
            let replies = messages
                .iter()
                .filter(|r| r.thread == Some(root) && !r.deleted)
                .count();
            rows.push(html! { <li class="tally-thread-count" key="count">{ tn("thread.replies", replies as u64) }</li> });
        }
    }
    let pending: Vec<Html> = store
        .outbox()
        .iter()
        .filter(|p| p.conversation == id && p.thread == Some(root))
        .map(|p| {
            html! {
                <li class="tally-msg tally-msg-own tally-pending" key={format!("p-{}", p.client_id)} data-testid="pending">
                    <div class="tally-bubble"><div class="tally-text" dir="auto">{ p.body.clone() }</div></div>
                    if let Some(why) = &p.failed {
                        <div class="tally-msg-state tally-failed" role="alert">{ crate::i18n::ta("conversation.not_sent", &[("why", why)]) }</div>
                    } else {
                        <div class="tally-msg-state">{ t("conversation.sending") }</div>
                    }
                </li>
            }
        })
        .collect();
    let follows = store.follows(id, root);
    let counts = store.thread_counts(id, root);
    let toggle_follow = chat.callback(move |_: MouseEvent| {
        Action::Request(if follows {
            Request::UnfollowThread {
                conversation: id,
                thread: root,
            }
        } else {
            Request::FollowThread {
                conversation: id,
                thread: root,
            }
        })
    });
    let read_all = chat.callback(move |_: MouseEvent| {
        Action::Request(Request::ReadThread {
            conversation: id,
            thread: root,
        })
    });
    let back = chat.callback(|_: MouseEvent| Action::OpenThread(None));
    let onkeydown = {
        let chat = chat.clone();
        Callback::from(move |e: KeyboardEvent| {
            // Escape leaves the thread for its conversation (not the whole panel).
            if e.key() == "Escape" && !e.default_prevented() {
                e.stop_propagation();
                chat.dispatch(Action::OpenThread(None));
            }
        })
    };
    let title = store
        .conversation(id)
        .map(|v| store.title_of(&v.conversation))
        .unwrap_or_default();
    html! {
        <div class="tally-conversation tally-thread" data-testid="thread-pane" data-conversation={id.0.to_string()} data-root={root.0.to_string()}
            role="region" aria-label={t("thread.title")} {onkeydown}>
            <div class="tally-conv-header">
                <button class="tally-icon-button" aria-label={t("thread.back")} title={t("thread.back")} onclick={back}>{ icons::back() }</button>
                <div class="tally-conv-title">
                    <h3>{ t("thread.title") }</h3>
                    <div class="tally-conv-people" dir="auto" title={title.clone()}>{ crate::util::shown_title(&title) }</div>
                </div>
                if counts.unread > 0 {
                    <button class="tally-icon-button" aria-label={t("thread.mark_read")} title={t("thread.mark_read")} onclick={read_all}
                        data-testid="thread-read">{ icons::check() }</button>
                }
                <button class="tally-follow" aria-pressed={follows.to_string()} data-testid="follow" onclick={toggle_follow}>
                    { if follows { t("thread.following") } else { t("thread.follow") } }
                </button>
            </div>
            if let Some(message) = *forwarding {
                <ForwardDialog {message} on_close={let f = forwarding.clone(); Callback::from(move |_| f.set(None))}
                    on_forwarded={Callback::from(|_: String| {})} />
            }
            if let Some(message) = *history {
                <VersionsDialog {message} on_close={let h = history.clone(); Callback::from(move |_| h.set(None))} />
            }
            if let Some(message) = *picker {
                <EmojiPicker {message} on_close={let p = picker.clone(); Callback::from(move |_| p.set(None))} />
            }
            <div class="tally-messages" ref={list_ref} role="log" aria-label={t("thread.title")} aria-live="polite">
                <ul class="tally-message-list">
                    { for rows }
                    { for pending }
                </ul>
            </div>
            <Composer conversation={id} thread={Some(root)}
                reply_to={None::<Message>}
                editing={(*editing).clone()}
                on_done={let e = editing.clone(); Callback::from(move |_| e.set(None))} />
        </div>
    }
}
