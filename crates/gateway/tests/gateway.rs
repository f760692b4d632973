//! The gateway with real sockets, apps and clients (curl among them).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use preview_gateway::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An app that answers `<name> <path> fwd-for=… fwd-proto=… fwd-host=… host=…`.
async fn echo_app(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
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

fn route(service: &str, environment: &str, state: RouteState, backend: SocketAddr) -> Route {
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
    }
}

/// A route table holding `entries` (hostname, route), swapped in.
fn routes_of(entries: Vec<(&str, Route)>) -> Arc<Routes> {
    let mut table = RouteTable::default();
    for (hostname, route) in entries {
        table.insert(hostname, route);
    }
    let routes = Arc::new(Routes::default());
    routes.swap(table);
    routes
}

async fn gateway(routes: Arc<Routes>, tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    gateway_with(routes, tls, Timeouts::default()).await
}

async fn gateway_with(
    routes: Arc<Routes>,
    tls: Option<Arc<rustls::ServerConfig>>,
    timeouts: Timeouts,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(serve_with(
        listener,
        Arc::new(Proxy::new(routes)),
        tls,
        timeouts,
    ));
    address
}

/// One HTTP/1.1 request through a fresh connection; returns status and body.
async fn get(gateway: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let (status, _, body) = request(gateway, host, path, &[]).await;
    (status, body)
}

#[tokio::test]
async fn requests_reach_the_app_of_their_host_with_forwarding_headers() {
    let (web, api) = (echo_app("web").await, echo_app("api").await);
    let routes = routes_of(vec![
        (
            "web-pr-1.shop.localhost",
            route("web", "pr-1", RouteState::Serving, web),
        ),
        (
            "*.pr-1.shop.localhost",
            route("api", "pr-1", RouteState::Serving, api),
        ),
    ]);
    let gateway = gateway(routes, None).await;
    let (status, body) = get(gateway, "Web-PR-1.shop.localhost:80", "/cart?item=3").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "web /cart?item=3 fwd-for=127.0.0.1 fwd-proto=http fwd-host=Web-PR-1.shop.localhost:80 host=Web-PR-1.shop.localhost:80"
    );
    let (status, body) = get(gateway, "anything.pr-1.shop.localhost", "/").await;
    assert_eq!((status, body.split(' ').next()), (200, Some("api")));
    // A client that came through another proxy already: the gateway adds its own hop.
    let (_, _, body) = request(
        gateway,
        "web-pr-1.shop.localhost",
        "/",
        &[("X-Forwarded-For", "203.0.113.9")],
    )
    .await;
    assert!(body.contains(" fwd-for=203.0.113.9, 127.0.0.1 "), "{body}");
}

#[tokio::test]
async fn pages_name_the_problem_and_the_environment() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address");
    let routes = routes_of(vec![
        (
            "down.shop.localhost",
            route("web", "pr-7", RouteState::Serving, closed),
        ),
        (
            "idle.shop.localhost",
            route("web", "pr-8", RouteState::Stopped, closed),
        ),
    ]);
    let gateway = gateway(routes, None).await;
    let (status, body) = get(gateway, "nowhere.shop.localhost", "/").await;
    assert_eq!(status, 404);
    assert!(
        body.contains("No environment answers for <b>nowhere.shop.localhost</b>"),
        "{body}"
    );
    let (status, body) = get(gateway, "idle.shop.localhost", "/").await;
    assert_eq!(status, 503);
    assert!(
        body.contains("<b>web</b> of environment <b>pr-8</b> (shop) is stopped"),
        "{body}"
    );
    let (status, body) = get(gateway, "down.shop.localhost", "/").await;
    assert_eq!(status, 502);
    assert!(
        body.contains("<b>web</b> of environment <b>pr-7</b> (shop) did not answer"),
        "{body}"
    );
}

/// Everything `stream` sends until the gateway closes it; fails the test if the gateway keeps it open for 10 s.
async fn until_closed(stream: &mut tokio::net::TcpStream) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
        .await
        .expect("the gateway closes the connection")
        .expect("read");
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn clients_that_say_nothing_or_too_slowly_are_let_go() {
    let app = echo_app("web").await;
    let routes = routes_of(vec![(
        "web.shop.localhost",
        route("web", "pr-3", RouteState::Serving, app),
    )]);
    let timeouts = Timeouts {
        handshake: Duration::from_millis(300),
        request_head: Duration::from_millis(300),
    };
    let plain = gateway_with(Arc::clone(&routes), None, timeouts).await;
    let connect = || tokio::net::TcpStream::connect(plain);

    // A request head that never ends.
    let mut slow = connect().await.expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: web.shop.localhost\r\n")
        .await
        .expect("write");
    let answer = until_closed(&mut slow).await;
    assert!(!answer.contains("200 OK"), "{answer}");

    // A keep-alive connection left idle after its answer.
    let mut idle = connect().await.expect("connect");
    idle.write_all(b"GET /once HTTP/1.1\r\nHost: web.shop.localhost\r\n\r\n")
        .await
        .expect("write");
    let answer = until_closed(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("host=web.shop.localhost"), "{answer}");

    // A TLS client that never starts its handshake.
    let tls = tls_config(Arc::new(Certificates::default())).expect("tls");
    let mut silent =
        tokio::net::TcpStream::connect(gateway_with(routes, Some(tls), timeouts).await)
            .await
            .expect("connect");
    assert_eq!(until_closed(&mut silent).await, "");

    // Clients that do not dawdle are served as before.
    assert_eq!(get(plain, "web.shop.localhost", "/").await.0, 200);
}

#[tokio::test]
async fn https_picks_the_certificate_by_sni_and_speaks_http2() {
    let dir = preview_testing::TempDir::new("gateway-tls");
    let ca = preview_tls::LocalCa::load_or_create(&dir.path().join("ca")).expect("ca");
    let issued = ca
        .issue(
            &["*.pr-2.shop.localhost".to_owned()],
            Duration::from_secs(86_400),
        )
        .expect("certificate");
    let certificates = Arc::new(Certificates::default());
    let key = Certificates::certified_key(&issued.chain_pem, issued.key_pem.expose()).expect("key");
    certificates.swap(HashMap::from([("*.pr-2.shop.localhost".to_owned(), key)]));
    let app = echo_app("web").await;
    let routes = routes_of(vec![(
        "web.pr-2.shop.localhost",
        route("web", "pr-2", RouteState::Serving, app),
    )]);
    let gateway = gateway(routes, Some(tls_config(certificates).expect("tls"))).await;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.certificate_pem()).expect("ca file");
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = tokio::process::Command::new("curl")
            .args([
                "--silent",
                "--show-error",
                "--max-time",
                "10",
                flag,
                "--write-out",
                "\n%{http_version}",
                "--cacert",
            ])
            .arg(&ca_file)
            .args([
                "--resolve",
                &format!("web.pr-2.shop.localhost:{}:127.0.0.1", gateway.port()),
            ])
            .arg(format!(
                "https://web.pr-2.shop.localhost:{}/hello",
                gateway.port()
            ))
            .output()
            .await
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, used) = text.rsplit_once('\n').expect("version line");
        assert_eq!(used, version);
        assert!(
            body.starts_with("web /hello fwd-for=127.0.0.1 fwd-proto=https"),
            "{body}"
        );
    }
}

/// RFC 6455: the accept key is base64(SHA-1(key + GUID)).
fn websocket_accept(key: &str) -> String {
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
async fn websocket_echo_app() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let head = read_head(&mut stream).await;
                let key = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("Sec-WebSocket-Key: ")
                            .or_else(|| l.strip_prefix("sec-websocket-key: "))
                    })
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
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
            });
        }
    });
    address
}

async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read_exact(&mut byte).await.is_err() {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn a_websocket_echo_passes_through() {
    let app = websocket_echo_app().await;
    let routes = routes_of(vec![(
        "ws.shop.localhost",
        route("chat", "pr-3", RouteState::Serving, app),
    )]);
    let gateway = gateway(routes, None).await;
    let mut stream = tokio::net::TcpStream::connect(gateway)
        .await
        .expect("connect");
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    stream
        .write_all(
            format!(
                "GET /socket HTTP/1.1\r\nHost: ws.shop.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("upgrade request");
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains(&format!(
            "sec-websocket-accept: {}",
            websocket_accept(key).to_ascii_lowercase()
        )),
        "{head}"
    );
    for message in ["hello", "through the gateway"] {
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut frame = vec![0x81, 0x80 | message.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(message.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        stream.write_all(&frame).await.expect("frame");
        let mut header = [0u8; 2];
        stream.read_exact(&mut header).await.expect("echo header");
        let mut payload = vec![0u8; usize::from(header[1])];
        stream.read_exact(&mut payload).await.expect("echo payload");
        assert_eq!(
            (header[0], String::from_utf8_lossy(&payload).into_owned()),
            (0x81, message.to_owned())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_routes_under_load_fails_no_request() {
    let (blue, green) = (echo_app("blue").await, echo_app("green").await);
    let table = |backend| {
        let mut table = RouteTable::default();
        table.insert(
            "web.shop.localhost",
            route("web", "staging", RouteState::Serving, backend),
        );
        table
    };
    let routes = Arc::new(Routes::default());
    routes.swap(table(blue));
    let gateway = gateway(Arc::clone(&routes), None).await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let swapper = {
        let routes = Arc::clone(&routes);
        tokio::spawn(async move {
            for i in 0..100 {
                routes.swap(table(if i % 2 == 0 { green } else { blue }));
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let (mut ok, mut seen_blue, mut seen_green) = (0, false, false);
    for _ in 0..600 {
        let request = hyper::Request::get(format!("http://{gateway}/"))
            .header("host", "web.shop.localhost")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = client.request(request).await.expect("no request fails");
        assert_eq!(response.status(), 200);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        seen_blue |= body.starts_with(b"blue");
        seen_green |= body.starts_with(b"green");
        ok += 1;
    }
    swapper.await.expect("swapper");
    assert_eq!(ok, 600);
    assert!(
        seen_blue && seen_green,
        "both versions answered during the swaps"
    );
}

/// One request with extra headers; status, the named response headers and the body.
async fn request(
    gateway: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HashMap<String, String>, String) {
    let stream = tokio::net::TcpStream::connect(gateway)
        .await
        .expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
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

#[tokio::test]
async fn protected_previews_want_their_token_or_password() {
    let app = echo_app("web").await;
    let mut token = route("web", "pr-1", RouteState::Serving, app);
    token.access = Some(Access::Token {
        digest: digest("s3cret token"),
    });
    let mut basic = route("web", "pr-2", RouteState::Serving, app);
    basic.access = Some(Access::Basic {
        digest: digest(&basic_credentials("reviewer", "pa:ss")),
    });
    let routes = routes_of(vec![
        ("web-pr-1.shop.localhost", token),
        ("web-pr-2.shop.localhost", basic),
    ]);
    let gateway = gateway(routes, None).await;
    let host = "web-pr-1.shop.localhost";

    let (status, _, page) = request(gateway, host, "/", &[]).await;
    assert_eq!(status, 401);
    assert!(page.contains("preview_token"), "{page}");
    let (status, _, _) = request(gateway, host, "/", &[("x-preview-token", "wrong")]).await;
    assert_eq!(status, 401);
    let (status, _, body) =
        request(gateway, host, "/a", &[("x-preview-token", "s3cret token")]).await;
    assert_eq!(
        (status, body.split(' ').take(2).collect::<Vec<_>>()),
        (200, vec!["web", "/a"])
    );
    // Once in the query: a cookie, and the same URL without the token.
    let (status, headers, _) = request(
        gateway,
        host,
        "/cart?preview_token=s3cret%20token&item=3",
        &[],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/cart?item=3");
    let cookie = &headers["set-cookie"];
    assert!(
        cookie.starts_with("preview_token=s3cret%20token;") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let sent = cookie.split(';').next().expect("pair");
    let (status, _, body) = request(gateway, host, "/cart?item=3", &[("cookie", sent)]).await;
    assert_eq!(
        (status, body.split(' ').nth(1)),
        (200, Some("/cart?item=3"))
    );
    let (status, _, _) = request(gateway, host, "/", &[("cookie", "preview_token=wrong")]).await;
    assert_eq!(status, 401);

    let host = "web-pr-2.shop.localhost";
    let (status, headers, _) = request(gateway, host, "/", &[]).await;
    assert_eq!(status, 401);
    assert!(headers["www-authenticate"].starts_with("Basic realm=\"preview\""));
    let good = format!("Basic {}", basic_credentials("reviewer", "pa:ss"));
    let (status, _, _) = request(gateway, host, "/", &[("authorization", &good)]).await;
    assert_eq!(status, 200);
    let bad = format!("Basic {}", basic_credentials("reviewer", "nope"));
    let (status, _, _) = request(gateway, host, "/", &[("authorization", &bad)]).await;
    assert_eq!(status, 401);
}

/// A network whose sockets are the host's, counting how many the gateway made through it.
#[derive(Debug)]
struct Elsewhere {
    made: std::sync::atomic::AtomicUsize,
}

impl Network for Elsewhere {
    fn name(&self) -> &str {
        "elsewhere"
    }

    fn socket(&self) -> std::io::Result<tokio::net::TcpSocket> {
        self.made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::net::TcpSocket::new_v4()
    }
}

#[tokio::test]
async fn backends_in_another_network_are_reached_through_its_sockets() {
    let (app, chat) = (echo_app("web").await, websocket_echo_app().await);
    let network = Arc::new(Elsewhere {
        made: std::sync::atomic::AtomicUsize::new(0),
    });
    let through = |service: &str, address| {
        let mut route = route(service, "pr-9", RouteState::Serving, address);
        route.backends[0].network = Some(Arc::clone(&network) as Arc<dyn Network>);
        route
    };
    let routes = routes_of(vec![
        ("web-pr-9.shop.localhost", through("web", app)),
        ("ws-pr-9.shop.localhost", through("chat", chat)),
    ]);
    let gateway = gateway(routes, None).await;
    let made = || network.made.load(std::sync::atomic::Ordering::SeqCst);
    // HTTP/1.1 requests: the client connection's own upstream connection.
    let (status, body) = get(gateway, "web-pr-9.shop.localhost", "/inside").await;
    assert_eq!((status, body.split(' ').nth(1)), (200, Some("/inside")));
    assert_eq!(made(), 1);
    // An upgrade goes through the pool, whose connector finds the network by name in the route table.
    let mut stream = tokio::net::TcpStream::connect(gateway)
        .await
        .expect("connect");
    stream
        .write_all(
            b"GET /socket HTTP/1.1\r\nHost: ws-pr-9.shop.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .expect("upgrade request");
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(made(), 2);
}
