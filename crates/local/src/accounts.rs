//! The accounts this runtime gave out — a user per environment, a builder per project and per preview — kept in
//! `accounts.json` by key (`env:shop/pr-1`, `build:shop`, `build:shop/pr-1`), so that a restarted daemon runs
//! everything as the same users, and an id is released with its environment.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;

/// An inclusive range of user and group ids, e.g. `50000-59999`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub first: u32,
    pub last: u32,
}

impl IdRange {
    pub fn parse(text: &str) -> Result<IdRange, String> {
        let bad =
            || format!("`{text}` is not a range of user ids; write FIRST-LAST, e.g. 50000-59999");
        let (first, last) = text.split_once('-').ok_or_else(bad)?;
        let first: u32 = first.trim().parse().map_err(|_| bad())?;
        let last: u32 = last.trim().parse().map_err(|_| bad())?;
        if first < 1000 || last < first || last - first < 15 || last >= 4_000_000_000 {
            return Err(format!(
                "`{text}` must lie above 999 (the system's own ids) and hold at least 16 ids"
            ));
        }
        Ok(IdRange { first, last })
    }

    /// How many ids the range holds.
    pub fn count(&self) -> u32 {
        self.last - self.first + 1
    }
}

impl Default for IdRange {
    /// Above the ids distributions give people (1000 and up) and below systemd's dynamic users (61184 and up).
    fn default() -> Self {
        IdRange {
            first: 50000,
            last: 59999,
        }
    }
}

pub(crate) struct Accounts {
    path: PathBuf,
    range: IdRange,
    /// Says whose accounts they are in their comment field.
    owner: String,
    ids: Mutex<BTreeMap<String, u32>>,
}

impl Accounts {
    pub(crate) fn open(path: PathBuf, range: IdRange, owner: String) -> Result<Accounts, String> {
        let ids = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is damaged: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Accounts {
            path,
            range,
            owner,
            ids: Mutex::new(ids),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u32>> {
        match self.ids.lock() {
            Ok(ids) => ids,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<u32> {
        self.lock().get(key).copied()
    }

    pub(crate) fn all(&self) -> BTreeMap<String, u32> {
        self.lock().clone()
    }

    pub(crate) fn range(&self) -> IdRange {
        self.range
    }

    /// The id of `key`, its account made (again, if it was removed behind the daemon's back). A new key gets the
    /// first id of the range that no user, group or process of the machine has.
    pub(crate) fn assign(&self, key: &str) -> Result<u32, String> {
        let mut ids = self.lock();
        // The comment says whose account it is, not what for: every user of the machine (and every sandbox, whose
        // /etc is the host's) can read the passwd file, and environments' names are nobody else's business.
        let comment = self.signature();
        if let Some(id) = ids.get(key).copied() {
            match preview_isolation::account(id) {
                Some(found) if self.made(&found) => return Ok(id),
                Some(found) => {
                    return Err(format!(
                        "the user id {id} of {key} now belongs to `{}` ({}), not to this daemon; delete the environment and create it again",
                        found.name, found.comment
                    ));
                }
                None => {
                    preview_isolation::create_account(id, &comment)
                        .map_err(|e| format!("cannot make the user of {key} again: {e}"))?;
                    return Ok(id);
                }
            }
        }
        let mut taken: BTreeSet<u32> = preview_isolation::ids_in_use();
        taken.extend(ids.values().copied());
        let mut last_error = None;
        for id in self.range.first..=self.range.last {
            if taken.contains(&id) {
                continue;
            }
            // The id is written down before its account is made: a daemon killed in between finds it and makes
            // the account (or releases the id), instead of leaving an account nothing knows of.
            ids.insert(key.to_owned(), id);
            save(&self.path, &ids)?;
            // Another daemon may take the same id at the same moment: the shadow tools refuse the second.
            match preview_isolation::create_account(id, &comment) {
                Ok(_) => return Ok(id),
                Err(error) => last_error = Some(error.to_string()),
            }
            ids.remove(key);
            save(&self.path, &ids)?;
            if !preview_isolation::id_is_free(id) {
                continue;
            }
            break;
        }
        Err(match last_error {
            Some(error) => format!("cannot make a user for {key}: {error}"),
            None => format!(
                "no free user id left in {}-{} for {key}; delete environments or widen --users",
                self.range.first, self.range.last
            ),
        })
    }

    /// How this daemon's accounts begin their comment: `preview <marker>`.
    fn signature(&self) -> String {
        format!("preview {}", self.owner)
    }

    /// Whether this daemon made `account` (its comment says so).
    fn made(&self, account: &preview_isolation::Account) -> bool {
        account.comment == self.signature()
    }

    /// Removes the account of `key` and forgets it; nothing to do for an unknown key. An account with that id
    /// that is not this daemon's (its own was never made, and another took the id) is left alone.
    pub(crate) fn release(&self, key: &str) -> Result<(), String> {
        let mut ids = self.lock();
        let Some(id) = ids.get(key).copied() else {
            return Ok(());
        };
        // This daemon's account, or a group a killed daemon made without its user: removed. Another's: left.
        let found = preview_isolation::account(id);
        if found.as_ref().is_none_or(|found| self.made(found)) {
            preview_isolation::delete_account(id)
                .map_err(|e| format!("cannot remove the user of {key}: {e}"))?;
        }
        ids.remove(key);
        save(&self.path, &ids)
    }
}

fn save(path: &std::path::Path, ids: &BTreeMap<String, u32>) -> Result<(), String> {
    let bytes = serde_json::to_vec_pretty(ids).map_err(|e| e.to_string())?;
    crate::records::write_atomically(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_or_say_why_not() {
        assert_eq!(
            IdRange::parse("50000-59999"),
            Ok(IdRange {
                first: 50000,
                last: 59999
            })
        );
        for bad in ["", "50000", "a-b", "60000-50000", "0-100000", "50000-50003"] {
            assert!(IdRange::parse(bad).is_err(), "{bad}");
        }
    }
}
