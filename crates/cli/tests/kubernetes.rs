//! The daemon on the Kubernetes runtime, against the fake API server: `preview serve --runtime kubernetes
//! --kubeconfig F` deploys the example shop with every object, `preview render` prints them, `preview cluster check`
//! names what the credentials may not do, `env show` and `logs` read pods, `env delete` takes the namespace, and no
//! secret value leaves a Secret object: not in rendered manifests, outputs, API responses, the journal or the log.

mod support;

use preview_testing::kubernetes::ApiServer;
use support::Daemon;

const CANARIES: [&str; 3] = [
    "CANARY-k8s-masking-8d1e",
    "CANARY-k8s-webhook-4b7a",
    "CANARY-k8s-session-c02f",
];

fn kubernetes_example() -> String {
    preview_testing::example_on_kubernetes()
}

/// Registers `source` as the project's spec from a git repository in `dir` that also holds the example's seed file.
fn register(daemon: &Daemon, dir: &std::path::Path, source: &str) {
    let spec = source.replace("file: db/seed.sql", "file: seed.sql");
    let repo = support::repository(
        dir,
        &[
            ("preview.yaml", spec.as_str()),
            (
                "seed.sql",
                include_str!("../../../examples/shop/db/seed.sql"),
            ),
        ],
    );
    support::ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        &repo.join("preview.yaml").display().to_string(),
    ]));
}

fn assert_no_canary(what: &str, text: &str) {
    for canary in CANARIES {
        assert!(
            !text.contains(canary),
            "{what} contains the secret value {canary}"
        );
        let encoded = base64(canary);
        assert!(
            !text.contains(&encoded[..encoded.len() - 4]),
            "{what} contains the secret value {canary} in base64"
        );
    }
}

fn base64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// `preview serve` with these flags, which must refuse to start; its output.
fn refused(data: &std::path::Path, flags: &[&str]) -> String {
    let mut child = support::preview()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(flags)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("`serve {flags:?}` did not stop");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    assert!(!out.status.success(), "`serve {flags:?}` started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_example_shop_on_a_cluster() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let api = tokio.block_on(ApiServer::start());
    let _databases = api.serve_postgres_pods();
    let root = preview_testing::TempDir::new("kubernetes-daemon");
    let kubeconfig = root.path().join("kubeconfig");
    api.kubeconfig(&kubeconfig).expect("kubeconfig");
    let data = root.path().join("data");
    let daemon = Daemon::start_with_env(
        &data,
        &[
            "--runtime",
            "kubernetes",
            "--kubeconfig",
            kubeconfig.to_str().expect("path"),
            "--ready-timeout",
            "20",
            // The log collectors' format: the values a leak would show are in it as they are in text.
            "--log-format",
            "json",
        ],
        &[("RUST_LOG", "trace")],
    );
    register(&daemon, root.path(), &kubernetes_example());
    for ((name, scope), value) in support::EXAMPLE_SECRETS.iter().zip(CANARIES) {
        support::ok(daemon.cli_with_input(
            &["secret", "set", name, "--scope", scope],
            &format!("{value}\n"),
        ));
    }
    let seen: std::cell::RefCell<Vec<(String, String)>> = Default::default();
    let run = |args: &[&str]| -> String {
        let out = daemon.cli(args);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{args:?}: {stdout}{stderr}");
        seen.borrow_mut()
            .push((format!("output of {args:?}"), format!("{stdout}{stderr}")));
        stdout
    };

    // Rendered before it exists: every object, in a namespace named as a new one would be.
    let rendered = run(&["render", "staging"]);
    for kind in [
        "Namespace",
        "NetworkPolicy",
        "ResourceQuota",
        "LimitRange",
        "ServiceAccount",
        "Secret",
        "StatefulSet",
        "Job",
        "Deployment",
        "Service",
        "Ingress",
    ] {
        assert!(
            rendered.contains(&format!("kind: {kind}\n")),
            "no {kind} in:\n{rendered}"
        );
    }
    assert!(
        rendered.contains("namespace: shop-staging-xxxxx"),
        "{rendered}"
    );
    assert!(rendered.contains("[redacted]"));

    // The migration job prints a secret it was given (and a terminal escape): the deployment's log gets neither.
    api.set_logs(
        "migrate-",
        &format!("migrating with {}\n\u{1b}]0;title\u{7}done\n", CANARIES[0]),
    );
    run(&["env", "create", "staging"]);
    let namespaces: Vec<String> = api
        .namespaces()
        .into_iter()
        .filter(|n| n.starts_with("shop-staging-"))
        .collect();
    assert_eq!(namespaces.len(), 1, "{namespaces:?}");
    let namespace = &namespaces[0];
    for (plural, name) in [
        ("deployments", "storefront"),
        ("deployments", "catalog"),
        ("statefulsets", "db"),
        ("ingresses", "storefront"),
        ("secrets", "environment"),
        ("networkpolicies", "default-deny"),
    ] {
        assert!(
            api.object(plural, Some(namespace), name).is_some(),
            "no {plural} {namespace}/{name}"
        );
    }
    // The environment's Secret holds the values, as the apps need them.
    let secret = api
        .object("secrets", Some(namespace), "environment")
        .expect("secret");
    let session = &secret["data"]["secret.service.storefront.SESSION_KEY"];
    assert_eq!(session.as_str(), Some(base64(CANARIES[2]).as_str()));

    // Rendered once it exists: in its namespace, written as files for a repository.
    let rendered = run(&["render", "staging"]);
    assert!(rendered.contains(&format!("namespace: {namespace}")));
    let out_dir = root.path().join("manifests");
    run(&["render", "staging", "-d", out_dir.to_str().expect("path")]);
    let files: Vec<String> = std::fs::read_dir(&out_dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("-namespace-".to_owned().as_str()) || f.contains("-namespace-")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.contains("-deployment-storefront.yaml")),
        "{files:?}"
    );
    for file in &files {
        let text = std::fs::read_to_string(out_dir.join(file)).expect("read");
        seen.borrow_mut()
            .push((format!("rendered file {file}"), text));
    }

    let shown = run(&["env", "show", "staging"]);
    assert!(shown.contains("storefront (pod storefront-"), "{shown}");
    assert!(shown.contains("running"), "{shown}");
    tokio.block_on(async {
        api.set_logs("catalog-", "catalog listening on 8080\n");
    });
    let logs = run(&["logs", "staging", "catalog"]);
    assert!(logs.contains("catalog listening on 8080"), "{logs}");
    let id = daemon.json(&["deployments", "staging"])["deployments"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    run(&["deployment", "show", &id]);
    let job_log = run(&["deployment", "logs", &id]);
    assert!(job_log.contains(": migrating with [secret]"), "{job_log}");
    assert!(!job_log.contains('\u{1b}'), "{job_log:?}");
    // The database was seeded in its pod, reached through the API server's port forwarding.
    assert!(job_log.contains("seeded from seed.sql"), "{job_log}");
    run(&["plan", "staging"]);
    run(&["vars", "show", "staging"]);

    // The cluster check: what a cluster without classes lacks, then everything there and granted, then a permission
    // taken away is named.
    let out = daemon.cli(&["cluster", "check"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("missing: a default IngressClass")
            && text.contains("missing: a default StorageClass"),
        "{text}"
    );
    for (kind, api_version, annotation) in [
        (
            "IngressClass",
            "networking.k8s.io/v1",
            "ingressclass.kubernetes.io/is-default-class",
        ),
        (
            "StorageClass",
            "storage.k8s.io/v1",
            "storageclass.kubernetes.io/is-default-class",
        ),
    ] {
        let mut object = serde_json::json!({
            "apiVersion": api_version, "kind": kind,
            "metadata": { "name": "standard", "annotations": { annotation: "true" } },
        });
        if kind == "IngressClass" {
            object["spec"] = serde_json::json!({ "controller": "k8s.io/ingress-nginx" });
        } else {
            object["provisioner"] = "example.com/disks".into();
        }
        api.apply_as("admin", object).expect("class");
    }
    api.install_crd("cert-manager.io");
    let check = run(&["cluster", "check"]);
    assert!(
        check.contains("v1.33") && check.contains("all granted"),
        "{check}"
    );
    assert!(
        check.contains("ingress classes: standard (default)") && check.contains("nothing missing"),
        "{check}"
    );
    api.deny("create", "apps", "deployments");
    let out = daemon.cli(&["cluster", "check"]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("1 denied: create deployments.apps"), "{text}");
    assert!(
        text.contains("missing: permissions: the credentials may not create deployments.apps"),
        "{text}"
    );

    for path in [
        "/v1/projects/shop/environments/staging".to_owned(),
        "/v1/projects/shop/environments/staging/manifests".to_owned(),
        "/v1/projects/shop/environments/staging/variables".to_owned(),
        format!("/v1/deployments/{id}"),
        format!("/v1/deployments/{id}/logs"),
    ] {
        let (status, body) = daemon.http("GET", &path, Some(&daemon.token), None, b"");
        assert_eq!(status, 200, "{path}: {body}");
        seen.borrow_mut()
            .push((format!("API response of {path}"), body.to_string()));
    }

    run(&["env", "delete", "staging"]);
    assert!(
        !api.namespaces().contains(namespace),
        "the namespace is gone"
    );
    daemon.stop();
    let mut seen = seen.into_inner();
    let daemon_log = support::read_log(&data);
    assert!(
        daemon_log.contains(r#""level":"DEBUG""#) && daemon_log.contains(r#""event":"log""#),
        "the daemon logged at debug, the steps' lines included"
    );
    // The Kubernetes client logs each request at debug (and a body it cannot read at warn): none of it is written.
    for line in daemon_log.lines() {
        let line: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let target = line["target"].as_str().expect("target");
        assert!(
            target.starts_with("preview") || line["level"] == "ERROR",
            "another library's line: {line}"
        );
    }
    seen.push(("the daemon's log".to_owned(), daemon_log));
    // Every object on the cluster but Secrets, and every request the daemon sent but the Secrets' own.
    for plural in [
        "deployments",
        "statefulsets",
        "services",
        "jobs",
        "ingresses",
        "configmaps",
        "namespaces",
        "networkpolicies",
    ] {
        for object in api.objects(plural, None) {
            seen.push((format!("{plural} on the cluster"), object.to_string()));
        }
    }
    for request in api.requests() {
        if !request.path.contains("/secrets/") {
            seen.push((
                format!("{} {}", request.method, request.path),
                format!("{:?}", request.json()),
            ));
        }
    }
    for (what, text) in &seen {
        assert_no_canary(what, text);
    }
    assert!(
        seen.iter().any(|(_, t)| t.contains("catalog listening")),
        "the scan reads outputs"
    );
}

#[test]
fn a_cluster_that_cannot_be_reached_stops_the_daemon_with_a_clear_error() {
    let root = preview_testing::TempDir::new("kubernetes-unreachable");
    let kubeconfig = root.path().join("kubeconfig");
    let port = preview_testing::free_port();
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: gone\n  context:\n    cluster: gone\n    user: gone\nusers:\n- name: gone\n  user:\n    token: x\ncurrent-context: gone\n"
        ),
    )
    .expect("kubeconfig");
    let data = root.path().join("data");
    let text = refused(
        &data,
        &[
            "--runtime",
            "kubernetes",
            "--kubeconfig",
            kubeconfig.to_str().expect("path"),
        ],
    );
    assert!(
        text.contains(&format!("the cluster at http://127.0.0.1:{port}/"))
            && text.contains("cannot reach the cluster"),
        "{text}"
    );
    let text = refused(
        &data,
        &[
            "--runtime",
            "kubernetes",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
        ],
    );
    assert!(
        text.contains("cannot read the kubeconfig /nonexistent/kubeconfig"),
        "{text}"
    );
    let text = refused(
        &data,
        &[
            "--runtime",
            "kubernetes",
            "--kubeconfig",
            kubeconfig.to_str().expect("path"),
            "--context",
            "other",
        ],
    );
    assert!(text.contains("has no usable context `other`"), "{text}");
    let text = refused(
        &data,
        &["--runtime", "kubernetes", "--routes", "gateway:nope"],
    );
    assert!(
        text.contains("--routes: `gateway:nope` names no Gateway; write gateway:NAMESPACE/NAME"),
        "{text}"
    );
    let text = refused(
        &data,
        &["--runtime", "kubernetes", "--dns-address", "169.254.20.10"],
    );
    assert!(
        text.contains(
            "--dns-address: `169.254.20.10` is not an address range; write ADDRESS/PREFIX"
        ),
        "{text}"
    );
    let text = refused(
        &data,
        &[
            "--runtime",
            "kubernetes",
            "--egress-except",
            "34.118.224.0/40",
        ],
    );
    assert!(
        text.contains("--egress-except: `34.118.224.0/40` is not an address range"),
        "{text}"
    );
}

/// `preview cluster add` registers a second cluster; the spec puts `production` on it, and it stays there.
#[test]
fn environments_go_to_the_cluster_their_spec_names_and_stay_there() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let (main, prod) =
        tokio.block_on(async { (ApiServer::start().await, ApiServer::start().await) });
    let _databases = (main.serve_postgres_pods(), prod.serve_postgres_pods());
    let root = preview_testing::TempDir::new("kubernetes-clusters");
    let (main_config, prod_config) = (
        root.path().join("main.kubeconfig"),
        root.path().join("prod.kubeconfig"),
    );
    main.kubeconfig(&main_config).expect("kubeconfig");
    prod.kubeconfig(&prod_config).expect("kubeconfig");
    let data = root.path().join("data");
    let flags = [
        "--runtime",
        "kubernetes",
        "--kubeconfig",
        main_config.to_str().expect("path"),
    ];
    let daemon = Daemon::start(&data, &flags);
    let register = |daemon: &Daemon, production_cluster: &str| {
        let source = kubernetes_example().replace(
            "  production:\n    variables:",
            &format!("  production:\n    cluster: {production_cluster}\n    variables:"),
        );
        static REGISTERED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = REGISTERED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = root.path().join(format!("{production_cluster}-{n}"));
        std::fs::create_dir_all(&dir).expect("dir");
        register(daemon, &dir, &source);
    };
    register(&daemon, "prod");
    daemon.set_example_secrets();
    // Not registered yet: a deployment to it is refused by name, and nothing is made anywhere.
    let out = daemon.cli(&["env", "create", "production"]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && text.contains(
                "no cluster `prod` is registered (`preview cluster add prod --kubeconfig FILE`)"
            ),
        "{text}"
    );

    support::ok(daemon.cli(&[
        "cluster",
        "add",
        "prod",
        "--kubeconfig",
        prod_config.to_str().expect("path"),
    ]));
    let listed = support::ok(daemon.cli(&["cluster", "list"]));
    assert!(
        listed.contains("prod") && listed.contains(&prod.url()),
        "{listed}"
    );
    support::ok(daemon.cli(&["env", "create", "staging"]));
    support::ok(daemon.cli(&["env", "create", "production"]));
    let on = |api: &ApiServer, environment: &str| {
        api.namespaces()
            .iter()
            .any(|n| n.starts_with(&format!("shop-{environment}-")))
    };
    assert!(on(&main, "staging") && !on(&prod, "staging"));
    assert!(on(&prod, "production") && !on(&main, "production"));
    let shown = support::ok(daemon.cli(&["env", "show", "production"]));
    assert!(shown.contains("on cluster `prod`"), "{shown}");
    // Checked with its own credentials (its missing classes make the check fail, as on the daemon's own cluster).
    let checked =
        String::from_utf8_lossy(&daemon.cli(&["cluster", "check", "prod"]).stdout).into_owned();
    assert!(
        checked.contains(&format!("cluster prod: {}", prod.url()))
            && checked.contains("all granted"),
        "{checked}"
    );

    // The credentials are sealed: the store holds no part of the kubeconfig's token.
    let store: Vec<u8> = std::fs::read(data.join("preview.db")).expect("store");
    assert!(
        !store
            .windows(prod.token().len())
            .any(|w| w == prod.token().as_bytes())
    );

    // A cluster environments live on is kept; a daemon started again knows it.
    let out = daemon.cli(&["cluster", "remove", "prod"]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && text.contains("environments live on cluster `prod`: shop/production"),
        "{text}"
    );
    daemon.stop();
    let daemon = Daemon::start(&data, &flags);
    assert!(support::ok(daemon.cli(&["cluster", "list"])).contains("prod"));

    // An environment stays where it was made: a spec that moves it is refused, and it is left as it was.
    register(&daemon, "default");
    let out = daemon.cli(&["deploy", "production"]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && text
                .contains("shop/production lives on cluster `prod` and the spec names `default`"),
        "{text}"
    );
    assert!(on(&prod, "production") && !on(&main, "production"));

    register(&daemon, "prod");
    support::ok(daemon.cli(&["env", "delete", "production"]));
    assert!(!on(&prod, "production"));
    support::ok(daemon.cli(&["cluster", "remove", "prod"]));
    assert!(!support::ok(daemon.cli(&["cluster", "list"])).contains("prod"));
    support::ok(daemon.cli(&["env", "delete", "staging"]));
    daemon.stop();
}
