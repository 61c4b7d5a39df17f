//! Requests that write messages: send (with attachments and a reply), forward, edit, delete.

use super::{Engine, Step, check_body, reject};
use crate::engine::Rejection;
use crate::ids::{AttachmentId, ClientMsgId, ConversationId, MessageId};
use crate::limits;
use crate::mentions::{self, MentionRange};
use crate::model::{Attachment, ForwardRef, Message};
use crate::protocol::{Ack, ErrorCode, Event};

/// What a new message says: its text, its files, and whom it mentions where.
#[derive(Clone, Copy)]
pub(super) struct Content<'a> {
    pub body: &'a str,
    pub attachments: &'a [AttachmentId],
    pub ranges: &'a [MentionRange],
}

impl Engine {
    pub(super) fn send_message(
        &mut self,
        step: &mut Step<'_>,
        client_id: &ClientMsgId,
        conversation: ConversationId,
        content: Content<'_>,
        reply_to: Option<MessageId>,
    ) -> Result<Ack, Rejection> {
        let Content {
            body,
            attachments,
            ranges,
        } = content;
        let author = step.author;
        let c = self.writable(author, conversation)?;
        check_body(body, !attachments.is_empty())?;
        let mentions = mentions_of(c, author, body, ranges)?;
        let files = self.files(step, attachments)?;
        let reply = match reply_to {
            Some(id) => Some(self.reply_ref(id, conversation, step.lookup)?),
            None => None,
        };
        let message = Message {
            body: body.to_string(),
            mentions: mentions.staff,
            mention_ranges: mentions.ranges,
            attachments: files,
            reply_to: reply.map(Box::new),
            client_id: Some(client_id.clone()),
            ..self.new_message(conversation, author, step.now)
        };
        Ok(self.append_message(step, message))
    }

    pub(super) fn forward_message(
        &mut self,
        step: &mut Step<'_>,
        client_id: &ClientMsgId,
        message: MessageId,
        to: ConversationId,
    ) -> Result<Ack, Rejection> {
        let source = self.readable_message(step.author, message, step.lookup)?;
        self.writable(step.author, to)?;
        if source.notice.is_some() {
            return reject(ErrorCode::NotAllowed, "system notices cannot be forwarded");
        }
        // The body and files travel; the mentions do not (forwarding "@bob" mentions nobody).
        let message = Message {
            body: source.body.clone(),
            attachments: source.attachments.clone(),
            forwarded_from: Some(Box::new(ForwardRef {
                conversation: source.conversation,
                message: source.id,
                sender: source.sender.clone(),
            })),
            client_id: Some(client_id.clone()),
            ..self.new_message(to, step.author, step.now)
        };
        Ok(self.append_message(step, message))
    }

    /// The files of a new message: at most [`limits::ATTACHMENTS_PER_MESSAGE_MAX`], each one its
    /// author uploaded.
    pub(super) fn files(
        &self,
        step: &Step<'_>,
        attachments: &[AttachmentId],
    ) -> Result<Vec<Attachment>, Rejection> {
        if attachments.len() > limits::ATTACHMENTS_PER_MESSAGE_MAX {
            let max = limits::ATTACHMENTS_PER_MESSAGE_MAX;
            return reject(
                ErrorCode::InvalidInput,
                format!("at most {max} attachments per message"),
            );
        }
        let by = if step.author.is_system() {
            "the service"
        } else {
            "you"
        };
        attachments
            .iter()
            .map(|a| match step.lookup.attachment(a, step.author)? {
                Some(file) => Ok(file),
                None => reject(ErrorCode::NotFound, format!("no attachment {a} uploaded by {by}")),
            })
            .collect()
    }

    /// Appends a new message; the acknowledgement that names it.
    pub(super) fn append_message(&mut self, step: &mut Step<'_>, message: Message) -> Ack {
        let ack = Ack {
            client_id: message.client_id.clone(),
            conversation: Some(message.conversation),
            message: Some(message.id),
            seq: Some(message.seq),
            ..Ack::default()
        };
        self.push(&mut step.applied, Event::MessageCreated { message });
        ack
    }

    pub(super) fn edit_message(
        &mut self,
        step: &mut Step<'_>,
        message: MessageId,
        body: &str,
        ranges: &[MentionRange],
    ) -> Result<Ack, Rejection> {
        let m = self.own_message(step.author, message, step.lookup)?;
        let (conversation, seq) = (m.conversation, m.seq);
        check_body(body, true)?;
        if body.trim().is_empty() {
            return reject(
                ErrorCode::InvalidInput,
                "an edit needs text; delete the message instead",
            );
        }
        // Ranges are checked against the conversation as it is now (a picker offers who is in
        // it), then kept only where they name someone the message mentioned when sent.
        let c = self.writable(step.author, conversation)?;
        let everyone_was = m.mention_ranges.iter().any(|r| r.staff.is_none());
        let new = mentions_of(c, step.author, body, ranges)?;
        let event = Event::MessageEdited {
            conversation,
            message,
            seq,
            body: body.to_string(),
            mention_ranges: mentions::kept_by_edit(new, &m.mentions, everyone_was),
            edited_at: step.now,
        };
        self.push(&mut step.applied, event);
        Ok(message_ack(conversation, message, seq))
    }

    pub(super) fn delete_message(
        &mut self,
        step: &mut Step<'_>,
        message: MessageId,
    ) -> Result<Ack, Rejection> {
        let m = self.own_message(step.author, message, step.lookup)?;
        let (conversation, seq) = (m.conversation, m.seq);
        if !m.deleted {
            let mentions = m.mentions;
            let event = Event::MessageDeleted {
                conversation,
                message,
                seq,
                sender: step.author.clone(),
                mentions,
                thread: m.thread,
            };
            self.push(&mut step.applied, event);
        }
        Ok(message_ack(conversation, message, seq))
    }
}

/// A new text's mentions: the ranges a client sent, checked, or those found in the text.
pub(super) fn mentions_of(
    c: &crate::model::Conversation,
    author: &crate::ids::StaffId,
    body: &str,
    ranges: &[MentionRange],
) -> Result<mentions::Mentions, Rejection> {
    let to = mentions::Audience {
        participants: &c.participants,
        sender: author,
        everyone: c.everyone_mentions(),
    };
    if ranges.is_empty() {
        return Ok(mentions::found(body, to));
    }
    mentions::checked(body, ranges, to).map_err(|e| {
        let code = match e {
            mentions::MentionError::EveryoneOff => ErrorCode::NotAllowed,
            _ => ErrorCode::InvalidInput,
        };
        Rejection {
            code,
            message: e.to_string(),
        }
    })
}

pub(super) fn message_ack(conversation: ConversationId, message: MessageId, seq: crate::ids::Seq) -> Ack {
    Ack {
        conversation: Some(conversation),
        message: Some(message),
        seq: Some(seq),
        ..Ack::default()
    }
}
