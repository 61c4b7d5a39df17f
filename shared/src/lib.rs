//! Tally's sans-IO core, shared by the relay and the browser.
//!
//! Tally's unread counts are never wrong because no write path updates a count: every accepted
//! write appends events to one log, and counts are a projection of that log computed here,
//! by the same code, in the relay and in the browser. This crate has no I/O, no clocks and no
//! async runtime; it builds for native targets and for `wasm32-unknown-unknown`.
//!
//! A tour, from the outside in:
//!
//! - [`ids`]: newtypes for every id (`StaffId`, `ConversationId`, `MessageId`, `Seq`, `Offset`).
//! - [`model`]: staff, conversations, messages, attachments, counts.
//! - [`markup`]: the Markdown subset messages may use, parsed into a tree no text escapes.
//! - [`mentions`]: who a message mentions (ranges of its text, found or sent), and `@here`.
//! - [`reactions`]: emoji on messages, which never count.
//! - [`limits`]: every size and count limit, one table, used by both sides.
//! - [`protocol`]: client and server frames (JSON, tagged by `type`), events, error codes.
//! - [`unread`]: the projection — the counting rules and nothing else.
//! - [`digest`]: the fingerprint of one staff member's whole count state, kept incrementally.
//! - [`staff_keys`]: interned staff, the keys the projection indexes by and the relay routes by.
//! - [`client_ids`]: which write each client-made id made, remembered for a bounded time.
//! - [`checkpoint`]: the engine's state at an offset as checked bytes, so a start replays only
//!   the log after it.
//! - [`engine`]: validates each request and turns it into events; applies events. The relay is
//!   a shell around it.
//! - [`typing`]: who is typing where, as a store sees it (ephemeral, never counted).
//! - [`read_by`]: another system's per-message reads as watermarks (the importer's rule).
//! - [`store`]: `ChatStore`, the reducer the browser runs as its `chatStore`.
//! - [`text`]: a message's text as shown: plain text and the links in it.
//!
//! Behind the `testing` feature (tests, benchmarks, fuzzing, the load generator):
//!
//! - `oracle`: the naive scan the tests and the load generator compare everything with.
//! - `memory`: an in-memory host for the engine (messages, attachments, snapshots).
//! - `sim`: engine + stores + oracle stepped together, for property tests and fuzzing.

pub mod checkpoint;
pub mod client_ids;
pub mod digest;
pub mod engine;
pub mod ids;
pub mod limits;
pub mod markup;
#[cfg(feature = "testing")]
pub mod memory;
pub mod mentions;
pub mod model;
pub mod navigate;
#[cfg(feature = "oracle")]
pub mod oracle;
pub mod protocol;
pub mod quiet;
pub mod reactions;
pub mod read_by;
pub mod seen_by;
mod seq_index;
#[cfg(feature = "testing")]
pub mod sim;
pub mod staff_keys;
pub mod store;
mod tagged;
pub mod text;
pub mod typing;
pub mod unread;

pub use engine::{Engine, Lookup, Outcome, Rejection};
pub use ids::{
    AttachmentId, ClientMsgId, ConversationId, MessageId, Millis, Offset, RequestId, Seq, StaffId,
};
pub use model::{Attachment, Conversation, ConversationKind, Counts, Message, Staff, Totals};
pub use protocol::{
    Budget, ClientFrame, ErrorCode, Event, LogRequest, LogWrite, LoggedEvent, Request, Route, Routed,
    ServerFrame,
};
pub use store::ChatStore;
pub use unread::{Tracking, UnreadProjection};
