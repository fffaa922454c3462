//! Credentials: API keys, session tokens and invitation tokens.
//!
//! Every secret is random (≥ 190 bits from the OS generator), shown once, and stored only as a
//! SHA-256 hash. SHA-256 rather than a slow password hash is right here: the input is a
//! high-entropy secret, not a human password, so it cannot be guessed from its hash, and a fast
//! hash keeps per-request authentication cheap.

use rand::{distr::Alphanumeric, Rng};
use sha2::{Digest, Sha256};

/// Length of the random lookup part that follows a key's kind prefix.
const LOOKUP_LEN: usize = 8;
/// Length of the random secret part.
const SECRET_LEN: usize = 32;

/// The kinds of API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// `eck_…`: server side, any scopes.
    Secret,
    /// `pk_live_…`: embedded in production pages; ingestion and widget only.
    PublicLive,
    /// `pk_test_…`: embedded in staging pages; ingestion and widget only.
    PublicTest,
}

impl KeyKind {
    pub fn prefix(self) -> &'static str {
        match self {
            KeyKind::Secret => "eck_",
            KeyKind::PublicLive => "pk_live_",
            KeyKind::PublicTest => "pk_test_",
        }
    }

    pub fn is_public(self) -> bool {
        !matches!(self, KeyKind::Secret)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Secret => "secret",
            KeyKind::PublicLive => "public_live",
            KeyKind::PublicTest => "public_test",
        }
    }

    pub fn parse(s: &str) -> Option<KeyKind> {
        match s {
            "secret" => Some(KeyKind::Secret),
            "public_live" => Some(KeyKind::PublicLive),
            "public_test" => Some(KeyKind::PublicTest),
            _ => None,
        }
    }

    /// Recognises a presented key by its prefix.
    pub fn of_key(key: &str) -> Option<KeyKind> {
        [KeyKind::Secret, KeyKind::PublicLive, KeyKind::PublicTest].into_iter().find(|k| key.starts_with(k.prefix()))
    }
}

/// A freshly generated key: the full text (shown once) and what is stored.
pub struct NewKey {
    pub key: String,
    pub prefix: String,
    pub hash: String,
}

pub fn generate_key(kind: KeyKind) -> NewKey {
    let key = format!("{}{}", kind.prefix(), random_string(LOOKUP_LEN + SECRET_LEN));
    let prefix = key_prefix(&key).unwrap_or_default().to_string();
    NewKey { hash: hash_secret(&key), prefix, key }
}

/// The stored, displayable lookup prefix of a presented key (`eck_Ab12Cd34`), or `None` when
/// the text is not shaped like one of our keys.
pub fn key_prefix(key: &str) -> Option<&str> {
    let kind = KeyKind::of_key(key)?;
    let expected = kind.prefix().len() + LOOKUP_LEN + SECRET_LEN;
    if key.len() != expected || !key.is_ascii() {
        return None;
    }
    Some(&key[..kind.prefix().len() + LOOKUP_LEN])
}

/// Prefix of session tokens returned by login.
pub const SESSION_PREFIX: &str = "cst_";
/// Prefix of invitation tokens.
pub const INVITATION_PREFIX: &str = "inv_";

/// A random bearer token with the given prefix: `cst_` + 48 characters.
pub fn generate_token(prefix: &str) -> String {
    format!("{prefix}{}", random_string(48))
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two hashes without an early exit, so response timing reveals nothing.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn random_string(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_carry_their_kind_and_a_lookup_prefix() {
        for kind in [KeyKind::Secret, KeyKind::PublicLive, KeyKind::PublicTest] {
            let k = generate_key(kind);
            assert!(k.key.starts_with(kind.prefix()));
            assert_eq!(KeyKind::of_key(&k.key), Some(kind));
            assert_eq!(key_prefix(&k.key), Some(k.prefix.as_str()));
            assert_eq!(k.prefix.len(), kind.prefix().len() + LOOKUP_LEN);
            assert_eq!(hash_secret(&k.key), k.hash);
        }
    }

    #[test]
    fn malformed_keys_have_no_prefix() {
        assert_eq!(key_prefix("eck_short"), None);
        assert_eq!(key_prefix("crm_abcdefghabcdefghabcdefghabcdefghabcdefgh"), None);
        assert_eq!(key_prefix(""), None);
    }

    #[test]
    fn two_keys_never_collide() {
        assert_ne!(generate_key(KeyKind::Secret).key, generate_key(KeyKind::Secret).key);
    }

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}
