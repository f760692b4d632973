//! The gateway with real sockets, apps and clients (curl among them): routing, pages, TLS, WebSockets, route swaps
//! and backends in other networks.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioExecutor;
use preview_gateway::*;
use support::*;
use tokio::io::AsyncWriteExt;

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
    // The app is told the host in one spelling: lower case, no trailing dot, and the port the client named when
    // it is the scheme's default (or the gateway's own).
    let (status, body) = get(gateway, "Web-PR-1.shop.localhost.:80", "/cart?item=3").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "web /cart?item=3 fwd-for=127.0.0.1 fwd-proto=http fwd-host=web-pr-1.shop.localhost:80 host=web-pr-1.shop.localhost:80"
    );
    let (status, body) = get(gateway, "anything.pr-1.shop.localhost", "/").await;
    assert_eq!((status, body.split(' ').next()), (200, Some("api")));
    // What a wildcard stands for must be a DNS label.
    let (status, body) = get(gateway, "any_thing.pr-1.shop.localhost", "/").await;
    assert_eq!(status, 404, "{body}");
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
        body.contains(
            "<b>web</b> of environment <b>pr-7</b> (shop) did not answer: it refused the connection"
        ),
        "{body}"
    );
    // Where the app listens is the machine's business, not the visitor's.
    assert!(
        !body.contains(&closed.port().to_string()) && !body.contains("127.0.0.1"),
        "{body}"
    );
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
    stream
        .write_all(websocket_request("ws.shop.localhost").as_bytes())
        .await
        .expect("upgrade request");
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        header_in(&head, "sec-websocket-accept"),
        Some(websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="))
    );
    for message in ["hello", "through the gateway"] {
        assert_eq!(websocket_echo(&mut stream, message).await, message);
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
        .write_all(websocket_request("ws-pr-9.shop.localhost").as_bytes())
        .await
        .expect("upgrade request");
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(made(), 2);
}
