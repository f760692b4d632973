//! Certificates from an ACME CA: the local runtime against Pebble, a local ACME test server (Debian's `pebble`
//! package; scripts/test installs it), which validates every hostname over HTTP-01 through the gateway's plain-HTTP
//! listener, with DNS answered by `pebble-challtestsrv` (every name → 127.0.0.1).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use preview_deploy::{EnvironmentAddress, NoSecrets, Runtime, RuntimeError, StepLog};
use preview_gateway::{Certificates, Challenges, Proxy, Routes};
use preview_local::{Issuer, LocalConfig, LocalRuntime, PortRange};
use preview_plan::{Resource, ResourceKind};
use preview_testing::{TempDir, free_port};
use preview_tls::{AcmeConfig, LocalCa};
use serde_json::json;

/// Pebble and its DNS server, stopped when dropped.
struct Pebble {
    children: Vec<Child>,
    directory: String,
    management: u16,
    /// The root of Pebble's own HTTPS certificate.
    api_root: PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn program(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` not found; scripts/test installs it (apt-get install pebble)")
        })
}

impl Pebble {
    /// Starts Pebble validating HTTP-01 on `http_port` of 127.0.0.1. The ports it listens on are found free and
    /// released before it binds them, so a test running beside this one may take one meanwhile: then it is
    /// started again on others.
    fn start(dir: &Path, http_port: u16) -> Pebble {
        for _ in 0..3 {
            if let Some(pebble) = Pebble::try_start(dir, http_port) {
                return pebble;
            }
        }
        panic!(
            "Pebble did not start: {}",
            std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default()
        );
    }

    /// One try: `None` when Pebble or its DNS server ended, or Pebble's directory is not served with Pebble's own
    /// certificate (another process has the port).
    fn try_start(dir: &Path, http_port: u16) -> Option<Pebble> {
        // Pebble's API is HTTPS: a certificate for localhost from a CA of the test's own.
        let ca = LocalCa::load_or_create(&dir.join("api-ca")).expect("CA for Pebble's API");
        let issued = ca
            .issue(&["localhost".to_owned()], Duration::from_secs(86_400))
            .expect("Pebble's certificate");
        let (certificate, key, api_root) = (
            dir.join("pebble.pem"),
            dir.join("pebble.key"),
            dir.join("api-root.pem"),
        );
        std::fs::write(&certificate, &issued.chain_pem).expect("write");
        std::fs::write(&key, issued.key_pem.expose()).expect("write");
        std::fs::write(&api_root, ca.certificate_pem()).expect("write");
        let (api, management, dns, dns_management) =
            (free_port(), free_port(), free_port(), free_port());
        let config = json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{api}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": certificate,
            "privateKey": key,
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let config_path = dir.join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("write");
        let log = |name: &str| std::fs::File::create(dir.join(name)).expect("log file");
        let dns_server = Command::new(program("pebble-challtestsrv"))
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble-challtestsrv");
        let pebble = Command::new(program("pebble"))
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // No random pauses before validating, no randomly refused nonces: the test does not depend on luck.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("start pebble");
        let mut started = Pebble {
            children: vec![dns_server, pebble],
            directory: format!("https://localhost:{api}/dir"),
            management,
            api_root,
        };
        let dns_up = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::net::TcpStream::connect(("127.0.0.1", dns_management)).is_ok()
        });
        let serving = dns_up
            && (0..200).any(|_| {
                std::thread::sleep(Duration::from_millis(50));
                if started
                    .children
                    .iter_mut()
                    .any(|child| child.try_wait().ok().flatten().is_some())
                {
                    return false;
                }
                Command::new("curl")
                    .args(["-sSf", "-o", "/dev/null", "--max-time", "2", "--cacert"])
                    .arg(&started.api_root)
                    .arg(&started.directory)
                    .status()
                    .is_ok_and(|s| s.success())
            });
        // Dropped when it did not come up: its processes are stopped.
        serving.then_some(started)
    }

    /// The root Pebble issues under, PEM (a new one every time Pebble starts).
    fn issuing_root(&self) -> String {
        let output = Command::new("curl")
            .args(["-sSf", "--cacert"])
            .arg(&self.api_root)
            .arg(format!("https://localhost:{}/roots/0", self.management))
            .output()
            .expect("run curl");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("PEM")
    }
}

fn staging() -> EnvironmentAddress {
    EnvironmentAddress {
        project: "shop".into(),
        environment: "staging".into(),
    }
}

fn resource(id: &str, kind: ResourceKind, content: serde_json::Value) -> Resource {
    Resource::new(id, kind, Vec::new(), content)
}

/// Applies staging's `certificate` step for `hostnames`.
async fn certificate(
    runtime: &LocalRuntime,
    hostnames: &[&str],
    log: &StepLog,
) -> Result<(), RuntimeError> {
    let step = resource(
        "certificate",
        ResourceKind::Certificate,
        json!({ "hostnames": hostnames }),
    );
    runtime.apply(&staging(), &step, log).await
}

/// The gateway as the daemon runs it: plain HTTP (where HTTP-01 is answered) and HTTPS.
async fn gateway(
    routes: &Arc<Routes>,
    certificates: &Arc<Certificates>,
    challenges: &Arc<Challenges>,
) -> (SocketAddr, SocketAddr) {
    let http = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let https = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addresses = (
        http.local_addr().expect("address"),
        https.local_addr().expect("address"),
    );
    let resolver: Arc<Certificates> = Arc::clone(certificates);
    let tls = preview_gateway::tls_config(resolver).expect("tls");
    let proxy = Arc::new(Proxy::new(Arc::clone(routes)).with_challenges(Arc::clone(challenges)));
    tokio::spawn(preview_gateway::serve(http, Arc::clone(&proxy), None));
    tokio::spawn(preview_gateway::serve(https, proxy, Some(tls)));
    addresses
}

/// Whether curl, trusting only `root`, completes a TLS handshake with the gateway for `host`; the page says
/// which environment would answer (none here: 404).
async fn trusted(https: SocketAddr, host: &str, root: &Path) -> Result<String, String> {
    // Asynchronously: the gateway accepts on this test's runtime.
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(root)
        .arg("--resolve")
        .arg(format!("{host}:{}:127.0.0.1", https.port()))
        .arg(format!("https://{host}:{}/", https.port()))
        .output()
        .await
        .expect("run curl");
    match output.status.success() {
        true => Ok(String::from_utf8_lossy(&output.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
    }
}

/// What the gateway and the runtime share: routes, certificates, challenge answers.
fn handles() -> (Arc<Routes>, Arc<Certificates>, Arc<Challenges>) {
    (Arc::default(), Arc::default(), Arc::default())
}

/// A local runtime whose certificates come from `pebble`, with the `staging` space applied.
async fn acme_runtime(
    dir: &TempDir,
    pebble: &Pebble,
    gateway: (&Arc<Routes>, &Arc<Certificates>, &Arc<Challenges>),
    email: Option<&str>,
    renew_before: Duration,
) -> (Arc<LocalRuntime>, StepLog) {
    let mut config = LocalConfig::new(dir.path().join("local"));
    config.ports = PortRange::parse("24000-24999").expect("range");
    config.renew_before = renew_before;
    config.issuer = Issuer::Acme(AcmeConfig {
        directory: pebble.directory.clone(),
        email: email.map(str::to_owned),
        root: Some(pebble.api_root.clone()),
    });
    let (routes, certificates, challenges) = gateway;
    let runtime = LocalRuntime::open(
        config,
        Arc::new(NoSecrets),
        Arc::clone(routes),
        Arc::clone(certificates),
        Arc::clone(challenges),
        &|_| {},
    )
    .await
    .expect("the runtime opens");
    let log = StepLog::default();
    runtime
        .apply(
            &staging(),
            &resource("space", ResourceKind::Space, json!({ "project": "shop" })),
            &log,
        )
        .await
        .expect("space");
    (runtime, log)
}

#[tokio::test]
async fn certificates_come_from_an_acme_ca_that_validated_each_hostname_through_the_gateway() {
    let dir = TempDir::new("local-acme");
    let (routes, certificates, challenges) = handles();
    let (http, https) = gateway(&routes, &certificates, &challenges).await;
    let pebble = Pebble::start(dir.path(), http.port());
    // Whatever the CA's validity, every certificate counts as due for renewal.
    let (runtime, log) = acme_runtime(
        &dir,
        &pebble,
        (&routes, &certificates, &challenges),
        Some("ops@example.test"),
        Duration::from_secs(100 * 365 * 86_400),
    )
    .await;
    let names = ["web-staging.shop.test", "api-staging.shop.test"];
    certificate(&runtime, &names, &log)
        .await
        .expect("the ACME CA issues the certificate");
    assert!(
        log.lines()
            .iter()
            .any(|line| line.contains("from the ACME CA at https://localhost:")),
        "{:?}",
        log.lines()
    );
    assert!(challenges.is_empty(), "the challenge answers are withdrawn");

    // The gateway serves the CA's certificate for both names: a client trusting only Pebble's root accepts it,
    // one trusting only the local CA does not.
    let pebble_root = dir.path().join("pebble-root.pem");
    std::fs::write(&pebble_root, pebble.issuing_root()).expect("write");
    for name in names {
        let page = trusted(https, name, &pebble_root)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(page.contains("No such environment"), "{page}");
    }
    let local_ca = dir.path().join("local-ca.pem");
    std::fs::write(&local_ca, runtime.ca_certificate()).expect("write");
    assert!(trusted(https, names[0], &local_ca).await.is_err());

    // The account is kept, readable by the daemon only, and used again for the renewal.
    use std::os::unix::fs::PermissionsExt;
    let account = dir.path().join("local/acme/account.json");
    let mode = std::fs::metadata(&account)
        .expect("account")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let kept = std::fs::read(&account).expect("account");
    let chain = dir
        .path()
        .join("local/environments/shop/staging/tls/chain.pem");
    let before = std::fs::read_to_string(&chain).expect("chain");
    assert_eq!(runtime.renew_certificates().await, ["shop/staging"]);
    assert_ne!(
        std::fs::read_to_string(&chain).expect("chain"),
        before,
        "a new certificate"
    );
    assert_eq!(std::fs::read(&account).expect("account"), kept);
    trusted(https, names[1], &pebble_root)
        .await
        .expect("the renewed certificate is served");

    // A wildcard cannot be proven over HTTP-01: refused with the reason, and the served certificate stays.
    let error = certificate(
        &runtime,
        &["web-staging.shop.test", "*.staging.shop.test"],
        &log,
    )
    .await
    .expect_err("a wildcard is refused");
    assert!(
        error
            .message
            .contains("`*.staging.shop.test` is a wildcard"),
        "{}",
        error.message
    );
    assert!(error.message.contains("DNS-01"), "{}", error.message);
    trusted(https, names[0], &pebble_root)
        .await
        .expect("the certificate served before is still served");
}

#[tokio::test]
async fn a_ca_that_cannot_validate_fails_the_step_with_its_reason() {
    let dir = TempDir::new("local-acme-unreachable");
    let (routes, certificates, challenges) = handles();
    // Pebble validates on a port where nothing answers: the gateway is not reachable for it.
    let pebble = Pebble::start(dir.path(), free_port());
    let (runtime, log) = acme_runtime(
        &dir,
        &pebble,
        (&routes, &certificates, &challenges),
        None,
        Duration::from_secs(86_400),
    )
    .await;
    let error = certificate(&runtime, &["web-staging.shop.test"], &log)
        .await
        .expect_err("no certificate without validation");
    assert!(
        error.message.contains("did not validate"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("web-staging.shop.test"),
        "{}",
        error.message
    );
    assert!(challenges.is_empty(), "the challenge answers are withdrawn");
    assert!(
        !dir.path()
            .join("local/environments/shop/staging/tls")
            .exists()
    );
}
