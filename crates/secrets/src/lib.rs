//! Secret values and the cryptography that keeps them.
//!
//! A [`Secret`] prints as `[redacted]` and wipes its memory when dropped, so redaction is a property of the type,
//! not a discipline. A [`MasterKey`] seals a value with XChaCha20-Poly1305 under a random 24-byte nonce, with
//! associated data binding it to its project, scope and name: a ciphertext moved to another slot does not open.
//! Fingerprints are keyed (HMAC-SHA256), so they tell whether a value changed without revealing it.
//! This crate does no I/O except reading and creating the master key file.

pub mod hex;
mod key;
mod sealed;
mod secret;

pub use key::{KEY_ENV, KeySource, MasterKey};
pub use sealed::{Sealed, SecretError, Slot};
pub use secret::Secret;
