//! Running a deployment: its steps as soon as what they wait for is done, at most `parallelism` at once; before
//! the point of no return a failure or a cancel undoes every started step, after it a failure is retried until
//! the deployment completes; then verification, and the end recorded under the lease.

use std::sync::Arc;

use preview_plan::{Plan, Resource};
use preview_store::{DeploymentRecord, DeploymentStatus, JournalEvent, Outcome, Phase, StoreError};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::engine::Engine;
use crate::lease::Held;
use crate::steps::{Control, StepContext, StepEnd, UndoStop, apply_step, compensate, verify};

/// How this daemon's part in a deployment ended.
pub(crate) enum Ending {
    /// To be recorded: committed, rolled back, or could not finish (retried later).
    Finished(Outcome),
    /// It stopped acting without an end: it lost the lease, or the daemon is stopping.
    Halted(String),
}

/// How carrying out the plan's steps went.
enum Applied {
    All,
    /// Before the point of no return: undo.
    Failed(String),
    /// Past it, a step kept failing: retry later.
    Stuck(String),
    Halted(String),
}

/// The span a deployment's work is done in, whichever daemon runs or recovers it.
pub(crate) fn deployment_span(record: &DeploymentRecord) -> tracing::Span {
    tracing::info_span!(
        "deployment",
        deployment = %record.id,
        project = %record.project,
        environment = %record.environment,
        operation = record.operation.as_str()
    )
}

impl Engine {
    pub(crate) async fn run(
        self: Arc<Self>,
        record: DeploymentRecord,
        recorded: Vec<Resource>,
        control: watch::Receiver<Control>,
        held: Held,
    ) -> DeploymentRecord {
        tracing::info!(steps = record.plan.steps.len(), "started");
        let context = Arc::new(self.context(&record, &held, 0, control));
        let done = vec![false; record.plan.steps.len()];
        let ending = match self.preflight(&context, &record, &recorded).await {
            Ok(()) => self.carry_out(&context, &record, &recorded, done).await,
            // Nothing was done: the undo has no step to undo and records the rollback with the reason.
            Err(reason) => self.undo(&context, &record, reason).await,
        };
        self.end(&record, held, ending).await
    }

    /// Asks the runtime to check the state the plan leads to as a whole before the first step changes anything
    /// (on Kubernetes: a dry run of every object). Nothing to check when the plan only deletes.
    async fn preflight(
        &self,
        context: &StepContext,
        record: &DeploymentRecord,
        recorded: &[Resource],
    ) -> Result<(), String> {
        if record.plan.steps.iter().all(|s| s.after.is_none()) {
            return Ok(());
        }
        let state = record.plan.resulting_state(recorded);
        match self.runtime.preflight(&context.env, &state).await {
            Ok(()) => Ok(()),
            Err(error) => {
                let reason = format!("the pre-flight check failed: {}", error.message);
                let _ = context
                    .journal
                    .write(0, Phase::Apply, JournalEvent::Log, reason.clone())
                    .await;
                Err(reason)
            }
        }
    }

    /// Applies the steps not `done` yet, then verifies and commits — or undoes, or leaves it to a retry.
    pub(crate) async fn carry_out(
        &self,
        context: &Arc<StepContext>,
        record: &DeploymentRecord,
        recorded: &[Resource],
        done: Vec<bool>,
    ) -> Ending {
        match self.apply_all(context, &record.plan, done).await {
            Applied::All => self.commit_or_undo(context, record, recorded).await,
            Applied::Failed(reason) => self.undo(context, record, reason).await,
            Applied::Stuck(error) => self.stuck(record, error),
            Applied::Halted(reason) => Ending::Halted(reason),
        }
    }

    /// A deployment past its point of no return that could not complete: it keeps its lease and is retried.
    fn stuck(&self, record: &DeploymentRecord, error: String) -> Ending {
        Ending::Finished(Outcome::Failed {
            reason: record.reason.clone().unwrap_or_else(|| error.clone()),
            error: format!(
                "past the point of no return, so it is completed rather than undone: {error}; tried again in {}s (or give up with `preview deployment abandon {}`)",
                self.retry_in(record.attempts).as_secs(),
                record.id
            ),
            retry_in_ms: self.retry_in(record.attempts).as_millis() as i64,
        })
    }

    async fn apply_all(&self, context: &Arc<StepContext>, plan: &Plan, done: Vec<bool>) -> Applied {
        let total = plan.steps.len();
        let point = plan.point_of_no_return.unwrap_or(total);
        let mut done = done;
        // A step that was done counts as begun: past the point, the deployment only goes forward.
        let mut begun = done.clone();
        let mut queued = vec![false; total];
        let mut attempts = vec![0u32; total];
        let mut retries: Vec<(Instant, usize)> = Vec::new();
        let mut running: JoinSet<(usize, StepEnd)> = JoinSet::new();
        let mut control = context.control.clone();
        let (mut failure, mut stuck, mut halted) = (None::<String>, None::<String>, None::<String>);
        let mut told_past_point = false;
        loop {
            let past_point = begun[point.min(total)..].contains(&true);
            let told = control.borrow_and_update().clone();
            match told {
                Control::Halt(reason) => {
                    halted.get_or_insert(reason);
                }
                Control::Cancel if !past_point => {
                    failure.get_or_insert_with(|| "cancelled".to_owned());
                }
                Control::Cancel if !told_past_point => {
                    told_past_point = true;
                    let _ = context
                        .journal
                        .write(
                            point,
                            Phase::Apply,
                            JournalEvent::Log,
                            "a cancel came past the point of no return: the deployment completes instead".to_owned(),
                        )
                        .await;
                }
                _ => {}
            }
            if failure.is_none() && stuck.is_none() && halted.is_none() {
                for step in &plan.steps {
                    if running.len() >= self.config.parallelism.max(1) {
                        break;
                    }
                    let i = step.index;
                    if !queued[i] && !done[i] && step.after_steps.iter().all(|&d| done[d]) {
                        queued[i] = true;
                        begun[i] = true;
                        let (context, step) = (Arc::clone(context), step.clone());
                        let cancellable = i < point;
                        // The step's task is still the deployment's work: its log lines say so.
                        running.spawn(
                            async move {
                                (step.index, apply_step(&context, &step, cancellable).await)
                            }
                            .instrument(tracing::Span::current()),
                        );
                    }
                }
            }
            let ending = halted.is_some() || failure.is_some() || stuck.is_some();
            if running.is_empty() && (retries.is_empty() || ending) {
                break;
            }
            let next_retry = retries.iter().map(|(at, _)| *at).min();
            tokio::select! {
                Some(finished) = running.join_next(), if !running.is_empty() => {
                    let (index, end) = match finished {
                        Ok(result) => result,
                        Err(error) => {
                            failure.get_or_insert(format!("a step task ended abnormally: {error}"));
                            continue;
                        }
                    };
                    match end {
                        StepEnd::Done => done[index] = true,
                        StepEnd::Halted(reason) => { halted.get_or_insert(reason); }
                        StepEnd::Cancelled => { failure.get_or_insert_with(|| "cancelled".to_owned()); }
                        StepEnd::Failed(reason) if begun[point.min(total)..].contains(&true) => {
                            attempts[index] += 1;
                            if attempts[index] < self.config.forward_attempts.max(1) {
                                let delay = self.config.retry_delay.saturating_mul(2u32.saturating_pow(attempts[index] - 1));
                                let _ = context.journal.write(
                                    index,
                                    Phase::Apply,
                                    JournalEvent::Log,
                                    format!("past the point of no return: tried again in {} ms", delay.as_millis()),
                                ).await;
                                retries.push((Instant::now() + delay, index));
                            } else {
                                stuck.get_or_insert(reason);
                            }
                        }
                        StepEnd::Failed(reason) => { failure.get_or_insert(reason); }
                    }
                }
                _ = tokio::time::sleep_until(next_retry.unwrap_or_else(Instant::now)), if next_retry.is_some() && !ending => {
                    let now = Instant::now();
                    retries.retain(|(at, index)| {
                        if *at <= now {
                            queued[*index] = false;
                            false
                        } else {
                            true
                        }
                    });
                }
                Ok(()) = control.changed() => {}
            }
        }
        if let Some(reason) = halted {
            return Applied::Halted(reason);
        }
        if let Some(reason) = failure {
            return Applied::Failed(reason);
        }
        if let Some(reason) = stuck {
            return Applied::Stuck(reason);
        }
        if done.iter().all(|d| *d) {
            Applied::All
        } else {
            Applied::Failed(
                "the plan's steps could not all run (a dependency never completed)".to_owned(),
            )
        }
    }

    /// Verifies the runtime holds the plan's result and commits it; otherwise undoes everything, or past the
    /// point of no return leaves the deployment to be completed by a retry.
    pub(crate) async fn commit_or_undo(
        &self,
        context: &StepContext,
        record: &DeploymentRecord,
        recorded: &[Resource],
    ) -> Ending {
        let state = record.plan.resulting_state(recorded);
        match verify(context, &record.plan, &state).await {
            Ok(()) => Ending::Finished(Outcome::Committed { state }),
            Err(reason) if record.plan.point_of_no_return.is_some() => self.stuck(record, reason),
            Err(reason) => self.undo(context, record, reason).await,
        }
    }

    /// Rolls back every started step, newest first, as the journal records them.
    pub(crate) async fn undo(
        &self,
        context: &StepContext,
        record: &DeploymentRecord,
        reason: String,
    ) -> Ending {
        // The status is for people; the rollback goes on without it, unless the lease is gone.
        if let Err(StoreError::Fenced { .. }) = self
            .store
            .set_status(
                context.journal.lease(),
                DeploymentStatus::RollingBack,
                Some(&reason),
            )
            .await
        {
            return Ending::Halted(
                "the deployment's lease was taken over before its rollback".to_owned(),
            );
        }
        let reason = record.reason.clone().unwrap_or(reason);
        let retry_in = self.retry_in(record.attempts);
        let failed = |error: String| {
            Ending::Finished(Outcome::Failed {
                reason: reason.clone(),
                error: format!(
                    "the rollback did not finish ({error}); it is tried again in {}s",
                    retry_in.as_secs()
                ),
                retry_in_ms: retry_in.as_millis() as i64,
            })
        };
        let journal = match self.store.journal(&record.id).await {
            Ok(journal) => journal,
            Err(error) => return failed(format!("cannot read the journal: {error}")),
        };
        match compensate(context, &record.plan, &journal).await {
            Ok(()) => Ending::Finished(Outcome::RolledBack {
                reason: reason.clone(),
            }),
            Err(UndoStop::Failed(error)) => failed(error),
            Err(UndoStop::Halted(why)) => Ending::Halted(why),
        }
    }

    /// Records how the deployment ended, if this daemon still holds it; then lets it go.
    pub(crate) async fn end(
        &self,
        record: &DeploymentRecord,
        held: Held,
        ending: Ending,
    ) -> DeploymentRecord {
        match ending {
            Ending::Finished(outcome) => {
                match self
                    .store
                    .finish_deployment(&held.lease, record, &outcome)
                    .await
                {
                    Ok(()) => count_end(record, &outcome),
                    Err(StoreError::Fenced { .. }) => tracing::warn!(
                        deployment = %record.id,
                        "its lease was taken over before its end was recorded; the new holder finishes it"
                    ),
                    // The journal still holds everything; recovery finishes the job.
                    Err(error) => {
                        tracing::warn!(deployment = %record.id, "cannot record its end: {error}")
                    }
                }
            }
            Ending::Halted(reason) => tracing::info!("stopped acting: {reason}"),
        }
        drop(held);
        self.unregister(&record.id);
        self.store
            .deployment(&record.id)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| record.clone())
    }
}

/// Logs and counts an end the store recorded: once per deployment for an end, once per attempt that could not
/// finish (it is tried again).
fn count_end(record: &DeploymentRecord, outcome: &Outcome) {
    let metrics = preview_metrics::metrics();
    let operation = record.operation.as_str();
    let ended = |outcome: &'static str| {
        metrics
            .deployments
            .get_or_create(&preview_metrics::DeploymentLabels { operation, outcome })
            .inc();
    };
    match outcome {
        Outcome::Committed { .. } => {
            tracing::info!("committed");
            ended("committed");
        }
        Outcome::RolledBack { reason } => {
            tracing::info!("rolled back: {reason}");
            ended("rolled_back");
            metrics
                .rollbacks
                .get_or_create(&preview_metrics::OperationLabels { operation })
                .inc();
        }
        Outcome::Failed { error, .. } => {
            tracing::warn!(deployment = %record.id, "not finished: {error}");
            metrics
                .deployment_failures
                .get_or_create(&preview_metrics::OperationLabels { operation })
                .inc();
        }
    }
}
