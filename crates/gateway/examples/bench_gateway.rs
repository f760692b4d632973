//! The gateway as the daemon runs it, for `scripts/bench-gateway`: plain HTTP, one route from HOST to the
//! backend — on this machine's loopback, or with NETNS on the loopback of that network namespace, reached through
//! sockets made there, as the daemon reaches an isolated environment's apps.
//! Usage: `bench_gateway LISTEN_PORT HOST BACKEND_PORT [NETNS]`.

use std::net::SocketAddr;
use std::sync::Arc;

use preview_gateway::{Backend, Network, Proxy, Route, RouteState, RouteTable, Routes};
use preview_isolation::Netns;

/// The allocator the `preview` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A network namespace as the gateway reaches it (as the local runtime does).
#[derive(Debug)]
struct Namespace(Netns);

impl Network for Namespace {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn socket(&self) -> std::io::Result<tokio::net::TcpSocket> {
        self.0.tcp_socket()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench_gateway LISTEN_PORT HOST BACKEND_PORT [NETNS]";
    let port: u16 = args.next().ok_or(usage)?.parse()?;
    let host = args.next().ok_or(usage)?;
    let backend: u16 = args.next().ok_or(usage)?.parse()?;
    let network = match args.next() {
        Some(name) => Some(Arc::new(Namespace(Netns::open(&name)?)) as Arc<dyn Network>),
        None => None,
    };
    let mut table = RouteTable::default();
    table.insert(
        &host,
        Route {
            project: "bench".into(),
            environment: "bench".into(),
            service: "app".into(),
            state: RouteState::Serving,
            backends: vec![Backend {
                address: SocketAddr::from(([127, 0, 0, 1], backend)),
                network: network.clone(),
            }],
            access: None,
            last_request: Arc::default(),
        },
    );
    let routes = Arc::new(Routes::default());
    routes.swap(table);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let inside = network
        .map(|n| format!(" in {}", n.name()))
        .unwrap_or_default();
    println!("gateway listening on 127.0.0.1:{port}, {host} → 127.0.0.1:{backend}{inside}");
    preview_gateway::serve(listener, Arc::new(Proxy::new(routes)), None).await;
    Ok(())
}
