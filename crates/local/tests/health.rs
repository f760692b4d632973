//! Health probes against real sockets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use preview_local::{Probe, probe_once, wait_until_healthy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server that answers every request with `status`, after `delay`.
async fn server(status: &'static str, delay: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 1024];
                let _ = stream.read(&mut buffer).await;
                tokio::time::sleep(delay).await;
                let _ = stream
                    .write_all(
                        format!(
                            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    address
}

fn http(path: &str) -> Probe {
    Probe::Http {
        path: path.to_owned(),
    }
}

const SHORT: Duration = Duration::from_millis(300);

#[tokio::test]
async fn http_probes_accept_2xx_and_3xx_only() {
    assert_eq!(
        probe_once(
            &http("/healthz"),
            server("200 OK", Duration::ZERO).await,
            SHORT
        )
        .await,
        Ok(())
    );
    assert_eq!(
        probe_once(&http("/"), server("302 Found", Duration::ZERO).await, SHORT).await,
        Ok(())
    );
    let failing = server("503 Service Unavailable", Duration::ZERO).await;
    assert_eq!(
        probe_once(&http("/healthz"), failing, SHORT).await,
        Err(format!("GET /healthz on {failing} answered 503"))
    );
}

#[tokio::test]
async fn slow_and_closed_servers_fail_with_the_reason() {
    let slow = server("200 OK", Duration::from_secs(5)).await;
    assert_eq!(
        probe_once(&http("/"), slow, SHORT).await,
        Err(format!("no answer from {slow} within 300 ms"))
    );
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let error = probe_once(&Probe::Tcp, closed, SHORT)
        .await
        .expect_err("nothing listens");
    assert!(
        error.starts_with(&format!("cannot connect to {closed}")),
        "{error}"
    );
}

#[tokio::test]
async fn tcp_probes_need_only_a_listener() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    assert_eq!(
        probe_once(&Probe::Tcp, listener.local_addr().expect("address"), SHORT).await,
        Ok(())
    );
}

#[tokio::test]
async fn waiting_succeeds_once_the_service_comes_up() {
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    // The service starts listening a little later on the same port.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .expect("rebind");
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer).await;
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    wait_until_healthy(
        None,
        &http("/ready"),
        address,
        Duration::from_millis(50),
        SHORT,
        deadline,
        &|| None,
    )
    .await
    .expect("becomes healthy");
    let never = server("500 Internal Server Error", Duration::ZERO).await;
    let error = wait_until_healthy(
        None,
        &http("/"),
        never,
        Duration::from_millis(50),
        SHORT,
        Instant::now() + Duration::from_millis(200),
        &|| None,
    )
    .await
    .expect_err("never healthy");
    assert_eq!(
        error,
        format!("not healthy in time: GET / on {never} answered 500")
    );
}
