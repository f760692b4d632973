//! A consistent copy of one database into another, optionally masked in the stream: the schema first (`pg_dump`
//! of its pre-data section), then every table's rows `COPY`ed out of the source and into the target — through the
//! masking transforms where rules apply — several tables at once, all reading one snapshot of the source; then
//! indexes, constraints and triggers (post-data), and the sequences set to the source's values. The source's apps
//! keep running meanwhile: nothing here locks more than a reader does.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_postgres::Client;

use crate::DatabaseError;
use crate::copy_text::{Lines, mask_row};
use crate::masking::{Masker, Rule};
use crate::masking_plan::{MaskingPlan, Rules, plan_masking};
use crate::postgres::admin::GOLDEN_OWNER;
use crate::postgres::binaries::Binaries;
use crate::postgres::catalog;
use crate::postgres::connection::{Connection, quote_identifier};
use crate::postgres::programs::copy_schema_section;

/// The masking of a copy: the key and the rules.
pub struct Masking<'a> {
    pub masker: &'a Masker,
    pub rules: &'a Rules,
    pub strict: bool,
}

/// What a copy did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub tables: usize,
    pub rows: u64,
    pub bytes: u64,
    /// Personal-looking columns copied without a rule.
    pub warnings: Vec<String>,
}

/// How many tables are copied at once.
const PARALLEL_TABLES: usize = 4;

/// How much masked output is gathered before it is sent.
const BATCH: usize = 256 * 1024;

/// A database whose foreign servers have user mappings is not copied: their options may hold another system's
/// credentials, which the copy's schema would carry to whoever owns the copy.
async fn refuse_user_mappings(reader: &Client, source: &Connection) -> Result<(), DatabaseError> {
    let rows = reader
        .query(
            "SELECT srvname || ' for ' || usename FROM pg_user_mappings ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| DatabaseError::postgres("cannot read the source's user mappings", &e))?;
    if rows.is_empty() {
        return Ok(());
    }
    let mappings: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    Err(DatabaseError::Invalid(format!(
        "{} has user mappings for foreign servers ({}); their options may hold credentials, which a copy would hand to the copy's owner, so it is not copied (drop the mappings, or use `policy: seed`)",
        source.describe(),
        mappings.join(", ")
    )))
}

/// Copies `source` (an admin login to the source database) into `target` (an admin login to a new, empty
/// database), whose objects end up owned by [`GOLDEN_OWNER`]. Masking rules are checked against the source
/// before anything is copied.
pub async fn copy_database(
    binaries: &Binaries,
    source: &Connection,
    target: &Connection,
    masking: Option<Masking<'_>>,
    log: &(dyn Fn(String) + Sync),
) -> Result<CopyReport, DatabaseError> {
    copy_database_as(binaries, source, target, None, masking, log).await
}

/// [`copy_database`], writing into the copy as `writer` — a login of [`GOLDEN_OWNER`] itself — when given.
/// Writing rows runs the copied schema's code (check constraints, domains, generated columns, functions they
/// call), which the source's owner wrote: as the administrator it could make itself a superuser, and `SET ROLE`
/// does not hold it (a function may `RESET ROLE`). Servers `preview` runs give the golden owner a login of its
/// own for this; on an external server the administrator writes.
pub async fn copy_database_as(
    binaries: &Binaries,
    source: &Connection,
    target: &Connection,
    writer: Option<&Connection>,
    masking: Option<Masking<'_>>,
    log: &(dyn Fn(String) + Sync),
) -> Result<CopyReport, DatabaseError> {
    let (writer, role) = match writer {
        Some(writer) => (writer, None),
        None => (target, Some(GOLDEN_OWNER)),
    };
    let reader = source.connect_pinned().await?;
    reader
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| DatabaseError::postgres("cannot begin reading the source", &e))?;
    let snapshot: String = reader
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(|e| DatabaseError::postgres("cannot share the source's snapshot", &e))?
        .get(0);
    refuse_user_mappings(&reader, source).await?;
    let catalog = catalog::read(&reader).await?;
    let plan = match &masking {
        Some(masking) => plan_masking(&catalog, masking.rules, masking.strict)?,
        None => MaskingPlan::default(),
    };
    for warning in &plan.warnings {
        log(format!("warning: {warning}"));
    }
    // The copy's objects are made by their own role, which may connect to it and make them in its `public`
    // schema.
    target
        .connect()
        .await?
        .batch_execute(&format!(
            "GRANT CONNECT ON DATABASE {db} TO {owner}; GRANT USAGE, CREATE ON SCHEMA public TO {owner}",
            db = quote_identifier(&target.dbname),
            owner = quote_identifier(GOLDEN_OWNER)
        ))
        .await
        .map_err(|e| DatabaseError::postgres("cannot prepare the copy", &e))?;
    copy_schema_section(binaries, source, &snapshot, "pre-data", writer, role).await?;
    let mut tables: Vec<(&String, &catalog::Table)> = catalog.tables.iter().collect();
    tables.sort_by_key(|(_, table)| std::cmp::Reverse(table.estimated_rows));
    let queue = Arc::new(std::sync::Mutex::new(
        tables
            .into_iter()
            .map(|(name, table)| {
                let rules: Vec<Option<Rule>> = table
                    .columns
                    .iter()
                    .map(|column| plan.columns.get(name).and_then(|c| c.get(column)).cloned())
                    .collect();
                (name.clone(), table.columns.clone(), rules)
            })
            .collect::<Vec<_>>(),
    ));
    let masker = masking.as_ref().map(|m| m.masker);
    let mut report = CopyReport {
        tables: catalog.tables.len(),
        warnings: plan.warnings.clone(),
        ..CopyReport::default()
    };
    let workers = (0..PARALLEL_TABLES).map(|_| {
        let queue = Arc::clone(&queue);
        let snapshot = snapshot.clone();
        async move {
            let (mut rows, mut bytes) = (0u64, 0u64);
            let from = source.connect_pinned().await?;
            from.batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
                crate::postgres::connection::quote_literal(&snapshot)
            ))
            .await
            .map_err(|e| DatabaseError::postgres("cannot read the source's snapshot", &e))?;
            let to = writer.connect().await?;
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some((table, columns, rules)) = next else {
                    break;
                };
                let (r, b) = copy_table(&from, &to, &table, &columns, &rules, masker).await?;
                rows += r;
                bytes += b;
            }
            Ok::<_, DatabaseError>((rows, bytes))
        }
    });
    for result in futures_util::future::join_all(workers).await {
        let (rows, bytes) = result?;
        report.rows += rows;
        report.bytes += bytes;
    }
    copy_schema_section(binaries, source, &snapshot, "post-data", writer, role).await?;
    let to = target.connect().await?;
    for (sequence, value, called) in &catalog.sequences {
        to.execute(
            "SELECT setval($1::text::regclass, $2, $3)",
            &[sequence, value, called],
        )
        .await
        .map_err(|e| DatabaseError::postgres(&format!("cannot set sequence {sequence}"), &e))?;
    }
    reader
        .batch_execute("COMMIT")
        .await
        .map_err(|e| DatabaseError::postgres("cannot finish reading the source", &e))?;
    Ok(report)
}

/// One table's rows from `from` to `to`; only rows of tables with masked columns are taken apart.
async fn copy_table(
    from: &Client,
    to: &Client,
    table: &str,
    columns: &[String],
    rules: &[Option<Rule>],
    masker: Option<&Masker>,
) -> Result<(u64, u64), DatabaseError> {
    let fail = |what: &str, e: tokio_postgres::Error| {
        DatabaseError::postgres(&format!("cannot {what} the rows of {table}"), &e)
    };
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    let relation = format!("{}.{}", quote_identifier(schema), quote_identifier(name));
    let list = columns
        .iter()
        .map(|c| quote_identifier(c))
        .collect::<Vec<_>>()
        .join(", ");
    let out = from
        .copy_out(&format!("COPY {relation} ({list}) TO STDOUT"))
        .await
        .map_err(|e| fail("read", e))?;
    let sink = to
        .copy_in::<_, Bytes>(&format!("COPY {relation} ({list}) FROM STDIN"))
        .await
        .map_err(|e| fail("write", e))?;
    futures_util::pin_mut!(out);
    futures_util::pin_mut!(sink);
    let mut bytes = 0u64;
    let masked: Option<(Vec<Option<&Rule>>, &Masker)> = match masker {
        Some(masker) if rules.iter().any(Option::is_some) => {
            Some((rules.iter().map(Option::as_ref).collect(), masker))
        }
        _ => None,
    };
    let mut lines = Lines::default();
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH);
    while let Some(chunk) = out.next().await {
        let chunk = chunk.map_err(|e| fail("read", e))?;
        bytes += chunk.len() as u64;
        match &masked {
            // PostgreSQL sends a message per row, and each send would wake the connection: rows go in batches.
            None => batch.extend_from_slice(&chunk),
            Some((rules, masker)) => {
                lines.push(&chunk);
                while let Some(row) = lines.next_row() {
                    mask_row(row, rules, masker, &mut batch).map_err(|e| {
                        DatabaseError::Invalid(format!("cannot mask a row of {table}: {e}"))
                    })?;
                }
            }
        }
        if batch.len() >= BATCH {
            sink.send(Bytes::from(std::mem::replace(
                &mut batch,
                Vec::with_capacity(BATCH),
            )))
            .await
            .map_err(|e| fail("write", e))?;
        }
    }
    if masked.is_some() {
        lines
            .finish()
            .map_err(|e| DatabaseError::Invalid(format!("the rows of {table} ended early: {e}")))?;
    }
    if !batch.is_empty() {
        sink.send(Bytes::from(batch))
            .await
            .map_err(|e| fail("write", e))?;
    }
    let rows = sink.finish().await.map_err(|e| fail("write", e))?;
    Ok((rows, bytes))
}
