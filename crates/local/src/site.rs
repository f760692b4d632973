//! What the gateway serves for the local runtime: routes from each environment's route records to the version of
//! the service that runs, and each environment's certificate (from the local CA or an ACME CA) by SNI name.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use preview_deploy::{EnvironmentAddress, RuntimeError, StepLog};
use std::sync::{Arc, Mutex};

use preview_gateway::{
    Access, Backend, Certificates, Challenges, Network, Route, RouteState, RouteTable,
    basic_credentials, digest,
};
use preview_isolation::Netns;
use preview_plan::Resource;

use crate::records::Record;
use crate::runtime::{LocalRuntime, ServedCertificate, ServedRoute};

fn hostnames(content: &serde_json::Value) -> Vec<String> {
    content["hostnames"]
        .as_array()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl LocalRuntime {
    /// Builds the route table and certificate map from scratch and swaps both in.
    pub(crate) fn publish(&self) {
        let mut table = RouteTable::default();
        let mut certificates = HashMap::new();
        {
            let state = match self.state.lock() {
                Ok(state) => state,
                Err(poisoned) => poisoned.into_inner(),
            };
            for ((project, environment), env) in state.iter() {
                for (service, served) in &env.routes {
                    let version = env.versions.get(service);
                    let route = Route {
                        project: project.clone(),
                        environment: environment.clone(),
                        service: service.clone(),
                        state: if env.sleeping {
                            RouteState::Sleeping
                        } else if version.is_some() {
                            RouteState::Serving
                        } else {
                            RouteState::Stopped
                        },
                        backends: version
                            .map(|v| {
                                vec![Backend {
                                    address: v.address(),
                                    network: v.network.as_ref().map(|n| {
                                        Arc::new(Namespace(Arc::clone(n))) as Arc<dyn Network>
                                    }),
                                }]
                            })
                            .unwrap_or_default(),
                        access: served.access.clone(),
                        last_request: Arc::default(),
                        series: None,
                    };
                    for name in &served.hostnames {
                        table.insert(name, route.clone());
                    }
                }
                if let Some(certificate) = &env.certificate {
                    for name in &certificate.hostnames {
                        certificates.insert(name.clone(), Arc::clone(&certificate.key));
                    }
                }
            }
        }
        self.routes.swap(table);
        self.certificates.swap(certificates);
    }

    pub(crate) async fn apply_route(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
    ) -> Result<(), RuntimeError> {
        self.serve_route(env, &Record::of(resource)).await?;
        self.record(env, resource)?;
        self.publish();
        Ok(())
    }

    /// Puts a route record into the state the gateway is published from; a protected route's credential is
    /// revealed here and kept only as a digest.
    pub(crate) async fn serve_route(
        &self,
        env: &EnvironmentAddress,
        record: &Record,
    ) -> Result<(), RuntimeError> {
        let service = record.content["service"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let access = &record.content["access"];
        let version = |credential: &serde_json::Value| {
            credential["version"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        let access = if let Some(token) = access["token"]["name"].as_str() {
            let token = self
                .secrets
                .reveal(env, token, &version(&access["token"]))
                .await?;
            Some(Access::Token {
                digest: digest(token.expose()),
            })
        } else if let Some(password) = access["basic_auth"]["password"]["name"].as_str() {
            let user = access["basic_auth"]["user"].as_str().unwrap_or_default();
            let password = self
                .secrets
                .reveal(env, password, &version(&access["basic_auth"]["password"]))
                .await?;
            Some(Access::Basic {
                digest: digest(&basic_credentials(user, password.expose())),
            })
        } else {
            None
        };
        let served = ServedRoute {
            hostnames: hostnames(&record.content),
            access,
        };
        self.with_state(env, |s| s.routes.insert(service, served));
        Ok(())
    }

    pub(crate) fn remove_route(
        &self,
        env: &EnvironmentAddress,
        id: &str,
    ) -> Result<(), RuntimeError> {
        let service = id.split_once('/').map_or(id, |(_, s)| s).to_owned();
        self.with_state(env, |s| s.routes.remove(&service));
        self.publish();
        self.forget(env, id)
    }

    pub(crate) async fn apply_certificate(
        &self,
        env: &EnvironmentAddress,
        resource: &Resource,
        log: &StepLog,
    ) -> Result<(), RuntimeError> {
        let names = hostnames(&resource.content);
        let served = self.with_state(env, |s| s.certificate.as_ref().map(|c| c.hostnames.clone()));
        if served.as_ref() != Some(&names) {
            let not_after = self.issue_certificate(env, &names).await?;
            log.line(format!(
                "issued a certificate for {} from {}, valid for {} days",
                names.join(", "),
                match &self.acme {
                    Some(acme) => format!("the ACME CA at {}", acme.directory()),
                    None => "the local CA".to_owned(),
                },
                not_after
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .as_secs()
                    / 86_400
            ));
        }
        self.record(env, resource)?;
        self.publish();
        Ok(())
    }

    /// Issues a certificate for `names`, keeps it in the environment's directory (the key readable by the daemon
    /// only) and serves it; returns its end of validity.
    pub(crate) async fn issue_certificate(
        &self,
        env: &EnvironmentAddress,
        names: &[String],
    ) -> Result<SystemTime, RuntimeError> {
        let issued = match &self.acme {
            Some(acme) => acme.issue(names, &Answers(&self.challenges)).await,
            None => self.ca.issue(names, self.config.certificate_validity),
        }
        .map_err(|e| RuntimeError::new(e.to_string()))?;
        let dir = self.dir_of(env).path.join("tls");
        std::fs::create_dir_all(&dir)
            .map_err(|e| RuntimeError::new(format!("cannot create {}: {e}", dir.display())))?;
        write_private(&dir.join("key.pem"), issued.key_pem.expose())?;
        crate::records::write_atomically(&dir.join("chain.pem"), issued.chain_pem.as_bytes())
            .map_err(RuntimeError::new)?;
        let seconds = issued
            .not_after
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        crate::records::write_atomically(&dir.join("not_after"), seconds.to_string().as_bytes())
            .map_err(RuntimeError::new)?;
        let key = Certificates::certified_key(&issued.chain_pem, issued.key_pem.expose())
            .map_err(RuntimeError::new)?;
        self.with_state(env, |s| {
            s.certificate = Some(ServedCertificate {
                hostnames: names.to_vec(),
                key,
                not_after: issued.not_after,
            })
        });
        Ok(issued.not_after)
    }

    /// Serves the certificate kept in the environment's directory again after a restart (renewed if due).
    pub(crate) async fn load_certificate(
        &self,
        env: &EnvironmentAddress,
        record: &Record,
    ) -> Result<(), String> {
        let names = hostnames(&record.content);
        let dir = self.dir_of(env).path.join("tls");
        let loaded = (|| -> Result<ServedCertificate, String> {
            let chain =
                std::fs::read_to_string(dir.join("chain.pem")).map_err(|e| e.to_string())?;
            let key_pem = preview_secrets::Secret::new(
                std::fs::read_to_string(dir.join("key.pem")).map_err(|e| e.to_string())?,
            );
            let key = Certificates::certified_key(&chain, key_pem.expose())?;
            // An unreadable end date counts as expired, so the renewal issues a new certificate.
            let not_after = std::fs::read_to_string(dir.join("not_after"))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .map_or(SystemTime::UNIX_EPOCH, |s| {
                    SystemTime::UNIX_EPOCH + Duration::from_secs(s)
                });
            Ok(ServedCertificate {
                hostnames: names.clone(),
                key,
                not_after,
            })
        })();
        match loaded {
            Ok(served) => {
                self.with_state(env, |s| s.certificate = Some(served));
                Ok(())
            }
            Err(_) => self
                .issue_certificate(env, &names)
                .await
                .map(|_| ())
                .map_err(|e| format!("cannot serve the certificate of `{}`: {e}", env.environment)),
        }
    }

    pub(crate) fn remove_certificate(
        &self,
        env: &EnvironmentAddress,
        id: &str,
    ) -> Result<(), RuntimeError> {
        self.with_state(env, |s| s.certificate = None);
        self.publish();
        let _ = std::fs::remove_dir_all(self.dir_of(env).path.join("tls"));
        self.forget(env, id)
    }
}

/// An environment's network namespace, as the gateway reaches apps in it.
#[derive(Debug)]
struct Namespace(Arc<Netns>);

impl Network for Namespace {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn socket(&self) -> std::io::Result<tokio::net::TcpSocket> {
        self.0.tcp_socket()
    }
}

/// The gateway's answers to HTTP-01 challenges, as the ACME issuer publishes them.
struct Answers<'a>(&'a Challenges);

impl preview_tls::Http01 for Answers<'_> {
    fn answer(&self, token: &str, key_authorization: &str) {
        self.0.answer(token, key_authorization);
    }

    fn forget(&self, token: &str) {
        self.0.forget(token);
    }
}

fn write_private(path: &std::path::Path, text: &str) -> Result<(), RuntimeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    };
    write().map_err(|e| RuntimeError::new(format!("cannot write {}: {e}", path.display())))
}

/// Certificates for names no environment has one for: under a domain the gateway serves environments in (a
/// deleted environment's name, say), one from the local CA for that name, so that a client trusting the CA sees
/// the gateway's 404 page; for any other name, one for `no-environment.invalid`, which no client trusts for the
/// name it asked, so that nothing is vouched for beyond the gateway's own domains. Made when first asked for and
/// kept (a few hundred at most).
pub(crate) fn fallback_certificates(
    ca: preview_tls::LocalCa,
    routes: Arc<preview_gateway::Routes>,
) -> preview_gateway::Fallback {
    const KEPT: usize = 512;
    /// Valid for a day, made again after half of it.
    const VALID: Duration = Duration::from_secs(24 * 3600);
    type Made = std::collections::HashMap<String, (Arc<rustls::sign::CertifiedKey>, SystemTime)>;
    let made: Mutex<Made> = Mutex::default();
    Arc::new(move |name: &str| {
        let name = preview_gateway::normalize_host(name);
        // Under a domain of more than one label only (or `localhost`): a custom apex domain must not make every
        // name of its top-level domain one the CA signs.
        let served_domain = name
            .split_once('.')
            .is_some_and(|(_, parent)| parent == "localhost" || parent.contains('.'));
        let name = if served_domain && routes.snapshot().covers_domain_of(&name) {
            name
        } else {
            "no-environment.invalid".to_owned()
        };
        let lock = || match made.lock() {
            Ok(made) => made,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((key, at)) = lock().get(&name)
            && at.elapsed().is_ok_and(|age| age < VALID / 2)
        {
            return Some(Arc::clone(key));
        }
        // Made outside the lock: other handshakes do not wait for it.
        let issued = ca.issue(std::slice::from_ref(&name), VALID).ok()?;
        let key = Certificates::certified_key(&issued.chain_pem, issued.key_pem.expose()).ok()?;
        let mut made = lock();
        if made.len() >= KEPT {
            made.clear();
        }
        made.insert(name, (Arc::clone(&key), SystemTime::now()));
        Some(key)
    })
}
