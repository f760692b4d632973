//! TLS material for the gateway: a local certificate authority, made on first use and exportable so that
//! browsers and curl can trust it, and the certificates it issues for an environment's hostnames; or certificates
//! from an ACME CA (`acme`), proven by HTTP-01 challenges the gateway answers.
//!
//! rcgen (with the `ring` provider) makes keys and certificates; instant-acme (also `ring`) speaks ACME.

mod acme;
mod authority;
mod x509;

pub use acme::{AcmeConfig, AcmeIssuer, Http01, LETS_ENCRYPT};
pub use authority::{IssuedCertificate, LocalCa, TlsError, needs_renewal};
pub use x509::not_after;
