//! What a copy needs to know of the source database, read inside the copy's snapshot: its tables and their
//! columns, which columns must stay unique or non-null, which reference which, and its sequences.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::Client;

use crate::DatabaseError;

/// `schema.table`, as masking rules and messages name it.
pub type TableName = String;

#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Copied columns in their order (generated columns are computed again, not copied).
    pub columns: Vec<String>,
    pub not_null: BTreeSet<String>,
    /// Columns that are part of a primary key or unique constraint or index.
    pub unique: BTreeSet<String>,
    /// Estimated rows, for the order tables are copied in (largest first).
    pub estimated_rows: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: BTreeMap<TableName, Table>,
    /// Column references: (table, column) → the (table, column) it references.
    pub references: Vec<((TableName, String), (TableName, String))>,
    /// `schema.sequence` → its value and whether it was used (`setval`'s third argument).
    pub sequences: Vec<(String, i64, bool)>,
}

const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'";

pub async fn read(client: &Client) -> Result<Catalog, DatabaseError> {
    let fail = |what: &str, e: tokio_postgres::Error| {
        DatabaseError::postgres(&format!("cannot read the source's {what}"), &e)
    };
    let mut catalog = Catalog::default();
    // Tables that hold rows (partitioned parents hold none: their partitions are copied), not members of
    // extensions (an extension makes its own again).
    let rows = client
        .query(
            &format!(
                "SELECT n.nspname || '.' || c.relname, c.reltuples::bigint, c.oid
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind = 'r' AND {USER_SCHEMAS}
                   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                   AND d.objid = c.oid AND d.deptype = 'e')"
            ),
            &[],
        )
        .await
        .map_err(|e| fail("tables", e))?;
    let mut by_oid: BTreeMap<u32, TableName> = BTreeMap::new();
    for row in rows {
        let name: String = row.get(0);
        let oid: u32 = row.get(2);
        by_oid.insert(oid, name.clone());
        catalog.tables.insert(
            name,
            Table {
                estimated_rows: row.get(1),
                ..Table::default()
            },
        );
    }
    let columns = client
        .query(
            "SELECT a.attrelid, a.attname, a.attnotnull
             FROM pg_attribute a
             WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
               AND a.attrelid = ANY($1)
             ORDER BY a.attrelid, a.attnum",
            &[&by_oid.keys().copied().collect::<Vec<u32>>()],
        )
        .await
        .map_err(|e| fail("columns", e))?;
    for row in columns {
        let oid: u32 = row.get(0);
        let Some(table) = by_oid
            .get(&oid)
            .and_then(|name| catalog.tables.get_mut(name))
        else {
            continue;
        };
        let column: String = row.get(1);
        if row.get::<_, bool>(2) {
            table.not_null.insert(column.clone());
        }
        table.columns.push(column);
    }
    let unique = client
        .query(
            "SELECT i.indrelid, a.attname
             FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indisunique AND i.indrelid = ANY($1)",
            &[&by_oid.keys().copied().collect::<Vec<u32>>()],
        )
        .await
        .map_err(|e| fail("unique indexes", e))?;
    for row in unique {
        let oid: u32 = row.get(0);
        if let Some(table) = by_oid
            .get(&oid)
            .and_then(|name| catalog.tables.get_mut(name))
        {
            table.unique.insert(row.get(1));
        }
    }
    let references = client
        .query(
            "SELECT c.conrelid, a.attname, c.confrelid, fa.attname
             FROM pg_constraint c
             CROSS JOIN LATERAL unnest(c.conkey, c.confkey) AS k(child, parent)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.child
             JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = k.parent
             WHERE c.contype = 'f' AND c.conrelid = ANY($1)",
            &[&by_oid.keys().copied().collect::<Vec<u32>>()],
        )
        .await
        .map_err(|e| fail("foreign keys", e))?;
    for row in references {
        let (child, parent): (u32, u32) = (row.get(0), row.get(2));
        if let (Some(child), Some(parent)) = (by_oid.get(&child), by_oid.get(&parent)) {
            catalog
                .references
                .push(((child.clone(), row.get(1)), (parent.clone(), row.get(3))));
        }
    }
    let sequences = client
        .query(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), last_value, start_value
             FROM pg_sequences WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await
        .map_err(|e| fail("sequences", e))?;
    for row in sequences {
        let last: Option<i64> = row.get(1);
        let start: i64 = row.get(2);
        catalog
            .sequences
            .push((row.get(0), last.unwrap_or(start), last.is_some()));
    }
    Ok(catalog)
}
