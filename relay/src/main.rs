//! The `tally-relay` command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tally_relay::auth::{self, Keys};
use tally_relay::storage::{self, Durability};
use tally_relay::{Config, start};
use tally_shared::{Staff, StaffId, limits};

#[derive(Parser)]
#[command(
    name = "tally-relay",
    version,
    about = "Tally's relay: staff messaging with unread counts that are never wrong"
)]
struct Cli {
    /// Where the database, secret and attachments live.
    #[arg(long, global = true, env = "TALLY_DATA", default_value = "./data")]
    data: PathBuf,
    /// Run as a node of a cluster whose source of truth is this PostgreSQL
    /// (`postgres://user@host:port/db`); `staff` and `token` then act on it too.
    #[arg(long, global = true, env = "TALLY_POSTGRES")]
    postgres: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the WebSocket endpoint, the API and the built frontend.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "TALLY_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// The built frontend (Trunk's dist/).
        #[arg(long = "static", env = "TALLY_STATIC", default_value = "dist")]
        static_dir: PathBuf,
        /// Seed demo staff and conversations and offer a sign-in picker.
        #[arg(long)]
        demo: bool,
        /// `full` (acknowledged writes survive power loss) or `normal` (survive a relay crash).
        #[arg(long, value_enum, default_value = "full")]
        durability: Durability,
        /// Events kept in memory so that reconnecting clients get a replay, not a snapshot.
        #[arg(long, default_value_t = 100_000)]
        retain_events: usize,
        /// Bytes of events kept in memory for resuming clients (the other bound).
        #[arg(long, env = "TALLY_RETAIN_BYTES", default_value_t = tally_relay::config::RETAIN_BYTES)]
        retain_bytes: usize,
        /// Checkpoint the engine's state after this many events…
        #[arg(long, env = "TALLY_CHECKPOINT_EVENTS", default_value_t = tally_relay::checkpoints::EVERY_EVENTS)]
        checkpoint_events: u64,
        /// …or after this long with any event since the last (e.g. 5m).
        #[arg(long, env = "TALLY_CHECKPOINT_INTERVAL", default_value = "5m", value_parser = auth::parse_ttl)]
        checkpoint_interval: Duration,
        /// Other origins allowed to open WebSockets (the relay's own always is).
        #[arg(long = "allow-origin")]
        allowed_origins: Vec<String>,
        #[command(flatten)]
        limits: Box<tally_relay::limits::Limits>,
        /// Most writes per group commit (1: a commit per write; for measuring group commit).
        #[arg(long, default_value_t = tally_relay::core::MAX_BATCH)]
        max_batch: usize,
        #[command(flatten)]
        sockets: Box<SocketArgs>,
        /// The NATS server a cluster's nodes ring each other on (`nats://host:port`); without
        /// it, nodes poll PostgreSQL.
        #[arg(long, env = "TALLY_NATS")]
        nats: Option<String>,
    },
    /// Print a signed token for a staff member.
    Token {
        /// The staff id.
        staff: StaffId,
        /// How long it is valid (e.g. 30m, 8h, 2d).
        #[arg(long, default_value = "8h", value_parser = auth::parse_ttl)]
        ttl: Duration,
    },
    /// Copy the database, consistently, while the relay serves (attachments: copy
    /// `DATA/attachments` after it; files are content-addressed and never change).
    Backup {
        /// Where to write the copy (must not exist).
        #[arg(long)]
        to: PathBuf,
    },
    /// Restore a backup into an empty data directory (`--force` replaces what is there).
    Restore {
        /// The backup file.
        from: PathBuf,
        /// Replace an existing database.
        #[arg(long)]
        force: bool,
    },
    /// Rebuild every count from the log with the naive oracle and compare it with the relay's
    /// own; print each mismatch and exit non-zero if there is one. Safe on a live database.
    Check,
    /// Manage staff.
    Staff {
        #[command(subcommand)]
        command: StaffCmd,
    },
    /// Import another chat's staff, conversations, messages and reads from a JSON-lines file
    /// (docs/integration.md has the format). All or nothing; running it again changes nothing.
    /// The relay must be stopped.
    Import {
        /// The file.
        file: PathBuf,
        /// Where the files its messages attach are (`"file"` paths are relative to it; by
        /// default, the directory of the import file).
        #[arg(long, value_name = "DIR")]
        files: Option<PathBuf>,
        /// Check every line and report what would be imported, writing nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Manage the webhooks that tell the work app what happened.
    Webhook {
        #[command(subcommand)]
        command: WebhookCmd,
    },
    /// Manage the keys the work app's backend calls the service API with.
    ServiceKey {
        #[command(subcommand)]
        command: ServiceKeyCmd,
    },
}

#[derive(Subcommand)]
enum WebhookCmd {
    /// Register a URL (http://host[:port]/path) and print its signing secret (shown once).
    Add {
        /// Where deliveries are posted.
        url: String,
        /// What it receives: message_created, unread_reminder (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
    },
    /// List webhooks with their pending and given-up deliveries.
    List,
    /// Remove a webhook (its pending deliveries are dropped).
    Remove {
        /// Its id (from `list`).
        id: i64,
    },
}

#[derive(Subcommand)]
enum ServiceKeyCmd {
    /// Make a key and print it (it is shown this once; only its hash is stored).
    Create {
        /// Its name (a-z, 0-9, '.', '_', '-'), e.g. the calling app's.
        name: String,
    },
    /// Revoke a key: calls with it are refused from now on.
    Revoke {
        /// Its name.
        name: String,
    },
    /// List the keys (names and dates, never the keys).
    List,
}

/// How sockets, tokens and files are bounded.
#[derive(clap::Args)]
struct SocketArgs {
    /// Bytes queued per connection before it is closed as a slow consumer.
    #[arg(long, env = "TALLY_QUEUE_BYTES", default_value_t = tally_relay::hub::QUEUE_BYTES)]
    queue_bytes: usize,
    /// Most open sockets, HTTP and WebSocket (default: the descriptor limit less 64).
    /// Unauthenticated sockets are evicted, oldest first, to make room.
    #[arg(long, env = "TALLY_MAX_SOCKETS")]
    max_sockets: Option<usize>,
    /// Longest a client may take to send request headers, and longest an idle keep-alive
    /// connection stays open (e.g. 15s).
    #[arg(long, env = "TALLY_HEADER_TIMEOUT", default_value = "15s", value_parser = auth::parse_ttl)]
    header_timeout: Duration,
    /// A reverse proxy (address or CIDR) whose `Forwarded` / `X-Forwarded-For` name the client
    /// (repeatable). Without it those headers are ignored.
    #[arg(long = "trust-proxy", env = "TALLY_TRUST_PROXY", value_delimiter = ',')]
    trust_proxy: Vec<tally_relay::address::Cidr>,
    /// Serve `/metrics` on this address instead of the main one (e.g. 127.0.0.1:9090).
    #[arg(long, env = "TALLY_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Longest token lifetime (`exp - iat`) accepted (e.g. 24h).
    #[arg(long, env = "TALLY_MAX_TOKEN_TTL", default_value = "24h", value_parser = auth::parse_ttl)]
    max_token_ttl: Duration,
    /// How long an upload that no live message references is kept (e.g. 24h).
    #[arg(long, env = "TALLY_ATTACHMENT_GRACE", default_value = "24h", value_parser = auth::parse_ttl)]
    attachment_grace: Duration,
    /// How long someone has had unread messages and no open connection before an
    /// `unread_reminder` webhook fires for them, once per quiet spell (e.g. 15m).
    #[arg(long, env = "TALLY_REMINDER_AFTER", default_value = "15m", value_parser = auth::parse_ttl)]
    reminder_after: Duration,
    /// CA certificates (PEM) trusted for https:// webhooks besides the system's (a company's
    /// private CA).
    #[arg(long, env = "TALLY_WEBHOOK_CA", value_name = "FILE")]
    webhook_ca: Option<PathBuf>,
}

#[derive(Subcommand)]
enum StaffCmd {
    /// Add (or rename and reactivate) a staff member.
    Add {
        /// The staff id.
        id: StaffId,
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// List staff.
    List,
    /// Deactivate a staff member: their sessions close and their tokens stop working.
    Deactivate {
        /// The staff id.
        id: StaffId,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,warp=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Some(url) = &cli.postgres {
        match cli.command {
            Cmd::Serve { .. } => {}
            Cmd::Staff { command } => return staff_in_cluster(url, command),
            Cmd::ServiceKey { command } => return service_key_in_cluster(url, command),
            Cmd::Webhook { command } => return webhook_in_cluster(url, &cli.data, command),
            Cmd::Check => {
                let problems = tally_relay::maintenance::check_replica(url, &cli.data)?;
                for p in &problems {
                    println!("mismatch: {p}");
                }
                anyhow::ensure!(problems.is_empty(), "{} mismatches", problems.len());
                println!("this node's replica is PostgreSQL's log, and every count agrees with it");
                return Ok(());
            }
            Cmd::Token { staff, ttl } => {
                let mut pg = tally_relay::postgres::Postgres::connect(url)?;
                let keys = Keys::new(&pg.secret()?, auth::MAX_TOKEN_TTL);
                println!("{}", keys.mint(&staff, ttl));
                return Ok(());
            }
            _ => anyhow::bail!(
                "this command works on a single node's data directory; a cluster (--postgres) \
                 does not offer it yet (see docs/operations.md)"
            ),
        }
    }
    match cli.command {
        Cmd::Serve {
            listen,
            static_dir,
            demo,
            durability,
            retain_events,
            retain_bytes,
            checkpoint_events,
            checkpoint_interval,
            allowed_origins,
            limits,
            max_batch,
            sockets,
            nats,
        } => {
            anyhow::ensure!(
                nats.is_none() || cli.postgres.is_some(),
                "--nats rings a cluster's nodes: it needs --postgres"
            );
            let config = Config {
                static_dir: static_dir.is_dir().then_some(static_dir),
                demo,
                durability,
                retain_events,
                retain_bytes,
                checkpoints: tally_relay::checkpoints::Policy {
                    every_events: checkpoint_events.max(1),
                    every: checkpoint_interval.max(Duration::from_millis(10)),
                },
                allowed_origins,
                limits: *limits,
                max_batch,
                queue_bytes: sockets.queue_bytes,
                max_sockets: sockets
                    .max_sockets
                    .unwrap_or_else(tally_relay::listener::default_cap),
                header_timeout: sockets.header_timeout,
                trusted_proxies: sockets.trust_proxy,
                metrics_listen: sockets.metrics_listen,
                max_token_ttl: sockets.max_token_ttl,
                attachment_grace: sockets.attachment_grace,
                reminder_after: sockets.reminder_after,
                webhook_ca: sockets.webhook_ca,
                postgres: cli.postgres,
                nats,
                ..Config::new(cli.data)
            };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let stopped = runtime.block_on(async move {
                let listener = tally_relay::server::listen(&listen).await?;
                let mut running = start(config, listener).await?;
                println!("tally-relay listening on http://{}", running.addr);
                let stopped = tokio::select! {
                    () = shutdown_signal() => None,
                    stopped = running.failed() => Some(stopped),
                };
                tracing::info!("shutting down");
                running.shutdown().await;
                anyhow::Ok(stopped)
            })?;
            if let Some(stopped) = stopped {
                // What is on disk is unknown: exit as storage failures do (EX_SOFTWARE), for the
                // supervisor to restart the relay, which recovers from the log.
                eprintln!("tally-relay: {stopped}");
                std::process::exit(70);
            }
        }
        Cmd::Token { staff, ttl } => {
            std::fs::create_dir_all(&cli.data)?;
            let keys = Keys::new(&auth::load_secret(&cli.data)?, auth::MAX_TOKEN_TTL);
            println!("{}", keys.mint(&staff, ttl));
        }
        Cmd::Backup { to } => {
            let offset = storage::backup(&cli.data, &to)?;
            println!("backed up to {} at offset {offset}", to.display());
        }
        Cmd::Restore { from, force } => {
            let offset = tally_relay::maintenance::restore(&from, &cli.data, force)?;
            println!(
                "restored {} into {} at offset {offset}",
                from.display(),
                cli.data.display()
            );
        }
        Cmd::Check => {
            let problems = tally_relay::maintenance::check(&cli.data)?;
            for p in &problems {
                println!("mismatch: {p}");
            }
            anyhow::ensure!(problems.is_empty(), "{} mismatches", problems.len());
            println!("every count agrees with the log");
        }
        Cmd::Staff { command } => staff(&cli.data, command)?,
        Cmd::ServiceKey { command } => service_key(&cli.data, command)?,
        Cmd::Webhook { command } => webhook(&cli.data, command)?,
        Cmd::Import { file, files, dry_run } => {
            match tally_relay::import::import(&cli.data, &file, files.as_deref(), dry_run) {
                Ok(report) => tally_relay::import::print(&report, dry_run),
                Err(tally_relay::import::ImportError::Lines { lines, count }) => {
                    for (n, why) in &lines {
                        eprintln!("{}:{n}: {why}", file.display());
                    }
                    if count > lines.len() {
                        eprintln!("… and {} more", count - lines.len());
                    }
                    eprintln!("{count} bad lines: nothing was imported");
                    std::process::exit(2);
                }
                Err(tally_relay::import::ImportError::Other(e)) => return Err(e),
            }
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `tally-relay staff …`: manage the staff table directly (a running relay picks it up).
fn staff(data: &std::path::Path, command: StaffCmd) -> anyhow::Result<()> {
    let conn = storage::open(data, Durability::Full)?;
    match command {
        StaffCmd::Add { id, name } => {
            let staff = checked_staff(id, name)?;
            storage::upsert_staff(&conn, &staff)?;
            println!("added {}", staff.id);
        }
        StaffCmd::List => print_staff(storage::load_staff(&conn)?),
        StaffCmd::Deactivate { id } => {
            anyhow::ensure!(storage::deactivate_staff(&conn, &id)?, "no staff member {id}");
            println!("deactivated {id}");
        }
    }
    Ok(())
}

/// `tally-relay --postgres URL staff …`: the cluster's staff table (every node reloads it
/// every second).
fn staff_in_cluster(url: &str, command: StaffCmd) -> anyhow::Result<()> {
    use tally_relay::order::Order;
    let mut pg = tally_relay::postgres::Postgres::connect(url)?;
    // The cluster's tables are PostgreSQL's; the trait's local database is not used.
    let unused = rusqlite::Connection::open_in_memory()?;
    match command {
        StaffCmd::Add { id, name } => {
            let staff = checked_staff(id, name)?;
            pg.upsert_staff(&unused, &staff)?;
            println!("added {}", staff.id);
        }
        StaffCmd::List => print_staff(pg.staff(&unused)?),
        StaffCmd::Deactivate { id } => {
            anyhow::ensure!(pg.deactivate_staff(&id)?, "no staff member {id}");
            println!("deactivated {id}");
        }
    }
    Ok(())
}

/// `tally-relay --postgres URL service-key …`: the cluster's keys (checked at every call).
fn service_key_in_cluster(url: &str, command: ServiceKeyCmd) -> anyhow::Result<()> {
    let mut pg = tally_relay::postgres::Postgres::connect(url)?;
    match command {
        ServiceKeyCmd::Create { name } => {
            let key = pg.create_service_key(&name)?;
            eprintln!("service key {name} (shown once; store it as a secret):");
            println!("{key}");
        }
        ServiceKeyCmd::Revoke { name } => {
            anyhow::ensure!(pg.revoke_service_key(&name)?, "no live key named {name}");
            println!("revoked {name}");
        }
        ServiceKeyCmd::List => print_keys(pg.service_keys()?),
    }
    Ok(())
}

/// `tally-relay --postgres URL webhook …`: every node picks changes up within a second.
fn webhook_in_cluster(url: &str, data: &std::path::Path, command: WebhookCmd) -> anyhow::Result<()> {
    let mut pg = tally_relay::postgres::Postgres::connect(url)?;
    match command {
        WebhookCmd::Add { url, events } => {
            let (id, secret) = pg.add_webhook(&url, &events)?;
            eprintln!(
                "webhook {id} for {url} ({}); its signing secret, shown once:",
                events.join(",")
            );
            println!("{secret}");
        }
        WebhookCmd::List => {
            // Deliveries wait in the outbox of the node that wrote their event: this node's.
            let here = storage::database(data)
                .exists()
                .then(|| storage::open_reader(data))
                .transpose()?;
            for line in pg.webhooks()? {
                let id: i64 = line.split('\t').next().and_then(|s| s.parse().ok()).unwrap_or(0);
                match &here {
                    Some(conn) => {
                        let (pending, failed) = tally_relay::webhooks::waiting(conn, id)?;
                        println!("{line}\tpending {pending}\tfailed {failed} (on this node)");
                    }
                    None => println!("{line}"),
                }
            }
        }
        WebhookCmd::Remove { id } => {
            anyhow::ensure!(pg.remove_webhook(id)?, "no webhook {id}");
            println!("removed webhook {id}");
        }
    }
    Ok(())
}

fn print_keys(keys: Vec<(String, i64, Option<i64>)>) {
    for (name, created, revoked) in keys {
        let state = revoked.map_or_else(|| "live".to_string(), |at| format!("revoked at {at}"));
        println!("{name}\tcreated at {created}\t{state}");
    }
}

/// A staff member to add, with the rules the CLI enforces on either store.
fn checked_staff(id: StaffId, name: String) -> anyhow::Result<Staff> {
    anyhow::ensure!(
        !id.is_system(),
        "`{}` is reserved for the service API",
        StaffId::SYSTEM
    );
    anyhow::ensure!(
        !name.trim().is_empty() && name.len() <= limits::STAFF_NAME_MAX_BYTES,
        "a name is 1 to {} bytes",
        limits::STAFF_NAME_MAX_BYTES
    );
    Ok(Staff {
        id,
        name: name.trim().into(),
    })
}

fn print_staff(staff: Vec<(Staff, bool)>) {
    for (s, active) in staff {
        println!(
            "{}\t{}\t{}",
            s.id,
            s.name,
            if active { "active" } else { "deactivated" }
        );
    }
}

/// `tally-relay service-key …`: the keys are read from the database at each call, so a running
/// relay honours a new or revoked key at once.
fn service_key(data: &std::path::Path, command: ServiceKeyCmd) -> anyhow::Result<()> {
    use tally_relay::service_keys;
    let conn = storage::open(data, Durability::Full)?;
    match command {
        ServiceKeyCmd::Create { name } => {
            let key = service_keys::create(&conn, &name)?;
            eprintln!("service key {name} (shown once; store it as a secret):");
            println!("{key}");
        }
        ServiceKeyCmd::Revoke { name } => {
            anyhow::ensure!(service_keys::revoke(&conn, &name)?, "no live key named {name}");
            println!("revoked {name}");
        }
        ServiceKeyCmd::List => print_keys(service_keys::list(&conn)?),
    }
    Ok(())
}

/// `tally-relay webhook …`: a running relay picks changes up within a second.
fn webhook(data: &std::path::Path, command: WebhookCmd) -> anyhow::Result<()> {
    use tally_relay::webhooks;
    let conn = storage::open(data, Durability::Full)?;
    match command {
        WebhookCmd::Add { url, events } => {
            let (id, secret) = webhooks::add(&conn, &url, &events)?;
            eprintln!(
                "webhook {id} for {url} ({}); its signing secret, shown once:",
                events.join(",")
            );
            println!("{secret}");
        }
        WebhookCmd::List => {
            for line in webhooks::list(&conn)? {
                println!("{line}");
            }
        }
        WebhookCmd::Remove { id } => {
            anyhow::ensure!(webhooks::remove(&conn, id)?, "no webhook {id}");
            println!("removed webhook {id}");
        }
    }
    Ok(())
}
