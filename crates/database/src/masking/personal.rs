//! Whether a column's name looks like it holds personal data, so that a copy can warn about a personal column
//! that has no masking rule. A heuristic on the name only: it never sees the data.
//!
//! The name is split into lowercase words at `_`, `-`, spaces and other separators and at camelCase boundaries
//! (`lastLoginIP` → `last login ip`, `IPAddress` → `ip address`). Then, in this order:
//! 1. two adjacent words that name personal data together count: `tax_id`, `social_security`, `account_number`;
//! 2. a name of several words whose last word says it describes the value rather than holds it is not personal:
//!    `address_id` points at a row, `email_verified_at` is a time, `phone_type` is a category;
//! 3. a word counts when it is one of `WORDS`, or ends with one of the longer roots in `ENDINGS` (so glued
//!    names like `customeremail` and `billingaddress` are found). Short roots such as `ip`, `tel`, `zip` and
//!    `dob` must be whole words, which keeps `shipping`, `description`, `recipient` and `hotel` out. Trailing
//!    digits and a plural `s`/`es` are ignored (`address_line1`, `phones`);
//! 4. `name` counts alone (a column called `name`) or after a word that makes it a person's (`first_name`,
//!    `customer_name`, `displayName`), but not after anything else (`product_name`, `file_name`). Where the table
//!    is known ([`looks_personal_in`]), a column called just `name` does not count in a table of things
//!    (`products.name`, `categories.name`) unless the table's name also says people.

// Word lists are space-separated so that each reads as one line of data.

/// Roots that are personal wherever they are a whole word.
const WORDS: &str =
    "mail mobile tel fax msisdn street city zip postal birth dob ssn iban ip ipv4 ipv6";

/// Roots that are personal as a whole word or at the end of a glued word.
const ENDINGS: &str = "email phone address firstname lastname fullname surname forename givenname middlename \
                       nickname username birthdate birthday zipcode postcode postalcode passport";

/// Adjacent words that are personal together, though neither is alone.
const PAIRS: &str = "tax_id tax_number national_id social_security account_number bank_account card_number \
                     credit_card driver_license driving_licence";

/// Last words that make a name describe a personal value instead of holding it.
const DESCRIBES_VALUE: &str =
    "id ids uuid at count verified confirmed enabled disabled status type kind";

/// Words before `name` that make it a person's name.
const PERSON_QUALIFIERS: &str = "first last full middle given family maiden nick sur user display legal contact \
                                 customer person patient employee member owner holder recipient sender billing \
                                 shipping";

/// Words of a table's name that say its rows are people (also at the end of a glued word: `userprofiles`).
const PEOPLE: &str = "customer user person people member employee patient contact author client student owner \
                      buyer sender recipient subscriber guest profile account applicant candidate staff lead \
                      driver tenant visitor participant signup reviewer passenger traveler traveller attendee \
                      assignee manager organizer organiser speaker volunteer worker agent player doctor nurse \
                      teacher parent child resident citizen voter donor borrower seller";

/// Words of a table's name that say its rows are things, whose `name` is no person's.
const THINGS: &str = "product item sku article category categories tag label role permission group team project \
                      company companies organisation organization org department branch store shop warehouse \
                      location country countries region province city cities currency currencies language \
                      locale plan tier feature setting option file document page post topic channel event job \
                      task queue migration type kind status brand model service app application module menu \
                      course variant collection";

fn listed(list: &str, word: &str) -> bool {
    list.split_whitespace().any(|listed| listed == word)
}

/// Whether a column's name looks like personal data; see the module documentation for the rules.
pub fn looks_personal(column: &str) -> bool {
    let words = words(column);
    let word = |i: usize| words.get(i).map(String::as_str);
    if words.windows(2).any(|pair| listed(PAIRS, &pair.join("_"))) {
        return true;
    }
    if words.len() > 1 && word(words.len() - 1).is_some_and(|last| listed(DESCRIBES_VALUE, last)) {
        return false;
    }
    words.iter().enumerate().any(|(i, w)| {
        let person_name = forms(w).any(|form| form == "name")
            && (words.len() == 1
                || i.checked_sub(1)
                    .and_then(word)
                    .is_some_and(|q| listed(PERSON_QUALIFIERS, q)));
        person_name || forms(w).any(is_personal_root)
    })
}

/// [`looks_personal`] for a column of `table` (`schema.table` or `table`). A column called just `name` is
/// personal unless the table's name says its rows are things (`products.name`, `categories.name`) and nothing
/// says they are people (`users_archive`, `customer_details` and `leads` keep it personal): a wrong warning costs
/// a rule, a missed one a person's name in a preview.
pub fn looks_personal_in(table: &str, column: &str) -> bool {
    let table = table.rsplit('.').next().unwrap_or(table);
    let column_words = words(column);
    if column_words.len() == 1 && forms(&column_words[0]).any(|form| form == "name") {
        let table_words = words(table);
        let people = table_words.iter().any(|word| {
            forms(word).any(|form| {
                PEOPLE
                    .split_whitespace()
                    .any(|person| form == person || form.ends_with(person))
            })
        });
        let things = table_words
            .iter()
            .any(|word| forms(word).any(|form| listed(THINGS, form)));
        return people || !things;
    }
    looks_personal(column)
}

fn is_personal_root(form: &str) -> bool {
    listed(WORDS, form) || ENDINGS.split_whitespace().any(|root| form.ends_with(root))
}

/// The forms a word is compared in: as written, without trailing digits, and without a plural ending.
fn forms(word: &str) -> impl Iterator<Item = &str> {
    let base = word.trim_end_matches(|c: char| c.is_ascii_digit());
    [
        Some(word),
        Some(base),
        base.strip_suffix("es"),
        base.strip_suffix('s'),
    ]
    .into_iter()
    .flatten()
}

/// Lowercase words, split at anything that is not a letter or digit and at camelCase boundaries.
fn words(column: &str) -> Vec<String> {
    let chars: Vec<char> = column.chars().collect();
    let mut words = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            words.extend((!current.is_empty()).then(|| std::mem::take(&mut current)));
            continue;
        }
        if c.is_uppercase() && !current.is_empty() {
            let previous = chars[i - 1];
            let next = chars.get(i + 1);
            // `userName` starts a word at `N`; `IPAddress` ends the acronym before the `A` that starts `Address`.
            let after_lower = previous.is_lowercase() || previous.is_ascii_digit();
            let ends_acronym = previous.is_uppercase() && next.is_some_and(|n| n.is_lowercase());
            if after_lower || ends_acronym {
                words.push(std::mem::take(&mut current));
            }
        }
        current.extend(c.to_lowercase());
    }
    words.extend((!current.is_empty()).then_some(current));
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(column: &str, expected: bool) {
        assert_eq!(looks_personal(column), expected, "{column}");
    }

    #[test]
    fn a_bare_name_is_personal_unless_the_table_holds_things() {
        for (table, column) in [
            ("public.customers", "name"),
            ("users", "Name"),
            ("users_archive", "name"),
            ("customer_details", "name"),
            ("patients_2023", "name"),
            ("leads", "name"),
            ("drivers", "name"),
            ("userprofiles", "name"),
            ("user_roles", "name"),
            ("event_attendees", "name"),
            ("project_managers", "name"),
            ("crm.contact_people", "names"),
            ("widgets", "name"),
            ("products", "full_name"),
            ("products", "email"),
        ] {
            assert!(looks_personal_in(table, column), "{table}.{column}");
        }
        for (table, column) in [
            ("public.products", "name"),
            ("categories", "name"),
            ("product_variants", "name"),
            ("cities", "name"),
            ("customers", "product_name"),
        ] {
            assert!(!looks_personal_in(table, column), "{table}.{column}");
        }
    }

    #[test]
    fn splits_names_into_words() {
        let split = |column: &str| words(column).join(" ");
        assert_eq!(split("lastLoginIP"), "last login ip");
        assert_eq!(split("IPAddress"), "ip address");
        assert_eq!(split("address_line1"), "address line1");
        assert_eq!(split("line1Street"), "line1 street");
        assert_eq!(split("EMail"), "e mail");
        assert_eq!(split("__Full--NAME__"), "full name");
        assert_eq!(split(""), "");
    }

    #[test]
    fn personal_columns() {
        for column in [
            "name",
            "Name",
            "names",
            "full_name",
            "first_name",
            "lastName",
            "FirstName",
            "firstname",
            "FULLNAME",
            "surname",
            "username",
            "user_name",
            "display_name",
            "customer_name",
            "recipient_name",
            "customer_email",
            "email",
            "e_mail",
            "EMail",
            "customerEmail",
            "customeremail",
            "emails",
            "mail",
            "email_address",
            "phone",
            "home_phone",
            "phone_number",
            "phones",
            "mobile",
            "tel",
            "telephone",
            "fax",
            "address_line1",
            "billing_address",
            "street",
            "city",
            "zip",
            "zip_code",
            "zipcode",
            "postal_code",
            "postcode",
            "birth_date",
            "dob",
            "date_of_birth",
            "birthday",
            "birth_year",
            "ssn",
            "social_security",
            "social_security_number",
            "iban",
            "account_number",
            "bank_account",
            "card_number",
            "credit_card",
            "ip",
            "ip_address",
            "IPAddress",
            "last_login_ip",
            "lastLoginIP",
            "ipv4",
            "ips",
            "passport",
            "passport_number",
            "tax_id",
            "national_id",
        ] {
            check(column, true);
        }
    }

    #[test]
    fn impersonal_columns() {
        for column in [
            "",
            "_",
            "id",
            "price_cents",
            "created_at",
            "product_name",
            "company_name",
            "file_name",
            "table_name",
            "description",
            "shipping",
            "recipient",
            "hotel",
            "hotel_id",
            "automobile",
            "tax_cents",
            "account_id",
            "user_id",
            "user",
            "address_id",
            "email_verified_at",
            "phone_verified",
            "phone_type",
            "status",
            "country",
            "relationship",
            "membership",
            "tip",
            "mailing_list",
            "quantity",
            "named_range",
        ] {
            check(column, false);
        }
    }
}
