//! The gateway as the daemon runs it, for `scripts/bench-gateway`: routes from HOST (and, with `--routes N`, from
//! `env-0.DOMAIN` … `env-<N-1>.DOMAIN`, DOMAIN being HOST without its first label, as N environments' routes) to
//! the backend — on this machine's loopback, or with `--netns NAME` on the loopback of that network namespace,
//! reached through sockets made there, as the daemon reaches an isolated environment's apps. Plain HTTP, or HTTPS
//! with `--tls CERT KEY` (PEM files; the certificate is served for every name, and to clients that name none). Metrics are
//! recorded for every request, as in the daemon.
//! Usage: `bench_gateway LISTEN_PORT HOST BACKEND_PORT [--netns NAME] [--routes N] [--tls CERT KEY]`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use preview_gateway::{
    Backend, Certificates, Network, Proxy, Route, RouteState, RouteTable, Routes,
};
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
    let usage = "usage: bench_gateway LISTEN_PORT HOST BACKEND_PORT [--netns NAME] [--routes N] [--tls CERT KEY]";
    let port: u16 = args.next().ok_or(usage)?.parse()?;
    let host = args.next().ok_or(usage)?;
    let backend: u16 = args.next().ok_or(usage)?.parse()?;
    let (mut network, mut extra_routes, mut tls) = (None, 0usize, None);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--netns" => {
                let name = args.next().ok_or(usage)?;
                network = Some(Arc::new(Namespace(Netns::open(&name)?)) as Arc<dyn Network>);
            }
            "--routes" => extra_routes = args.next().ok_or(usage)?.parse()?,
            "--tls" => {
                let chain = std::fs::read_to_string(args.next().ok_or(usage)?)?;
                let key = std::fs::read_to_string(args.next().ok_or(usage)?)?;
                tls = Some((chain, key));
            }
            _ => return Err(usage.into()),
        }
    }
    let domain = host.split_once('.').map_or(host.as_str(), |(_, d)| d);
    let route = |environment: String| Route {
        project: "bench".into(),
        environment,
        service: "app".into(),
        state: RouteState::Serving,
        backends: vec![Backend {
            address: SocketAddr::from(([127, 0, 0, 1], backend)),
            network: network.clone(),
        }],
        access: None,
        last_request: Arc::default(),
        series: None,
    };
    let mut table = RouteTable::default();
    table.insert(&host, route("bench".into()));
    for index in 0..extra_routes {
        table.insert(
            &format!("env-{index}.{domain}"),
            route(format!("env-{index}")),
        );
    }
    let routes = Arc::new(Routes::default());
    routes.swap(table);
    let tls = match tls {
        Some((chain, key)) => {
            let certificates = Arc::new(Certificates::default());
            let key = Certificates::certified_key(&chain, &key)?;
            certificates.swap(HashMap::from([
                (format!("*.{domain}"), Arc::clone(&key)),
                (host.clone(), Arc::clone(&key)),
            ]));
            // wrk connects to 127.0.0.1 and names no server: like nginx's default server, the one certificate.
            certificates.set_fallback(Arc::new(move |_| Some(Arc::clone(&key))));
            Some(preview_gateway::tls_config(certificates)?)
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let inside = network
        .map(|n| format!(" in {}", n.name()))
        .unwrap_or_default();
    println!(
        "gateway listening on 127.0.0.1:{port} ({}), {host} and {extra_routes} more routes → 127.0.0.1:{backend}{inside}",
        if tls.is_some() { "HTTPS" } else { "HTTP" }
    );
    preview_gateway::serve(listener, Arc::new(Proxy::new(routes)), tls).await;
    Ok(())
}
