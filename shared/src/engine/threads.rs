//! Requests about threads: reply in one, read one up to a reply or whole, mark one unread from
//! a reply, follow and unfollow (docs/semantics.md, "Threads").
//!
//! A thread is named by its conversation and its root's seq. It starts with its first reply or
//! its first follow or unfollow; at that moment its root's author follows it from the root on,
//! as if they had followed it since they wrote it (an event says so, so every store counts it
//! without knowing who wrote the root).

use super::messages::{Content, mentions_of};
use super::{Engine, Step, ack_for, check_body, next_watermark_on_read, reject};
use crate::engine::Rejection;
use crate::ids::{ClientMsgId, ConversationId, Seq};
use crate::model::Message;
use crate::protocol::{Ack, ErrorCode, Event};

impl Engine {
    pub(super) fn reply_in_thread(
        &mut self,
        step: &mut Step<'_>,
        client_id: &ClientMsgId,
        conversation: ConversationId,
        root: Seq,
        content: Content<'_>,
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
        let start = self.thread_start(step, conversation, root)?;
        if let Some(root_author) = start {
            self.root_author_follows(step, conversation, root, root_author);
        }
        let message = Message {
            body: body.to_string(),
            mentions: mentions.staff,
            mention_ranges: mentions.ranges,
            attachments: files,
            thread: Some(root),
            client_id: Some(client_id.clone()),
            ..self.new_message(conversation, author, step.now)
        };
        Ok(self.append_message(step, message))
    }

    /// Reads a thread up to `up_to`, or whole when `None`. Reading a thread one does not
    /// follow changes nothing (its counts are 0 for them).
    pub(super) fn mark_thread_read(
        &mut self,
        step: &mut Step<'_>,
        conversation: ConversationId,
        root: Seq,
        up_to: Option<Seq>,
    ) -> Result<Ack, Rejection> {
        self.writable(step.author, conversation)?;
        self.known_thread(conversation, root)?;
        let head = self.projection.thread_head(conversation, root).unwrap_or(root);
        self.read_thread_up_to(step, conversation, root, up_to.unwrap_or(head));
        Ok(ack_for(conversation))
    }

    /// Moves the author's watermark in a thread they follow forward to `up_to` (never back,
    /// never past the thread's newest reply).
    pub(super) fn read_thread_up_to(
        &mut self,
        step: &mut Step<'_>,
        conversation: ConversationId,
        root: Seq,
        up_to: Seq,
    ) {
        let Some(current) = self.projection.thread_last_read(step.author, conversation, root) else {
            return;
        };
        let head = self.projection.thread_head(conversation, root).unwrap_or(root);
        let last_read = next_watermark_on_read(current, up_to, head);
        if last_read != current {
            let event = Event::ThreadRead {
                conversation,
                thread: root,
                staff: step.author.clone(),
                last_read,
            };
            self.push(&mut step.applied, event);
        }
    }

    pub(super) fn mark_thread_unread(
        &mut self,
        step: &mut Step<'_>,
        conversation: ConversationId,
        root: Seq,
        from: Seq,
    ) -> Result<Ack, Rejection> {
        self.writable(step.author, conversation)?;
        let head = self.known_thread(conversation, root)?;
        if from <= root || from > head {
            return reject(
                ErrorCode::NotFound,
                format!("no reply {from} in the thread of message {root}"),
            );
        }
        let last_read = Seq(from.0 - 1);
        if self.projection.thread_last_read(step.author, conversation, root) != Some(last_read) {
            let event = Event::ThreadMarkedUnread {
                conversation,
                thread: root,
                staff: step.author.clone(),
                last_read,
            };
            self.push(&mut step.applied, event);
        }
        Ok(ack_for(conversation))
    }

    pub(super) fn follow_thread(
        &mut self,
        step: &mut Step<'_>,
        conversation: ConversationId,
        root: Seq,
        following: bool,
    ) -> Result<Ack, Rejection> {
        self.writable(step.author, conversation)?;
        let start = self.thread_start(step, conversation, root)?;
        let mut follows = self
            .projection
            .thread_last_read(step.author, conversation, root)
            .is_some();
        match start {
            // The root's author leaving a thread before it started: the one event that says so
            // starts it. Anyone else who does not follow it changes nothing.
            Some(root_author) if !following => follows = &root_author == step.author,
            Some(root_author) => {
                self.root_author_follows(step, conversation, root, root_author);
                follows = self
                    .projection
                    .thread_last_read(step.author, conversation, root)
                    .is_some();
            }
            None => {}
        }
        if follows != following {
            let head = self.projection.thread_head(conversation, root).unwrap_or(root);
            let event = Event::ThreadFollowed {
                conversation,
                thread: root,
                staff: step.author.clone(),
                following,
                last_read: head,
            };
            self.push(&mut step.applied, event);
        }
        Ok(ack_for(conversation))
    }

    /// The head of a thread that has started; `not_found` otherwise.
    fn known_thread(&self, conversation: ConversationId, root: Seq) -> Result<Seq, Rejection> {
        match self.projection.thread_head(conversation, root) {
            Some(head) => Ok(head),
            None => reject(
                ErrorCode::NotFound,
                format!("no thread under message {root} in this conversation"),
            ),
        }
    }

    /// A thread starts: its root's author follows it from the root on, when they are in the
    /// conversation.
    fn root_author_follows(
        &mut self,
        step: &mut Step<'_>,
        conversation: ConversationId,
        root: Seq,
        author: crate::ids::StaffId,
    ) {
        if self.is_participant(&author, conversation) {
            let event = Event::ThreadFollowed {
                conversation,
                thread: root,
                staff: author,
                following: true,
                last_read: root,
            };
            self.push(&mut step.applied, event);
        }
    }

    /// Checks that `root` can hold a thread; when the thread has not started yet, its root's
    /// author. A started thread takes replies even after its root was deleted; a new one
    /// starts only under a live, top-level message that is not a notice.
    fn thread_start(
        &self,
        step: &Step<'_>,
        conversation: ConversationId,
        root: Seq,
    ) -> Result<Option<crate::ids::StaffId>, Rejection> {
        if self.projection.thread_head(conversation, root).is_some() {
            return Ok(None);
        }
        let no_root = || {
            reject(
                ErrorCode::NotFound,
                format!("no message {root} to start a thread under in this conversation"),
            )
        };
        let Some(m) = step.lookup.message_at(conversation, root)? else {
            return no_root();
        };
        if m.deleted {
            return no_root();
        }
        if m.thread.is_some() {
            return reject(
                ErrorCode::NotAllowed,
                "threads do not nest: reply to the thread's root",
            );
        }
        if m.notice.is_some() {
            return reject(ErrorCode::NotAllowed, "system notices do not take replies");
        }
        Ok(Some(m.sender))
    }
}
