//! What the gateway's tests share: apps (well-behaved, recording, and raw TCP servers that send exactly the bytes a
//! test gives them), route tables, gateways with a test's configuration, and HTTP/1.1, HTTP/2 and TLS clients.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use preview_gateway::*;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An app that answers `<name> <path> fwd-for=… fwd-proto=… fwd-host=… host=…`.
pub async fn echo_app(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| async move {
                        let header = |n: &str| {
                            request
                                .headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_owned()
                        };
                        let text = format!(
                            "{name} {} fwd-for={} fwd-proto={} fwd-host={} host={}",
                            request.uri(),
                            header("x-forwarded-for"),
                            header("x-forwarded-proto"),
                            header("x-forwarded-host"),
                            header("host")
                        );
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(text),
                        )))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

/// An app that reads each request's whole body before it answers `got <n> bytes`.
pub async fn body_reading_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(
                    |request: hyper::Request<hyper::body::Incoming>| async move {
                        let body = request.into_body().collect().await?.to_bytes();
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(
                            format!("got {} bytes", body.len()),
                        ))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

/// The request heads an app received, exactly as they came, in order.
#[derive(Clone, Default)]
pub struct Received(Arc<Mutex<Vec<String>>>);

impl Received {
    pub fn heads(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }

    pub fn last(&self) -> String {
        self.heads().pop().unwrap_or_default()
    }

    /// The value of header `name` in the last head, `-` when it has none.
    pub fn last_header(&self, name: &str) -> String {
        header_in(&self.last(), name).unwrap_or_else(|| "-".to_owned())
    }
}

/// The value of header `name` in a request or answer head.
pub fn header_in(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// An app that records every request head it receives and answers each with `recorded` (keep-alive; request
/// bodies are not expected).
pub async fn recording_app() -> (SocketAddr, Received) {
    let received = Received::default();
    let address = raw_app({
        let received = received.clone();
        move |mut stream| {
            let received = received.clone();
            async move {
                loop {
                    let head = read_head(&mut stream).await;
                    if head.is_empty() {
                        return;
                    }
                    received.0.lock().expect("lock").push(head);
                    let answer = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nrecorded";
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    (address, received)
}

/// A raw TCP app: `serve` gets each accepted connection and writes exactly what the test wants.
pub async fn raw_app<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    address
}

/// A head (request or answer) read byte by byte up to its blank line; empty when the peer closed first.
pub async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return String::new(),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

pub fn route(service: &str, environment: &str, state: RouteState, backend: SocketAddr) -> Route {
    Route {
        project: "shop".into(),
        environment: environment.into(),
        service: service.into(),
        state,
        backends: vec![Backend {
            address: backend,
            network: None,
        }],
        access: None,
        last_request: Arc::default(),
        series: None,
    }
}

/// A serving route of environment `environment` to `backend`.
pub fn serving(service: &str, environment: &str, backend: SocketAddr) -> Route {
    route(service, environment, RouteState::Serving, backend)
}

/// A route table holding `entries` (hostname, route), swapped in.
pub fn routes_of(entries: Vec<(&str, Route)>) -> Arc<Routes> {
    let mut table = RouteTable::default();
    for (hostname, route) in entries {
        table.insert(hostname, route);
    }
    let routes = Arc::new(Routes::default());
    routes.swap(table);
    routes
}

pub async fn gateway(routes: Arc<Routes>, tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    gateway_with(Proxy::new(routes), tls).await
}

/// Serves `proxy` on a port of its own.
pub async fn gateway_with(proxy: Proxy, tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(serve(listener, Arc::new(proxy), tls));
    address
}

/// Timeouts of 300 ms, for tests of clients that are let go.
pub fn short_timeouts() -> Timeouts {
    let short = Duration::from_millis(300);
    Timeouts {
        handshake: short,
        request_head: short,
        request_body: short,
        write: short,
        idle: short,
        ping: short,
        tunnel: short,
    }
}

/// A local CA, a TLS configuration serving its certificate for `names`, and a client configuration trusting it.
pub struct Tls {
    _dir: preview_testing::TempDir,
    pub server: Arc<rustls::ServerConfig>,
    pub ca_file: std::path::PathBuf,
    roots: rustls::RootCertStore,
}

impl Tls {
    pub fn for_names(names: &[&str]) -> Tls {
        let dir = preview_testing::TempDir::new("gateway-tls");
        let ca = preview_tls::LocalCa::load_or_create(&dir.path().join("ca")).expect("ca");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let issued = ca
            .issue(&names, Duration::from_secs(86_400))
            .expect("certificate");
        let certificates = Arc::new(Certificates::default());
        let key =
            Certificates::certified_key(&issued.chain_pem, issued.key_pem.expose()).expect("key");
        certificates.swap(
            names
                .iter()
                .map(|n| (n.clone(), Arc::clone(&key)))
                .collect(),
        );
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.certificate_pem()).expect("ca file");
        let mut roots = rustls::RootCertStore::empty();
        for certificate in
            rustls::pki_types::CertificateDer::pem_slice_iter(ca.certificate_pem().as_bytes())
        {
            roots.add(certificate.expect("pem")).expect("root");
        }
        Tls {
            _dir: dir,
            server: tls_config(certificates).expect("tls"),
            ca_file,
            roots,
        }
    }

    /// A TLS connection to `gateway` for `host`, offering `alpn`.
    pub async fn connect(
        &self,
        gateway: SocketAddr,
        host: &str,
        alpn: &[u8],
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(self.roots.clone())
        .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let stream = TcpStream::connect(gateway).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).expect("name");
        connector
            .connect(name, stream)
            .await
            .expect("TLS handshake")
    }

    /// An HTTP/2 connection to `gateway` for `host`; the connection's task ends when the gateway closes it.
    pub async fn http2<B>(
        &self,
        gateway: SocketAddr,
        host: &str,
    ) -> (
        hyper::client::conn::http2::SendRequest<B>,
        tokio::task::JoinHandle<()>,
    )
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let stream = self.connect(gateway, host, b"h2").await;
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("HTTP/2 handshake");
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        (sender, task)
    }

    /// One HTTP/1.1 request over TLS; status, headers and body.
    pub async fn request(
        &self,
        gateway: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, HashMap<String, String>, String) {
        let stream = self.connect(gateway, host, b"http/1.1").await;
        request_over(TokioIo::new(stream), host, path, headers).await
    }
}

/// A keep-alive HTTP/1.1 client connection to the gateway, for several requests one after another.
pub async fn client(gateway: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(gateway).await.expect("connect");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

/// One HTTP/1.1 request with extra headers through a fresh plain connection; status, headers and body.
pub async fn request(
    gateway: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HashMap<String, String>, String) {
    let stream = TcpStream::connect(gateway).await.expect("connect");
    request_over(TokioIo::new(stream), host, path, headers).await
}

async fn request_over<I>(
    io: I,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HashMap<String, String>, String)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let mut builder = hyper::Request::get(path).header("host", host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = sender
        .send_request(builder.body(Full::new(Bytes::new())).expect("request"))
        .await
        .expect("response");
    let status = response.status().as_u16();
    let seen: HashMap<String, String> = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, seen, String::from_utf8_lossy(&body).into_owned())
}

/// One HTTP/1.1 request through a fresh connection; status and body.
pub async fn get(gateway: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let (status, _, body) = request(gateway, host, path, &[]).await;
    (status, body)
}

/// Everything `stream` receives until the gateway closes it; fails the test if the gateway keeps it open for 10 s.
pub async fn until_closed<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the gateway closes the connection");
    String::from_utf8_lossy(&received).into_owned()
}

/// RFC 6455: the accept key is base64(SHA-1(key + GUID)).
pub fn websocket_accept(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    );
    base64(digest.as_ref())
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A WebSocket app: completes the handshake, then sends every text frame back unmasked.
pub async fn websocket_echo_app() -> SocketAddr {
    raw_app(|mut stream| async move {
        let head = read_head(&mut stream).await;
        let key = header_in(&head, "sec-websocket-key").unwrap_or_default();
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            websocket_accept(&key)
        );
        stream.write_all(answer.as_bytes()).await.expect("101");
        loop {
            let mut header = [0u8; 2];
            if stream.read_exact(&mut header).await.is_err() {
                return;
            }
            let length = usize::from(header[1] & 0x7f);
            let mut mask = [0u8; 4];
            stream.read_exact(&mut mask).await.expect("mask");
            let mut payload = vec![0u8; length];
            stream.read_exact(&mut payload).await.expect("payload");
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= mask[i % 4];
            }
            let mut frame = vec![0x81, length as u8];
            frame.extend_from_slice(&payload);
            stream.write_all(&frame).await.expect("echo");
        }
    })
    .await
}

/// The handshake request of a WebSocket for `host`.
pub fn websocket_request(host: &str) -> String {
    format!(
        "GET /socket HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Sends `message` as a masked text frame and reads the echo back.
pub async fn websocket_echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    message: &str,
) -> String {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | message.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(message.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&frame).await.expect("frame");
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).await.expect("echo header");
    assert_eq!(header[0], 0x81);
    let mut payload = vec![0u8; usize::from(header[1])];
    stream.read_exact(&mut payload).await.expect("echo payload");
    String::from_utf8_lossy(&payload).into_owned()
}

/// HTTP/2 frames written by hand, for clients no library would be: one that never answers a ping, or one that
/// names two hosts.
pub mod h2_frames {
    /// The client preface and an empty SETTINGS frame.
    pub fn preface() -> Vec<u8> {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend_from_slice(&frame(0x4, 0, 0, &[]));
        bytes
    }

    /// A HEADERS frame on stream 1 ending the stream: GET `path` over https for `authority`, with `headers`
    /// (lower-case names), encoded as HPACK literals without indexing.
    pub fn get(authority: &str, path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
        // :method GET (static index 2) and :scheme https (7) are indexed fields.
        let mut block = vec![0x82, 0x87];
        literal_with_indexed_name(&mut block, 4, path); // :path
        literal_with_indexed_name(&mut block, 1, authority); // :authority
        for (name, value) in headers {
            block.push(0x00);
            string(&mut block, name);
            string(&mut block, value);
        }
        // END_STREAM | END_HEADERS
        frame(0x1, 0x5, 1, &block)
    }

    fn literal_with_indexed_name(block: &mut Vec<u8>, index: u8, value: &str) {
        block.push(index); // 0000xxxx: literal without indexing, name from the static table
        string(block, value);
    }

    fn string(block: &mut Vec<u8>, text: &str) {
        assert!(text.len() < 127, "short strings only");
        block.push(text.len() as u8);
        block.extend_from_slice(text.as_bytes());
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let length = payload.len() as u32;
        let mut bytes = length.to_be_bytes()[1..].to_vec();
        bytes.push(kind);
        bytes.push(flags);
        bytes.extend_from_slice(&stream.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    /// The `:status` of the first HEADERS frame in `bytes` when the server encoded it as a static-table index
    /// (200, 204, 206, 304, 400, 404, 500) or a literal with the status name indexed.
    pub fn first_status(bytes: &[u8]) -> Option<u16> {
        let mut at = 0;
        while at + 9 <= bytes.len() {
            let length = usize::from(bytes[at]) << 16
                | usize::from(bytes[at + 1]) << 8
                | usize::from(bytes[at + 2]);
            let kind = bytes[at + 3];
            let payload = bytes.get(at + 9..at + 9 + length)?;
            if kind == 0x1 {
                let first = *payload.first()?;
                return match first {
                    0x88 => Some(200),
                    0x89 => Some(204),
                    0x8a => Some(206),
                    0x8b => Some(304),
                    0x8c => Some(400),
                    0x8d => Some(404),
                    0x8e => Some(500),
                    // Literal with the name `:status` (index 8), with or without indexing.
                    0x48 | 0x08 | 0x18 => {
                        let length = usize::from(payload[1] & 0x7f);
                        std::str::from_utf8(payload.get(2..2 + length)?)
                            .ok()?
                            .parse()
                            .ok()
                    }
                    _ => None,
                };
            }
            at += 9 + length;
        }
        None
    }
}

/// The peak resident memory of this process so far, in KiB (`VmHWM`).
pub fn peak_memory_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM")
}
