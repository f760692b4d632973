//! Starting, running, cancelling and finishing deployments.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use preview_plan::{Plan, Resource, plan_deployment};
use preview_store::{DeploymentRecord, DeploymentStatus, Operation, Outcome, Store, StoreError};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::ids::{new_deployment_id, now_ms};
use crate::runtime::{EnvironmentAddress, Runtime};
use crate::steps::{Journal, StepContext, apply_step, compensate, verify};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How many independent steps run at once.
    pub parallelism: usize,
    /// How long one runtime operation may take before the step fails.
    pub step_timeout: Duration,
    /// How long a lease lasts without renewal; a deployment renews it at a third of this.
    pub lease_ttl: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            parallelism: 4,
            step_timeout: Duration::from_secs(600),
            lease_ttl: Duration::from_secs(30),
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
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "environment `{environment}` is busy: deployment {deployment} is running; wait for it, or cancel it with `preview deploy cancel {environment}`"
    )]
    Busy {
        environment: String,
        deployment: String,
    },
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for EngineError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Busy {
                environment,
                deployment,
            } => EngineError::Busy {
                environment,
                deployment,
            },
            other => EngineError::Store(other),
        }
    }
}

pub struct Engine {
    pub(crate) store: Arc<Store>,
    pub(crate) runtime: Arc<dyn Runtime>,
    /// This daemon's identity in leases; the same after a restart with the same data.
    pub(crate) holder: String,
    pub(crate) config: EngineConfig,
    /// Cancel switches of the deployments this daemon is running.
    running: Mutex<HashMap<String, watch::Sender<bool>>>,
}

impl Engine {
    pub fn new(
        store: Arc<Store>,
        runtime: Arc<dyn Runtime>,
        holder: &str,
        config: EngineConfig,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            store,
            runtime,
            holder: holder.to_owned(),
            config,
            running: Mutex::new(HashMap::new()),
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
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

    /// Takes the environment's lease, records the deployment and runs it in the background. Refused with
    /// [`EngineError::Busy`] while another deployment holds the environment. The handle resolves to the finished
    /// record.
    pub async fn start(
        self: &Arc<Self>,
        request: DeploymentRequest,
    ) -> Result<(DeploymentRecord, tokio::task::JoinHandle<DeploymentRecord>), EngineError> {
        let recorded = self
            .store
            .recorded_state(&request.project, &request.environment)
            .await?;
        let plan = plan_deployment(&request.environment, &request.desired, &recorded);
        let now = now_ms();
        let record = DeploymentRecord {
            id: new_deployment_id(),
            project: request.project,
            environment: request.environment,
            operation: request.operation,
            based_on: request.based_on,
            status: DeploymentStatus::Running,
            reason: None,
            plan,
            holder: self.holder.clone(),
            created_at: now,
            finished_at: None,
        };
        self.store
            .start_deployment(&record, now + self.config.lease_ttl.as_millis() as i64, now)
            .await?;
        let (cancel, cancelled) = watch::channel(false);
        if let Ok(mut running) = self.running.lock() {
            running.insert(record.id.clone(), cancel);
        }
        let engine = Arc::clone(self);
        let started = record.clone();
        let handle = tokio::spawn(async move { engine.run(started, recorded, cancelled).await });
        Ok((record, handle))
    }

    /// Asks a deployment this daemon runs to stop and roll back. `false` if it is not running here.
    pub fn cancel(&self, deployment: &str) -> bool {
        let running = self
            .running
            .lock()
            .map(|r| r.get(deployment).cloned())
            .ok()
            .flatten();
        running.is_some_and(|switch| switch.send(true).is_ok())
    }

    pub(crate) fn is_running(&self, deployment: &str) -> bool {
        self.running
            .lock()
            .map(|r| r.contains_key(deployment))
            .unwrap_or(false)
    }

    pub fn lease_ttl(&self) -> Duration {
        self.config.lease_ttl
    }

    pub(crate) fn context(&self, record: &DeploymentRecord, next_seq: i64) -> StepContext {
        StepContext {
            runtime: Arc::clone(&self.runtime),
            env: EnvironmentAddress {
                project: record.project.clone(),
                environment: record.environment.clone(),
            },
            journal: Journal::new(Arc::clone(&self.store), &record.id, next_seq),
            timeout: self.config.step_timeout,
        }
    }

    async fn run(
        self: Arc<Self>,
        record: DeploymentRecord,
        recorded: Vec<Resource>,
        cancel: watch::Receiver<bool>,
    ) -> DeploymentRecord {
        let context = Arc::new(self.context(&record, 0));
        let heartbeat = self.keep_lease(&record.id);
        let outcome = match self.apply_all(&context, &record.plan, cancel).await {
            Ok(()) => self.commit_or_undo(&context, &record, &recorded).await,
            Err(reason) => self.undo(&context, &record, reason).await,
        };
        heartbeat.abort();
        self.end(&record, outcome).await
    }

    /// Runs the plan's steps, each as soon as the steps it waits for are done, at most `parallelism` at once.
    /// Stops starting steps at the first failure or a cancel, and lets the running ones end.
    async fn apply_all(
        &self,
        context: &Arc<StepContext>,
        plan: &Plan,
        cancel: watch::Receiver<bool>,
    ) -> Result<(), String> {
        let total = plan.steps.len();
        let mut done = vec![false; total];
        let mut started = vec![false; total];
        let mut running: JoinSet<(usize, Result<(), String>)> = JoinSet::new();
        let mut failure: Option<String> = None;
        let mut watch_cancel = cancel.clone();
        loop {
            if failure.is_none() {
                for step in &plan.steps {
                    if running.len() >= self.config.parallelism.max(1) {
                        break;
                    }
                    if !started[step.index] && step.after_steps.iter().all(|&d| done[d]) {
                        started[step.index] = true;
                        let (context, step, cancel) =
                            (Arc::clone(context), step.clone(), cancel.clone());
                        running.spawn(async move {
                            (step.index, apply_step(&context, &step, cancel).await)
                        });
                    }
                }
            }
            if running.is_empty() {
                break;
            }
            tokio::select! {
                finished = running.join_next() => match finished {
                    Some(Ok((index, Ok(())))) => done[index] = true,
                    Some(Ok((_, Err(reason)))) => { failure.get_or_insert(reason); }
                    Some(Err(error)) => { failure.get_or_insert(format!("a step task ended abnormally: {error}")); }
                    None => {}
                },
                Ok(()) = watch_cancel.changed(), if failure.is_none() => {
                    if *watch_cancel.borrow() {
                        failure = Some("cancelled".to_owned());
                    }
                }
            }
        }
        // A cancel ends steps with errors of their own; what happened is still the cancel.
        if *cancel.borrow() {
            return Err("cancelled".to_owned());
        }
        match failure {
            Some(reason) => Err(reason),
            None if done.iter().all(|d| *d) => Ok(()),
            None => {
                Err("the plan's steps could not all run (a dependency never completed)".to_owned())
            }
        }
    }

    /// Verifies the runtime holds the plan's result; commits it, or undoes everything if it does not.
    pub(crate) async fn commit_or_undo(
        &self,
        context: &StepContext,
        record: &DeploymentRecord,
        recorded: &[Resource],
    ) -> Outcome {
        let state = record.plan.resulting_state(recorded);
        match verify(context, &record.plan, &state).await {
            Ok(()) => Outcome::Committed { state },
            Err(reason) => self.undo(context, record, reason).await,
        }
    }

    /// Rolls back every started step, newest first, as the journal records them.
    pub(crate) async fn undo(
        &self,
        context: &StepContext,
        record: &DeploymentRecord,
        reason: String,
    ) -> Outcome {
        let _ = self
            .store
            .set_status(&record.id, DeploymentStatus::RollingBack, Some(&reason))
            .await;
        let journal = match self.store.journal(&record.id).await {
            Ok(journal) => journal,
            Err(error) => {
                return Outcome::Failed {
                    reason: format!("{reason}; the rollback could not read the journal: {error}"),
                };
            }
        };
        match compensate(context, &record.plan, &journal).await {
            Ok(()) => Outcome::RolledBack { reason },
            Err(undo_error) => Outcome::Failed {
                reason: format!(
                    "{reason}; the rollback did not finish ({undo_error}) and is retried when the daemon starts"
                ),
            },
        }
    }

    pub(crate) async fn end(
        &self,
        record: &DeploymentRecord,
        outcome: Outcome,
    ) -> DeploymentRecord {
        if let Ok(mut running) = self.running.lock() {
            running.remove(&record.id);
        }
        if let Err(error) = self
            .store
            .finish_deployment(record, &outcome, now_ms())
            .await
        {
            // The journal still holds everything; recovery at the next start finishes the job.
            eprintln!("deployment {}: cannot record its end: {error}", record.id);
        }
        self.store
            .deployment(&record.id)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| record.clone())
    }

    fn keep_lease(&self, deployment: &str) -> tokio::task::JoinHandle<()> {
        let store = Arc::clone(&self.store);
        let (deployment, holder, ttl) = (
            deployment.to_owned(),
            self.holder.clone(),
            self.config.lease_ttl,
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                let _ = store
                    .renew_lease(&deployment, &holder, now_ms() + ttl.as_millis() as i64)
                    .await;
            }
        })
    }
}
