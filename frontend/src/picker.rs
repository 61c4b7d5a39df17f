//! The composer's mention picker, as plain functions (the component only wires them to the
//! text box): where an `@…` being typed starts, who matches it, what choosing one writes, and
//! the ranges a send carries (`tally_shared::mentions`).
//!
//! The composer remembers each choice as its text (`@Bob Chen`) and whom it names; the ranges
//! are found when sending, so editing the text around a mention (or deleting it) needs no
//! bookkeeping. `@id`s typed by hand are found too, by the relay's own rule.

use tally_shared::mentions::{self, Audience, MentionRange};
use tally_shared::{Conversation, StaffId};

/// Most people the picker lists.
pub const SHOWN: usize = 8;
/// The longest query the picker follows (past it, the `@` was not a mention).
const QUERY_MAX: usize = 32;

/// A choice the picker offers: someone (or everyone: `None`), with the name it writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// Whom.
    pub staff: Option<StaffId>,
    /// The name written after `@` (a person's display name, or `here`).
    pub name: String,
}

/// The `@…` being typed just before the caret (`caret` in characters): the character where
/// its `@` is, and what follows it. An `@` counts at the start or after a space or
/// punctuation (not in `x@y`); the query runs to the caret, on one line.
pub fn query_at(text: &str, caret: usize) -> Option<(usize, String)> {
    let chars: Vec<char> = text.chars().take(caret).collect();
    let at = chars.iter().rposition(|c| *c == '@')?;
    let before_ok = at == 0 || !chars[at - 1].is_alphanumeric();
    let query: String = chars[at + 1..].iter().collect();
    let ok = before_ok
        && query.chars().count() <= QUERY_MAX
        && !query.contains('\n')
        && !query.starts_with(' ')
        && !query.contains("  ");
    ok.then_some((at, query))
}

/// Who matches `query` in a conversation (never me): names or ids that start with it, or
/// have a word that does, in any case; then those that contain it; `@here` in a group that
/// allows it. At most [`SHOWN`].
pub fn candidates(
    conversation: &Conversation,
    me: Option<&StaffId>,
    name_of: impl Fn(&StaffId) -> String,
    query: &str,
) -> Vec<Choice> {
    let q = query.to_lowercase();
    let mut scored: Vec<(u8, Choice)> = Vec::new();
    for p in conversation.participants.iter().filter(|p| Some(*p) != me) {
        let name = name_of(p);
        let Some(score) = tally_shared::navigate::match_score(&name, p.as_str(), &q) else {
            continue;
        };
        scored.push((
            score,
            Choice {
                staff: Some(p.clone()),
                name,
            },
        ));
    }
    scored.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| a.1.name.to_lowercase().cmp(&b.1.name.to_lowercase()))
    });
    let mut out: Vec<Choice> = scored.into_iter().map(|(_, c)| c).collect();
    if conversation.everyone_mentions() && ("here".starts_with(&q) || "all".starts_with(&q)) {
        let here = Choice {
            staff: None,
            name: "here".into(),
        };
        // Asked for ("@he…"), it comes first; offered with everyone, last.
        if q.is_empty() {
            out.truncate(SHOWN - 1);
            out.push(here);
        } else {
            out.insert(0, here);
        }
    }
    out.truncate(SHOWN);
    out
}

/// Writes a choice over the `@query` that starts at character `at` and ends at the caret:
/// the new text and the caret after it (in characters).
pub fn insert(text: &str, at: usize, caret: usize, choice: &Choice) -> (String, usize) {
    let chars: Vec<char> = text.chars().collect();
    let written = format!("@{} ", choice.name);
    let mut out: String = chars[..at.min(chars.len())].iter().collect();
    out.push_str(&written);
    out.extend(chars[caret.min(chars.len())..].iter());
    (out, at + written.chars().count())
}

/// The ranges a send carries: each chosen mention where its text still is (every place it
/// is, at word ends), then the `@id`s and `@here` typed by hand (the relay's rule) that no
/// chosen one covers. In order, never overlapping.
pub fn ranges(body: &str, chosen: &[Choice], conversation: &Conversation, me: &StaffId) -> Vec<MentionRange> {
    let chars: Vec<char> = body.chars().collect();
    let mut out: Vec<MentionRange> = Vec::new();
    for c in chosen {
        let needle: Vec<char> = format!("@{}", c.name).chars().collect();
        let mut i = 0;
        while i + needle.len() <= chars.len() {
            let ends_word = chars.get(i + needle.len()).is_none_or(|n| !n.is_alphanumeric());
            let starts_word = i == 0 || !chars[i - 1].is_alphanumeric();
            if chars[i..i + needle.len()] == needle[..] && ends_word && starts_word {
                out.push(MentionRange {
                    start: i as u32,
                    end: (i + needle.len()) as u32,
                    staff: c.staff.clone(),
                });
                i += needle.len();
            } else {
                i += 1;
            }
        }
    }
    let typed = mentions::found(
        body,
        Audience {
            participants: &conversation.participants,
            sender: me,
            everyone: conversation.everyone_mentions(),
        },
    );
    out.extend(typed.ranges);
    out.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    let mut kept: Vec<MentionRange> = Vec::new();
    for r in out {
        if kept.last().is_none_or(|k| r.start >= k.end) {
            kept.push(r);
        }
    }
    kept.truncate(tally_shared::limits::MENTIONS_PER_MESSAGE_MAX);
    kept
}

/// A caret position in UTF-16 units (the DOM's) as characters.
pub fn chars_from_utf16(text: &str, units: u32) -> usize {
    let mut seen = 0u32;
    for (n, c) in text.chars().enumerate() {
        if seen >= units {
            return n;
        }
        seen += c.len_utf16() as u32;
    }
    text.chars().count()
}

/// A position in characters as UTF-16 units (to put the DOM's caret there).
pub fn utf16_from_chars(text: &str, chars: usize) -> u32 {
    text.chars().take(chars).map(|c| c.len_utf16() as u32).sum()
}
