//! An in-memory host for the [`Engine`]: what the relay keeps in SQLite, kept in maps. Tests,
//! benchmarks and the load generator's oracle runs use it; the relay does not.

use std::collections::BTreeMap;

use crate::engine::{Engine, Lookup, LookupFailed, Outcome, Rejection};
use crate::ids::{AttachmentId, ConversationId, MessageId, Millis, Seq, StaffId};
use crate::model::{Attachment, Message, Staff};
use crate::protocol::{Ack, ErrorCode, Event, Request, Route, Snapshot};

/// Stored messages and attachments, by id.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    messages: BTreeMap<(ConversationId, Seq), Message>,
    ids: BTreeMap<MessageId, (ConversationId, Seq)>,
    attachments: BTreeMap<(AttachmentId, StaffId), Attachment>,
}

impl MemoryStorage {
    /// Keeps what an event changes about stored messages.
    pub fn store(&mut self, event: &Event) {
        match event {
            Event::MessageCreated { message } => {
                self.ids.insert(message.id, (message.conversation, message.seq));
                self.messages
                    .insert((message.conversation, message.seq), message.clone());
            }
            Event::MessageDeleted {
                conversation,
                message,
                seq,
                ..
            } => {
                if let Some(m) = self.messages.get_mut(&(*conversation, *seq)) {
                    event.change_message(m);
                }
                let later = (*conversation, Seq(seq.0 + 1))..=(*conversation, Seq(u64::MAX));
                for (_, m) in self.messages.range_mut(later) {
                    m.redact_quote_of(*message);
                }
            }
            _ => {
                if let Some(key) = event.changed_message()
                    && let Some(m) = self.messages.get_mut(&key)
                {
                    event.change_message(m);
                }
            }
        }
    }

    /// Records an upload.
    pub fn upload(&mut self, uploader: &StaffId, attachment: Attachment) {
        self.attachments
            .insert((attachment.id.clone(), uploader.clone()), attachment);
    }

    /// Messages `from..=to` of a conversation.
    pub fn range(&self, conversation: ConversationId, from: Seq, to: Seq) -> Vec<Message> {
        self.messages
            .range((conversation, from)..=(conversation, to))
            .map(|(_, m)| m.clone())
            .collect()
    }
}

impl Lookup for MemoryStorage {
    fn message(&self, id: MessageId) -> Result<Option<Message>, LookupFailed> {
        Ok(self.ids.get(&id).and_then(|k| self.messages.get(k)).cloned())
    }

    fn message_at(&self, conversation: ConversationId, seq: Seq) -> Result<Option<Message>, LookupFailed> {
        Ok(self.messages.get(&(conversation, seq)).cloned())
    }

    fn attachment(&self, id: &AttachmentId, uploader: &StaffId) -> Result<Option<Attachment>, LookupFailed> {
        Ok(self.attachments.get(&(id.clone(), uploader.clone())).cloned())
    }
}

/// An engine with its storage in memory.
#[derive(Clone, Debug, Default)]
pub struct MemoryHost {
    /// The engine.
    pub engine: Engine,
    /// Its storage.
    pub storage: MemoryStorage,
}

impl MemoryHost {
    /// A host with these staff, all active.
    pub fn with_staff(staff: &[Staff]) -> Self {
        let mut host = MemoryHost::default();
        for s in staff {
            host.engine.upsert_staff(s.clone(), true);
        }
        host
    }

    /// Routes a request as the relay's session does (`Request::route`): a write runs in the
    /// engine and what it wrote is stored; a ping or a divergence report is acknowledged at
    /// the current offset; `hello` and what only a session handles are refused.
    pub fn execute(
        &mut self,
        author: &StaffId,
        request: &Request,
        now: Millis,
    ) -> Result<Outcome, Rejection> {
        let request = match request.route() {
            Route::Log(request) => request,
            Route::Offset | Route::Snapshot => {
                return Ok(Outcome {
                    applied: Vec::new(),
                    ack: Ack {
                        offset: self.engine.offset(),
                        ..Ack::default()
                    },
                });
            }
            Route::Hello => {
                return Err(Rejection {
                    code: ErrorCode::HelloRequired,
                    message: "hello is only the first frame".into(),
                });
            }
            Route::Visibility(_) | Route::Typing(_) | Route::Preferences { .. } | Route::Quiet(_) => {
                return Err(Rejection {
                    code: ErrorCode::NotAllowed,
                    message: "typing, visibility and preferences are the relay's, not the log's".into(),
                });
            }
        };
        let outcome = self.engine.execute(author, request, now, &self.storage)?;
        for a in &outcome.applied {
            self.storage.store(&a.event.event);
        }
        Ok(outcome)
    }

    /// Executes a write of the work app's backend and stores what it wrote.
    pub fn execute_service(
        &mut self,
        request: &crate::engine::ServiceRequest,
        now: Millis,
    ) -> Result<Outcome, Rejection> {
        let outcome = self.engine.execute_service(request, now, &self.storage)?;
        for a in &outcome.applied {
            self.storage.store(&a.event.event);
        }
        Ok(outcome)
    }

    /// A fresh snapshot for a staff member.
    pub fn snapshot(&self, staff: &StaffId) -> Snapshot {
        self.engine.snapshot(staff, &mut |c, from, to, take| {
            crate::engine::read_slice_newest_first(&self.storage.range(c, from, to), take);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ClientMsgId;
    use crate::protocol::ErrorCode;

    /// Storage that cannot be read.
    struct Unreadable;

    fn log(r: &Request) -> crate::protocol::LogRequest<'_> {
        match r.route() {
            Route::Log(r) => r,
            other => panic!("{other:?}"),
        }
    }

    impl Lookup for Unreadable {
        fn message(&self, _: MessageId) -> Result<Option<Message>, LookupFailed> {
            Err(LookupFailed("disk I/O error".into()))
        }
        fn message_at(&self, _: ConversationId, _: Seq) -> Result<Option<Message>, LookupFailed> {
            Err(LookupFailed("disk I/O error".into()))
        }
        fn attachment(&self, _: &AttachmentId, _: &StaffId) -> Result<Option<Attachment>, LookupFailed> {
            Err(LookupFailed("disk I/O error".into()))
        }
    }

    /// A retry whose first attempt cannot be confirmed because storage fails is refused as
    /// `unavailable`, and stores nothing: running it again could store it twice. So is a reply
    /// whose quote cannot be read (rather than "no such message").
    #[test]
    fn a_lookup_that_fails_refuses_the_write_and_changes_nothing() {
        let people: Vec<Staff> = ["alice", "bob"]
            .iter()
            .map(|id| Staff {
                id: StaffId::new(*id).unwrap(),
                name: (*id).into(),
            })
            .collect();
        let (alice, bob) = (&people[0].id, &people[1].id);
        let mut host = MemoryHost::with_staff(&people);
        let created = host
            .execute(alice, &Request::CreateDirect { staff: bob.clone() }, Millis(1))
            .unwrap();
        let conversation = created.ack.conversation.unwrap();
        let send = Request::SendMessage {
            mention_ranges: Vec::new(),
            client_id: ClientMsgId::new("once").unwrap(),
            conversation,
            body: "hi".into(),
            attachments: Vec::new(),
            reply_to: None,
        };
        let first = host.execute(alice, &send, Millis(2)).unwrap();

        let at = host.engine.offset();
        let retried = host
            .engine
            .execute(alice, log(&send), Millis(3), &Unreadable)
            .unwrap_err();
        assert_eq!(retried.code, ErrorCode::Unavailable, "{retried:?}");
        assert_eq!(host.engine.offset(), at, "nothing appended");
        let reply = Request::SendMessage {
            mention_ranges: Vec::new(),
            client_id: ClientMsgId::new("reply").unwrap(),
            conversation,
            body: "re".into(),
            attachments: Vec::new(),
            reply_to: first.ack.message,
        };
        let refused = host
            .engine
            .execute(bob, log(&reply), Millis(4), &Unreadable)
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::Unavailable);
        assert_eq!(host.engine.offset(), at);
        // Readable again: the retry is recognised, and stores nothing.
        let again = host.execute(alice, &send, Millis(5)).unwrap();
        assert!(again.applied.is_empty());
        assert_eq!(again.ack.message, first.ack.message);
    }
}
