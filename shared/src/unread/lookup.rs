//! What the engine asks about a message before it accepts a write against it: whether it is
//! deleted, who sent it. The projection holds these facts anyway (they decide counts); this is
//! the engine's window on them, kept apart from the counting rules.

use super::UnreadProjection;
use crate::ids::{ConversationId, Seq, StaffId};

impl UnreadProjection {
    /// Whether a message is known here and deleted.
    pub fn is_deleted(&self, conversation: ConversationId, seq: Seq) -> Option<bool> {
        self.conversations
            .get(&conversation)?
            .meta(seq)
            .map(|m| m.deleted)
    }

    /// The sender and notice flag of a known message.
    pub fn sender_of(&self, conversation: ConversationId, seq: Seq) -> Option<(&StaffId, bool)> {
        let m = self.conversations.get(&conversation)?.meta(seq)?;
        Some((self.staff_id(m.sender), m.notice))
    }
}
