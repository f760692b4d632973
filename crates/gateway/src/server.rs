//! Accepting connections: plain HTTP, or TLS with the certificate chosen by SNI and HTTP/2 or HTTP/1.1 by ALPN.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::proxy::{Downstream, Proxy};

/// How long the gateway waits on a client before it closes the connection, so that clients that open connections
/// and then say nothing (or say it very slowly) cannot use them all up.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For the TLS handshake.
    pub handshake: Duration,
    /// For the head of an HTTP/1.1 request, counted from when the connection opened or the previous answer went
    /// out: a keep-alive connection left idle this long is closed too.
    pub request_head: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            handshake: Duration::from_secs(10),
            request_head: Duration::from_secs(60),
        }
    }
}

/// How many client connections the gateway serves at once (each holds descriptors of the daemon's; a client —
/// an environment among them — that opens connections without end must not take them all).
const MAX_CONNECTIONS: usize = 16 * 1024;

/// Serves `listener` with the default timeouts until the returned future is dropped; with `tls`, every connection
/// is TLS.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    serve_with(listener, proxy, tls, Timeouts::default()).await;
}

/// Serves `listener` until the returned future is dropped; with `tls`, every connection is TLS.
///
/// Connections are served by one worker thread per core, each with a runtime of its own; they are handed to the
/// workers in turn, so each serves as many. A connection and the upstream connections made for it stay on one
/// thread: a request wakes no other thread on its way through.
pub async fn serve_with(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<Arc<rustls::ServerConfig>>,
    timeouts: Timeouts,
) {
    let count = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut workers = Vec::with_capacity(count);
    for index in 0..count {
        let (handoff, connections) = tokio::sync::mpsc::unbounded_channel();
        let (proxy, tls) = (Arc::clone(&proxy), tls.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("gateway-{index}"))
            .spawn(move || worker(connections, proxy, tls, timeouts));
        if spawned.is_ok() {
            workers.push(handoff);
        }
    }
    // At most this many client connections at once; the next waits in the listen backlog until one closes.
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    // Dropping the senders (when this future is dropped) stops the workers.
    for turn in (0..workers.len()).cycle() {
        let Ok(permit) = Arc::clone(&open).acquire_owned().await else {
            return;
        };
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors, say: wait a little rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Ok(stream) = stream.into_std() {
            let _ = workers[turn].send((stream, remote, permit));
        }
    }
}

/// One worker thread: serves the connections handed to it, each in a task of its own runtime, until the sender
/// is dropped.
fn worker(
    mut connections: tokio::sync::mpsc::UnboundedReceiver<(
        std::net::TcpStream,
        SocketAddr,
        tokio::sync::OwnedSemaphorePermit,
    )>,
    proxy: Arc<Proxy>,
    tls: Option<Arc<rustls::ServerConfig>>,
    timeouts: Timeouts,
) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    runtime.block_on(async move {
        while let Some((stream, remote, permit)) = connections.recv().await {
            let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (proxy, acceptor) = (Arc::clone(&proxy), acceptor.clone());
            tokio::spawn(async move {
                let _open = permit;
                match acceptor {
                    Some(acceptor) => {
                        let handshake = acceptor.accept(stream);
                        if let Ok(Ok(stream)) =
                            tokio::time::timeout(timeouts.handshake, handshake).await
                        {
                            let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                            let downstream = Downstream::new(remote.ip(), "https");
                            let io = TokioIo::new(stream);
                            connection(io, proxy, downstream, http2, timeouts).await;
                        }
                    }
                    None => {
                        let downstream = Downstream::new(remote.ip(), "http");
                        connection(TokioIo::new(stream), proxy, downstream, false, timeouts).await;
                    }
                }
            });
        }
    });
}

/// Serves one connection with the protocol ALPN chose (HTTP/1.1 without TLS).
async fn connection<I>(
    io: I,
    proxy: Arc<Proxy>,
    downstream: Downstream,
    http2: bool,
    timeouts: Timeouts,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let downstream = Arc::new(downstream);
    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let (proxy, downstream) = (Arc::clone(&proxy), Arc::clone(&downstream));
        async move { Ok::<_, std::convert::Infallible>(proxy.handle(request, &downstream).await) }
    });
    if http2 {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .writev(false)
            .timer(TokioTimer::new())
            .header_read_timeout(timeouts.request_head)
            .serve_connection(io, service)
            .with_upgrades()
            .await;
    }
}

/// A TLS configuration offering HTTP/2 and HTTP/1.1, with certificates chosen per SNI name by `certificates`.
pub fn tls_config(
    certificates: Arc<dyn rustls::server::ResolvesServerCert>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_cert_resolver(certificates);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
