//! Redis golden snapshots: how long building one from a source takes (the source's `BGSAVE`, then its file copied,
//! as the local runtime does) against `redis-cli --rdb` fetching the same data from the source, and how long a new
//! environment's server made from it takes (the golden file copied into a new data directory, the server started and
//! its data loaded) against `redis-cli --rdb` plus a server started from that file. Prints a table; run with
//! `scripts/bench-databases` or `cargo bench -p preview-database --bench redis`.
//!
//! The source is a throw-away `redis-server` of the bench's own, filled with `PREVIEW_BENCH_MB` MB (500 by default)
//! of random, incompressible 1 KiB values; each copy's key count is checked before its time is reported.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use preview_database::redis::client::{Answer, Client};
use preview_database::redis::save_snapshot;
use preview_secrets::Secret;
use preview_testing::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const DEFAULT_MB: u64 = 500;
const VALUE_BYTES: usize = 1024;
const ROUNDS: usize = 3;
const PASSWORD: &str = "bench-password";

/// A `redis-server` of the bench's own, on a free loopback port, its data in `dir`.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    async fn start(dir: &Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                PASSWORD,
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/bench-databases installs it)");
        let server = Server { child, port };
        // Ready once its data is loaded: PING answers PONG, not LOADING.
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Ok(mut client) = server.client().await
                && let Ok(Answer::Status(_)) = client.command(&[b"PING"]).await
            {
                return server;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn client(&self) -> Result<Client, preview_database::DatabaseError> {
        Client::connect(
            "127.0.0.1",
            self.port,
            "default",
            &Secret::new(PASSWORD.to_owned()),
        )
        .await
    }

    async fn keys(&self) -> i64 {
        match self
            .client()
            .await
            .expect("client")
            .command(&[b"DBSIZE"])
            .await
        {
            Ok(Answer::Integer(n)) => n,
            other => panic!("DBSIZE answered {other:?}"),
        }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `keys` random values, written in pipelined batches.
async fn fill(port: u16, keys: u64) {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut stream = BufReader::new(stream);
    let mut random = std::fs::File::open("/dev/urandom").expect("urandom");
    let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{PASSWORD}\r\n", PASSWORD.len());
    stream
        .get_mut()
        .write_all(auth.as_bytes())
        .await
        .expect("auth");
    let mut line = String::new();
    stream.read_line(&mut line).await.expect("auth answer");
    let batch = 1000;
    let mut written = 0;
    while written < keys {
        let n = batch.min(keys - written);
        let mut frames = Vec::with_capacity(n as usize * (VALUE_BYTES + 64));
        let mut value = vec![0u8; VALUE_BYTES];
        for i in written..written + n {
            std::io::Read::read_exact(&mut random, &mut value).expect("random");
            let key = format!("key:{i}");
            frames.extend_from_slice(
                format!(
                    "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${VALUE_BYTES}\r\n",
                    key.len()
                )
                .as_bytes(),
            );
            frames.extend_from_slice(&value);
            frames.extend_from_slice(b"\r\n");
        }
        stream.get_mut().write_all(&frames).await.expect("write");
        for _ in 0..n {
            line.clear();
            stream.read_line(&mut line).await.expect("answer");
            assert_eq!(line, "+OK\r\n");
        }
        written += n;
    }
}

fn copy_atomically(from: &Path, to: &Path) {
    let partial = to.with_extension("partial");
    std::fs::copy(from, &partial).expect("copy");
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .expect("sync");
    std::fs::rename(&partial, to).expect("rename");
}

/// `redis-cli --rdb` of the source into `file`.
fn fetch_rdb(port: u16, file: &Path) {
    let out = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--no-auth-warning",
            "--rdb",
        ])
        .arg(file)
        .env("REDISCLI_AUTH", PASSWORD)
        .output()
        .expect("redis-cli (it comes with redis-server)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fresh_dir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

fn median(mut seconds: Vec<f64>) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

#[tokio::main]
async fn main() {
    let megabytes: u64 = std::env::var("PREVIEW_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MB);
    let keys = megabytes * 1024 * 1024 / VALUE_BYTES as u64;
    let work = TempDir::new("bench-redis");
    let source = Server::start(&fresh_dir(work.path(), "source")).await;
    eprintln!("bench: filling the Redis source with {keys} random values of {VALUE_BYTES} bytes");
    fill(source.port, keys).await;
    assert_eq!(source.keys().await, keys as i64);

    let golden = work.path().join("golden.rdb");
    let (mut build, mut fetch, mut from_golden, mut fetched_and_started) =
        (vec![], vec![], vec![], vec![]);
    for round in 1..=ROUNDS {
        // The golden snapshot as preview builds it: BGSAVE on the source, its file copied.
        let started = Instant::now();
        let mut admin = source.client().await.expect("admin");
        save_snapshot(&mut admin, Duration::from_secs(600))
            .await
            .expect("BGSAVE");
        copy_atomically(&work.path().join("source/dump.rdb"), &golden);
        build.push(started.elapsed().as_secs_f64());
        // The same data fetched by redis-cli --rdb.
        let fetched = work.path().join("fetched.rdb");
        let started = Instant::now();
        fetch_rdb(source.port, &fetched);
        fetch.push(started.elapsed().as_secs_f64());

        // A new environment's server from the golden snapshot: copied in, started, loaded.
        let dir = fresh_dir(work.path(), "from-golden");
        let started = Instant::now();
        copy_atomically(&golden, &dir.join("dump.rdb"));
        let server = Server::start(&dir).await;
        from_golden.push(started.elapsed().as_secs_f64());
        assert_eq!(server.keys().await, keys as i64);
        server.stop();
        // redis-cli --rdb of the source, then a server started from that file.
        let dir = fresh_dir(work.path(), "fetched-started");
        let started = Instant::now();
        fetch_rdb(source.port, &dir.join("dump.rdb"));
        let server = Server::start(&dir).await;
        fetched_and_started.push(started.elapsed().as_secs_f64());
        assert_eq!(server.keys().await, keys as i64);
        server.stop();
        eprintln!("bench: round {round} of {ROUNDS} done");
    }
    let size = std::fs::metadata(&golden)
        .map(|m| m.len())
        .unwrap_or_default();
    source.stop();
    println!(
        "\nRedis, {keys} keys, RDB file {:.0} MB; median of {ROUNDS} rounds, seconds\n",
        size as f64 / 1024.0 / 1024.0
    );
    println!("| operation | preview | comparison | preview ÷ comparison |");
    println!("|---|---|---|---|");
    for (operation, ours, theirs, versus) in [
        (
            "golden snapshot build",
            median(build),
            median(fetch),
            "`redis-cli --rdb`",
        ),
        (
            "per-preview copy (copy, start, load)",
            median(from_golden),
            median(fetched_and_started),
            "`redis-cli --rdb` + restart",
        ),
    ] {
        println!(
            "| {operation} | {ours:.2} | {theirs:.2} ({versus}) | {:.2} × |",
            ours / theirs
        );
    }
}
