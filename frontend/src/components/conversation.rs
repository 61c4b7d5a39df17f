//! One conversation: messages grouped by author and day, a "new messages" divider at the
//! watermark, older history loaded on scroll up, attachments, reply quotes, forward origins,
//! a menu per message, and reading by what the viewport shows.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use gloo::events::EventListener;
use gloo::timers::callback::Timeout;
use tally_shared::store::ChatStore;
use tally_shared::{
    Attachment, ConversationId, ConversationKind, Message, MessageId, Request, Seq, limits, model::Notice,
};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{Element, IntersectionObserver, IntersectionObserverEntry};
use yew::prelude::*;

use super::composer::Composer;
use super::dialogs::{ForwardDialog, GroupDialog};
use super::{icons, use_chat};
use crate::state::Action;
use crate::{api, util};

/// The text of a system notice.
pub fn notice_text(store: &ChatStore, m: &Message) -> String {
    let who = |s| {
        if Some(s) == store.me() {
            "You".to_string()
        } else {
            store.name_of(s).to_string()
        }
    };
    match m.notice.as_deref() {
        Some(Notice::Created { title }) => format!("{} created “{title}”", who(&m.sender)),
        Some(Notice::Renamed { title }) => {
            format!("{} renamed the conversation to “{title}”", who(&m.sender))
        }
        Some(Notice::ParticipantAdded { staff }) => format!("{} added {}", who(&m.sender), who(staff)),
        Some(Notice::ParticipantRemoved { staff }) if *staff == m.sender => format!("{} left", who(staff)),
        Some(Notice::ParticipantRemoved { staff }) => format!("{} removed {}", who(&m.sender), who(staff)),
        None => m.body.clone(),
    }
}

/// Properties.
#[derive(Properties, PartialEq)]
pub struct ConversationProps {
    /// Which conversation.
    pub id: ConversationId,
}

fn document_attends() -> bool {
    let doc = gloo::utils::document();
    doc.visibility_state() == web_sys::VisibilityState::Visible && doc.has_focus().unwrap_or(false)
}

/// The open conversation.
#[function_component(ConversationView)]
pub fn conversation_view(props: &ConversationProps) -> Html {
    let chat = use_chat();
    let id = props.id;
    let store = &chat.state.0.store;
    let view = store.conversation(id).cloned();
    let last_read = store.last_read(id);
    let head = store.head(id);
    let me = store.me().cloned();

    // The divider stays where the watermark was when the conversation opened (or moved back to).
    let divider = use_mut_ref(|| last_read);
    if last_read < *divider.borrow() {
        *divider.borrow_mut() = last_read;
    }
    let divider_at = *divider.borrow();

    let reply_to = use_state(|| None::<Message>);
    let editing = use_state(|| None::<Message>);
    let forwarding = use_state(|| None::<MessageId>);
    let group_dialog = use_state(|| false);
    let menu = use_state(|| None::<MessageId>);
    let loading = use_state(|| false);
    let list_ref = use_node_ref();
    let near_bottom = use_mut_ref(|| true);
    let anchor = use_mut_ref(|| None::<i32>);

    // Reading: what the viewport shows, while the tab is visible and focused, debounced, and
    // only forward.
    let seen = use_memo(id, |_| Rc::new(Cell::new(0u64)));
    let known_read = use_memo(id, |_| Rc::new(Cell::new(0u64)));
    if last_read.0 < known_read.get() {
        // Marked unread (here or on another device): what was seen before no longer counts;
        // only messages that come into view again do.
        known_read.set(last_read.0);
        seen.set(seen.get().min(last_read.0));
    } else {
        known_read.set(last_read.0);
    }
    // `flush(false)` reads after a short debounce; `flush(true)` at once (leaving the view).
    let flush = {
        let state = chat.state.clone();
        let (seen, known_read) = ((*seen).clone(), (*known_read).clone());
        use_memo(id, move |_| {
            let timer: Rc<RefCell<Option<Timeout>>> = Rc::default();
            Rc::new(move |now: bool| {
                let (state, seen, known_read) = (state.clone(), seen.clone(), known_read.clone());
                let read = move || {
                    if document_attends() && seen.get() > known_read.get() {
                        known_read.set(seen.get());
                        state.dispatch(Action::Request(Request::MarkRead {
                            conversation: id,
                            up_to: Seq(seen.get()),
                        }));
                    }
                };
                if now {
                    timer.borrow_mut().take();
                    read();
                } else {
                    *timer.borrow_mut() = Some(Timeout::new(250, read));
                }
            }) as Rc<dyn Fn(bool)>
        })
    };
    let observer = {
        let (seen, flush) = ((*seen).clone(), (*flush).clone());
        use_memo(id, move |_| {
            let cb = Closure::<dyn Fn(js_sys::Array)>::new(move |entries: js_sys::Array| {
                for e in entries.iter() {
                    let e: IntersectionObserverEntry = e.unchecked_into();
                    if e.is_intersecting()
                        && let Some(seq) = e
                            .target()
                            .get_attribute("data-seq")
                            .and_then(|s| s.parse::<u64>().ok())
                    {
                        seen.set(seen.get().max(seq));
                    }
                }
                flush(false);
            });
            let obs = IntersectionObserver::new(cb.as_ref().unchecked_ref()).ok();
            (obs, cb)
        })
    };
    {
        let flush = (*flush).clone();
        use_effect_with(id, move |_| {
            let (f1, f2) = (flush.clone(), flush.clone());
            let visible =
                EventListener::new(&gloo::utils::document(), "visibilitychange", move |_| f1(false));
            let focus = EventListener::new(&gloo::utils::window(), "focus", move |_| f2(false));
            move || {
                drop((visible, focus));
                // Leaving the conversation: what the viewport showed was read.
                flush(true);
            }
        });
    }
    let count = view.as_ref().map_or(0, |v| v.messages.len());
    {
        let list_ref = list_ref.clone();
        let observer = observer.clone();
        let (near_bottom, anchor) = (near_bottom.clone(), anchor.clone());
        use_effect_with((id, count), move |_| {
            if let Some(list) = list_ref.cast::<Element>() {
                if let Some(obs) = &observer.0
                    && let Ok(nodes) = list.query_selector_all("[data-seq]")
                {
                    for i in 0..nodes.length() {
                        if let Some(n) = nodes.item(i).and_then(|n| n.dyn_into::<Element>().ok()) {
                            obs.observe(&n);
                        }
                    }
                }
                // Keep the view steady: after older history, stay where the reader was; after
                // a new message, follow it only if the reader was at the bottom.
                if let Some(old_height) = anchor.borrow_mut().take() {
                    list.set_scroll_top(list.scroll_top() + list.scroll_height() - old_height);
                } else if *near_bottom.borrow() {
                    list.set_scroll_top(list.scroll_height());
                }
            }
        });
    }
    {
        let observer = observer.clone();
        use_effect_with(id, move |_| {
            move || {
                if let Some(o) = &observer.0 {
                    o.disconnect();
                }
            }
        });
    }
    // On opening, show the first unread message.
    {
        let list_ref = list_ref.clone();
        use_effect_with(id, move |_| {
            if let Some(list) = list_ref.cast::<Element>()
                && let Ok(Some(d)) = list.query_selector(".tally-divider")
            {
                d.scroll_into_view();
            }
        });
    }

    let Some(view) = view else {
        return html! { <div class="tally-empty">{"This conversation is no longer available."}</div> };
    };
    let title = store.title_of(&view.conversation);
    let muted = store.is_muted(id);
    let is_group = view.conversation.kind == ConversationKind::Group;

    let load_older = {
        let (state, options, loading, list_ref, anchor) = (
            chat.state.clone(),
            chat.options.clone(),
            loading.clone(),
            list_ref.clone(),
            anchor.clone(),
        );
        let oldest = view.oldest_loaded();
        let complete = view.history_complete();
        Callback::from(move |_: ()| {
            if *loading || complete {
                return;
            }
            let before = oldest.unwrap_or(Seq(head.0 + 1));
            loading.set(true);
            if let Some(list) = list_ref.cast::<Element>() {
                *anchor.borrow_mut() = Some(list.scroll_height());
            }
            let (state, options, loading) = (state.clone(), options.clone(), loading.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::history(&options, id, before, 50).await {
                    Ok(messages) => state.dispatch(Action::History(id, messages)),
                    Err(e) => gloo::console::warn!(format!("tally: history: {e}")),
                }
                loading.set(false);
            });
        })
    };
    let onscroll = {
        let (load_older, near_bottom) = (load_older.clone(), near_bottom.clone());
        Callback::from(move |e: Event| {
            if let Some(el) = e.target_dyn_into::<Element>() {
                *near_bottom.borrow_mut() = el.scroll_height() - el.scroll_top() - el.client_height() < 80;
                if el.scroll_top() < 60 {
                    load_older.emit(());
                }
            }
        })
    };

    let mut rows: Vec<Html> = Vec::new();
    if !view.history_complete() {
        let load = load_older.clone();
        rows.push(html! {
            <li class="tally-history-more" key="more">
                <button class="tally-link" onclick={move |_| load.emit(())} disabled={*loading}>
                    { if *loading { "Loading…" } else { "Load earlier messages" } }
                </button>
            </li>
        });
    }
    let mut prev: Option<&Message> = None;
    let mut divider_shown = false;
    for m in &view.messages {
        let mut starts_after_divider = false;
        let day = util::day_key(m.created_at);
        if prev.is_none_or(|p| util::day_key(p.created_at) != day) {
            rows.push(html! { <li class="tally-day" key={format!("day-{}", m.seq)}><span>{ util::day_label(m.created_at) }</span></li> });
        }
        if !divider_shown
            && m.seq > divider_at
            && divider_at < head
            && Some(&m.sender) != me.as_ref()
            && !m.deleted
        {
            divider_shown = true;
            starts_after_divider = true;
            rows.push(html! { <li class="tally-divider" key="divider" data-testid="new-divider" data-after={divider_at.0.to_string()}><span>{"New messages"}</span></li> });
        }
        let grouped = prev.is_some_and(|p| {
            p.sender == m.sender
                && p.notice.is_none()
                && m.created_at.0.saturating_sub(p.created_at.0) < 5 * 60_000
                && util::day_key(p.created_at) == day
        }) && !starts_after_divider;
        rows.push(message_row(
            &chat,
            m,
            grouped,
            &menu,
            &reply_to,
            &editing,
            &forwarding,
        ));
        prev = Some(m);
    }
    if view.messages.is_empty() {
        rows.push(html! { <li class="tally-empty" key="empty">{"No messages yet. Say hello!"}</li> });
    }
    let pending: Vec<Html> = store
        .outbox()
        .iter()
        .filter(|p| p.conversation == id)
        .map(|p| {
            let (state, cid) = (chat.state.clone(), p.client_id.clone());
            let cid2 = cid.clone();
            let state2 = state.clone();
            html! {
                <li class="tally-msg tally-msg-own tally-pending" key={format!("p-{}", p.client_id)} data-testid="pending">
                    <div class="tally-bubble">{ p.body.clone() }
                        { for p.attachments.iter().map(|a| html!{ <div class="tally-file">{ icons::paperclip() }{" "}{ a.name.clone() }</div> }) }
                    </div>
                    if let Some(why) = &p.failed {
                        <div class="tally-msg-state tally-failed" role="alert">{"Not sent: "}{ why.clone() }
                            <button class="tally-link" onclick={move |_| state.dispatch(Action::Retry(cid.clone()))}>{"Retry"}</button>
                            <button class="tally-link" onclick={move |_| state2.dispatch(Action::Discard(cid2.clone()))}>{"Discard"}</button>
                        </div>
                    } else {
                        <div class="tally-msg-state">{"Sending…"}</div>
                    }
                </li>
            }
        })
        .collect();

    let back = {
        let state = chat.state.clone();
        Callback::from(move |_| state.dispatch(Action::Open(None)))
    };
    let toggle_mute = {
        let state = chat.state.clone();
        Callback::from(move |_| {
            state.dispatch(Action::Request(Request::SetMuted {
                conversation: id,
                muted: !muted,
            }))
        })
    };
    let mark_read = {
        let state = chat.state.clone();
        Callback::from(move |_| {
            state.dispatch(Action::Request(Request::MarkConversationRead {
                conversation: id,
            }))
        })
    };
    let people = view
        .conversation
        .participants
        .iter()
        .map(|p| store.name_of(p).to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let counts = store.counts(id);
    html! {
        <div class="tally-conversation" data-conversation={id.0.to_string()}>
            <div class="tally-conv-header">
                <button class="tally-icon-button" aria-label="Back to conversations" onclick={back}>{"←"}</button>
                <div class="tally-conv-title">
                    <h3>{ title.clone() }</h3>
                    if is_group { <div class="tally-conv-people" title={people.clone()}>{ people }</div> }
                </div>
                if counts.unread > 0 {
                    <button class="tally-icon-button" aria-label="Mark conversation as read" title="Mark as read" onclick={mark_read}>{"✓"}</button>
                }
                <button class="tally-icon-button" aria-pressed={muted.to_string()} aria-label={if muted { "Unmute" } else { "Mute" }}
                    title={if muted { "Unmute" } else { "Mute" }} onclick={toggle_mute}>{ if muted { icons::bell_off() } else { icons::bell() } }</button>
                if is_group {
                    <button class="tally-icon-button" aria-label="Group settings" title="Group settings"
                        onclick={let g = group_dialog.clone(); move |_| g.set(true)}>{"⚙"}</button>
                }
            </div>
            if *group_dialog {
                <GroupDialog {id} on_close={let g = group_dialog.clone(); Callback::from(move |_| g.set(false))} />
            }
            if let Some(message) = *forwarding {
                <ForwardDialog {message} on_close={let f = forwarding.clone(); Callback::from(move |_| f.set(None))} />
            }
            <ul class="tally-messages" ref={list_ref} {onscroll} role="log" aria-label={format!("Messages with {title}")} aria-live="polite">
                { for rows }
                { for pending }
            </ul>
            <Composer conversation={id}
                reply_to={(*reply_to).clone()}
                editing={(*editing).clone()}
                on_done={let (r, e) = (reply_to.clone(), editing.clone()); Callback::from(move |_| { r.set(None); e.set(None); })} />
        </div>
    }
}

fn message_row(
    chat: &crate::app::Chat,
    m: &Message,
    grouped: bool,
    menu: &UseStateHandle<Option<MessageId>>,
    reply_to: &UseStateHandle<Option<Message>>,
    editing: &UseStateHandle<Option<Message>>,
    forwarding: &UseStateHandle<Option<MessageId>>,
) -> Html {
    let store = &chat.state.0.store;
    let own = Some(&m.sender) == store.me();
    let key = format!("m-{}", m.seq);
    if m.notice.is_some() {
        return html! { <li class="tally-notice" {key} data-seq={m.seq.0.to_string()}>{ notice_text(store, m) }</li> };
    }
    let name = store.name_of(&m.sender).to_string();
    let menu_open = **menu == Some(m.id);
    let toggle_menu = {
        let (menu, id) = (menu.clone(), m.id);
        Callback::from(move |_| menu.set(if *menu == Some(id) { None } else { Some(id) }))
    };
    let act = |f: Box<dyn Fn()>| {
        let menu = menu.clone();
        Callback::from(move |_: MouseEvent| {
            f();
            menu.set(None);
        })
    };
    let (conversation, seq, id) = (m.conversation, m.seq, m.id);
    let on_reply = {
        let (r, m) = (reply_to.clone(), m.clone());
        act(Box::new(move || r.set(Some(m.clone()))))
    };
    let on_forward = {
        let f = forwarding.clone();
        act(Box::new(move || f.set(Some(id))))
    };
    let on_edit = {
        let (e, m) = (editing.clone(), m.clone());
        act(Box::new(move || e.set(Some(m.clone()))))
    };
    let on_delete = {
        let state = chat.state.clone();
        act(Box::new(move || {
            if gloo::dialogs::confirm("Delete this message for everyone?") {
                state.dispatch(Action::Request(Request::DeleteMessage { message: id }));
            }
        }))
    };
    let on_unread = {
        let state = chat.state.clone();
        act(Box::new(move || {
            state.dispatch(Action::Request(Request::MarkUnread {
                conversation,
                from: seq,
            }))
        }))
    };
    html! {
        <li class={classes!("tally-msg", own.then_some("tally-msg-own"), grouped.then_some("tally-msg-grouped"), m.deleted.then_some("tally-msg-deleted"))}
            {key} data-seq={m.seq.0.to_string()}>
            if !grouped && !own { <div class="tally-msg-author">{ name }</div> }
            <div class="tally-bubble">
                if let Some(f) = &m.forwarded_from {
                    <div class="tally-forwarded">{"Forwarded from "}{ store.name_of(&f.sender).to_string() }</div>
                }
                if let Some(r) = &m.reply_to {
                    <div class="tally-quote"><strong>{ store.name_of(&r.sender).to_string() }</strong>{" "}{ if r.deleted { "Deleted message".to_string() } else { r.excerpt.clone() } }</div>
                }
                if m.deleted {
                    <em>{"Message deleted"}</em>
                } else {
                    <div class="tally-text">{ m.body.clone() }</div>
                    { for m.attachments.iter().map(|a| html! { <AttachmentView attachment={a.clone()} /> }) }
                }
                <span class="tally-msg-meta">
                    if m.edited_at.is_some() && !m.deleted { <span>{"edited · "}</span> }
                    { util::short_time(m.created_at) }
                </span>
            </div>
            if !m.deleted {
                <div class="tally-msg-actions">
                    <button class="tally-icon-button tally-menu-button" aria-label="Message actions" aria-haspopup="menu"
                        aria-expanded={menu_open.to_string()} onclick={toggle_menu}>{"⋯"}</button>
                    if menu_open {
                        <div class="tally-menu" role="menu">
                            <button role="menuitem" onclick={on_reply}>{"Reply"}</button>
                            <button role="menuitem" onclick={on_forward}>{"Forward"}</button>
                            if own { <button role="menuitem" onclick={on_edit}>{"Edit"}</button> }
                            if own { <button role="menuitem" onclick={on_delete}>{"Delete"}</button> }
                            if !own { <button role="menuitem" onclick={on_unread}>{"Mark unread from here"}</button> }
                        </div>
                    }
                </div>
            }
        </li>
    }
}

/// Properties.
#[derive(Properties, PartialEq)]
pub struct AttachmentProps {
    /// The file.
    pub attachment: Attachment,
}

/// A file link, or a preview for images. Fetched with the token in a header.
#[function_component(AttachmentView)]
pub fn attachment_view(props: &AttachmentProps) -> Html {
    let chat = use_chat();
    let url = use_state(|| None::<String>);
    let a = props.attachment.clone();
    let is_image = matches!(
        a.content_type.as_str(),
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    );
    {
        let (url, options, a) = (url.clone(), chat.options.clone(), a.clone());
        use_effect_with(a.id.clone(), move |_| {
            if is_image {
                wasm_bindgen_futures::spawn_local(async move {
                    if let Ok(u) = api::attachment_url(&options, &a).await {
                        url.set(Some(u));
                    }
                });
            }
        });
    }
    let download = {
        let (options, a) = (chat.options.clone(), a.clone());
        Callback::from(move |e: MouseEvent| {
            e.prevent_default();
            let (options, a) = (options.clone(), a.clone());
            wasm_bindgen_futures::spawn_local(async move {
                if let Ok(u) = api::attachment_url(&options, &a).await {
                    let link: web_sys::HtmlElement = gloo::utils::document()
                        .create_element("a")
                        .unwrap()
                        .unchecked_into();
                    let _ = link.set_attribute("href", &u);
                    let _ = link.set_attribute("download", &a.name);
                    link.click();
                }
            });
        })
    };
    // Tenths of a MB, rounded, in integers: no float formatting.
    let size = if a.size > 1_048_576 {
        let tenths = (a.size * 10 + 524_288) / 1_048_576;
        format!("{}.{} MB", tenths / 10, tenths % 10)
    } else {
        format!("{} KB", a.size.div_ceil(1024))
    };
    html! {
        <div class="tally-file">
            if let (true, Some(u)) = (is_image, (*url).clone()) {
                <img class="tally-image" src={u} alt={a.name.clone()} loading="lazy" />
            }
            <a href="#" onclick={download} data-testid="attachment">{ icons::paperclip() }{" "}{ a.name.clone() }</a>
            <span class="tally-file-size">{ format!(" · {size}") }</span>
        </div>
    }
}

/// How many bytes of text a message may have (for the composer).
pub const BODY_LIMIT: usize = limits::BODY_MAX_BYTES;
