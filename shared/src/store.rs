//! `ChatStore`: the reducer the browser runs as its `chatStore`.
//!
//! It applies server frames (snapshot, events, `unread_updated`, acks, errors) and exposes what
//! a widget shows. It counts with the same [`UnreadProjection`] the relay uses, for one staff
//! member over the messages it has loaded, and treats each `unread_updated` as a checkpoint:
//! where its own exact figure differs it takes the relay's, counts a divergence, and asks for a
//! snapshot. Events at or below the applied offset are ignored, so replays are harmless.
//!
//! It does no I/O: [`ChatStore::apply`] returns the frames to send (a snapshot request), and
//! [`ChatStore::request`] stamps outgoing frames with request ids so acks and errors find the
//! send in the outbox they belong to.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use crate::ids::{ClientMsgId, ConversationId, MessageId, Millis, Offset, RequestId, Seq, StaffId};
use crate::limits;
use crate::mentions::MentionRange;
use crate::model::{Attachment, Conversation, ConversationKind, Counts, Message, Totals};
use crate::protocol::{
    ClientFrame, ErrorCode, ErrorFrame, Event, LoggedEvent, Request, ServerFrame, Snapshot, UnreadUpdate,
};
use crate::unread::{CountChange, Tracking, UnreadProjection};

/// A conversation as the store holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct ConversationView {
    /// The conversation (participants, title).
    pub conversation: Conversation,
    /// When it last had a message.
    pub last_activity: Millis,
    /// Loaded messages: contiguous and in order, up to the newest.
    pub messages: Vec<Message>,
}

/// Rows a conversation renders at least when opened (see [`ChatStore::opening_window`]).
pub const WINDOW_ROWS: usize = 60;
/// Rows a conversation renders at most when opened: with more unread than that, the window
/// starts at the first unread message and ends this many rows later.
pub const WINDOW_MAX_ROWS: usize = 120;

/// The part of a conversation's loaded messages a widget renders: `from` (a seq) to `to`
/// (inclusive), or to the newest when `to` is `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// The first message rendered.
    pub from: Seq,
    /// The last message rendered; `None`: the newest.
    pub to: Option<Seq>,
}
/// Read messages shown above the first unread one when opening.
pub const WINDOW_CONTEXT: usize = 10;
/// Rows added above when the reader scrolls to the top of what is rendered.
pub const WINDOW_STEP: usize = 50;
/// The most rows a conversation renders at once: growing the window at one end releases rows
/// at the other, so a reader who scrolls through thousands of messages keeps a few hundred in
/// the page, not all of them.
pub const WINDOW_LIMIT: usize = 240;

impl ConversationView {
    /// The seq of the oldest loaded message.
    pub fn oldest_loaded(&self) -> Option<Seq> {
        self.messages.first().map(|m| m.seq)
    }
}

/// A send waiting for its acknowledgement (kept across reloads by the widget).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSend {
    /// Its client-made id: resending it is safe.
    pub client_id: ClientMsgId,
    /// Where.
    pub conversation: ConversationId,
    /// Text.
    pub body: String,
    /// Uploaded files.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// The message it replies to.
    #[serde(default)]
    pub reply_to: Option<MessageId>,
    /// The thread it replies in (its root's seq), if it is a reply in a thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<Seq>,
    /// Whom it mentions, where (chosen in the picker).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mention_ranges: Vec<MentionRange>,
    /// Why the relay refused it, if it did (then it waits for the person to retry or drop it).
    #[serde(default)]
    pub failed: Option<String>,
    /// When it was first queued (milliseconds since the epoch, the browser's clock): past the
    /// relay's memory of client ids it is no longer resent by itself.
    #[serde(default)]
    pub queued_at: Option<Millis>,
}

impl PendingSend {
    /// The frame that sends it.
    pub fn request(&self) -> Request {
        let attachments = self.attachments.iter().map(|a| a.id.clone()).collect();
        match self.thread {
            Some(thread) => Request::ReplyInThread {
                mention_ranges: self.mention_ranges.clone(),
                client_id: self.client_id.clone(),
                conversation: self.conversation,
                thread,
                body: self.body.clone(),
                attachments,
            },
            None => Request::SendMessage {
                mention_ranges: self.mention_ranges.clone(),
                client_id: self.client_id.clone(),
                conversation: self.conversation,
                body: self.body.clone(),
                attachments,
                reply_to: self.reply_to,
            },
        }
    }
}

/// A row of the conversation list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationItem {
    /// The conversation.
    pub id: ConversationId,
    /// Its display title (a group's title, or the other person's name).
    pub title: String,
    /// Direct or group.
    pub kind: ConversationKind,
    /// The newest message, for a preview.
    pub last_message: Option<Message>,
    /// When it last had activity.
    pub last_activity: Millis,
    /// The viewer's counts.
    pub counts: Counts,
    /// Muted by the viewer.
    pub muted: bool,
}

/// A checkpoint that disagreed with the store's own figure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The checkpoint's offset.
    pub offset: Offset,
    /// Where.
    pub conversation: ConversationId,
    /// What the store had computed.
    pub ours: Counts,
    /// What the relay said (taken).
    pub relays: Counts,
}

/// What applying a frame asks the host to do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Effects {
    /// Frames to send to the relay.
    pub send: Vec<ClientFrame>,
    /// A divergence to log.
    pub divergence: Option<Divergence>,
    /// A refusal to show (not tied to a pending send).
    pub error: Option<ErrorFrame>,
}

/// One conversation as [`StoreSummary`] compares it.
#[derive(Clone, Debug, PartialEq)]
pub struct ConversationSummary {
    /// The conversation (participants sorted).
    pub conversation: Conversation,
    /// Its newest seq.
    pub head: Seq,
    /// The viewer's watermark.
    pub last_read: Seq,
    /// Muted by the viewer.
    pub muted: bool,
    /// The viewer's counts.
    pub counts: Counts,
    /// Last activity.
    pub last_activity: Millis,
    /// The newest messages.
    pub messages: Vec<Message>,
    /// The threads the viewer follows here: root, thread watermark, counts.
    pub threads: Vec<(Seq, Seq, Counts)>,
}

/// A thread the viewer follows, as the inbox and the "Threads" view list it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadItem {
    /// Its conversation.
    pub conversation: ConversationId,
    /// Its root's seq.
    pub root: Seq,
    /// The viewer's counts in it.
    pub counts: Counts,
    /// The viewer's thread watermark.
    pub last_read: Seq,
    /// Its root, when loaded.
    pub root_message: Option<Message>,
    /// Its newest loaded reply.
    pub last_reply: Option<Message>,
    /// Whether its conversation is muted.
    pub muted: bool,
}

/// One row of the Unreads inbox: a conversation or a followed thread with unread messages.
// Rows live while a list renders; a thread's row carries two messages, a conversation's one.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnreadItem {
    /// A conversation's own unread messages.
    Conversation(ConversationItem),
    /// A followed thread's unread replies.
    Thread(ThreadItem),
}

impl UnreadItem {
    /// Its counts.
    pub fn counts(&self) -> Counts {
        match self {
            UnreadItem::Conversation(c) => c.counts,
            UnreadItem::Thread(t) => t.counts,
        }
    }

    /// When it last had activity.
    pub fn last_activity(&self) -> Millis {
        match self {
            UnreadItem::Conversation(c) => c.last_activity,
            UnreadItem::Thread(t) => t.last_activity(),
        }
    }
}

impl ThreadItem {
    /// When its newest loaded reply (or its root) was written.
    pub fn last_activity(&self) -> Millis {
        self.last_reply
            .as_ref()
            .or(self.root_message.as_ref())
            .map_or(Millis(0), |m| m.created_at)
    }
}

/// What shows under a thread's root: how many replies, who replied last, when.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadSummary {
    /// Live replies.
    pub replies: u32,
    /// The latest repliers, newest first (at most three).
    pub repliers: Vec<StaffId>,
    /// When the newest reply came.
    pub last_reply_at: Option<Millis>,
}

/// Everything the widget shows, comparable across two stores (invariant 7 of docs/semantics.md).
#[derive(Clone, Debug, PartialEq)]
pub struct StoreSummary {
    /// Per conversation, by id.
    pub conversations: Vec<ConversationSummary>,
    /// Totals.
    pub total: Totals,
}

/// The browser's state for one staff member.
#[derive(Clone, Debug)]
pub struct ChatStore {
    me: Option<StaffId>,
    /// The totals of a `counts` frame, until the snapshot it precedes is loaded.
    early_total: Option<Totals>,
    applied: Offset,
    names: BTreeMap<StaffId, String>,
    conversations: FxHashMap<ConversationId, ConversationView>,
    projection: UnreadProjection,
    outbox: Vec<PendingSend>,
    in_flight: FxHashMap<RequestId, ClientMsgId>,
    next_req: u64,
    divergences: u32,
    awaiting_snapshot: bool,
    /// Bumped whenever the outbox changes, so the host saves it only then.
    outbox_revision: u64,
    /// Reading: the newest message the viewport showed, per conversation.
    seen: FxHashMap<ConversationId, Seq>,
    /// Reading: the `mark_read` already asked for, per conversation (until its event arrives).
    asked: FxHashMap<ConversationId, Seq>,
    /// Reading: conversations I marked unread, which the viewport does not read again until
    /// they are opened again ([`opened`](Self::opened)).
    held: FxHashSet<ConversationId>,
    /// Reading in threads, by (conversation, root): the same three, for the thread pane.
    thread_seen: FxHashMap<(ConversationId, Seq), Seq>,
    thread_asked: FxHashMap<(ConversationId, Seq), Seq>,
    thread_held: FxHashSet<(ConversationId, Seq)>,
    /// The projection's list of changed counts, kept to save an allocation per event (the
    /// store reads its counts from the projection, not from this list).
    scratch: Vec<CountChange>,
    /// Who is typing where (ephemeral; the host notes `typing` frames with its clock).
    typing: crate::typing::Typing,
    /// The presence of the people I share a conversation with (absent: offline).
    presence: FxHashMap<StaffId, crate::protocol::Presence>,
    /// Who is in "do not disturb" (among those not offline).
    dnd: FxHashSet<StaffId>,
    /// My quiet hours and snooze as shown: what I last asked for, at once.
    quiet: crate::quiet::Quiet,
    /// My quiet hours and snooze as the relay last said (what a refused change goes back to).
    quiet_confirmed: crate::quiet::Quiet,
    /// The `set_quiet` waiting for its answer.
    quiet_asked: Option<RequestId>,
    /// How far the others have read, for "Seen" (what the relay shares).
    read_positions: crate::seen_by::ReadPositions,
    /// Whether I hide my read state (and so see nobody's).
    hide_read_state: bool,
}

impl Default for ChatStore {
    fn default() -> Self {
        Self::new()
    }
}

impl ChatStore {
    /// An empty store, before the first snapshot.
    pub fn new() -> Self {
        ChatStore {
            me: None,
            early_total: None,
            applied: Offset(0),
            names: BTreeMap::new(),
            conversations: FxHashMap::default(),
            projection: UnreadProjection::new(Tracking::Everyone),
            outbox: Vec::new(),
            in_flight: FxHashMap::default(),
            next_req: 1,
            divergences: 0,
            awaiting_snapshot: false,
            outbox_revision: 0,
            seen: FxHashMap::default(),
            asked: FxHashMap::default(),
            held: Default::default(),
            thread_seen: FxHashMap::default(),
            thread_asked: FxHashMap::default(),
            thread_held: Default::default(),
            scratch: Vec::new(),
            typing: crate::typing::Typing::default(),
            read_positions: Default::default(),
            hide_read_state: false,
            presence: FxHashMap::default(),
            dnd: FxHashSet::default(),
            quiet: crate::quiet::Quiet::default(),
            quiet_confirmed: crate::quiet::Quiet::default(),
            quiet_asked: None,
        }
    }

    /// An empty store holding a saved outbox (after a reload).
    pub fn with_outbox(outbox: Vec<PendingSend>) -> Self {
        ChatStore {
            outbox,
            ..Self::new()
        }
    }

    // ---- getters ----

    /// Who is signed in, once a snapshot arrived.
    pub fn me(&self) -> Option<&StaffId> {
        self.me.as_ref()
    }

    /// The last offset applied: sent as `resume_from` on reconnect.
    pub fn applied(&self) -> Offset {
        self.applied
    }

    /// Whether a snapshot arrived yet.
    pub fn is_ready(&self) -> bool {
        self.me.is_some()
    }

    /// How many checkpoints disagreed with the store's own figure.
    pub fn divergences(&self) -> u32 {
        self.divergences
    }

    /// A staff member's display name (their id when unknown).
    pub fn name_of<'a>(&'a self, staff: &'a StaffId) -> &'a str {
        self.names.get(staff).map_or(staff.as_str(), String::as_str)
    }

    /// The staff directory, sorted by name.
    pub fn directory(&self) -> Vec<(StaffId, String)> {
        let mut v: Vec<_> = self.names.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.1.cmp(&b.1));
        v
    }

    /// The digest of the viewer's whole count state (compared with each checkpoint's).
    pub fn digest(&self) -> u64 {
        self.me
            .as_ref()
            .map_or(crate::digest::digest(0, Totals::default()), |me| {
                self.projection.digest(me)
            })
    }

    /// Totals over unmuted conversations. Before the first snapshot: those of the `counts`
    /// frame ahead of it, if one came (exact at its offset), else zero.
    pub fn total(&self) -> Totals {
        match &self.me {
            Some(me) => self.projection.total(me),
            None => self.early_total.unwrap_or_default(),
        }
    }

    /// Whether [`total`](Self::total) is the relay's figure yet: after a snapshot, or a
    /// `counts` frame ahead of one.
    pub fn counts_known(&self) -> bool {
        self.me.is_some() || self.early_total.is_some()
    }

    /// The viewer's counts in a conversation.
    pub fn counts(&self, conversation: ConversationId) -> Counts {
        self.me
            .as_ref()
            .and_then(|me| self.projection.counts(me, conversation))
            .unwrap_or_default()
    }

    /// The viewer's watermark in a conversation.
    pub fn last_read(&self, conversation: ConversationId) -> Seq {
        self.me
            .as_ref()
            .and_then(|me| self.projection.last_read(me, conversation))
            .unwrap_or_default()
    }

    /// The newest seq of a conversation.
    pub fn head(&self, conversation: ConversationId) -> Seq {
        self.projection.head(conversation).unwrap_or_default()
    }

    /// Whether every message of a conversation back to its first is loaded (a snapshot may carry
    /// none of a conversation's messages when its budget ran out: then none are).
    pub fn history_complete(&self, conversation: ConversationId) -> bool {
        match self.conversations.get(&conversation) {
            Some(v) => match v.messages.first() {
                Some(first) => first.seq.0 <= 1,
                None => self.head(conversation).0 == 0,
            },
            None => true,
        }
    }

    /// Whether the viewer muted a conversation.
    pub fn is_muted(&self, conversation: ConversationId) -> bool {
        self.me
            .as_ref()
            .is_some_and(|me| self.projection.is_muted(me, conversation))
    }

    /// A conversation.
    pub fn conversation(&self, id: ConversationId) -> Option<&ConversationView> {
        self.conversations.get(&id)
    }

    /// A conversation's display title.
    pub fn title_of(&self, c: &Conversation) -> String {
        match (&c.title, c.kind) {
            (Some(t), _) => t.clone(),
            (None, _) => {
                let other = c.participants.iter().find(|p| Some(*p) != self.me.as_ref());
                // Nobody else and no title: empty, for the widget to name in its language.
                other.map_or_else(String::new, |p| self.name_of(p).to_string())
            }
        }
    }

    /// The conversation list, most recent activity first.
    pub fn conversation_list(&self) -> Vec<ConversationItem> {
        let mut items: Vec<ConversationItem> = self
            .conversations
            .values()
            .map(|v| ConversationItem {
                id: v.conversation.id,
                title: self.title_of(&v.conversation),
                kind: v.conversation.kind,
                last_message: v
                    .messages
                    .iter()
                    .rev()
                    .find(|m| !m.deleted && m.thread.is_none())
                    .cloned(),
                last_activity: v.last_activity,
                counts: self.counts(v.conversation.id),
                muted: self.is_muted(v.conversation.id),
            })
            .collect();
        items.sort_by(|a, b| b.last_activity.cmp(&a.last_activity).then(b.id.cmp(&a.id)));
        items
    }

    /// Sends waiting for their acknowledgement.
    pub fn outbox(&self) -> &[PendingSend] {
        &self.outbox
    }

    /// Changes whenever the outbox does: the host saves the outbox when it moved.
    pub fn outbox_revision(&self) -> u64 {
        self.outbox_revision
    }

    fn outbox_mut(&mut self) -> &mut Vec<PendingSend> {
        self.outbox_revision += 1;
        &mut self.outbox
    }

    /// What a widget renders of a conversation opened with `watermark`: from a few messages
    /// before the first unread one (at least [`WINDOW_ROWS`] from the end) to the newest, or,
    /// with more unread than [`WINDOW_MAX_ROWS`], that many rows from there. The rest waits
    /// until the reader scrolls ([`ChatStore::widen_window`] up, [`ChatStore::extend_window`]
    /// down), so opening a long conversation costs the same as opening a short one, and the
    /// first unread message is always rendered (reading what is in view never reads past what
    /// the reader has not seen).
    pub fn opening_window(&self, conversation: ConversationId, watermark: Seq) -> Window {
        let Some(view) = self.conversations.get(&conversation) else {
            return Window {
                from: Seq(0),
                to: None,
            };
        };
        let len = view.messages.len();
        let unread_at = self
            .first_unread_after(conversation, watermark)
            .map_or(len, |seq| view.messages.partition_point(|m| m.seq < seq));
        let from = unread_at
            .saturating_sub(WINDOW_CONTEXT)
            .min(len.saturating_sub(WINDOW_ROWS));
        self.window_from(conversation, from)
    }

    /// A window starting at the `from`-th loaded message, [`WINDOW_MAX_ROWS`] long at most.
    fn window_from(&self, conversation: ConversationId, from: usize) -> Window {
        let Some(view) = self.conversations.get(&conversation) else {
            return Window {
                from: Seq(0),
                to: None,
            };
        };
        let to = (view.messages.len() > from + WINDOW_MAX_ROWS)
            .then(|| view.messages[from + WINDOW_MAX_ROWS - 1].seq);
        Window {
            from: view.messages.get(from).map_or(Seq(0), |m| m.seq),
            to,
        }
    }

    /// The window of the newest messages ([`WINDOW_ROWS`] of them, to the newest): where the
    /// "new messages" pill takes the reader.
    pub fn newest_window(&self, conversation: ConversationId) -> Window {
        let len = self
            .conversations
            .get(&conversation)
            .map_or(0, |v| v.messages.len());
        self.window_from(conversation, len.saturating_sub(WINDOW_ROWS))
    }

    /// The window that shows `seq` with a few messages before it (a search result).
    pub fn window_at(&self, conversation: ConversationId, seq: Seq) -> Window {
        let at = self
            .conversations
            .get(&conversation)
            .map_or(0, |v| v.messages.partition_point(|m| m.seq < seq));
        self.window_from(conversation, at.saturating_sub(WINDOW_CONTEXT))
    }

    /// The end of the rendered part after the reader scrolled to its bottom: [`WINDOW_STEP`]
    /// loaded messages later than `to`, or `None` once that reaches the newest.
    pub fn extend_window(&self, conversation: ConversationId, to: Seq) -> Option<Seq> {
        let view = self.conversations.get(&conversation)?;
        let at = view.messages.partition_point(|m| m.seq <= to);
        let end = at + WINDOW_STEP;
        (end < view.messages.len()).then(|| view.messages[end - 1].seq)
    }

    /// The start of the rendered part after the reader scrolled to its top: [`WINDOW_STEP`]
    /// loaded messages earlier than `from` (the first loaded one at most).
    pub fn widen_window(&self, conversation: ConversationId, from: Seq) -> Seq {
        let Some(view) = self.conversations.get(&conversation) else {
            return from;
        };
        let at = view.messages.partition_point(|m| m.seq < from);
        view.messages
            .get(at.saturating_sub(WINDOW_STEP))
            .map_or(from, |m| m.seq)
    }

    /// `window` cut to at most [`WINDOW_LIMIT`] loaded messages: when it grew upwards
    /// (`grew_up`), the rows furthest below are released (its end is set), else the rows
    /// furthest above (its start moves down).
    pub fn bounded_window(&self, conversation: ConversationId, window: Window, grew_up: bool) -> Window {
        let Some(view) = self.conversations.get(&conversation) else {
            return window;
        };
        let len = view.messages.len();
        let start = view.messages.partition_point(|m| m.seq < window.from);
        let end = window
            .to
            .map_or(len, |to| view.messages.partition_point(|m| m.seq <= to));
        if end.saturating_sub(start) <= WINDOW_LIMIT {
            return window;
        }
        if grew_up {
            Window {
                from: window.from,
                to: Some(view.messages[start + WINDOW_LIMIT - 1].seq),
            }
        } else {
            Window {
                from: view.messages[end - WINDOW_LIMIT].seq,
                to: window.to,
            }
        }
    }

    /// The first loaded message after `watermark` that counts as unread for the viewer (by
    /// someone else, not deleted): where the "new messages" divider goes when the conversation
    /// was opened with that watermark.
    pub fn first_unread_after(&self, conversation: ConversationId, watermark: Seq) -> Option<Seq> {
        let me = self.me.as_ref()?;
        let view = self.conversations.get(&conversation)?;
        let later = view.messages.partition_point(|m| m.seq <= watermark);
        view.messages[later..]
            .iter()
            .find(|m| &m.sender != me && !m.deleted && m.thread.is_none())
            .map(|m| m.seq)
    }

    /// The first loaded reply of a thread after `watermark` that counts as unread for the
    /// viewer: where the thread pane's "new replies" divider goes.
    pub fn first_unread_reply_after(
        &self,
        conversation: ConversationId,
        root: Seq,
        watermark: Seq,
    ) -> Option<Seq> {
        let me = self.me.as_ref()?;
        let view = self.conversations.get(&conversation)?;
        let later = view.messages.partition_point(|m| m.seq <= watermark);
        view.messages[later..]
            .iter()
            .find(|m| m.thread == Some(root) && &m.sender != me && !m.deleted)
            .map(|m| m.seq)
    }

    /// The viewer's counts in a thread (0 unless they follow it).
    pub fn thread_counts(&self, conversation: ConversationId, root: Seq) -> Counts {
        self.me
            .as_ref()
            .and_then(|me| self.projection.thread_counts(me, conversation, root))
            .unwrap_or_default()
    }

    /// The viewer's thread watermark; `None` when they do not follow the thread.
    pub fn thread_last_read(&self, conversation: ConversationId, root: Seq) -> Option<Seq> {
        let me = self.me.as_ref()?;
        self.projection.thread_last_read(me, conversation, root)
    }

    /// Whether the viewer follows a thread.
    pub fn follows(&self, conversation: ConversationId, root: Seq) -> bool {
        self.thread_last_read(conversation, root).is_some()
    }

    /// The threads the viewer follows: (conversation, root, watermark, head, counts).
    fn followed_threads(&self) -> Vec<(ConversationId, Seq, Seq, Seq, Counts)> {
        self.me
            .as_ref()
            .map(|me| self.projection.threads_of(me))
            .unwrap_or_default()
    }

    /// The threads the viewer follows, newest activity first (the "Threads" view; the inbox
    /// keeps those with something unread).
    pub fn thread_list(&self) -> Vec<ThreadItem> {
        let mut items: Vec<ThreadItem> = self
            .followed_threads()
            .into_iter()
            .map(|(conversation, root, last_read, _, counts)| {
                let view = self.conversations.get(&conversation);
                let find = |seq: Seq| {
                    view.and_then(|v| {
                        let i = v.messages.partition_point(|m| m.seq < seq);
                        v.messages.get(i).filter(|m| m.seq == seq).cloned()
                    })
                };
                let last_reply = view.and_then(|v| {
                    v.messages
                        .iter()
                        .rev()
                        .find(|m| m.thread == Some(root) && !m.deleted)
                        .cloned()
                });
                ThreadItem {
                    conversation,
                    root,
                    counts,
                    last_read,
                    root_message: find(root),
                    last_reply,
                    muted: self.is_muted(conversation),
                }
            })
            .collect();
        items.sort_by(|a, b| {
            b.last_activity()
                .cmp(&a.last_activity())
                .then((b.conversation, b.root).cmp(&(a.conversation, a.root)))
        });
        items
    }

    /// The Unreads inbox: every unmuted conversation and followed thread with unread
    /// messages, newest activity first. Its counts are what the total adds, so they sum to it.
    pub fn unreads(&self) -> Vec<UnreadItem> {
        let mut items: Vec<UnreadItem> = self
            .conversation_list()
            .into_iter()
            .filter(|c| !c.muted && c.counts.unread > 0)
            .map(UnreadItem::Conversation)
            .chain(
                self.thread_list()
                    .into_iter()
                    .filter(|t| !t.muted && t.counts.unread > 0)
                    .map(UnreadItem::Thread),
            )
            .collect();
        items.sort_by_key(|i| std::cmp::Reverse(i.last_activity()));
        items
    }

    /// The loaded replies of a thread, in order. Complete whenever its root is loaded: loaded
    /// messages run without a gap to the newest, and replies come after their root.
    pub fn thread_replies(&self, conversation: ConversationId, root: Seq) -> Vec<&Message> {
        let Some(view) = self.conversations.get(&conversation) else {
            return Vec::new();
        };
        let after = view.messages.partition_point(|m| m.seq <= root);
        view.messages[after..]
            .iter()
            .filter(|m| m.thread == Some(root))
            .collect()
    }

    /// What shows under each loaded root of a conversation, from seq `from` on, that has
    /// replies, by root. A reply comes after its root, so only the messages from `from` are
    /// read: a view showing the newest rows of a long conversation reads those, not every
    /// message loaded (33,000 of them on each render, in the widget's benchmark).
    pub fn thread_summaries(&self, conversation: ConversationId, from: Seq) -> FxHashMap<Seq, ThreadSummary> {
        let mut out: FxHashMap<Seq, ThreadSummary> = FxHashMap::default();
        let Some(view) = self.conversations.get(&conversation) else {
            return out;
        };
        let start = view.messages.partition_point(|m| m.seq < from);
        for m in view.messages[start..].iter().rev() {
            let Some(root) = m.thread else { continue };
            // A root before `from` may have replies before it too: it is not summed in part.
            if m.deleted || root < from {
                continue;
            }
            let s = out.entry(root).or_default();
            s.replies += 1;
            s.last_reply_at = s.last_reply_at.max(Some(m.created_at));
            if s.repliers.len() < 3 && !s.repliers.contains(&m.sender) {
                s.repliers.push(m.sender.clone());
            }
        }
        out
    }

    /// Everything the widget shows, for comparing stores.
    pub fn summary(&self, recent: usize) -> StoreSummary {
        let mut conversations: Vec<_> = self
            .conversations
            .values()
            .map(|v| {
                let id = v.conversation.id;
                let mut c = v.conversation.clone();
                c.participants.sort();
                let skip = v.messages.len().saturating_sub(recent);
                let threads = self
                    .followed_threads()
                    .into_iter()
                    .filter(|(c, ..)| *c == id)
                    .map(|(_, root, last_read, _, counts)| (root, last_read, counts))
                    .collect();
                ConversationSummary {
                    threads,
                    conversation: c,
                    head: self.head(id),
                    last_read: self.last_read(id),
                    muted: self.is_muted(id),
                    counts: self.counts(id),
                    last_activity: v.last_activity,
                    messages: v.messages[skip..].to_vec(),
                }
            })
            .collect();
        conversations.sort_by_key(|c| c.conversation.id);
        StoreSummary {
            conversations,
            total: self.total(),
        }
    }

    // ---- inputs ----

    /// Stamps a request with a fresh request id.
    pub fn request(&mut self, request: Request) -> ClientFrame {
        let req = RequestId(self.next_req);
        self.next_req += 1;
        match &request {
            Request::SendMessage { client_id, .. } => {
                self.in_flight.insert(req, client_id.clone());
            }
            // My own quiet settings show at once (the controls follow the click); the relay's
            // `quiet` frame confirms them, or the next session's corrects a refused change.
            Request::SetQuiet { quiet } => {
                self.quiet = quiet.clone();
                self.quiet_asked = Some(req);
            }
            _ => {}
        }
        ClientFrame {
            req: Some(req),
            request,
        }
    }

    /// Queues a send: it shows at once as pending and stays until acknowledged. Returns the
    /// frame to send now.
    pub fn queue_send(&mut self, pending: PendingSend) -> ClientFrame {
        let request = pending.request();
        self.outbox_mut().retain(|p| p.client_id != pending.client_id);
        self.outbox_mut().push(pending);
        self.request(request)
    }

    /// The frames that resend every pending send that has not failed (after a reconnect).
    /// A send queued so long ago (`now` is the browser's clock) that the relay may have
    /// forgotten its client id is not resent by itself: it could be stored twice. It waits as
    /// failed for the person to send it again or drop it.
    ///
    /// A reconnect also forgets which reads were asked for: one in flight on the old socket
    /// may be lost, and is asked for again when its messages are next seen.
    pub fn resend_outbox(&mut self, now: Millis) -> Vec<ClientFrame> {
        self.asked.clear();
        self.thread_asked.clear();
        // A day of margin for the browser's clock against the relay's.
        let too_old = limits::CLIENT_ID_RETENTION_MS.saturating_sub(24 * 3600 * 1000);
        for p in self.outbox_mut().iter_mut() {
            let stale = p.queued_at.is_some_and(|at| now.0.saturating_sub(at.0) > too_old);
            if stale && p.failed.is_none() {
                p.failed = Some("Not sent for a week: send it again?".into());
            }
        }
        let requests: Vec<Request> = self
            .outbox
            .iter()
            .filter(|p| p.failed.is_none())
            .map(PendingSend::request)
            .collect();
        requests.into_iter().map(|r| self.request(r)).collect()
    }

    /// Retries a failed send.
    pub fn retry(&mut self, client_id: &ClientMsgId) -> Option<ClientFrame> {
        let p = self.outbox_mut().iter_mut().find(|p| &p.client_id == client_id)?;
        p.failed = None;
        let request = p.request();
        Some(self.request(request))
    }

    /// Reading: a conversation was opened (by the person: a click, a notification, a search
    /// result), so its view reads again if it was marked unread.
    pub fn opened(&mut self, conversation: ConversationId) {
        self.held.remove(&conversation);
    }

    /// Reading: the viewport showed message `seq` of a conversation. Nothing is sent yet; see
    /// [`read_seen`](Self::read_seen).
    pub fn note_seen(&mut self, conversation: ConversationId, seq: Seq) {
        if self.held.contains(&conversation) {
            return;
        }
        let seen = self.seen.entry(conversation).or_default();
        *seen = (*seen).max(seq.min(self.projection.head(conversation).unwrap_or_default()));
    }

    /// Whether a message that just arrived is news for me: `Some(muted)` when it counts as
    /// unread for me (someone else's, not deleted, past my watermark) and its conversation is
    /// not muted (`Some(false)`), or is muted but the message mentions me (`Some(true)`: the
    /// person chooses whether that notifies); `None` otherwise.
    pub fn news(&self, m: &Message) -> Option<bool> {
        let me = self.me.as_ref()?;
        if &m.sender == me || m.deleted || !self.conversations.contains_key(&m.conversation) {
            return None;
        }
        let watermark = match m.thread {
            // A reply is news to a follower of its thread, after their thread watermark.
            Some(root) => self.thread_last_read(m.conversation, root)?,
            None => self.last_read(m.conversation),
        };
        if m.seq <= watermark {
            return None;
        }
        let muted = self.is_muted(m.conversation);
        (!muted || m.mentions.contains(me)).then_some(muted)
    }

    /// Unread messages the viewport has not shown yet, below what it has: the "N new messages"
    /// of a reader scrolled up. They count as unread (by someone else, not deleted) and lie
    /// past both the watermark and the newest message seen.
    pub fn unseen_below(&self, conversation: ConversationId) -> u32 {
        let (Some(me), Some(view)) = (self.me.as_ref(), self.conversations.get(&conversation)) else {
            return 0;
        };
        let seen = self.seen.get(&conversation).copied().unwrap_or_default();
        let from = view
            .messages
            .partition_point(|m| m.seq <= seen.max(self.last_read(conversation)));
        view.messages[from..]
            .iter()
            .filter(|m| &m.sender != me && !m.deleted && m.thread.is_none())
            .count() as u32
    }

    /// Reading a thread: it was opened, so its pane reads again if it was marked unread.
    pub fn thread_opened(&mut self, conversation: ConversationId, root: Seq) {
        self.thread_held.remove(&(conversation, root));
    }

    /// Reading a thread: its pane showed reply `seq` (see [`note_seen`](Self::note_seen)).
    pub fn note_thread_seen(&mut self, conversation: ConversationId, root: Seq, seq: Seq) {
        if self.thread_held.contains(&(conversation, root)) {
            return;
        }
        let seen = self.thread_seen.entry((conversation, root)).or_default();
        *seen = (*seen).max(seq);
    }

    /// Reading a thread: the `mark_thread_read` for what its pane showed, by the conversation's
    /// rules ([`read_seen`](Self::read_seen)) with the thread watermark. Nothing for a thread
    /// the viewer does not follow (reading it would change nothing).
    pub fn read_thread_seen(&mut self, conversation: ConversationId, root: Seq) -> Option<ClientFrame> {
        let key = (conversation, root);
        if self.thread_held.contains(&key) {
            return None;
        }
        let last_read = self.thread_last_read(conversation, root)?;
        let seen = *self.thread_seen.get(&key)?;
        let asked = self.thread_asked.get(&key).copied().unwrap_or_default();
        if seen <= last_read.max(asked) {
            return None;
        }
        self.thread_asked.insert(key, seen);
        Some(self.request(Request::MarkThreadRead {
            conversation,
            thread: root,
            up_to: seen,
        }))
    }

    /// Reading: the `mark_read` for what the viewport showed of a conversation, when that is
    /// past both the watermark and what was already asked for. Reads only move forward; after
    /// a mark unread, nothing until the conversation is [`opened`](Self::opened) again, and
    /// then only what comes into view.
    pub fn read_seen(&mut self, conversation: ConversationId) -> Option<ClientFrame> {
        if self.held.contains(&conversation) {
            return None;
        }
        let seen = *self.seen.get(&conversation)?;
        let asked = self.asked.get(&conversation).copied().unwrap_or_default();
        if seen <= self.last_read(conversation).max(asked) {
            return None;
        }
        self.asked.insert(conversation, seen);
        Some(self.request(Request::MarkRead {
            conversation,
            up_to: seen,
        }))
    }

    /// Reading on leaving a conversation by Escape (as in Slack): the whole conversation is
    /// read, unless I marked it unread while it stayed open (that mark holds until I open it
    /// again) or there is nothing to read.
    pub fn read_on_leaving(&mut self, conversation: ConversationId) -> Option<ClientFrame> {
        let counts = self.counts(conversation);
        if self.held.contains(&conversation) || (counts.unread == 0 && counts.mentions == 0) {
            return None;
        }
        Some(self.request(Request::MarkConversationRead { conversation }))
    }

    /// Overwrites the viewer's counts in a conversation without any check: for tests that show
    /// a wrong count is caught.
    #[cfg(feature = "testing")]
    pub fn inject_counts(&mut self, conversation: ConversationId, counts: Counts) {
        if let Some(me) = self.me.clone() {
            self.projection.checkpoint(&me, conversation, counts);
        }
    }

    /// Learns names (the staff directory, fetched once by the widget).
    pub fn add_names(&mut self, staff: Vec<crate::model::Staff>) {
        for s in staff {
            self.names.insert(s.id, s.name);
        }
    }

    /// Drops a pending send.
    pub fn discard(&mut self, client_id: &ClientMsgId) {
        self.outbox_mut().retain(|p| &p.client_id != client_id);
    }

    /// Applies one frame from the relay.
    pub fn apply(&mut self, frame: ServerFrame) -> Effects {
        let mut fx = Effects::default();
        match frame {
            ServerFrame::Snapshot(s) => {
                // A session starts: presence and seen frames follow.
                self.presence.clear();
                self.dnd.clear();
                // A new session: a change asked for in the last one is answered by the `quiet`
                // frame that follows (or was lost with it).
                self.quiet_asked = None;
                self.read_positions.clear();
                self.early_total = None;
                self.load_snapshot(*s);
            }
            ServerFrame::Counts { total, .. } => {
                // Only ahead of a first snapshot: after one, the store's own counts are live.
                if self.me.is_none() {
                    self.early_total = Some(total);
                }
            }
            ServerFrame::Resumed { .. } => {
                self.presence.clear();
                self.read_positions.clear();
            }
            ServerFrame::Seen { conversation, seen } => self.read_positions.apply(conversation, seen),
            ServerFrame::Preferences { hide_read_state } => {
                self.hide_read_state = hide_read_state;
                if hide_read_state {
                    self.read_positions.clear();
                }
            }
            ServerFrame::Presence { staff, presence, dnd } => {
                if dnd && presence != crate::protocol::Presence::Offline {
                    self.dnd.insert(staff.clone());
                } else {
                    self.dnd.remove(&staff);
                }
                if presence == crate::protocol::Presence::Offline {
                    self.presence.remove(&staff);
                } else {
                    self.presence.insert(staff, presence);
                }
            }
            ServerFrame::Quiet { quiet } => {
                self.quiet_confirmed = quiet.clone();
                if self.quiet_asked.is_none() {
                    self.quiet = quiet;
                }
            }
            // Typing needs the time it arrived: the host notes it (`note_typing`).
            ServerFrame::Typing { .. } => {}
            ServerFrame::Event(e) => self.apply_event(e, &mut fx),
            ServerFrame::UnreadUpdated(u) => self.checkpoint(u, &mut fx),
            ServerFrame::Ack(ack) => {
                if ack.req.is_some() && ack.req == self.quiet_asked {
                    // Confirmed: the `quiet` frame that follows says the same.
                    self.quiet_asked = None;
                }
                let by_req = ack.req.and_then(|r| self.in_flight.remove(&r));
                if let Some(cid) = ack.client_id.or(by_req) {
                    self.outbox_mut().retain(|p| p.client_id != cid);
                }
            }
            ServerFrame::Error(e) => {
                if e.req.is_some() && e.req == self.quiet_asked {
                    // Refused: back to what the relay holds.
                    self.quiet_asked = None;
                    self.quiet = self.quiet_confirmed.clone();
                }
                let pending = e.req.and_then(|r| self.in_flight.remove(&r));
                let retryable = matches!(
                    e.code,
                    ErrorCode::RateLimited | ErrorCode::Internal | ErrorCode::Unavailable
                );
                match pending.and_then(|cid| self.outbox_mut().iter_mut().find(|p| p.client_id == cid)) {
                    Some(p) if !retryable => p.failed = Some(e.message.clone()),
                    Some(_) => {}
                    None => fx.error = Some(e),
                }
            }
        }
        fx
    }

    /// Whether I hide my read state (as the relay last said).
    pub fn hides_read_state(&self) -> bool {
        self.hide_read_state
    }

    /// Who has seen `message` (their watermark reached it): the conversation's current
    /// participants but me and its sender, who share their read state.
    pub fn seen_by(&self, message: &Message) -> Vec<&StaffId> {
        let (Some(me), Some(view)) = (self.me.as_ref(), self.conversations.get(&message.conversation)) else {
            return Vec::new();
        };
        self.read_positions
            .seen_by(&view.conversation.participants, me, message)
    }

    /// In a direct conversation, my message that "Seen" goes under: the newest of mine the
    /// other person has read up to. `None` in groups, or when nothing of mine is seen.
    pub fn seen_marker(&self, conversation: ConversationId) -> Option<Seq> {
        self.seen_marker_from(conversation, Seq(0))
    }

    /// [`ChatStore::seen_marker`] when it is at `from` or later (`None` otherwise): what a
    /// view whose first row is `from` shows. It reads the messages from there only, where the
    /// whole search reads back through every loaded message when I wrote none of the recent
    /// ones (33,000 in the widget's benchmark, on every render).
    pub fn seen_marker_from(&self, conversation: ConversationId, from: Seq) -> Option<Seq> {
        let me = self.me.as_ref()?;
        let view = self.conversations.get(&conversation)?;
        if view.conversation.kind != crate::model::ConversationKind::Direct {
            return None;
        }
        let other = view.conversation.participants.iter().find(|p| *p != me)?;
        let start = view.messages.partition_point(|m| m.seq < from);
        self.read_positions
            .seen_marker(other, me, &view.messages[start..])
    }

    /// Someone's presence, as the relay last said (offline when it said nothing).
    pub fn presence_of(&self, staff: &StaffId) -> crate::protocol::Presence {
        self.presence.get(staff).copied().unwrap_or_default()
    }

    /// Whether someone is in "do not disturb" (quiet hours or snoozed), as the relay last said.
    pub fn is_dnd(&self, staff: &StaffId) -> bool {
        self.dnd.contains(staff)
    }

    /// My quiet hours and snooze.
    pub fn quiet(&self) -> &crate::quiet::Quiet {
        &self.quiet
    }

    /// Notes a `typing` frame that arrived at `at` (the host's clock).
    pub fn note_typing(&mut self, conversation: ConversationId, staff: StaffId, at: Millis) {
        if Some(&staff) != self.me.as_ref() && self.conversations.contains_key(&conversation) {
            self.typing.expire(at);
            self.typing.note(conversation, staff, at);
        }
    }

    /// Who is typing in a conversation at `now`, in the order they started.
    pub fn typing_in(&self, conversation: ConversationId, now: Millis) -> Vec<&StaffId> {
        self.typing.in_conversation(conversation, now)
    }

    /// Adds an older page of a conversation's history (contiguous, in order, ending just
    /// before the oldest loaded message).
    pub fn apply_history(&mut self, conversation: ConversationId, older: Vec<Message>) {
        let Some(view) = self.conversations.get_mut(&conversation) else {
            return;
        };
        let fits = match (older.last(), view.messages.first()) {
            (Some(last), Some(first)) => last.seq.next() == first.seq,
            (Some(last), None) => last.seq == self.projection.head(conversation).unwrap_or_default(),
            (None, _) => false,
        };
        if !fits || older.iter().any(|m| m.conversation != conversation) {
            return;
        }
        self.projection.prepend_history(conversation, &older);
        let mut merged = older;
        merged.append(&mut view.messages);
        view.messages = merged;
    }

    fn load_snapshot(&mut self, s: Snapshot) {
        let me = s.me.clone();
        self.projection = UnreadProjection::new(Tracking::Only(me.clone()));
        self.conversations.clear();
        self.asked.clear();
        self.thread_asked.clear();
        // Keep names learned from the directory; the snapshot's are the freshest for its people.
        self.names.extend(s.staff.into_iter().map(|st| (st.id, st.name)));
        for c in s.conversations {
            self.projection.load_conversation(&me, &c);
            for m in &c.messages {
                self.settle_outbox(m);
            }
            self.conversations.insert(
                c.conversation.id,
                ConversationView {
                    conversation: c.conversation,
                    last_activity: c.last_activity,
                    messages: c.messages,
                },
            );
        }
        self.applied = s.offset;
        self.me = Some(me);
        self.awaiting_snapshot = false;
    }

    fn settle_outbox(&mut self, m: &Message) {
        if Some(&m.sender) == self.me.as_ref()
            && let Some(cid) = &m.client_id
        {
            self.outbox_mut().retain(|p| &p.client_id != cid);
        }
    }

    fn apply_event(&mut self, logged: LoggedEvent, fx: &mut Effects) {
        // Taken out and put back rather than cloned: this runs for every event.
        let Some(me) = self.me.take() else { return };
        self.apply_event_as(&me, logged, fx);
        self.me = Some(me);
    }

    // Over 80 lines: one arm per kind of event, which reads best as one match.
    fn apply_event_as(&mut self, me: &StaffId, logged: LoggedEvent, fx: &mut Effects) {
        if logged.offset <= self.applied || self.awaiting_snapshot {
            return;
        }
        self.scratch.clear();
        if self.projection.apply(&logged.event, &mut self.scratch).is_err() {
            // A missed event: only a snapshot can repair that.
            self.awaiting_snapshot = true;
            fx.send.push(self.request(Request::RequestSnapshot));
            return;
        }
        self.applied = logged.offset;
        match logged.event {
            Event::ConversationCreated { conversation, .. } => {
                if conversation.participants.contains(me) {
                    let last_activity = conversation.created_at;
                    self.conversations.insert(
                        conversation.id,
                        ConversationView {
                            conversation,
                            last_activity,
                            messages: Vec::new(),
                        },
                    );
                }
            }
            Event::ParticipantAdded { conversation, .. } => {
                match self.conversations.get_mut(&conversation.id) {
                    Some(v) => v.conversation.participants = conversation.participants,
                    None => {
                        let last_activity = conversation.created_at;
                        self.conversations.insert(
                            conversation.id,
                            ConversationView {
                                conversation,
                                last_activity,
                                messages: Vec::new(),
                            },
                        );
                    }
                }
            }
            Event::ParticipantRemoved {
                conversation, staff, ..
            } => {
                if staff == *me {
                    self.conversations.remove(&conversation);
                } else if let Some(v) = self.conversations.get_mut(&conversation) {
                    v.conversation.participants.retain(|p| *p != staff);
                }
            }
            Event::ConversationRenamed {
                conversation, title, ..
            } => {
                if let Some(v) = self.conversations.get_mut(&conversation) {
                    v.conversation.title = Some(title);
                }
            }
            Event::MessageCreated { message } => {
                self.typing.clear(message.conversation, &message.sender);
                if message.sender == *me
                    && let Some(cid) = &message.client_id
                {
                    self.outbox_mut().retain(|p| &p.client_id != cid);
                }
                if let Some(v) = self.conversations.get_mut(&message.conversation) {
                    v.last_activity = v.last_activity.max(message.created_at);
                    v.messages.push(message);
                }
            }
            ref change @ (Event::MessageEdited { .. } | Event::ReactionChanged { .. }) => {
                if let Some((conversation, seq)) = change.changed_message()
                    && let Some(m) = self.message_mut(conversation, seq)
                {
                    change.change_message(m);
                }
            }
            Event::EveryoneMentionsChanged {
                conversation,
                allowed,
                ..
            } => {
                if let Some(v) = self.conversations.get_mut(&conversation) {
                    v.conversation.everyone_off = !allowed;
                }
            }
            Event::MessageDeleted {
                conversation,
                message,
                seq,
                ..
            } => {
                if let Some(m) = self.message_mut(conversation, seq) {
                    m.tombstone();
                }
                // Replies quote only their own conversation, and only earlier messages.
                if let Some(c) = self.conversations.get_mut(&conversation) {
                    let later = c.messages.partition_point(|m| m.seq <= seq);
                    for m in &mut c.messages[later..] {
                        m.redact_quote_of(message);
                    }
                }
            }
            Event::MarkedUnread {
                conversation,
                staff,
                last_read,
            } => {
                if *me == staff {
                    // Marked unread: what the viewport showed before no longer counts as read,
                    // and what it shows now is not read until the conversation is opened
                    // again (else a view still open would read it straight back).
                    self.held.insert(conversation);
                    self.asked.remove(&conversation);
                    if let Some(seen) = self.seen.get_mut(&conversation) {
                        *seen = (*seen).min(last_read);
                    }
                }
            }
            Event::ThreadMarkedUnread {
                conversation,
                thread,
                staff,
                last_read,
            } => {
                if *me == staff {
                    // As for a conversation: the pane does not read it back until reopened.
                    let key = (conversation, thread);
                    self.thread_held.insert(key);
                    self.thread_asked.remove(&key);
                    if let Some(seen) = self.thread_seen.get_mut(&key) {
                        *seen = (*seen).min(last_read);
                    }
                }
            }
            Event::MessagesRead { .. }
            | Event::MuteChanged { .. }
            | Event::ThreadRead { .. }
            | Event::ThreadFollowed { .. } => {}
        }
    }

    /// A loaded message, by id.
    pub fn find_message(&self, id: MessageId) -> Option<&Message> {
        self.conversations
            .values()
            .find_map(|v| v.messages.iter().rev().find(|m| m.id == id))
    }

    fn message_mut(&mut self, conversation: ConversationId, seq: Seq) -> Option<&mut Message> {
        let v = self.conversations.get_mut(&conversation)?;
        let first = v.messages.first()?.seq;
        let i = usize::try_from(seq.0.checked_sub(first.0)?).ok()?;
        v.messages.get_mut(i)
    }

    fn checkpoint(&mut self, u: UnreadUpdate, fx: &mut Effects) {
        let Some(me) = self.me.take() else { return };
        self.checkpoint_as(&me, u, fx);
        self.me = Some(me);
    }

    fn checkpoint_as(&mut self, me: &StaffId, u: UnreadUpdate, fx: &mut Effects) {
        if u.offset < self.applied || self.awaiting_snapshot {
            // Stale: a later event already moved the counts; a later checkpoint will follow.
            return;
        }
        let relays = Counts {
            unread: u.unread,
            mentions: u.mentions,
        };
        let (ours, mut diverged) = match u.thread {
            None => (
                self.projection.counts(me, u.conversation).unwrap_or_default(),
                self.projection.checkpoint(me, u.conversation, relays),
            ),
            Some(root) => (
                self.projection
                    .thread_counts(me, u.conversation, root)
                    .unwrap_or_default(),
                self.projection
                    .checkpoint_thread(me, u.conversation, root, relays),
            ),
        };
        if self.projection.total(me) != u.total {
            diverged = true;
        }
        // The digest covers every conversation: a wrong count elsewhere shows here too. It is
        // comparable when this store has applied exactly up to the checkpoint's event.
        if let Some(digest) = u.digest
            && u.offset == self.applied
            && digest.0 != self.projection.digest(me)
        {
            diverged = true;
        }
        if diverged {
            self.divergences += 1;
            fx.divergence = Some(Divergence {
                offset: u.offset,
                conversation: u.conversation,
                ours,
                relays,
            });
            self.awaiting_snapshot = true;
            let report = Request::ReportDivergence {
                conversation: u.conversation,
                offset: u.offset,
                ours,
                relays,
            };
            fx.send.push(self.request(report));
            fx.send.push(self.request(Request::RequestSnapshot));
        }
    }
}
