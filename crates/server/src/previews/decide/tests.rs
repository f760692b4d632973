use preview_forge::PullState;
use preview_spec::PreviewPolicy;
use preview_store::PullRequestRecord;

use super::{Seen, Want, decide};

fn policy(extra: &str) -> PreviewPolicy {
    let text = format!(
        "project: shop
services:
  web:
    run: \"true\"
    ports: [8080]
environments:
  staging: {{}}
previews:
  blueprint: staging
{extra}"
    );
    preview_spec::parse_spec("preview.yaml", &text)
        .expect("spec")
        .previews
        .expect("previews")
}

fn pull(number: u64, head: &str) -> PullState {
    PullState {
        number,
        open: true,
        head_sha: head.to_owned(),
        head_ref: format!("feature/{number}"),
        base_ref: "main".to_owned(),
        fork: false,
        labels: Vec::new(),
        draft: false,
        author: "octocat".to_owned(),
        title: format!("change {number}"),
        url: String::new(),
    }
}

fn record(state: &PullState) -> PullRequestRecord {
    PullRequestRecord {
        project: "shop".to_owned(),
        number: state.number as i64,
        version: 1,
        state: serde_json::to_string(state).expect("json"),
        open: state.open,
        head: state.head_sha.clone(),
        confirmed: true,
        observed_at: 0,
        claimed: false,
        claimed_at: None,
        approved_head: None,
        expired_head: None,
        failed_head: None,
        paths_head: None,
        paths: None,
        outcome: String::new(),
        feedback: None,
    }
}

fn wants(
    policy: Option<&PreviewPolicy>,
    pulls: &[(PullRequestRecord, PullState)],
    now: i64,
) -> Vec<Want> {
    let seen: Vec<Seen<'_>> = pulls
        .iter()
        .map(|(record, state)| Seen {
            record,
            state: state.clone(),
        })
        .collect();
    decide(policy, &seen, now)
        .into_iter()
        .map(|v| v.want)
        .collect()
}

fn preview(head: &str) -> Want {
    Want::Preview {
        head: head.to_owned(),
    }
}

#[test]
fn open_pull_requests_get_a_preview_at_their_head_and_closed_ones_none() {
    let policy = policy("");
    let open = pull(1, "aaa");
    let mut closed = pull(2, "bbb");
    closed.open = false;
    let pulls = vec![(record(&open), open), (record(&closed), closed)];
    assert_eq!(
        wants(Some(&policy), &pulls, 0),
        vec![preview("aaa"), Want::Nothing]
    );
    // Without a policy, nothing is wanted.
    assert_eq!(wants(None, &pulls, 0), vec![Want::Nothing, Want::Nothing]);
}

#[test]
fn filters_on_branches_targets_labels_drafts_and_paths() {
    let policy = policy(
        "  branches: { include: [\"feature/**\"], exclude: [\"feature/3\"] }
  target_branches: [main]
  labels: { exclude: [no-preview] }
  paths: { exclude: [\"docs/**\"] }
",
    );
    let passing = pull(1, "a");
    let excluded_branch = pull(3, "c");
    let mut other_target = pull(4, "d");
    other_target.base_ref = "release".to_owned();
    let mut labelled = pull(5, "e");
    labelled.labels = vec!["bug".to_owned(), "no-preview".to_owned()];
    let mut draft = pull(6, "f");
    draft.draft = true;
    let docs_only = pull(7, "g");
    let mut docs_record = record(&docs_only);
    docs_record.paths_head = Some("g".to_owned());
    docs_record.paths = Some("[\"docs/a.md\"]".to_owned());
    let code = pull(8, "h");
    let mut code_record = record(&code);
    code_record.paths_head = Some("h".to_owned());
    code_record.paths = Some("[\"docs/a.md\",\"src/main.rs\"]".to_owned());
    let pulls = vec![
        (record(&passing), passing),
        (record(&excluded_branch), excluded_branch),
        (record(&other_target), other_target),
        (record(&labelled), labelled),
        (record(&draft), draft),
        (docs_record, docs_only),
        (code_record, code),
    ];
    assert_eq!(
        wants(Some(&policy), &pulls, 0),
        vec![
            preview("a"),
            Want::Nothing,
            Want::Nothing,
            Want::Nothing,
            Want::Nothing,
            Want::Nothing,
            preview("h"),
        ]
    );
    let drafts = self::policy("  drafts: true\n");
    let mut draft = pull(6, "f");
    draft.draft = true;
    assert_eq!(
        wants(Some(&drafts), &[(record(&draft), draft)], 0),
        vec![preview("f")]
    );
}

#[test]
fn forks_wait_for_an_approval_of_their_head() {
    let policy = policy("");
    let mut fork = pull(9, "f1");
    fork.fork = true;
    let mut approved = record(&fork);
    assert_eq!(
        wants(Some(&policy), &[(approved.clone(), fork.clone())], 0),
        vec![Want::Nothing]
    );
    approved.approved_head = Some("f1".to_owned());
    assert_eq!(
        wants(Some(&policy), &[(approved.clone(), fork.clone())], 0),
        vec![preview("f1")]
    );
    // A push needs a new approval: before any preview was made, none is.
    let mut pushed = fork;
    pushed.head_sha = "f2".to_owned();
    assert_eq!(
        wants(Some(&policy), &[(approved.clone(), pushed.clone())], 0),
        vec![Want::Nothing]
    );
    // A preview that exists stays at the approved commit, never the new one.
    approved.claimed = true;
    approved.claimed_at = Some(1);
    assert_eq!(
        wants(Some(&policy), &[(approved.clone(), pushed.clone())], 0),
        vec![preview("f1")]
    );
    approved.approved_head = Some("f2".to_owned());
    assert_eq!(
        wants(Some(&policy), &[(approved, pushed)], 0),
        vec![preview("f2")]
    );
}

#[test]
fn max_live_keeps_existing_previews_and_queues_the_rest_in_order() {
    let policy = policy("  max_live: 2\n");
    let pulls: Vec<(PullRequestRecord, PullState)> = (1..=4)
        .map(|n| {
            let state = pull(n, &format!("h{n}"));
            let mut record = record(&state);
            // #3 already has its preview: it keeps its place ahead of older pull requests without one.
            if n == 3 {
                record.claimed = true;
                record.claimed_at = Some(10);
            }
            (record, state)
        })
        .collect();
    assert_eq!(
        wants(Some(&policy), &pulls, 100),
        vec![
            preview("h1"),
            Want::Queued { position: 1 },
            preview("h3"),
            Want::Queued { position: 2 },
        ]
    );
}

#[test]
fn a_preview_older_than_its_ttl_goes_until_the_next_push() {
    let policy = policy("  ttl: 1h\n");
    let state = pull(1, "old");
    let mut claimed = record(&state);
    claimed.claimed = true;
    claimed.claimed_at = Some(0);
    let hour = 3_600_000;
    let seen = [Seen {
        record: &claimed,
        state: state.clone(),
    }];
    let young = decide(Some(&policy), &seen, hour - 1);
    assert_eq!(young[0].want, preview("old"));
    let old = decide(Some(&policy), &seen, hour);
    assert_eq!(old[0].want, Want::Nothing);
    assert!(old[0].expired);
    // Remembered as expired: nothing at that head, however long ago it was claimed.
    claimed.claimed = false;
    claimed.expired_head = Some("old".to_owned());
    assert_eq!(
        wants(Some(&policy), &[(claimed.clone(), state.clone())], 0),
        vec![Want::Nothing]
    );
    let mut pushed = state;
    pushed.head_sha = "new".to_owned();
    assert_eq!(
        wants(Some(&policy), &[(claimed, pushed)], 0),
        vec![preview("new")]
    );
}
