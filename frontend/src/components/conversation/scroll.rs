//! Scrolling: older history loaded when the reader nears the top, the view kept steady while it
//! arrives, new messages followed only by a reader already at the bottom, and the first unread
//! message shown on opening.

use std::cell::RefCell;
use std::rc::Rc;

use tally_shared::store::{WINDOW_CONTEXT, Window};
use tally_shared::{ConversationId, Seq};
use wasm_bindgen::JsCast;
use web_sys::Element;
use yew::prelude::*;

use super::reading::Observer;
use crate::api;
use crate::chat::Chat;
use crate::state::Action;

/// What the list needs to page and keep its place.
pub(super) struct Scroll {
    /// Loads the page before the oldest loaded message.
    pub(super) load_older: Callback<()>,
    /// Whether a page is on its way.
    pub(super) loading: bool,
    /// The list's scroll handler.
    pub(super) onscroll: Callback<Event>,
    /// Whether the reader is scrolled up, away from the newest messages.
    pub(super) scrolled_up: bool,
    /// Scrolls to the newest messages.
    pub(super) to_bottom: Callback<()>,
}

/// Where the conversation's loaded messages begin and whether all of them are rendered.
pub(super) struct Paging {
    /// The oldest loaded message.
    pub(super) oldest: Option<Seq>,
    /// Whether it is the first message of the conversation.
    pub(super) complete: bool,
    /// The newest message.
    pub(super) head: Seq,
    /// Whether loaded messages wait above the rendered ones.
    pub(super) hidden_above: bool,
    /// How many messages are rendered.
    pub(super) rendered: usize,
    /// Whether loaded messages wait below the rendered ones.
    pub(super) hidden_below: bool,
}

/// Scrolling for conversation `id`, whose list is `list` and renders the messages from
/// `window` on.
#[hook]
pub(super) fn use_scroll(
    chat: &Chat,
    id: ConversationId,
    list: NodeRef,
    observer: Observer,
    paging: Paging,
    window: UseStateHandle<Window>,
) -> Scroll {
    let count = paging.rendered;
    let loading = use_state(|| false);
    let near_bottom = use_mut_ref(|| true);
    // The same, as state that renders: changed only when it flips, not on every scroll event.
    let scrolled_up = use_state(|| false);
    // A row and where it was on screen before the rows above changed: the view is put back so
    // that it is there again (rows added above, and released below, move nothing the reader
    // sees).
    let anchor: Rc<RefCell<Option<(String, f64)>>> = use_mut_ref(|| None);
    {
        let (list, near_bottom, anchor) = (list.clone(), near_bottom.clone(), anchor.clone());
        let w = *window;
        use_effect_with((id, count, w.from, w.to), move |_| {
            if let Some(list) = list.cast::<Element>() {
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
                if let Some((seq, old_top)) = anchor.borrow_mut().take() {
                    if let Ok(Some(row)) = list.query_selector(&format!("[data-seq='{seq}']")) {
                        let moved = row.get_bounding_client_rect().top() - old_top;
                        list.set_scroll_top(list.scroll_top() + moved.round() as i32);
                    }
                } else if *near_bottom.borrow() {
                    list.set_scroll_top(list.scroll_height());
                }
            }
        });
    }
    // On opening, show the first unread message (the opening window always holds it).
    {
        let list = list.clone();
        use_effect_with(id, move |_| {
            if let Some(list) = list.cast::<Element>()
                && let Ok(Some(d)) = list.query_selector(".tally-divider")
            {
                d.scroll_into_view();
            }
        });
    }
    let Paging {
        oldest,
        complete,
        head,
        hidden_above,
        hidden_below,
        ..
    } = paging;
    // Loaded messages above the rendered ones come first; then a page from the relay.
    let load_older = {
        let (chat, loading, list, anchor) = (chat.clone(), loading.clone(), list.clone(), anchor.clone());
        let window = window.clone();
        Callback::from(move |_: ()| {
            if *loading || (complete && !hidden_above) {
                return;
            }
            if let Some(list) = list.cast::<Element>()
                && let Ok(Some(row)) = list.query_selector("[data-seq]")
                && let Some(seq) = row.get_attribute("data-seq")
            {
                *anchor.borrow_mut() = Some((seq, row.get_bounding_client_rect().top()));
            }
            if hidden_above {
                let store = &chat.state().store;
                let from = store.widen_window(id, window.from);
                window.set(store.bounded_window(id, Window { from, ..*window }, true));
                return;
            }
            let before = oldest.unwrap_or(Seq(head.0 + 1));
            loading.set(true);
            let (chat, loading, window) = (chat.clone(), loading.clone(), window.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::history(&chat.options, id, before, 50).await {
                    Ok(messages) => {
                        let first = messages.first().map(|m| m.seq);
                        chat.dispatch(Action::History(id, messages));
                        if let Some(first) = first {
                            let from = first.min(window.from);
                            window.set(chat.state().store.bounded_window(
                                id,
                                Window { from, ..*window },
                                true,
                            ));
                        }
                    }
                    Err(e) => gloo::console::warn!(format!("tally: history: {e}")),
                }
                loading.set(false);
            });
        })
    };
    // Loaded messages below the rendered ones come when the reader nears the rendered bottom.
    let load_newer = {
        let (chat, window) = (chat.clone(), window.clone());
        Callback::from(move |_: ()| {
            if let Some(to) = window.to {
                let store = &chat.state().store;
                let to = store.extend_window(id, to);
                window.set(store.bounded_window(id, Window { to, ..*window }, false));
            }
        })
    };
    let onscroll = {
        let (load_older, near_bottom, scrolled_up) =
            (load_older.clone(), near_bottom.clone(), scrolled_up.clone());
        Callback::from(move |e: Event| {
            if let Some(el) = e.target_dyn_into::<Element>() {
                let below = el.scroll_height() - el.scroll_top() - el.client_height();
                if hidden_below && below < 200 {
                    load_newer.emit(());
                }
                // At the bottom only when nothing waits below: new messages are followed, and
                // rows added below are not (or they would all be, one step after another).
                let at_bottom = below < 80 && !hidden_below;
                *near_bottom.borrow_mut() = at_bottom;
                if *scrolled_up == at_bottom {
                    scrolled_up.set(!at_bottom);
                }
                if el.scroll_top() < 60 {
                    load_older.emit(());
                }
            }
        })
    };
    // To the newest: with rows waiting below, the newest window instead, followed once drawn.
    let to_bottom = {
        let (chat, list, window, near_bottom) =
            (chat.clone(), list.clone(), window.clone(), near_bottom.clone());
        Callback::from(move |_: ()| {
            if hidden_below {
                *near_bottom.borrow_mut() = true;
                window.set(chat.state().store.newest_window(id));
            } else if let Some(list) = list.cast::<web_sys::HtmlElement>() {
                list.set_scroll_top(list.scroll_height());
            }
        })
    };
    Scroll {
        load_older,
        loading: *loading,
        onscroll,
        scrolled_up: *scrolled_up,
        to_bottom,
    }
}

/// The most history pages loaded to reach a message (a jump's, or the first unread one).
const MAX_JUMP_PAGES: usize = 50;

/// Loads older pages of a conversation until `target` and a few messages before it are loaded,
/// or its history is complete (or [`MAX_JUMP_PAGES`] were loaded).
async fn load_back_to(chat: &Chat, id: ConversationId, target: Seq) {
    for _ in 0..MAX_JUMP_PAGES {
        let (oldest, complete, head) = {
            let state = chat.state();
            let view = state.store.conversation(id);
            (
                view.and_then(|v| v.oldest_loaded()),
                state.store.history_complete(id),
                state.store.head(id),
            )
        };
        let reached = oldest.is_some_and(|o| o.0 + WINDOW_CONTEXT as u64 <= target.0);
        if complete || reached {
            return;
        }
        let before = oldest.unwrap_or(Seq(head.0 + 1));
        let limit = tally_shared::limits::HISTORY_PAGE_MAX;
        match api::history(&chat.options, id, before, limit).await {
            Ok(page) if !page.is_empty() => chat.dispatch(Action::History(id, page)),
            Ok(_) => return,
            Err(e) => {
                gloo::console::warn!(format!("tally: history: {e}"));
                return;
            }
        }
    }
}

/// Opening a conversation whose first unread message is older than what is loaded (a snapshot
/// carries each conversation's messages only up to a budget): loads the history back to it,
/// then renders from there and shows the divider, as if it had been loaded all along.
#[hook]
pub(super) fn use_unread_history(
    chat: &Chat,
    id: ConversationId,
    list: NodeRef,
    window: UseStateHandle<Window>,
    divider: Seq,
) {
    let show = use_mut_ref(|| false);
    {
        let (chat, show) = (chat.clone(), show.clone());
        use_effect_with(id, move |_| {
            let first_unread = Seq(divider.0 + 1);
            let missing = {
                let state = chat.state();
                let oldest = state.store.conversation(id).and_then(|v| v.oldest_loaded());
                first_unread <= state.store.head(id)
                    && !state.store.history_complete(id)
                    && oldest.is_none_or(|o| o > first_unread)
            };
            if missing {
                wasm_bindgen_futures::spawn_local(async move {
                    load_back_to(&chat, id, first_unread).await;
                    window.set(chat.state().store.opening_window(id, divider));
                    *show.borrow_mut() = true;
                });
            }
        });
    }
    use_effect(move || {
        if !*show.borrow() {
            return;
        }
        if let Some(list) = list.cast::<Element>()
            && let Ok(Some(d)) = list.query_selector(".tally-divider")
        {
            d.scroll_into_view();
            *show.borrow_mut() = false;
        }
    });
}

/// Jumping to a message (a search result): loads the history back to it (and a little before
/// it), widens the rendered window to hold it, then, after the render that shows it, scrolls
/// it to the middle of the list and marks it for a moment.
#[hook]
pub(super) fn use_jump(chat: &Chat, id: ConversationId, list: NodeRef, window: UseStateHandle<Window>) {
    let target = chat.state().jump_to.filter(|(c, _)| *c == id).map(|(_, seq)| seq);
    let show: Rc<RefCell<Option<Seq>>> = use_mut_ref(|| None);
    {
        let (chat, show) = (chat.clone(), show.clone());
        use_effect_with(target, move |target| {
            let Some(target) = *target else { return };
            wasm_bindgen_futures::spawn_local(async move {
                load_back_to(&chat, id, target).await;
                window.set(chat.state().store.window_at(id, target));
                *show.borrow_mut() = Some(target);
                chat.dispatch(Action::Jumped);
            });
        });
    }
    // After every render: once the message is there, bring it into view (after the list's own
    // scrolling, which ran first).
    use_effect(move || {
        let Some(seq) = *show.borrow() else { return };
        let Some(list) = list.cast::<Element>() else {
            return;
        };
        if let Ok(Some(row)) = list.query_selector(&format!("[data-seq='{}']", seq.0)) {
            let options = web_sys::ScrollIntoViewOptions::new();
            options.set_block(web_sys::ScrollLogicalPosition::Center);
            row.scroll_into_view_with_scroll_into_view_options(&options);
            let _ = row.set_attribute("data-found", "");
            show.borrow_mut().take();
        }
    });
}
