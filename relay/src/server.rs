//! Wiring: configuration, the core thread, warp routes, and graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use warp::Filter;

use crate::auth::Keys;
use crate::core::{Command, Core};
use crate::limits::{Buckets, Kind};
use crate::metrics::Metrics;
use crate::storage::{self, Durability};
use crate::{demo, http};

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
    /// Origins (besides the relay's own) allowed to open WebSockets.
    pub allowed_origins: Vec<String>,
    /// Frames queued per connection before it is closed as a slow consumer.
    pub queue_frames: usize,
    /// Rate limits and connection caps.
    pub limits: crate::limits::Limits,
    /// Most writes per group commit.
    pub max_batch: usize,
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
            allowed_origins: Vec::new(),
            queue_frames: crate::hub::QUEUE_FRAMES,
            limits: crate::limits::Limits::default(),
            max_batch: crate::core::MAX_BATCH,
        }
    }
}

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
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
}

impl AppState {
    /// Asks the core something and waits for the answer.
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.core.send(make(tx)).await.ok()?;
        rx.await.ok()
    }
}

/// A running relay.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    state: AppState,
    stop_http: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
    core: std::thread::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, flushes pending writes, closes every socket with going-away.
    pub async fn shutdown(self) {
        let _ = self.stop_http.send(());
        if let Some(()) = self.state.ask(|done| Command::Shutdown { done }).await {
            tracing::info!("core flushed and stopped");
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
        let _ = tokio::task::spawn_blocking(move || self.core.join()).await;
    }
}

/// Starts the relay on a bound listener.
pub async fn start(config: Config, listener: TcpListener) -> anyhow::Result<Running> {
    let secret = crate::auth::load_secret(&{
        std::fs::create_dir_all(&config.data)?;
        config.data.clone()
    })?;
    let keys = Keys::new(&secret);
    let metrics = Arc::new(Metrics::default());
    std::fs::create_dir_all(config.data.join("attachments"))?;
    let conn = storage::open(&config.data, config.durability)?;
    let mut core = Core::load(
        conn,
        config.retain_events,
        config.queue_frames / 2,
        metrics.clone(),
    )?;
    core.set_connection_cap(config.limits.connections_per_staff);
    core.set_max_batch(config.max_batch);
    if config.demo {
        demo::seed(&mut core)?;
    }
    let (tx, rx) = mpsc::channel(4096);
    let core_thread = std::thread::Builder::new()
        .name("tally-core".into())
        .spawn(move || core.run(rx))?;
    let state = AppState {
        core: tx,
        keys,
        metrics,
        config: Arc::new(config),
        staff_buckets: Arc::default(),
        address_buckets: Arc::default(),
    };

    // The staff CLI writes to the database directly; pick its changes up every second.
    let ticker = state.core.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            if ticker.send(Command::ReloadStaff).await.is_err() {
                break;
            }
        }
    });

    let addr = listener.local_addr()?;
    // Events are small frames that must leave at once: without TCP_NODELAY a frame written
    // while the previous one is unacknowledged waits for the peer's delayed ACK (up to 40 ms).
    // warp accepts the connections itself; on Linux they inherit the option from the listener.
    socket2::SockRef::from(&listener).set_tcp_nodelay(true)?;
    let routes = http::routes(state.clone()).with(warp::trace::request());
    let (stop_http, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        warp::serve(routes)
            .incoming(listener)
            .graceful(async {
                let _ = stopped.await;
            })
            .run(),
    );
    tracing::info!(%addr, "relay listening");
    Ok(Running {
        addr,
        state,
        stop_http,
        server,
        core: core_thread,
    })
}
