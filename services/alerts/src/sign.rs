//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "id.timestamp.body">`, keyed by the base64-decoded part of the secret after `whsec_`.
//! Several signatures are separated by spaces (a secret being rotated signs too).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use topcoins_schemas::alert::SECRET_PREFIX;

/// A new secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    topcoins_schemas::alert::secret_of(&rand::random::<[u8; 32]>())
}

/// The key a secret names: the base64 after `whsec_` (a secret without the prefix is taken as
/// base64 as it is). `None` if it is not base64.
pub fn key_of(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    STANDARD.decode(encoded).ok()
}

/// `v1,<signature>` of `body` sent as message `id` at `timestamp` (Unix seconds).
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one signature per secret, space-separated.
pub fn header(secrets: &[&str], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .filter_map(|s| key_of(s))
        .map(|k| sign(&k, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `header` carries a valid signature of `body` by `secret` (what a receiver checks).
pub fn verify(secret: &str, header: &str, id: &str, timestamp: i64, body: &[u8]) -> bool {
    let Some(key) = key_of(secret) else {
        return false;
    };
    let expected = sign(&key, id, timestamp, body);
    header.split(' ').any(|s| s == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of the Standard Webhooks specification.
    #[test]
    fn the_specifications_test_vector() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let timestamp = 1614265330;
        let body = br#"{"test": 2432232314}"#;
        let key = key_of(secret).unwrap();
        assert_eq!(
            sign(&key, id, timestamp, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(verify(
            secret,
            &header(&[secret], id, timestamp, body),
            id,
            timestamp,
            body
        ));
        assert!(!verify(
            secret,
            &header(&[secret], id, timestamp + 1, body),
            id,
            timestamp,
            body
        ));
    }

    #[test]
    fn during_a_rotation_both_secrets_sign() {
        let (old, new) = (new_secret(), new_secret());
        let h = header(&[&new, &old], "msg_1", 7, b"{}");
        assert_eq!(h.split(' ').count(), 2);
        assert!(verify(&old, &h, "msg_1", 7, b"{}"));
        assert!(verify(&new, &h, "msg_1", 7, b"{}"));
        assert!(!verify(&new_secret(), &h, "msg_1", 7, b"{}"));
    }
}
