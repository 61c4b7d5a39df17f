//! The root component: owns the chatStore, starts the connection, and runs the effects that
//! touch the world (sending frames, saving the outbox, the page title, the console).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tally_shared::protocol::ServerFrame;
use tally_shared::{ClientFrame, Offset};
use yew::prelude::*;

use crate::components::{launcher::Launcher, panel::Panel};
use crate::connection::{self, Outlet};
use crate::options::MountOptions;
use crate::state::{Action, ChatHandle, ChatState, ChatStoreState};
use crate::util;

/// What components get from context.
#[derive(Clone, PartialEq)]
pub struct Chat {
    /// The chatStore.
    pub state: ChatHandle,
    /// The mount options.
    pub options: Rc<MountOptions>,
}

/// Instead of a socket, for tests: frames the widget sent, and a way to deliver frames to it.
#[derive(Clone, Default)]
pub struct Harness {
    /// Every frame the widget sent, in order.
    pub sent: Rc<RefCell<Vec<ClientFrame>>>,
    dispatch: Rc<RefCell<Option<Callback<Action>>>>,
}

impl PartialEq for Harness {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.sent, &other.sent)
    }
}

impl Harness {
    /// Delivers a frame as if the relay had sent it.
    pub fn deliver(&self, frame: ServerFrame) {
        if let Some(d) = self.dispatch.borrow().as_ref() {
            d.emit(Action::Frame(frame));
        }
    }

    /// Dispatches any action (a test standing in for a click elsewhere).
    pub fn dispatch(&self, action: Action) {
        if let Some(d) = self.dispatch.borrow().as_ref() {
            d.emit(action);
        }
    }
}

/// The root's properties.
#[derive(Properties, PartialEq)]
pub struct AppProps {
    /// From the host page.
    pub options: Rc<MountOptions>,
    /// Replaces the socket in tests.
    #[prop_or_default]
    pub harness: Option<Harness>,
}

/// The widget.
#[function_component(App)]
pub fn app(props: &AppProps) -> Html {
    let options = props.options.clone();
    let key = options.storage_key();
    let state = {
        let key = key.clone();
        let open = options.open.unwrap_or(false);
        use_reducer(move || {
            let mut s = ChatState::new(util::load_outbox(&key));
            s.panel_open = open;
            ChatStoreState(s)
        })
    };
    let outlet = use_memo((), |_| Outlet::default());
    let applied = use_memo((), |_| Rc::new(Cell::new(Offset(0))));
    applied.set(state.0.store.applied());

    // Connect once.
    {
        let dispatch = state.dispatcher();
        let harness = props.harness.clone();
        let (options, applied, outlet) = (options.clone(), (*applied).clone(), (*outlet).clone());
        use_effect_with((), move |_| {
            let emit = Callback::from(move |a: Action| dispatch.dispatch(a));
            match harness {
                Some(h) => *h.dispatch.borrow_mut() = Some(emit),
                None => {
                    let (o, e) = (options.clone(), emit.clone());
                    // The directory (names for the new-conversation dialog), once per page.
                    wasm_bindgen_futures::spawn_local(async move {
                        match crate::api::directory(&o).await {
                            Ok(staff) => e.emit(Action::Directory(staff)),
                            Err(err) => gloo::console::warn!(format!("tally: {err}")),
                        }
                    });
                    wasm_bindgen_futures::spawn_local(connection::run(options, emit, applied, outlet));
                }
            }
        });
    }

    // Send what the reducer queued.
    {
        let sent_up_to = use_mut_ref(|| 0u64);
        let harness = props.harness.clone();
        let outlet = (*outlet).clone();
        let s = state.clone();
        use_effect_with(state.0.outgoing_seq, move |_| {
            for (n, frame) in s.0.outgoing.iter().filter(|(n, _)| *n > *sent_up_to.borrow()) {
                match &harness {
                    Some(h) => h.sent.borrow_mut().push(frame.clone()),
                    None => {
                        outlet.send(frame);
                    }
                }
                *sent_up_to.borrow_mut() = *n;
            }
        });
    }

    // Keep the outbox across reloads.
    {
        let key = key.clone();
        use_effect_with(state.0.store.outbox().to_vec(), move |outbox| {
            util::save_outbox(&key, outbox)
        });
    }

    // Divergences go to the developer console.
    use_effect_with(state.0.store.divergences(), {
        let d = state.0.last_divergence.clone();
        move |count| {
            if let Some(d) = d {
                gloo::console::warn!(format!(
                    "tally: divergence #{count} at offset {} in conversation {}: computed {:?}, relay says {:?}; took the relay's and asked for a snapshot",
                    d.offset, d.conversation, d.ours, d.relays
                ));
            }
        }
    });

    // The page title shows the total, like `(3) Work app`.
    {
        let total = state.0.store.total().unread;
        let enabled = options.title_badge.unwrap_or(true);
        let original = use_memo((), |_| gloo::utils::document().title());
        use_effect_with(total, move |total| {
            if enabled {
                let base = original.as_str();
                let title = if *total > 0 {
                    format!("({total}) {base}")
                } else {
                    base.to_string()
                };
                gloo::utils::document().set_title(&title);
            }
        });
    }

    let theme = match options.theme.as_deref() {
        Some("light") => "light",
        Some("dark") => "dark",
        _ => "auto",
    };
    let chat = Chat {
        state: state.clone(),
        options,
    };
    html! {
        <ContextProvider<Chat> context={chat}>
            <div class="tally" data-theme={theme}>
                if state.0.panel_open { <Panel /> }
                <Launcher />
            </div>
        </ContextProvider<Chat>>
    }
}
