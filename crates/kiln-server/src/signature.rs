//! HMAC-SHA256 signatures of request bodies: checked on incoming webhooks (in
//! constant time) and made for outgoing ones, the same way.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Hex HMAC-SHA256 of `body` with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Does `given_hex` (with or without a `sha256=` prefix) sign `body` with `secret`? Constant time.
pub fn verify(secret: &str, body: &[u8], given_hex: &str) -> bool {
    let given = given_hex.trim().trim_start_matches("sha256=");
    let Ok(bytes) = hex::decode(given) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.verify_slice(&bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_github_documents() {
        // GitHub's documented example: secret "It's a Secret to Everybody", payload "Hello, World!".
        let sig = sign("It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(sig, "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
        assert!(verify("It's a Secret to Everybody", b"Hello, World!", &format!("sha256={sig}")));
        assert!(!verify("It's a Secret to Everybody", b"Hello, World?", &sig));
        assert!(!verify("other", b"Hello, World!", &sig));
        assert!(!verify("It's a Secret to Everybody", b"Hello, World!", "sha256=zz"));
        assert!(!verify("It's a Secret to Everybody", b"Hello, World!", ""));
    }
}
