//! The unread projection: the counting rules, nothing else.
//!
//! Counts are a projection of the event log, never a field some write path updates:
//!
//! - `unread(p, c)` is the number of messages of `c` with `seq > last_read(p, c)`, not sent by
//!   `p` and not deleted; `mentions(p, c)` is the same restricted to messages mentioning `p`.
//! - `total(p)` sums both over the conversations `p` is in and has not muted.
//! - A message raises the count of every other participant and moves its sender's watermark to
//!   itself (replying means you have seen the conversation).
//! - Reads and marks arrive as events carrying the new watermark (the engine applies the rules
//!   for moving it); the projection recounts from the watermark to the head.
//! - A newcomer's watermark starts at the head: old history is not unread.
//! - Deleting an unread message lowers the count of everyone who had not read it. Edits change
//!   no count.
//!
//! The relay runs this over the whole log for everyone ([`Tracking::Everyone`]); the browser
//! runs the very same code for one staff member over the messages it has loaded
//! ([`Tracking::Only`]). Every step costs O(participants) plus O(log n) in the history length:
//! a new message adds to counters, and a watermark move counts live messages after it with
//! [`SeqIndex`]es (all live messages, each sender's, each mentioned staff member's).
//!
//! Threads (docs/semantics.md, "Threads"): a reply shares its conversation's numbering but
//! never counts there; it counts for the thread's followers after their own thread watermark.
//! Each thread keeps the same three indexes over its replies, and its followers as members;
//! totals and the digest add the followed threads of unmuted conversations.
//!
//! A store that has not loaded the messages after a watermark (another device marked unread
//! from a message this tab never saw) cannot recount; it marks the count inexact and takes the
//! relay's next `unread_updated` for it without calling that a divergence.

use rustc_hash::FxHashMap;

use crate::digest;
use crate::ids::{ConversationId, Seq, StaffId};
use crate::model::{Counts, Message, Totals};
use crate::protocol::{ConversationState, Event};
use crate::seq_index::SeqIndex;
use crate::staff_keys::StaffKey;
use crate::staff_keys::StaffKeys;

mod saved;

/// Whose counts a projection keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tracking {
    /// Every participant (the relay).
    Everyone,
    /// One staff member (a browser).
    Only(StaffId),
}

/// A change to one staff member's counts (or to whether they add to the total) in one
/// conversation or thread: the relay sends an `unread_updated` for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountChange {
    /// Whose.
    pub staff: StaffKey,
    /// Where.
    pub conversation: ConversationId,
    /// The thread (its root's seq), when the counts are a thread's.
    pub thread: Option<Seq>,
}

/// Where a member's counts are kept: a conversation, or one of its threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Place {
    conversation: ConversationId,
    thread: Option<Seq>,
}

impl Place {
    fn conversation(conversation: ConversationId) -> Self {
        Place {
            conversation,
            thread: None,
        }
    }

    fn thread(conversation: ConversationId, root: Seq) -> Self {
        Place {
            conversation,
            thread: Some(root),
        }
    }

    fn term(self, counts: Counts, muted: bool) -> u64 {
        match self.thread {
            None => digest::term(self.conversation, counts, muted),
            Some(root) => digest::thread_term(self.conversation, root, counts, muted),
        }
    }

    fn change(self, staff: StaffKey) -> CountChange {
        CountChange {
            staff,
            conversation: self.conversation,
            thread: self.thread,
        }
    }
}

/// An event the projection cannot place; a store that meets one asks for a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectionError {
    /// The event names a conversation the projection does not have.
    #[error("unknown conversation {0}")]
    UnknownConversation(ConversationId),
    /// A message's seq is not the next one: an event was missed.
    #[error("conversation {conversation}: expected seq {expected}, got {got}")]
    SeqGap {
        /// Where.
        conversation: ConversationId,
        /// `head + 1`.
        expected: Seq,
        /// What arrived.
        got: Seq,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Member {
    staff: StaffKey,
    last_read: Seq,
    muted: bool,
    counts: Counts,
    /// False when the messages after `last_read` are not loaded here, so `counts` could not be
    /// recomputed and awaits the relay's checkpoint.
    exact: bool,
}

/// What counting needs of one message: who sent it, whom it mentions, whether it is deleted,
/// and the thread it replies in.
#[derive(Clone, Debug)]
struct MessageMeta {
    sender: StaffKey,
    deleted: bool,
    mentions: Box<[StaffKey]>,
    thread: Option<Seq>,
}

/// One thread's counting state: its live replies, each sender's and each mentioned staff
/// member's (the same indexes as a conversation's, over positions in the conversation's
/// numbering), and its followers, each a member with a thread watermark. A thread exists from
/// its first reply or its first follow (the root's author follows it from then on).
#[derive(Clone, Debug, PartialEq, Eq)]
struct ThreadCounts {
    /// Its newest reply's seq (the root's when it has none known).
    head: Seq,
    replies: SeqIndex,
    by_sender: FxHashMap<StaffKey, SeqIndex>,
    mentioning: FxHashMap<StaffKey, SeqIndex>,
    /// Following now; `muted` mirrors the conversation's.
    followers: Vec<Member>,
}

impl ThreadCounts {
    fn new(root: Seq) -> Self {
        ThreadCounts {
            head: root,
            replies: SeqIndex::list(),
            by_sender: FxHashMap::default(),
            mentioning: FxHashMap::default(),
            followers: Vec::new(),
        }
    }

    fn index(&mut self, seq: Seq, meta: &MessageMeta) {
        self.head = self.head.max(seq);
        self.replies.push(seq, !meta.deleted);
        if !meta.deleted {
            self.by_sender.entry(meta.sender).or_default().push(seq, true);
            for m in meta.mentions.iter() {
                self.mentioning.entry(*m).or_default().push(seq, true);
            }
        }
    }

    /// A follower's counts with thread watermark `last_read`, if the replies after it are
    /// known (`known_from` is the conversation's).
    fn count(&self, staff: StaffKey, last_read: Seq, known_from: Seq) -> Option<Counts> {
        if last_read.0 + 1 < known_from.0 {
            return None;
        }
        let own = self.by_sender.get(&staff).map_or(0, |i| i.count_after(last_read));
        Some(Counts {
            unread: self.replies.count_after(last_read) - own,
            mentions: self
                .mentioning
                .get(&staff)
                .map_or(0, |i| i.count_after(last_read)),
        })
    }

    fn follower_mut(&mut self, staff: StaffKey) -> Option<&mut Member> {
        self.followers.iter_mut().find(|m| m.staff == staff)
    }

    fn indexes_mut(&mut self) -> impl Iterator<Item = &mut SeqIndex> {
        std::iter::once(&mut self.replies)
            .chain(self.by_sender.values_mut())
            .chain(self.mentioning.values_mut())
    }
}

/// One conversation's counting state. Nothing here is per message but three compact indexes
/// (see [`SeqIndex`]): every known message (a bit each), each sender's live messages and each
/// mentioned staff member's live mentions (4 bytes each).
#[derive(Clone, Debug, PartialEq, Eq)]
struct ConversationCounts {
    head: Seq,
    /// The first seq whose message is known here (1 in the relay).
    known_from: Seq,
    /// Messages `known_from..=head`, live unless deleted.
    live: SeqIndex,
    /// Each sender's live messages.
    by_sender: FxHashMap<StaffKey, SeqIndex>,
    /// Each mentioned staff member's live mentions.
    mentioning: FxHashMap<StaffKey, SeqIndex>,
    members: Vec<Member>,
    /// Its threads, by their root's seq.
    threads: FxHashMap<Seq, ThreadCounts>,
}

impl ConversationCounts {
    fn new(head: Seq) -> Self {
        ConversationCounts {
            head,
            known_from: head.next(),
            live: SeqIndex::range(head.next()),
            by_sender: FxHashMap::default(),
            mentioning: FxHashMap::default(),
            members: Vec::new(),
            threads: FxHashMap::default(),
        }
    }

    fn index(&mut self, seq: Seq, meta: MessageMeta) {
        if let Some(root) = meta.thread {
            // A reply holds its place in the conversation's numbering, counted only in its
            // thread.
            self.live.push(seq, false);
            self.threads
                .entry(root)
                .or_insert_with(|| ThreadCounts::new(root))
                .index(seq, &meta);
            return;
        }
        self.live.push(seq, !meta.deleted);
        if !meta.deleted {
            self.by_sender.entry(meta.sender).or_default().push(seq, true);
            for m in meta.mentions.iter() {
                self.mentioning.entry(*m).or_default().push(seq, true);
            }
        }
    }

    /// The counts of `staff` with watermark `last_read`, if the messages after it are known.
    fn count(&self, staff: StaffKey, last_read: Seq) -> Option<Counts> {
        if last_read >= self.head {
            return Some(Counts::default());
        }
        if last_read.0 + 1 < self.known_from.0 {
            return None;
        }
        let own = self.by_sender.get(&staff).map_or(0, |i| i.count_after(last_read));
        Some(Counts {
            unread: self.live.count_after(last_read) - own,
            mentions: self
                .mentioning
                .get(&staff)
                .map_or(0, |i| i.count_after(last_read)),
        })
    }

    fn member_mut(&mut self, staff: StaffKey) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.staff == staff)
    }

    fn muted(&self, staff: StaffKey) -> Option<bool> {
        self.members.iter().find(|m| m.staff == staff).map(|m| m.muted)
    }
}

/// Unread and mention counts per staff member and conversation, and totals, kept up to date
/// event by event.
#[derive(Clone, Debug)]
pub struct UnreadProjection {
    tracking: Tracking,
    staff: StaffKeys,
    /// Totals and digest sums by staff key.
    totals: Vec<Ledger>,
    conversations: FxHashMap<ConversationId, ConversationCounts>,
    /// By staff key, the conversations they are a member of, sorted: what
    /// [`UnreadProjection::conversations_of`] reads instead of every conversation's members
    /// (it runs on each connect and presence change). Derived: not in checkpoints.
    member_of: Vec<Vec<ConversationId>>,
}

impl UnreadProjection {
    /// An empty projection.
    pub fn new(tracking: Tracking) -> Self {
        UnreadProjection {
            tracking,
            staff: StaffKeys::default(),
            totals: Vec::new(),
            conversations: FxHashMap::default(),
            member_of: Vec::new(),
        }
    }

    // ---- getters ----

    /// The key of a staff member the projection has seen.
    pub fn key(&self, staff: &StaffId) -> Option<StaffKey> {
        self.staff.key(staff)
    }

    /// Heap bytes its message indexes hold (what grows with history), after dropping what
    /// growing left unused.
    pub fn compact(&mut self) -> usize {
        let mut bytes = 0;
        for c in self.conversations.values_mut() {
            let indexes = std::iter::once(&mut c.live)
                .chain(c.by_sender.values_mut())
                .chain(c.mentioning.values_mut())
                .chain(c.threads.values_mut().flat_map(ThreadCounts::indexes_mut));
            for idx in indexes {
                idx.shrink();
                bytes += idx.heap_bytes();
            }
        }
        bytes
    }

    /// Whose counts it keeps.
    pub fn tracking(&self) -> &Tracking {
        &self.tracking
    }

    /// How many staff have a key.
    pub fn staff_count(&self) -> usize {
        self.staff.len()
    }

    /// The staff member behind a key.
    pub fn staff_id(&self, key: StaffKey) -> &StaffId {
        self.staff.id(key)
    }

    /// A staff member's counts in a conversation; `None` when they are not in it.
    pub fn counts(&self, staff: &StaffId, conversation: ConversationId) -> Option<Counts> {
        self.counts_by_key(self.key(staff)?, conversation)
    }

    /// As [`counts`](Self::counts), by key.
    pub fn counts_by_key(&self, staff: StaffKey, conversation: ConversationId) -> Option<Counts> {
        let c = self.conversations.get(&conversation)?;
        c.members.iter().find(|m| m.staff == staff).map(|m| m.counts)
    }

    /// A staff member's totals over unmuted conversations.
    pub fn total(&self, staff: &StaffId) -> Totals {
        self.key(staff).map(|k| self.total_by_key(k)).unwrap_or_default()
    }

    /// As [`total`](Self::total), by key.
    pub fn total_by_key(&self, staff: StaffKey) -> Totals {
        self.totals[staff.index()].totals
    }

    /// The digest of a staff member's whole count state (see [`crate::digest`]).
    pub fn digest(&self, staff: &StaffId) -> u64 {
        self.key(staff)
            .map_or(digest::digest(0, Totals::default()), |k| self.digest_by_key(k))
    }

    /// As [`digest`](Self::digest), by key.
    pub fn digest_by_key(&self, staff: StaffKey) -> u64 {
        let l = &self.totals[staff.index()];
        digest::digest(l.sum, l.totals)
    }

    /// A staff member's watermark in a conversation.
    pub fn last_read(&self, staff: &StaffId, conversation: ConversationId) -> Option<Seq> {
        self.member(staff, conversation).map(|m| m.last_read)
    }

    /// Whether a staff member muted a conversation.
    pub fn is_muted(&self, staff: &StaffId, conversation: ConversationId) -> bool {
        self.member(staff, conversation).is_some_and(|m| m.muted)
    }

    /// The seq of a conversation's newest message.
    pub fn head(&self, conversation: ConversationId) -> Option<Seq> {
        self.conversations.get(&conversation).map(|c| c.head)
    }

    /// The conversations a staff member is tracked in, with their watermark, counts and head.
    pub fn conversations_of(&self, staff: &StaffId) -> Vec<(ConversationId, Seq, Seq)> {
        let Some(k) = self.key(staff) else {
            return Vec::new();
        };
        let out: Vec<_> = (self.member_of.get(k.index()).into_iter().flatten())
            .filter_map(|id| {
                let c = self.conversations.get(id)?;
                let m = c.members.iter().find(|m| m.staff == k)?;
                Some((*id, m.last_read, c.head))
            })
            .collect();
        // An entry left behind would be skipped above (its conversation no longer lists the
        // member); a missing one would not. Debug builds (every test) check each call.
        #[cfg(debug_assertions)]
        assert_eq!(
            out,
            self.scanned_conversations_of(k),
            "the index of members is stale"
        );
        out
    }

    /// [`UnreadProjection::conversations_of`] by looking at every conversation: what the index
    /// must agree with.
    #[cfg(debug_assertions)]
    fn scanned_conversations_of(&self, k: StaffKey) -> Vec<(ConversationId, Seq, Seq)> {
        let mut out: Vec<_> = self
            .conversations
            .iter()
            .filter_map(|(id, c)| {
                c.members
                    .iter()
                    .find(|m| m.staff == k)
                    .map(|m| (*id, m.last_read, c.head))
            })
            .collect();
        out.sort_unstable_by_key(|(id, _, _)| *id);
        out
    }

    /// Records that `key` is a member of `id`.
    fn joined(&mut self, key: StaffKey, id: ConversationId) {
        if self.member_of.len() <= key.index() {
            self.member_of.resize_with(key.index() + 1, Vec::new);
        }
        let list = &mut self.member_of[key.index()];
        if let Err(at) = list.binary_search(&id) {
            list.insert(at, id);
        }
    }

    /// Records that `key` is no longer a member of `id`.
    fn left(&mut self, key: StaffKey, id: ConversationId) {
        if let Some(list) = self.member_of.get_mut(key.index())
            && let Ok(at) = list.binary_search(&id)
        {
            list.remove(at);
        }
    }

    /// The index of members, made from the conversations (after reading a checkpoint).
    fn index_members(&mut self) {
        self.member_of = vec![Vec::new(); self.staff.len()];
        for (id, c) in &self.conversations {
            for m in &c.members {
                self.member_of[m.staff.index()].push(*id);
            }
        }
        for list in &mut self.member_of {
            list.sort_unstable();
        }
    }

    /// A follower's counts in a thread; `None` when they do not follow it.
    pub fn thread_counts(&self, staff: &StaffId, conversation: ConversationId, root: Seq) -> Option<Counts> {
        self.thread_counts_by_key(self.key(staff)?, conversation, root)
    }

    /// As [`thread_counts`](Self::thread_counts), by key.
    pub fn thread_counts_by_key(
        &self,
        staff: StaffKey,
        conversation: ConversationId,
        root: Seq,
    ) -> Option<Counts> {
        let t = self.conversations.get(&conversation)?.threads.get(&root)?;
        t.followers.iter().find(|m| m.staff == staff).map(|m| m.counts)
    }

    /// A follower's thread watermark; `None` when they do not follow it.
    pub fn thread_last_read(&self, staff: &StaffId, conversation: ConversationId, root: Seq) -> Option<Seq> {
        let k = self.key(staff)?;
        let t = self.conversations.get(&conversation)?.threads.get(&root)?;
        t.followers.iter().find(|m| m.staff == k).map(|m| m.last_read)
    }

    /// The seq of a thread's newest reply (its root's when it has none); `None` for a thread
    /// that has not started (no reply, nobody followed it).
    pub fn thread_head(&self, conversation: ConversationId, root: Seq) -> Option<Seq> {
        Some(self.conversations.get(&conversation)?.threads.get(&root)?.head)
    }

    /// The threads a staff member follows, by conversation then root: (conversation, root,
    /// thread watermark, thread head, counts).
    pub fn threads_of(&self, staff: &StaffId) -> Vec<(ConversationId, Seq, Seq, Seq, Counts)> {
        let Some(k) = self.key(staff) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (id, c) in &self.conversations {
            for (root, t) in &c.threads {
                if let Some(m) = t.followers.iter().find(|m| m.staff == k) {
                    out.push((*id, *root, m.last_read, t.head, m.counts));
                }
            }
        }
        out.sort_unstable_by_key(|(id, root, ..)| (*id, *root));
        out
    }

    fn member(&self, staff: &StaffId, conversation: ConversationId) -> Option<&Member> {
        let k = self.key(staff)?;
        self.conversations
            .get(&conversation)?
            .members
            .iter()
            .find(|m| m.staff == k)
    }

    fn tracks(&self, staff: &StaffId) -> bool {
        match &self.tracking {
            Tracking::Everyone => true,
            Tracking::Only(me) => me == staff,
        }
    }

    /// Gives a staff member a key (the same one on every call).
    pub fn register(&mut self, staff: &StaffId) -> StaffKey {
        self.intern(staff)
    }

    fn intern(&mut self, staff: &StaffId) -> StaffKey {
        let k = self.staff.intern(staff);
        if self.totals.len() <= k.index() {
            self.totals.resize(k.index() + 1, Ledger::default());
        }
        k
    }

    // ---- inputs ----

    // Over 80 lines: the counting rules, one arm per kind of event, read top to bottom.
    /// Applies one event, appending to `changes` each (staff, conversation) whose counts or
    /// total changed.
    pub fn apply(&mut self, event: &Event, changes: &mut Vec<CountChange>) -> Result<(), ProjectionError> {
        match event {
            Event::ConversationCreated { conversation, .. } => {
                let mut c = ConversationCounts::new(Seq(0));
                c.known_from = Seq(1);
                for p in &conversation.participants {
                    if self.tracks(p) {
                        let staff = self.intern(p);
                        let m = Member::new(staff, Seq(0));
                        self.totals[staff.index()].enter(Place::conversation(conversation.id), &m);
                        c.members.push(m);
                    }
                }
                let members: Vec<StaffKey> = c.members.iter().map(|m| m.staff).collect();
                if let Some(old) = self.conversations.insert(conversation.id, c) {
                    for m in old.members {
                        self.left(m.staff, conversation.id);
                    }
                }
                for k in members {
                    self.joined(k, conversation.id);
                }
            }
            Event::ParticipantAdded {
                conversation,
                staff,
                head,
                ..
            } => {
                if !self.tracks(staff) {
                    return Ok(());
                }
                let key = self.intern(staff);
                let c = self
                    .conversations
                    .entry(conversation.id)
                    .or_insert_with(|| ConversationCounts::new(*head));
                if c.members.iter().all(|m| m.staff != key) {
                    let m = Member::new(key, *head);
                    self.totals[key.index()].enter(Place::conversation(conversation.id), &m);
                    c.members.push(m);
                }
                self.joined(key, conversation.id);
            }
            Event::ParticipantRemoved {
                conversation, staff, ..
            } => {
                let Some(key) = self.key(staff) else {
                    return Ok(());
                };
                let id = *conversation;
                let c = self
                    .conversations
                    .get_mut(&id)
                    .ok_or(ProjectionError::UnknownConversation(id))?;
                if let Some(i) = c.members.iter().position(|m| m.staff == key) {
                    let m = c.members.swap_remove(i);
                    let ledger = &mut self.totals[key.index()];
                    ledger.leave(Place::conversation(id), &m);
                    // Leaving takes the conversation's threads, and their counts, away.
                    for (root, t) in c.threads.iter_mut() {
                        if let Some(j) = t.followers.iter().position(|f| f.staff == key) {
                            let f = t.followers.swap_remove(j);
                            ledger.leave(Place::thread(id, *root), &f);
                        }
                    }
                    if matches!(self.tracking, Tracking::Only(_)) {
                        self.conversations.remove(&id);
                    }
                    self.left(key, id);
                    changes.push(Place::conversation(id).change(key));
                }
            }
            Event::ConversationRenamed { conversation, .. } => {
                self.conversation_mut(*conversation)?;
            }
            Event::MessageCreated { message } => self.message_created(message, changes)?,
            // Edits, reactions and the `@here` switch change no count; they only have to be
            // somewhere known.
            Event::MessageEdited { conversation, .. }
            | Event::ReactionChanged { conversation, .. }
            | Event::EveryoneMentionsChanged { conversation, .. } => {
                self.conversation_mut(*conversation)?;
            }
            Event::MessageDeleted {
                conversation,
                seq,
                sender,
                mentions,
                thread,
                ..
            } => {
                let sender = self.intern(sender);
                let mentioned: Vec<StaffKey> = mentions.iter().map(|m| self.intern(m)).collect();
                match thread {
                    None => self.message_deleted(*conversation, *seq, sender, &mentioned, changes)?,
                    Some(root) => {
                        self.reply_deleted(*conversation, *root, *seq, sender, &mentioned, changes)?
                    }
                }
            }
            Event::MessagesRead {
                conversation,
                staff,
                last_read,
            }
            | Event::MarkedUnread {
                conversation,
                staff,
                last_read,
            } => {
                let Some(key) = self.key(staff) else {
                    return Ok(());
                };
                self.move_watermark(*conversation, key, *last_read, changes)?;
            }
            Event::MuteChanged {
                conversation,
                staff,
                muted,
            } => {
                let Some(key) = self.key(staff) else {
                    return Ok(());
                };
                let id = *conversation;
                let c = self
                    .conversations
                    .get_mut(&id)
                    .ok_or(ProjectionError::UnknownConversation(id))?;
                if let Some(m) = c.member_mut(key)
                    && m.muted != *muted
                {
                    let ledger = &mut self.totals[key.index()];
                    ledger.leave(Place::conversation(id), m);
                    m.muted = *muted;
                    ledger.enter(Place::conversation(id), m);
                    // Its followed threads leave the total (or come back) with it; the one
                    // checkpoint for the conversation carries the new total.
                    for (root, t) in c.threads.iter_mut() {
                        if let Some(f) = t.follower_mut(key) {
                            ledger.leave(Place::thread(id, *root), f);
                            f.muted = *muted;
                            ledger.enter(Place::thread(id, *root), f);
                        }
                    }
                    changes.push(Place::conversation(id).change(key));
                }
            }
            Event::ThreadRead {
                conversation,
                thread,
                staff,
                last_read,
            } => {
                let Some(key) = self.key(staff) else {
                    return Ok(());
                };
                self.move_thread_watermark(*conversation, *thread, key, *last_read, false, changes)?;
            }
            Event::ThreadMarkedUnread {
                conversation,
                thread,
                staff,
                last_read,
            } => {
                let Some(key) = self.key(staff) else {
                    return Ok(());
                };
                self.move_thread_watermark(*conversation, *thread, key, *last_read, true, changes)?;
            }
            Event::ThreadFollowed {
                conversation,
                thread,
                staff,
                following,
                last_read,
            } => {
                if !self.tracks(staff) {
                    self.conversation_mut(*conversation)?;
                    return Ok(());
                }
                let key = self.intern(staff);
                if *following {
                    self.follow(*conversation, *thread, key, *last_read, changes)?;
                } else {
                    self.unfollow(*conversation, *thread, key, changes)?;
                }
            }
        }
        Ok(())
    }

    /// `staff` follows a thread from `last_read` on, unless they follow it already (or are not
    /// in its conversation).
    fn follow(
        &mut self,
        id: ConversationId,
        root: Seq,
        staff: StaffKey,
        last_read: Seq,
        changes: &mut Vec<CountChange>,
    ) -> Result<(), ProjectionError> {
        let c = self
            .conversations
            .get_mut(&id)
            .ok_or(ProjectionError::UnknownConversation(id))?;
        let Some(muted) = c.muted(staff) else {
            return Ok(());
        };
        let known_from = c.known_from;
        let t = c.threads.entry(root).or_insert_with(|| ThreadCounts::new(root));
        if t.follower_mut(staff).is_some() {
            return Ok(());
        }
        let mut m = Member::new(staff, last_read);
        m.muted = muted;
        match t.count(staff, last_read, known_from) {
            Some(counts) => m.counts = counts,
            None => m.exact = false,
        }
        self.totals[staff.index()].enter(Place::thread(id, root), &m);
        if m.counts != Counts::default() {
            changes.push(Place::thread(id, root).change(staff));
        }
        t.followers.push(m);
        Ok(())
    }

    fn unfollow(
        &mut self,
        id: ConversationId,
        root: Seq,
        staff: StaffKey,
        changes: &mut Vec<CountChange>,
    ) -> Result<(), ProjectionError> {
        let c = self
            .conversations
            .get_mut(&id)
            .ok_or(ProjectionError::UnknownConversation(id))?;
        // Unfollowing starts a thread too (its root's author may leave it before any reply).
        let t = c.threads.entry(root).or_insert_with(|| ThreadCounts::new(root));
        if let Some(i) = t.followers.iter().position(|m| m.staff == staff) {
            let m = t.followers.swap_remove(i);
            self.totals[staff.index()].leave(Place::thread(id, root), &m);
            changes.push(Place::thread(id, root).change(staff));
        }
        Ok(())
    }

    fn conversation_mut(&mut self, id: ConversationId) -> Result<&mut ConversationCounts, ProjectionError> {
        self.conversations
            .get_mut(&id)
            .ok_or(ProjectionError::UnknownConversation(id))
    }

    fn message_created(
        &mut self,
        message: &Message,
        changes: &mut Vec<CountChange>,
    ) -> Result<(), ProjectionError> {
        let sender = self.intern(&message.sender);
        let mentions: Box<[StaffKey]> = message.mentions.iter().map(|m| self.intern(m)).collect();
        let id = message.conversation;
        let c = self
            .conversations
            .get_mut(&id)
            .ok_or(ProjectionError::UnknownConversation(id))?;
        let seq = message.seq;
        if seq != c.head.next() {
            return Err(ProjectionError::SeqGap {
                conversation: id,
                expected: c.head.next(),
                got: seq,
            });
        }
        c.head = seq;
        let meta = MessageMeta {
            sender,
            deleted: message.deleted,
            mentions,
            thread: message.thread,
        };
        if let Some(root) = message.thread {
            self.reply_created(id, root, seq, meta, changes);
            return Ok(());
        }
        let place = Place::conversation(id);
        count_new(&mut c.members, &mut self.totals, seq, &meta, place, changes);
        c.index(seq, meta);
        Ok(())
    }

    /// A reply in thread `root`: its sender follows (and has read up to it), the staff it
    /// mentions follow from just before it (so it counts for them), the other followers count
    /// it. The conversation's own counts do not change.
    fn reply_created(
        &mut self,
        id: ConversationId,
        root: Seq,
        seq: Seq,
        meta: MessageMeta,
        changes: &mut Vec<CountChange>,
    ) {
        let c = self.conversations.get_mut(&id).expect("checked by the caller");
        let counted = !meta.deleted;
        let mut newcomers: Vec<(StaffKey, Seq, bool)> = Vec::new();
        for m in &c.members {
            if m.staff == meta.sender {
                newcomers.push((m.staff, seq, m.muted));
            } else if meta.mentions.contains(&m.staff) {
                newcomers.push((m.staff, Seq(seq.0 - 1), m.muted));
            }
        }
        c.index(seq, meta.clone());
        let t = c.threads.get_mut(&root).expect("indexed just now");
        let place = Place::thread(id, root);
        count_new(&mut t.followers, &mut self.totals, seq, &meta, place, changes);
        for (staff, last_read, muted) in newcomers {
            if t.followers.iter().any(|f| f.staff == staff) {
                continue;
            }
            let mut m = Member::new(staff, last_read);
            m.muted = muted;
            if staff != meta.sender && counted {
                m.counts = Counts {
                    unread: 1,
                    mentions: 1,
                };
            }
            self.totals[staff.index()].enter(Place::thread(id, root), &m);
            if m.counts != Counts::default() {
                changes.push(Place::thread(id, root).change(staff));
            }
            t.followers.push(m);
        }
    }

    /// A deleted reply stops counting for every follower who had not read it.
    fn reply_deleted(
        &mut self,
        id: ConversationId,
        root: Seq,
        seq: Seq,
        sender: StaffKey,
        mentions: &[StaffKey],
        changes: &mut Vec<CountChange>,
    ) -> Result<(), ProjectionError> {
        let c = self
            .conversations
            .get_mut(&id)
            .ok_or(ProjectionError::UnknownConversation(id))?;
        if seq > c.head || seq.0 == 0 {
            return Ok(());
        }
        let known = seq >= c.known_from;
        let Some(t) = c.threads.get_mut(&root) else {
            return Ok(());
        };
        if known
            && !unindex(
                &mut t.replies,
                &mut t.by_sender,
                &mut t.mentioning,
                seq,
                sender,
                mentions,
            )
        {
            return Ok(());
        }
        let place = Place::thread(id, root);
        count_deleted(
            &mut t.followers,
            &mut self.totals,
            seq,
            sender,
            mentions,
            place,
            changes,
        );
        Ok(())
    }

    /// Moves a follower's thread watermark and recounts. A mark unread (`follow`) makes a
    /// non-follower follow; a read of a thread one does not follow changes nothing.
    fn move_thread_watermark(
        &mut self,
        id: ConversationId,
        root: Seq,
        staff: StaffKey,
        last_read: Seq,
        follow: bool,
        changes: &mut Vec<CountChange>,
    ) -> Result<(), ProjectionError> {
        let c = self
            .conversations
            .get_mut(&id)
            .ok_or(ProjectionError::UnknownConversation(id))?;
        let Some(muted) = c.muted(staff) else {
            return Ok(());
        };
        let known_from = c.known_from;
        let t = c.threads.entry(root).or_insert_with(|| ThreadCounts::new(root));
        let recount = t.count(staff, last_read, known_from);
        let place = Place::thread(id, root);
        let m = match t.followers.iter().position(|m| m.staff == staff) {
            Some(i) => &mut t.followers[i],
            None if follow => {
                let mut m = Member::new(staff, last_read);
                m.muted = muted;
                self.totals[staff.index()].enter(place, &m);
                t.followers.push(m);
                t.followers.last_mut().expect("just pushed")
            }
            None => return Ok(()),
        };
        m.last_read = last_read;
        let before = m.counts;
        match recount {
            Some(counts) => {
                m.counts = counts;
                m.exact = true;
            }
            None => m.exact = false,
        }
        settle(&mut self.totals, m, before, place, changes);
        Ok(())
    }

    fn message_deleted(
        &mut self,
        id: ConversationId,
        seq: Seq,
        sender: StaffKey,
        mentions: &[StaffKey],
        changes: &mut Vec<CountChange>,
    ) -> Result<(), ProjectionError> {
        let c = self
            .conversations
            .get_mut(&id)
            .ok_or(ProjectionError::UnknownConversation(id))?;
        if seq > c.head || seq.0 == 0 {
            return Ok(());
        }
        let known = seq >= c.known_from;
        if known
            && !unindex(
                &mut c.live,
                &mut c.by_sender,
                &mut c.mentioning,
                seq,
                sender,
                mentions,
            )
        {
            return Ok(());
        }
        let place = Place::conversation(id);
        count_deleted(
            &mut c.members,
            &mut self.totals,
            seq,
            sender,
            mentions,
            place,
            changes,
        );
        Ok(())
    }

    fn move_watermark(
        &mut self,
        id: ConversationId,
        staff: StaffKey,
        last_read: Seq,
        changes: &mut Vec<CountChange>,
    ) -> Result<(), ProjectionError> {
        let c = self
            .conversations
            .get_mut(&id)
            .ok_or(ProjectionError::UnknownConversation(id))?;
        let last_read = last_read.min(c.head);
        let recount = c.count(staff, last_read);
        let Some(m) = c.member_mut(staff) else {
            return Ok(());
        };
        m.last_read = last_read;
        let before = m.counts;
        match recount {
            Some(counts) => {
                m.counts = counts;
                m.exact = true;
            }
            None => m.exact = false,
        }
        settle(&mut self.totals, m, before, Place::conversation(id), changes);
        Ok(())
    }

    /// Loads one staff member's view of a conversation from a snapshot: its known messages and
    /// the relay's counts, which are taken as exact.
    pub fn load_conversation(&mut self, me: &StaffId, state: &ConversationState) {
        let key = self.intern(me);
        let mut c = ConversationCounts::new(state.head);
        if let Some(first) = state.messages.first() {
            c.known_from = first.seq;
            c.live = SeqIndex::range(first.seq);
        }
        for msg in &state.messages {
            let meta = self.meta_of(msg);
            c.index(msg.seq, meta);
        }
        let m = Member {
            staff: key,
            last_read: state.last_read,
            muted: state.muted,
            counts: state.counts,
            exact: true,
        };
        let id = state.conversation.id;
        let ledger = &mut self.totals[key.index()];
        ledger.enter(Place::conversation(id), &m);
        c.members.push(m);
        for ts in &state.threads {
            let t = c
                .threads
                .entry(ts.root)
                .or_insert_with(|| ThreadCounts::new(ts.root));
            t.head = t.head.max(ts.head);
            let f = Member {
                staff: key,
                last_read: ts.last_read,
                muted: state.muted,
                counts: ts.counts,
                exact: true,
            };
            ledger.enter(Place::thread(id, ts.root), &f);
            t.followers.push(f);
        }
        if let Some(old) = self.conversations.insert(id, c) {
            if let Some(m) = old.members.iter().find(|m| m.staff == key) {
                ledger.leave(Place::conversation(id), m);
            }
            for (root, t) in &old.threads {
                if let Some(f) = t.followers.iter().find(|f| f.staff == key) {
                    ledger.leave(Place::thread(id, *root), f);
                }
            }
            for m in old.members.iter().filter(|m| m.staff != key) {
                self.left(m.staff, id);
            }
        }
        self.joined(key, id);
    }

    /// Extends a conversation's known messages backwards with an older page (contiguous, in
    /// order, ending just before the first known message). Counts do not change.
    pub fn prepend_history(&mut self, conversation: ConversationId, older: &[Message]) {
        let metas: Vec<(Seq, MessageMeta)> = older.iter().map(|m| (m.seq, self.meta_of(m))).collect();
        let Some(c) = self.conversations.get_mut(&conversation) else {
            return;
        };
        let Some((first, _)) = metas.first() else {
            return;
        };
        if metas.last().map(|(s, _)| s.next()) != Some(c.known_from) {
            return;
        }
        let mut rebuilt = ConversationCounts::new(c.head);
        rebuilt.known_from = *first;
        rebuilt.live = SeqIndex::range(*first);
        rebuilt.members = std::mem::take(&mut c.members);
        for (seq, meta) in metas {
            rebuilt.index(seq, meta);
        }
        rebuilt.live.extend(&c.live);
        extend_indexes(&mut rebuilt.by_sender, &c.by_sender);
        extend_indexes(&mut rebuilt.mentioning, &c.mentioning);
        // Each thread: the older replies first, then what was known; its head and followers
        // stay.
        for (root, later) in c.threads.drain() {
            let t = rebuilt
                .threads
                .entry(root)
                .or_insert_with(|| ThreadCounts::new(root));
            t.head = t.head.max(later.head);
            t.replies.extend(&later.replies);
            extend_indexes(&mut t.by_sender, &later.by_sender);
            extend_indexes(&mut t.mentioning, &later.mentioning);
            t.followers = later.followers;
        }
        *c = rebuilt;
    }

    /// Takes the relay's counts for one staff member and conversation (an `unread_updated`
    /// checkpoint). Returns true when this projection had computed different exact counts: a
    /// divergence worth recording.
    pub fn checkpoint(&mut self, staff: &StaffId, conversation: ConversationId, counts: Counts) -> bool {
        let Some(key) = self.key(staff) else {
            return false;
        };
        let Some(c) = self.conversations.get_mut(&conversation) else {
            return false;
        };
        let Some(m) = c.member_mut(key) else {
            return false;
        };
        let diverged = m.exact && m.counts != counts;
        let ledger = &mut self.totals[key.index()];
        let place = Place::conversation(conversation);
        ledger.leave(place, m);
        m.counts = counts;
        m.exact = true;
        ledger.enter(place, m);
        diverged
    }

    /// As [`checkpoint`](Self::checkpoint), for a thread's counts (a follower's).
    pub fn checkpoint_thread(
        &mut self,
        staff: &StaffId,
        conversation: ConversationId,
        root: Seq,
        counts: Counts,
    ) -> bool {
        let Some(key) = self.key(staff) else {
            return false;
        };
        let Some(t) = self
            .conversations
            .get_mut(&conversation)
            .and_then(|c| c.threads.get_mut(&root))
        else {
            return counts != Counts::default();
        };
        let Some(m) = t.follower_mut(key) else {
            // The relay counts something for a thread this store does not follow.
            return counts != Counts::default();
        };
        let diverged = m.exact && m.counts != counts;
        let ledger = &mut self.totals[key.index()];
        let place = Place::thread(conversation, root);
        ledger.leave(place, m);
        m.counts = counts;
        m.exact = true;
        ledger.enter(place, m);
        diverged
    }

    fn meta_of(&mut self, msg: &Message) -> MessageMeta {
        MessageMeta {
            sender: self.intern(&msg.sender),
            deleted: msg.deleted,
            mentions: msg.mentions.iter().map(|m| self.intern(m)).collect(),
            thread: msg.thread,
        }
    }
}

/// Appends each index of `from` to the same staff member's in `into`.
fn extend_indexes(into: &mut FxHashMap<StaffKey, SeqIndex>, from: &FxHashMap<StaffKey, SeqIndex>) {
    for (k, idx) in from {
        into.entry(*k).or_default().extend(idx);
    }
}

impl Member {
    fn new(staff: StaffKey, last_read: Seq) -> Self {
        Member {
            staff,
            last_read,
            muted: false,
            counts: Counts::default(),
            exact: true,
        }
    }
}

/// A new message at `seq` (in a conversation, or a thread): its sender has read up to it, the
/// other members count it (and its mention of them) unless it arrived deleted.
fn count_new(
    members: &mut [Member],
    totals: &mut [Ledger],
    seq: Seq,
    meta: &MessageMeta,
    place: Place,
    changes: &mut Vec<CountChange>,
) {
    for m in members.iter_mut() {
        let before = m.counts;
        if m.staff == meta.sender {
            m.last_read = seq;
            m.counts = Counts::default();
            m.exact = true;
        } else if !meta.deleted {
            m.counts.unread += 1;
            if meta.mentions.contains(&m.staff) {
                m.counts.mentions += 1;
            }
        }
        settle(totals, m, before, place, changes);
    }
}

/// Takes a deleted message out of the indexes (`live`: every message's; then its sender's and
/// its mentions'); false when it was deleted already.
fn unindex(
    live: &mut SeqIndex,
    by_sender: &mut FxHashMap<StaffKey, SeqIndex>,
    mentioning: &mut FxHashMap<StaffKey, SeqIndex>,
    seq: Seq,
    sender: StaffKey,
    mentions: &[StaffKey],
) -> bool {
    if !live.remove(seq) {
        return false;
    }
    if let Some(idx) = by_sender.get_mut(&sender) {
        idx.remove(seq);
    }
    for m in mentions {
        if let Some(idx) = mentioning.get_mut(m) {
            idx.remove(seq);
        }
    }
    true
}

/// A message at `seq` was deleted: it stops counting for every member who had not read it.
fn count_deleted(
    members: &mut [Member],
    totals: &mut [Ledger],
    seq: Seq,
    sender: StaffKey,
    mentions: &[StaffKey],
    place: Place,
    changes: &mut Vec<CountChange>,
) {
    for m in members.iter_mut() {
        if m.staff == sender || m.last_read >= seq {
            continue;
        }
        let before = m.counts;
        m.counts.unread = m.counts.unread.saturating_sub(1);
        if mentions.contains(&m.staff) {
            m.counts.mentions = m.counts.mentions.saturating_sub(1);
        }
        settle(totals, m, before, place, changes);
    }
}

/// After a member's counts changed from `before`: keeps their total in step (when the
/// conversation is not muted) and records the change.
fn settle(totals: &mut [Ledger], m: &Member, before: Counts, place: Place, changes: &mut Vec<CountChange>) {
    if m.counts == before {
        return;
    }
    let ledger = &mut totals[m.staff.index()];
    ledger.leave(
        place,
        &Member {
            counts: before,
            ..m.clone()
        },
    );
    ledger.enter(place, m);
    changes.push(place.change(m.staff));
}

/// One staff member's totals over unmuted conversations and their followed threads, and the
/// digest sum over all of theirs, changed together as a member's (counts, muted) enters and
/// leaves.
#[derive(Clone, Copy, Debug, Default)]
struct Ledger {
    totals: Totals,
    sum: u64,
}

impl Ledger {
    fn enter(&mut self, place: Place, m: &Member) {
        if !m.muted {
            add_totals(&mut self.totals, m.counts);
        }
        self.sum = self.sum.wrapping_add(place.term(m.counts, m.muted));
    }

    fn leave(&mut self, place: Place, m: &Member) {
        if !m.muted {
            sub_totals(&mut self.totals, m.counts);
        }
        self.sum = self.sum.wrapping_sub(place.term(m.counts, m.muted));
    }
}

fn add_totals(t: &mut Totals, c: Counts) {
    t.unread += c.unread;
    t.mentions += c.mentions;
}

fn sub_totals(t: &mut Totals, c: Counts) {
    t.unread -= c.unread;
    t.mentions -= c.mentions;
}
