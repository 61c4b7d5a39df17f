//! One message as a row: author, quote, forward origin, text (its links made links, a long one
//! folded behind "Show more") or attachments, time, and its menu (from its button, or a long
//! press on a touch screen); and an attachment, previewed when it is an image.

use tally_shared::store::ChatStore;
use tally_shared::{Attachment, Message, MessageId, Request};
use wasm_bindgen::JsCast;
use yew::prelude::*;

use super::super::{icons, use_chat_for};
use crate::chat::Chat;
use crate::i18n::{t, ta, tn};
use crate::state::Action;
use crate::{api, util};

/// A text longer than this (in characters), or with more lines, is folded.
const FOLD_CHARS: usize = 600;
/// Lines of a text shown folded.
const FOLD_LINES: usize = 10;
/// How long a finger rests on a message to open its menu.
const LONG_PRESS_MS: u32 = 500;

/// What a message's menu changes in its conversation view.
#[derive(Clone)]
pub(crate) struct RowActions {
    /// Which message's menu is open.
    pub(crate) menu: UseStateHandle<Option<MessageId>>,
    /// The message being replied to.
    pub(crate) reply_to: UseStateHandle<Option<Message>>,
    /// The message being edited.
    pub(crate) editing: UseStateHandle<Option<Message>>,
    /// The message being forwarded.
    pub(crate) forwarding: UseStateHandle<Option<MessageId>>,
    /// Long messages unfolded by the reader.
    pub(crate) unfolded: UseStateHandle<std::collections::HashSet<MessageId>>,
    /// A finger resting on a message: the timer that opens its menu, and where it went down.
    pub(crate) press: std::rc::Rc<std::cell::RefCell<Option<(gloo::timers::callback::Timeout, i32, i32)>>>,
    /// Whether the open menu opens upwards (its message is near the bottom of the view, where
    /// a menu below it would be cut off by the composer).
    pub(crate) menu_up: UseStateHandle<bool>,
    /// The message whose full emoji picker is open.
    pub(crate) picker: UseStateHandle<Option<MessageId>>,
    /// The message whose earlier versions show.
    pub(crate) history: UseStateHandle<Option<MessageId>>,
}

impl PartialEq for RowActions {
    /// Equal when every handle holds the same value: a row renders again whenever any of them
    /// changes (a menu opening, a reply starting), so its callbacks never read a stale one.
    fn eq(&self, other: &Self) -> bool {
        self.menu == other.menu
            && self.reply_to == other.reply_to
            && self.editing == other.editing
            && self.forwarding == other.forwarding
            && self.unfolded == other.unfolded
            && std::rc::Rc::ptr_eq(&self.press, &other.press)
            && self.menu_up == other.menu_up
            && self.picker == other.picker
            && self.history == other.history
    }
}

/// The emoji a message's menu offers at once.
pub(crate) const QUICK_REACTIONS: [&str; 6] = ["👍", "❤️", "😂", "🎉", "👀", "✅"];

/// Whether `me` has reacted to `m` with `emoji`.
fn reacted(m: &Message, me: Option<&tally_shared::StaffId>, emoji: &str) -> bool {
    me.is_some_and(|me| {
        m.reactions
            .iter()
            .any(|r| r.emoji == emoji && r.staff.contains(me))
    })
}

/// A message's reactions: each emoji with how many put it there, pressed when I did; who did
/// shows on hover, focus (its name) and tap (the title). A press toggles mine.
fn reactions_row(chat: &Chat, store: &ChatStore, m: &Message) -> Html {
    html! {
        <div class="tally-reactions" data-testid="reactions">
            { for m.reactions.iter().map(|r| {
                let mine = reacted(m, store.me(), &r.emoji);
                let names: Vec<String> = r.staff.iter().map(|s| if Some(s) == store.me() { t("list.you") } else { store.name_of(s).to_string() }).collect();
                // The name starts with what the chip shows ("👍 2"), as its visible text must be in it.
                let count = r.staff.len().to_string();
                let who = ta("reactions.by", &[("emoji", &r.emoji), ("count", &count), ("names", &names.join(", "))]);
                let (chat, id, emoji) = (chat.clone(), m.id, r.emoji.clone());
                let onclick = Callback::from(move |_: MouseEvent| chat.dispatch(Action::react(id, &emoji, !mine)));
                html! {
                    <button class={classes!("tally-reaction", mine.then_some("tally-reaction-mine"))} aria-pressed={mine.to_string()}
                        title={who.clone()} aria-label={who} data-emoji={r.emoji.clone()} data-count={count.clone()} {onclick}>
                        <span aria-hidden="true">{ r.emoji.clone() }</span>{" "}<span aria-hidden="true">{ count }</span>
                    </button>
                }
            }) }
        </div>
    }
}

/// A message's text as formatted (`tally_shared::markup`), mentions marked, mine the most.
pub(crate) fn formatted(m: &Message, me: Option<&tally_shared::StaffId>) -> Html {
    use tally_shared::markup::{Block, Inline, parse};
    fn inlines(items: &[Inline], me: Option<&tally_shared::StaffId>) -> Html {
        html! { <>{ for items.iter().map(|i| match i {
            Inline::Text(t) => html! { { t.clone() } },
            Inline::Mention { text, staff } => {
                let mine = staff.is_none() || staff.as_ref() == me;
                html! { <span class={classes!("tally-mention", mine.then_some("tally-mention-me"))} data-testid="mention">{ text.clone() }</span> }
            }
            Inline::Link { href, children } => html! {
                <a href={href.clone()} target="_blank" rel="noopener noreferrer">{ inlines(children, me) }</a>
            },
            Inline::Code(c) => html! { <code>{ c.clone() }</code> },
            Inline::Strong(c) => html! { <strong>{ inlines(c, me) }</strong> },
            Inline::Emphasis(c) => html! { <em>{ inlines(c, me) }</em> },
            Inline::Strike(c) => html! { <s>{ inlines(c, me) }</s> },
            Inline::Break => html! { <br /> },
        }) }</> }
    }
    fn blocks(items: &[Block], me: Option<&tally_shared::StaffId>) -> Html {
        html! { <>{ for items.iter().map(|b| match b {
            Block::Paragraph(i) => html! { <p>{ inlines(i, me) }</p> },
            Block::Heading(i) => html! { <p><strong>{ inlines(i, me) }</strong></p> },
            Block::Code(c) => html! { <pre dir="ltr"><code>{ c.trim_end_matches('\n').to_string() }</code></pre> },
            Block::Quote(q) => html! { <blockquote>{ blocks(q, me) }</blockquote> },
            Block::List { start: Some(n), items } => html! {
                <ol start={n.to_string()}>{ for items.iter().map(|i| html! { <li>{ blocks(i, me) }</li> }) }</ol>
            },
            Block::List { start: None, items } => html! {
                <ul>{ for items.iter().map(|i| html! { <li>{ blocks(i, me) }</li> }) }</ul>
            },
            Block::Rule => html! { <hr /> },
        }) }</> }
    }
    // Most messages are one paragraph: its text goes straight into the bubble (no `<p>`, the
    // lightest DOM for the rows a long conversation renders).
    match parse(&m.body, &m.mention_ranges).as_slice() {
        [Block::Paragraph(only)] => inlines(only, me),
        all => blocks(all, me),
    }
}

/// Where a row is shown, for what it says of threads.
#[derive(PartialEq)]
pub(crate) enum ThreadRow {
    /// In its conversation: a top-level message, with what shows under it when it roots a
    /// thread (how many replies, the latest repliers) and the viewer's counts in that thread.
    Stream(Option<tally_shared::store::ThreadSummary>, tally_shared::Counts),
    /// In a thread's pane (its root, or a reply).
    Pane,
}

/// What shows under a root: "3 replies", the latest repliers, and how many are new for me.
fn thread_line(
    chat: &Chat,
    store: &ChatStore,
    m: &Message,
    summary: &tally_shared::store::ThreadSummary,
    counts: tally_shared::Counts,
) -> Html {
    let (conversation, root) = (m.conversation, m.seq);
    let open = chat.callback(move |_: MouseEvent| Action::OpenThread(Some((conversation, root))));
    let replies = tn("thread.replies", u64::from(summary.replies));
    let new = (counts.unread > 0).then(|| tn("thread.new", u64::from(counts.unread)));
    // Its name is its text ("2 replies, 1 new"): the comma is for screen readers only.
    html! {
        <button class={classes!("tally-thread-line", new.is_some().then_some("tally-thread-unread"))} data-testid="thread-line"
            data-replies={summary.replies.to_string()} data-unread={counts.unread.to_string()} onclick={open}>
            <span class="tally-repliers" aria-hidden="true">
                { for summary.repliers.iter().map(|p| html! { <span class="tally-avatar tally-avatar-small" title={store.name_of(p).to_string()}>{ util::initials(store.name_of(p)) }</span> }) }
            </span>
            <span>{ replies }</span>
            if let Some(n) = new { <span class="tally-sr-only">{ ", " }</span><span class="tally-thread-new">{ n }</span> }
        </button>
    }
}

/// Roughly how tall a message's menu is.
const MENU_HEIGHT: f64 = 240.0;

/// Whether a menu opened from `el` (inside a message) should open upwards.
fn opens_up(el: &web_sys::Element) -> bool {
    let (Some(message), Some(list)) = (
        el.closest(".tally-msg").ok().flatten(),
        el.closest(".tally-messages").ok().flatten(),
    ) else {
        return false;
    };
    let (m, l) = (
        message.get_bounding_client_rect(),
        list.get_bounding_client_rect(),
    );
    m.top() + MENU_HEIGHT > l.bottom() && m.top() - l.top() > l.bottom() - m.bottom()
}

/// Who has read a message, as its row says it.
#[derive(PartialEq)]
pub(crate) enum SeenLine {
    /// Nothing to say.
    Nothing,
    /// "Seen", under my newest message the other person has read (direct conversations).
    Seen,
    /// "Seen by …" for a group message, shown on hover, focus or tap.
    By(Vec<String>),
}

impl SeenLine {
    fn html(&self) -> Html {
        match self {
            SeenLine::Nothing => html! {},
            SeenLine::Seen => {
                html! { <div class="tally-seen" data-testid="seen">{ t("message.seen") }</div> }
            }
            SeenLine::By(names) => {
                let all = names.join(", ");
                let every = ta("message.seen_by", &[("names", &all)]);
                let text = if names.len() <= 3 {
                    every.clone()
                } else {
                    tn("message.seen_by_count", names.len() as u64)
                };
                html! { <div class="tally-seen tally-seen-by" data-testid="seen-by" title={every}>{ text }</div> }
            }
        }
    }
}

/// What a message's row shows, apart from the store's names and who I am.
#[derive(Properties, PartialEq)]
pub(crate) struct RowProps {
    /// The chat, for the store's names and for dispatching (equal while it is the same one).
    pub(crate) chat: Chat,
    /// The message as it is now.
    pub(crate) message: Message,
    /// Whether it follows its author's previous message closely (no name shown).
    pub(crate) grouped: bool,
    /// What its menu changes in the view.
    pub(crate) ui: RowActions,
    /// Who has read it.
    pub(crate) seen: SeenLine,
    /// What it says of threads.
    pub(crate) thread: ThreadRow,
    /// [`crate::state::ChatState::epoch`]: names, who I am and the language change only with
    /// it, so every row renders again when it moves.
    pub(crate) epoch: u64,
}

/// One message as a row of the list: a component, so that a frame renders again only the
/// rows whose message, reads or thread it changed (a new message in a conversation with 240
/// rows on screen built all 240 again, each parsing its text, before).
#[function_component(MessageRow)]
pub(crate) fn message_row_view(p: &RowProps) -> Html {
    let state = p.chat.state();
    message_row(
        &p.chat,
        &state.store,
        &p.message,
        p.grouped,
        &p.ui,
        &p.seen,
        &p.thread,
    )
}

/// One message as a row of the list.
fn message_row(
    chat: &Chat,
    store: &ChatStore,
    m: &Message,
    grouped: bool,
    ui: &RowActions,
    seen: &SeenLine,
    thread: &ThreadRow,
) -> Html {
    let RowActions {
        menu,
        reply_to,
        editing,
        forwarding,
        unfolded,
        press,
        menu_up,
        ..
    } = ui;
    let own = Some(&m.sender) == store.me();
    let key = format!("m-{}", m.seq);
    if let Some(tally_shared::model::Notice::System { title }) = m.notice.as_deref() {
        // The work app's own notice: its title, its text and its files, as a card.
        return html! {
            <li class="tally-notice tally-notice-app" {key} data-seq={m.seq.0.to_string()}>
                <strong class="tally-notice-title" dir="auto">{ title.clone() }</strong>
                if !m.body.is_empty() { <div class="tally-text" dir="auto">{ text_with_links(&m.body) }</div> }
                { for m.attachments.iter().map(|a| html! { <AttachmentView attachment={a.clone()} /> }) }
            </li>
        };
    }
    if m.notice.is_some() {
        return html! { <li class="tally-notice" {key} data-seq={m.seq.0.to_string()}>{ util::notice_text(store, m) }</li> };
    }
    let name = store.name_of(&m.sender).to_string();
    let menu_open = **menu == Some(m.id);
    // Opening the menu moves focus to its first item (keyboard users land in it); arrows move
    // between items, Escape closes it and gives focus back to its button.
    let toggle_menu = {
        let (menu, menu_up, id) = (menu.clone(), menu_up.clone(), m.id);
        Callback::from(move |e: MouseEvent| {
            let opening = *menu != Some(id);
            if let Some(el) = e.target_dyn_into::<web_sys::Element>() {
                menu_up.set(opening && opens_up(&el));
            }
            menu.set(opening.then_some(id));
            if let Some(actions) = util::event_within(&e, ".tally-msg-actions")
                && opening
            {
                gloo::timers::callback::Timeout::new(0, move || {
                    let first = actions
                        .query_selector("[role=menuitem]")
                        .ok()
                        .flatten()
                        .and_then(|f| f.dyn_into::<web_sys::HtmlElement>().ok());
                    if let Some(first) = first {
                        let _ = first.focus();
                    }
                })
                .forget();
            }
        })
    };
    let menu_keys = {
        let menu = menu.clone();
        Callback::from(move |e: KeyboardEvent| match e.key().as_str() {
            "ArrowDown" | "ArrowUp" if !e.alt_key() => {
                e.prevent_default();
                let step = if e.key() == "ArrowDown" { 1 } else { -1 };
                util::move_focus(&e, ".tally-menu", "[role=menuitem]", step);
            }
            "Escape" => {
                e.stop_propagation();
                menu.set(None);
                let button = util::event_within(&e, ".tally-msg-actions")
                    .and_then(|a| a.query_selector(".tally-menu-button").ok().flatten())
                    .and_then(|b| b.dyn_into::<web_sys::HtmlElement>().ok());
                if let Some(b) = button {
                    let _ = b.focus();
                }
            }
            _ => {}
        })
    };
    let act = |f: Box<dyn Fn()>| {
        let menu = menu.clone();
        Callback::from(move |_: MouseEvent| {
            f();
            menu.set(None);
        })
    };
    // An action that leaves focus nowhere else gives it back to the menu's button.
    let refocus = |e: &MouseEvent| {
        let button = util::event_within(e, ".tally-msg-actions")
            .and_then(|a| a.query_selector(".tally-menu-button").ok().flatten())
            .and_then(|b| b.dyn_into::<web_sys::HtmlElement>().ok());
        if let Some(b) = button {
            gloo::timers::callback::Timeout::new(0, move || {
                let _ = b.focus();
            })
            .forget();
        }
    };
    let (conversation, seq, id) = (m.conversation, m.seq, m.id);
    let on_reply = {
        let (r, m) = (reply_to.clone(), m.clone());
        act(Box::new(move || r.set(Some(m.clone()))))
    };
    let on_more = {
        let (picker, menu) = (ui.picker.clone(), menu.clone());
        Callback::from(move |_: MouseEvent| {
            picker.set(Some(id));
            menu.set(None);
        })
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
        let chat = chat.clone();
        act(Box::new(move || {
            if gloo::dialogs::confirm(&t("message.confirm_delete")) {
                chat.dispatch(Action::Request(Request::DeleteMessage { message: id }));
            }
        }))
    };
    // In a thread, marking a reply unread moves the thread's watermark.
    let in_thread = m.thread;
    let on_unread = {
        let (chat, menu) = (chat.clone(), menu.clone());
        Callback::from(move |e: MouseEvent| {
            chat.dispatch(Action::Request(match in_thread {
                Some(root) => Request::MarkThreadUnread {
                    conversation,
                    thread: root,
                    from: seq,
                },
                None => Request::MarkUnread {
                    conversation,
                    from: seq,
                },
            }));
            menu.set(None);
            refocus(&e);
        })
    };
    let on_thread = {
        let chat = chat.clone();
        act(Box::new(move || {
            chat.dispatch(Action::OpenThread(Some((conversation, seq))))
        }))
    };
    let in_stream = matches!(thread, ThreadRow::Stream(..));
    // The root at the top of its own pane is not marked unread there (the conversation is).
    let can_unread = !own && (in_stream || m.thread.is_some());
    // A long press (touch) opens the menu, as the button does; moving the finger cancels it.
    let touch = |e: &PointerEvent| e.pointer_type() == "touch";
    let onpointerdown = {
        let (menu, menu_up, press, id) = (menu.clone(), menu_up.clone(), press.clone(), m.id);
        let deleted = m.deleted;
        Callback::from(move |e: PointerEvent| {
            if !touch(&e) || deleted {
                return;
            }
            let (menu, menu_up) = (menu.clone(), menu_up.clone());
            let up = e
                .target_dyn_into::<web_sys::Element>()
                .is_some_and(|el| opens_up(&el));
            let timer = gloo::timers::callback::Timeout::new(LONG_PRESS_MS, move || {
                menu_up.set(up);
                menu.set(Some(id));
            });
            *press.borrow_mut() = Some((timer, e.client_x(), e.client_y()));
        })
    };
    let onpointermove = {
        let press = press.clone();
        Callback::from(move |e: PointerEvent| {
            let moved = press
                .borrow()
                .as_ref()
                .is_some_and(|(_, x, y)| (e.client_x() - x).abs() + (e.client_y() - y).abs() > 12);
            if moved {
                press.borrow_mut().take();
            }
        })
    };
    let release = {
        let press = press.clone();
        Callback::from(move |_: PointerEvent| {
            press.borrow_mut().take();
        })
    };
    // The browser's own long-press menu would cover ours.
    let oncontextmenu = {
        let menu = menu.clone();
        let id = m.id;
        Callback::from(move |e: MouseEvent| {
            if *menu == Some(id) {
                e.prevent_default();
            }
        })
    };
    let folded = !m.deleted && is_long(&m.body) && !unfolded.contains(&m.id);
    let show_versions = {
        let (history, id) = (ui.history.clone(), m.id);
        Callback::from(move |_: MouseEvent| history.set(Some(id)))
    };
    let toggle_fold = {
        let (unfolded, id) = (unfolded.clone(), m.id);
        Callback::from(move |_: MouseEvent| {
            let mut all = (*unfolded).clone();
            if !all.remove(&id) {
                all.insert(id);
            }
            unfolded.set(all);
        })
    };
    html! {
        <li class={classes!("tally-msg", own.then_some("tally-msg-own"), grouped.then_some("tally-msg-grouped"), m.deleted.then_some("tally-msg-deleted"))}
            {key} data-seq={m.seq.0.to_string()}
            {onpointerdown} {onpointermove} onpointerup={release.clone()} onpointercancel={release} {oncontextmenu}>
            if !grouped && !own { <div class="tally-msg-author" dir="auto">{ name }</div> }
            <div class="tally-bubble">
                if let Some(f) = &m.forwarded_from {
                    <div class="tally-forwarded">{ ta("message.forwarded_from", &[("name", store.name_of(&f.sender))]) }</div>
                }
                if let Some(r) = &m.reply_to {
                    <div class="tally-quote"><strong dir="auto">{ store.name_of(&r.sender).to_string() }</strong>{" "}
                        if r.deleted { <span>{ t("message.quote_deleted") }</span> } else { <span dir="auto">{ r.excerpt.clone() }</span> }
                    </div>
                }
                if m.deleted {
                    <em>{ t("message.deleted") }</em>
                } else {
                    <div class={classes!("tally-text", folded.then_some("tally-folded"))} dir="auto">{ formatted(m, store.me()) }</div>
                    if is_long(&m.body) {
                        <button class="tally-link tally-fold" aria-expanded={(!folded).to_string()} onclick={toggle_fold} data-testid="fold">
                            { if folded { t("message.show_more") } else { t("message.show_less") } }
                        </button>
                    }
                    { for m.attachments.iter().map(|a| html! { <AttachmentView attachment={a.clone()} /> }) }
                }
                <span class="tally-msg-meta">
                    if m.edited_at.is_some() && !m.deleted {
                        <button class="tally-link tally-edited" data-testid="edited" aria-haspopup="dialog"
                            title={t("message.versions")} onclick={show_versions}>{ t("message.edited") }</button>{" · "}
                    }
                    <time>{ util::time_of_day(m.created_at) }</time>
                </span>
            </div>
            if !m.deleted && !m.reactions.is_empty() {
                { reactions_row(chat, store, m) }
            }
            if let ThreadRow::Stream(Some(summary), counts) = thread {
                { thread_line(chat, store, m, summary, *counts) }
            }
            { seen.html() }
            if !m.deleted {
                <div class="tally-msg-actions">
                    <button class="tally-icon-button tally-menu-button" aria-label={t("message.actions")} aria-haspopup="menu"
                        aria-expanded={menu_open.to_string()} onclick={toggle_menu}>{ icons::more() }</button>
                    if menu_open {
                        <div class={classes!("tally-menu", menu_up.then_some("tally-menu-up"))} role="menu" onkeydown={menu_keys}>
                            if in_stream { <button role="menuitem" onclick={on_reply}>{ t("message.reply") }</button> }
                            if in_stream { <button role="menuitem" onclick={on_thread} data-testid="reply-in-thread">{ t("message.reply_in_thread") }</button> }
                            <button role="menuitem" onclick={on_forward}>{ t("message.forward") }</button>
                            if own { <button role="menuitem" onclick={on_edit}>{ t("message.edit") }</button> }
                            if own { <button role="menuitem" onclick={on_delete}>{ t("message.delete") }</button> }
                            if can_unread { <button role="menuitem" onclick={on_unread}>{ t("message.mark_unread") }</button> }
                            <button role="menuitem" class="tally-phone-only" data-testid="react-item" onclick={on_more.clone()}>{ t("message.react_item") }</button>
                            <div class="tally-quick-reactions" role="group" aria-label={t("message.react")}>
                                { for QUICK_REACTIONS.iter().map(|e| {
                                    let (chat, menu, mine) = (chat.clone(), menu.clone(), reacted(m, store.me(), e));
                                    let onclick = Callback::from(move |_: MouseEvent| {
                                        chat.dispatch(Action::react(id, e, !mine));
                                        menu.set(None);
                                    });
                                    html! { <button role="menuitemcheckbox" class="tally-emoji" aria-checked={mine.to_string()} data-testid="quick-reaction" {onclick}>{ *e }</button> }
                                }) }
                                <button role="menuitem" class="tally-emoji" aria-label={t("reactions.more")} data-testid="more-reactions" onclick={on_more}>{ "＋" }</button>
                            </div>
                        </div>
                    }
                </div>
            }
        </li>
    }
}

/// Whether a text is long enough to fold.
fn is_long(body: &str) -> bool {
    body.chars().count() > FOLD_CHARS || body.lines().count() > FOLD_LINES
}

/// A message's text with its links as links (`http:`, `https:` and `mailto:` only, opening
/// elsewhere and telling the other site nothing): the rest is text, never markup.
pub(super) fn text_with_links(body: &str) -> Html {
    use tally_shared::text::{Segment, safe_href, segments};
    html! {
        <>
            { for segments(body).into_iter().map(|s| match s {
                Segment::Link(link) if safe_href(link) => html! {
                    <a href={link.to_string()} target="_blank" rel="noopener noreferrer">{ link.to_string() }</a>
                },
                Segment::Link(text) | Segment::Text(text) => html! { { text.to_string() } },
            }) }
        </>
    }
}

/// Properties.
#[derive(Properties, PartialEq)]
pub(super) struct AttachmentProps {
    /// The file.
    pub(crate) attachment: Attachment,
}

/// A file link, or a preview for images. Fetched with the token in a header.
#[function_component(AttachmentView)]
pub(super) fn attachment_view(props: &AttachmentProps) -> Html {
    // It reads only the mount options, never the store.
    let chat = use_chat_for(crate::state::Interest::Props);
    let url = use_state(|| None::<String>);
    let a = props.attachment.clone();
    let is_image = tally_shared::limits::INLINE_IMAGE_TYPES.contains(&a.content_type.as_str());
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
    let size = crate::i18n::Locale::current().bytes(a.size);
    html! {
        <div class="tally-file">
            if is_image {
                // The preview's box is there before its bytes are: nothing below it moves.
                if let Some(u) = (*url).clone() {
                    <img class="tally-image" src={u} alt={a.name.clone()} />
                } else {
                    <div class="tally-image" aria-hidden="true" />
                }
            }
            <a href="#" onclick={download} data-testid="attachment" dir="auto">{ icons::paperclip() }{" "}{ a.name.clone() }</a>
            <span class="tally-file-size">{ format!(" · {size}") }</span>
        </div>
    }
}
