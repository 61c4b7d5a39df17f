//! The naive oracle: counts by scanning every message and watermark, with the semantics of
//! docs/semantics.md written out a second time, as plainly as possible. Tests and the load generator
//! compare the projection and the store with it.
//!
//! It takes the log's structure from events (which messages exist, who sent them, whom they
//! mention, which thread they reply in, who is in which conversation, what was deleted or
//! muted), but moves watermarks and decides who follows which thread by its own rules from the
//! accepted requests: it never reads a watermark or a follow from an event.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{ConversationId, Seq, StaffId};
use crate::model::{Counts, Totals};
use crate::protocol::{Event, Request};

#[derive(Clone, Debug)]
struct OracleMessage {
    conversation: ConversationId,
    seq: Seq,
    sender: StaffId,
    mentions: Vec<StaffId>,
    deleted: bool,
    thread: Option<Seq>,
}

/// Counts by full scan.
#[derive(Clone, Debug, Default)]
pub struct Oracle {
    messages: Vec<OracleMessage>,
    members: BTreeMap<ConversationId, BTreeSet<StaffId>>,
    watermarks: BTreeMap<(StaffId, ConversationId), Seq>,
    muted: BTreeSet<(StaffId, ConversationId)>,
    /// Threads that have started (a reply, a follow, or an unfollow by the root's author).
    started: BTreeSet<(ConversationId, Seq)>,
    /// Who follows which thread, and their thread watermark.
    following: BTreeMap<(StaffId, ConversationId, Seq), Seq>,
}

impl Oracle {
    /// An empty oracle.
    pub fn new() -> Self {
        Self::default()
    }

    fn head(&self, c: ConversationId) -> Seq {
        self.messages
            .iter()
            .filter(|m| m.conversation == c)
            .map(|m| m.seq)
            .max()
            .unwrap_or_default()
    }

    /// Takes the structure of one event (watermarks excepted, see the module docs).
    pub fn observe(&mut self, event: &Event) {
        match event {
            Event::ConversationCreated { conversation, .. } => {
                let members: BTreeSet<StaffId> = conversation.participants.iter().cloned().collect();
                for p in &members {
                    self.watermarks.insert((p.clone(), conversation.id), Seq(0));
                }
                self.members.insert(conversation.id, members);
            }
            Event::ParticipantAdded {
                conversation, staff, ..
            } => {
                let head = self.head(conversation.id);
                self.members
                    .entry(conversation.id)
                    .or_default()
                    .insert(staff.clone());
                self.watermarks.insert((staff.clone(), conversation.id), head);
            }
            Event::ParticipantRemoved {
                conversation, staff, ..
            } => {
                if let Some(m) = self.members.get_mut(conversation) {
                    m.remove(staff);
                }
                self.watermarks.remove(&(staff.clone(), *conversation));
                self.muted.remove(&(staff.clone(), *conversation));
                // Leaving takes the conversation's threads away.
                self.following
                    .retain(|(s, c, _), _| !(s == staff && c == conversation));
            }
            Event::MessageCreated { message } => {
                // Whom a message mentions follows from its ranges alone: `@here` / `@all` is
                // every member but the sender, otherwise the members the ranges name.
                let members = self.members.get(&message.conversation);
                let is_member = |s: &StaffId| members.is_some_and(|m| m.contains(s));
                let mut mentioned: Vec<StaffId> = Vec::new();
                if message.mention_ranges.iter().any(|r| r.staff.is_none()) {
                    let mut all: Vec<StaffId> = members.into_iter().flatten().cloned().collect();
                    all.retain(|s| *s != message.sender);
                    mentioned = all;
                } else {
                    for s in message.mention_ranges.iter().filter_map(|r| r.staff.as_ref()) {
                        if *s != message.sender && is_member(s) && !mentioned.contains(s) {
                            mentioned.push(s.clone());
                        }
                    }
                }
                let mut said = message.mentions.clone();
                said.sort();
                mentioned.sort();
                // Messages from before ranges (protocol 3's first builds) carry ids alone.
                let legacy = message.mention_ranges.is_empty() && !said.is_empty();
                debug_assert!(legacy || said == mentioned, "the mentions of {message:?}");
                self.messages.push(OracleMessage {
                    conversation: message.conversation,
                    seq: message.seq,
                    sender: message.sender.clone(),
                    mentions: message.mentions.clone(),
                    deleted: false,
                    thread: message.thread,
                });
                match message.thread {
                    None => {
                        let key = (message.sender.clone(), message.conversation);
                        if self.watermarks.contains_key(&key) {
                            self.watermarks.insert(key, message.seq);
                        }
                    }
                    Some(root) => {
                        let c = message.conversation;
                        self.start(c, root);
                        // The replier follows and has read up to their reply.
                        if self.is_member(&message.sender, c) {
                            self.following
                                .insert((message.sender.clone(), c, root), message.seq);
                        }
                        // Whoever it mentions follows from just before it, so it counts.
                        for p in &message.mentions {
                            if self.is_member(p, c) {
                                self.following
                                    .entry((p.clone(), c, root))
                                    .or_insert(Seq(message.seq.0 - 1));
                            }
                        }
                    }
                }
            }
            Event::MessageDeleted {
                conversation, seq, ..
            } => {
                for m in self
                    .messages
                    .iter_mut()
                    .filter(|m| m.conversation == *conversation && m.seq == *seq)
                {
                    m.deleted = true;
                }
            }
            Event::MuteChanged {
                conversation,
                staff,
                muted,
            } => {
                if *muted {
                    self.muted.insert((staff.clone(), *conversation));
                } else {
                    self.muted.remove(&(staff.clone(), *conversation));
                }
            }
            Event::ConversationRenamed { .. }
            | Event::MessageEdited { .. }
            | Event::ReactionChanged { .. }
            | Event::EveryoneMentionsChanged { .. }
            | Event::MessagesRead { .. }
            | Event::MarkedUnread { .. }
            | Event::ThreadRead { .. }
            | Event::ThreadMarkedUnread { .. }
            | Event::ThreadFollowed { .. } => {}
        }
    }

    /// The author of the message at `seq`.
    fn author_of(&self, c: ConversationId, seq: Seq) -> Option<StaffId> {
        self.messages
            .iter()
            .find(|m| m.conversation == c && m.seq == seq)
            .map(|m| m.sender.clone())
    }

    /// Starts a thread if it has not started: its root's author follows it from the root on
    /// (if they are in the conversation).
    fn start(&mut self, c: ConversationId, root: Seq) {
        if !self.started.insert((c, root)) {
            return;
        }
        if let Some(author) = self.author_of(c, root)
            && self.is_member(&author, c)
        {
            self.following.insert((author, c, root), root);
        }
    }

    /// The seq of a thread's newest reply (its root's when it has none).
    fn thread_head(&self, c: ConversationId, root: Seq) -> Seq {
        self.messages
            .iter()
            .filter(|m| m.conversation == c && m.thread == Some(root))
            .map(|m| m.seq)
            .max()
            .unwrap_or(root)
    }

    /// Takes one event of a stored log, watermarks included (as the log records them): what
    /// the relay's `check` rebuilds counts from.
    pub fn observe_logged(&mut self, event: &Event) {
        self.observe(event);
        match event {
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
                if let Some(w) = self.watermarks.get_mut(&(staff.clone(), *conversation)) {
                    *w = *last_read;
                }
            }
            Event::ThreadRead {
                conversation,
                thread,
                staff,
                last_read,
            } => {
                if let Some(w) = self.following.get_mut(&(staff.clone(), *conversation, *thread)) {
                    *w = *last_read;
                }
            }
            Event::ThreadMarkedUnread {
                conversation,
                thread,
                staff,
                last_read,
            } if self.is_member(staff, *conversation) => {
                self.following
                    .insert((staff.clone(), *conversation, *thread), *last_read);
            }
            Event::ThreadFollowed {
                conversation,
                thread,
                staff,
                following,
                last_read,
            } => {
                self.started.insert((*conversation, *thread));
                let key = (staff.clone(), *conversation, *thread);
                if !*following {
                    self.following.remove(&key);
                } else if self.is_member(staff, *conversation) {
                    self.following.entry(key).or_insert(*last_read);
                }
            }
            _ => {}
        }
    }

    /// Moves watermarks for a read request the relay accepted.
    pub fn accepted(&mut self, author: &StaffId, request: &Request) {
        let read_to = |oracle: &mut Oracle, c: ConversationId, up_to: Seq| {
            let head = oracle.head(c);
            if let Some(w) = oracle.watermarks.get_mut(&(author.clone(), c)) {
                let target = if up_to > head { head } else { up_to };
                if target > *w {
                    *w = target;
                }
            }
        };
        match request {
            Request::MarkRead { conversation, up_to } => read_to(self, *conversation, *up_to),
            Request::MarkConversationRead { conversation } => read_to(self, *conversation, Seq(u64::MAX)),
            Request::MarkAllRead => {
                let mine: Vec<ConversationId> = self
                    .watermarks
                    .keys()
                    .filter(|(s, _)| s == author)
                    .map(|(_, c)| *c)
                    .collect();
                for c in mine {
                    read_to(self, c, Seq(u64::MAX));
                }
            }
            Request::MarkUnread { conversation, from } => {
                if let Some(w) = self.watermarks.get_mut(&(author.clone(), *conversation)) {
                    *w = Seq(from.0 - 1);
                }
            }
            Request::MarkThreadRead {
                conversation,
                thread,
                up_to,
            } => self.read_thread_to(author, *conversation, *thread, *up_to),
            Request::ReadThread { conversation, thread } => {
                self.read_thread_to(author, *conversation, *thread, Seq(u64::MAX))
            }
            Request::MarkThreadUnread {
                conversation,
                thread,
                from,
            } => {
                // Marking unread follows a thread one did not follow.
                self.following
                    .insert((author.clone(), *conversation, *thread), Seq(from.0 - 1));
            }
            Request::FollowThread { conversation, thread } => {
                self.start(*conversation, *thread);
                let head = self.thread_head(*conversation, *thread);
                self.following
                    .entry((author.clone(), *conversation, *thread))
                    .or_insert(head);
            }
            Request::UnfollowThread { conversation, thread } => {
                // The root's author leaving it starts it (so they do not follow it later);
                // anyone else who does not follow it changes nothing.
                if self.author_of(*conversation, *thread).as_ref() == Some(author) {
                    self.start(*conversation, *thread);
                }
                self.following.remove(&(author.clone(), *conversation, *thread));
            }
            _ => {}
        }
        if let Request::MarkAllRead = request {
            let mine: Vec<(ConversationId, Seq)> = self
                .following
                .keys()
                .filter(|(s, ..)| s == author)
                .map(|(_, c, t)| (*c, *t))
                .collect();
            for (c, t) in mine {
                self.read_thread_to(author, c, t, Seq(u64::MAX));
            }
        }
    }

    fn read_thread_to(&mut self, author: &StaffId, c: ConversationId, root: Seq, up_to: Seq) {
        let head = self.thread_head(c, root);
        if let Some(w) = self.following.get_mut(&(author.clone(), c, root)) {
            let target = if up_to > head { head } else { up_to };
            if target > *w {
                *w = target;
            }
        }
    }

    /// The threads a staff member follows: (conversation, root).
    pub fn threads_of(&self, staff: &StaffId) -> Vec<(ConversationId, Seq)> {
        self.following
            .keys()
            .filter(|(s, ..)| s == staff)
            .map(|(_, c, t)| (*c, *t))
            .collect()
    }

    /// A follower's thread watermark; `None` when they do not follow it.
    pub fn thread_last_read(&self, staff: &StaffId, c: ConversationId, root: Seq) -> Option<Seq> {
        self.following.get(&(staff.clone(), c, root)).copied()
    }

    /// A thread's counts for a staff member, by scanning its replies: 0 unless they follow it.
    pub fn thread_counts(&self, staff: &StaffId, c: ConversationId, root: Seq) -> Counts {
        let Some(w) = self.thread_last_read(staff, c, root) else {
            return Counts::default();
        };
        let mut counts = Counts::default();
        for m in &self.messages {
            if m.conversation == c && m.thread == Some(root) && m.seq > w && &m.sender != staff && !m.deleted
            {
                counts.unread += 1;
                if m.mentions.contains(staff) {
                    counts.mentions += 1;
                }
            }
        }
        counts
    }

    /// Whether a staff member is in a conversation.
    pub fn is_member(&self, staff: &StaffId, c: ConversationId) -> bool {
        self.members.get(&c).is_some_and(|m| m.contains(staff))
    }

    /// The conversations and members, for iterating in tests.
    pub fn memberships(&self) -> Vec<(StaffId, ConversationId)> {
        self.watermarks.keys().cloned().collect()
    }

    /// A staff member's watermark.
    pub fn last_read(&self, staff: &StaffId, c: ConversationId) -> Option<Seq> {
        self.watermarks.get(&(staff.clone(), c)).copied()
    }

    /// Counts by scanning every message of the conversation.
    pub fn counts(&self, staff: &StaffId, c: ConversationId) -> Counts {
        let Some(w) = self.last_read(staff, c) else {
            return Counts::default();
        };
        let mut counts = Counts::default();
        for m in &self.messages {
            // A reply never counts in its conversation.
            if m.conversation == c && m.thread.is_none() && m.seq > w && &m.sender != staff && !m.deleted {
                counts.unread += 1;
                if m.mentions.contains(staff) {
                    counts.mentions += 1;
                }
            }
        }
        counts
    }

    /// The digest of a staff member's counts, from scratch (`crate::digest`'s definition).
    pub fn digest(&self, staff: &StaffId) -> u64 {
        let mut sum = 0u64;
        for (s, c) in self.watermarks.keys() {
            if s == staff {
                let muted = self.muted.contains(&(s.clone(), *c));
                sum = sum.wrapping_add(crate::digest::term(*c, self.counts(staff, *c), muted));
            }
        }
        for (c, root) in self.threads_of(staff) {
            let muted = self.muted.contains(&(staff.clone(), c));
            let counts = self.thread_counts(staff, c, root);
            sum = sum.wrapping_add(crate::digest::thread_term(c, root, counts, muted));
        }
        crate::digest::digest(sum, self.total(staff))
    }

    /// Totals by summing the unmuted conversations and the threads followed in them.
    pub fn total(&self, staff: &StaffId) -> Totals {
        let mut t = Totals::default();
        for (s, c) in self.watermarks.keys() {
            if s == staff && !self.muted.contains(&(s.clone(), *c)) {
                let counts = self.counts(staff, *c);
                t.unread += counts.unread;
                t.mentions += counts.mentions;
            }
        }
        for (c, root) in self.threads_of(staff) {
            if !self.muted.contains(&(staff.clone(), c)) {
                let counts = self.thread_counts(staff, c, root);
                t.unread += counts.unread;
                t.mentions += counts.mentions;
            }
        }
        t
    }
}
