//! Telling a keep-alive connection waiting for its next request from a request that is slow to
//! arrive, which hyper's HTTP/1 server does not.
//!
//! hyper 1.x arms `header_read_timeout` as soon as it starts waiting for a request head, so on
//! a keep-alive connection it also runs while the connection sits idle between requests: with
//! a 10 s header limit an idle connection is closed after 10 s, and a client (or a load
//! balancer holding connections for 60 s) that reuses it just then gets "connection closed
//! without response". Two limits are wanted instead:
//!
//! - **header timeout**, counted from the first byte of a request: how long a client may take
//!   to finish sending the head once it has started (the slowloris guard);
//! - **keep-alive timeout**, counted from when the connection starts waiting: how long a
//!   connection may sit with no request at all (a fresh one included) before it is closed.
//!
//! How: each connection's IO is wrapped in [`Watched`], which notes in one flag whether bytes
//! have been read since the last response write; each connection gets its own
//! [`HeadTimer`], the timer hyper arms for its header timeout. The sleep it returns waits out
//! the keep-alive timeout, and switches to the header timeout the first time it is polled after
//! bytes arrived — hyper polls it exactly when a read left the head incomplete. A head that
//! arrives in one read never looks at the clock. The cost on the request path is one relaxed
//! store per read and per write, and the one boxed sleep per request hyper made already.
//!
//! Known gap: bytes of a next request that hyper read *before* writing the current response
//! (pipelining) are not seen again, so a partial pipelined head gets the keep-alive timeout.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Whether the request now awaited has sent a byte; shared by a connection's IO and timer.
#[derive(Debug, Default)]
struct Activity {
    request_started: AtomicBool,
}

/// A connection's IO, noting reads of a request's bytes and writes of a response.
pub(super) struct Watched<IO> {
    io: IO,
    activity: Arc<Activity>,
}

/// Wraps `io` and makes the timer to give its connection's hyper builder.
pub(super) fn watch<IO>(
    io: IO,
    header_timeout: Duration,
    keepalive: Duration,
) -> (Watched<IO>, HeadTimer) {
    let activity = Arc::new(Activity::default());
    let timer = HeadTimer {
        activity: activity.clone(),
        header_timeout,
        keepalive,
    };
    (Watched { io, activity }, timer)
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.io).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.activity.request_started.store(true, Ordering::Relaxed);
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> Watched<IO> {
    /// A response is being written: whatever is read from now on belongs to the next request.
    fn wrote(&self, written: &Poll<io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity
                .request_started
                .store(false, Ordering::Relaxed);
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The timer of one connection. hyper's HTTP/1 server arms a timer for one thing only, its
/// header timeout, at the moment it starts waiting for a request head.
#[derive(Debug, Clone)]
pub(super) struct HeadTimer {
    activity: Arc<Activity>,
    header_timeout: Duration,
    keepalive: Duration,
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    /// `deadline` is when hyper's header timeout would end: the wait began `header_timeout`
    /// before it.
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let waiting_since = deadline
            .checked_sub(self.header_timeout)
            .unwrap_or(deadline);
        Box::pin(HeadWait {
            sleep: tokio::time::sleep_until((waiting_since + self.keepalive).into()),
            activity: self.activity.clone(),
            header_timeout: self.header_timeout,
            from_first_byte: false,
        })
    }
}

pin_project_lite::pin_project! {
    /// The keep-alive timeout until a byte of the request arrives, then the header timeout
    /// from then.
    struct HeadWait {
        #[pin]
        sleep: tokio::time::Sleep,
        activity: Arc<Activity>,
        header_timeout: Duration,
        from_first_byte: bool,
    }
}

impl hyper::rt::Sleep for HeadWait {}

impl Future for HeadWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        if !*this.from_first_byte && this.activity.request_started.load(Ordering::Relaxed) {
            *this.from_first_byte = true;
            let deadline = tokio::time::Instant::now() + *this.header_timeout;
            this.sleep.as_mut().reset(deadline);
        }
        this.sleep.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use hyper::rt::Timer;

    use super::*;

    fn timer() -> HeadTimer {
        let (_, timer) = watch((), Duration::from_secs(1), Duration::from_secs(10));
        timer
    }

    fn ready(wait: &mut Pin<Box<dyn hyper::rt::Sleep>>) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        wait.as_mut().poll(&mut cx).is_ready()
    }

    /// Waiting with no byte read lasts the keep-alive timeout, not the header timeout.
    #[tokio::test(start_paused = true)]
    async fn idle_wait_lasts_the_keepalive_timeout() {
        let timer = timer();
        let mut wait = timer.sleep(Duration::from_secs(1));
        assert!(!ready(&mut wait));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(
            !ready(&mut wait),
            "idle connection cut at the header timeout"
        );
        // A margin: hyper's deadlines are `std` instants, the paused test clock is tokio's.
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(ready(&mut wait));
    }

    /// Once a byte has arrived the head has the header timeout from then, however long the
    /// connection was idle before.
    #[tokio::test(start_paused = true)]
    async fn first_byte_starts_the_header_timeout() {
        let timer = timer();
        let mut wait = timer.sleep(Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!ready(&mut wait));
        timer
            .activity
            .request_started
            .store(true, Ordering::Relaxed);
        assert!(!ready(&mut wait));
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(!ready(&mut wait));
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(ready(&mut wait), "slow head not cut off");
    }
}
