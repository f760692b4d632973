//! Giving up on a deployment that cannot finish: an operator's way out, recorded in the journal, with the
//! environment marked as needing attention and what the deployment may have left listed.

use preview_store::{DeploymentRecord, JournalEntry, JournalEvent, Phase};

use crate::engine::{Engine, EngineError};
use crate::steps::describe;

impl Engine {
    /// Ends an unfinished deployment as abandoned — one that could not finish, or whose daemon let its lease
    /// expire — releasing its environment. Refused while a daemon is working on it.
    pub async fn abandon(&self, id: &str) -> Result<DeploymentRecord, EngineError> {
        // Registered as running for the whole of it: this daemon's recovery sweep cannot take the deployment over
        // between the check and the release of its lease.
        if self.try_register(id).is_none() {
            return Err(EngineError::Conflict(format!(
                "deployment {id} is being worked on by this daemon; cancel it with `preview deploy cancel ENV`, or wait until it ends or fails"
            )));
        }
        let abandoned = self.abandon_registered(id).await;
        self.unregister(id);
        abandoned
    }

    async fn abandon_registered(&self, id: &str) -> Result<DeploymentRecord, EngineError> {
        let record = self.store.deployment(id).await?.ok_or_else(|| {
            EngineError::NotFound(format!(
                "no deployment `{id}`; `preview deployments ENV` lists them"
            ))
        })?;
        if record.status.is_finished() {
            return Err(EngineError::Conflict(format!(
                "deployment {id} has already ended ({})",
                record.status
            )));
        }
        let busy = || {
            EngineError::Conflict(format!(
                "deployment {id} is being worked on by `{}`; cancel it with `preview deploy cancel {}`, or wait until it ends or fails",
                record.holder, record.environment
            ))
        };
        // What it did on a machine-local runtime is only visible on that machine: its daemon decides.
        if let Some(owner) = record.owner.as_ref().filter(|owner| **owner != self.daemon) {
            return Err(EngineError::Owned {
                environment: record.environment.clone(),
                owner: owner.clone(),
            });
        }
        let epoch = self
            .store
            .lease_state(id)
            .await?
            .map_or(0, |lease| lease.epoch);
        let journal = self.store.journal(id).await?;
        let left = may_be_left(&record, &journal);
        let left = if left.is_empty() {
            "nothing".to_owned()
        } else {
            left.join("; ")
        };
        let note = format!(
            "deployment {id} ({}) was abandoned while {}{}; what it may have left in the runtime: {left}",
            record.operation,
            record.status,
            record
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
        );
        let entry = JournalEntry {
            deployment: id.to_owned(),
            seq: journal.iter().map(|e| e.seq + 1).max().unwrap_or(0),
            // About the deployment, not one of its steps.
            step: -1,
            phase: Phase::Apply,
            event: JournalEvent::Log,
            message: format!("abandoned by an operator; {note}"),
            at: self.config.clock.now_ms(),
            holder: self.holder.clone(),
            epoch,
        };
        if !self
            .store
            .abandon_deployment(&record, epoch, &self.daemon, &entry, &note)
            .await?
        {
            return Err(busy());
        }
        tracing::warn!(deployment = %id, "abandoned by an operator; {note}");
        preview_metrics::metrics()
            .deployments
            .get_or_create(&preview_metrics::DeploymentLabels {
                operation: record.operation.as_str(),
                outcome: "abandoned",
            })
            .inc();
        Ok(self.store.deployment(id).await?.unwrap_or(record))
    }
}

/// Each step that may have changed the runtime without the change being undone (before the point of no
/// return) or completed (after it).
fn may_be_left(record: &DeploymentRecord, journal: &[JournalEntry]) -> Vec<String> {
    let seen = |index: usize, phase: Phase, event: JournalEvent| {
        journal
            .iter()
            .any(|e| e.step as usize == index && e.phase == phase && e.event == event)
    };
    let point = record.plan.point_of_no_return;
    let past_point = point.is_some_and(|point| {
        record.plan.steps[point..]
            .iter()
            .any(|s| seen(s.index, Phase::Apply, JournalEvent::Intent))
    });
    record
        .plan
        .steps
        .iter()
        .filter(|step| seen(step.index, Phase::Apply, JournalEvent::Intent) || past_point)
        .filter(|step| {
            if past_point {
                !seen(step.index, Phase::Apply, JournalEvent::Done)
            } else {
                !seen(step.index, Phase::Compensate, JournalEvent::Done)
            }
        })
        .map(|step| {
            format!(
                "step {} ({}) {}",
                step.index + 1,
                describe(step),
                if past_point {
                    "not completed"
                } else {
                    "not undone"
                }
            )
        })
        .collect()
}
