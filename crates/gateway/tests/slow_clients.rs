//! Clients that hold the gateway's resources without using them — silent, slow to send, slow to read, idle over
//! HTTP/1.1, HTTP/2 and upgraded tunnels — are let go after their (here short) timeouts; request heads have a size,
//! backends a number of requests at once, and the gateway a number of connections.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Frame};
use preview_gateway::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A gateway with [`short_timeouts`] serving `routes`, over plain HTTP and over TLS.
async fn short_gateways(routes: Arc<Routes>, tls: &Tls) -> (SocketAddr, SocketAddr) {
    let config = || Config {
        timeouts: short_timeouts(),
        ..Config::default()
    };
    let plain = gateway_with(Proxy::with_config(Arc::clone(&routes), config()), None).await;
    let secure = gateway_with(
        Proxy::with_config(routes, config()),
        Some(Arc::clone(&tls.server)),
    )
    .await;
    (plain, secure)
}

#[tokio::test]
async fn silent_and_slow_http1_clients_are_let_go() {
    let routes = routes_of(vec![
        (
            "web.shop.localhost",
            serving("web", "pr-3", echo_app("web").await),
        ),
        (
            "upload.shop.localhost",
            serving("upload", "pr-3", body_reading_app().await),
        ),
    ]);
    let tls = Tls::for_names(&["*.shop.localhost"]);
    let (plain, secure) = short_gateways(routes, &tls).await;
    let connect = || TcpStream::connect(plain);

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

    // A request body that stops arriving: 408, and the connection is closed.
    let mut uploading = connect().await.expect("connect");
    uploading
        .write_all(b"POST /upload HTTP/1.1\r\nHost: upload.shop.localhost\r\nContent-Length: 1000\r\n\r\nonly ten b")
        .await
        .expect("write");
    let answer = until_closed(&mut uploading).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        answer.contains("the request's body stopped arriving"),
        "{answer}"
    );

    // A TLS client that never starts its handshake.
    let mut silent = TcpStream::connect(secure).await.expect("connect");
    assert_eq!(until_closed(&mut silent).await, "");

    // Clients that do not dawdle are served as before, bodies included.
    assert_eq!(get(plain, "web.shop.localhost", "/").await.0, 200);
    let mut prompt = connect().await.expect("connect");
    prompt
        .write_all(b"POST /upload HTTP/1.1\r\nHost: upload.shop.localhost\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        .await
        .expect("write");
    let answer = until_closed(&mut prompt).await;
    assert!(answer.ends_with("got 5 bytes"), "{answer}");
}

#[tokio::test]
async fn clients_that_read_nothing_of_their_answer_are_let_go() {
    let stopped = Arc::new(AtomicBool::new(false));
    let endless = raw_app({
        let stopped = Arc::clone(&stopped);
        move |mut stream| {
            let stopped = Arc::clone(&stopped);
            async move {
                read_head(&mut stream).await;
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
                let block = vec![b'z'; 64 * 1024];
                while stream.write_all(&block).await.is_ok() {}
                stopped.store(true, Ordering::SeqCst);
            }
        }
    })
    .await;
    let routes = routes_of(vec![(
        "stream.shop.localhost",
        serving("stream", "pr-3", endless),
    )]);
    let tls = Tls::for_names(&["*.shop.localhost"]);
    let (plain, _) = short_gateways(routes, &tls).await;
    let mut reader = TcpStream::connect(plain).await.expect("connect");
    reader
        .write_all(b"GET / HTTP/1.1\r\nHost: stream.shop.localhost\r\n\r\n")
        .await
        .expect("request");
    // Reads nothing for many times the write timeout; then what the kernel buffered is all there is.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let received = until_closed(&mut reader).await;
    assert!(
        received.len() < 64 * 1024 * 1024,
        "{} bytes",
        received.len()
    );
    for _ in 0..100 {
        if stopped.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stopped.load(Ordering::SeqCst),
        "the app's connection was closed too"
    );
}

#[tokio::test]
async fn idle_silent_and_slow_http2_clients_are_let_go() {
    // An app that never answers, for a request that stays open.
    let never = raw_app(|mut stream| async move {
        read_head(&mut stream).await;
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    })
    .await;
    let routes = routes_of(vec![
        (
            "web.shop.localhost",
            serving("web", "pr-4", echo_app("web").await),
        ),
        (
            "upload.shop.localhost",
            serving("upload", "pr-4", body_reading_app().await),
        ),
        ("never.shop.localhost", serving("never", "pr-4", never)),
    ]);
    let tls = Tls::for_names(&["*.shop.localhost"]);
    let (_, secure) = short_gateways(routes, &tls).await;

    // Idle: a request, then nothing (the client answers pings, so only the idle timeout ends it).
    let (mut sender, connection) = tls.http2(secure, "web.shop.localhost").await;
    let response = sender
        .send_request(
            hyper::Request::get("https://web.shop.localhost/")
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    drop(response);
    tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the gateway closes an idle HTTP/2 connection")
        .expect("connection task");

    // Silent: a request open, and the client stops reading and answering pings altogether.
    let mut silent = tls.connect(secure, "never.shop.localhost", b"h2").await;
    let mut frames = h2_frames::preface();
    frames.extend(h2_frames::get("never.shop.localhost", "/", &[]));
    silent.write_all(&frames).await.expect("frames");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the gateway closes a connection whose client answers no ping"
    );

    // Slow: a request body that stops arriving gets 408.
    let (mut sender, _connection) = tls.http2(secure, "upload.shop.localhost").await;
    let request = hyper::Request::post("https://upload.shop.localhost/upload")
        .body(Stalling { sent: false })
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("an answer while the body is still open")
        .expect("answer");
    assert_eq!(response.status(), 408);
    let page = response
        .into_body()
        .collect()
        .await
        .expect("page")
        .to_bytes();
    assert!(
        String::from_utf8_lossy(&page).contains("the request's body stopped arriving"),
        "{page:?}"
    );
}

/// A request body that sends ten bytes and then nothing, without ever ending.
struct Stalling {
    sent: bool,
}

impl hyper::body::Body for Stalling {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.sent {
            return std::task::Poll::Pending;
        }
        self.sent = true;
        std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"only ten b")))))
    }
}

#[tokio::test]
async fn idle_tunnels_are_closed_and_busy_ones_kept() {
    let routes = routes_of(vec![(
        "ws.shop.localhost",
        serving("chat", "pr-3", websocket_echo_app().await),
    )]);
    let tls = Tls::for_names(&["*.shop.localhost"]);
    let (plain, _) = short_gateways(routes, &tls).await;
    let mut stream = TcpStream::connect(plain).await.expect("connect");
    stream
        .write_all(websocket_request("ws.shop.localhost").as_bytes())
        .await
        .expect("upgrade request");
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // In use for several times the timeout: kept.
    for _ in 0..10 {
        assert_eq!(
            websocket_echo(&mut stream, "still here").await,
            "still here"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then left alone: closed.
    assert_eq!(until_closed(&mut stream).await, "");
}

#[tokio::test]
async fn request_heads_over_the_limit_get_431_and_reach_no_app() {
    let (app, received) = recording_app().await;
    let routes = routes_of(vec![("web.shop.localhost", serving("web", "pr-3", app))]);
    let gateway = gateway(routes, None).await;
    let head_with = |size: usize| {
        format!(
            "GET / HTTP/1.1\r\nHost: web.shop.localhost\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "b".repeat(size)
        )
    };
    let mut stream = TcpStream::connect(gateway).await.expect("connect");
    stream
        .write_all(head_with(80 * 1024).as_bytes())
        .await
        .expect("request");
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    assert!(received.heads().is_empty(), "nothing reached the app");
    // Under the limit: forwarded.
    let mut stream = TcpStream::connect(gateway).await.expect("connect");
    stream
        .write_all(head_with(32 * 1024).as_bytes())
        .await
        .expect("request");
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert_eq!(received.heads().len(), 1);
}

#[tokio::test]
async fn a_backend_gets_so_many_requests_at_once_however_many_streams_ask() {
    // An app that holds each request a little and counts how many it holds at once.
    let (holding, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let app = raw_app({
        let (holding, most) = (Arc::clone(&holding), Arc::clone(&most));
        move |mut stream| {
            let (holding, most) = (Arc::clone(&holding), Arc::clone(&most));
            async move {
                while !read_head(&mut stream).await.is_empty() {
                    let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    holding.fetch_sub(1, Ordering::SeqCst);
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    let routes = routes_of(vec![("web.shop.localhost", serving("web", "pr-5", app))]);
    let tls = Tls::for_names(&["*.shop.localhost"]);
    let mut config = Config::default();
    config.limits.per_backend = 4;
    let secure = gateway_with(
        Proxy::with_config(routes, config),
        Some(Arc::clone(&tls.server)),
    )
    .await;
    // One HTTP/2 connection, 40 streams at once.
    let (sender, _connection) = tls.http2::<Full<Bytes>>(secure, "web.shop.localhost").await;
    let mut streams = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let mut sender = sender.clone();
        streams.spawn(async move {
            let request = hyper::Request::get("https://web.shop.localhost/")
                .body(Full::new(Bytes::new()))
                .expect("request");
            sender.send_request(request).await.expect("answer").status()
        });
    }
    while let Some(status) = streams.join_next().await {
        assert_eq!(status.expect("stream"), 200);
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        4,
        "requests the app held at once"
    );
}

#[tokio::test]
async fn the_gateway_serves_so_many_connections_at_once() {
    let routes = routes_of(vec![(
        "web.shop.localhost",
        serving("web", "pr-5", echo_app("web").await),
    )]);
    let mut config = Config::default();
    config.limits.connections = Some(8);
    let gateway = gateway_with(Proxy::with_config(routes, config), None).await;
    let mut flood = Vec::new();
    for _ in 0..40 {
        flood.push(TcpStream::connect(gateway).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        preview_testing::accepted_connections(std::process::id(), gateway.port()),
        8,
        "connections the gateway took"
    );
    // The next client waits until a place frees up.
    let waiting = tokio::spawn(get(gateway, "web.shop.localhost", "/next"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "served beyond the cap");
    drop(flood);
    let (status, _) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("served once the flood left")
        .expect("request");
    assert_eq!(status, 200);
}

#[tokio::test]
async fn tunnels_hold_their_place_under_the_connection_cap() {
    let routes = routes_of(vec![
        (
            "ws.shop.localhost",
            serving("ws", "pr-6", websocket_echo_app().await),
        ),
        (
            "web.shop.localhost",
            serving("web", "pr-6", echo_app("web").await),
        ),
    ]);
    let mut config = Config::default();
    config.limits.connections = Some(2);
    let gateway = gateway_with(Proxy::with_config(routes, config), None).await;
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let mut socket = TcpStream::connect(gateway).await.expect("connect");
        socket
            .write_all(websocket_request("ws.shop.localhost").as_bytes())
            .await
            .expect("upgrade");
        let head = read_head(&mut socket).await;
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert_eq!(websocket_echo(&mut socket, "hello").await, "hello");
        sockets.push(socket);
    }
    // Two open tunnels are two connections: a third client waits.
    let waiting = tokio::spawn(get(gateway, "web.shop.localhost", "/next"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "served beyond the cap");
    drop(sockets);
    let (status, _) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("served once a tunnel closed")
        .expect("request");
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_http2_answer_that_keeps_coming_is_not_cut_by_the_idle_timeout() {
    // An app streaming its answer for four times the idle timeout, a piece every 100 ms.
    let streaming = raw_app(|mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if stream.write_all(b"5\r\ntick\n\r\n").await.is_err() {
                return;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n").await;
    })
    .await;
    let routes = routes_of(vec![(
        "events.shop.localhost",
        serving("events", "pr-7", streaming),
    )]);
    let tls = Tls::for_names(&["*.shop.localhost"]);
    let (_, secure) = short_gateways(routes, &tls).await;
    let (mut sender, _connection) = tls.http2(secure, "events.shop.localhost").await;
    let response = sender
        .send_request(
            hyper::Request::get("https://events.shop.localhost/stream")
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
        .await
        .expect("the whole answer")
        .expect("body")
        .to_bytes();
    assert_eq!(body, "tick\n".repeat(12).as_bytes());
}
