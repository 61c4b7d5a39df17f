//! How the relay runs: every setting `serve` takes, with its default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::storage::Durability;

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the database, secret and attachments live.
    pub data: PathBuf,
    /// The built frontend to serve, if any.
    pub static_dir: Option<PathBuf>,
    /// Seed demo staff and offer the sign-in picker.
    pub demo: bool,
    /// How hard commits wait for the disk.
    pub durability: Durability,
    /// Events kept in memory for resuming clients.
    pub retain_events: usize,
    /// Bytes of events kept in memory for resuming clients.
    pub retain_bytes: usize,
    /// When the engine's state is checkpointed.
    pub checkpoints: crate::checkpoints::Policy,
    /// Origins (besides the relay's own) allowed to open WebSockets.
    pub allowed_origins: Vec<String>,
    /// Frames queued per connection before it is closed as a slow consumer.
    pub queue_frames: usize,
    /// Rate limits and connection caps.
    pub limits: crate::limits::Limits,
    /// Most writes per group commit.
    pub max_batch: usize,
    /// Bytes queued per connection before it is closed as a slow consumer.
    pub queue_bytes: usize,
    /// Most open sockets (HTTP and WebSocket); unauthenticated ones are evicted to make room.
    pub max_sockets: usize,
    /// Longest a client may take to send request headers, and longest an idle keep-alive
    /// connection stays open.
    pub header_timeout: Duration,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` name the client.
    pub trusted_proxies: Vec<crate::address::Cidr>,
    /// Serve `/metrics` on this address only (not on the main one).
    pub metrics_listen: Option<SocketAddr>,
    /// Longest token lifetime (`exp - iat`) accepted.
    pub max_token_ttl: Duration,
    /// Clock skew tolerated on token times.
    pub token_leeway: Duration,
    /// How long an uploaded file attached to no live message is kept.
    pub attachment_grace: Duration,
    /// How long someone has had unread messages, with no connection open, before an
    /// `unread_reminder` webhook fires for them (once per quiet spell).
    pub reminder_after: Duration,
    /// A PEM file of CA certificates trusted for `https://` webhooks besides the system's.
    pub webhook_ca: Option<PathBuf>,
    /// A cluster's PostgreSQL (none: this node's SQLite is the truth).
    pub postgres: Option<String>,
    /// The NATS server a cluster's nodes ring each other on.
    pub nats: Option<String>,
}

impl Config {
    /// Defaults for a data directory.
    pub fn new(data: impl Into<PathBuf>) -> Self {
        Config {
            data: data.into(),
            static_dir: None,
            demo: false,
            durability: Durability::Full,
            retain_events: 100_000,
            retain_bytes: RETAIN_BYTES,
            checkpoints: crate::checkpoints::Policy::default(),
            allowed_origins: Vec::new(),
            queue_frames: crate::hub::QUEUE_FRAMES,
            limits: crate::limits::Limits::default(),
            max_batch: crate::core::MAX_BATCH,
            queue_bytes: crate::hub::QUEUE_BYTES,
            max_sockets: crate::listener::default_cap(),
            header_timeout: HEADER_TIMEOUT,
            trusted_proxies: Vec::new(),
            metrics_listen: None,
            max_token_ttl: crate::auth::MAX_TOKEN_TTL,
            token_leeway: Duration::from_secs(crate::auth::LEEWAY_SECS),
            attachment_grace: crate::files::GRACE,
            reminder_after: REMINDER_AFTER,
            webhook_ca: None,
            postgres: None,
            nats: None,
        }
    }
}

/// The default bound on the retained resume log's bytes.
pub const RETAIN_BYTES: usize = 64 << 20;

/// The default quiet time before an `unread_reminder`.
pub const REMINDER_AFTER: Duration = Duration::from_secs(15 * 60);

/// The default header-read and keep-alive idle timeout.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(15);
