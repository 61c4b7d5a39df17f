//! The lists the panel shows: every conversation (name, preview, time, unread and mention
//! badges, muted state, by last activity), the Unreads inbox (every conversation and followed
//! thread with something unread, whose counts sum to the badge), and the followed threads.

use yew::prelude::*;

use super::{icons, use_chat};
use crate::i18n::{t, ta, tn};
use crate::state::{Action, ListView};
use crate::util;

/// The other person's presence, as a dot on a direct conversation's avatar.
pub fn presence_dot(
    store: &tally_shared::ChatStore,
    kind: tally_shared::ConversationKind,
    id: tally_shared::ConversationId,
) -> Html {
    use tally_shared::protocol::Presence;
    if kind != tally_shared::ConversationKind::Direct {
        return Html::default();
    }
    let other = store.conversation(id).and_then(|v| {
        v.conversation
            .participants
            .iter()
            .find(|p| Some(*p) != store.me())
    });
    let Some(other) = other else {
        return Html::default();
    };
    let (class, label) = match store.presence_of(other) {
        Presence::Online => ("tally-presence-online", "online"),
        Presence::Away => ("tally-presence-away", "away"),
        Presence::Offline => ("tally-presence-offline", "offline"),
    };
    let dnd = store.is_dnd(other);
    let title = if dnd {
        format!("{} · {}", t(&format!("presence.{label}")), t("presence.dnd"))
    } else {
        t(&format!("presence.{label}"))
    };
    html! { <span class={classes!("tally-presence", class, dnd.then_some("tally-presence-dnd"))} data-testid="presence"
    data-presence={label} data-dnd={dnd.then_some("true")} {title} /> }
}

/// The list.
#[function_component(ConversationList)]
pub fn conversation_list() -> Html {
    let chat = use_chat();
    let state = chat.state();
    let store = &state.store;
    let list = use_node_ref();
    // Back from a conversation (Escape, the back button), the focus, which went with the
    // conversation, comes to its row here.
    {
        let (left, list) = (state.left, list.clone());
        use_effect_with((), move |_| {
            let lost = util::active_element().is_none_or(|el| el.tag_name().eq_ignore_ascii_case("body"));
            if let (true, Some(left)) = (lost, left) {
                let row = list.cast::<web_sys::Element>().and_then(|r| {
                    r.query_selector(&format!(".tally-item[data-conversation=\"{}\"]", left.0))
                        .ok()
                        .flatten()
                });
                if let Some(row) =
                    row.and_then(|r| wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlElement>(r).ok())
                {
                    let _ = row.focus();
                }
            }
        });
    }
    let items = store.conversation_list();
    if items.is_empty() {
        return html! { <div class="tally-empty">{ t("list.empty") }</div> };
    }
    let drafts = chat.drafts();
    // Arrow keys move between conversations (Tab leaves the list).
    let onkeydown = row_keys();
    html! {
        <ul class="tally-list" role="list" aria-label={t("list.label")} data-testid="conversation-list" {onkeydown} ref={list}>
            { for items.into_iter().map(|item| {
                let id = item.id;
                let onclick = chat.callback(move |_| Action::Open(Some(id)));
                let preview = item.last_message.as_ref().map(|m| {
                    let who = if Some(&m.sender) == store.me() { t("list.you") } else { store.name_of(&m.sender).to_string() };
                    let text = if m.notice.is_some() {
                        util::notice_text(store, m)
                    } else if m.body.is_empty() && !m.attachments.is_empty() {
                        ta("list.preview", &[("who", &who), ("text", &ta("list.file", &[("name", &m.attachments[0].name)]))])
                    } else {
                        ta("list.preview", &[("who", &who), ("text", &tally_shared::markup::plain_text(&m.body))])
                    };
                    text.chars().take(90).collect::<String>()
                }).unwrap_or_default();
                let draft = drafts.contains(&id);
                let title = util::shown_title(&item.title);
                let unread = item.counts.unread;
                html! {
                    <li key={id.0.to_string()}>
                        <button class={classes!("tally-item", (unread > 0).then_some("tally-item-unread"))}
                            data-conversation={id.0.to_string()} {onclick}>
                            <span class="tally-avatar" aria-hidden="true">
                                { util::initials(&title) }
                                { presence_dot(store, item.kind, id) }
                            </span>
                            <span class="tally-item-main">
                                <span class="tally-item-top">
                                    <span class="tally-item-title" dir="auto" title={title.clone()}>{ title.clone() }</span>
                                    if item.muted {
                                        <span class="tally-muted-icon" title={t("list.muted")} aria-hidden="true">{ icons::bell_off() }</span>
                                        <span class="tally-sr-only">{ t("list.muted") }</span>
                                    }
                                    <span class="tally-item-time">{ util::short_time(item.last_activity) }</span>
                                </span>
                                <span class="tally-item-bottom">
                                    if draft {
                                        <span class="tally-draft-mark" data-testid="draft-mark">{ t("list.draft") }</span>
                                    }
                                    <span class="tally-preview" dir="auto">{ preview }</span>
                                    if item.counts.mentions > 0 {
                                        <span class="tally-badge tally-badge-mention" data-testid="mention-badge" aria-hidden="true">{"@"}</span>
                                        <span class="tally-sr-only">{ t("list.mentioned") }</span>
                                    }
                                    if unread > 0 {
                                        <span class={classes!("tally-badge", item.muted.then_some("tally-badge-muted"))} data-testid="unread-badge"
                                            data-count={unread.to_string()} aria-hidden="true">{ crate::i18n::Locale::current().number(u64::from(unread)) }</span>
                                        <span class="tally-sr-only">{ tn("list.unread", u64::from(unread)) }</span>
                                    }
                                </span>
                            </span>
                        </button>
                    </li>
                }
            }) }
        </ul>
    }
}

/// The tabs over the lists, and the list chosen.
#[function_component(Lists)]
pub fn lists() -> Html {
    let chat = use_chat();
    let view = chat.state().list_view;
    let unread = chat.state().store.unreads().len();
    let tab = |v: ListView, key: &str, testid: &'static str| {
        let onclick = chat.callback(move |_: MouseEvent| Action::ShowList(v));
        let selected = view == v;
        html! {
            <button role="tab" class={classes!("tally-tab", selected.then_some("tally-tab-selected"))} aria-selected={selected.to_string()}
                tabindex={if selected { "0" } else { "-1" }} data-testid={testid} {onclick}>{ t(key) }
                if v == ListView::Unreads && unread > 0 { <span class="tally-tab-count">{ crate::i18n::Locale::current().number(unread as u64) }</span> }
            </button>
        }
    };
    // Arrow keys move between tabs (the WAI-ARIA tabs pattern); Tab goes into the list.
    let onkeydown = Callback::from(|e: KeyboardEvent| {
        let step: i32 = match e.key().as_str() {
            "ArrowRight" => 1,
            "ArrowLeft" => -1,
            _ => return,
        };
        e.prevent_default();
        // In a right-to-left page the arrows go the other way, as the tabs do.
        let rtl = crate::util::event_within(&e, "[dir=rtl]").is_some();
        util::move_focus(&e, ".tally-tabs", "[role=tab]", if rtl { -step } else { step });
    });
    html! {
        <>
            <div class="tally-tabs" role="tablist" aria-label={t("list.views")} {onkeydown}>
                { tab(ListView::All, "list.all", "tab-all") }
                { tab(ListView::Unreads, "list.unreads", "tab-unreads") }
                { tab(ListView::Threads, "list.threads", "tab-threads") }
            </div>
            <div class="tally-tabpanel" role="tabpanel">
                { match view {
                    ListView::All => html! { <ConversationList /> },
                    ListView::Unreads => html! { <UnreadsList /> },
                    ListView::Threads => html! { <ThreadList /> },
                } }
            </div>
        </>
    }
}

/// The preview of a message: who wrote it and its first words.
fn preview(store: &tally_shared::ChatStore, m: &tally_shared::Message) -> String {
    let who = if Some(&m.sender) == store.me() {
        t("list.you")
    } else {
        store.name_of(&m.sender).to_string()
    };
    let text = if m.deleted {
        t("message.deleted")
    } else if m.notice.is_some() {
        util::notice_text(store, m)
    } else if m.body.is_empty() && !m.attachments.is_empty() {
        ta(
            "list.preview",
            &[
                ("who", &who),
                ("text", &ta("list.file", &[("name", &m.attachments[0].name)])),
            ],
        )
    } else {
        ta(
            "list.preview",
            &[
                ("who", &who),
                ("text", &tally_shared::markup::plain_text(&m.body)),
            ],
        )
    };
    text.chars().take(90).collect()
}

/// A thread as a row: its conversation, its root's words, its newest reply, its counts.
fn thread_row(
    chat: &crate::chat::Chat,
    store: &tally_shared::ChatStore,
    item: &tally_shared::store::ThreadItem,
    mark: bool,
) -> Html {
    let (conversation, root) = (item.conversation, item.root);
    let onclick = chat.callback(move |_: MouseEvent| Action::OpenThread(Some((conversation, root))));
    let read = chat.callback(move |_: MouseEvent| {
        Action::Request(tally_shared::Request::ReadThread {
            conversation,
            thread: root,
        })
    });
    let title = store
        .conversation(conversation)
        .map(|v| util::shown_title(&store.title_of(&v.conversation)))
        .unwrap_or_default();
    let about = item
        .root_message
        .as_ref()
        .map(|m| preview(store, m))
        .unwrap_or_else(|| t("thread.title"));
    let last = item
        .last_reply
        .as_ref()
        .map(|m| preview(store, m))
        .unwrap_or_default();
    let unread = item.counts.unread;
    html! {
        <li key={format!("t-{conversation}-{root}")} class="tally-row">
            <button class={classes!("tally-item", (unread > 0).then_some("tally-item-unread"))} data-testid="thread-item"
                data-conversation={conversation.0.to_string()} data-root={root.0.to_string()} data-count={unread.to_string()} {onclick}>
                <span class="tally-avatar" aria-hidden="true">{ icons::thread() }</span>
                <span class="tally-item-main">
                    <span class="tally-item-top">
                        <span class="tally-item-title" dir="auto" title={about.clone()}>{ about.clone() }</span>
                        <span class="tally-item-time">{ util::short_time(item.last_activity()) }</span>
                    </span>
                    <span class="tally-item-bottom">
                        <span class="tally-preview" dir="auto">{ ta("thread.in", &[("title", &title)]) }{ " · " }{ last }</span>
                        if item.counts.mentions > 0 {
                            <span class="tally-badge tally-badge-mention" aria-hidden="true">{"@"}</span>
                            <span class="tally-sr-only">{ t("list.mentioned") }</span>
                        }
                        if unread > 0 {
                            <span class={classes!("tally-badge", item.muted.then_some("tally-badge-muted"))} data-testid="unread-badge"
                                data-count={unread.to_string()} aria-hidden="true">{ crate::i18n::Locale::current().number(u64::from(unread)) }</span>
                            <span class="tally-sr-only">{ tn("list.unread", u64::from(unread)) }</span>
                        }
                    </span>
                </span>
            </button>
            if mark && unread > 0 {
                <button class="tally-icon-button tally-row-read" aria-label={t("thread.mark_read")} title={t("thread.mark_read")}
                    data-testid="inbox-read" onclick={read}>{ icons::check() }</button>
            }
        </li>
    }
}

/// Arrow keys move between a list's rows (with Alt they move between conversations: see
/// `crate::shortcuts`).
fn row_keys() -> Callback<KeyboardEvent> {
    Callback::from(|e: KeyboardEvent| {
        if e.alt_key() || e.ctrl_key() || e.meta_key() {
            return;
        }
        let step: i32 = match e.key().as_str() {
            "ArrowDown" => 1,
            "ArrowUp" => -1,
            _ => return,
        };
        e.prevent_default();
        util::move_focus(&e, ".tally-list", ".tally-item", step);
    })
}

/// The Unreads inbox.
#[function_component(UnreadsList)]
pub fn unreads_list() -> Html {
    use tally_shared::store::UnreadItem;
    let chat = use_chat();
    let state = chat.state();
    let store = &state.store;
    let items = store.unreads();
    if items.is_empty() {
        return html! { <div class="tally-empty" data-testid="inbox-empty">{ t("list.all_read") }</div> };
    }
    html! {
        <ul class="tally-list" role="list" aria-label={t("list.unreads")} data-testid="inbox" onkeydown={row_keys()}>
            { for items.iter().map(|item| match item {
                UnreadItem::Thread(t) => thread_row(&chat, store, t, true),
                UnreadItem::Conversation(c) => {
                    let id = c.id;
                    let onclick = chat.callback(move |_: MouseEvent| Action::Open(Some(id)));
                    let read = chat.callback(move |_: MouseEvent| Action::Request(tally_shared::Request::MarkConversationRead { conversation: id }));
                    let title = util::shown_title(&c.title);
                    let unread = c.counts.unread;
                    html! {
                        <li key={format!("c-{id}")} class="tally-row">
                            <button class="tally-item tally-item-unread" data-testid="inbox-conversation" data-conversation={id.0.to_string()} {onclick}>
                                <span class="tally-avatar" aria-hidden="true">{ util::initials(&title) }{ presence_dot(store, c.kind, id) }</span>
                                <span class="tally-item-main">
                                    <span class="tally-item-top">
                                        <span class="tally-item-title" dir="auto" title={title.clone()}>{ title.clone() }</span>
                                        <span class="tally-item-time">{ util::short_time(c.last_activity) }</span>
                                    </span>
                                    <span class="tally-item-bottom">
                                        <span class="tally-preview" dir="auto">{ c.last_message.as_ref().map(|m| preview(store, m)).unwrap_or_default() }</span>
                                        if c.counts.mentions > 0 {
                                            <span class="tally-badge tally-badge-mention" aria-hidden="true">{"@"}</span>
                                            <span class="tally-sr-only">{ t("list.mentioned") }</span>
                                        }
                                        <span class="tally-badge" data-testid="unread-badge" data-count={unread.to_string()} aria-hidden="true">
                                            { crate::i18n::Locale::current().number(u64::from(unread)) }</span>
                                        <span class="tally-sr-only">{ tn("list.unread", u64::from(unread)) }</span>
                                    </span>
                                </span>
                            </button>
                            <button class="tally-icon-button tally-row-read" aria-label={t("conversation.mark_read")} title={t("conversation.mark_read")}
                                data-testid="inbox-read" onclick={read}>{ icons::check() }</button>
                        </li>
                    }
                }
            }) }
        </ul>
    }
}

/// The threads I follow.
#[function_component(ThreadList)]
pub fn thread_list() -> Html {
    let chat = use_chat();
    let state = chat.state();
    let store = &state.store;
    let items = store.thread_list();
    if items.is_empty() {
        return html! { <div class="tally-empty" data-testid="threads-empty">{ t("list.no_threads") }</div> };
    }
    html! {
        <ul class="tally-list" role="list" aria-label={t("list.threads")} data-testid="threads" onkeydown={row_keys()}>
            { for items.iter().map(|item| thread_row(&chat, store, item, false)) }
        </ul>
    }
}
