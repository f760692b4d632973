//! The transactional deployment engine. A deployment moves one environment from its recorded state to a desired
//! state: it takes the environment's lease, writes each step's intent to the journal before acting and the
//! result after, runs independent steps in parallel, verifies the result, and commits. On a failed, timed-out or
//! cancelled step it stops and undoes every started step in reverse order; after a crash, [`Engine::recover`]
//! does the same from the journal — or commits, when only verification remained.
//!
//! The engine talks to runtimes only through [`Runtime`]; it knows nothing of HTTP, processes or Kubernetes.

mod abandon;
mod engine;
mod ids;
mod lease;
mod recording;
mod recovery;
mod run;
mod runtime;
mod steps;

pub use engine::{DeploymentRequest, Engine, EngineConfig, EngineError};
pub use ids::Clock;
pub use recording::{Fault, FaultKind, RecordingRuntime, SLOW, read_state};
pub use runtime::{
    DatabaseLogin, DatabaseSnapshot, EnvironmentAddress, LogChunk, NoSecrets, Observed, Protection,
    Runtime, RuntimeError, SecretSource, ServiceStatus, StepLog,
};
