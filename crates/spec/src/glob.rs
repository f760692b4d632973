//! Glob patterns of the preview filters: `*` is any run of characters but `/`, `**` any run at all, `?` one
//! character but `/`; everything else stands for itself.

use crate::model::Filter;

/// Whether `text` matches `pattern` as a whole.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    matches_from(&pattern, &text)
}

fn matches_from(pattern: &[char], text: &[char]) -> bool {
    match pattern {
        [] => text.is_empty(),
        ['*', '*', rest @ ..] => {
            // `**/` also matches nothing at all, so `docs/**/*.md` takes `docs/a.md`.
            let rest_after_slash = rest.strip_prefix(&['/']).unwrap_or(rest);
            (0..=text.len()).any(|i| {
                matches_from(rest, &text[i..])
                    || (rest.len() != rest_after_slash.len()
                        && matches_from(rest_after_slash, &text[i..]))
            })
        }
        ['*', rest @ ..] => {
            let run = text.iter().take_while(|c| **c != '/').count();
            (0..=run).any(|i| matches_from(rest, &text[i..]))
        }
        ['?', rest @ ..] => matches!(text, [c, tail @ ..] if *c != '/' && matches_from(rest, tail)),
        [p, rest @ ..] => matches!(text, [c, tail @ ..] if c == p && matches_from(rest, tail)),
    }
}

impl Filter {
    /// One value passes: it matches an included pattern (any, when none is included) and no excluded one.
    pub fn admits(&self, value: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| glob_matches(p, value)))
            && !self.exclude.iter().any(|p| glob_matches(p, value))
    }

    /// Labels pass when none of them is excluded and one is included (any set, when none is included).
    pub fn admits_any<'v>(&self, values: impl IntoIterator<Item = &'v str> + Clone) -> bool {
        let excluded = |v: &str| self.exclude.iter().any(|p| glob_matches(p, v));
        let included = |v: &str| self.include.iter().any(|p| glob_matches(p, v));
        !values.clone().into_iter().any(excluded)
            && (self.include.is_empty() || values.into_iter().any(included))
    }

    /// Changed paths pass when at least one of them is included and not excluded: a pull request touching only
    /// excluded paths gets no preview.
    pub fn admits_paths<'v>(&self, paths: impl IntoIterator<Item = &'v str>) -> bool {
        if self.include.is_empty() && self.exclude.is_empty() {
            return true;
        }
        paths.into_iter().any(|p| self.admits(p))
    }

    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_stay_within_a_path_segment_and_double_stars_cross_them() {
        assert!(glob_matches("feature/*", "feature/login"));
        assert!(!glob_matches("feature/*", "feature/a/b"));
        assert!(glob_matches("feature/**", "feature/a/b"));
        assert!(glob_matches("docs/**/*.md", "docs/a.md"));
        assert!(glob_matches("docs/**/*.md", "docs/x/y/a.md"));
        assert!(!glob_matches("docs/**/*.md", "src/a.md"));
        assert!(glob_matches("v?.x", "v1.x"));
        assert!(!glob_matches("v?.x", "v/.x"));
        assert!(glob_matches("main", "main"));
        assert!(!glob_matches("main", "mainline"));
        assert!(glob_matches("*", "anything"));
        assert!(!glob_matches("*", "a/b"));
    }

    fn filter(include: &[&str], exclude: &[&str]) -> Filter {
        Filter {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn labels_need_an_included_one_and_no_excluded_one() {
        let wanted = filter(&["preview"], &[]);
        assert!(wanted.admits_any(["bug", "preview"]));
        assert!(!wanted.admits_any(["bug"]));
        assert!(!wanted.admits_any([]));
        let unwanted = filter(&[], &["no-preview"]);
        assert!(unwanted.admits_any([]));
        assert!(unwanted.admits_any(["bug"]));
        assert!(!unwanted.admits_any(["bug", "no-preview"]));
        let both = filter(&["preview"], &["no-preview"]);
        assert!(!both.admits_any(["preview", "no-preview"]));
    }

    #[test]
    fn a_pull_request_touching_only_excluded_paths_is_left_out() {
        let docs_aside = filter(&[], &["docs/**"]);
        assert!(!docs_aside.admits_paths(["docs/a.md", "docs/b/c.md"]));
        assert!(docs_aside.admits_paths(["docs/a.md", "src/main.rs"]));
        let only_apps = filter(&["apps/**"], &["apps/**/*.md"]);
        assert!(only_apps.admits_paths(["apps/web/main.py"]));
        assert!(!only_apps.admits_paths(["apps/web/README.md", "Makefile"]));
        assert!(filter(&[], &[]).admits_paths([]));
    }

    #[test]
    fn branches_pass_by_include_then_exclude() {
        let branches = filter(&["feature/**", "fix-*"], &["feature/wip-*"]);
        assert!(branches.admits("feature/login"));
        assert!(branches.admits("fix-42"));
        assert!(!branches.admits("feature/wip-x"));
        assert!(!branches.admits("main"));
        assert!(filter(&[], &[]).admits("anything/at/all"));
    }
}
