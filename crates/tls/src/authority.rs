//! The local certificate authority.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use preview_secrets::Secret;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate authority in {dir}: {reason}")]
    Authority { dir: String, reason: String },
    #[error("cannot issue a certificate for {hostnames}: {reason}")]
    Issue { hostnames: String, reason: String },
}

/// The CA: its key (a file readable only by its owner), its certificate, and the name that identifies it.
pub struct LocalCa {
    params: CertificateParams,
    key: KeyPair,
    certificate_pem: String,
}

/// A certificate for some hostnames, with the CA's certificate after it.
pub struct IssuedCertificate {
    pub chain_pem: String,
    pub key_pem: Secret,
    pub not_after: SystemTime,
}

const KEY_FILE: &str = "ca.key";
const CERT_FILE: &str = "ca.pem";
const NAME_FILE: &str = "ca.name";
const CA_VALIDITY_DAYS: i64 = 3650;

fn params_for(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, name);
    subject.push(DnType::OrganizationName, "preview");
    params.distinguished_name = subject;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    params
}

impl LocalCa {
    /// Reads the CA from `dir`, or makes one there (the key file with mode 0600).
    pub fn load_or_create(dir: &Path) -> Result<LocalCa, TlsError> {
        let fail = |reason: String| TlsError::Authority {
            dir: dir.display().to_string(),
            reason,
        };
        let (key_path, cert_path, name_path) =
            (dir.join(KEY_FILE), dir.join(CERT_FILE), dir.join(NAME_FILE));
        if key_path.exists() {
            let key_pem =
                Secret::new(std::fs::read_to_string(&key_path).map_err(|e| fail(e.to_string()))?);
            let key = KeyPair::from_pem(key_pem.expose())
                .map_err(|e| fail(format!("{KEY_FILE}: {e}")))?;
            let name = std::fs::read_to_string(&name_path)
                .map_err(|e| fail(format!("{NAME_FILE}: {e}")))?;
            let certificate_pem = std::fs::read_to_string(&cert_path)
                .map_err(|e| fail(format!("{CERT_FILE}: {e}")))?;
            return Ok(LocalCa {
                params: params_for(name.trim()),
                key,
                certificate_pem,
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        let key = KeyPair::generate().map_err(|e| fail(e.to_string()))?;
        // A name of its own, so that two installations' CAs are told apart in a browser's trust store.
        let public = key.public_key_pem();
        let suffix: String = public
            .lines()
            .nth(2)
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        let name = format!("preview local CA {suffix}");
        let mut params = params_for(&name);
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(CA_VALIDITY_DAYS);
        let certificate = params.self_signed(&key).map_err(|e| fail(e.to_string()))?;
        write_private(&key_path, key.serialize_pem().as_bytes())
            .map_err(|e| fail(e.to_string()))?;
        std::fs::write(&cert_path, certificate.pem()).map_err(|e| fail(e.to_string()))?;
        std::fs::write(&name_path, &name).map_err(|e| fail(e.to_string()))?;
        Ok(LocalCa {
            params: params_for(&name),
            key,
            certificate_pem: certificate.pem(),
        })
    }

    /// The CA's certificate, for `preview ca export` and clients' trust stores.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// A certificate for `hostnames` (wildcards such as `*.pr-42.shop.localhost` allowed), valid for `valid_for`.
    pub fn issue(
        &self,
        hostnames: &[String],
        valid_for: Duration,
    ) -> Result<IssuedCertificate, TlsError> {
        let fail = |reason: String| TlsError::Issue {
            hostnames: hostnames.join(", "),
            reason,
        };
        let mut params =
            CertificateParams::new(hostnames.to_vec()).map_err(|e| fail(e.to_string()))?;
        let mut subject = DistinguishedName::new();
        subject.push(
            DnType::CommonName,
            hostnames.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = subject;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        let valid = time::Duration::try_from(valid_for).map_err(|e| fail(e.to_string()))?;
        params.not_after = now + valid;
        let key = KeyPair::generate().map_err(|e| fail(e.to_string()))?;
        let issuer = Issuer::new(self.params.clone(), &self.key);
        let certificate = params
            .signed_by(&key, &issuer)
            .map_err(|e| fail(e.to_string()))?;
        Ok(IssuedCertificate {
            chain_pem: format!("{}{}", certificate.pem(), self.certificate_pem),
            key_pem: Secret::new(key.serialize_pem()),
            not_after: SystemTime::UNIX_EPOCH
                + Duration::from_secs(params.not_after.unix_timestamp().max(0) as u64),
        })
    }
}

/// True when a certificate ending at `not_after` should be replaced: within `margin` of its end, or past it.
pub fn needs_renewal(not_after: SystemTime, now: SystemTime, margin: Duration) -> bool {
    now + margin >= not_after
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
