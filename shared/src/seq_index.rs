//! An append-only list of message positions with deletions, counting live entries after a
//! watermark in O(log n) (a Fenwick tree over the list; appending is amortised O(1)).

use crate::ids::Seq;

/// Positions appended in increasing order, each live until removed.
#[derive(Clone, Debug)]
pub(crate) struct SeqIndex {
    seqs: Vec<Seq>,
    /// Fenwick tree over `seqs` (1-based: `tree[0]` is unused), 1 per live entry.
    tree: Vec<u32>,
    live: u32,
}

impl Default for SeqIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl SeqIndex {
    pub(crate) fn new() -> Self {
        SeqIndex {
            seqs: Vec::new(),
            tree: vec![0],
            live: 0,
        }
    }

    /// Appends a live position, which must be greater than every position already here.
    pub(crate) fn push(&mut self, seq: Seq) {
        debug_assert!(self.seqs.last().is_none_or(|last| *last < seq));
        self.seqs.push(seq);
        let n = self.seqs.len();
        // tree[n] covers (n - lowbit(n), n]: itself plus the nodes that tile the rest of it.
        let low = n - lowbit(n);
        let mut sum = 1u32;
        let mut j = n - 1;
        while j > low {
            sum += self.tree[j];
            j -= lowbit(j);
        }
        self.tree.push(sum);
        self.live += 1;
    }

    /// Removes a live position; false when it is absent or already removed.
    pub(crate) fn remove(&mut self, seq: Seq) -> bool {
        let Ok(i) = self.seqs.binary_search(&seq) else {
            return false;
        };
        let pos = i + 1;
        if self.prefix(pos) == self.prefix(pos - 1) {
            return false;
        }
        let mut j = pos;
        while j < self.tree.len() {
            self.tree[j] -= 1;
            j += lowbit(j);
        }
        self.live -= 1;
        true
    }

    /// Live positions strictly after `after`.
    pub(crate) fn count_after(&self, after: Seq) -> u32 {
        if self.seqs.last().is_none_or(|last| *last <= after) {
            return 0;
        }
        let upto = self.seqs.partition_point(|s| *s <= after);
        self.live - self.prefix(upto)
    }

    fn prefix(&self, mut pos: usize) -> u32 {
        let mut sum = 0;
        while pos > 0 {
            sum += self.tree[pos];
            pos -= lowbit(pos);
        }
        sum
    }
}

fn lowbit(n: usize) -> usize {
    n & n.wrapping_neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn counts_match_a_scan(ops in proptest::collection::vec((1u64..4, any::<bool>(), 0u64..300), 1..300)) {
            let mut idx = SeqIndex::new();
            let mut naive: Vec<(u64, bool)> = Vec::new();
            let mut next = 0u64;
            for (step, remove, at) in ops {
                if remove && !naive.is_empty() {
                    let target = naive[(at as usize) % naive.len()].0;
                    let was_live = naive.iter().any(|(s, live)| *s == target && *live);
                    prop_assert_eq!(idx.remove(Seq(target)), was_live);
                    for e in naive.iter_mut().filter(|e| e.0 == target) { e.1 = false; }
                } else {
                    next += step;
                    idx.push(Seq(next));
                    naive.push((next, true));
                }
                let expected = naive.iter().filter(|(s, live)| *live && *s > at).count() as u32;
                prop_assert_eq!(idx.count_after(Seq(at)), expected);
            }
        }
    }
}
