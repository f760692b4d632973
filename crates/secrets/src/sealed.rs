//! Sealing and opening values for one slot (project, scope, name).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::key::MasterKey;
use crate::secret::Secret;

/// Where a secret lives; its ciphertext is bound to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot<'a> {
    pub project: &'a str,
    pub scope: &'a str,
    pub name: &'a str,
}

impl Slot<'_> {
    /// The associated data: a version tag and the three parts, each length-prefixed so that no two slots share it.
    fn associated_data(&self) -> Vec<u8> {
        let mut data = b"preview-secret-v1".to_vec();
        for part in [self.project, self.scope, self.name] {
            data.extend_from_slice(&(part.len() as u64).to_be_bytes());
            data.extend_from_slice(part.as_bytes());
        }
        data
    }
}

impl std::fmt::Display for Slot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` at {} of project `{}`",
            self.name, self.scope, self.project
        )
    }
}

/// A sealed value: nonce and ciphertext (with its authentication tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl Sealed {
    /// `nonce:ciphertext` in hex, for storing a sealed value as text.
    pub fn to_text(&self) -> String {
        format!(
            "{}:{}",
            crate::hex::encode(&self.nonce),
            crate::hex::encode(&self.ciphertext)
        )
    }

    pub fn from_text(text: &str) -> Option<Sealed> {
        let (nonce, ciphertext) = text.split_once(':')?;
        Some(Sealed {
            nonce: crate::hex::decode(nonce)?,
            ciphertext: crate::hex::decode(ciphertext)?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "cannot open secret {slot}: the ciphertext was not sealed for this slot with this master key (moved, altered, or another key)"
    )]
    WrongSlotOrKey { slot: String },
    #[error(
        "the master key does not match the one this store's secrets were sealed with; refusing to continue so that nothing is overwritten ({0})"
    )]
    WrongMasterKey(String),
    #[error("master key: {0}")]
    Key(String),
    #[error("the system's random source failed")]
    Random,
}

impl MasterKey {
    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.bytes().into())
    }

    pub fn seal(&self, slot: &Slot<'_>, value: &Secret) -> Result<Sealed, SecretError> {
        let mut nonce = [0u8; 24];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| SecretError::Random)?;
        let aad = slot.associated_data();
        let ciphertext = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.expose().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::Key("encryption failed".to_owned()))?;
        Ok(Sealed {
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    pub fn open(&self, slot: &Slot<'_>, sealed: &Sealed) -> Result<Secret, SecretError> {
        let wrong = || SecretError::WrongSlotOrKey {
            slot: slot.to_string(),
        };
        if sealed.nonce.len() != 24 {
            return Err(wrong());
        }
        let aad = slot.associated_data();
        let plaintext = zeroize::Zeroizing::new(
            self.cipher()
                .decrypt(
                    XNonce::from_slice(&sealed.nonce),
                    Payload {
                        msg: &sealed.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| wrong())?,
        );
        let text = String::from_utf8(plaintext.to_vec()).map_err(|_| wrong())?;
        Ok(Secret::new(text))
    }

    /// A keyed fingerprint of a slot's value: equal values give equal fingerprints under one key, and nothing
    /// about the value can be learned from it.
    pub fn fingerprint(&self, slot: &Slot<'_>, value: &Secret) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.derive(b"fingerprint"));
        let mut context = ring::hmac::Context::with_key(&key);
        context.update(&slot.associated_data());
        context.update(value.expose().as_bytes());
        crate::hex::encode(&context.sign().as_ref()[..8])
    }

    /// A value that only this key produces for `label`: used for generated credentials such as database passwords.
    pub fn derived_secret(&self, label: &str) -> Secret {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.derive(b"derived"));
        let tag = ring::hmac::sign(&key, label.as_bytes());
        Secret::new(crate::hex::encode(&tag.as_ref()[..24]))
    }

    /// A short name for this key, stored with every value it seals: it tells which key a value needs without
    /// saying anything about the key.
    pub fn id(&self) -> String {
        crate::hex::encode(&self.derive(b"key id")[..8])
    }

    /// A sealed marker that proves, later, that a key is the one the store was written with.
    pub fn key_check(&self) -> Result<Sealed, SecretError> {
        self.seal(&KEY_CHECK, &Secret::new(KEY_CHECK_TEXT.to_owned()))
    }

    /// Refuses a key that does not open the store's key check.
    pub fn verify(&self, check: &Sealed) -> Result<(), SecretError> {
        match self.open(&KEY_CHECK, check) {
            Ok(text) if text.expose() == KEY_CHECK_TEXT => Ok(()),
            _ => Err(SecretError::WrongMasterKey(
                "check PREVIEW_MASTER_KEY or the master key file".to_owned(),
            )),
        }
    }

    fn derive(&self, purpose: &[u8]) -> [u8; 32] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ring::hmac::sign(&key, purpose).as_ref());
        out
    }
}

const KEY_CHECK: Slot<'static> = Slot {
    project: "",
    scope: "key-check",
    name: "",
};
const KEY_CHECK_TEXT: &str = "preview master key check v1";
