//! What every handler and session shares: the core's inbox, the keys, the metrics, the
//! configuration, the rate-limit buckets and the socket registry.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::auth::Keys;
use crate::config::Config;
use crate::core::Command;
use crate::limits::{Buckets, Kind};
use crate::metrics::Metrics;

/// What every handler shares: one allocation, so that a clone (each connection's session holds
/// a few) is a pointer, not the 184 bytes of its fields.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Shares `shared` (one allocation for the life of the relay).
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct Shared {
    /// The core's inbox.
    pub core: mpsc::Sender<Command>,
    /// Token keys.
    pub keys: Keys,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The configuration.
    pub config: Arc<Config>,
    /// Per staff member: writes and reads.
    pub staff_buckets: Arc<Buckets<(tally_shared::StaffId, Kind)>>,
    /// Per client address: connection attempts.
    pub address_buckets: Arc<Buckets<std::net::IpAddr>>,
    /// Per client address: failed service-key attempts; and the keys seen valid.
    pub key_attempts: Arc<crate::service_keys::Attempts>,
    /// Every open socket.
    pub sockets: Arc<crate::listener::Sockets>,
    /// Where searches run (off the core and its read pool).
    pub searcher: Arc<crate::search::Searcher>,
    /// In a cluster: moves upload bytes to and from PostgreSQL, off the core.
    pub sharer: Option<crate::postgres::Sharer>,
}

impl Shared {
    /// Asks the core something and waits for the answer.
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.core.send(make(tx)).await.ok()?;
        rx.await.ok()
    }
}
