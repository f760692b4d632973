//! `preview serve`: runs the daemon in the foreground until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use preview_deploy::Fault;
use preview_server::{
    AcmeConfig, GatewayConfig, IdRange, IpRange, Issuer, LETS_ENCRYPT, LocalOptions, LogFormat,
    PortRange, RuntimeChoice, ServeConfig, Subnet, init_logging,
};

use crate::exit::Failure;

/// `preview serve`'s flags.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// A PostgreSQL store (postgres://…) shared by several daemons; default: SQLite in the data directory.
    #[arg(long, value_name = "URL", env = "PREVIEW_STORE")]
    pub store: Option<String>,
    /// Address to serve the API on.
    #[arg(
        long,
        default_value = "127.0.0.1:7670",
        value_name = "IP:PORT",
        env = "PREVIEW_LISTEN"
    )]
    pub listen: String,
    /// Serve `/metrics` (Prometheus) on this address of its own, without the API token; without it, `/metrics`
    /// is on the API's address and needs the token.
    #[arg(long, value_name = "IP:PORT", env = "PREVIEW_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Where environments live: `local` (apps as supervised processes behind the built-in gateway),
    /// `kubernetes` (a namespace per environment on the cluster `--kubeconfig` names), `recording` (resources
    /// recorded as files, no processes) or `recording:DIR`.
    #[arg(long, default_value = "local", env = "PREVIEW_RUNTIME")]
    pub runtime: String,
    /// Where the gateway serves plain HTTP (local runtime).
    #[arg(
        long,
        default_value = "127.0.0.1:8080",
        value_name = "IP:PORT",
        env = "PREVIEW_HTTP"
    )]
    pub http: String,
    /// Where the gateway serves HTTPS, with certificates from `--issuer` (local runtime).
    #[arg(
        long,
        default_value = "127.0.0.1:8443",
        value_name = "IP:PORT",
        env = "PREVIEW_HTTPS"
    )]
    pub https: String,
    /// The ports the local runtime gives environments, 32 per environment.
    #[arg(
        long,
        default_value = "20000-29999",
        value_name = "FIRST-LAST",
        env = "PREVIEW_PORTS"
    )]
    pub ports: String,
    /// A directory kept between builds, for compiler caches (`PREVIEW_BUILD_CACHE` in build commands);
    /// default: `build-cache` in the data directory.
    #[arg(long, value_name = "DIR")]
    pub build_cache: Option<PathBuf>,
    /// The user and group ids environments' apps and builders run as, one each (the daemon as root only).
    #[arg(long, default_value = "50000-59999", value_name = "FIRST-LAST")]
    pub users: String,
    /// The addresses of environments' network namespaces, a /30 each, and the network their traffic to the
    /// internet is translated from (the daemon as root only).
    #[arg(long, default_value = "10.213.0.0/16", value_name = "ADDRESS/PREFIX")]
    pub network: String,
    /// Private networks (ADDRESS/PREFIX, comma-separated) environments may reach; all private, shared and
    /// link-local addresses (cloud metadata services included) are closed to them otherwise (the daemon as root
    /// only).
    #[arg(long, value_name = "ADDRESS/PREFIX,…", value_delimiter = ',')]
    pub allow_network: Vec<String>,
    /// Directories builds may run tools from although they lie in a private home, comma-separated; each is
    /// visible to builds read-only, nothing around it [default: the daemon user's ~/.cargo/bin and ~/.rustup]
    #[arg(long, value_name = "DIR,…", value_delimiter = ',')]
    pub tools: Option<Vec<PathBuf>>,
    /// Seconds a new version of an app may take to become healthy before the deployment rolls back.
    #[arg(long, default_value_t = 60)]
    pub health_timeout: u64,
    /// Seconds the previous version of an app keeps serving the requests it has after the new one took over,
    /// before it is stopped (e.g. 0.5).
    #[arg(long, default_value_t = 0.5, value_name = "SECONDS")]
    pub drain: f64,
    #[command(flatten)]
    pub issuer: IssuerFlags,
    #[command(flatten)]
    pub kubernetes: KubernetesFlags,
    /// Proxies in front of the gateway (ADDRESS[/PREFIX], comma-separated) whose X-Forwarded-For, -Proto, -Host,
    /// Forwarded and X-Real-IP are kept; from any other client they are replaced or removed.
    #[arg(long, value_name = "ADDRESS/PREFIX,…", value_delimiter = ',')]
    pub trusted_proxy: Vec<String>,
    /// Seconds browsers are told to reach protected previews over HTTPS only (Strict-Transport-Security); none
    /// by default.
    #[arg(long, value_name = "SECONDS")]
    pub hsts: Option<u64>,
    /// Seconds a request for a sleeping preview (see `previews.idle_stop`) waits for it to wake; past them, a
    /// browser gets a page that reloads itself and other clients a 503, both with Retry-After.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub wake_timeout: f64,
    /// For tests: make the runtime fail (`fail@N`, or from then on: `fail-from@N`), hang (`hang@N`), take three
    /// seconds (`slow@N`) or stop dead (`stop-before@N`, `stop-after@N`, `stop-verify@1`) at its N-th operation.
    #[arg(long, hide = true)]
    pub fault: Option<String>,
    /// Seconds one step may take before it fails and the deployment rolls back.
    #[arg(long, default_value_t = 600)]
    pub step_timeout: u64,
    /// Seconds a deployment's lease lasts without renewal; another daemon sharing the store takes over
    /// a dead daemon's deployments after that.
    #[arg(long, default_value_t = 30, hide = true)]
    pub lease_ttl: u64,
    /// Start the daemon in the background and return once it answers (its log goes to `daemon.log` in the data
    /// directory).
    #[arg(long)]
    pub background: bool,
    /// How the daemon writes its log on stderr: `text`, or `json` (one object per line, with the ids of the
    /// deployment, step and API request each line belongs to). `RUST_LOG` chooses what is written (default
    /// `info`; e.g. `RUST_LOG=debug` or `RUST_LOG=preview_deploy=debug`).
    #[arg(
        long,
        default_value = "text",
        value_name = "text|json",
        env = "PREVIEW_LOG_FORMAT"
    )]
    pub log_format: String,
}

/// `preview serve --runtime kubernetes`: the cluster and how environments are rendered on it.
#[derive(clap::Args)]
pub struct KubernetesFlags {
    /// The kubeconfig file of the cluster [default: $KUBECONFIG, ~/.kube/config, or the service account of the
    /// pod the daemon runs in]
    #[arg(long, value_name = "FILE", env = "PREVIEW_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig [default: its current context]
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace where the runtime keeps its inventory of what each environment made.
    #[arg(long, default_value = "preview-system", value_name = "NAME")]
    pub inventory_namespace: String,
    /// The namespace the ingress controller runs in: the only one whose pods may reach environments' pods from
    /// outside their namespace.
    #[arg(long, default_value = "ingress-nginx", value_name = "NAME")]
    pub ingress_namespace: String,
    /// Routes as `ingress` (networking.k8s.io/v1 Ingress) or `gateway:NAMESPACE/NAME` (Gateway API HTTPRoutes
    /// attached to that Gateway).
    #[arg(
        long,
        default_value = "ingress",
        value_name = "ingress|gateway:NS/NAME"
    )]
    pub routes: String,
    /// The IngressClass of environments' Ingresses [default: the cluster's default class]
    #[arg(long, value_name = "NAME")]
    pub ingress_class: Option<String>,
    /// Certificates from cert-manager through this ClusterIssuer (HTTP-01); without it, TLS Secrets are issued
    /// by the local CA (`preview ca export`).
    #[arg(long, value_name = "NAME")]
    pub cert_manager_issuer: Option<String>,
    /// With `--cert-manager-issuer`: the ClusterIssuer (DNS-01) of wildcard hostnames.
    #[arg(long, value_name = "NAME")]
    pub cert_manager_wildcard_issuer: Option<String>,
    /// Addresses (ADDRESS/PREFIX, comma-separated) environments may not reach besides the private, shared,
    /// link-local and metadata ranges closed by default: the cluster's public node, API server and load balancer
    /// addresses, or pod and service ranges outside the private ones.
    #[arg(long, value_name = "ADDRESS/PREFIX,…", value_delimiter = ',')]
    pub egress_except: Vec<String>,
    /// The namespace the cluster's DNS runs in, which environments may reach on port 53.
    #[arg(long, default_value = "kube-system", value_name = "NAME")]
    pub dns_namespace: String,
    /// Addresses (ADDRESS/PREFIX, comma-separated) of DNS caches on the nodes, which environments may reach on port
    /// 53 too: NodeLocal DNSCache's 169.254.20.10/32.
    #[arg(long, value_name = "ADDRESS/PREFIX,…", value_delimiter = ',')]
    pub dns_address: Vec<String>,
    /// Seconds a resource's objects may take to be ready (Deployments rolled out, Jobs complete) before the
    /// deployment rolls back.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub ready_timeout: u64,
}

impl KubernetesFlags {
    fn options(&self) -> Result<preview_kubernetes::KubernetesOptions, Failure> {
        use preview_manifests::{Certificates, RouteApi, Settings};
        let routes = match self.routes.split_once(':') {
            None if self.routes == "ingress" => RouteApi::Ingress {
                class: self.ingress_class.clone(),
            },
            Some(("gateway", place)) => match place.split_once('/') {
                Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => {
                    RouteApi::Gateway {
                        name: name.to_owned(),
                        namespace: namespace.to_owned(),
                    }
                }
                _ => {
                    return Err(Failure::invalid(format!(
                        "--routes: `{}` names no Gateway; write gateway:NAMESPACE/NAME",
                        self.routes
                    )));
                }
            },
            _ => {
                return Err(Failure::invalid(format!(
                    "--routes: `{}` is not `ingress` or `gateway:NAMESPACE/NAME`",
                    self.routes
                )));
            }
        };
        let certificates = match (
            &self.cert_manager_issuer,
            &self.cert_manager_wildcard_issuer,
        ) {
            (Some(issuer), wildcard) => Certificates::CertManager {
                issuer: issuer.clone(),
                wildcard_issuer: wildcard.clone(),
            },
            (None, None) => Certificates::LocalCa,
            (None, Some(_)) => {
                return Err(Failure::invalid(
                    "--cert-manager-wildcard-issuer needs --cert-manager-issuer too".to_owned(),
                ));
            }
        };
        Ok(preview_kubernetes::KubernetesOptions {
            cluster: preview_kubernetes::ClusterConfig {
                kubeconfig: self.kubeconfig.clone(),
                inline: None,
                context: self.context.clone(),
            },
            settings: Settings {
                egress_except: {
                    let mut except = Settings::default().egress_except;
                    for cidr in &self.egress_except {
                        if !is_cidr(cidr) {
                            return Err(Failure::invalid(format!(
                                "--egress-except: `{cidr}` is not an address range; write ADDRESS/PREFIX, e.g. 34.118.224.0/20"
                            )));
                        }
                        except.push(cidr.clone());
                    }
                    except
                },
                dns_namespace: self.dns_namespace.clone(),
                dns_addresses: {
                    if let Some(bad) = self.dns_address.iter().find(|c| !is_cidr(c)) {
                        return Err(Failure::invalid(format!(
                            "--dns-address: `{bad}` is not an address range; write ADDRESS/PREFIX, e.g. 169.254.20.10/32"
                        )));
                    }
                    self.dns_address.clone()
                },
                ingress_namespace: self.ingress_namespace.clone(),
                routes,
                certificates,
                ..Settings::default()
            },
            inventory_namespace: self.inventory_namespace.clone(),
            ready_timeout: Duration::from_secs(self.ready_timeout.max(1)),
            ..preview_kubernetes::KubernetesOptions::default()
        })
    }
}

/// `ADDRESS/PREFIX`, IPv4 or IPv6, the prefix no longer than the address.
fn is_cidr(text: &str) -> bool {
    let Some((address, prefix)) = text.split_once('/') else {
        return false;
    };
    match (address.parse::<std::net::IpAddr>(), prefix.parse::<u8>()) {
        (Ok(std::net::IpAddr::V4(_)), Ok(prefix)) => prefix <= 32,
        (Ok(std::net::IpAddr::V6(_)), Ok(prefix)) => prefix <= 128,
        _ => false,
    }
}

/// `preview serve`'s choice of certificate issuer.
#[derive(clap::Args)]
pub struct IssuerFlags {
    /// Who issues environments' certificates (local runtime): `local`, the local CA (`preview ca export`),
    /// or `acme`, an ACME CA such as Let's Encrypt; an ACME CA checks each hostname over plain HTTP on port 80,
    /// which must reach the `--http` listener.
    #[arg(long, default_value = "local", value_name = "local|acme")]
    pub issuer: String,
    /// With `--issuer acme`: the ACME CA's directory URL [default: Let's Encrypt's]
    #[arg(long, value_name = "URL")]
    pub acme_directory: Option<String>,
    /// With `--issuer acme`: an email address the CA may write to about the certificates.
    #[arg(long, value_name = "EMAIL")]
    pub acme_email: Option<String>,
    /// With `--issuer acme`: a PEM file with the root that signs the CA's own HTTPS certificate (a private
    /// CA); by default the system's roots are trusted.
    #[arg(long, value_name = "FILE")]
    pub acme_root: Option<PathBuf>,
}

/// `preview serve --background`: the same command without the flag, in a process group of its own with its output in
/// `daemon.log`; returns once it has published its address (or says why it did not start).
fn start_in_background(data_dir: &std::path::Path) -> Result<(), Failure> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(data_dir).map_err(|e| {
        Failure::invalid(format!(
            "cannot create the data directory {}: {e}",
            data_dir.display()
        ))
    })?;
    let log_path = data_dir.join("daemon.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(|e| Failure::invalid(format!("cannot open {}: {e}", log_path.display())))?;
    let config = preview_server::client_config_path(data_dir);
    let before = std::fs::metadata(&config).map(|m| m.ino()).ok();
    let program = std::env::current_exe()
        .map_err(|e| Failure::internal(format!("cannot find this program: {e}")))?;
    let args: Vec<std::ffi::OsString> = std::env::args_os()
        .skip(1)
        .filter(|arg| arg != "--background")
        .collect();
    let mut child = std::process::Command::new(program)
        .args(args)
        .env("PREVIEW_HOME", data_dir)
        .stdin(std::process::Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(|e| Failure::internal(e.to_string()))?,
        )
        .stderr(log)
        // Not in the terminal's process group: Ctrl-C in the shell that started it does not stop it.
        .process_group(0)
        .spawn()
        .map_err(|e| Failure::internal(format!("cannot start the daemon: {e}")))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let published = std::fs::metadata(&config).is_ok_and(|m| Some(m.ino()) != before);
        if published
            && let Ok(text) = std::fs::read(&config)
            && let Ok(parsed) = serde_json::from_slice::<serde_json::Value>(&text)
        {
            println!(
                "preview daemon started in the background (pid {}), API on {}; its log is {}; stop it with `kill {}`",
                child.id(),
                parsed["address"].as_str().unwrap_or("?"),
                log_path.display(),
                child.id()
            );
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(Failure::invalid(format!(
                "the daemon did not start ({status}); the end of {}:\n{}",
                log_path.display(),
                tail.join("\n")
            )));
        }
        if std::time::Instant::now() > deadline {
            return Err(Failure::invalid(format!(
                "the daemon (pid {}) did not answer within 5 minutes; see {}",
                child.id(),
                log_path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn run(data_dir: PathBuf, args: ServeArgs) -> Result<(), Failure> {
    if args.background {
        return start_in_background(&data_dir);
    }
    let log_format = LogFormat::parse(&args.log_format)
        .map_err(|e| Failure::invalid(format!("--log-format: {e}")))?;
    init_logging(log_format).map_err(Failure::invalid)?;
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
    let issuer = issuer(&args.issuer)?;
    let runtime = match args.runtime.split_once(':') {
        None if args.runtime == "local" => RuntimeChoice::Local(Box::new(LocalOptions {
            http: address("http", &args.http)?,
            https: address("https", &args.https)?,
            ports: PortRange::parse(&args.ports)
                .map_err(|e| Failure::invalid(format!("--ports: {e}")))?,
            build_cache: args.build_cache,
            health_timeout: Duration::from_secs(args.health_timeout.max(1)),
            drain: Duration::try_from_secs_f64(args.drain).map_err(|_| {
                Failure::invalid(format!(
                    "--drain: `{}` is not a number of seconds; write e.g. 0.5",
                    args.drain
                ))
            })?,
            issuer,
            users: IdRange::parse(&args.users)
                .map_err(|e| Failure::invalid(format!("--users: {e}")))?,
            subnet: Subnet::parse(&args.network)
                .map_err(|e| Failure::invalid(format!("--network: {e}")))?,
            allowed_networks: args
                .allow_network
                .iter()
                .map(|n| {
                    Subnet::parse(n).map_err(|e| Failure::invalid(format!("--allow-network: {e}")))
                })
                .collect::<Result<_, _>>()?,
            tools: args.tools,
            gateway: GatewayConfig {
                trusted_proxies: args
                    .trusted_proxy
                    .iter()
                    .map(|p| {
                        IpRange::parse(p)
                            .map_err(|e| Failure::invalid(format!("--trusted-proxy: {e}")))
                    })
                    .collect::<Result<_, _>>()?,
                hsts: args.hsts.map(Duration::from_secs),
                wake_timeout: Duration::try_from_secs_f64(args.wake_timeout).map_err(|_| {
                    Failure::invalid(format!(
                        "--wake-timeout: `{}` is not a number of seconds; write e.g. 30",
                        args.wake_timeout
                    ))
                })?,
                ..GatewayConfig::default()
            },
        })),
        None if args.runtime == "kubernetes" => {
            RuntimeChoice::Kubernetes(Box::new(args.kubernetes.options()?))
        }
        None if args.runtime == "recording" => RuntimeChoice::Recording { dir: None, fault },
        Some(("recording", dir)) => RuntimeChoice::Recording {
            dir: Some(PathBuf::from(dir)),
            fault,
        },
        _ => {
            return Err(Failure::invalid(format!(
                "--runtime: `{}` is not available; use `local`, `kubernetes`, `recording` or `recording:DIR`",
                args.runtime
            )));
        }
    };
    let metrics_listen = args
        .metrics_listen
        .as_deref()
        .map(|text| address("metrics-listen", text))
        .transpose()?;
    let config = ServeConfig {
        data_dir,
        store: args.store,
        listen,
        metrics_listen,
        runtime,
        step_timeout: Duration::from_secs(args.step_timeout.max(1)),
        lease_ttl: Duration::from_secs(args.lease_ttl.max(1)),
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
fn issuer(flags: &IssuerFlags) -> Result<Issuer, Failure> {
    match flags.issuer.as_str() {
        "local" => {
            let given: Vec<&str> = [
                ("--acme-directory", flags.acme_directory.is_some()),
                ("--acme-email", flags.acme_email.is_some()),
                ("--acme-root", flags.acme_root.is_some()),
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
            let directory = flags
                .acme_directory
                .clone()
                .unwrap_or_else(|| LETS_ENCRYPT.to_owned());
            if !directory.starts_with("https://") {
                return Err(Failure::invalid(format!(
                    "--acme-directory: `{directory}` is not an https:// URL; an ACME CA's directory is served over HTTPS"
                )));
            }
            if let Some(email) = &flags.acme_email {
                let (user, domain) = email.split_once('@').unwrap_or_default();
                if user.is_empty() || !domain.contains('.') || email.contains(char::is_whitespace) {
                    return Err(Failure::invalid(format!(
                        "--acme-email: `{email}` is not an email address"
                    )));
                }
            }
            if let Some(root) = &flags.acme_root {
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
                email: flags.acme_email.clone(),
                root: flags.acme_root.clone(),
            }))
        }
        other => Err(Failure::invalid(format!(
            "--issuer: `{other}` is not an issuer; use `local` or `acme`"
        ))),
    }
}
