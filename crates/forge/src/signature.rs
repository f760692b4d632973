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

/// A delivery the forge signed: its id (unique per delivery; a redelivery keeps it), when it sent one, and its
/// event name (empty when it sent none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub forge: Forge,
    pub delivery: Option<String>,
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
}

/// The headers that may authenticate a delivery of any forge: a request with none of them is refused before
/// anything else is looked at.
pub const SIGNATURE_HEADERS: &[&str] = &[
    "X-Hub-Signature-256",
    "X-Gitea-Signature",
    "X-Forgejo-Signature",
    "X-Gitlab-Token",
];

/// Checks the delivery's signature (or token) over `body` with `secret`, then reads its id and event. Gitea and
/// Forgejo are read under either's header names (Forgejo sends both).
pub fn authenticate(
    forge: Forge,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    secret: &Secret,
) -> Result<Authenticated, Refusal> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.expose().as_bytes());
    let present = |name: &'static str| headers.get(name).filter(|v| !v.is_empty());
    let verify = |header: &'static str, tag: Option<Vec<u8>>| match tag {
        Some(tag) if ring::hmac::verify(&key, body, &tag).is_ok() => Ok(()),
        _ => Err(Refusal::BadSignature(header)),
    };
    let (event, delivery) = match forge {
        Forge::Github => {
            let header = "X-Hub-Signature-256";
            let signature = present(header).ok_or(Refusal::Unsigned(header))?;
            verify(
                header,
                signature
                    .strip_prefix("sha256=")
                    .and_then(preview_secrets::hex::decode),
            )?;
            (present("X-GitHub-Event"), present("X-GitHub-Delivery"))
        }
        Forge::Gitea | Forge::Forgejo => {
            let (signature, prefix) =
                match (present("X-Forgejo-Signature"), present("X-Gitea-Signature")) {
                    (Some(signature), _) => (signature, "X-Forgejo"),
                    (None, Some(signature)) => (signature, "X-Gitea"),
                    (None, None) => {
                        return Err(Refusal::Unsigned(if forge == Forge::Gitea {
                            "X-Gitea-Signature"
                        } else {
                            "X-Forgejo-Signature"
                        }));
                    }
                };
            let header = if prefix == "X-Forgejo" {
                "X-Forgejo-Signature"
            } else {
                "X-Gitea-Signature"
            };
            verify(header, preview_secrets::hex::decode(signature))?;
            let (event, delivery) = if prefix == "X-Forgejo" {
                ("X-Forgejo-Event", "X-Forgejo-Delivery")
            } else {
                ("X-Gitea-Event", "X-Gitea-Delivery")
            };
            (present(event), present(delivery))
        }
        Forge::Gitlab => {
            let header = "X-Gitlab-Token";
            let token = present(header).ok_or(Refusal::Unsigned(header))?;
            // Compared as MACs under one key: in constant time, whatever the lengths.
            let expected = ring::hmac::sign(&key, secret.expose().as_bytes());
            if ring::hmac::verify(&key, token.as_bytes(), expected.as_ref()).is_err() {
                return Err(Refusal::BadSignature(header));
            }
            (
                present("X-Gitlab-Event"),
                present("Idempotency-Key").or_else(|| present("X-Gitlab-Event-UUID")),
            )
        }
    };
    Ok(Authenticated {
        forge,
        delivery: delivery.map(str::to_owned),
        event: event.unwrap_or_default().to_owned(),
    })
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
                delivery: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned()),
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
        assert_eq!(
            authenticate(Forge::Github, headers_bare, BODY, &secret()),
            Err(Refusal::BadSignature("X-Hub-Signature-256"))
        );
        let unsigned: &[(&str, &str)] = &[
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", "1"),
        ];
        assert_eq!(
            authenticate(Forge::Github, unsigned, BODY, &secret()),
            Err(Refusal::Unsigned("X-Hub-Signature-256"))
        );
        assert_eq!(
            authenticate(
                Forge::Github,
                headers,
                BODY,
                &Secret::new("another".to_owned())
            ),
            Err(Refusal::BadSignature("X-Hub-Signature-256"))
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
            Ok(Some("d1".to_owned()))
        );
        // Forgejo sends Gitea's names too; a Gitea server is read the same under `kind: forgejo`.
        assert_eq!(
            authenticate(Forge::Forgejo, gitea, BODY, &secret()).map(|a| a.delivery),
            Ok(Some("d1".to_owned()))
        );
        // A GitHub-style signature alone is not Gitea's.
        let github_style = format!("sha256={signature}");
        let github: &[(&str, &str)] = &[
            ("X-Hub-Signature-256", &github_style),
            ("X-Gitea-Event", "pull_request"),
        ];
        assert_eq!(
            authenticate(Forge::Gitea, github, BODY, &secret()),
            Err(Refusal::Unsigned("X-Gitea-Signature"))
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
            Ok(Some("u1".to_owned()))
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
        // Authenticated without an id: the receiver names it by its body.
        let no_id: &[(&str, &str)] = &[
            ("X-Gitlab-Token", token.expose()),
            ("X-Gitlab-Event", "Merge Request Hook"),
            ("Idempotency-Key", ""),
        ];
        assert_eq!(
            authenticate(Forge::Gitlab, no_id, BODY, &secret()).map(|a| a.delivery),
            Ok(None)
        );
        // A token that is the secret's start, or longer, is refused like any other.
        for near in ["It's a Secret", "It's a Secret to Everybody!"] {
            let headers: &[(&str, &str)] = &[("X-Gitlab-Token", near), ("X-Gitlab-Event", "x")];
            assert_eq!(
                authenticate(Forge::Gitlab, headers, BODY, &secret()),
                Err(Refusal::BadSignature("X-Gitlab-Token"))
            );
        }
    }

    #[test]
    fn refusals_name_the_header_and_never_the_secret() {
        let near = "It's a Secret to Everybodz";
        for (forge, headers) in [
            (Forge::Gitlab, vec![("X-Gitlab-Token", near)]),
            (Forge::Github, vec![("X-Hub-Signature-256", "sha256=00")]),
            (Forge::Gitea, vec![]),
        ] {
            let refusal = authenticate(forge, headers.as_slice(), BODY, &secret())
                .expect_err("refused")
                .to_string();
            assert!(refusal.contains("X-"), "{refusal}");
            assert!(!refusal.contains(secret().expose()) && !refusal.contains(near));
            assert!(!refusal.contains("opened"), "{refusal}");
        }
    }
}
