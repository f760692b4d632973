//! `preview demo`: the example project on this machine, start to finish. A daemon with a temporary data
//! directory, the whole shop registered from this checkout, `staging` deployed (its database seeded from
//! `db/seed.sql`, its cart's Redis from `cache/seed.redis`) and cloned into the preview `pr-1` (its database masked
//! from staging's, its Redis copied), one customer shown as each has it, every URL printed with the CA to trust and
//! requested over HTTPS, each storefront counting its own orders and cart items, then everything stopped (`--keep`
//! leaves it running).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::Client;
use crate::commands::deploy::{Change, start};
use crate::context::Context;
use crate::exit::Failure;
use crate::output::OutputFormat;

const SPEC: &str = "examples/shop/preview.yaml";

/// The daemon the demo started; stopped (SIGTERM, so that it stops its apps) unless kept.
struct DemoDaemon {
    child: Child,
    data: PathBuf,
    keep: bool,
}

impl DemoDaemon {
    fn stop(&mut self) -> Result<(), Failure> {
        let pid = self.child.id().to_string();
        let _ = Command::new("/bin/sh")
            .args(["-c", "kill -TERM \"$1\"", "sh", &pid])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(Failure::internal(format!(
                    "the demo daemon did not stop within a minute; its log is {}",
                    self.data.join("daemon.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.data);
        Ok(())
    }
}

impl Drop for DemoDaemon {
    fn drop(&mut self) {
        if !self.keep && self.data.exists() {
            let _ = self.stop();
        }
    }
}

fn say(line: &str) {
    println!("==> {line}");
}

pub fn run(repository: Option<PathBuf>, keep: bool) -> Result<(), Failure> {
    let repository = match repository {
        Some(dir) => dir,
        None => repository_here()?,
    };
    let spec = repository.join(SPEC);
    if !spec.is_file() {
        return Err(Failure::invalid(format!(
            "{} not found: run `preview demo` inside a checkout of preview, or pass --repository DIR",
            spec.display()
        )));
    }
    let data = std::env::temp_dir().join(format!("preview-demo-{}", &random_hex()?[..12]));
    say(&format!(
        "starting a daemon with data directory {}",
        data.display()
    ));
    // Kept only once the walk-through went well: a demo that failed stops its daemon, `--keep` or not.
    let mut daemon = start_daemon(&repository, &data)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(walk_through(&data, &spec))?;
    if !keep {
        // Deleting them takes their users, networks, cgroups and files off the machine, too.
        say("deleting `pr-1` and `staging`");
        runtime.block_on(delete_all(&data))?;
    }
    if keep {
        daemon.keep = true;
        let config = preview_server::client_config_path(&data);
        let address = std::fs::read(&config)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|parsed| parsed["address"].as_str().map(str::to_owned))
            .unwrap_or_default();
        println!(
            "\nleft running: daemon pid {}, data directory {}\n  preview --data-dir {} env list\n  dashboard: {address}/ (sign in with the token in {})\n  stop it with `kill {}` (its apps stop with it)",
            daemon.child.id(),
            data.display(),
            data.display(),
            config.display(),
            daemon.child.id()
        );
        return Ok(());
    }
    say("stopping the daemon and its apps");
    daemon.stop()?;
    say("done: nothing is left running");
    Ok(())
}

fn repository_here() -> Result<PathBuf, Failure> {
    let output = Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| Failure::invalid(format!("cannot run git: {e}")))?;
    if !output.status.success() {
        return Err(Failure::invalid(
            "the demo builds the example from a commit of this repository: run it inside a git checkout of preview, or pass --repository DIR",
        ));
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim(),
    ))
}

fn start_daemon(repository: &Path, data: &Path) -> Result<DemoDaemon, Failure> {
    std::fs::create_dir_all(data)
        .map_err(|e| Failure::internal(format!("cannot create {}: {e}", data.display())))?;
    let log = std::fs::File::create(data.join("daemon.log"))
        .map_err(|e| Failure::internal(format!("cannot create the daemon log: {e}")))?;
    let errors = log
        .try_clone()
        .map_err(|e| Failure::internal(e.to_string()))?;
    let executable = std::env::current_exe()
        .map_err(|e| Failure::internal(format!("cannot find this program: {e}")))?;
    let child = Command::new(executable)
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--https", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        // Builds of the example share the checkout's compiler cache, so a second demo builds in seconds.
        .arg("--build-cache")
        .arg(repository.join("target").join("preview-build-cache"))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(errors)
        .spawn()
        .map_err(|e| Failure::internal(format!("cannot start the daemon: {e}")))?;
    let mut daemon = DemoDaemon {
        child,
        data: data.to_path_buf(),
        keep: false,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !data.join("client.json").exists() {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            return Err(Failure::internal(format!(
                "the daemon stopped ({status}); its log:\n{}",
                std::fs::read_to_string(data.join("daemon.log")).unwrap_or_default()
            )));
        }
        if Instant::now() > deadline {
            let _ = daemon.stop();
            return Err(Failure::internal(
                "the daemon did not start within a minute",
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(daemon)
}

async fn walk_through(data: &Path, spec: &Path) -> Result<(), Failure> {
    let client = Client::from_data_dir(data)?;
    say(&format!("registering {}", spec.display()));
    let source = std::fs::read_to_string(spec)
        .map_err(|e| Failure::invalid(format!("cannot read {}: {e}", spec.display())))?;
    let directory = spec.parent().map(|p| p.display().to_string());
    // The demo is its own forge: pull requests' commits are fetched from a bare repository in its data directory.
    let forge = data.join("forge.git");
    let source = with_clone_url(&source, &forge)?;
    client
        .post(
            "/v1/projects",
            json!({ "file": SPEC, "source": source, "directory": directory }),
        )
        .await?;
    say("setting the storefront's SESSION_KEY (previews get a substitute)");
    client
        .post(
            "/v1/projects/shop/secrets",
            json!({
                "scope": "service:storefront",
                "name": "SESSION_KEY",
                "value": random_hex()?,
                "previews": "substitute:PREVIEW_SESSION_KEY",
            }),
        )
        .await?;
    say("setting MASKING_KEY (keys the masking of customers in previews) and FORGE_WEBHOOK_SECRET");
    let webhook_secret = random_hex()?;
    for (name, value) in [
        ("MASKING_KEY", random_hex()?),
        ("FORGE_WEBHOOK_SECRET", webhook_secret.clone()),
    ] {
        client
            .post(
                "/v1/projects/shop/secrets",
                json!({ "scope": "project", "name": name, "value": value }),
            )
            .await?;
    }
    let context = Context {
        client,
        project: "shop".to_owned(),
        output: OutputFormat::Text,
    };
    say(
        "deploying `staging`: its database seeded from db/seed.sql, its cart's Redis from cache/seed.redis (the first build of the example apps takes a while)",
    );
    start(&context, Change::Create("staging", None), true).await?;
    say(
        "cloning `staging` into the preview `pr-1`: its database a masked copy of staging's, its Redis a copy of staging's",
    );
    start(
        &context,
        Change::Clone {
            source: "staging",
            name: "pr-1",
            commit: None,
        },
        true,
    )
    .await?;
    show_data(&context).await?;
    let ca = data.join("ca.pem");
    let pem = context.client.get("/v1/ca").await?["certificate"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    std::fs::write(&ca, &pem)
        .map_err(|e| Failure::internal(format!("cannot write {}: {e}", ca.display())))?;
    let gateway = context.client.get("/v1/gateway").await?;
    let https: std::net::SocketAddr = gateway["https"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| Failure::internal("the daemon did not say where its gateway listens"))?;
    say(&format!(
        "the gateway listens on https://{https}; trust the CA in {}",
        ca.display()
    ));
    let tls = tls_client(&pem)?;
    say(
        "adding an item to the cart of `pr-1`'s storefront: each environment's cart is in a Redis server of its own (pr-1's a copy of staging's)",
    );
    let preview = context
        .client
        .get(&context.path("/environments/pr-1"))
        .await?;
    if let Some((_, host)) = hosts(&preview["urls"])
        .into_iter()
        .find(|(_, host)| host.starts_with("storefront"))
    {
        request(&tls, https, &host, "POST", "/api/cart/2").await?;
    }
    for environment in ["staging", "pr-1"] {
        let shown = context
            .client
            .get(&context.path(&format!("/environments/{environment}")))
            .await?;
        println!("\n{environment}:");
        for protection in shown["isolation"].as_array().into_iter().flatten() {
            println!(
                "  isolation: {} {}: {}",
                protection["name"].as_str().unwrap_or_default(),
                if protection["in_effect"] == true {
                    "on"
                } else {
                    "OFF"
                },
                protection["detail"].as_str().unwrap_or_default()
            );
        }
        for (url, host) in hosts(&shown["urls"]) {
            println!("  {url}");
            println!(
                "    curl --cacert {} --resolve {host}:{}:127.0.0.1 {url}/api/summary",
                ca.display(),
                https.port()
            );
            let answer = get(&tls, https, &host, "/api/summary").await?;
            println!("    → {answer}");
        }
    }
    pull_request(&context, &forge, spec, &webhook_secret, &tls, https).await
}

/// The spec's text with the forge's `clone_url` pointing at `forge`, a repository on this machine.
fn with_clone_url(source: &str, forge: &Path) -> Result<String, Failure> {
    let anchor = "    repository: example/shop\n";
    if !source.contains(anchor) {
        return Err(Failure::invalid(
            "the example's spec no longer names `repository: example/shop` under `previews.forge`",
        ));
    }
    Ok(source.replacen(
        anchor,
        &format!("{anchor}    clone_url: file://{}\n", forge.display()),
        1,
    ))
}

fn git(directory: &Path, args: &[&str]) -> Result<String, Failure> {
    let output = Command::new("git")
        .arg("-C")
        .arg(directory)
        .args(["-c", "user.name=Demo", "-c", "user.email=demo@example.test"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Failure::internal(format!("cannot run git: {e}")))?;
    if !output.status.success() {
        return Err(Failure::internal(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Pull request #2, as GitHub would send it: opened, pushed, closed — each a delivery signed with the webhook
/// secret — and its preview appearing, moving to the new commit, and going.
async fn pull_request(
    context: &Context,
    forge: &Path,
    spec: &Path,
    secret: &str,
    tls: &tokio_rustls::TlsConnector,
    https: std::net::SocketAddr,
) -> Result<(), Failure> {
    let repository = spec
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .ok_or_else(|| Failure::internal("the example is not inside a repository"))?;
    let data = forge
        .parent()
        .ok_or_else(|| Failure::internal("the forge has no directory"))?;
    say(
        "a pull request: the demo acts as GitHub — a repository with `refs/pull/2/head`, signed webhooks",
    );
    let work = data.join("pull-request");
    git(
        data,
        &[
            "clone",
            "--quiet",
            "--bare",
            &repository.display().to_string(),
            &forge.display().to_string(),
        ],
    )?;
    git(
        data,
        &[
            "clone",
            "--quiet",
            &forge.display().to_string(),
            &work.display().to_string(),
        ],
    )?;
    git(&work, &["checkout", "--quiet", "-b", "warmer-welcome"])?;
    let push = |round: u32| -> Result<String, Failure> {
        let note = work.join("examples/shop/apps/storefront/CHANGES.txt");
        std::fs::write(&note, format!("round {round} of the pull request\n"))
            .map_err(|e| Failure::internal(format!("cannot write {}: {e}", note.display())))?;
        git(&work, &["add", "-A"])?;
        git(
            &work,
            &[
                "commit",
                "--quiet",
                "-m",
                &format!("A warmer welcome, round {round}"),
            ],
        )?;
        let head = git(&work, &["rev-parse", "HEAD"])?;
        git(
            &work,
            &[
                "push",
                "--quiet",
                "--force",
                "origin",
                "HEAD:refs/pull/2/head",
            ],
        )?;
        Ok(head)
    };
    let first = push(1)?;
    deliver(context, secret, "opened", &first, true).await?;
    show_preview(context, &first, tls, https).await?;
    let second = push(2)?;
    deliver(context, secret, "synchronize", &second, true).await?;
    show_preview(context, &second, tls, https).await?;
    deliver(context, secret, "closed", &second, false).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let environments = context.client.get(&context.path("/environments")).await?;
        let present = environments["environments"]
            .as_array()
            .is_some_and(|list| list.iter().any(|e| e["name"] == "pr-2"));
        if !present {
            break;
        }
        if Instant::now() > deadline {
            return Err(Failure::internal(
                "`pr-2` was not destroyed after its pull request closed",
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    say(
        "pull request #2 closed: `pr-2` is destroyed (`preview webhooks list` shows the deliveries)",
    );
    Ok(())
}

/// Sends pull request #2's `action` at `head` to the daemon's webhook receiver, signed as GitHub signs it.
async fn deliver(
    context: &Context,
    secret: &str,
    action: &str,
    head: &str,
    open: bool,
) -> Result<(), Failure> {
    let body = json!({
        "action": action,
        "number": 2,
        "pull_request": {
            "number": 2,
            "state": if open { "open" } else { "closed" },
            "title": "A warmer welcome",
            "html_url": "https://github.com/example/shop/pull/2",
            "user": { "login": "octocat" },
            "draft": false,
            "merged": false,
            "labels": [{ "name": "preview" }],
            "head": { "ref": "warmer-welcome", "sha": head, "repo": { "full_name": "example/shop" } },
            "base": { "ref": "main", "repo": { "full_name": "example/shop" } }
        },
        "repository": { "full_name": "example/shop" },
        "sender": { "login": "octocat" }
    })
    .to_string();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let signature: String = ring::hmac::sign(&key, body.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    say(&format!(
        "pull request #2 {action} at {}: POST /webhooks/shop, X-Hub-Signature-256: sha256={}…",
        &head[..12],
        &signature[..16]
    ));
    // What GitHub sends: a plain POST, no token of the daemon's, the signature over the raw body.
    let answer = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let authority = context.client.authority().to_owned();
        let failed = |e: std::io::Error| Failure::internal(format!("POST /webhooks/shop: {e}"));
        let mut stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(failed)?;
        let request = format!(
            "POST /webhooks/shop HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nX-GitHub-Event: pull_request\r\nX-GitHub-Delivery: demo-{action}-{}\r\nX-Hub-Signature-256: sha256={signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            &head[..12],
            body.len()
        );
        stream.write_all(request.as_bytes()).await.map_err(failed)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.map_err(failed)?;
        let text = String::from_utf8_lossy(&response);
        let json = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        serde_json::from_str::<Value>(json).unwrap_or(Value::Null)
    };
    println!("    → {}", answer["verdict"].as_str().unwrap_or("?"));
    Ok(())
}

/// Waits until pull request #2's preview runs `head`, then shows it and asks its storefront.
async fn show_preview(
    context: &Context,
    head: &str,
    tls: &tokio_rustls::TlsConnector,
    https: std::net::SocketAddr,
) -> Result<(), Failure> {
    let deadline = Instant::now() + Duration::from_secs(900);
    let preview = loop {
        let listed = context.client.get(&context.path("/previews")).await?;
        let preview = listed["previews"]
            .as_array()
            .and_then(|list| list.iter().find(|p| p["number"] == 2))
            .cloned()
            .unwrap_or(Value::Null);
        if preview["commit"] == head && preview["last_deployment"]["status"] == "committed" {
            break preview;
        }
        let failed = preview["last_deployment"]["status"] == "rolled_back"
            && preview["last_deployment"]["commit"] == head;
        if failed || Instant::now() > deadline {
            return Err(Failure::internal(format!(
                "the preview of pull request #2 did not come up at {head}: {}",
                preview["outcome"]
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!(
        "  pr-2 at {} ({})",
        &head[..12],
        preview["outcome"].as_str().unwrap_or_default()
    );
    for (url, host) in hosts(&preview["urls"]) {
        println!("  {url}");
        if host.starts_with("storefront") || host.starts_with("pr-2.") {
            let answer = get(tls, https, &host, "/api/summary").await?;
            println!("    → {answer}");
        }
    }
    Ok(())
}

/// Each URL of a list with its host name.
fn hosts(urls: &Value) -> Vec<(String, String)> {
    urls.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|url| {
            let host = url
                .trim_start_matches("https://")
                .split(':')
                .next()
                .unwrap_or_default();
            (url.to_owned(), host.to_owned())
        })
        .collect()
}

/// A client of ENV's database `db`, logged in as its own role.
async fn database(context: &Context, environment: &str) -> Result<tokio_postgres::Client, Failure> {
    let login = context
        .client
        .post(
            &context.path(&format!("/environments/{environment}/databases/db/login")),
            json!({}),
        )
        .await?;
    let mut config = tokio_postgres::Config::new();
    config
        .host(login["host"].as_str().unwrap_or("127.0.0.1"))
        .port(
            login["port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(5432),
        )
        .user(login["user"].as_str().unwrap_or_default())
        .dbname(login["database"].as_str().unwrap_or_default())
        .password(login["password"].as_str().unwrap_or_default());
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
        Failure::internal(format!("cannot reach the database of `{environment}`: {e}"))
    })?;
    tokio::spawn(connection);
    Ok(client)
}

/// One customer as `staging` has it and as the preview has it, and the preview's orders joined to its customers.
async fn show_data(context: &Context) -> Result<(), Failure> {
    let failed =
        |e: tokio_postgres::Error| Failure::internal(format!("the demo's query failed: {e}"));
    let customer =
        "SELECT email, full_name, coalesce(phone, '') FROM customers ORDER BY id LIMIT 1";
    let joined = "SELECT count(*) FROM orders o JOIN customers c ON c.email = o.customer_email";
    println!();
    for environment in ["staging", "pr-1"] {
        let db = database(context, environment).await?;
        let row = db.query_one(customer, &[]).await.map_err(failed)?;
        let orders: i64 = db.query_one(joined, &[]).await.map_err(failed)?.get(0);
        println!(
            "  customer 1 in {environment:<8} {:<44} {:<18} {:<18} ({orders} orders join their customers)",
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2),
        );
    }
    say("adding an order in `pr-1` only: each storefront counts its own database's orders");
    database(context, "pr-1")
        .await?
        .batch_execute("INSERT INTO orders (customer_email, product_id) SELECT email, 1 FROM customers ORDER BY id LIMIT 1")
        .await
        .map_err(failed)?;
    Ok(())
}

async fn delete_all(data: &Path) -> Result<(), Failure> {
    let context = Context {
        client: Client::from_data_dir(data)?,
        project: "shop".to_owned(),
        output: OutputFormat::Text,
    };
    for environment in ["pr-1", "staging"] {
        start(&context, Change::Delete(environment, false), true).await?;
    }
    Ok(())
}

/// 24 random bytes as hex: the demo's session key and the name of its data directory.
fn random_hex() -> Result<String, Failure> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| Failure::internal(format!("cannot read random bytes: {e}")))?;
    Ok(preview_secrets::hex::encode(&bytes))
}

fn tls_client(ca_pem: &str) -> Result<tokio_rustls::TlsConnector, Failure> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let certificate = certificate.map_err(|e| Failure::internal(format!("the CA: {e}")))?;
        roots
            .add(certificate)
            .map_err(|e| Failure::internal(format!("the CA: {e}")))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Failure::internal(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// One HTTPS GET of the storefront's summary through the gateway, verified against the CA; the answer's status and
/// a short view of its body.
async fn get(
    tls: &tokio_rustls::TlsConnector,
    gateway: std::net::SocketAddr,
    host: &str,
    path: &str,
) -> Result<String, Failure> {
    let (status, body) = request(tls, gateway, host, "GET", path).await?;
    let summary: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    Ok(format!(
        "{status}: environment {}, mode {}, {} products from the catalog of `{}`, {} orders, {} items in the cart",
        summary["environment"].as_str().unwrap_or("?"),
        summary["mode"].as_str().unwrap_or("?"),
        summary["products"].as_array().map_or(0, Vec::len),
        summary["catalog"]["environment"].as_str().unwrap_or("?"),
        summary["orders"],
        summary["cart"],
    ))
}

/// One HTTPS request without a body through the gateway, verified against the CA; the answer's status line and
/// body, which must be 200.
async fn request(
    tls: &tokio_rustls::TlsConnector,
    gateway: std::net::SocketAddr,
    host: &str,
    method: &str,
    path: &str,
) -> Result<(String, String), Failure> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let failed = |e: String| Failure::internal(format!("https://{host}{path}: {e}"));
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| failed(e.to_string()))?;
    let stream = tokio::net::TcpStream::connect(gateway)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut stream = tls
        .connect(name, stream)
        .await
        .map_err(|e| failed(format!("TLS: {e}")))?;
    stream
        .write_all(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(failed(format!("answered `{status}`: {body}")));
    }
    Ok((status, body.to_owned()))
}
