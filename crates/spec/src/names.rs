//! DNS-safe names: every project, service and environment name ends up in hostnames, Kubernetes object names and
//! database role names, so all of them follow RFC 1123 label rules.

use crate::diagnostic::Sink;
use crate::yaml::Node;

pub(crate) const MAX_LABEL: usize = 63;

/// Why `name` is not a DNS-1123 label, if it is not.
pub(crate) fn dns_label_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".to_owned());
    }
    if name.len() > MAX_LABEL {
        return Some(format!(
            "is {} characters long; the limit is {MAX_LABEL}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(if bad.is_ascii_uppercase() {
            format!("contains the uppercase letter `{bad}`; use lowercase")
        } else {
            format!("contains `{bad}`; use only lowercase letters, digits and `-`")
        });
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some(
            "starts or ends with `-`; it must start and end with a letter or digit".to_owned(),
        );
    }
    None
}

/// Checks a project, service or environment name; `what` is e.g. "service name".
pub(crate) fn check_name(name: &str, what: &str, at: &Node, sink: &mut Sink) -> bool {
    let problem = dns_label_problem(name).or_else(|| {
        // Kubernetes Service names (DNS-1035) must also start with a letter; one rule for every name is simpler.
        (!name.starts_with(|c: char| c.is_ascii_lowercase()))
            .then(|| "must start with a lowercase letter".to_owned())
    });
    match problem {
        Some(problem) => {
            sink.push(
                at.position,
                &at.path,
                format!("`{name}` is not a valid {what}: it {problem} (names are used in hostnames, so they follow DNS label rules)"),
            );
            false
        }
        None => true,
    }
}

/// Why `host` is not a valid hostname or wildcard domain, if it is not. `*.` is allowed as the first label only.
pub(crate) fn hostname_problem(host: &str) -> Option<String> {
    if host.len() > 253 {
        return Some(format!(
            "is {} characters long; a hostname is at most 253",
            host.len()
        ));
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 {
        return Some(
            "has a single label; use a full domain name such as `shop.example.com`".to_owned(),
        );
    }
    for (i, label) in labels.iter().enumerate() {
        if *label == "*" {
            if i > 0 {
                return Some("has `*` beyond the first label; a wildcard may only be the leftmost label (`*.example.com`)".to_owned());
            }
            continue;
        }
        if let Some(problem) = dns_label_problem(label) {
            return Some(format!("has a label `{label}` that {problem}"));
        }
    }
    None
}
