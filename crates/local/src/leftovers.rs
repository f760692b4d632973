//! What an abandoned step leaves behind, until it is gone. When the engine drops a step's future (the step timed
//! out, was cancelled, or its daemon stopped acting), whatever the step started is killed at once, in the drop;
//! what remains to be waited for — the processes' end, their cgroup's removal, a half-made directory, a lock held
//! so that the next checkout or build of the same tree never meets a process still writing — runs as a cleanup
//! task filed here under the step's environment. `settle` waits for those tasks, so that nothing the engine does
//! next (an undo, a retry) meets anything the step left; the daemon's shutdown waits for all of them.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use preview_deploy::EnvironmentAddress;
use tokio::task::JoinHandle;

type Cleanups = BTreeMap<EnvironmentAddress, Vec<JoinHandle<()>>>;

/// Every environment's cleanups still running.
#[derive(Clone, Default)]
pub struct Leftovers {
    cleanups: Arc<Mutex<Cleanups>>,
}

/// Where one environment's cleanups go.
#[derive(Clone)]
pub struct EnvironmentLeftovers {
    cleanups: Arc<Mutex<Cleanups>>,
    env: EnvironmentAddress,
}

impl Leftovers {
    pub fn of(&self, env: &EnvironmentAddress) -> EnvironmentLeftovers {
        EnvironmentLeftovers {
            cleanups: Arc::clone(&self.cleanups),
            env: env.clone(),
        }
    }

    /// Returns once every cleanup filed for `env` has ended, those filed while it waited included.
    pub async fn settle(&self, env: &EnvironmentAddress) {
        loop {
            let cleanups = self.take(|key| key == env);
            if cleanups.is_empty() {
                return;
            }
            for cleanup in cleanups {
                let _ = cleanup.await;
            }
        }
    }

    /// Returns once every cleanup of every environment has ended.
    pub async fn settle_all(&self) {
        loop {
            let cleanups = self.take(|_| true);
            if cleanups.is_empty() {
                return;
            }
            for cleanup in cleanups {
                let _ = cleanup.await;
            }
        }
    }

    fn take(&self, wanted: impl Fn(&EnvironmentAddress) -> bool) -> Vec<JoinHandle<()>> {
        let mut cleanups = match self.cleanups.lock() {
            Ok(cleanups) => cleanups,
            Err(poisoned) => poisoned.into_inner(),
        };
        let keys: Vec<EnvironmentAddress> =
            cleanups.keys().filter(|k| wanted(k)).cloned().collect();
        keys.iter()
            .filter_map(|key| cleanups.remove(key))
            .flatten()
            .collect()
    }
}

impl EnvironmentLeftovers {
    /// Runs `cleanup` to its end in the background, where `settle` waits for it. Outside a tokio runtime (a drop
    /// while the daemon's runtime is gone) nothing can wait any more: the kill that came before is all there is.
    pub fn adopt(&self, cleanup: impl Future<Output = ()> + Send + 'static) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let task = runtime.spawn(cleanup);
        let mut cleanups = match self.cleanups.lock() {
            Ok(cleanups) => cleanups,
            Err(poisoned) => poisoned.into_inner(),
        };
        let filed = cleanups.entry(self.env.clone()).or_default();
        // Nobody may settle an environment for a long time (leftovers of the daemon's own restarts of apps): the
        // list keeps only what still runs.
        filed.retain(|task| !task.is_finished());
        filed.push(task);
    }

    /// Waits for `task` (work that cannot be stopped, such as a copy on a blocking thread) through a cleanup filed
    /// here: when the caller is dropped first, `settle` still waits for the task.
    pub(crate) async fn outlive<T: Send + 'static>(
        &self,
        task: JoinHandle<T>,
    ) -> Result<T, String> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.adopt(async move {
            let _ = sender.send(task.await);
        });
        match receiver.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("the daemon is stopping".to_owned()),
        }
    }
}
