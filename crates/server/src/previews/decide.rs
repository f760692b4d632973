//! Which pull requests should have a preview, and at which commit: the desired half of the reconciler, pure.
//! Every open pull request that passes the preview policy's filters gets one at its head, in order of age, up to
//! `max_live`; the rest wait in a queue. Each answer says why, for `preview previews list`.

use preview_forge::PullState;
use preview_spec::PreviewPolicy;
use preview_store::PullRequestRecord;

/// What one pull request should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Want {
    /// A preview at this commit.
    Preview { head: String },
    /// A preview once one of the `max_live` places is free; 1 is next.
    Queued { position: usize },
    /// No preview.
    Nothing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub number: i64,
    pub want: Want,
    /// Why, for people.
    pub why: String,
    /// Its preview outlived `ttl` just now: remember this head as expired.
    pub expired: bool,
}

/// A pull request as the reconciler sees it: its record and its state read back.
pub(crate) struct Seen<'a> {
    pub record: &'a PullRequestRecord,
    pub state: PullState,
}

/// Each record with its state read back (a record whose state cannot be read is left out).
pub(crate) fn seen(records: &[PullRequestRecord]) -> Vec<Seen<'_>> {
    records
        .iter()
        .filter_map(|record| {
            Some(Seen {
                record,
                state: serde_json::from_str(&record.state).ok()?,
            })
        })
        .collect()
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// Decides every pull request of a project at `now_ms` (the store's clock).
pub(crate) fn decide(
    policy: Option<&PreviewPolicy>,
    seen: &[Seen<'_>],
    now_ms: i64,
) -> Vec<Verdict> {
    let mut verdicts: Vec<Verdict> = Vec::with_capacity(seen.len());
    // Each admitted pull request with the commit its preview shows and why.
    let mut admitted: Vec<(usize, &Seen<'_>, String, String)> = Vec::new();
    for pr in seen {
        let number = pr.record.number;
        let nothing = |why: String| Verdict {
            number,
            want: Want::Nothing,
            why,
            expired: false,
        };
        let Some(policy) = policy else {
            verdicts.push(nothing(
                "the project's spec no longer has a `previews:` policy".to_owned(),
            ));
            continue;
        };
        let state = &pr.state;
        let refused = if !pr.record.open {
            Some("closed".to_owned())
        } else if pr.record.expired_head.as_deref() == Some(state.head_sha.as_str()) {
            Some("its preview outlived `previews.ttl`; the next push makes a new one".to_owned())
        } else if state.draft && !policy.drafts {
            Some("a draft (set `previews.drafts: true` to preview drafts)".to_owned())
        } else if !policy.branches.admits(&state.head_ref) {
            Some(format!(
                "its branch `{}` does not pass `previews.branches`",
                state.head_ref
            ))
        } else if !policy.target_branches.admits(&state.base_ref) {
            Some(format!(
                "its target branch `{}` does not pass `previews.target_branches`",
                state.base_ref
            ))
        } else if !policy
            .labels
            .admits_any(state.labels.iter().map(String::as_str))
        {
            Some("its labels do not pass `previews.labels`".to_owned())
        } else if !paths_pass(policy, pr) {
            Some("it changes no path that passes `previews.paths`".to_owned())
        } else if state.fork
            && pr.record.approved_head.as_deref() != Some(state.head_sha.as_str())
            && !(pr.record.claimed && pr.record.approved_head.is_some())
        {
            Some(format!(
                "from a fork: waiting for a maintainer to approve commit {} (`preview previews approve {number}`)",
                short(&state.head_sha)
            ))
        } else {
            None
        };
        if let Some(why) = refused {
            verdicts.push(nothing(why));
            continue;
        }
        if let (Some(ttl), true, Some(since)) =
            (policy.ttl, pr.record.claimed, pr.record.claimed_at)
            && now_ms.saturating_sub(since) >= ttl.as_millis() as i64
        {
            verdicts.push(Verdict {
                number,
                want: Want::Nothing,
                why: "its preview outlived `previews.ttl`; the next push makes a new one"
                    .to_owned(),
                expired: true,
            });
            continue;
        }
        // A fork's preview stays at the commit a maintainer approved until its new head is approved too.
        let (head, why) = match &pr.record.approved_head {
            Some(approved) if state.fork && *approved != state.head_sha => (
                approved.clone(),
                format!(
                    "from a fork: stays at approved commit {} until a maintainer approves {} (`preview previews approve {number}`)",
                    short(approved),
                    short(&state.head_sha)
                ),
            ),
            _ => (
                state.head_sha.clone(),
                format!("open at {}", short(&state.head_sha)),
            ),
        };
        admitted.push((verdicts.len(), pr, head, why));
        verdicts.push(nothing(String::new()));
    }
    // Previews that exist keep their places; the others queue in the order their pull requests were opened.
    admitted
        .sort_by_key(|(_, pr, _, _)| (!pr.record.claimed, pr.record.claimed_at, pr.record.number));
    let places = policy
        .and_then(|p| p.max_live)
        .map_or(usize::MAX, |n| n as usize);
    for (rank, (index, pr, head, why)) in admitted.into_iter().enumerate() {
        verdicts[index] = if rank < places {
            Verdict {
                number: pr.record.number,
                want: Want::Preview { head },
                why,
                expired: false,
            }
        } else {
            let position = rank - places + 1;
            Verdict {
                number: pr.record.number,
                want: Want::Queued { position },
                why: format!("queued ({position} in line): `previews.max_live` previews exist"),
                expired: false,
            }
        };
    }
    verdicts
}

/// Changed paths pass the filter; paths not read yet (the forge could not be asked) count as passing.
fn paths_pass(policy: &PreviewPolicy, pr: &Seen<'_>) -> bool {
    if policy.paths.is_empty() {
        return true;
    }
    if pr.record.paths_head.as_deref() != Some(pr.state.head_sha.as_str()) {
        return true;
    }
    let paths: Vec<String> = pr
        .record
        .paths
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_default();
    policy.paths.admits_paths(paths.iter().map(String::as_str))
}

#[cfg(test)]
mod tests;
