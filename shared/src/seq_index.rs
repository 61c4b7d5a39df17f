//! Message positions in increasing order, each live until removed, counting live positions
//! after a watermark in O(log n). Compact, because the relay keeps one for every conversation's
//! messages and one per sender and per mentioned staff member, over the whole history:
//!
//! - positions are either a contiguous range (every message of a conversation: nothing stored
//!   per position) or an explicit list of `u32`s (4 bytes per position);
//! - liveness is one bit per position, and a Fenwick tree over blocks of 64 positions counts
//!   live positions before any point (4 bytes per 64 positions).
//!
//! So a conversation's messages cost about 0.2 bytes each, and a sender's or a mention's about
//! 4.2 bytes each. A position past `u32::MAX` does not fit a list: the engine refuses the
//! message that would reach it ([`MAX_SEQ`]).

use crate::checkpoint::{CheckpointError, Reader, Writer};
use crate::ids::Seq;

/// The highest seq a conversation can reach (positions are stored as `u32`).
pub(crate) const MAX_SEQ: u64 = u32::MAX as u64;

const BLOCK: usize = 64;

/// Where the positions are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Positions {
    /// `first, first + 1, …`: one per entry.
    Range { first: u32 },
    /// Explicit, increasing.
    List(Vec<u32>),
}

/// Positions appended in increasing order, each live until removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SeqIndex {
    positions: Positions,
    len: usize,
    /// Bit `i % 64` of word `i / 64` is set while entry `i` is live.
    bits: Vec<u64>,
    /// Fenwick tree over the blocks of `bits` (1-based: `tree[0]` is unused): live entries.
    tree: Vec<u32>,
    live: u32,
}

impl Default for SeqIndex {
    fn default() -> Self {
        Self::list()
    }
}

impl SeqIndex {
    /// An empty index of explicit positions.
    pub(crate) fn list() -> Self {
        Self::with(Positions::List(Vec::new()))
    }

    /// An empty index of the contiguous positions `first, first + 1, …`.
    pub(crate) fn range(first: Seq) -> Self {
        Self::with(Positions::Range { first: narrow(first) })
    }

    fn with(positions: Positions) -> Self {
        SeqIndex {
            positions,
            len: 0,
            bits: Vec::new(),
            tree: vec![0],
            live: 0,
        }
    }

    /// How many positions (live or not).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends a position, which must be greater than every position already here (and, in a
    /// range, the next one).
    pub(crate) fn push(&mut self, seq: Seq, live: bool) {
        match &mut self.positions {
            Positions::Range { first } => {
                debug_assert_eq!(
                    u64::from(*first) + self.len as u64,
                    seq.0,
                    "ranges are contiguous"
                );
            }
            Positions::List(seqs) => {
                debug_assert!(seqs.last().is_none_or(|last| u64::from(*last) < seq.0));
                seqs.push(narrow(seq));
            }
        }
        let i = self.len;
        self.len += 1;
        if i.is_multiple_of(BLOCK) {
            self.bits.push(0);
            // A new block: its tree node covers (b - lowbit(b), b], itself plus the nodes that
            // tile the rest of it.
            let b = self.bits.len();
            let low = b - lowbit(b);
            let mut sum = 0u32;
            let mut j = b - 1;
            while j > low {
                sum += self.tree[j];
                j -= lowbit(j);
            }
            self.tree.push(sum);
        }
        if live {
            self.bits[i / BLOCK] |= 1 << (i % BLOCK);
            // The last block's node is the last node: nothing above it exists yet.
            *self.tree.last_mut().expect("a node per block") += 1;
            self.live += 1;
        }
    }

    /// Removes a live position; false when it is absent or already removed.
    pub(crate) fn remove(&mut self, seq: Seq) -> bool {
        let Some(i) = self.find(seq) else {
            return false;
        };
        let (word, bit) = (i / BLOCK, 1u64 << (i % BLOCK));
        if self.bits[word] & bit == 0 {
            return false;
        }
        self.bits[word] &= !bit;
        let mut j = word + 1;
        while j < self.tree.len() {
            self.tree[j] -= 1;
            j += lowbit(j);
        }
        self.live -= 1;
        true
    }

    /// Live positions strictly after `after`.
    pub(crate) fn count_after(&self, after: Seq) -> u32 {
        self.live - self.live_before(self.entries_up_to(after))
    }

    /// Every entry in order: its position and whether it is live.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (Seq, bool)> + '_ {
        (0..self.len).map(|i| (self.position(i), self.bits[i / BLOCK] & (1 << (i % BLOCK)) != 0))
    }

    /// Appends every entry of `other` (whose positions all come after these).
    pub(crate) fn extend(&mut self, other: &SeqIndex) {
        for (seq, live) in other.entries() {
            self.push(seq, live);
        }
    }

    /// Frees what growing left unused.
    pub(crate) fn shrink(&mut self) {
        if let Positions::List(seqs) = &mut self.positions {
            seqs.shrink_to_fit();
        }
        self.bits.shrink_to_fit();
        self.tree.shrink_to_fit();
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        let list = match &self.positions {
            Positions::List(seqs) => seqs.capacity() * 4,
            Positions::Range { .. } => 0,
        };
        list + self.bits.capacity() * 8 + self.tree.capacity() * 4
    }

    /// The parts a checkpoint stores: positions and liveness bits (the tree is rebuilt).
    #[cfg(test)]
    pub(crate) fn parts(&self) -> (&Positions, usize, &[u64]) {
        (&self.positions, self.len, &self.bits)
    }

    /// Rebuilds an index from [`parts`](Self::parts); `None` when they do not fit together.
    pub(crate) fn from_parts(positions: Positions, len: usize, bits: Vec<u64>) -> Option<Self> {
        if bits.len() != len.div_ceil(BLOCK) {
            return None;
        }
        match &positions {
            Positions::List(seqs) => {
                if seqs.len() != len || seqs.windows(2).any(|w| w[0] >= w[1]) {
                    return None;
                }
            }
            Positions::Range { first } => {
                if u64::from(*first) + len as u64 > MAX_SEQ + 1 {
                    return None;
                }
            }
        }
        if let Some(last) = bits.last()
            && !len.is_multiple_of(BLOCK)
            && last >> (len % BLOCK) != 0
        {
            return None;
        }
        // O(n) Fenwick construction: each node adds itself into its parent.
        let mut tree = Vec::with_capacity(bits.len() + 1);
        tree.push(0u32);
        tree.extend(bits.iter().map(|w| w.count_ones()));
        for b in 1..tree.len() {
            let parent = b + lowbit(b);
            if parent < tree.len() {
                tree[parent] += tree[b];
            }
        }
        let live = bits.iter().map(|w| w.count_ones()).sum();
        Some(SeqIndex {
            positions,
            len,
            bits,
            tree,
            live,
        })
    }

    /// Writes this index into a checkpoint.
    pub(crate) fn write(&self, w: &mut Writer) {
        match &self.positions {
            Positions::Range { first } => {
                w.u8(0);
                w.u32(*first);
            }
            Positions::List(seqs) => {
                w.u8(1);
                w.u32s(seqs);
            }
        }
        w.len(self.len);
        w.u64s(&self.bits);
    }

    /// Reads an index [`write`](Self::write) wrote.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, CheckpointError> {
        let positions = match r.u8()? {
            0 => Positions::Range { first: r.u32()? },
            1 => Positions::List(r.u32s()?),
            _ => return Err(CheckpointError::Invalid("an index of an unknown kind")),
        };
        let len = usize::try_from(r.u64()?).map_err(|_| CheckpointError::Invalid("an index too long"))?;
        let bits = r.u64s()?;
        Self::from_parts(positions, len, bits)
            .ok_or(CheckpointError::Invalid("an index does not fit together"))
    }

    /// The first position of a range.
    pub(crate) fn first(&self) -> Option<Seq> {
        match self.positions {
            Positions::Range { first } => Some(Seq(u64::from(first))),
            Positions::List(_) => None,
        }
    }

    fn position(&self, i: usize) -> Seq {
        match &self.positions {
            Positions::Range { first } => Seq(u64::from(*first) + i as u64),
            Positions::List(seqs) => Seq(u64::from(seqs[i])),
        }
    }

    /// The entry at a position.
    fn find(&self, seq: Seq) -> Option<usize> {
        match &self.positions {
            Positions::Range { first } => {
                let i = usize::try_from(seq.0.checked_sub(u64::from(*first))?).ok()?;
                (i < self.len).then_some(i)
            }
            Positions::List(seqs) => {
                let s = u32::try_from(seq.0).ok()?;
                seqs.binary_search(&s).ok()
            }
        }
    }

    /// How many entries have a position at or before `seq`.
    fn entries_up_to(&self, seq: Seq) -> usize {
        match &self.positions {
            Positions::Range { first } => usize::try_from((seq.0 + 1).saturating_sub(u64::from(*first)))
                .unwrap_or(usize::MAX)
                .min(self.len),
            Positions::List(seqs) => {
                let s = u32::try_from(seq.0).unwrap_or(u32::MAX);
                seqs.partition_point(|p| *p <= s)
            }
        }
    }

    /// Live entries among the first `n`.
    fn live_before(&self, n: usize) -> u32 {
        let (full, rest) = (n / BLOCK, n % BLOCK);
        let mut sum = 0;
        let mut pos = full;
        while pos > 0 {
            sum += self.tree[pos];
            pos -= lowbit(pos);
        }
        if rest > 0 {
            sum += (self.bits[full] & ((1u64 << rest) - 1)).count_ones();
        }
        sum
    }
}

fn narrow(seq: Seq) -> u32 {
    u32::try_from(seq.0).expect("the engine refuses seqs past MAX_SEQ")
}

fn lowbit(n: usize) -> usize {
    n & n.wrapping_neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(idx: &SeqIndex, naive: &[(u64, bool)], at: u64) -> Result<(), TestCaseError> {
        let expected = naive.iter().filter(|(s, live)| *live && *s > at).count() as u32;
        prop_assert_eq!(idx.count_after(Seq(at)), expected);
        let (positions, len, bits) = idx.parts();
        let rebuilt = SeqIndex::from_parts(positions.clone(), len, bits.to_vec()).unwrap();
        prop_assert_eq!(rebuilt.count_after(Seq(at)), expected);
        prop_assert_eq!(rebuilt.tree.as_slice(), idx.tree.as_slice());
        Ok(())
    }

    proptest! {
        #[test]
        fn counts_match_a_scan(ops in proptest::collection::vec((1u64..4, any::<bool>(), 0u64..900), 1..600), dense in any::<bool>()) {
            let mut idx = if dense { SeqIndex::range(Seq(1)) } else { SeqIndex::list() };
            let mut naive: Vec<(u64, bool)> = Vec::new();
            let mut next = 0u64;
            for (step, remove, at) in ops {
                if remove && !naive.is_empty() {
                    let target = naive[(at as usize) % naive.len()].0;
                    let was_live = naive.iter().any(|(s, live)| *s == target && *live);
                    prop_assert_eq!(idx.remove(Seq(target)), was_live);
                    for e in naive.iter_mut().filter(|e| e.0 == target) { e.1 = false; }
                } else {
                    next += if dense { 1 } else { step };
                    let live = step != 3;
                    idx.push(Seq(next), live);
                    naive.push((next, live));
                }
                check(&idx, &naive, at)?;
            }
            let entries: Vec<(u64, bool)> = idx.entries().map(|(s, l)| (s.0, l)).collect();
            prop_assert_eq!(entries, naive);
        }
    }

    #[test]
    fn damaged_parts_are_refused() {
        let mut idx = SeqIndex::list();
        for s in 1..=70 {
            idx.push(Seq(s * 2), true);
        }
        let (p, len, bits) = idx.parts();
        assert!(SeqIndex::from_parts(p.clone(), len + 1, bits.to_vec()).is_none());
        assert!(SeqIndex::from_parts(p.clone(), len, bits[..1].to_vec()).is_none());
        let mut extra = bits.to_vec();
        extra[1] |= 1 << 40;
        assert!(SeqIndex::from_parts(p.clone(), len, extra).is_none());
        assert!(SeqIndex::from_parts(Positions::List(vec![3, 2]), 2, vec![3]).is_none());
    }

    #[test]
    fn a_conversation_costs_a_fraction_of_a_byte_per_message() {
        let mut idx = SeqIndex::range(Seq(1));
        for s in 1..=1_000_000 {
            idx.push(Seq(s), true);
        }
        idx.shrink();
        assert!(idx.heap_bytes() < 200_000, "{}", idx.heap_bytes());
        assert_eq!(idx.count_after(Seq(999_990)), 10);
        assert!(idx.remove(Seq(999_995)));
        assert_eq!(idx.count_after(Seq(999_990)), 9);
        assert_eq!(idx.count_after(Seq(0)), 999_999);
    }
}
