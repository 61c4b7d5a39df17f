//! Requests that make or change conversations: a direct one (one per pair), a group, a rename.

use super::{Engine, Step, ack_for, check_group_size, check_title, pair, reject};
use crate::engine::Rejection;
use crate::ids::{ClientMsgId, ConversationId, StaffId};
use crate::model::{Conversation, ConversationKind, Notice};
use crate::protocol::{Ack, ErrorCode, Event};

impl Engine {
    pub(super) fn create_direct(&mut self, step: &mut Step<'_>, staff: &StaffId) -> Result<Ack, Rejection> {
        let author = step.author;
        self.open_direct(step, author, staff)
    }

    /// Opens (or finds) the direct conversation of `author` and `staff`, made by `author`.
    pub(super) fn open_direct(
        &mut self,
        step: &mut Step<'_>,
        author: &StaffId,
        staff: &StaffId,
    ) -> Result<Ack, Rejection> {
        if staff == author {
            return reject(
                ErrorCode::InvalidInput,
                "a direct conversation needs someone else",
            );
        }
        if !self.is_active(staff) {
            return reject(ErrorCode::NotFound, format!("no staff member {staff}"));
        }
        if let Some(id) = self.direct.get(&pair(author, staff)) {
            return Ok(ack_for(*id));
        }
        let conversation = Conversation {
            everyone_off: false,
            id: ConversationId(self.next_conversation),
            kind: ConversationKind::Direct,
            title: None,
            participants: vec![author.clone(), staff.clone()],
            created_by: author.clone(),
            created_at: step.now,
        };
        let id = conversation.id;
        let event = Event::ConversationCreated {
            conversation,
            client_id: None,
        };
        self.push(&mut step.applied, event);
        Ok(ack_for(id))
    }

    pub(super) fn create_group(
        &mut self,
        step: &mut Step<'_>,
        client_id: &ClientMsgId,
        title: &str,
        participants: &[StaffId],
    ) -> Result<Ack, Rejection> {
        let author = step.author;
        let title = check_title(title)?;
        // The creator is in the group, unless the work app's backend made it.
        let mut members = if author.is_system() {
            Vec::new()
        } else {
            vec![author.clone()]
        };
        for p in participants {
            if !self.is_active(p) {
                return reject(ErrorCode::NotFound, format!("no staff member {p}"));
            }
            if !members.contains(p) {
                members.push(p.clone());
            }
        }
        check_group_size(members.len())?;
        if members.is_empty() {
            return reject(ErrorCode::InvalidInput, "a group needs at least one participant");
        }
        let conversation = Conversation {
            everyone_off: false,
            id: ConversationId(self.next_conversation),
            kind: ConversationKind::Group,
            title: Some(title.clone()),
            participants: members,
            created_by: author.clone(),
            created_at: step.now,
        };
        let id = conversation.id;
        let event = Event::ConversationCreated {
            conversation,
            client_id: Some(client_id.clone()),
        };
        self.push(&mut step.applied, event);
        self.notice(&mut step.applied, id, author, step.now, Notice::Created { title });
        Ok(Ack {
            client_id: Some(client_id.clone()),
            ..ack_for(id)
        })
    }

    pub(super) fn rename_conversation(
        &mut self,
        step: &mut Step<'_>,
        conversation: ConversationId,
        title: &str,
    ) -> Result<Ack, Rejection> {
        self.group(step.author, conversation)?;
        let title = check_title(title)?;
        let event = Event::ConversationRenamed {
            conversation,
            title: title.clone(),
            by: step.author.clone(),
        };
        self.push(&mut step.applied, event);
        self.notice(
            &mut step.applied,
            conversation,
            step.author,
            step.now,
            Notice::Renamed { title },
        );
        Ok(ack_for(conversation))
    }
}
