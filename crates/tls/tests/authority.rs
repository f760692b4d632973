//! The local CA with real TLS clients: openssl's verifier, a rustls handshake, and curl.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use preview_testing::TempDir;
use preview_tls::{IssuedCertificate, LocalCa, needs_renewal};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn hostnames() -> Vec<String> {
    vec![
        "*.pr-42.shop.localhost".to_owned(),
        "storefront-pr-42.shop.localhost".to_owned(),
        "pr-42.preview.example.test".to_owned(),
    ]
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn issue(dir: &Path) -> (LocalCa, IssuedCertificate) {
    let ca = LocalCa::load_or_create(&dir.join("ca")).expect("ca");
    let issued = ca
        .issue(&hostnames(), Duration::from_secs(30 * 86_400))
        .expect("issued");
    std::fs::write(dir.join("ca.pem"), ca.certificate_pem()).expect("write ca");
    std::fs::write(dir.join("chain.pem"), &issued.chain_pem).expect("write chain");
    (ca, issued)
}

#[test]
fn openssl_verifies_the_chain_and_sees_every_hostname() {
    let dir = TempDir::new("ca-openssl");
    let (_, _) = issue(dir.path());
    let (ca, chain) = (dir.path().join("ca.pem"), dir.path().join("chain.pem"));
    let verified = openssl(&[
        "verify",
        "-CAfile",
        ca.to_str().expect("path"),
        chain.to_str().expect("path"),
    ]);
    assert!(verified.trim_end().ends_with(": OK"), "{verified}");
    let names = openssl(&[
        "x509",
        "-in",
        chain.to_str().expect("path"),
        "-noout",
        "-ext",
        "subjectAltName",
    ]);
    for host in hostnames() {
        assert!(names.contains(&format!("DNS:{host}")), "{names}");
    }
    let purpose = openssl(&[
        "x509",
        "-in",
        chain.to_str().expect("path"),
        "-noout",
        "-purpose",
    ]);
    assert!(purpose.contains("SSL server : Yes"), "{purpose}");
}

#[test]
fn the_ca_is_made_once_and_its_key_is_private() {
    let dir = TempDir::new("ca-reload");
    let first = LocalCa::load_or_create(dir.path()).expect("created");
    let mode = std::fs::metadata(dir.path().join("ca.key"))
        .expect("key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let again = LocalCa::load_or_create(dir.path()).expect("loaded");
    assert_eq!(first.certificate_pem(), again.certificate_pem());
    // A certificate issued by the reloaded CA verifies against the exported certificate.
    let issued = again
        .issue(&["a.shop.localhost".to_owned()], Duration::from_secs(3600))
        .expect("issued");
    std::fs::write(dir.path().join("exported.pem"), first.certificate_pem()).expect("export");
    std::fs::write(dir.path().join("leaf.pem"), &issued.chain_pem).expect("leaf");
    let verified = openssl(&[
        "verify",
        "-CAfile",
        dir.path().join("exported.pem").to_str().expect("path"),
        dir.path().join("leaf.pem").to_str().expect("path"),
    ]);
    assert!(verified.trim_end().ends_with(": OK"), "{verified}");
    assert_eq!(format!("{:?}", issued.key_pem), "[redacted]");
}

#[test]
fn renewal_is_due_within_the_margin() {
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    assert!(!needs_renewal(now + 40 * day, now, 30 * day));
    assert!(needs_renewal(now + 20 * day, now, 30 * day));
    assert!(needs_renewal(now - day, now, 30 * day));
}

/// A TLS server on a loopback port that answers one line over the issued certificate.
async fn tls_server(issued: &IssuedCertificate) -> std::net::SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("chain");
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.expose().as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let mut buffer = [0u8; 1024];
                    let _ = tls.read(&mut buffer).await;
                    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    address
}

#[tokio::test]
async fn a_rustls_client_trusting_the_ca_completes_the_handshake_for_a_wildcard_name() {
    let dir = TempDir::new("ca-rustls");
    let (ca, issued) = issue(dir.path());
    let address = tls_server(&issued).await;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca.certificate_pem().as_bytes()) {
        roots
            .add(certificate.expect("ca certificate"))
            .expect("trusted");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    for host in ["api.pr-42.shop.localhost", "pr-42.preview.example.test"] {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let name = ServerName::try_from(host.to_owned()).expect("name");
        let mut tls = connector.connect(name, stream).await.expect("handshake");
        tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        let _ = tls.read_to_string(&mut answer).await;
        assert!(answer.ends_with("hello"), "{answer}");
    }
    // A name the certificate does not cover is refused by the client.
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let name = ServerName::try_from("other.shop.localhost".to_owned()).expect("name");
    assert!(connector.connect(name, stream).await.is_err());
}

#[tokio::test]
async fn curl_trusts_the_exported_ca() {
    let dir = TempDir::new("ca-curl");
    let (_, issued) = issue(dir.path());
    let address = tls_server(&issued).await;
    let host = "storefront-pr-42.shop.localhost";
    let ca = dir.path().join("ca.pem");
    let out = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
        .arg(&ca)
        .args(["--resolve", &format!("{host}:{}:127.0.0.1", address.port())])
        .arg(format!("https://{host}:{}/", address.port()))
        .output()
        .await
        .expect("curl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello");
}
