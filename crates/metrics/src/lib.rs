//! The daemon's Prometheus metrics: every series it exports is declared here, so that names, labels and
//! cardinality are reviewed in one room. The engine, the gateway, the runtimes and the API record into them; the
//! API encodes them in the Prometheus text format at `/metrics`.
//!
//! Labels take their values from small fixed sets (operations, outcomes, kinds, phases, states, status classes,
//! forge kinds, verdicts) or name things an operator made (project, environment, service) — never a per-request,
//! per-commit or per-deployment value. A gateway series goes with its route when the environment no longer serves
//! it.
//!
//! The metrics are the process's own, as a scrape target's are: one daemon runs per process.

mod histogram;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

pub use histogram::DurationHistogram;

/// Seconds a step may take: from a recorded resource to a long build.
const STEP_BUCKETS: [f64; 14] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// Seconds until a proxied request's answer begins.
const REQUEST_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Seconds a database copy or snapshot may take: from a small seed to a large masked clone.
const DATABASE_BUCKETS: [f64; 13] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0,
];

#[derive(Clone, Copy)]
pub struct Buckets(&'static [f64]);

impl MetricConstructor<DurationHistogram> for Buckets {
    fn new_metric(&self) -> DurationHistogram {
        DurationHistogram::new(self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabels {
    /// `create`, `update`, `clone` or `delete`.
    pub operation: &'static str,
    /// `committed`, `rolled_back` or `abandoned`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// The resource kind: `space`, `secrets`, `database`, `build`, `job`, `app`, `certificate`, `route`.
    pub kind: &'static str,
    /// `apply` or `compensate`.
    pub phase: &'static str,
    /// `done`, `failed` or `cancelled`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub project: String,
    pub environment: String,
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GatewayRequestLabels {
    pub project: String,
    pub environment: String,
    pub service: String,
    /// `1xx` … `5xx`.
    pub class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `github`, `gitlab` or `gitea`; `unknown` when the project has no forge.
    pub forge: String,
    /// What became of the delivery: `accepted`, `ignored`, `duplicate` or `refused`.
    pub verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DatabaseLabels {
    /// What made the database's content: `empty`, `seed`, `clone` or `masked`.
    pub policy: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForgeLabels {
    pub forge: String,
    /// `2xx` … `5xx`, or `error` when no answer came.
    pub class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForgeKindLabels {
    pub forge: String,
}

/// Every series the daemon exports.
pub struct Metrics {
    registry: Registry,
    pub deployments: Family<DeploymentLabels, Counter>,
    pub rollbacks: Family<OperationLabels, Counter>,
    pub deployment_failures: Family<OperationLabels, Counter>,
    pub recoveries: Family<OutcomeLabels, Counter>,
    pub step_duration: Family<StepLabels, DurationHistogram, Buckets>,
    pub environments: Family<StateLabels, Gauge>,
    pub previews: Family<StateLabels, Gauge>,
    /// The routes' gateway series, encoded from the routes' own counts.
    gateway: Arc<GatewaySeries>,
    pub webhook_deliveries: Family<WebhookLabels, Counter>,
    pub database_copy: Family<DatabaseLabels, DurationHistogram, Buckets>,
    pub database_snapshot: DurationHistogram,
    pub forge_requests: Family<ForgeLabels, Counter>,
    pub forge_rate_limit_waits: Family<ForgeKindLabels, Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("preview");
        let metrics = Metrics {
            deployments: Family::default(),
            rollbacks: Family::default(),
            deployment_failures: Family::default(),
            recoveries: Family::default(),
            step_duration: Family::new_with_constructor(Buckets(&STEP_BUCKETS)),
            environments: Family::default(),
            previews: Family::default(),
            gateway: Arc::default(),
            webhook_deliveries: Family::default(),
            database_copy: Family::new_with_constructor(Buckets(&DATABASE_BUCKETS)),
            database_snapshot: DurationHistogram::new(&DATABASE_BUCKETS),
            forge_requests: Family::default(),
            forge_rate_limit_waits: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "deployments",
            "Deployments that ended (committed, rolled back or abandoned), by operation and outcome",
            metrics.deployments.clone(),
        );
        registry.register(
            "rollbacks",
            "Deployments rolled back (every started step undone), by operation",
            metrics.rollbacks.clone(),
        );
        registry.register(
            "deployment_failures",
            "Attempts to finish a deployment that could not (its rollback, or past its point of no return its completion); it is tried again later, or abandoned",
            metrics.deployment_failures.clone(),
        );
        registry.register(
            "recoveries",
            "Deployments that were under way when their daemon stopped acting for them (a crash, a stop, a pause, a lost store), finished from the journal, by how that went",
            metrics.recoveries.clone(),
        );
        registry.register_with_unit(
            "step_duration",
            "How long deployment steps took, by resource kind, phase and result",
            Unit::Seconds,
            metrics.step_duration.clone(),
        );
        registry.register(
            "environments",
            "Environments by state (read from the store at each scrape)",
            metrics.environments.clone(),
        );
        registry.register(
            "previews",
            "Pull-request previews by state (read from the store at each scrape)",
            metrics.previews.clone(),
        );
        registry.register_collector(Box::new(Arc::clone(&metrics.gateway)));
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries received, by forge and verdict",
            metrics.webhook_deliveries.clone(),
        );
        registry.register_with_unit(
            "database_copy_duration",
            "Time to give a new environment's database its content, by clone policy",
            Unit::Seconds,
            metrics.database_copy.clone(),
        );
        registry.register_with_unit(
            "database_snapshot_duration",
            "Time to build a golden snapshot of a source database",
            Unit::Seconds,
            metrics.database_snapshot.clone(),
        );
        registry.register(
            "forge_requests",
            "Calls to forges' APIs, by forge and status class",
            metrics.forge_requests.clone(),
        );
        registry.register(
            "forge_rate_limit_waits",
            "Times a forge said its rate limit ran out (the daemon waited for the reset, or gave up when it was too far)",
            metrics.forge_rate_limit_waits.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Every series in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }

    /// The series of a route, to be kept with the route: each request then counts with atomic additions only.
    /// They are exported while the route (or a request still under way on it) holds them and it is not retired.
    pub fn route_series(&self, route: RouteLabels) -> Arc<RouteSeries> {
        let series = Arc::new(RouteSeries {
            route,
            classes: Default::default(),
            latency: DurationHistogram::new(&REQUEST_BUCKETS),
            retired: AtomicBool::new(false),
        });
        if let Ok(mut handles) = self.gateway.routes.lock() {
            if handles.list.len() >= handles.prune_at {
                handles.list.retain(|series| series.strong_count() > 0);
                handles.prune_at = (2 * handles.list.len()).max(64);
            }
            handles.list.push(Arc::downgrade(&series));
        }
        series
    }

    /// Records the time a new database's content (`policy`: empty, seed, clone or masked) took to make.
    pub fn database_content_made(&self, policy: &str, took: Duration) {
        let policy = match policy {
            "empty" => "empty",
            "seed" => "seed",
            "clone" => "clone",
            "masked" => "masked",
            _ => "other",
        };
        self.database_copy
            .get_or_create(&DatabaseLabels { policy })
            .observe(took);
    }

    /// Records the time a golden snapshot took to build (`began`), when it was built.
    pub fn snapshot_built<T, E>(&self, built: &Result<T, E>, began: std::time::Instant) {
        if built.is_ok() {
            self.database_snapshot.observe(began.elapsed());
        }
    }

    /// Sets a gauge family's values to `counts` (state → number); the caller passes every state, 0 included, so
    /// that a state nothing is in any more reads 0 rather than its last count.
    pub fn set_states(family: &Family<StateLabels, Gauge>, counts: &[(String, i64)]) {
        for (state, count) in counts {
            family
                .get_or_create(&StateLabels {
                    state: state.clone(),
                })
                .set(*count);
        }
    }
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// A route's gateway series: its own counts, kept with the route, so that counting a request looks nothing up and
/// takes no lock. A route that goes retires its series; a route of the same name made later has series of its own,
/// which nothing a request of the old one does can touch.
pub struct RouteSeries {
    route: RouteLabels,
    /// Requests by status class (`CLASSES`).
    classes: [AtomicU64; 5],
    latency: DurationHistogram,
    /// The route is gone: its series are no longer exported, and a request still under way does not count.
    retired: AtomicBool,
}

impl std::fmt::Debug for RouteSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteSeries")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

/// Two handles on the same route's series are the same.
impl PartialEq for RouteSeries {
    fn eq(&self, other: &RouteSeries) -> bool {
        self.route == other.route
    }
}

impl Eq for RouteSeries {}

impl RouteSeries {
    /// Counts a request forwarded to the route, answered with `status` after `took` (until its answer began).
    pub fn record(&self, status: u16, took: Duration) {
        if self.retired.load(Ordering::Acquire) {
            return;
        }
        let class = status_class(status);
        let index = CLASSES.iter().position(|c| *c == class).unwrap_or(4);
        self.classes[index].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(took);
    }

    /// The route no longer serves: its series are no longer exported, for good.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }
}

// (Ending with a full stop, as the registry writes the help of the series registered with it.)
const REQUESTS_HELP: &str = "Requests the gateway forwarded to an environment, by project, environment, service and status class.";
const LATENCY_HELP: &str =
    "Time until the answer to a forwarded request began, by project, environment and service.";

/// The series of every route, as handles that do not keep a route's series alive.
#[derive(Debug, Default)]
struct GatewaySeries {
    routes: Mutex<Handles>,
}

#[derive(Debug, Default)]
struct Handles {
    list: Vec<Weak<RouteSeries>>,
    /// The list's length at which the handles of series nothing holds are dropped next: twice its length after the
    /// last time, so that making series for a whole route table costs time in proportion to it.
    prune_at: usize,
}

impl Collector for GatewaySeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let live: Vec<Arc<RouteSeries>> = match self.routes.lock() {
            Ok(handles) => handles
                .list
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|series| !series.retired.load(Ordering::Acquire))
                .collect(),
            Err(_) => Vec::new(),
        };
        let counted: Vec<(&RouteSeries, &'static str, u64)> = live
            .iter()
            .flat_map(|series| {
                CLASSES
                    .iter()
                    .zip(&series.classes)
                    .filter_map(|(class, count)| {
                        let count = count.load(Ordering::Relaxed);
                        (count > 0).then_some((series.as_ref(), *class, count))
                    })
            })
            .collect();
        if !counted.is_empty() {
            let mut family = encoder.encode_descriptor(
                "gateway_requests",
                REQUESTS_HELP,
                None,
                MetricType::Counter,
            )?;
            for (series, class, count) in counted {
                let labels = GatewayRequestLabels {
                    project: series.route.project.clone(),
                    environment: series.route.environment.clone(),
                    service: series.route.service.clone(),
                    class,
                };
                ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
            }
        }
        let timed: Vec<&RouteSeries> = live
            .iter()
            .map(Arc::as_ref)
            .filter(|series| series.latency.count() > 0)
            .collect();
        if !timed.is_empty() {
            let mut family = encoder.encode_descriptor(
                "gateway_request_duration",
                LATENCY_HELP,
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for series in timed {
                series
                    .latency
                    .encode(family.encode_family(&series.route)?)?;
            }
        }
        Ok(())
    }
}

/// `404` → `4xx`.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_encoded_with_their_labels_and_retired_routes_leave() {
        let metrics = Metrics::new();
        metrics
            .deployments
            .get_or_create(&DeploymentLabels {
                operation: "create",
                outcome: "committed",
            })
            .inc();
        let route = RouteLabels {
            project: "shop".into(),
            environment: "pr-7".into(),
            service: "web".into(),
        };
        let series = metrics.route_series(route.clone());
        series.record(503, Duration::from_millis(3));
        let text = metrics.encode();
        assert!(
            text.contains(
                "preview_deployments_total{operation=\"create\",outcome=\"committed\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains(
            "preview_gateway_requests_total{project=\"shop\",environment=\"pr-7\",service=\"web\",class=\"5xx\"} 1"
        ), "{text}");
        assert!(
            !text.contains("class=\"2xx\""),
            "a class nothing was answered with is not there: {text}"
        );
        assert!(text.contains(
            "preview_gateway_request_duration_seconds_bucket{le=\"0.005\",project=\"shop\",environment=\"pr-7\",service=\"web\"} 1"
        ), "{text}");
        assert!(
            text.contains("# TYPE preview_gateway_requests counter"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE preview_gateway_request_duration_seconds histogram"),
            "{text}"
        );
        // The same help, full stop included, as when the series were registered ones.
        assert!(
            text.contains(&format!(
                "# HELP preview_gateway_requests {REQUESTS_HELP}\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "# HELP preview_gateway_request_duration_seconds {LATENCY_HELP}\n"
            )),
            "{text}"
        );
        assert!(REQUESTS_HELP.ends_with('.') && LATENCY_HELP.ends_with('.'));
        assert!(
            text.contains("# UNIT preview_gateway_request_duration_seconds seconds"),
            "{text}"
        );
        series.retire();
        assert!(!metrics.encode().contains("pr-7"));
        // A request that was under way when the route went does not bring its series back.
        series.record(200, Duration::from_millis(1));
        assert!(!metrics.encode().contains("pr-7"));
        // The route back under the same name: series of its own, which the old route's late requests leave alone.
        let again = metrics.route_series(route.clone());
        again.record(200, Duration::from_millis(1));
        series.record(200, Duration::from_millis(1));
        series.retire();
        again.record(200, Duration::from_millis(1));
        let text = metrics.encode();
        assert!(text.contains(
            "preview_gateway_requests_total{project=\"shop\",environment=\"pr-7\",service=\"web\",class=\"2xx\"} 2"
        ), "{text}");
        assert!(!text.contains("class=\"5xx\""), "{text}");
        // Series nothing holds any more go too.
        drop(again);
        assert!(!metrics.encode().contains("pr-7"));
    }

    #[test]
    fn status_classes() {
        for (status, class) in [
            (101, "1xx"),
            (200, "2xx"),
            (304, "3xx"),
            (404, "4xx"),
            (502, "5xx"),
        ] {
            assert_eq!(status_class(status), class);
        }
    }
}
