//! Roles and API tokens.
//!
//! A token is 256 random bits, shown once to whoever created it. The store
//! keeps only its SHA-256 digest: the token has full entropy, so a fast hash
//! is enough (no password-style stretching is needed), and a leaked table
//! gives no usable token.

use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Prefix of every token, so one is recognisable in a config file or a leak scan.
pub const TOKEN_PREFIX: &str = "kbs_";

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Finds and acts on violations.
    Warden,
    /// Reads and redraws layouts.
    Planner,
    /// May do everything.
    Admin,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Warden => "warden",
            Role::Planner => "planner",
            Role::Admin => "admin",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "warden" => Some(Role::Warden),
            "planner" => Some(Role::Planner),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether this role may use an endpoint open to `allowed` (admin always may).
    pub fn may(self, allowed: &[Role]) -> bool {
        self == Role::Admin || allowed.contains(&self)
    }
}

/// A freshly made token: the secret to show once and the digest to store.
pub struct NewToken {
    pub secret: String,
    pub hash: String,
}

/// Makes a token from 256 bits of cryptographically secure randomness.
pub fn generate_token() -> NewToken {
    let mut bytes = [0u8; 32];
    // ThreadRng is a ChaCha CSPRNG seeded from the operating system.
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("{TOKEN_PREFIX}{}", hex(&bytes));
    let hash = hash_token(&secret);
    NewToken { secret, hash }
}

/// The stored form of a token: lowercase hex SHA-256 of its text.
pub fn hash_token(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bits_and_stored_only_as_their_digest() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.secret.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(a.hash, hash_token(&a.secret));
        assert_eq!(a.hash.len(), 64);
        assert!(!a.hash.contains(&a.secret[TOKEN_PREFIX.len()..]));
    }

    #[test]
    fn admin_may_do_everything() {
        assert!(Role::Admin.may(&[Role::Warden]));
        assert!(Role::Warden.may(&[Role::Warden, Role::Planner]));
        assert!(!Role::Planner.may(&[Role::Warden]));
    }
}
