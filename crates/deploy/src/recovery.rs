//! After a crash: every deployment left unfinished is finished from its journal before new work is accepted.

use std::sync::Arc;

use preview_store::{DeploymentRecord, DeploymentStatus, JournalEvent, Outcome, Phase};

use crate::engine::{Engine, EngineError};
use crate::ids::now_ms;

impl Engine {
    /// Recovers every unfinished deployment whose lease this daemon holds (it restarted) or whose holder let the
    /// lease expire (it is gone), except those this process is running. Safe to call at any time: the daemon
    /// calls it at start, before serving, and then periodically to take over from daemons that died. A deployment whose every step was applied and verifies is committed; any other
    /// is rolled back. Returns the recovered deployments as they ended.
    pub async fn recover(self: &Arc<Self>) -> Result<Vec<DeploymentRecord>, EngineError> {
        let mut recovered = Vec::new();
        for deployment in self.store.unfinished_deployments().await? {
            if self.is_running(&deployment.id) {
                continue;
            }
            let now = now_ms();
            let expires = now + self.config.lease_ttl.as_millis() as i64;
            if !self
                .store
                .take_over(&deployment.id, &self.holder, expires, now)
                .await?
            {
                continue;
            }
            recovered.push(self.recover_one(deployment).await?);
        }
        Ok(recovered)
    }

    async fn recover_one(
        &self,
        deployment: DeploymentRecord,
    ) -> Result<DeploymentRecord, EngineError> {
        let journal = self.store.journal(&deployment.id).await?;
        let next_seq = journal.iter().map(|e| e.seq + 1).max().unwrap_or(0);
        let context = self.context(&deployment, next_seq);
        let applied = |index: usize| {
            journal.iter().any(|e| {
                e.step as usize == index && e.phase == Phase::Apply && e.event == JournalEvent::Done
            })
        };
        let compensating = journal.iter().any(|e| e.phase == Phase::Compensate);
        let only_verification_left = deployment.status == DeploymentStatus::Running
            && !compensating
            && deployment.plan.steps.iter().all(|s| applied(s.index));
        let outcome = if only_verification_left {
            // Nothing has changed the environment since this deployment's steps: its recorded state is the one
            // the plan was made from.
            let recorded = self
                .store
                .recorded_state(&deployment.project, &deployment.environment)
                .await?;
            self.commit_or_undo(&context, &deployment, &recorded).await
        } else {
            let reason = deployment
                .reason
                .clone()
                .unwrap_or_else(|| interrupted_at(&deployment, &journal));
            self.undo(&context, &deployment, reason).await
        };
        debug_assert!(!matches!(outcome, Outcome::Committed { .. }) || only_verification_left);
        Ok(self.end(&deployment, outcome).await)
    }
}

fn interrupted_at(
    deployment: &DeploymentRecord,
    journal: &[preview_store::JournalEntry],
) -> String {
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
