//! Certificates by SNI name: exact names before wildcards, like routes, swapped as a whole.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::routes::normalize_host;

/// A certificate for a name no environment has one for, so that a client asking for a deleted or unknown
/// environment over HTTPS gets the gateway's 404 page rather than a TLS alert.
pub type Fallback = Arc<dyn Fn(&str) -> Option<Arc<CertifiedKey>> + Send + Sync>;

#[derive(Default)]
pub struct Certificates {
    by_name: RwLock<Arc<HashMap<String, Arc<CertifiedKey>>>>,
    fallback: RwLock<Option<Fallback>>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates").finish_non_exhaustive()
    }
}

impl Certificates {
    /// A certified key from a PEM chain (leaf first) and a PEM private key.
    pub fn certified_key(chain_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, String> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("certificate chain: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| format!("private key: {e}"))?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| format!("private key: {e}"))?;
        Ok(Arc::new(CertifiedKey::new(chain, signing)))
    }

    /// Replaces every certificate: `hostname` (`*.x.y` for a wildcard) → certified key.
    pub fn swap(&self, certificates: HashMap<String, Arc<CertifiedKey>>) {
        let normalized = certificates
            .into_iter()
            .map(|(name, key)| (normalize_host(&name), key))
            .collect();
        match self.by_name.write() {
            Ok(mut current) => *current = Arc::new(normalized),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(normalized),
        }
    }

    /// What to present for a name no certificate covers.
    pub fn set_fallback(&self, fallback: Fallback) {
        match self.fallback.write() {
            Ok(mut current) => *current = Some(fallback),
            Err(poisoned) => *poisoned.into_inner() = Some(fallback),
        }
    }

    fn lookup(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let table = match self.by_name.read() {
            Ok(table) => Arc::clone(&table),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        };
        let name = normalize_host(name);
        table.get(&name).cloned().or_else(|| {
            let (_, parent) = name.split_once('.')?;
            table.get(&format!("*.{parent}")).cloned()
        })
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().unwrap_or_default();
        if let Some(key) = self.lookup(name) {
            return Some(key);
        }
        let fallback = match self.fallback.read() {
            Ok(fallback) => fallback.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        fallback.and_then(|fallback| fallback(name))
    }
}
