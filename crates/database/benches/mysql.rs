//! MySQL (MariaDB) golden databases: how long building a masked one from a source takes (a consistent
//! `mariadb-dump`, masked in the stream, loaded into a new database, as the local runtime does) against
//! `mariadb-dump | mariadb` of the source, and how long a preview's database made from it takes (the golden database
//! dumped and loaded as the preview's user) against `mariadb-dump | mariadb` of the golden database (the same data:
//! masked values arrive in no order, which costs their unique index more than the source's ordered ones). Then the
//! same with a server of the environment's own: the physical golden snapshot (built on a server of its own and
//! stopped) against `mariadb-dump | mariadb` of the source, and a preview's own server from it (its data directory
//! copied, started, the tables moved into the preview's database) against `mariadb-dump | mariadb` of the golden
//! database. Prints a table; run with `scripts/bench-databases` or `cargo bench -p preview-database --bench mysql`.
//!
//! The source is on a throw-away `mariadbd` of the bench's own (run as the `mysql` user when the bench runs as
//! root), filled with `PREVIEW_BENCH_MB` MB (500 by default) of customers and orders whose e-mail addresses join
//! them; each copy's rows are counted and its join checked before its time is reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use preview_database::masking::{Masker, Rule};
use preview_database::mysql::{self as engine, Login, Programs};
use preview_secrets::Secret;
use preview_testing::TempDir;

const DEFAULT_MB: u64 = 500;
const ROUNDS: usize = 3;
const USER: &str = "bench";
const PASSWORD: &str = "bench-password";

struct Server {
    child: Child,
    port: u16,
    admin: Login,
}

impl Server {
    /// A new server in `dir`, its data directory made by `mariadb-install-db`.
    fn start(programs: &Programs, dir: &Path) -> Server {
        Server::start_on(programs, dir, true)
    }

    /// A server in `dir`: made first when `install` says so, else from the data directory already there.
    fn start_on(programs: &Programs, dir: &Path, install: bool) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        for sub in ["data", "run", "tmp", "files"] {
            std::fs::create_dir_all(dir.join(sub)).expect("dir");
        }
        let config = dir.join("my.cnf");
        std::fs::write(&config, engine::server_config(dir, port)).expect("config");
        let root = is_root();
        if root {
            let chown = Command::new("chown")
                .args(["-R", "mysql:mysql"])
                .arg(dir)
                .status()
                .expect("chown");
            assert!(chown.success());
        }
        // As the `mysql` user itself (no runuser in between), so that killing the child stops the server.
        let run_as = |command: String| {
            use std::os::unix::process::CommandExt;
            let mut sh = Command::new("sh");
            sh.arg("-c").arg(command);
            if root {
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
                sh.uid(id("-u")).gid(id("-g"));
            }
            sh
        };
        let admin_user = if root { "root".to_owned() } else { whoami() };
        if install {
            let installed = run_as(engine::install_command(programs, &config, &admin_user))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("mariadb-install-db");
            assert!(installed.success(), "mariadb-install-db failed");
        }
        let child = run_as(engine::server_command(programs, &config))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd (scripts/bench-databases installs it)");
        let admin = Login::Admin {
            socket: dir.join(engine::SOCKET),
            user: admin_user,
        };
        let server = Server { child, port, admin };
        let deadline = Instant::now() + Duration::from_secs(120);
        while block(engine::query(programs, &server.admin, "SELECT 1")).is_err() {
            assert!(Instant::now() < deadline, "mariadbd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn user(&self, database: &str) -> Login {
        Login::User {
            host: "127.0.0.1".to_owned(),
            port: self.port,
            user: USER.to_owned(),
            password: Secret::new(PASSWORD.to_owned()),
            database: database.to_owned(),
        }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server as the runtime stops a golden snapshot's builder: its pages written out, then SIGTERM,
    /// and it must end well.
    fn shut_down(mut self, programs: &Programs) {
        block(engine::flush_pages(
            programs,
            &self.admin,
            Duration::from_secs(600),
        ))
        .expect("pages written out");
        let signalled = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(signalled.success());
        let ended = self.child.wait().expect("mariadbd");
        assert!(ended.success(), "mariadbd ended with {ended}");
    }
}

/// `cp -a --reflink=auto from to`, as the runtime copies a stopped data directory.
fn copy_dir(from: &Path, to: &Path) {
    let copied = Command::new("cp")
        .args(["-a", "--reflink=auto", "--"])
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(copied.success(), "cp failed");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn block<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

fn sql(programs: &Programs, login: &Login, text: &str) -> Vec<Vec<String>> {
    block(engine::query(programs, login, text)).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A new, empty database `name`.
fn fresh(programs: &Programs, server: &Server, name: &str) {
    block(engine::drop_database(programs, &server.admin, name)).expect("drop");
    block(engine::create_database(programs, &server.admin, name)).expect("create");
}

/// `customers` and `orders` of about `megabytes` MB, made by the server from a seed row doubled.
fn fill(programs: &Programs, server: &Server, megabytes: u64) -> u64 {
    // A customer row is about 330 bytes with its order; the doubling stops at the first power of two past it.
    let wanted = megabytes * 1024 * 1024 / 330;
    let mut rows = 1u64;
    let mut text = String::from(
        "CREATE TABLE customers (id BIGINT PRIMARY KEY, email VARCHAR(120) NOT NULL UNIQUE, full_name VARCHAR(120),
           note VARCHAR(200));
         CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_email VARCHAR(120) NOT NULL, total DECIMAL(10,2));
         INSERT INTO customers VALUES (1, 'customer1@corp.example', 'Customer One', SHA2(RAND(), 512));
         ",
    );
    while rows < wanted {
        text.push_str(&format!(
            "INSERT INTO customers SELECT id + {rows}, CONCAT('customer', id + {rows}, '@corp.example'),
               CONCAT('Customer ', id + {rows}), SHA2(RAND(), 512) FROM customers;"
        ));
        rows *= 2;
    }
    text.push_str(
        "INSERT INTO orders SELECT id, email, MOD(id, 1000) / 10 FROM customers;
         ANALYZE TABLE customers, orders;",
    );
    sql(programs, &server.user("source"), &text);
    rows
}

/// Rows in `customers`, and orders that join a customer, of the database `login` reaches.
fn counted(programs: &Programs, login: &Login) -> (u64, u64) {
    let rows = sql(
        programs,
        login,
        "SELECT (SELECT COUNT(*) FROM customers),
                (SELECT COUNT(*) FROM orders o JOIN customers c ON c.email = o.customer_email)",
    );
    let number = |i: usize| rows[0][i].parse::<u64>().expect("a count");
    (number(0), number(1))
}

/// `mariadb-dump --single-transaction source | mariadb target`, as the server's administrator.
fn dump_and_load(programs: &Programs, server: &Server, source: &str, target: &str) {
    let socket = match &server.admin {
        Login::Admin { socket, user } => (socket.clone(), user.clone()),
        Login::User { .. } => unreachable!(),
    };
    let login = |program: &PathBuf| {
        let mut command = Command::new(program);
        command
            .arg("--no-defaults")
            .arg(format!("--socket={}", socket.0.display()))
            .arg(format!("--user={}", socket.1));
        command
    };
    let mut dump = login(&programs.dump)
        .args(["--single-transaction", source])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mariadb-dump");
    let load = login(&programs.client)
        .arg(target)
        .stdin(dump.stdout.take().expect("piped"))
        .status()
        .expect("mariadb");
    assert!(dump.wait().expect("dump").success() && load.success());
}

fn median(mut seconds: Vec<f64>) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

fn main() {
    let megabytes: u64 = std::env::var("PREVIEW_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MB);
    let installed = Command::new("/usr/sbin/mariadbd")
        .arg("--version")
        .output()
        .expect("mariadbd (scripts/bench-databases installs it)");
    let version = String::from_utf8_lossy(&installed.stdout).to_string();
    let series = version
        .split_whitespace()
        .skip_while(|w| *w != "Ver")
        .nth(1)
        .and_then(|v| {
            let mut parts = v.split(['.', '-']);
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        })
        .expect("a MariaDB version");
    let programs = Programs::find(series.0, series.1).expect("MariaDB's programs");
    let work = TempDir::new("bench-mysql");
    let server = Server::start(&programs, work.path());
    sql(
        &programs,
        &server.admin,
        &format!(
            "CREATE DATABASE source; CREATE USER {USER}@'%' IDENTIFIED BY '{PASSWORD}'; GRANT ALL ON *.* TO {USER}@'%';"
        ),
    );
    eprintln!(
        "bench: filling the MariaDB source with about {megabytes} MB of customers and orders"
    );
    let rows = fill(&programs, &server, megabytes);
    let size = sql(
        &programs,
        &server.admin,
        "SELECT SUM(data_length + index_length) FROM information_schema.tables WHERE table_schema = 'source'",
    )[0][0]
        .parse::<f64>()
        .unwrap_or_default()
        / 1e6;
    eprintln!("bench: {rows} customers and their orders, {size:.0} MB on disk");
    let expected = counted(&programs, &server.user("source"));
    let rules = BTreeMap::from([
        (
            "customers".to_owned(),
            BTreeMap::from([
                ("email".to_owned(), Rule::Email),
                ("full_name".to_owned(), Rule::Name),
            ]),
        ),
        (
            "orders".to_owned(),
            BTreeMap::from([("customer_email".to_owned(), Rule::Email)]),
        ),
    ]);
    let masker = Masker::new("bench-masking-key");
    let (mut golden, mut preview, mut baseline, mut baseline_golden) =
        (vec![], vec![], vec![], vec![]);
    for round in 1..=ROUNDS {
        // The golden database as preview builds it: dumped once, masked in the stream, loaded.
        fresh(&programs, &server, "golden");
        let started = Instant::now();
        block(engine::copy(
            &programs,
            &server.admin,
            "source",
            &server.user("golden"),
            Some((&masker, &rules)),
        ))
        .expect("the golden copy");
        golden.push(started.elapsed().as_secs_f64());
        assert_eq!(counted(&programs, &server.user("golden")), expected);
        let leaked = sql(
            &programs,
            &server.user("golden"),
            "SELECT COUNT(*) FROM customers WHERE email LIKE '%corp.example'",
        );
        assert_eq!(leaked[0][0], "0", "an unmasked address in the golden copy");
        // A preview's database from it.
        fresh(&programs, &server, "preview");
        let started = Instant::now();
        block(engine::copy(
            &programs,
            &server.admin,
            "golden",
            &server.user("preview"),
            None,
        ))
        .expect("the preview's copy");
        preview.push(started.elapsed().as_secs_f64());
        assert_eq!(counted(&programs, &server.user("preview")), expected);
        // The comparison: the source dumped and loaded as it is.
        fresh(&programs, &server, "plain");
        let started = Instant::now();
        dump_and_load(&programs, &server, "source", "plain");
        baseline.push(started.elapsed().as_secs_f64());
        assert_eq!(counted(&programs, &server.user("plain")), expected);
        fresh(&programs, &server, "plain");
        let started = Instant::now();
        dump_and_load(&programs, &server, "golden", "plain");
        baseline_golden.push(started.elapsed().as_secs_f64());
        assert_eq!(counted(&programs, &server.user("plain")), expected);
        eprintln!(
            "bench: round {round}: golden {:.2} s (mariadb-dump | mariadb of the source {:.2} s), preview {:.2} s (of the golden {:.2} s)",
            golden[round - 1],
            baseline[round - 1],
            preview[round - 1],
            baseline_golden[round - 1]
        );
    }
    // With a server of the environment's own: the golden snapshot built on a server of its own (the same masked
    // copy, its definitions kept apart, its pages written out, stopped), then each preview's server started from a
    // copy of its data directory, whose tables move into the preview's database.
    let (mut physical_golden, mut physical_preview) = (vec![], vec![]);
    for round in 1..=ROUNDS {
        let builder_dir = work.path().join(format!("builder-{round}"));
        let started = Instant::now();
        let builder = Server::start(&programs, &builder_dir);
        sql(
            &programs,
            &builder.admin,
            &format!(
                "CREATE DATABASE preview_golden; CREATE USER {USER}@'%' IDENTIFIED BY '{PASSWORD}'; GRANT ALL ON *.* TO {USER}@'%';"
            ),
        );
        block(engine::copy(
            &programs,
            &server.admin,
            "source",
            &builder.user("preview_golden"),
            Some((&masker, &rules)),
        ))
        .expect("the golden snapshot's copy");
        let definitions = block(engine::definitions(
            &programs,
            &builder.admin,
            "preview_golden",
        ))
        .expect("definitions");
        block(engine::drop_definitions(
            &programs,
            &builder.admin,
            "preview_golden",
        ))
        .expect("definitions dropped");
        builder.shut_down(&programs);
        physical_golden.push(started.elapsed().as_secs_f64());
        let preview_dir = work.path().join(format!("preview-{round}"));
        std::fs::create_dir_all(&preview_dir).expect("dir");
        let started = Instant::now();
        copy_dir(&builder_dir.join("data"), &preview_dir.join("data"));
        let own = Server::start_on(&programs, &preview_dir, false);
        block(engine::create_database(&programs, &own.admin, "preview")).expect("create");
        block(engine::move_tables(
            &programs,
            &own.admin,
            "preview_golden",
            "preview",
        ))
        .expect("tables moved");
        block(engine::drop_database(
            &programs,
            &own.admin,
            "preview_golden",
        ))
        .expect("drop");
        block(engine::run_sql_file(
            &programs,
            &own.user("preview"),
            &definitions,
            "definitions",
        ))
        .expect("definitions made");
        physical_preview.push(started.elapsed().as_secs_f64());
        assert_eq!(counted(&programs, &own.user("preview")), expected);
        let leaked = sql(
            &programs,
            &own.user("preview"),
            "SELECT COUNT(*) FROM customers WHERE email LIKE '%corp.example'",
        );
        assert_eq!(leaked[0][0], "0", "an unmasked address in the preview");
        own.stop();
        for dir in [&builder_dir, &preview_dir] {
            std::fs::remove_dir_all(dir).expect("removed");
        }
        eprintln!(
            "bench: round {round}: physical golden snapshot {:.2} s, a preview's own server from it {:.2} s",
            physical_golden[round - 1],
            physical_preview[round - 1]
        );
    }
    server.stop();
    let (physical_golden, physical_preview) = (median(physical_golden), median(physical_preview));
    let (golden, preview) = (median(golden), median(preview));
    let (baseline, baseline_golden) = (median(baseline), median(baseline_golden));
    println!();
    println!(
        "MySQL (MariaDB {}.{}), {size:.0} MB source ({rows} customers and their orders), median of {ROUNDS}:",
        series.0, series.1
    );
    println!("| what | preview | mariadb-dump \\| mariadb of the same data | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| masked golden database built from the source | {golden:.2} s | {baseline:.2} s | {:.2} × |",
        golden / baseline
    );
    println!(
        "| a preview's database from the golden one | {preview:.2} s | {baseline_golden:.2} s | {:.2} × |",
        preview / baseline_golden
    );
    println!(
        "| physical: masked golden snapshot built on a server of its own and stopped | {physical_golden:.2} s | {baseline:.2} s | {:.2} × |",
        physical_golden / baseline
    );
    println!(
        "| physical: a preview's own server from the snapshot (copied, started, tables moved) | {physical_preview:.2} s | {baseline_golden:.2} s | {:.2} × |",
        physical_preview / baseline_golden
    );
}
