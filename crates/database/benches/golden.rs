//! How long a masked golden snapshot takes to build, against `pg_dump | pg_restore` of the same source in the same
//! run, and how long a database made from the golden one takes, against copying the golden's files. Prints a
//! table; run with `scripts/bench-databases` or `cargo bench -p preview-database --bench golden`.
//!
//! The source is generated on a throw-away server of the bench's own: customers with their personal data, their
//! orders (which reference a customer by e-mail address, so masking the address masks the orders too) and the
//! orders' items, about `PREVIEW_BENCH_MB` MB in all, indexes included (1000 by default; MB are 2^20 bytes, as
//! `pg_size_pretty` counts them). Every copy's rows are counted and joined against the source's before its time is
//! reported, and the masked one is checked to hold no original address.
//!
//! Targets: the masked golden build takes no longer than `pg_dump -Fc | pg_restore`; a database made from the
//! golden one takes at most 1.5 × `cp -r` of its files.

use std::future::Future;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Instant;

use preview_database::masking::{Masker, Rule};
use preview_database::masking_plan::Rules;
use preview_database::postgres::copy::{Masking, copy_database};
use preview_database::postgres::{Binaries, Connection, Endpoint, admin};
use preview_testing::{TempDir, TestPostgres};
use tokio::process::Command;
use tokio_postgres::Client;

const DEFAULT_MB: u64 = 1000;
const MB: f64 = 1024.0 * 1024.0;
/// What one customer takes with its orders, their items and every index (measured on the generated data), to
/// reach the requested size; the source's real size is measured and printed.
const BYTES_PER_CUSTOMER: u64 = 1400;
const SOURCE: &str = "bench_source";
/// How many times each way of making a database from the golden one is measured (they take seconds).
const FROM_GOLDEN_ROUNDS: usize = 5;

/// The source's schema; keys, indexes and foreign keys come after the rows, which is faster than checking them
/// row by row.
const SCHEMA: &str = "
CREATE TABLE customers (id bigserial, email text NOT NULL, full_name text NOT NULL, phone text, address text,
                        created_at timestamptz);
CREATE TABLE orders (id bigserial, customer_email text NOT NULL, total_cents bigint, note text,
                     created_at timestamptz);
CREATE TABLE order_items (id bigserial, order_id bigint, sku text, qty int, price_cents bigint);";

/// `$1` customers with made-up but plausible names, addresses at reserved domains, phone numbers (one in ten
/// missing) and postal addresses.
const CUSTOMERS: &str = "
INSERT INTO customers (email, full_name, phone, address, created_at)
SELECT lower(first) || '.' || lower(last) || '.' || i || '@'
         || (ARRAY['example.org', 'example.net', 'mail.test', 'post.invalid'])[1 + i % 4],
       first || ' ' || last,
       CASE WHEN i % 10 = 0 THEN NULL ELSE '+44 7' || lpad(((i * 7919) % 1000000000)::text, 9, '0') END,
       (1 + i % 250) || ' '
         || (ARRAY['High Street', 'Station Road', 'Church Lane', 'Victoria Road', 'Green Lane', 'Manor Road',
                   'Park Avenue', 'Mill Lane', 'Kings Road', 'Queens Walk', 'Elm Grove', 'Bridge Street',
                   'Orchard Close'])[1 + i % 13] || ', '
         || (ARRAY['London', 'Leeds', 'Bristol', 'Glasgow', 'Cardiff', 'York', 'Norwich', 'Exeter', 'Bath',
                   'Durham', 'Belfast'])[1 + i % 11] || ' '
         || upper(substr(md5(i::text), 1, 2)) || (i % 10) || ' ' || (i % 9) || upper(substr(md5(i::text), 3, 2)),
       timestamptz '2019-01-01 00:00:00+00' + i * interval '17 seconds'
FROM (SELECT i,
             (ARRAY['Olivia', 'Noah', 'Amelia', 'Oliver', 'Isla', 'George', 'Ava', 'Arthur', 'Mia', 'Leo', 'Ivy',
                    'Harry', 'Freya', 'Oscar', 'Lily', 'Muhammad', 'Grace', 'Jack', 'Sofia', 'Theo', 'Aisha',
                    'Mateo', 'Chloe'])[1 + i % 23] AS first,
             (ARRAY['Smith', 'Jones', 'Taylor', 'Brown', 'Williams', 'Wilson', 'Johnson', 'Davies', 'Patel',
                    'Robinson', 'Wright', 'Thompson', 'Evans', 'Walker', 'White', 'Roberts', 'Green', 'Hall',
                    'Khan', 'Lewis', 'Nowak', 'Garcia', 'Murphy', 'Kowalski', 'Clarke', 'Singh', 'Ahmed', 'Kelly',
                    'Novak'])[1 + (i / 23) % 29] AS last
      FROM generate_series(1, $1::bigint) AS i) AS people";

/// One to five orders per customer (three on average), most without a note.
const ORDERS: &str = "
INSERT INTO orders (customer_email, total_cents, note, created_at)
SELECT c.email, 500 + (c.id * 7 + n * 131) % 50000,
       (ARRAY['leave at the door', NULL, 'gift, no invoice please', NULL, NULL, 'call before delivery', NULL])
         [1 + (c.id + n) % 7],
       c.created_at + n * interval '9 days 3 hours'
FROM customers c, generate_series(1, 1 + (c.id % 5)::int) AS n";

/// One to three items per order (two on average).
const ORDER_ITEMS: &str = "
INSERT INTO order_items (order_id, sku, qty, price_cents)
SELECT o.id, 'SKU-' || lpad(((o.id * 31 + k * 17) % 99991)::text, 5, '0'), 1 + (o.id + k) % 4,
       99 + (o.id * 13 + k * 71) % 20000
FROM orders o, generate_series(1, 1 + (o.id % 3)::int) AS k";

/// The keys, unique constraints, foreign keys and indexes an application would have.
const CONSTRAINTS: &str = "
SET maintenance_work_mem = '512MB';
ALTER TABLE customers ADD PRIMARY KEY (id), ADD UNIQUE (email);
ALTER TABLE orders ADD PRIMARY KEY (id),
  ADD FOREIGN KEY (customer_email) REFERENCES customers (email);
CREATE INDEX ON orders (customer_email);
CREATE INDEX ON orders (created_at);
ALTER TABLE order_items ADD PRIMARY KEY (id), ADD FOREIGN KEY (order_id) REFERENCES orders (id);
CREATE INDEX ON order_items (order_id);";

/// What a copy must hold: the source's rows, and every order still finding its customer.
const COUNTS: &str = "
SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM orders), (SELECT count(*) FROM order_items),
       (SELECT count(*) FROM orders o JOIN customers c ON c.email = o.customer_email)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    customers: i64,
    orders: i64,
    order_items: i64,
    joined: i64,
}

/// The throw-away server, its programs, and the administrator's connection.
struct Bench {
    server: TestPostgres,
    binaries: Binaries,
    admin: Client,
}

/// One measured operation.
struct Measured {
    seconds: f64,
    /// Share of the machine's CPU time the hypervisor took meanwhile.
    steal_percent: f64,
    /// CPU time of this process (the copy's own code; the server's and programs' work is not in it).
    own_cpu_seconds: f64,
}

struct Row {
    operation: String,
    measured: Measured,
    bytes: u64,
}

impl Bench {
    async fn start() -> Bench {
        let bin = preview_testing::postgres_bin_dir()
            .expect("PostgreSQL's server programs; scripts/bench-databases installs them");
        let version: u32 = bin
            .parent()
            .and_then(Path::file_name)
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                panic!("{} is not /usr/lib/postgresql/<version>/bin", bin.display())
            });
        let binaries = Binaries::find(version).unwrap_or_else(|e| panic!("{e}"));
        let server = TestPostgres::start();
        let login = login(server.port(), "postgres");
        let admin = login.connect().await.unwrap_or_else(|e| panic!("{e}"));
        Bench {
            server,
            binaries,
            admin,
        }
    }

    fn login(&self, database: &str) -> Connection {
        login(self.server.port(), database)
    }

    /// Runs `sql` as the administrator, connected to the `postgres` database.
    async fn admin_sql(&self, sql: &str) {
        self.admin
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}\nfailed: {e:?}"));
    }

    async fn connect(&self, database: &str) -> Client {
        self.login(database)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A new, empty database owned by the administrator, as the runtime makes one for a golden snapshot.
    async fn create_database(&self, name: &str) {
        admin::create_database(&self.admin, name, "postgres", None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    async fn drop_database(&self, name: &str) {
        admin::drop_database(&self.admin, name)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    async fn size(&self, database: &str) -> u64 {
        let size: i64 = self
            .admin
            .query_one("SELECT pg_database_size($1::text)", &[&database])
            .await
            .unwrap_or_else(|e| panic!("size of {database}: {e}"))
            .get(0);
        size.unsigned_abs()
    }

    /// Writes every dirty buffer to the files and every file to the disk, so that an operation does not pay for
    /// the writes of the one before it.
    async fn settle(&self) {
        self.admin_sql("CHECKPOINT").await;
        succeeded("sync", Command::new("sync").output().await);
    }

    async fn counts(&self, database: &str) -> Counts {
        let row = self
            .connect(database)
            .await
            .query_one(COUNTS, &[])
            .await
            .unwrap_or_else(|e| panic!("counting the rows of {database}: {e}"));
        Counts {
            customers: row.get(0),
            orders: row.get(1),
            order_items: row.get(2),
            joined: row.get(3),
        }
    }

    /// Panics unless `database` holds as many rows as the source, every order still joining its customer.
    async fn check_copy(&self, database: &str, source: Counts) {
        let copied = self.counts(database).await;
        assert_eq!(
            copied, source,
            "{database} is not a whole copy of the source"
        );
    }

    /// A PostgreSQL client program of the server's version, logged in as the administrator.
    fn program(&self, name: &str) -> Command {
        let mut command = Command::new(self.binaries.program(name));
        command
            .envs(self.login("postgres").variables())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    async fn generate(&self, megabytes: u64) -> Counts {
        let customers =
            i64::try_from(megabytes * 1024 * 1024 / BYTES_PER_CUSTOMER).unwrap_or(i64::MAX);
        let source = self.connect(SOURCE).await;
        source
            .batch_execute(SCHEMA)
            .await
            .unwrap_or_else(|e| panic!("the schema: {e:?}"));
        source
            .execute(CUSTOMERS, &[&customers])
            .await
            .unwrap_or_else(|e| panic!("{CUSTOMERS}\nfailed: {e:?}"));
        for sql in [ORDERS, ORDER_ITEMS] {
            source
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}\nfailed: {e:?}"));
        }
        source
            .batch_execute(CONSTRAINTS)
            .await
            .unwrap_or_else(|e| panic!("{CONSTRAINTS}\nfailed: {e:?}"));
        // Frozen and analysed: no copy sets hint bits or the visibility map on its first read, whichever runs first.
        source
            .batch_execute("VACUUM (FREEZE, ANALYZE)")
            .await
            .unwrap_or_else(|e| panic!("VACUUM: {e:?}"));
        drop(source);
        self.counts(SOURCE).await
    }
}

/// The administrator over TCP: the test server trusts local connections.
fn login(port: u16, database: &str) -> Connection {
    Connection {
        host: Endpoint::Tcp("127.0.0.1".to_owned()),
        port,
        user: "postgres".to_owned(),
        password: None,
        dbname: database.to_owned(),
        ssl: None,
    }
}

fn succeeded(what: &str, output: std::io::Result<Output>) {
    let output = output.unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// "steal total" CPU ticks since boot, from the first line of /proc/stat.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    (values.get(7).copied().unwrap_or(0), values.iter().sum())
}

/// This process's CPU time in seconds: user and system time from /proc/self/stat, in clock ticks of 1/100 s (the
/// `USER_HZ` of every Linux architecture this runs on).
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    (fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)) as f64 / 100.0
}

async fn measure(operation: impl Future<Output = ()>) -> Measured {
    let (steal0, total0) = cpu_ticks();
    let cpu0 = own_cpu_seconds();
    let started = Instant::now();
    operation.await;
    let seconds = started.elapsed().as_secs_f64();
    let (steal1, total1) = cpu_ticks();
    let total = total1.saturating_sub(total0);
    Measured {
        seconds,
        steal_percent: if total == 0 {
            0.0
        } else {
            100.0 * steal1.saturating_sub(steal0) as f64 / total as f64
        },
        own_cpu_seconds: own_cpu_seconds() - cpu0,
    }
}

fn rows(n: i64) -> String {
    if n >= 1_000_000 {
        format!("{:.1}M", n as f64 / 1e6)
    } else {
        format!("{:.0}k", n as f64 / 1e3)
    }
}

fn report(operation: &str, measured: Measured, bytes: u64) -> Row {
    eprintln!(
        "bench: {operation}: {:.2} s ({:.1} s of CPU in this process, {:.1} % steal)",
        measured.seconds, measured.own_cpu_seconds, measured.steal_percent
    );
    Row {
        operation: operation.to_owned(),
        measured,
        bytes,
    }
}

fn print_table(title: &str, versus: &str, rows: &[Row]) {
    let reference = rows[0].measured.seconds;
    println!(
        "\n{title:<50} {:>9} {:>8} {:>8}   vs {versus}",
        "seconds", "MB/s", "steal %"
    );
    for row in rows {
        println!(
            "{:<50} {:>9.2} {:>8.1} {:>8.1}   {:.2}",
            row.operation,
            row.measured.seconds,
            row.bytes as f64 / MB / row.measured.seconds,
            row.measured.steal_percent,
            row.measured.seconds / reference
        );
    }
}

/// Makes the empty database `target`, measures `copy` into it, and checks that it holds the source's rows.
async fn measure_copy(
    bench: &Bench,
    target: &str,
    source: Counts,
    copy: impl Future<Output = ()>,
) -> Measured {
    bench.create_database(target).await;
    bench.settle().await;
    let measured = measure(copy).await;
    bench.check_copy(target, source).await;
    measured
}

/// `pg_dump -Fc source | pg_restore -d target`.
async fn dump_custom_and_restore(bench: &Bench, target: &str) {
    let mut dump = bench
        .program("pg_dump")
        .args(["-Fc", "-d", SOURCE])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run pg_dump: {e}"));
    let dumped: Stdio = dump
        .stdout
        .take()
        .and_then(|out| out.try_into().ok())
        .expect("pg_dump's output");
    let restore = bench
        .program("pg_restore")
        .args(["-d", target])
        .stdin(dumped)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run pg_restore: {e}"));
    let (dumped, restored) = tokio::join!(dump.wait_with_output(), restore.wait_with_output());
    succeeded("pg_dump -Fc", dumped);
    succeeded("pg_restore", restored);
}

/// `pg_dump -Fd -j2 -f directory source`, then `pg_restore -j2 -d target directory`.
async fn dump_directory_and_restore(bench: &Bench, target: &str, directory: &Path) {
    let dumped = bench
        .program("pg_dump")
        .args(["-Fd", "-j2", "-d", SOURCE, "-f"])
        .arg(directory)
        .output()
        .await;
    succeeded("pg_dump -Fd -j2", dumped);
    let restored = bench
        .program("pg_restore")
        .args(["-j2", "-d", target])
        .arg(directory)
        .output()
        .await;
    succeeded("pg_restore -j2", restored);
}

/// This crate's copy of the source into `target`, as a golden snapshot is built.
async fn preview_copy(bench: &Bench, target: &str, masking: Option<Masking<'_>>) {
    copy_database(
        &bench.binaries,
        &bench.login(SOURCE),
        &bench.login(target),
        masking,
        &|line| eprintln!("bench: {line}"),
    )
    .await
    .unwrap_or_else(|e| panic!("the copy into {target}: {e}"));
}

/// The four copies of the source, `pg_dump -Fc | pg_restore` first; the masked one stays, as `golden`.
async fn copies_of_the_source(
    bench: &Bench,
    source: Counts,
    source_bytes: u64,
    scratch: &TempDir,
) -> Vec<Row> {
    let mut copies = Vec::new();
    let measured = measure_copy(
        bench,
        "restore_custom",
        source,
        dump_custom_and_restore(bench, "restore_custom"),
    )
    .await;
    bench.drop_database("restore_custom").await;
    copies.push(report("pg_dump -Fc | pg_restore", measured, source_bytes));

    let directory = scratch.path().join("dump");
    let measured = measure_copy(
        bench,
        "restore_directory",
        source,
        dump_directory_and_restore(bench, "restore_directory", &directory),
    )
    .await;
    bench.drop_database("restore_directory").await;
    std::fs::remove_dir_all(&directory).unwrap_or_else(|e| panic!("{}: {e}", directory.display()));
    copies.push(report(
        "pg_dump -Fd -j2 + pg_restore -j2",
        measured,
        source_bytes,
    ));

    let measured = measure_copy(bench, "clone", source, preview_copy(bench, "clone", None)).await;
    bench.drop_database("clone").await;
    copies.push(report("preview clone (no masking)", measured, source_bytes));

    // The personal columns of customers; orders.customer_email follows customers.email through its foreign key.
    let rules: Rules = [(
        "customers".to_owned(),
        [
            ("email", Rule::Email),
            ("full_name", Rule::Name),
            ("phone", Rule::Phone),
            ("address", Rule::Hash),
        ]
        .into_iter()
        .map(|(column, rule)| (column.to_owned(), rule))
        .collect(),
    )]
    .into_iter()
    .collect();
    let masker = Masker::new("bench-key");
    let masking = Masking {
        masker: &masker,
        rules: &rules,
        strict: false,
    };
    let measured = measure_copy(
        bench,
        "golden",
        source,
        preview_copy(bench, "golden", Some(masking)),
    )
    .await;
    let unmasked: i64 = bench
        .connect("golden")
        .await
        .query_one(
            "SELECT count(*) FROM customers WHERE email NOT LIKE '%@example.com'",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("checking the masked addresses: {e}"))
        .get(0);
    assert_eq!(unmasked, 0, "the golden copy kept original addresses");
    copies.push(report(
        "preview masked golden build",
        measured,
        source_bytes,
    ));
    copies
}

/// A way of making a database out of the golden one.
enum FromGolden {
    /// `cp` of the golden's directory under `base/`, with these options.
    Files(&'static [&'static str]),
    /// `CREATE DATABASE … TEMPLATE golden` with this `STRATEGY` clause.
    Template(&'static str),
    /// The copy a physical preview's server starts from, as preview makes it (`copy_data_dir`: `cp -a
    /// --reflink=auto`, then the tree handed to the server's user), of the same files.
    DataDir,
}

/// How long a database made from the golden one takes, each way measured `FROM_GOLDEN_ROUNDS` times in turn;
/// the median of each. The first row is the byte copy the others are compared with.
async fn from_golden(
    bench: &Bench,
    source: Counts,
    golden_bytes: u64,
    scratch: &TempDir,
) -> Vec<Row> {
    let data_directory: String = bench
        .admin
        .query_one("SHOW data_directory", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    let oid: u32 = bench
        .admin
        .query_one("SELECT oid FROM pg_database WHERE datname = 'golden'", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    let files = Path::new(&data_directory)
        .join("base")
        .join(oid.to_string());
    let mut ways = vec![
        (
            "cp -r --reflink=never (a byte copy)",
            FromGolden::Files(&["-r", "--reflink=never"]),
        ),
        (
            "CREATE DATABASE … TEMPLATE golden",
            FromGolden::Template(""),
        ),
        (
            "cp -r --reflink=auto",
            FromGolden::Files(&["-r", "--reflink=auto"]),
        ),
        (
            "physical: copied as preview does (cp -a, chown)",
            FromGolden::DataDir,
        ),
    ];
    // Before 15 the files were always copied; 15 added WAL_LOG, block by block through the WAL, as the default.
    if bench.binaries.version >= 15 {
        ways[1].0 = "CREATE DATABASE … TEMPLATE golden (WAL_LOG)";
        ways.push((
            "CREATE DATABASE … TEMPLATE golden (FILE_COPY)",
            FromGolden::Template(" STRATEGY FILE_COPY"),
        ));
    }
    let mut samples: Vec<Vec<Measured>> = ways.iter().map(|_| Vec::new()).collect();
    for round in 1..=FROM_GOLDEN_ROUNDS {
        for ((operation, way), samples) in ways.iter().zip(&mut samples) {
            bench.settle().await;
            let measured = match way {
                FromGolden::Files(options) => {
                    let copy = scratch.path().join("files");
                    let measured = measure(async {
                        let copied = Command::new("cp")
                            .args(*options)
                            .arg(&files)
                            .arg(&copy)
                            .output()
                            .await;
                        succeeded(operation, copied);
                    })
                    .await;
                    std::fs::remove_dir_all(&copy)
                        .unwrap_or_else(|e| panic!("{}: {e}", copy.display()));
                    measured
                }
                FromGolden::DataDir => {
                    let root = scratch.path().join("server");
                    let owner = {
                        use std::os::unix::fs::MetadataExt;
                        let meta = std::fs::metadata(&files).unwrap_or_else(|e| panic!("{e}"));
                        (meta.uid(), meta.gid())
                    };
                    let (from, to) = (files.clone(), root.clone());
                    let measured = measure(async move {
                        tokio::task::spawn_blocking(move || {
                            preview_database::postgres::server::copy_data_dir(
                                &from,
                                &to,
                                Some(owner),
                                &|path, uid, gid| {
                                    let handed = std::process::Command::new("chown")
                                        .args(["-R", "-P", "-h", "--", &format!("{uid}:{gid}")])
                                        .arg(path)
                                        .status()
                                        .map_err(|e| e.to_string())?;
                                    handed
                                        .success()
                                        .then_some(())
                                        .ok_or_else(|| "chown failed".to_owned())
                                },
                            )
                        })
                        .await
                        .unwrap_or_else(|e| panic!("{e}"))
                        .unwrap_or_else(|e| panic!("{e}"));
                    })
                    .await;
                    std::fs::remove_dir_all(&root)
                        .unwrap_or_else(|e| panic!("{}: {e}", root.display()));
                    measured
                }
                FromGolden::Template(strategy) => {
                    let measured = measure(bench.admin_sql(&format!(
                        "CREATE DATABASE from_golden TEMPLATE golden{strategy}"
                    )))
                    .await;
                    bench.check_copy("from_golden", source).await;
                    bench.drop_database("from_golden").await;
                    measured
                }
            };
            eprintln!(
                "bench: round {round}: {operation}: {:.2} s",
                measured.seconds
            );
            samples.push(measured);
        }
    }
    ways.iter()
        .zip(samples)
        .map(|((operation, _), mut samples)| {
            samples.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
            let median = samples.swap_remove(samples.len() / 2);
            report(operation, median, golden_bytes)
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let megabytes: u64 = match std::env::var("PREVIEW_BENCH_MB") {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("PREVIEW_BENCH_MB={value} is not a number of megabytes")),
        Err(_) => DEFAULT_MB,
    };
    let bench = Bench::start().await;
    admin::ensure_golden_owner(&bench.admin, false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    bench.create_database(SOURCE).await;
    eprintln!("bench: generating a source of about {megabytes} MB");
    let generating = Instant::now();
    let source = bench.generate(megabytes).await;
    let source_bytes = bench.size(SOURCE).await;
    eprintln!(
        "bench: generated {:.0} MB in {:.0} s: {source:?}",
        source_bytes as f64 / MB,
        generating.elapsed().as_secs_f64()
    );
    let scratch = TempDir::new("bench-databases");

    // (a) The source copied whole into a new database, four ways; the masked copy is kept as the golden one.
    let copies = copies_of_the_source(&bench, source, source_bytes, &scratch).await;

    // (b) A database made from the golden one, against copying the golden's files.
    bench.settle().await;
    let golden_bytes = bench.size("golden").await;
    let from_golden = from_golden(&bench, source, golden_bytes, &scratch).await;
    bench.drop_database("golden").await;
    bench.drop_database(SOURCE).await;

    println!(
        "\ndatabase benchmark: source {:.0} MB (customers {} rows, orders {}, order_items {}), PostgreSQL {}, {} cores",
        source_bytes as f64 / MB,
        rows(source.customers),
        rows(source.orders),
        rows(source.order_items),
        bench.binaries.version,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    print_table("copy of the source", "pg_dump -Fc | pg_restore", &copies);
    print_table(
        &format!(
            "from the golden one ({:.0} MB), median of {FROM_GOLDEN_ROUNDS}",
            golden_bytes as f64 / MB
        ),
        "cp -r --reflink=never",
        &from_golden,
    );
    let masked = copies[3].measured.seconds / copies[0].measured.seconds;
    // preview copies a golden snapshot over 64 MB with `STRATEGY FILE_COPY` (`admin::create_database`).
    let template = from_golden
        .iter()
        .find(|row| row.operation.contains("FILE_COPY"))
        .unwrap_or(&from_golden[1])
        .measured
        .seconds
        / from_golden[0].measured.seconds;
    let physical = from_golden
        .iter()
        .find(|row| row.operation.starts_with("physical:"))
        .map_or(f64::NAN, |row| row.measured.seconds)
        / from_golden[0].measured.seconds;
    println!(
        "\ntarget: masked golden build <= 1.00 x pg_dump -Fc | pg_restore: {} ({masked:.2})",
        if masked <= 1.0 { "met" } else { "NOT met" }
    );
    println!(
        "target: CREATE DATABASE … TEMPLATE golden as preview makes it (FILE_COPY) <= 1.50 x cp -r --reflink=never: {} ({template:.2})",
        if template <= 1.5 { "met" } else { "NOT met" }
    );
    println!(
        "target: a physical preview's copy of the golden data directory <= 1.50 x cp -r --reflink=never: {} ({physical:.2})",
        if physical <= 1.5 { "met" } else { "NOT met" }
    );
}
