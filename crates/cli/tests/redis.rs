//! Redis databases through the real daemon with the distribution's `redis-server`: each clone policy (empty, a seed
//! file of commands, an RDB file, a copy of another environment's golden snapshot), what one environment's user may
//! not do (read another's data, administer its server), data kept across the daemon's restart, bad input refused
//! with its place and nothing left, and the fault suite over the new steps.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use preview_testing::TempDir;
use support::faulty::{FAULTS, Faulty};
use support::{
    Daemon, ReleaseAccounts, api, commit_all, deploy, failed_deployment, git, in_project,
    local_daemon, ok,
};

/// Carts and a greeting with a blank in it, as a seed file of commands (a comment and an empty line included).
const SEED: &str = "# the carts of two customers
HSET cart:1 sku \"blue mug\" qty 2

HSET cart:2 sku 'tea pot' qty 1
SET greeting \"hello world\"
RPUSH recent cart:1 cart:2
";

/// A project whose `cache` is a Redis database seeded from `seed.redis` in staging, and copied from staging in
/// previews; a migrate job checks its `REDIS_URL` and writes to it from its sandbox (the password in redis-cli's
/// environment, not its arguments).
fn project(dir: &Path, name: &str, cache: &str, environments: &str) -> PathBuf {
    let repo = dir.join(name);
    std::fs::create_dir_all(&repo).expect("repo");
    std::fs::write(repo.join("seed.redis"), SEED).expect("seed");
    std::fs::write(
        repo.join("preview.yaml"),
        format!(
            "project: {name}
runtime: local
services:
  warm:
    type: job
    hook: migrate
    command: >-
      case \"$REDIS_URL\" in \"redis://$CACHE_USER:\"*\"@$CACHE_HOST:$CACHE_PORT/0\") ;; *) exit 3;; esac;
      REDISCLI_AUTH=\"$CACHE_PASSWORD\" redis-cli -h \"$CACHE_HOST\" -p \"$CACHE_PORT\" --user \"$CACHE_USER\"
      --no-auth-warning SET written-by-job \"$PREVIEW_ENVIRONMENT\"
    depends_on: [cache]
    variables:
      CACHE_USER: ${{{{ services.cache.user }}}}
      CACHE_PASSWORD: ${{{{ services.cache.password }}}}
  cache:
    type: database
    engine: redis
{cache}
environments:
{environments}
previews:
  blueprint: staging
  overrides:
    services:
      cache:
        clone: {{ policy: clone, from: staging }}
"
        ),
    )
    .expect("spec");
    git(&repo, &["init", "--quiet"]);
    commit_all(&repo, "the project");
    repo
}

const CACHE: &str = "    version: 7
    clone: { policy: seed, file: seed.redis }";

/// `redis-cli ARGS` on ENV's `cache` as its own user, through `preview db redis-cli`.
fn redis(daemon: &Daemon, project: &str, environment: &str, args: &[&str]) -> String {
    let mut all = vec!["db", "redis-cli", environment, "cache", "--"];
    all.extend_from_slice(args);
    ok(in_project(daemon, project, &all)).trim().to_owned()
}

/// ENV's login to its `cache`: host, port, user and password, as the API gives it.
fn login(daemon: &Daemon, project: &str, environment: &str) -> (u16, String, String) {
    let (status, body) = api(
        daemon,
        "POST",
        &format!("/v1/projects/{project}/environments/{environment}/databases/cache/login"),
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

/// `redis-cli` run by the test itself against `port` as `user` (no user: the server's default user).
fn redis_as(port: u16, user: Option<(&str, &str)>, args: &[&str]) -> String {
    let mut command = Command::new("redis-cli");
    command.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "--no-auth-warning",
    ]);
    if let Some((user, password)) = user {
        command
            .args(["--user", user])
            .env("REDISCLI_AUTH", password);
    }
    let out = command.args(args).output().expect("redis-cli");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim()
    .to_owned()
}

/// The Redis servers the daemon has files for, and every `redis-server` process it started that runs — found
/// by the marker its processes carry in their environment, whether or not their files are still there.
fn redis_servers(data: &Path) -> (usize, Vec<u32>) {
    let made = std::fs::read_dir(data.join("local/databases"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("redis.conf").exists() || e.path().join("data").is_dir())
        .filter(|e| !e.path().join("data/PG_VERSION").exists())
        .count();
    let marker = std::fs::read_to_string(data.join("local/marker")).expect("the runtime's marker");
    let carried = format!("PREVIEW_SUPERVISOR={}", marker.trim());
    let servers: Vec<u32> = std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains("redis-server")
                && environ.split(|b| *b == 0).any(|v| v == carried.as_bytes())
        })
        .collect();
    // A snapshot's child process is its server's, not a server of its own.
    let parent = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|p| p.trim().parse::<u32>().ok())
    };
    let running = servers
        .iter()
        .filter(|pid| !parent(pid).is_some_and(|p| servers.contains(&p)))
        .copied()
        .collect();
    (made, running)
}

/// Whether the daemon's port or account registry still names the Redis server of `environment`'s `cache`.
fn registered(data: &Path, project: &str, environment: &str) -> bool {
    let key = format!("database-server:{project}/{environment}/cache");
    ["local/ports.json", "local/accounts.json"]
        .iter()
        .any(|file| std::fs::read_to_string(data.join(file)).is_ok_and(|text| text.contains(&key)))
}

/// An RDB file written by a throw-away `redis-server` of the test's own (listening on a socket in `dir` only),
/// holding `rdb:1` … `rdb:50`.
fn rdb_file(dir: &Path) -> Vec<u8> {
    let work = dir.join("rdb-maker");
    std::fs::create_dir_all(&work).expect("dir");
    let socket = work.join("redis.sock");
    let mut server = Command::new("redis-server")
        .args(["--port", "0", "--save", "", "--appendonly", "no"])
        .arg("--unixsocket")
        .arg(&socket)
        .arg("--dir")
        .arg(&work)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (scripts/test installs it)");
    support::wait_for(
        "the throw-away Redis",
        std::time::Duration::from_secs(20),
        || socket.exists(),
    );
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(&socket)
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    for n in 1..=50 {
        cli(&["SET", &format!("rdb:{n}"), &format!("value {n}")]);
    }
    assert_eq!(cli(&["SAVE"]), "OK");
    let _ = server.kill();
    let _ = server.wait();
    std::fs::read(work.join("dump.rdb")).expect("dump.rdb")
}

#[test]
fn redis_databases_by_every_policy_kept_apart_kept_over_restarts_and_removed_with_nothing_left() {
    let dir = TempDir::new("redis-policies");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let mut daemon = local_daemon(&data, "32800-33799", &[], None);
    let repo = project(
        dir.path(),
        "carts",
        CACHE,
        "  staging: {}
  blank:
    services:
      cache:
        clone: { policy: empty }
  restored:
    services:
      cache:
        persistence: aof
        clone: { policy: seed, file: seed.rdb }",
    );
    std::fs::write(repo.join("seed.rdb"), rdb_file(dir.path())).expect("rdb");
    commit_all(&repo, "an RDB seed");
    ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        &repo.join("preview.yaml").display().to_string(),
    ]));

    // Seeded from the file of commands, quotes and all; the job reached it through REDIS_URL from its sandbox.
    deploy(&daemon, "carts", &["env", "create", "staging"]);
    assert_eq!(
        redis(&daemon, "carts", "staging", &["HGET", "cart:1", "sku"]),
        "blue mug"
    );
    assert_eq!(
        redis(&daemon, "carts", "staging", &["HGET", "cart:2", "sku"]),
        "tea pot"
    );
    assert_eq!(
        redis(&daemon, "carts", "staging", &["GET", "greeting"]),
        "hello world"
    );
    assert_eq!(
        redis(&daemon, "carts", "staging", &["GET", "written-by-job"]),
        "staging"
    );
    // Empty: only what its job wrote.
    deploy(&daemon, "carts", &["env", "create", "blank"]);
    assert_eq!(redis(&daemon, "carts", "blank", &["DBSIZE"]), "1");
    // From an RDB file, with the append-only file on.
    deploy(&daemon, "carts", &["env", "create", "restored"]);
    assert_eq!(
        redis(&daemon, "carts", "restored", &["GET", "rdb:42"]),
        "value 42"
    );
    assert_eq!(redis(&daemon, "carts", "restored", &["DBSIZE"]), "51");
    let append_only: Vec<PathBuf> = std::fs::read_dir(data.join("local/databases"))
        .expect("servers")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            std::fs::read_to_string(p.join("redis.conf"))
                .is_ok_and(|c| c.contains("appendonly yes"))
        })
        .collect();
    assert_eq!(append_only.len(), 1, "{append_only:?}");
    assert!(append_only[0].join("data/appendonlydir").is_dir());

    // A preview is a copy of staging as it is when it is made, through staging's golden snapshot.
    redis(&daemon, "carts", "staging", &["SET", "added-later", "yes"]);
    deploy(&daemon, "carts", &["env", "clone", "staging", "pr-1"]);
    assert_eq!(
        redis(&daemon, "carts", "pr-1", &["GET", "added-later"]),
        "yes"
    );
    assert_eq!(
        redis(&daemon, "carts", "pr-1", &["HGET", "cart:1", "qty"]),
        "2"
    );
    assert_eq!(
        redis(&daemon, "carts", "pr-1", &["GET", "written-by-job"]),
        "pr-1"
    );
    redis(
        &daemon,
        "carts",
        "pr-1",
        &["SET", "greeting", "changed in pr-1"],
    );
    assert_eq!(
        redis(&daemon, "carts", "staging", &["GET", "greeting"]),
        "hello world"
    );
    let snapshot = daemon.json(&["--project", "carts", "db", "snapshot", "pr-1", "cache"]);
    assert_eq!(snapshot["snapshot"]["from"], "staging", "{snapshot}");
    assert!(
        snapshot["snapshot"]["size_bytes"]
            .as_u64()
            .unwrap_or_default()
            > 0,
        "{snapshot}"
    );
    // A second preview uses the same golden snapshot: staging's later writes are not in it.
    redis(
        &daemon,
        "carts",
        "staging",
        &["SET", "after-the-snapshot", "yes"],
    );
    deploy(&daemon, "carts", &["env", "clone", "staging", "pr-2"]);
    assert_eq!(
        redis(&daemon, "carts", "pr-2", &["EXISTS", "after-the-snapshot"]),
        "0"
    );
    // Refreshed, the next reset takes staging as it is now.
    ok(in_project(
        &daemon,
        "carts",
        &["db", "refresh", "pr-2", "cache"],
    ));
    ok(in_project(
        &daemon,
        "carts",
        &["db", "reset", "pr-2", "cache"],
    ));
    assert_eq!(
        redis(&daemon, "carts", "pr-2", &["EXISTS", "after-the-snapshot"]),
        "1"
    );

    // One environment's user cannot read another's data, nor administer its own server.
    let (staging_port, staging_user, staging_password) = login(&daemon, "carts", "staging");
    let (preview_port, preview_user, preview_password) = login(&daemon, "carts", "pr-1");
    assert_ne!(
        staging_port, preview_port,
        "each environment has a server of its own"
    );
    assert_eq!(
        redis_as(
            staging_port,
            Some((&staging_user, &staging_password)),
            &["GET", "greeting"]
        ),
        "hello world"
    );
    for (user, password) in [
        (preview_user.as_str(), preview_password.as_str()),
        (staging_user.as_str(), preview_password.as_str()),
        ("default", ""),
        ("preview-admin", staging_password.as_str()),
    ] {
        let answer = redis_as(staging_port, Some((user, password)), &["GET", "greeting"]);
        assert!(
            answer.contains("WRONGPASS") || answer.contains("NOAUTH"),
            "{user} read staging's data: {answer}"
        );
    }
    let anonymous = redis_as(staging_port, None, &["GET", "greeting"]);
    assert!(anonymous.contains("NOAUTH"), "{anonymous}");
    for command in [
        vec!["CONFIG", "SET", "dir", "/tmp"],
        vec!["SHUTDOWN", "NOSAVE"],
        vec!["DEBUG", "SLEEP", "0"],
        vec![
            "MIGRATE",
            "127.0.0.1",
            &staging_port.to_string(),
            "greeting",
            "0",
            "1000",
        ],
        vec!["REPLICAOF", "127.0.0.1", "1"],
        vec!["ACL", "SETUSER", "default", "on", "nopass", "+@all"],
        vec!["MODULE", "LOAD", "/tmp/x.so"],
        vec!["BGSAVE"],
    ] {
        let answer = redis_as(
            preview_port,
            Some((&preview_user, &preview_password)),
            &command,
        );
        // Refused by the user's rules, or (DEBUG, MODULE) by the server's configuration before them.
        assert!(
            answer.contains("NOPERM") || answer.contains("command not allowed"),
            "{command:?} was allowed: {answer}"
        );
    }
    assert_eq!(
        redis_as(
            preview_port,
            Some((&preview_user, &preview_password)),
            &["GET", "greeting"]
        ),
        "changed in pr-1"
    );
    // A script in pr-2 that holds more than the server may (scripts' memory is not counted by maxmemory) takes
    // down its own environment's server, which comes back; nobody else's.
    let (hostile_port, hostile_user, hostile_password) = login(&daemon, "carts", "pr-2");
    let hostile = redis_as(
        hostile_port,
        Some((&hostile_user, &hostile_password)),
        &[
            "EVAL",
            "local t = {} for i = 1, 4000000 do t[i] = string.rep('x', 300) .. i end return #t",
            "0",
        ],
    );
    assert!(
        !hostile.starts_with("(integer)") && !hostile.chars().all(|c| c.is_ascii_digit()),
        "the script held it all: {hostile}"
    );
    support::wait_for(
        "pr-2's server back",
        std::time::Duration::from_secs(60),
        || {
            redis_as(
                hostile_port,
                Some((&hostile_user, &hostile_password)),
                &["PING"],
            ) == "PONG"
        },
    );
    assert_eq!(
        redis_as(
            staging_port,
            Some((&staging_user, &staging_password)),
            &["GET", "greeting"]
        ),
        "hello world"
    );
    // No password is in the server's files or command line.
    for server in std::fs::read_dir(data.join("local/databases"))
        .expect("servers")
        .flatten()
    {
        for file in ["redis.conf", "server.log"] {
            let text = std::fs::read_to_string(server.path().join(file)).unwrap_or_default();
            for password in [&staging_password, &preview_password] {
                assert!(!text.contains(password.as_str()), "{file} holds a password");
            }
        }
    }
    let (_, running) = redis_servers(&data);
    assert_eq!(running.len(), 5, "staging, blank, restored, pr-1, pr-2");
    assert!(registered(&data, "carts", "staging"));
    // Within its memory limit, which its user can read but not change.
    let memory = redis(&daemon, "carts", "pr-1", &["INFO", "memory"]);
    assert!(memory.contains("maxmemory:536870912"), "{memory}");
    assert!(memory.contains("maxmemory_policy:noeviction"), "{memory}");
    for pid in &running {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(!cmdline.contains(&staging_password) && !cmdline.contains(&preview_password));
    }

    // The daemon stopped and started again: every server comes back with its data (the append-only one too).
    redis(
        &daemon,
        "carts",
        "restored",
        &["SET", "written-before-restart", "kept"],
    );
    daemon.stop();
    assert!(
        redis_servers(&data).1.is_empty(),
        "the servers stop with the daemon"
    );
    daemon = local_daemon(&data, "32800-33799", &[], None);
    assert_eq!(
        redis(
            &daemon,
            "carts",
            "restored",
            &["GET", "written-before-restart"]
        ),
        "kept"
    );
    assert_eq!(
        redis(&daemon, "carts", "pr-1", &["GET", "greeting"]),
        "changed in pr-1"
    );
    assert_eq!(
        redis(&daemon, "carts", "staging", &["HGET", "cart:2", "qty"]),
        "1"
    );
    // A redeploy keeps the data.
    deploy(&daemon, "carts", &["deploy", "staging"]);
    assert_eq!(
        redis(&daemon, "carts", "staging", &["GET", "added-later"]),
        "yes"
    );

    // Deleting an environment removes its server, its files, its port and its user; the source's golden
    // snapshot goes with the source.
    let (before, _) = redis_servers(&data);
    deploy(&daemon, "carts", &["env", "delete", "pr-1"]);
    let (after, running) = redis_servers(&data);
    assert_eq!((before - after, running.len()), (1, 4));
    let answer = redis_as(
        preview_port,
        Some((&preview_user, &preview_password)),
        &["PING"],
    );
    assert!(
        !answer.contains("PONG"),
        "pr-1's server still answers: {answer}"
    );
    for environment in ["pr-2", "staging", "blank", "restored"] {
        deploy(&daemon, "carts", &["env", "delete", environment]);
    }
    assert_eq!(redis_servers(&data), (0, Vec::new()));
    let goldens: Vec<_> = std::fs::read_dir(data.join("local/databases/redis-goldens"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(goldens.is_empty(), "{goldens:?}");
    for environment in ["staging", "blank", "restored", "pr-1", "pr-2"] {
        assert!(!registered(&data, "carts", environment), "{environment}");
    }
}

#[test]
fn bad_redis_input_is_refused_with_its_place_and_leaves_nothing() {
    let dir = TempDir::new("redis-bad");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let daemon = local_daemon(&data, "33800-33999", &[], None);
    let repo = project(
        dir.path(),
        "badcache",
        CACHE,
        "  staging: {}
  quoted:
    services:
      cache:
        clone: { policy: seed, file: quotes.redis }
  old:
    services:
      cache:
        version: 8
  notrdb:
    services:
      cache:
        clone: { policy: seed, file: fake.rdb }
  unended:
    services:
      cache:
        clone: { policy: seed, file: unended.redis }
  huge:
    services:
      cache:
        clone: { policy: seed, file: huge.redis }",
    );
    std::fs::write(
        repo.join("seed.redis"),
        "SET a 1\nHSET cart:1 sku mug\nSETT b 2\nSET c 3\n",
    )
    .expect("seed");
    std::fs::write(repo.join("quotes.redis"), "SET a 1\nSET b \"open\n").expect("seed");
    std::fs::write(repo.join("fake.rdb"), "SET a 1\n").expect("seed");
    std::fs::write(repo.join("unended.redis"), "SET a 1\nMULTI\nSET b 2\n").expect("seed");
    // An answer bigger than the daemon reads: 20 MB in one value, read back.
    std::fs::write(
        repo.join("huge.redis"),
        "SETRANGE big 20000000 x\nGET big\n",
    )
    .expect("seed");
    commit_all(&repo, "bad seeds");
    ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        &repo.join("preview.yaml").display().to_string(),
    ]));
    for (environment, expected) in [
        ("staging", "seed.redis:3: ERR unknown command 'SETT'"),
        ("quoted", "quotes.redis:2: a `\"` is not closed"),
        ("old", "Redis 8 is not installed: this machine has Redis 7."),
        ("notrdb", "fake.rdb is not an RDB file"),
        (
            "unended",
            "unended.redis:2: this MULTI is not ended by EXEC, so none of the commands after it were applied",
        ),
        ("huge", "huge.redis:2: Redis's answer is larger than 16 MiB"),
    ] {
        let out = failed_deployment(&daemon, "badcache", &["env", "create", environment]);
        assert!(out.contains(expected), "{environment}: {out}");
        assert!(
            out.contains("rolled_back") || out.contains("rolled back"),
            "{environment}: {out}"
        );
        assert_eq!(redis_servers(&data), (0, Vec::new()), "{environment}");
    }
    // Masking on Redis is refused when the spec is read, naming the place.
    let spec = std::fs::read_to_string(repo.join("preview.yaml")).expect("spec");
    std::fs::write(
        repo.join("preview.yaml"),
        spec.replace(
            "        clone: { policy: clone, from: staging }",
            "        clone: { policy: masked, from: staging }",
        ),
    )
    .expect("spec");
    let out = daemon.cli(&[
        "validate",
        "-f",
        &repo.join("preview.yaml").display().to_string(),
    ]);
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(
            "previews.overrides.services.cache.clone: `policy: masked` is not available for Redis"
        ),
        "{text}"
    );
    // Nothing of the project's environments was kept.
    let listed = daemon.json(&["--project", "badcache", "env", "list"]);
    assert!(!listed.to_string().contains("\"ready\""), "{listed}");
}

/// How the Redis servers stand: the number with files and the number running.
fn redis_counts(data: &Path) -> (usize, usize) {
    let (made, running) = redis_servers(data);
    (made, running.len())
}

/// [`redis_counts`] once it is `expected`, or after 30 s: a daemon started again after a kill serves the other
/// environments' servers again while it already answers.
fn settled_counts(data: &Path, expected: (usize, usize)) -> (usize, usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let counts = redis_counts(data);
        if counts == expected || std::time::Instant::now() > deadline {
            return counts;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn redis_steps_that_fail_or_are_killed_are_rolled_back_with_nothing_left() {
    let dir = TempDir::new("redis-faults");
    let _accounts = ReleaseAccounts(dir.path().join("data"));
    let mut faulty = Faulty::start(dir.path(), "34000-34399");
    let repo = project(dir.path(), "faultcache", CACHE, "  staging: {}\n  keep: {}");
    ok(faulty.daemon().cli(&[
        "project",
        "register",
        "-f",
        &repo.join("preview.yaml").display().to_string(),
    ]));
    deploy(faulty.daemon(), "faultcache", &["env", "create", "keep"]);
    // A seeded environment: its server is made, seeded and marked in the step, and goes when it is undone.
    for operation in ["server", "create", "seed", "mark"] {
        for (fault, when) in FAULTS {
            let status = faulty.inject(
                "faultcache",
                &["env", "create", "staging"],
                operation,
                fault,
                when,
            );
            let case = format!("{operation} {fault} {when}");
            assert_eq!(status, "rolled_back", "{case}");
            assert_eq!(
                settled_counts(&faulty.data, (1, 1)),
                (1, 1),
                "{case}: only keep's server is left"
            );
            assert!(!registered(&faulty.data, "faultcache", "staging"), "{case}");
            assert_eq!(
                redis(faulty.daemon(), "faultcache", "keep", &["GET", "greeting"]),
                "hello world",
                "{case}"
            );
        }
    }
    deploy(faulty.daemon(), "faultcache", &["env", "create", "staging"]);
    // A preview copied from staging: the golden snapshot, then its own server.
    for operation in ["golden", "server", "create", "mark"] {
        for (fault, when) in FAULTS {
            // The golden snapshot is made once and then reused: its own cases make it again; the others use it.
            if operation == "golden" {
                let _ = std::fs::remove_dir_all(faulty.data.join("local/databases/redis-goldens"));
            }
            let status = faulty.inject(
                "faultcache",
                &["env", "clone", "staging", "pr-7"],
                operation,
                fault,
                when,
            );
            let case = format!("{operation} {fault} {when}");
            assert_eq!(status, "rolled_back", "{case}");
            assert_eq!(
                settled_counts(&faulty.data, (2, 2)),
                (2, 2),
                "{case}: keep's and staging's servers only"
            );
            assert!(!registered(&faulty.data, "faultcache", "pr-7"), "{case}");
            let goldens: Vec<_> =
                std::fs::read_dir(faulty.data.join("local/databases/redis-goldens"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
            assert!(
                goldens.iter().all(|name| name.ends_with(".rdb")),
                "{case}: a half-written golden snapshot is left: {goldens:?}"
            );
            assert_eq!(
                redis(
                    faulty.daemon(),
                    "faultcache",
                    "staging",
                    &["GET", "greeting"]
                ),
                "hello world",
                "{case}"
            );
        }
    }
    deploy(
        faulty.daemon(),
        "faultcache",
        &["env", "clone", "staging", "pr-7"],
    );
    assert_eq!(
        redis(
            faulty.daemon(),
            "faultcache",
            "pr-7",
            &["HGET", "cart:1", "sku"]
        ),
        "blue mug"
    );
    // Removal: a failure before it leaves the environment as it was; one after it, or a kill, is finished on
    // recovery (deletion is the point of no return).
    for (fault, when) in FAULTS {
        let status = faulty.inject(
            "faultcache",
            &["env", "delete", "pr-7"],
            "drop",
            fault,
            when,
        );
        let case = format!("drop {fault} {when}");
        match status.as_str() {
            "rolled_back" => {
                assert_eq!(settled_counts(&faulty.data, (3, 3)), (3, 3), "{case}");
                assert_eq!(
                    redis(
                        faulty.daemon(),
                        "faultcache",
                        "pr-7",
                        &["HGET", "cart:1", "sku"]
                    ),
                    "blue mug",
                    "{case}"
                );
            }
            "committed" => {
                assert_eq!(settled_counts(&faulty.data, (2, 2)), (2, 2), "{case}");
                deploy(
                    faulty.daemon(),
                    "faultcache",
                    &["env", "clone", "staging", "pr-7"],
                );
            }
            other => panic!("{case}: {other}"),
        }
    }
}

#[test]
fn a_change_of_persistence_keeps_the_data_and_none_keeps_it_only_while_the_server_runs() {
    let dir = TempDir::new("redis-persistence");
    let data = dir.path().join("data");
    let _accounts = ReleaseAccounts(data.clone());
    let mut daemon = local_daemon(&data, "34400-34799", &[], None);
    let repo = project(dir.path(), "keepcache", CACHE, "  staging: {}");
    ok(daemon.cli(&[
        "project",
        "register",
        "-f",
        &repo.join("preview.yaml").display().to_string(),
    ]));
    deploy(&daemon, "keepcache", &["env", "create", "staging"]);
    redis(
        &daemon,
        "keepcache",
        "staging",
        &["SET", "written-under-rdb", "1"],
    );
    let spec = std::fs::read_to_string(repo.join("preview.yaml")).expect("spec");
    for (persistence, key) in [("aof", "written-under-aof"), ("none", "written-under-none")] {
        std::fs::write(
            repo.join("preview.yaml"),
            spec.replace(CACHE, &format!("{CACHE}\n    persistence: {persistence}")),
        )
        .expect("spec");
        commit_all(&repo, persistence);
        ok(daemon.cli(&[
            "project",
            "register",
            "-f",
            &repo.join("preview.yaml").display().to_string(),
        ]));
        deploy(&daemon, "keepcache", &["deploy", "staging"]);
        // Everything written before is still there, under the new persistence.
        for kept in ["written-under-rdb", "greeting"] {
            assert_eq!(
                redis(&daemon, "keepcache", "staging", &["EXISTS", kept]),
                "1",
                "{persistence}: {kept}"
            );
        }
        let info = redis(&daemon, "keepcache", "staging", &["INFO", "persistence"]);
        let expected = if persistence == "aof" {
            "aof_enabled:1"
        } else {
            "aof_enabled:0"
        };
        assert!(info.contains(expected), "{persistence}: {info}");
        redis(&daemon, "keepcache", "staging", &["SET", key, "1"]);
        if persistence == "aof" {
            // The append-only file holds it across a restart of the daemon and its servers.
            daemon.stop();
            daemon = local_daemon(&data, "34400-34799", &[], None);
            assert_eq!(
                redis(
                    &daemon,
                    "keepcache",
                    "staging",
                    &["EXISTS", "written-under-aof"]
                ),
                "1"
            );
        }
    }
    // With `none`, what the server held is gone once it stops.
    assert_eq!(
        redis(
            &daemon,
            "keepcache",
            "staging",
            &["EXISTS", "written-under-none"]
        ),
        "1"
    );
    daemon.stop();
    daemon = local_daemon(&data, "34400-34799", &[], None);
    assert_eq!(redis(&daemon, "keepcache", "staging", &["DBSIZE"]), "0");
    deploy(&daemon, "keepcache", &["env", "delete", "staging"]);
    assert_eq!(redis_servers(&data), (0, Vec::new()));
}
