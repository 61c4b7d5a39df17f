//! The engine in a checkpoint (see [`crate::checkpoint`] for the envelope): the offset and id
//! counters, the projection (with the staff keys), the conversations, and the client ids. The
//! staff directory is not in it: names and who is active are the work app's, loaded from the
//! host's staff table, not from the log.

use rustc_hash::FxHashMap;

use super::{ConversationRecord, Engine, pair};
use crate::checkpoint::{self, CheckpointError, Reader, Writer, ensure};
use crate::client_ids::ClientIds;
use crate::ids::{ClientMsgId, ConversationId, Millis, Offset, StaffId};
use crate::model::{Conversation, ConversationKind};
use crate::staff_keys::StaffKey;
use crate::unread::UnreadProjection;

impl Engine {
    /// The whole engine state (but the staff directory) as a checkpoint at its offset.
    pub fn checkpoint(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.next_conversation);
        w.u64(self.next_message);
        self.projection.write(&mut w);
        let mut ids: Vec<&ConversationId> = self.conversations.keys().collect();
        ids.sort_unstable();
        w.len(ids.len());
        for id in ids {
            let r = &self.conversations[id];
            let c = &r.conversation;
            w.u64(c.id.0);
            // A group's `@here` switch rides in its kind's byte (2: a group with it off), so
            // checkpoints of format 3 stay readable.
            w.u8(match c.kind {
                ConversationKind::Direct => 0,
                ConversationKind::Group if c.everyone_off => 2,
                ConversationKind::Group => 1,
            });
            match &c.title {
                Some(t) => {
                    w.u8(1);
                    w.str(t);
                }
                None => w.u8(0),
            }
            let key = |s: &StaffId| self.key(s).expect("every participant has a key").index() as u32;
            let keys: Vec<u32> = c.participants.iter().map(key).collect();
            w.u32s(&keys);
            w.u32(key(&c.created_by));
            w.u64(c.created_at.0);
            w.u64(r.last_activity.0);
            match &r.client_id {
                Some(id) => {
                    w.u8(1);
                    w.str(id.as_str());
                }
                None => w.u8(0),
            }
        }
        self.client_ids.write(&mut w);
        checkpoint::seal(self.offset, &w.buf)
    }

    /// An engine from a checkpoint: refused (never half-loaded) when the bytes are damaged, of
    /// another format, or do not fit together. The caller adds the staff directory.
    pub fn from_checkpoint(bytes: &[u8]) -> Result<Engine, CheckpointError> {
        let (offset, payload) = checkpoint::open(bytes)?;
        let mut r = Reader::new(payload);
        let next_conversation = r.u64()?;
        let next_message = r.u64()?;
        let projection = UnreadProjection::read(&mut r)?;
        ensure(
            *projection.tracking() == crate::unread::Tracking::Everyone,
            "an engine tracks everyone",
        )?;
        let staff = |k: u32| -> Result<StaffId, CheckpointError> {
            ensure((k as usize) < projection.staff_count(), "an unknown staff key")?;
            Ok(projection.staff_id(StaffKey::from_index(k)).clone())
        };
        let n = r.len(8)?;
        let mut conversations = FxHashMap::with_capacity_and_hasher(n, Default::default());
        let mut direct = FxHashMap::default();
        for _ in 0..n {
            let id = ConversationId(r.u64()?);
            let (kind, everyone_off) = match r.u8()? {
                0 => (ConversationKind::Direct, false),
                1 => (ConversationKind::Group, false),
                2 => (ConversationKind::Group, true),
                _ => return Err(CheckpointError::Invalid("a conversation of an unknown kind")),
            };
            let title = match r.bool()? {
                true => Some(r.str()?.to_string()),
                false => None,
            };
            let participants = r.u32s()?.into_iter().map(staff).collect::<Result<Vec<_>, _>>()?;
            let created_by = staff(r.u32()?)?;
            let created_at = Millis(r.u64()?);
            let last_activity = Millis(r.u64()?);
            let client_id = match r.bool()? {
                true => Some(
                    ClientMsgId::new(r.str()?)
                        .map_err(|_| CheckpointError::Invalid("a client id is malformed"))?,
                ),
                false => None,
            };
            ensure(id.0 < next_conversation, "a conversation id past the counter")?;
            ensure(
                projection.head(id).is_some(),
                "a conversation the projection lacks",
            )?;
            if kind == ConversationKind::Direct
                && let [a, b] = participants.as_slice()
            {
                direct.insert(pair(a, b), id);
            }
            let conversation = Conversation {
                id,
                kind,
                title,
                participants,
                created_by,
                created_at,
                everyone_off,
            };
            let record = ConversationRecord {
                conversation,
                last_activity,
                client_id,
            };
            ensure(
                conversations.insert(id, record).is_none(),
                "a conversation appears twice",
            )?;
        }
        let client_ids = ClientIds::read(&mut r)?;
        ensure(r.is_empty(), "bytes after the state")?;
        Ok(Engine {
            staff: FxHashMap::default(),
            conversations,
            direct,
            client_ids,
            next_conversation,
            next_message,
            offset: Offset(offset.0),
            projection,
        })
    }
}
