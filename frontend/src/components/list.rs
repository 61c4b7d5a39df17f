//! The conversation list: name, preview, time, unread and mention badges, muted state,
//! ordered by last activity.

use yew::prelude::*;

use super::{icons, use_chat};
use crate::i18n::{t, ta, tn};
use crate::state::Action;
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
    let title = t(&format!("presence.{label}"));
    html! { <span class={classes!("tally-presence", class)} data-testid="presence" data-presence={label} {title} /> }
}

/// The list.
#[function_component(ConversationList)]
pub fn conversation_list() -> Html {
    let chat = use_chat();
    let state = chat.state();
    let store = &state.store;
    let items = store.conversation_list();
    if items.is_empty() {
        return html! { <div class="tally-empty">{ t("list.empty") }</div> };
    }
    let drafts = chat.drafts();
    // Arrow keys move between conversations (Tab leaves the list).
    let onkeydown = Callback::from(|e: KeyboardEvent| {
        let step: i32 = match e.key().as_str() {
            "ArrowDown" => 1,
            "ArrowUp" => -1,
            _ => return,
        };
        e.prevent_default();
        util::move_focus(&e, ".tally-list", ".tally-item", step);
    });
    html! {
        <ul class="tally-list" role="list" aria-label={t("list.label")} data-testid="conversation-list" {onkeydown}>
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
                        ta("list.preview", &[("who", &who), ("text", &m.body)])
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
