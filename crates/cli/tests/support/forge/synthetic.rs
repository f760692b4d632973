//! What the test forge makes up — ids, commit shas, times — the same on every run, so that answers can be compared.

use std::hash::{DefaultHasher, Hash, Hasher};

/// `2024-05-01T12:00:00Z` for seconds since the epoch.
pub(super) fn iso(seconds: u64) -> String {
    let (days, rest) = ((seconds / 86_400) as i64, seconds % 86_400);
    // Days to a civil date, after Howard Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let (era, day_of_era) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let (hour, minute, second) = (rest / 3600, rest % 3600 / 60, rest % 60);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

fn stable_hash(seed: &str, round: u8) -> u64 {
    let mut hasher = DefaultHasher::new();
    (seed, round).hash(&mut hasher);
    hasher.finish()
}

/// A commit or blob id that is always the same for the same seed.
pub(super) fn fake_sha(seed: &str) -> String {
    let hex: String = (0..3)
        .map(|round| format!("{:016x}", stable_hash(seed, round)))
        .collect();
    hex[..40].to_string()
}

/// A numeric id (of a label, a user) that is always the same for the same seed.
pub(super) fn stable_id(seed: &str) -> u64 {
    stable_hash(seed, 0) % 1_000_000_000 + 1
}
