//! One WebSocket: the hello handshake, the read loop (decode, hand to the core), and the write
//! loop (the connection's queue, heartbeats, closing).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tally_shared::protocol::{
    ErrorFrame, ProtocolRange, ServerFrame, close, decode_client_frame, encode, peek_req,
};
use tally_shared::{ClientFrame, ErrorCode, Request, RequestId, Routed, StaffId, limits};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message, Utf8Bytes};
use tracing::Instrument;

use crate::auth::Verified;
use crate::core::{Command, Greeting};
use crate::hub::{Built, Closer, ConnHandle, Frame, Outbound, Queued};
use crate::listener::Socket;
use crate::metrics::Metrics;
use crate::state::AppState;

/// How long a connection may take from `accept` to a valid hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the relay pings.
pub const PING_EVERY: Duration = Duration::from_secs(20);
/// How long a closing connection waits for the client's close reply.
pub const CLOSE_DRAIN: Duration = Duration::from_secs(3);
/// How long a closing connection's writer gets to send its close frame before the socket is
/// reset (a peer that does not read would otherwise hold it forever).
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Longest one batch of writes may wait for the peer to take it.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Silence after which a peer counts as dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(60);

/// Most queued frames a writer sends before flushing the socket once.
const WRITE_BATCH: usize = 64;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// The transport settings of every connection. Tungstenite's default 128 KiB read buffer per
/// connection would dominate an idle relay's memory, and it fills (zeroes) the whole buffer on
/// every read: 1 KiB, since client frames are small, and a larger one still arrives whole (the
/// buffer grows for it). 4 KiB to 1 KiB, with fragments of 8 KiB to 4 KiB, took an idle
/// connection from 12.7 to 9.8 KiB of relay RSS, and one after a 60 KB snapshot from 20.4 to
/// 14.0 KiB (`tally-loadgen run --scenario idle`, docs/benchmarks.md). The size limits are generous enough that an
/// oversized frame still reaches the decoder and gets a `frame_too_large` error frame.
///
/// Tungstenite also keeps its write buffer's largest size for the connection's life, so one
/// large snapshot would stay allocated all day: the buffer is written out past [`FRAGMENT`], and
/// [`fragments`] splits larger frames into WebSocket continuation frames of that size.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(FRAGMENT)
        .max_message_size(Some(4 * limits::CLIENT_FRAME_MAX_BYTES))
        .max_frame_size(Some(4 * limits::CLIENT_FRAME_MAX_BYTES))
}

/// The largest WebSocket frame the relay writes; longer messages are fragmented (RFC 6455
/// §5.4), which every WebSocket client reassembles.
pub const FRAGMENT: usize = 4 * 1024;

/// A text message as the frames to write: itself, or fragments of at most [`FRAGMENT`] bytes
/// that share its buffer (a fragment may end inside a UTF-8 character: only the whole
/// message must be valid).
pub fn fragments(text: Utf8Bytes) -> impl Iterator<Item = Message> {
    let small = (text.len() <= FRAGMENT).then(|| Message::Text(text.clone()));
    let large = (text.len() > FRAGMENT).then(|| {
        let bytes = Bytes::from(text);
        let count = bytes.len().div_ceil(FRAGMENT);
        (0..count).map(move |i| {
            let chunk = bytes.slice(i * FRAGMENT..((i + 1) * FRAGMENT).min(bytes.len()));
            let opcode = OpCode::Data(if i == 0 { Data::Text } else { Data::Continue });
            Message::Frame(WsFrame::message(chunk, opcode, i + 1 == count))
        })
    });
    small.into_iter().chain(large.into_iter().flatten())
}

/// Feeds a frame's fragments to the socket without flushing.
async fn feed<S: futures_util::Sink<Message> + Unpin>(sink: &mut S, text: Utf8Bytes) -> Result<(), S::Error> {
    for message in fragments(text) {
        sink.feed(message).await?;
    }
    Ok(())
}

fn close_with(code: u16) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: Utf8Bytes::from(close_reason(code)),
    }))
}

/// An error frame, encoded: every refusal a session sends is built here.
fn error_text(
    req: Option<RequestId>,
    code: ErrorCode,
    message: impl Into<String>,
    retry_after_ms: Option<u64>,
) -> Frame {
    let mut e = ErrorFrame::new(req, code, message);
    e.retry_after_ms = retry_after_ms;
    Frame::from(encode(&ServerFrame::Error(e)))
}

/// Serves one upgraded socket to its end: the hello, then the reader here and the writer in
/// its own task, then a teardown that closes the socket for sure.
///
/// Not an `async fn` itself: the future of one keeps room for its arguments for as long as it
/// lives (the task holds the largest of its states while the connection is open), and the
/// stream moves into its two halves here.
pub fn serve<S>(
    ws: WebSocketStream<S>,
    state: AppState,
    socket: Arc<Socket>,
    ip: IpAddr,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    serve_halves(sink, stream, state, socket, ip)
}

async fn serve_halves<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut stream: SplitStream<WebSocketStream<S>>,
    state: AppState,
    socket: Arc<Socket>,
    ip: IpAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    state.metrics.connections.fetch_add(1, Relaxed);
    let Some((token, greeting)) = hello(&mut sink, &mut stream, &state, &socket).await else {
        state.metrics.connections.fetch_sub(1, Relaxed);
        return;
    };
    let staff = token.staff.clone();
    let id = NEXT_CONN.fetch_add(1, Relaxed);
    let span = tracing::info_span!("session", conn = id, staff = %staff);
    async move {
        let (tx, rx) = mpsc::channel::<Outbound>(state.config.queue_frames);
        let conn = ConnHandle {
            id,
            tx,
            queued: Arc::new(Queued::new(state.config.queue_bytes)),
            closer: Arc::new(Closer::default()),
        };
        if let Err(refusal) = register(&state, &staff, greeting, &conn).await {
            let code = match refusal.code {
                ErrorCode::RateLimited => close::TOO_MANY_CONNECTIONS,
                _ => close::UNAUTHORIZED,
            };
            let refusal = ServerFrame::Error(refusal);
            refuse(&mut sink, &state, &socket, encode(&refusal).into(), code).await;
            state.metrics.connections.fetch_sub(1, Relaxed);
            return;
        }
        // A connection that authenticated is no attack: its attempt does not count against its
        // address, and it is no longer evicted to make room for new sockets.
        let l = &state.config.limits;
        state.address_buckets.refund(&ip, l.connect_burst);
        socket.authenticate();
        tracing::debug!("connected");

        let heard = Arc::new(Heard::default());
        let writer = tokio::spawn(write_loop(
            sink,
            rx,
            conn.clone(),
            heard.clone(),
            state.metrics.clone(),
        ));
        let session = Session {
            staff: staff.clone(),
            conn,
            state: state.clone(),
        };
        session.read_loop(&mut stream, &heard, token.valid_for()).await;

        // Teardown: give the writer a moment to send its close frame, then reset the socket if
        // the peer is not taking it. The connection counts (per staff and in the socket cap)
        // until both halves of the socket are dropped.
        session.conn.closer.close(close::NORMAL);
        let mut writer = writer;
        if tokio::time::timeout(CLOSE_GRACE, &mut writer).await.is_err() {
            state.metrics.sockets_killed.fetch_add(1, Relaxed);
            state.sockets.kill(&socket);
            let _ = writer.await;
        }
        drop(stream);
        let _ = state
            .core
            .send(Command::Disconnected { staff, conn_id: id })
            .await;
        state.metrics.connections.fetch_sub(1, Relaxed);
        tracing::debug!("disconnected");
    }
    .instrument(span)
    .await;
}

/// The first frame, which must be a valid `hello`, before the deadline that started when the
/// socket was accepted (so a slow upgrade does not buy more time). Refuses and closes otherwise.
async fn hello<K, R>(
    sink: &mut K,
    stream: &mut R,
    state: &AppState,
    socket: &Socket,
) -> Option<(Verified, Greeting)>
where
    K: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let deadline = socket.accepted() + HELLO_TIMEOUT;
    let first = tokio::time::timeout_at(deadline, async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(text))) => return Ok(text),
                Some(Ok(m)) if m.is_ping() || m.is_pong() => continue,
                Some(Err(e)) => return Err(close_code_of(&e)),
                _ => return Err(None),
            }
        }
    })
    .await;
    let refusal = |code: ErrorCode, message: &str, close_code: u16| {
        Err((error_text(None, code, message, None), close_code))
    };
    let outcome = match first {
        Err(_) => refusal(
            ErrorCode::HelloRequired,
            "no hello within 10 s",
            close::HELLO_TIMEOUT,
        ),
        Ok(Err(Some(code))) => Err((Frame::from(""), code)),
        Ok(Err(None)) => return None,
        Ok(Ok(text)) => match decode_client_frame(&text) {
            Ok(ClientFrame {
                request: Request::Hello { protocol, .. },
                ..
            }) if !ProtocolRange::SERVED.serves(protocol) => {
                let ProtocolRange { min, max } = ProtocolRange::SERVED;
                let message = format!("this relay serves protocol versions {min} to {max}: reload");
                refusal(
                    ErrorCode::UnsupportedProtocol,
                    &message,
                    close::UNSUPPORTED_PROTOCOL,
                )
            }
            Ok(ClientFrame {
                request:
                    Request::Hello {
                        token,
                        resume_from,
                        counts_first,
                        ..
                    },
                ..
            }) => match state.keys.verify(&token) {
                Ok(verified) => Ok((
                    verified,
                    Greeting {
                        resume_from,
                        counts_first,
                    },
                )),
                Err(e) => refusal(ErrorCode::Unauthorized, &e.to_string(), close::UNAUTHORIZED),
            },
            Ok(_) => refusal(
                ErrorCode::HelloRequired,
                "the first frame must be hello",
                close::UNAUTHORIZED,
            ),
            Err(e) => refusal(e.code(), &e.to_string(), close::UNAUTHORIZED),
        },
    };
    match outcome {
        Ok(hello) => Some(hello),
        Err((text, close_code)) => {
            refuse(sink, state, socket, text, close_code).await;
            None
        }
    }
}

/// Sends a refusal (if any) and a close, and resets the socket if the peer does not take them.
async fn refuse<K: Sink<Message> + Unpin>(
    sink: &mut K,
    state: &AppState,
    socket: &Socket,
    text: Frame,
    code: u16,
) {
    let send = async {
        if !text.is_empty() {
            sink.send(Message::Text(text)).await?;
        }
        sink.send(close_with(code)).await
    };
    if tokio::time::timeout(CLOSE_GRACE, send).await.is_err() {
        state.metrics.sockets_killed.fetch_add(1, Relaxed);
        state.sockets.kill(socket);
    }
}

/// Registers the connection with the core, which sends it a snapshot or a replay.
async fn register(
    state: &AppState,
    staff: &StaffId,
    greeting: Greeting,
    conn: &ConnHandle,
) -> Result<(), ErrorFrame> {
    let gone = || ErrorFrame::new(None, ErrorCode::Internal, "relay stopping");
    let (reply, answer) = oneshot::channel();
    let hello = Command::Hello {
        staff: staff.clone(),
        greeting,
        conn: conn.clone(),
        reply,
    };
    state.core.send(hello).await.map_err(|_| gone())?;
    answer.await.unwrap_or_else(|_| Err(gone()))
}

/// When the peer was last heard from, in milliseconds since the session started.
#[derive(Debug)]
struct Heard {
    epoch: Instant,
    last: AtomicU64,
}

impl Default for Heard {
    fn default() -> Self {
        Heard {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl Heard {
    fn now(&self) {
        self.last.store(self.epoch.elapsed().as_millis() as u64, Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last.load(Relaxed)))
    }
}

/// The writer: the connection's queue to the socket in flushed batches, pings, and the close
/// frame. A batch the peer does not take in time ends it (see [`Deadline`]).
async fn write_loop<K>(
    mut sink: K,
    mut rx: mpsc::Receiver<Outbound>,
    conn: ConnHandle,
    heard: Arc<Heard>,
    metrics: Arc<Metrics>,
) where
    K: Sink<Message> + Unpin,
{
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    // A frame being built elsewhere that a batch met: written first, once it is ready.
    let mut held: Option<oneshot::Receiver<Built>> = None;
    loop {
        tokio::select! {
            biased;
            code = conn.closer.closed() => {
                let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(close_with(code))).await;
                break;
            }
            item = next_outbound(&mut held, &mut rx) => {
                // Write what is queued (up to a batch) and flush once: one system call for a
                // burst of events rather than one each.
                let Some(first) = item else { break };
                let deadline = Deadline::new();
                let batch = async {
                    let mut next = Some(first);
                    let mut written = 0;
                    while let Some(built) = next.take() {
                        deadline.allow(built.frame.len());
                        let fed = feed(&mut sink, built.frame.clone()).await;
                        conn.queued.release_built(&built);
                        fed?;
                        written += 1;
                        if written < WRITE_BATCH {
                            match rx.try_recv() {
                                Ok(Outbound::Text(frame)) => next = Some(Built { frame, aside: false }),
                                Ok(Outbound::Later(later)) => held = Some(later),
                                Err(_) => {}
                            }
                        }
                    }
                    sink.flush().await
                };
                let outcome = tokio::select! {
                    done = batch => Some(done),
                    () = deadline.passed() => None,
                };
                match outcome {
                    Some(Ok(())) => {}
                    Some(Err(_)) => break,
                    None => {
                        metrics.slow_consumers.fetch_add(1, Relaxed);
                        conn.closer.close(close::SLOW_CONSUMER);
                        break;
                    }
                }
            }
            _ = ping.tick() => {
                if heard.silent_for() > DEAD_AFTER {
                    conn.closer.close(close::DEAD_PEER);
                    continue;
                }
                let sent = tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Ping(Bytes::new()))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    break;
                }
            }
        }
    }
    // Whatever ended the writer ends the reader too.
    conn.closer.close(close::NORMAL);
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
}

/// The slowest rate a peer may take a large batch at (a big snapshot on a poor mobile link
/// still arrives; a peer that takes less is a slow consumer).
pub const MIN_WRITE_RATE: usize = 8 * 1024;

/// When a batch of writes must be done: [`WRITE_TIMEOUT`] after it started, plus the time its
/// bytes take at [`MIN_WRITE_RATE`], so that a large frame is judged by the rate the peer takes
/// it at, not by its size.
struct Deadline {
    start: tokio::time::Instant,
    /// Milliseconds after `start` (an atomic, so the batch and the timer share it in one task).
    after_ms: AtomicU64,
}

impl Deadline {
    fn new() -> Deadline {
        Deadline {
            start: tokio::time::Instant::now(),
            after_ms: AtomicU64::new(WRITE_TIMEOUT.as_millis() as u64),
        }
    }

    /// Gives the batch the time `bytes` more take at the minimum rate.
    fn allow(&self, bytes: usize) {
        let ms = (bytes as u64).saturating_mul(1000) / MIN_WRITE_RATE as u64;
        self.after_ms.fetch_add(ms, Relaxed);
    }

    /// Resolves once the deadline, as it stands then, has passed.
    async fn passed(&self) {
        loop {
            let at = self.after_ms.load(Relaxed);
            tokio::time::sleep_until(self.start + Duration::from_millis(at)).await;
            if self.after_ms.load(Relaxed) == at {
                return;
            }
        }
    }
}

/// The next frame to write: a held frame being built elsewhere once it is ready, else the next
/// queued one (waiting for it when it is a placeholder). Every frame's bytes were counted (in
/// the queue, or beside it for a snapshot). `None` when the queue is closed or a placeholder
/// was abandoned (the connection is closing). Cancel-safe: a placeholder being waited for stays
/// in `held`.
async fn next_outbound(
    held: &mut Option<oneshot::Receiver<Built>>,
    rx: &mut mpsc::Receiver<Outbound>,
) -> Option<Built> {
    let later = match held.as_mut() {
        Some(later) => later,
        None => match rx.recv().await? {
            Outbound::Text(frame) => return Some(Built { frame, aside: false }),
            Outbound::Later(later) => held.insert(later),
        },
    };
    let built = later.await.ok();
    *held = None;
    built
}

/// The close code for a read error the peer caused, if it deserves one.
fn close_code_of(e: &WsError) -> Option<u16> {
    match e {
        WsError::Capacity(_) => Some(close::MESSAGE_TOO_BIG),
        WsError::Protocol(_) => Some(close::PROTOCOL_ERROR),
        WsError::Utf8(_) => Some(close::INVALID_PAYLOAD),
        _ => None,
    }
}

/// One authenticated connection's reading side.
struct Session {
    staff: StaffId,
    conn: ConnHandle,
    state: AppState,
}

impl Session {
    /// Reads frames until the peer closes, breaks the protocol, or a close asked for by anyone
    /// (the writer, the core, the token's expiry) has drained.
    async fn read_loop<R>(&self, stream: &mut R, heard: &Heard, token_valid_for: Duration)
    where
        R: Stream<Item = Result<Message, WsError>> + Unpin,
    {
        let expires = tokio::time::Instant::now() + token_valid_for;
        // After a close is asked for, keep reading (and ignoring) until the client answers it or
        // a deadline passes: closing a socket with unread input makes the kernel reset it, and
        // the client would lose the frames still in flight to it.
        let mut closing: Option<tokio::time::Instant> = None;
        let closer = &self.conn.closer;
        loop {
            let next = tokio::select! {
                m = stream.next() => m,
                _ = closer.closed(), if closing.is_none() => {
                    closing = Some(tokio::time::Instant::now() + CLOSE_DRAIN);
                    continue;
                }
                () = tokio::time::sleep_until(closing.unwrap_or(expires)), if closing.is_some() => break,
                () = tokio::time::sleep_until(expires), if closing.is_none() => {
                    // The token expired while the socket was open: the widget reconnects with
                    // a fresh one (getToken), exactly as HTTP would answer 401 now.
                    closer.close(close::UNAUTHORIZED);
                    continue;
                }
            };
            let msg = match next {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => {
                    if let Some(code) = close_code_of(&e) {
                        closer.close(code);
                    }
                    break;
                }
                None => break,
            };
            heard.now();
            if msg.is_close() {
                break;
            }
            if msg.is_ping() || msg.is_pong() || closing.is_some() {
                continue;
            }
            self.state.metrics.frames_in.fetch_add(1, Relaxed);
            let Message::Text(text) = msg else {
                self.refuse(None, ErrorCode::MalformedFrame, "frames are JSON text", None);
                continue;
            };
            if let Some(cmd) = self.dispatch(&text)
                && self.state.core.send(cmd).await.is_err()
            {
                break;
            }
        }
    }

    /// Decodes a frame and checks its budget: the command for the core, or a refusal sent.
    fn dispatch(&self, text: &str) -> Option<Command> {
        let frame = match decode_client_frame(text) {
            Ok(frame) => frame,
            Err(e) => {
                self.refuse(peek_req(text), e.code(), e.to_string(), None);
                return None;
            }
        };
        let kind = crate::limits::kind_of(&frame.request);
        let (rate, burst) = self.state.config.limits.budget(kind);
        let key = (self.staff.clone(), kind);
        if let Err(wait) = self.state.staff_buckets.take(&key, rate, burst, Instant::now()) {
            let retry = Some(wait.as_millis() as u64 + 1);
            self.refuse(frame.req, ErrorCode::RateLimited, "too many requests", retry);
            return None;
        }
        if let Request::ReportDivergence {
            conversation,
            offset,
            ours,
            relays,
        } = &frame.request
        {
            self.state.metrics.client_divergences.fetch_add(1, Relaxed);
            tracing::warn!(
                %conversation, offset = offset.0, ?ours, ?relays,
                "a widget's count diverged from the relay's"
            );
        }
        let (staff, conn, req) = (self.staff.clone(), self.conn.clone(), frame.req);
        Some(match frame.request.into_route() {
            Routed::Log(write) => Command::Execute {
                staff,
                req,
                write,
                conn,
            },
            Routed::Offset => Command::Offset { req, conn },
            Routed::Snapshot => Command::Snapshot { staff, req, conn },
            Routed::Visibility(visible) => Command::Visibility {
                staff,
                visible,
                req,
                conn,
            },
            Routed::Preferences { hide_read_state } => Command::Preferences {
                staff,
                hide_read_state,
                req,
                conn,
            },
            Routed::Quiet(quiet) => Command::Quiet {
                staff,
                quiet,
                req,
                conn,
            },
            Routed::Typing(conversation) => Command::Typing {
                staff,
                conversation,
                req,
                conn,
            },
            Routed::Hello => {
                self.refuse(req, ErrorCode::HelloRequired, "already said hello", None);
                return None;
            }
        })
    }

    fn refuse(
        &self,
        req: Option<RequestId>,
        code: ErrorCode,
        message: impl Into<String>,
        retry: Option<u64>,
    ) {
        self.state.metrics.reject(code);
        self.conn
            .send(&error_text(req, code, message, retry), &self.state.metrics);
    }
}

fn close_reason(code: u16) -> &'static str {
    match code {
        close::GOING_AWAY => "relay restarting",
        close::PROTOCOL_ERROR => "protocol error",
        close::INVALID_PAYLOAD => "text frames must be UTF-8",
        close::MESSAGE_TOO_BIG => "message too big",
        close::UNAUTHORIZED => "token refused or expired",
        close::HELLO_TIMEOUT => "no hello in time",
        close::DEACTIVATED => "deactivated",
        close::SLOW_CONSUMER => "too slow; resume from your offset",
        close::DEAD_PEER => "no pong",
        close::TOO_MANY_CONNECTIONS => "too many connections",
        close::UNSUPPORTED_PROTOCOL => "protocol version not served: reload",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(text: &str) -> Vec<(bool, Option<Data>, Vec<u8>)> {
        fragments(Utf8Bytes::from(text))
            .map(|m| match m {
                Message::Text(t) => (true, Some(Data::Text), t.as_bytes().to_vec()),
                Message::Frame(f) => {
                    let opcode = match f.header().opcode {
                        OpCode::Data(d) => Some(d),
                        OpCode::Control(_) => None,
                    };
                    (f.header().is_final, opcode, f.payload().to_vec())
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_small_message_is_one_frame_and_a_large_one_is_fragmented_in_order() {
        assert_eq!(payloads("{}"), vec![(true, Some(Data::Text), b"{}".to_vec())]);
        // Two-byte characters, so that fragment boundaries fall inside them.
        let text = "é".repeat(FRAGMENT + 7);
        let parts = payloads(&text);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.2.len() <= FRAGMENT));
        let flags: Vec<_> = parts.iter().map(|p| (p.0, p.1)).collect();
        assert_eq!(
            flags,
            [
                (false, Some(Data::Text)),
                (false, Some(Data::Continue)),
                (true, Some(Data::Continue))
            ]
        );
        let whole: Vec<u8> = parts.into_iter().flat_map(|p| p.2).collect();
        assert_eq!(whole, text.as_bytes());
    }
}
