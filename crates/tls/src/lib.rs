//! TLS material for the gateway: a local certificate authority, made on first use and exportable so that
//! browsers and curl can trust it, and the certificates it issues for an environment's hostnames.
//!
//! Only rcgen (with the `ring` provider) is used; this crate reads and writes the CA's two files and nothing else.

mod authority;

pub use authority::{IssuedCertificate, LocalCa, TlsError, needs_renewal};
