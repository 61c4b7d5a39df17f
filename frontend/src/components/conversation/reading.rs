//! Reading by what the viewport shows: an IntersectionObserver tells the store which messages
//! came into view; a short debounce later, while the page is visible and focused, the store
//! decides whether that asks for a `mark_read` (the rule lives in `ChatStore::read_seen`).

use std::cell::RefCell;
use std::rc::Rc;

use gloo::events::EventListener;
use gloo::timers::callback::Timeout;
use tally_shared::{ConversationId, Seq};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{IntersectionObserver, IntersectionObserverEntry};
use yew::prelude::*;

use crate::chat::Chat;
use crate::state::Action;

fn document_attends() -> bool {
    let doc = gloo::utils::document();
    doc.visibility_state() == web_sys::VisibilityState::Visible && doc.has_focus().unwrap_or(false)
}

/// The observer that rows with a `data-seq` are given to, with the callback it calls.
pub(crate) type Observer = Rc<(Option<IntersectionObserver>, Closure<dyn Fn(js_sys::Array)>)>;

/// Reads what comes into view in conversation `id` (in its thread under `thread`, for the
/// thread pane), until it closes (which reads at once).
#[hook]
pub(crate) fn use_reading(chat: &Chat, id: ConversationId, thread: Option<Seq>) -> Observer {
    let key = (id, thread);
    // `flush(false)` asks after a short debounce; `flush(true)` at once (leaving the view).
    let flush = {
        let chat = chat.clone();
        use_memo(key, move |_| {
            let timer: Rc<RefCell<Option<Timeout>>> = Rc::default();
            Rc::new(move |now: bool| {
                let chat = chat.clone();
                let read = move || {
                    if document_attends() {
                        chat.dispatch(match thread {
                            None => Action::ReadSeen(id),
                            Some(root) => Action::ReadThreadSeen(id, root),
                        });
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
        let (chat, flush) = (chat.clone(), (*flush).clone());
        use_memo(key, move |_| {
            let cb = Closure::<dyn Fn(js_sys::Array)>::new(move |entries: js_sys::Array| {
                let newest = entries
                    .iter()
                    .map(|e| e.unchecked_into::<IntersectionObserverEntry>())
                    .filter(IntersectionObserverEntry::is_intersecting)
                    .filter_map(|e| e.target().get_attribute("data-seq")?.parse::<u64>().ok())
                    .max();
                if let Some(seq) = newest {
                    chat.dispatch(match thread {
                        None => Action::Seen(id, Seq(seq)),
                        Some(root) => Action::ThreadSeen(id, root, Seq(seq)),
                    });
                }
                flush(false);
            });
            let obs = IntersectionObserver::new(cb.as_ref().unchecked_ref()).ok();
            (obs, cb)
        })
    };
    {
        let (flush, observer) = ((*flush).clone(), observer.clone());
        use_effect_with(key, move |_| {
            let (f1, f2) = (flush.clone(), flush.clone());
            let visible =
                EventListener::new(&gloo::utils::document(), "visibilitychange", move |_| f1(false));
            let focus = EventListener::new(&gloo::utils::window(), "focus", move |_| f2(false));
            move || {
                drop((visible, focus));
                if let Some(o) = &observer.0 {
                    o.disconnect();
                }
                // Leaving the conversation: what the viewport showed was read.
                flush(true);
            }
        });
    }
    observer
}
