//! The dashboard's sessions: signing in exchanges the API token for a session cookie (HttpOnly, SameSite=Strict,
//! Secure) and a CSRF token the page sends with every change. The daemon keeps only a digest of each session id
//! (a store or log that leaks shows no usable cookie), in memory: a restart signs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

/// The cookie's name: the `__Host-` prefix makes browsers keep it only as set here (Secure, for this host alone,
/// path `/`), so a preview served under a parent domain cannot set one of the same name for it.
pub(crate) const COOKIE: &str = "__Host-preview_session";
/// The header a signed-in page sends its CSRF token in with each change.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts.
pub(crate) const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// At most this many sessions at once; signing in past it ends the oldest.
const MAX_SESSIONS: usize = 256;

struct Session {
    csrf: String,
    until: Instant,
}

#[derive(Default)]
pub(crate) struct Sessions {
    by_digest: Mutex<HashMap<String, Session>>,
}

/// A signed-in browser, as a request carries it.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    pub csrf: String,
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buffer)
        .expect("the system's random source works");
    preview_secrets::hex::encode(&buffer)
}

fn digest(id: &str) -> String {
    crate::auth::sha256_hex(id)
}

impl Sessions {
    /// A new session: its id (for the cookie) and its CSRF token.
    pub(crate) fn open(&self) -> (String, String) {
        let (id, csrf) = (random_hex(32), random_hex(32));
        let mut sessions = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        sessions.retain(|_, s| s.until > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.until)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            digest(&id),
            Session {
                csrf: csrf.clone(),
                until: now + LIFETIME,
            },
        );
        (id, csrf)
    }

    /// The session a cookie's id names, while it lasts.
    pub(crate) fn find(&self, id: &str) -> Option<Signed> {
        let sessions = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
        let session = sessions.get(&digest(id))?;
        (session.until > Instant::now()).then(|| Signed {
            csrf: session.csrf.clone(),
        })
    }

    /// The session one of the request's cookies names (a browser may send several of the name; any that is a
    /// session counts), with its id.
    pub(crate) fn find_in(&self, headers: &axum::http::HeaderMap) -> Option<Signed> {
        cookie_ids(headers).find_map(|id| self.find(&id))
    }

    /// The id of the session one of the request's cookies names.
    pub(crate) fn id_in(&self, headers: &axum::http::HeaderMap) -> Option<String> {
        cookie_ids(headers).find(|id| self.find(id).is_some())
    }

    pub(crate) fn close(&self, id: &str) {
        let mut sessions = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
        sessions.remove(&digest(id));
    }
}

/// The values of the request's session cookies.
fn cookie_ids(headers: &axum::http::HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE && !value.is_empty()).then(|| value.to_owned())
        })
}

/// The `Set-Cookie` value for a session id (`None`: one that ends the session in the browser).
pub(crate) fn set_cookie(id: Option<&str>) -> String {
    match id {
        Some(id) => format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age={}",
            LIFETIME.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_id_only_and_ends_when_closed() {
        let sessions = Sessions::default();
        let (id, csrf) = sessions.open();
        assert_eq!(id.len(), 64);
        assert_eq!(sessions.find(&id).map(|s| s.csrf), Some(csrf.clone()));
        assert!(sessions.find(&csrf).is_none());
        assert!(sessions.find(&id[..63]).is_none());
        // Only a digest is kept.
        let kept = sessions.by_digest.lock().expect("lock");
        assert!(!kept.contains_key(&id));
        drop(kept);
        sessions.close(&id);
        assert!(sessions.find(&id).is_none());
    }

    #[test]
    fn the_session_is_found_among_other_cookies_of_the_name() {
        let sessions = Sessions::default();
        let (id, csrf) = sessions.open();
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            format!("a=b; __Host-preview_session=planted; __Host-preview_session={id}; c=d")
                .parse()
                .expect("header"),
        );
        assert_eq!(sessions.find_in(&headers).map(|s| s.csrf), Some(csrf));
        assert_eq!(sessions.id_in(&headers), Some(id));
        assert!(
            set_cookie(Some("x"))
                .starts_with("__Host-preview_session=x; Path=/; HttpOnly; SameSite=Strict; Secure")
        );
    }
}
