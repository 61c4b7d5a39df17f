//! What the work app's backend writes through the relay's service API: system notices, and the
//! groups and membership it manages. Its author is the reserved [`StaffId::system`], which is
//! no staff member and in no conversation, so everything it writes counts as unread for every
//! participant, through the same handlers, events and projection as a staff member's write.
//! (A message the backend posts *as* a staff member is that staff member's `send_message`.)

use super::{Engine, Lookup, Outcome, Rejection, Step, Write, check_body, check_title, reject};
use crate::client_ids::IdKind;
use crate::ids::{AttachmentId, ClientMsgId, ConversationId, MessageId, Millis, StaffId};
use crate::model::{Message, Notice};
use crate::protocol::{Ack, ErrorCode};

/// A write by the work app's backend rather than by a staff member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceRequest {
    /// A system notice: a title, a text, and files the service uploaded.
    PostNotice {
        /// Makes a retry store nothing new (and answer the first message).
        client_id: ClientMsgId,
        /// Where.
        conversation: ConversationId,
        /// What it is about.
        title: String,
        /// The text (may be empty).
        body: String,
        /// Files the service uploaded.
        attachments: Vec<AttachmentId>,
    },
    /// A group the backend creates (it is not in it).
    CreateGroup {
        /// Makes a retry create nothing new.
        client_id: ClientMsgId,
        /// Its title.
        title: String,
        /// Who is in it (at least one).
        participants: Vec<StaffId>,
    },
    /// Staff the backend adds to a group.
    AddParticipants {
        /// The group.
        conversation: ConversationId,
        /// Who joins.
        staff: Vec<StaffId>,
    },
    /// Someone the backend removes from a group.
    RemoveParticipant {
        /// The group.
        conversation: ConversationId,
        /// Who leaves.
        staff: StaffId,
    },
    /// A post into the direct conversation of two staff members, opened for them (by the
    /// sender, or the first of the two) if they have none. One write: a post that is refused
    /// opens nothing.
    PostDirect {
        /// The two.
        between: [StaffId; 2],
        /// What to post.
        post: DirectPost,
    },
}

/// What the backend posts into a direct conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectPost {
    /// A message as one of the two, exactly as their own `send_message`.
    Send {
        /// One of the two.
        sender: StaffId,
        /// Makes a retry store nothing new.
        client_id: ClientMsgId,
        /// The text.
        body: String,
        /// Files the sender uploaded.
        attachments: Vec<AttachmentId>,
        /// A message of that conversation it replies to.
        reply_to: Option<MessageId>,
    },
    /// A system notice, as [`ServiceRequest::PostNotice`].
    Notice {
        /// Makes a retry store nothing new.
        client_id: ClientMsgId,
        /// What it is about.
        title: String,
        /// The text (may be empty).
        body: String,
        /// Files the service uploaded.
        attachments: Vec<AttachmentId>,
    },
}

impl Engine {
    /// Validates a service write and, when allowed, appends its events, exactly as
    /// [`execute`](Self::execute) does for a staff member's request.
    pub fn execute_service(
        &mut self,
        request: &ServiceRequest,
        now: Millis,
        lookup: &dyn Lookup,
    ) -> Result<Outcome, Rejection> {
        if let ServiceRequest::PostDirect { between, post } = request {
            return self.post_direct(between, post, now, lookup);
        }
        let author = StaffId::system();
        let (client_id, room_in) = match request {
            ServiceRequest::PostNotice {
                client_id,
                conversation,
                ..
            } => (Some((IdKind::Send, client_id)), Some(*conversation)),
            ServiceRequest::CreateGroup { client_id, .. } => (Some((IdKind::Group, client_id)), None),
            ServiceRequest::AddParticipants { conversation, .. }
            | ServiceRequest::RemoveParticipant { conversation, .. } => (None, Some(*conversation)),
            ServiceRequest::PostDirect { .. } => unreachable!("posted above"),
        };
        let write = Write {
            author: &author,
            client_id,
            room_in,
            now,
            lookup,
        };
        self.write(write, |engine, s| match request {
            ServiceRequest::PostNotice {
                client_id,
                conversation,
                title,
                body,
                attachments,
            } => engine.post_notice(s, client_id, *conversation, title, body, attachments),
            ServiceRequest::CreateGroup {
                client_id,
                title,
                participants,
            } => engine.create_group(s, client_id, title, participants),
            ServiceRequest::AddParticipants { conversation, staff } => {
                engine.add_participants(s, *conversation, staff)
            }
            ServiceRequest::RemoveParticipant { conversation, staff } => {
                engine.remove_participant(s, *conversation, staff)
            }
            ServiceRequest::PostDirect { .. } => unreachable!("posted above"),
        })
    }

    /// A post into the direct conversation of `between`, opened first if needed, once
    /// everything the post checks without a conversation has passed.
    fn post_direct(
        &mut self,
        between: &[StaffId; 2],
        post: &DirectPost,
        now: Millis,
        lookup: &dyn Lookup,
    ) -> Result<Outcome, Rejection> {
        let [a, b] = between;
        if a == b {
            return reject(
                ErrorCode::InvalidInput,
                "a direct conversation needs two different staff",
            );
        }
        for s in between {
            if !self.is_active(s) {
                return reject(ErrorCode::NotFound, format!("no staff member {s}"));
            }
        }
        let (author, client_id) = match post {
            DirectPost::Send {
                sender, client_id, ..
            } => {
                if sender != a && sender != b {
                    return reject(
                        ErrorCode::InvalidInput,
                        "the sender of a direct message is one of its two staff",
                    );
                }
                (sender.clone(), client_id)
            }
            DirectPost::Notice { client_id, .. } => (StaffId::system(), client_id),
        };
        let existing = self.direct_between(a, b);
        let write = Write {
            author: &author,
            client_id: Some((IdKind::Send, client_id)),
            room_in: existing,
            now,
            lookup,
        };
        self.write(write, |engine, s| {
            let conversation = match existing {
                Some(c) => c,
                None => {
                    engine.check_post_anywhere(s, post)?;
                    let (creator, other) = if author == *b { (b, a) } else { (a, b) };
                    let opened = engine.open_direct(s, creator, other)?;
                    opened.conversation.expect("a direct conversation was opened")
                }
            };
            match post {
                DirectPost::Send {
                    client_id,
                    body,
                    attachments,
                    reply_to,
                    ..
                } => {
                    let content = super::messages::Content {
                        body,
                        attachments,
                        ranges: &[],
                    };
                    engine.send_message(s, client_id, conversation, content, *reply_to)
                }
                DirectPost::Notice {
                    client_id,
                    title,
                    body,
                    attachments,
                } => engine.post_notice(s, client_id, conversation, title, body, attachments),
            }
        })
    }

    /// What a post into a conversation that does not exist yet checks: everything but the
    /// conversation (a reply needs a message there, so there is none to reply to).
    fn check_post_anywhere(&self, step: &Step<'_>, post: &DirectPost) -> Result<(), Rejection> {
        match post {
            DirectPost::Send {
                body,
                attachments,
                reply_to,
                ..
            } => {
                check_body(body, !attachments.is_empty())?;
                self.files(step, attachments)?;
                if let Some(id) = reply_to {
                    return reject(
                        ErrorCode::NotFound,
                        format!("no message {id} in this conversation"),
                    );
                }
            }
            DirectPost::Notice {
                title,
                body,
                attachments,
                ..
            } => {
                check_title(title)?;
                check_body(body, true)?;
                self.files(step, attachments)?;
            }
        }
        Ok(())
    }

    fn post_notice(
        &mut self,
        step: &mut Step<'_>,
        client_id: &ClientMsgId,
        conversation: ConversationId,
        title: &str,
        body: &str,
        attachments: &[AttachmentId],
    ) -> Result<Ack, Rejection> {
        self.writable(step.author, conversation)?;
        let title = check_title(title)?;
        // The title says it already: the text may be empty.
        check_body(body, true)?;
        let files = self.files(step, attachments)?;
        let message = Message {
            body: body.to_string(),
            attachments: files,
            notice: Some(Box::new(Notice::System { title })),
            client_id: Some(client_id.clone()),
            ..self.new_message(conversation, step.author, step.now)
        };
        Ok(self.append_message(step, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStorage;
    use crate::model::Staff;

    fn staff(id: &str) -> StaffId {
        StaffId::new(id).unwrap()
    }

    fn engine() -> Engine {
        let mut e = Engine::new();
        for id in ["alice", "bob", "carol"] {
            e.upsert_staff(
                Staff {
                    id: staff(id),
                    name: id.into(),
                },
                true,
            );
        }
        e
    }

    #[test]
    fn the_service_makes_a_group_it_is_not_in_and_its_notices_count_for_everyone() {
        let mut e = engine();
        let lookup = MemoryStorage::default();
        let cid = ClientMsgId::new("g1").unwrap();
        let create = ServiceRequest::CreateGroup {
            client_id: cid.clone(),
            title: "Ward 3".into(),
            participants: vec![staff("alice"), staff("bob")],
        };
        let out = e.execute_service(&create, Millis(1), &lookup).unwrap();
        let group = out.ack.conversation.unwrap();
        assert!(!e.is_participant(&StaffId::system(), group));
        assert_eq!(e.conversation(group).unwrap().participants.len(), 2);
        // The `created` notice is by the service: unread for both.
        assert_eq!(e.projection().counts(&staff("alice"), group).unwrap().unread, 1);
        let notice = ServiceRequest::PostNotice {
            client_id: ClientMsgId::new("n1").unwrap(),
            conversation: group,
            title: "Shift change".into(),
            body: String::new(),
            attachments: Vec::new(),
        };
        e.execute_service(&notice, Millis(2), &lookup).unwrap();
        assert_eq!(e.projection().counts(&staff("bob"), group).unwrap().unread, 2);
        // Membership by the service, without being in the group.
        let add = ServiceRequest::AddParticipants {
            conversation: group,
            staff: vec![staff("carol")],
        };
        e.execute_service(&add, Millis(3), &lookup).unwrap();
        assert!(e.is_participant(&staff("carol"), group));
        let remove = ServiceRequest::RemoveParticipant {
            conversation: group,
            staff: staff("alice"),
        };
        e.execute_service(&remove, Millis(4), &lookup).unwrap();
        assert!(!e.is_participant(&staff("alice"), group));
        // What the service made survives a checkpoint (its author has a key like anyone).
        let restored = Engine::from_checkpoint(&e.checkpoint()).unwrap();
        assert_eq!(restored.checkpoint(), e.checkpoint());
    }

    #[test]
    fn nobody_becomes_the_service_author_and_an_empty_group_is_refused() {
        let mut e = engine();
        e.upsert_staff(
            Staff {
                id: StaffId::system(),
                name: "Mallory".into(),
            },
            true,
        );
        assert!(!e.is_active(&StaffId::system()));
        let create = ServiceRequest::CreateGroup {
            client_id: ClientMsgId::new("g1").unwrap(),
            title: "Nobody".into(),
            participants: Vec::new(),
        };
        let refused = e.execute_service(&create, Millis(1), &MemoryStorage::default());
        assert_eq!(refused.unwrap_err().code, ErrorCode::InvalidInput);
        assert_eq!(e.offset().0, 0);
    }
}
