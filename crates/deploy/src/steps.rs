//! Carrying out steps against the runtime, with the journal written before and after each one; undoing them;
//! and checking that the runtime holds what the plan promised.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use preview_plan::{Action, Plan, Resource, Step};
use preview_store::{JournalEntry, JournalEvent, Phase, Store, StoreError};
use tokio::sync::watch;

use crate::ids::now_ms;
use crate::runtime::{EnvironmentAddress, Runtime, RuntimeError, StepLog};

/// Appends to one deployment's journal, numbering entries in order.
pub(crate) struct Journal {
    store: Arc<Store>,
    deployment: String,
    next: AtomicI64,
}

impl Journal {
    pub(crate) fn new(store: Arc<Store>, deployment: &str, next: i64) -> Self {
        Journal {
            store,
            deployment: deployment.to_owned(),
            next: AtomicI64::new(next),
        }
    }

    pub(crate) async fn write(
        &self,
        step: usize,
        phase: Phase,
        event: JournalEvent,
        message: String,
    ) -> Result<(), StoreError> {
        let entry = JournalEntry {
            deployment: self.deployment.clone(),
            seq: self.next.fetch_add(1, Ordering::SeqCst),
            step: step as i64,
            phase,
            event,
            message,
            at: now_ms(),
        };
        self.store.append_journal(&entry).await
    }
}

/// What every step of a deployment needs.
pub(crate) struct StepContext {
    pub runtime: Arc<dyn Runtime>,
    pub env: EnvironmentAddress,
    pub journal: Journal,
    pub timeout: Duration,
}

fn describe(step: &Step) -> String {
    let verb = match step.action {
        Action::Create => "create",
        Action::Update => "update",
        Action::Delete => "delete",
    };
    format!("{verb} {}", step.resource)
}

/// The runtime call that performs `step`.
async fn perform(context: &StepContext, step: &Step, log: &StepLog) -> Result<(), RuntimeError> {
    match (&step.after, &step.before) {
        (Some(after), _) => context.runtime.apply(&context.env, after, log).await,
        (None, Some(before)) => {
            context
                .runtime
                .remove(&context.env, &before.id, before.kind, log)
                .await
        }
        (None, None) => Ok(()),
    }
}

/// Runs one step of the plan: intent, the runtime call (bounded by the step timeout, ended by a cancel), result.
pub(crate) async fn apply_step(
    context: &StepContext,
    step: &Step,
    mut cancel: watch::Receiver<bool>,
) -> Result<(), String> {
    context
        .journal
        .write(
            step.index,
            Phase::Apply,
            JournalEvent::Intent,
            describe(step),
        )
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let log = StepLog::default();
    let outcome = tokio::select! {
        result = tokio::time::timeout(context.timeout, perform(context, step, &log)) => match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.message),
            Err(_) => Err(format!("timed out after {}s", context.timeout.as_secs_f64())),
        },
        _ = cancelled(&mut cancel) => Err("cancelled".to_owned()),
    };
    finish(context, step, Phase::Apply, &log, started, &outcome).await;
    outcome.map_err(|reason| {
        format!(
            "step {} ({}) failed: {reason}",
            step.index + 1,
            describe(step)
        )
    })
}

async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    // A dropped sender means nobody can cancel any more: wait forever.
    if cancel.wait_for(|cancelled| *cancelled).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn finish(
    context: &StepContext,
    step: &Step,
    phase: Phase,
    log: &StepLog,
    started: Instant,
    outcome: &Result<(), String>,
) {
    for line in log.take() {
        let _ = context
            .journal
            .write(step.index, phase, JournalEvent::Log, line)
            .await;
    }
    let elapsed = started.elapsed().as_millis();
    let (event, message) = match outcome {
        Ok(()) => (
            JournalEvent::Done,
            format!("{} in {elapsed} ms", describe(step)),
        ),
        Err(reason) => (
            JournalEvent::Failed,
            format!("{} failed after {elapsed} ms: {reason}", describe(step)),
        ),
    };
    // A lost result entry is harmless: the intent alone makes recovery undo the step.
    let _ = context
        .journal
        .write(step.index, phase, event, message)
        .await;
}

/// Undoes every step whose intent is in the journal, newest first, with each step's inverse. Idempotent, so it
/// serves a live rollback and a recovery alike, however far the steps or an earlier rollback got.
pub(crate) async fn compensate(
    context: &StepContext,
    plan: &Plan,
    journal: &[JournalEntry],
) -> Result<(), String> {
    let mut started: Vec<usize> = Vec::new();
    for entry in journal
        .iter()
        .filter(|e| e.phase == Phase::Apply && e.event == JournalEvent::Intent)
    {
        let step = entry.step as usize;
        if !started.contains(&step) {
            started.push(step);
        }
    }
    for &index in started.iter().rev() {
        let Some(step) = plan.steps.get(index) else {
            return Err(format!(
                "the journal names step {} that the plan does not have",
                index + 1
            ));
        };
        let inverse = step.inverse();
        let _ = context
            .journal
            .write(
                index,
                Phase::Compensate,
                JournalEvent::Intent,
                format!("undo {}", describe(step)),
            )
            .await;
        let began = Instant::now();
        let log = StepLog::default();
        let mut outcome = Err(String::new());
        // Undoing must not give up at the first hiccup: an environment left half-undone is the worst outcome.
        for _ in 0..3 {
            outcome = match tokio::time::timeout(context.timeout, perform(context, &inverse, &log))
                .await
            {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(error.message),
                Err(_) => Err(format!(
                    "timed out after {}s",
                    context.timeout.as_secs_f64()
                )),
            };
            if outcome.is_ok() {
                break;
            }
        }
        finish(context, &inverse, Phase::Compensate, &log, began, &outcome).await;
        outcome.map_err(|reason| {
            format!(
                "undoing step {} ({}) failed: {reason}",
                index + 1,
                describe(step)
            )
        })?;
    }
    Ok(())
}

/// True when the runtime holds exactly `expected` for every resource the plan touched.
pub(crate) async fn verify(
    context: &StepContext,
    plan: &Plan,
    expected: &[Resource],
) -> Result<(), String> {
    for step in &plan.steps {
        let want = expected
            .iter()
            .find(|r| r.id == step.resource)
            .map(|r| r.hash.as_str());
        let have = context
            .runtime
            .observe(&context.env, &step.resource)
            .await
            .map_err(|e| format!("cannot verify {}: {}", step.resource, e.message))?;
        if have.as_ref().map(|o| o.hash.as_str()) != want {
            return Err(format!(
                "verification failed: {} is {} in the runtime",
                step.resource,
                if have.is_some() {
                    "different"
                } else {
                    "missing"
                }
            ));
        }
    }
    Ok(())
}
