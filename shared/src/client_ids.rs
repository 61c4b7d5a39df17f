//! Client-made ids: which write each one made, so that a retried write is stored once and gets
//! its first acknowledgement again.
//!
//! An id is scoped to its author and to the kind of write (a send, a forward and a group create
//! may reuse one another's ids without meeting). Ids are remembered for
//! [`limits::CLIENT_ID_RETENTION_MS`] after their write and at most
//! [`limits::CLIENT_IDS_PER_STAFF`] per author ([`limits::CLIENT_IDS_OF_SERVICE`] for the
//! service's notices), so memory stays bounded whatever clients send.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::checkpoint::{CheckpointError, Reader, Writer};
use crate::ids::{ClientMsgId, ConversationId, MessageId, Millis, Offset, Seq, StaffId};
use crate::limits;

/// The writes that carry a client-made id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// `send_message`.
    Send,
    /// `forward_message`.
    Forward,
    /// `create_group`.
    Group,
}

/// What a write with a client-made id created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// A message, and where it lives.
    Message(MessageId, ConversationId, Seq),
    /// A conversation.
    Conversation(ConversationId),
}

/// A remembered write: what it created and the offset its acknowledgement carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remembered {
    /// What it created.
    pub created: Created,
    /// The offset of its first acknowledgement.
    pub ack_offset: Offset,
}

/// A remembered id, as the 64-bit [`key`] of (author, kind, id): 8 bytes rather than two
/// strings, so that a relay remembering a million ids holds tens of megabytes, not hundreds.
/// Two different ids may share a key (about one chance in 2^54 per write at the per-author
/// bound): a hit is therefore only a candidate, which the engine confirms against what the
/// remembered write stored (the message's or the group's own client id) before answering it
/// as a retry.
pub type Key = u64;

/// The key of an author's client id for a kind of write: [`crate::checkpoint::checksum`] of
/// `author 0xff kind 0xff id`. Fixed: checkpoints store keys.
pub fn key(author: &StaffId, kind: IdKind, id: &ClientMsgId) -> Key {
    let mut bytes = Vec::with_capacity(author.as_str().len() + id.as_str().len() + 3);
    bytes.extend_from_slice(author.as_str().as_bytes());
    bytes.push(0xff);
    bytes.push(kind_byte(kind));
    bytes.push(0xff);
    bytes.extend_from_slice(id.as_str().as_bytes());
    crate::checkpoint::checksum(&bytes)
}

fn kind_byte(kind: IdKind) -> u8 {
    match kind {
        IdKind::Send => 0,
        IdKind::Forward => 1,
        IdKind::Group => 2,
    }
}

/// The remembered client-made ids of every author.
#[derive(Clone, Debug, Default)]
pub struct ClientIds {
    by_key: FxHashMap<Key, Remembered>,
    /// Each author's ids in the order written, to forget the oldest.
    order: FxHashMap<StaffId, VecDeque<(Millis, Key)>>,
}

impl ClientIds {
    /// What `author` may have created with `id` for this kind of write, if it is still
    /// remembered: a candidate to confirm (see [`Key`]).
    pub fn get(&self, author: &StaffId, kind: IdKind, id: &ClientMsgId) -> Option<Remembered> {
        self.by_key.get(&key(author, kind, id)).copied()
    }

    /// Remembers a write made at `at`, forgetting what is too old or too many.
    pub fn remember(&mut self, author: &StaffId, kind: IdKind, id: &ClientMsgId, at: Millis, r: Remembered) {
        self.remember_key(author, key(author, kind, id), at, r);
    }

    fn remember_key(&mut self, author: &StaffId, key: Key, at: Millis, r: Remembered) {
        if self.by_key.insert(key, r).is_some() {
            return;
        }
        let order = match self.order.get_mut(author) {
            Some(o) => o,
            None => self.order.entry(author.clone()).or_default(),
        };
        order.push_back((at, key));
        let most = if author.is_system() {
            limits::CLIENT_IDS_OF_SERVICE
        } else {
            limits::CLIENT_IDS_PER_STAFF
        };
        while let Some((oldest, _)) = order.front() {
            let expired = oldest.0.saturating_add(limits::CLIENT_ID_RETENTION_MS) < at.0;
            if !expired && order.len() <= most {
                break;
            }
            let (_, key) = order.pop_front().expect("front exists");
            self.by_key.remove(&key);
        }
    }

    /// Writes every remembered id into a checkpoint: author by author (sorted), oldest first.
    pub(crate) fn write(&self, w: &mut Writer) {
        let mut authors: Vec<_> = self.order.iter().collect();
        authors.sort_unstable_by(|a, b| a.0.cmp(b.0));
        w.len(authors.len());
        for (author, order) in authors {
            w.str(author.as_str());
            w.len(order.len());
            for (at, key) in order {
                let r = self.by_key[key];
                w.u64(at.0);
                w.u64(*key);
                match r.created {
                    Created::Message(m, c, s) => {
                        w.u8(0);
                        w.u64(m.0);
                        w.u64(c.0);
                        w.u64(s.0);
                    }
                    Created::Conversation(c) => {
                        w.u8(1);
                        w.u64(c.0);
                    }
                }
                w.u64(r.ack_offset.0);
            }
        }
    }

    /// Reads what [`write`](Self::write) wrote (remembering in the same order forgets the same).
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, CheckpointError> {
        let invalid = CheckpointError::Invalid;
        let mut ids = ClientIds::default();
        for _ in 0..r.len(16)? {
            let author = StaffId::new(r.str()?).map_err(|_| invalid("a staff id is malformed"))?;
            for _ in 0..r.len(33)? {
                let at = Millis(r.u64()?);
                let key = r.u64()?;
                let created = match r.u8()? {
                    0 => Created::Message(MessageId(r.u64()?), ConversationId(r.u64()?), Seq(r.u64()?)),
                    1 => Created::Conversation(ConversationId(r.u64()?)),
                    _ => return Err(invalid("a client id created an unknown thing")),
                };
                let ack_offset = Offset(r.u64()?);
                ids.remember_key(&author, key, at, Remembered { created, ack_offset });
            }
        }
        Ok(ids)
    }

    /// How many ids are remembered in all.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(i: usize) -> ClientMsgId {
        ClientMsgId::new(format!("c{i}")).unwrap()
    }

    fn message(i: u64) -> Remembered {
        Remembered {
            created: Created::Message(MessageId(i), ConversationId(1), Seq(i)),
            ack_offset: Offset(i),
        }
    }

    #[test]
    fn kinds_and_authors_do_not_share_ids() {
        let (alice, bob) = (StaffId::new("alice").unwrap(), StaffId::new("bob").unwrap());
        let mut ids = ClientIds::default();
        ids.remember(&alice, IdKind::Send, &cid(1), Millis(0), message(1));
        assert_eq!(ids.get(&alice, IdKind::Send, &cid(1)), Some(message(1)));
        assert_eq!(ids.get(&alice, IdKind::Group, &cid(1)), None);
        assert_eq!(ids.get(&alice, IdKind::Forward, &cid(1)), None);
        assert_eq!(ids.get(&bob, IdKind::Send, &cid(1)), None);
    }

    #[test]
    fn ids_are_forgotten_after_the_retention_time_or_past_the_count() {
        let alice = StaffId::new("alice").unwrap();
        let mut ids = ClientIds::default();
        ids.remember(&alice, IdKind::Send, &cid(0), Millis(0), message(0));
        let later = Millis(limits::CLIENT_ID_RETENTION_MS);
        ids.remember(&alice, IdKind::Send, &cid(1), later, message(1));
        assert!(
            ids.get(&alice, IdKind::Send, &cid(0)).is_some(),
            "kept for the whole window"
        );
        ids.remember(&alice, IdKind::Send, &cid(2), Millis(later.0 + 1), message(2));
        assert!(
            ids.get(&alice, IdKind::Send, &cid(0)).is_none(),
            "forgotten after it"
        );
        for i in 3..limits::CLIENT_IDS_PER_STAFF + 10 {
            ids.remember(
                &alice,
                IdKind::Send,
                &cid(i),
                Millis(later.0 + 1),
                message(i as u64),
            );
        }
        assert_eq!(ids.len(), limits::CLIENT_IDS_PER_STAFF);
        assert!(ids.get(&alice, IdKind::Send, &cid(5)).is_none());
        assert!(
            ids.get(&alice, IdKind::Send, &cid(limits::CLIENT_IDS_PER_STAFF + 9))
                .is_some()
        );
    }

    #[test]
    fn the_service_remembers_many_more_ids_than_a_person() {
        let system = StaffId::system();
        let mut ids = ClientIds::default();
        let n = limits::CLIENT_IDS_OF_SERVICE;
        for i in 0..n + 3 {
            ids.remember(&system, IdKind::Send, &cid(i), Millis(1), message(i as u64));
        }
        assert_eq!(ids.len(), n);
        assert!(ids.get(&system, IdKind::Send, &cid(2)).is_none());
        assert!(ids.get(&system, IdKind::Send, &cid(3)).is_some());
        assert!(ids.get(&system, IdKind::Send, &cid(n + 2)).is_some());
    }
}
