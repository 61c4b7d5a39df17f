//! Moving between conversations from the keyboard: the quick switcher's candidates
//! (conversations and people, by name, unread first) and the next or previous conversation
//! (or unread one) in the list's order. Pure functions over the store, so the widget only
//! wires keys to them and every rule here is tested natively.

use crate::ids::{ConversationId, StaffId};
use crate::model::{ConversationKind, Counts};
use crate::store::ChatStore;

/// Most candidates the switcher lists.
pub const SWITCHER_SHOWN: usize = 12;

/// How well a name (or an id) matches what was typed, lower is better: `0` when the name or
/// the id starts with it, `1` when a word of the name does, `2` when either contains it;
/// `None` when neither does. Case is ignored; an empty query matches everything with `0`.
/// The mention picker ranks people by the same rule.
pub fn match_score(name: &str, id: &str, query: &str) -> Option<u8> {
    let q = query.trim().to_lowercase();
    let (name, id) = (name.to_lowercase(), id.to_lowercase());
    if name.starts_with(&q) || id.starts_with(&q) {
        Some(0)
    } else if name.split_whitespace().any(|w| w.starts_with(&q)) {
        Some(1)
    } else if name.contains(&q) || id.contains(&q) {
        Some(2)
    } else {
        None
    }
}

/// Where a switcher candidate leads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A conversation I am in.
    Conversation(ConversationId),
    /// Someone I have no direct conversation with yet (choosing them opens one).
    Person(StaffId),
}

/// One line of the quick switcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Where it leads.
    pub target: Target,
    /// What it is called (a group's title, the other person's name, a person's name).
    pub title: String,
    /// My counts there (zero for a person).
    pub counts: Counts,
    /// Muted by me.
    pub muted: bool,
    /// A direct conversation or a person (for the icon).
    pub direct: bool,
}

impl Candidate {
    /// Whether it has something for me: a mention anywhere, or unread in an unmuted
    /// conversation (what "unread first" and "next unread" go by).
    pub fn wants_me(&self) -> bool {
        self.counts.mentions > 0 || (self.counts.unread > 0 && !self.muted)
    }
}

impl ChatStore {
    /// The quick switcher's candidates for `query`: my conversations and the people of the
    /// directory I have no direct conversation with, that match by name (or id); those with
    /// something for me first (mentions before plain unread), then by how well they match,
    /// conversations before people, then the most recent. At most `limit`.
    pub fn switch_candidates(&self, query: &str, limit: usize) -> Vec<Candidate> {
        let me = self.me().cloned();
        let mut direct_with: Vec<StaffId> = Vec::new();
        // (rank, score, position in the list) per candidate; the list is most recent first.
        let mut ranked: Vec<((u8, u8, u8, usize), Candidate)> = Vec::new();
        for (at, item) in self.conversation_list().into_iter().enumerate() {
            let other = (item.kind == ConversationKind::Direct)
                .then(|| {
                    self.conversation(item.id).and_then(|v| {
                        v.conversation
                            .participants
                            .iter()
                            .find(|p| Some(*p) != me.as_ref())
                            .cloned()
                    })
                })
                .flatten();
            let id = other.as_ref().map_or(String::new(), |o| o.as_str().to_string());
            if let Some(o) = other {
                direct_with.push(o);
            }
            let Some(score) = match_score(&item.title, &id, query) else {
                continue;
            };
            let c = Candidate {
                target: Target::Conversation(item.id),
                title: item.title,
                counts: item.counts,
                muted: item.muted,
                direct: item.kind == ConversationKind::Direct,
            };
            let rank = if c.counts.mentions > 0 {
                0
            } else if c.wants_me() {
                1
            } else {
                2
            };
            ranked.push(((rank, score, 0, at), c));
        }
        for (at, (staff, name)) in self.directory().into_iter().enumerate() {
            if Some(&staff) == me.as_ref() || direct_with.contains(&staff) {
                continue;
            }
            let Some(score) = match_score(&name, staff.as_str(), query) else {
                continue;
            };
            let c = Candidate {
                target: Target::Person(staff),
                title: name,
                counts: Counts::default(),
                muted: false,
                direct: true,
            };
            ranked.push(((2, score, 1, at), c));
        }
        ranked.sort_by_key(|(key, _)| *key);
        ranked.into_iter().take(limit).map(|(_, c)| c).collect()
    }

    /// The conversation `step` places from `from` in the list's order (most recent first;
    /// `step` > 0 goes down the list): with `unread`, the next one in that direction that has
    /// something for me, wrapping around and never `from` itself. Without `unread` it stops
    /// at the ends. With nothing open, the first (or last) one.
    pub fn step_conversation(
        &self,
        from: Option<ConversationId>,
        step: i32,
        unread: bool,
    ) -> Option<ConversationId> {
        let items = self.conversation_list();
        let n = items.len() as i64;
        if n == 0 || step == 0 {
            return None;
        }
        let wants = |i: usize| {
            let it = &items[i];
            it.counts.mentions > 0 || (it.counts.unread > 0 && !it.muted)
        };
        let here = from.and_then(|f| items.iter().position(|i| i.id == f));
        let dir = i64::from(step.signum());
        if !unread {
            let next = match here {
                None if dir > 0 => 0,
                None => n - 1,
                Some(h) => (h as i64 + i64::from(step)).clamp(0, n - 1),
            };
            let next = items[next as usize].id;
            return (Some(next) != from).then_some(next);
        }
        let start = match here {
            Some(h) => h as i64,
            None if dir > 0 => -1,
            None => n,
        };
        (1..=n)
            .map(|k| (start + dir * k).rem_euclid(n) as usize)
            .find(|&i| Some(items[i].id) != from && wants(i))
            .map(|i| items[i].id)
    }
}
