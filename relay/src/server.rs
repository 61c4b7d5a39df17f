//! Wiring: the core thread, the listeners, the periodic ticks, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::auth::Keys;
use crate::config::Config;
use crate::core::{Command, Core};
use crate::metrics::Metrics;
use crate::order::{Local, Order};
use crate::postgres::Postgres;
use crate::state::AppState;
use crate::storage;
use crate::{demo, http};

/// A running relay.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    state: AppState,
    stop_http: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
    core: std::thread::JoinHandle<()>,
    /// Says why, if the core stopped on its own (storage failed).
    failed: oneshot::Receiver<crate::core::Stopped>,
    checkpoints: crate::checkpoints::Stop,
    _wal: std::sync::mpsc::Sender<()>,
    /// The data directory's lock, held until the relay is dropped.
    _lock: std::fs::File,
}

impl Running {
    /// Deletes unreferenced attachments past their grace period now (as the relay does every
    /// few minutes), and waits until it is done.
    pub async fn collect_attachments(&self) {
        let _ = self.state.core.send(Command::CollectAttachments).await;
        let _ = self.state.ask(|reply| Command::Health { reply }).await;
    }

    /// Resolves if the core stops on its own: storage failed so that what is on disk is
    /// unknown (every socket was closed with going-away). The caller shuts the relay down and
    /// exits; a restart recovers from the log. Pending for ever otherwise.
    pub async fn failed(&mut self) -> crate::core::Stopped {
        match (&mut self.failed).await {
            Ok(stopped) => stopped,
            Err(_) => std::future::pending().await,
        }
    }

    /// Stops accepting, flushes pending writes, closes every socket with going-away.
    pub async fn shutdown(self) {
        let _ = self.stop_http.send(());
        if let Some(()) = self.state.ask(|done| Command::Shutdown { done }).await {
            tracing::info!("core flushed and stopped");
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
        let _ = tokio::task::spawn_blocking(move || self.core.join()).await;
        // A last checkpoint at the log's end: the next start replays nothing.
        let (done, written) = std::sync::mpsc::channel();
        if self.checkpoints.send(done).is_ok() {
            let _ = tokio::task::spawn_blocking(move || written.recv()).await;
        }
    }
}

/// Starts the relay on a bound listener.
pub async fn start(config: Config, listener: TcpListener) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data)?;
    let lock = storage::lock(&config.data)?;
    let metrics = Arc::new(Metrics::default());
    std::fs::create_dir_all(config.data.join("attachments"))?;
    // A cluster node's SQLite is a replica that PostgreSQL can always refill: it need not wait
    // for the disk (PostgreSQL's commit is what an acknowledgement waits for).
    let durability = match config.postgres {
        Some(_) => storage::Durability::Normal,
        None => config.durability,
    };
    let conn = storage::open(&config.data, durability)?;
    let head = tally_shared::Offset(storage::last_offset(&conn)?);
    // The source of truth: this node's SQLite, or a cluster's PostgreSQL (whose client blocks,
    // so it is reached off the runtime, like everything the core does).
    let (order, secret, cluster): (Box<dyn Order>, Vec<u8>, Option<String>) = match config.postgres.clone() {
        Some(url) => {
            let (pg, secret, cluster) = off_runtime(move || {
                let mut pg = Postgres::connect(&url)?;
                let shared_head = pg.head()?;
                anyhow::ensure!(
                    head <= shared_head,
                    "this node's replica is at offset {head}, past PostgreSQL's head {shared_head}: \
                     the database was replaced or restored; move the data directory aside"
                );
                let secret = pg.secret()?;
                let cluster = pg.log_id()?;
                Ok((pg, secret, cluster))
            })?;
            storage::join_cluster(&conn, &cluster)?;
            (Box::new(pg), secret, Some(cluster))
        }
        None => (
            Box::new(Local::default()),
            crate::auth::load_secret(&config.data)?,
            None,
        ),
    };
    let keys = Keys::new(&secret, config.max_token_ttl).with_leeway(config.token_leeway);
    let log = storage::log_id(&conn)?;
    let engine = crate::checkpoints::load_latest(&config.data, &log, head, &metrics).unwrap_or_default();
    let saved = engine.offset();
    let retention = crate::core::Retention {
        events: config.retain_events,
        bytes: config.retain_bytes,
    };
    let (tx, rx) = mpsc::channel(4096);
    let bell = match &cluster {
        Some(cluster) => {
            let to_core = tx.downgrade();
            let deliver: crate::doorbell::ToCore = Arc::new(move |ask| {
                use crate::doorbell::{Ask, Taken};
                let Some(core) = to_core.upgrade() else {
                    return Taken::Gone;
                };
                let command = match ask {
                    Ask::CatchUp => Command::CatchUp,
                    Ask::Committed(head, frames) => Command::Committed(head, frames),
                    Ask::Gossip(g) => Command::Gossip(g),
                };
                match core.try_send(command) {
                    Ok(()) => Taken::Yes,
                    Err(mpsc::error::TrySendError::Full(_)) => Taken::Full,
                    Err(mpsc::error::TrySendError::Closed(_)) => Taken::Gone,
                }
            });
            let nats = config.nats.as_deref();
            let seal = crate::doorbell::Seal::new(&secret);
            Some(crate::doorbell::start(nats, cluster, seal, deliver, head, metrics.clone()).await?)
        }
        None => None,
    };
    // A replay longer than half a connection's queue (in frames or bytes) is a snapshot instead.
    let max_replay = crate::core::ReplayLimit {
        frames: config.queue_frames / 2,
        bytes: config.queue_bytes / 2,
    };
    let load_metrics = metrics.clone();
    let data = config.data.clone();
    let demo = config.demo;
    let core_log = log.clone();
    let wake = Arc::new(tokio::sync::Notify::new());
    let core_wake = wake.clone();
    let reminder_after = config.reminder_after;
    let mut core = off_runtime(move || {
        let mut core = Core::load(conn, order, engine, retention, max_replay, load_metrics)?;
        if let Some(bell) = bell {
            core.set_cluster(bell, data, core_log);
            // What the cluster committed while this node was away (all of it, for a new node).
            core.catch_up_now();
        } else {
            core.set_checkpoints(data, core_log);
        }
        if demo {
            demo::seed(&mut core)?;
        }
        core.set_webhooks(core_wake, reminder_after)?;
        Ok(core)
    })?;
    core.set_connection_cap(config.limits.connections_per_staff);
    core.set_max_batch(config.max_batch);
    core.set_files(crate::files::Files::new(
        config.data.clone(),
        config.attachment_grace,
        config.limits.upload_bytes_per_day,
    ));
    let checkpoints = crate::checkpoints::follow(
        config.data.clone(),
        log,
        core.engine_copy(),
        saved,
        config.checkpoints,
        metrics.clone(),
    )?;
    // WAL checkpoints mostly on their own thread (see `storage::checkpoint_wal`).
    let wal = storage::checkpoint_wal(&config.data, Duration::from_secs(1))?;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    // Workers hold the core's channel weakly: the pool never keeps a stopped core alive.
    let core_tx = tx.downgrade();
    let give_back: crate::reads::GiveBack = std::sync::Arc::new(move |conn| {
        core_tx
            .upgrade()
            .is_some_and(|core| core.blocking_send(Command::ReaderDone { conn }).is_ok())
    });
    core.set_reads(crate::reads::ReadPool::start(&config.data, workers, give_back)?);
    let (settled, mut settlements) = mpsc::channel::<crate::webhooks::Settled>(8);
    let tls = crate::webhooks::tls_config(config.webhook_ca.as_deref())?;
    tokio::spawn(crate::webhooks::deliver(config.data.clone(), tls, wake, settled));
    let to_core = tx.downgrade();
    tokio::spawn(async move {
        while let Some(s) = settlements.recv().await {
            let Some(core) = to_core.upgrade() else { return };
            if core.send(Command::WebhookSettled(s)).await.is_err() {
                return;
            }
        }
    });
    let (failed_tx, failed) = oneshot::channel::<crate::core::Stopped>();
    let core_thread = std::thread::Builder::new()
        .name("tally-core".into())
        .spawn(move || {
            if let Err(stopped) = core.run(rx) {
                let _ = failed_tx.send(stopped);
            }
        })?;
    let sockets = crate::listener::Sockets::new(config.max_sockets, metrics.clone());
    // Searches on two connections of their own (see `search::Searcher`).
    let search_connections = (0..2)
        .map(|_| storage::open_reader(&config.data))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let searcher = Arc::new(crate::search::Searcher::new(search_connections));
    let sharer = match config.postgres.clone() {
        Some(url) => Some(off_runtime(move || crate::postgres::Sharer::start(&url))?),
        None => None,
    };
    let state = AppState::new(crate::state::Shared {
        core: tx,
        keys,
        metrics,
        config: Arc::new(config),
        staff_buckets: Arc::default(),
        address_buckets: Arc::default(),
        key_attempts: Arc::default(),
        sockets: sockets.clone(),
        searcher,
        sharer,
    });

    tokio::spawn(tick(state.core.clone()));
    tokio::spawn(flush_seen(state.core.clone()));
    let addr = listener.local_addr()?;
    // Events are small frames that must leave at once: without TCP_NODELAY a frame written
    // while the previous one is unacknowledged waits for the peer's delayed ACK (up to 40 ms).
    // warp accepts the connections itself; on Linux they inherit the option from the listener.
    socket2::SockRef::from(&listener).set_tcp_nodelay(true)?;
    let (stop_http, stopped) = oneshot::channel::<()>();
    let stopped = futures_util::FutureExt::shared(async {
        let _ = stopped.await;
    });
    let limits = crate::listener::SocketLimits {
        header_timeout: state.config.header_timeout,
    };
    if let Some(metrics_addr) = state.config.metrics_listen {
        // An internal address of its own: a few sockets, only `/metrics`.
        let metrics_listener = TcpListener::bind(metrics_addr).await?;
        tracing::info!(addr = %metrics_listener.local_addr()?, "metrics listening");
        let own = crate::listener::Sockets::new(64, state.metrics.clone());
        let routes = http::metrics_routes(state.clone());
        tokio::spawn(crate::listener::serve(
            metrics_listener,
            routes,
            own,
            limits,
            stopped.clone(),
        ));
    }
    let routes = http::routes(state.clone());
    let server = tokio::spawn(crate::listener::serve(listener, routes, sockets, limits, stopped));
    tracing::info!(%addr, "relay listening");
    Ok(Running {
        addr,
        state,
        stop_http,
        server,
        core: core_thread,
        failed,
        checkpoints,
        _wal: wal,
        _lock: lock,
    })
}

/// Runs `f` on a thread of its own (the PostgreSQL client must not block the runtime).
fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    std::thread::Builder::new()
        .name("tally-start".into())
        .spawn(f)?
        .join()
        .map_err(|_| anyhow::anyhow!("starting the core panicked"))?
}

/// The core's periodic work: the staff CLI writes to the database directly, so staff changes
/// are picked up every second; unreferenced attachments are looked for at start and then every
/// few minutes.
/// The accept queue asked of the kernel (which caps it at `net.core.somaxconn`). Tokio's
/// default is 1,024; in a reconnect storm (every tab at once after a restart) the connections
/// past the queue are dropped and retried by their clients 1, 3, 7 s later.
pub const LISTEN_BACKLOG: u32 = 65_535;

/// Listens on `addr` (a socket address, or a name that resolves to one) with
/// [`LISTEN_BACKLOG`].
pub async fn listen(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other(format!("{addr} names no address"))))
}

/// Asks the core to announce the next share of moved read positions, every [`SEEN_EVERY`](crate::core::SEEN_EVERY).
async fn flush_seen(core: mpsc::Sender<Command>) {
    let mut every = tokio::time::interval(crate::core::SEEN_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if core.send(Command::FlushSeen).await.is_err() {
            return;
        }
    }
}

async fn tick(core: mpsc::Sender<Command>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut since_collect = crate::files::COLLECT_EVERY;
    loop {
        every.tick().await;
        if since_collect >= crate::files::COLLECT_EVERY {
            since_collect = Duration::ZERO;
            if core.send(Command::CollectAttachments).await.is_err() {
                return;
            }
        }
        since_collect += Duration::from_secs(1);
        if core.send(Command::ReloadStaff).await.is_err() {
            return;
        }
    }
}
