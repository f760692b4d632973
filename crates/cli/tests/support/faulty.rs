//! A daemon whose database operations fail or are killed on demand, for the suites that prove a failed or killed
//! step leaves nothing behind.

use std::path::{Path, PathBuf};

use super::Daemon;

/// A daemon whose database operations fail or kill it on demand (`PREVIEW_TEST_FAULTS`), started again after each
/// kill on the same data directory.
pub struct Faulty {
    pub data: PathBuf,
    ports: &'static str,
    pub faults: PathBuf,
    pub daemon: Option<Daemon>,
}

impl Faulty {
    pub fn start(dir: &Path, ports: &'static str) -> Faulty {
        let faults = dir.join("faults");
        std::fs::write(&faults, "").expect("faults");
        let mut faulty = Faulty {
            data: dir.join("data"),
            ports,
            faults,
            daemon: None,
        };
        faulty.daemon = Some(faulty.started());
        faulty
    }

    pub fn started(&self) -> Daemon {
        super::local_daemon_with_env(
            &self.data,
            self.ports,
            &[("PREVIEW_TEST_FAULTS", self.faults.to_str().expect("path"))],
        )
    }

    pub fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("a daemon")
    }

    /// Runs the deployment `args` of `project` with `fault` (`fail` or `kill`) `when` (`before` or `after`) the
    /// database operation `operation`, and returns how the deployment ended once the fault was seen to happen (a
    /// killed daemon started again and the deployment recovered; a failing operation allowed again after its
    /// first failure, so that a step past the point of no return completes on its retry).
    pub fn inject(
        &mut self,
        project: &str,
        args: &[&str],
        operation: &str,
        fault: &str,
        when: &str,
    ) -> String {
        std::fs::write(&self.faults, format!("{operation} {fault} {when}\n")).expect("faults");
        let mut all = vec!["--project", project];
        all.extend_from_slice(args);
        all.push("--no-wait");
        let started = self.daemon().json(&all);
        let id = deployment_id(&started);
        if fault == "kill" {
            self.daemon.take().expect("a daemon").wait_killed();
            std::fs::write(&self.faults, "").expect("faults");
            self.daemon = Some(self.started());
        } else {
            let expected = format!("injected fault {when} the database operation `{operation}`");
            super::wait_for(&expected, std::time::Duration::from_secs(120), || {
                let logs = self.daemon().json(&["deployment", "logs", &id]).to_string();
                if logs.contains(&expected) {
                    return true;
                }
                // Ended without getting to the operation: say how, rather than wait on.
                let shown = self.daemon().json(&["deployment", "show", &id]);
                assert!(
                    !matches!(
                        shown["deployment"]["status"].as_str(),
                        Some("committed" | "rolled_back" | "abandoned")
                    ),
                    "the deployment ended before the fault: {shown}\n{logs}"
                );
                false
            });
            std::fs::write(&self.faults, "").expect("faults");
        }
        let ended = super::wait_until_ended(self.daemon(), &id);
        ended["deployment"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

pub const FAULTS: [(&str, &str); 4] = [
    ("fail", "before"),
    ("fail", "after"),
    ("kill", "before"),
    ("kill", "after"),
];

/// The id of the deployment a `--no-wait` command started.
pub fn deployment_id(started: &serde_json::Value) -> String {
    started["deployment"]["id"]
        .as_str()
        .or_else(|| started["id"].as_str())
        .unwrap_or_else(|| panic!("no deployment id in {started}"))
        .to_owned()
}
