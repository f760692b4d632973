//! The query of a list request: which page and how large, within the forge's bounds and the size a test forces,
//! and the check that every parameter is one the endpoint takes, with the value `preview` means.

use std::ops::Range;

use super::http::Request;
use super::{Dialect, Routed};

#[derive(Debug, Clone, Copy)]
pub(super) struct Paging {
    /// `per_page`, or Gitea's `limit`.
    pub size_param: &'static str,
    pub default: usize,
    pub max: usize,
}

pub(super) struct Page {
    pub number: usize,
    pub size: usize,
    pub total: usize,
    /// The last page's number, 1 when there is nothing to list.
    pub last: usize,
}

impl Page {
    pub fn of(
        paging: Paging,
        request: &Request,
        forced: Option<usize>,
        total: usize,
        problems: &mut Vec<String>,
    ) -> Page {
        let mut read = |name: &str, default: usize, what: &str| match request.param(name) {
            None => default,
            Some(value) => match value.parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    problems.push(format!("{name}={value} is not {what}"));
                    default
                }
            },
        };
        let number = read("page", 1, "a page number (1, 2, …)");
        let mut size = read(paging.size_param, paging.default, "a page size");
        if size > paging.max {
            problems.push(format!(
                "{}={size} is over the maximum of {}, which the forge answers instead",
                paging.size_param, paging.max
            ));
            size = paging.max;
        }
        let size = forced.map_or(size, |forced| size.min(forced));
        Page {
            number,
            size,
            total,
            last: total.div_ceil(size).max(1),
        }
    }

    /// All `total` items on one page, whatever the query asked.
    pub fn whole(total: usize) -> Page {
        Page {
            number: 1,
            size: total.max(1),
            total,
            last: 1,
        }
    }

    pub fn range(&self) -> Range<usize> {
        let start = (self.number - 1).saturating_mul(self.size).min(self.total);
        start..start.saturating_add(self.size).min(self.total)
    }

    pub fn previous(&self) -> Option<usize> {
        (self.number > 1).then(|| self.number - 1)
    }

    pub fn next(&self) -> Option<usize> {
        (self.number < self.last).then_some(self.number + 1)
    }
}

/// Every query parameter must be one the endpoint takes, with the value `preview` means, and given once.
pub(super) fn check_query(
    dialect: &dyn Dialect,
    routed: &Routed,
    request: &Request,
    problems: &mut Vec<String>,
) {
    let paging = dialect.paging();
    for (i, (name, value)) in request.query.iter().enumerate() {
        if request.query[..i]
            .iter()
            .any(|(earlier, _)| earlier == name)
        {
            problems.push(format!("the query parameter `{name}` is given twice"));
            continue;
        }
        let known = routed
            .required
            .iter()
            .chain(&routed.echoed)
            .chain(&routed.allowed)
            .find(|(known, _)| known == name);
        match known {
            Some((_, wanted)) if wanted == value => {}
            Some((_, wanted)) => {
                problems.push(format!("{name}={value} where {name}={wanted} is meant"))
            }
            None if routed.endpoint.paged() && (name == "page" || name == paging.size_param) => {}
            None => problems.push(format!(
                "`{name}` is not a query parameter this endpoint is used with"
            )),
        }
    }
    for (name, wanted) in &routed.required {
        if request.param(name).is_none() {
            problems.push(format!(
                "no {name}={wanted} (the forge's default may differ)"
            ));
        }
    }
}
