//! `labelSelector` and `fieldSelector`: parsed from a query, matched against objects. Label selectors take the
//! equality forms (`k=v`, `k==v`, `k!=v`), existence (`k`, `!k`) and sets (`k in (a,b)`, `k notin (a,b)`); field
//! selectors take `=`, `==` and `!=` on the fields each kind supports, and refuse others as the server does.

use serde_json::Value;

use super::status::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<LabelSelector, ApiError> {
        let requirements = split_outside_parentheses(text)
            .into_iter()
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(parse_requirement)
            .collect::<Result<_, _>>()?;
        Ok(LabelSelector { requirements })
    }

    /// The selector of a workload's `spec.selector` (`matchLabels` and `matchExpressions`).
    pub fn from_spec(selector: &Value) -> LabelSelector {
        let mut requirements: Vec<Requirement> = selector["matchLabels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| Requirement::Equals(k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        for expression in selector["matchExpressions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let key = expression["key"].as_str().unwrap_or_default().to_owned();
            let values: Vec<String> = expression["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            requirements.push(match expression["operator"].as_str() {
                Some("NotIn") => Requirement::NotIn(key, values),
                Some("Exists") => Requirement::Exists(key),
                Some("DoesNotExist") => Requirement::Absent(key),
                _ => Requirement::In(key, values),
            });
        }
        LabelSelector { requirements }
    }

    /// Whether labels (`metadata.labels` of an object, or a map) satisfy every requirement.
    pub fn matches_labels(&self, labels: &Value) -> bool {
        let label = |key: &str| labels.get(key).and_then(Value::as_str);
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::Absent(k) => label(k).is_none(),
            Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
        })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.matches_labels(&object["metadata"]["labels"])
    }
}

fn split_outside_parentheses(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<Requirement, ApiError> {
    let invalid = || ApiError::bad_request(format!("unable to parse requirement: {part:?}"));
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::Absent(key.trim().to_owned()));
    }
    for (operator, set_in) in [(" notin ", false), (" in ", true)] {
        if let Some((key, values)) = part.split_once(operator) {
            let values = values
                .trim()
                .strip_prefix('(')
                .and_then(|v| v.strip_suffix(')'))
                .ok_or_else(invalid)?;
            let values: Vec<String> = values.split(',').map(|v| v.trim().to_owned()).collect();
            let key = key.trim().to_owned();
            return Ok(if set_in {
                Requirement::In(key, values)
            } else {
                Requirement::NotIn(key, values)
            });
        }
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    if part.contains(|c: char| c.is_whitespace() || "()<>".contains(c)) {
        return Err(invalid());
    }
    Ok(Requirement::Exists(part.to_owned()))
}

/// A parsed field selector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector {
    /// (field path, value, equal)
    terms: Vec<(String, String, bool)>,
}

impl FieldSelector {
    /// Parses `text` for objects of `plural`; a field the kind does not support is refused.
    pub fn parse(text: &str, plural: &str) -> Result<FieldSelector, ApiError> {
        let mut terms = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, v, true)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{text}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            if !supported(plural, field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            terms.push((field.to_owned(), value.trim().to_owned(), equal));
        }
        Ok(FieldSelector { terms })
    }

    /// `metadata.name=<name>`, for a watch of one object.
    pub fn name(name: &str) -> FieldSelector {
        FieldSelector {
            terms: vec![("metadata.name".to_owned(), name.to_owned(), true)],
        }
    }

    pub fn and(mut self, other: FieldSelector) -> FieldSelector {
        self.terms.extend(other.terms);
        self
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|(field, value, equal)| {
            let actual = field
                .split('.')
                .try_fold(object, |node, step| node.get(step))
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            (actual == *value) == *equal
        })
    }
}

/// The fields the server lets a kind be selected by.
fn supported(plural: &str, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    let extra: &[&str] = match plural {
        "events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "pods" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "namespaces" => &["status.phase"],
        "secrets" => &["type"],
        "replicasets" => &["status.replicas"],
        "jobs" => &["status.successful"],
        _ => &[],
    };
    extra.contains(&field)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(selector: &str, labels: Value, expected: bool) {
        let parsed = LabelSelector::parse(selector).expect("a selector");
        assert_eq!(
            parsed.matches(&json!({ "metadata": { "labels": labels } })),
            expected,
            "{selector}"
        );
    }

    #[test]
    fn label_selectors() {
        check("app=web", json!({"app": "web"}), true);
        check("app==web,tier", json!({"app": "web"}), false);
        check("app!=web", json!({}), true);
        check("!app", json!({"app": "x"}), false);
        check(
            "app in (a, web),tier notin (db)",
            json!({"app": "web", "tier": "front"}),
            true,
        );
        check("", json!({}), true);
    }

    #[test]
    fn field_selectors_refuse_unknown_fields() {
        let pod = json!({ "metadata": { "name": "a" }, "status": { "phase": "Running" } });
        let selector = FieldSelector::parse("status.phase=Running,metadata.name!=b", "pods")
            .expect("a selector");
        assert!(selector.matches(&pod));
        let refused = FieldSelector::parse("spec.replicas=1", "deployments").expect_err("refused");
        assert_eq!(refused.message, "field label not supported: spec.replicas");
    }
}
