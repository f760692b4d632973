//! Apps that answer with exactly the bytes a hostile pull request would send — a length next to a transfer
//! encoding, a body without end, a head too large, HTTP/1.0 — written by raw TCP servers: the gateway's memory stays
//! bounded, no client reads bytes of another answer, and every other route keeps answering.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: usize = 1024 * 1024;

/// One chunk of 4 KiB in chunked encoding.
static CHUNK_OF_4_KIB: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    let mut chunk = b"1000\r\n".to_vec();
    chunk.extend_from_slice(&[b'x'; 4096]);
    chunk.extend_from_slice(b"\r\n");
    chunk
});

/// Answers every request with `head`, then `chunks` chunks of 1 MiB in chunked encoding and the last chunk.
async fn chunked_app(head: &'static str, chunks: usize) -> SocketAddr {
    raw_app(move |mut stream| async move {
        let megabyte = vec![b'x'; MIB];
        while !read_head(&mut stream).await.is_empty() {
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for _ in 0..chunks {
                let sent = async {
                    stream.write_all(b"100000\r\n").await?;
                    stream.write_all(&megabyte).await?;
                    stream.write_all(b"\r\n").await
                };
                if sent.await.is_err() {
                    return;
                }
            }
            if stream.write_all(b"0\r\n\r\n").await.is_err() {
                return;
            }
        }
    })
    .await
}

/// Answers with `head` and then writes `unit` without end; `stopped` is set once a write failed (the gateway let
/// the connection go).
async fn endless_app(
    head: &'static str,
    unit: &'static [u8],
    stopped: Arc<AtomicBool>,
) -> SocketAddr {
    raw_app(move |mut stream| {
        let stopped = Arc::clone(&stopped);
        async move {
            read_head(&mut stream).await;
            let _ = stream.write_all(head.as_bytes()).await;
            let block = unit.repeat(64 * 1024 / unit.len());
            while stream.write_all(&block).await.is_ok() {}
            stopped.store(true, Ordering::SeqCst);
        }
    })
    .await
}

/// Answers with the bytes of `answer`, then closes the connection.
async fn fixed_app(answer: Vec<u8>) -> SocketAddr {
    let answer = Arc::new(answer);
    raw_app(move |mut stream| {
        let answer = Arc::clone(&answer);
        async move {
            read_head(&mut stream).await;
            let _ = stream.write_all(&answer).await;
            let _ = stream.shutdown().await;
        }
    })
    .await
}

/// What `stream` receives up to and including `end`.
async fn read_until(stream: &mut TcpStream, end: &[u8]) -> String {
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    let reading = async {
        while !received.ends_with(end) {
            match stream.read(&mut byte).await {
                Ok(1) => received.push(byte[0]),
                _ => break,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .expect("the answer ends");
    String::from_utf8_lossy(&received).into_owned()
}

fn get_request(host: &str) -> hyper::Request<Full<Bytes>> {
    hyper::Request::get("/")
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .expect("request")
}

/// Reads at most `limit` bytes of `body`, counting and dropping them; the count.
async fn drain(mut body: hyper::body::Incoming, limit: usize) -> usize {
    let mut read = 0;
    while read < limit {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
            _ => break,
        }
    }
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_answers_neither_fill_memory_nor_reach_other_answers_and_others_keep_answering() {
    let endless_stopped = Arc::new(AtomicBool::new(false));
    let never_ending_stopped = Arc::new(AtomicBool::new(false));
    let big_head = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok",
        "h".repeat(200 * 1024)
    );
    let routes = routes_of(vec![
        (
            "web.shop.localhost",
            serving("web", "staging", echo_app("web").await),
        ),
        // 256 MiB in chunks, announced as 10 bytes as well.
        (
            "te-cl.pr-6.shop.localhost",
            serving(
                "te-cl",
                "pr-6",
                chunked_app(
                    "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n",
                    256,
                )
                .await,
            ),
        ),
        (
            "endless.pr-6.shop.localhost",
            serving(
                "endless",
                "pr-6",
                endless_app(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                    CHUNK_OF_4_KIB.as_slice(),
                    Arc::clone(&endless_stopped),
                )
                .await,
            ),
        ),
        (
            "never-ending.pr-6.shop.localhost",
            serving(
                "never-ending",
                "pr-6",
                endless_app(
                    "HTTP/1.1 200 OK\r\n\r\n",
                    b"y",
                    Arc::clone(&never_ending_stopped),
                )
                .await,
            ),
        ),
        (
            "big-head.pr-6.shop.localhost",
            serving("big-head", "pr-6", fixed_app(big_head.into_bytes()).await),
        ),
        (
            "old.pr-6.shop.localhost",
            serving(
                "old",
                "pr-6",
                fixed_app(
                    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello from 1.0".to_vec(),
                )
                .await,
            ),
        ),
    ]);
    let gateway = gateway(routes, None).await;
    // This process runs the gateway, the apps and the clients; none but the gateway could hold a body.
    let before = peak_memory_kib();

    // Every other route keeps answering throughout.
    let done = Arc::new(AtomicBool::new(false));
    let (answered, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let others = {
        let (done, answered, failed) = (
            Arc::clone(&done),
            Arc::clone(&answered),
            Arc::clone(&failed),
        );
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                match get(gateway, "web.shop.localhost", "/other").await {
                    (200, body) if body.starts_with("web /other") => {
                        answered.fetch_add(1, Ordering::SeqCst)
                    }
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let te_cl = async {
        // The body is framed by its encoding and the lie is not passed on; then, on the same connection, the next
        // answer is the next app's, whole.
        let mut sender = client(gateway).await;
        let response = sender
            .send_request(get_request("te-cl.pr-6.shop.localhost"))
            .await
            .expect("answer");
        assert_eq!(response.status(), 200);
        assert!(
            !response.headers().contains_key("content-length"),
            "{:?}",
            response.headers()
        );
        assert_eq!(drain(response.into_body(), usize::MAX).await, 256 * MIB);
        sender.ready().await.expect("the connection is kept");
        let next = sender
            .send_request(get_request("web.shop.localhost"))
            .await
            .expect("next answer");
        let body = next.into_body().collect().await.expect("body").to_bytes();
        assert!(
            body.starts_with(b"web / "),
            "{}",
            String::from_utf8_lossy(&body)
        );
    };
    let endless = async {
        for (host, stopped) in [
            ("endless.pr-6.shop.localhost", &endless_stopped),
            ("never-ending.pr-6.shop.localhost", &never_ending_stopped),
        ] {
            let mut sender = client(gateway).await;
            let response = sender
                .send_request(get_request(host))
                .await
                .expect("answer");
            assert_eq!(response.status(), 200);
            assert!(
                drain(response.into_body(), 64 * MIB).await >= 64 * MIB,
                "{host}"
            );
            // The client leaves: the gateway stops reading the app (and holds none of what it still sends).
            drop(sender);
            for _ in 0..100 {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(
                stopped.load(Ordering::SeqCst),
                "{host}: the app's connection was closed"
            );
        }
    };
    let big_head = async {
        let (status, body) = get(gateway, "big-head.pr-6.shop.localhost", "/").await;
        assert_eq!(status, 502, "{body}");
        assert!(
            body.contains("its answer's head is larger than 64 KiB"),
            "{body}"
        );
    };
    let old = async {
        // The client is answered in HTTP/1.1 and keeps its connection for the next request.
        let mut stream = TcpStream::connect(gateway).await.expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: old.pr-6.shop.localhost\r\n\r\n")
            .await
            .expect("request");
        let head = read_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(
            header_in(&head, "transfer-encoding").as_deref(),
            Some("chunked"),
            "{head}"
        );
        let body = read_until(&mut stream, b"\r\n0\r\n\r\n").await;
        assert!(body.contains("hello from 1.0"), "{body}");
        stream
            .write_all(b"GET /again HTTP/1.1\r\nHost: web.shop.localhost\r\n\r\n")
            .await
            .expect("second request on the same connection");
        let head = read_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    };
    tokio::join!(te_cl, endless, big_head, old);
    done.store(true, Ordering::SeqCst);
    others.await.expect("others");

    let grown = peak_memory_kib().saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "the gateway's process grew by {grown} KiB while 256 MiB and more went through it"
    );
    assert_eq!(failed.load(Ordering::SeqCst), 0, "other routes failed");
    assert!(answered.load(Ordering::SeqCst) > 0);
}
