//! Forwarding one request: find the route by Host, add the forwarding headers, send it to the app over a pooled
//! connection, and tunnel WebSocket upgrades; answer with a page that names the environment when it cannot.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::access::Verdict;
use crate::challenges::{CHALLENGE_PATH, Challenges};
use crate::routes::{Backend, RouteState, Routes, normalize_host};

pub type Body = BoxBody<Bytes, hyper::Error>;

/// Headers that describe one connection, not the message; they are not forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Answers up to this size are read whole before they are forwarded.
const SMALL_BODY: u64 = 16 * 1024;

/// What every worker forwards with: the route table, the ACME challenge answers and the connection pool.
pub struct Proxy {
    routes: Arc<Routes>,
    challenges: Arc<Challenges>,
    client: Client<Connector, Incoming>,
}

impl Proxy {
    pub fn new(routes: Arc<Routes>) -> Proxy {
        let connector = Connector {
            routes: Arc::clone(&routes),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(connector);
        Proxy {
            routes,
            challenges: Arc::default(),
            client,
        }
    }

    /// Answers the ACME HTTP-01 challenges in `challenges` (for any host), ahead of the routes.
    pub fn with_challenges(mut self, challenges: Arc<Challenges>) -> Proxy {
        self.challenges = challenges;
        self
    }

    /// Handles one request that arrived on `downstream`.
    pub(crate) async fn handle(
        &self,
        mut request: Request<Incoming>,
        downstream: &Downstream,
    ) -> Response<Body> {
        let scheme = downstream.scheme;
        if request.uri().path().starts_with(CHALLENGE_PATH)
            && let Some(answer) = self.challenges.lookup(request.uri().path())
        {
            return whole(Bytes::from(answer), "application/octet-stream");
        }
        // HTTP/1.1 names the host in its header, HTTP/2 in the request's authority.
        let Some(host) = request
            .headers()
            .get(header::HOST)
            .cloned()
            .or_else(|| {
                let authority = request.uri().authority()?;
                HeaderValue::from_str(authority.as_str()).ok()
            })
            .filter(|h| h.to_str().is_ok())
        else {
            return page(
                StatusCode::BAD_REQUEST,
                "No host",
                "The request names no host, so no environment can answer it.",
            );
        };
        let host_name = host.to_str().unwrap_or_default();
        let table = self.routes.snapshot();
        let Some(route) = table.lookup(host_name) else {
            let name = escape(&normalize_host(host_name));
            return page(
                StatusCode::NOT_FOUND,
                "No such environment",
                &format!(
                    "No environment answers for <b>{name}</b>. It may not exist yet, or it was deleted."
                ),
            );
        };
        // Only pages use it: not made for requests that are forwarded.
        let who = || {
            format!(
                "<b>{}</b> of environment <b>{}</b> ({})",
                escape(&route.service),
                escape(&route.environment),
                escape(&route.project)
            )
        };
        if route.state == RouteState::Stopped {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Environment stopped",
                &format!("{} is stopped.", who()),
            );
        }
        let Some(backend) = route.backends.first() else {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not running",
                &format!("{} has no running instance.", who()),
            );
        };
        if let Some(access) = &route.access {
            match crate::access::check(access, &mut request, scheme) {
                Verdict::Allow => {}
                Verdict::SetCookie { location, cookie } => {
                    let mut response = Response::new(empty());
                    *response.status_mut() = StatusCode::SEE_OTHER;
                    response.headers_mut().insert(header::SET_COOKIE, cookie);
                    if let Ok(location) = HeaderValue::from_str(&location) {
                        response.headers_mut().insert(header::LOCATION, location);
                    }
                    return response;
                }
                Verdict::Deny { status, message } => {
                    let mut response = page(status, "Protected preview", message);
                    if matches!(access, crate::access::Access::Basic { .. }) {
                        response.headers_mut().insert(
                            header::WWW_AUTHENTICATE,
                            HeaderValue::from_static("Basic realm=\"preview\", charset=\"UTF-8\""),
                        );
                    }
                    return response;
                }
            }
        }
        let upgrade = is_upgrade(request.headers());
        // HTTP/2 streams run at once and share the pool; HTTP/1.1 requests come one by one and use their
        // connection's own upstream connection.
        let own_connection = (request.version() != hyper::Version::HTTP_2 && !upgrade)
            .then_some(&downstream.upstream);
        // The pool needs the app's address in the URI; a connection of our own sends the path alone, which is what
        // an HTTP/1.1 request already carries.
        let uri = match own_connection {
            Some(_) if request.uri().authority().is_none() => None,
            _ => {
                let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
                let target = match own_connection {
                    Some(_) => path.to_owned(),
                    None => format!("http://{}{path}", pool_authority(backend)),
                };
                match target.parse::<hyper::Uri>() {
                    Ok(uri) => Some(uri),
                    Err(_) => {
                        return page(
                            StatusCode::BAD_REQUEST,
                            "Bad request",
                            "The request's path is not valid.",
                        );
                    }
                }
            }
        };
        let incoming_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        if let Some(uri) = uri {
            parts.uri = uri;
        }
        parts.version = hyper::Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers, upgrade);
        // The app sees the host the client asked for, also when HTTP/2 named it only in the authority.
        if !parts.headers.contains_key(header::HOST) {
            parts.headers.insert(header::HOST, host.clone());
        }
        forwarded_headers(&mut parts.headers, downstream, host);
        let outgoing = Request::from_parts(parts, body);
        let sent = match own_connection {
            Some(affinity) => affinity.send(backend, outgoing).await,
            None => self
                .client
                .request(outgoing)
                .await
                .map_err(|e| e.to_string()),
        };
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                return page(
                    StatusCode::BAD_GATEWAY,
                    "The app did not answer",
                    &format!("{} did not answer: {}.", who(), escape(&error)),
                );
            }
        };
        if let (Some(incoming), StatusCode::SWITCHING_PROTOCOLS) =
            (incoming_upgrade, response.status())
        {
            let outgoing = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                if let (Ok(client), Ok(app)) = (incoming.await, outgoing.await) {
                    let _ = tokio::io::copy_bidirectional(
                        &mut TokioIo::new(client),
                        &mut TokioIo::new(app),
                    )
                    .await;
                }
            });
            let (parts, _) = response.into_parts();
            return Response::from_parts(parts, empty());
        }
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        // A small body of known length is read whole and written with the head in one go; anything else (large,
        // or of unknown length, e.g. server-sent events) streams through as it comes.
        let small = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|length| length <= SMALL_BODY);
        if small {
            return match body.collect().await {
                Ok(collected) => Response::from_parts(
                    parts,
                    Full::new(collected.to_bytes())
                        .map_err(|never| match never {})
                        .boxed(),
                ),
                Err(error) => page(
                    StatusCode::BAD_GATEWAY,
                    "The app did not answer",
                    &format!(
                        "{} broke off its answer: {}.",
                        who(),
                        escape(&error.to_string())
                    ),
                ),
            };
        }
        Response::from_parts(parts, body.boxed())
    }
}

/// The client connection a request came in on.
pub(crate) struct Downstream {
    /// `http` or `https`.
    scheme: &'static str,
    /// The client's address as `X-Forwarded-For` names it, made once per connection.
    forwarded_for: HeaderValue,
    upstream: Affinity,
}

impl Downstream {
    pub(crate) fn new(remote: IpAddr, scheme: &'static str) -> Downstream {
        Downstream {
            scheme,
            // An address is always a valid header value; the fallback is never used.
            forwarded_for: HeaderValue::from_maybe_shared(Bytes::from(remote.to_string()))
                .unwrap_or(HeaderValue::from_static("unknown")),
            upstream: Affinity::default(),
        }
    }
}

/// The upstream connection of one client connection. An HTTP/1.1 client sends its requests one after another, so
/// one connection to the app serves them all, without the locking of a shared pool; a request for another address
/// (the route was switched to a new version) opens a new one.
#[derive(Default)]
struct Affinity {
    upstream: Mutex<Option<(Backend, SendRequest<Incoming>)>>,
}

impl Affinity {
    async fn send(
        &self,
        backend: &Backend,
        request: Request<Incoming>,
    ) -> Result<Response<Incoming>, String> {
        let cached = self
            .upstream
            .lock()
            .ok()
            .and_then(|mut upstream| upstream.take())
            .filter(|(to, sender)| to == backend && !sender.is_closed())
            .map(|(_, sender)| sender);
        let mut sender = match cached {
            Some(sender) => sender,
            None => connect(backend).await?,
        };
        if sender.ready().await.is_err() {
            sender = connect(backend).await?;
        }
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            // The app closed the idle connection as the request was sent; the request never left, so it is sent
            // once more on a new connection.
            Err(mut error) => match error.take_message() {
                Some(request) => {
                    sender = connect(backend).await?;
                    sender
                        .send_request(request)
                        .await
                        .map_err(|e| e.to_string())?
                }
                None => return Err(error.into_error().to_string()),
            },
        };
        if let Ok(mut upstream) = self.upstream.lock() {
            *upstream = Some((backend.clone(), sender));
        }
        Ok(response)
    }
}

/// How long an app may take to accept a connection.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A TCP connection to `address`, from a socket of `network` when the backend lives in another network, within
/// [`CONNECT_TIMEOUT`].
async fn dial(
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

async fn connect(backend: &Backend) -> Result<SendRequest<Incoming>, String> {
    let address = backend.address;
    let stream = dial(address, backend.network.as_ref())
        .await
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

/// How the pool names a backend: its address, or `<network>.<ip>:<port>` for one in another network, which the
/// [`Connector`] finds again in the route table.
fn pool_authority(backend: &Backend) -> String {
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

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Removes connection-specific headers (and those the Connection header names); an upgrade keeps its two.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none: a look at each name is cheaper than a removal for each.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| {
            v.split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        if !(upgrade && (name == header::CONNECTION || name == header::UPGRADE)) {
            headers.remove(name);
        }
    }
}

fn forwarded_headers(headers: &mut HeaderMap, downstream: &Downstream, host: HeaderValue) {
    let forwarded_for = match headers.get(X_FORWARDED_FOR).map(|v| v.as_bytes()) {
        Some(earlier) => {
            let mut joined = Vec::with_capacity(earlier.len() + 2 + downstream.forwarded_for.len());
            joined.extend_from_slice(earlier);
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(downstream.forwarded_for.as_bytes());
            HeaderValue::from_maybe_shared(Bytes::from(joined)).ok()
        }
        None => Some(downstream.forwarded_for.clone()),
    };
    if let Some(value) = forwarded_for {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(downstream.scheme),
    );
    headers.insert(X_FORWARDED_HOST, host);
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A small page people can read, with the status in the title.
fn page(status: StatusCode, title: &str, message: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><meta charset=utf-8><title>{code} {title} · preview</title>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h1>{code} · {title}</h1><p>{message}</p>\
         <p style=\"color:#666\">preview gateway</p></body>\n",
        code = status.as_u16()
    );
    let mut response = whole(Bytes::from(html), "text/html; charset=utf-8");
    *response.status_mut() = status;
    response
}

/// A 200 answer with `body` of type `content_type`.
fn whole(body: Bytes, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
