//! Embedded migrations, applied in order on open; the same DDL serves SQLite and PostgreSQL.

/// Each entry is one schema version; never edit a released one, add a new one.
pub(crate) const MIGRATIONS: &[&[&str]] = &[
    &[
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE projects (
        name TEXT PRIMARY KEY,
        file TEXT NOT NULL,
        source TEXT NOT NULL,
        updated_at BIGINT NOT NULL)",
        "CREATE TABLE environments (
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        based_on TEXT,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (project, name))",
        "CREATE TABLE resources (
        project TEXT NOT NULL,
        environment TEXT NOT NULL,
        id TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (project, environment, id))",
        "CREATE TABLE deployments (
        id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        environment TEXT NOT NULL,
        operation TEXT NOT NULL,
        based_on TEXT,
        status TEXT NOT NULL,
        reason TEXT,
        plan TEXT NOT NULL,
        holder TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        finished_at BIGINT)",
        "CREATE INDEX deployments_by_environment ON deployments (project, environment, created_at)",
        "CREATE TABLE journal (
        deployment TEXT NOT NULL,
        seq BIGINT NOT NULL,
        step BIGINT NOT NULL,
        phase TEXT NOT NULL,
        event TEXT NOT NULL,
        message TEXT NOT NULL,
        at BIGINT NOT NULL,
        PRIMARY KEY (deployment, seq))",
        "CREATE TABLE leases (
        project TEXT NOT NULL,
        environment TEXT NOT NULL,
        deployment TEXT NOT NULL,
        holder TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (project, environment))",
    ],
    &[
        "CREATE TABLE variables (
        project TEXT NOT NULL,
        scope TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (project, scope, name))",
        "CREATE TABLE secrets (
        project TEXT NOT NULL,
        scope TEXT NOT NULL,
        name TEXT NOT NULL,
        nonce TEXT NOT NULL,
        ciphertext TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        previews TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (project, scope, name))",
    ],
    &["ALTER TABLE projects ADD COLUMN directory TEXT"],
];
