//! Which host a request is for. A request that names two hosts — two `Host` headers, or a `Host` that differs
//! from its authority (HTTP/2's `:authority`, or an HTTP/1.1 absolute URI) — is refused: the gateway would route by
//! one and the app might believe the other.

use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};

use crate::routes::normalize_host;

/// Why a request names no single host; each is a 400 with this text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HostProblem {
    Missing,
    Repeated,
    Conflicting,
}

impl HostProblem {
    pub(crate) fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }

    pub(crate) fn explanation(&self) -> &'static str {
        match self {
            HostProblem::Missing => "The request names no host, so no environment can answer it.",
            HostProblem::Repeated => {
                "The request has more than one <code>Host</code> header; send exactly one."
            }
            HostProblem::Conflicting => {
                "The request's <code>Host</code> header names another host than its URL; send one host."
            }
        }
    }
}

/// The one host `request` names: its `Host` header, else its authority.
pub(crate) fn request_host<B>(request: &Request<B>) -> Result<HeaderValue, HostProblem> {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(HostProblem::Repeated);
    }
    let authority = request.uri().authority();
    let host = match (host, authority) {
        (Some(host), None) => host.clone(),
        (None, Some(authority)) => {
            HeaderValue::from_str(authority.as_str()).map_err(|_| HostProblem::Missing)?
        }
        (Some(host), Some(authority)) => {
            let same = host.to_str().is_ok_and(|h| {
                h.eq_ignore_ascii_case(authority.as_str())
                    || normalize_host(h) == normalize_host(authority.as_str())
            });
            if !same {
                return Err(HostProblem::Conflicting);
            }
            host.clone()
        }
        (None, None) => return Err(HostProblem::Missing),
    };
    if host.to_str().is_err() || host.is_empty() {
        return Err(HostProblem::Missing);
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(uri: &str, hosts: &[&str], expected: Result<&str, HostProblem>) {
        let mut builder = Request::get(uri);
        for host in hosts {
            builder = builder.header(header::HOST, *host);
        }
        let request = builder.body(()).expect("request");
        assert_eq!(
            request_host(&request)
                .as_ref()
                .map(|h| h.to_str().expect("text")),
            expected.as_ref().map(|h| *h),
            "{uri} {hosts:?}"
        );
    }

    #[test]
    fn a_request_names_exactly_one_host() {
        check("/", &["web.shop.localhost"], Ok("web.shop.localhost"));
        check("https://web.shop.localhost/", &[], Ok("web.shop.localhost"));
        check(
            "https://web.shop.localhost:8443/",
            &["WEB.shop.localhost:8443"],
            Ok("WEB.shop.localhost:8443"),
        );
        check(
            "https://web.shop.localhost/",
            &["web.shop.localhost."],
            Ok("web.shop.localhost."),
        );
        check("/", &[], Err(HostProblem::Missing));
        check("/", &[""], Err(HostProblem::Missing));
        check(
            "/",
            &["web.shop.localhost", "admin.shop.localhost"],
            Err(HostProblem::Repeated),
        );
        check(
            "/",
            &["web.shop.localhost", "web.shop.localhost"],
            Err(HostProblem::Repeated),
        );
        check(
            "https://admin.shop.localhost/",
            &["web.shop.localhost"],
            Err(HostProblem::Conflicting),
        );
    }
}
