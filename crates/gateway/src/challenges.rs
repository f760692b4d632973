//! ACME HTTP-01 answers: while a certificate is being issued, the CA asks every hostname for
//! `http://<name>/.well-known/acme-challenge/<token>` and expects the token's key authorization.

use std::collections::HashMap;
use std::sync::RwLock;

pub const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// The answers the gateway gives, by token; the issuer adds one before it tells the CA to look and removes it
/// when the CA is done.
#[derive(Debug, Default)]
pub struct Challenges {
    answers: RwLock<HashMap<String, String>>,
}

impl Challenges {
    pub fn answer(&self, token: &str, key_authorization: &str) {
        let mut answers = match self.answers.write() {
            Ok(answers) => answers,
            Err(poisoned) => poisoned.into_inner(),
        };
        answers.insert(token.to_owned(), key_authorization.to_owned());
    }

    pub fn forget(&self, token: &str) {
        let mut answers = match self.answers.write() {
            Ok(answers) => answers,
            Err(poisoned) => poisoned.into_inner(),
        };
        answers.remove(token);
    }

    /// How many tokens are being answered.
    pub fn len(&self) -> usize {
        match self.answers.read() {
            Ok(answers) => answers.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key authorization for a request's path, if it asks for a token being answered.
    pub fn lookup(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(CHALLENGE_PATH)?;
        let answers = match self.answers.read() {
            Ok(answers) => answers,
            Err(poisoned) => poisoned.into_inner(),
        };
        answers.get(token).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tokens_being_answered_are_found() {
        let challenges = Challenges::default();
        challenges.answer("abc", "abc.thumb");
        assert_eq!(
            challenges
                .lookup("/.well-known/acme-challenge/abc")
                .as_deref(),
            Some("abc.thumb")
        );
        assert_eq!(challenges.lookup("/.well-known/acme-challenge/abd"), None);
        assert_eq!(challenges.lookup("/abc"), None);
        challenges.forget("abc");
        assert_eq!(challenges.lookup("/.well-known/acme-challenge/abc"), None);
    }
}
