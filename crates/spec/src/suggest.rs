//! "Did you mean" for misspelt keys, names and values.

/// The closest candidate to `word`, if one is close enough to be a plausible typo or abbreviation.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word_lower = word.to_ascii_lowercase().replace('-', "_");
    let candidates: Vec<&str> = candidates.into_iter().collect();
    // An abbreviation (`prod` for `production`) is far in edit distance but an obvious intent.
    if word_lower.len() >= 3 {
        let mut prefixed = candidates
            .iter()
            .filter(|c| c.to_ascii_lowercase().starts_with(&word_lower));
        if let (Some(only), None) = (prefixed.next(), prefixed.next()) {
            return Some(only);
        }
    }
    candidates
        .into_iter()
        .map(|candidate| {
            let normalized = candidate.to_ascii_lowercase().replace('-', "_");
            (
                strsim::damerau_levenshtein(&word_lower, &normalized),
                candidate,
            )
        })
        .filter(|(distance, candidate)| {
            // One edit per three characters, at least one, is what a typo looks like.
            let allowed = (candidate.chars().count().max(word.chars().count()) / 3).max(1);
            *distance <= allowed
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// `; did you mean `x`?` or nothing.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match closest(word, candidates) {
        Some(candidate) => format!("; did you mean `{candidate}`?"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn finds_typos_and_ignores_strangers() {
        let keys = ["replicas", "ports", "health", "depends_on"];
        assert_eq!(closest("replica", keys), Some("replicas"));
        assert_eq!(closest("prots", keys), Some("ports"));
        assert_eq!(closest("depends-on", keys), Some("depends_on"));
        assert_eq!(closest("colour", keys), None);
        assert_eq!(
            closest("prod", ["production", "staging"]),
            Some("production")
        );
        assert_eq!(
            closest("rep", ["replicas", "report"]),
            None,
            "a prefix of two candidates is ambiguous"
        );
    }
}
