//! The wire protocol: JSON text frames, internally tagged by a snake_case `type`.
//!
//! A client sends [`ClientFrame`]s; the relay sends [`ServerFrame`]s. Every event in the log is
//! an [`Event`] at an [`Offset`]; the relay sends it as a [`ServerFrame::Event`], which is the
//! event's own fields plus `offset`. `docs/protocol.md` shows every frame, and a test parses it.

use serde::de::{self, MapAccess};
use serde::{Deserialize, Serialize};

use crate::ids::{
    AttachmentId, ClientMsgId, ConversationId, MessageId, Millis, Offset, RequestId, Seq, StaffId,
};
use crate::mentions::MentionRange;
use crate::model::{Conversation, Counts, Message, Staff, Totals};
use crate::tagged;

/// A frame from a client, with an optional request id echoed in the reply it causes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Echoed in the [`Ack`] or [`ErrorFrame`] that answers this frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<RequestId>,
    /// What the client asks for.
    #[serde(flatten)]
    pub request: Request,
}

impl ClientFrame {
    /// A frame without a request id.
    pub fn new(request: Request) -> Self {
        ClientFrame { req: None, request }
    }

    /// A frame with a request id.
    pub fn with_req(req: u64, request: Request) -> Self {
        ClientFrame {
            req: Some(RequestId(req)),
            request,
        }
    }
}

/// Everything a client can ask of the relay: the handshake, every write path, every read path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// The first frame of a connection: who I am, and what I have already applied.
    Hello {
        /// A signed token from the work app (or the relay's `token` command).
        token: String,
        /// The last offset this client applied; absent for a fresh start.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_from: Option<Offset>,
        /// The protocol version this client speaks; absent means 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol: Option<u32>,
        /// Ask for a `counts` frame (the totals) ahead of a snapshot, so a badge need not wait
        /// for the whole snapshot to be built, sent and decoded. Absent: false.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        counts_first: bool,
    },
    /// Send text (and attachments previously uploaded), optionally as a reply.
    SendMessage {
        /// Client-made id: a repeat stores nothing new and gets the first acknowledgement.
        client_id: ClientMsgId,
        /// Where.
        conversation: ConversationId,
        /// Text; may be empty when there are attachments.
        #[serde(default)]
        body: String,
        /// Uploaded attachments to include.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<AttachmentId>,
        /// The message this replies to, in the same conversation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<MessageId>,
        /// Where the body mentions people (from a picker); absent: found in the text
        /// (`@id`, `@here`, `@all`). See `docs/semantics.md`, "Mentions".
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mention_ranges: Vec<MentionRange>,
    },
    /// Reply in a thread: a message under a top-level message (`thread`, the root's seq) of
    /// the same conversation. It counts for the thread's followers, never in the conversation.
    ReplyInThread {
        /// Client-made id, as for sends (the same namespace: a retry is recognised).
        client_id: ClientMsgId,
        /// Where.
        conversation: ConversationId,
        /// The seq of the thread's root.
        thread: Seq,
        /// Text; may be empty when there are attachments.
        #[serde(default)]
        body: String,
        /// Uploaded attachments to include.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<AttachmentId>,
        /// Where the body mentions people (from a picker); absent: found in the text
        /// (`@id`, `@here`, `@all`). See `docs/semantics.md`, "Mentions".
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mention_ranges: Vec<MentionRange>,
    },
    /// Read a thread up to a reply (what the thread pane showed).
    MarkThreadRead {
        /// The conversation.
        conversation: ConversationId,
        /// The seq of the thread's root.
        thread: Seq,
        /// The last reply seen.
        up_to: Seq,
    },
    /// Read a whole thread.
    ReadThread {
        /// The conversation.
        conversation: ConversationId,
        /// The seq of the thread's root.
        thread: Seq,
    },
    /// Mark a thread unread from a reply on (following it, if one did not).
    MarkThreadUnread {
        /// The conversation.
        conversation: ConversationId,
        /// The seq of the thread's root.
        thread: Seq,
        /// The first reply to count as unread again.
        from: Seq,
    },
    /// Follow a thread: its replies count for me from its newest one on.
    FollowThread {
        /// The conversation.
        conversation: ConversationId,
        /// The seq of the thread's root.
        thread: Seq,
    },
    /// Stop following a thread: its counts leave mine.
    UnfollowThread {
        /// The conversation.
        conversation: ConversationId,
        /// The seq of the thread's root.
        thread: Seq,
    },
    /// Copy a message one can read into a conversation one can write to.
    ForwardMessage {
        /// Client-made id, as for sends.
        client_id: ClientMsgId,
        /// The message to forward.
        message: MessageId,
        /// The conversation to forward it to.
        to: ConversationId,
    },
    /// Change the text of one's own message.
    EditMessage {
        /// The message.
        message: MessageId,
        /// The new text.
        body: String,
        /// Where the new text mentions people; only those the message mentioned when sent are
        /// kept (an edit mentions nobody new).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mention_ranges: Vec<MentionRange>,
    },
    /// Put an emoji reaction on a message one can read (again: nothing changes).
    AddReaction {
        /// The message.
        message: MessageId,
        /// The emoji.
        emoji: String,
    },
    /// Take one's reaction off a message (one that is not there: nothing changes).
    RemoveReaction {
        /// The message.
        message: MessageId,
        /// The emoji.
        emoji: String,
    },
    /// A group's owner allows or stops `@here` / `@all` mentioning everyone in it.
    SetEveryoneMentions {
        /// The group.
        conversation: ConversationId,
        /// Whether they mention everyone.
        allowed: bool,
    },
    /// Delete one's own message.
    DeleteMessage {
        /// The message.
        message: MessageId,
    },
    /// Open (or find) the direct conversation with someone.
    CreateDirect {
        /// The other staff member.
        staff: StaffId,
    },
    /// Create a group conversation.
    CreateGroup {
        /// Client-made id: a repeat creates nothing new.
        client_id: ClientMsgId,
        /// Its title.
        title: String,
        /// The others to include (the creator is always in).
        participants: Vec<StaffId>,
    },
    /// Rename a group.
    RenameConversation {
        /// The group.
        conversation: ConversationId,
        /// The new title.
        title: String,
    },
    /// Add staff to a group.
    AddParticipants {
        /// The group.
        conversation: ConversationId,
        /// Who to add.
        staff: Vec<StaffId>,
    },
    /// Remove someone from a group; removing oneself is leaving.
    RemoveParticipant {
        /// The group.
        conversation: ConversationId,
        /// Who to remove.
        staff: StaffId,
    },
    /// Mute or unmute a conversation: a muted one stays out of the total.
    SetMuted {
        /// The conversation.
        conversation: ConversationId,
        /// Muted or not.
        muted: bool,
    },
    /// Read up to a message (what the viewport showed).
    MarkRead {
        /// The conversation.
        conversation: ConversationId,
        /// The last message seen.
        up_to: Seq,
    },
    /// Read a whole conversation.
    MarkConversationRead {
        /// The conversation.
        conversation: ConversationId,
    },
    /// Read every conversation.
    MarkAllRead,
    /// Mark unread from a message on: the only way a watermark moves back.
    MarkUnread {
        /// The conversation.
        conversation: ConversationId,
        /// The first message to count as unread again.
        from: Seq,
    },
    /// Ask for a fresh snapshot (after a divergence).
    RequestSnapshot,
    /// Tell the relay that a checkpoint disagreed with this store's own count, so an operator
    /// sees it (a number that should stay 0). Sent with the `request_snapshot` that repairs it.
    ReportDivergence {
        /// The checkpoint's conversation.
        conversation: ConversationId,
        /// The checkpoint's offset.
        offset: Offset,
        /// What the store had computed there.
        ours: Counts,
        /// What the relay said.
        relays: Counts,
    },
    /// Answered by an ack carrying the current offset. Requests are handled in order, so once
    /// the ack arrives every earlier event has too.
    Ping,
    /// Whether this tab is visible (sent when that changes; a connection starts visible).
    /// Presence is `online` while any of a person's tabs is visible, `away` while they only
    /// have hidden ones open.
    Visibility {
        /// Visible or hidden.
        visible: bool,
    },
    /// I am typing in this conversation (sent at most every [`TYPING_EVERY_MS`] while typing).
    /// Relayed to its other participants as a `typing` frame; never stored, never counted.
    Typing {
        /// Where.
        conversation: ConversationId,
    },
    /// My settings that others' widgets depend on. Answered by an ack; every tab of mine then
    /// gets a `preferences` frame.
    SetPreferences {
        /// Hide how far I have read from the people I share conversations with (and, in
        /// exchange, see nobody's): no "Seen" under their messages, none under mine.
        hide_read_state: bool,
    },
    /// My quiet hours and snooze (`crate::quiet`), replacing what was set. Answered by an ack;
    /// every tab of mine then gets a `quiet` frame. Refused with `invalid_input` when out of
    /// bounds ([`crate::quiet::Quiet::check`]); nothing is stored then.
    SetQuiet {
        /// The settings.
        quiet: crate::quiet::Quiet,
    },
}

/// How often a client says it is still typing.
pub const TYPING_EVERY_MS: u64 = 3_000;
/// How long a `typing` frame shows, unless another comes or that person's message does.
pub const TYPING_SHOWS_MS: u64 = 6_000;

/// The protocol version this build speaks. Compatible changes (new optional fields, new frame
/// types that older clients ignore) keep it; anything an older client would misread bumps it
/// (`docs/protocol.md`, "Versions").
pub const PROTOCOL_VERSION: u32 = 3;
/// The oldest protocol version the relay still serves. Version 3 added threads, whose counts
/// are in every total: a widget of version 2 would compute totals without them, disagree with
/// every checkpoint and ask for snapshots forever, so it is told to reload instead.
pub const PROTOCOL_MIN: u32 = 3;

/// The protocol versions a relay serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolRange {
    /// The oldest.
    pub min: u32,
    /// The newest.
    pub max: u32,
}

impl ProtocolRange {
    /// What this build serves.
    pub const SERVED: ProtocolRange = ProtocolRange {
        min: PROTOCOL_MIN,
        max: PROTOCOL_VERSION,
    };

    /// Whether a client's version (absent: 1) is served.
    pub fn serves(self, version: Option<u32>) -> bool {
        (self.min..=self.max).contains(&version.unwrap_or(1))
    }
}

impl Request {
    /// A `hello` speaking this build's protocol version.
    pub fn hello(token: impl Into<String>, resume_from: Option<Offset>) -> Request {
        Request::Hello {
            token: token.into(),
            resume_from,
            protocol: Some(PROTOCOL_VERSION),
            counts_first: false,
        }
    }

    /// A `hello` that asks for the totals ahead of a snapshot (see [`Request::Hello`]).
    pub fn hello_counts_first(token: impl Into<String>, resume_from: Option<Offset>) -> Request {
        match Request::hello(token, resume_from) {
            Request::Hello {
                token,
                resume_from,
                protocol,
                ..
            } => Request::Hello {
                token,
                resume_from,
                protocol,
                counts_first: true,
            },
            other => other,
        }
    }
}

/// Where a request goes, decided in one place ([`Request::route`]): the relay's sessions route
/// by it and only a [`LogRequest`] reaches the engine. Every variant is listed there with no
/// catch-all, so a new request does not compile until it is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `hello`: a connection's first frame only.
    Hello,
    /// A write the engine runs against the log (which it may append to).
    Log(LogRequest<'a>),
    /// Answered with the current offset, never appending (`ping`; a divergence report, which
    /// the relay logs).
    Offset,
    /// A fresh snapshot.
    Snapshot,
    /// The tab's visibility (presence).
    Visibility(bool),
    /// Typing in a conversation: relayed, never stored.
    Typing(ConversationId),
    /// The staff member's preferences.
    Preferences {
        /// See [`Request::SetPreferences`].
        hide_read_state: bool,
    },
    /// The staff member's quiet hours and snooze.
    Quiet(&'a crate::quiet::Quiet),
}

/// A write for the log: only [`Request::route`] makes one, so the engine, which takes nothing
/// else, never sees a request the log does not store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRequest<'a>(&'a Request);

impl<'a> LogRequest<'a> {
    /// The request.
    pub fn get(self) -> &'a Request {
        self.0
    }
}

/// A write for the log, owned (what a session hands on to be run): only
/// [`Request::into_route`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogWrite(Request);

impl LogWrite {
    /// The write, as the engine takes it.
    pub fn request(&self) -> LogRequest<'_> {
        LogRequest(&self.0)
    }

    /// A send (what the work app's backend posts as a staff member).
    pub fn send_message(
        client_id: ClientMsgId,
        conversation: ConversationId,
        body: String,
        attachments: Vec<AttachmentId>,
        reply_to: Option<MessageId>,
    ) -> LogWrite {
        LogWrite(Request::SendMessage {
            client_id,
            conversation,
            body,
            attachments,
            reply_to,
            mention_ranges: Vec::new(),
        })
    }

    /// A reply in a thread (what the work app's backend posts as a staff member).
    pub fn reply_in_thread(
        client_id: ClientMsgId,
        conversation: ConversationId,
        thread: Seq,
        body: String,
        attachments: Vec<AttachmentId>,
    ) -> LogWrite {
        LogWrite(Request::ReplyInThread {
            client_id,
            conversation,
            thread,
            body,
            attachments,
            mention_ranges: Vec::new(),
        })
    }
}

/// [`Route`], owning the request it routes (see [`Request::into_route`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// `hello`.
    Hello,
    /// A write for the log.
    Log(LogWrite),
    /// Acknowledged at the current offset.
    Offset,
    /// A fresh snapshot.
    Snapshot,
    /// The tab's visibility.
    Visibility(bool),
    /// Typing in a conversation.
    Typing(ConversationId),
    /// The staff member's preferences.
    Preferences {
        /// See [`Request::SetPreferences`].
        hide_read_state: bool,
    },
    /// The staff member's quiet hours and snooze.
    Quiet(crate::quiet::Quiet),
}

/// The rate budget a request is charged to, per staff member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Budget {
    /// Writes that append messages or change conversations.
    Write,
    /// Reads and cheap flags (marking read, pings, visibility).
    Read,
    /// A snapshot, or what costs as much (a divergence report comes with one; a preference
    /// change is told to everyone in every conversation of one's).
    Snapshot,
    /// Typing, which fans out to a whole conversation.
    Typing,
    /// Reactions: stored and fanned out, but cheap and bursty; their own budget, so that
    /// reacting never holds up a send.
    React,
}

impl Request {
    /// Where this request goes (see [`Route`]).
    pub fn route(&self) -> Route<'_> {
        match self {
            Request::Hello { .. } => Route::Hello,
            Request::SendMessage { .. }
            | Request::ReplyInThread { .. }
            | Request::ForwardMessage { .. }
            | Request::EditMessage { .. }
            | Request::DeleteMessage { .. }
            | Request::CreateDirect { .. }
            | Request::CreateGroup { .. }
            | Request::RenameConversation { .. }
            | Request::AddParticipants { .. }
            | Request::RemoveParticipant { .. }
            | Request::SetMuted { .. }
            | Request::MarkRead { .. }
            | Request::MarkConversationRead { .. }
            | Request::MarkAllRead
            | Request::MarkUnread { .. }
            | Request::MarkThreadRead { .. }
            | Request::ReadThread { .. }
            | Request::MarkThreadUnread { .. }
            | Request::FollowThread { .. }
            | Request::UnfollowThread { .. }
            | Request::AddReaction { .. }
            | Request::RemoveReaction { .. }
            | Request::SetEveryoneMentions { .. } => Route::Log(LogRequest(self)),
            Request::Ping | Request::ReportDivergence { .. } => Route::Offset,
            Request::RequestSnapshot => Route::Snapshot,
            Request::Visibility { visible } => Route::Visibility(*visible),
            Request::Typing { conversation } => Route::Typing(*conversation),
            Request::SetPreferences { hide_read_state } => Route::Preferences {
                hide_read_state: *hide_read_state,
            },
            Request::SetQuiet { quiet } => Route::Quiet(quiet),
        }
    }

    /// Where this request goes, keeping it (the same decision as [`Request::route`]).
    pub fn into_route(self) -> Routed {
        let routed = match self.route() {
            Route::Log(_) => None,
            Route::Hello => Some(Routed::Hello),
            Route::Offset => Some(Routed::Offset),
            Route::Snapshot => Some(Routed::Snapshot),
            Route::Visibility(visible) => Some(Routed::Visibility(visible)),
            Route::Typing(conversation) => Some(Routed::Typing(conversation)),
            Route::Preferences { hide_read_state } => Some(Routed::Preferences { hide_read_state }),
            Route::Quiet(quiet) => Some(Routed::Quiet(quiet.clone())),
        };
        routed.unwrap_or(Routed::Log(LogWrite(self)))
    }

    /// The budget this request is charged to.
    pub fn budget(&self) -> Budget {
        match self {
            Request::Hello { .. }
            | Request::SendMessage { .. }
            | Request::ReplyInThread { .. }
            | Request::ForwardMessage { .. }
            | Request::EditMessage { .. }
            | Request::DeleteMessage { .. }
            | Request::CreateDirect { .. }
            | Request::CreateGroup { .. }
            | Request::RenameConversation { .. }
            | Request::AddParticipants { .. }
            | Request::RemoveParticipant { .. }
            | Request::SetMuted { .. }
            | Request::SetEveryoneMentions { .. } => Budget::Write,
            // Reactions fan out to a whole conversation, like typing, and come in bursts.
            Request::AddReaction { .. } | Request::RemoveReaction { .. } => Budget::React,
            Request::MarkRead { .. }
            | Request::MarkConversationRead { .. }
            | Request::MarkAllRead
            | Request::MarkUnread { .. }
            | Request::MarkThreadRead { .. }
            | Request::ReadThread { .. }
            | Request::MarkThreadUnread { .. }
            | Request::FollowThread { .. }
            | Request::UnfollowThread { .. }
            | Request::Ping
            | Request::Visibility { .. } => Budget::Read,
            Request::RequestSnapshot
            | Request::ReportDivergence { .. }
            | Request::SetPreferences { .. }
            | Request::SetQuiet { .. } => Budget::Snapshot,
            Request::Typing { .. } => Budget::Typing,
        }
    }
}

/// Declares each request's wire name once: [`Request::kind`] and [`REQUEST_TYPES`] both come
/// from this list (and `request_type_table_names_every_request` checks it against serde's).
macro_rules! request_names {
    ($($variant:ident => $name:literal,)*) => {
        impl Request {
            /// The snake_case name of this request's `type`.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Request::$variant { .. } => $name,)*
                }
            }
        }

        /// The `type` of every client frame.
        pub const REQUEST_TYPES: &[&str] = &[$($name,)*];
    };
}

request_names! {
    Hello => "hello",
    SendMessage => "send_message",
    ReplyInThread => "reply_in_thread",
    MarkThreadRead => "mark_thread_read",
    ReadThread => "read_thread",
    MarkThreadUnread => "mark_thread_unread",
    FollowThread => "follow_thread",
    UnfollowThread => "unfollow_thread",
    ForwardMessage => "forward_message",
    EditMessage => "edit_message",
    AddReaction => "add_reaction",
    RemoveReaction => "remove_reaction",
    SetEveryoneMentions => "set_everyone_mentions",
    DeleteMessage => "delete_message",
    CreateDirect => "create_direct",
    CreateGroup => "create_group",
    RenameConversation => "rename_conversation",
    AddParticipants => "add_participants",
    RemoveParticipant => "remove_participant",
    SetMuted => "set_muted",
    MarkRead => "mark_read",
    MarkConversationRead => "mark_conversation_read",
    MarkAllRead => "mark_all_read",
    MarkUnread => "mark_unread",
    RequestSnapshot => "request_snapshot",
    ReportDivergence => "report_divergence",
    Ping => "ping",
    Typing => "typing",
    Visibility => "visibility",
    SetPreferences => "set_preferences",
    SetQuiet => "set_quiet",
}

/// Whether someone is here: a tab visible, only hidden ones, or none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// A tab of theirs is open and visible.
    Online,
    /// Connected, every tab hidden.
    Away,
    /// No connection open.
    #[default]
    Offline,
}

tagged::tagged_enum! {
    /// An entry of the log. Each has an offset (carried beside it, see [`LoggedEvent`]).
    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub enum Event, decoded as EventFields {
        /// A conversation exists; its participants start with watermark 0 (it has no history).
        ConversationCreated {
            /// The new conversation.
            conversation: Conversation,
            /// The creator's client-made id (groups), so a retried create makes nothing new.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            client_id: Option<ClientMsgId>,
        },
        /// Someone joined a group; their watermark starts at the head at `at`.
        ParticipantAdded {
            /// The conversation as it is after the addition (so the newcomer can show it).
            conversation: Conversation,
            /// Who joined.
            staff: StaffId,
            /// Who added them.
            by: StaffId,
            /// The head when they joined: older history is not unread for them.
            head: Seq,
        },
        /// Someone left or was removed from a group.
        ParticipantRemoved {
            /// The conversation.
            conversation: ConversationId,
            /// Who left.
            staff: StaffId,
            /// Who removed them (themselves when leaving).
            by: StaffId,
        },
        /// A group got a new title.
        ConversationRenamed {
            /// The conversation.
            conversation: ConversationId,
            /// The new title.
            title: String,
            /// Who renamed it.
            by: StaffId,
        },
        /// A message (text, reply, forward, attachments, or notice) was written.
        MessageCreated {
            /// The message.
            message: Message,
        },
        /// A message's text changed. Counts do not.
        MessageEdited {
            /// The conversation.
            conversation: ConversationId,
            /// The message.
            message: MessageId,
            /// Its position.
            seq: Seq,
            /// The new text.
            body: String,
            /// Where it mentions people (only those mentioned when it was sent).
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            mention_ranges: Vec<MentionRange>,
            /// When.
            edited_at: Millis,
        },
        /// Someone put an emoji on a message or took it off. Counts do not change.
        ReactionChanged {
            /// The conversation.
            conversation: ConversationId,
            /// The message.
            message: MessageId,
            /// Its position.
            seq: Seq,
            /// Who reacted.
            staff: StaffId,
            /// The emoji.
            emoji: String,
            /// Put on (`true`) or taken off.
            added: bool,
        },
        /// A group's owner allowed or stopped `@here` / `@all` mentioning everyone.
        EveryoneMentionsChanged {
            /// The conversation.
            conversation: ConversationId,
            /// Whether they mention everyone now.
            allowed: bool,
            /// Who changed it.
            by: StaffId,
        },
        /// A message was deleted: it stops counting for everyone who had not read it.
        MessageDeleted {
            /// The conversation.
            conversation: ConversationId,
            /// The message.
            message: MessageId,
            /// Its position.
            seq: Seq,
            /// Its author (so a store that never saw it can still count the delete).
            sender: StaffId,
            /// Whom it mentioned.
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            mentions: Vec<StaffId>,
            /// For a reply: its thread's root (so a store that never saw it counts it there).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            thread: Option<Seq>,
        },
        /// A staff member's watermark moved forward.
        MessagesRead {
            /// The conversation.
            conversation: ConversationId,
            /// Who read.
            staff: StaffId,
            /// The new watermark.
            last_read: Seq,
        },
        /// A staff member marked messages unread: the watermark moved back.
        MarkedUnread {
            /// The conversation.
            conversation: ConversationId,
            /// Who.
            staff: StaffId,
            /// The new watermark.
            last_read: Seq,
        },
        /// A staff member muted or unmuted a conversation.
        MuteChanged {
            /// The conversation.
            conversation: ConversationId,
            /// Who.
            staff: StaffId,
            /// Now muted or not.
            muted: bool,
        },
        /// A follower's thread watermark moved forward.
        ThreadRead {
            /// The conversation.
            conversation: ConversationId,
            /// The seq of the thread's root.
            thread: Seq,
            /// Who read.
            staff: StaffId,
            /// The new thread watermark.
            last_read: Seq,
        },
        /// A staff member marked a thread unread from a reply on (following it, if they did not):
        /// the thread watermark moved back.
        ThreadMarkedUnread {
            /// The conversation.
            conversation: ConversationId,
            /// The seq of the thread's root.
            thread: Seq,
            /// Who.
            staff: StaffId,
            /// The new thread watermark.
            last_read: Seq,
        },
        /// A staff member followed a thread (explicitly; replying and being mentioned follow by
        /// themselves) or stopped following it.
        ThreadFollowed {
            /// The conversation.
            conversation: ConversationId,
            /// The seq of the thread's root.
            thread: Seq,
            /// Who.
            staff: StaffId,
            /// Following now or not.
            following: bool,
            /// A new follower's watermark: the thread's newest reply (its root when it has none).
            last_read: Seq,
        },
    }
}

impl Event {
    /// The conversation the event belongs to.
    pub fn conversation(&self) -> ConversationId {
        match self {
            Event::ConversationCreated { conversation, .. }
            | Event::ParticipantAdded { conversation, .. } => conversation.id,
            Event::MessageCreated { message } => message.conversation,
            Event::ParticipantRemoved { conversation, .. }
            | Event::ConversationRenamed { conversation, .. }
            | Event::MessageEdited { conversation, .. }
            | Event::ReactionChanged { conversation, .. }
            | Event::EveryoneMentionsChanged { conversation, .. }
            | Event::MessageDeleted { conversation, .. }
            | Event::MessagesRead { conversation, .. }
            | Event::MarkedUnread { conversation, .. }
            | Event::MuteChanged { conversation, .. }
            | Event::ThreadRead { conversation, .. }
            | Event::ThreadMarkedUnread { conversation, .. }
            | Event::ThreadFollowed { conversation, .. } => *conversation,
        }
    }

    /// The message an edit, a reaction or a deletion changes in place: its conversation and
    /// seq (`None` for every other event).
    pub fn changed_message(&self) -> Option<(ConversationId, Seq)> {
        match self {
            Event::MessageEdited {
                conversation, seq, ..
            }
            | Event::ReactionChanged {
                conversation, seq, ..
            }
            | Event::MessageDeleted {
                conversation, seq, ..
            } => Some((*conversation, *seq)),
            _ => None,
        }
    }

    /// Changes the message [`Event::changed_message`] names as this event says: every copy
    /// of a message (the relay's rows, a browser's window, the in-memory host) changes by
    /// this one function.
    pub fn change_message(&self, m: &mut Message) {
        match self {
            Event::MessageEdited {
                body,
                mention_ranges,
                edited_at,
                ..
            } => m.edit(body, mention_ranges, *edited_at),
            Event::ReactionChanged {
                staff, emoji, added, ..
            } => crate::reactions::apply(&mut m.reactions, staff, emoji, *added),
            Event::MessageDeleted { .. } => m.tombstone(),
            _ => {}
        }
    }

    /// For events that only their actor receives (reads, marks, mutes): that staff member.
    pub fn private_to(&self) -> Option<&StaffId> {
        match self {
            Event::MessagesRead { staff, .. }
            | Event::MarkedUnread { staff, .. }
            | Event::MuteChanged { staff, .. }
            | Event::ThreadRead { staff, .. }
            | Event::ThreadMarkedUnread { staff, .. }
            | Event::ThreadFollowed { staff, .. } => Some(staff),
            _ => None,
        }
    }
}

/// An event and its place in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoggedEvent {
    /// Its offset in the global log.
    pub offset: Offset,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// Everything the relay sends.
// Events are the common frame and live one at a time; boxing them would cost an allocation
// per frame to save stack space nobody is short of.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The state of one staff member at an offset: the start of a session or a repair.
    Snapshot(Box<Snapshot>),
    /// The staff member's totals at `offset`, sent before a snapshot when `hello` asked for
    /// them (`counts_first`): exact at that offset, and replaced by the snapshot that follows.
    Counts {
        /// The offset the totals are at.
        offset: Offset,
        /// Totals over the unmuted conversations and their followed threads.
        total: Totals,
    },
    /// The end of a replay after `hello` with `resume_from`: from here on, live events.
    Resumed {
        /// The last offset replayed.
        offset: Offset,
        /// The protocol versions the relay serves.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocols: Option<ProtocolRange>,
    },
    /// One staff member's counts in one conversation changed, at `offset`.
    UnreadUpdated(UnreadUpdate),
    /// A write or read was accepted.
    Ack(Ack),
    /// A frame was refused; nothing changed.
    Error(ErrorFrame),
    /// Someone who shares a conversation with me changed presence (ephemeral, coalesced: a
    /// person's presence is announced at most once a second). After `snapshot` or `resumed`,
    /// the relay sends one for each such person who is not offline.
    Presence {
        /// Who.
        staff: StaffId,
        /// Now.
        presence: Presence,
        /// In quiet hours or snoozed (`crate::quiet`): "do not disturb". Absent: false.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dnd: bool,
    },
    /// Someone else is typing in a conversation (ephemeral: no offset, never replayed).
    Typing {
        /// Where.
        conversation: ConversationId,
        /// Who.
        staff: StaffId,
    },
    /// How far other participants of a conversation have read (their watermarks), for "Seen"
    /// and "Seen by". Sent when a watermark moves, when someone joins, and after `snapshot` or
    /// `resumed` for every conversation (the store forgets them at those frames). People who
    /// hide their read state are left out, and people who hide theirs get none.
    Seen {
        /// Where.
        conversation: ConversationId,
        /// Who has read up to where; `last_read: null` means that person stopped sharing it.
        seen: Vec<ReadPosition>,
    },
    /// My preferences, after `snapshot`/`resumed` and whenever a tab of mine changes them.
    Preferences {
        /// See [`Request::SetPreferences`].
        hide_read_state: bool,
    },
    /// My quiet hours and snooze, after `snapshot`/`resumed` (empty when none are set), and
    /// whenever a tab of mine changes them (see [`Request::SetQuiet`]).
    Quiet {
        /// The settings.
        quiet: crate::quiet::Quiet,
    },
    /// An event of the log.
    #[serde(untagged)]
    Event(LoggedEvent),
}

/// One participant's read position, in a `seen` frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadPosition {
    /// Who.
    pub staff: StaffId,
    /// Their watermark: every message up to this seq is read. `None`: not shared (any more).
    pub last_read: Option<Seq>,
}

// ---- decoding server frames and events: tag first (see `tagged`), nothing buffered ----

/// The server frames that are not events, as an externally tagged twin of [`ServerFrame`].
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum FrameFields {
    Snapshot(Box<Snapshot>),
    Counts {
        offset: Offset,
        total: Totals,
    },
    Resumed {
        offset: Offset,
        #[serde(default)]
        protocols: Option<ProtocolRange>,
    },
    UnreadUpdated(UnreadUpdate),
    Ack(Ack),
    Error(ErrorFrame),
    Typing {
        conversation: ConversationId,
        staff: StaffId,
    },
    Presence {
        staff: StaffId,
        presence: Presence,
        #[serde(default)]
        dnd: bool,
    },
    Seen {
        conversation: ConversationId,
        seen: Vec<ReadPosition>,
    },
    Preferences {
        hide_read_state: bool,
    },
    Quiet {
        quiet: crate::quiet::Quiet,
    },
}

/// The `type`s of server frames that are not events (the protocol doc's test requires an
/// example of each).
pub const FRAME_TYPES: [&str; 11] = [
    "snapshot",
    "counts",
    "resumed",
    "unread_updated",
    "ack",
    "error",
    "typing",
    "presence",
    "seen",
    "preferences",
    "quiet",
];

/// Decodes the rest of an object that started with `offset` and an event `type`.
fn logged_event<'de, A: MapAccess<'de>>(lead: tagged::Lead, map: A) -> Result<LoggedEvent, A::Error> {
    let offset = lead
        .offset
        .ok_or_else(|| de::Error::custom("an event's `offset` comes right before its `type`"))?;
    let event = EventFields::deserialize(tagged::Rest::new(lead.tag, map))?.into();
    Ok(LoggedEvent { offset, event })
}

tagged::map_deserialize!(
    ServerFrame,
    "a server frame: an object, `type` first (events: `offset`, `type`)",
    |map| {
        let lead = tagged::lead(&mut map, "type")?;
        if FRAME_TYPES.contains(&lead.tag.as_str()) {
            if lead.offset.is_some() {
                return Err(de::Error::custom("only events start with `offset`"));
            }
            return Ok(
                match FrameFields::deserialize(tagged::Rest::new(lead.tag, map))? {
                    FrameFields::Snapshot(s) => ServerFrame::Snapshot(s),
                    FrameFields::Counts { offset, total } => ServerFrame::Counts { offset, total },
                    FrameFields::Resumed { offset, protocols } => ServerFrame::Resumed { offset, protocols },
                    FrameFields::UnreadUpdated(u) => ServerFrame::UnreadUpdated(u),
                    FrameFields::Ack(a) => ServerFrame::Ack(a),
                    FrameFields::Error(e) => ServerFrame::Error(e),
                    FrameFields::Typing { conversation, staff } => {
                        ServerFrame::Typing { conversation, staff }
                    }
                    FrameFields::Presence { staff, presence, dnd } => {
                        ServerFrame::Presence { staff, presence, dnd }
                    }
                    FrameFields::Seen { conversation, seen } => ServerFrame::Seen { conversation, seen },
                    FrameFields::Preferences { hide_read_state } => {
                        ServerFrame::Preferences { hide_read_state }
                    }
                    FrameFields::Quiet { quiet } => ServerFrame::Quiet { quiet },
                },
            );
        }
        logged_event(lead, map).map(ServerFrame::Event)
    }
);

tagged::map_deserialize!(
    LoggedEvent,
    "an event: an object starting with `offset`, then `type`",
    |map| {
        let lead = tagged::lead(&mut map, "type")?;
        logged_event(lead, map)
    }
);

tagged::map_deserialize!(Event, "an event: an object, `type` first", |map| {
    let lead = tagged::lead(&mut map, "type")?;
    if lead.offset.is_some() {
        return Err(de::Error::custom("an offset belongs to a logged event"));
    }
    EventFields::deserialize(tagged::Rest::new(lead.tag, map)).map(Event::from)
});

/// The checkpoint the relay sends after each change to a staff member's counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadUpdate {
    /// The offset of the event that changed the counts.
    pub offset: Offset,
    /// The conversation.
    pub conversation: ConversationId,
    /// When the counts are a thread's: the seq of its root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<Seq>,
    /// Its unread count (the thread's, when `thread` is set).
    pub unread: u32,
    /// Its mention count (the thread's, when `thread` is set).
    pub mentions: u32,
    /// The new total over unmuted conversations and their followed threads.
    pub total: Totals,
    /// The digest of the recipient's whole count state after the event (`shared::digest`):
    /// a store whose own differs has a wrong count somewhere, not only here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<crate::digest::CountDigest>,
}

/// A staff member's state: every conversation they are in, with recent messages and counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The offset this state is at.
    pub offset: Offset,
    /// Who this is.
    pub me: StaffId,
    /// Names of the people in these conversations (the full directory is `GET /api/staff`).
    pub staff: Vec<Staff>,
    /// Every conversation `me` is in.
    pub conversations: Vec<ConversationState>,
    /// Totals over the unmuted conversations.
    pub total: Totals,
    /// The protocol versions the relay serves (set by the relay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<ProtocolRange>,
}

/// One conversation as one staff member sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationState {
    /// The conversation.
    pub conversation: Conversation,
    /// Seq of its newest message (0 if none).
    pub head: Seq,
    /// This staff member's watermark.
    pub last_read: Seq,
    /// Muted by this staff member.
    #[serde(default)]
    pub muted: bool,
    /// This staff member's counts here.
    pub counts: Counts,
    /// When it last had a message (or was created).
    pub last_activity: Millis,
    /// The newest messages, contiguous up to `head` and in order (tombstones and thread
    /// replies included), and the whole unread range when that is not too long.
    pub messages: Vec<Message>,
    /// The threads of this conversation this staff member follows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub threads: Vec<ThreadState>,
}

/// One followed thread as its follower sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadState {
    /// The seq of its root.
    pub root: Seq,
    /// The seq of its newest reply (the root's, when it has none).
    pub head: Seq,
    /// The follower's thread watermark.
    pub last_read: Seq,
    /// The follower's counts in it.
    pub counts: Counts,
}

/// The answer to an accepted frame.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The request id of the frame, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<RequestId>,
    /// The offset of the last event the write appended (or the current one if it changed
    /// nothing); the write is durable when this arrives.
    pub offset: Offset,
    /// The send's client-made id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientMsgId>,
    /// The conversation written to or created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationId>,
    /// The message created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageId>,
    /// Its seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<Seq>,
}

/// A refusal. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// The request id of the refused frame, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<RequestId>,
    /// A stable code to act on.
    pub code: ErrorCode,
    /// A human-readable explanation (never containing secrets).
    pub message: String,
    /// For `rate_limited`: when to try again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorFrame {
    /// A refusal of request `req` (every error frame is built here).
    pub fn new(req: Option<RequestId>, code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorFrame {
            req,
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// The same refusal, with when to try again.
    pub fn retry_after(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }
}

/// Stable error codes, on the wire in snake_case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not the shape of any frame.
    MalformedFrame,
    /// A `type` this relay does not know.
    UnknownType,
    /// Larger than `limits::CLIENT_FRAME_MAX_BYTES`.
    FrameTooLarge,
    /// An HTTP body (an upload) over its limit.
    TooLarge,
    /// A field breaks a rule (length, count, emptiness); the message says which.
    InvalidInput,
    /// The token is missing, forged, expired, or for someone unknown or deactivated.
    Unauthorized,
    /// The first frame must be `hello`, and only the first.
    HelloRequired,
    /// No such conversation, message, staff member or attachment (or not one you may see).
    NotFound,
    /// You are not a participant of that conversation.
    NotParticipant,
    /// Only the author may edit or delete a message.
    NotAuthor,
    /// That cannot be done to this kind of thing (e.g. renaming a direct conversation).
    NotAllowed,
    /// Too many requests; retry after `retry_after_ms`.
    RateLimited,
    /// A budget over a longer time (such as the upload bytes per day) is spent.
    QuotaExceeded,
    /// The client speaks a protocol version the relay does not serve (the message says which
    /// it does): reload the widget.
    UnsupportedProtocol,
    /// The relay failed; the write was not stored.
    Internal,
    /// The database that orders writes (a cluster's PostgreSQL) cannot be reached: the write
    /// may or may not be stored, so retry it with the same `client_id` (never applied twice).
    Unavailable,
    /// An HTTP request body arrived slower than the relay's minimum rate (HTTP 408); nothing
    /// was stored.
    Timeout,
}

impl ErrorCode {
    /// Every code, for documentation and metrics.
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::MalformedFrame,
        ErrorCode::UnknownType,
        ErrorCode::FrameTooLarge,
        ErrorCode::TooLarge,
        ErrorCode::InvalidInput,
        ErrorCode::Unauthorized,
        ErrorCode::HelloRequired,
        ErrorCode::NotFound,
        ErrorCode::NotParticipant,
        ErrorCode::NotAuthor,
        ErrorCode::NotAllowed,
        ErrorCode::RateLimited,
        ErrorCode::QuotaExceeded,
        ErrorCode::UnsupportedProtocol,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedFrame => "malformed_frame",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NotParticipant => "not_participant",
            ErrorCode::NotAuthor => "not_author",
            ErrorCode::NotAllowed => "not_allowed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::UnsupportedProtocol => "unsupported_protocol",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
        }
    }
}

/// WebSocket close codes the relay uses.
pub mod close {
    /// A normal close (the client's own, or the relay's when a session ends).
    pub const NORMAL: u16 = 1000;
    /// The relay is shutting down; reconnect and resume.
    pub const GOING_AWAY: u16 = 1001;
    /// A WebSocket protocol violation (RFC 6455 §7.4.1).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message over the size the relay reads at all.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The token was refused, or it expired while the socket was open: reconnect with a fresh
    /// one.
    pub const UNAUTHORIZED: u16 = 4001;
    /// No `hello` arrived in time.
    pub const HELLO_TIMEOUT: u16 = 4002;
    /// The staff member was deactivated.
    pub const DEACTIVATED: u16 = 4003;
    /// The client did not read its events fast enough; reconnect and resume from its offset.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// The peer stopped answering pings.
    pub const DEAD_PEER: u16 = 4009;
    /// The client's protocol version is not served: reload the widget.
    pub const UNSUPPORTED_PROTOCOL: u16 = 4010;
    /// Too many connections for this staff member.
    pub const TOO_MANY_CONNECTIONS: u16 = 4029;
}

/// Why a client frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Longer than the frame limit.
    #[error("frame of {0} bytes exceeds the limit of {max}", max = crate::limits::CLIENT_FRAME_MAX_BYTES)]
    TooLarge(usize),
    /// A `type` that names no request.
    #[error("unknown frame type {0:?}")]
    UnknownType(String),
    /// Not JSON, or missing or ill-typed fields.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

impl DecodeError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge(_) => ErrorCode::FrameTooLarge,
            DecodeError::UnknownType(_) => ErrorCode::UnknownType,
            DecodeError::Malformed(_) => ErrorCode::MalformedFrame,
        }
    }
}

/// Decodes a client frame, telling apart too large, unknown type, and malformed.
pub fn decode_client_frame(text: &str) -> Result<ClientFrame, DecodeError> {
    if text.len() > crate::limits::CLIENT_FRAME_MAX_BYTES {
        return Err(DecodeError::TooLarge(text.len()));
    }
    serde_json::from_str::<ClientFrame>(text).map_err(|e| {
        #[derive(Deserialize)]
        struct Tag<'a> {
            #[serde(borrow, rename = "type")]
            kind: Option<std::borrow::Cow<'a, str>>,
        }
        match serde_json::from_str::<Tag<'_>>(text) {
            Ok(Tag { kind: Some(kind) }) if !REQUEST_TYPES.contains(&kind.as_ref()) => {
                DecodeError::UnknownType(kind.chars().take(40).collect())
            }
            _ => DecodeError::Malformed(e.to_string()),
        }
    })
}

/// The request id of a frame that could not be decoded, when it is readable, so that its
/// error can still name the request.
pub fn peek_req(text: &str) -> Option<RequestId> {
    #[derive(Deserialize)]
    struct Req {
        req: Option<RequestId>,
    }
    if text.len() > crate::limits::CLIENT_FRAME_MAX_BYTES {
        return None;
    }
    serde_json::from_str::<Req>(text).ok()?.req
}

/// Encodes a frame as JSON text.
pub fn encode<T: Serialize>(frame: &T) -> String {
    // Serializing these types cannot fail: no maps with non-string keys, no custom errors.
    serde_json::to_string(frame).expect("frames always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(json: &str) -> Result<ServerFrame, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn server_frames_decode_with_the_tag_first_and_events_with_offset_first() {
        assert_eq!(
            server(r#"{"type":"resumed","offset":9}"#),
            Ok(ServerFrame::Resumed {
                offset: Offset(9),
                protocols: None
            })
        );
        let read = server(
            r#"{"offset":9,"type":"messages_read","conversation":2,"staff":"bob","last_read":4,"extra":[1]}"#,
        );
        assert_eq!(
            read,
            Ok(ServerFrame::Event(LoggedEvent {
                offset: Offset(9),
                event: Event::MessagesRead {
                    conversation: ConversationId(2),
                    staff: StaffId::new("bob").unwrap(),
                    last_read: Seq(4),
                },
            }))
        );
        // What breaks the order is refused with a message that says so, as is what lacks parts.
        for (json, says) in [
            (r#"{"offset":9,"type":"resumed"}"#, "only events"),
            (r#"{"req":1,"type":"ack","offset":3}"#, "must be the first field"),
            (
                r#"{"type":"messages_read","offset":9,"conversation":2,"staff":"b","last_read":4}"#,
                "offset",
            ),
            (r#"{"offset":9}"#, "missing field `type`"),
            (r#"{"offset":9,"type":"fly"}"#, "unknown variant `fly`"),
            (r#"{"type":"ack"}"#, "missing field `offset`"),
            (r#"[1]"#, "invalid type"),
        ] {
            let e = server(json).unwrap_err();
            assert!(e.contains(says), "{json}: {e}");
        }
        let notice = r#"{"id":1,"conversation":2,"seq":1,"sender":"bob","body":"","created_at":0,"notice":{"title":"T","notice":"created"}}"#;
        let e = serde_json::from_str::<Message>(notice).unwrap_err().to_string();
        assert!(e.contains("`notice` must be the first field"), "{e}");
    }

    #[test]
    fn request_type_table_names_every_request() {
        // Every name is one serde knows (a frame of just that type decodes or lacks fields)...
        for name in REQUEST_TYPES {
            let e = serde_json::from_str::<ClientFrame>(&format!(r#"{{"type":"{name}"}}"#));
            if let Err(e) = e {
                assert!(e.to_string().contains("missing field"), "{name}: {e}");
            }
        }
        // ...and `kind` names each decoded request by its own `type`.
        for json in [
            r#"{"type":"mark_all_read"}"#,
            r#"{"type":"request_snapshot"}"#,
            r#"{"type":"hello","token":"t"}"#,
            r#"{"type":"mark_read","conversation":1,"up_to":2}"#,
        ] {
            let f = decode_client_frame(json).unwrap();
            assert_eq!(type_of(json), f.request.kind());
        }
        let mut names = REQUEST_TYPES.to_vec();
        names.dedup();
        assert_eq!(names.len(), 31);
    }

    fn type_of(json: &str) -> String {
        serde_json::from_str::<serde_json::Value>(json).unwrap()["type"]
            .as_str()
            .unwrap()
            .into()
    }

    #[test]
    fn decode_tells_unknown_type_from_malformed() {
        assert!(matches!(
            decode_client_frame(r#"{"type":"fly"}"#),
            Err(DecodeError::UnknownType(_))
        ));
        assert!(matches!(
            decode_client_frame("{nope"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_client_frame(r#"{"type":"mark_read","conversation":"x"}"#),
            Err(DecodeError::Malformed(_))
        ));
        let big = format!(
            r#"{{"type":"hello","token":"{}"}}"#,
            "a".repeat(crate::limits::CLIENT_FRAME_MAX_BYTES)
        );
        assert!(matches!(decode_client_frame(&big), Err(DecodeError::TooLarge(_))));
    }

    #[test]
    fn the_request_id_of_an_undecodable_frame_is_still_read() {
        assert_eq!(peek_req(r#"{"req":7,"type":"fly"}"#), Some(RequestId(7)));
        assert_eq!(
            peek_req(r#"{"type":"mark_read","req":8,"conversation":"x"}"#),
            Some(RequestId(8))
        );
        assert_eq!(peek_req(r#"{"type":"mark_read"}"#), None);
        assert_eq!(peek_req("{nope"), None);
    }

    #[test]
    fn error_codes_serialize_to_their_names() {
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
        }
    }
}
