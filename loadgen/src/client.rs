//! One simulated staff member: a real WebSocket, a real `ChatStore`, latency sampling, and
//! (optionally) reading what it receives.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tally_shared::protocol::{ServerFrame, encode};
use tally_shared::{ChatStore, ClientFrame, ClientMsgId, ConversationId, Event, Request, Seq};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// What all clients add to.
pub(crate) struct Shared {
    pub(crate) epoch: Instant,
    pub(crate) created: Mutex<Histogram<u64>>,
    pub(crate) unread: Mutex<Histogram<u64>>,
    pub(crate) frames: AtomicU64,
    pub(crate) acked_sends: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) divergences: AtomicU64,
    pub(crate) log: Mutex<BTreeMap<u64, Event>>,
    pub(crate) reads: Mutex<Vec<(u64, usize, Request)>>,
    pub(crate) read_rate: f64,
    pub(crate) record_log: bool,
    pub(crate) window: Semaphore,
    /// Connect as if through a reverse proxy: each client names its own address (10.x.y.z)
    /// in `X-Forwarded-For`.
    pub(crate) via_proxy: std::sync::atomic::AtomicBool,
    /// Unique per run: client ids made in another run on the same data (the history scenario)
    /// must not be taken for retries.
    pub(crate) run: u64,
}

impl Shared {
    pub(crate) fn new(read_rate: f64, record_log: bool) -> Arc<Shared> {
        let h = || Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds"));
        Arc::new(Shared {
            epoch: Instant::now(),
            created: h(),
            unread: h(),
            frames: AtomicU64::new(0),
            acked_sends: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            divergences: AtomicU64::new(0),
            log: Mutex::default(),
            reads: Mutex::default(),
            read_rate,
            record_log,
            window: Semaphore::new(0),
            via_proxy: std::sync::atomic::AtomicBool::new(false),
            run: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        })
    }

    pub(crate) fn micros(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

/// Says why a client's connection ended, for the first few (a run that hangs waiting for
/// one of them then says whose and why; a failover's hundreds of resets are not all printed).
fn said_why(index: usize, why: &str) {
    static SAID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if SAID.fetch_add(1, Relaxed) < 5 {
        eprintln!("client {index}: connection ended: {why}");
    }
}

enum Pending {
    Send,
    Read(Request),
    Ping(oneshot::Sender<()>),
}

struct State {
    store: ChatStore,
    pending: HashMap<u64, Pending>,
    sent_at: HashMap<u64, u64>,
    ready: Option<oneshot::Sender<()>>,
    next_req: u64,
    sends: u64,
}

/// A connected client.
pub(crate) struct Client {
    pub(crate) index: usize,
    tx: mpsc::UnboundedSender<String>,
    state: Arc<Mutex<State>>,
    reader: tokio::task::JoinHandle<()>,
}

/// Connections per loopback source address (127.0.0.1, then .2, …).
const SOURCE_PORTS: usize = 25_000;

impl Client {
    /// Connects, says hello (resuming `store` when given), and waits for the snapshot or replay.
    pub(crate) async fn connect(
        addr: SocketAddr,
        index: usize,
        token: String,
        store: Option<ChatStore>,
        shared: Arc<Shared>,
    ) -> anyhow::Result<Client> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{addr}/ws").into_client_request()?;
        if shared.via_proxy.load(Relaxed) {
            let forwarded = format!("10.{}.{}.{}", index >> 16 & 255, index >> 8 & 255, index & 255);
            request
                .headers_mut()
                .insert("x-forwarded-for", forwarded.parse()?);
        }
        // One loopback source address per 25,000 connections: a source address and port pair
        // can reach the relay's address at most once, and the ephemeral ports are about 28,000.
        // Only past the first: a socket bound before it connects gets a port no other socket
        // on that address holds (TIME_WAIT ones included), so binding 127.0.0.1 too ran out of
        // ports during a reconnect storm.
        let socket = tokio::net::TcpSocket::new_v4()?;
        if addr.ip().is_loopback() && index >= SOURCE_PORTS {
            let source = std::net::Ipv4Addr::new(127, 0, 0, 1 + (index / SOURCE_PORTS) as u8);
            socket.bind(SocketAddr::from((source, 0)))?;
        }
        let tcp = socket.connect(addr).await?;
        // TCP_NODELAY, as browsers do.
        tcp.set_nodelay(true)?;
        let (ws, _) = tokio_tungstenite::client_async_with_config(request, tcp, None).await?;
        let (mut sink, mut stream) = ws.split();
        let resume_from = store.as_ref().map(ChatStore::applied).filter(|o| o.0 > 0);
        sink.send(Message::text(encode(&ClientFrame::new(Request::hello(
            token,
            resume_from,
        )))))
        .await?;
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(text) = rx.recv().await {
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
        });
        let (ready_tx, ready_rx) = oneshot::channel();
        let state = Arc::new(Mutex::new(State {
            store: store.unwrap_or_default(),
            pending: HashMap::new(),
            sent_at: HashMap::new(),
            ready: Some(ready_tx),
            next_req: 1,
            sends: 0,
        }));
        let (st, sh, out) = (state.clone(), shared.clone(), tx.clone());
        let reader = tokio::spawn(async move {
            while let Some(next) = stream.next().await {
                let msg = match next {
                    Ok(msg) => msg,
                    Err(e) => {
                        said_why(index, &e.to_string());
                        break;
                    }
                };
                if let Message::Close(Some(why)) = &msg
                    && why.code != tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal
                {
                    said_why(
                        index,
                        &format!("closed by the relay: {} {}", why.code, why.reason),
                    );
                }
                let Message::Text(text) = msg else { continue };
                sh.frames.fetch_add(1, Relaxed);
                match serde_json::from_str::<ServerFrame>(&text) {
                    Ok(frame) => on_frame(index, frame, &st, &sh, &out),
                    Err(_) => {
                        sh.errors.fetch_add(1, Relaxed);
                    }
                }
            }
        });
        ready_rx.await?;
        Ok(Client {
            index,
            tx,
            state,
            reader,
        })
    }

    fn request(&self, request: Request, pending: Pending) -> u64 {
        let mut s = self.state.lock().unwrap();
        let req = s.next_req;
        s.next_req += 1;
        s.pending.insert(req, pending);
        let _ = self.tx.send(encode(&ClientFrame::with_req(req, request)));
        req
    }

    /// Sends a message carrying its send time.
    pub(crate) fn send(&self, conversation: ConversationId, shared: &Shared) {
        let n = {
            let mut s = self.state.lock().unwrap();
            s.sends += 1;
            s.sends
        };
        let body = format!("t{} load test message from s{}", shared.micros(), self.index);
        let client_id = ClientMsgId::new(format!("g{}-{}-{n}", shared.run, self.index)).expect("valid id");
        self.request(
            Request::SendMessage {
                mention_ranges: Vec::new(),
                client_id,
                conversation,
                body,
                attachments: vec![],
                reply_to: None,
            },
            Pending::Send,
        );
    }

    /// Any request, answered by an ack (used to create conversations).
    pub(crate) async fn call(&self, request: Request) {
        let (tx, rx) = oneshot::channel();
        self.request(request, Pending::Ping(tx));
        let _ = rx.await;
    }

    /// Waits until everything the relay sent before now has arrived.
    pub(crate) async fn sync(&self) {
        self.call(Request::Ping).await;
    }

    pub(crate) fn store(&self) -> ChatStore {
        self.state.lock().unwrap().store.clone()
    }

    pub(crate) fn close(self) {
        self.reader.abort();
    }
}

fn on_frame(
    index: usize,
    frame: ServerFrame,
    st: &Mutex<State>,
    sh: &Shared,
    out: &mpsc::UnboundedSender<String>,
) {
    let mut s = st.lock().unwrap();
    let me_is = |sender: &tally_shared::StaffId| {
        sender
            .as_str()
            .strip_prefix('s')
            .and_then(|n| n.parse::<usize>().ok())
            == Some(index)
    };
    match &frame {
        ServerFrame::Snapshot(_) | ServerFrame::Resumed { .. } => {
            if let Some(r) = s.ready.take() {
                let _ = r.send(());
            }
        }
        ServerFrame::Event(e) => {
            if sh.record_log {
                sh.log
                    .lock()
                    .unwrap()
                    .entry(e.offset.0)
                    .or_insert_with(|| e.event.clone());
            }
            if let Event::MessageCreated { message } = &e.event
                && !me_is(&message.sender)
            {
                if let Some(t) = message
                    .body
                    .strip_prefix('t')
                    .and_then(|b| b.split(' ').next())
                    .and_then(|t| t.parse::<u64>().ok())
                {
                    let now = sh.micros();
                    let _ = sh.created.lock().unwrap().record(now.saturating_sub(t).max(1));
                    s.sent_at.insert(e.offset.0, t);
                }
                if sh.read_rate > 0.0 && rand::random::<f64>() < sh.read_rate {
                    let request = Request::MarkRead {
                        conversation: message.conversation,
                        up_to: Seq(message.seq.0),
                    };
                    let req = s.next_req;
                    s.next_req += 1;
                    s.pending.insert(req, Pending::Read(request.clone()));
                    let _ = out.send(encode(&ClientFrame::with_req(req, request)));
                }
            }
        }
        ServerFrame::UnreadUpdated(u) => {
            if let Some(t) = s.sent_at.remove(&u.offset.0) {
                let now = sh.micros();
                let _ = sh.unread.lock().unwrap().record(now.saturating_sub(t).max(1));
            }
        }
        ServerFrame::Ack(a) => match a.req.and_then(|r| s.pending.remove(&r.0)) {
            Some(Pending::Send) => {
                sh.acked_sends.fetch_add(1, Relaxed);
                sh.window.add_permits(1);
            }
            Some(Pending::Read(request)) => sh.reads.lock().unwrap().push((a.offset.0, index, request)),
            Some(Pending::Ping(tx)) => {
                let _ = tx.send(());
            }
            None => {}
        },
        ServerFrame::Error(_) => {
            sh.errors.fetch_add(1, Relaxed);
        }
        ServerFrame::Counts { .. }
        | ServerFrame::Typing { .. }
        | ServerFrame::Presence { .. }
        | ServerFrame::Seen { .. }
        | ServerFrame::Preferences { .. }
        | ServerFrame::Quiet { .. } => {}
    }
    let fx = s.store.apply(frame);
    if fx.divergence.is_some() {
        sh.divergences.fetch_add(1, Relaxed);
    }
}
