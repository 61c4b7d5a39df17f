//! One WebSocket: the hello handshake, the read loop (decode, hand to the core), and the write
//! loop (the connection's queue, heartbeats, closing).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tally_shared::protocol::{ErrorFrame, ServerFrame, close, decode_client_frame, encode};
use tally_shared::{ErrorCode, Request, limits};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};
use tracing::Instrument;

use crate::core::Command;
use crate::hub::{Closer, ConnHandle, Outbound};
use crate::server::AppState;

/// How long a connection may take to say hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the relay pings.
pub const PING_EVERY: Duration = Duration::from_secs(20);
/// How long a closing connection waits for the client's close reply.
pub const CLOSE_DRAIN: Duration = Duration::from_secs(5);
/// Silence after which a peer counts as dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(60);

/// Most queued frames a writer sends before flushing the socket once.
const WRITE_BATCH: usize = 64;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// The transport settings of every connection. Tungstenite's default 128 KiB read buffer per
/// connection would dominate an idle relay's memory; client frames are small, and a larger one
/// still arrives whole (the buffer grows for it). The size limits are generous enough that an
/// oversized frame still reaches the decoder and gets a `frame_too_large` error frame.
///
/// Tungstenite also keeps its write buffer's largest size for the connection's life, so one
/// large snapshot would stay allocated all day: the buffer is written out past [`FRAGMENT`], and
/// [`fragments`] splits larger frames into WebSocket continuation frames of that size.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(FRAGMENT)
        .max_message_size(Some(4 * limits::CLIENT_FRAME_MAX_BYTES))
        .max_frame_size(Some(4 * limits::CLIENT_FRAME_MAX_BYTES))
}

/// The largest WebSocket frame the relay writes; longer messages are fragmented (RFC 6455
/// §5.4), which every WebSocket client reassembles.
pub const FRAGMENT: usize = 8 * 1024;

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
            Message::Frame(Frame::message(chunk, opcode, i + 1 == count))
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

fn close_with(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: Utf8Bytes::from(reason),
    }))
}

fn error_text(code: ErrorCode, message: impl Into<String>) -> String {
    encode(&ServerFrame::Error(ErrorFrame {
        req: None,
        code,
        message: message.into(),
        retry_after_ms: None,
    }))
}

/// Serves one upgraded socket to its end.
pub async fn serve<S>(ws: WebSocketStream<S>, state: AppState)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    state.metrics.connections.fetch_add(1, Relaxed);
    let (mut sink, mut stream) = ws.split();

    // Hello: the first frame, within the timeout.
    let first = tokio::time::timeout(HELLO_TIMEOUT, async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(text))) => return Some(text),
                Some(Ok(m)) if m.is_ping() || m.is_pong() => continue,
                _ => return None,
            }
        }
    })
    .await;
    let refuse = |code: ErrorCode, message: &str, close_code: u16| {
        (error_text(code, message), close_with(close_code, message))
    };
    let outcome = match first {
        Err(_) => Err(refuse(
            ErrorCode::HelloRequired,
            "no hello within 10 s",
            close::HELLO_TIMEOUT,
        )),
        Ok(None) => Err((String::new(), Message::Close(None))),
        Ok(Some(text)) => match decode_client_frame(&text) {
            Ok(frame) => match frame.request {
                Request::Hello { token, resume_from } => match state.keys.verify(&token) {
                    Ok(staff) => Ok((staff, resume_from)),
                    Err(e) => Err(refuse(
                        ErrorCode::Unauthorized,
                        &e.to_string(),
                        close::UNAUTHORIZED,
                    )),
                },
                _ => Err(refuse(
                    ErrorCode::HelloRequired,
                    "the first frame must be hello",
                    close::UNAUTHORIZED,
                )),
            },
            Err(e) => Err(refuse(e.code(), &e.to_string(), close::UNAUTHORIZED)),
        },
    };
    let (staff, resume_from) = match outcome {
        Ok(v) => v,
        Err((text, close_frame)) => {
            if !text.is_empty() {
                let _ = sink.send(Message::text(text)).await;
            }
            let _ = sink.send(close_frame).await;
            state.metrics.connections.fetch_sub(1, Relaxed);
            return;
        }
    };

    let id = NEXT_CONN.fetch_add(1, Relaxed);
    let span = tracing::info_span!("session", conn = id, staff = %staff);
    async move {
        let (tx, mut rx) = mpsc::channel::<Outbound>(state.config.queue_frames);
        let closer = Arc::new(Closer::default());
        let conn = ConnHandle {
            id,
            tx,
            closer: closer.clone(),
        };
        let (reply, answer) = oneshot::channel();
        let hello = Command::Hello {
            staff: staff.clone(),
            resume_from,
            conn: conn.clone(),
            reply,
        };
        let registered = match state.core.send(hello).await {
            Ok(()) => answer.await.unwrap_or_else(|_| {
                Err(ErrorFrame {
                    req: None,
                    code: ErrorCode::Internal,
                    message: "relay stopping".into(),
                    retry_after_ms: None,
                })
            }),
            Err(_) => return,
        };
        if let Err(e) = registered {
            let code = if e.code == ErrorCode::RateLimited { close::TOO_MANY_CONNECTIONS } else { close::UNAUTHORIZED };
            let _ = sink.send(Message::text(encode(&ServerFrame::Error(e)))).await;
            let _ = sink.send(close_with(code, "refused")).await;
            state.metrics.connections.fetch_sub(1, Relaxed);
            return;
        }
        tracing::debug!("connected");

        let last_heard = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let heard = last_heard.clone();
        let writer_closer = closer.clone();
        let writer = tokio::spawn(async move {
            let mut ping = tokio::time::interval(PING_EVERY);
            ping.tick().await;
            loop {
                tokio::select! {
                    biased;
                    code = writer_closer.closed() => {
                        let _ = sink.send(close_with(code, close_reason(code))).await;
                        break;
                    }
                    item = rx.recv() => {
                        // Write what is queued (up to a batch) and flush once: one system call
                        // for a burst of events rather than one each.
                        let Some(Outbound::Text(first)) = item else { break };
                        let mut fed = feed(&mut sink, first).await;
                        for _ in 1..WRITE_BATCH {
                            let Ok(Outbound::Text(next)) = rx.try_recv() else { break };
                            if fed.is_err() {
                                break;
                            }
                            fed = feed(&mut sink, next).await;
                        }
                        if fed.is_err() || sink.flush().await.is_err() {
                            break;
                        }
                    }
                    _ = ping.tick() => {
                        let silent = epoch.elapsed().as_millis() as u64 - heard.load(Relaxed);
                        if silent > DEAD_AFTER.as_millis() as u64 {
                            let _ = sink.send(close_with(close::DEAD_PEER, "no pong")).await;
                            break;
                        }
                        if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = sink.close().await;
        });

        // After the relay asks to close, keep reading (and ignoring) until the client answers
        // the close or a deadline passes: closing a socket with unread input makes the kernel
        // reset it, and the client would lose the frames still in flight to it.
        let mut closing: Option<tokio::time::Instant> = None;
        loop {
            let next = tokio::select! {
                m = stream.next() => m,
                _ = closer.closed(), if closing.is_none() => {
                    closing = Some(tokio::time::Instant::now() + CLOSE_DRAIN);
                    continue;
                }
                _ = tokio::time::sleep_until(closing.unwrap_or_else(tokio::time::Instant::now)), if closing.is_some() => break,
            };
            let Some(Ok(msg)) = next else { break };
            last_heard.store(epoch.elapsed().as_millis() as u64, Relaxed);
            if msg.is_close() {
                break;
            }
            if msg.is_ping() || msg.is_pong() || closing.is_some() {
                continue;
            }
            state.metrics.frames_in.fetch_add(1, Relaxed);
            let Message::Text(text) = msg else {
                state.metrics.reject(ErrorCode::MalformedFrame);
                conn.send(
                    &error_text(ErrorCode::MalformedFrame, "frames are JSON text").into(),
                    &state.metrics,
                );
                continue;
            };
            match decode_client_frame(&text) {
                Ok(frame) => {
                    if let Request::Hello { .. } = frame.request {
                        state.metrics.reject(ErrorCode::HelloRequired);
                        let e = ErrorFrame {
                            req: frame.req,
                            code: ErrorCode::HelloRequired,
                            message: "already said hello".into(),
                            retry_after_ms: None,
                        };
                        conn.send(&encode(&ServerFrame::Error(e)).into(), &state.metrics);
                        continue;
                    }
                    let limits = &state.config.limits;
                    let kind = crate::limits::kind_of(&frame.request);
                    let (rate, burst) = match kind {
                        crate::limits::Kind::Read => (limits.reads_per_sec, limits.read_burst),
                        crate::limits::Kind::Write => (limits.writes_per_sec, limits.write_burst),
                    };
                    if let Err(wait) = state.staff_buckets.take(&(staff.clone(), kind), rate, burst, Instant::now()) {
                        state.metrics.reject(ErrorCode::RateLimited);
                        let e = ErrorFrame {
                            req: frame.req,
                            code: ErrorCode::RateLimited,
                            message: "too many requests".into(),
                            retry_after_ms: Some(wait.as_millis() as u64 + 1),
                        };
                        conn.send(&encode(&ServerFrame::Error(e)).into(), &state.metrics);
                        continue;
                    }
                    let cmd = if let Request::RequestSnapshot = frame.request {
                        Command::Snapshot {
                            staff: staff.clone(),
                            conn: conn.clone(),
                        }
                    } else {
                        Command::Execute {
                            staff: staff.clone(),
                            frame,
                            conn: conn.clone(),
                        }
                    };
                    if state.core.send(cmd).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    state.metrics.reject(e.code());
                    conn.send(&error_text(e.code(), e.to_string()).into(), &state.metrics);
                }
            }
        }
        closer.close(1000);
        let _ = writer.await;
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

fn close_reason(code: u16) -> &'static str {
    match code {
        close::GOING_AWAY => "relay restarting",
        close::SLOW_CONSUMER => "too slow; resume from your offset",
        close::DEACTIVATED => "deactivated",
        close::DEAD_PEER => "no pong",
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
