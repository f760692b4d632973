//! Reading rows back into records; a value of the wrong type is reported as corrupt, never guessed at.

use preview_plan::Plan;

use crate::driver::{Param, Row};
use crate::records::*;
use crate::store::StoreError;

type Result<T> = std::result::Result<T, StoreError>;

fn column(row: &Row, index: usize) -> Result<&Param> {
    row.get(index)
        .ok_or_else(|| StoreError::Corrupt(format!("missing column {index}")))
}

pub(crate) fn text(row: &Row, index: usize) -> Result<String> {
    match column(row, index)? {
        Param::Text(text) => Ok(text.clone()),
        other => Err(StoreError::Corrupt(format!(
            "expected text in column {index}, found {other:?}"
        ))),
    }
}

pub(crate) fn optional_text(row: &Row, index: usize) -> Result<Option<String>> {
    match column(row, index)? {
        Param::Null => Ok(None),
        _ => text(row, index).map(Some),
    }
}

pub(crate) fn int(row: &Row, index: usize) -> Result<i64> {
    match column(row, index)? {
        Param::Int(value) => Ok(*value),
        other => Err(StoreError::Corrupt(format!(
            "expected an integer in column {index}, found {other:?}"
        ))),
    }
}

pub(crate) fn optional_int(row: &Row, index: usize) -> Result<Option<i64>> {
    match column(row, index)? {
        Param::Null => Ok(None),
        _ => int(row, index).map(Some),
    }
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parsed<T>(value: String, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
    parse(&value).ok_or_else(|| StoreError::Corrupt(format!("unknown value `{value}`")))
}

pub(crate) fn project_record(row: &Row) -> Result<ProjectRecord> {
    Ok(ProjectRecord {
        name: text(row, 0)?,
        file: text(row, 1)?,
        source: text(row, 2)?,
        updated_at: int(row, 3)?,
        directory: optional_text(row, 4)?,
    })
}

pub(crate) const ENVIRONMENT_COLUMNS: &str =
    "SELECT project, name, based_on, created_at, owner, follows FROM environments";

pub(crate) fn environment_record(row: &Row) -> Result<EnvironmentRecord> {
    Ok(EnvironmentRecord {
        project: text(row, 0)?,
        name: text(row, 1)?,
        based_on: optional_text(row, 2)?,
        created_at: int(row, 3)?,
        owner: optional_text(row, 4)?,
        follows: optional_text(row, 5)?,
    })
}

pub(crate) const DEPLOYMENT_COLUMNS: &str = "SELECT id, project, environment, operation, based_on, status, reason, \
     plan, holder, created_at, finished_at, owner, attempts, last_error, retry_at, source_commit, follows, keep_settings FROM deployments";

pub(crate) fn deployment_record(row: &Row) -> Result<DeploymentRecord> {
    Ok(DeploymentRecord {
        id: text(row, 0)?,
        project: text(row, 1)?,
        environment: text(row, 2)?,
        operation: parsed(text(row, 3)?, Operation::parse)?,
        based_on: optional_text(row, 4)?,
        status: parsed(text(row, 5)?, DeploymentStatus::parse)?,
        reason: optional_text(row, 6)?,
        plan: json::<Plan>(&text(row, 7)?)?,
        holder: text(row, 8)?,
        created_at: int(row, 9)?,
        finished_at: optional_int(row, 10)?,
        owner: optional_text(row, 11)?,
        attempts: int(row, 12)?,
        last_error: optional_text(row, 13)?,
        retry_at: optional_int(row, 14)?,
        source_commit: optional_text(row, 15)?,
        follows: optional_text(row, 16)?,
        keep_settings: int(row, 17)? != 0,
    })
}

pub(crate) const JOURNAL_COLUMNS: &str =
    "SELECT deployment, seq, step, phase, event, message, at, holder, epoch FROM journal";

pub(crate) fn journal_entry(row: &Row) -> Result<JournalEntry> {
    Ok(JournalEntry {
        deployment: text(row, 0)?,
        seq: int(row, 1)?,
        step: int(row, 2)?,
        phase: parsed(text(row, 3)?, Phase::parse)?,
        event: parsed(text(row, 4)?, JournalEvent::parse)?,
        message: text(row, 5)?,
        at: int(row, 6)?,
        holder: text(row, 7)?,
        epoch: int(row, 8)?,
    })
}

pub(crate) fn attention_record(row: &Row) -> Result<AttentionRecord> {
    Ok(AttentionRecord {
        project: text(row, 0)?,
        environment: text(row, 1)?,
        deployment: text(row, 2)?,
        note: text(row, 3)?,
        at: int(row, 4)?,
    })
}
