//! Carrying out steps against the runtime, with the journal written before and after each one; undoing them;
//! and checking that the runtime holds what the plan promised. Every journal write is guarded by the
//! deployment's lease, and nothing touches the runtime unless its intent was written.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use preview_plan::{Action, Plan, Resource, Step};
use preview_store::{JournalEntry, JournalEvent, Lease, Phase, Store, StoreError};
use tokio::sync::watch;
use tracing::Instrument;

use crate::lease::Fence;
use crate::runtime::{EnvironmentAddress, Runtime, RuntimeError, StepLog};

/// What a running deployment is told from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    Go,
    /// Stop and roll back (before the point of no return).
    Cancel,
    /// Stop acting at once, neither undoing nor finishing anything: the daemon lost its lease or is stopping.
    /// Whoever holds the lease next finishes the deployment from its journal.
    Halt(String),
}

/// Appends to one deployment's journal under its lease, numbering entries in order.
pub(crate) struct Journal {
    store: Arc<Store>,
    lease: Lease,
    next: AtomicI64,
    clock: crate::ids::Clock,
}

impl Journal {
    pub(crate) fn new(
        store: Arc<Store>,
        lease: Lease,
        next: i64,
        clock: crate::ids::Clock,
    ) -> Self {
        Journal {
            store,
            lease,
            next: AtomicI64::new(next),
            clock,
        }
    }

    pub(crate) fn lease(&self) -> &Lease {
        &self.lease
    }

    pub(crate) async fn write(
        &self,
        step: usize,
        phase: Phase,
        event: JournalEvent,
        message: String,
    ) -> Result<(), StoreError> {
        // Every journal entry is also a log line with its ids; the journal holds no secret value, so neither
        // does the line.
        let (number, phase_name) = (step + 1, phase.as_str());
        match event {
            JournalEvent::Failed => {
                tracing::info!(
                    step = number,
                    phase = phase_name,
                    event = event.as_str(),
                    "{message}"
                )
            }
            _ => tracing::debug!(
                step = number,
                phase = phase_name,
                event = event.as_str(),
                "{message}"
            ),
        }
        let entry = JournalEntry {
            deployment: self.lease.deployment.clone(),
            seq: self.next.fetch_add(1, Ordering::SeqCst),
            step: step as i64,
            holder: self.lease.holder.clone(),
            epoch: self.lease.epoch,
            phase,
            event,
            message,
            at: self.clock.now_ms(),
        };
        self.store.append_journal(&self.lease, &entry).await
    }
}

/// What every step of a deployment needs.
pub(crate) struct StepContext {
    pub runtime: Arc<dyn Runtime>,
    pub env: EnvironmentAddress,
    pub journal: Journal,
    pub timeout: Duration,
    pub fence: Arc<Fence>,
    pub control: watch::Receiver<Control>,
}

impl StepContext {
    /// Why the deployment must stop acting now, if it must.
    pub(crate) fn halted(&self) -> Option<String> {
        if let Control::Halt(reason) = &*self.control.borrow() {
            return Some(reason.clone());
        }
        self.fence.check().err()
    }

    pub(crate) fn cancelled(&self) -> bool {
        *self.control.borrow() == Control::Cancel
    }
}

/// How one step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StepEnd {
    Done,
    Failed(String),
    Cancelled,
    Halted(String),
}

pub(crate) fn describe(step: &Step) -> String {
    let verb = match step.action {
        Action::Create => "create",
        Action::Update => "update",
        Action::Delete => "delete",
    };
    format!("{verb} {}", step.resource)
}

/// The runtime call that performs `step`.
async fn perform(context: &StepContext, step: &Step, log: &StepLog) -> Result<(), RuntimeError> {
    log.check_lease()?;
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

/// Resolves when the deployment is told to stop this step: a halt, or (when `cancellable`) a cancel.
async fn interrupted(mut control: watch::Receiver<Control>, cancellable: bool) -> StepEnd {
    let stop = control
        .wait_for(|c| matches!(c, Control::Halt(_)) || (cancellable && *c == Control::Cancel))
        .await
        .map(|c| c.clone());
    match stop {
        Ok(Control::Halt(reason)) => StepEnd::Halted(reason),
        Ok(_) => StepEnd::Cancelled,
        // Nobody can stop it any more.
        Err(_) => std::future::pending().await,
    }
}

/// One runtime call, bounded by the step timeout and ended by a halt (or a cancel, when `cancellable`). When it
/// is abandoned, whatever it started is stopped before this returns.
async fn call(context: &StepContext, step: &Step, log: &StepLog, cancellable: bool) -> StepEnd {
    let end = tokio::select! {
        result = tokio::time::timeout(context.timeout, perform(context, step, log)) => match result {
            Ok(Ok(())) => return StepEnd::Done,
            Ok(Err(error)) => return match context.halted() {
                Some(reason) => StepEnd::Halted(reason),
                None => StepEnd::Failed(error.message),
            },
            Err(_) => StepEnd::Failed(format!("timed out after {}s", context.timeout.as_secs_f64())),
        },
        end = interrupted(context.control.clone(), cancellable) => end,
    };
    // The call's future is dropped: its processes are stopped before anything else touches the environment.
    context.runtime.settle(&context.env).await;
    end
}

/// The span a step's work is done in: its number (from 1, as people and the journal's readers count), what it
/// does, and whether it applies the plan or undoes it.
fn step_span(step: &Step, phase: Phase) -> tracing::Span {
    tracing::info_span!(
        "step",
        step = step.index + 1,
        phase = phase.as_str(),
        action = %describe(step)
    )
}

/// Runs one step of the plan: intent, the runtime call, result. Past the point of no return (`cancellable`
/// false) a cancel does not stop it.
pub(crate) async fn apply_step(context: &StepContext, step: &Step, cancellable: bool) -> StepEnd {
    apply_step_in_span(context, step, cancellable)
        .instrument(step_span(step, Phase::Apply))
        .await
}

async fn apply_step_in_span(context: &StepContext, step: &Step, cancellable: bool) -> StepEnd {
    if let Some(reason) = context.halted() {
        return StepEnd::Halted(reason);
    }
    if cancellable && context.cancelled() {
        return StepEnd::Cancelled;
    }
    match context
        .journal
        .write(
            step.index,
            Phase::Apply,
            JournalEvent::Intent,
            describe(step),
        )
        .await
    {
        Ok(()) => {}
        Err(StoreError::Fenced { .. }) => {
            return StepEnd::Halted(
                "the deployment's lease was taken over, so this daemon stopped acting for it"
                    .to_owned(),
            );
        }
        Err(error) => return StepEnd::Failed(format!("cannot write the journal: {error}")),
    }
    let started = Instant::now();
    let log = StepLog::fenced(Arc::clone(&context.fence));
    let end = call(context, step, &log, cancellable).await;
    finish(context, step, Phase::Apply, &log, started, &end).await;
    match end {
        StepEnd::Failed(reason) => StepEnd::Failed(format!(
            "step {} ({}) failed: {reason}",
            step.index + 1,
            describe(step)
        )),
        other => other,
    }
}

async fn finish(
    context: &StepContext,
    step: &Step,
    phase: Phase,
    log: &StepLog,
    started: Instant,
    end: &StepEnd,
) {
    if matches!(end, StepEnd::Halted(_)) {
        // The lease is gone or going: nothing more is written.
        return;
    }
    for line in log.take() {
        let _ = context
            .journal
            .write(step.index, phase, JournalEvent::Log, line)
            .await;
    }
    preview_metrics::metrics()
        .step_duration
        .get_or_create(&preview_metrics::StepLabels {
            kind: step.kind.as_str(),
            phase: phase.as_str(),
            result: match end {
                StepEnd::Done => "done",
                StepEnd::Cancelled => "cancelled",
                StepEnd::Failed(_) | StepEnd::Halted(_) => "failed",
            },
        })
        .observe(started.elapsed());
    let elapsed = started.elapsed().as_millis();
    let (event, message) = match end {
        StepEnd::Done => (
            JournalEvent::Done,
            format!("{} in {elapsed} ms", describe(step)),
        ),
        StepEnd::Failed(reason) => (
            JournalEvent::Failed,
            format!("{} failed after {elapsed} ms: {reason}", describe(step)),
        ),
        StepEnd::Cancelled | StepEnd::Halted(_) => (
            JournalEvent::Failed,
            format!("{} failed after {elapsed} ms: cancelled", describe(step)),
        ),
    };
    // A lost result entry is harmless: the intent alone makes recovery undo the step.
    let _ = context
        .journal
        .write(step.index, phase, event, message)
        .await;
}

/// Why undoing stopped.
pub(crate) enum UndoStop {
    Failed(String),
    Halted(String),
}

/// Undoes every step whose intent is in the journal, newest first, with each step's inverse. Idempotent, so it
/// serves a live rollback and a recovery alike, however far the steps or an earlier rollback got.
pub(crate) async fn compensate(
    context: &StepContext,
    plan: &Plan,
    journal: &[JournalEntry],
) -> Result<(), UndoStop> {
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
            return Err(UndoStop::Failed(format!(
                "the journal names step {} that the plan does not have",
                index + 1
            )));
        };
        let inverse = step.inverse();
        if let Some(reason) = context.halted() {
            return Err(UndoStop::Halted(reason));
        }
        undo_step(context, step, &inverse)
            .instrument(step_span(step, Phase::Compensate))
            .await?;
    }
    Ok(())
}

/// Undoes one started step with its inverse, tried up to three times.
async fn undo_step(context: &StepContext, step: &Step, inverse: &Step) -> Result<(), UndoStop> {
    let index = step.index;
    match context
        .journal
        .write(
            index,
            Phase::Compensate,
            JournalEvent::Intent,
            format!("undo {}", describe(step)),
        )
        .await
    {
        Ok(()) => {}
        Err(StoreError::Fenced { .. }) => {
            return Err(UndoStop::Halted(
                "the deployment's lease was taken over, so this daemon stopped acting for it"
                    .to_owned(),
            ));
        }
        Err(error) => {
            return Err(UndoStop::Failed(format!(
                "cannot write the journal: {error}"
            )));
        }
    }
    let began = Instant::now();
    let log = StepLog::fenced(Arc::clone(&context.fence));
    let mut end = StepEnd::Failed(String::new());
    // Undoing must not give up at the first hiccup: an environment left half-undone is the worst outcome.
    for _ in 0..3 {
        end = call(context, inverse, &log, false).await;
        if matches!(end, StepEnd::Done | StepEnd::Halted(_)) {
            break;
        }
    }
    finish(context, inverse, Phase::Compensate, &log, began, &end).await;
    match end {
        StepEnd::Done => {}
        StepEnd::Halted(reason) => return Err(UndoStop::Halted(reason)),
        StepEnd::Cancelled => return Err(UndoStop::Failed("cancelled".to_owned())),
        StepEnd::Failed(reason) => {
            return Err(UndoStop::Failed(format!(
                "undoing step {} ({}) failed: {reason}",
                index + 1,
                describe(step)
            )));
        }
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
