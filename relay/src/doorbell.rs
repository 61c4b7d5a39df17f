//! How a cluster's nodes hear about each other's commits: a doorbell, never the truth.
//!
//! After each commit a node publishes its new head on NATS (`tally.<log>.head`, core pub/sub:
//! at most once, no stream to run). A node that hears a head past its own offset asks its core
//! to catch up, which reads the missing events from PostgreSQL, in order, with their gaps
//! checked. NATS is never trusted with events: a lost, late or duplicated ring costs latency,
//! never a count. Without a ring for [`QUIET`], a node catches up anyway; while NATS is
//! unreachable it does so every [`POLL_WITHOUT_NATS`].
//!
//! Typing and presence are not in the log: they ride on `tally.<log>.gossip` as [`Gossip`],
//! best effort (a lost one is a typing dot missed; each node repeats its presence every
//! [`PRESENCE_EVERY`], and forgets a node not heard for [`PRESENCE_EXPIRES`]).
//!
//! JetStream would keep rings for a node that was away, but a node that was away reads
//! PostgreSQL anyway; the truth is already durable there, so a second durable copy buys
//! nothing and costs another thing to operate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tally_shared::protocol::Presence;
use tally_shared::{ConversationId, Offset, StaffId};
use tokio::sync::{mpsc, watch};

/// With no ring for this long, a node catches up anyway.
pub const QUIET: Duration = Duration::from_millis(500);

/// How often a node catches up while NATS cannot be reached.
pub const POLL_WITHOUT_NATS: Duration = Duration::from_millis(100);

/// How often a node repeats the presence of everyone connected to it.
pub const PRESENCE_EVERY: Duration = Duration::from_secs(5);

/// A node not heard from for this long is gone: the people only it had are offline.
pub const PRESENCE_EXPIRES: Duration = Duration::from_secs(15);

/// What nodes tell each other that is not in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Gossip {
    /// Someone is typing in a conversation (relayed to its participants on every node).
    Typing {
        staff: StaffId,
        conversation: ConversationId,
    },
    /// The presence of people connected to `node`: every one of them (`full`, the others are
    /// offline there), or those whose presence there changed.
    Presence {
        node: u64,
        full: bool,
        staff: Vec<(StaffId, Presence)>,
    },
}

/// The core's side of the doorbell.
#[derive(Debug, Clone)]
pub struct Bell {
    /// This node's newest commit, to publish.
    ring: Arc<watch::Sender<u64>>,
    /// How far this node's engine is (rings at or below it are its own or old).
    offset: Arc<AtomicU64>,
    /// A `CatchUp` is queued for the core (so rings do not flood its channel).
    queued: Arc<AtomicBool>,
    /// The highest head another node rang with.
    heard: Arc<AtomicU64>,
    /// Gossip to publish.
    gossip: mpsc::Sender<Gossip>,
    /// This node's name in presence gossip (random per process).
    pub node: u64,
}

impl Bell {
    /// After a commit of this node's own writes: tell the others.
    pub fn committed(&self, head: Offset) {
        self.offset.fetch_max(head.0, Relaxed);
        self.ring.send_replace(head.0);
    }

    /// The engine reached `offset` (by catching up, or by a rebuild going back).
    pub fn reached(&self, offset: Offset) {
        self.offset.store(offset.0, Relaxed);
    }

    /// Whether another node rang with a head past `offset` (a write batch then catches up
    /// before it takes the log's lock, so that it holds the lock for less).
    pub fn heard_past(&self, offset: Offset) -> bool {
        self.heard.load(Relaxed) > offset.0
    }

    /// The core is taking the queued `CatchUp`: later rings queue another.
    pub fn taken(&self) {
        self.queued.store(false, Relaxed);
    }

    /// Tells the other nodes (dropped if NATS is far behind: gossip is best effort).
    pub fn gossip(&self, g: Gossip) {
        let _ = self.gossip.try_send(g);
    }
}

/// What the doorbell asks of the core.
#[derive(Debug)]
pub enum Ask {
    /// Read what other nodes committed after this node's offset.
    CatchUp,
    /// Typing or presence another node told about.
    Gossip(Gossip),
}

/// Whether the core took an [`Ask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    Yes,
    /// Its queue is full (a catch-up is asked again at the next ring or poll).
    Full,
    /// It has stopped: the doorbell stops too.
    Gone,
}

/// How the doorbell reaches the core (without knowing its commands).
pub type ToCore = Arc<dyn Fn(Ask) -> Taken + Send + Sync>;

/// Asks the core to catch up, unless it is asked already; false once the core is gone.
fn ask(core: &ToCore, queued: &AtomicBool) -> bool {
    if queued.swap(true, Relaxed) {
        return true;
    }
    match core(Ask::CatchUp) {
        Taken::Yes => true,
        Taken::Full => {
            queued.store(false, Relaxed);
            true
        }
        Taken::Gone => false,
    }
}

/// Connects to NATS (`url`, or none: polling alone) for the log `log` and starts the tasks
/// that publish this node's commits and ask the core to catch up on others'.
pub async fn start(
    url: Option<&str>,
    log: &str,
    core: ToCore,
    offset: Offset,
    metrics: Arc<crate::metrics::Metrics>,
) -> anyhow::Result<Bell> {
    let (ring, mut rung) = watch::channel(offset.0);
    let (gossip, mut to_publish) = mpsc::channel::<Gossip>(1024);
    let bell = Bell {
        ring: Arc::new(ring),
        offset: Arc::new(AtomicU64::new(offset.0)),
        queued: Arc::new(AtomicBool::new(false)),
        heard: Arc::new(AtomicU64::new(offset.0)),
        gossip,
        node: rand::random(),
    };
    let subject = format!("tally.{log}.head");
    let gossip_subject = format!("tally.{log}.gossip");
    let client = match url {
        Some(url) => Some(
            async_nats::ConnectOptions::new()
                .name("tally-relay")
                // A node starts, and keeps serving, without NATS: it polls meanwhile.
                .retry_on_initial_connect()
                .max_reconnects(None)
                // A node's own rings and gossip are not news to it.
                .no_echo()
                .event_callback(|event| async move {
                    tracing::info!(%event, "nats");
                })
                .connect(url)
                .await?,
        ),
        None => None,
    };
    if let Some(client) = client.clone() {
        let subject = gossip_subject.clone();
        tokio::spawn(async move {
            while let Some(g) = to_publish.recv().await {
                let Ok(body) = serde_json::to_vec(&g) else {
                    continue;
                };
                if let Err(e) = client.publish(subject.clone(), body.into()).await {
                    tracing::debug!(error = %e, "gossip not published");
                }
            }
        });
    }
    if let Some(client) = client.clone() {
        let mut heard = client.subscribe(gossip_subject).await?;
        let core = core.clone();
        tokio::spawn(async move {
            while let Some(message) = heard.next().await {
                let Ok(g) = serde_json::from_slice::<Gossip>(&message.payload) else {
                    continue;
                };
                // Dropped when the core is far behind, like any gossip.
                if core(Ask::Gossip(g)) == Taken::Gone {
                    return;
                }
            }
        });
    }
    if let Some(client) = client.clone() {
        let subject = subject.clone();
        tokio::spawn(async move {
            while rung.changed().await.is_ok() {
                let head = *rung.borrow_and_update();
                if let Err(e) = client.publish(subject.clone(), head.to_string().into()).await {
                    tracing::debug!(error = %e, "ring not published");
                }
            }
        });
    }
    let mut rings = match &client {
        Some(c) => Some(c.subscribe(subject).await?),
        None => None,
    };
    let listener = bell.clone();
    tokio::spawn(async move {
        loop {
            let connected = client
                .as_ref()
                .is_some_and(|c| c.connection_state() == async_nats::connection::State::Connected);
            let wait = if connected { QUIET } else { POLL_WITHOUT_NATS };
            let heard = match rings.as_mut() {
                Some(s) => match tokio::time::timeout(wait, s.next()).await {
                    Ok(Some(message)) => Some(message),
                    Ok(None) => {
                        // The subscription ended (the client is closing): poll from now on.
                        rings = None;
                        None
                    }
                    Err(_) => None,
                },
                None => {
                    tokio::time::sleep(wait).await;
                    None
                }
            };
            let asked = match heard {
                Some(message) => {
                    let head = std::str::from_utf8(&message.payload)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok());
                    if let Some(h) = head {
                        listener.heard.fetch_max(h, Relaxed);
                    }
                    if head.is_some_and(|h| h > listener.offset.load(Relaxed)) {
                        metrics.doorbell_rings.fetch_add(1, Relaxed);
                        ask(&core, &listener.queued)
                    } else {
                        true
                    }
                }
                // Quiet, or NATS is away: read PostgreSQL anyway.
                None => ask(&core, &listener.queued),
            };
            if !asked {
                return;
            }
        }
    });
    Ok(bell)
}
