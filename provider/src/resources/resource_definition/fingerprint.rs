//! `passphrase_fingerprint`: shows that the passphrase changed without revealing it.
//! A salted PBKDF2-HMAC-SHA256, slow enough that guessing from state is expensive.

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use sha2::Sha256;

/// PBKDF2 rounds; the hash runs once per apply that sets a passphrase. The crate's own unit
/// tests use a cheap cost (the full one takes 1–2 s per hash in a debug build); every other
/// build, the release binary included, uses the full one. The count is stored in each
/// fingerprint, so `matches` always uses the cost the fingerprint was made with.
const ROUNDS: u32 = if cfg!(test) { 1_000 } else { 200_000 };

/// `pbkdf2-sha256$<rounds>$<salt>$<hash>`, with a random 16-byte salt.
pub fn fingerprint(passphrase: &str) -> String {
    let salt: [u8; 16] = rand::random();
    let mut hash = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(passphrase.as_bytes(), &salt, ROUNDS, &mut hash);
    format!(
        "pbkdf2-sha256${ROUNDS}${}${}",
        B64.encode(salt),
        B64.encode(hash)
    )
}

/// True when `fp` is the fingerprint of `passphrase`.
pub fn matches(fp: &str, passphrase: &str) -> bool {
    let parts: Vec<&str> = fp.split('$').collect();
    let ["pbkdf2-sha256", rounds, salt, hash] = parts.as_slice() else {
        return false;
    };
    let (Ok(rounds), Ok(salt), Ok(hash)) =
        (rounds.parse::<u32>(), B64.decode(salt), B64.decode(hash))
    else {
        return false;
    };
    let mut out = vec![0u8; hash.len()];
    pbkdf2::pbkdf2_hmac::<Sha256>(passphrase.as_bytes(), &salt, rounds, &mut out);
    out == hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_salted_verifiable_and_never_the_passphrase() {
        let a = fingerprint("correct horse");
        let b = fingerprint("correct horse");
        assert_ne!(a, b, "salted");
        assert!(!a.contains("correct"));
        assert!(matches(&a, "correct horse"));
        assert!(!matches(&a, "wrong"));
    }
}
