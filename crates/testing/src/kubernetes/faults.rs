//! What tests see of the traffic and what they break in it: every request as received, the failures to answer the
//! next matching request with, and the delays to hold matching requests for.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::request::Request;

/// A request as the server received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The decoded query parameters, in the order sent.
    pub query: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub body: RecordedBody,
}

/// A request's body: JSON when it parses as JSON, text otherwise.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordedBody {
    Empty,
    Json(Value),
    Text(String),
}

impl Recorded {
    pub(crate) fn of(request: &Request) -> Recorded {
        let body = if request.body.is_empty() {
            RecordedBody::Empty
        } else {
            match serde_json::from_slice::<Value>(&request.body) {
                Ok(json) => RecordedBody::Json(json),
                Err(_) => RecordedBody::Text(String::from_utf8_lossy(&request.body).into_owned()),
            }
        };
        Recorded {
            method: request.method.clone(),
            path: request.path.clone(),
            query: request.query.clone(),
            content_type: request.content_type.clone(),
            body,
        }
    }

    /// The query parameter `name` (the first, if repeated).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The query parameters as a map (the last value of a repeated one).
    pub fn query_map(&self) -> BTreeMap<String, String> {
        self.query.iter().cloned().collect()
    }

    /// The body, when it was JSON.
    pub fn json(&self) -> Option<&Value> {
        match &self.body {
            RecordedBody::Json(value) => Some(value),
            _ => None,
        }
    }
}

/// Which requests a fault applies to: the method, and a piece of the path (with its query).
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    pub method: String,
    pub path_contains: String,
}

impl Matcher {
    fn matches(&self, request: &Request) -> bool {
        let target = if request.query.is_empty() {
            request.path.clone()
        } else {
            let query: Vec<String> = request
                .query
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("{}?{}", request.path, query.join("&"))
        };
        self.method.eq_ignore_ascii_case(&request.method) && target.contains(&self.path_contains)
    }
}

/// What happens to the one write (a request that may change something: not a read, not a dry run, not an access
/// review) a test picked by its number: as a process that stops dead sees it, or as a failing server answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFault {
    /// Answered `500 InternalError`; nothing changes.
    FailBefore,
    /// Carried out, then answered `500 InternalError`.
    FailAfter,
    /// Never answered; nothing changes (the caller stopped before it was sent).
    HoldBefore,
    /// Carried out, never answered (the caller stopped before it heard back).
    HoldAfter,
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Each answers one request, then is gone.
    failures: Vec<(Matcher, u16, String)>,
    /// Each holds every matching request.
    delays: Vec<(Matcher, Duration)>,
    /// The write counted so far, and the one a fault is set for.
    pub writes: u64,
    pub write_fault: Option<(u64, WriteFault)>,
}

impl Faults {
    pub fn fail_next(&mut self, matcher: Matcher, code: u16, reason: &str) {
        self.failures.push((matcher, code, reason.to_owned()));
    }

    pub fn delay(&mut self, matcher: Matcher, duration: Duration) {
        self.delays.push((matcher, duration));
    }

    /// The failure to answer `request` with, used up.
    pub fn take_failure(&mut self, request: &Request) -> Option<(u16, String)> {
        let index = self
            .failures
            .iter()
            .position(|(m, _, _)| m.matches(request))?;
        let (_, code, reason) = self.failures.remove(index);
        Some((code, reason))
    }

    /// How long to hold `request`.
    pub fn delay_for(&self, request: &Request) -> Duration {
        self.delays
            .iter()
            .filter(|(m, _)| m.matches(request))
            .map(|(_, d)| *d)
            .sum()
    }

    pub fn clear(&mut self) {
        self.failures.clear();
        self.delays.clear();
        self.write_fault = None;
    }

    /// Counts `request` if it is a write, and the fault set for it if it is the one.
    pub fn count_write(&mut self, request: &Request) -> Option<WriteFault> {
        let write = request.method != "GET"
            && !request.query.iter().any(|(k, _)| k == "dryRun")
            && !request.path.contains("selfsubjectaccessreviews");
        if !write {
            return None;
        }
        self.writes += 1;
        match self.write_fault {
            Some((at, fault)) if at == self.writes => Some(fault),
            _ => None,
        }
    }
}
