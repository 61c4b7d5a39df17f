//! The projection in a checkpoint: staff keys, then each conversation's head, indexes and
//! members (sorted, so that equal states write equal bytes). Totals and digest sums are not
//! stored: they are rebuilt from the members, as the projection keeps them.

use rustc_hash::FxHashMap;

use super::{ConversationCounts, Ledger, Member, Tracking, UnreadProjection};
use crate::checkpoint::{CheckpointError, Reader, Writer, ensure};
use crate::ids::{ConversationId, Seq, StaffId};
use crate::model::Counts;
use crate::seq_index::SeqIndex;
use crate::staff_keys::{StaffKey, StaffKeys};

type Read<T> = Result<T, CheckpointError>;

impl UnreadProjection {
    /// Writes the whole projection into a checkpoint.
    pub(crate) fn write(&self, w: &mut Writer) {
        match &self.tracking {
            Tracking::Everyone => w.u8(0),
            Tracking::Only(me) => {
                w.u8(1);
                w.str(me.as_str());
            }
        }
        self.staff.write(w);
        let mut ids: Vec<&ConversationId> = self.conversations.keys().collect();
        ids.sort_unstable();
        w.len(ids.len());
        for id in ids {
            w.u64(id.0);
            self.conversations[id].write(w);
        }
    }

    /// Reads what [`write`](Self::write) wrote, checking that it fits together.
    pub(crate) fn read(r: &mut Reader<'_>) -> Read<Self> {
        let tracking = match r.u8()? {
            0 => Tracking::Everyone,
            1 => Tracking::Only(
                StaffId::new(r.str()?).map_err(|_| CheckpointError::Invalid("a staff id is malformed"))?,
            ),
            _ => return Err(CheckpointError::Invalid("unknown tracking")),
        };
        let staff = StaffKeys::read(r)?;
        let mut totals = vec![Ledger::default(); staff.len()];
        let n = r.len(8)?;
        let mut conversations = FxHashMap::with_capacity_and_hasher(n, Default::default());
        for _ in 0..n {
            let id = ConversationId(r.u64()?);
            let c = ConversationCounts::read(r, staff.len())?;
            for m in &c.members {
                totals[m.staff.index()].enter(id, m);
            }
            ensure(
                conversations.insert(id, c).is_none(),
                "a conversation appears twice",
            )?;
        }
        Ok(UnreadProjection {
            tracking,
            staff,
            totals,
            conversations,
        })
    }
}

impl ConversationCounts {
    fn write(&self, w: &mut Writer) {
        w.u64(self.head.0);
        w.u64(self.known_from.0);
        self.live.write(w);
        for map in [&self.by_sender, &self.mentioning] {
            let mut keys: Vec<&StaffKey> = map.keys().collect();
            keys.sort_unstable();
            w.len(keys.len());
            for k in keys {
                w.u32(k.index() as u32);
                map[k].write(w);
            }
        }
        w.len(self.members.len());
        for m in &self.members {
            w.u32(m.staff.index() as u32);
            w.u64(m.last_read.0);
            w.u8(u8::from(m.muted));
            w.u32(m.counts.unread);
            w.u32(m.counts.mentions);
            w.u8(u8::from(m.exact));
        }
    }

    fn read(r: &mut Reader<'_>, staff: usize) -> Read<Self> {
        let head = Seq(r.u64()?);
        let known_from = Seq(r.u64()?);
        let live = SeqIndex::read(r)?;
        ensure(
            live.first() == Some(known_from) && known_from.0 + live.len() as u64 == head.0 + 1,
            "a conversation's messages do not match its head",
        )?;
        let key = |k: u32| {
            ensure((k as usize) < staff, "an unknown staff key")?;
            Ok(StaffKey::from_index(k))
        };
        let mut maps = [FxHashMap::default(), FxHashMap::default()];
        for map in &mut maps {
            for _ in 0..r.len(4)? {
                let k = key(r.u32()?)?;
                let idx = SeqIndex::read(r)?;
                ensure(idx.first().is_none(), "a sender's index is not a list")?;
                ensure(map.insert(k, idx).is_none(), "an index appears twice")?;
            }
        }
        let [by_sender, mentioning] = maps;
        let mut members = Vec::new();
        for _ in 0..r.len(22)? {
            let staff = key(r.u32()?)?;
            let last_read = Seq(r.u64()?);
            let muted = r.bool()?;
            let counts = Counts {
                unread: r.u32()?,
                mentions: r.u32()?,
            };
            let exact = r.bool()?;
            ensure(
                members.iter().all(|m: &Member| m.staff != staff),
                "a member appears twice",
            )?;
            members.push(Member {
                staff,
                last_read,
                muted,
                counts,
                exact,
            });
        }
        Ok(ConversationCounts {
            head,
            known_from,
            live,
            by_sender,
            mentioning,
            members,
        })
    }
}
