//! Read positions for "Seen" (see [`crate::seen_by`]): which watermarks each participant may
//! know of the others, and the `seen` frames an event or a changed preference causes. Reads
//! stay private events; this shares only where a watermark stands, with the people in the
//! same conversation, and never for someone who hides it (who then sees nobody's).

use super::Engine;
use crate::ids::{ConversationId, StaffId};
use crate::protocol::{Event, ReadPosition, ServerFrame};
use crate::staff_keys::StaffKey;

/// Frames for groups of recipients: each frame is encoded once.
pub type Addressed = Vec<(Vec<StaffKey>, ServerFrame)>;

impl Engine {
    /// Sets whether `staff` hides their read state; whether it changed. A preference of the
    /// staff member's, kept by the host beside the staff table (not in the log).
    pub fn set_read_state_hidden(&mut self, staff: &StaffId, hidden: bool) -> bool {
        match self.staff.get_mut(staff) {
            Some(r) if r.hide_read_state != hidden => {
                r.hide_read_state = hidden;
                true
            }
            _ => false,
        }
    }

    /// Whether `staff` hides their read state.
    pub fn hides_read_state(&self, staff: &StaffId) -> bool {
        self.staff.get(staff).is_some_and(|r| r.hide_read_state)
    }

    /// What `viewer` may know of the other participants' watermarks in `conversation`.
    pub fn read_positions(&self, viewer: &StaffId, conversation: ConversationId) -> Vec<ReadPosition> {
        if self.hides_read_state(viewer) {
            return Vec::new();
        }
        let Some(c) = self.conversation(conversation) else {
            return Vec::new();
        };
        c.participants
            .iter()
            .filter(|p| *p != viewer && !self.hides_read_state(p))
            .filter_map(|p| {
                let last_read = self.projection.last_read(p, conversation)?;
                Some(ReadPosition {
                    staff: p.clone(),
                    last_read: Some(last_read),
                })
            })
            .collect()
    }

    /// The `seen` frames for every conversation of `viewer` (after a snapshot or a replay).
    pub fn all_read_positions(&self, viewer: &StaffId) -> Vec<ServerFrame> {
        if self.hides_read_state(viewer) {
            return Vec::new();
        }
        self.projection
            .conversations_of(viewer)
            .into_iter()
            .filter_map(|(conversation, ..)| {
                let seen = self.read_positions(viewer, conversation);
                (!seen.is_empty()).then_some(ServerFrame::Seen { conversation, seen })
            })
            .collect()
    }

    /// What a batch of applied events does to read positions: the frames to send now (a
    /// newcomer learns everyone's), and whose positions moved where (a read, a mark unread, a
    /// send, which reads what came before it; a newcomer starts at the head), for
    /// [`seen_frames`](Self::seen_frames), which the relay calls at most once a second.
    pub fn seen_changes<'a>(
        &self,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> (Addressed, Vec<(ConversationId, StaffId)>) {
        let mut now = Vec::new();
        let mut moved = Vec::new();
        for event in events {
            let (conversation, staff) = match event {
                Event::MessagesRead {
                    conversation, staff, ..
                }
                | Event::MarkedUnread {
                    conversation, staff, ..
                } => (*conversation, staff),
                // A reply moves no conversation watermark (its thread's are not shared).
                Event::MessageCreated { message } if message.thread.is_none() => {
                    (message.conversation, &message.sender)
                }
                Event::ParticipantAdded {
                    conversation, staff, ..
                } => {
                    if let Some(key) = self.key(staff) {
                        let seen = self.read_positions(staff, conversation.id);
                        if !seen.is_empty() {
                            let conversation = conversation.id;
                            now.push((vec![key], ServerFrame::Seen { conversation, seen }));
                        }
                    }
                    (conversation.id, staff)
                }
                _ => continue,
            };
            moved.push((conversation, staff.clone()));
        }
        (now, moved)
    }

    /// The `seen` frames for positions that moved: one per conversation, with each moved
    /// position as it is now, to its participants who see read states (not to the one whose
    /// position it is, when it is alone in the frame). Hidden positions are left out.
    pub fn seen_frames(&self, moved: &[(ConversationId, StaffId)]) -> Addressed {
        let mut moved: Vec<&(ConversationId, StaffId)> = moved
            .iter()
            .filter(|(_, staff)| !self.hides_read_state(staff))
            .collect();
        moved.sort_unstable();
        moved.dedup();
        let mut out = Vec::new();
        for group in moved.chunk_by(|a, b| a.0 == b.0) {
            let conversation = group[0].0;
            let seen: Vec<ReadPosition> = group
                .iter()
                .filter_map(|(_, staff)| {
                    let last_read = self.projection.last_read(staff, conversation)?;
                    Some(ReadPosition {
                        staff: staff.clone(),
                        last_read: Some(last_read),
                    })
                })
                .collect();
            let to: Vec<StaffKey> = self
                .conversation(conversation)
                .map(|c| {
                    c.participants
                        .iter()
                        .filter(|p| !self.hides_read_state(p))
                        .filter(|p| !(seen.len() == 1 && seen[0].staff == **p))
                        .filter_map(|p| self.key(p))
                        .collect()
                })
                .unwrap_or_default();
            if !seen.is_empty() && !to.is_empty() {
                out.push((to, ServerFrame::Seen { conversation, seen }));
            }
        }
        out
    }

    /// After `staff` changed their preference: a `preferences` frame to their tabs (with
    /// everyone's positions when they share again), and their position (or its withdrawal)
    /// to everyone they share a conversation with.
    pub fn preference_frames(&self, staff: &StaffId) -> Addressed {
        let hidden = self.hides_read_state(staff);
        let mut out = Vec::new();
        if let Some(key) = self.key(staff) {
            let mine = std::iter::once(ServerFrame::Preferences {
                hide_read_state: hidden,
            })
            .chain(self.all_read_positions(staff))
            .map(|f| (vec![key], f));
            out.extend(mine);
        }
        for (conversation, last_read, _) in self.projection.conversations_of(staff) {
            let to = self.sharing_with(staff, conversation);
            if to.is_empty() {
                continue;
            }
            let seen = vec![ReadPosition {
                staff: staff.clone(),
                last_read: (!hidden).then_some(last_read),
            }];
            out.push((to, ServerFrame::Seen { conversation, seen }));
        }
        out
    }

    /// The other participants of `conversation` who see read states.
    fn sharing_with(&self, staff: &StaffId, conversation: ConversationId) -> Vec<StaffKey> {
        self.conversation(conversation)
            .map(|c| {
                c.participants
                    .iter()
                    .filter(|p| *p != staff && !self.hides_read_state(p))
                    .filter_map(|p| self.key(p))
                    .collect()
            })
            .unwrap_or_default()
    }
}
