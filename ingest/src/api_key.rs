//! Per-tenant API keys of the HTTP gateway: `agk_<key id>_<secret>`. The key id is public and
//! the lookup key; only a SHA-256 of the 256-bit random secret is stored (a slow password hash
//! adds nothing for secrets of that entropy, and costs on every request). Comparison is
//! constant-time.

use rand::RngCore;
use sha2::{Digest, Sha256};
use store::ApiKey;
use subtle::ConstantTimeEq;

const PREFIX: &str = "agk_";

/// A newly created key: the token is shown once and never stored.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    /// The full bearer token.
    pub token: String,
    /// What the store keeps.
    pub record: ApiKey,
}

fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Creates a key for `tenant_id`.
pub fn issue(tenant_id: &str, label: &str, now_ms: i64) -> IssuedKey {
    let mut rng = rand::rng();
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let (key_id, secret) = (hex::encode(id), hex::encode(secret));
    IssuedKey {
        token: format!("{PREFIX}{key_id}_{secret}"),
        record: ApiKey {
            key_id,
            tenant_id: tenant_id.to_string(),
            secret_sha256: sha256_hex(&secret),
            label: label.to_string(),
            created_at_ms: now_ms,
            revoked_at_ms: None,
        },
    }
}

/// Splits a token into key id and secret; `None` when it does not have the key shape.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (key_id, secret) = token.strip_prefix(PREFIX)?.split_once('_')?;
    let hex_of = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_of(key_id, 12) && hex_of(secret, 64)).then_some((key_id, secret))
}

/// Whether `secret` is the secret of `key` (constant-time on the hashes) and the key is not
/// revoked.
pub fn verify(key: &ApiKey, secret: &str) -> bool {
    let matches: bool = sha256_hex(secret)
        .as_bytes()
        .ct_eq(key.secret_sha256.as_bytes())
        .into();
    matches && key.revoked_at_ms.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_parses_and_verifies_only_with_its_secret() {
        let k = issue("acme", "ci", 1);
        let (id, secret) = parse(&k.token).unwrap();
        assert_eq!(id, k.record.key_id);
        assert!(verify(&k.record, secret));
        let other = issue("acme", "ci", 1);
        let (_, other_secret) = parse(&other.token).unwrap();
        assert!(!verify(&k.record, other_secret));
        assert!(
            !k.token.contains(&k.record.secret_sha256),
            "the stored hash is not the secret"
        );
    }

    #[test]
    fn revoked_keys_do_not_verify() {
        let mut k = issue("acme", "ci", 1);
        let token = k.token.clone();
        k.record.revoked_at_ms = Some(2);
        assert!(!verify(&k.record, parse(&token).unwrap().1));
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        for bad in [
            "",
            "agk_",
            "agk_abc_def",
            "xyz_0123456789ab_",
            &format!("agk_0123456789ab_{}", "g".repeat(64)),
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert!(parse(&format!("agk_0123456789ab_{}", "a".repeat(64))).is_some());
    }
}
