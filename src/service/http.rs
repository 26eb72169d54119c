//! The HTTP API's connections: how many, how long, and what a client that
//! sends nothing, or stops reading, may hold (`api` holds the routes).
//!
//! * HTTP/1.1 only (no HTTP/2, with or without TLS); TLS when configured.
//! * At most [`MAX_CONNECTIONS`] connections at once. Beyond that, new
//!   ones wait in the kernel's listen queue (using no descriptor of this
//!   process) until one closes, so a flood of connections cannot take the
//!   descriptors the scheduler's backups need.
//! * A connection with no request in progress is closed after
//!   [`Limits::wait`] (10 s) without a byte from the client: a silent
//!   connection, an idle keep-alive. A request's headers must arrive
//!   within that time of their first byte (hyper's header timeout).
//! * A connection with a request in progress (its response still being
//!   made or sent) is closed after [`Limits::stall`] (30 s) in which no
//!   byte moved either way: a client that stopped reading a download. Closing it
//!   drops the response's stream, which stops the work producing it
//!   (`api`), releasing the repository's lock.
//! * A response whose producer has nothing to send yet (SQL text made from
//!   a rebuilt image) is not stalled by the client: the stall counts from
//!   the producer's last frame.
//! * A TLS handshake must end within [`Limits::wait`] of the connection,
//!   however slowly its bytes arrive.
//! * Shutdown: no new connections; the open ones get 10 s to finish.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tower_service::Service as _;

/// The most connections served at once.
pub const MAX_CONNECTIONS: usize = 64;

/// How long connections may be idle (`[api]` `client_timeout` and
/// `stall_timeout`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long a connection may wait for a request (or a request for its
    /// headers) without a byte from the client.
    pub wait: Duration,
    /// How long a request in progress may go without a byte moving.
    pub stall: Duration,
}
/// How long open connections get to finish at shutdown.
const GRACE: Duration = Duration::from_secs(10);

/// What a connection has been doing: when a byte last moved, and how many
/// requests are in progress (their responses not yet sent whole).
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
    /// Responses waiting for their producer (a SQL text being made): the
    /// client is not stalling them.
    producing: AtomicUsize,
    limits: Limits,
}

impl Activity {
    fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            producing: AtomicUsize::new(0),
            limits,
        })
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Resolves once the connection has been idle for longer than its
    /// state allows.
    async fn expired(&self) {
        loop {
            if self.producing.load(Ordering::Relaxed) > 0 {
                // Nothing to send yet: the wait is ours, not the client's.
                self.touch();
            }
            let limit = if self.busy.load(Ordering::Relaxed) > 0 {
                self.limits.stall
            } else {
                self.limits.wait
            };
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let idle = self.start.elapsed().saturating_sub(last);
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit.saturating_sub(idle).min(Duration::from_secs(1))).await;
        }
    }
}

/// A stream that records each byte moving through it.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that counts its request as in progress until it has
/// been sent whole or dropped.
struct Tracked {
    inner: Body,
    busy: Busy,
    /// Counted in `producing`: the last poll found no frame ready.
    waiting: bool,
}

impl Tracked {
    fn waiting(&mut self, now: bool) {
        if now != self.waiting {
            self.waiting = now;
            if now {
                self.busy.0.producing.fetch_add(1, Ordering::Relaxed);
            } else {
                self.busy.0.producing.fetch_sub(1, Ordering::Relaxed);
                self.busy.0.touch();
            }
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.waiting(false);
    }
}

/// One request in progress on a connection.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(a: &Arc<Activity>) -> Self {
        a.busy.fetch_add(1, Ordering::Relaxed);
        a.touch();
        Self(Arc::clone(a))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

impl hyper::body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        // Polled only when hyper can send more: `Pending` here means the
        // producer has nothing yet, while a client that stops reading
        // stops these polls.
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        self.waiting(r.is_pending());
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `app` on `listener` (through `tls` when given) until `shutdown`
/// resolves (see the module docs).
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // A slot first: beyond the bound, connections wait unaccepted.
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => p.expect("semaphore never closed"),
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let Ok((stream, _)) = accepted else {
            // Out of descriptors or a reset before accept: not fatal.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let activity = Activity::new(limits);
        let io = Watched {
            inner: stream,
            activity: Arc::clone(&activity),
        };
        let app = app.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let a = Arc::clone(&activity);
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let busy = Busy::new(&a);
                let mut app = app.clone();
                async move {
                    let resp = app.call(req.map(Body::new)).await?;
                    Ok::<_, std::convert::Infallible>(resp.map(|b| Tracked {
                        inner: b,
                        busy,
                        waiting: false,
                    }))
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.wait);
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(io), service);
                    tokio::select! {
                        _ = watcher.watch(conn) => {}
                        () = activity.expired() => {}
                    }
                }
                Some(acceptor) => {
                    // An absolute deadline: a handshake trickled a byte at
                    // a time never looks idle.
                    let handshake = tokio::time::timeout(limits.wait, acceptor.accept(io)).await;
                    let Ok(Ok(stream)) = handshake else { return };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = watcher.watch(conn) => {}
                        () = activity.expired() => {}
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(GRACE, graceful.shutdown()).await;
    Ok(())
}
