//! System accounts: made with a passwd entry, seen as taken, removed again; never another program's.

mod common;

use common::{TestAccount, require_root};
use preview_isolation::{account, delete_account, id_is_free};

#[test]
fn accounts_are_made_found_and_removed() {
    require_root();
    let made = TestAccount::new("accounts");
    let uid = made.uid();
    let found = account(uid).expect("a passwd entry");
    assert_eq!(found.name, format!("preview-{uid}"));
    assert_eq!(found.gid, uid);
    assert!(
        found.comment.contains("preview isolation test accounts"),
        "{found:?}"
    );
    assert!(!id_is_free(uid));
    delete_account(uid).expect("removed");
    assert!(account(uid).is_none());
    assert!(id_is_free(uid));
    // Removing it again is nothing to do.
    delete_account(uid).expect("idempotent");
}

#[test]
fn ids_of_other_users_are_taken_and_their_accounts_are_not_removed() {
    require_root();
    // Root has a passwd entry and runs processes; the ids of system users are in use.
    assert!(!id_is_free(0));
    let error = delete_account(0).expect_err("root is not ours").to_string();
    assert!(error.contains("`root`"), "{error}");
    assert!(account(0).is_some());
}
