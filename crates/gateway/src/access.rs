//! Access protection of a route: a shared token (header, cookie, or once in the query, which sets the cookie) or
//! HTTP basic authentication. The gateway holds only SHA-256 digests of the credentials; the cookie holds a value
//! derived from the token's digest and the host, not the token.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, StatusCode};

/// What a protected route accepts; digests, never the credentials themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// SHA-256 of the shared token.
    Token { digest: [u8; 32] },
    /// SHA-256 of the base64 of `user:password`, as an `Authorization: Basic` header carries it.
    Basic { digest: [u8; 32] },
}

pub const TOKEN_HEADER: &str = "x-preview-token";
pub const TOKEN_COOKIE: &str = "preview_token";

/// SHA-256 of `text`, as kept in [`Access`].
pub fn digest(text: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(digest.as_ref());
    bytes
}

/// The base64 of `user:password`, for [`Access::Basic`].
pub fn basic_credentials(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{user}:{password}").into_bytes();
    let mut encoded = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                encoded.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                encoded.push('=');
            }
        }
    }
    encoded
}

pub(crate) enum Verdict {
    Allow,
    /// Allowed, but the token also came in the query: send the browser to the URL without it, so that the page
    /// (a pull request's code) cannot read it from the address bar or a `Referer`.
    Redirect {
        location: String,
    },
    /// The token came in the query: set the cookie and send the browser to the same URL without it.
    SetCookie {
        location: String,
        cookie: HeaderValue,
    },
    Deny {
        status: StatusCode,
        message: &'static str,
    },
}

/// Decides whether `request` for `host` (normalised) may pass. Every credential meant for the gateway — the token
/// header, the cookie, the token in the query, valid or not — is removed from the request, so that an app (a pull
/// request's code) never sees one it could log.
pub(crate) fn check<B>(
    access: &Access,
    request: &mut Request<B>,
    host: &str,
    scheme: &str,
) -> Verdict {
    match access {
        Access::Basic { digest: expected } => {
            let presented = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Basic "))
                .map(|v| digest(v.trim()));
            if presented.as_ref() == Some(expected) {
                request.headers_mut().remove(header::AUTHORIZATION);
                Verdict::Allow
            } else {
                Verdict::Deny {
                    status: StatusCode::UNAUTHORIZED,
                    message: "This preview is protected: sign in with the user name and password its team shared.",
                }
            }
        }
        Access::Token { digest: expected } => {
            let headers = request.headers_mut();
            let by_header = headers
                .remove(TOKEN_HEADER)
                .is_some_and(|v| v.to_str().is_ok_and(|token| digest(token) == *expected));
            // Any of them: a sibling preview's page may set a cookie of the same name for a parent domain.
            let by_cookie = take_cookies(headers)
                .iter()
                .any(|value| cookie_matches(expected, host, value));
            strip_token_from_referer(headers);
            let in_query = take_query_token(request.uri());
            if by_header || by_cookie {
                if let Some((_, rest)) = &in_query {
                    let method = request.method();
                    if method == hyper::Method::GET || method == hyper::Method::HEAD {
                        return Verdict::Redirect {
                            location: same_site_location(request.uri().path(), rest),
                        };
                    }
                    without_query_token(request, rest);
                }
                return Verdict::Allow;
            }
            match in_query {
                Some((token, rest)) if digest(&token) == *expected => {
                    let location = same_site_location(request.uri().path(), &rest);
                    let secure = if scheme == "https" { "; Secure" } else { "" };
                    match HeaderValue::from_str(&format!(
                        "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax{secure}",
                        cookie_value(expected, host)
                    )) {
                        Ok(cookie) => Verdict::SetCookie { location, cookie },
                        Err(_) => Verdict::Deny {
                            status: StatusCode::BAD_REQUEST,
                            message: "The host name cannot be kept in a cookie.",
                        },
                    }
                }
                _ => Verdict::Deny {
                    status: StatusCode::UNAUTHORIZED,
                    message: "This preview is protected: open it once with <code>?preview_token=…</code> (the token its team shared), or send the token in the <code>X-Preview-Token</code> header.",
                },
            }
        }
    }
}

/// The cookie's value for `host`: HMAC-SHA256 of the host keyed by the token's digest, in hexadecimal. It opens
/// only that host, and the token cannot be found from it; the gateway never has to keep or see the token to check it.
fn cookie_value(token_digest: &[u8; 32], host: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token_digest);
    let tag = ring::hmac::sign(&key, host.as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `value` is the cookie for `host`, compared in constant time.
fn cookie_matches(token_digest: &[u8; 32], host: &str, value: &[u8]) -> bool {
    let Some(tag) = from_hex(value) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token_digest);
    ring::hmac::verify(&key, host.as_bytes(), &tag).is_ok()
}

fn from_hex(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks(2)
        .map(|pair| {
            let digit = |b: u8| (b as char).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

const COOKIE_PREFIX: &[u8] = b"preview_token=";

/// Removes every `preview_token` cookie from the `Cookie` headers (keeping the others); their values.
fn take_cookies(headers: &mut HeaderMap) -> Vec<Vec<u8>> {
    let present = headers.get_all(header::COOKIE).iter().any(|v| {
        v.as_bytes()
            .windows(COOKIE_PREFIX.len())
            .any(|w| w == COOKIE_PREFIX)
    });
    if !present {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut kept: Vec<u8> = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        for pair in value.as_bytes().split(|b| *b == b';') {
            let pair = pair.trim_ascii();
            if let Some(value) = pair.strip_prefix(COOKIE_PREFIX) {
                found.push(value.to_vec());
            } else if !pair.is_empty() {
                if !kept.is_empty() {
                    kept.extend_from_slice(b"; ");
                }
                kept.extend_from_slice(pair);
            }
        }
    }
    headers.remove(header::COOKIE);
    if let Ok(value) = HeaderValue::from_bytes(&kept)
        && !kept.is_empty()
    {
        headers.insert(header::COOKIE, value);
    }
    found
}

/// A `Referer` naming a URL with the token in its query (the page the visitor came from) loses the token.
fn strip_token_from_referer(headers: &mut HeaderMap) {
    let Some(value) = headers.get(header::REFERER) else {
        return;
    };
    if !value
        .as_bytes()
        .windows(COOKIE_PREFIX.len())
        .any(|w| w == COOKIE_PREFIX)
    {
        return;
    }
    // Not text: it cannot be taken apart safely, so it goes.
    let Ok(referer) = value.to_str().map(str::to_owned) else {
        headers.remove(header::REFERER);
        return;
    };
    let (before, fragment) = match referer.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (referer.as_str(), None),
    };
    let cleaned = match before.split_once('?') {
        Some((base, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| !pair.is_empty() && !pair.starts_with("preview_token="))
                .collect();
            let mut url = base.to_owned();
            if !kept.is_empty() {
                url.push('?');
                url.push_str(&kept.join("&"));
            }
            url
        }
        None => before.to_owned(),
    };
    let cleaned = match fragment {
        Some(fragment) if !fragment.contains("preview_token=") => format!("{cleaned}#{fragment}"),
        _ => cleaned,
    };
    match HeaderValue::from_str(&cleaned) {
        Ok(value) if !cleaned.contains("preview_token=") => {
            headers.insert(header::REFERER, value);
        }
        _ => {
            headers.remove(header::REFERER);
        }
    }
}

/// The token in `uri`'s query (decoded) and the rest of the query without it, when it has one.
fn take_query_token(uri: &hyper::Uri) -> Option<(String, String)> {
    let query = uri.query()?;
    if !query.contains("preview_token=") {
        return None;
    }
    let mut token = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| match pair.strip_prefix("preview_token=") {
            Some(value) => {
                token = Some(percent_decode(value));
                false
            }
            None => true,
        })
        .collect();
    Some((token?, rest.join("&")))
}

/// Replaces `request`'s query by `rest` (the query without the token).
fn without_query_token<B>(request: &mut Request<B>, rest: &str) {
    let path = request.uri().path();
    let path_and_query = if rest.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{rest}")
    };
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    if let Ok(uri) = hyper::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}

/// Where to send a browser after the token left the URL: the same path on the same site. A path that begins with
/// two slashes (or a backslash, which browsers read as one) would be another site's address (`//evil.example/`),
/// so the path gets exactly one leading slash.
fn same_site_location(path: &str, query: &str) -> String {
    let path = path.trim_start_matches(['/', '\\']);
    if query.is_empty() {
        format!("/{path}")
    } else {
        format!("/{path}?{query}")
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_standard_base64() {
        assert_eq!(
            basic_credentials("Aladdin", "open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic_credentials("a", "b"), "YTpi");
        assert_eq!(basic_credentials("ab", "c"), "YWI6Yw==");
    }

    #[test]
    fn query_tokens_are_decoded() {
        assert_eq!(
            percent_decode("with%20space+plus%2Fslash"),
            "with space plus/slash"
        );
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn the_cookie_opens_its_own_host_only_and_is_not_the_token() {
        let token = digest("s3cret token");
        let value = cookie_value(&token, "web-pr-1.shop.localhost");
        assert_eq!(value.len(), 64);
        assert!(!value.contains("s3cret"));
        assert!(cookie_matches(
            &token,
            "web-pr-1.shop.localhost",
            value.as_bytes()
        ));
        assert!(!cookie_matches(
            &token,
            "api-pr-1.shop.localhost",
            value.as_bytes()
        ));
        assert!(!cookie_matches(
            &digest("other"),
            "web-pr-1.shop.localhost",
            value.as_bytes()
        ));
        assert!(!cookie_matches(
            &token,
            "web-pr-1.shop.localhost",
            b"s3cret%20token"
        ));
    }

    #[test]
    fn redirects_stay_on_the_site() {
        for (path, query, expected) in [
            ("/cart", "item=3", "/cart?item=3"),
            ("/", "", "/"),
            ("//evil.example/", "", "/evil.example/"),
            ("///evil.example", "a=1", "/evil.example?a=1"),
            ("/\\evil.example", "", "/evil.example"),
        ] {
            assert_eq!(same_site_location(path, query), expected, "{path}");
        }
    }

    #[test]
    fn the_token_cookie_is_taken_out_and_the_others_kept() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; preview_token=abcd; b=2"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("c=3; preview_token=efgh"),
        );
        assert_eq!(
            take_cookies(&mut headers),
            vec![b"abcd".to_vec(), b"efgh".to_vec()]
        );
        assert_eq!(headers[header::COOKIE], "a=1; b=2; c=3");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("preview_token=abcd"),
        );
        assert_eq!(take_cookies(&mut headers), vec![b"abcd".to_vec()]);
        assert!(!headers.contains_key(header::COOKIE));
    }

    #[test]
    fn the_token_is_taken_out_of_a_referer() {
        for (referer, expected) in [
            (
                "https://web-qa.shop.localhost/a?preview_token=s3cret&x=1#top",
                Some("https://web-qa.shop.localhost/a?x=1#top"),
            ),
            (
                "https://web-qa.shop.localhost/?preview_token=s3cret",
                Some("https://web-qa.shop.localhost/"),
            ),
            ("https://x/#preview_token=s3cret", Some("https://x/")),
            ("https://x/?a=1", Some("https://x/?a=1")),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::REFERER, HeaderValue::from_static(referer));
            strip_token_from_referer(&mut headers);
            assert_eq!(
                headers
                    .get(header::REFERER)
                    .map(|v| v.to_str().expect("text")),
                expected,
                "{referer}"
            );
        }
    }
}
