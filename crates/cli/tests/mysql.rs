//! MySQL databases through the real daemon with the distribution's MariaDB: each clone policy (empty, a SQL seed
//! file, a copy and a masked copy of another environment's database through a golden database), on a server of
//! preview's or an external one, what one
//! environment's user may not do (read another's data, reach the server's files or administration), data kept
//! across the daemon's restart, bad input refused with its place and nothing left, and removal leaving no
//! database, user, server process or directory.

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use preview_testing::TempDir;
use support::faulty::{FAULTS, Faulty, deployment_id};
use support::{
    Daemon, ReleaseAccounts, api, commit_all, deploy, deployed_journal, failed_deployment, git,
    local_daemon, ok, register_with_key,
};

/// Customers and their orders, joined by e-mail address; a table the migrate job writes to.
const SEED: &str = "CREATE TABLE customers (id INT PRIMARY KEY, email VARCHAR(200) NOT NULL UNIQUE, full_name VARCHAR(200));
CREATE TABLE orders (id INT PRIMARY KEY, customer_email VARCHAR(200) NOT NULL, total DECIMAL(10,2),
  FOREIGN KEY (customer_email) REFERENCES customers (email));
CREATE TABLE visits (environment VARCHAR(100));
INSERT INTO customers VALUES (1, 'ann.o''hara@corp.example', 'Ann O''Hara'), (2, 'bob@corp.example', 'Bob Stone'),
  (3, 'cy@corp.example', NULL);
INSERT INTO orders VALUES (10, 'ann.o''hara@corp.example', 12.50), (11, 'ann.o''hara@corp.example', 3.00),
  (12, 'bob@corp.example', 99.99);
CREATE FUNCTION big(total DECIMAL(10,2)) RETURNS BOOLEAN DETERMINISTIC RETURN total > 10;
CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE big(total);
CREATE TABLE signups (email VARCHAR(200));
DELIMITER //
CREATE TRIGGER signed_up AFTER INSERT ON signups FOR EACH ROW
INSERT INTO `customers` (`id`, `email`, `full_name`) VALUES (100 + (SELECT COUNT(*) FROM signups), NEW.email, NULL);
//
DELIMITER ;
";

const SOURCE_EMAILS: [&str; 3] = [
    "ann.o'hara@corp.example",
    "bob@corp.example",
    "cy@corp.example",
];

/// A project whose `ledger` is a MySQL database seeded from `seed.sql` in staging and copied, masked, into
/// previews; a migrate job records its environment in it from its sandbox through `DATABASE_URL`'s parts.
fn project(dir: &Path, name: &str, environments: &str) -> PathBuf {
    let repo = dir.join(name);
    std::fs::create_dir_all(&repo).expect("repo");
    std::fs::write(repo.join("seed.sql"), SEED).expect("seed");
    std::fs::write(
        repo.join("bad.sql"),
        "CREATE TABLE t (id INT);\nINSERT INTO t VALUES (1);\nINSERT INTO missing VALUES (2);\n",
    )
    .expect("bad seed");
    // The client's own commands — a shell, a file read in — are refused: a seed file is SQL and nothing else.
    std::fs::write(
        repo.join("hostile.sql"),
        format!(
            "CREATE TABLE t (id INT);\n\\! touch {0}\nsystem touch {0}\n",
            dir.join("escaped").display()
        ),
    )
    .expect("hostile seed");
    std::fs::write(
        repo.join("preview.yaml"),
        format!(
            "project: {name}
runtime: local
secrets: [MASKING_KEY]
services:
  visit:
    type: job
    hook: migrate
    command: >-
      case \"$DATABASE_URL\" in \"mysql://$DB_USER:\"*\"@$LEDGER_HOST:$LEDGER_PORT/$DB_USER\") ;; *) exit 3;; esac;
      MYSQL_PWD=\"$DB_PASSWORD\" mariadb --protocol=tcp -h \"$LEDGER_HOST\" -P \"$LEDGER_PORT\" -u \"$DB_USER\" \"$DB_USER\"
      -e \"CREATE TABLE IF NOT EXISTS visits (environment VARCHAR(100)); INSERT INTO visits VALUES ('$PREVIEW_ENVIRONMENT')\"
    depends_on: [ledger]
    variables:
      DB_USER: ${{{{ services.ledger.user }}}}
      DB_PASSWORD: ${{{{ services.ledger.password }}}}
  ledger:
    type: database
    engine: mysql
    version: 10.11
    clone: {{ policy: seed, file: seed.sql }}
    masking:
      key: MASKING_KEY
      tables:
        customers: {{ email: email, full_name: name }}
        orders: {{ customer_email: {{ same_as: customers.email }} }}
environments:
{environments}
previews:
  blueprint: staging
  overrides:
    services:
      ledger:
        clone: {{ policy: masked, from: staging }}
"
        ),
    )
    .expect("spec");
    git(&repo, &["init", "--quiet"]);
    commit_all(&repo, "the project");
    repo
}

/// ENV's login to its `ledger`: port, user (its database's name too) and password, as the API gives it.
fn login(daemon: &Daemon, project: &str, environment: &str) -> (u16, String, String) {
    let (status, body) = api(
        daemon,
        "POST",
        &format!("/v1/projects/{project}/environments/{environment}/databases/ledger/login"),
        serde_json::json!({}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["host"], "127.0.0.1", "{body}");
    (
        body["port"].as_u64().expect("port") as u16,
        body["user"].as_str().expect("user").to_owned(),
        body["password"].as_str().expect("password").to_owned(),
    )
}

/// `sql` run by `mariadb` as `user` with `password` on `port`, in `database`: its rows, or its error.
fn mariadb_as(port: u16, user: &str, password: &str, database: &str, sql: &str) -> String {
    let out = Command::new("mariadb")
        .args([
            "--no-defaults",
            "--protocol=tcp",
            "-h",
            "127.0.0.1",
            "--batch",
        ])
        .arg("--skip-column-names")
        .arg(format!("--port={port}"))
        .arg(format!("--user={user}"))
        .arg(format!("--database={database}"))
        .arg(format!("--execute={sql}"))
        .env("MYSQL_PWD", password)
        .output()
        .expect("mariadb (scripts/test installs it)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim()
    .to_owned()
}

/// `sql` on ENV's own database as its own user.
fn sql(daemon: &Daemon, project: &str, environment: &str, query: &str) -> String {
    let (port, user, password) = login(daemon, project, environment);
    mariadb_as(port, &user, &password, &user, query)
}

/// `sql` as the server's administrator, through the socket of the one MariaDB server the daemon has files for.
fn as_admin(data: &Path, query: &str) -> String {
    let sockets = mariadb_servers(data).0;
    assert_eq!(sockets.len(), 1, "{sockets:?}");
    as_admin_at(&sockets[0], query)
}

/// `sql` as the administrator of the server whose socket is `socket`.
fn as_admin_at(socket: &Path, query: &str) -> String {
    // A daemon started again after a kill serves its servers again while it already answers: the socket may take
    // a moment to come back.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "--protocol=socket", "--user=root"])
            .args(["--batch", "--skip-column-names"])
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--execute={query}"))
            .output()
            .expect("mariadb");
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("Can't connect") && std::time::Instant::now() < deadline,
            "{stderr}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The sockets of the MariaDB servers the daemon has files for, and every `mariadbd` process it started that
/// runs — found by the marker its processes carry in their environment, whether or not their files are there.
fn mariadb_servers(data: &Path) -> (Vec<PathBuf>, Vec<u32>) {
    let made = std::fs::read_dir(data.join("local/databases"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("my.cnf").exists())
        .map(|e| e.path().join("run/mysqld.sock"))
        .collect();
    let marker = std::fs::read_to_string(data.join("local/marker")).expect("the runtime's marker");
    let carried = format!("PREVIEW_SUPERVISOR={}", marker.trim());
    let running = std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains("mariadbd")
                && environ.split(|b| *b == 0).any(|v| v == carried.as_bytes())
        })
        .collect();
    (made, running)
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

#[test]
fn mysql_databases_by_every_policy_masked_kept_apart_kept_over_restarts_and_removed_with_nothing_left()
 {
    let dir = TempDir::new("mysql-policies");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let mut daemon = local_daemon(&data, "34800-35299", &[], None);
    let repo = project(
        dir.path(),
        "ledger",
        "  staging: {}
  blank:
    services:
      ledger:
        clone: { policy: empty }
  broken:
    services:
      ledger:
        clone: { policy: seed, file: bad.sql }
  newer:
    services:
      ledger:
        version: 11.4
  hostile:
    services:
      ledger:
        clone: { policy: seed, file: hostile.sql }
  prx1:
    services:
      ledger:
        clone: { policy: empty }",
    );
    register_with_key(&daemon, &repo, "a-mysql-masking-key");

    // Seeded from the SQL file, quotes, keys and view included; the job reached it from its sandbox.
    deploy(&daemon, "ledger", &["env", "create", "staging"]);
    assert_eq!(
        sql(
            &daemon,
            "ledger",
            "staging",
            "SELECT email FROM customers ORDER BY id"
        ),
        SOURCE_EMAILS.join("\n")
    );
    assert_eq!(
        sql(&daemon, "ledger", "staging", "SELECT * FROM visits"),
        "staging"
    );
    assert_eq!(
        sql(
            &daemon,
            "ledger",
            "staging",
            "SELECT id FROM big_orders ORDER BY id"
        ),
        "10\n12"
    );
    // Empty: only what its job made.
    deploy(&daemon, "ledger", &["env", "create", "blank"]);
    assert_eq!(sql(&daemon, "ledger", "blank", "SHOW TABLES"), "visits");

    // A masked copy: no source value of a masked column, joins kept, the rest as it was.
    deploy(&daemon, "ledger", &["env", "clone", "staging", "pr-1"]);
    let customers = sql(
        &daemon,
        "ledger",
        "pr-1",
        "SELECT id, email, COALESCE(full_name, 'NULL') FROM customers ORDER BY id",
    );
    let everything = [
        customers.clone(),
        sql(&daemon, "ledger", "pr-1", "SELECT * FROM orders"),
        sql(&daemon, "ledger", "pr-1", "SELECT * FROM big_orders"),
    ]
    .join("\n");
    for source in SOURCE_EMAILS
        .iter()
        .copied()
        .chain(["Ann O'Hara", "Bob Stone", "corp.example"])
    {
        assert!(!everything.contains(source), "{source} in:\n{everything}");
    }
    let masked: Vec<Vec<String>> = customers
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    assert_eq!(masked.len(), 3, "{customers}");
    assert!(
        masked.iter().all(|row| row[1].ends_with("@example.com")),
        "{customers}"
    );
    // NULL stays NULL.
    assert_eq!(masked[2][2], "NULL", "{customers}");
    let joined = "SELECT c.id, o.id, o.total FROM orders o JOIN customers c ON c.email = o.customer_email ORDER BY o.id";
    assert_eq!(
        sql(&daemon, "ledger", "pr-1", joined),
        sql(&daemon, "ledger", "staging", joined)
    );
    assert_eq!(
        sql(
            &daemon,
            "ledger",
            "pr-1",
            "SELECT id FROM big_orders ORDER BY id"
        ),
        "10\n12"
    );
    assert_eq!(
        lines(&sql(
            &daemon,
            "ledger",
            "pr-1",
            "SELECT * FROM visits ORDER BY 1"
        )),
        ["pr-1", "staging"]
    );
    // The trigger came along (its body is a statement, not rows to mask), defined by pr-1's own user.
    sql(
        &daemon,
        "ledger",
        "pr-1",
        "INSERT INTO signups VALUES ('new@example.org')",
    );
    assert_eq!(
        sql(
            &daemon,
            "ledger",
            "pr-1",
            "SELECT id FROM customers WHERE email = 'new@example.org'"
        ),
        "101"
    );
    let definer = sql(
        &daemon,
        "ledger",
        "pr-1",
        "SELECT definer FROM information_schema.triggers WHERE trigger_name = 'signed_up'",
    );
    assert!(definer.starts_with("ledger_pr_1_ledger@"), "{definer}");
    let snapshot = daemon.json(&["--project", "ledger", "db", "snapshot", "pr-1", "ledger"]);
    assert_eq!(snapshot["snapshot"]["from"], "staging", "{snapshot}");
    assert_eq!(snapshot["snapshot"]["policy"], "masked", "{snapshot}");
    assert_eq!(snapshot["snapshot"]["tables"], 4, "{snapshot}");
    assert!(
        snapshot["snapshot"]["masking_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("project/MASKING_KEY@")),
        "{snapshot}"
    );
    let made_at = snapshot["snapshot"]["made_at"].as_u64().expect("made_at");
    // Its time is in seconds: the refresh below is a second later at least.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Determinism: the golden database built again, and the preview made again from it, masks alike.
    let pr1_emails = sql(
        &daemon,
        "ledger",
        "pr-1",
        "SELECT email FROM customers WHERE id < 100 ORDER BY id",
    );
    sql(
        &daemon,
        "ledger",
        "pr-1",
        "INSERT INTO visits VALUES ('written in pr-1')",
    );
    ok(support::in_project(
        &daemon,
        "ledger",
        &["db", "refresh", "pr-1", "ledger"],
    ));
    let refreshed = daemon.json(&["--project", "ledger", "db", "snapshot", "pr-1", "ledger"]);
    assert!(
        refreshed["snapshot"]["made_at"].as_u64().expect("made_at") > made_at,
        "the golden database was not built again: {refreshed}"
    );
    ok(support::in_project(
        &daemon,
        "ledger",
        &["db", "reset", "pr-1", "ledger"],
    ));
    assert_eq!(
        sql(
            &daemon,
            "ledger",
            "pr-1",
            "SELECT email FROM customers WHERE id < 100 ORDER BY id"
        ),
        pr1_emails
    );
    // Made again from the golden database: what pr-1 wrote since (its job's row too) is gone.
    assert_eq!(
        lines(&sql(
            &daemon,
            "ledger",
            "pr-1",
            "SELECT * FROM visits ORDER BY 1"
        )),
        ["staging"]
    );

    // Isolation: pr-1's user reaches its own database and nothing else of the server.
    let (port, staging_user, _) = login(&daemon, "ledger", "staging");
    let (pr1_port, pr1_user, pr1_password) = login(&daemon, "ledger", "pr-1");
    assert_eq!(
        port, pr1_port,
        "the project's environments share its server"
    );
    let denied = mariadb_as(port, &pr1_user, &pr1_password, &staging_user, "SELECT 1");
    assert!(denied.contains("Access denied"), "{denied}");
    let as_pr1 = |query: &str| mariadb_as(port, &pr1_user, &pr1_password, &pr1_user, query);
    for query in [
        format!("SELECT email FROM {staging_user}.customers"),
        "SELECT user FROM mysql.user".to_owned(),
        "CREATE USER intruder IDENTIFIED BY 'x'".to_owned(),
        format!("GRANT SELECT ON {staging_user}.* TO '{pr1_user}'@'%'"),
        "SELECT * FROM customers INTO OUTFILE '/tmp/leak'".to_owned(),
        "SHUTDOWN".to_owned(),
        "SET GLOBAL max_connections = 1".to_owned(),
    ] {
        let answer = as_pr1(&query);
        assert!(
            answer.contains("ERROR") && answer.contains("denied"),
            "{query}: {answer}"
        );
    }
    assert_eq!(as_pr1("SELECT LOAD_FILE('/etc/passwd')"), "NULL");
    // A database whose name differs from pr-1's only where pr-1's has `_` (a wildcard in grants) is not pr-1's.
    deploy(&daemon, "ledger", &["env", "create", "prx1"]);
    let wildcard = as_pr1("SELECT * FROM ledger_prx1_ledger.visits");
    assert!(wildcard.contains("denied"), "{wildcard}");
    assert_eq!(
        lines(&as_pr1("SHOW DATABASES")),
        ["information_schema", pr1_user.as_str()]
    );
    // Staging's password is not pr-1's, nor is the administrator reachable over TCP.
    let (_, _, staging_password) = login(&daemon, "ledger", "staging");
    assert_ne!(staging_password, pr1_password);
    let root = mariadb_as(port, "root", "", "mysql", "SELECT 1");
    assert!(root.contains("ERROR"), "{root}");

    // Bad input: a seed error names the file and line, and nothing of it is left.
    let out = failed_deployment(&daemon, "ledger", &["env", "create", "broken"]);
    assert!(
        out.contains("bad.sql:3: Table 'ledger_broken_ledger.missing' doesn't exist"),
        "{out}"
    );
    let databases = as_admin(&data, "SHOW DATABASES");
    assert!(!databases.contains("broken"), "{databases}");
    assert!(!as_admin(&data, "SELECT user FROM mysql.user").contains("broken"));
    let out = failed_deployment(&daemon, "ledger", &["env", "create", "hostile"]);
    assert!(out.contains("hostile.sql:2:"), "{out}");
    assert!(
        !dir.path().join("escaped").exists(),
        "a seed file ran a command"
    );
    // A release series that is not installed.
    let out = failed_deployment(&daemon, "ledger", &["env", "create", "newer"]);
    assert!(
        out.contains("MariaDB 11.4 is not installed: this machine has MariaDB 10.11"),
        "{out}"
    );

    // No password on a server's command line, in its configuration or log.
    for (path, _) in std::fs::read_dir(data.join("local/databases"))
        .expect("servers")
        .flatten()
        .flat_map(|e| {
            ["my.cnf", "server.log"]
                .map(|f| (e.path().join(f), ()))
                .into_iter()
        })
    {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(!text.contains(&pr1_password), "{}", path.display());
    }
    for pid in mariadb_servers(&data).1 {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&cmdline).contains(&pr1_password));
    }

    // The daemon stops its server with it, and it comes back with the data.
    daemon.stop();
    assert!(mariadb_servers(&data).1.is_empty());
    daemon = local_daemon(&data, "34800-35299", &[], None);
    assert_eq!(
        sql(&daemon, "ledger", "staging", "SELECT COUNT(*) FROM orders"),
        "3"
    );

    // Removed: no database, user, server process, directory, port or account is left.
    for environment in ["pr-1", "blank", "prx1"] {
        ok(support::in_project(
            &daemon,
            "ledger",
            &["env", "delete", environment],
        ));
    }
    let databases = as_admin(&data, "SHOW DATABASES");
    assert!(
        !databases.contains("pr_1") && !databases.contains("blank"),
        "{databases}"
    );
    // Staging's golden database stays for the next preview, as long as staging does.
    assert!(databases.contains("preview_golden_"), "{databases}");
    let users = as_admin(&data, "SELECT user FROM mysql.user");
    assert!(
        !users.contains("pr_1") && !users.contains("blank"),
        "{users}"
    );
    ok(support::in_project(
        &daemon,
        "ledger",
        &["env", "delete", "staging"],
    ));
    let (made, running) = mariadb_servers(&data);
    assert!(
        made.is_empty() && running.is_empty(),
        "{made:?} {running:?}"
    );
    assert!(
        std::fs::read_dir(data.join("local/databases"))
            .into_iter()
            .flatten()
            .flatten()
            .all(|e| !e.path().join("my.cnf").exists()),
    );
    for file in ["local/ports.json", "local/accounts.json"] {
        let text = std::fs::read_to_string(data.join(file)).unwrap_or_default();
        assert!(!text.contains("ledger/10.11"), "{file}: {text}");
    }
}

/// The databases and the users environments have on the one server the daemon has files for (none: empty).
fn server_contents(data: &Path) -> (Vec<String>, Vec<String>) {
    if mariadb_servers(data).0.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let databases = as_admin(
        data,
        "SELECT CONCAT(schema_name, IF(schema_comment LIKE 'preview: ready%', '', ' (unmarked)')) FROM information_schema.schemata WHERE schema_name NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1",
    );
    let users = as_admin(
        data,
        "SELECT user FROM mysql.user WHERE host = '%' AND user NOT LIKE 'preview\\_golden%' ORDER BY 1",
    );
    (lines(&databases), lines(&users))
}

#[test]
fn mysql_steps_that_fail_or_are_killed_are_rolled_back_with_nothing_left() {
    let dir = TempDir::new("mysql-faults");
    let _accounts = ReleaseAccounts(dir.path().join("data"));
    let mut faulty = Faulty::start(dir.path(), "35300-35699");
    let repo = project(
        dir.path(),
        "faultledger",
        "  staging: {}
  keep: {}
  phys:
    services:
      ledger:
        mode: container
        clone: { policy: masked, from: staging }",
    );
    register_with_key(faulty.daemon(), &repo, "a-fault-masking-key");
    // A server's data directory whose making was cut short (here: killed once it was made, then broken before the
    // daemon came back) is never started: the step's undo removes it as it is.
    std::fs::write(&faulty.faults, "install kill after\n").expect("faults");
    let started = faulty.daemon().json(&[
        "--project",
        "faultledger",
        "env",
        "create",
        "keep",
        "--no-wait",
    ]);
    let id = deployment_id(&started);
    faulty.daemon.take().expect("a daemon").wait_killed();
    std::fs::write(&faulty.faults, "").expect("faults");
    let data_dirs: Vec<PathBuf> = mariadb_servers(&faulty.data)
        .0
        .iter()
        .map(|socket| {
            socket
                .parent()
                .and_then(Path::parent)
                .expect("root")
                .join("data")
        })
        .collect();
    assert_eq!(data_dirs.len(), 1, "{data_dirs:?}");
    std::fs::remove_file(data_dirs[0].join("ibdata1")).expect("its system tablespace");
    faulty.daemon = Some(faulty.started());
    let ended = support::wait_until_ended(faulty.daemon(), &id);
    assert_eq!(ended["deployment"]["status"], "rolled_back", "{ended}");
    let (made, running) = mariadb_servers(&faulty.data);
    assert!(
        made.is_empty() && running.is_empty(),
        "{made:?} {running:?}"
    );
    // The project's first database: its server is made in the step, and goes when the step is undone.
    for operation in ["server", "install", "role", "create", "seed", "mark"] {
        for (fault, when) in FAULTS {
            let status = faulty.inject(
                "faultledger",
                &["env", "create", "keep"],
                operation,
                fault,
                when,
            );
            let case = format!("{operation} {fault} {when}");
            assert_eq!(status, "rolled_back", "{case}");
            let (made, running) = mariadb_servers(&faulty.data);
            assert!(
                made.is_empty() && running.is_empty(),
                "{case}: {made:?} {running:?}"
            );
        }
    }
    deploy(faulty.daemon(), "faultledger", &["env", "create", "keep"]);
    deploy(
        faulty.daemon(),
        "faultledger",
        &["env", "create", "staging"],
    );
    let before = server_contents(&faulty.data);
    assert_eq!(
        before,
        (
            lines("faultledger_keep_ledger\nfaultledger_staging_ledger"),
            lines("faultledger_keep_ledger\nfaultledger_staging_ledger")
        )
    );
    // A masked preview of staging: its golden database, then its own.
    for operation in ["golden", "role", "create", "copy", "mark"] {
        for (fault, when) in FAULTS {
            // The golden database is built once and then used: its own cases build it again.
            if operation == "golden" {
                for golden in server_contents(&faulty.data)
                    .0
                    .iter()
                    .filter(|d| d.starts_with("preview_golden_"))
                {
                    let name = golden.trim_end_matches(" (unmarked)");
                    as_admin(&faulty.data, &format!("DROP DATABASE {name}"));
                }
            }
            let status = faulty.inject(
                "faultledger",
                &["env", "clone", "staging", "pr-7"],
                operation,
                fault,
                when,
            );
            let case = format!("{operation} {fault} {when}");
            assert_eq!(status, "rolled_back", "{case}");
            let (databases, users) = server_contents(&faulty.data);
            let environments: Vec<&String> = databases
                .iter()
                .filter(|d| !d.starts_with("preview_golden_"))
                .collect();
            assert_eq!(environments, before.0.iter().collect::<Vec<_>>(), "{case}");
            assert_eq!(users, before.1, "{case}");
            assert!(
                databases.iter().all(|d| !d.ends_with("(unmarked)")),
                "{case}: a half-made golden database is left: {databases:?}"
            );
            assert_eq!(
                sql(
                    faulty.daemon(),
                    "faultledger",
                    "staging",
                    "SELECT COUNT(*) FROM orders"
                ),
                "3",
                "{case}"
            );
        }
    }
    // A masked copy on a server of its own: the golden snapshot built on a server of its own and kept as a data
    // directory, the environment's server made from a copy of it, the copy taken over. Undone, no server but the
    // project's is left, nor any snapshot (no server of the database is left to use it).
    let servers = faulty.data.join("local/databases");
    let golden_dirs = move || -> Vec<PathBuf> {
        std::fs::read_dir(&servers)
            .expect("servers")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("golden-"))
            .map(|e| e.path())
            .collect()
    };
    for operation in ["server", "install", "golden", "create", "copy"] {
        for (fault, when) in FAULTS {
            let status = faulty.inject(
                "faultledger",
                &["env", "create", "phys"],
                operation,
                fault,
                when,
            );
            let case = format!("physical {operation} {fault} {when}");
            assert_eq!(status, "rolled_back", "{case}");
            let (made, running) = mariadb_servers(&faulty.data);
            assert_eq!(
                (made.len(), running.len()),
                (1, 1),
                "{case}: {made:?} {running:?}"
            );
            assert_eq!(golden_dirs(), Vec::<PathBuf>::new(), "{case}");
            let (databases, users) = server_contents(&faulty.data);
            assert_eq!(
                databases
                    .iter()
                    .filter(|d| !d.starts_with("preview_golden_"))
                    .collect::<Vec<_>>(),
                before.0.iter().collect::<Vec<_>>(),
                "{case}"
            );
            assert_eq!(users, before.1, "{case}");
        }
    }
    deploy(faulty.daemon(), "faultledger", &["env", "create", "phys"]);
    assert_eq!(
        sql(
            faulty.daemon(),
            "faultledger",
            "phys",
            "SELECT COUNT(*) FROM customers WHERE email LIKE '%@example.com'"
        ),
        "3"
    );
    deploy(faulty.daemon(), "faultledger", &["env", "delete", "phys"]);
    assert_eq!(golden_dirs(), Vec::<PathBuf>::new());
    deploy(
        faulty.daemon(),
        "faultledger",
        &["env", "clone", "staging", "pr-7"],
    );
    let masked = sql(
        faulty.daemon(),
        "faultledger",
        "pr-7",
        "SELECT email FROM customers ORDER BY id",
    );
    assert!(
        masked.lines().count() == 3 && masked.lines().all(|e| e.ends_with("@example.com")),
        "{masked}"
    );
    // Removal: a failure before it leaves the environment as it was; one after it, or a kill, is finished on
    // recovery (deletion is the point of no return).
    for operation in ["drop", "drop-role"] {
        for (fault, when) in FAULTS {
            let status = faulty.inject(
                "faultledger",
                &["env", "delete", "pr-7"],
                operation,
                fault,
                when,
            );
            let case = format!("{operation} {fault} {when}");
            let (databases, users) = server_contents(&faulty.data);
            match status.as_str() {
                "rolled_back" => {
                    assert_eq!(
                        sql(
                            faulty.daemon(),
                            "faultledger",
                            "pr-7",
                            "SELECT email FROM customers ORDER BY id"
                        ),
                        masked,
                        "{case}"
                    );
                }
                "committed" => {
                    assert!(
                        !databases.iter().any(|d| d.contains("pr_7"))
                            && !users.iter().any(|u| u.contains("pr_7")),
                        "{case}: {databases:?} {users:?}"
                    );
                    deploy(
                        faulty.daemon(),
                        "faultledger",
                        &["env", "clone", "staging", "pr-7"],
                    );
                }
                other => panic!("{case}: {other}"),
            }
        }
    }
}

/// A MariaDB server of the test's own on a free loopback port, standing for one the project already runs, with an
/// administrator `ops` who may create databases and users; stopped when dropped.
struct ExternalServer {
    child: std::process::Child,
    dir: PathBuf,
    port: u16,
}

impl ExternalServer {
    fn start(dir: &Path) -> ExternalServer {
        let dir = dir.join("external-mariadb");
        for sub in ["data", "run", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).expect("dir");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let config = dir.join("my.cnf");
        std::fs::write(
            &config,
            format!(
                "[mariadbd]\ndatadir={0}/data\nsocket={0}/run/mysqld.sock\npid-file={0}/run/mariadbd.pid\ntmpdir={0}/tmp\nport={port}\nbind-address=127.0.0.1\nskip-name-resolve\ninnodb-buffer-pool-size=32M\nperformance-schema=OFF\n",
                dir.display()
            ),
        )
        .expect("config");
        assert!(
            Command::new("chown")
                .args(["-R", "mysql:mysql"])
                .arg(&dir)
                .status()
                .expect("chown")
                .success()
        );
        let as_mysql = |args: &[&str]| {
            let mut command = Command::new("runuser");
            command.args(["-u", "mysql", "--"]).args(args);
            command
        };
        let defaults = format!("--defaults-file={}", config.display());
        let installed = as_mysql(&[
            "mariadb-install-db",
            &defaults,
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        ])
        .output()
        .expect("mariadb-install-db (scripts/test installs it)");
        assert!(installed.status.success(), "{installed:?}");
        // Run as `mysql` itself rather than under runuser, so that killing the child stops the server.
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, "mysql"])
                .output()
                .expect("id");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("the mysql user")
        };
        let child = Command::new("/usr/sbin/mariadbd")
            .arg(&defaults)
            .uid(id("-u"))
            .gid(id("-g"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mariadbd");
        let server = ExternalServer { child, dir, port };
        support::wait_for(
            "the external MariaDB",
            std::time::Duration::from_secs(60),
            || server.root("SELECT 1").is_some(),
        );
        server
            .root("CREATE USER ops@'%' IDENTIFIED BY 'ops-password'; GRANT ALL ON *.* TO ops@'%' WITH GRANT OPTION;")
            .expect("the administrator");
        server
    }

    /// `sql` as the server's root through its socket: its rows, or None when it failed.
    fn root(&self, sql: &str) -> Option<String> {
        let out = Command::new("mariadb")
            .args([
                "--no-defaults",
                "--user=root",
                "--batch",
                "--skip-column-names",
            ])
            .arg(format!("--socket={}/run/mysqld.sock", self.dir.display()))
            .arg(format!("--execute={sql}"))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for ExternalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mysql_databases_on_an_external_server_are_made_masked_kept_apart_and_dropped() {
    let dir = TempDir::new("mysql-external");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let external = ExternalServer::start(dir.path());
    let daemon = local_daemon(&data, "35700-35899", &[], None);
    let repo = project(dir.path(), "outside", "  staging: {}");
    let spec = std::fs::read_to_string(repo.join("preview.yaml")).expect("spec");
    std::fs::write(
        repo.join("preview.yaml"),
        spec.replace(
            "secrets: [MASKING_KEY]",
            "secrets: [MASKING_KEY, LEDGER_ADMIN]",
        )
        .replace(
            "    version: 10.11\n",
            "    version: 10.11\n    mode: external\n    admin_url: LEDGER_ADMIN\n",
        ),
    )
    .expect("spec");
    commit_all(&repo, "an external server");
    ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        &repo.join("preview.yaml").display().to_string(),
    ]));
    let set = |name: &str, value: &str| {
        ok(daemon.cli_with_input(
            &[
                "--project",
                "outside",
                "secret",
                "set",
                name,
                "--scope",
                "project",
            ],
            value,
        ))
    };
    set("MASKING_KEY", "an-external-masking-key");
    // A wrong password: the step fails before anything is made on the server.
    set(
        "LEDGER_ADMIN",
        &format!("mysql://ops:wrong-password@127.0.0.1:{}/", external.port),
    );
    let out = failed_deployment(&daemon, "outside", &["env", "create", "staging"]);
    assert!(out.contains("does not take its admin URL's login"), "{out}");
    assert!(!out.contains("wrong-password"), "{out}");
    set(
        "LEDGER_ADMIN",
        &format!("mysql://ops:ops-password@127.0.0.1:{}/", external.port),
    );
    deploy(&daemon, "outside", &["env", "create", "staging"]);
    deploy(&daemon, "outside", &["env", "clone", "staging", "pr-1"]);
    // On the external server, reached through the service port: no server of preview's own was made.
    assert!(mariadb_servers(&data).0.is_empty());
    let (port, _, _) = login(&daemon, "outside", "pr-1");
    assert_eq!(port, external.port);
    let databases = external.root("SHOW DATABASES").expect("databases");
    assert!(
        databases.contains("outside_staging_ledger") && databases.contains("outside_pr_1_ledger"),
        "{databases}"
    );
    let emails = sql(
        &daemon,
        "outside",
        "pr-1",
        "SELECT email FROM customers ORDER BY id",
    );
    assert!(
        emails.lines().count() == 3 && emails.lines().all(|e| e.ends_with("@example.com")),
        "{emails}"
    );
    let (_, pr1_user, pr1_password) = login(&daemon, "outside", "pr-1");
    let denied = mariadb_as(
        port,
        &pr1_user,
        &pr1_password,
        &pr1_user,
        "SELECT email FROM outside_staging_ledger.customers",
    );
    assert!(denied.contains("denied"), "{denied}");
    // Deleted: its databases, users and golden databases are gone from the external server, which stays.
    deploy(&daemon, "outside", &["env", "delete", "pr-1"]);
    deploy(&daemon, "outside", &["env", "delete", "staging"]);
    let databases = external.root("SHOW DATABASES").expect("databases");
    assert!(
        !databases.contains("outside_") && !databases.contains("preview_golden"),
        "{databases}"
    );
    let users = external
        .root("SELECT user FROM mysql.user WHERE host = '%' ORDER BY 1")
        .expect("users");
    assert_eq!(lines(&users), ["ops"], "{users}");
}

#[test]
fn mysql_databases_on_servers_of_their_own_are_copied_between_servers_and_go_with_them() {
    let dir = TempDir::new("mysql-own-servers");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let daemon = local_daemon(&data, "36300-36999", &[], None);
    let repo = project(
        dir.path(),
        "solo",
        "  staging: {}
  own:
    services:
      ledger:
        mode: container",
    );
    // Previews run their databases on servers of their own.
    let spec = std::fs::read_to_string(repo.join("preview.yaml")).expect("spec");
    std::fs::write(
        repo.join("preview.yaml"),
        spec.replace(
            "        clone: { policy: masked, from: staging }",
            "        mode: container\n        clone: { policy: masked, from: staging }",
        ),
    )
    .expect("spec");
    commit_all(&repo, "servers of their own");
    register_with_key(&daemon, &repo, "an-own-masking-key");
    deploy(&daemon, "solo", &["env", "create", "staging"]);
    deploy(&daemon, "solo", &["env", "create", "own"]);
    // The first preview builds the golden snapshot on a server of its own, stopped and kept; the preview's server
    // starts from a copy of its data directory, whose tables move into the preview's database.
    let first = deployed_journal(&daemon, "solo", &["env", "clone", "staging", "pr-3"]);
    for said in [
        "kept as a stopped data directory",
        "data directory copied from the golden snapshot",
        "is the golden snapshot's copy (4 tables moved in",
    ] {
        assert!(first.contains(said), "no `{said}` in {first}");
    }
    // Three servers: the project's (staging's), own's and pr-3's, each on a port of its own; the builder's is gone.
    let (made, running) = mariadb_servers(&data);
    assert_eq!((made.len(), running.len()), (3, 3), "{made:?} {running:?}");
    let golden_dirs = || -> Vec<PathBuf> {
        std::fs::read_dir(data.join("local/databases"))
            .expect("servers")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("golden-"))
            .map(|e| e.path())
            .collect()
    };
    let golden = golden_dirs();
    assert_eq!(golden.len(), 1, "{golden:?}");
    assert!(
        golden[0].join("data/mysql").is_dir() && golden[0].join("definitions.sql").is_file(),
        "{golden:?}"
    );
    // The snapshot holds the masked rows: no source address anywhere in its files.
    let files = Command::new("grep")
        .args(["-rl", "corp.example"])
        .arg(&golden[0])
        .output()
        .expect("grep");
    assert_eq!(
        String::from_utf8_lossy(&files.stdout),
        "",
        "unmasked rows kept"
    );
    // The next preview copies the same snapshot: nothing is read from staging again.
    let second = deployed_journal(&daemon, "solo", &["env", "clone", "staging", "pr-4"]);
    assert!(
        !second.contains("kept as a stopped data directory")
            && second.contains("data directory copied from the golden snapshot"),
        "{second}"
    );
    let ports: std::collections::BTreeSet<u16> = ["staging", "own", "pr-3", "pr-4"]
        .iter()
        .map(|environment| login(&daemon, "solo", environment).0)
        .collect();
    assert_eq!(ports.len(), 4, "{ports:?}");
    assert_eq!(
        sql(&daemon, "solo", "own", "SELECT COUNT(*) FROM orders"),
        "3"
    );
    // pr-3's copy came from staging's server through the snapshot into its own, masked on the way.
    let emails = sql(
        &daemon,
        "solo",
        "pr-3",
        "SELECT email FROM customers ORDER BY id",
    );
    assert!(
        emails.lines().count() == 3 && emails.lines().all(|e| e.ends_with("@example.com")),
        "{emails}"
    );
    assert_eq!(
        sql(
            &daemon,
            "solo",
            "pr-4",
            "SELECT email FROM customers ORDER BY id"
        ),
        emails
    );
    let joined = "SELECT c.id, o.id FROM orders o JOIN customers c ON c.email = o.customer_email ORDER BY o.id";
    assert_eq!(
        sql(&daemon, "solo", "pr-3", joined),
        sql(&daemon, "solo", "staging", joined)
    );
    // The foreign key moved with its tables: it still refuses an order of nobody.
    let refused = sql(
        &daemon,
        "solo",
        "pr-3",
        "INSERT INTO orders VALUES (99, 'nobody@example.com', 1)",
    );
    assert!(
        refused.contains("foreign key constraint fails"),
        "{refused}"
    );
    // Its function, view (which calls the function) and trigger were made again in pr-3's database, by pr-3's
    // own user; nothing is left of the snapshot's database.
    assert_eq!(
        sql(
            &daemon,
            "solo",
            "pr-3",
            "SELECT id FROM big_orders ORDER BY id"
        ),
        "10\n12"
    );
    sql(
        &daemon,
        "solo",
        "pr-3",
        "INSERT INTO signups VALUES ('new@example.org')",
    );
    assert_eq!(
        sql(
            &daemon,
            "solo",
            "pr-3",
            "SELECT id FROM customers WHERE email = 'new@example.org'"
        ),
        "101"
    );
    let definers = sql(
        &daemon,
        "solo",
        "pr-3",
        "SELECT definer FROM information_schema.triggers UNION ALL SELECT definer FROM information_schema.views
         UNION ALL SELECT definer FROM information_schema.routines",
    );
    assert!(
        definers.lines().count() == 3
            && definers.lines().all(|d| d.starts_with("solo_pr_3_ledger@")),
        "{definers}"
    );
    // On no server is anything left of a snapshot's copy or its making: no `preview_golden` database or user, no
    // definitions waiting to be made.
    for socket in mariadb_servers(&data).0 {
        assert_eq!(
            as_admin_at(
                &socket,
                "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'preview_golden'
                 UNION ALL SELECT COUNT(*) FROM mysql.user WHERE user = 'preview_golden'"
            ),
            "0\n0",
            "{socket:?}"
        );
        let root = socket.parent().and_then(Path::parent).expect("root");
        assert!(!root.join("definitions.sql").exists(), "{root:?}");
    }
    let snapshot = daemon.json(&["--project", "solo", "db", "snapshot", "pr-3", "ledger"]);
    assert_eq!(
        snapshot["snapshot"]["name"],
        golden[0].display().to_string(),
        "{snapshot}"
    );
    assert_eq!(snapshot["snapshot"]["tables"], 4, "{snapshot}");
    let made_at = snapshot["snapshot"]["made_at"].as_u64().expect("made_at");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let refreshed = ok(support::in_project(
        &daemon,
        "solo",
        &["db", "refresh", "pr-3", "ledger"],
    ));
    assert!(
        refreshed.contains("kept as a stopped data directory"),
        "{refreshed}"
    );
    let snapshot = daemon.json(&["--project", "solo", "db", "snapshot", "pr-3", "ledger"]);
    assert!(
        snapshot["snapshot"]["made_at"].as_u64().expect("made_at") > made_at,
        "{snapshot}"
    );
    // Made again from scratch, a preview's own server still gets its data (from a golden database on it).
    ok(support::in_project(
        &daemon,
        "solo",
        &["db", "reset", "pr-3", "ledger"],
    ));
    assert_eq!(
        sql(
            &daemon,
            "solo",
            "pr-3",
            "SELECT email FROM customers WHERE id < 100 ORDER BY id"
        ),
        emails
    );
    // Two previews made at once while the snapshot is built again: each copy is of a whole snapshot (the build waits
    // for the copies under way, the copies for the build), and both hold the same masked rows.
    let started: Vec<String> = ["pr-5", "pr-6"]
        .iter()
        .map(|preview| {
            support::faulty::deployment_id(&daemon.json(&[
                "--project",
                "solo",
                "env",
                "clone",
                "staging",
                preview,
                "--no-wait",
            ]))
        })
        .collect();
    let refreshed = ok(support::in_project(
        &daemon,
        "solo",
        &["db", "refresh", "pr-4", "ledger"],
    ));
    assert!(
        refreshed.contains("kept as a stopped data directory"),
        "{refreshed}"
    );
    for id in &started {
        let ended = support::wait_until_ended(&daemon, id);
        assert_eq!(ended["deployment"]["status"], "committed", "{ended}");
    }
    for preview in ["pr-5", "pr-6"] {
        assert_eq!(
            sql(
                &daemon,
                "solo",
                preview,
                "SELECT email FROM customers ORDER BY id"
            ),
            emails,
            "{preview}"
        );
        assert_eq!(
            sql(&daemon, "solo", preview, joined),
            sql(&daemon, "solo", "staging", joined),
            "{preview}"
        );
    }
    assert_eq!(golden_dirs().len(), 1);
    for preview in ["pr-4", "pr-5", "pr-6"] {
        deploy(&daemon, "solo", &["env", "delete", preview]);
    }
    // A server of its own goes with its environment; the project's stays for staging.
    deploy(&daemon, "solo", &["env", "delete", "pr-3"]);
    assert_eq!(
        golden_dirs().len(),
        1,
        "kept while a server of the database is left"
    );
    deploy(&daemon, "solo", &["env", "delete", "own"]);
    let (made, running) = mariadb_servers(&data);
    assert_eq!((made.len(), running.len()), (1, 1), "{made:?} {running:?}");
    assert_eq!(golden_dirs(), Vec::<PathBuf>::new());
    assert_eq!(
        sql(&daemon, "solo", "staging", "SELECT COUNT(*) FROM customers"),
        "3"
    );
    deploy(&daemon, "solo", &["env", "delete", "staging"]);
    let (made, running) = mariadb_servers(&data);
    assert!(
        made.is_empty() && running.is_empty(),
        "{made:?} {running:?}"
    );
}

#[test]
fn a_mysql_database_seeded_by_a_job_is_seeded_by_it_again_on_reset() {
    let dir = TempDir::new("mysql-seed-job");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let daemon = local_daemon(&data, "36100-36299", &[], None);
    let repo = dir.path().join("jobledger");
    std::fs::create_dir_all(&repo).expect("repo");
    std::fs::write(
        repo.join("preview.yaml"),
        "project: jobledger
runtime: local
services:
  load:
    type: job
    hook: seed
    command: >-
      MYSQL_PWD=\"$DB_PASSWORD\" mariadb --protocol=tcp -h \"$LEDGER_HOST\" -P \"$LEDGER_PORT\" -u \"$DB_USER\" \"$DB_USER\"
      -e \"CREATE TABLE IF NOT EXISTS loaded (what VARCHAR(50)); INSERT INTO loaded VALUES ('by the job')\"
    depends_on: [ledger]
    variables:
      DB_USER: ${{ services.ledger.user }}
      DB_PASSWORD: ${{ services.ledger.password }}
  ledger:
    type: database
    engine: mysql
    version: 10.11
    clone: { policy: seed, job: load }
environments:
  staging: {}
",
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
    deploy(&daemon, "jobledger", &["env", "create", "staging"]);
    assert_eq!(
        sql(&daemon, "jobledger", "staging", "SELECT what FROM loaded"),
        "by the job"
    );
    sql(
        &daemon,
        "jobledger",
        "staging",
        "INSERT INTO loaded VALUES ('written later')",
    );
    ok(support::in_project(
        &daemon,
        "jobledger",
        &["db", "reset", "staging", "ledger"],
    ));
    // Made again empty, and seeded again by its job: what was written since is gone.
    assert_eq!(
        sql(&daemon, "jobledger", "staging", "SELECT what FROM loaded"),
        "by the job"
    );
    deploy(&daemon, "jobledger", &["env", "delete", "staging"]);
    let (made, running) = mariadb_servers(&data);
    assert!(
        made.is_empty() && running.is_empty(),
        "{made:?} {running:?}"
    );
}
