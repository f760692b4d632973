//! Certificates from an ACME CA (RFC 8555) such as Let's Encrypt, proven by HTTP-01: the CA asks each hostname for
//! `http://<name>/.well-known/acme-challenge/<token>` and the gateway answers with the token's key authorization.

use std::path::{Path, PathBuf};
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use preview_secrets::Secret;
use serde::{Deserialize, Serialize};

use crate::authority::{IssuedCertificate, TlsError, write_private};

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Which ACME CA to ask, and as whom.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// The CA's directory URL.
    pub directory: String,
    /// Where the CA may write about the account's certificates (`mailto:` is added).
    pub email: Option<String>,
    /// A PEM file with the root that signs the CA's own HTTPS certificate, for a CA of one's own; without it the
    /// system's roots are trusted.
    pub root: Option<PathBuf>,
}

/// Where the gateway keeps the answers it gives to HTTP-01 challenges.
pub trait Http01: Send + Sync {
    fn answer(&self, token: &str, key_authorization: &str);
    fn forget(&self, token: &str);
}

/// The account's credentials as kept on disk, with the directory they belong to.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// Issues certificates from one ACME CA; the account is made on first use and kept (its key readable only by the
/// daemon) in `dir/account.json`.
pub struct AcmeIssuer {
    config: AcmeConfig,
    dir: PathBuf,
    account: tokio::sync::Mutex<Option<Account>>,
}

/// How long the CA gets to validate and to issue.
const PATIENCE: Duration = Duration::from_secs(90);

impl AcmeIssuer {
    pub fn new(config: AcmeConfig, dir: &Path) -> AcmeIssuer {
        AcmeIssuer {
            config,
            dir: dir.to_owned(),
            account: tokio::sync::Mutex::new(None),
        }
    }

    pub fn directory(&self) -> &str {
        &self.config.directory
    }

    /// A certificate for `hostnames`, each proven to the CA by HTTP-01 through `http01`.
    pub async fn issue(
        &self,
        hostnames: &[String],
        http01: &dyn Http01,
    ) -> Result<IssuedCertificate, TlsError> {
        let fail = |reason: String| TlsError::Issue {
            hostnames: hostnames.join(", "),
            reason,
        };
        if let Some(wildcard) = hostnames.iter().find(|name| name.starts_with("*.")) {
            return Err(fail(format!(
                "`{wildcard}` is a wildcard, and an ACME CA issues wildcards only to DNS-01, which preview does not \
                 answer; list the hostnames one by one, or use the local CA (`--issuer local`)"
            )));
        }
        let account = self.account().await.map_err(&fail)?;
        let identifiers: Vec<Identifier> = hostnames
            .iter()
            .map(|name| Identifier::Dns(name.clone()))
            .collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| fail(format!("the CA refused the order: {e}")))?;
        // Every answer published is withdrawn again, however this ends.
        let mut answered = Answered {
            http01,
            tokens: Vec::new(),
        };
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization =
                authorization.map_err(|e| fail(format!("cannot read an authorization: {e}")))?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                status => {
                    return Err(fail(format!(
                        "the CA's authorization for {} is {status:?}",
                        authorization.identifier()
                    )));
                }
            }
            let name = authorization.identifier().to_string();
            let mut challenge = authorization
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| fail(format!("the CA offers no HTTP-01 challenge for {name}")))?;
            http01.answer(&challenge.token, challenge.key_authorization().as_str());
            answered.tokens.push(challenge.token.clone());
            challenge
                .set_ready()
                .await
                .map_err(|e| fail(format!("cannot start the challenge for {name}: {e}")))?;
        }
        let policy = RetryPolicy::new()
            .initial_delay(Duration::from_millis(200))
            .timeout(PATIENCE);
        let status = order
            .poll_ready(&policy)
            .await
            .map_err(|e| fail(format!("the CA did not validate the hostnames: {e}")))?;
        drop(answered);
        if status != OrderStatus::Ready {
            let mut reasons = Vec::new();
            if let Some(problem) = &order.state().error {
                reasons.push(problem.to_string());
            }
            let mut authorizations = order.authorizations();
            while let Some(Ok(mut authorization)) = authorizations.next().await {
                let name = authorization.identifier().to_string();
                if let Ok(state) = authorization.refresh().await {
                    for challenge in &state.challenges {
                        if let Some(problem) = &challenge.error {
                            reasons.push(format!("{name}: {problem}"));
                        }
                    }
                }
            }
            return Err(fail(format!(
                "the CA did not validate the hostnames (order {status:?}): {}",
                if reasons.is_empty() {
                    "no reason given".to_owned()
                } else {
                    reasons.join("; ")
                }
            )));
        }
        let key_pem = order
            .finalize()
            .await
            .map_err(|e| fail(format!("cannot finalize the order: {e}")))?;
        let chain_pem = order
            .poll_certificate(&policy)
            .await
            .map_err(|e| fail(format!("the CA did not deliver the certificate: {e}")))?;
        let not_after = crate::x509::not_after(&chain_pem).map_err(&fail)?;
        Ok(IssuedCertificate {
            chain_pem,
            key_pem: Secret::new(key_pem),
            not_after,
        })
    }

    /// The account: the one kept for this directory, or a new one (kept for the next time).
    async fn account(&self) -> Result<Account, String> {
        let mut account = self.account.lock().await;
        if let Some(account) = account.as_ref() {
            return Ok(account.clone());
        }
        let path = self.dir.join("account.json");
        let stored = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<StoredAccount>(&bytes).ok())
            .filter(|stored| stored.directory == self.config.directory);
        let made = match stored {
            Some(stored) => self
                .builder()?
                .from_credentials(stored.credentials)
                .await
                .map_err(|e| {
                    format!(
                        "cannot use the ACME account kept in {}: {e}",
                        path.display()
                    )
                })?,
            None => {
                let contact = self
                    .config
                    .email
                    .as_ref()
                    .map(|email| format!("mailto:{email}"));
                let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
                let (made, credentials) = self
                    .builder()?
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        self.config.directory.clone(),
                        None,
                    )
                    .await
                    .map_err(|e| {
                        format!(
                            "cannot make an account with the ACME CA at {}: {e}",
                            self.config.directory
                        )
                    })?;
                let stored = StoredAccount {
                    directory: self.config.directory.clone(),
                    credentials,
                };
                let json = serde_json::to_vec(&stored).map_err(|e| e.to_string())?;
                std::fs::create_dir_all(&self.dir)
                    .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
                let _ = std::fs::remove_file(&path);
                write_private(&path, &json).map_err(|e| {
                    format!("cannot keep the ACME account in {}: {e}", path.display())
                })?;
                made
            }
        };
        *account = Some(made.clone());
        Ok(made)
    }

    fn builder(&self) -> Result<instant_acme::AccountBuilder, String> {
        match &self.config.root {
            Some(root) => Account::builder_with_root(root)
                .map_err(|e| format!("cannot trust the ACME CA's root {}: {e}", root.display())),
            None => Account::builder().map_err(|e| format!("cannot make an HTTPS client: {e}")),
        }
    }
}

/// The tokens answered for one order; withdrawn when dropped.
struct Answered<'a> {
    http01: &'a dyn Http01,
    tokens: Vec<String>,
}

impl Drop for Answered<'_> {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.http01.forget(token);
        }
    }
}
