use std::collections::HashSet;

use proptest::prelude::*;

use super::names::{FIRST_NAMES, LAST_NAMES};
use super::*;

const KEY: &str = "masking-secret-for-tests";

fn check(rule: Rule, value: &str, expected: Option<&str>) {
    assert_eq!(
        Masker::new(KEY).mask(&rule, value).as_deref(),
        expected,
        "{rule:?} {value:?}"
    );
}

fn check_json(json: &str, rule: Rule) {
    assert_eq!(
        serde_json::from_str::<Rule>(json).expect("parses"),
        rule,
        "{json}"
    );
    assert_eq!(serde_json::to_string(&rule).expect("serializes"), json);
}

/// One dot-free `[a-z0-9_-]` run per part, one `@`, a dotted domain.
fn well_formed_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let label = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    local.split('.').all(label) && domain.split('.').count() >= 2 && domain.split('.').all(label)
}

/// `+1 NPA 555 01XX` with a plausible area code.
fn well_formed_phone(phone: &str) -> bool {
    let parts: Vec<&str> = phone.split(' ').collect();
    let digits =
        |part: &str, len: usize| part.len() == len && part.bytes().all(|b| b.is_ascii_digit());
    let [country, area, exchange, line] = parts[..] else {
        return false;
    };
    country == "+1"
        && digits(area, 3)
        && (b'2'..=b'9').contains(&area.as_bytes()[0])
        && !matches!(area.as_bytes()[1], b'1' | b'9')
        && exchange == "555"
        && digits(line, 4)
        && line.starts_with("01")
}

fn first_and_last(name: &str) -> Option<(&str, &str)> {
    let (first, last) = name.split_once(' ')?;
    (FIRST_NAMES.contains(&first) && LAST_NAMES.contains(&last)).then_some((first, last))
}

#[test]
fn rules_read_the_planners_json() {
    check_json(r#""hash""#, Rule::Hash);
    check_json(r#""email""#, Rule::Email);
    check_json(r#""name""#, Rule::Name);
    check_json(r#""phone""#, Rule::Phone);
    check_json(r#""null""#, Rule::Null);
    check_json(r#"{"fixed":"text"}"#, Rule::Fixed("text".to_owned()));
    check_json(
        r#"{"same_as":{"table":"customers","column":"email"}}"#,
        Rule::SameAs {
            table: "customers".to_owned(),
            column: "email".to_owned(),
        },
    );
    assert!(serde_json::from_str::<Rule>(r#""shuffle""#).is_err());
}

#[test]
fn only_hash_and_email_keep_unique_columns_unique() {
    let same_as = Rule::SameAs {
        table: "t".to_owned(),
        column: "c".to_owned(),
    };
    for (rule, expected) in [
        (Rule::Hash, true),
        (Rule::Email, true),
        (same_as, true),
        (Rule::Name, false),
        (Rule::Phone, false),
        (Rule::Null, false),
        (Rule::Fixed("x".to_owned()), false),
    ] {
        assert_eq!(keeps_unique(&rule), expected, "{rule:?}");
    }
}

/// Copies masked by different versions must agree, or joins between them break: these values are frozen.
#[test]
fn masks_are_stable_across_versions() {
    check(
        Rule::Hash,
        "anna@corp.example",
        Some("3fd9220d5eee5c6f4bd8d39b90854e06"),
    );
    check(
        Rule::Email,
        "anna@corp.example",
        Some("daniel.santos.8fe6d295c0eece89@example.com"),
    );
    check(Rule::Name, "Anna Svensson", Some("Mohammed Oliveira"));
    check(Rule::Phone, "+46 70 123 45 67", Some("+1 456 555 0180"));
    check(Rule::Null, "anna@corp.example", None);
    check(
        Rule::Fixed("redacted".to_owned()),
        "anything",
        Some("redacted"),
    );
    check(Rule::Fixed(String::new()), "anything", Some(""));
}

/// The documented construction, recomputed from the primitives: HMAC-SHA256 under a key derived per kind.
#[test]
fn hash_is_the_keyed_hmac_of_the_value() {
    let root = hmac::Key::new(hmac::HMAC_SHA256, KEY.as_bytes());
    let derived = hmac::sign(&root, b"preview masking v1 hash");
    let key = hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref());
    let tag = hmac::sign(&key, b"anna@corp.example");
    let expected = preview_secrets::hex::encode(&tag.as_ref()[..16]);
    check(Rule::Hash, "anna@corp.example", Some(&expected));
}

#[test]
fn unresolved_same_as_masks_like_hash() {
    let masker = Masker::new(KEY);
    let same_as = Rule::SameAs {
        table: "customers".to_owned(),
        column: "email".to_owned(),
    };
    assert_eq!(masker.mask(&same_as, "x"), masker.mask(&Rule::Hash, "x"));
}

#[test]
fn debug_reveals_nothing() {
    let masker = Masker::from_secret(&preview_secrets::Secret::new("hunter2".to_owned()));
    assert_eq!(format!("{masker:?}"), "Masker([redacted])");
}

#[test]
fn name_lists_are_distinct_capitalised_words() {
    for list in [&FIRST_NAMES[..], &LAST_NAMES[..]] {
        assert_eq!(list.iter().collect::<HashSet<_>>().len(), list.len());
        for name in list {
            let mut letters = name.chars();
            assert!(
                letters.next().is_some_and(|c| c.is_ascii_uppercase()),
                "{name}"
            );
            assert!(letters.all(|c| c.is_ascii_lowercase()), "{name}");
        }
    }
}

/// Every name and every fictional line is reachable, so the whole tag feeds the choice.
#[test]
fn fakes_use_every_name_and_line() {
    let masker = Masker::new(KEY);
    let (mut firsts, mut lasts, mut lines) = (HashSet::new(), HashSet::new(), HashSet::new());
    for i in 0..3000 {
        let value = format!("person {i}");
        let name = masker.mask(&Rule::Name, &value).unwrap_or_default();
        let (first, last) = first_and_last(&name).expect("a name from the lists");
        firsts.insert(first.to_owned());
        lasts.insert(last.to_owned());
        let phone = masker.mask(&Rule::Phone, &value).unwrap_or_default();
        lines.insert(phone[phone.len() - 2..].to_owned());
    }
    assert_eq!(firsts.len(), FIRST_NAMES.len());
    assert_eq!(lasts.len(), LAST_NAMES.len());
    assert_eq!(lines.len(), 100);
}

fn transforms() -> impl Strategy<Value = Rule> {
    prop_oneof![
        Just(Rule::Hash),
        Just(Rule::Email),
        Just(Rule::Name),
        Just(Rule::Phone)
    ]
}

proptest! {
    #[test]
    fn the_same_key_and_value_always_mask_alike(key in ".*", value in ".*", rule in transforms()) {
        prop_assert_eq!(Masker::new(&key).mask(&rule, &value), Masker::new(&key).mask(&rule, &value));
    }

    #[test]
    fn another_key_masks_otherwise(a in ".{1,40}", b in ".{1,40}", value in ".*") {
        prop_assume!(a != b);
        let (a, b) = (Masker::new(&a), Masker::new(&b));
        prop_assert_ne!(a.mask(&Rule::Hash, &value), b.mask(&Rule::Hash, &value));
        prop_assert_ne!(a.mask(&Rule::Email, &value), b.mask(&Rule::Email, &value));
    }

    #[test]
    fn hashes_are_32_lowercase_hex_digits(value in ".*") {
        let hash = Masker::new(KEY).mask(&Rule::Hash, &value).unwrap_or_default();
        prop_assert_eq!(hash.len(), 32);
        prop_assert!(hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{}", hash);
    }

    #[test]
    fn emails_are_well_formed(value in ".*") {
        let email = Masker::new(KEY).mask(&Rule::Email, &value).unwrap_or_default();
        prop_assert!(well_formed_email(&email), "{}", email);
        prop_assert!(email.ends_with("@example.com"), "{}", email);
    }

    #[test]
    fn phones_are_well_formed(value in ".*") {
        let phone = Masker::new(KEY).mask(&Rule::Phone, &value).unwrap_or_default();
        prop_assert!(well_formed_phone(&phone), "{}", phone);
    }

    #[test]
    fn names_are_a_first_and_a_last_name(value in ".*") {
        let name = Masker::new(KEY).mask(&Rule::Name, &value).unwrap_or_default();
        prop_assert!(first_and_last(&name).is_some(), "{}", name);
    }

    #[test]
    fn hash_and_email_of_a_value_are_unrelated(value in ".*") {
        let masker = Masker::new(KEY);
        let hash = masker.mask(&Rule::Hash, &value).unwrap_or_default();
        let email = masker.mask(&Rule::Email, &value).unwrap_or_default();
        let email_digits = email.split(['.', '@']).nth(2).unwrap_or_default();
        prop_assert_eq!(email_digits.len(), 16);
        prop_assert!(!hash.contains(email_digits), "{} {}", hash, email);
    }

    /// Inputs mix an uppercase letter and a digit, which no output contains together in one run (hashes and
    /// e-mail addresses are lowercase, names have no digits, phone numbers no letters): a masked value that
    /// contains its input can only have copied it.
    #[test]
    fn masked_values_never_contain_their_input(value in "[A-Z][a-z]{2,8}[0-9]{1,4}", rule in transforms()) {
        let masked = Masker::new(KEY).mask(&rule, &value).unwrap_or_default();
        prop_assert!(!masked.contains(&value), "{} -> {}", value, masked);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Thousands of near-identical values (a name-only address would collide within a few hundred): the tag's 64
    /// bits keep their addresses apart.
    #[test]
    fn distinct_values_get_distinct_emails(prefix in "[a-z]{0,6}", step in 1u64..1_000_000) {
        let masker = Masker::new(KEY);
        let emails: HashSet<String> = (0..3000u64)
            .filter_map(|i| masker.mask(&Rule::Email, &format!("{prefix}{}@corp.example", i * step)))
            .collect();
        prop_assert_eq!(emails.len(), 3000);
    }
}
