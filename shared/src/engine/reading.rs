//! Requests that move a reader's own state: mute, read up to a message, read a conversation,
//! read everything, mark unread.

use super::{Engine, Step, ack_for, next_watermark_on_read, reject};
use crate::engine::Rejection;
use crate::ids::{ConversationId, Seq};
use crate::protocol::{Ack, ErrorCode, Event};

impl Engine {
    pub(super) fn set_muted(
        &mut self,
        step: &mut Step<'_>,
        conversation: ConversationId,
        muted: bool,
    ) -> Result<Ack, Rejection> {
        self.writable(step.author, conversation)?;
        if self.projection.is_muted(step.author, conversation) != muted {
            let event = Event::MuteChanged {
                conversation,
                staff: step.author.clone(),
                muted,
            };
            self.push(&mut step.applied, event);
        }
        Ok(ack_for(conversation))
    }

    /// Reads up to `up_to`, or to the head when `None`.
    pub(super) fn mark_read(
        &mut self,
        step: &mut Step<'_>,
        conversation: ConversationId,
        up_to: Option<Seq>,
    ) -> Result<Ack, Rejection> {
        self.writable(step.author, conversation)?;
        let head = self.projection.head(conversation).unwrap_or_default();
        self.read_up_to(step, conversation, up_to.unwrap_or(head));
        Ok(ack_for(conversation))
    }

    /// Reads every conversation and every thread one follows.
    pub(super) fn mark_all_read(&mut self, step: &mut Step<'_>) -> Ack {
        for (id, _, head) in self.projection.conversations_of(step.author) {
            self.read_up_to(step, id, head);
        }
        for (id, root, _, head, _) in self.projection.threads_of(step.author) {
            self.read_thread_up_to(step, id, root, head);
        }
        Ack::default()
    }

    pub(super) fn mark_unread(
        &mut self,
        step: &mut Step<'_>,
        conversation: ConversationId,
        from: Seq,
    ) -> Result<Ack, Rejection> {
        self.writable(step.author, conversation)?;
        let head = self.projection.head(conversation).unwrap_or_default();
        if from.0 == 0 || from > head {
            return reject(
                ErrorCode::NotFound,
                format!("no message {from} in this conversation"),
            );
        }
        let last_read = Seq(from.0 - 1);
        if self.projection.last_read(step.author, conversation) != Some(last_read) {
            let event = Event::MarkedUnread {
                conversation,
                staff: step.author.clone(),
                last_read,
            };
            self.push(&mut step.applied, event);
        }
        Ok(ack_for(conversation))
    }

    fn read_up_to(&mut self, step: &mut Step<'_>, conversation: ConversationId, up_to: Seq) {
        let head = self.projection.head(conversation).unwrap_or_default();
        let current = self
            .projection
            .last_read(step.author, conversation)
            .unwrap_or_default();
        let last_read = next_watermark_on_read(current, up_to, head);
        if last_read != current {
            let event = Event::MessagesRead {
                conversation,
                staff: step.author.clone(),
                last_read,
            };
            self.push(&mut step.applied, event);
        }
    }
}
