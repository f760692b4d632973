//! How long planning one 20-service environment takes with 1,000 environments in the store (target: under
//! 10 ms). Prints a table; run with `cargo bench -p preview-deploy --bench plan`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use preview_deploy::{Engine, EngineConfig, RecordingRuntime};
use preview_plan::{Plan, Resource, desired_state, plan_deployment};
use preview_store::{DeploymentRecord, DeploymentStatus, Operation, Outcome, StartTerms, Store};

const ENVIRONMENTS: usize = 1_000;
const ITERATIONS: usize = 300;

/// A project of 20 services: 14 apps in a dependency chain, 3 databases, 3 jobs.
fn spec(variant: &str) -> String {
    let mut spec = String::from("project: bench\ndomain: { base: bench.localhost }\nservices:\n");
    for i in 0..3 {
        spec.push_str(&format!(
            "  db{i}:\n    type: database\n    engine: postgres\n    version: 16\n"
        ));
    }
    for i in 0..3 {
        spec.push_str(&format!("  job{i}:\n    type: job\n    hook: migrate\n    command: ./migrate {i}\n    depends_on: [db{i}]\n"));
    }
    for i in 0..14 {
        let depends = if i == 0 {
            "[db0, job0]".to_owned()
        } else {
            format!("[app{}, db{}]", i - 1, i % 3)
        };
        spec.push_str(&format!(
            "  app{i}:\n    run: ./app{i} --mode {variant}\n    ports: [8080]\n    public: {}\n    health: {{ http: /healthz }}\n    depends_on: {depends}\n    variables: {{ APP_INDEX: \"{i}\", DB_URL: \"${{{{ services.db{}.url }}}}\" }}\n",
            i % 2 == 0,
            i % 3
        ));
    }
    spec.push_str("environments:\n  staging: {}\n");
    spec
}

fn resources(variant: &str) -> Vec<Resource> {
    let spec = preview_spec::parse_spec("bench.yaml", &spec(variant)).expect("valid bench spec");
    desired_state(
        &preview_resolve::resolve_environment(
            &spec,
            &spec.environments["staging"],
            &preview_resolve::Context::default(),
        )
        .unwrap_or_else(|e| panic!("{e:?}")),
        &Default::default(),
    )
}

async fn fill(store: &Store, state: &[Resource]) {
    for i in 0..ENVIRONMENTS {
        let record = DeploymentRecord {
            id: format!("seed{i:05}"),
            project: "bench".into(),
            environment: format!("env-{i:04}"),
            operation: Operation::Create,
            based_on: None,
            source_commit: None,
            follows: None,
            keep_settings: false,
            status: DeploymentStatus::Running,
            reason: None,
            plan: Plan {
                environment: String::new(),
                steps: vec![],
                point_of_no_return: None,
            },
            holder: "bench/1".into(),
            owner: None,
            attempts: 0,
            last_error: None,
            retry_at: None,
            created_at: 0,
            finished_at: None,
        };
        let terms = StartTerms {
            revision: 0,
            lease_ttl_ms: 3_600_000,
            daemon: "bench".into(),
        };
        let lease = store
            .start_deployment(&record, &terms)
            .await
            .expect("start");
        store
            .finish_deployment(
                &lease,
                &record,
                &Outcome::Committed {
                    state: state.to_vec(),
                },
            )
            .await
            .expect("commit");
    }
}

struct Row {
    case: &'static str,
    samples: Vec<Duration>,
    steps: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = std::env::temp_dir().join(format!("preview-bench-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let store = Arc::new(
        Store::open_sqlite(&dir.join("preview.db"))
            .await
            .expect("store"),
    );
    let current = resources("a");
    let changed = resources("b");
    let filling = Instant::now();
    fill(&store, &current).await;
    eprintln!(
        "stored {ENVIRONMENTS} environments of {} resources each in {:.1} s",
        current.len(),
        filling.elapsed().as_secs_f64()
    );
    let engine = Engine::new(
        Arc::clone(&store),
        Arc::new(RecordingRuntime::in_memory()),
        "bench",
        EngineConfig::default(),
    );
    let mut rows = Vec::new();
    for (case, environment, desired) in [
        ("unchanged environment (empty plan)", "env-0500", &current),
        ("every app changed (update plan)", "env-0500", &changed),
        ("new environment (create plan)", "env-new", &current),
    ] {
        let mut samples = Vec::with_capacity(ITERATIONS);
        let mut steps = 0;
        for _ in 0..ITERATIONS {
            let started = Instant::now();
            let plan = engine
                .plan("bench", environment, desired)
                .await
                .expect("plan");
            samples.push(started.elapsed());
            steps = plan.steps.len();
        }
        rows.push(Row {
            case,
            samples,
            steps,
        });
    }
    let recorded = store
        .recorded_state("bench", "env-0500")
        .await
        .expect("recorded");
    let mut samples = Vec::with_capacity(ITERATIONS);
    let mut steps = 0;
    for _ in 0..ITERATIONS {
        let started = Instant::now();
        steps = plan_deployment("env-0500", &changed, &recorded).steps.len();
        samples.push(started.elapsed());
    }
    rows.push(Row {
        case: "diff alone, no store read (update plan)",
        samples,
        steps,
    });

    println!(
        "\nplan one 20-service environment ({} resources) with {ENVIRONMENTS} environments in the SQLite store",
        current.len()
    );
    println!("{ITERATIONS} iterations each; times in milliseconds; target: under 10 ms\n");
    println!("| case | steps | median | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for mut row in rows {
        row.samples.sort();
        println!(
            "| {} | {} | {} | {} | {} |",
            row.case,
            row.steps,
            ms(percentile(&row.samples, 0.5)),
            ms(percentile(&row.samples, 0.99)),
            ms(*row.samples.last().expect("samples"))
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
