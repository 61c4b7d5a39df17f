//! `chatStore`: the widget's state around `tally_shared::ChatStore`, and the actions on it.
//!
//! Every server frame is dispatched here, `unread_updated` alongside message events; the
//! components read counts from it and never compute one. `reduce` changes the state in place
//! and does no I/O: it returns the frames to send, which [`crate::chat`] sends.

use tally_shared::protocol::ServerFrame;
use tally_shared::store::{Divergence, PendingSend};
use tally_shared::{
    ChatStore, ClientFrame, ClientMsgId, ConversationId, Message, MessageId, Millis, Request, RequestId, Seq,
};

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
    /// Why, as a key of the catalog (`status.offline`, …).
    Offline(String),
}

/// Which list the panel shows when no conversation is open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListView {
    /// Every conversation.
    #[default]
    All,
    /// The Unreads inbox: conversations and followed threads with something unread.
    Unreads,
    /// The threads I follow.
    Threads,
}

/// What a component renders from, so that a change renders only the components it touches
/// (see [`Changed::touches`]). Whatever is not about one conversation (a snapshot, names,
/// the open view, the connection, an acknowledgement) touches every component but [`Interest::Props`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    /// Counts and lists: any conversation's messages, counts or reads, and who is online (not
    /// who is typing).
    Counts,
    /// One conversation: its messages, counts and reads.
    Conversation(ConversationId),
    /// Who is typing in one conversation (and its messages: a message ends its author's typing).
    Typing(ConversationId),
    /// Only its own properties and state: it never reads the store.
    Props,
}

/// What one dispatch changed, as far as rendering cares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    /// Something not about one conversation: every component that reads the store renders.
    pub everything: bool,
    /// Conversations whose messages, counts, reads or threads changed.
    pub conversations: Vec<ConversationId>,
    /// Conversations where who is typing changed.
    pub typing: Vec<ConversationId>,
    /// Someone's presence (the lists' dots; nothing else shows it).
    pub presence: bool,
}

impl Changed {
    /// Whether a component with this interest must render again.
    pub fn touches(&self, interest: Interest) -> bool {
        match interest {
            Interest::Props => false,
            _ if self.everything => true,
            Interest::Counts => !self.conversations.is_empty() || self.presence,
            Interest::Conversation(c) => self.conversations.contains(&c),
            Interest::Typing(c) => self.typing.contains(&c) || self.conversations.contains(&c),
        }
    }

    fn conversation(&mut self, c: ConversationId) {
        if !self.conversations.contains(&c) {
            self.conversations.push(c);
        }
    }

    /// What a frame from the relay changes. Events that make, rename or change the members of
    /// a conversation touch everything (titles and names show in other views and dialogs).
    fn frame(&mut self, frame: &ServerFrame) {
        use tally_shared::Event;
        match frame {
            ServerFrame::Typing { conversation, .. } => {
                if !self.typing.contains(conversation) {
                    self.typing.push(*conversation);
                }
            }
            ServerFrame::UnreadUpdated(u) => self.conversation(u.conversation),
            ServerFrame::Presence { .. } => self.presence = true,
            ServerFrame::Seen { conversation, .. } => self.conversation(*conversation),
            ServerFrame::Event(e) => match &e.event {
                Event::ConversationCreated { .. }
                | Event::ParticipantAdded { .. }
                | Event::ParticipantRemoved { .. }
                | Event::ConversationRenamed { .. } => self.everything = true,
                other => self.conversation(other.conversation()),
            },
            _ => self.everything = true,
        }
    }
}

/// What the widget dispatches.
#[derive(Debug)]
pub enum Action {
    /// A frame from the relay.
    Frame(ServerFrame),
    /// Frames from the relay that arrived together, applied in order before one render.
    Frames(Vec<ServerFrame>),
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
    /// The viewport showed a message of a conversation.
    Seen(ConversationId, Seq),
    /// Ask to mark read what the viewport showed of a conversation (after a short debounce,
    /// while the page is visible and focused).
    ReadSeen(ConversationId),
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
    /// Opens the panel, on a conversation or on the list.
    OpenPanel(Option<ConversationId>),
    /// Closes the panel.
    ClosePanel,
    /// Opens the direct conversation with someone, made if there is none yet.
    OpenDirect(tally_shared::StaffId),
    /// Show the panel with this conversation open (a notification was clicked).
    Show(ConversationId),
    /// Open a conversation at a message (a search result was chosen): its view loads the
    /// history back to it, shows it and says so with [`Action::Jumped`].
    Jump(ConversationId, Seq),
    /// The conversation view has shown the message it was asked to jump to.
    Jumped,
    /// Show a list (when no conversation is open).
    ShowList(ListView),
    /// Open a thread's pane (its conversation and root), or close it with `None`.
    OpenThread(Option<(ConversationId, Seq)>),
    /// The thread pane showed a reply.
    ThreadSeen(ConversationId, Seq, Seq),
    /// Ask to read what the thread pane showed (as [`Action::ReadSeen`]).
    ReadThreadSeen(ConversationId, Seq),
    /// Escape in a conversation: read it (`ChatStore::read_on_leaving`) and go back to the list.
    ReadAndClose(ConversationId),
    /// Alt(+Shift)+↑/↓: open the conversation `step` places away in the list (the next one
    /// with something for me, with `unread`), opening the panel if needed.
    Step {
        /// Down the list (> 0) or up.
        step: i32,
        /// Only those with something for me.
        unread: bool,
    },
    /// Show or hide the quick switcher (Ctrl/Cmd+K; showing it opens the panel).
    Switcher(bool),
    /// Show or hide the keyboard shortcuts (showing them opens the panel).
    Shortcuts(bool),
}

impl Action {
    /// Putting `emoji` on a message, or taking it off.
    pub fn react(message: MessageId, emoji: &str, add: bool) -> Action {
        let emoji = emoji.to_string();
        Action::Request(if add {
            Request::AddReaction { message, emoji }
        } else {
            Request::RemoveReaction { message, emoji }
        })
    }
}

/// The widget's state: the shared store plus what only the UI needs.
#[derive(Debug)]
pub struct ChatState {
    /// The shared reducer.
    pub store: ChatStore,
    /// The last divergence (for the console).
    pub last_divergence: Option<Divergence>,
    /// Connection state.
    pub connection: ConnectionState,
    /// The open conversation.
    pub open: Option<ConversationId>,
    /// The open thread (its conversation and root), shown over its conversation.
    pub open_thread: Option<(ConversationId, Seq)>,
    /// The list shown when no conversation is open.
    pub list_view: ListView,
    /// Whether the panel is showing.
    pub panel_open: bool,
    /// A request whose ack names a conversation to open.
    pub open_on_ack: Option<RequestId>,
    /// Messages that arrived and are news for me (`ChatStore::news`), with whether their
    /// conversation is muted: the shell offers them as notifications and empties this.
    pub news: Vec<(Message, bool)>,
    /// A message to show in its conversation (a search result), until the view has.
    pub jump_to: Option<(ConversationId, Seq)>,
    /// A direct conversation asked for before the widget was live (a host's "message Bob"
    /// clicked, or queued, while it loads): opened once it knows its conversations.
    pub pending_direct: Option<tally_shared::StaffId>,
    /// The quick switcher is showing.
    pub switcher: bool,
    /// The keyboard shortcuts are showing.
    pub shortcuts: bool,
    /// The conversation last left for the list (whose row takes the focus there).
    pub left: Option<ConversationId>,
    /// What the actions since the shell last took it changed (the shell renders from it).
    pub changed: Changed,
    /// How many actions changed something not about one conversation (`Changed::everything`):
    /// what a component shows from outside its own conversation (names, who I am) can only
    /// have changed when this moved.
    pub epoch: u64,
}

/// What the panel shows, apart from the store: when it changes, everything renders.
type Shown = (
    Option<ConversationId>,
    Option<(ConversationId, Seq)>,
    ListView,
    bool,
    ConnectionState,
    Option<(ConversationId, Seq)>,
    bool,
    bool,
    Option<ConversationId>,
);

impl ChatState {
    /// A fresh state holding a saved outbox.
    pub fn new(outbox: Vec<PendingSend>) -> Self {
        ChatState {
            store: ChatStore::with_outbox(outbox),
            last_divergence: None,
            connection: ConnectionState::Connecting,
            open: None,
            open_thread: None,
            list_view: ListView::All,
            panel_open: false,
            open_on_ack: None,
            news: Vec::new(),
            jump_to: None,
            pending_direct: None,
            switcher: false,
            shortcuts: false,
            left: None,
            changed: Changed::default(),
            epoch: 0,
        }
    }

    fn shown(&self) -> Shown {
        (
            self.open,
            self.open_thread,
            self.list_view,
            self.panel_open,
            self.connection.clone(),
            self.jump_to,
            self.switcher,
            self.shortcuts,
            self.left,
        )
    }

    /// Applies an action in place; returns the frames to send. No I/O happens here.
    pub fn reduce(&mut self, action: Action) -> Vec<ClientFrame> {
        let mut out = Vec::new();
        let was_open = self.open;
        let shown = self.shown();
        // What the action changes: a frame says (see `Changed::frame`), what the viewport saw
        // or a page of history touches its conversation, anything else everything.
        let mut changed = std::mem::take(&mut self.changed);
        match &action {
            Action::Frame(frame) => changed.frame(frame),
            Action::Frames(frames) => frames.iter().for_each(|f| changed.frame(f)),
            Action::Seen(c, _)
            | Action::ReadSeen(c)
            | Action::History(c, _)
            | Action::ThreadSeen(c, _, _)
            | Action::ReadThreadSeen(c, _) => changed.conversation(*c),
            _ => changed.everything = true,
        }
        match action {
            Action::Frame(frame) => self.apply(frame, &mut out),
            Action::Frames(frames) => {
                for frame in frames {
                    self.apply(frame, &mut out);
                }
            }
            Action::Request(r) => out.push(self.store.request(r)),
            Action::RequestAndOpen(r) => {
                let f = self.store.request(r);
                self.open_on_ack = f.req;
                out.push(f);
            }
            Action::Send(p) => out.push(self.store.queue_send(p)),
            Action::Reconnected => out = self.store.resend_outbox(Millis(js_sys::Date::now() as u64)),
            Action::Retry(id) => out.extend(self.store.retry(&id)),
            Action::Discard(id) => self.store.discard(&id),
            Action::Seen(c, seq) => self.store.note_seen(c, seq),
            Action::ReadSeen(c) => out.extend(self.store.read_seen(c)),
            Action::History(c, messages) => self.store.apply_history(c, messages),
            Action::Directory(staff) => self.store.add_names(staff),
            Action::Connection(state) => {
                self.connection = state;
                self.open_pending_direct(&mut out);
            }
            Action::Open(c) => {
                if let Some(c) = c {
                    self.store.opened(c);
                }
                self.open = c;
            }
            Action::TogglePanel => self.panel_open = !self.panel_open,
            Action::OpenPanel(c) => {
                self.panel_open = true;
                if let Some(c) = c {
                    self.store.opened(c);
                }
                self.open = c;
            }
            Action::ClosePanel => self.panel_open = false,
            Action::OpenDirect(staff) => {
                self.panel_open = true;
                self.pending_direct = Some(staff);
                self.open_pending_direct(&mut out);
            }
            Action::Show(c) => {
                self.panel_open = true;
                self.store.opened(c);
                self.open = Some(c);
            }
            Action::Jump(c, seq) => {
                self.panel_open = true;
                self.store.opened(c);
                self.open = Some(c);
                self.jump_to = Some((c, seq));
            }
            Action::Jumped => self.jump_to = None,
            Action::OpenThread(t) => {
                if let Some((c, root)) = t {
                    self.panel_open = true;
                    self.store.opened(c);
                    self.store.thread_opened(c, root);
                    self.open = Some(c);
                }
                self.open_thread = t;
            }
            Action::ShowList(v) => self.list_view = v,
            Action::ThreadSeen(c, root, seq) => self.store.note_thread_seen(c, root, seq),
            Action::ReadThreadSeen(c, root) => out.extend(self.store.read_thread_seen(c, root)),
            Action::ReadAndClose(c) => {
                out.extend(self.store.read_on_leaving(c));
                if self.open == Some(c) {
                    self.open = None;
                }
            }
            Action::Step { step, unread } => {
                self.panel_open = true;
                let from = self.open.or(self.open_thread.map(|(c, _)| c));
                if let Some(c) = self.store.step_conversation(from, step, unread) {
                    self.store.opened(c);
                    self.open = Some(c);
                }
            }
            Action::Switcher(on) => {
                self.panel_open |= on;
                self.switcher = on;
                self.shortcuts &= !on;
            }
            Action::Shortcuts(on) => {
                self.panel_open |= on;
                self.shortcuts = on;
                self.switcher &= !on;
            }
        }
        if !self.panel_open {
            self.switcher = false;
            self.shortcuts = false;
        }
        if was_open.is_some() && self.open.is_none() {
            self.left = was_open;
        }
        // A thread is shown over its own conversation only.
        if self.open_thread.is_some_and(|(c, _)| Some(c) != self.open) {
            self.open_thread = None;
        }
        changed.everything |= self.shown() != shown;
        if changed.everything {
            self.epoch += 1;
        }
        self.changed = changed;
        out
    }

    fn apply(&mut self, frame: ServerFrame, out: &mut Vec<ClientFrame>) {
        let snapshot = matches!(frame, ServerFrame::Snapshot(_));
        if let ServerFrame::Ack(ack) = &frame
            && ack.req.is_some()
            && ack.req == self.open_on_ack
        {
            self.open = ack.conversation;
            self.open_on_ack = None;
        }
        if let ServerFrame::Typing { conversation, staff } = &frame {
            let now = Millis(js_sys::Date::now() as u64);
            self.store.note_typing(*conversation, staff.clone(), now);
        }
        let created = match &frame {
            ServerFrame::Event(e) => match &e.event {
                tally_shared::Event::MessageCreated { message } => Some(message.clone()),
                _ => None,
            },
            _ => None,
        };
        let fx = self.store.apply(frame);
        if let Some(m) = created
            && let Some(muted) = self.store.news(&m)
        {
            self.news.push((m, muted));
        }
        out.extend(fx.send);
        if fx.divergence.is_some() {
            self.last_divergence = fx.divergence;
        }
        if snapshot {
            self.connection = ConnectionState::Connected;
            if self.open.is_some_and(|c| self.store.conversation(c).is_none()) {
                self.open = None;
            }
            self.open_pending_direct(out);
        }
    }

    /// Opens the direct conversation asked for, once live (before, the widget does not know
    /// whether there is one, and a request would go nowhere): the one there is, or a new one,
    /// opened when the relay acknowledges it.
    fn open_pending_direct(&mut self, out: &mut Vec<ClientFrame>) {
        if self.connection != ConnectionState::Connected {
            return;
        }
        let Some(staff) = self.pending_direct.take() else {
            return;
        };
        let existing = self.store.conversation_list().into_iter().find(|item| {
            item.kind == tally_shared::ConversationKind::Direct
                && self
                    .store
                    .conversation(item.id)
                    .is_some_and(|v| v.conversation.participants.contains(&staff))
        });
        match existing {
            Some(item) => {
                self.store.opened(item.id);
                self.open = Some(item.id);
            }
            None => {
                let f = self.store.request(Request::CreateDirect { staff });
                self.open_on_ack = f.req;
                out.push(f);
            }
        }
    }
}
