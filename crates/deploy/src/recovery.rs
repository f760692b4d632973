//! Finishing deployments a daemon left unfinished — because it died, stopped, paused too long or lost the store —
//! from their journals: before any new work at start, and then now and then.

use std::sync::Arc;

use preview_store::{
    DeploymentRecord, DeploymentStatus, JournalEntry, JournalEvent, Phase, TakeOverTerms,
};
use tokio::time::Instant;
use tracing::Instrument;

use crate::engine::{Engine, EngineError};
use crate::run::Ending;

impl Engine {
    /// Recovers every unfinished deployment this daemon may take over: at once those its earlier runs (or this
    /// run, after it stopped acting for them) held, and — for runtimes shared between daemons — those whose holder
    /// let the lease expire; never one this process is acting for, one whose next retry is not due, or one of an
    /// environment that lives on another daemon's machine. A deployment past its point of no return is completed;
    /// one whose every step was applied and verifies is committed; any other is rolled back. Returns the
    /// recovered deployments as they ended.
    pub async fn recover(self: &Arc<Self>) -> Result<Vec<DeploymentRecord>, EngineError> {
        let mut recovered = Vec::new();
        for deployment in self.store.unfinished_deployments().await? {
            if self.stopping() {
                break;
            }
            let lease = self.store.lease_state(&deployment.id).await?;
            let Some(control) = self.try_register(&deployment.id) else {
                continue;
            };
            let sent = Instant::now();
            let terms = TakeOverTerms {
                holder: self.holder.clone(),
                daemon: self.daemon.clone(),
                others: self.runtime.shared(),
                lease_ttl_ms: self.config.lease_ttl.as_millis() as i64,
            };
            let taken = match lease {
                Some(lease) => {
                    self.store
                        .take_over(&deployment.id, lease.epoch, &terms)
                        .await
                }
                None => self.store.adopt_unleased(&deployment, &terms).await,
            };
            let taken = match taken {
                Ok(Some(taken)) => taken,
                Ok(None) => {
                    self.unregister(&deployment.id);
                    continue;
                }
                Err(error) => {
                    self.unregister(&deployment.id);
                    return Err(error.into());
                }
            };
            let held = self.hold(taken, sent);
            let journal = match self.store.journal(&deployment.id).await {
                Ok(journal) => journal,
                Err(error) => {
                    self.unregister(&deployment.id);
                    return Err(error.into());
                }
            };
            let next_seq = journal.iter().map(|e| e.seq + 1).max().unwrap_or(0);
            let context = Arc::new(self.context(&deployment, &held, next_seq, control));
            let recovering = async {
                tracing::info!(status = deployment.status.as_str(), "recovering");
                let ending = self.recover_one(&context, &deployment, &journal).await;
                let ended = self.end(&deployment, held, ending).await;
                // A `failed` one taken up again is a retry (counted by its end), not a recovery.
                if deployment.status != DeploymentStatus::Failed {
                    preview_metrics::metrics()
                        .recoveries
                        .get_or_create(&preview_metrics::OutcomeLabels {
                            outcome: ended.status.as_str(),
                        })
                        .inc();
                }
                ended
            };
            recovered.push(
                recovering
                    .instrument(crate::run::deployment_span(&deployment))
                    .await,
            );
        }
        Ok(recovered)
    }

    async fn recover_one(
        &self,
        context: &Arc<crate::steps::StepContext>,
        deployment: &DeploymentRecord,
        journal: &[JournalEntry],
    ) -> Ending {
        let plan = &deployment.plan;
        let seen = |index: usize, event: JournalEvent| {
            journal
                .iter()
                .any(|e| e.step as usize == index && e.phase == Phase::Apply && e.event == event)
        };
        let applied: Vec<bool> = plan
            .steps
            .iter()
            .map(|s| seen(s.index, JournalEvent::Done))
            .collect();
        let past_point = plan.point_of_no_return.is_some_and(|point| {
            plan.steps[point..]
                .iter()
                .any(|s| seen(s.index, JournalEvent::Intent))
        });
        let compensating = journal.iter().any(|e| e.phase == Phase::Compensate);
        // Nothing has changed the environment since this deployment began (it held the lease): its recorded state
        // is the one the plan was made from.
        let recorded = match self
            .store
            .recorded_state(&deployment.project, &deployment.environment)
            .await
        {
            Ok(recorded) => recorded,
            Err(error) => {
                return Ending::Halted(format!(
                    "cannot read the recorded state to recover it: {error}"
                ));
            }
        };
        if past_point {
            return self
                .carry_out(context, deployment, &recorded, applied)
                .await;
        }
        let only_verification_left = deployment.status == DeploymentStatus::Running
            && !compensating
            && applied.iter().all(|a| *a);
        if only_verification_left {
            self.commit_or_undo(context, deployment, &recorded).await
        } else {
            let reason = deployment
                .reason
                .clone()
                .unwrap_or_else(|| interrupted_at(deployment, journal));
            self.undo(context, deployment, reason).await
        }
    }
}

fn interrupted_at(deployment: &DeploymentRecord, journal: &[JournalEntry]) -> String {
    let last = journal
        .iter()
        .rev()
        .find(|e| e.phase == Phase::Apply && e.event == JournalEvent::Intent)
        .map(|e| e.step as usize + 1);
    match last {
        Some(step) => format!(
            "the daemon stopped during step {step} of {}; rolled back when it started again",
            deployment.plan.steps.len()
        ),
        None => {
            "the daemon stopped before the first step; rolled back when it started again".to_owned()
        }
    }
}
