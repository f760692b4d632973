//! Accepting connections: plain HTTP, or TLS with the certificate chosen by SNI and HTTP/2 or HTTP/1.1 by ALPN;
//! at most so many at once, and none kept by a client that stops talking or reading.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;

use crate::answers::Holding;
use crate::deadlines::WriteDeadline;
use crate::forwarding_headers::Origin;
use crate::idle_streams::Streams;
use crate::pages::Body;
use crate::proxy::{Downstream, Proxy};

type Handoff = (std::net::TcpStream, SocketAddr, OwnedSemaphorePermit);

/// Serves `listener` until the returned future is dropped; with `tls`, every connection is TLS. Timeouts and
/// limits are the proxy's; listeners served with one proxy share its connection cap.
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
        // A place under the cap before the next accept: at the cap, connections wait in the listen backlog (and the
        // kernel refuses them once it is full) instead of taking descriptors the rest of the daemon needs.
        let Ok(place) = Arc::clone(&proxy.connections).acquire_owned().await else {
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
            let _ = workers[turn].send((stream, remote, place));
        }
    }
}

/// One worker thread: serves the connections handed to it, each in a task of its own runtime, until the sender
/// is dropped.
fn worker(
    mut connections: tokio::sync::mpsc::UnboundedReceiver<Handoff>,
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
        tokio::spawn(keep_timer_near());
        while let Some((stream, remote, place)) = connections.recv().await {
            let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let port = stream.local_addr().ok().map(|a| a.port());
            let (proxy, acceptor) = (Arc::clone(&proxy), acceptor.clone());
            tokio::spawn(async move {
                let timeouts = proxy.config.timeouts;
                let stream = WriteDeadline::new(stream, timeouts.write);
                let trusted = &proxy.config.trusted_proxies;
                match acceptor {
                    Some(acceptor) => {
                        let handshake = acceptor.accept(stream);
                        if let Ok(Ok(stream)) =
                            tokio::time::timeout(timeouts.handshake, handshake).await
                        {
                            let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                            let origin = Origin::new(remote.ip(), "https", trusted).on_port(port);
                            let downstream = Downstream::new(origin, place);
                            connection(TokioIo::new(stream), proxy, downstream, http2).await;
                        }
                    }
                    None => {
                        let origin = Origin::new(remote.ip(), "http", trusted).on_port(port);
                        let downstream = Downstream::new(origin, place);
                        connection(TokioIo::new(stream), proxy, downstream, false).await;
                    }
                }
            });
        }
    });
}

/// Keeps a timer of the worker's runtime due within [`NEAR`], for as long as the worker runs.
///
/// Every request arms a timer for its head (the request-head timeout). The runtime's timer wheel wakes its own
/// thread through a system call whenever a timer is set earlier than the earliest one it is waiting for — which,
/// with no other timer pending, is every such timer: one extra write and one extra wake-up for a good share of the
/// requests. With this timer always due sooner than any timeout the gateway sets, setting those never wakes the
/// thread. The cost: an idle worker wakes about three times per [`NEAR`] (the timer moves down the wheel's levels,
/// fires, and is set again).
async fn keep_timer_near() {
    let mut tick = tokio::time::interval(NEAR);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// Shorter than the gateway's timeouts (the shortest default, the TLS handshake's, is 10 s).
const NEAR: Duration = Duration::from_secs(5);

/// Serves one connection with the protocol ALPN chose (HTTP/1.1 without TLS).
async fn connection<I>(io: I, proxy: Arc<Proxy>, downstream: Downstream, http2: bool)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (timeouts, limits) = (proxy.config.timeouts, proxy.config.limits);
    let downstream = Arc::new(downstream);
    if http2 {
        let streams = Streams::new();
        let service = {
            let streams = Arc::clone(&streams);
            service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let (proxy, downstream) = (Arc::clone(&proxy), Arc::clone(&downstream));
                // Open until the answer's body has gone out (or the stream was reset).
                let open = streams.begin();
                async move {
                    let response = proxy.handle(request, &downstream).await;
                    Ok::<_, std::convert::Infallible>(response.map(|body| {
                        let held: Body =
                            http_body_util::BodyExt::boxed(Holding { body, _held: open });
                        held
                    }))
                }
            })
        };
        let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(timeouts.ping)
            .keep_alive_timeout(timeouts.ping)
            .max_concurrent_streams(limits.streams)
            .max_header_list_size(u32::try_from(limits.request_head).unwrap_or(u32::MAX))
            .serve_connection(io, service);
        let mut served = std::pin::pin!(served);
        tokio::select! {
            _ = served.as_mut() => {}
            () = streams.idle_for(timeouts.idle) => {
                // GOAWAY, then close; a client that does not let the connection end is not waited for long.
                served.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(timeouts.write, served).await;
            }
        }
    } else {
        // One count per request on the connection's own: the proxy's is shared by every connection of every
        // worker, and counting it would pass its cache line between the cores on every request.
        let both = Arc::new((proxy, downstream));
        let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let both = Arc::clone(&both);
            async move { Ok::<_, std::convert::Infallible>(both.0.handle(request, &both.1).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .writev(false)
            .timer(TokioTimer::new())
            .header_read_timeout(timeouts.request_head)
            // Beyond it the client gets 431: a request head is not held or forwarded whatever its size.
            .max_header_size(limits.request_head)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The system calls that wrote, made by this thread so far.
    fn writes() -> u64 {
        std::fs::read_to_string("/proc/thread-self/io")
            .expect("the thread's I/O counts")
            .lines()
            .find_map(|line| line.strip_prefix("syscw: "))
            .and_then(|count| count.trim().parse().ok())
            .expect("syscw")
    }

    /// Counts the writes of a worker's runtime that, 1,000 times, lets its thread park and then sets a timer due
    /// much later, as a request's head timer is; with or without [`keep_timer_near`].
    fn writes_for_far_timers(keep_near: bool) -> u64 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            if keep_near {
                tokio::spawn(keep_timer_near());
                tokio::task::yield_now().await;
            }
            let before = writes();
            for _ in 0..1000 {
                tokio::task::yield_now().await;
                // The timeout's timer is set when the yield first waits, and dropped when it ends.
                let _ =
                    tokio::time::timeout(Duration::from_secs(60), tokio::task::yield_now()).await;
            }
            writes() - before
        })
    }

    #[test]
    fn setting_a_far_timer_does_not_wake_the_worker() {
        let without = writes_for_far_timers(false);
        // Without it, the runtime wakes its own thread for (nearly) every such timer: the count sees those writes.
        assert!(
            without >= 500,
            "{without} writes for 1,000 far timers without a near one"
        );
        let with = writes_for_far_timers(true);
        assert!(
            with < 50,
            "{with} writes for 1,000 far timers with a near one"
        );
    }
}
