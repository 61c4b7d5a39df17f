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
/// conversation: the relay sends an `unread_updated` for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountChange {
    /// Whose.
    pub staff: StaffKey,
    /// Where.
    pub conversation: ConversationId,
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

/// What counting needs of one message: who sent it, whom it mentions, whether it is deleted.
#[derive(Clone, Debug)]
struct MessageMeta {
    sender: StaffKey,
    deleted: bool,
    mentions: Box<[StaffKey]>,
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
        }
    }

    fn index(&mut self, seq: Seq, meta: MessageMeta) {
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
}

impl UnreadProjection {
    /// An empty projection.
    pub fn new(tracking: Tracking) -> Self {
        UnreadProjection {
            tracking,
            staff: StaffKeys::default(),
            totals: Vec::new(),
            conversations: FxHashMap::default(),
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
                .chain(c.mentioning.values_mut());
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
                        self.totals[staff.index()].enter(conversation.id, &m);
                        c.members.push(m);
                    }
                }
                self.conversations.insert(conversation.id, c);
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
                    self.totals[key.index()].enter(conversation.id, &m);
                    c.members.push(m);
                }
            }
            Event::ParticipantRemoved {
                conversation, staff, ..
            } => {
                let Some(key) = self.key(staff) else {
                    return Ok(());
                };
                let id = *conversation;
                let c = self.conversation_mut(id)?;
                if let Some(i) = c.members.iter().position(|m| m.staff == key) {
                    let m = c.members.swap_remove(i);
                    self.totals[key.index()].leave(id, &m);
                    if matches!(self.tracking, Tracking::Only(_)) {
                        self.conversations.remove(&id);
                    }
                    changes.push(CountChange {
                        staff: key,
                        conversation: id,
                    });
                }
            }
            Event::ConversationRenamed { conversation, .. } => {
                self.conversation_mut(*conversation)?;
            }
            Event::MessageCreated { message } => self.message_created(message, changes)?,
            Event::MessageEdited { conversation, .. } => {
                self.conversation_mut(*conversation)?;
            }
            Event::MessageDeleted {
                conversation,
                seq,
                sender,
                mentions,
                ..
            } => {
                let sender = self.intern(sender);
                let mentioned: Vec<StaffKey> = mentions.iter().map(|m| self.intern(m)).collect();
                self.message_deleted(*conversation, *seq, sender, &mentioned, changes)?;
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
                    ledger.leave(id, m);
                    m.muted = *muted;
                    ledger.enter(id, m);
                    changes.push(CountChange {
                        staff: key,
                        conversation: id,
                    });
                }
            }
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
        let counted = !message.deleted;
        for m in c.members.iter_mut() {
            let before = m.counts;
            if m.staff == sender {
                m.last_read = seq;
                m.counts = Counts::default();
                m.exact = true;
            } else if counted {
                m.counts.unread += 1;
                if mentions.contains(&m.staff) {
                    m.counts.mentions += 1;
                }
            }
            settle(&mut self.totals, m, before, id, changes);
        }
        c.index(
            seq,
            MessageMeta {
                sender,
                deleted: message.deleted,
                mentions,
            },
        );
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
        if seq >= c.known_from {
            if !c.live.remove(seq) {
                // Deleted already.
                return Ok(());
            }
            if let Some(idx) = c.by_sender.get_mut(&sender) {
                idx.remove(seq);
            }
            for m in mentions {
                if let Some(idx) = c.mentioning.get_mut(m) {
                    idx.remove(seq);
                }
            }
        }
        for m in c.members.iter_mut() {
            if m.staff == sender || m.last_read >= seq {
                continue;
            }
            let before = m.counts;
            m.counts.unread = m.counts.unread.saturating_sub(1);
            if mentions.contains(&m.staff) {
                m.counts.mentions = m.counts.mentions.saturating_sub(1);
            }
            settle(&mut self.totals, m, before, id, changes);
        }
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
        settle(&mut self.totals, m, before, id, changes);
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
        self.totals[key.index()].enter(id, &m);
        c.members.push(m);
        if let Some(old) = self.conversations.insert(id, c)
            && let Some(m) = old.members.iter().find(|m| m.staff == key)
        {
            self.totals[key.index()].leave(id, m);
        }
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
        for (into, from) in [
            (&mut rebuilt.by_sender, &c.by_sender),
            (&mut rebuilt.mentioning, &c.mentioning),
        ] {
            for (k, idx) in from {
                into.entry(*k).or_default().extend(idx);
            }
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
        ledger.leave(conversation, m);
        m.counts = counts;
        m.exact = true;
        ledger.enter(conversation, m);
        diverged
    }

    fn meta_of(&mut self, msg: &Message) -> MessageMeta {
        MessageMeta {
            sender: self.intern(&msg.sender),
            deleted: msg.deleted,
            mentions: msg.mentions.iter().map(|m| self.intern(m)).collect(),
        }
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

/// After a member's counts changed from `before`: keeps their total in step (when the
/// conversation is not muted) and records the change.
fn settle(
    totals: &mut [Ledger],
    m: &Member,
    before: Counts,
    conversation: ConversationId,
    changes: &mut Vec<CountChange>,
) {
    if m.counts == before {
        return;
    }
    let ledger = &mut totals[m.staff.index()];
    ledger.leave(
        conversation,
        &Member {
            counts: before,
            ..m.clone()
        },
    );
    ledger.enter(conversation, m);
    changes.push(CountChange {
        staff: m.staff,
        conversation,
    });
}

/// One staff member's totals over unmuted conversations, and the digest sum over all of theirs,
/// changed together as a member's (counts, muted) enters and leaves.
#[derive(Clone, Copy, Debug, Default)]
struct Ledger {
    totals: Totals,
    sum: u64,
}

impl Ledger {
    fn enter(&mut self, conversation: ConversationId, m: &Member) {
        if !m.muted {
            add_totals(&mut self.totals, m.counts);
        }
        self.sum = self
            .sum
            .wrapping_add(digest::term(conversation, m.counts, m.muted));
    }

    fn leave(&mut self, conversation: ConversationId, m: &Member) {
        if !m.muted {
            sub_totals(&mut self.totals, m.counts);
        }
        self.sum = self
            .sum
            .wrapping_sub(digest::term(conversation, m.counts, m.muted));
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
