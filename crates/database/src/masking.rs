//! Masking transforms: deterministic, keyed replacements for personal values, applied to rows as they are copied
//! from one environment's database into another's. Pure: no I/O, no connections, no knowledge of tables.
//!
//! Every transform is an HMAC-SHA256 of the value under a key derived from the project's masking secret, one key
//! per kind of rule, so `hash` and `email` of the same value are unrelated. The output depends only on the secret,
//! the kind of rule and the value, never on the table or column: the same e-mail address masks to the same fake
//! address in `customers.email` and in `orders.customer_email`, so joins between masked tables still match. Without
//! the secret a masked value cannot be traced back, nor can a guessed value be confirmed.
//!
//! Masked values stay stable as long as the secret and this module's formats and name lists do: changing any of
//! them makes copies masked before and after the change disagree.

mod names;
mod personal;
#[cfg(test)]
mod tests;

use ring::hmac;

pub use personal::{looks_personal, looks_personal_in};

/// How a column's values are masked, as the planner hands it over (serialized in snake case: `"email"`,
/// `{"fixed": "text"}`, `{"same_as": {"table": "customers", "column": "email"}}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// 32 lowercase hexadecimal digits; distinct values stay distinct.
    Hash,
    /// A well-formed, unique fake address at `example.com`.
    Email,
    /// A plausible "First Last"; not unique.
    Name,
    /// A fictional North American number (`+1 NPA 555 01XX`); not unique.
    Phone,
    /// SQL NULL.
    Null,
    /// This text, for every row.
    Fixed(String),
    /// Whatever rule the named column has, so that a foreign key masks exactly like the key it points at. The
    /// caller resolves it to that rule before masking; see [`Masker::mask`].
    SameAs { table: String, column: String },
}

/// Whether a rule keeps distinct values distinct (with overwhelming probability), so that it may mask a column
/// under a unique constraint. A copy refuses any other rule on a unique column before it copies anything.
///
/// `null` is refused too: NULLs do not collide in a unique index, but a unique column usually identifies its row,
/// and a key that other rows point at must not vanish. `same_as` answers for the rule [`Masker::mask`] falls back
/// to; the caller should ask about the resolved rule instead.
pub fn keeps_unique(rule: &Rule) -> bool {
    match rule {
        Rule::Hash | Rule::Email | Rule::SameAs { .. } => true,
        Rule::Name | Rule::Phone | Rule::Null | Rule::Fixed(_) => false,
    }
}

/// The keyed transforms. Holds one HMAC key per kind of rule, derived from the masking secret; `Debug` shows
/// none of them.
pub struct Masker {
    hash: hmac::Key,
    email: hmac::Key,
    name: hmac::Key,
    phone: hmac::Key,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Masker([redacted])")
    }
}

impl Masker {
    /// A masker for a project's masking secret. Derived keys are labelled with the kind of rule and a version, so
    /// one secret yields unrelated keys, and a future format can move to new labels without reusing old ones.
    pub fn new(secret: &str) -> Masker {
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let derive = |kind: &str| {
            let label = format!("preview masking v1 {kind}");
            hmac::Key::new(
                hmac::HMAC_SHA256,
                hmac::sign(&root, label.as_bytes()).as_ref(),
            )
        };
        Masker {
            hash: derive("hash"),
            email: derive("email"),
            name: derive("name"),
            phone: derive("phone"),
        }
    }

    pub fn from_secret(secret: &preview_secrets::Secret) -> Masker {
        Masker::new(secret.expose())
    }

    /// The masked form of a non-NULL value; `None` is SQL NULL. NULL values are never passed in: the caller keeps
    /// them NULL whatever the rule, so a masked copy has its NULLs where the original has them.
    ///
    /// `SameAs` must be resolved by the caller to the rule of the column it names. Passed here unresolved (a
    /// programming error), it masks like `Hash`: nothing personal leaks and distinct values stay distinct, though
    /// the values will not match the other column's unless that column's rule is `hash` too.
    pub fn mask(&self, rule: &Rule, value: &str) -> Option<String> {
        match rule {
            Rule::Hash | Rule::SameAs { .. } => Some(hex(&self.tag(&self.hash, value)[..16])),
            Rule::Email => Some(self.email(value)),
            Rule::Name => Some(self.name(value)),
            Rule::Phone => Some(self.phone(value)),
            Rule::Null => None,
            Rule::Fixed(text) => Some(text.clone()),
        }
    }

    fn tag(&self, key: &hmac::Key, value: &str) -> [u8; 32] {
        let mut tag = [0u8; 32];
        tag.copy_from_slice(hmac::sign(key, value.as_bytes()).as_ref());
        tag
    }

    /// `first.last.<16 hex digits>@example.com`, all lowercase. The 64 bits of the tag in the local part make it
    /// unique with overwhelming probability; the names only make it look real. `example.com` is reserved (RFC
    /// 2606), so mail sent from a preview to a masked address reaches nobody.
    fn email(&self, value: &str) -> String {
        let tag = self.tag(&self.email, value);
        let first = names::FIRST_NAMES[usize::from(tag[8]) % names::FIRST_NAMES.len()];
        let last = names::LAST_NAMES[usize::from(tag[9]) % names::LAST_NAMES.len()];
        format!(
            "{}.{}.{}@example.com",
            first.to_ascii_lowercase(),
            last.to_ascii_lowercase(),
            hex(&tag[..8])
        )
    }

    /// "First Last" from the built-in lists.
    fn name(&self, value: &str) -> String {
        let tag = self.tag(&self.name, value);
        let first = names::FIRST_NAMES[usize::from(tag[0]) % names::FIRST_NAMES.len()];
        let last = names::LAST_NAMES[usize::from(tag[1]) % names::LAST_NAMES.len()];
        format!("{first} {last}")
    }

    /// `+1 NPA 555 01XX`: a North American number in the range 555-0100 to 555-0199, which is set aside for
    /// fiction, so a preview that texts or calls a masked number reaches nobody. The area code's first digit is
    /// 2–9 and its middle digit is never 1 or 9, as for real area codes; 64,000 numbers in all.
    fn phone(&self, value: &str) -> String {
        let tag = self.tag(&self.phone, value);
        let area_first = 2 + tag[0] % 8;
        let area_middle = [0, 2, 3, 4, 5, 6, 7, 8][usize::from(tag[1] % 8)];
        let area_last = tag[2] % 10;
        let line = u16::from_be_bytes([tag[3], tag[4]]) % 100;
        format!("+1 {area_first}{area_middle}{area_last} 555 01{line:02}")
    }
}

/// Lowercase hexadecimal, by table lookup: this runs once per masked value of every copied row.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}
