//! Rendering and applying a 10-service environment (10 apps with ports, health checks and variables, a database, a
//! migration job, public routes, a certificate): requests sent, bytes sent, and the time to render, to dry-run the
//! whole environment and to write every object — readiness excluded, shown apart. Against the fake API server on
//! loopback, and against a real cluster when `PREVIEW_TEST_KUBECONFIG` names one. Target: every object of the
//! environment written in under 1 s on a loopback API server. Prints a table; run with
//! `cargo bench -p preview-kubernetes --bench apply` (or `scripts/bench-kubernetes`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use preview_deploy::{EnvironmentAddress, Runtime, RuntimeError, SecretSource, StepLog};
use preview_kubernetes::{ClusterConfig, KubernetesOptions, KubernetesRuntime, render_redacted};
use preview_plan::{Resource, desired_state};
use preview_testing::kubernetes::ApiServer;

const RUNS: usize = 5;

struct Secrets;

#[async_trait::async_trait]
impl SecretSource for Secrets {
    async fn reveal(
        &self,
        _: &EnvironmentAddress,
        name: &str,
        _: &str,
    ) -> Result<preview_secrets::Secret, RuntimeError> {
        Ok(preview_secrets::Secret::new(format!(
            "bench-value-of-{name}"
        )))
    }
}

fn spec(replicas: u32) -> String {
    let mut spec = String::from(
        "project: bench\nruntime: kubernetes\nlimits: { cpu: 16, memory: 16Gi }\ndomain: { base: bench.example.com }\nsecrets: [API_KEY]\nservices:\n  db:\n    type: database\n    engine: postgres\n    version: 16\n    mode: container\n  migrate:\n    type: job\n    hook: migrate\n    command: ./migrate\n    image: registry.example/bench/migrate:1\n    depends_on: [db]\n",
    );
    for i in 0..10 {
        spec.push_str(&format!(
            "  app{i}:\n    image: registry.example/bench/app{i}:{{commit}}\n    ports: [{{ name: http, port: 8080 }}]\n    health: {{ http: /healthz }}\n    replicas: {replicas}\n    public: {}\n    resources: {{ cpu: 100m, memory: 64Mi }}\n    depends_on: [db, migrate]\n    variables: {{ APP_INDEX: \"{i}\", DATABASE_URL: \"${{{{ services.db.url }}}}\", KEY: \"${{{{ secrets.API_KEY }}}}\" }}\n",
            i < 3
        ));
    }
    spec.push_str("environments:\n  staging: {}\n");
    spec
}

fn resources(replicas: u32) -> Vec<Resource> {
    let spec =
        preview_spec::parse_spec("bench.yaml", &spec(replicas)).unwrap_or_else(|e| panic!("{e}"));
    let context = preview_resolve::Context {
        source: Some(preview_resolve::SourceCommit {
            repository: "/srv/bench".into(),
            directory: ".".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
        }),
        ..Default::default()
    };
    let resolved =
        preview_resolve::resolve_environment(&spec, &spec.environments["staging"], &context)
            .unwrap_or_else(|e| panic!("{e:?}"));
    let mut resources = desired_state(&resolved, &Default::default());
    resources.sort_by_key(|r| (r.kind.level(), r.id.clone()));
    resources
}

/// A kind of deployment, its runs, and the traffic (requests, bytes) of each.
type Measured<'a> = (&'a str, Vec<Row>, Vec<(usize, usize)>);

#[derive(Default, Clone, Copy)]
struct Row {
    render: Duration,
    preflight: Duration,
    write: Duration,
    ready: Duration,
    objects: usize,
}

/// `N objects written in M ms` and `ready in M ms` from a step's log.
fn timings(lines: &[String]) -> (usize, Duration, Duration) {
    let mut found = (0, Duration::ZERO, Duration::ZERO);
    for line in lines {
        let number = |text: &str| text.parse::<u64>().unwrap_or(0);
        if let Some(rest) = line.strip_suffix(" ms") {
            if let Some((objects, ms)) = rest.split_once(" objects written in ") {
                found.0 += number(objects) as usize;
                found.1 += Duration::from_millis(number(ms));
            } else if let Some(ms) = rest.strip_prefix("ready in ") {
                found.2 += Duration::from_millis(number(ms));
            }
        }
    }
    found
}

async fn deploy(
    runtime: &KubernetesRuntime,
    env: &EnvironmentAddress,
    resources: &[Resource],
) -> Row {
    let started = Instant::now();
    render_redacted(env, None, resources, &Default::default()).expect("renders");
    let render = started.elapsed();
    let started = Instant::now();
    runtime.preflight(env, resources).await.expect("pre-flight");
    let preflight = started.elapsed();
    let mut row = Row {
        render,
        preflight,
        objects: 0,
        ..Row::default()
    };
    for resource in resources {
        let log = StepLog::default();
        runtime
            .apply(env, resource, &log)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", resource.id));
        let (objects, write, ready) = timings(&log.lines());
        row.objects += objects;
        row.write += write;
        row.ready += ready;
    }

    row
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

async fn connect(kubeconfig: PathBuf) -> KubernetesRuntime {
    let options = KubernetesOptions {
        cluster: ClusterConfig {
            kubeconfig: Some(kubeconfig),
            ..ClusterConfig::default()
        },
        inventory_namespace: "preview-bench".into(),
        ready_timeout: Duration::from_secs(300),
        ..KubernetesOptions::default()
    };
    let issuer = |_: &[String]| {
        Ok((
            "-----BEGIN CERTIFICATE-----".to_owned(),
            preview_secrets::Secret::new("key".into()),
        ))
    };
    KubernetesRuntime::connect(options, Arc::new(Secrets), Arc::new(issuer))
        .await
        .expect("connects")
}

async fn measure(name: &str, runtime: &KubernetesRuntime, api: Option<&ApiServer>) {
    let created = resources(1);
    let changed = resources(2);
    let mut rows: Vec<Measured<'_>> = vec![
        ("create", vec![], vec![]),
        ("update (replicas)", vec![], vec![]),
        ("unchanged", vec![], vec![]),
    ];
    for run in 0..RUNS {
        let env = EnvironmentAddress {
            project: "bench".into(),
            environment: format!("run{run}"),
        };
        for (i, state) in [&created, &changed, &changed].into_iter().enumerate() {
            if let Some(api) = api {
                api.clear_requests();
            }
            let row = deploy(runtime, &env, state).await;
            // A new environment writes every object (a build has none); a change writes only its resources'.
            if i == 0 {
                let all = render_redacted(&env, None, state, &Default::default())
                    .expect("renders")
                    .len();
                assert_eq!(row.objects, all, "every object written");
            }
            let traffic = api.map_or((0, 0), |api| {
                // The database's data is made through port forwards: a stream, not an object written.
                let requests: Vec<_> = api
                    .requests()
                    .into_iter()
                    .filter(|r| !r.path.ends_with("/portforward"))
                    .collect();
                let bytes = requests
                    .iter()
                    .map(|r| r.json().map_or(0, |b| b.to_string().len()))
                    .sum();
                (requests.len(), bytes)
            });
            rows[i].1.push(row);
            rows[i].2.push(traffic);
        }
        for resource in created.iter().rev() {
            let _ = runtime
                .remove(&env, &resource.id, resource.kind, &StepLog::default())
                .await;
        }
    }
    for (label, runs, traffic) in rows {
        let pick = |f: fn(&Row) -> Duration| ms(median(runs.iter().map(f).collect()));
        let (requests, bytes) = traffic[traffic.len() / 2];
        let requests = if api.is_some() {
            requests.to_string()
        } else {
            "-".to_owned()
        };
        let bytes = if api.is_some() {
            format!("{:.1}", bytes as f64 / 1024.0)
        } else {
            "-".to_owned()
        };
        println!(
            "| {name} | {label} | {} | {requests} | {bytes} | {} | {} | {} | {} | {} |",
            runs[0].objects,
            pick(|r| r.render),
            pick(|r| r.preflight),
            pick(|r| r.write),
            ms(median(runs.iter().map(|r| r.preflight + r.write).collect())),
            pick(|r| r.ready),
        );
    }
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(async {
        println!("10 apps, a database, a job, 3 public routes and a certificate; median of {RUNS} runs; times in ms");
        println!();
        println!("| cluster | deployment | objects | requests | KiB sent | render | dry run | write | dry run + write (target < 1000) | readiness |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        let api = ApiServer::start().await;
        let _databases = api.serve_postgres_pods();
        let dir = preview_testing::TempDir::new("bench-kubernetes");
        let kubeconfig = dir.path().join("kubeconfig");
        api.kubeconfig(&kubeconfig).expect("kubeconfig");
        let runtime = connect(kubeconfig).await;
        measure("loopback API server", &runtime, Some(&api)).await;
        match std::env::var_os("PREVIEW_TEST_KUBECONFIG") {
            Some(path) => {
                let runtime = connect(PathBuf::from(path)).await;
                measure("PREVIEW_TEST_KUBECONFIG", &runtime, None).await;
            }
            None => println!("\n(no real cluster: PREVIEW_TEST_KUBECONFIG is not set, so that row is skipped)"),
        }
    });
}
