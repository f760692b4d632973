//! Whether a delivery comes from the forge: checked over the raw body with the project's webhook secret before
//! anything of it is read.
//! - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, `X-GitHub-Event`, `X-GitHub-Delivery`.
//! - Gitea and Forgejo: `X-Gitea-Signature` / `X-Forgejo-Signature` (bare hex HMAC-SHA256), `X-Gitea-Event` /
//!   `X-Forgejo-Event`, `X-Gitea-Delivery` / `X-Forgejo-Delivery`.
//! - GitLab: `X-Gitlab-Token` (the secret itself, compared in constant time), `X-Gitlab-Event`, and
//!   `Idempotency-Key` (or, from older GitLab, `X-Gitlab-Event-UUID`) as the delivery id.

use preview_secrets::Secret;

use crate::Forge;

/// A delivery's headers, looked up by name (case-insensitively, as HTTP has them).
pub trait Headers {
    fn get(&self, name: &str) -> Option<&str>;
}

impl Headers for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// A delivery the forge signed: its id (unique per delivery; a redelivery keeps it) and its event name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub forge: Forge,
    pub delivery: String,
    pub event: String,
}

/// Why a delivery is refused. Its text names the header, never the secret or the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "no `{0}` header: the delivery is not signed (is the webhook's secret set on the forge?)"
    )]
    Unsigned(&'static str),
    #[error("the `{0}` header does not match the body signed with the project's webhook secret")]
    BadSignature(&'static str),
    #[error("no `{0}` header: a {1} delivery names its event and its id")]
    Missing(&'static str, &'static str),
}

/// Checks the delivery's signature (or token) over `body` with `secret`, then reads its id and event.
pub fn authenticate(
    forge: Forge,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    secret: &Secret,
) -> Result<Authenticated, Refusal> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.expose().as_bytes());
    let (event, delivery) = match forge {
        Forge::Github => {
            let header = "X-Hub-Signature-256";
            let signature = headers.get(header).ok_or(Refusal::Unsigned(header))?;
            let tag = signature
                .strip_prefix("sha256=")
                .and_then(preview_secrets::hex::decode)
                .ok_or(Refusal::BadSignature(header))?;
            ring::hmac::verify(&key, body, &tag).map_err(|_| Refusal::BadSignature(header))?;
            (
                required(headers, "X-GitHub-Event", "GitHub")?,
                required(headers, "X-GitHub-Delivery", "GitHub")?,
            )
        }
        Forge::Gitea | Forge::Forgejo => {
            let (signature, event, delivery, name) = if forge == Forge::Gitea {
                (
                    "X-Gitea-Signature",
                    "X-Gitea-Event",
                    "X-Gitea-Delivery",
                    "Gitea",
                )
            } else {
                (
                    "X-Forgejo-Signature",
                    "X-Forgejo-Event",
                    "X-Forgejo-Delivery",
                    "Forgejo",
                )
            };
            let tag = headers.get(signature).ok_or(Refusal::Unsigned(signature))?;
            let tag = preview_secrets::hex::decode(tag).ok_or(Refusal::BadSignature(signature))?;
            ring::hmac::verify(&key, body, &tag).map_err(|_| Refusal::BadSignature(signature))?;
            (
                required(headers, event, name)?,
                required(headers, delivery, name)?,
            )
        }
        Forge::Gitlab => {
            let header = "X-Gitlab-Token";
            let token = headers.get(header).ok_or(Refusal::Unsigned(header))?;
            if !same(token.as_bytes(), secret.expose().as_bytes()) {
                return Err(Refusal::BadSignature(header));
            }
            let delivery = headers
                .get("Idempotency-Key")
                .or_else(|| headers.get("X-Gitlab-Event-UUID"))
                .ok_or(Refusal::Missing("Idempotency-Key", "GitLab"))?;
            (
                required(headers, "X-Gitlab-Event", "GitLab")?,
                delivery.to_owned(),
            )
        }
    };
    Ok(Authenticated {
        forge,
        delivery,
        event,
    })
}

fn required(
    headers: &(impl Headers + ?Sized),
    name: &'static str,
    forge: &'static str,
) -> Result<String, Refusal> {
    headers
        .get(name)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .ok_or(Refusal::Missing(name, forge))
}

/// Equality whose time does not depend on where two values of the same length differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"action":"opened","number":7}"#;

    fn secret() -> Secret {
        Secret::new("It's a Secret to Everybody".to_owned())
    }

    fn signed(body: &[u8]) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret().expose().as_bytes());
        preview_secrets::hex::encode(ring::hmac::sign(&key, body).as_ref())
    }

    #[test]
    fn github_signs_the_raw_body_with_a_prefix() {
        // The example of GitHub's documentation on validating deliveries.
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"It's a Secret to Everybody");
        assert_eq!(
            preview_secrets::hex::encode(ring::hmac::sign(&key, b"Hello, World!").as_ref()),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let signature = format!("sha256={}", signed(BODY));
        let headers: &[(&str, &str)] = &[
            ("x-hub-signature-256", &signature),
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ];
        assert_eq!(
            authenticate(Forge::Github, headers, BODY, &secret()),
            Ok(Authenticated {
                forge: Forge::Github,
                delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned(),
                event: "pull_request".to_owned(),
            })
        );
        // Another body, a bare signature, none at all, another secret.
        let other = br#"{"action":"closed","number":7}"#;
        assert_eq!(
            authenticate(Forge::Github, headers, other, &secret()),
            Err(Refusal::BadSignature("X-Hub-Signature-256"))
        );
        let bare = signed(BODY);
        let headers_bare: &[(&str, &str)] = &[
            ("X-Hub-Signature-256", &bare),
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", "1"),
        ];
        assert!(authenticate(Forge::Github, headers_bare, BODY, &secret()).is_err());
        let unsigned: &[(&str, &str)] = &[
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", "1"),
        ];
        assert_eq!(
            authenticate(Forge::Github, unsigned, BODY, &secret()),
            Err(Refusal::Unsigned("X-Hub-Signature-256"))
        );
        assert!(
            authenticate(
                Forge::Github,
                headers,
                BODY,
                &Secret::new("another".to_owned())
            )
            .is_err()
        );
    }

    #[test]
    fn gitea_and_forgejo_sign_with_bare_hex_under_their_own_names() {
        let signature = signed(BODY);
        let gitea: &[(&str, &str)] = &[
            ("X-Gitea-Signature", &signature),
            ("X-Gitea-Event", "pull_request"),
            ("X-Gitea-Delivery", "d1"),
        ];
        assert_eq!(
            authenticate(Forge::Gitea, gitea, BODY, &secret()).map(|a| a.delivery),
            Ok("d1".to_owned())
        );
        // A Gitea signature is not a Forgejo one.
        assert_eq!(
            authenticate(Forge::Forgejo, gitea, BODY, &secret()),
            Err(Refusal::Unsigned("X-Forgejo-Signature"))
        );
        let forgejo: &[(&str, &str)] = &[
            ("X-Forgejo-Signature", &signature),
            ("X-Forgejo-Event", "pull_request"),
            ("X-Forgejo-Delivery", "f1"),
        ];
        assert_eq!(
            authenticate(Forge::Forgejo, forgejo, BODY, &secret()).map(|a| a.event),
            Ok("pull_request".to_owned())
        );
        let wrong = signed(b"another body");
        let tampered: &[(&str, &str)] = &[
            ("X-Gitea-Signature", &wrong),
            ("X-Gitea-Event", "pull_request"),
            ("X-Gitea-Delivery", "d1"),
        ];
        assert_eq!(
            authenticate(Forge::Gitea, tampered, BODY, &secret()),
            Err(Refusal::BadSignature("X-Gitea-Signature"))
        );
    }

    #[test]
    fn gitlab_sends_the_token_itself_and_an_idempotency_key() {
        let token = secret();
        let headers: &[(&str, &str)] = &[
            ("X-Gitlab-Token", token.expose()),
            ("X-Gitlab-Event", "Merge Request Hook"),
            ("Idempotency-Key", "f5a4e2a6-0b8c-4c54-9d1a-3f1d6a3c8e11"),
        ];
        assert_eq!(
            authenticate(Forge::Gitlab, headers, BODY, &secret()).map(|a| a.event),
            Ok("Merge Request Hook".to_owned())
        );
        let older: &[(&str, &str)] = &[
            ("X-Gitlab-Token", token.expose()),
            ("X-Gitlab-Event", "Merge Request Hook"),
            ("X-Gitlab-Event-UUID", "u1"),
        ];
        assert_eq!(
            authenticate(Forge::Gitlab, older, BODY, &secret()).map(|a| a.delivery),
            Ok("u1".to_owned())
        );
        let wrong: &[(&str, &str)] = &[
            ("X-Gitlab-Token", "It's a Secret to Everybodz"),
            ("X-Gitlab-Event", "Merge Request Hook"),
            ("Idempotency-Key", "k"),
        ];
        assert_eq!(
            authenticate(Forge::Gitlab, wrong, BODY, &secret()),
            Err(Refusal::BadSignature("X-Gitlab-Token"))
        );
        let no_id: &[(&str, &str)] = &[
            ("X-Gitlab-Token", token.expose()),
            ("X-Gitlab-Event", "Merge Request Hook"),
        ];
        assert_eq!(
            authenticate(Forge::Gitlab, no_id, BODY, &secret()),
            Err(Refusal::Missing("Idempotency-Key", "GitLab"))
        );
    }

    #[test]
    fn refusals_name_the_header_and_never_the_secret() {
        for refusal in [
            Refusal::Unsigned("X-Gitlab-Token"),
            Refusal::BadSignature("X-Hub-Signature-256"),
        ] {
            assert!(!refusal.to_string().contains(secret().expose()));
        }
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"ab"));
    }
}
