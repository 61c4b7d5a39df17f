//! What a snapshot carries of each conversation's messages: a window (the newest, and the
//! unread range up to a cap), trimmed to byte budgets so that a snapshot's size depends on how
//! many conversations a person is in, never on what was written in them.
//!
//! A snapshot is what every connection starts with; before these budgets, 22 maximal messages
//! in a group made every member's snapshot larger than a connection's queue, and nobody in it
//! could connect. Now each conversation carries at most [`limits::SNAPSHOT_CONVERSATION_BYTES`]
//! of messages (always its newest, if the whole snapshot has room) and a snapshot at most
//! [`limits::SNAPSHOT_MESSAGE_BYTES`]; a widget pages the rest through history. Counts are
//! unaffected: they come from the relay's projection, and a store counts exactly over what it
//! has loaded, taking the relay's checkpoint for the rest.

use crate::ids::{ConversationId, Seq};
use crate::limits;
use crate::model::Message;
use crate::protocol::{ConversationState, Snapshot};

/// How many bytes of messages (as JSON) a snapshot may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotBudget {
    /// Per conversation (its newest message is carried whatever its size, if `total` allows).
    pub per_conversation: usize,
    /// In the whole snapshot.
    pub total: usize,
}

impl Default for SnapshotBudget {
    fn default() -> Self {
        SnapshotBudget {
            per_conversation: limits::SNAPSHOT_CONVERSATION_BYTES,
            total: limits::SNAPSHOT_MESSAGE_BYTES,
        }
    }
}

/// Reads stored messages for [`fill_messages`]: `read(conversation, from, to, take)` calls
/// `take(message, encoded_len)` for the messages `from..=to`, **newest first**, until it returns
/// false (so a storage reads no more rows than fit).
pub type ReadNewestFirst<'a> =
    dyn FnMut(ConversationId, Seq, Seq, &mut dyn FnMut(Message, usize) -> bool) + 'a;

/// Fills each conversation of a snapshot with the messages it carries: the window
/// [`snapshot_window`] gives, trimmed to `budget`, contiguous up to the head. Conversations with
/// unread messages come first, then the most recently active: first each one's newest message
/// (so every row of the list has its preview), then older ones while they fit.
pub fn fill_messages(snapshot: &mut Snapshot, budget: SnapshotBudget, read: &mut ReadNewestFirst<'_>) {
    let mut order: Vec<usize> = (0..snapshot.conversations.len()).collect();
    order.sort_by_key(|&i| {
        let c = &snapshot.conversations[i];
        (
            c.counts.unread == 0,
            std::cmp::Reverse(c.last_activity),
            c.conversation.id,
        )
    });
    let mut left = budget.total;
    let mut used = vec![0usize; snapshot.conversations.len()];
    // The newest message of each, while the snapshot has room.
    for &i in &order {
        let c = &mut snapshot.conversations[i];
        if c.head.0 == 0 {
            continue;
        }
        let mut newest = None;
        read(c.conversation.id, c.head, c.head, &mut |m, len| {
            if len <= left {
                newest = Some((m, len));
            }
            false
        });
        match newest {
            Some((m, len)) => {
                left -= len;
                used[i] = len;
                c.messages = vec![m];
            }
            // Nothing more fits anywhere that a newest message does not.
            None => c.messages.clear(),
        }
    }
    // Then older ones, contiguously, while they fit this conversation's budget and the total.
    for &i in &order {
        let c = &mut snapshot.conversations[i];
        let from = snapshot_window(c.head, c.last_read);
        if c.messages.is_empty() || from >= c.head || left == 0 {
            continue;
        }
        let mut older = Vec::new();
        let room = budget.per_conversation.saturating_sub(used[i]);
        let mut taken = 0;
        read(c.conversation.id, from, Seq(c.head.0 - 1), &mut |m, len| {
            if taken + len > room || len > left {
                return false;
            }
            taken += len;
            left -= len;
            older.push(m);
            true
        });
        if !older.is_empty() {
            older.reverse();
            older.append(&mut c.messages);
            c.messages = older;
        }
    }
}

/// The first seq of the messages a snapshot carries for a conversation (before its budget):
/// at least the newest [`limits::SNAPSHOT_RECENT_MESSAGES`], and the whole unread range when
/// it fits in [`limits::SNAPSHOT_MAX_MESSAGES`].
pub fn snapshot_window(head: Seq, last_read: Seq) -> Seq {
    if head.0 == 0 {
        return Seq(1);
    }
    let recent = head.0.saturating_sub(limits::SNAPSHOT_RECENT_MESSAGES - 1).max(1);
    let cap = head.0.saturating_sub(limits::SNAPSHOT_MAX_MESSAGES - 1).max(1);
    Seq(recent.min(last_read.0 + 1).max(cap))
}

/// The bytes of a message as JSON (what it adds to a frame), without building the string.
pub fn encoded_len(message: &Message) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, message).expect("messages always serialize");
    count.0
}

/// A conversation's messages as [`fill_messages`] reads them, from a slice in seq order (for
/// hosts that hold messages in memory).
pub fn read_slice_newest_first(messages: &[Message], take: &mut dyn FnMut(Message, usize) -> bool) {
    for m in messages.iter().rev() {
        if !take(m.clone(), encoded_len(m)) {
            return;
        }
    }
}

/// Whether a conversation's carried messages are all of its window (the budget cut none).
pub fn carries_whole_window(c: &ConversationState) -> bool {
    let from = snapshot_window(c.head, c.last_read);
    c.head.0 == 0 || c.messages.first().is_some_and(|m| m.seq <= from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{MessageId, Millis, Offset, StaffId};
    use crate::model::{Conversation, ConversationKind, Counts, Totals};

    #[test]
    fn snapshot_window_covers_recent_and_unread_up_to_the_cap() {
        assert_eq!(snapshot_window(Seq(0), Seq(0)), Seq(1));
        assert_eq!(snapshot_window(Seq(10), Seq(10)), Seq(1));
        assert_eq!(snapshot_window(Seq(100), Seq(100)), Seq(51));
        assert_eq!(snapshot_window(Seq(100), Seq(20)), Seq(21));
        assert_eq!(snapshot_window(Seq(1000), Seq(0)), Seq(801));
    }

    fn message(c: u64, seq: u64, body_len: usize) -> Message {
        Message {
            reactions: Vec::new(),
            mention_ranges: Vec::new(),
            thread: None,
            id: MessageId(c * 10_000 + seq),
            conversation: ConversationId(c),
            seq: Seq(seq),
            sender: StaffId::new("alice").unwrap(),
            body: "x".repeat(body_len),
            mentions: Vec::new(),
            attachments: Vec::new(),
            reply_to: None,
            forwarded_from: None,
            notice: None,
            client_id: None,
            created_at: Millis(seq),
            edited_at: None,
            deleted: false,
        }
    }

    /// Conversations 1..=n, each with `heads[i]` messages of `body_len` bytes; unread in those
    /// listed.
    fn snapshot(heads: &[u64], unread: &[u64]) -> Snapshot {
        let conversations = heads
            .iter()
            .enumerate()
            .map(|(i, &head)| {
                let id = i as u64 + 1;
                let n = if unread.contains(&id) {
                    head.min(30) as u32
                } else {
                    0
                };
                ConversationState {
                    threads: Vec::new(),
                    conversation: Conversation {
                        everyone_off: false,
                        id: ConversationId(id),
                        kind: ConversationKind::Group,
                        title: Some(format!("c{id}")),
                        participants: vec![StaffId::new("alice").unwrap()],
                        created_by: StaffId::new("alice").unwrap(),
                        created_at: Millis(0),
                    },
                    head: Seq(head),
                    last_read: Seq(head - u64::from(n)),
                    muted: false,
                    counts: Counts {
                        unread: n,
                        mentions: 0,
                    },
                    last_activity: Millis(id),
                    messages: Vec::new(),
                }
            })
            .collect();
        Snapshot {
            offset: Offset(1),
            me: StaffId::new("bob").unwrap(),
            staff: Vec::new(),
            conversations,
            total: Totals::default(),
            protocols: None,
        }
    }

    fn fill(s: &mut Snapshot, budget: SnapshotBudget, body_len: usize) {
        fill_messages(s, budget, &mut |c, from, to, take| {
            let all: Vec<Message> = (from.0..=to.0).map(|q| message(c.0, q, body_len)).collect();
            read_slice_newest_first(&all, take);
        });
    }

    #[test]
    fn a_snapshot_carries_its_windows_when_they_fit() {
        let mut s = snapshot(&[10, 120], &[]);
        fill(&mut s, SnapshotBudget::default(), 20);
        assert_eq!(s.conversations[0].messages.len(), 10);
        assert_eq!(s.conversations[1].messages.len(), 50);
        assert!(s.conversations.iter().all(carries_whole_window));
    }

    #[test]
    fn big_messages_are_cut_to_the_budgets_newest_first_and_contiguous() {
        // The largest of these messages (ids and seqs of the same width).
        let len = encoded_len(&message(4, 300, 8000));
        let budget = SnapshotBudget {
            per_conversation: 3 * len + 10,
            total: 7 * len + 10,
        };
        let mut s = snapshot(&[300, 300, 300, 300], &[]);
        fill(&mut s, budget, 8000);
        let carried: Vec<usize> = s.conversations.iter().map(|c| c.messages.len()).collect();
        // Every conversation gets its newest (4), then the most recent ones get older ones.
        assert_eq!(carried, [1, 1, 2, 3]);
        for c in &s.conversations {
            let seqs: Vec<u64> = c.messages.iter().map(|m| m.seq.0).collect();
            let want: Vec<u64> = (301 - seqs.len() as u64..=300).collect();
            assert_eq!(seqs, want, "contiguous up to the head");
        }
        let total: usize = s
            .conversations
            .iter()
            .flat_map(|c| &c.messages)
            .map(encoded_len)
            .sum();
        assert!(total <= budget.total);
    }

    #[test]
    fn unread_conversations_come_first_and_a_full_snapshot_leaves_the_rest_to_history() {
        let len = encoded_len(&message(3, 5, 8000));
        let budget = SnapshotBudget {
            per_conversation: 10 * len,
            total: 2 * len + 10,
        };
        // Conversation 1 is the oldest but has unread messages: it is served first.
        let mut s = snapshot(&[5, 5, 5], &[1]);
        fill(&mut s, budget, 8000);
        let carried: Vec<usize> = s.conversations.iter().map(|c| c.messages.len()).collect();
        assert_eq!(carried, [1, 0, 1]);
        assert!(!carries_whole_window(&s.conversations[0]));
    }
}
