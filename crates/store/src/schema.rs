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
    // Fencing and ownership: every take of a lease has an epoch that guards what its holder writes; journal entries
    // say who wrote them; environments of machine-local runtimes belong to one daemon; each environment's
    // committed state has a revision that a deployment's plan is checked against; a deployment that could not
    // finish keeps its first reason, its latest error and when it is retried; an abandoned one marks its
    // environment as needing attention.
    &[
        "ALTER TABLE leases ADD COLUMN epoch BIGINT NOT NULL DEFAULT 1",
        "ALTER TABLE journal ADD COLUMN holder TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE journal ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE deployments ADD COLUMN owner TEXT",
        "ALTER TABLE deployments ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE deployments ADD COLUMN retry_at BIGINT",
        "ALTER TABLE deployments ADD COLUMN last_error TEXT",
        "ALTER TABLE environments ADD COLUMN owner TEXT",
        "CREATE TABLE revisions (
        project TEXT NOT NULL,
        environment TEXT NOT NULL,
        revision BIGINT NOT NULL,
        PRIMARY KEY (project, environment))",
        "CREATE TABLE attention (
        project TEXT NOT NULL,
        environment TEXT NOT NULL,
        deployment TEXT NOT NULL,
        note TEXT NOT NULL,
        at BIGINT NOT NULL,
        PRIMARY KEY (project, environment))",
    ],
    // Secrets by version: a resource names the version (fingerprint) it was planned with, so that a rollback gets
    // back exactly the value it had; versions are kept while a recorded state or unfinished deployment names them.
    // Every sealed value says which master key sealed it.
    &[
        "CREATE TABLE secret_versions (
        project TEXT NOT NULL,
        scope TEXT NOT NULL,
        name TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        nonce TEXT NOT NULL,
        ciphertext TEXT NOT NULL,
        key_id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        retired_at BIGINT,
        PRIMARY KEY (project, scope, name, fingerprint))",
        "INSERT INTO secret_versions (project, scope, name, fingerprint, nonce, ciphertext, key_id, created_at)
         SELECT project, scope, name, fingerprint, nonce, ciphertext, '', updated_at FROM secrets",
        "ALTER TABLE secrets DROP COLUMN nonce",
        "ALTER TABLE secrets DROP COLUMN ciphertext",
    ],
    // Which daemon runs where: a daemon's name may not be used by a live daemon somewhere else.
    &["CREATE TABLE daemons (
        id TEXT PRIMARY KEY,
        home TEXT NOT NULL,
        seen_at BIGINT NOT NULL)"],
    // What a deployment builds from: the commit, and the branch, tag or commit its environment follows afterwards
    // (a later deployment without a reference builds that reference's head). A deletion removes the variables and
    // secrets scoped to its environment unless asked to keep them.
    &[
        "ALTER TABLE deployments ADD COLUMN source_commit TEXT",
        "ALTER TABLE deployments ADD COLUMN follows TEXT",
        "ALTER TABLE deployments ADD COLUMN keep_settings BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE environments ADD COLUMN follows TEXT",
    ],
    // Webhook deliveries, by their forge's id: each is applied once; the latest are kept for `webhooks list`.
    &["CREATE TABLE webhook_deliveries (
        project TEXT NOT NULL,
        delivery TEXT NOT NULL,
        forge TEXT NOT NULL,
        event TEXT NOT NULL,
        action TEXT,
        pull_request BIGINT,
        head TEXT,
        verdict TEXT NOT NULL,
        detail TEXT NOT NULL,
        event_json TEXT,
        body_digest TEXT,
        received_at BIGINT NOT NULL,
        PRIMARY KEY (project, delivery))",
      // A body the forge signed is applied once, whatever id it comes under (ids are not signed).
      "CREATE UNIQUE INDEX webhook_deliveries_body ON webhook_deliveries (project, body_digest)",
      "CREATE INDEX webhook_deliveries_received ON webhook_deliveries (project, verdict, received_at)"],
    // Pull requests as last seen (a webhook's word until the forge's API confirms it: `version` counts every
    // observation, so a confirmation read before a newer event never overwrites it), and what the reconciler
    // keeps about each: whether it made the preview, the heads approved, expired or failed, its last decision.
    &["CREATE TABLE pull_requests (
        project TEXT NOT NULL,
        number BIGINT NOT NULL,
        version BIGINT NOT NULL,
        state TEXT NOT NULL,
        open BIGINT NOT NULL,
        head TEXT NOT NULL,
        confirmed BIGINT NOT NULL,
        observed_at BIGINT NOT NULL,
        claimed BIGINT NOT NULL DEFAULT 0,
        claimed_at BIGINT,
        approved_head TEXT,
        expired_head TEXT,
        failed_head TEXT,
        paths_head TEXT,
        paths TEXT,
        outcome TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (project, number))"],
    // What each pull request was told through its forge (its comment, the statuses and deployments sent), so that a
    // restarted daemon edits the same comment and retires the deployments it made before.
    &["ALTER TABLE pull_requests ADD COLUMN feedback TEXT"],
    // Work one daemon of those sharing a store does at a time (the reconciler of pull requests), held like a lease:
    // by the store's clock, taken over once it expired.
    &["CREATE TABLE roles (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at BIGINT NOT NULL)"],
];
