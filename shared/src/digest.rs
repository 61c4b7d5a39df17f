//! The count digest: a 64-bit fingerprint of one staff member's whole count state — every
//! conversation they are in (its unread count, mention count and muted flag) and their total.
//! The relay sends it in every `unread_updated`; a store compares it with its own, so a wrong
//! count in *any* conversation shows at the next checkpoint, not only in the one it names.
//!
//! It is kept incrementally: the sum (wrapping, modulo 2^64) of one term per conversation, so a
//! change to one conversation costs O(1) (take its old term out, put its new one in). The
//! function is fixed and documented in `docs/protocol.md`, for clients in other languages.

use serde::{Deserialize, Serialize};

use crate::ids::ConversationId;
use crate::model::{Counts, Totals};

/// A digest on the wire: 16 lowercase hex digits (a JSON number would lose bits in JavaScript).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CountDigest(pub u64);

impl Serialize for CountDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:016x}", self.0))
    }
}

impl<'de> Deserialize<'de> for CountDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if s.len() != 16 {
            return Err(serde::de::Error::custom("a digest is 16 hex digits"));
        }
        u64::from_str_radix(&s, 16)
            .map(CountDigest)
            .map_err(|_| serde::de::Error::custom("a digest is 16 hex digits"))
    }
}

/// SplitMix64's finalizer: a fixed, well-mixing bijection on 64-bit words.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One conversation's term.
pub fn term(conversation: ConversationId, counts: Counts, muted: bool) -> u64 {
    let h = mix(conversation.0);
    let h = mix(h ^ u64::from(counts.unread));
    let h = mix(h ^ u64::from(counts.mentions));
    mix(h ^ u64::from(muted))
}

/// One followed thread's term (its conversation's term, told apart by the root's seq and the
/// fact that it is a thread).
pub fn thread_term(conversation: ConversationId, root: crate::ids::Seq, counts: Counts, muted: bool) -> u64 {
    mix(term(conversation, counts, muted) ^ mix(root.0 ^ 0x7468_7265_6164_0000))
}

/// The digest of a staff member's state: the sum of the terms of their conversations, with
/// their total mixed in.
pub fn digest(sum: u64, total: Totals) -> u64 {
    let total = (u64::from(total.unread) << 32) | u64::from(total.mentions);
    mix(sum ^ mix(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_values_hold() {
        // These are in docs/protocol.md: a client in another language checks itself with them.
        assert_eq!(mix(0), 0);
        assert_eq!(mix(1), 0x5692_161d_100b_05e5);
        let counts = |unread, mentions| Counts { unread, mentions };
        let one = term(ConversationId(2), counts(3, 1), false);
        let total = Totals {
            unread: 3,
            mentions: 1,
        };
        assert_eq!(format!("{:016x}", digest(one, total)), "f44abb9100f6716c");
        let two = one.wrapping_add(term(ConversationId(5), counts(2, 0), true));
        assert_eq!(format!("{:016x}", digest(two, total)), "d11f88fabf42a52d");
    }

    #[test]
    fn every_field_changes_the_term() {
        let base = term(
            ConversationId(2),
            Counts {
                unread: 3,
                mentions: 1,
            },
            false,
        );
        assert_ne!(
            base,
            term(
                ConversationId(3),
                Counts {
                    unread: 3,
                    mentions: 1
                },
                false
            )
        );
        assert_ne!(
            base,
            term(
                ConversationId(2),
                Counts {
                    unread: 4,
                    mentions: 1
                },
                false
            )
        );
        assert_ne!(
            base,
            term(
                ConversationId(2),
                Counts {
                    unread: 3,
                    mentions: 0
                },
                false
            )
        );
        assert_ne!(
            base,
            term(
                ConversationId(2),
                Counts {
                    unread: 3,
                    mentions: 1
                },
                true
            )
        );
        // Swapping two conversations' counts changes the sum.
        let (a, b) = (ConversationId(1), ConversationId(2));
        let (x, y) = (
            Counts {
                unread: 1,
                mentions: 0,
            },
            Counts {
                unread: 2,
                mentions: 0,
            },
        );
        assert_ne!(
            term(a, x, false).wrapping_add(term(b, y, false)),
            term(a, y, false).wrapping_add(term(b, x, false))
        );
    }
}
