//! Every size and count limit, one table, read by the relay (to refuse) and the widget (to warn).

/// Longest message body, in bytes of UTF-8.
pub const BODY_MAX_BYTES: usize = 8 * 1024;
/// Most attachments on one message.
pub const ATTACHMENTS_PER_MESSAGE_MAX: usize = 10;
/// Largest attachment, in bytes.
pub const ATTACHMENT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Longest attachment file name, in bytes.
pub const ATTACHMENT_NAME_MAX: usize = 200;
/// Most participants of a group conversation, its creator included.
pub const GROUP_PARTICIPANTS_MAX: usize = 256;
/// Longest conversation title, in bytes.
pub const TITLE_MAX_BYTES: usize = 120;
/// Longest staff id.
pub const STAFF_ID_MAX: usize = 64;
/// Longest staff display name, in bytes.
pub const STAFF_NAME_MAX_BYTES: usize = 120;
/// Longest client-made message id.
pub const CLIENT_ID_MAX: usize = 64;
/// Largest client frame, in bytes: the body limit plus room for the envelope and escaping.
pub const CLIENT_FRAME_MAX_BYTES: usize = BODY_MAX_BYTES * 6 + 4 * 1024;
/// Largest WebSocket frame the relay accepts (a client frame is never fragmented further).
pub const WS_FRAME_MAX_BYTES: usize = CLIENT_FRAME_MAX_BYTES;
/// Messages of each conversation that a snapshot always carries, when it has them.
pub const SNAPSHOT_RECENT_MESSAGES: u64 = 50;
/// Most messages of one conversation in a snapshot: the whole unread range up to this many,
/// so that reading them can be counted by the widget itself.
pub const SNAPSHOT_MAX_MESSAGES: u64 = 200;
/// Most bytes of messages (as JSON) a snapshot carries of one conversation: its newest message
/// whatever its size, then older ones of its window while they fit. A widget pages the rest
/// through history.
pub const SNAPSHOT_CONVERSATION_BYTES: usize = 64 * 1024;
/// Most bytes of messages a whole snapshot carries, so that its size depends on how many
/// conversations one is in, never on how long or how many their messages are. Conversations
/// with unread messages come first, then the most recently active.
pub const SNAPSHOT_MESSAGE_BYTES: usize = 512 * 1024;
/// Most messages in one history page.
pub const HISTORY_PAGE_MAX: u64 = 200;
/// Most bytes of messages (as JSON) in one history page or page of search results; a page always
/// holds at least one message, and the next page starts where it ended.
pub const PAGE_MAX_BYTES: usize = 256 * 1024;
/// Most mention ranges in one message.
pub const MENTIONS_PER_MESSAGE_MAX: usize = 50;
/// Most different emoji on one message.
pub const REACTIONS_PER_MESSAGE_MAX: usize = 50;
/// Most emoji one person puts on one message.
pub const REACTIONS_PER_PERSON_MAX: usize = 20;
/// Longest reaction emoji, in characters (a family or a subdivision flag is 7).
pub const EMOJI_MAX_CHARS: usize = 16;
/// Longest reaction emoji, in bytes of UTF-8.
pub const EMOJI_MAX_BYTES: usize = 48;
/// Characters of a quoted message kept in a reply.
pub const REPLY_EXCERPT_CHARS: usize = 140;
/// Most staff ids that may be added in one request.
pub const ADD_PARTICIPANTS_MAX: usize = 64;
/// How long the relay remembers a client-made id after its write, in milliseconds: a retry
/// within this time gets the first acknowledgement; an outbox must not retry an older write by
/// itself.
pub const CLIENT_ID_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;
/// Most client-made ids remembered per staff member (the oldest are forgotten first).
pub const CLIENT_IDS_PER_STAFF: usize = 1000;
/// Most client-made ids remembered for the service's own writes (notices, by `system`): one
/// author for every notice of the company, whose outbox may retry one after thousands of others.
pub const CLIENT_IDS_OF_SERVICE: usize = 200_000;
/// Media types the relay serves inline and the widget previews (everything else downloads).
pub const INLINE_IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];
