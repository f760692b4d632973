//! Everything the server knows, behind one lock: the store, the kinds served, the credentials accepted, the traffic
//! recorded, and the knobs tests turn (faults, refusals, denials, logs, schedulability, paused controllers).
//!
//! The lock is never held across an await: handlers and controller ticks take it, do their work and let go.

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::access::Denial;
use super::catalog::Catalog;
use super::controllers::Memory;
use super::faults::{Faults, Recorded};
use super::store::Store;
use super::validation::Rejection;

pub(crate) struct State {
    pub store: Store,
    pub catalog: Catalog,
    pub token: String,
    pub records: Vec<Recorded>,
    pub faults: Faults,
    pub rejections: Vec<Rejection>,
    pub denials: Vec<Denial>,
    /// (pod name prefix, log text), the latest first.
    pub logs: Vec<(String, String)>,
    pub schedulable: bool,
    pub paused: bool,
    pub memory: Memory,
    /// What serves pods' forwarded ports.
    pub pod_backend: Option<super::forward::PodBackend>,
}

impl State {
    pub fn new(token: &str) -> State {
        State {
            store: Store::new(),
            catalog: Catalog::new(),
            token: token.to_owned(),
            records: Vec::new(),
            faults: Faults::default(),
            rejections: Vec::new(),
            denials: Vec::new(),
            logs: Vec::new(),
            schedulable: true,
            paused: false,
            memory: Memory::default(),
            pod_backend: None,
        }
    }
}

/// The state shared by the listener, its connections and the controllers.
pub(crate) struct Shared {
    state: Mutex<State>,
}

impl Shared {
    pub fn new(state: State) -> Shared {
        Shared {
            state: Mutex::new(state),
        }
    }

    /// The state; a panic elsewhere while holding it does not make it unusable (the test reports that panic).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
