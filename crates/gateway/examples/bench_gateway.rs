//! The gateway as the daemon runs it, for `scripts/bench-gateway`: plain HTTP, one route from HOST to the
//! backend. Usage: `bench_gateway LISTEN_PORT HOST BACKEND_PORT`.

use std::net::SocketAddr;
use std::sync::Arc;

use preview_gateway::{Backend, Proxy, Route, RouteState, RouteTable, Routes};

/// The allocator the `preview` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench_gateway LISTEN_PORT HOST BACKEND_PORT";
    let port: u16 = args.next().ok_or(usage)?.parse()?;
    let host = args.next().ok_or(usage)?;
    let backend: u16 = args.next().ok_or(usage)?.parse()?;
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
                network: None,
            }],
            access: None,
        },
    );
    let routes = Arc::new(Routes::default());
    routes.swap(table);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("gateway listening on 127.0.0.1:{port}, {host} → 127.0.0.1:{backend}");
    preview_gateway::serve(listener, Arc::new(Proxy::new(routes)), None).await;
    Ok(())
}
