//! The engine: decides whether a request is allowed and which events it appends, and applies
//! events to the state those decisions need. The relay is a shell around it.
//!
//! [`Engine::execute`] validates a whole request before it changes anything, then appends its
//! events one by one through [`Engine::apply`] (the same function the relay uses to rebuild its
//! state from the stored log at start). Every event gets the next gap-free [`Offset`]. What the
//! engine does not keep in memory (message bodies, attachment records) it asks a [`Lookup`] for.

use rustc_hash::FxHashMap;

use crate::client_ids::{ClientIds, Created, IdKind, Remembered};
use crate::digest::CountDigest;
use crate::ids::{AttachmentId, ClientMsgId, ConversationId, MessageId, Millis, Offset, Seq, StaffId};
use crate::limits;
use crate::model::{Attachment, Conversation, ConversationKind, Message, Notice, ReplyRef, Staff};
use crate::protocol::{
    Ack, ConversationState, ErrorCode, Event, LogRequest, LoggedEvent, Request, Snapshot, ThreadState,
    UnreadUpdate,
};
use crate::seq_index::MAX_SEQ;
use crate::staff_keys::StaffKey;
use crate::unread::{CountChange, Tracking, UnreadProjection};

mod conversations;
mod membership;
mod messages;
mod reactions;
use messages::Content;
mod reading;
mod saved;
mod seen;
mod service;
mod threads;
mod window;

pub use seen::Addressed;
pub use service::{DirectPost, ServiceRequest};
pub use window::{
    ReadNewestFirst, SnapshotBudget, carries_whole_window, encoded_len, fill_messages,
    read_slice_newest_first, snapshot_window,
};

/// What the engine asks its host for: stored things it does not keep in memory. A lookup
/// that fails (the host's storage did not answer) is not "none": the write that asked is
/// refused as `unavailable`, and changes nothing.
pub trait Lookup {
    /// A stored message (its current text, or its tombstone).
    fn message(&self, id: MessageId) -> Result<Option<Message>, LookupFailed>;
    /// The message at `seq` of a conversation (its current text, or its tombstone).
    fn message_at(&self, conversation: ConversationId, seq: Seq) -> Result<Option<Message>, LookupFailed>;
    /// An attachment this staff member uploaded.
    fn attachment(&self, id: &AttachmentId, uploader: &StaffId) -> Result<Option<Attachment>, LookupFailed>;
}

/// The host's storage could not answer a lookup (why, for the log and the refusal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage could not be read: {0}")]
pub struct LookupFailed(pub String);

impl From<LookupFailed> for Rejection {
    fn from(e: LookupFailed) -> Rejection {
        Rejection {
            code: ErrorCode::Unavailable,
            message: format!("{e}; nothing was stored: retry with the same client_id"),
        }
    }
}

/// A refused request: nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct Rejection {
    /// The stable code.
    pub code: ErrorCode,
    /// What was wrong, for people.
    pub message: String,
}

fn reject<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection {
        code,
        message: message.into(),
    })
}

/// An applied event: who receives it, and whose counts it changed.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The event and its offset.
    pub event: LoggedEvent,
    /// The staff allowed to see it.
    pub recipients: Vec<StaffKey>,
    /// The new counts and totals of each (staff, conversation) it changed: the relay's
    /// `unread_updated` checkpoints, taken right after this event.
    pub changes: Vec<(StaffKey, UnreadUpdate)>,
}

/// The result of an accepted request.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The events appended, in order (none for a repeated send or a no-op read).
    pub applied: Vec<Applied>,
    /// The acknowledgement for the author (its offset is the last event's, or the current one).
    pub ack: Ack,
}

#[derive(Debug, Clone)]
struct StaffRecord {
    name: String,
    active: bool,
    /// Their preference: hide how far they have read (see [`Engine::set_read_state_hidden`]).
    hide_read_state: bool,
}

#[derive(Debug, Clone)]
struct ConversationRecord {
    conversation: Conversation,
    last_activity: Millis,
    /// A group's client-made id (what confirms a retried create).
    client_id: Option<ClientMsgId>,
}

/// The state decisions need, in memory: staff, conversations and participants, client ids, and
/// the unread projection for everyone. Nothing per message but the projection's compact
/// indexes: what a write needs to know of an existing message (where it lives, who sent it,
/// whether it is deleted) it asks the [`Lookup`] for.
#[derive(Debug, Clone)]
pub struct Engine {
    staff: FxHashMap<StaffId, StaffRecord>,
    conversations: FxHashMap<ConversationId, ConversationRecord>,
    direct: FxHashMap<(StaffId, StaffId), ConversationId>,
    client_ids: ClientIds,
    next_conversation: u64,
    next_message: u64,
    offset: Offset,
    projection: UnreadProjection,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    /// An engine with no staff and an empty log.
    pub fn new() -> Self {
        Engine {
            staff: FxHashMap::default(),
            conversations: FxHashMap::default(),
            direct: FxHashMap::default(),
            client_ids: ClientIds::default(),
            next_conversation: 1,
            next_message: 1,
            offset: Offset(0),
            projection: UnreadProjection::new(Tracking::Everyone),
        }
    }

    // ---- getters ----

    /// The offset of the last applied event.
    pub fn offset(&self) -> Offset {
        self.offset
    }

    /// The ids the next new conversation and message get (an importer numbers with them).
    pub fn next_ids(&self) -> (ConversationId, MessageId) {
        (
            ConversationId(self.next_conversation),
            MessageId(self.next_message),
        )
    }

    /// Every staff member with a key, in key order.
    pub fn keyed_staff(&self) -> Vec<StaffId> {
        (0..self.projection.staff_count() as u32)
            .map(|k| self.projection.staff_id(StaffKey::from_index(k)).clone())
            .collect()
    }

    /// Gives a staff member a key (the next one, unless they have one): replaying a log into
    /// an engine whose staff were registered in another engine's key order gives the same keys.
    pub fn register(&mut self, staff: &StaffId) -> StaffKey {
        self.projection.register(staff)
    }

    /// Frees what growing left unused in the message indexes; the heap bytes they hold.
    pub fn compact(&mut self) -> usize {
        self.projection.compact()
    }

    /// The unread projection over everyone.
    pub fn projection(&self) -> &UnreadProjection {
        &self.projection
    }

    /// Whether a staff member exists and is active.
    pub fn is_active(&self, staff: &StaffId) -> bool {
        self.staff.get(staff).is_some_and(|s| s.active)
    }

    /// The staff directory (active staff), sorted by name.
    pub fn directory(&self) -> Vec<Staff> {
        let mut out: Vec<Staff> = self
            .staff
            .iter()
            .filter(|(_, r)| r.active)
            .map(|(id, r)| Staff {
                id: id.clone(),
                name: r.name.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        out
    }

    /// A conversation.
    pub fn conversation(&self, id: ConversationId) -> Option<&Conversation> {
        self.conversations.get(&id).map(|r| &r.conversation)
    }

    /// The direct conversation of two staff members, if they have one.
    pub fn direct_between(&self, a: &StaffId, b: &StaffId) -> Option<ConversationId> {
        self.direct.get(&pair(a, b)).copied()
    }

    /// Everyone who shares a conversation with `staff` (not themselves), each once: whom
    /// their presence concerns.
    pub fn peers(&self, staff: &StaffId) -> Vec<StaffId> {
        let mut out: Vec<StaffId> = self
            .projection
            .conversations_of(staff)
            .into_iter()
            .filter_map(|(id, ..)| self.conversation(id))
            .flat_map(|c| c.participants.iter())
            .filter(|p| *p != staff)
            .cloned()
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether a staff member is in a conversation.
    pub fn is_participant(&self, staff: &StaffId, id: ConversationId) -> bool {
        self.conversation(id)
            .is_some_and(|c| c.participants.contains(staff))
    }

    /// The interned key of a staff member (every staff member the engine knows has one).
    pub fn key(&self, staff: &StaffId) -> Option<StaffKey> {
        self.projection.key(staff)
    }

    /// One staff member's view of each of their conversations, without messages; the host
    /// fills `messages` with the range [`snapshot_window`] gives.
    pub fn conversation_states(&self, staff: &StaffId) -> Vec<ConversationState> {
        let mut out = Vec::new();
        let mut threads = self.projection.threads_of(staff).into_iter().peekable();
        for (id, last_read, head) in self.projection.conversations_of(staff) {
            // Both lists are by conversation id.
            let mut followed = Vec::new();
            while let Some((c, root, thread_read, thread_head, counts)) = threads.next_if(|(c, ..)| *c <= id)
            {
                if c == id {
                    followed.push(ThreadState {
                        root,
                        head: thread_head,
                        last_read: thread_read,
                        counts,
                    });
                }
            }
            let Some(record) = self.conversations.get(&id) else {
                continue;
            };
            out.push(ConversationState {
                conversation: record.conversation.clone(),
                head,
                last_read,
                muted: self.projection.is_muted(staff, id),
                counts: self.projection.counts(staff, id).unwrap_or_default(),
                last_activity: record.last_activity,
                messages: Vec::new(),
                threads: followed,
            });
        }
        out
    }

    /// A staff member's snapshot at the current offset, its messages within the default
    /// budget; `read` reads stored messages newest first (see [`fill_messages`]).
    pub fn snapshot(&self, staff: &StaffId, read: &mut ReadNewestFirst<'_>) -> Snapshot {
        let mut snapshot = self.snapshot_without_messages(staff);
        fill_messages(&mut snapshot, SnapshotBudget::default(), read);
        snapshot
    }

    /// A staff member's snapshot at the current offset without its messages: everything that
    /// comes from memory. [`fill_messages`] adds the messages later, from storage read at this
    /// same offset (a relay does that off its writer thread).
    pub fn snapshot_without_messages(&self, staff: &StaffId) -> Snapshot {
        let conversations = self.conversation_states(staff);
        // The people in these conversations, not the whole directory: a snapshot's size must not
        // grow with the number of staff (the widget fetches the directory once, over HTTP).
        let mut people: Vec<&StaffId> = conversations
            .iter()
            .flat_map(|c| &c.conversation.participants)
            .collect();
        people.push(staff);
        people.sort();
        people.dedup();
        let names = people
            .into_iter()
            .filter_map(|id| {
                self.staff.get(id).map(|r| Staff {
                    id: id.clone(),
                    name: r.name.clone(),
                })
            })
            .collect();
        Snapshot {
            offset: self.offset,
            me: staff.clone(),
            staff: names,
            total: self.projection.total(staff),
            conversations,
            protocols: None,
        }
    }

    // ---- staff directory (not part of the event log: it is the work app's) ----

    /// Adds or updates a staff member.
    pub fn upsert_staff(&mut self, staff: Staff, active: bool) {
        if staff.id.is_system() {
            // Reserved for the service author: a staff member by that name never signs in.
            return;
        }
        self.intern(&staff.id);
        let hide_read_state = self.hides_read_state(&staff.id);
        self.staff.insert(
            staff.id,
            StaffRecord {
                name: staff.name,
                active,
                hide_read_state,
            },
        );
    }

    fn intern(&mut self, staff: &StaffId) {
        // Every staff member gets a key before their first event, so the relay can route to them.
        self.projection.register(staff);
    }

    // ---- inputs ----

    /// Applies one event from the log (at start, or as part of [`execute`](Self::execute)).
    pub fn apply(&mut self, event: LoggedEvent) -> Applied {
        debug_assert_eq!(event.offset, self.offset.next(), "offsets are gap-free");
        self.offset = event.offset;
        let recipients_before = self.keep(&event);
        let changes = self.count(&event);
        let recipients = self.recipients(&event.event, &recipients_before);
        Applied {
            event,
            recipients,
            changes,
        }
    }

    /// What the engine keeps of an event: conversations, participants, where messages live,
    /// client ids. Returns who was in the conversation before a removal (they all hear of it).
    /// (Over 80 lines: one arm per kind of event, which reads best as one match.)
    fn keep(&mut self, event: &LoggedEvent) -> Vec<StaffId> {
        let id = event.event.conversation();
        let mut recipients_before: Vec<StaffId> = Vec::new();
        match &event.event {
            Event::ConversationCreated {
                conversation,
                client_id,
            } => {
                for p in &conversation.participants {
                    self.intern(p);
                }
                // The creator may be in it no more, or never (the service author): a
                // checkpoint names them by key all the same.
                self.intern(&conversation.created_by);
                if conversation.kind == ConversationKind::Direct
                    && let [a, b] = conversation.participants.as_slice()
                {
                    self.direct.insert(pair(a, b), conversation.id);
                }
                if let Some(cid) = client_id {
                    // A group's creation is always followed by its `created` notice, whose
                    // offset the first acknowledgement carried.
                    let remembered = Remembered {
                        created: Created::Conversation(conversation.id),
                        ack_offset: event.offset.next(),
                    };
                    let at = conversation.created_at;
                    let by = &conversation.created_by;
                    self.client_ids.remember(by, IdKind::Group, cid, at, remembered);
                }
                self.next_conversation = self.next_conversation.max(conversation.id.0 + 1);
                self.conversations.insert(
                    conversation.id,
                    ConversationRecord {
                        conversation: conversation.clone(),
                        last_activity: conversation.created_at,
                        client_id: client_id.clone(),
                    },
                );
            }
            Event::ParticipantAdded { staff, .. } => {
                self.intern(staff);
                if let Some(r) = self.conversations.get_mut(&id)
                    && !r.conversation.participants.contains(staff)
                {
                    r.conversation.participants.push(staff.clone());
                }
            }
            Event::ParticipantRemoved { staff, .. } => {
                if let Some(r) = self.conversations.get_mut(&id) {
                    recipients_before = r.conversation.participants.clone();
                    r.conversation.participants.retain(|p| p != staff);
                }
            }
            Event::ConversationRenamed { title, .. } => {
                if let Some(r) = self.conversations.get_mut(&id) {
                    r.conversation.title = Some(title.clone());
                }
            }
            Event::MessageCreated { message } => {
                self.intern(&message.sender);
                if let Some(cid) = &message.client_id {
                    let kind = if message.forwarded_from.is_some() {
                        IdKind::Forward
                    } else {
                        IdKind::Send
                    };
                    let remembered = Remembered {
                        created: Created::Message(message.id, message.conversation, message.seq),
                        ack_offset: event.offset,
                    };
                    let at = message.created_at;
                    self.client_ids
                        .remember(&message.sender, kind, cid, at, remembered);
                }
                self.next_message = self.next_message.max(message.id.0 + 1);
                if let Some(r) = self.conversations.get_mut(&id) {
                    r.last_activity = r.last_activity.max(message.created_at);
                }
            }
            Event::EveryoneMentionsChanged { allowed, .. } => {
                if let Some(r) = self.conversations.get_mut(&id) {
                    r.conversation.everyone_off = !allowed;
                }
            }
            Event::MessageEdited { .. }
            | Event::ReactionChanged { .. }
            | Event::MessageDeleted { .. }
            | Event::MessagesRead { .. }
            | Event::MarkedUnread { .. }
            | Event::MuteChanged { .. }
            | Event::ThreadRead { .. }
            | Event::ThreadMarkedUnread { .. }
            | Event::ThreadFollowed { .. } => {}
        }
        recipients_before
    }

    /// Applies an event to the projection; the counts it changed, as checkpoints.
    fn count(&mut self, event: &LoggedEvent) -> Vec<(StaffKey, UnreadUpdate)> {
        let mut changed: Vec<CountChange> = Vec::new();
        // The engine only appends events it validated, so the projection always places them.
        let placed = self.projection.apply(&event.event, &mut changed);
        debug_assert!(placed.is_ok(), "{placed:?}");
        changed
            .into_iter()
            .map(|c| {
                let counts = match c.thread {
                    None => self.projection.counts_by_key(c.staff, c.conversation),
                    Some(root) => self
                        .projection
                        .thread_counts_by_key(c.staff, c.conversation, root),
                }
                .unwrap_or_default();
                let update = UnreadUpdate {
                    offset: event.offset,
                    conversation: c.conversation,
                    thread: c.thread,
                    unread: counts.unread,
                    mentions: counts.mentions,
                    total: self.projection.total_by_key(c.staff),
                    digest: Some(CountDigest(self.projection.digest_by_key(c.staff))),
                };
                (c.staff, update)
            })
            .collect()
    }

    /// Who receives an event: its actor alone for private ones (reads, marks, mutes), everyone
    /// who was in the conversation for a removal, its participants otherwise.
    fn recipients(&self, event: &Event, before: &[StaffId]) -> Vec<StaffKey> {
        match event.private_to() {
            Some(staff) => self.key(staff).into_iter().collect(),
            None if !before.is_empty() => before.iter().filter_map(|p| self.key(p)).collect(),
            None => self
                .conversation(event.conversation())
                .map(|c| c.participants.iter().filter_map(|p| self.key(p)).collect())
                .unwrap_or_default(),
        }
    }

    fn push(&mut self, out: &mut Vec<Applied>, event: Event) {
        let logged = LoggedEvent {
            offset: self.offset.next(),
            event,
        };
        out.push(self.apply(logged));
    }

    /// Validates `request` from the authenticated `author` and, when allowed, appends its
    /// events. Nothing changes when it is refused. Each family of requests has its handler
    /// (`messages`, `conversations`, `membership`, `reading`); the acknowledgement is
    /// finished here, in one place.
    ///
    /// It takes only a [`LogRequest`] (see [`Request::route`]): what a session handles itself
    /// (a ping, typing, visibility, preferences, snapshots) never reaches it.
    pub fn execute(
        &mut self,
        author: &StaffId,
        request: LogRequest<'_>,
        now: Millis,
        lookup: &dyn Lookup,
    ) -> Result<Outcome, Rejection> {
        if !self.is_active(author) {
            return reject(ErrorCode::Unauthorized, "unknown or deactivated staff member");
        }
        let write = Write {
            author,
            client_id: client_id_of(request),
            room_in: writes_messages_into(request),
            now,
            lookup,
        };
        self.write(write, |engine, s| engine.dispatch(s, request))
    }

    /// Runs one write: a retry (same author, kind and client id) gets the first
    /// acknowledgement; a conversation that is full refuses it; otherwise `handler` validates
    /// and appends. The acknowledgement is finished here, in one place.
    fn write(
        &mut self,
        write: Write<'_>,
        handler: impl FnOnce(&mut Self, &mut Step<'_>) -> Result<Ack, Rejection>,
    ) -> Result<Outcome, Rejection> {
        if let Some((kind, client_id)) = write.client_id
            && let Some(first) = self.first_ack(write.author, kind, client_id, write.lookup)?
        {
            return Ok(first);
        }
        if let Some(conversation) = write.room_in {
            self.check_room(conversation)?;
        }
        let mut step = Step {
            author: write.author,
            now: write.now,
            lookup: write.lookup,
            applied: Vec::new(),
        };
        let ack = handler(self, &mut step)?;
        // The offset of the last event appended, or the current one when nothing was.
        let ack = Ack {
            offset: self.offset,
            ..ack
        };
        Ok(Outcome {
            applied: step.applied,
            ack,
        })
    }

    /// A staff member's request, to its handler.
    fn dispatch(&mut self, s: &mut Step<'_>, request: LogRequest<'_>) -> Result<Ack, Rejection> {
        Ok(match request.get() {
            Request::SendMessage {
                client_id,
                conversation,
                body,
                attachments,
                reply_to,
                mention_ranges,
            } => {
                let content = Content {
                    body,
                    attachments,
                    ranges: mention_ranges,
                };
                self.send_message(s, client_id, *conversation, content, *reply_to)?
            }
            Request::ForwardMessage {
                client_id,
                message,
                to,
            } => self.forward_message(s, client_id, *message, *to)?,
            Request::EditMessage {
                message,
                body,
                mention_ranges,
            } => self.edit_message(s, *message, body, mention_ranges)?,
            Request::AddReaction { message, emoji } => self.react(s, *message, emoji, true)?,
            Request::RemoveReaction { message, emoji } => self.react(s, *message, emoji, false)?,
            Request::SetEveryoneMentions {
                conversation,
                allowed,
            } => self.set_everyone_mentions(s, *conversation, *allowed)?,
            Request::DeleteMessage { message } => self.delete_message(s, *message)?,
            Request::CreateDirect { staff } => self.create_direct(s, staff)?,
            Request::CreateGroup {
                client_id,
                title,
                participants,
            } => self.create_group(s, client_id, title, participants)?,
            Request::RenameConversation { conversation, title } => {
                self.rename_conversation(s, *conversation, title)?
            }
            Request::AddParticipants { conversation, staff } => {
                self.add_participants(s, *conversation, staff)?
            }
            Request::RemoveParticipant { conversation, staff } => {
                self.remove_participant(s, *conversation, staff)?
            }
            Request::SetMuted { conversation, muted } => self.set_muted(s, *conversation, *muted)?,
            Request::MarkRead { conversation, up_to } => self.mark_read(s, *conversation, Some(*up_to))?,
            Request::MarkConversationRead { conversation } => self.mark_read(s, *conversation, None)?,
            Request::MarkAllRead => self.mark_all_read(s),
            Request::MarkUnread { conversation, from } => self.mark_unread(s, *conversation, *from)?,
            Request::ReplyInThread {
                client_id,
                conversation,
                thread,
                body,
                attachments,
                mention_ranges,
            } => {
                let content = Content {
                    body,
                    attachments,
                    ranges: mention_ranges,
                };
                self.reply_in_thread(s, client_id, *conversation, *thread, content)?
            }
            Request::MarkThreadRead {
                conversation,
                thread,
                up_to,
            } => self.mark_thread_read(s, *conversation, *thread, Some(*up_to))?,
            Request::ReadThread { conversation, thread } => {
                self.mark_thread_read(s, *conversation, *thread, None)?
            }
            Request::MarkThreadUnread {
                conversation,
                thread,
                from,
            } => self.mark_thread_unread(s, *conversation, *thread, *from)?,
            Request::FollowThread { conversation, thread } => {
                self.follow_thread(s, *conversation, *thread, true)?
            }
            Request::UnfollowThread { conversation, thread } => {
                self.follow_thread(s, *conversation, *thread, false)?
            }
            Request::Hello { .. }
            | Request::Ping
            | Request::ReportDivergence { .. }
            | Request::RequestSnapshot
            | Request::Visibility { .. }
            | Request::Typing { .. }
            | Request::SetPreferences { .. }
            | Request::SetQuiet { .. } => unreachable!("Request::route makes no LogRequest of these"),
        })
    }

    fn notice(
        &mut self,
        out: &mut Vec<Applied>,
        conversation: ConversationId,
        by: &StaffId,
        now: Millis,
        notice: Notice,
    ) {
        let message = Message {
            notice: Some(Box::new(notice)),
            ..self.new_message(conversation, by, now)
        };
        self.push(out, Event::MessageCreated { message });
    }

    fn new_message(&self, conversation: ConversationId, sender: &StaffId, now: Millis) -> Message {
        Message {
            reactions: Vec::new(),
            mention_ranges: Vec::new(),
            id: MessageId(self.next_message),
            conversation,
            seq: self.projection.head(conversation).unwrap_or_default().next(),
            sender: sender.clone(),
            body: String::new(),
            mentions: Vec::new(),
            attachments: Vec::new(),
            reply_to: None,
            forwarded_from: None,
            thread: None,
            notice: None,
            client_id: None,
            created_at: now,
            edited_at: None,
            deleted: false,
        }
    }

    /// The first acknowledgement of a write this author already made with this client id:
    /// a retry stores nothing and learns what the first attempt did, whatever changed since.
    /// Ids are remembered by a 64-bit key, so a remembered write counts only once confirmed:
    /// it carries this very client id, from this author. A lookup that fails refuses the write
    /// (running it again could store it twice).
    fn first_ack(
        &self,
        author: &StaffId,
        kind: IdKind,
        client_id: &ClientMsgId,
        lookup: &dyn Lookup,
    ) -> Result<Option<Outcome>, LookupFailed> {
        let Some(first) = self.client_ids.get(author, kind, client_id) else {
            return Ok(None);
        };
        let confirmed = match first.created {
            Created::Message(id, ..) => lookup
                .message(id)?
                .is_some_and(|m| m.client_id.as_ref() == Some(client_id) && &m.sender == author),
            Created::Conversation(id) => self.conversations.get(&id).is_some_and(|r| {
                r.client_id.as_ref() == Some(client_id) && &r.conversation.created_by == author
            }),
        };
        if !confirmed {
            return Ok(None);
        }
        let mut ack = Ack {
            req: None,
            offset: first.ack_offset,
            client_id: Some(client_id.clone()),
            ..Ack::default()
        };
        match first.created {
            Created::Message(id, conversation, seq) => {
                ack.conversation = Some(conversation);
                ack.message = Some(id);
                ack.seq = Some(seq);
            }
            Created::Conversation(id) => ack.conversation = Some(id),
        }
        Ok(Some(Outcome {
            applied: Vec::new(),
            ack,
        }))
    }

    /// A conversation numbers its messages up to [`MAX_SEQ`] (what its indexes can hold): a
    /// request that could pass it is refused.
    fn check_room(&self, conversation: ConversationId) -> Result<(), Rejection> {
        let head = self.projection.head(conversation).unwrap_or_default();
        if head.0 + (limits::GROUP_PARTICIPANTS_MAX as u64 + 1) > MAX_SEQ {
            return reject(ErrorCode::NotAllowed, "this conversation holds no more messages");
        }
        Ok(())
    }

    fn writable(&self, author: &StaffId, id: ConversationId) -> Result<&Conversation, Rejection> {
        let Some(c) = self.conversation(id) else {
            return reject(ErrorCode::NotFound, format!("no conversation {id}"));
        };
        // The service author (the work app's backend) writes into any conversation; it is no
        // staff member, so no staff request ever has it as its author.
        if !c.participants.contains(author) && !author.is_system() {
            return reject(
                ErrorCode::NotParticipant,
                format!("you are not in conversation {id}"),
            );
        }
        Ok(c)
    }

    fn group(&self, author: &StaffId, id: ConversationId) -> Result<Conversation, Rejection> {
        let c = self.writable(author, id)?;
        if c.kind != ConversationKind::Group {
            return reject(
                ErrorCode::NotAllowed,
                "direct conversations have exactly two participants and no title",
            );
        }
        Ok(c.clone())
    }

    fn readable_message(
        &self,
        author: &StaffId,
        id: MessageId,
        lookup: &dyn Lookup,
    ) -> Result<Message, Rejection> {
        let m = self.visible_message(author, id, lookup)?;
        if m.deleted {
            return reject(ErrorCode::NotFound, format!("message {id} was deleted"));
        }
        Ok(m)
    }

    /// A stored message of a conversation `author` is in, deleted or not.
    fn visible_message(
        &self,
        author: &StaffId,
        id: MessageId,
        lookup: &dyn Lookup,
    ) -> Result<Message, Rejection> {
        match lookup.message(id)? {
            Some(m) if self.is_participant(author, m.conversation) => Ok(m),
            // Outsiders learn nothing, not even that the message exists.
            _ => reject(ErrorCode::NotFound, format!("no message {id}")),
        }
    }

    fn reply_ref(
        &self,
        id: MessageId,
        conversation: ConversationId,
        lookup: &dyn Lookup,
    ) -> Result<ReplyRef, Rejection> {
        let m = self.readable_message(&self.any_participant(conversation), id, lookup);
        let m = match m {
            Ok(m) if m.conversation == conversation => m,
            Err(e) if e.code != ErrorCode::NotFound => return Err(e),
            _ => {
                return reject(
                    ErrorCode::NotFound,
                    format!("no message {id} in this conversation"),
                );
            }
        };
        Ok(ReplyRef {
            message: m.id,
            seq: m.seq,
            sender: m.sender,
            excerpt: m.body.chars().take(limits::REPLY_EXCERPT_CHARS).collect(),
            deleted: false,
        })
    }

    fn any_participant(&self, conversation: ConversationId) -> StaffId {
        self.conversation(conversation)
            .and_then(|c| c.participants.first().cloned())
            .expect("writable conversation")
    }

    /// A message `author` sent (deleted or not), which they may edit or delete.
    fn own_message(
        &self,
        author: &StaffId,
        id: MessageId,
        lookup: &dyn Lookup,
    ) -> Result<Message, Rejection> {
        let m = self.visible_message(author, id, lookup)?;
        if m.notice.is_some() {
            return reject(ErrorCode::NotAllowed, "system notices cannot be changed");
        }
        if &m.sender != author {
            return reject(ErrorCode::NotAuthor, "only its author may change a message");
        }
        Ok(m)
    }
}

/// One request being executed: who asked, when, what storage knows, and the events appended
/// so far (a handler validates everything before it appends anything).
struct Step<'a> {
    author: &'a StaffId,
    now: Millis,
    lookup: &'a dyn Lookup,
    applied: Vec<Applied>,
}

/// One write about to run: who, its client-made id (if it has one), the conversation it may
/// append messages to (if any), when, and what storage knows.
struct Write<'a> {
    author: &'a StaffId,
    client_id: Option<(IdKind, &'a ClientMsgId)>,
    room_in: Option<ConversationId>,
    now: Millis,
    lookup: &'a dyn Lookup,
}

/// The kind and client-made id of a write that carries one.
fn client_id_of(request: LogRequest<'_>) -> Option<(IdKind, &ClientMsgId)> {
    match request.get() {
        Request::SendMessage { client_id, .. } | Request::ReplyInThread { client_id, .. } => {
            Some((IdKind::Send, client_id))
        }
        Request::ForwardMessage { client_id, .. } => Some((IdKind::Forward, client_id)),
        Request::CreateGroup { client_id, .. } => Some((IdKind::Group, client_id)),
        Request::EditMessage { .. }
        | Request::AddReaction { .. }
        | Request::RemoveReaction { .. }
        | Request::SetEveryoneMentions { .. }
        | Request::DeleteMessage { .. }
        | Request::CreateDirect { .. }
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
        | Request::UnfollowThread { .. } => None,
        Request::Hello { .. }
        | Request::Ping
        | Request::ReportDivergence { .. }
        | Request::RequestSnapshot
        | Request::Visibility { .. }
        | Request::Typing { .. }
        | Request::SetPreferences { .. }
        | Request::SetQuiet { .. } => unreachable!("Request::route makes no LogRequest of these"),
    }
}

/// The conversation a request may append messages (or notices) to.
fn writes_messages_into(request: LogRequest<'_>) -> Option<ConversationId> {
    match request.get() {
        Request::SendMessage { conversation, .. }
        | Request::ReplyInThread { conversation, .. }
        | Request::RenameConversation { conversation, .. }
        | Request::AddParticipants { conversation, .. }
        | Request::RemoveParticipant { conversation, .. } => Some(*conversation),
        Request::ForwardMessage { to, .. } => Some(*to),
        // A new conversation, a message changed in place, or a watermark moved: no new message
        // in an existing conversation.
        Request::EditMessage { .. }
        | Request::AddReaction { .. }
        | Request::RemoveReaction { .. }
        | Request::SetEveryoneMentions { .. }
        | Request::DeleteMessage { .. }
        | Request::CreateDirect { .. }
        | Request::CreateGroup { .. }
        | Request::SetMuted { .. }
        | Request::MarkRead { .. }
        | Request::MarkConversationRead { .. }
        | Request::MarkAllRead
        | Request::MarkUnread { .. }
        | Request::MarkThreadRead { .. }
        | Request::ReadThread { .. }
        | Request::MarkThreadUnread { .. }
        | Request::FollowThread { .. }
        | Request::UnfollowThread { .. } => None,
        Request::Hello { .. }
        | Request::Ping
        | Request::ReportDivergence { .. }
        | Request::RequestSnapshot
        | Request::Visibility { .. }
        | Request::Typing { .. }
        | Request::SetPreferences { .. }
        | Request::SetQuiet { .. } => unreachable!("Request::route makes no LogRequest of these"),
    }
}

/// An acknowledgement naming a conversation.
fn ack_for(conversation: ConversationId) -> Ack {
    Ack {
        conversation: Some(conversation),
        ..Ack::default()
    }
}

/// A group may hold at most [`limits::GROUP_PARTICIPANTS_MAX`] participants.
fn check_group_size(participants: usize) -> Result<(), Rejection> {
    if participants > limits::GROUP_PARTICIPANTS_MAX {
        let max = limits::GROUP_PARTICIPANTS_MAX;
        return reject(
            ErrorCode::InvalidInput,
            format!("a group has at most {max} participants"),
        );
    }
    Ok(())
}

/// The watermark after reading up to `up_to`: it only moves forward, and never past the head.
pub fn next_watermark_on_read(last_read: Seq, up_to: Seq, head: Seq) -> Seq {
    last_read.max(up_to.min(head))
}

fn pair(a: &StaffId, b: &StaffId) -> (StaffId, StaffId) {
    if a <= b {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    }
}

fn check_body(body: &str, has_attachments: bool) -> Result<(), Rejection> {
    if body.len() > limits::BODY_MAX_BYTES {
        return reject(
            ErrorCode::InvalidInput,
            format!("a message is at most {} bytes", limits::BODY_MAX_BYTES),
        );
    }
    if body.trim().is_empty() && !has_attachments {
        return reject(ErrorCode::InvalidInput, "a message needs text or an attachment");
    }
    Ok(())
}

fn check_title(title: &str) -> Result<String, Rejection> {
    let t = title.trim();
    if t.is_empty() || t.len() > limits::TITLE_MAX_BYTES {
        return reject(
            ErrorCode::InvalidInput,
            format!("a title is 1 to {} bytes", limits::TITLE_MAX_BYTES),
        );
    }
    if t.chars().any(char::is_control) {
        return reject(
            ErrorCode::InvalidInput,
            "a title may not contain control characters",
        );
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_client_id_counts_only_once_the_stored_write_confirms_it() {
        use crate::memory::MemoryHost;
        let (alice, bob) = (StaffId::new("alice").unwrap(), StaffId::new("bob").unwrap());
        let staff: Vec<Staff> = [&alice, &bob]
            .iter()
            .map(|id| Staff {
                id: (*id).clone(),
                name: id.to_string(),
            })
            .collect();
        let mut host = MemoryHost::with_staff(&staff);
        let dm = host
            .execute(&alice, &Request::CreateDirect { staff: bob.clone() }, Millis(1))
            .unwrap()
            .ack
            .conversation
            .unwrap();
        let send = |id: &str| Request::SendMessage {
            mention_ranges: Vec::new(),
            client_id: ClientMsgId::new(id).unwrap(),
            conversation: dm,
            body: format!("from {id}"),
            attachments: Vec::new(),
            reply_to: None,
        };
        let first = host.execute(&alice, &send("a"), Millis(2)).unwrap().ack.message;
        // "b" made to collide with "a": its key now names what "a" created.
        let remembered = host
            .engine
            .client_ids
            .get(&alice, IdKind::Send, &ClientMsgId::new("a").unwrap())
            .unwrap();
        let b = ClientMsgId::new("b").unwrap();
        host.engine
            .client_ids
            .remember(&alice, IdKind::Send, &b, Millis(3), remembered);
        let second = host.execute(&alice, &send("b"), Millis(4)).unwrap();
        assert_eq!(second.applied.len(), 1, "a new write, not a retry");
        assert_ne!(second.ack.message, first);
        // Bob may not claim Alice's id either, and a true retry is still one.
        let bobs = host.execute(&bob, &send("a"), Millis(5)).unwrap();
        assert_eq!(bobs.applied.len(), 1);
        let retry = host.execute(&alice, &send("a"), Millis(6)).unwrap();
        assert!(retry.applied.is_empty());
        assert_eq!(retry.ack.message, first);
    }

    #[test]
    fn reading_never_moves_back_nor_past_head() {
        assert_eq!(next_watermark_on_read(Seq(5), Seq(3), Seq(9)), Seq(5));
        assert_eq!(next_watermark_on_read(Seq(5), Seq(30), Seq(9)), Seq(9));
        assert_eq!(next_watermark_on_read(Seq(5), Seq(7), Seq(9)), Seq(7));
    }
}
