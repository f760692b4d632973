//! Requests without a body, which the gateway sends and whose answers it reads itself over the client connection's
//! own connection to the app: the connection serves one answer after another of every framing, is left after an
//! answer that ends otherwise than its framing said and when the app closed it or wrote into it while it was kept, a
//! safe request the app dropped unanswered is sent again and another is not, and answers that break the rules of
//! HTTP/1.1 get a page that says how.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `method path` for `host` on `sender`; status, headers and body (or the body's error).
async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    method: &str,
    host: &str,
    path: &str,
) -> (u16, hyper::HeaderMap, Result<String, String>) {
    sender.ready().await.expect("the client connection is kept");
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    if method == "POST" {
        request = request.header("content-length", "0");
    }
    let exchange = async {
        let response = sender
            .send_request(request.body(Full::new(Bytes::new())).expect("request"))
            .await
            .expect("answer");
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .map_err(|e| e.to_string());
        (parts.status.as_u16(), parts.headers, body)
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within 10 s"))
}

/// The first line of a request head: method and path.
fn request_line(head: &str) -> (String, String) {
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or_default().to_owned();
    let path = words.next().unwrap_or_default().to_owned();
    (method, path)
}

/// An app that serves requests one after another on each connection, answering each with the bytes `answer` gives
/// for its method, path and place on the connection (1 for the first) — `None` closes the connection unanswered.
/// Counts the connections it accepted and records every request line.
async fn keep_alive_app<F>(answer: F) -> (SocketAddr, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>)
where
    F: Fn(&str, &str, usize) -> Option<Vec<u8>> + Send + Sync + 'static,
{
    let connections = Arc::new(AtomicUsize::new(0));
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let answer = Arc::new(answer);
    let address = {
        let (connections, requests) = (Arc::clone(&connections), Arc::clone(&requests));
        raw_app(move |mut stream| {
            connections.fetch_add(1, Ordering::SeqCst);
            let (answer, requests) = (Arc::clone(&answer), Arc::clone(&requests));
            async move {
                for place in 1.. {
                    let head = read_head(&mut stream).await;
                    if head.is_empty() {
                        return;
                    }
                    let (method, path) = request_line(&head);
                    requests
                        .lock()
                        .expect("requests")
                        .push(format!("{method} {path}"));
                    match answer(&method, &path, place) {
                        Some(bytes) => {
                            if stream.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        None => return,
                    }
                }
            }
        })
        .await
    };
    (address, connections, requests)
}

/// A gateway with one route, `web.shop.localhost`, to `app`.
async fn web_gateway(app: SocketAddr) -> SocketAddr {
    gateway(
        routes_of(vec![("web.shop.localhost", serving("web", "staging", app))]),
        None,
    )
    .await
}

fn with_length(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn one_connection_to_the_app_serves_answers_of_every_framing_and_is_left_after_one_that_ends_wrongly()
 {
    let big = "b".repeat(100_000);
    let answers = {
        let big = big.clone();
        move |method: &str, path: &str, _: usize| {
            Some(match (method, path) {
                ("HEAD", _) => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec(),
                (_, "/small") => with_length("hello"),
                (_, "/big") => with_length(&big),
                (_, "/chunked") => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    6;note=first\r\nhello \r\n5\r\nworld\r\n0\r\nX-Checksum: 1\r\n\r\n"
                    .to_vec(),
                // As many interim answers as are skipped, then the final one.
                (_, "/interim") => {
                    let mut bytes = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(7);
                    bytes.extend_from_slice(
                        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n\
                        HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
                    );
                    bytes
                }
                (_, "/cached") => {
                    b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 5\r\n\r\n"
                        .to_vec()
                }
                (_, "/nothing") => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
                // An answer with a forged one after it, for the client's next request.
                (_, "/forging") => {
                    let mut bytes = with_length("ok");
                    bytes.extend_from_slice(&with_length("forged"));
                    bytes
                }
                (_, "/big-forging") => {
                    let mut bytes = with_length(&big);
                    bytes.extend_from_slice(&with_length("forged"));
                    bytes
                }
                (_, "/closing") => {
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye".to_vec()
                }
                // Framed by its encoding; with a length as well, its connection is not trusted again.
                (_, "/te-cl") => {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5\r\nhello\r\n0\r\n\r\n"
                        .to_vec()
                }
                _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
            })
        }
    };
    let (app, connections, _) = keep_alive_app(answers).await;
    let gateway = web_gateway(app).await;
    let host = "web.shop.localhost";
    let mut sender = client(gateway).await;

    let (status, _, body) = send(&mut sender, "GET", host, "/small").await;
    assert_eq!((status, body), (200, Ok("hello".to_owned())));
    let (status, headers, body) = send(&mut sender, "GET", host, "/big").await;
    assert_eq!((status, body.map(|b| b.len())), (200, Ok(big.len())));
    assert_eq!(headers["content-length"], "100000");
    let (status, headers, body) = send(&mut sender, "GET", host, "/chunked").await;
    assert_eq!((status, body), (200, Ok("hello world".to_owned())));
    assert!(!headers.contains_key("content-length"), "{headers:?}");
    let (status, headers, body) = send(&mut sender, "HEAD", host, "/small").await;
    assert_eq!((status, body), (200, Ok(String::new())));
    assert_eq!(
        headers["content-length"], "5",
        "a HEAD answer keeps its length"
    );
    let (status, _, body) = send(&mut sender, "GET", host, "/interim").await;
    assert_eq!(
        (status, body),
        (200, Ok("final".to_owned())),
        "interim answers are skipped"
    );
    let (status, _, body) = send(&mut sender, "GET", host, "/nothing").await;
    assert_eq!((status, body), (204, Ok(String::new())));
    let (status, headers, body) = send(&mut sender, "GET", host, "/cached").await;
    assert_eq!((status, body), (304, Ok(String::new())));
    assert_eq!(headers["etag"], "\"v1\"");
    let (status, _, body) = send(&mut sender, "GET", host, "/small").await;
    assert_eq!((status, body), (200, Ok("hello".to_owned())));
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "one connection to the app served eight answers"
    );

    // Bytes after the end of an answer: the connection is not used again, and the next answer is the app's own.
    let (status, _, body) = send(&mut sender, "GET", host, "/forging").await;
    assert_eq!((status, body), (200, Ok("ok".to_owned())));
    let (status, _, body) = send(&mut sender, "GET", host, "/small").await;
    assert_eq!(
        (status, body),
        (200, Ok("hello".to_owned())),
        "not the forged answer"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    // The same after a streamed answer.
    let (status, _, body) = send(&mut sender, "GET", host, "/big-forging").await;
    assert_eq!((status, body.map(|b| b.len())), (200, Ok(big.len())));
    let (status, _, body) = send(&mut sender, "GET", host, "/small").await;
    assert_eq!(
        (status, body),
        (200, Ok("hello".to_owned())),
        "not the forged answer"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 3);

    // The app asks to close: the next request goes over a new connection.
    let (status, headers, body) = send(&mut sender, "GET", host, "/closing").await;
    assert_eq!((status, body), (200, Ok("bye".to_owned())));
    assert!(!headers.contains_key("connection"), "{headers:?}");
    let (status, _, body) = send(&mut sender, "GET", host, "/small").await;
    assert_eq!((status, body), (200, Ok("hello".to_owned())));
    assert_eq!(connections.load(Ordering::SeqCst), 4);
    let (status, headers, body) = send(&mut sender, "GET", host, "/te-cl").await;
    assert_eq!((status, body), (200, Ok("hello".to_owned())));
    assert!(!headers.contains_key("content-length"), "{headers:?}");
    let (status, _, body) = send(&mut sender, "GET", host, "/small").await;
    assert_eq!((status, body), (200, Ok("hello".to_owned())));
    assert_eq!(connections.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_request_the_app_dropped_unanswered_is_sent_again_only_when_it_is_safe() {
    // Each connection answers its first request, and closes at the second after reading it, without answering: the
    // gateway cannot tell whether the app acted on it.
    let (app, connections, requests) =
        keep_alive_app(|_: &str, path: &str, place: usize| (place == 1).then(|| with_length(path)))
            .await;
    let gateway = web_gateway(app).await;
    let host = "web.shop.localhost";
    let mut sender = client(gateway).await;

    let (status, _, body) = send(&mut sender, "GET", host, "/first").await;
    assert_eq!((status, body), (200, Ok("/first".to_owned())));
    let (status, _, body) = send(&mut sender, "GET", host, "/again").await;
    assert_eq!(
        (status, body),
        (200, Ok("/again".to_owned())),
        "a GET is sent again on a new connection"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    let (status, _, body) = send(&mut sender, "POST", host, "/order").await;
    let body = body.expect("page");
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("it closed the connection before answering"),
        "{body}"
    );
    let seen = requests.lock().expect("requests").clone();
    assert_eq!(
        seen,
        ["GET /first", "GET /again", "GET /again", "POST /order"],
        "the POST reached the app once"
    );
}

#[tokio::test]
async fn answers_that_break_http_get_a_page_that_says_how() {
    let answers = |_: &str, path: &str, _: usize| {
        Some(match path {
            "/two-lengths" => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec()
            }
            "/bad-length" => b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello".to_vec(),
            "/headers" => {
                format!("HTTP/1.1 200 OK\r\n{}\r\n", "X-A: a\r\n".repeat(101)).into_bytes()
            }
            "/interim" => b"HTTP/1.1 100 Continue\r\n\r\n".repeat(9),
            "/not-http" => b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec(),
            "/old-chunked" => {
                b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                    .to_vec()
            }
            "/switch" => {
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n"
                    .to_vec()
            }
            _ => with_length("fine"),
        })
    };
    let (app, _, _) = keep_alive_app(answers).await;
    // Announces 10 bytes, sends 3 and closes.
    let closing = raw_app(|mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .await;
        let _ = stream.shutdown().await;
    })
    .await;
    let chunks = raw_app(|mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream
            .write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello!!\r\n0\r\n\r\n",
            )
            .await;
    })
    .await;
    let gateway = gateway(
        routes_of(vec![
            ("web.shop.localhost", serving("web", "staging", app)),
            ("short.shop.localhost", serving("short", "staging", closing)),
            (
                "chunks.shop.localhost",
                serving("chunks", "staging", chunks),
            ),
        ]),
        None,
    )
    .await;
    for (path, reason) in [
        (
            "/two-lengths",
            "its answer's Content-Length is not one length",
        ),
        (
            "/bad-length",
            "its answer's Content-Length is not one length",
        ),
        ("/headers", "its answer has more than 100 headers"),
        ("/interim", "it sent more than 8 interim answers"),
        ("/not-http", "its answer is not HTTP/1.1"),
        ("/old-chunked", "its answer is not HTTP/1.1"),
        (
            "/switch",
            "switched protocols although the request asked for none",
        ),
    ] {
        let (status, body) = get(gateway, "web.shop.localhost", path).await;
        assert_eq!(status, 502, "{path}: {body}");
        assert!(body.contains(reason), "{path}: {body}");
    }
    let (status, body) = get(gateway, "short.shop.localhost", "/").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("it broke off its answer"), "{body}");
    // A chunk longer than its size: the client's answer breaks off rather than carry bytes the app did not frame.
    // Whether the head went out before the body broke or not, the client gets no whole answer.
    let mut sender = client(gateway).await;
    let request = hyper::Request::get("/")
        .header("host", "chunks.shop.localhost")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let outcome = match sender.send_request(request).await {
        Ok(response) => response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    assert!(outcome.is_err(), "{outcome:?}");
    // The gateway itself goes on serving.
    let (status, body) = get(gateway, "web.shop.localhost", "/fine").await;
    assert_eq!((status, body.as_str()), (200, "fine"));
}

#[tokio::test]
async fn a_kept_connection_the_app_closed_or_wrote_into_is_not_used_again() {
    // Closes each connection right after its first answer (without saying so in the answer).
    let closing = raw_app(|mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream.write_all(&with_length("first")).await;
        let _ = stream.shutdown().await;
    })
    .await;
    // Writes a forged answer a moment after each real one, and goes on answering on the same connection.
    let forging_connections = Arc::new(AtomicUsize::new(0));
    let forging = {
        let connections = Arc::clone(&forging_connections);
        raw_app(move |mut stream| {
            connections.fetch_add(1, Ordering::SeqCst);
            async move {
                loop {
                    let head = read_head(&mut stream).await;
                    if head.is_empty() {
                        return;
                    }
                    let (_, path) = request_line(&head);
                    if stream.write_all(&with_length(&path)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if stream.write_all(&with_length("forged")).await.is_err() {
                        return;
                    }
                }
            }
        })
        .await
    };
    let (app, _, requests) =
        keep_alive_app(|_: &str, path: &str, _: usize| Some(with_length(path))).await;
    let gateway = gateway(
        routes_of(vec![
            (
                "closing.shop.localhost",
                serving("closing", "staging", closing),
            ),
            (
                "forging.shop.localhost",
                serving("forging", "staging", forging),
            ),
            ("web.shop.localhost", serving("web", "staging", app)),
        ]),
        None,
    )
    .await;

    // The app closed the kept connection: even a POST, which is never sent twice, goes over a new one.
    let mut sender = client(gateway).await;
    let (status, _, body) = send(&mut sender, "GET", "closing.shop.localhost", "/").await;
    assert_eq!((status, body), (200, Ok("first".to_owned())));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _, body) = send(&mut sender, "POST", "closing.shop.localhost", "/").await;
    assert_eq!((status, body), (200, Ok("first".to_owned())));

    // Bytes written into the kept connection are no answer to the next request.
    let mut sender = client(gateway).await;
    let (status, _, body) = send(&mut sender, "GET", "forging.shop.localhost", "/one").await;
    assert_eq!((status, body), (200, Ok("/one".to_owned())));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _, body) = send(&mut sender, "GET", "forging.shop.localhost", "/two").await;
    assert_eq!(
        (status, body),
        (200, Ok("/two".to_owned())),
        "not the forged answer"
    );
    assert_eq!(forging_connections.load(Ordering::SeqCst), 2);

    // An absolute URI without a path reaches the app as the root with its query.
    let mut stream = TcpStream::connect(gateway).await.expect("connect");
    stream
        .write_all(
            b"GET http://web.shop.localhost?page=2 HTTP/1.1\r\nHost: web.shop.localhost\r\n\r\n",
        )
        .await
        .expect("request");
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = [0u8; 7];
    stream.read_exact(&mut body).await.expect("body");
    assert_eq!(&body, b"/?page=");
    assert_eq!(
        requests.lock().expect("requests").as_slice(),
        ["GET /?page=2"]
    );
}

#[tokio::test]
async fn a_client_connection_holds_one_connection_to_its_app_at_a_time() {
    // Reads each request's body (by its length) and answers with the request line; counts the connections it
    // accepted and those still open.
    let (accepted, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let app = {
        let (accepted, open) = (Arc::clone(&accepted), Arc::clone(&open));
        raw_app(move |mut stream| {
            accepted.fetch_add(1, Ordering::SeqCst);
            open.fetch_add(1, Ordering::SeqCst);
            let open = Arc::clone(&open);
            async move {
                loop {
                    let head = read_head(&mut stream).await;
                    if head.is_empty() {
                        break;
                    }
                    let length: usize = header_in(&head, "content-length")
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0u8; length];
                    if stream.read_exact(&mut body).await.is_err() {
                        break;
                    }
                    let (method, path) = request_line(&head);
                    let answer = with_length(&format!("{method} {path} {}", body.len()));
                    if stream.write_all(&answer).await.is_err() {
                        break;
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
            }
        })
        .await
    };
    let gateway = web_gateway(app).await;
    let mut sender = client(gateway).await;
    for (method, path, body) in [
        ("GET", "/a", ""),
        ("POST", "/b", "x=1"),
        ("POST", "/c", "x=2"),
        ("GET", "/d", ""),
        ("GET", "/e", ""),
        ("POST", "/f", "x=3"),
    ] {
        sender.ready().await.expect("kept");
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "web.shop.localhost")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let response = sender.send_request(request).await.expect("answer");
        let answer = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(answer, format!("{method} {path} {}", body.len()).as_bytes());
    }
    // A request of the other kind than the last closed the connection the last one used, and opened its own; one of
    // a kind like the last used the same.
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
    for _ in 0..100 {
        if open.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        open.load(Ordering::SeqCst),
        1,
        "one connection to the app is left open"
    );
}

#[tokio::test]
async fn an_answer_head_that_comes_a_byte_at_a_time_is_read() {
    let dripping = raw_app(|mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream.set_nodelay(true);
        let answer = b"HTTP/1.1 200 OK\r\nX-Slow: yes\r\nContent-Length: 4\r\n\r\ndrip";
        for byte in answer {
            if stream.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    })
    .await;
    let gateway = gateway(
        routes_of(vec![(
            "drip.shop.localhost",
            serving("drip", "staging", dripping),
        )]),
        None,
    )
    .await;
    let mut sender = client(gateway).await;
    let (status, headers, body) = send(&mut sender, "GET", "drip.shop.localhost", "/").await;
    assert_eq!((status, body), (200, Ok("drip".to_owned())));
    assert_eq!(headers["x-slow"], "yes");
}
