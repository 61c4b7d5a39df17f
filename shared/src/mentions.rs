//! Mentions: who a message names, carried as structure beside its text.
//!
//! A message's mentions are fixed when it is sent. A client that offers a picker sends them as
//! ranges of the body (`mention_ranges`: each names a participant, or everyone for `@here` and
//! `@all`), so a name's spelling or a later rename never changes who was mentioned. A client
//! that sends none has them found in the text: `@id` (any case) for a participant, and `@here`
//! or `@all` in a group. Either way the message stores both the ranges (what a widget
//! highlights) and the ids they name (`mentions`, what counts). See `docs/semantics.md`,
//! "Mentions".
//!
//! Ranges count Unicode scalar values (Python's `str` indices; JavaScript's `Array.from`), not
//! bytes or UTF-16 units, so every client can make and read them.

use serde::{Deserialize, Serialize};

use crate::ids::StaffId;
use crate::limits;

/// A stretch of a message's text that mentions someone (or everyone).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MentionRange {
    /// Where it starts, in characters (Unicode scalar values) from the body's start.
    pub start: u32,
    /// Where it ends (exclusive), in characters.
    pub end: u32,
    /// Whom it mentions; absent for `@here` / `@all` (every participant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staff: Option<StaffId>,
}

/// What a conversation allows a message to mention.
#[derive(Clone, Copy, Debug)]
pub struct Audience<'a> {
    /// Its participants now.
    pub participants: &'a [StaffId],
    /// Who writes (never mentioned by their own message).
    pub sender: &'a StaffId,
    /// Whether `@here` / `@all` may mention everyone (groups whose owner allows it).
    pub everyone: bool,
}

/// The mentions of a message: its ranges, and the participants they name (each once, in the
/// order first named; everyone but the sender when a range names everyone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mentions {
    /// What a widget highlights.
    pub ranges: Vec<MentionRange>,
    /// Who counts the message as a mention.
    pub staff: Vec<StaffId>,
}

/// Why ranges a client sent were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MentionError {
    /// More ranges than [`limits::MENTIONS_PER_MESSAGE_MAX`].
    #[error("at most {} mentions per message", limits::MENTIONS_PER_MESSAGE_MAX)]
    TooMany,
    /// A range that is empty, outside the text, overlapping or out of order, or whose text does
    /// not start with `@`.
    #[error(
        "mention range {0} is not an @-mention in the text (ranges count characters, in order, not overlapping)"
    )]
    BadRange(usize),
    /// Someone who is not in the conversation.
    #[error("{0} is not in this conversation")]
    NotParticipant(StaffId),
    /// `@here` / `@all` where the conversation does not allow it.
    #[error("@here and @all are turned off in this conversation")]
    EveryoneOff,
}

impl Mentions {
    /// The ids a set of ranges names.
    fn resolve(ranges: Vec<MentionRange>, to: Audience<'_>) -> Mentions {
        let mut staff: Vec<StaffId> = Vec::new();
        if ranges.iter().any(|r| r.staff.is_none()) {
            staff.extend(to.participants.iter().filter(|p| *p != to.sender).cloned());
        } else {
            for r in &ranges {
                if let Some(s) = &r.staff
                    && s != to.sender
                    && !staff.contains(s)
                {
                    staff.push(s.clone());
                }
            }
        }
        Mentions { ranges, staff }
    }
}

/// Checks ranges a client sent against the body and the conversation.
pub fn checked(body: &str, ranges: &[MentionRange], to: Audience<'_>) -> Result<Mentions, MentionError> {
    if ranges.len() > limits::MENTIONS_PER_MESSAGE_MAX {
        return Err(MentionError::TooMany);
    }
    let chars: Vec<char> = body.chars().collect();
    let mut after = 0u32;
    for (i, r) in ranges.iter().enumerate() {
        let fits = r.start >= after && r.start < r.end && (r.end as usize) <= chars.len();
        if !fits || chars[r.start as usize] != '@' {
            return Err(MentionError::BadRange(i));
        }
        after = r.end;
        match &r.staff {
            Some(s) if !to.participants.contains(s) => return Err(MentionError::NotParticipant(s.clone())),
            None if !to.everyone => return Err(MentionError::EveryoneOff),
            _ => {}
        }
    }
    Ok(Mentions::resolve(ranges.to_vec(), to))
}

/// Finds the mentions in a text that came without ranges: `@id` of a participant (any case),
/// and `@here` / `@all` where everyone may be mentioned, each starting at the text's start or
/// after a character that is neither a letter, a digit nor `@`, and ending before one that
/// cannot continue an id (a trailing `.` ends a sentence: "thanks @bob.").
pub fn found(body: &str, to: Audience<'_>) -> Mentions {
    let is_id_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let mut ranges = Vec::new();
    let mut prev: Option<char> = None;
    for (char_at, (i, c)) in body.char_indices().enumerate() {
        let starts = c == '@' && !prev.is_some_and(|p| p.is_alphanumeric() || p == '@');
        prev = Some(c);
        let char_at = char_at as u32;
        if !starts || ranges.len() == limits::MENTIONS_PER_MESSAGE_MAX {
            continue;
        }
        let rest = &body[i + 1..];
        let len = rest.find(|c: char| !is_id_char(c)).unwrap_or(rest.len());
        let word = rest[..len].trim_end_matches('.');
        let lower = word.to_ascii_lowercase();
        let staff = if to.everyone && (lower == "here" || lower == "all") {
            None
        } else if let Some(p) = to.participants.iter().find(|p| p.as_str() == lower) {
            Some(p.clone())
        } else {
            continue;
        };
        // Ids and the two keywords are ASCII: one character per byte.
        let end = char_at + 1 + word.len() as u32;
        ranges.push(MentionRange {
            start: char_at,
            end,
            staff,
        });
    }
    Mentions::resolve(ranges, to)
}

/// An edit's ranges: those of the new text (sent, or found in it) that name someone the
/// message mentioned when it was sent. An edit never mentions anyone new, so it highlights
/// nobody new either.
pub fn kept_by_edit(new: Mentions, mentioned: &[StaffId], everyone_was: bool) -> Vec<MentionRange> {
    new.ranges
        .into_iter()
        .filter(|r| match &r.staff {
            Some(s) => mentioned.contains(s),
            None => everyone_was,
        })
        .collect()
}

/// Splits a text by its mention ranges: each piece of text with the range it is (if any).
/// Ranges that do not fit the text (a store's copy of an edited message, say) are left out.
pub fn pieces<'a>(body: &'a str, ranges: &'a [MentionRange]) -> Vec<(&'a str, Option<&'a MentionRange>)> {
    let bytes_at: Vec<usize> = body
        .char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(body.len()))
        .collect();
    let mut out = Vec::new();
    let mut from = 0usize;
    for r in ranges {
        let (Some(&s), Some(&e)) = (bytes_at.get(r.start as usize), bytes_at.get(r.end as usize)) else {
            continue;
        };
        if s < from || e <= s {
            continue;
        }
        if from < s {
            out.push((&body[from..s], None));
        }
        out.push((&body[s..e], Some(r)));
        from = e;
    }
    if from < body.len() {
        out.push((&body[from..], None));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(id: &str) -> StaffId {
        StaffId::new(id).unwrap()
    }

    fn audience<'a>(ps: &'a [StaffId], sender: &'a StaffId, everyone: bool) -> Audience<'a> {
        Audience {
            participants: ps,
            sender,
            everyone,
        }
    }

    #[test]
    fn found_in_text_any_case_not_sender_nor_emails() {
        let ps = [s("alice"), s("bob"), s("carol.d")];
        let alice = s("alice");
        let to = audience(&ps, &alice, false);
        assert_eq!(
            found("hi @bob and @carol.d.", to).staff,
            vec![s("bob"), s("carol.d")]
        );
        assert_eq!(found("hi @Bob!", to).staff, vec![s("bob")]);
        assert_eq!(found("@alice me", to).staff, Vec::<StaffId>::new());
        assert_eq!(found("mail x@bob.com", to).staff, Vec::<StaffId>::new());
        assert_eq!(found("@bob @bob @dave", to).staff, vec![s("bob")]);
        assert_eq!(found("(@bob)", to).staff, vec![s("bob")]);
        // The sender's own @-id is a range (shown) but mentions nobody.
        assert_eq!(found("@alice", to).ranges.len(), 1);
    }

    #[test]
    fn found_ranges_count_characters() {
        let ps = [s("alice"), s("bob")];
        let alice = s("alice");
        let m = found("Grüße @bob.", audience(&ps, &alice, false));
        assert_eq!(
            m.ranges,
            vec![MentionRange {
                start: 6,
                end: 10,
                staff: Some(s("bob"))
            }]
        );
        assert_eq!(pieces("Grüße @bob.", &m.ranges)[1].0, "@bob");
    }

    #[test]
    fn everyone_only_where_allowed() {
        let ps = [s("alice"), s("bob"), s("carol")];
        let alice = s("alice");
        assert_eq!(
            found("@here standup", audience(&ps, &alice, true)).staff,
            vec![s("bob"), s("carol")]
        );
        assert_eq!(found("@ALL standup", audience(&ps, &alice, true)).staff.len(), 2);
        assert!(
            found("@here standup", audience(&ps, &alice, false))
                .staff
                .is_empty()
        );
        let everyone = [MentionRange {
            start: 0,
            end: 5,
            staff: None,
        }];
        assert_eq!(
            checked("@here x", &everyone, audience(&ps, &alice, false)),
            Err(MentionError::EveryoneOff)
        );
    }

    #[test]
    fn checked_ranges_name_who_the_picker_chose() {
        let ps = [s("alice"), s("bob")];
        let alice = s("alice");
        let to = audience(&ps, &alice, false);
        let bob = |start, end| MentionRange {
            start,
            end,
            staff: Some(s("bob")),
        };
        // "@Bob Chen" by name: the range says who, whatever the text.
        let m = checked("hi @Bob Chen!", &[bob(3, 12)], to).unwrap();
        assert_eq!(m.staff, vec![s("bob")]);
        assert_eq!(
            checked("hi @Bob", &[bob(2, 7)], to),
            Err(MentionError::BadRange(0))
        );
        assert_eq!(
            checked("hi @Bob", &[bob(3, 8)], to),
            Err(MentionError::BadRange(0))
        );
        assert_eq!(
            checked("hi @Bob", &[bob(3, 3)], to),
            Err(MentionError::BadRange(0))
        );
        assert_eq!(
            checked("@Bob @Bob", &[bob(5, 9), bob(0, 4)], to),
            Err(MentionError::BadRange(1))
        );
        let dave = MentionRange {
            start: 0,
            end: 2,
            staff: Some(s("dave")),
        };
        assert_eq!(
            checked("@d", &[dave], to),
            Err(MentionError::NotParticipant(s("dave")))
        );
        let many = vec![bob(0, 1); limits::MENTIONS_PER_MESSAGE_MAX + 1];
        assert_eq!(checked("@", &many, to), Err(MentionError::TooMany));
    }

    #[test]
    fn an_edit_highlights_only_who_was_mentioned() {
        let ps = [s("alice"), s("bob"), s("carol")];
        let alice = s("alice");
        let new = found("@bob @carol", audience(&ps, &alice, false));
        let kept = kept_by_edit(new, &[s("bob")], false);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].staff, Some(s("bob")));
    }

    #[test]
    fn pieces_skip_ranges_that_do_not_fit() {
        let r = |start, end| MentionRange {
            start,
            end,
            staff: None,
        };
        assert_eq!(pieces("ab", &[r(1, 9)]), vec![("ab", None)]);
        let rs = [r(0, 1), r(0, 1)];
        assert_eq!(pieces("ab", &rs).len(), 2);
    }
}
