//! System accounts: a user and a group with the same id for each environment and each builder, made with the
//! distribution's `groupadd`/`useradd` so that programs that look themselves up (`whoami`, PostgreSQL, Node's
//! `os.userInfo`) find a passwd entry. The passwd and group files are also how daemons sharing a machine keep
//! out of each other's ids: an id with an entry, or with a process running as it, is never handed out again.

use std::collections::BTreeSet;

use crate::IsolationError;
use crate::programs::run;

/// A system user as its passwd entry names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    /// The comment (GECOS) field: who made it and for what.
    pub comment: String,
}

/// The passwd entry with this user id, if any.
pub fn account(uid: u32) -> Option<Account> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [name, _, id, gid, comment, ..] if id.parse() == Ok(uid) => Some(Account {
                uid,
                gid: gid.parse().ok()?,
                name: (*name).to_owned(),
                comment: (*comment).to_owned(),
            }),
            _ => None,
        }
    })
}

fn group_exists(gid: u32) -> bool {
    std::fs::read_to_string("/etc/group").is_ok_and(|groups| {
        groups
            .lines()
            .any(|line| line.split(':').nth(2).and_then(|g| g.parse().ok()) == Some(gid))
    })
}

/// Every id some user, group or process of this machine has (real, effective and saved user ids of processes).
pub fn ids_in_use() -> BTreeSet<u32> {
    let mut ids = BTreeSet::new();
    for file in ["/etc/passwd", "/etc/group"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            ids.extend(
                text.lines()
                    .filter_map(|l| l.split(':').nth(2)?.parse::<u32>().ok()),
            );
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let is_pid = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
            if !is_pid {
                continue;
            }
            if let Ok(status) = std::fs::read_to_string(entry.path().join("status"))
                && let Some(line) = status.lines().find(|l| l.starts_with("Uid:"))
            {
                ids.extend(
                    line.split_whitespace()
                        .skip(1)
                        .take(3)
                        .filter_map(|id| id.parse::<u32>().ok()),
                );
            }
        }
    }
    ids
}

/// Whether `id` can be given to a new account: no user or group has it and no process runs as it.
pub fn id_is_free(id: u32) -> bool {
    !ids_in_use().contains(&id)
}

/// `preview-<id>`: account names are made from the id, so that they are unique wherever the id is.
fn name_for(id: u32) -> String {
    format!("preview-{id}")
}

/// Creates a system user and group with id `id`, no login shell and no home directory of their own (the runtime
/// gives each process its `HOME`). `comment` says whose it is (no `:`, `,` or newline).
pub fn create_account(id: u32, comment: &str) -> Result<Account, IsolationError> {
    let name = name_for(id);
    let comment: String = comment
        .chars()
        .map(|c| {
            if matches!(c, ':' | ',' | '\n') {
                ' '
            } else {
                c
            }
        })
        .collect();
    let id_text = id.to_string();
    run("groupadd", &["--system", "--gid", &id_text, &name], None)?;
    let made = run(
        "useradd",
        &[
            "--system",
            "--no-log-init",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--uid",
            &id_text,
            "--gid",
            &id_text,
            "--comment",
            &comment,
            &name,
        ],
        None,
    );
    if let Err(error) = made {
        let _ = run("groupdel", &[&name], None);
        return Err(error);
    }
    Ok(Account {
        uid: id,
        gid: id,
        name,
        comment,
    })
}

/// Removes the user with id `id` and its group; nothing to do when neither exists. Its files stay where they are
/// (the runtime removes the directories it gave it).
pub fn delete_account(id: u32) -> Result<(), IsolationError> {
    let name = name_for(id);
    if let Some(found) = account(id) {
        if found.name != name {
            return Err(IsolationError::Unavailable(format!(
                "user id {id} belongs to `{}`, not to an account this daemon made; it is left alone",
                found.name
            )));
        }
        run("userdel", &[&name], None)?;
    }
    if group_exists(id) {
        run("groupdel", &[&name], None)?;
    }
    Ok(())
}

/// Makes `uid:gid` the owner of `path` and of everything below it, without following a symbolic link anywhere
/// (`chown -R -P -h`, which walks directories by descriptor): the tree may belong to a user who could swap a
/// directory for a link while it is walked.
pub fn hand_tree_to(path: &std::path::Path, uid: u32, gid: u32) -> Result<(), IsolationError> {
    let owner = format!("{uid}:{gid}");
    let path = path.to_string_lossy();
    run("chown", &["-R", "-P", "-h", "--", &owner, &path], None)
}
