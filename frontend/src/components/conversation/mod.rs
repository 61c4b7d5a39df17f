//! One conversation: messages grouped by author and day, a "new messages" divider before the
//! first unread message, older history loaded on scroll up, pending sends, and the composer.
//! Reading lives in [`reading`], scrolling and paging in [`scroll`], each message in
//! [`message`]; where unread starts and what reading asks for are the store's rules.

pub(crate) mod message;
pub(crate) mod reading;
mod scroll;

use tally_shared::{ConversationId, ConversationKind, Message, MessageId, Request, Seq};
use yew::prelude::*;

use super::composer::Composer;
use super::dialogs::{EmojiPicker, ForwardDialog, GroupDialog, VersionsDialog};
use super::{icons, use_chat_for};
use crate::i18n::{t, ta, tn};
use crate::state::{Action, Interest};
use crate::util;
use message::{MessageRow, RowActions, SeenLine, ThreadRow};

/// Properties.
#[derive(Properties, PartialEq)]
pub struct ConversationProps {
    /// Which conversation.
    pub id: ConversationId,
}

/// Properties of [`TypingLine`].
#[derive(Properties, PartialEq)]
pub struct TypingProps {
    /// Which conversation.
    pub conversation: ConversationId,
}

/// "Alice is typing…": who the store says is typing here now. It renders itself every second
/// (alone, not the conversation) so that what expires disappears.
#[function_component(TypingLine)]
pub fn typing_line(props: &TypingProps) -> Html {
    let chat = use_chat_for(Interest::Typing(props.conversation));
    let tick = use_state(|| 0u32);
    {
        let tick = tick.clone();
        use_effect_with((), move |_| {
            let interval =
                gloo::timers::callback::Interval::new(1_000, move || tick.set(tick.wrapping_add(1)));
            move || drop(interval)
        });
    }
    let state = chat.state();
    let now = tally_shared::Millis(js_sys::Date::now() as u64);
    let names: Vec<String> = state
        .store
        .typing_in(props.conversation, now)
        .into_iter()
        .map(|s| state.store.name_of(s).to_string())
        .collect();
    let text = match names.as_slice() {
        [] => String::new(),
        [one] => ta("typing.one", &[("name", one)]),
        [a, b] => ta("typing.two", &[("a", a), ("b", b)]),
        more => tn("typing.many", more.len() as u64),
    };
    html! { <div class="tally-typing" data-testid="typing" aria-live="polite">{ text }</div> }
}

/// A short confirmation that goes away by itself (a forward went where it was sent).
#[derive(Clone)]
struct Toast {
    text: UseStateHandle<Option<String>>,
    timer: std::rc::Rc<std::cell::RefCell<Option<gloo::timers::callback::Timeout>>>,
}

impl Toast {
    fn show(&self, text: String) {
        self.text.set(Some(text));
        let clear = self.text.clone();
        *self.timer.borrow_mut() = Some(gloo::timers::callback::Timeout::new(4_000, move || {
            clear.set(None)
        }));
    }

    fn text(&self) -> Option<String> {
        (*self.text).clone()
    }
}

#[hook]
fn use_toast() -> Toast {
    Toast {
        text: use_state(|| None),
        timer: use_mut_ref(|| None),
    }
}

/// The open conversation.
#[function_component(ConversationView)]
pub fn conversation_view(props: &ConversationProps) -> Html {
    // Not who types (its `TypingLine` renders that alone), nor other conversations.
    let chat = use_chat_for(Interest::Conversation(props.id));
    let id = props.id;
    let last_read = chat.state().store.last_read(id);
    // The divider stays where the watermark was when the conversation opened (or moved back to).
    let divider = use_mut_ref(|| last_read);
    if last_read < *divider.borrow() {
        *divider.borrow_mut() = last_read;
    }
    let divider_at = *divider.borrow();
    // Only the messages in `window` are rendered: the store's opening window, grown as the
    // reader scrolls up or down (so a long conversation opens as fast as a short one).
    let window = {
        let chat = chat.clone();
        use_state(move || chat.state().store.opening_window(id, divider_at))
    };
    let (shown, paging) = {
        let state = chat.state();
        let view = state.store.conversation(id);
        let len = view.map_or(0, |v| v.messages.len());
        let start = view.map_or(0, |v| v.messages.partition_point(|m| m.seq < window.from));
        let end = match (view, window.to) {
            (Some(v), Some(to)) => v.messages.partition_point(|m| m.seq <= to),
            _ => len,
        };
        let paging = scroll::Paging {
            oldest: view.and_then(|v| v.oldest_loaded()),
            complete: state.store.history_complete(id),
            head: state.store.head(id),
            hidden_above: start > 0,
            hidden_below: end < len,
            rendered: end.saturating_sub(start),
        };
        (start..end.max(start), paging)
    };
    let hidden_below = paging.hidden_below;

    let reply_to = use_state(|| None::<Message>);
    let editing = use_state(|| None::<Message>);
    let forwarding = use_state(|| None::<MessageId>);
    let picker = use_state(|| None::<MessageId>);
    let history = use_state(|| None::<MessageId>);
    let group_dialog = use_state(|| false);
    let menu = use_state(|| None::<MessageId>);
    let unfolded = use_state(std::collections::HashSet::<MessageId>::new);
    let toast = use_toast();
    let press = use_mut_ref(|| None);
    let menu_up = use_state(|| false);
    let list_ref = use_node_ref();
    let observer = reading::use_reading(&chat, id, None);
    let scroll = scroll::use_scroll(&chat, id, list_ref.clone(), observer, paging, window.clone());
    scroll::use_unread_history(&chat, id, list_ref.clone(), window.clone(), divider_at);
    scroll::use_jump(&chat, id, list_ref.clone(), window);

    let state = chat.state();
    let store = &state.store;
    let Some(view) = store.conversation(id) else {
        return html! { <div class="tally-empty">{ t("conversation.gone") }</div> };
    };
    let title = util::shown_title(&store.title_of(&view.conversation));
    let muted = store.is_muted(id);
    let is_group = view.conversation.kind == ConversationKind::Group;

    let mut rows: Vec<Html> = Vec::new();
    if shown.start > 0 || !store.history_complete(id) {
        let load = scroll.load_older.clone();
        rows.push(html! {
            <li class="tally-history-more" key="more">
                <button class="tally-link" onclick={move |_| load.emit(())} disabled={scroll.loading}>
                    { if scroll.loading { t("conversation.loading") } else { t("conversation.load_earlier") } }
                </button>
            </li>
        });
    }
    let first_unread = store.first_unread_after(id, divider_at);
    let unseen = store.unseen_below(id);
    let ui = RowActions {
        menu: menu.clone(),
        reply_to: reply_to.clone(),
        editing: editing.clone(),
        forwarding: forwarding.clone(),
        unfolded,
        press,
        menu_up: menu_up.clone(),
        picker: picker.clone(),
        history: history.clone(),
    };
    // What the rows show of reads and threads, from the window's first row on.
    let first_row = view.messages.get(shown.start).map_or(Seq(u64::MAX), |m| m.seq);
    let seen_marker = store.seen_marker_from(id, first_row);
    let summaries = store.thread_summaries(id, first_row);
    let mut prev: Option<&Message> = None;
    let (mut days, mut prev_day) = (util::Days::default(), String::new());
    // Replies live in their thread's pane, not in the conversation.
    for m in view.messages[shown.clone()].iter().filter(|m| m.thread.is_none()) {
        let day = days.key(m.created_at);
        let same_day = prev.is_some() && prev_day == day;
        if !same_day {
            prev_day = day.to_string();
            rows.push(html! { <li class="tally-day" key={format!("day-{}", m.seq)}><span>{ util::day_label(m.created_at) }</span></li> });
        }
        let starts_after_divider = first_unread == Some(m.seq);
        if starts_after_divider {
            rows.push(html! { <li class="tally-divider" key="divider" data-testid="new-divider" data-after={divider_at.0.to_string()}><span>{ t("conversation.divider") }</span></li> });
        }
        let grouped = prev.is_some_and(|p| {
            p.sender == m.sender
                && p.notice.is_none()
                && m.created_at.0.saturating_sub(p.created_at.0) < 5 * 60_000
        }) && same_day
            && !starts_after_divider;
        let seen = if seen_marker == Some(m.seq) {
            SeenLine::Seen
        } else if is_group && Some(&m.sender) == store.me() && !m.deleted {
            let by = store.seen_by(m);
            if by.is_empty() {
                SeenLine::Nothing
            } else {
                SeenLine::By(by.into_iter().map(|s| store.name_of(s).to_string()).collect())
            }
        } else {
            SeenLine::Nothing
        };
        let thread = ThreadRow::Stream(summaries.get(&m.seq).cloned(), store.thread_counts(id, m.seq));
        rows.push(html! {
            <MessageRow key={format!("m-{}", m.seq)} chat={chat.clone()} message={m.clone()} {grouped}
                ui={ui.clone()} {seen} {thread} epoch={state.epoch} />
        });
        prev = Some(m);
    }
    if view.messages.is_empty() {
        rows.push(html! { <li class="tally-empty" key="empty">{ t("conversation.empty") }</li> });
    }
    let pending: Vec<Html> = store
        .outbox()
        .iter()
        .filter(|p| p.conversation == id && p.thread.is_none() && !hidden_below)
        .map(|p| {
            let (retry, discard) = (p.client_id.clone(), p.client_id.clone());
            let retry = chat.callback(move |_: MouseEvent| Action::Retry(retry.clone()));
            let discard = chat.callback(move |_: MouseEvent| Action::Discard(discard.clone()));
            html! {
                <li class="tally-msg tally-msg-own tally-pending" key={format!("p-{}", p.client_id)} data-testid="pending">
                    <div class="tally-bubble"><div class="tally-text" dir="auto">{ p.body.clone() }</div>
                        { for p.attachments.iter().map(|a| html!{ <div class="tally-file" dir="auto">{ icons::paperclip() }{" "}{ a.name.clone() }</div> }) }
                    </div>
                    if let Some(why) = &p.failed {
                        <div class="tally-msg-state tally-failed" role="alert">{ ta("conversation.not_sent", &[("why", why)]) }
                            <button class="tally-link" onclick={retry}>{ t("conversation.retry") }</button>
                            <button class="tally-link" onclick={discard}>{ t("conversation.discard") }</button>
                        </div>
                    } else {
                        <div class="tally-msg-state">{ t("conversation.sending") }</div>
                    }
                </li>
            }
        })
        .collect();

    let back = chat.callback(|_: MouseEvent| Action::Open(None));
    let toggle_mute = chat.callback(move |_: MouseEvent| {
        Action::Request(Request::SetMuted {
            conversation: id,
            muted: !muted,
        })
    });
    let mark_read = chat
        .callback(move |_: MouseEvent| Action::Request(Request::MarkConversationRead { conversation: id }));
    let people = view
        .conversation
        .participants
        .iter()
        .map(|p| store.name_of(p).to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let counts = store.counts(id);
    // Escape (that nothing inside took: a menu, a dialog, a reply being written) reads the
    // conversation and goes back to the list, as in Slack.
    let onkeydown = {
        let chat = chat.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Escape" && !e.default_prevented() {
                e.prevent_default();
                e.stop_propagation();
                chat.dispatch(Action::ReadAndClose(id));
            }
        })
    };
    html! {
        <div class="tally-conversation" data-conversation={id.0.to_string()} {onkeydown}>
            <div class="tally-conv-header">
                <button class="tally-icon-button" aria-label={t("conversation.back")} title={t("conversation.back")} onclick={back}>{ icons::back() }</button>
                <div class="tally-conv-title">
                    <h3 dir="auto" title={title.clone()}>{ title.clone() }</h3>
                    if is_group { <div class="tally-conv-people" dir="auto" title={ta("conversation.people", &[("names", &people)])}>{ people }</div> }
                </div>
                if counts.unread > 0 {
                    <button class="tally-icon-button" aria-label={t("conversation.mark_read")} title={t("conversation.mark_read")} onclick={mark_read}>{ icons::check() }</button>
                }
                <button class="tally-icon-button" aria-pressed={muted.to_string()} aria-label={if muted { t("conversation.unmute") } else { t("conversation.mute") }}
                    title={if muted { t("conversation.unmute") } else { t("conversation.mute") }} onclick={toggle_mute}>{ if muted { icons::bell_off() } else { icons::bell() } }</button>
                if is_group {
                    <button class="tally-icon-button" aria-label={t("conversation.group_settings")} title={t("conversation.group_settings")}
                        onclick={let g = group_dialog.clone(); move |_| g.set(true)}>{ icons::gear() }</button>
                }
            </div>
            if *group_dialog {
                <GroupDialog {id} on_close={let g = group_dialog.clone(); Callback::from(move |_| g.set(false))} />
            }
            if let Some(message) = *forwarding {
                <ForwardDialog {message} on_close={let f = forwarding.clone(); Callback::from(move |_| f.set(None))}
                    on_forwarded={let toast = toast.clone(); Callback::from(move |title: String| toast.show(ta("dialog.forwarded", &[("title", &title)])))} />
            }
            if let Some(message) = *history {
                <VersionsDialog {message} on_close={let h = history.clone(); Callback::from(move |_| h.set(None))} />
            }
            if let Some(message) = *picker {
                <EmojiPicker {message} on_close={let p = picker.clone(); Callback::from(move |_| p.set(None))} />
            }
            <div class="tally-messages" ref={list_ref} onscroll={scroll.onscroll} role="log" aria-label={ta("conversation.messages_with", &[("title", &title)])} aria-live="polite">
                <ul class="tally-message-list">
                    { for rows }
                    { for pending }
                </ul>
            </div>
            if scroll.scrolled_up && unseen > 0 {
                <button class="tally-jump" data-testid="jump-pill" data-count={unseen.to_string()} onclick={let b = scroll.to_bottom.clone(); move |_| b.emit(())}>
                    { tn("conversation.jump", u64::from(unseen)) }<span aria-hidden="true">{" ↓"}</span>
                </button>
            }
            if let Some(text) = toast.text() {
                <div class="tally-toast" role="status" data-testid="toast">{ text }</div>
            }
            <TypingLine conversation={id} />
            <Composer conversation={id}
                reply_to={(*reply_to).clone()}
                editing={(*editing).clone()}
                on_sent={scroll.to_bottom.clone()}
                on_done={let (r, e) = (reply_to.clone(), editing.clone()); Callback::from(move |_| { r.set(None); e.set(None); })} />
        </div>
    }
}
