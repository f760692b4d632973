//! Accepting connections: plain HTTP, or TLS with the certificate chosen by SNI and HTTP/2 or HTTP/1.1 by ALPN.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::proxy::{Downstream, Proxy};

/// Serves `listener` until the returned future is dropped; with `tls`, every connection is TLS.
///
/// Connections are served by one worker thread per core, each with a runtime of its own; they are handed to the
/// workers in turn, so each serves as many. A connection and the upstream connections made for it stay on one
/// thread: a request wakes no other thread on its way through.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let count = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut workers = Vec::with_capacity(count);
    for index in 0..count {
        let (handoff, connections) = tokio::sync::mpsc::unbounded_channel();
        let (proxy, tls) = (Arc::clone(&proxy), tls.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("gateway-{index}"))
            .spawn(move || worker(connections, proxy, tls));
        if spawned.is_ok() {
            workers.push(handoff);
        }
    }
    // Dropping the senders (when this future is dropped) stops the workers.
    for turn in (0..workers.len()).cycle() {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors, say: wait a little rather than spin.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Ok(stream) = stream.into_std() {
            let _ = workers[turn].send((stream, remote));
        }
    }
}

/// One worker thread: serves the connections handed to it, each in a task of its own runtime, until the sender
/// is dropped.
fn worker(
    mut connections: tokio::sync::mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    proxy: Arc<Proxy>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    runtime.block_on(async move {
        while let Some((stream, remote)) = connections.recv().await {
            let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (proxy, acceptor) = (Arc::clone(&proxy), acceptor.clone());
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                            let downstream = Downstream::new(remote.ip(), "https");
                            connection(TokioIo::new(stream), proxy, downstream, http2).await;
                        }
                    }
                    None => {
                        let downstream = Downstream::new(remote.ip(), "http");
                        connection(TokioIo::new(stream), proxy, downstream, false).await;
                    }
                }
            });
        }
    });
}

/// Serves one connection with the protocol ALPN chose (HTTP/1.1 without TLS).
async fn connection<I>(io: I, proxy: Arc<Proxy>, downstream: Downstream, http2: bool)
where
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
