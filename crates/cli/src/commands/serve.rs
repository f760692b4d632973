//! `preview serve`: runs the daemon in the foreground until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use preview_deploy::Fault;
use preview_server::{
    AcmeConfig, Issuer, LETS_ENCRYPT, LocalOptions, PortRange, RuntimeChoice, ServeConfig,
};

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
    pub issuer: String,
    pub acme_directory: Option<String>,
    pub acme_email: Option<String>,
    pub acme_root: Option<PathBuf>,
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
    let issuer = issuer(&args)?;
    let runtime = match args.runtime.split_once(':') {
        None if args.runtime == "local" => RuntimeChoice::Local(LocalOptions {
            http: address("http", &args.http)?,
            https: address("https", &args.https)?,
            ports: PortRange::parse(&args.ports)
                .map_err(|e| Failure::invalid(format!("--ports: {e}")))?,
            build_cache: args.build_cache,
            health_timeout: Duration::from_secs(args.health_timeout_secs.max(1)),
            drain: Duration::from_millis(500),
            issuer,
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

/// `--issuer` and the `--acme-*` flags, checked before the daemon starts.
fn issuer(args: &ServeArgs) -> Result<Issuer, Failure> {
    match args.issuer.as_str() {
        "local" => {
            let given: Vec<&str> = [
                ("--acme-directory", args.acme_directory.is_some()),
                ("--acme-email", args.acme_email.is_some()),
                ("--acme-root", args.acme_root.is_some()),
            ]
            .into_iter()
            .filter_map(|(flag, given)| given.then_some(flag))
            .collect();
            match given.is_empty() {
                true => Ok(Issuer::Local),
                false => Err(Failure::invalid(format!(
                    "{} only apply with --issuer acme",
                    given.join(", ")
                ))),
            }
        }
        "acme" => {
            let directory = args
                .acme_directory
                .clone()
                .unwrap_or_else(|| LETS_ENCRYPT.to_owned());
            if !directory.starts_with("https://") {
                return Err(Failure::invalid(format!(
                    "--acme-directory: `{directory}` is not an https:// URL; an ACME CA's directory is served over HTTPS"
                )));
            }
            if let Some(email) = &args.acme_email {
                let (user, domain) = email.split_once('@').unwrap_or_default();
                if user.is_empty() || !domain.contains('.') || email.contains(char::is_whitespace) {
                    return Err(Failure::invalid(format!(
                        "--acme-email: `{email}` is not an email address"
                    )));
                }
            }
            if let Some(root) = &args.acme_root {
                let text = std::fs::read_to_string(root).map_err(|e| {
                    Failure::invalid(format!("--acme-root: cannot read {}: {e}", root.display()))
                })?;
                if !text.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(Failure::invalid(format!(
                        "--acme-root: {} holds no PEM certificate",
                        root.display()
                    )));
                }
            }
            Ok(Issuer::Acme(AcmeConfig {
                directory,
                email: args.acme_email.clone(),
                root: args.acme_root.clone(),
            }))
        }
        other => Err(Failure::invalid(format!(
            "--issuer: `{other}` is not an issuer; use `local` or `acme`"
        ))),
    }
}
