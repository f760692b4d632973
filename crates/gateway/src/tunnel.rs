//! An upgraded connection (a WebSocket) tunnelled between client and app until either closes, or until neither
//! has sent a byte for the tunnel timeout: a tunnel nobody uses holds two descriptors of the daemon's for nothing.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Tunnels `client` and `app` once both upgrades complete; `held` (the client connection's place under the
/// connection cap, and the request's flight, which keeps its environment awake) is let go when the tunnel ends.
pub(crate) fn spawn<H: Send + 'static>(client: OnUpgrade, app: OnUpgrade, idle: Duration, held: H) {
    tokio::spawn(async move {
        let _held = held;
        let (Ok(client), Ok(app)) = (client.await, app.await) else {
            return;
        };
        let activity = Arc::new(Activity::new());
        let mut client = Watched {
            io: TokioIo::new(client),
            activity: Arc::clone(&activity),
        };
        let mut app = Watched {
            io: TokioIo::new(app),
            activity: Arc::clone(&activity),
        };
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut app) => {}
            () = activity.quiet_for(idle) => {}
        }
    });
}

/// When a byte last went through, in milliseconds since the tunnel began.
struct Activity {
    began: Instant,
    last: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            began: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.began.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    /// Resolves once nothing went through for `limit`.
    async fn quiet_for(&self, limit: Duration) {
        loop {
            let last = self.began + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let deadline = last + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// One side of a tunnel, noting every byte that goes through.
struct Watched<I> {
    io: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
