//! Forwarding one request: find the route by Host, add the forwarding headers, send it to the app over a pooled
//! connection, and tunnel WebSocket upgrades; answer with a page that names the environment when it cannot.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::routes::{RouteState, Routes, normalize_host};

pub type Body = BoxBody<Bytes, hyper::Error>;

/// Headers that describe one connection, not the message; they are not forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub struct Proxy {
    routes: Arc<Routes>,
    client: Client<HttpConnector, Incoming>,
}

impl Proxy {
    pub fn new(routes: Arc<Routes>) -> Proxy {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(connector);
        Proxy { routes, client }
    }

    /// Handles one request that arrived from `remote` over `scheme` (`http` or `https`).
    pub async fn handle(
        &self,
        mut request: Request<Incoming>,
        remote: SocketAddr,
        scheme: &'static str,
    ) -> Response<Body> {
        let Some(host) = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| request.uri().authority().map(|a| a.to_string()))
        else {
            return page(
                StatusCode::BAD_REQUEST,
                "No host",
                "The request names no host, so no environment can answer it.",
            );
        };
        let table = self.routes.snapshot();
        let Some(route) = table.lookup(&host) else {
            let name = escape(&normalize_host(&host));
            return page(
                StatusCode::NOT_FOUND,
                "No such environment",
                &format!(
                    "No environment answers for <b>{name}</b>. It may not exist yet, or it was deleted."
                ),
            );
        };
        let who = format!(
            "<b>{}</b> of environment <b>{}</b> ({})",
            escape(&route.service),
            escape(&route.environment),
            escape(&route.project)
        );
        if route.state == RouteState::Stopped {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Environment stopped",
                &format!("{who} is stopped."),
            );
        }
        let Some(backend) = route.backends.first() else {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not running",
                &format!("{who} has no running instance."),
            );
        };
        let upgrade = is_upgrade(request.headers());
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let uri = match format!("http://{}{path}", backend.address).parse::<hyper::Uri>() {
            Ok(uri) => uri,
            Err(_) => {
                return page(
                    StatusCode::BAD_REQUEST,
                    "Bad request",
                    "The request's path is not valid.",
                );
            }
        };
        let incoming_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        parts.uri = uri;
        parts.version = hyper::Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers, upgrade);
        forwarded_headers(&mut parts.headers, remote, scheme, &host);
        let outgoing = Request::from_parts(parts, body);
        let mut response = match self.client.request(outgoing).await {
            Ok(response) => response,
            Err(error) => {
                return page(
                    StatusCode::BAD_GATEWAY,
                    "The app did not answer",
                    &format!("{who} did not answer: {}.", escape(&error.to_string())),
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
        Response::from_parts(parts, body.boxed())
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
    for name in named {
        if !(upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        if !(upgrade && (name == "connection" || name == "upgrade")) {
            headers.remove(name);
        }
    }
}

fn forwarded_headers(
    headers: &mut HeaderMap,
    remote: SocketAddr,
    scheme: &'static str,
    host: &str,
) {
    let client = remote.ip().to_string();
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {client}"),
        None => client,
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(scheme));
    if let Ok(value) = HeaderValue::from_str(host) {
        headers.insert("x-forwarded-host", value);
    }
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
    let mut response = Response::new(
        Full::new(Bytes::from(html))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}
