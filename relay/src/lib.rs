//! Tally's relay: the only writer of truth, and a thin shell around `tally-shared`.
//!
//! - [`config`]: every setting of `serve`, with its default.
//! - [`server`]: start-up (replaying the log into the engine), the listeners, shutdown.
//! - [`state`]: what every handler and session shares (`AppState`).
//! - [`listener`]: accepting sockets — the socket cap, header timeout, killing a socket.
//! - [`paced`]: request bodies that must keep arriving (a minimum rate after a grace).
//! - [`address`]: the client's address, behind trusted reverse proxies.
//! - [`http`]: warp routes — WebSocket, attachments, history, health, metrics, demo, files.
//! - [`upgrade`]: the WebSocket upgrade — Origin, the per-address budget, the handshake.
//! - [`service`]: the service API (`/api/v1/service/…`) the work app's backend calls.
//! - [`service_keys`]: the keys it presents, stored hashed.
//! - [`rejection`]: every HTTP refusal as a JSON body with a stable code.
//! - [`cors`]: cross-origin embedding for `--allow-origin` origins: headers and preflights.
//! - [`pages`]: the built frontend, its caching, and the security headers and policy.
//! - [`attachments`]: upload (rate, quota) and streamed download over HTTP, sniffing.
//! - [`files`]: where attachment bytes live, the quota, collecting unreferenced files.
//! - [`session`]: one WebSocket — hello, the read loop, the write loop, heartbeats.
//! - [`checkpoints`]: the engine's state saved every so often, loaded at start; the follower
//!   thread that writes them.
//! - [`core`]: the single writer thread — engine, group commit, fan-out, retained log.
//! - [`reads`]: snapshots and history pages built on worker threads, at the core's state.
//! - [`hub`]: each staff member's connections and their bounded queues.
//! - [`import`]: another chat's history from a JSON-lines file, idempotently, all or nothing.
//! - [`maintenance`]: `check` (every count, and the newest checkpoint, against the log) and
//!   `restore`.
//! - [`storage`]: SQLite in WAL mode — the event log, messages, staff, attachments.
//! - [`webhooks`]: signed deliveries to the work app from the durable outbox; reminders.
//! - [`auth`]: HS256 tokens and the signing secret.
//! - [`limits`]: rate limits and connection caps.
//! - [`metrics`]: counters and histograms in the Prometheus format.
//! - [`demo`]: demo staff and conversations.
//!
//! It holds no count logic of its own: every count it sends comes from the shared projection.

pub mod address;
pub mod attachments;
pub mod auth;
pub mod checkpoints;
pub mod config;
pub mod core;
pub mod cors;
pub mod demo;
pub mod doorbell;
pub mod files;
pub mod http;
pub mod hub;
pub mod import;
pub mod limits;
pub mod listener;
pub mod maintenance;
pub mod metrics;
pub mod order;
pub mod paced;
pub mod packed;
pub mod pages;
pub mod pg;
pub mod postgres;
pub mod reads;
pub mod rejection;
pub mod search;
pub mod server;
pub mod service;
pub mod service_keys;
pub mod session;
pub mod state;
pub mod storage;
pub mod upgrade;
pub mod webhooks;

pub use config::Config;
pub use server::{Running, start};
