//! Accepting sockets: a cap on open sockets that makes room by evicting unauthenticated ones,
//! hyper's header-read timeout (which also ends idle keep-alive connections), and a kill switch
//! per socket that resets it whoever holds it, so a peer that stops reading cannot keep it.
//!
//! A socket counts against the cap from `accept` until its file descriptor is closed, not until
//! some task decides it is done with it: [`Guarded`] owns the stream and leaves the registry
//! when it is dropped.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use futures_util::{Future, TryStreamExt};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use warp::http::{Request, Response};

use crate::metrics::Metrics;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Sockets the relay keeps for itself (SQLite, attachments, the log) below the descriptor limit.
const RESERVED_DESCRIPTORS: usize = 64;

/// One accepted socket, as the registry and the tasks serving it see it.
#[derive(Debug)]
pub struct Socket {
    id: u64,
    /// The TCP peer (a proxy's address when there is one).
    pub peer: SocketAddr,
    accepted: tokio::time::Instant,
    authenticated: AtomicBool,
    killed: AtomicBool,
    read: AtomicWaker,
    write: AtomicWaker,
}

impl Socket {
    /// Tears the socket down: every pending and later read or write fails, and closing it
    /// resets the connection instead of waiting for the peer to take what is queued. True if
    /// this call killed it (see [`Sockets::kill`], the way in from outside).
    fn kill(&self) -> bool {
        let first = !self.killed.swap(true, AcqRel);
        if first {
            self.read.wake();
            self.write.wake();
        }
        first
    }

    /// Marks the socket as a WebSocket whose staff member said a valid hello: it is no longer
    /// evicted to make room.
    pub fn authenticate(&self) {
        self.authenticated.store(true, Release);
    }

    /// When it was accepted: the hello deadline runs from here, not from the upgrade.
    pub fn accepted(&self) -> tokio::time::Instant {
        self.accepted
    }

    fn is_killed(&self) -> bool {
        self.killed.load(Acquire)
    }
}

/// The socket a request arrived on, in each request's extensions.
#[derive(Debug, Clone)]
pub struct ConnInfo(pub Arc<Socket>);

/// Every open socket, oldest first.
#[derive(Debug)]
pub struct Sockets {
    open: Mutex<BTreeMap<u64, Arc<Socket>>>,
    next: AtomicU64,
    /// Killed but not yet closed: they still hold a descriptor but make room soon.
    dying: AtomicUsize,
    cap: usize,
    metrics: Arc<Metrics>,
}

impl Sockets {
    /// A registry that admits at most `cap` live sockets.
    pub fn new(cap: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Sockets {
            open: Mutex::default(),
            next: AtomicU64::new(1),
            dying: AtomicUsize::new(0),
            cap: cap.max(1),
            metrics,
        })
    }

    /// The cap.
    pub fn cap(&self) -> usize {
        self.cap
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Socket>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new socket, making room by evicting the oldest unauthenticated one when the cap
    /// is reached; `None` (and the socket closed) when every socket is authenticated.
    fn admit(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr) -> Option<Guarded> {
        let mut open = self.lock();
        let live = open.len().saturating_sub(self.dying.load(Acquire));
        if live >= self.cap && !self.evict_locked(&open) {
            self.metrics.sockets_refused.fetch_add(1, Relaxed);
            return None;
        }
        let socket = Arc::new(Socket {
            id: self.next.fetch_add(1, Relaxed),
            peer,
            accepted: tokio::time::Instant::now(),
            authenticated: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            read: AtomicWaker::new(),
            write: AtomicWaker::new(),
        });
        open.insert(socket.id, socket.clone());
        self.metrics.sockets.fetch_add(1, Relaxed);
        Some(Guarded {
            io: stream,
            socket,
            sockets: self.clone(),
        })
    }

    /// Kills the oldest socket that has not authenticated; false if there is none.
    fn evict_locked(&self, open: &BTreeMap<u64, Arc<Socket>>) -> bool {
        let victim = open
            .values()
            .find(|s| !s.authenticated.load(Acquire) && !s.is_killed());
        match victim {
            Some(s) => {
                self.kill(s);
                self.metrics.sockets_evicted.fetch_add(1, Relaxed);
                true
            }
            None => false,
        }
    }

    /// Kills a socket, counting it as dying until it is closed.
    pub fn kill(&self, socket: &Socket) {
        // Counted before the kill is visible, so that `closed` never subtracts first.
        self.dying.fetch_add(1, AcqRel);
        if !socket.kill() {
            self.dying.fetch_sub(1, AcqRel);
        }
    }

    /// Kills every unauthenticated socket (at shutdown: idle keep-alive connections).
    pub fn kill_unauthenticated(&self) {
        let open = self.lock();
        for s in open.values().filter(|s| !s.authenticated.load(Acquire)) {
            self.kill(s);
        }
    }

    fn closed(&self, socket: &Socket) {
        if self.lock().remove(&socket.id).is_some() {
            self.metrics.sockets.fetch_sub(1, Relaxed);
            if socket.is_killed() {
                self.dying.fetch_sub(1, AcqRel);
            }
        }
    }
}

/// A TCP stream that fails every read and write once its [`Socket`] is killed, and resets the
/// connection when it is then dropped.
#[derive(Debug)]
pub struct Guarded {
    io: TcpStream,
    socket: Arc<Socket>,
    sockets: Arc<Sockets>,
}

fn killed() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "socket killed")
}

impl Guarded {
    fn poll_guarded<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: bool,
        op: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if self.socket.is_killed() {
            return Poll::Ready(Err(killed()));
        }
        let waker = if write {
            &self.socket.write
        } else {
            &self.socket.read
        };
        waker.register(cx.waker());
        match op(Pin::new(&mut self.io), cx) {
            // A kill between the check and the registration would otherwise go unnoticed.
            Poll::Pending if self.socket.is_killed() => Poll::Ready(Err(killed())),
            other => other,
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.poll_guarded(cx, false, |io, cx| io.poll_read(cx, buf))
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_guarded(cx, true, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_guarded(cx, true, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_guarded(cx, true, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_guarded(cx, true, |io, cx| io.poll_shutdown(cx))
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if self.socket.is_killed() {
            // Close with a reset: what the peer never read is dropped at once instead of
            // keeping the socket (and its send queue) alive in the kernel.
            let _ = socket2::SockRef::from(&self.io).set_linger(Some(Duration::ZERO));
        }
        self.sockets.closed(&self.socket);
    }
}

/// The default socket cap: the process's descriptor limit, less what the relay needs itself.
pub fn default_cap() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse::<usize>().ok())
        });
    soft.unwrap_or(1024)
        .saturating_sub(RESERVED_DESCRIPTORS)
        .clamp(16, 1_000_000)
}

/// A response whose body is a file, streamed in chunks rather than read into memory: handlers
/// put one in the response's extensions and leave its body empty.
#[derive(Debug, Clone)]
pub struct FileBody(Arc<Mutex<Option<tokio::fs::File>>>);

impl FileBody {
    /// Streams `file` as the body.
    pub fn new(file: tokio::fs::File) -> Self {
        FileBody(Arc::new(Mutex::new(Some(file))))
    }

    fn take(&self) -> Option<tokio::fs::File> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Chunks of a streamed file.
const FILE_CHUNK: usize = 64 * 1024;

fn into_body(response: warp::reply::Response) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    if let Some(file) = parts.extensions.remove::<FileBody>().and_then(|f| f.take()) {
        let chunks = tokio_util::io::ReaderStream::with_capacity(file, FILE_CHUNK)
            .map_ok(Frame::data)
            .map_err(BoxError::from);
        return Response::from_parts(
            parts,
            BodyExt::boxed_unsync(http_body_util::StreamBody::new(chunks)),
        );
    }
    Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync())
}

/// How the accept loop treats sockets.
#[derive(Debug, Clone, Copy)]
pub struct SocketLimits {
    /// Longest a client may take to send a request's headers, and longest an idle keep-alive
    /// connection stays open.
    pub header_timeout: Duration,
}

/// Accepts sockets until `stop` resolves, serving each with `filter` over HTTP/1.1 (with
/// upgrades), and tells every request which socket it came on through [`ConnInfo`].
pub async fn serve(
    listener: TcpListener,
    filter: warp::filters::BoxedFilter<(warp::reply::Response,)>,
    sockets: Arc<Sockets>,
    limits: SocketLimits,
    stop: impl Future<Output = ()>,
) {
    let service = warp::service(filter);
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut stop => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors (or another transient failure): make room and retry soon,
                // rather than leave the listener spinning.
                tracing::warn!(error = %e, "accept failed; evicting an unauthenticated socket");
                sockets.evict_locked(&sockets.lock());
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Some(io) = sockets.admit(stream, peer) else {
            continue;
        };
        let info = ConnInfo(io.socket.clone());
        let service = service.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(info.clone());
                let mut service = service.clone();
                // Every body must keep arriving (see `paced`); one that falls behind is answered
                // 408 whatever the route made of its error, and the connection closes.
                let timed_out = Arc::new(AtomicBool::new(false));
                let request = request.map(|body| crate::paced::Paced::new(body, timed_out.clone()));
                async move {
                    let response = tower_service::Service::call(&mut service, request).await?;
                    if timed_out.load(Acquire) {
                        return Ok(into_body(crate::rejection::body_too_slow()));
                    }
                    Ok::<_, Infallible>(into_body(response))
                }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            if let Err(e) = http
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades()
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    sockets.kill_unauthenticated();
}
