//! The chat context every component reads: one [`ChatState`], held in place and changed by
//! [`Chat::dispatch`], which then sends the frames the change produced, saves the outbox when
//! it moved, and renders again the components the change touches (each watches with an
//! [`Interest`]; the context itself never changes, so Yew renders nothing else). Nothing is
//! copied per frame: components borrow what they show (see `docs/architecture.md`).

use std::cell::{Cell, Ref, RefCell};
use std::rc::Rc;

use tally_shared::protocol::ServerFrame;
use tally_shared::{ClientFrame, Offset};
use yew::Callback;

use crate::connection::Outlet;
use crate::options::MountOptions;
use crate::state::{Action, ChatState, Interest};
use crate::util;

/// Instead of a socket, for tests: frames the widget sent, and a way to deliver frames to it.
#[derive(Clone, Default)]
pub struct Harness {
    /// Every frame the widget sent, in order.
    pub sent: Rc<RefCell<Vec<ClientFrame>>>,
    core: Rc<RefCell<Option<Rc<Core>>>>,
}

impl PartialEq for Harness {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.sent, &other.sent)
    }
}

impl Harness {
    /// Delivers a frame as if the relay had sent it.
    pub fn deliver(&self, frame: ServerFrame) {
        self.dispatch(Action::Frame(frame));
    }

    /// Dispatches any action (a test standing in for a click elsewhere).
    pub fn dispatch(&self, action: Action) {
        let core = self.core.borrow().clone();
        if let Some(core) = core {
            core.dispatch(action);
        }
    }
}

/// What the host page's handle (`Widget`) reaches: the core once the widget has made it (what
/// it was asked before is kept until then), and who listens for the counts.
#[derive(Clone, Default)]
pub struct Handle {
    core: Rc<RefCell<Option<Rc<Core>>>>,
    waiting: Rc<RefCell<Vec<Action>>>,
    listeners: Rc<RefCell<Vec<js_sys::Function>>>,
}

impl PartialEq for Handle {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.core, &other.core)
    }
}

impl Handle {
    /// The widget's core is there: what was asked before it runs now.
    pub fn attach(&self, core: Rc<Core>) {
        *self.core.borrow_mut() = Some(core.clone());
        let waiting = std::mem::take(&mut *self.waiting.borrow_mut());
        for action in waiting {
            core.dispatch(action);
        }
    }

    /// Dispatches an action (kept until the core is there).
    pub fn dispatch(&self, action: Action) {
        let core = self.core.borrow().clone();
        match core {
            Some(core) => core.dispatch(action),
            None => self.waiting.borrow_mut().push(action),
        }
    }

    /// The totals as they are now (none until the relay has said them: a `counts` frame or the
    /// first snapshot).
    pub fn total(&self) -> Option<tally_shared::Totals> {
        let core = self.core.borrow().clone()?;
        let state = core.state.borrow();
        state.store.counts_known().then(|| state.store.total())
    }

    /// Calls `f({unread, mentions})` now (once counts are known) and on every change.
    pub fn on_unread(&self, f: js_sys::Function) {
        if let Some(total) = self.total() {
            let _ = f.call1(&wasm_bindgen::JsValue::NULL, &unread_detail(total));
        }
        self.listeners.borrow_mut().push(f);
    }

    /// Tells the listeners the totals changed.
    pub fn tell(&self, total: tally_shared::Totals) {
        let detail = unread_detail(total);
        let listeners = self.listeners.borrow().clone();
        for f in listeners {
            let _ = f.call1(&wasm_bindgen::JsValue::NULL, &detail);
        }
    }
}

/// `{unread, mentions}`, for a host page.
pub fn unread_detail(total: tally_shared::Totals) -> wasm_bindgen::JsValue {
    let o = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&o, &"unread".into(), &f64::from(total.unread).into());
    let _ = js_sys::Reflect::set(&o, &"mentions".into(), &f64::from(total.mentions).into());
    o.into()
}

/// Where frames to send go.
enum Sink {
    /// The WebSocket's writer, when connected.
    Socket(Outlet),
    /// A test's record.
    Harness(Harness),
}

/// The state and the paths out of it; one per mounted widget.
pub struct Core {
    state: RefCell<ChatState>,
    sink: Sink,
    storage_key: String,
    /// The mounted components, what they render from and how to render them again.
    watchers: RefCell<Vec<(Rc<Watch>, Callback<()>)>>,
    next_watch: Cell<u64>,
    /// Desktop notifications, coordinated with this person's other tabs.
    notifier: crate::notify::Notifier,
    /// What was typed and not sent, per conversation.
    drafts: crate::drafts::Drafts,
    /// Itself, for what a notification's click dispatches later.
    this: RefCell<std::rc::Weak<Core>>,
}

impl Core {
    /// The widget's core, holding the saved outbox; frames go to `harness` when given.
    pub fn new(options: &MountOptions, harness: Option<Harness>) -> Rc<Core> {
        let storage_key = options.storage_key();
        let mut state = ChatState::new(util::load_outbox(&storage_key));
        state.panel_open = options.open.unwrap_or(false);
        let sink = match &harness {
            Some(h) => Sink::Harness(h.clone()),
            None => Sink::Socket(Outlet::default()),
        };
        let core = Rc::new(Core {
            state: RefCell::new(state),
            sink,
            storage_key,
            watchers: RefCell::default(),
            next_watch: Cell::new(0),
            notifier: crate::notify::Notifier::default(),
            drafts: crate::drafts::Drafts::default(),
            this: RefCell::default(),
        });
        *core.this.borrow_mut() = Rc::downgrade(&core);
        if let Some(h) = harness {
            *h.core.borrow_mut() = Some(core.clone());
        }
        core
    }

    /// Where the connection puts its writer (none in tests).
    pub fn outlet(&self) -> Option<Outlet> {
        match &self.sink {
            Sink::Socket(o) => Some(o.clone()),
            Sink::Harness(_) => None,
        }
    }

    /// The offset of the last event applied (what a reconnect resumes from).
    pub fn applied(&self) -> Offset {
        self.state.borrow().store.applied()
    }

    /// Whether no send is waiting (a reload would lose nothing).
    pub fn outbox_is_empty(&self) -> bool {
        self.state.borrow().store.outbox().is_empty()
    }

    /// Offers what arrived to the notifier, with the names it shows and what a click does.
    /// Quiet hours and snoozes (the relay's, so every tab and device obeys them) hold it back,
    /// but for a mention of me when I let those through; counts and badges never change.
    fn notify(&self, me: &tally_shared::StaffId, mut news: Vec<(tally_shared::Message, bool)>) {
        {
            let state = self.state.borrow();
            let quiet = state.store.quiet();
            if quiet.is_set(crate::quiet::now()) {
                let now_quiet = crate::quiet::is_quiet_now(quiet);
                news.retain(|(m, _)| quiet.lets_through(now_quiet, m.mentions.contains(me)));
            }
        }
        let this = self.this.borrow().clone();
        let open = move |c| {
            if let Some(core) = this.upgrade() {
                core.dispatch(Action::Show(c));
            }
        };
        let state = self.state.borrow();
        let title = |c| {
            state
                .store
                .conversation(c)
                .map(|v| util::shown_title(&state.store.title_of(&v.conversation)))
                .unwrap_or_default()
        };
        let name = |m: &tally_shared::Message| state.store.name_of(&m.sender).to_string();
        self.notifier.offer(me.as_str(), news, title, name, open);
    }

    /// Calls `rerender` after each change that touches `interest` (which the watcher may
    /// change as its properties do), until [`Core::unwatch`].
    pub fn watch(&self, interest: Interest, rerender: Callback<()>) -> Rc<Watch> {
        let id = self.next_watch.get();
        self.next_watch.set(id + 1);
        let watch = Rc::new(Watch {
            id,
            interest: Cell::new(interest),
        });
        self.watchers.borrow_mut().push((watch.clone(), rerender));
        watch
    }

    /// Stops calling a watcher (its component unmounted).
    pub fn unwatch(&self, watch: &Watch) {
        self.watchers.borrow_mut().retain(|(w, _)| w.id != watch.id);
    }

    /// Changes the state in place, then sends the frames the change produced, saves the
    /// outbox if it moved, and asks for a render.
    pub fn dispatch(&self, action: Action) {
        let (frames, news, me, changed) = {
            let mut state = self.state.borrow_mut();
            let outbox = state.store.outbox_revision();
            let frames = state.reduce(action);
            if state.store.outbox_revision() != outbox {
                util::save_outbox(&self.storage_key, state.store.outbox());
            }
            let news = std::mem::take(&mut state.news);
            let changed = std::mem::take(&mut state.changed);
            (frames, news, state.store.me().cloned(), changed)
        };
        if let Some(me) = &me {
            self.drafts.bind(&self.storage_key, me);
            if matches!(&self.state.borrow().connection, crate::state::ConnectionState::Offline(why) if why == "status.deactivated")
            {
                self.drafts.clear();
            }
        }
        if self.notifier.showing() > 0 {
            let state = self.state.borrow();
            let store = &state.store;
            self.notifier.close_read(|n| {
                let unread = match n.thread {
                    None => store.last_read(n.conversation) < n.seq,
                    Some(root) => store
                        .thread_last_read(n.conversation, root)
                        .is_some_and(|w| w < n.seq),
                };
                let shown = store.conversation(n.conversation).is_some()
                    && (!store.is_muted(n.conversation) || n.mentions_me);
                unread && shown
            });
        }
        if let (Some(me), Sink::Socket(_)) = (me, &self.sink)
            && !news.is_empty()
        {
            self.notify(&me, news);
        }
        for frame in &frames {
            match &self.sink {
                // When not connected the frame is dropped: sends wait in the outbox and are
                // resent on reconnect; reads are asked for again when next seen.
                Sink::Socket(outlet) => {
                    outlet.send(frame);
                }
                Sink::Harness(h) => h.sent.borrow_mut().push(frame.clone()),
            }
        }
        // Taken out first: rendering may mount components, which watch.
        let due: Vec<Callback<()>> = self
            .watchers
            .borrow()
            .iter()
            .filter(|(w, _)| changed.touches(w.interest.get()))
            .map(|(_, rerender)| rerender.clone())
            .collect();
        for rerender in due {
            rerender.emit(());
        }
    }
}

/// A component's watch on the core (see [`Core::watch`]).
pub struct Watch {
    id: u64,
    /// What the component renders from now.
    pub interest: Cell<Interest>,
}

/// What components get from context: the core and the mount options. It stays equal for the
/// widget's life, so a change renders only the components that watch for it.
#[derive(Clone)]
pub struct Chat {
    core: Rc<Core>,
    /// The mount options.
    pub options: Rc<MountOptions>,
}

impl PartialEq for Chat {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.core, &other.core) && Rc::ptr_eq(&self.options, &other.options)
    }
}

impl Chat {
    /// The context around a core.
    pub fn new(core: Rc<Core>, options: Rc<MountOptions>) -> Chat {
        Chat { core, options }
    }

    /// See [`Core::watch`].
    pub fn watch(&self, interest: Interest, rerender: Callback<()>) -> Rc<Watch> {
        self.core.watch(interest, rerender)
    }

    /// See [`Core::unwatch`].
    pub fn unwatch(&self, watch: &Watch) {
        self.core.unwatch(watch);
    }

    /// Borrows the state (for rendering; never held across a dispatch).
    pub fn state(&self) -> Ref<'_, ChatState> {
        self.core.state.borrow()
    }

    /// Changes the state (see [`Core::dispatch`]).
    pub fn dispatch(&self, action: Action) {
        self.core.dispatch(action);
    }

    /// The draft of a conversation ("" when none).
    pub fn draft(&self, conversation: tally_shared::ConversationId) -> String {
        self.core.drafts.get(conversation)
    }

    /// Keeps what is typed in a conversation (empty: forgets it).
    pub fn set_draft(&self, conversation: tally_shared::ConversationId, text: &str) {
        self.core.drafts.set(conversation, text);
    }

    /// The conversations with a draft.
    pub fn drafts(&self) -> std::collections::HashSet<tally_shared::ConversationId> {
        self.core.drafts.conversations()
    }

    /// A callback that dispatches the action `make` builds from its event.
    pub fn callback<E: 'static>(&self, make: impl Fn(E) -> Action + 'static) -> Callback<E> {
        let core = self.core.clone();
        Callback::from(move |e| core.dispatch(make(e)))
    }
}
