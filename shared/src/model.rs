//! Domain types: staff, conversations, messages, attachments, and the counts a widget shows.

use serde::{Deserialize, Serialize};

use crate::tagged;

use crate::ids::{AttachmentId, ClientMsgId, ConversationId, MessageId, Millis, Seq, StaffId};
use crate::mentions::MentionRange;
use crate::reactions::Reaction;

/// A staff member of the work app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staff {
    /// Stable id, as the work app names them.
    pub id: StaffId,
    /// Display name.
    pub name: String,
}

/// Direct (exactly two staff, one conversation per pair) or group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    /// Two staff; at most one per pair.
    Direct,
    /// A titled group of staff.
    Group,
}

/// A conversation and who is in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// Its id.
    pub id: ConversationId,
    /// Direct or group.
    pub kind: ConversationKind,
    /// A group's title; `None` for direct conversations, which take the other person's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The current participants, in the order they joined.
    pub participants: Vec<StaffId>,
    /// Who created it (a group's owner).
    pub created_by: StaffId,
    /// When it was created.
    pub created_at: Millis,
    /// A group whose owner turned `@here` / `@all` off: they mention nobody there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub everyone_off: bool,
}

impl Conversation {
    /// Whether `@here` / `@all` mention every participant here.
    pub fn everyone_mentions(&self) -> bool {
        self.kind == ConversationKind::Group && !self.everyone_off
    }
}

tagged::tagged_enum! {
    /// What a system notice says happened. Notices are messages: they have a `seq`, a sender (the
    /// staff member who acted) and count as unread for everyone else, like any message.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    #[serde(tag = "notice", rename_all = "snake_case")]
    pub enum Notice, decoded as NoticeFields {
        /// A group was created with this title.
        Created {
            /// The title it was given.
            title: String,
        },
        /// A group was renamed.
        Renamed {
            /// The new title.
            title: String,
        },
        /// A participant was added.
        ParticipantAdded {
            /// Who was added.
            staff: StaffId,
        },
        /// A participant was removed (by themselves: they left).
        ParticipantRemoved {
            /// Who was removed.
            staff: StaffId,
        },
        /// The work app posted a notice (through the service API): a title, and the text in the
        /// message's body. Its sender is [`StaffId::system`] unless a staff member acted.
        System {
            /// What it is about.
            title: String,
        },
    }
}

// Decoded with the tag first (see `tagged`), without serde's buffering.
tagged::map_deserialize!(Notice, "a notice object, `notice` first", |map| {
    let lead = tagged::lead(&mut map, "notice")?;
    if lead.offset.is_some() {
        return Err(serde::de::Error::custom("a notice has no offset"));
    }
    NoticeFields::deserialize(tagged::Rest::new(lead.tag, map)).map(Notice::from)
});

/// A file attached to a message, stored by the relay under its content address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Content address.
    pub id: AttachmentId,
    /// File name as uploaded (for display and download only).
    pub name: String,
    /// Media type, sniffed from the content by the relay.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
}

/// The message a reply quotes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyRef {
    /// The quoted message.
    pub message: MessageId,
    /// Its position in the conversation.
    pub seq: Seq,
    /// Who wrote it.
    pub sender: StaffId,
    /// Its first characters, as they were when quoted (empty once it is deleted).
    pub excerpt: String,
    /// The quoted message was deleted: its excerpt is gone everywhere.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl ReplyRef {
    /// Forgets the quoted text: its message was deleted.
    pub fn redact(&mut self) {
        self.excerpt.clear();
        self.deleted = true;
    }
}

/// Where a forwarded message came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardRef {
    /// The source conversation.
    pub conversation: ConversationId,
    /// The source message.
    pub message: MessageId,
    /// Who wrote the original.
    pub sender: StaffId,
}

/// A message: text with optional attachments, reply quote and forward origin, or a notice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Global id.
    pub id: MessageId,
    /// The conversation it belongs to.
    pub conversation: ConversationId,
    /// Its position there.
    pub seq: Seq,
    /// The authenticated staff member who wrote it (never a field a client sets).
    pub sender: StaffId,
    /// Text; empty when deleted, or for a message of attachments only.
    pub body: String,
    /// Participants it mentions (see [`crate::mentions`]), fixed when sent: edits do not change
    /// it. What counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<StaffId>,
    /// Where the body mentions them: what a widget highlights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mention_ranges: Vec<MentionRange>,
    /// Emoji reactions, in the order they were first put on it. They never count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<Reaction>,
    /// Attached files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// The message this one replies to. (This and the next two are boxed: most messages have
    /// none of them, and a browser keeps every message it has loaded.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Box<ReplyRef>>,
    /// The message this one forwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_from: Option<Box<ForwardRef>>,
    /// For a reply in a thread: the seq of the thread's root (a top-level message of the same
    /// conversation). Replies share the conversation's numbering, but never count in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<Seq>,
    /// Set for system notices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<Box<Notice>>,
    /// The sender's client-made id, for their own outbox to recognise it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientMsgId>,
    /// When the relay accepted it.
    pub created_at: Millis,
    /// When it was last edited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<Millis>,
    /// Deleted messages stay as tombstones so that sequences have no holes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl Message {
    /// Applies an edit: new text, where it mentions people, and when.
    pub fn edit(&mut self, body: &str, ranges: &[MentionRange], at: Millis) {
        self.body.clear();
        self.body.push_str(body);
        self.mention_ranges = ranges.to_vec();
        self.edited_at = Some(at);
    }

    /// Turns the message into a tombstone: no text, no files, no reactions. (Whom it mentioned
    /// stays: a deletion is counted by it.)
    pub fn tombstone(&mut self) {
        self.deleted = true;
        self.body.clear();
        self.mention_ranges.clear();
        self.reactions.clear();
        self.attachments.clear();
        self.reply_to = None;
    }

    /// Redacts this message's quote of `deleted`, if it quotes it; true if it did.
    pub fn redact_quote_of(&mut self, deleted: MessageId) -> bool {
        match self.reply_to.as_deref_mut() {
            Some(r) if r.message == deleted && !r.deleted => {
                r.redact();
                true
            }
            _ => false,
        }
    }
}

/// One staff member's counts in one conversation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Messages by others after the watermark, not deleted.
    pub unread: u32,
    /// Of those, the ones that mention this staff member.
    pub mentions: u32,
}

/// One staff member's totals over the conversations they have not muted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Sum of unread over unmuted conversations.
    pub unread: u32,
    /// Sum of mentions over unmuted conversations.
    pub mentions: u32,
}
