//! `preview serve`: runs the daemon in the foreground until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use preview_deploy::Fault;
use preview_server::{LocalOptions, PortRange, RuntimeChoice, ServeConfig};

use crate::exit::Failure;

pub struct ServeArgs {
    pub data_dir: PathBuf,
    pub store: Option<String>,
    pub listen: String,
    pub runtime: String,
    pub http: String,
    pub https: String,
    pub ports: String,
    pub build_cache: Option<PathBuf>,
    pub health_timeout_secs: u64,
    pub fault: Option<String>,
    pub step_timeout_secs: u64,
    pub lease_ttl_secs: u64,
}

pub fn run(args: ServeArgs) -> Result<(), Failure> {
    let listen: SocketAddr = args.listen.parse().map_err(|_| {
        Failure::invalid(format!(
            "--listen: `{}` is not an address; write IP:PORT, e.g. 127.0.0.1:7670",
            args.listen
        ))
    })?;
    let fault = args
        .fault
        .as_deref()
        .map(Fault::parse)
        .transpose()
        .map_err(|e| Failure::invalid(format!("--fault: {e}")))?;
    let address = |flag: &str, text: &str| -> Result<SocketAddr, Failure> {
        text.parse().map_err(|_| {
            Failure::invalid(format!(
                "--{flag}: `{text}` is not an address; write IP:PORT, e.g. 127.0.0.1:8443"
            ))
        })
    };
    let runtime = match args.runtime.split_once(':') {
        None if args.runtime == "local" => RuntimeChoice::Local(LocalOptions {
            http: address("http", &args.http)?,
            https: address("https", &args.https)?,
            ports: PortRange::parse(&args.ports)
                .map_err(|e| Failure::invalid(format!("--ports: {e}")))?,
            build_cache: args.build_cache,
            health_timeout: Duration::from_secs(args.health_timeout_secs.max(1)),
            drain: Duration::from_millis(500),
        }),
        None if args.runtime == "recording" => RuntimeChoice::Recording { dir: None, fault },
        Some(("recording", dir)) => RuntimeChoice::Recording {
            dir: Some(PathBuf::from(dir)),
            fault,
        },
        _ => {
            return Err(Failure::invalid(format!(
                "--runtime: `{}` is not available; use `local`, `recording` or `recording:DIR`",
                args.runtime
            )));
        }
    };
    let config = ServeConfig {
        data_dir: args.data_dir,
        store: args.store,
        listen,
        runtime,
        step_timeout: Duration::from_secs(args.step_timeout_secs.max(1)),
        lease_ttl: Duration::from_secs(args.lease_ttl_secs.max(1)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(format!("cannot start the async runtime: {e}")))?;
    runtime
        .block_on(preview_server::serve(config))
        .map_err(Failure::invalid)
}
