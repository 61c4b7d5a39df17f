//! How a cluster's nodes hear about each other's commits: a doorbell, never the truth.
//!
//! After each commit a node publishes a ring on NATS (`tally.<log>.head`, core pub/sub: at
//! most once, no stream to run): its new head and the events it just committed, exactly as
//! PostgreSQL holds them (only the head when they would not fit in one NATS message). A node
//! that hears a ring whose events follow its own offset applies them as they are, without
//! reading PostgreSQL; one that finds a gap before them (a ring lost, or two nodes' rings
//! crossing), or a ring with the head alone, reads the missing events from PostgreSQL, in
//! order, with their gaps checked. So a lost, late or duplicated ring costs latency, never a
//! count. Without a ring for [`QUIET`], a node catches up anyway; while NATS is unreachable it
//! does so every [`POLL_WITHOUT_NATS`].
//!
//! Everything published is sealed ([`Seal`]: HMAC-SHA256 with a key derived from the
//! cluster's secret, which every node has): a message that anyone else could have written to
//! NATS is dropped and counted, so that NATS's own credentials are not all that stands
//! between a publisher and the counts.
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
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tally_shared::protocol::Presence;
use tally_shared::{ConversationId, Offset, StaffId};
use tokio::sync::mpsc;

use crate::hub::Frame;

/// With no ring for this long, a node catches up anyway.
pub const QUIET: Duration = Duration::from_millis(500);

/// How often a node catches up while NATS cannot be reached.
pub const POLL_WITHOUT_NATS: Duration = Duration::from_millis(100);

/// How often a node repeats the presence of everyone connected to it.
pub const PRESENCE_EVERY: Duration = Duration::from_secs(5);

/// A node not heard from for this long is gone: the people only it had are offline.
pub const PRESENCE_EXPIRES: Duration = Duration::from_secs(15);

/// Rings waiting to be published; past this (NATS far behind) a ring is dropped, and the
/// others find the gap at the next one, or catch up after [`QUIET`].
const RINGS_WAITING: usize = 1024;

/// A ring's events go with it up to this many bytes, or the server's `max_payload` if that is
/// less (1 MiB by default; a large message holds up everything behind it); past it, the head
/// alone.
const RING_BYTES: usize = 256 * 1024;

/// Seals what a node publishes on NATS, and opens what it hears: HMAC-SHA256, keyed by the
/// cluster's secret (through a derivation, so the token key itself signs nothing else), over
/// the subject and the body; the 32-byte tag goes first.
#[derive(Clone)]
pub struct Seal(Hmac<Sha256>);

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seal(…)")
    }
}

const TAG: usize = 32;

impl Seal {
    /// The seal of a cluster whose secret is `secret`.
    pub fn new(secret: &[u8]) -> Seal {
        let mut derive = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
        derive.update(b"tally nats seal v1");
        let key = derive.finalize().into_bytes();
        Seal(Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key"))
    }

    fn mac(&self, subject: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(subject.as_bytes());
        mac.update(&[0]);
        mac.update(body);
        mac
    }

    /// The tag, then `body`.
    pub fn seal(&self, subject: &str, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(TAG + body.len());
        out.extend_from_slice(&self.mac(subject, body).finalize().into_bytes());
        out.extend_from_slice(body);
        out
    }

    /// The body of a message sealed for `subject` with this seal, or none.
    pub fn open<'a>(&self, subject: &str, payload: &'a [u8]) -> Option<&'a [u8]> {
        if payload.len() < TAG {
            return None;
        }
        let (tag, body) = payload.split_at(TAG);
        self.mac(subject, body).verify_slice(tag).ok()?;
        Some(body)
    }
}

/// A ring's body: the head, then the events committed up to it, a line each (an encoded
/// event is JSON on one line), or the head alone.
fn ring_body(head: u64, frames: &[Frame], limit: usize) -> Vec<u8> {
    let head = head.to_string();
    let size = head.len() + frames.iter().map(|f| f.len() + 1).sum::<usize>();
    if size > limit {
        return head.into_bytes();
    }
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(head.as_bytes());
    for f in frames {
        body.push(b'\n');
        body.extend_from_slice(f.as_bytes());
    }
    body
}

/// The head of a ring's body, and its events (a line each; none for a head alone), which are
/// only copied out when the head is news.
fn parse_ring(body: &[u8]) -> Option<(u64, &str)> {
    let text = std::str::from_utf8(body).ok()?;
    let (head, events) = text.split_once('\n').unwrap_or((text, ""));
    Some((head.parse().ok()?, events))
}

fn ring_events(events: &str) -> Vec<String> {
    match events {
        "" => Vec::new(),
        some => some.split('\n').map(str::to_owned).collect(),
    }
}

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
    /// This node's commits, to publish.
    ring: mpsc::Sender<(u64, Vec<Frame>)>,
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
    /// After a commit of this node's own writes, `frames` (the last of them at `head`): tell
    /// the others.
    pub fn committed(&self, head: Offset, frames: Vec<Frame>) {
        self.offset.fetch_max(head.0, Relaxed);
        if self.ring.try_send((head.0, frames)).is_err() {
            tracing::debug!(head = head.0, "ring dropped: no NATS, or NATS far behind");
        }
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
    /// Apply these events another node committed (encoded, in order, the last at the head
    /// given), if they follow this node's offset; catch up otherwise.
    Committed(u64, Vec<String>),
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
/// that publish this node's commits and ask the core to catch up on others'; what is
/// published is sealed with `seal`, what is heard is opened with it.
pub async fn start(
    url: Option<&str>,
    log: &str,
    seal: Seal,
    core: ToCore,
    offset: Offset,
    metrics: Arc<crate::metrics::Metrics>,
) -> anyhow::Result<Bell> {
    let (ring, mut rung) = mpsc::channel::<(u64, Vec<Frame>)>(RINGS_WAITING);
    let (gossip, mut to_publish) = mpsc::channel::<Gossip>(1024);
    let bell = Bell {
        ring,
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
        let seal = seal.clone();
        tokio::spawn(async move {
            while let Some(g) = to_publish.recv().await {
                let Ok(body) = serde_json::to_vec(&g) else {
                    continue;
                };
                let sealed = seal.seal(&subject, &body);
                if let Err(e) = client.publish(subject.clone(), sealed.into()).await {
                    tracing::debug!(error = %e, "gossip not published");
                }
            }
        });
    }
    if let Some(client) = client.clone() {
        let mut heard = client.subscribe(gossip_subject.clone()).await?;
        let core = core.clone();
        let seal = seal.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            while let Some(message) = heard.next().await {
                let Some(body) = seal.open(&gossip_subject, &message.payload) else {
                    metrics.nats_refused.fetch_add(1, Relaxed);
                    continue;
                };
                let Ok(g) = serde_json::from_slice::<Gossip>(body) else {
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
        let seal = seal.clone();
        tokio::spawn(async move {
            while let Some((head, frames)) = rung.recv().await {
                let limit = RING_BYTES.min(client.server_info().max_payload.saturating_sub(TAG));
                let sealed = seal.seal(&subject, &ring_body(head, &frames, limit));
                if let Err(e) = client.publish(subject.clone(), sealed.into()).await {
                    tracing::debug!(error = %e, "ring not published");
                }
            }
        });
    }
    let mut rings = match &client {
        Some(c) => Some(c.subscribe(subject.clone()).await?),
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
                Some(message) => match seal.open(&subject, &message.payload).and_then(parse_ring) {
                    None => {
                        metrics.nats_refused.fetch_add(1, Relaxed);
                        true
                    }
                    Some((head, events)) => {
                        listener.heard.fetch_max(head, Relaxed);
                        if head <= listener.offset.load(Relaxed) {
                            true
                        } else {
                            metrics.doorbell_rings.fetch_add(1, Relaxed);
                            if events.is_empty() {
                                ask(&core, &listener.queued)
                            } else {
                                match core(Ask::Committed(head, ring_events(events))) {
                                    Taken::Yes => true,
                                    // The core is far behind: it reads them when it can.
                                    Taken::Full => ask(&core, &listener.queued),
                                    Taken::Gone => false,
                                }
                            }
                        }
                    }
                },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_opens_only_what_it_sealed_for_its_subject() {
        let seal = Seal::new(b"a secret of at least thirty-two bytes....");
        let sealed = seal.seal("tally.x.head", b"7\n{}");
        assert_eq!(seal.open("tally.x.head", &sealed), Some(&b"7\n{}"[..]));
        // Another subject, a body changed by a bit, another cluster's secret, a short message.
        assert_eq!(seal.open("tally.x.gossip", &sealed), None);
        let mut changed = sealed.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert_eq!(seal.open("tally.x.head", &changed), None);
        let other = Seal::new(b"another secret of thirty-two bytes......");
        assert_eq!(other.open("tally.x.head", &sealed), None);
        assert_eq!(seal.open("tally.x.head", &sealed[..TAG - 1]), None);
    }

    #[test]
    fn a_ring_carries_its_events_up_to_the_limit_then_the_head_alone() {
        let frames: Vec<Frame> = vec![
            Frame::from(r#"{"offset":6}"#.to_string()),
            Frame::from(r#"{"offset":7}"#.to_string()),
        ];
        let body = ring_body(7, &frames, 1024);
        let (head, events) = parse_ring(&body).unwrap();
        assert_eq!(head, 7);
        assert_eq!(
            ring_events(events),
            vec![r#"{"offset":6}"#.to_string(), r#"{"offset":7}"#.to_string()]
        );
        let cut = ring_body(7, &frames, 20);
        let (head, events) = parse_ring(&cut).unwrap();
        assert_eq!((head, ring_events(events)), (7, vec![]));
        assert_eq!(parse_ring(b"seven"), None);
    }
}
