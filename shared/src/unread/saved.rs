//! The projection in a checkpoint: staff keys, then each conversation's head, indexes and
//! members (sorted, so that equal states write equal bytes). Totals and digest sums are not
//! stored: they are rebuilt from the members, as the projection keeps them.

use rustc_hash::FxHashMap;

use super::{ConversationCounts, Ledger, Member, Place, ThreadCounts, Tracking, UnreadProjection};
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
                totals[m.staff.index()].enter(Place::conversation(id), m);
            }
            for (root, t) in &c.threads {
                for f in &t.followers {
                    ensure(
                        c.members.iter().any(|m| m.staff == f.staff && m.muted == f.muted),
                        "a thread follower is not in its conversation",
                    )?;
                    totals[f.staff.index()].enter(Place::thread(id, *root), f);
                }
            }
            ensure(
                conversations.insert(id, c).is_none(),
                "a conversation appears twice",
            )?;
        }
        let mut p = UnreadProjection {
            tracking,
            staff,
            totals,
            conversations,
            member_of: Vec::new(),
        };
        p.index_members();
        Ok(p)
    }
}

impl ConversationCounts {
    fn write(&self, w: &mut Writer) {
        w.u64(self.head.0);
        w.u64(self.known_from.0);
        self.live.write(w);
        write_indexes(w, [&self.by_sender, &self.mentioning]);
        write_members(w, &self.members);
        let mut roots: Vec<&Seq> = self.threads.keys().collect();
        roots.sort_unstable();
        w.len(roots.len());
        for root in roots {
            let t = &self.threads[root];
            w.u64(root.0);
            w.u64(t.head.0);
            t.replies.write(w);
            write_indexes(w, [&t.by_sender, &t.mentioning]);
            let mut followers: Vec<&Member> = t.followers.iter().collect();
            followers.sort_unstable_by_key(|m| m.staff);
            write_members(w, followers);
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
        let [by_sender, mentioning] = read_indexes(r, staff)?;
        let members = read_members(r, staff)?;
        let mut threads = FxHashMap::default();
        for _ in 0..r.len(16)? {
            let root = Seq(r.u64()?);
            let thread_head = Seq(r.u64()?);
            ensure(
                root <= thread_head && thread_head <= head,
                "a thread's head is out of place",
            )?;
            let replies = SeqIndex::read(r)?;
            ensure(replies.first().is_none(), "a thread's replies are not a list")?;
            let [by_sender, mentioning] = read_indexes(r, staff)?;
            let followers = read_members(r, staff)?;
            let t = ThreadCounts {
                head: thread_head,
                replies,
                by_sender,
                mentioning,
                followers,
            };
            ensure(threads.insert(root, t).is_none(), "a thread appears twice")?;
        }
        Ok(ConversationCounts {
            head,
            known_from,
            live,
            by_sender,
            mentioning,
            members,
            threads,
        })
    }
}

fn write_indexes(w: &mut Writer, maps: [&FxHashMap<StaffKey, SeqIndex>; 2]) {
    for map in maps {
        let mut keys: Vec<&StaffKey> = map.keys().collect();
        keys.sort_unstable();
        w.len(keys.len());
        for k in keys {
            w.u32(k.index() as u32);
            map[k].write(w);
        }
    }
}

fn write_members<'a>(
    w: &mut Writer,
    members: impl IntoIterator<Item = &'a Member, IntoIter: ExactSizeIterator>,
) {
    let members = members.into_iter();
    w.len(members.len());
    for m in members {
        w.u32(m.staff.index() as u32);
        w.u64(m.last_read.0);
        w.u8(u8::from(m.muted));
        w.u32(m.counts.unread);
        w.u32(m.counts.mentions);
        w.u8(u8::from(m.exact));
    }
}

fn staff_key(k: u32, staff: usize) -> Read<StaffKey> {
    ensure((k as usize) < staff, "an unknown staff key")?;
    Ok(StaffKey::from_index(k))
}

fn read_indexes(r: &mut Reader<'_>, staff: usize) -> Read<[FxHashMap<StaffKey, SeqIndex>; 2]> {
    let mut maps = [FxHashMap::default(), FxHashMap::default()];
    for map in &mut maps {
        for _ in 0..r.len(4)? {
            let k = staff_key(r.u32()?, staff)?;
            let idx = SeqIndex::read(r)?;
            ensure(idx.first().is_none(), "a sender's index is not a list")?;
            ensure(map.insert(k, idx).is_none(), "an index appears twice")?;
        }
    }
    Ok(maps)
}

fn read_members(r: &mut Reader<'_>, staff: usize) -> Read<Vec<Member>> {
    let mut members = Vec::new();
    for _ in 0..r.len(22)? {
        let staff = staff_key(r.u32()?, staff)?;
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
    Ok(members)
}
