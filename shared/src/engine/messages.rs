//! Requests that write messages: send (with attachments and a reply), forward, edit, delete.

use super::{Engine, Step, check_body, reject};
use crate::engine::Rejection;
use crate::ids::{AttachmentId, ClientMsgId, ConversationId, MessageId};
use crate::limits;
use crate::model::{Attachment, ForwardRef, Message, mentions_in};
use crate::protocol::{Ack, ErrorCode, Event};

impl Engine {
    pub(super) fn send_message(
        &mut self,
        step: &mut Step<'_>,
        client_id: &ClientMsgId,
        conversation: ConversationId,
        body: &str,
        attachments: &[AttachmentId],
        reply_to: Option<MessageId>,
    ) -> Result<Ack, Rejection> {
        let author = step.author;
        let c = self.writable(author, conversation)?;
        check_body(body, !attachments.is_empty())?;
        let files = self.files(step, attachments)?;
        let reply = match reply_to {
            Some(id) => Some(self.reply_ref(id, conversation, step.lookup)?),
            None => None,
        };
        let mentions = mentions_in(body, &c.participants, author);
        let message = Message {
            body: body.to_string(),
            mentions,
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
        let event = Event::MessageEdited {
            conversation,
            message,
            seq,
            body: body.to_string(),
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

fn message_ack(conversation: ConversationId, message: MessageId, seq: crate::ids::Seq) -> Ack {
    Ack {
        conversation: Some(conversation),
        message: Some(message),
        seq: Some(seq),
        ..Ack::default()
    }
}
