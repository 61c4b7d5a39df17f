//! Importing another system's per-message reads (`read_by` rows) as Tally watermarks.
//!
//! The rule (`docs/semantics.md`, "Imported reads"): a person's watermark in a conversation is
//! the highest message such that they have read every message up to it, not counting their own
//! messages and deleted ones (neither is ever unread). When a person's reads are contiguous,
//! Tally's count then equals the old rule's (messages by others, not deleted, not in
//! `read_by`). A gap (a message left unread with later ones read) stops the watermark at the
//! gap: the later ones count as unread too. Tally never hides an unread message; it may show a
//! few already read, and [`Watermark::read_after`] says how many.

use crate::ids::Seq;

/// One message of a conversation, as one person stands to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadBy {
    /// Its position.
    pub seq: Seq,
    /// Whether it can be unread for this person: by someone else, and not deleted.
    pub counts: bool,
    /// Whether the old system has it read by this person.
    pub read: bool,
}

/// Where a person's reads put their watermark, and what that means for their count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watermark {
    /// The watermark.
    pub last_read: Seq,
    /// Their unread count in Tally: messages that count after the watermark.
    pub unread: u32,
    /// Their unread count under the old rule: messages that count and were not read.
    pub old_unread: u32,
    /// Messages that count, after the watermark, that the old system had read (the gap's
    /// cost: `unread - old_unread`).
    pub read_after: u32,
}

/// The watermark for one person, from a conversation's messages in seq order.
pub fn watermark(messages: impl IntoIterator<Item = ReadBy>) -> Watermark {
    let mut w = Watermark::default();
    let mut gap = false;
    for m in messages {
        if m.counts && !m.read {
            gap = true;
            w.old_unread += 1;
        }
        if !gap {
            w.last_read = m.seq;
        } else if m.counts {
            w.unread += 1;
            if m.read {
                w.read_after += 1;
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(spec: &str) -> Watermark {
        // o: by others, read; u: by others, unread; m: mine; d: deleted.
        watermark(spec.chars().enumerate().map(|(i, c)| ReadBy {
            seq: Seq(i as u64 + 1),
            counts: matches!(c, 'o' | 'u'),
            read: c == 'o',
        }))
    }

    #[test]
    fn contiguous_reads_give_the_old_count_and_gaps_cost_what_they_say() {
        let w = run("oomouu");
        assert_eq!(
            (w.last_read, w.unread, w.old_unread, w.read_after),
            (Seq(4), 2, 2, 0)
        );
        // Own and deleted messages never stop the watermark.
        let w = run("omdmo");
        assert_eq!((w.last_read, w.unread, w.old_unread), (Seq(5), 0, 0));
        // A gap: the read one after it counts again.
        let w = run("ouoom");
        assert_eq!(
            (w.last_read, w.unread, w.old_unread, w.read_after),
            (Seq(1), 3, 1, 2)
        );
        assert_eq!(run(""), Watermark::default());
        assert_eq!(run("uu").last_read, Seq(0));
    }
}
