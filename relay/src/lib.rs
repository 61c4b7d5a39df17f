//! Tally's relay: the only writer of truth, and a thin shell around `tally-shared`.
//!
//! - [`server`]: configuration, start-up (replaying the log into the engine), shutdown.
//! - [`listener`]: accepting sockets — the socket cap, header timeout, killing a socket.
//! - [`address`]: the client's address, behind trusted reverse proxies.
//! - [`http`]: warp routes — WebSocket, attachments, history, health, metrics, demo, files.
//! - [`attachments`]: upload (rate, quota), streamed download, collecting unreferenced files.
//! - [`session`]: one WebSocket — hello, the read loop, the write loop, heartbeats.
//! - [`core`]: the single writer thread — engine, group commit, fan-out, retained log.
//! - [`hub`]: each staff member's connections and their bounded queues.
//! - [`storage`]: SQLite in WAL mode — the event log, messages, staff, attachments.
//! - [`auth`]: HS256 tokens and the signing secret.
//! - [`limits`]: rate limits and connection caps.
//! - [`metrics`]: counters and histograms in the Prometheus format.
//! - [`demo`]: demo staff and conversations.
//!
//! It holds no count logic of its own: every count it sends comes from the shared projection.

pub mod address;
pub mod attachments;
pub mod auth;
pub mod core;
pub mod demo;
pub mod http;
pub mod hub;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod server;
pub mod session;
pub mod storage;

pub use server::{Config, Running, start};
