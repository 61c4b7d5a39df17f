//! Reactions: an emoji a participant puts on a message. They are logged events (so they
//! survive restarts, resume, checkpoints and cluster mode) and never change a count: no
//! unread rule reads them (`docs/semantics.md`, "Reactions").

use serde::{Deserialize, Serialize};

use crate::ids::StaffId;
use crate::limits;

/// One emoji on a message and who put it there, in the order they did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    /// The emoji, as text (one emoji: a character or a sequence such as a flag or a family).
    pub emoji: String,
    /// Who reacted with it, first first.
    pub staff: Vec<StaffId>,
}

/// Whether `emoji` is something a message may be reacted with: one emoji-like sequence of at
/// most [`limits::EMOJI_MAX_CHARS`] characters and [`limits::EMOJI_MAX_BYTES`] bytes, with no
/// letters, spaces, controls or markup (ASCII only as digits, `#` and `*`, for keycaps).
pub fn valid_emoji(emoji: &str) -> bool {
    let chars = emoji.chars().count();
    (1..=limits::EMOJI_MAX_CHARS).contains(&chars)
        && emoji.len() <= limits::EMOJI_MAX_BYTES
        && !emoji.is_ascii()
        && emoji
            .chars()
            .next()
            .is_some_and(|c| !c.is_ascii() || c.is_ascii_digit() || matches!(c, '#' | '*'))
        && emoji.chars().all(|c| {
            let allowed_ascii = c.is_ascii_digit() || matches!(c, '#' | '*');
            (allowed_ascii || !c.is_ascii()) && !c.is_whitespace() && !c.is_control() && !c.is_alphabetic()
        })
}

/// Adds `staff`'s `emoji` to `reactions`; false if it was there already.
pub fn add(reactions: &mut Vec<Reaction>, staff: &StaffId, emoji: &str) -> bool {
    match reactions.iter_mut().find(|r| r.emoji == emoji) {
        Some(r) if r.staff.contains(staff) => false,
        Some(r) => {
            r.staff.push(staff.clone());
            true
        }
        None => {
            reactions.push(Reaction {
                emoji: emoji.to_string(),
                staff: vec![staff.clone()],
            });
            true
        }
    }
}

/// Removes `staff`'s `emoji` from `reactions` (an emoji nobody has left goes); false if it
/// was not there.
pub fn remove(reactions: &mut Vec<Reaction>, staff: &StaffId, emoji: &str) -> bool {
    let Some(i) = reactions.iter().position(|r| r.emoji == emoji) else {
        return false;
    };
    let before = reactions[i].staff.len();
    reactions[i].staff.retain(|s| s != staff);
    let removed = reactions[i].staff.len() < before;
    if reactions[i].staff.is_empty() {
        reactions.remove(i);
    }
    removed
}

/// Applies a `reaction_changed` event to a message's reactions.
pub fn apply(reactions: &mut Vec<Reaction>, staff: &StaffId, emoji: &str, added: bool) {
    if added {
        add(reactions, staff, emoji);
    } else {
        remove(reactions, staff, emoji);
    }
}

/// How many emoji `staff` has on a message.
pub fn by(reactions: &[Reaction], staff: &StaffId) -> usize {
    reactions.iter().filter(|r| r.staff.contains(staff)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_are_emoji() {
        for ok in ["👍", "❤️", "🎉", "1️⃣", "🇩🇪", "👨‍👩‍👧‍👦", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "✅"]
        {
            assert!(valid_emoji(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "ok",
            "👍 ",
            " ",
            "<b>",
            "é",
            "日本",
            "\u{7}",
            "1",
            "👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍",
        ] {
            assert!(!valid_emoji(bad), "{bad:?}");
        }
    }

    #[test]
    fn add_and_remove_dedupe_per_person_and_emoji() {
        let (a, b) = (StaffId::new("a").unwrap(), StaffId::new("b").unwrap());
        let mut rs = Vec::new();
        assert!(add(&mut rs, &a, "👍"));
        assert!(!add(&mut rs, &a, "👍"));
        assert!(add(&mut rs, &b, "👍"));
        assert!(add(&mut rs, &b, "🎉"));
        assert_eq!(rs[0].staff, vec![a.clone(), b.clone()]);
        assert_eq!(by(&rs, &b), 2);
        assert!(remove(&mut rs, &b, "🎉"));
        assert!(!remove(&mut rs, &b, "🎉"));
        assert_eq!(rs.len(), 1);
    }
}
