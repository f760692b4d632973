//! Connections to apps: an HTTP/1.1 client connection's own upstream connection — one the gateway reads itself for
//! requests without a body (`exchange`), or one of the HTTP library's client for those with one, whichever the last
//! request needed — or the shared pool (HTTP/2 streams and upgrades), each request admitted by its backend's gate;
//! and why a request could not be sent, in words that name no address inside the machine.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Limits;
use crate::deadlines::{BodyDeadline, is_body_stall};
use crate::exchange::{Answer, BadAnswer, Slot, Wire};
use crate::gates::{self, Gates};
use crate::routes::{Backend, Routes};

/// What a forwarded request carries: the client's body, which fails if the client stops sending it.
pub(crate) type RequestBody = BodyDeadline<Incoming>;

/// How long an app may take to accept a connection, and a request may wait for a place at a busy backend.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request did not reach its app.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// The backend had as many requests in flight as its gate allows, and none ended in time.
    Busy,
    Connect(std::io::Error),
    Http(hyper::Error),
    Pool(hyper_util::client::legacy::Error),
    /// An answer read by the gateway itself was not one.
    Answer(BadAnswer),
}

impl UpstreamError {
    /// The status and the reason a page gives (completing "… did not answer: "); the detail with addresses stays
    /// out of it.
    pub(crate) fn explain(&self, limits: &Limits) -> (StatusCode, String) {
        let error: &(dyn std::error::Error + 'static) = match self {
            UpstreamError::Busy => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "it has {} requests in flight already and none ended within {} s",
                        limits.per_backend,
                        CONNECT_TIMEOUT.as_secs()
                    ),
                );
            }
            // A new connection for a request sent again: why it failed, as for any connection.
            UpstreamError::Answer(BadAnswer::Dial(error)) => error,
            UpstreamError::Answer(bad) => {
                return (StatusCode::BAD_GATEWAY, bad.reason(limits.answer_head));
            }
            UpstreamError::Connect(error) => error,
            UpstreamError::Http(error) => error,
            UpstreamError::Pool(error) => error,
        };
        if is_body_stall(error) {
            return (
                StatusCode::REQUEST_TIMEOUT,
                "the request's body stopped arriving".to_owned(),
            );
        }
        let reason = causes(error)
            .find_map(|cause| {
                if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                    return Some(match io.kind() {
                        std::io::ErrorKind::ConnectionRefused => {
                            "it refused the connection (is it listening on its port?)".to_owned()
                        }
                        std::io::ErrorKind::TimedOut => format!(
                            "it accepted no connection within {} s",
                            CONNECT_TIMEOUT.as_secs()
                        ),
                        _ => "the connection to it failed".to_owned(),
                    });
                }
                let http = cause.downcast_ref::<hyper::Error>()?;
                Some(if http.is_parse_too_large() {
                    format!(
                        "its answer's head is larger than {} KiB",
                        limits.answer_head / 1024
                    )
                } else if http.is_parse() {
                    "its answer is not HTTP/1.1".to_owned()
                } else if http.is_incomplete_message() {
                    "it closed the connection before answering".to_owned()
                } else {
                    return None;
                })
            })
            .unwrap_or_else(|| "the connection to it failed".to_owned());
        (StatusCode::BAD_GATEWAY, reason)
    }
}

fn causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}

/// Everything a worker sends requests to apps with.
pub(crate) struct Upstreams {
    pool: Client<Connector, RequestBody>,
    gates: Gates,
    answer_head: usize,
}

impl Upstreams {
    pub(crate) fn new(routes: Arc<Routes>, limits: &Limits) -> Upstreams {
        let pool = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            // The pool's connections read at most this much at once, an answer's head included.
            .http1_max_buf_size(limits.answer_head.max(8192))
            .build(Connector { routes });
        Upstreams {
            pool,
            gates: Gates::new(limits.per_backend),
            answer_head: limits.answer_head,
        }
    }

    /// Sends `request` through the shared pool, whose URI names the backend ([`pool_authority`]).
    pub(crate) async fn send_pooled(
        &self,
        backend: &Backend,
        request: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, OwnedSemaphorePermit), UpstreamError> {
        let gate = self.gates.gate(backend);
        let permit = gates::enter(&gate, CONNECT_TIMEOUT)
            .await
            .ok_or(UpstreamError::Busy)?;
        let response = self
            .pool
            .request(request)
            .await
            .map_err(UpstreamError::Pool)?;
        Ok((response, permit))
    }

    /// Sends `request` over the client connection's own upstream connection (`affinity`).
    pub(crate) async fn send_own(
        &self,
        affinity: &Affinity,
        backend: &Backend,
        request: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, OwnedSemaphorePermit), UpstreamError> {
        // One connection to an app per client connection: the one for requests without a body goes.
        if let Ok(mut wire) = affinity.wire.lock() {
            wire.take();
        }
        let cached = affinity
            .upstream
            .lock()
            .ok()
            .and_then(|mut upstream| upstream.take())
            .filter(|own| own.backend == *backend && !own.sender.is_closed());
        // The backend kept with the connection is put back with it: a copy would count its network's handle,
        // which every connection to an isolated app shares.
        let (sender, gate, kept) = match cached {
            Some(own) => (Some(own.sender), own.gate, Some(own.backend)),
            None => (None, self.gates.gate(backend), None),
        };
        let mut kept = kept.unwrap_or_else(|| backend.clone());
        let Some(permit) = gates::enter(&gate, CONNECT_TIMEOUT).await else {
            // The connection itself is fine: kept for the client's next request.
            if let (Some(sender), Ok(mut upstream)) = (sender, affinity.upstream.lock()) {
                *upstream = Some(Own {
                    backend: kept,
                    sender,
                    gate,
                });
            }
            return Err(UpstreamError::Busy);
        };
        let mut sender = match sender {
            Some(sender) => sender,
            None => self.connect(backend).await?,
        };
        // A new connection is kept with the backend it was made to (the request's).
        if sender.ready().await.is_err() {
            sender = self.connect(backend).await?;
            kept = backend.clone();
        }
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            // The app closed the idle connection as the request was sent; the request never left, so it is sent
            // once more on a new connection.
            Err(mut error) => match error.take_message() {
                Some(request) => {
                    sender = self.connect(backend).await?;
                    kept = backend.clone();
                    sender
                        .send_request(request)
                        .await
                        .map_err(UpstreamError::Http)?
                }
                None => return Err(UpstreamError::Http(error.into_error())),
            },
        };
        if let Ok(mut upstream) = affinity.upstream.lock() {
            *upstream = Some(Own {
                backend: kept,
                sender,
                gate,
            });
        }
        Ok((response, permit))
    }

    /// Sends `request`, which has no body, over the client connection's own [`Wire`] (kept in `affinity`), and
    /// reads the answer in this task.
    pub(crate) async fn exchange(
        &self,
        affinity: &Affinity,
        backend: &Backend,
        request: &hyper::http::request::Parts,
    ) -> Result<(Answer, OwnedSemaphorePermit), UpstreamError> {
        // One connection to an app per client connection: the HTTP library's for requests with a body goes.
        if let Ok(mut upstream) = affinity.upstream.lock() {
            upstream.take();
        }
        let cached = affinity
            .wire
            .lock()
            .ok()
            .and_then(|mut wire| wire.take())
            .filter(|wire| wire.backend == *backend);
        let gate = match &cached {
            Some(wire) => Arc::clone(&wire.gate),
            None => self.gates.gate(backend),
        };
        let Some(permit) = gates::enter(&gate, CONNECT_TIMEOUT).await else {
            // The connection itself is fine: kept for the client's next request.
            if let (Some(wire), Ok(mut kept)) = (cached, affinity.wire.lock()) {
                *kept = Some(wire);
            }
            return Err(UpstreamError::Busy);
        };
        let (wire, reused) = match cached {
            Some(mut wire) => {
                if wire.is_quiet().await {
                    (wire, true)
                } else {
                    // The old connection goes before the new one is made (one descriptor to the app at a time), and
                    // the new one is made with the request's backend: the kept one may name a network that was made
                    // again under the same name.
                    drop(wire);
                    (new_wire(backend, &gate).await?, false)
                }
            }
            None => (new_wire(backend, &gate).await?, false),
        };
        let reconnect = move || async move {
            Wire::dial(backend.clone(), gate)
                .await
                .map_err(BadAnswer::Dial)
        };
        let answer = crate::exchange::exchange(
            wire,
            reused,
            reconnect,
            request,
            self.answer_head,
            &affinity.wire,
        )
        .await
        .map_err(UpstreamError::Answer)?;
        Ok((answer, permit))
    }

    async fn connect(&self, backend: &Backend) -> Result<SendRequest<RequestBody>, UpstreamError> {
        let stream = dial(backend.address, backend.network.as_ref())
            .await
            .map_err(UpstreamError::Connect)?;
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .max_header_size(self.answer_head)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Http)?;
        tokio::spawn(connection);
        Ok(sender)
    }
}

/// The upstream connection of one client connection. An HTTP/1.1 client sends its requests one after another, so
/// one connection to the app serves them all, without the locking of a shared pool: the gateway's own ([`Wire`]) for
/// requests without a body, the HTTP library's client's for those with one. A client connection holds one of the two
/// at a time — a request of the other kind closes it and opens its own — so that it holds at most one descriptor to
/// an app (the connection cap counts on it); a request for another address (the route was switched to a new
/// version) opens a new one too.
#[derive(Default)]
pub(crate) struct Affinity {
    upstream: Mutex<Option<Own>>,
    wire: Slot,
}

struct Own {
    backend: Backend,
    sender: SendRequest<RequestBody>,
    /// The backend's gate, kept with the connection so that a request does not look it up.
    gate: Arc<Semaphore>,
}

/// A new [`Wire`] to `backend`, gated by `gate`.
async fn new_wire(backend: &Backend, gate: &Arc<Semaphore>) -> Result<Wire, UpstreamError> {
    Wire::dial(backend.clone(), Arc::clone(gate))
        .await
        .map_err(UpstreamError::Connect)
}

/// A TCP connection to `address`, from a socket of `network` when the backend lives in another network, within
/// [`CONNECT_TIMEOUT`].
pub(crate) async fn dial(
    address: SocketAddr,
    network: Option<&Arc<dyn crate::routes::Network>>,
) -> std::io::Result<tokio::net::TcpStream> {
    let connecting = async {
        match network {
            Some(network) => network.socket()?.connect(address).await,
            None => tokio::net::TcpStream::connect(address).await,
        }
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
            )
        })??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// How the pool names a backend: its address, or `<network>.<ip>:<port>` for one in another network, which the
/// [`Connector`] finds again in the route table.
pub(crate) fn pool_authority(backend: &Backend) -> String {
    match &backend.network {
        Some(network) => format!(
            "{}.{}:{}",
            network.name(),
            backend.address.ip(),
            backend.address.port()
        ),
        None => backend.address.to_string(),
    }
}

/// The pool's connector (HTTP/2 streams and upgrades): a URI of [`pool_authority`] back to a connection.
#[derive(Clone)]
pub(crate) struct Connector {
    routes: Arc<Routes>,
}

impl tower_service::Service<hyper::Uri> for Connector {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        let routes = Arc::clone(&self.routes);
        Box::pin(async move {
            let invalid = || {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("`{uri}` names no backend"),
                )
            };
            let host = uri.host().ok_or_else(invalid)?;
            let port = uri.port_u16().ok_or_else(invalid)?;
            let stream = match host.parse::<IpAddr>() {
                Ok(ip) => dial(SocketAddr::new(ip, port), None).await?,
                Err(_) => {
                    let (name, ip) = host.split_once('.').ok_or_else(invalid)?;
                    let ip: IpAddr = ip.parse().map_err(|_| invalid())?;
                    let network = routes.snapshot().network(name).ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            format!("the network `{name}` is gone"),
                        )
                    })?;
                    dial(SocketAddr::new(ip, port), Some(&network)).await?
                }
            };
            Ok(TokioIo::new(stream))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_no_address() {
        let limits = Limits::default();
        let refused = UpstreamError::Connect(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "cannot connect to 10.213.0.2:20017",
        ));
        let (status, reason) = refused.explain(&limits);
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(
            reason,
            "it refused the connection (is it listening on its port?)"
        );
        let (status, reason) = UpstreamError::Busy.explain(&limits);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            reason.starts_with("it has 256 requests in flight"),
            "{reason}"
        );
    }
}
