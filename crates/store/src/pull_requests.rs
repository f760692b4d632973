//! Pull requests as last seen, per project: what a webhook said (unconfirmed) or what the forge's API or the local
//! repository's branches say (confirmed), and the reconciler's marks on each. Every observation raises the row's
//! `version`; a confirmation read before a newer event is written only over the version it read, so an event is
//! never lost to a slower read of the forge.
//!
//! SQLite numbers `$N` parameters in the order they first appear, so every statement names them in that order.

use crate::driver::Statement;
use crate::records::PullRequestRecord;
use crate::rows::{int, optional_int, optional_text, text};
use crate::store::{Result, Store};

/// A pull request's state as one source saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub number: i64,
    /// The state as JSON (the forge crate's `PullState`).
    pub state: String,
    pub open: bool,
    pub head: String,
    /// From the forge's API or the branches (`true`), or from a webhook (`false`).
    pub confirmed: bool,
}

const COLUMNS: &str = "project, number, version, state, open, head, confirmed, observed_at, claimed, claimed_at, approved_head, expired_head, failed_head, paths_head, paths, outcome, feedback";

impl Store {
    /// The statement that writes an observation of an event, whatever was seen before.
    pub(crate) fn observe_statement(project: &str, seen: &Observation, now: i64) -> Statement {
        Store::insert_observation(
            project,
            seen,
            now,
            "ON CONFLICT (project, number) DO UPDATE SET version = pull_requests.version + 1, state = $3,
                 open = $4, head = $5, confirmed = $6, observed_at = $7",
        )
    }

    fn insert_observation(
        project: &str,
        seen: &Observation,
        now: i64,
        on_conflict: &str,
    ) -> Statement {
        Statement::new(
            &format!(
                "INSERT INTO pull_requests (project, number, version, state, open, head, confirmed, observed_at)
                 VALUES ($1, $2, 1, $3, $4, $5, $6, $7) {on_conflict}"
            ),
            vec![
                project.into(),
                seen.number.into(),
                seen.state.as_str().into(),
                i64::from(seen.open).into(),
                seen.head.as_str().into(),
                i64::from(seen.confirmed).into(),
                now.into(),
            ],
        )
    }

    /// Writes what the forge says of a pull request, over the version read before asking it (`None`: none was
    /// stored). False when the row changed meanwhile (a newer event): it is looked at again.
    pub async fn confirm_pull_request(
        &self,
        project: &str,
        seen: &Observation,
        over: Option<i64>,
    ) -> Result<bool> {
        let now = self.now().await?;
        let statement = match over {
            None => Store::insert_observation(project, seen, now, "ON CONFLICT DO NOTHING"),
            Some(version) => Statement::new(
                "UPDATE pull_requests SET version = version + 1, state = $1, open = $2, head = $3, confirmed = $4,
                     observed_at = $5
                 WHERE project = $6 AND number = $7 AND version = $8",
                vec![
                    seen.state.as_str().into(),
                    i64::from(seen.open).into(),
                    seen.head.as_str().into(),
                    i64::from(seen.confirmed).into(),
                    now.into(),
                    project.into(),
                    seen.number.into(),
                    version.into(),
                ],
            ),
        };
        self.changed(vec![statement.must_change()]).await
    }

    /// The project's pull requests, by number.
    pub async fn pull_requests(&self, project: &str) -> Result<Vec<PullRequestRecord>> {
        let rows = self
            .driver
            .query(
                &format!("SELECT {COLUMNS} FROM pull_requests WHERE project = $1 ORDER BY number"),
                vec![project.into()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(PullRequestRecord {
                    project: text(row, 0)?,
                    number: int(row, 1)?,
                    version: int(row, 2)?,
                    state: text(row, 3)?,
                    open: int(row, 4)? != 0,
                    head: text(row, 5)?,
                    confirmed: int(row, 6)? != 0,
                    observed_at: int(row, 7)?,
                    claimed: int(row, 8)? != 0,
                    claimed_at: optional_int(row, 9)?,
                    approved_head: optional_text(row, 10)?,
                    expired_head: optional_text(row, 11)?,
                    failed_head: optional_text(row, 12)?,
                    paths_head: optional_text(row, 13)?,
                    paths: optional_text(row, 14)?,
                    outcome: text(row, 15)?,
                    feedback: optional_text(row, 16)?,
                })
            })
            .collect()
    }

    /// Writes the reconciler's marks on a pull request (not its observed state), if its claim is still the one the
    /// reconciler read (`claimed_at`): false when another daemon's reconciler claimed or released it meanwhile.
    pub async fn mark_pull_request(
        &self,
        marks: &PullRequestRecord,
        read_claimed_at: Option<i64>,
    ) -> Result<bool> {
        self.changed(vec![
            Statement::new(
                "UPDATE pull_requests SET claimed = $1, claimed_at = $2, expired_head = $3, failed_head = $4,
                     paths_head = $5, paths = $6, outcome = $7
                 WHERE project = $8 AND number = $9 AND COALESCE(claimed_at, -1) = $10",
                vec![
                    i64::from(marks.claimed).into(),
                    marks.claimed_at.into(),
                    marks.expired_head.clone().into(),
                    marks.failed_head.clone().into(),
                    marks.paths_head.clone().into(),
                    marks.paths.clone().into(),
                    marks.outcome.as_str().into(),
                    marks.project.as_str().into(),
                    marks.number.into(),
                    read_claimed_at.unwrap_or(-1).into(),
                ],
            )
            .must_change(),
        ])
        .await
    }

    /// Keeps what a pull request was told through its forge.
    pub async fn set_pull_request_feedback(
        &self,
        project: &str,
        number: i64,
        feedback: &str,
    ) -> Result<()> {
        self.changed(vec![Statement::new(
            "UPDATE pull_requests SET feedback = $1 WHERE project = $2 AND number = $3",
            vec![feedback.into(), project.into(), number.into()],
        )])
        .await?;
        Ok(())
    }

    /// Records a maintainer's approval of a pull request's head; false when the pull request is not known.
    pub async fn approve_pull_request(
        &self,
        project: &str,
        number: i64,
        head: &str,
    ) -> Result<bool> {
        self.changed(vec![
            Statement::new(
                "UPDATE pull_requests SET approved_head = $1 WHERE project = $2 AND number = $3",
                vec![head.into(), project.into(), number.into()],
            )
            .must_change(),
        ])
        .await
    }

    /// Takes or keeps the role `name` for `holder` for `ttl_ms` more milliseconds (the store's clock): true when
    /// `holder` has it now — nobody had it, it expired, or it was `holder`'s already.
    pub async fn hold_role(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool> {
        self.changed(vec![
            Statement::new(
                &self.sql(
                    "INSERT INTO roles (name, holder, expires_at) VALUES ($1, $2, {now} + $3)
                     ON CONFLICT (name) DO UPDATE SET holder = $2, expires_at = {now} + $3
                     WHERE roles.holder = $2 OR roles.expires_at < {now}",
                ),
                vec![name.into(), holder.into(), ttl_ms.into()],
            )
            .must_change(),
        ])
        .await
    }

    /// Gives the role `name` up, if `holder` has it.
    pub async fn release_role(&self, name: &str, holder: &str) -> Result<()> {
        self.changed(vec![Statement::new(
            "DELETE FROM roles WHERE name = $1 AND holder = $2",
            vec![name.into(), holder.into()],
        )])
        .await?;
        Ok(())
    }

    /// Forgets pull requests closed for longer than `age_ms` whose preview is gone.
    pub async fn forget_closed_pull_requests(&self, project: &str, age_ms: i64) -> Result<()> {
        let now = self.now().await?;
        self.changed(vec![Statement::new(
            "DELETE FROM pull_requests WHERE project = $1 AND open = 0 AND claimed = 0 AND observed_at < $2",
            vec![project.into(), (now - age_ms).into()],
        )])
        .await?;
        Ok(())
    }
}
