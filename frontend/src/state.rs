//! `chatStore`: the Yew reducer whose state is `tally_shared::ChatStore`.
//!
//! Every server frame is dispatched here, `unread_updated` alongside message events; the
//! components read counts from it and never compute one. `reduce` does no I/O: frames to send
//! go into `outgoing` (a host effect drains them to the socket), and divergences are recorded
//! for an effect to log.

use std::collections::VecDeque;
use std::rc::Rc;

use tally_shared::protocol::ServerFrame;
use tally_shared::store::{Divergence, PendingSend};
use tally_shared::{ChatStore, ClientFrame, ClientMsgId, ConversationId, Message, Request, RequestId};
use yew::prelude::*;

/// Where the connection stands, as the widget shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Opening the socket or waiting for the first snapshot.
    Connecting,
    /// Live.
    Connected,
    /// Lost; retrying in a moment.
    Reconnecting {
        /// How many attempts so far.
        attempt: u32,
    },
    /// Not retrying (deactivated, or the browser is offline).
    Offline(String),
}

/// What the widget dispatches.
#[derive(Debug)]
pub enum Action {
    /// A frame from the relay.
    Frame(ServerFrame),
    /// A request to send (stamped with a request id here).
    Request(Request),
    /// A request that creates or finds a conversation, opened when its ack arrives.
    RequestAndOpen(Request),
    /// A new message to send (kept in the outbox until acknowledged).
    Send(PendingSend),
    /// The socket is open again: resend the outbox.
    Reconnected,
    /// Retry a failed send.
    Retry(ClientMsgId),
    /// Drop a failed send.
    Discard(ClientMsgId),
    /// The staff directory arrived.
    Directory(Vec<tally_shared::Staff>),
    /// An older page of history arrived.
    History(ConversationId, Vec<Message>),
    /// The connection changed state.
    Connection(ConnectionState),
    /// Open a conversation (or close it with `None`).
    Open(Option<ConversationId>),
    /// Show or hide the panel.
    TogglePanel,
}

/// The widget's state: the shared store plus what only the UI needs.
#[derive(Clone, Debug)]
pub struct ChatState {
    /// The shared reducer.
    pub store: ChatStore,
    /// Frames to send, numbered; the host sends those above the last number it sent.
    pub outgoing: VecDeque<(u64, ClientFrame)>,
    /// The number of the last frame queued.
    pub outgoing_seq: u64,
    /// The last divergence, and how many there were (for the console).
    pub last_divergence: Option<Divergence>,
    /// Connection state.
    pub connection: ConnectionState,
    /// The open conversation.
    pub open: Option<ConversationId>,
    /// Whether the panel is showing.
    pub panel_open: bool,
    /// A request whose ack names a conversation to open.
    pub open_on_ack: Option<RequestId>,
}

impl PartialEq for ChatState {
    fn eq(&self, other: &Self) -> bool {
        // Yew compares props by value; two states are the same only when they are the same Rc.
        std::ptr::eq(self, other)
    }
}

const OUTGOING_KEPT: usize = 256;

impl ChatState {
    /// A fresh state holding a saved outbox.
    pub fn new(outbox: Vec<PendingSend>) -> Self {
        ChatState {
            store: ChatStore::with_outbox(outbox),
            outgoing: VecDeque::new(),
            outgoing_seq: 0,
            last_divergence: None,
            connection: ConnectionState::Connecting,
            open: None,
            panel_open: false,
            open_on_ack: None,
        }
    }

    fn queue(&mut self, frame: ClientFrame) {
        self.outgoing_seq += 1;
        self.outgoing.push_back((self.outgoing_seq, frame));
        while self.outgoing.len() > OUTGOING_KEPT {
            self.outgoing.pop_front();
        }
    }
}

/// The `Reducible` newtype (the orphan rule keeps `impl Reducible for ChatStore` out).
#[derive(Clone, Debug, PartialEq)]
pub struct ChatStoreState(pub ChatState);

impl Reducible for ChatStoreState {
    type Action = Action;

    fn reduce(mut self: Rc<Self>, action: Action) -> Rc<Self> {
        let s = &mut Rc::make_mut(&mut self).0;
        match action {
            Action::Frame(frame) => {
                let snapshot = matches!(frame, ServerFrame::Snapshot(_));
                if let ServerFrame::Ack(ack) = &frame
                    && ack.req.is_some()
                    && ack.req == s.open_on_ack
                {
                    s.open = ack.conversation;
                    s.open_on_ack = None;
                }
                let fx = s.store.apply(frame);
                for f in fx.send {
                    s.queue(f);
                }
                if fx.divergence.is_some() {
                    s.last_divergence = fx.divergence;
                }
                if snapshot {
                    s.connection = ConnectionState::Connected;
                    if s.open.is_some_and(|c| s.store.conversation(c).is_none()) {
                        s.open = None;
                    }
                }
            }
            Action::Request(r) => {
                let f = s.store.request(r);
                s.queue(f);
            }
            Action::RequestAndOpen(r) => {
                let f = s.store.request(r);
                s.open_on_ack = f.req;
                s.queue(f);
            }
            Action::Send(p) => {
                let f = s.store.queue_send(p);
                s.queue(f);
            }
            Action::Reconnected => {
                for f in s
                    .store
                    .resend_outbox(tally_shared::Millis(js_sys::Date::now() as u64))
                {
                    s.queue(f);
                }
            }
            Action::Retry(id) => {
                if let Some(f) = s.store.retry(&id) {
                    s.queue(f);
                }
            }
            Action::Discard(id) => s.store.discard(&id),
            Action::History(c, messages) => s.store.apply_history(c, messages),
            Action::Directory(staff) => s.store.add_names(staff),
            Action::Connection(state) => s.connection = state,
            Action::Open(c) => s.open = c,
            Action::TogglePanel => s.panel_open = !s.panel_open,
        }
        self
    }
}

/// The handle components get through context.
pub type ChatHandle = UseReducerHandle<ChatStoreState>;
