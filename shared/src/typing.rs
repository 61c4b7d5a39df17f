//! Who is typing where, as a store sees it: ephemeral (never logged, never counted), each
//! `typing` frame showing for [`TYPING_SHOWS_MS`] unless another renews it or that person's
//! message arrives. The host passes the clock in; nothing here reads one.

use rustc_hash::FxHashMap;

use crate::ids::{ConversationId, Millis, StaffId};
use crate::protocol::TYPING_SHOWS_MS;

/// The people typing, per conversation, with when each was last heard.
#[derive(Clone, Debug, Default)]
pub struct Typing {
    heard: FxHashMap<ConversationId, Vec<(StaffId, Millis)>>,
}

impl Typing {
    /// `staff` said at `at` that they are typing in `conversation`.
    pub fn note(&mut self, conversation: ConversationId, staff: StaffId, at: Millis) {
        let list = self.heard.entry(conversation).or_default();
        match list.iter_mut().find(|(s, _)| *s == staff) {
            Some(entry) => entry.1 = entry.1.max(at),
            None => list.push((staff, at)),
        }
    }

    /// `staff`'s message arrived in `conversation` (or they left it): they stopped typing there.
    pub fn clear(&mut self, conversation: ConversationId, staff: &StaffId) {
        if let Some(list) = self.heard.get_mut(&conversation) {
            list.retain(|(s, _)| s != staff);
            if list.is_empty() {
                self.heard.remove(&conversation);
            }
        }
    }

    /// Who is typing in `conversation` at `now`, in the order they started.
    pub fn in_conversation(&self, conversation: ConversationId, now: Millis) -> Vec<&StaffId> {
        self.heard
            .get(&conversation)
            .map(|list| {
                list.iter()
                    .filter(|(_, at)| now.0 < at.0 + TYPING_SHOWS_MS)
                    .map(|(s, _)| s)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets what has expired by `now` (so the map does not grow over a long session).
    pub fn expire(&mut self, now: Millis) {
        self.heard.retain(|_, list| {
            list.retain(|(_, at)| now.0 < at.0 + TYPING_SHOWS_MS);
            !list.is_empty()
        });
    }

    /// Forgets everything (a snapshot starts over).
    pub fn reset(&mut self) {
        self.heard.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(id: &str) -> StaffId {
        StaffId::new(id).unwrap()
    }

    #[test]
    fn typing_shows_for_six_seconds_renews_and_stops_with_a_message() {
        let c = ConversationId(1);
        let mut t = Typing::default();
        t.note(c, s("alice"), Millis(1_000));
        t.note(c, s("bob"), Millis(2_000));
        assert_eq!(t.in_conversation(c, Millis(6_999)), [&s("alice"), &s("bob")]);
        assert_eq!(t.in_conversation(c, Millis(7_000)), [&s("bob")], "alice expired");
        t.note(c, s("alice"), Millis(7_500));
        assert_eq!(
            t.in_conversation(c, Millis(7_900)),
            [&s("alice"), &s("bob")],
            "renewed"
        );
        assert_eq!(
            t.in_conversation(c, Millis(8_000)),
            [&s("alice")],
            "bob's six seconds are up"
        );
        t.clear(c, &s("alice"));
        assert!(t.in_conversation(c, Millis(8_000)).is_empty());
        assert!(t.in_conversation(ConversationId(2), Millis(8_000)).is_empty());
        t.expire(Millis(100_000));
        assert!(t.heard.is_empty());
    }
}
