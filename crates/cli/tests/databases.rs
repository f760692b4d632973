//! Databases through the real daemon with real PostgreSQL servers from the distribution's packages: a staging
//! database seeded from a file, previews masked from it through a golden snapshot, what one environment's login may
//! not do to another's, the daemon stopping and starting its servers, and bad input refused with the place named and
//! nothing left behind.

mod support;

use std::path::{Path, PathBuf};

use preview_testing::TempDir;
use support::faulty::{FAULTS, Faulty, deployment_id};
use support::{
    Daemon, ReleaseAccounts, commit_all, deploy, deployed_journal, failed_deployment, git,
    in_project, local_daemon, ok, register_with_key, set_masking_key,
};

/// 200 customers whose names, e-mails and phones appear nowhere else, their orders (joined on the e-mail, which
/// a masking rule names with `same_as`) and their reviews (joined by a foreign key alone).
const SEED: &str = "
CREATE TABLE customers (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    full_name text NOT NULL,
    phone text
);
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_email text NOT NULL,
    total_cents bigint NOT NULL
);
CREATE TABLE reviews (
    id bigserial PRIMARY KEY,
    author_email text NOT NULL REFERENCES customers (email),
    body text NOT NULL
);
INSERT INTO customers (email, full_name, phone)
    SELECT 'zq' || n || '.shopper@corp.test', 'Zorblat' || n || ' Quintessa', '+49 30 7777 ' || lpad(n::text, 4, '0')
    FROM generate_series(1, 200) AS n;
INSERT INTO orders (customer_email, total_cents)
    SELECT 'zq' || (n % 200 + 1) || '.shopper@corp.test', n * 100 FROM generate_series(1, 500) AS n;
INSERT INTO reviews (author_email, body)
    SELECT 'zq' || (n % 50 + 1) || '.shopper@corp.test', 'fine' FROM generate_series(1, 80) AS n;
";

/// A project in a git repository of its own: a database seeded from `seed.sql` and masked in previews, and a
/// migrate job that reaches it through `DATABASE_URL` from its sandbox.
fn project(dir: &Path, name: &str, isolation: &str, database: &str, seed: &str) -> PathBuf {
    let repo = dir.join(name);
    std::fs::create_dir_all(&repo).expect("repo");
    std::fs::write(repo.join("seed.sql"), seed).expect("seed");
    std::fs::write(
        repo.join("preview.yaml"),
        format!(
            "project: {name}
isolation: {isolation}
runtime: local
secrets: [MASKING_KEY]
services:
  migrate:
    type: job
    hook: migrate
    command: psql \"$DATABASE_URL\" -v ON_ERROR_STOP=1 -q -c \"CREATE TABLE IF NOT EXISTS migrations (name text PRIMARY KEY); INSERT INTO migrations VALUES ('v1') ON CONFLICT DO NOTHING\"
    depends_on: [db]
  db:
    type: database
    engine: postgres
{database}
environments:
  staging: {{}}
previews:
  blueprint: staging
  overrides:
    services:
      db:
        clone: {{ policy: masked, from: staging }}
"
        ),
    )
    .expect("spec");
    git(&repo, &["init", "--quiet"]);
    commit_all(&repo, "the project");
    repo
}

/// The database service, for `version` (the installed PostgreSQL).
fn database(version: u32) -> String {
    DATABASE.replace("version: 15", &format!("version: {version}"))
}

/// The major version of the PostgreSQL server installed from the distribution's packages.
fn installed_version() -> u32 {
    std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/test installs it)")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|v| Path::new(&format!("/usr/lib/postgresql/{v}/bin/postgres")).is_file())
        .max()
        .expect("a PostgreSQL server under /usr/lib/postgresql")
}

const DATABASE: &str = "    version: 15
    clone: { policy: seed, file: seed.sql }
    masking:
      key: MASKING_KEY
      tables:
        customers: { email: email, full_name: name, phone: phone }
        orders: { customer_email: { same_as: customers.email } }";

/// `psql -At -c sql` on ENV's database as its own role.
fn sql(daemon: &Daemon, project: &str, environment: &str, query: &str) -> String {
    ok(in_project(
        daemon,
        project,
        &[
            "db",
            "psql",
            environment,
            "db",
            "--",
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            query,
        ],
    ))
    .trim()
    .to_owned()
}

/// `sql` that must fail; its error output.
fn refused(daemon: &Daemon, project: &str, environment: &str, args: &[&str]) -> String {
    let mut all = vec![
        "db",
        "psql",
        environment,
        "db",
        "--",
        "-X",
        "-At",
        "-v",
        "ON_ERROR_STOP=1",
    ];
    all.extend_from_slice(args);
    let out = in_project(daemon, project, &all);
    assert!(!out.status.success(), "{args:?} was allowed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every value of every column of every table of ENV's database, as text.
fn everything(daemon: &Daemon, project: &str, environment: &str) -> String {
    let tables = sql(
        daemon,
        project,
        environment,
        "SELECT string_agg(tablename, ' ') FROM pg_tables WHERE schemaname = 'public'",
    );
    tables
        .split_whitespace()
        .map(|table| {
            sql(
                daemon,
                project,
                environment,
                &format!("SELECT t::text FROM {table} t"),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The databases and roles of the server that holds ENV's database, as its administrator sees them.
fn server_catalog(daemon: &Daemon, project: &str, environment: &str) -> String {
    let listed: serde_json::Value = serde_json::from_slice(
        &in_project(daemon, project, &["-o", "json", "db", "list", environment]).stdout,
    )
    .expect("json");
    assert_eq!(listed["databases"][0]["service"], "db", "{listed}");
    sql(
        daemon,
        project,
        environment,
        "SELECT string_agg(datname, ' ' ORDER BY datname) FROM pg_database",
    )
}

/// How many of the daemon's PostgreSQL servers run: a server's `postmaster.pid` names its process while it runs.
fn running_servers(data: &Path) -> usize {
    std::fs::read_dir(data.join("local/databases"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|server| {
            std::fs::read_to_string(server.path().join("data/postmaster.pid")).ok()
        })
        .filter_map(|pid| pid.lines().next().map(str::trim).map(str::to_owned))
        .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
        .count()
}

/// `sql` as the administrator of every server the daemon runs (over their sockets, as the daemon's user), joined.
fn on_every_server(data: &Path, query: &str) -> String {
    let mut answers = Vec::new();
    for server in std::fs::read_dir(data.join("local/databases"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let socket = server.path().join("socket");
        let Some(port) = std::fs::read_dir(&socket)
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|f| {
                f.file_name()
                    .to_str()?
                    .strip_prefix(".s.PGSQL.")?
                    .parse::<u16>()
                    .ok()
            })
        else {
            continue;
        };
        let out = std::process::Command::new("psql")
            .args(["-X", "-At", "-U", "preview", "-d", "postgres", "-c", query])
            .env("PGHOST", &socket)
            .env("PGPORT", port.to_string())
            .output()
            .expect("psql");
        answers.push(ok(out).trim().to_owned());
    }
    answers.join("\n")
}

/// Every file the daemon keeps, as text.
fn everything_kept(data: &Path) -> String {
    fn walk(dir: &Path, text: &mut String) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.ends_with("data") {
                walk(&path, text);
            } else if let Ok(bytes) = std::fs::read(&path) {
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    let mut text = String::new();
    walk(data, &mut text);
    text
}

#[test]
fn staging_is_seeded_and_previews_are_masked_copies_that_join_like_the_source() {
    let dir = TempDir::new("databases-masked");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let daemon = local_daemon(&data, "29000-29249", &[], None);
    let repo = project(
        dir.path(),
        "shopdb",
        "logical",
        &database(installed_version()),
        SEED,
    );
    register_with_key(&daemon, &repo, "the-first-masking-key");

    deploy(&daemon, "shopdb", &["env", "create", "staging"]);
    assert_eq!(
        sql(
            &daemon,
            "shopdb",
            "staging",
            "SELECT count(*) FROM customers"
        ),
        "200"
    );
    // The migrate job reached the database through DATABASE_URL, from its sandbox.
    assert_eq!(
        sql(&daemon, "shopdb", "staging", "SELECT name FROM migrations"),
        "v1"
    );
    let source = everything(&daemon, "shopdb", "staging");

    deploy(&daemon, "shopdb", &["env", "clone", "staging", "pr-1"]);
    // Leak test: no e-mail, name or phone of the source appears anywhere in the preview's database.
    let masked = everything(&daemon, "shopdb", "pr-1");
    assert!(masked.len() > 10_000, "the preview holds the copied rows");
    for n in 1..=200 {
        for value in [
            format!("zq{n}.shopper@corp.test"),
            format!("Zorblat{n} Quintessa"),
            format!("+49 30 7777 {n:04}"),
        ] {
            assert!(source.contains(&value), "{value} is in the source");
            assert!(!masked.contains(&value), "{value} leaked into the preview");
        }
    }
    assert!(
        !masked.contains("Zorblat")
            && !masked.contains("corp.test")
            && !masked.contains("+49 30 7777")
    );
    // Realistic values, and joins exactly as in the source: `same_as` and the foreign key got the same transform.
    let email = sql(
        &daemon,
        "shopdb",
        "pr-1",
        "SELECT email FROM customers ORDER BY id LIMIT 1",
    );
    assert!(
        email.ends_with("@example.com") && email.contains('.'),
        "{email}"
    );
    for join in [
        "SELECT count(*) FROM orders o JOIN customers c ON c.email = o.customer_email",
        "SELECT count(*) FROM reviews r JOIN customers c ON c.email = r.author_email",
        "SELECT count(DISTINCT email) FROM customers",
        "SELECT sum(total_cents) FROM orders",
    ] {
        assert_eq!(
            sql(&daemon, "shopdb", "pr-1", join),
            sql(&daemon, "shopdb", "staging", join),
            "{join}"
        );
    }
    assert_eq!(
        sql(&daemon, "shopdb", "pr-1", "SELECT count(*) FROM orders"),
        "500"
    );
    // Sequences continue where the source's are.
    assert_eq!(
        sql(
            &daemon,
            "shopdb",
            "pr-1",
            "INSERT INTO customers (email, full_name) VALUES ('n@x', 'N') RETURNING id"
        ),
        "201"
    );

    // Determinism: a preview made after its golden snapshot is built again holds the same values; another key
    // gives other ones.
    let masked_customers = "SELECT string_agg(email || full_name || coalesce(phone, ''), ',' ORDER BY id) FROM customers WHERE id <= 200";
    let first = sql(&daemon, "shopdb", "pr-1", masked_customers);
    sql(
        &daemon,
        "shopdb",
        "staging",
        "INSERT INTO customers (email, full_name) VALUES ('zq999.shopper@corp.test', 'Zorblat999 Quintessa')",
    );
    ok(in_project(
        &daemon,
        "shopdb",
        &["db", "refresh", "pr-1", "db"],
    ));
    deploy(&daemon, "shopdb", &["env", "clone", "staging", "pr-2"]);
    assert_eq!(sql(&daemon, "shopdb", "pr-2", masked_customers), first);
    // The snapshot was made again from staging as it is now; pr-1 keeps what it had.
    assert_eq!(
        sql(&daemon, "shopdb", "pr-2", "SELECT count(*) FROM customers"),
        "201"
    );
    assert_eq!(
        sql(
            &daemon,
            "shopdb",
            "pr-1",
            "SELECT count(*) FROM customers WHERE email = 'n@x'"
        ),
        "1"
    );
    assert!(!everything(&daemon, "shopdb", "pr-2").contains("Zorblat999"));
    set_masking_key(&daemon, &repo, "another-masking-key");
    deploy(&daemon, "shopdb", &["env", "clone", "staging", "pr-3"]);
    let other = sql(&daemon, "shopdb", "pr-3", masked_customers);
    assert_ne!(other, first);
    assert_eq!(
        sql(
            &daemon,
            "shopdb",
            "pr-3",
            "SELECT count(*) FROM orders o JOIN customers c ON c.email = o.customer_email"
        ),
        "500"
    );

    // The masking key is in no log, record, journal or store.
    let kept = everything_kept(&data);
    assert!(
        kept.contains("golden snapshot"),
        "the journal is among what was read"
    );
    assert!(!kept.contains("the-first-masking-key") && !kept.contains("another-masking-key"));

    // A reset makes the database again from the current golden snapshot: the row added since is gone.
    sql(&daemon, "shopdb", "pr-3", "DELETE FROM orders");
    ok(in_project(
        &daemon,
        "shopdb",
        &["db", "reset", "pr-3", "db"],
    ));
    assert_eq!(
        sql(&daemon, "shopdb", "pr-3", "SELECT count(*) FROM orders"),
        "500"
    );
    assert_eq!(sql(&daemon, "shopdb", "pr-3", masked_customers), other);

    // A redeploy keeps the data; deleting drops the database and its role.
    sql(
        &daemon,
        "shopdb",
        "pr-1",
        "INSERT INTO orders (customer_email, total_cents) SELECT email, 1 FROM customers LIMIT 1",
    );
    deploy(&daemon, "shopdb", &["deploy", "pr-1"]);
    assert_eq!(
        sql(&daemon, "shopdb", "pr-1", "SELECT count(*) FROM orders"),
        "501"
    );
    deploy(&daemon, "shopdb", &["env", "delete", "pr-1"]);
    let databases = server_catalog(&daemon, "shopdb", "staging");
    assert!(!databases.contains("pr_1"), "{databases}");
    assert!(
        databases.contains("shopdb_staging_db") && databases.contains("preview_golden_"),
        "{databases}"
    );
    assert_eq!(
        sql(
            &daemon,
            "shopdb",
            "staging",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'shopdb_pr_1_db'"
        ),
        "0"
    );
}

#[test]
fn one_environment_cannot_reach_another_environments_database() {
    let dir = TempDir::new("databases-isolation");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let daemon = local_daemon(&data, "29250-29499", &[], None);
    for (name, isolation) in [("logicaldb", "logical"), ("physicaldb", "physical")] {
        let repo = project(
            dir.path(),
            name,
            isolation,
            &database(installed_version()),
            SEED,
        );
        register_with_key(&daemon, &repo, "a-masking-key");
        deploy(&daemon, name, &["env", "create", "staging"]);
        deploy(&daemon, name, &["env", "clone", "staging", "pr-7"]);
        let staging = format!("{name}_staging_db");
        // pr-7's login, asked for staging's database (on its server, or on pr-7's own): refused.
        let error = refused(&daemon, name, "pr-7", &["-d", &staging, "-c", "SELECT 1"]);
        assert!(
            error.contains("no pg_hba.conf entry") || error.contains("does not exist"),
            "{isolation}: {error}"
        );
        let error = refused(
            &daemon,
            name,
            "pr-7",
            &["-c", &format!("CREATE DATABASE {name}_stolen")],
        );
        assert!(
            error.contains("permission denied to create database"),
            "{isolation}: {error}"
        );
        let error = refused(&daemon, name, "pr-7", &["-c", "CREATE ROLE intruder"]);
        assert!(
            error.contains("permission denied to create role"),
            "{isolation}: {error}"
        );
        let error = refused(
            &daemon,
            name,
            "pr-7",
            &["-c", "ALTER ROLE CURRENT_USER SUPERUSER"],
        );
        assert!(
            error.contains("must be superuser to alter superuser roles"),
            "{isolation}: {error}"
        );
    }
    // A physical environment's server goes with it: no process, no files.
    let servers = data.join("local/databases");
    let before = std::fs::read_dir(&servers).expect("servers").count();
    assert_eq!(
        running_servers(&data),
        3,
        "logicaldb's, and staging's and pr-7's of physicaldb"
    );
    deploy(&daemon, "physicaldb", &["env", "delete", "pr-7"]);
    assert_eq!(
        std::fs::read_dir(&servers).expect("servers").count(),
        before - 1
    );
    assert_eq!(running_servers(&data), 2);
    daemon.stop();
    assert_eq!(
        running_servers(&data),
        0,
        "the servers stopped with the daemon"
    );
}

#[test]
fn servers_come_back_with_their_data_after_the_daemon_stops_or_is_killed() {
    let dir = TempDir::new("databases-restart");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let daemon = local_daemon(&data, "29500-29749", &[], None);
    let repo = project(
        dir.path(),
        "keptdb",
        "logical",
        &database(installed_version()),
        SEED,
    );
    register_with_key(&daemon, &repo, "a-masking-key");
    deploy(&daemon, "keptdb", &["env", "create", "staging"]);
    sql(
        &daemon,
        "keptdb",
        "staging",
        "INSERT INTO migrations VALUES ('kept')",
    );
    assert_eq!(running_servers(&data), 1);
    daemon.stop();
    assert_eq!(running_servers(&data), 0);
    let daemon = local_daemon(&data, "29500-29749", &[], None);
    assert_eq!(
        sql(
            &daemon,
            "keptdb",
            "staging",
            "SELECT count(*) FROM migrations WHERE name = 'kept'"
        ),
        "1"
    );
    // Killed: the server outlives it, and the next daemon stops it and starts it again from its record.
    daemon.kill();
    assert_eq!(running_servers(&data), 1, "the server outlived the daemon");
    let postmaster = || {
        std::fs::read_dir(data.join("local/databases"))
            .expect("servers")
            .flatten()
            .find_map(|server| {
                std::fs::read_to_string(server.path().join("data/postmaster.pid")).ok()
            })
            .and_then(|pid| pid.lines().next().map(str::to_owned))
    };
    let outlived = postmaster();
    let daemon = local_daemon(&data, "29500-29749", &[], None);
    assert_eq!(
        sql(
            &daemon,
            "keptdb",
            "staging",
            "SELECT count(*) FROM customers"
        ),
        "200"
    );
    assert_eq!(running_servers(&data), 1);
    assert_ne!(
        postmaster(),
        outlived,
        "the server that outlived its daemon was stopped"
    );
    assert!(
        ok(in_project(&daemon, "keptdb", &["logs", "staging", "db"]))
            .contains("ready to accept connections")
    );
    // The project's server goes with its last environment's database: no process, no files, no user.
    deploy(&daemon, "keptdb", &["env", "delete", "staging"]);
    assert_eq!(running_servers(&data), 0);
    assert_eq!(
        std::fs::read_dir(data.join("local/databases"))
            .expect("servers")
            .count(),
        0
    );
    let accounts = std::fs::read_to_string(data.join("local/accounts.json")).unwrap_or_default();
    assert!(!accounts.contains("database-server"), "{accounts}");
    daemon.stop();
}

#[test]
fn bad_database_input_is_refused_with_its_place_and_leaves_nothing() {
    let dir = TempDir::new("databases-bad-input");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let daemon = local_daemon(&data, "29750-29999", &[], None);

    // A seed file with a syntax error on line 3: the file, the line and PostgreSQL's message.
    let repo = project(
        dir.path(),
        "badseed",
        "logical",
        &database(installed_version()),
        "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\nINSERTT INTO t VALUES (2);\n",
    );
    register_with_key(&daemon, &repo, "k");
    let out = failed_deployment(&daemon, "badseed", &["env", "create", "staging"]);
    assert!(
        out.contains("seed.sql:3: ERROR:  syntax error at or near \"INSERTT\""),
        "{out}"
    );
    assert!(out.contains("rolled back"), "{out}");

    // A seed file comes from a pull request: a psql command in it (a shell escape) runs nowhere.
    let witness = dir.path().join("shell-escape-ran");
    let hostile = project(
        dir.path(),
        "hostileseed",
        "logical",
        &database(installed_version()),
        &format!(
            "CREATE TABLE t (id int);\n\\! touch {}\nINSERT INTO t VALUES (1);\n",
            witness.display()
        ),
    );
    register_with_key(&daemon, &hostile, "k");
    let out = failed_deployment(&daemon, "hostileseed", &["env", "create", "staging"]);
    assert!(
        out.contains("seed.sql:2: `\\! touch") && out.contains("is a psql command"),
        "{out}"
    );
    assert!(!witness.exists(), "the seed file ran a shell command");

    // A migration that fails after the database was made: the new environment rolls back, its database with it.
    let failing = project(
        dir.path(),
        "failingjob",
        "logical",
        &database(installed_version()),
        SEED,
    );
    let spec = std::fs::read_to_string(failing.join("preview.yaml")).expect("spec");
    let command = spec
        .lines()
        .find(|line| line.trim_start().starts_with("command: psql"))
        .expect("the migrate command")
        .to_owned();
    std::fs::write(
        failing.join("preview.yaml"),
        spec.replace(&command, "    command: echo the migration broke; exit 3"),
    )
    .expect("spec");
    commit_all(&failing, "a broken migration");
    register_with_key(&daemon, &failing, "k");
    let out = failed_deployment(&daemon, "failingjob", &["env", "create", "staging"]);
    assert!(
        out.contains("the migration broke") && out.contains("rolled back"),
        "{out}"
    );

    // Masking rules against the source: a missing column, a unique column masked by a lossy rule.
    let good = project(
        dir.path(),
        "masking",
        "logical",
        &database(installed_version()),
        SEED,
    );
    register_with_key(&daemon, &good, "k");
    deploy(&daemon, "masking", &["env", "create", "staging"]);
    for (rules, expected) in [
        (
            "customers: { email: email }\n      strict: true",
            "masking.strict is on and columns that look personal have no rule:\npublic.customers.full_name",
        ),
        (
            "customers: { emial: email }",
            "masking.tables.customers.emial: table `public.customers` has no column `emial`",
        ),
        (
            "customers: { email: name }",
            "masking of public.customers.email: the column is unique",
        ),
    ] {
        let spec = std::fs::read_to_string(good.join("preview.yaml"))
            .expect("spec")
            .replace(
                "customers: { email: email, full_name: name, phone: phone }\n        orders: { customer_email: { same_as: customers.email } }",
                rules,
            );
        std::fs::write(good.join("preview.yaml"), spec).expect("spec");
        commit_all(&good, "rules");
        ok(daemon.cli(&[
            "project",
            "register",
            "-f",
            &good.join("preview.yaml").display().to_string(),
        ]));
        let out = failed_deployment(&daemon, "masking", &["env", "clone", "staging", "pr-1"]);
        assert!(out.contains(expected), "{out}");
        git(
            &good,
            &["checkout", "--quiet", "HEAD~1", "--", "preview.yaml"],
        );
        commit_all(&good, "back");
    }
    // A version that is not installed.
    let missing = project(
        dir.path(),
        "oldpg",
        "logical",
        &DATABASE.replace("version: 15", "version: 13"),
        SEED,
    );
    register_with_key(&daemon, &missing, "k");
    let out = failed_deployment(&daemon, "oldpg", &["env", "create", "staging"]);
    assert!(
        out.contains("PostgreSQL 13 is not installed") && out.contains("`postgresql-13`"),
        "{out}"
    );
    // A source environment that was never deployed.
    let lonely = project(
        dir.path(),
        "lonely",
        "logical",
        &database(installed_version()),
        SEED,
    );
    register_with_key(&daemon, &lonely, "k");
    let out = failed_deployment(&daemon, "lonely", &["env", "clone", "staging", "pr-1"]);
    assert!(
        out.contains("deploy `staging` first") || out.contains("no environment `staging`"),
        "{out}"
    );

    // Nothing of the failed attempts is left on any server: no database, no role, no half-made golden snapshot.
    let databases = on_every_server(&data, "SELECT string_agg(datname, ' ') FROM pg_database");
    let roles = on_every_server(&data, "SELECT string_agg(rolname, ' ') FROM pg_roles");
    for leftover in [
        "badseed_staging_db",
        "hostileseed_staging_db",
        "failingjob_staging_db",
        "masking_pr_1_db",
        "lonely_pr_1_db",
        "preview_making_",
    ] {
        assert!(!databases.contains(leftover), "{leftover} in {databases}");
        assert!(!roles.contains(leftover), "{leftover} in {roles}");
    }
    assert!(databases.contains("masking_staging_db"), "{databases}");
}

#[test]
fn an_external_server_gets_each_environments_database_and_role_through_its_admin_url() {
    let dir = TempDir::new("databases-external");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    // A server the project already runs, as far as preview knows: only its admin URL, in a secret.
    let external = preview_testing::TestPostgres::start();
    let daemon = local_daemon(&data, "30000-30199", &[], None);
    let spec = database(installed_version()).replace(
        "    clone: { policy: seed, file: seed.sql }",
        "    mode: external\n    admin_url: ADMIN_URL\n    clone: { policy: seed, file: seed.sql }",
    );
    let repo = project(dir.path(), "extdb", "logical", &spec, SEED);
    let text = std::fs::read_to_string(repo.join("preview.yaml")).expect("spec");
    std::fs::write(
        repo.join("preview.yaml"),
        text.replace(
            "secrets: [MASKING_KEY]",
            "secrets: [MASKING_KEY, ADMIN_URL]",
        ),
    )
    .expect("spec");
    commit_all(&repo, "external");
    register_with_key(&daemon, &repo, "an-external-masking-key");
    let url = format!(
        "postgres://postgres:an-admin-password@127.0.0.1:{}/postgres",
        external.port()
    );
    ok(daemon.cli_with_input(
        &[
            "--project",
            "extdb",
            "secret",
            "set",
            "ADMIN_URL",
            "--scope",
            "project",
        ],
        &url,
    ));
    let on_external = |query: &str| {
        let out = std::process::Command::new("psql")
            .args([
                "-X",
                "-At",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                query,
            ])
            .env("PGPORT", external.port().to_string())
            .output()
            .expect("psql");
        ok(out).trim().to_owned()
    };

    deploy(&daemon, "extdb", &["env", "create", "staging"]);
    deploy(&daemon, "extdb", &["env", "clone", "staging", "pr-4"]);
    let databases =
        on_external("SELECT string_agg(datname, ' ' ORDER BY datname) FROM pg_database");
    assert!(
        databases.contains("extdb_staging_db") && databases.contains("extdb_pr_4_db"),
        "{databases}"
    );
    let roles = on_external(
        "SELECT string_agg(rolname || ':' || rolsuper || rolcreatedb || rolcreaterole, ' ') FROM pg_roles WHERE rolname LIKE 'extdb_%'",
    );
    assert!(roles.contains("extdb_pr_4_db:falsefalsefalse"), "{roles}");
    // The migrate job reached the external server through DATABASE_URL (the environment's service port), and the
    // preview's copy is masked.
    assert_eq!(
        sql(&daemon, "extdb", "pr-4", "SELECT name FROM migrations"),
        "v1"
    );
    assert_eq!(
        sql(
            &daemon,
            "extdb",
            "pr-4",
            "SELECT count(*) FROM customers WHERE email LIKE '%corp.test'"
        ),
        "0"
    );
    assert_eq!(
        sql(
            &daemon,
            "extdb",
            "staging",
            "SELECT count(*) FROM customers WHERE email LIKE '%corp.test'"
        ),
        "200"
    );

    // Nothing but `REVOKE … FROM PUBLIC` keeps one environment's role out of another's database on a server whose
    // client authentication is not preview's.
    let error = refused(
        &daemon,
        "extdb",
        "pr-4",
        &["-d", "extdb_staging_db", "-c", "SELECT 1"],
    );
    assert!(error.contains("permission denied for database"), "{error}");
    assert_eq!(
        on_external("SELECT rolconnlimit FROM pg_roles WHERE rolname = 'extdb_pr_4_db'"),
        "32"
    );
    deploy(&daemon, "extdb", &["env", "delete", "pr-4"]);
    let databases = on_external("SELECT string_agg(datname, ' ') FROM pg_database");
    assert!(!databases.contains("extdb_pr_4_db"), "{databases}");
    assert_eq!(
        on_external("SELECT count(*) FROM pg_roles WHERE rolname = 'extdb_pr_4_db'"),
        "0"
    );
    assert!(
        databases.contains("extdb_staging_db"),
        "the external server itself is left as it was"
    );
    assert!(!everything_kept(&data).contains("an-admin-password"));
    assert_eq!(
        running_servers(&data),
        0,
        "preview runs no server of its own for it"
    );
}

#[test]
fn a_copied_schema_cannot_make_its_owner_a_superuser() {
    let dir = TempDir::new("databases-escalation");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let daemon = local_daemon(&data, "30200-30499", &[], None);
    // staging's own role writes a check constraint whose function, run with a superuser's rights, would make that
    // role a superuser (and swallows the error otherwise, so that the copy goes on).
    let seed = format!(
        "{SEED}
CREATE FUNCTION harmless(n int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE 'ALTER ROLE evildb_staging_db SUPERUSER';
    EXCEPTION WHEN others THEN NULL;
    END;
    RETURN true;
END $$;
CREATE TABLE traps (n int CHECK (harmless(n)));
INSERT INTO traps VALUES (1);
"
    );
    for isolation in ["logical", "physical"] {
        let name = format!("evildb{}", if isolation == "logical" { "" } else { "2" });
        let repo = project(
            dir.path(),
            &name,
            isolation,
            &database(installed_version()),
            &seed.replace("evildb_staging_db", &format!("{name}_staging_db")),
        );
        register_with_key(&daemon, &repo, "k");
        deploy(&daemon, &name, &["env", "create", "staging"]);
        deploy(&daemon, &name, &["env", "clone", "staging", "pr-1"]);
        assert_eq!(
            sql(&daemon, &name, "pr-1", "SELECT count(*) FROM traps"),
            "1"
        );
        assert_eq!(
            sql(
                &daemon,
                &name,
                "staging",
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
            ),
            "f",
            "{isolation}: the copy ran the schema's code as a superuser"
        );
    }
}

#[test]
fn a_daemon_killed_in_the_middle_of_a_masked_copy_leaves_nothing_of_it() {
    let dir = TempDir::new("databases-killed");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let daemon = local_daemon(&data, "30500-30699", &[], None);
    // Enough rows that the copy takes a while.
    let seed = SEED.replace("generate_series(1, 200)", "generate_series(1, 300000)");
    let repo = project(
        dir.path(),
        "killeddb",
        "logical",
        &database(installed_version()),
        &seed,
    );
    register_with_key(&daemon, &repo, "k");
    deploy(&daemon, "killeddb", &["env", "create", "staging"]);
    let started = daemon.json(&[
        "--project",
        "killeddb",
        "env",
        "clone",
        "staging",
        "pr-1",
        "--no-wait",
    ]);
    let id = deployment_id(&started);
    // SIGKILL while the golden snapshot is half made.
    support::wait_for(
        "the copy to begin",
        std::time::Duration::from_secs(60),
        || {
            on_every_server(&data, "SELECT string_agg(datname, ' ') FROM pg_database")
                .contains("preview_making_")
        },
    );
    daemon.kill();
    let daemon = local_daemon(&data, "30500-30699", &[], None);
    let ended = support::wait_until_ended(&daemon, &id);
    assert_eq!(ended["deployment"]["status"], "rolled_back", "{ended}");
    let databases = on_every_server(&data, "SELECT string_agg(datname, ' ') FROM pg_database");
    let roles = on_every_server(&data, "SELECT string_agg(rolname, ' ') FROM pg_roles");
    for leftover in ["killeddb_pr_1_db", "preview_making_"] {
        assert!(!databases.contains(leftover), "{leftover} in {databases}");
        assert!(!roles.contains(leftover), "{leftover} in {roles}");
    }
    // And the next attempt makes the snapshot from scratch.
    deploy(&daemon, "killeddb", &["env", "clone", "staging", "pr-1"]);
    assert_eq!(
        sql(
            &daemon,
            "killeddb",
            "pr-1",
            "SELECT count(*) FROM customers"
        ),
        "300000"
    );
    assert_eq!(
        sql(
            &daemon,
            "killeddb",
            "pr-1",
            "SELECT count(*) FROM customers WHERE email LIKE '%corp.test'"
        ),
        "0"
    );
}

#[test]
fn jobs_run_by_their_hooks_once_on_creation_and_before_deletion() {
    let dir = TempDir::new("databases-hooks");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let daemon = local_daemon(&data, "30700-30899", &[], None);
    let repo = project(
        dir.path(),
        "hooksdb",
        "logical",
        &database(installed_version()),
        SEED,
    );
    let spec = std::fs::read_to_string(repo.join("preview.yaml")).expect("spec");
    let jobs = "  once:
    type: job
    hook: on-create
    command: psql \"$DATABASE_URL\" -v ON_ERROR_STOP=1 -q -c \"INSERT INTO migrations VALUES ('once-' || clock_timestamp())\"
    depends_on: [db, migrate]
  cleanup:
    type: job
    hook: on-delete
    command: echo the environment goes
    depends_on: [db]
  db:
";
    std::fs::write(repo.join("preview.yaml"), spec.replacen("  db:\n", jobs, 1)).expect("spec");
    commit_all(&repo, "hooks");
    register_with_key(&daemon, &repo, "k");
    deploy(&daemon, "hooksdb", &["env", "create", "staging"]);
    let once = "SELECT count(*) FROM migrations WHERE name LIKE 'once-%'";
    assert_eq!(sql(&daemon, "hooksdb", "staging", once), "1");
    // A new commit redeploys the jobs' resources: the migration runs again, the on-create job does not.
    std::fs::write(repo.join("NOTES"), "a change").expect("file");
    commit_all(&repo, "a new commit");
    deploy(&daemon, "hooksdb", &["deploy", "staging"]);
    assert_eq!(sql(&daemon, "hooksdb", "staging", once), "1");
    let started = daemon.json(&[
        "--project",
        "hooksdb",
        "env",
        "delete",
        "staging",
        "--no-wait",
    ]);
    let id = deployment_id(&started);
    let ended = support::wait_until_ended(&daemon, &id);
    assert_eq!(ended["deployment"]["status"], "committed", "{ended}");
    let journal = daemon.json(&["deployment", "logs", &id]).to_string();
    assert!(journal.contains("job `cleanup` finished"), "{journal}");
}

/// The warm pool's databases on every server, as `oid:name`.
fn warm_databases(data: &Path) -> Vec<String> {
    on_every_server(
        data,
        "SELECT string_agg(oid::text || ':' || datname, ' ') FROM pg_database WHERE datname LIKE 'preview_warm_%'",
    )
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

fn snapshot_of(daemon: &Daemon, project: &str, environment: &str) -> serde_json::Value {
    daemon.json(&["--project", project, "db", "snapshot", environment, "db"])["snapshot"].clone()
}

#[test]
fn previews_get_databases_from_the_warm_pool_by_rename_and_snapshots_are_listed_and_refreshed() {
    let dir = TempDir::new("databases-warm");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let daemon = local_daemon(&data, "31000-31199", &[], None);
    let repo = project(
        dir.path(),
        "warmdb",
        "logical",
        &database(installed_version()),
        SEED,
    );
    let spec = repo.join("preview.yaml");
    let text = std::fs::read_to_string(&spec).expect("spec");
    std::fs::write(
        &spec,
        replaced_once(
            &text,
            "clone: { policy: masked, from: staging }",
            "clone: { policy: masked, from: staging, warm_pool: 2, refresh: 1h }",
        ),
    )
    .expect("spec");
    commit_all(
        &repo,
        "a warm pool of two, snapshots refreshed after an hour",
    );
    register_with_key(&daemon, &repo, "a-warm-masking-key");
    deploy(&daemon, "warmdb", &["env", "create", "staging"]);

    // The first preview builds the golden snapshot and is made from it; the pool is filled behind it.
    let first = deployed_journal(&daemon, "warmdb", &["env", "clone", "staging", "pr-1"]);
    assert!(first.contains("golden snapshot preview_golden_"), "{first}");
    assert!(!first.contains("warm pool"), "{first}");
    support::wait_for(
        "the warm pool to fill",
        std::time::Duration::from_secs(60),
        || snapshot_of(&daemon, "warmdb", "pr-1")["warm"] == 2,
    );
    let warm = warm_databases(&data);
    assert_eq!(warm.len(), 2, "{warm:?}");

    // The next one is one of the pool's databases, renamed: the same database (its oid), with the masked data.
    let second = deployed_journal(&daemon, "warmdb", &["env", "clone", "staging", "pr-2"]);
    assert!(second.contains("handed out from its warm pool"), "{second}");
    let oid = sql(
        &daemon,
        "warmdb",
        "pr-2",
        "SELECT oid FROM pg_database WHERE datname = current_database()",
    );
    assert!(
        warm.iter().any(|w| w.starts_with(&format!("{oid}:"))),
        "{oid} is not one of {warm:?}"
    );
    // Handed over whole: pr-2's, with no grant to anyone else; the pool's own are closed and the
    // administrator's alone.
    assert_eq!(
        on_every_server(
            &data,
            "SELECT datdba::regrole || ' ' || datacl::text || ' ' || datallowconn FROM pg_database WHERE datname = 'warmdb_pr_2_db'"
        ),
        "warmdb_pr_2_db {warmdb_pr_2_db=CTc/warmdb_pr_2_db} true"
    );
    support::wait_for(
        "the warm pool to fill again",
        std::time::Duration::from_secs(60),
        || snapshot_of(&daemon, "warmdb", "pr-2")["warm"] == 2,
    );
    assert_eq!(
        on_every_server(
            &data,
            "SELECT string_agg(DISTINCT datdba::regrole || ' ' || datacl::text || ' ' || datallowconn, ',') FROM pg_database WHERE datname LIKE 'preview_warm_%' OR datname LIKE 'preview_golden_%'"
        ),
        "preview {preview=CTc/preview} false"
    );
    assert_eq!(
        sql(&daemon, "warmdb", "pr-2", "SELECT count(*) FROM customers"),
        "200"
    );
    assert!(!everything(&daemon, "warmdb", "pr-2").contains("corp.test"));
    // It belongs to pr-2's role alone: its tables are pr-2's, and pr-1's role cannot connect to it.
    assert_eq!(
        sql(
            &daemon,
            "warmdb",
            "pr-2",
            "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname = 'public'"
        ),
        "warmdb_pr_2_db"
    );
    let denied = refused(
        &daemon,
        "warmdb",
        "pr-1",
        &["-d", "warmdb_pr_2_db", "-c", "SELECT 1"],
    );
    assert!(denied.contains("no pg_hba.conf entry"), "{denied}");

    // Listed once, with the environments made from it, its source, rows and key version; never the key.
    let listed = daemon.json(&["--project", "warmdb", "db", "snapshots"]);
    let snapshots = listed["snapshots"].as_array().expect("snapshots");
    assert_eq!(snapshots.len(), 1, "{listed}");
    let snapshot = &snapshots[0];
    assert_eq!(snapshot["from"], "staging", "{listed}");
    assert_eq!(snapshot["policy"], "masked", "{listed}");
    assert_eq!(
        snapshot["environments"],
        serde_json::json!(["pr-1", "pr-2"])
    );
    assert_eq!(snapshot["warm_pool"], 2, "{listed}");
    assert_eq!(snapshot["warm"], 2, "{listed}");
    assert_eq!(snapshot["refresh_seconds"], 3600, "{listed}");
    assert!(
        snapshot["rows"].as_u64().unwrap_or_default() >= 780,
        "{listed}"
    );
    let staging_size: u64 = on_every_server(&data, "SELECT pg_database_size('warmdb_staging_db')")
        .parse()
        .expect("a size");
    let golden_size = snapshot["size_bytes"].as_u64().unwrap_or_default();
    assert!(
        golden_size * 10 >= staging_size * 9 && golden_size <= staging_size * 2,
        "{golden_size} against staging's {staging_size}"
    );
    let fingerprint = daemon.json(&["--project", "warmdb", "secret", "list"])["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .find(|s| s["name"] == "MASKING_KEY")
        .and_then(|s| s["fingerprint"].as_str())
        .expect("the key's fingerprint")
        .to_owned();
    assert_eq!(
        snapshot["masking_key"],
        format!("project/MASKING_KEY@{fingerprint}"),
        "{listed}"
    );
    assert!(!listed.to_string().contains("a-warm-masking-key"));
    let table = ok(in_project(&daemon, "warmdb", &["db", "snapshots"]));
    assert!(
        table.contains("staging (masked)") && table.contains("pr-1, pr-2"),
        "{table}"
    );
    let plain = ok(in_project(
        &daemon,
        "warmdb",
        &["db", "snapshot", "staging", "db"],
    ));
    assert!(plain.contains("not made from a golden snapshot"), "{plain}");

    // `preview plan` checks a masked copy's rules against its source as it is now.
    sql(
        &daemon,
        "warmdb",
        "staging",
        "ALTER TABLE customers ADD COLUMN home_address text",
    );
    let planned = daemon.json(&["--project", "warmdb", "plan", "pr-1"]);
    assert!(
        planned["warnings"]
            .to_string()
            .contains("public.customers.home_address looks like personal data"),
        "{planned}"
    );

    // Older than `refresh`: the next preview's database comes from a snapshot built again from staging as it is
    // now, and the old snapshot's pool goes with it; the previews made before keep their data.
    sql(
        &daemon,
        "warmdb",
        "staging",
        "INSERT INTO customers (email, full_name) VALUES ('zq999.shopper@corp.test', 'Zorblat999 Quintessa')",
    );
    let before = warm_databases(&data);
    // Two hours old, as its description says.
    let described = on_every_server(
        &data,
        "SELECT datname || ' ' || shobj_description(oid, 'pg_database') FROM pg_database WHERE datname LIKE 'preview_golden_%'",
    );
    let (golden, mark) = described
        .split_once(' ')
        .expect("a described golden snapshot");
    let mut mark: serde_json::Value =
        serde_json::from_str(mark.strip_prefix("preview: golden ").expect("a mark")).expect("json");
    mark["made_at"] = (mark["made_at"].as_u64().expect("made_at") - 7200).into();
    on_every_server(
        &data,
        &format!("COMMENT ON DATABASE {golden} IS 'preview: golden {mark}'"),
    );
    let third = deployed_journal(&daemon, "warmdb", &["env", "clone", "staging", "pr-3"]);
    assert!(third.contains("older than `refresh`"), "{third}");
    assert!(!third.contains("handed out"), "{third}");
    assert_eq!(
        sql(&daemon, "warmdb", "pr-3", "SELECT count(*) FROM customers"),
        "201"
    );
    assert_eq!(
        sql(&daemon, "warmdb", "pr-1", "SELECT count(*) FROM customers"),
        "200"
    );
    let after = warm_databases(&data);
    assert!(
        before.iter().all(|w| !after.contains(w)),
        "{before:?} survived the refresh: {after:?}"
    );

    // Deleting every environment removes the project's server, golden snapshot and pool included.
    for environment in ["pr-1", "pr-2", "pr-3", "staging"] {
        deploy(&daemon, "warmdb", &["env", "delete", environment]);
    }
    assert_eq!(running_servers(&data), 0);
    let left: Vec<_> = std::fs::read_dir(data.join("local/databases"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// What a deployment's databases left: every database and role on every server, and how many servers have
/// files and how many run.
fn servers(data: &Path) -> (String, usize, usize) {
    let catalog = on_every_server(
        data,
        "SELECT string_agg(datname, ' ' ORDER BY datname) FROM pg_database UNION ALL SELECT string_agg(rolname, ' ' ORDER BY rolname) FROM pg_roles",
    );
    let made = std::fs::read_dir(data.join("local/databases"))
        .into_iter()
        .flatten()
        .flatten()
        .count();
    (catalog, made, running_servers(data))
}

#[test]
fn a_seeded_database_whose_operations_fail_or_are_killed_is_rolled_back_with_nothing_left() {
    let dir = TempDir::new("db-fs");
    let _accounts = ReleaseAccounts(dir.path().join("data"));
    let mut faulty = Faulty::start(dir.path(), "31200-31399");
    let repo = project(
        dir.path(),
        "faultseed",
        "logical",
        &database(installed_version()),
        SEED,
    );
    let spec = repo.join("preview.yaml");
    let text = std::fs::read_to_string(&spec).expect("spec");
    std::fs::write(
        &spec,
        replaced_once(&text, "  staging: {}\n", "  staging: {}\n  keep: {}\n"),
    )
    .expect("spec");
    commit_all(&repo, "another seeded environment");
    register_with_key(faulty.daemon(), &repo, "k");
    // The project's first database: its server is made in the step, and goes when the step is undone.
    for (fault, when) in FAULTS {
        let status = faulty.inject(
            "faultseed",
            &["env", "create", "staging"],
            "server",
            fault,
            when,
        );
        assert_eq!(status, "rolled_back", "server {fault} {when}");
        let (catalog, made, running) = servers(&faulty.data);
        assert_eq!(
            (made, running),
            (0, 0),
            "server {fault} {when} left a server: {catalog}"
        );
    }
    deploy(faulty.daemon(), "faultseed", &["env", "create", "keep"]);
    for operation in ["role", "create", "seed", "mark"] {
        for (fault, when) in FAULTS {
            let status = faulty.inject(
                "faultseed",
                &["env", "create", "staging"],
                operation,
                fault,
                when,
            );
            let case = format!("{operation} {fault} {when}");
            assert_eq!(status, "rolled_back", "{case}");
            let (catalog, made, running) = servers(&faulty.data);
            assert!(
                !catalog.contains("faultseed_staging_db"),
                "{case}: {catalog}"
            );
            assert_eq!((made, running), (1, 1), "{case}: {catalog}");
            // The other environment's database is untouched.
            assert_eq!(
                sql(
                    faulty.daemon(),
                    "faultseed",
                    "keep",
                    "SELECT count(*) FROM orders"
                ),
                "500",
                "{case}"
            );
        }
    }
    // And with no fault the same deployment succeeds.
    deploy(faulty.daemon(), "faultseed", &["env", "create", "staging"]);
    assert_eq!(
        sql(
            faulty.daemon(),
            "faultseed",
            "staging",
            "SELECT count(*) FROM customers"
        ),
        "200"
    );
}

#[test]
fn a_masked_copy_whose_operations_fail_or_are_killed_leaves_the_old_or_the_new_state() {
    let dir = TempDir::new("db-fm");
    let _accounts = ReleaseAccounts(dir.path().join("data"));
    let mut faulty = Faulty::start(dir.path(), "31400-31599");
    let repo = project(
        dir.path(),
        "faultmask",
        "logical",
        &database(installed_version()),
        SEED,
    );
    register_with_key(faulty.daemon(), &repo, "k");
    deploy(faulty.daemon(), "faultmask", &["env", "create", "staging"]);
    deploy(
        faulty.daemon(),
        "faultmask",
        &["env", "clone", "staging", "pr-0"],
    );
    let admin = |faulty: &Faulty, query: &str| on_every_server(&faulty.data, query);
    let warm = |faulty: &Faulty| {
        admin(
            faulty,
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'preview_warm_%'",
        )
    };
    let pool_full = |faulty: &Faulty| {
        if warm(faulty) == "0" {
            // A killed daemon's refill never ran: building the snapshot again fills the pool.
            ok(in_project(
                faulty.daemon(),
                "faultmask",
                &["db", "refresh", "pr-0", "db"],
            ));
        }
        support::wait_for(
            "the warm pool to fill",
            std::time::Duration::from_secs(60),
            || warm(faulty) == "1",
        );
    };
    let nothing_of_pr_1 = |faulty: &Faulty, case: &str| {
        let (catalog, made, running) = servers(&faulty.data);
        assert!(!catalog.contains("faultmask_pr_1_db"), "{case}: {catalog}");
        assert!(!catalog.contains("preview_making_"), "{case}: {catalog}");
        assert_eq!((made, running), (1, 1), "{case}: {catalog}");
        assert_eq!(
            sql(
                faulty.daemon(),
                "faultmask",
                "staging",
                "SELECT count(*) FROM orders"
            ),
            "500",
            "{case}"
        );
        assert_eq!(
            sql(
                faulty.daemon(),
                "faultmask",
                "pr-0",
                "SELECT count(*) FROM orders"
            ),
            "500",
            "{case}"
        );
    };
    let clone = ["env", "clone", "staging", "pr-1"];
    for operation in ["handout", "role", "mark"] {
        for (fault, when) in FAULTS {
            pool_full(&faulty);
            let case = format!("{operation} {fault} {when}");
            let status = faulty.inject("faultmask", &clone, operation, fault, when);
            assert_eq!(status, "rolled_back", "{case}");
            nothing_of_pr_1(&faulty, &case);
        }
    }
    // A copy made from the golden snapshot itself, when the pool is empty.
    for (fault, when) in FAULTS {
        pool_full(&faulty);
        admin(
            &faulty,
            "SELECT string_agg(datname, ' ') FROM pg_database WHERE datname LIKE 'preview_warm_%'",
        )
        .split_whitespace()
        .for_each(|warm| {
            admin(&faulty, &format!("DROP DATABASE {warm}"));
        });
        let case = format!("create {fault} {when}");
        let status = faulty.inject("faultmask", &clone, "create", fault, when);
        assert_eq!(status, "rolled_back", "{case}");
        nothing_of_pr_1(&faulty, &case);
    }
    // The golden snapshot built again, when it is missing.
    for (fault, when) in FAULTS {
        pool_full(&faulty);
        admin(&faulty, "SELECT string_agg(datname, ' ') FROM pg_database WHERE datname LIKE 'preview_warm_%' OR datname LIKE 'preview_golden_%'")
            .split_whitespace()
            .for_each(|database| {
                admin(&faulty, &format!("DROP DATABASE {database}"));
            });
        let case = format!("golden {fault} {when}");
        let status = faulty.inject("faultmask", &clone, "golden", fault, when);
        assert_eq!(status, "rolled_back", "{case}");
        nothing_of_pr_1(&faulty, &case);
    }
    // Deleting goes on past its point of no return: whatever fails, the environment ends up gone, and nothing of
    // it is left.
    for operation in ["drop", "drop-role"] {
        for (fault, when) in FAULTS {
            deploy(faulty.daemon(), "faultmask", &clone);
            assert_eq!(
                sql(
                    faulty.daemon(),
                    "faultmask",
                    "pr-1",
                    "SELECT count(*) FROM orders"
                ),
                "500"
            );
            let case = format!("{operation} {fault} {when}");
            let status = faulty.inject(
                "faultmask",
                &["env", "delete", "pr-1"],
                operation,
                fault,
                when,
            );
            assert_eq!(status, "committed", "{case}");
            nothing_of_pr_1(&faulty, &case);
        }
    }
    // A daemon killed while it fills the warm pool leaves a database that never joins the pool: it is not handed
    // out, and the next fill drops it.
    pool_full(&faulty);
    admin(
        &faulty,
        "SELECT string_agg(datname, ' ') FROM pg_database WHERE datname LIKE 'preview_warm_%'",
    )
    .split_whitespace()
    .for_each(|warm| {
        admin(&faulty, &format!("DROP DATABASE {warm}"));
    });
    std::fs::write(&faulty.faults, "warm kill before\n").expect("faults");
    let _ = in_project(
        faulty.daemon(),
        "faultmask",
        &["db", "refresh", "pr-0", "db"],
    );
    faulty.daemon.take().expect("a daemon").wait_killed();
    std::fs::write(&faulty.faults, "").expect("faults");
    faulty.daemon = Some(faulty.started());
    let filling = "SELECT count(*) FROM pg_database WHERE datname LIKE 'preview_filling_%'";
    assert_eq!(admin(&faulty, filling), "1", "the fill was cut short");
    assert_eq!(warm(&faulty), "0");
    let journal = deployed_journal(faulty.daemon(), "faultmask", &clone);
    assert!(!journal.contains("handed out"), "{journal}");
    support::wait_for(
        "the warm pool to fill",
        std::time::Duration::from_secs(60),
        || warm(&faulty) == "1" && admin(&faulty, filling) == "0",
    );
    deploy(faulty.daemon(), "faultmask", &["env", "delete", "pr-1"]);

    // With no fault, the clone succeeds with masked data.
    deploy(faulty.daemon(), "faultmask", &clone);
    assert_eq!(
        sql(
            faulty.daemon(),
            "faultmask",
            "pr-1",
            "SELECT count(*) FROM customers WHERE email LIKE '%corp.test'"
        ),
        "0"
    );
}

/// `text` with `from` replaced by `to`, which must be there.
fn replaced_once(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "no `{from}` in {text}");
    text.replacen(from, to, 1)
}

#[test]
fn physical_previews_start_from_a_copy_of_a_stopped_golden_data_directory() {
    let dir = TempDir::new("db-phys");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let daemon = local_daemon(&data, "31600-31999", &[], None);
    let repo = project(
        dir.path(),
        "physdb",
        "physical",
        &database(installed_version()),
        SEED,
    );
    register_with_key(&daemon, &repo, "a-physical-masking-key");
    deploy(&daemon, "physdb", &["env", "create", "staging"]);

    // The first preview builds the golden snapshot on a server of its own, stopped and kept; the preview's server
    // starts from a copy of its data directory, whose database becomes the preview's.
    let first = deployed_journal(&daemon, "physdb", &["env", "clone", "staging", "pr-1"]);
    assert!(
        first.contains("kept as a stopped data directory"),
        "{first}"
    );
    assert!(
        first.contains("data directory copied from the golden snapshot"),
        "{first}"
    );
    assert!(first.contains("is the golden snapshot's copy"), "{first}");
    assert!(!everything(&daemon, "physdb", "pr-1").contains("corp.test"));
    let join = "SELECT count(*) FROM orders o JOIN customers c ON c.email = o.customer_email";
    assert_eq!(sql(&daemon, "physdb", "pr-1", join), "500");
    assert_eq!(
        sql(
            &daemon,
            "physdb",
            "pr-1",
            "SELECT string_agg(datname, ' ' ORDER BY datname) FROM pg_database WHERE datname NOT LIKE 'template%'"
        ),
        "physdb_pr_1_db postgres"
    );
    assert_eq!(
        sql(
            &daemon,
            "physdb",
            "pr-1",
            "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname = 'public'"
        ),
        "physdb_pr_1_db"
    );
    // Closed to the golden snapshot's writer; the builder's server is gone, and the snapshot is whole.
    assert_eq!(
        sql(
            &daemon,
            "physdb",
            "pr-1",
            "SELECT has_database_privilege('preview_golden', current_database(), 'CONNECT')"
        ),
        "f"
    );
    assert!(
        server_keys(&data)
            .iter()
            .all(|key| !key.contains("+golden")),
        "{:?}",
        server_keys(&data)
    );
    let golden_dirs: Vec<String> = std::fs::read_dir(data.join("local/databases"))
        .expect("servers")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("golden-"))
        .collect();
    assert_eq!(golden_dirs.len(), 1, "{golden_dirs:?}");
    assert!(!golden_dirs[0].contains('.'), "{golden_dirs:?}");
    // The next preview copies the same snapshot: nothing is read from staging again.
    let second = deployed_journal(&daemon, "physdb", &["env", "clone", "staging", "pr-2"]);
    assert!(
        !second.contains("kept as a stopped data directory"),
        "{second}"
    );
    assert!(
        second.contains("data directory copied from the golden snapshot"),
        "{second}"
    );
    assert_eq!(
        sql(
            &daemon,
            "physdb",
            "pr-2",
            "SELECT string_agg(email, ',' ORDER BY id) FROM customers"
        ),
        sql(
            &daemon,
            "physdb",
            "pr-1",
            "SELECT string_agg(email, ',' ORDER BY id) FROM customers"
        ),
    );
    let listed = daemon.json(&["--project", "physdb", "db", "snapshots"]);
    let snapshots = listed["snapshots"].as_array().expect("snapshots");
    assert_eq!(snapshots.len(), 1, "{listed}");
    assert_eq!(
        snapshots[0]["environments"],
        serde_json::json!(["pr-1", "pr-2"])
    );
    assert_eq!(snapshots[0]["from"], "staging", "{listed}");
    assert!(
        snapshots[0]["rows"].as_u64().unwrap_or_default() >= 780,
        "{listed}"
    );
    assert!(
        snapshots[0]["size_bytes"].as_u64().unwrap_or_default() > 1_000_000,
        "{listed}"
    );
    // Kept as the daemon's own files, not as the user of the server that built it.
    let golden_dir = std::fs::read_dir(data.join("local/databases"))
        .expect("servers")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("golden-"))
        })
        .expect("a golden snapshot's directory");
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(golden_dir.join("data/base")).expect("base"),
    );
    let own = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&data).expect("data"));
    assert_eq!(owner, own);

    // Built again from staging as it is now; previews made before keep their data.
    sql(
        &daemon,
        "physdb",
        "staging",
        "INSERT INTO customers (email, full_name) VALUES ('zq999.shopper@corp.test', 'Zorblat999 Quintessa')",
    );
    let refreshed = ok(in_project(
        &daemon,
        "physdb",
        &["db", "refresh", "pr-1", "db"],
    ));
    assert!(
        refreshed.contains("kept as a stopped data directory"),
        "{refreshed}"
    );
    deploy(&daemon, "physdb", &["env", "clone", "staging", "pr-3"]);
    assert_eq!(
        sql(&daemon, "physdb", "pr-3", "SELECT count(*) FROM customers"),
        "201"
    );
    assert_eq!(
        sql(&daemon, "physdb", "pr-1", "SELECT count(*) FROM customers"),
        "200"
    );
    assert!(!everything(&daemon, "physdb", "pr-3").contains("corp.test"));

    // The snapshot goes with the project's last server of the database.
    for environment in ["pr-1", "pr-2", "pr-3", "staging"] {
        deploy(&daemon, "physdb", &["env", "delete", environment]);
    }
    let left: Vec<_> = std::fs::read_dir(data.join("local/databases"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(running_servers(&data), 0);
}

/// The keys of the servers that have files, as their records say.
fn server_keys(data: &Path) -> Vec<String> {
    let mut keys: Vec<String> = std::fs::read_dir(data.join("local/databases"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("server.json")).ok())
        .filter_map(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .filter_map(|record| record["key"].as_str().map(str::to_owned))
        .collect();
    keys.sort();
    keys
}

#[test]
fn a_physical_copy_whose_operations_fail_or_are_killed_is_rolled_back_with_nothing_left() {
    let dir = TempDir::new("db-fp");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let mut faulty = Faulty::start(dir.path(), "32000-32399");
    let repo = project(
        dir.path(),
        "physfault",
        "physical",
        &database(installed_version()),
        SEED,
    );
    register_with_key(faulty.daemon(), &repo, "k");
    deploy(faulty.daemon(), "physfault", &["env", "create", "staging"]);
    let clone = ["env", "clone", "staging", "pr-1"];
    let goldens = |data: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(data.join("local/databases"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("golden-"))
            })
            .collect()
    };
    let nothing_of_pr_1 = |faulty: &Faulty, case: &str| {
        assert_eq!(
            server_keys(&faulty.data),
            vec!["physfault/staging/db".to_owned()],
            "{case}: only staging's server is left"
        );
        assert_eq!(running_servers(&faulty.data), 1, "{case}");
        assert!(
            goldens(&faulty.data).len() <= 1,
            "{case}: {:?}",
            goldens(&faulty.data)
        );
        assert_eq!(
            sql(
                faulty.daemon(),
                "physfault",
                "staging",
                "SELECT count(*) FROM orders"
            ),
            "500",
            "{case}"
        );
    };
    for operation in ["golden", "create", "role", "mark"] {
        for (fault, when) in FAULTS {
            if operation == "golden" {
                for golden in goldens(&faulty.data) {
                    std::fs::remove_dir_all(golden).expect("remove the golden snapshot");
                }
            }
            let case = format!("{operation} {fault} {when}");
            let status = faulty.inject("physfault", &clone, operation, fault, when);
            assert_eq!(status, "rolled_back", "{case}");
            nothing_of_pr_1(&faulty, &case);
        }
    }
    for (fault, when) in FAULTS {
        deploy(faulty.daemon(), "physfault", &clone);
        let case = format!("drop {fault} {when}");
        let status = faulty.inject("physfault", &["env", "delete", "pr-1"], "drop", fault, when);
        assert_eq!(status, "committed", "{case}");
        nothing_of_pr_1(&faulty, &case);
    }
    deploy(faulty.daemon(), "physfault", &clone);
    assert_eq!(
        sql(
            faulty.daemon(),
            "physfault",
            "pr-1",
            "SELECT count(*) FROM customers WHERE email LIKE '%corp.test'"
        ),
        "0"
    );
}

#[test]
fn an_external_server_that_insists_on_tls_is_reached_as_its_admin_url_says() {
    let dir = TempDir::new("db-tls");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    // A server that refuses every connection without TLS; its certificate, from a CA of the test's, names
    // `localhost` only, while the admin URL names 127.0.0.1.
    let external = preview_testing::TestPostgres::start();
    let ca = preview_tls::LocalCa::load_or_create(&dir.path().join("ca")).expect("a CA");
    let certificate = |name: &str| {
        ca.issue(&[name.to_owned()], std::time::Duration::from_secs(86400))
            .expect("a certificate")
    };
    let localhost = certificate("localhost");
    external.require_tls(&localhost.chain_pem, localhost.key_pem.expose());
    let trusted = dir.path().join("trusted.pem");
    std::fs::write(&trusted, ca.certificate_pem()).expect("trusted");
    let stranger =
        preview_tls::LocalCa::load_or_create(&dir.path().join("stranger")).expect("a CA");
    let untrusted = dir.path().join("untrusted.pem");
    std::fs::write(&untrusted, stranger.certificate_pem()).expect("untrusted");

    let daemon = local_daemon(&data, "32400-32599", &[], None);
    let spec = database(installed_version()).replace(
        "    clone: { policy: seed, file: seed.sql }",
        "    mode: external\n    admin_url: ADMIN_URL\n    clone: { policy: seed, file: seed.sql }",
    );
    let repo = project(dir.path(), "tlsdb", "logical", &spec, SEED);
    let text = std::fs::read_to_string(repo.join("preview.yaml")).expect("spec");
    std::fs::write(
        repo.join("preview.yaml"),
        replaced_once(
            &text,
            "secrets: [MASKING_KEY]",
            "secrets: [MASKING_KEY, ADMIN_URL]",
        ),
    )
    .expect("spec");
    commit_all(&repo, "external, over TLS");
    register_with_key(&daemon, &repo, "a-tls-masking-key");
    let set_url = |query: &str| {
        ok(daemon.cli_with_input(
            &[
                "--project",
                "tlsdb",
                "secret",
                "set",
                "ADMIN_URL",
                "--scope",
                "project",
            ],
            &format!(
                "postgres://postgres@127.0.0.1:{}/postgres?{query}",
                external.port()
            ),
        ));
    };
    let on_external = |query: &str| {
        let out = std::process::Command::new("psql")
            .args([
                "-X",
                "-At",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
            ])
            .arg(query)
            .env("PGPORT", external.port().to_string())
            .env("PGSSLMODE", "require")
            .output()
            .expect("psql");
        ok(out).trim().to_owned()
    };
    let made = "SELECT count(*) FROM pg_database WHERE datname LIKE 'tlsdb_%'";

    // Refused, each rolled back with nothing made: without TLS by the server; by the daemon, a certificate from a
    // CA it was not told to trust (`verify-full`, and `require` with a root certificate, which checks the CA as
    // libpq does), and one that does not name the URL's host (`verify-full`).
    for (query, expected) in [
        ("sslmode=disable".to_owned(), "no encryption"),
        (
            format!("sslmode=verify-full&sslrootcert={}", untrusted.display()),
            "invalid peer certificate",
        ),
        (
            format!("sslmode=require&sslrootcert={}", untrusted.display()),
            "invalid peer certificate",
        ),
        (
            format!("sslmode=verify-full&sslrootcert={}", trusted.display()),
            "certificate not valid for name",
        ),
    ] {
        set_url(&query);
        let refused = failed_deployment(&daemon, "tlsdb", &["env", "create", "staging"]);
        assert!(refused.contains(expected), "{query}: {refused}");
        assert_eq!(on_external(made), "0", "{query} left something");
    }

    // `verify-ca` checks the CA and not the name: the environment is made, its seed and migration run (the job's
    // psql negotiates TLS through the environment's service port, since the server takes nothing else).
    set_url(&format!(
        "sslmode=verify-ca&sslrootcert={}",
        trusted.display()
    ));
    deploy(&daemon, "tlsdb", &["env", "create", "staging"]);
    assert_eq!(
        sql(&daemon, "tlsdb", "staging", "SELECT name FROM migrations"),
        "v1"
    );
    // With a certificate that names 127.0.0.1, `verify-full` accepts it, and a masked preview is copied.
    let address = certificate("127.0.0.1");
    external.require_tls(&address.chain_pem, address.key_pem.expose());
    set_url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        trusted.display()
    ));
    deploy(&daemon, "tlsdb", &["env", "clone", "staging", "pr-1"]);
    assert_eq!(
        sql(
            &daemon,
            "tlsdb",
            "pr-1",
            "SELECT count(*) FROM customers WHERE email LIKE '%corp.test'"
        ),
        "0"
    );
    assert_eq!(
        sql(&daemon, "tlsdb", "pr-1", "SELECT count(*) FROM orders"),
        "500"
    );
    for environment in ["pr-1", "staging"] {
        deploy(&daemon, "tlsdb", &["env", "delete", environment]);
    }
    assert_eq!(on_external(made), "0");
}

#[test]
fn a_database_seeded_by_a_job_and_previews_that_are_plain_copies_of_it() {
    let dir = TempDir::new("db-job");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let daemon = local_daemon(&data, "32600-32799", &[], None);
    let repo = dir.path().join("jobdb");
    std::fs::create_dir_all(&repo).expect("repo");
    std::fs::write(repo.join("seed.sql"), SEED).expect("seed");
    std::fs::write(
        repo.join("preview.yaml"),
        format!(
            "project: jobdb
isolation: logical
runtime: local
services:
  load:
    type: job
    hook: seed
    command: psql \"$DATABASE_URL\" -v ON_ERROR_STOP=1 -q -f seed.sql && echo loaded the seed
    depends_on: [db]
  db:
    type: database
    engine: postgres
    version: {}
    clone: {{ policy: seed, job: load }}
environments:
  staging: {{}}
previews:
  blueprint: staging
  overrides:
    services:
      db:
        clone: {{ policy: clone, from: staging }}
",
            installed_version()
        ),
    )
    .expect("spec");
    git(&repo, &["init", "--quiet"]);
    commit_all(&repo, "a database seeded by a job");
    ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        &repo.join("preview.yaml").display().to_string(),
    ]));

    let journal = deployed_journal(&daemon, "jobdb", &["env", "create", "staging"]);
    assert!(journal.contains("loaded the seed"), "{journal}");
    assert_eq!(
        sql(
            &daemon,
            "jobdb",
            "staging",
            "SELECT count(*) FROM customers"
        ),
        "200"
    );
    // A plain copy holds exactly the source's values, through a golden snapshot without masking; the seed job
    // does not run on it.
    let cloned = deployed_journal(&daemon, "jobdb", &["env", "clone", "staging", "pr-1"]);
    assert!(cloned.contains("job `load` (seed) not run"), "{cloned}");
    for table in ["customers", "orders", "reviews"] {
        let rows = format!(
            "SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t"
        );
        assert_eq!(
            sql(&daemon, "jobdb", "pr-1", &rows),
            sql(&daemon, "jobdb", "staging", &rows),
            "{table}"
        );
    }
    assert_eq!(
        sql(
            &daemon,
            "jobdb",
            "pr-1",
            "SELECT count(*) FROM customers WHERE email LIKE '%corp.test'"
        ),
        "200"
    );
    let snapshot = snapshot_of(&daemon, "jobdb", "pr-1");
    assert_eq!(snapshot["policy"], "clone", "{snapshot}");
    assert_eq!(snapshot["from"], "staging", "{snapshot}");
    assert!(snapshot["masking_key"].is_null(), "{snapshot}");
    // The copy is pr-1's own: a change there is not staging's.
    sql(&daemon, "jobdb", "pr-1", "DELETE FROM orders");
    assert_eq!(
        sql(&daemon, "jobdb", "staging", "SELECT count(*) FROM orders"),
        "500"
    );
    // A reset makes the database again and runs its seed job again.
    sql(&daemon, "jobdb", "staging", "DELETE FROM reviews");
    let reset = ok(in_project(
        &daemon,
        "jobdb",
        &["db", "reset", "staging", "db"],
    ));
    assert!(
        reset.contains("loaded the seed") || reset.contains("made empty"),
        "{reset}"
    );
    assert_eq!(
        sql(&daemon, "jobdb", "staging", "SELECT count(*) FROM reviews"),
        "80"
    );
    for environment in ["pr-1", "staging"] {
        deploy(&daemon, "jobdb", &["env", "delete", environment]);
    }
    assert_eq!(running_servers(&data), 0);
}
