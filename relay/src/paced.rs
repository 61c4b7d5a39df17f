//! Request bodies that must keep arriving. hyper's header timeout ends a request whose headers
//! trickle in, but not one whose body does: a peer could hold a socket (and an upload slot)
//! for ever by sending a byte every few seconds. Every request body is read through [`Paced`],
//! which fails once the body falls behind [`BODY_GRACE`] plus its bytes at [`MIN_BODY_RATE`];
//! the listener then answers `408 request_timeout` and closes the connection.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Time a body gets before the rate counts (a client may pause between headers and body).
pub const BODY_GRACE: Duration = Duration::from_secs(10);
/// The slowest rate a body may arrive at: a 10 MiB upload on a poor mobile link (about 32
/// kbit/s) still arrives; a peer that sends less is cut off.
pub const MIN_BODY_RATE: u64 = 4 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error a body that fell behind ends with.
#[derive(Debug)]
pub struct TooSlow;

impl std::fmt::Display for TooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body arrived slower than {} bytes/s",
            MIN_BODY_RATE
        )
    }
}

impl std::error::Error for TooSlow {}

/// A request body with a deadline that moves with what has arrived; `timed_out` is set when it
/// fails for being slow.
pub struct Paced<B> {
    inner: B,
    started: Instant,
    received: u64,
    sleep: Pin<Box<Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl<B> Paced<B> {
    /// Paces `inner`, starting now; `timed_out` tells the listener how it ended.
    pub fn new(inner: B, timed_out: Arc<AtomicBool>) -> Self {
        let started = Instant::now();
        Paced {
            inner,
            started,
            received: 0,
            sleep: Box::pin(tokio::time::sleep_until(started + BODY_GRACE)),
            timed_out,
        }
    }

    fn deadline(&self) -> Instant {
        self.started + BODY_GRACE + Duration::from_millis(self.received.saturating_mul(1000) / MIN_BODY_RATE)
    }
}

impl<B> Body for Paced<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    let deadline = this.deadline();
                    this.sleep.as_mut().reset(deadline);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.timed_out.store(true, Ordering::Release);
                    Poll::Ready(Some(Err(Box::new(TooSlow))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body that yields one byte every `every`, `n` times.
    fn trickle(n: usize, every: Duration) -> impl Body<Data = Bytes, Error = BoxError> + Unpin {
        let stream = futures_util::stream::unfold(0, move |i| async move {
            if i == n {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"x"))), i + 1))
        });
        http_body_util::StreamBody::new(Box::pin(stream))
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_body_fails_after_its_grace_and_says_so() {
        let flag = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let body = Paced::new(trickle(100, Duration::from_secs(5)), flag.clone());
        let Err(err) = body.collect().await else {
            panic!("not cut off")
        };
        assert!(err.is::<TooSlow>(), "{err}");
        assert!(flag.load(Ordering::Acquire));
        // One byte every 5 s earns nothing: it ends right after the grace.
        assert!(started.elapsed() <= BODY_GRACE + Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_the_minimum_rate_arrives_whole() {
        let flag = Arc::new(AtomicBool::new(false));
        // 64 KiB in 1 KiB pieces, each a little faster than the minimum rate allows.
        let every = Duration::from_millis(1000 * 1024 / MIN_BODY_RATE - 10);
        let stream = futures_util::stream::unfold(0, move |i| async move {
            if i == 64 {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((
                Ok::<_, BoxError>(Frame::data(Bytes::from(vec![b'y'; 1024]))),
                i + 1,
            ))
        });
        let body = Paced::new(http_body_util::StreamBody::new(Box::pin(stream)), flag.clone());
        let all = body.collect().await.expect("whole").to_bytes();
        assert_eq!(all.len(), 64 * 1024);
        assert!(!flag.load(Ordering::Acquire));
    }
}
