//! "Seen" and "Seen by": how far the other participants of a conversation have read, as the
//! relay's `seen` frames say (their watermarks), and what that means for a message.
//!
//! A message is seen by a participant once their watermark has reached its seq: that is the
//! same watermark that counts their unread messages, so "Seen" and their count never disagree.
//! Marking unread moves a watermark back, and "Seen" with it.

use rustc_hash::FxHashMap;

use crate::ids::{ConversationId, Seq, StaffId};
use crate::model::Message;
use crate::protocol::ReadPosition;

/// Other participants' watermarks, per conversation (only what the relay shared).
#[derive(Clone, Debug, Default)]
pub struct ReadPositions {
    by_conversation: FxHashMap<ConversationId, FxHashMap<StaffId, Seq>>,
}

impl ReadPositions {
    /// Forgets everything (a session starts; `seen` frames follow).
    pub fn clear(&mut self) {
        self.by_conversation.clear();
    }

    /// Applies a `seen` frame.
    pub fn apply(&mut self, conversation: ConversationId, seen: Vec<ReadPosition>) {
        let here = self.by_conversation.entry(conversation).or_default();
        for p in seen {
            match p.last_read {
                Some(seq) => here.insert(p.staff, seq),
                None => here.remove(&p.staff),
            };
        }
    }

    /// How far `staff` has read in `conversation`, if they share it.
    pub fn of(&self, conversation: ConversationId, staff: &StaffId) -> Option<Seq> {
        self.by_conversation.get(&conversation)?.get(staff).copied()
    }

    /// Who among `participants` (but `me` and the message's sender) has read up to `message`,
    /// in the order given.
    pub fn seen_by<'a>(
        &self,
        participants: &'a [StaffId],
        me: &StaffId,
        message: &Message,
    ) -> Vec<&'a StaffId> {
        let Some(here) = self.by_conversation.get(&message.conversation) else {
            return Vec::new();
        };
        participants
            .iter()
            .filter(|p| *p != me && **p != message.sender)
            .filter(|p| here.get(*p).is_some_and(|seq| *seq >= message.seq))
            .collect()
    }

    /// In a direct conversation: my newest message (not deleted) that the other person's
    /// watermark has passed, where "Seen" goes.
    pub fn seen_marker(&self, other: &StaffId, me: &StaffId, messages: &[Message]) -> Option<Seq> {
        let conversation = messages.first()?.conversation;
        let read = self.of(conversation, other)?;
        let upto = messages.partition_point(|m| m.seq <= read);
        messages[..upto]
            .iter()
            .rev()
            .find(|m| &m.sender == me && !m.deleted && m.notice.is_none())
            .map(|m| m.seq)
    }
}
