//! The naive oracle: counts by scanning every message and watermark, with the semantics of
//! docs/semantics.md written out a second time, as plainly as possible. Tests and the load generator
//! compare the projection and the store with it.
//!
//! It takes the log's structure from events (which messages exist, who sent them, whom they
//! mention, who is in which conversation, what was deleted or muted), but moves watermarks by
//! its own rules from the accepted requests: it never reads a watermark from an event.

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
}

/// Counts by full scan.
#[derive(Clone, Debug, Default)]
pub struct Oracle {
    messages: Vec<OracleMessage>,
    members: BTreeMap<ConversationId, BTreeSet<StaffId>>,
    watermarks: BTreeMap<(StaffId, ConversationId), Seq>,
    muted: BTreeSet<(StaffId, ConversationId)>,
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
            }
            Event::MessageCreated { message } => {
                self.messages.push(OracleMessage {
                    conversation: message.conversation,
                    seq: message.seq,
                    sender: message.sender.clone(),
                    mentions: message.mentions.clone(),
                    deleted: false,
                });
                let key = (message.sender.clone(), message.conversation);
                if self.watermarks.contains_key(&key) {
                    self.watermarks.insert(key, message.seq);
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
            | Event::MessagesRead { .. }
            | Event::MarkedUnread { .. } => {}
        }
    }

    /// Takes one event of a stored log, watermarks included (as the log records them): what
    /// the relay's `check` rebuilds counts from.
    pub fn observe_logged(&mut self, event: &Event) {
        self.observe(event);
        if let Event::MessagesRead {
            conversation,
            staff,
            last_read,
        }
        | Event::MarkedUnread {
            conversation,
            staff,
            last_read,
        } = event
            && let Some(w) = self.watermarks.get_mut(&(staff.clone(), *conversation))
        {
            *w = *last_read;
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
            _ => {}
        }
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
            if m.conversation == c && m.seq > w && &m.sender != staff && !m.deleted {
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
        crate::digest::digest(sum, self.total(staff))
    }

    /// Totals by summing the unmuted conversations.
    pub fn total(&self, staff: &StaffId) -> Totals {
        let mut t = Totals::default();
        for (s, c) in self.watermarks.keys() {
            if s == staff && !self.muted.contains(&(s.clone(), *c)) {
                let counts = self.counts(staff, *c);
                t.unread += counts.unread;
                t.mentions += counts.mentions;
            }
        }
        t
    }
}
