//! Sealing binds a value to its slot and key; fingerprints are keyed; the key file is private.

use std::os::unix::fs::PermissionsExt;

use preview_secrets::*;

fn slot<'a>(project: &'a str, scope: &'a str, name: &'a str) -> Slot<'a> {
    Slot {
        project,
        scope,
        name,
    }
}

#[test]
fn a_sealed_value_opens_in_its_own_slot_only() {
    let key = MasterKey::generate().expect("key");
    let value = Secret::new("sk_live_distinctive".to_owned());
    let sealed = key
        .seal(&slot("shop", "project", "STRIPE"), &value)
        .expect("seal");
    assert!(
        !sealed.ciphertext.windows(8).any(|w| w == b"sk_live_"),
        "the ciphertext hides the value"
    );
    assert_eq!(
        key.open(&slot("shop", "project", "STRIPE"), &sealed)
            .expect("open"),
        value
    );
    for other in [
        slot("shop", "project", "OTHER"),
        slot("shop", "service:web", "STRIPE"),
        slot("blog", "project", "STRIPE"),
    ] {
        let error = key.open(&other, &sealed).expect_err("moved ciphertext");
        assert!(
            error.to_string().starts_with("cannot open secret"),
            "{error}"
        );
    }
}

#[test]
fn each_sealing_uses_a_fresh_nonce() {
    let key = MasterKey::generate().expect("key");
    let value = Secret::new("same".to_owned());
    let a = key.seal(&slot("p", "project", "A"), &value).expect("seal");
    let b = key.seal(&slot("p", "project", "A"), &value).expect("seal");
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.ciphertext, b.ciphertext);
}

#[test]
fn another_key_cannot_open_and_is_refused_by_the_key_check() {
    let (key, other) = (
        MasterKey::generate().expect("key"),
        MasterKey::generate().expect("key"),
    );
    let sealed = key
        .seal(&slot("p", "project", "A"), &Secret::new("v".to_owned()))
        .expect("seal");
    assert!(other.open(&slot("p", "project", "A"), &sealed).is_err());
    let check = key.key_check().expect("check");
    key.verify(&check).expect("the right key passes");
    let refused = other.verify(&check).expect_err("the wrong key is refused");
    assert!(
        refused
            .to_string()
            .starts_with("the master key does not match"),
        "{refused}"
    );
}

#[test]
fn tampering_with_a_ciphertext_is_detected() {
    let key = MasterKey::generate().expect("key");
    let mut sealed = key
        .seal(&slot("p", "project", "A"), &Secret::new("value".to_owned()))
        .expect("seal");
    sealed.ciphertext[0] ^= 1;
    assert!(key.open(&slot("p", "project", "A"), &sealed).is_err());
}

#[test]
fn fingerprints_are_keyed_and_stable() {
    let (key, other) = (
        MasterKey::generate().expect("key"),
        MasterKey::generate().expect("key"),
    );
    let value = Secret::new("v".to_owned());
    let at = slot("p", "project", "A");
    assert_eq!(key.fingerprint(&at, &value), key.fingerprint(&at, &value));
    assert_ne!(
        key.fingerprint(&at, &value),
        key.fingerprint(&at, &Secret::new("w".to_owned()))
    );
    assert_ne!(key.fingerprint(&at, &value), other.fingerprint(&at, &value));
    assert_eq!(key.fingerprint(&at, &value).len(), 16);
}

#[test]
fn the_key_file_is_created_private_and_reused() {
    let dir = preview_testing::TempDir::new("master-key");
    let file = dir.path().join("master.key");
    let first = MasterKey::load(&file).expect("created");
    let mode = std::fs::metadata(&file).expect("file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = MasterKey::load(&file).expect("read back");
    assert_eq!(first.to_hex(), again.to_hex());
    assert_eq!(
        format!("{first:?}"),
        format!("MasterKey([redacted], File({file:?}))")
    );
    std::fs::write(&file, "not a key").expect("corrupt it");
    let error = MasterKey::load(&file).expect_err("refused");
    assert!(
        error.to_string().contains("64 hexadecimal digits"),
        "{error}"
    );
}

#[test]
fn derived_secrets_depend_on_key_and_label() {
    let (key, other) = (
        MasterKey::generate().expect("key"),
        MasterKey::generate().expect("key"),
    );
    assert_eq!(key.derived_secret("db/a"), key.derived_secret("db/a"));
    assert_ne!(key.derived_secret("db/a"), key.derived_secret("db/b"));
    assert_ne!(key.derived_secret("db/a"), other.derived_secret("db/a"));
}
