//! What an app learns about a request: one host (a request naming two gets 400), the client's address from the
//! gateway and not from the client, and an upgrade only when it is a WebSocket.

mod support;

use std::time::Duration;

use preview_gateway::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Writes `request` on a new connection and returns the answer's head.
async fn raw(gateway: std::net::SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(gateway)
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("request");
    read_head(&mut stream).await
}

#[tokio::test]
async fn a_request_that_names_two_hosts_gets_400() {
    let (app, received) = recording_app().await;
    let routes = routes_of(vec![
        ("web.shop.localhost", serving("web", "pr-1", app)),
        ("admin.shop.localhost", serving("admin", "staging", app)),
    ]);
    let tls = Tls::for_names(&["*.shop.localhost"]);
    let plain = gateway(std::sync::Arc::clone(&routes), None).await;
    let secure = gateway(routes, Some(std::sync::Arc::clone(&tls.server))).await;

    let head = raw(
        plain,
        "GET / HTTP/1.1\r\nHost: web.shop.localhost\r\nHost: admin.shop.localhost\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    let head = raw(
        plain,
        "GET http://admin.shop.localhost/ HTTP/1.1\r\nHost: web.shop.localhost\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    let (status, body) = {
        let mut stream = tokio::net::TcpStream::connect(plain)
            .await
            .expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: web.shop.localhost\r\nHost: web.shop.localhost\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        let answer = until_closed(&mut stream).await;
        (
            answer.split(' ').nth(1).unwrap_or_default().to_owned(),
            answer,
        )
    };
    assert_eq!(status, "400", "{body}");
    assert!(
        body.contains("more than one <code>Host</code> header"),
        "{body}"
    );

    // HTTP/2: a Host header beside a different :authority.
    let h2_status = |authority: &'static str, host: &'static str| {
        let tls = &tls;
        async move {
            let mut stream = tls.connect(secure, "web.shop.localhost", b"h2").await;
            let mut frames = h2_frames::preface();
            frames.extend(h2_frames::get(authority, "/", &[("host", host)]));
            stream.write_all(&frames).await.expect("frames");
            let mut received = Vec::new();
            let mut chunk = [0u8; 16 * 1024];
            tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    if let Some(status) = h2_frames::first_status(&received) {
                        return status;
                    }
                    let n = stream.read(&mut chunk).await.expect("read");
                    assert!(n > 0, "the gateway closed without answering");
                    received.extend_from_slice(&chunk[..n]);
                }
            })
            .await
            .expect("an answer")
        }
    };
    assert_eq!(
        h2_status("web.shop.localhost", "admin.shop.localhost").await,
        400
    );
    assert!(received.heads().is_empty(), "nothing reached the app");
    assert_eq!(
        h2_status("web.shop.localhost", "web.shop.localhost").await,
        200
    );
    assert_eq!(received.last_header("host"), "web.shop.localhost");
}

#[tokio::test]
async fn apps_learn_the_client_address_from_the_gateway_not_the_client() {
    let (app, received) = recording_app().await;
    let routes = routes_of(vec![("web.shop.localhost", serving("web", "pr-1", app))]);
    let spoofed = [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "bank.example"),
        ("forwarded", "for=203.0.113.9;proto=https"),
        ("x-real-ip", "203.0.113.9"),
    ];
    let edge = gateway(std::sync::Arc::clone(&routes), None).await;
    // A port of the client's choosing in `Host` does not reach the app; the one the gateway listens on does.
    let (status, _, _) = request(edge, "web.shop.localhost:99", "/", &spoofed).await;
    assert_eq!(status, 200);
    for (name, expected) in [
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "web.shop.localhost"),
        ("host", "web.shop.localhost"),
        ("forwarded", "-"),
        ("x-real-ip", "-"),
    ] {
        assert_eq!(received.last_header(name), expected, "{name}");
    }
    let listening = format!("web.shop.localhost:{}", edge.port());
    request(edge, &listening, "/", &[]).await;
    assert_eq!(received.last_header("host"), listening);

    // Behind a trusted proxy, what the proxy says about its client is kept.
    let config = Config {
        trusted_proxies: vec![IpRange::parse("127.0.0.0/8").expect("range")],
        ..Config::default()
    };
    let behind = gateway_with(Proxy::with_config(routes, config), None).await;
    let (status, _, _) = request(behind, "web.shop.localhost", "/", &spoofed).await;
    assert_eq!(status, 200);
    for (name, expected) in [
        ("x-forwarded-for", "203.0.113.9, 127.0.0.1"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "bank.example"),
        ("forwarded", "for=203.0.113.9;proto=https"),
        ("x-real-ip", "203.0.113.9"),
    ] {
        assert_eq!(received.last_header(name), expected, "{name}");
    }
}

#[tokio::test]
async fn only_websocket_upgrades_are_tunnelled() {
    let (app, received) = recording_app().await;
    let switching = raw_app(|mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: anything\r\nConnection: Upgrade\r\n\r\n")
            .await;
        let _ = until_closed(&mut stream).await;
    })
    .await;
    let routes = routes_of(vec![
        ("web.shop.localhost", serving("web", "pr-1", app)),
        (
            "switch.shop.localhost",
            serving("switch", "pr-1", switching),
        ),
    ]);
    let gateway = gateway(routes, None).await;
    // Another protocol: forwarded as an ordinary request, without the headers asking for it.
    let head = raw(
        gateway,
        "GET / HTTP/1.1\r\nHost: web.shop.localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let forwarded = received.last();
    for name in ["upgrade", "connection", "http2-settings"] {
        assert_eq!(header_in(&forwarded, name), None, "{forwarded}");
    }
    // An app that switches protocols unasked is not believed.
    let head = raw(
        gateway,
        "GET / HTTP/1.1\r\nHost: switch.shop.localhost\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 502 "), "{head}");
}

#[tokio::test]
async fn a_connect_request_opens_no_tunnel_and_reaches_no_app() {
    let (app, received) = recording_app().await;
    let routes = routes_of(vec![("web.shop.localhost", serving("web", "pr-1", app))]);
    let edge = gateway(routes, None).await;
    let mut stream = tokio::net::TcpStream::connect(edge).await.expect("connect");
    stream
        .write_all(
            b"CONNECT web.shop.localhost:443 HTTP/1.1\r\nHost: web.shop.localhost:443\r\n\r\n",
        )
        .await
        .expect("write");
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("an answer")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    assert!(received.heads().is_empty(), "nothing reached the app");
}

#[tokio::test]
async fn an_http2_requests_cookies_reach_an_http1_app_in_one_header() {
    let (app, received) = recording_app().await;
    let routes = routes_of(vec![("web.shop.localhost", serving("web", "pr-1", app))]);
    let tls = Tls::for_names(&["*.shop.localhost"]);
    let secure = gateway(routes, Some(std::sync::Arc::clone(&tls.server))).await;
    let (mut sender, _connection) = tls.http2(secure, "web.shop.localhost").await;
    let request = hyper::Request::get("https://web.shop.localhost/")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(http_body_util::Full::new(hyper::body::Bytes::new()))
        .expect("request");
    let response = sender.send_request(request).await.expect("answer");
    assert_eq!(response.status(), 200);
    let head = received.last();
    assert_eq!(
        head.lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("cookie:"))
            .count(),
        1,
        "{head}"
    );
    assert_eq!(received.last_header("cookie"), "a=1; b=2", "{head}");
}
