//! Port forwarding: `GET /api/v1/namespaces/{ns}/pods/{name}/portforward?ports=N`, upgraded to a WebSocket with
//! the `v4.channel.k8s.io` subprotocol. The pod must exist and run, and `ports` name one port (as with a kubelet,
//! whether a container declares it does not matter). A port's bytes go to the address the test's [`PodBackend`] gives for the pod (none given: the port is
//! refused on its error channel, as a kubelet refuses a port nothing listens on), in the API server's framing:
//! every binary message starts with its channel — `0` the port's data, `1` its errors —, and the first message of
//! each channel from the server is the port number, two bytes, little endian.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::faults::Recorded;
use super::reads::get;
use super::request::{Request, parse_query};
use super::route::{Route, route};
use super::state::{Shared, State};
use super::status::ApiError;

/// The subprotocol answered (the `kube` client offers `v5` and `v4`; the API server forwards ports over `v4`).
const PROTOCOL: &str = "v4.channel.k8s.io";

/// A port of a pod, as a [`PodBackend`] is asked for it: the pod's first container's image and its environment,
/// values from Secrets resolved.
#[derive(Debug, Clone)]
pub struct PodPort {
    pub namespace: String,
    pub pod: String,
    pub port: u16,
    pub image: String,
    pub env: BTreeMap<String, String>,
}

/// Where a test serves pods' ports: an address for the port, or why there is none. It may block (it runs on a
/// thread of its own), for example to start a server the first time a pod is reached.
pub type PodBackend = Arc<dyn Fn(&PodPort) -> Result<SocketAddr, String> + Send + Sync>;

type Body = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, Infallible>;

/// Whether `request` asks to forward a pod's ports.
pub(crate) fn is_portforward(request: &hyper::Request<Incoming>) -> bool {
    request.uri().path().ends_with("/portforward")
}

/// Answers a port-forward request: `101 Switching Protocols` and the forwarding, or the API's error.
pub(crate) async fn upgrade(
    shared: Arc<Shared>,
    mut request: hyper::Request<Incoming>,
) -> Response<Body> {
    let header = |name: header::HeaderName| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let seen = Request {
        method: request.method().as_str().to_owned(),
        path: request.uri().path().to_owned(),
        query: parse_query(request.uri().query()),
        content_type: header(header::CONTENT_TYPE),
        user_agent: header(header::USER_AGENT),
        body: bytes::Bytes::new(),
    };
    let delay = {
        let mut state = shared.lock();
        state.records.push(Recorded::of(&seen));
        state.faults.delay_for(&seen)
    };
    // A test's delay holds the forward before it is answered, as a slow API server or kubelet would.
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let checked = {
        let mut state = shared.lock();
        check(
            &mut state,
            &seen,
            header(header::AUTHORIZATION).as_deref(),
            header(header::UPGRADE).as_deref(),
            header(header::SEC_WEBSOCKET_PROTOCOL).as_deref(),
        )
    };
    let (port, backend) = match checked {
        Ok(found) => found,
        Err(error) => return answer(error.code, error.to_json().to_string()),
    };
    let Some(key) = header(header::SEC_WEBSOCKET_KEY) else {
        return answer(
            400,
            ApiError::bad_request("missing Sec-WebSocket-Key")
                .to_json()
                .to_string(),
        );
    };
    let upgrading = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrading.await else {
            return;
        };
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        carry(socket, port, backend).await;
    });
    let mut response = Response::new(http_body_util::BodyExt::boxed_unsync(
        http_body_util::Empty::new(),
    ));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(PROTOCOL),
    );
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

fn answer(code: u16, body: String) -> Response<Body> {
    super::server::full(code, "application/json", body)
}

/// The port asked for and what serves it, or the error the API server would answer with.
fn check(
    state: &mut State,
    request: &Request,
    authorization: Option<&str>,
    upgrade: Option<&str>,
    protocols: Option<&str>,
) -> Result<(PodPort, Option<PodBackend>), ApiError> {
    super::server::admit(state, request, authorization)?;
    let Route::Resource(target) = route(&state.catalog, &request.path) else {
        return Err(ApiError::no_such_resource());
    };
    if target.resource.plural != "pods"
        || target.subresource.as_deref() != Some("portforward")
        || target.name.is_none()
    {
        return Err(ApiError::no_such_resource());
    }
    // A WebSocket upgrade is a GET (SPDY clients, which POST, are not served here).
    if request.method != "GET" {
        return Err(ApiError::method_not_allowed());
    }
    if !upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        || !protocols.is_some_and(|p| p.split(',').any(|p| p.trim() == PROTOCOL))
    {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: a WebSocket with the subprotocol {PROTOCOL} is required"
        )));
    }
    let pod = get(state, &target)?;
    let name = target.name.clone().unwrap_or_default();
    let namespace = target.namespace.clone().unwrap_or_default();
    if pod["status"]["phase"] != "Running" {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: pod {name} is not running (phase {})",
            pod["status"]["phase"].as_str().unwrap_or("Pending")
        )));
    }
    let ports: Vec<&str> = request
        .param("ports")
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
        .collect();
    let [port] = ports.as_slice() else {
        return Err(ApiError::bad_request(
            "exactly one port is forwarded per connection here (ports=N)",
        ));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid port {port:?}")))?;
    let container = &pod["spec"]["containers"][0];
    let env = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|variable| {
            let value = match (&variable["value"], &variable["valueFrom"]["secretKeyRef"]) {
                (Value::String(value), _) => value.clone(),
                (_, Value::Object(reference)) => secret_value(
                    state,
                    &namespace,
                    reference.get("name")?.as_str()?,
                    reference.get("key")?.as_str()?,
                )?,
                _ => return None,
            };
            Some((variable["name"].as_str()?.to_owned(), value))
        })
        .collect();
    Ok((
        PodPort {
            namespace,
            pod: name,
            port,
            image: container["image"].as_str().unwrap_or_default().to_owned(),
            env,
        },
        state.pod_backend.clone(),
    ))
}

fn secret_value(state: &State, namespace: &str, name: &str, key: &str) -> Option<String> {
    let Route::Resource(target) = route(
        &state.catalog,
        &format!("/api/v1/namespaces/{namespace}/secrets/{name}"),
    ) else {
        return None;
    };
    let secret = get(state, &target).ok()?;
    let encoded = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Carries the port's bytes between the WebSocket and the backend until either side ends.
async fn carry<S>(mut socket: WebSocketStream<S>, port: PodPort, backend: Option<PodBackend>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let number = port.port.to_le_bytes();
    for channel in [0u8, 1] {
        if socket
            .send(Message::binary(vec![channel, number[0], number[1]]))
            .await
            .is_err()
        {
            return;
        }
    }
    let address = match backend {
        Some(backend) => {
            let asked = port.clone();
            tokio::task::spawn_blocking(move || backend(&asked))
                .await
                .unwrap_or_else(|e| Err(format!("the backend failed: {e}")))
        }
        None => Err("nothing serves pods' ports in this test".to_owned()),
    };
    let stream = match address {
        Ok(address) => tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string()),
        Err(error) => Err(error),
    };
    let mut stream = match stream {
        Ok(stream) => stream,
        Err(error) => {
            let message = format!(
                "an error occurred forwarding {} -> {}: error forwarding port {} to pod {}: {error}",
                port.port, port.port, port.port, port.pod
            );
            let mut framed = vec![1u8];
            framed.extend_from_slice(message.as_bytes());
            let _ = socket.send(Message::binary(framed)).await;
            let _ = socket.close(None).await;
            return;
        }
    };
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut framed = Vec::with_capacity(n + 1);
                    framed.push(0u8);
                    framed.extend_from_slice(&buffer[..n]);
                    if socket.send(Message::binary(framed)).await.is_err() {
                        return;
                    }
                }
            },
            message = socket.next() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    match bytes.split_first() {
                        Some((0, data)) if stream.write_all(data).await.is_ok() => {}
                        // A write that failed, or a message on another channel (a client writes none), ends it.
                        Some(_) => break,
                        None => {}
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    // Its reply is queued by the WebSocket: flushed, and the connection ends.
                    let _ = stream.shutdown().await;
                    let _ = socket.flush().await;
                    return;
                }
                None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = socket.close(None).await;
}
