//! Secrets (API keys, passwords) as authentication plugins keep them: a
//! SHA-256 digest, looked up by digest and compared in constant time, so
//! neither the lookup nor the comparison takes longer for a closer guess.
//! (The plain secrets stay in the configuration the snapshot keeps; they
//! are never logged, dumped by the control API or put in an error.)

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The digest of a secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    /// Digests a secret.
    pub fn of(secret: &[u8]) -> SecretDigest {
        SecretDigest(Sha256::digest(secret).into())
    }

    /// Constant-time equality with another digest.
    pub fn matches(&self, other: &SecretDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretDigest(..)")
    }
}
