//! Project secrets at rest: each value is sealed with XChaCha20-Poly1305 (RustCrypto) under
//! the server's key, which is kept outside the database, and bound to the secret's name.
//! Stored as `kiln-sealed:v1:<hex of nonce ‖ ciphertext>`; the database never holds a
//! secret value in clear.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

const PREFIX: &str = "kiln-sealed:v1:";
const NONCE: usize = 24;

/// The 32-byte key that seals project secrets. Never printed.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> SecretKey {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        SecretKey(k)
    }

    /// Read a key written by `to_text`: 64 hex digits (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<SecretKey, String> {
        let bytes = hex::decode(text.trim()).map_err(|e| format!("a secret key is 64 hex digits ({e})"))?;
        let k: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| format!("a secret key is 32 bytes (64 hex digits), not {}", b.len()))?;
        Ok(SecretKey(k))
    }

    pub fn to_text(&self) -> String {
        hex::encode(self.0)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0.into())
    }

    /// Seal the value of secret `name`.
    pub fn seal(&self, name: &str, value: &str) -> String {
        let mut nonce = [0u8; NONCE];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher()
            .encrypt(&XNonce::from(nonce), Payload { msg: value.as_bytes(), aad: name.as_bytes() })
            .expect("XChaCha20-Poly1305 seals any length a project setting can have");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("{PREFIX}{}", hex::encode(out))
    }

    /// Open a value sealed for secret `name`; `None` when it was sealed under another key or name, or changed.
    pub fn open(&self, name: &str, stored: &str) -> Option<String> {
        let bytes = hex::decode(stored.strip_prefix(PREFIX)?).ok()?;
        if bytes.len() < NONCE {
            return None;
        }
        let (nonce, ct) = bytes.split_at(NONCE);
        let nonce: [u8; NONCE] = nonce.try_into().ok()?;
        let plain = self.cipher().decrypt(&XNonce::from(nonce), Payload { msg: ct, aad: name.as_bytes() }).ok()?;
        String::from_utf8(plain).ok()
    }
}

/// Is this stored value sealed (rather than a plaintext value from before sealing)?
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// What a LIKE pattern finds sealed values by.
pub(crate) const SEALED_LIKE: &str = "%kiln-sealed:v1:%";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_name() {
        let k = SecretKey::generate();
        let s = k.seal("TOKEN", "hush-123456");
        assert!(is_sealed(&s));
        assert!(!s.contains("hush"));
        assert_ne!(s, k.seal("TOKEN", "hush-123456"), "a fresh nonce each time");
        assert_eq!(k.open("TOKEN", &s).as_deref(), Some("hush-123456"));
        assert_eq!(k.open("OTHER", &s), None);
        assert_eq!(SecretKey::generate().open("TOKEN", &s), None);
        let mut tampered = s.clone();
        tampered.pop();
        tampered.push(if s.ends_with('0') { '1' } else { '0' });
        assert_eq!(k.open("TOKEN", &tampered), None);
        assert_eq!(SecretKey::parse(&k.to_text()).unwrap().open("TOKEN", &s).as_deref(), Some("hush-123456"));
        assert!(SecretKey::parse("abcd").unwrap_err().contains("32 bytes"));
    }
}
