//! Starting, cancelling and stopping deployments; the engine's configuration and errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use preview_plan::{Plan, Resource, plan_deployment};
use preview_store::{
    DeploymentRecord, DeploymentStatus, Lease, Operation, PlanningBase, StartTerms, Store,
    StoreError,
};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use crate::ids::{Clock, new_deployment_id, random_hex};
use crate::lease::{Held, hold};
use crate::runtime::{EnvironmentAddress, Runtime};
use crate::steps::{Control, Journal, StepContext};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How many independent steps run at once.
    pub parallelism: usize,
    /// How long one runtime operation may take before the step fails.
    pub step_timeout: Duration,
    /// How long a lease lasts without renewal; a deployment renews it at a third of this, and stops acting once
    /// three quarters of it passed without a renewal.
    pub lease_ttl: Duration,
    /// How often a step past the point of no return is tried within its deployment before the deployment is left
    /// to be retried later.
    pub forward_attempts: u32,
    /// The first wait before a step is tried again, or a deployment that could not finish; it doubles each time.
    pub retry_delay: Duration,
    /// The longest wait before a deployment that could not finish is tried again.
    pub max_retry_delay: Duration,
    /// This daemon's wall clock, for the times it writes.
    pub clock: Clock,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            parallelism: 4,
            step_timeout: Duration::from_secs(600),
            lease_ttl: Duration::from_secs(30),
            forward_attempts: 4,
            retry_delay: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(3600),
            clock: Clock::default(),
        }
    }
}

/// A change to one environment: make it match `desired` (empty for a delete).
#[derive(Debug, Clone)]
pub struct DeploymentRequest {
    pub project: String,
    pub environment: String,
    pub operation: Operation,
    pub based_on: Option<String>,
    pub desired: Vec<Resource>,
    /// The commit the desired resources build from, and what the environment follows once this is committed.
    pub source_commit: Option<String>,
    pub follows: Option<String>,
    /// For a deletion: keep the variables and secrets scoped to the environment.
    pub keep_settings: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{}", busy_message(environment, deployment, *stuck))]
    Busy {
        environment: String,
        deployment: String,
        /// It could not finish and waits for a retry.
        stuck: bool,
    },
    #[error(
        "environment `{environment}` already exists; `preview deploy {environment}` updates it"
    )]
    Exists { environment: String },
    #[error("environment `{environment}` does not exist")]
    Missing { environment: String },
    #[error(
        "environment `{environment}` runs on the machine of daemon `{owner}`: only that daemon can change it; send the request to it"
    )]
    Owned { environment: String, owner: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
}

fn busy_message(environment: &str, deployment: &str, stuck: bool) -> String {
    if stuck {
        format!(
            "environment `{environment}` is busy: deployment {deployment} could not finish and is tried again later (`preview deployment show {deployment}` says why); give up on it with `preview deployment abandon {deployment}`"
        )
    } else {
        format!(
            "environment `{environment}` is busy: deployment {deployment} is running; wait for it, or cancel it with `preview deploy cancel {environment}`"
        )
    }
}

impl From<StoreError> for EngineError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Busy {
                environment,
                deployment,
                stuck,
            } => EngineError::Busy {
                environment,
                deployment,
                stuck,
            },
            StoreError::Owned { environment, owner } => EngineError::Owned { environment, owner },
            other => EngineError::Store(other),
        }
    }
}

pub struct Engine {
    pub(crate) store: Arc<Store>,
    pub(crate) runtime: Arc<dyn Runtime>,
    /// This daemon's id: the same after a restart with the same data.
    pub(crate) daemon: String,
    /// Who acts in leases: the daemon's id and a nonce of this start (`daemon-…/…`).
    pub(crate) holder: String,
    pub(crate) config: EngineConfig,
    /// What each deployment this process acts for is told; present from before its lease is taken until after
    /// its end is recorded, so that this daemon's own recovery never takes one of them over.
    running: Mutex<HashMap<String, watch::Sender<Control>>>,
    stopping: std::sync::atomic::AtomicBool,
}

impl Engine {
    pub fn new(
        store: Arc<Store>,
        runtime: Arc<dyn Runtime>,
        daemon: &str,
        config: EngineConfig,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            store,
            runtime,
            daemon: daemon.to_owned(),
            holder: format!("{daemon}/{}", random_hex(4)),
            config,
            running: Mutex::new(HashMap::new()),
            stopping: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Who this daemon is in leases (`daemon-…/…`).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn lease_ttl(&self) -> Duration {
        self.config.lease_ttl
    }

    /// The daemon whose machine the environments of this engine's runtime live on, if they live on one.
    fn owner(&self) -> Option<String> {
        (!self.runtime.shared()).then(|| self.daemon.clone())
    }

    /// The plan that would move the environment from its recorded state to `desired`.
    pub async fn plan(
        &self,
        project: &str,
        environment: &str,
        desired: &[Resource],
    ) -> Result<Plan, EngineError> {
        let recorded = self.store.recorded_state(project, environment).await?;
        Ok(plan_deployment(environment, desired, &recorded))
    }

    /// Plans against the environment's recorded state and starts the deployment in the background, its lease
    /// taken only if no deployment committed since the state was read (else it plans again). Refused with
    /// [`EngineError::Busy`] while another deployment holds the environment. The handle resolves to the finished
    /// record.
    pub async fn start(
        self: &Arc<Self>,
        request: DeploymentRequest,
    ) -> Result<(DeploymentRecord, tokio::task::JoinHandle<DeploymentRecord>), EngineError> {
        if self.stopping() {
            return Err(EngineError::Conflict(
                "the daemon is stopping; send the request again once it runs".to_owned(),
            ));
        }
        for _ in 0..16 {
            let base = self
                .store
                .planning_base(&request.project, &request.environment)
                .await?;
            expect(&request, &base)?;
            let plan = plan_deployment(&request.environment, &request.desired, &base.recorded);
            let record = DeploymentRecord {
                id: new_deployment_id(),
                project: request.project.clone(),
                environment: request.environment.clone(),
                operation: request.operation,
                based_on: request.based_on.clone(),
                source_commit: request.source_commit.clone(),
                follows: request.follows.clone(),
                keep_settings: request.keep_settings,
                status: DeploymentStatus::Running,
                reason: None,
                plan,
                holder: self.holder.clone(),
                owner: self.owner(),
                attempts: 0,
                last_error: None,
                retry_at: None,
                created_at: 0,
                finished_at: None,
            };
            let control = self.register(&record.id);
            let sent = Instant::now();
            let terms = StartTerms {
                revision: base.revision,
                lease_ttl_ms: self.config.lease_ttl.as_millis() as i64,
                daemon: self.daemon.clone(),
            };
            match self.store.start_deployment(&record, &terms).await {
                Ok(lease) => {
                    let record = self
                        .store
                        .deployment(&record.id)
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or(record);
                    let held = self.hold(lease, sent);
                    let engine = Arc::clone(self);
                    let started = record.clone();
                    let span = crate::run::deployment_span(&started);
                    let handle = tokio::spawn(
                        engine
                            .run(started, base.recorded, control, held)
                            .instrument(span),
                    );
                    return Ok((record, handle));
                }
                Err(StoreError::Stale { .. }) => self.unregister(&record.id),
                Err(error) => {
                    self.unregister(&record.id);
                    return Err(error.into());
                }
            }
        }
        Err(EngineError::Conflict(format!(
            "environment `{}` kept changing while its plan was made; try again",
            request.environment
        )))
    }

    /// Asks a deployment this daemon runs to stop and roll back (past its point of no return it completes
    /// instead). `false` if it is not running here.
    pub fn cancel(&self, deployment: &str) -> bool {
        self.signal(deployment, Control::Cancel)
    }

    /// Stops acting for every deployment this daemon runs, before the daemon exits: what their steps started is
    /// stopped, nothing is undone or finished — the next start (or another daemon) finishes each from its journal.
    /// Returns the ids it stopped, once they all stopped (or after `patience`).
    pub async fn shutdown(&self, patience: Duration) -> Vec<String> {
        {
            // Under the lock that registering takes: a deployment registered from now on starts halted.
            let _running = self.running.lock();
            self.stopping
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let ids: Vec<String> = self.running_ids();
        for id in &ids {
            self.signal(
                id,
                Control::Halt("the daemon is stopping; the deployment is finished from its journal when a daemon starts again".to_owned()),
            );
        }
        let deadline = Instant::now() + patience;
        while !self.running_ids().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ids
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn running_ids(&self) -> Vec<String> {
        self.running
            .lock()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Tells a deployment this process acts for what to do; `false` if it acts for no such deployment. A halt is
    /// final: nothing replaces it.
    pub(crate) fn signal(&self, deployment: &str, control: Control) -> bool {
        let Ok(running) = self.running.lock() else {
            return false;
        };
        let Some(switch) = running.get(deployment) else {
            return false;
        };
        switch.send_if_modified(|current| {
            if matches!(current, Control::Halt(_)) || *current == control {
                return false;
            }
            *current = control;
            true
        });
        true
    }

    /// Marks a deployment as acted for by this process; `None` if it already is.
    pub(crate) fn try_register(&self, deployment: &str) -> Option<watch::Receiver<Control>> {
        let mut running = self.running.lock().ok()?;
        if running.contains_key(deployment) {
            return None;
        }
        let initial = if self.stopping() {
            Control::Halt(
                "the daemon is stopping; the deployment is finished from its journal when a daemon starts again"
                    .to_owned(),
            )
        } else {
            Control::Go
        };
        let (sender, receiver) = watch::channel(initial);
        running.insert(deployment.to_owned(), sender);
        Some(receiver)
    }

    fn register(&self, deployment: &str) -> watch::Receiver<Control> {
        self.try_register(deployment)
            .unwrap_or_else(|| watch::channel(Control::Go).1)
    }

    pub(crate) fn unregister(&self, deployment: &str) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(deployment);
        }
    }

    /// Keeps `lease` (taken by a request sent at `sent`) while the deployment runs; a lost lease halts it.
    pub(crate) fn hold(self: &Arc<Self>, lease: Lease, sent: Instant) -> Held {
        let engine: Weak<Engine> = Arc::downgrade(self);
        let deployment = lease.deployment.clone();
        hold(
            Arc::clone(&self.store),
            lease,
            self.config.lease_ttl,
            sent,
            move |reason| {
                if let Some(engine) = engine.upgrade() {
                    engine.signal(&deployment, Control::Halt(reason));
                }
            },
        )
    }

    pub(crate) fn context(
        &self,
        record: &DeploymentRecord,
        held: &Held,
        next_seq: i64,
        control: watch::Receiver<Control>,
    ) -> StepContext {
        StepContext {
            runtime: Arc::clone(&self.runtime),
            env: EnvironmentAddress {
                project: record.project.clone(),
                environment: record.environment.clone(),
            },
            journal: Journal::new(
                Arc::clone(&self.store),
                held.lease.clone(),
                next_seq,
                self.config.clock,
            ),
            timeout: self.config.step_timeout,
            fence: Arc::clone(&held.fence),
            control,
        }
    }

    /// How long to wait before a deployment that could not finish `attempts` times is tried again.
    pub(crate) fn retry_in(&self, attempts: i64) -> Duration {
        let doubled = self
            .config
            .retry_delay
            .saturating_mul(2u32.saturating_pow(attempts.clamp(0, 30) as u32));
        doubled.min(self.config.max_retry_delay)
    }
}

/// A create or clone makes an environment that does not exist; an update or delete needs one that does.
fn expect(request: &DeploymentRequest, base: &PlanningBase) -> Result<(), EngineError> {
    let environment = request.environment.clone();
    match (request.operation, &base.environment) {
        (Operation::Create | Operation::Clone, Some(_)) => Err(EngineError::Exists { environment }),
        (Operation::Update | Operation::Delete, None) => Err(EngineError::Missing { environment }),
        _ => Ok(()),
    }
}
