//! The real daemon's gateway under a flood of connections: 10,000 clients that connect and say nothing take no
//! more than the gateway's share of the daemon's descriptors, its API keeps answering meanwhile, and the gateway
//! serves again once they are gone.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use preview_testing::TempDir;

/// The daemon's descriptors, as a parent commonly starts it (soft limit 1024) and as far as it may raise them
/// (the hard limit): few enough that 10,000 connections would take them all.
const OPEN_FILES: (u64, u64) = (1024, 4096);

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the daemon's descriptors")
        .count()
}

#[test]
fn a_flood_of_connections_takes_neither_the_daemons_descriptors_nor_its_api() {
    let dir = TempDir::new("gateway-flood");
    let data = dir.path().join("data");
    let _accounts = support::ReleaseAccounts(data.clone());
    let daemon = support::local_daemon_with_open_files(&data, "27000-27999", OPEN_FILES);
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{}/comm", daemon.pid()))
            .expect("comm")
            .trim(),
        "preview",
        "prlimit runs the daemon itself"
    );
    let gateway: SocketAddr = support::gateway_http(&data).parse().expect("address");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // 10,000 attempts at once; those the kernel does not take (the backlog is full) give up after a while.
    let flood: Vec<tokio::net::TcpStream> = runtime.block_on(async {
        let mut attempts = tokio::task::JoinSet::new();
        for _ in 0..10_000 {
            attempts.spawn(async move {
                tokio::time::timeout(
                    Duration::from_secs(3),
                    tokio::net::TcpStream::connect(gateway),
                )
                .await
                .ok()?
                .ok()
            });
        }
        let mut connected = Vec::new();
        while let Some(attempt) = attempts.join_next().await {
            connected.extend(attempt.expect("attempt"));
        }
        connected
    });
    assert!(flood.len() > 500, "{} connections", flood.len());
    std::thread::sleep(Duration::from_secs(1));

    // The gateway took its share of the descriptors the daemon raised its limit to, no more: a quarter, one per
    // client connection and one for the app behind each. (A share of the limit it started with would be 256.)
    let accepted = preview_testing::accepted_connections(daemon.pid(), gateway.port());
    // Give or take a few being handed over or let go while the tables are read.
    let share = (OPEN_FILES.1 / 4) as usize;
    assert!(
        (share * 9 / 10..=share + share / 50).contains(&accepted),
        "{accepted} connections accepted; the share is {share}"
    );
    let descriptors = open_descriptors(daemon.pid());
    assert!(
        descriptors < (OPEN_FILES.1 as usize) * 3 / 4,
        "the daemon holds {descriptors} descriptors of {}",
        OPEN_FILES.1
    );
    // The API answers while the flood is held.
    let asked = Instant::now();
    let (status, body) = daemon.http("GET", "/v1/projects", Some(&daemon.token), None, b"");
    assert_eq!(status, 200, "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the API took {:?}",
        asked.elapsed()
    );

    runtime.block_on(async move { drop(flood) });
    // Once the flood is gone, the gateway serves again: 404 for a host no environment has.
    support::wait_for(
        "the gateway to answer again",
        Duration::from_secs(30),
        || support::request(&gateway.to_string(), "GET", "nothing.localhost", "/", "").0 == 404,
    );
    daemon.stop();
}
