//! Requests that change who is in a group: add participants, remove one (or leave).

use super::{Engine, Step, ack_for, check_group_size, reject};
use crate::engine::Rejection;
use crate::ids::{ConversationId, StaffId};
use crate::limits;
use crate::model::Notice;
use crate::protocol::{Ack, ErrorCode, Event};

impl Engine {
    pub(super) fn add_participants(
        &mut self,
        step: &mut Step<'_>,
        conversation: ConversationId,
        staff: &[StaffId],
    ) -> Result<Ack, Rejection> {
        let c = self.group(step.author, conversation)?;
        if staff.is_empty() || staff.len() > limits::ADD_PARTICIPANTS_MAX {
            let max = limits::ADD_PARTICIPANTS_MAX;
            return reject(ErrorCode::InvalidInput, format!("add 1 to {max} staff at a time"));
        }
        let mut joining: Vec<StaffId> = Vec::new();
        for s in staff {
            if !self.is_active(s) {
                return reject(ErrorCode::NotFound, format!("no staff member {s}"));
            }
            if !c.participants.contains(s) && !joining.contains(s) {
                joining.push(s.clone());
            }
        }
        check_group_size(c.participants.len() + joining.len())?;
        for s in joining {
            let mut after = self.conversation(conversation).cloned().expect("checked above");
            after.participants.push(s.clone());
            let event = Event::ParticipantAdded {
                conversation: after,
                staff: s.clone(),
                by: step.author.clone(),
                head: self.projection.head(conversation).unwrap_or_default(),
            };
            self.push(&mut step.applied, event);
            let notice = Notice::ParticipantAdded { staff: s };
            self.notice(&mut step.applied, conversation, step.author, step.now, notice);
        }
        Ok(ack_for(conversation))
    }

    pub(super) fn remove_participant(
        &mut self,
        step: &mut Step<'_>,
        conversation: ConversationId,
        staff: &StaffId,
    ) -> Result<Ack, Rejection> {
        let author = step.author;
        let c = self.group(author, conversation)?;
        if !c.participants.contains(staff) {
            return reject(
                ErrorCode::NotFound,
                format!("{staff} is not in this conversation"),
            );
        }
        let event = Event::ParticipantRemoved {
            conversation,
            staff: staff.clone(),
            by: author.clone(),
        };
        self.push(&mut step.applied, event);
        let still_there = self.is_participant(author, conversation);
        let remaining = self
            .conversation(conversation)
            .is_some_and(|c| !c.participants.is_empty());
        if remaining {
            // Someone who left cannot write into the group; the notice is then by nobody in
            // it, so it counts for every remaining participant.
            let by = if still_there { author } else { staff };
            let notice = Notice::ParticipantRemoved { staff: staff.clone() };
            self.notice(&mut step.applied, conversation, by, step.now, notice);
        }
        Ok(ack_for(conversation))
    }
}
