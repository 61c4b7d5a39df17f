//! The root component: creates the chat core, starts the connection, provides the context, and
//! runs the effects that touch the page (its title, the console).

use std::rc::Rc;

use wasm_bindgen::JsCast;
use yew::prelude::*;

pub use crate::chat::Harness;
use crate::chat::{Chat, Core};
use crate::components::{launcher::Launcher, panel::Panel};
use crate::connection;
use crate::options::MountOptions;
use crate::state::{Action, Interest};

/// The root's properties.
#[derive(Properties, PartialEq)]
pub struct AppProps {
    /// From the host page.
    pub options: Rc<MountOptions>,
    /// Replaces the socket in tests.
    #[prop_or_default]
    pub harness: Option<Harness>,
    /// The host page's handle on this widget.
    #[prop_or_default]
    pub handle: Option<crate::chat::Handle>,
}

/// The widget.
#[function_component(App)]
pub fn app(props: &AppProps) -> Html {
    let options = props.options.clone();
    let core = {
        let (options, harness) = (options.clone(), props.harness.clone());
        use_memo((), move |_| Core::new(&options, harness))
    };
    {
        let (core, handle) = ((*core).clone(), props.handle.clone());
        use_effect_with((), move |_| {
            if let Some(h) = handle {
                h.attach(core);
            }
        });
    }
    // The root shows the panel and the totals: it renders when a conversation changes
    // (descendants whose properties did not change are left alone).
    // (The core lives and dies with the root, so the root never unwatches.)
    let update = use_force_update();
    {
        let core = (*core).clone();
        use_memo((), move |_| {
            core.watch(Interest::Counts, Callback::from(move |()| update.force_update()))
        });
    }

    // Connect once, until the widget is unmounted (then the socket closes).
    {
        let core = (*core).clone();
        let options = options.clone();
        use_effect_with((), move |_| {
            let (stop, stopped) = futures_channel::oneshot::channel::<()>();
            if let Some(outlet) = core.outlet() {
                let emit = {
                    let core = core.clone();
                    Callback::from(move |a: Action| core.dispatch(a))
                };
                let (o, e) = (options.clone(), emit.clone());
                // The directory (names for the new-conversation dialog), once per page.
                wasm_bindgen_futures::spawn_local(async move {
                    match crate::api::directory(&o).await {
                        Ok(staff) => e.emit(Action::Directory(staff)),
                        Err(err) => gloo::console::warn!(format!("tally: {err}")),
                    }
                });
                let applied = {
                    let core = core.clone();
                    Rc::new(move || core.applied())
                };
                let can_reload = Rc::new(move || core.outbox_is_empty());
                wasm_bindgen_futures::spawn_local(async move {
                    let run = connection::run(options, emit, applied, can_reload, outlet.clone());
                    let _ = futures_util::future::select(Box::pin(run), stopped).await;
                    // Its writer goes with the sender it reads from; the socket with both.
                    outlet.close();
                });
            }
            move || drop(stop)
        });
    }

    let chat = Chat::new((*core).clone(), options.clone());
    let (total, divergences, panel_open) = {
        let state = chat.state();
        (
            state.store.total().unread,
            state.store.divergences(),
            state.panel_open,
        )
    };

    // Divergences go to the developer console.
    {
        let chat = chat.clone();
        use_effect_with(divergences, move |count| {
            if let Some(d) = &chat.state().last_divergence {
                gloo::console::warn!(format!(
                    "tally: divergence #{count} at offset {} in conversation {}: computed {:?}, relay says {:?}; took the relay's and asked for a snapshot",
                    d.offset, d.conversation, d.ours, d.relays
                ));
            }
        });
    }

    // Presence: the relay is told when this tab is hidden or shown, and again on every
    // (re)connection while hidden (a connection starts visible).
    {
        let chat = chat.clone();
        let connected = matches!(chat.state().connection, crate::state::ConnectionState::Connected);
        use_effect_with(connected, move |connected| {
            let say = {
                let chat = chat.clone();
                move || {
                    let visible = !gloo::utils::document().hidden();
                    chat.dispatch(Action::Request(tally_shared::Request::Visibility { visible }));
                }
            };
            if *connected && gloo::utils::document().hidden() {
                say();
            }
            let listener = connected.then(|| {
                gloo::events::EventListener::new(&gloo::utils::document(), "visibilitychange", move |_| say())
            });
            move || drop(listener)
        });
    }

    // The host page hears of the counts: its `onUnread` callbacks, and a `tally:unread` event
    // (`detail: {unread, mentions}`) on the element the widget was mounted into.
    let root = use_node_ref();
    {
        let (handle, root) = (props.handle.clone(), root.clone());
        let (ready, totals) = {
            let state = chat.state();
            (state.store.counts_known(), state.store.total())
        };
        use_effect_with((ready, totals.unread, totals.mentions), move |(ready, ..)| {
            if *ready {
                if let Some(h) = &handle {
                    h.tell(totals);
                }
                let target = root.cast::<web_sys::Element>().map(|el| {
                    let node = el.get_root_node();
                    match wasm_bindgen::JsCast::dyn_into::<web_sys::ShadowRoot>(node) {
                        Ok(shadow) => shadow.host(),
                        Err(_) => el,
                    }
                });
                if let Some(target) = target {
                    let init = web_sys::CustomEventInit::new();
                    init.set_detail(&crate::chat::unread_detail(totals));
                    init.set_bubbles(true);
                    init.set_composed(true);
                    if let Ok(event) = web_sys::CustomEvent::new_with_event_init_dict("tally:unread", &init) {
                        let _ = target.dispatch_event(&event);
                    }
                }
            }
        });
    }

    // The page title shows the total, like `(3) Work app`: at most every quarter second (the
    // newest wins), since setting it costs the browser more than the rest of a message does.
    {
        let enabled = options.title_badge.unwrap_or(true);
        let original = use_memo((), |_| gloo::utils::document().title());
        let title = use_memo((), |_| TitleWriter::default());
        use_effect_with(total, move |total| {
            if enabled {
                let base = original.as_str();
                title.write(if *total > 0 {
                    format!("({total}) {base}")
                } else {
                    base.to_string()
                });
            }
        });
    }

    // Keyboard shortcuts, heard on the whole page (`crate::shortcuts` says which, and when
    // the host's own fields keep them).
    {
        let (chat, root) = (chat.clone(), root.clone());
        use_effect_with((), move |_| {
            let options = gloo::events::EventListenerOptions::enable_prevent_default();
            let document = gloo::utils::document();
            let listener =
                gloo::events::EventListener::new_with_options(&document, "keydown", options, move |e| {
                    let Some(e) = e.dyn_ref::<web_sys::KeyboardEvent>() else {
                        return;
                    };
                    let path = e.composed_path();
                    let inside = root.get().is_some_and(|r| path.includes(&r, 0));
                    // A key inside another widget on the page is that widget's.
                    if !inside && crate::shortcuts::in_a_widget(&path) {
                        return;
                    }
                    let panel_open = chat.state().panel_open;
                    if let Some(action) = crate::shortcuts::action_for(e, inside, panel_open) {
                        e.prevent_default();
                        chat.dispatch(action);
                    }
                });
            move || drop(listener)
        });
    }
    let theme = match options.theme.as_deref() {
        Some("light") => "light",
        Some("dark") => "dark",
        _ => "auto",
    };
    let locale = crate::i18n::Locale::current();
    // The on-screen keyboard shrinks the visual viewport, not the layout one: a full-screen
    // panel on a phone follows the visual viewport's height, so the composer stays above it.
    // Set through the CSSOM, not a style attribute, which a strict CSP (style-src without
    // 'unsafe-inline') would refuse.
    {
        let root = root.clone();
        use_effect_with((), move |_| {
            let listener = gloo::utils::window().visual_viewport().map(|vv| {
                let target = vv.clone();
                gloo::events::EventListener::new(&vv, "resize", move |_| {
                    if let Some(el) = root.cast::<web_sys::HtmlElement>() {
                        let height = format!("{}px", target.height());
                        let _ = el.style().set_property("--tally-viewport-height", &height);
                    }
                })
            });
            move || drop(listener)
        });
    }
    html! {
        <ContextProvider<Chat> context={chat}>
            <div class={classes!("tally", panel_open.then_some("tally-open"))} data-theme={theme}
                dir={locale.dir()} lang={locale.tag().to_string()} ref={root}>
                if panel_open { <Panel /> }
                <Launcher />
            </div>
        </ContextProvider<Chat>>
    }
}

/// Writes the page title, at most once every [`TitleWriter::EVERY_MS`]: a title asked for
/// sooner waits for the rest of that time, and only the newest is written.
#[derive(Clone, Default)]
struct TitleWriter {
    inner: Rc<std::cell::RefCell<TitleState>>,
}

#[derive(Default)]
struct TitleState {
    /// When the title was last written (`Date.now()`).
    written_at: f64,
    /// The title waiting for its turn.
    waiting: Option<String>,
    /// What writes it (kept after it fired: a timer is not dropped inside its own callback).
    timer: Option<gloo::timers::callback::Timeout>,
}

impl TitleWriter {
    const EVERY_MS: f64 = 250.0;

    fn write(&self, title: String) {
        let now = js_sys::Date::now();
        let mut state = self.inner.borrow_mut();
        if state.waiting.is_some() {
            state.waiting = Some(title);
            return;
        }
        let wait = state.written_at + Self::EVERY_MS - now;
        if wait <= 0.0 {
            state.written_at = now;
            gloo::utils::document().set_title(&title);
            return;
        }
        // Weak: the timer lives in the state, and the widget may be gone when it fires.
        let this = Rc::downgrade(&self.inner);
        state.waiting = Some(title);
        state.timer = Some(gloo::timers::callback::Timeout::new(
            wait.ceil() as u32,
            move || {
                let Some(this) = this.upgrade() else { return };
                let mut state = this.borrow_mut();
                if let Some(title) = state.waiting.take() {
                    state.written_at = js_sys::Date::now();
                    gloo::utils::document().set_title(&title);
                }
            },
        ));
    }
}
