//! Access tokens: HS256 JWTs with `sub` (user id), `iss`, `aud`, `iat`, `nbf`, `exp`, `jti`.
//!
//! Verification pins the algorithm (`HS256` only: `alg: none`, other HMAC sizes and
//! asymmetric algorithms are refused before any key is used), checks the signature, requires
//! `exp`, `iat`, `iss`, `aud` and `sub`, and checks times against a clock passed in (so it is
//! pure and tested without waiting) with an explicit leeway.

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Issued at (epoch seconds).
    pub iat: u64,
    /// Not before (epoch seconds); optional on verification, checked when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Expiry (epoch seconds).
    pub exp: u64,
    /// Unique token id (for logs and audits).
    pub jti: String,
}

/// Why a token was refused. The text goes into `WWW-Authenticate` and the JSON body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    #[error("malformed token")]
    Malformed,
    /// `alg` is not HS256.
    #[error("algorithm not accepted")]
    Algorithm,
    /// Signature does not verify with our key.
    #[error("bad signature")]
    Signature,
    /// `exp` is past.
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// A required claim is missing or has the wrong type.
    #[error("missing or invalid claim `{0}`")]
    Claim(&'static str),
    /// `iss` is not ours.
    #[error("wrong issuer")]
    Issuer,
    /// `aud` is not ours.
    #[error("wrong audience")]
    Audience,
}

impl TokenError {
    /// A short stable label (metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::Algorithm => "algorithm",
            TokenError::Signature => "signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::Claim(_) => "claim",
            TokenError::Issuer => "issuer",
            TokenError::Audience => "audience",
        }
    }
}

/// A token handed out at login.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The compact JWT.
    pub token: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
    /// Its `jti`.
    pub jti: String,
}

/// Issues and verifies access tokens with one HS256 key.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
    leeway: u64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Tokens signed with `secret` (the caller checked its length).
    pub fn new(secret: &[u8], issuer: &str, audience: &str, ttl: Duration, leeway: Duration) -> Tokens {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        // Times are checked in `verify` against the clock passed in.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            ttl,
            leeway: leeway.as_secs(),
        }
    }

    /// A token for `user_id`, issued at `now` (epoch seconds).
    pub fn issue(&self, user_id: Uuid, now: u64) -> IssuedToken {
        let claims = Claims {
            sub: user_id.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            nbf: Some(now),
            exp: now + self.ttl.as_secs(),
            jti: Uuid::new_v4().simple().to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with a byte key cannot fail");
        IssuedToken {
            token,
            expires_in: self.ttl.as_secs(),
            jti: claims.jti,
        }
    }

    /// The user id of a valid token at `now` (epoch seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<(Uuid, Claims), TokenError> {
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &self.decoding, &self.validation)
            .map_err(|e| match classify(e.kind()) {
                // The library cannot even parse a header naming an algorithm it does not know
                // (`none`): report that as the algorithm being refused.
                TokenError::Malformed if names_other_algorithm(token) => TokenError::Algorithm,
                other => other,
            })?;
        // Signature, algorithm, iss, aud and the presence of exp/iss/aud/sub are checked; now
        // the types, naming the claim that is wrong.
        let claims: Claims = serde_path_to_error::deserialize(data.claims).map_err(|e| {
            let path = e.path().to_string();
            claim_from_message(&path)
                .or_else(|| claim_from_message(&e.into_inner().to_string()))
                .map(TokenError::Claim)
                .unwrap_or(TokenError::Malformed)
        })?;
        if claims.exp.saturating_add(self.leeway) <= now {
            return Err(TokenError::Expired);
        }
        let earliest = claims.nbf.unwrap_or(claims.iat).max(claims.iat);
        if earliest > now.saturating_add(self.leeway) {
            return Err(TokenError::NotYetValid);
        }
        let user_id = Uuid::parse_str(&claims.sub).map_err(|_| TokenError::Claim("sub"))?;
        Ok((user_id, claims))
    }
}

fn classify(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenError::Algorithm,
        ErrorKind::InvalidSignature => TokenError::Signature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::MissingRequiredClaim(c) => TokenError::Claim(claim_name(c)),
        ErrorKind::InvalidClaimFormat(c) => TokenError::Claim(claim_name(c)),
        _ => TokenError::Malformed,
    }
}

/// Whether the token's header is JSON with an `alg` other than HS256 (error path only).
fn names_other_algorithm(token: &str) -> bool {
    use base64::Engine as _;
    let Some(header) = token.split('.').next() else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|h| h.get("alg").and_then(|a| a.as_str()).map(|a| a != "HS256"))
        .unwrap_or(false)
}

/// The claim a deserialization error is about (`missing field `iat``, a path `exp`).
fn claim_from_message(text: &str) -> Option<&'static str> {
    ["iat", "exp", "nbf", "jti", "sub", "iss", "aud"]
        .into_iter()
        .find(|c| text == *c || text.contains(&format!("`{c}`")))
}

fn claim_name(c: &str) -> &'static str {
    ["exp", "iss", "aud", "sub", "nbf", "iat"]
        .into_iter()
        .find(|n| *n == c)
        .unwrap_or("unknown")
}

/// The current time in epoch seconds.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    //! The attack cases: every token below must be refused, each for its own reason.

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde_json::{json, Value};

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn tokens() -> Tokens {
        Tokens::new(
            SECRET,
            "agentops-auth",
            "agentops-dashboard",
            Duration::from_secs(3600),
            Duration::from_secs(5),
        )
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    /// HMAC-SHA256 of `message`, base64url: the signature of an HS256 token (used to forge
    /// tokens with any header, whatever `alg` it claims).
    fn hs256(key: &[u8], message: &str) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        mac.update(message.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// A token with any header and claims, HMAC-SHA256-signed with `key`.
    fn forge(header: Value, claims: Value, key: &[u8]) -> String {
        let message = format!("{}.{}", b64(&header), b64(&claims));
        format!("{message}.{}", hs256(key, &message))
    }

    fn good_claims() -> Value {
        json!({
            "sub": Uuid::from_u128(7).to_string(),
            "iss": "agentops-auth",
            "aud": "agentops-dashboard",
            "iat": NOW - 10,
            "nbf": NOW - 10,
            "exp": NOW + 3590,
            "jti": "j1",
        })
    }

    fn with(mut claims: Value, key: &str, value: Value) -> Value {
        claims[key] = value;
        claims
    }

    fn without(mut claims: Value, key: &str) -> Value {
        claims.as_object_mut().unwrap().remove(key);
        claims
    }

    fn hs256_header() -> Value {
        json!({"alg": "HS256", "typ": "JWT"})
    }

    #[test]
    fn an_issued_token_verifies_and_carries_its_claims() {
        let t = tokens();
        let issued = t.issue(Uuid::from_u128(42), NOW);
        assert_eq!(issued.expires_in, 3600);
        let (id, claims) = t.verify(&issued.token, NOW + 1).unwrap();
        assert_eq!(id, Uuid::from_u128(42));
        assert_eq!(claims.iss, "agentops-auth");
        assert_eq!(claims.aud, "agentops-dashboard");
        assert_eq!((claims.iat, claims.exp), (NOW, NOW + 3600));
        assert_eq!(claims.jti, issued.jti);
        assert_ne!(t.issue(Uuid::from_u128(42), NOW).jti, issued.jti, "jti is unique");
    }

    #[test]
    fn a_forged_token_with_the_right_key_verifies() {
        // The forging helper is sound: the same claims with the real key pass.
        let token = forge(hs256_header(), good_claims(), SECRET);
        assert_eq!(tokens().verify(&token, NOW).unwrap().0, Uuid::from_u128(7));
    }

    #[test]
    fn expiry_honours_the_leeway_exactly() {
        let t = tokens();
        let issued = t.issue(Uuid::from_u128(1), NOW);
        let exp = NOW + 3600;
        assert!(t.verify(&issued.token, exp + 4).is_ok(), "inside the 5 s leeway");
        assert_eq!(t.verify(&issued.token, exp + 5).unwrap_err(), TokenError::Expired);
        assert_eq!(
            t.verify(&issued.token, exp + 86_400).unwrap_err(),
            TokenError::Expired
        );
    }

    #[test]
    fn attack_alg_none_is_refused() {
        for alg in ["none", "None", "NONE"] {
            let message = format!(
                "{}.{}",
                b64(&json!({"alg": alg, "typ": "JWT"})),
                b64(&good_claims())
            );
            for token in [
                format!("{message}."),
                format!("{message}.{}", hs256(SECRET, &message)),
            ] {
                assert_eq!(
                    tokens().verify(&token, NOW).unwrap_err(),
                    TokenError::Algorithm,
                    "{alg}"
                );
            }
        }
    }

    #[test]
    fn attack_wrong_key_is_refused() {
        let token = forge(
            hs256_header(),
            good_claims(),
            b"another-key-another-key-another-key",
        );
        assert_eq!(tokens().verify(&token, NOW).unwrap_err(), TokenError::Signature);
    }

    #[test]
    fn attack_algorithm_confusion_is_refused() {
        // Other HMAC sizes signed with our own secret, and asymmetric algorithms whose
        // "public key" an attacker might hope we use as an HMAC key: refused by the pinned alg.
        for alg in ["HS384", "HS512", "RS256", "ES256", "PS256", "EdDSA"] {
            let token = forge(json!({"alg": alg, "typ": "JWT"}), good_claims(), SECRET);
            assert_eq!(
                tokens().verify(&token, NOW).unwrap_err(),
                TokenError::Algorithm,
                "{alg}"
            );
        }
        let real = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &good_claims(),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(tokens().verify(&real, NOW).unwrap_err(), TokenError::Algorithm);
    }

    #[test]
    fn attack_expired_and_not_yet_valid_are_refused() {
        let expired = with(good_claims(), "exp", json!(NOW - 6));
        assert_eq!(
            tokens()
                .verify(&forge(hs256_header(), expired, SECRET), NOW)
                .unwrap_err(),
            TokenError::Expired
        );
        let future_nbf = with(good_claims(), "nbf", json!(NOW + 60));
        assert_eq!(
            tokens()
                .verify(&forge(hs256_header(), future_nbf, SECRET), NOW)
                .unwrap_err(),
            TokenError::NotYetValid
        );
        let future_iat = without(with(good_claims(), "iat", json!(NOW + 60)), "nbf");
        assert_eq!(
            tokens()
                .verify(&forge(hs256_header(), future_iat, SECRET), NOW)
                .unwrap_err(),
            TokenError::NotYetValid
        );
    }

    #[test]
    fn attack_missing_claims_are_refused() {
        for claim in ["exp", "iat", "iss", "aud", "sub"] {
            let token = forge(hs256_header(), without(good_claims(), claim), SECRET);
            assert_eq!(
                tokens().verify(&token, NOW).unwrap_err(),
                TokenError::Claim(claim),
                "{claim}"
            );
        }
        let string_exp = with(good_claims(), "exp", json!("never"));
        assert_eq!(
            tokens()
                .verify(&forge(hs256_header(), string_exp, SECRET), NOW)
                .unwrap_err(),
            TokenError::Claim("exp")
        );
        let bad_sub = with(good_claims(), "sub", json!("admin"));
        assert_eq!(
            tokens()
                .verify(&forge(hs256_header(), bad_sub, SECRET), NOW)
                .unwrap_err(),
            TokenError::Claim("sub")
        );
    }

    #[test]
    fn attack_wrong_audience_or_issuer_is_refused() {
        let aud = with(good_claims(), "aud", json!("someone-else"));
        assert_eq!(
            tokens()
                .verify(&forge(hs256_header(), aud, SECRET), NOW)
                .unwrap_err(),
            TokenError::Audience
        );
        let iss = with(good_claims(), "iss", json!("evil-issuer"));
        assert_eq!(
            tokens()
                .verify(&forge(hs256_header(), iss, SECRET), NOW)
                .unwrap_err(),
            TokenError::Issuer
        );
    }

    #[test]
    fn attack_tampered_payload_is_refused() {
        let t = tokens();
        let issued = t.issue(Uuid::from_u128(1), NOW);
        let parts: Vec<&str> = issued.token.split('.').collect();
        let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["sub"] = json!(Uuid::from_u128(2).to_string());
        claims["exp"] = json!(NOW + 10 * 365 * 86_400);
        let tampered = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
        assert_eq!(t.verify(&tampered, NOW).unwrap_err(), TokenError::Signature);
        // A flipped signature bit too.
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[0] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(t.verify(&flipped, NOW).unwrap_err(), TokenError::Signature);
    }

    #[test]
    fn attack_malformed_tokens_are_refused() {
        let good = tokens().issue(Uuid::from_u128(1), NOW).token;
        let parts: Vec<&str> = good.split('.').collect();
        let cases = [
            String::new(),
            "abc".into(),
            "a.b".into(),
            "a.b.c.d".into(),
            format!("{}.{}", parts[0], parts[1]),
            format!("!!!.{}.{}", parts[1], parts[2]),
            format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("not json"), parts[1], parts[2]),
            format!("{}.{}.{}", b64(&json!({"typ": "JWT"})), parts[1], parts[2]),
            format!("{}.{}.{}", b64(&json!(["HS256"])), parts[1], parts[2]),
            format!("{}.{}.{}", parts[0], "%%%", parts[2]),
        ];
        for token in cases {
            assert!(tokens().verify(&token, NOW).is_err(), "{token}");
        }
    }
}
