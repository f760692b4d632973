//! Access protection of a route: a shared token (header, cookie, or once in the query, which sets the cookie) or
//! HTTP basic authentication. The gateway holds only SHA-256 digests of the credentials.

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
    /// The token came in the query: set it as a cookie and send the browser to the same URL without it.
    SetCookie {
        location: String,
        cookie: HeaderValue,
    },
    Deny {
        status: StatusCode,
        message: &'static str,
    },
}

/// Decides whether `request` may pass; credentials the gateway consumed are removed from it.
pub(crate) fn check<B>(access: &Access, request: &mut Request<B>, scheme: &str) -> Verdict {
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
            if let Some(token) = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok())
                && digest(token) == *expected
            {
                headers.remove(TOKEN_HEADER);
                return Verdict::Allow;
            }
            if cookie(headers).is_some_and(|token| digest(&token) == *expected) {
                return Verdict::Allow;
            }
            let (path, query) = match request.uri().path_and_query() {
                Some(pq) => (pq.path().to_owned(), pq.query().unwrap_or("").to_owned()),
                None => ("/".to_owned(), String::new()),
            };
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
            match token {
                Some(token) if digest(&token) == *expected => {
                    let location = if rest.is_empty() {
                        path
                    } else {
                        format!("{path}?{}", rest.join("&"))
                    };
                    let secure = if scheme == "https" { "; Secure" } else { "" };
                    match HeaderValue::from_str(&format!(
                        "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax{secure}",
                        percent_encode(&token)
                    )) {
                        Ok(cookie) => Verdict::SetCookie { location, cookie },
                        Err(_) => Verdict::Deny {
                            status: StatusCode::BAD_REQUEST,
                            message: "The token cannot be kept in a cookie.",
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

/// The `preview_token` cookie's value, decoded.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("preview_token="))
        .map(percent_decode)
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

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
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
    fn tokens_survive_the_cookie_round_trip() {
        for token in ["plain", "with space+plus/slash=equals%", "ünïcode"] {
            assert_eq!(percent_decode(&percent_encode(token)), token);
        }
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
