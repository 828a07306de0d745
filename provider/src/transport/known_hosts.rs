//! Host-key verification for the SSH transport: known_hosts content or one pinned key.
//!
//! There is no trust-on-first-use: a key that is not listed is refused, and the refusal names
//! the node and the fingerprint the server offered, so an operator can check it out of band.

use base64::Engine;
use hmac::{Hmac, Mac};
use russh::keys::ssh_key::{HashAlg, PublicKey};
use sha1::Sha1;

use super::config::HostKeyPolicy;

/// Whether `offered` is the key the policy trusts for `host:port`; `Err` says why not.
pub fn verify(
    policy: &HostKeyPolicy,
    host: &str,
    port: u16,
    offered: &PublicKey,
) -> Result<(), String> {
    let fingerprint = offered.fingerprint(HashAlg::Sha256);
    let algorithm = offered.algorithm();
    match policy {
        HostKeyPolicy::InsecureIgnore => Ok(()),
        HostKeyPolicy::Pinned(line) => {
            let pinned = parse_key(line)
                .map_err(|e| format!("host_key is not an OpenSSH public key line: {e}"))?;
            if same_key(&pinned, offered) {
                Ok(())
            } else {
                Err(format!(
                    "host key of {host}:{port} is {algorithm} {fingerprint}, which does not match the pinned host_key {}; \
                     if the host was reinstalled, verify the new key out of band and update host_key",
                    pinned.fingerprint(HashAlg::Sha256)
                ))
            }
        }
        HostKeyPolicy::KnownHosts(content) => {
            let listed: Vec<PublicKey> = entries_for(content, host, port).collect();
            if listed.iter().any(|k| same_key(k, offered)) {
                Ok(())
            } else if listed.is_empty() {
                Err(format!(
                    "host {host}:{port} offered {algorithm} key {fingerprint}, and known_hosts has no entry for it; \
                     add the host's key to known_hosts (e.g. from ssh-keyscan, verified out of band)"
                ))
            } else {
                Err(format!(
                    "host key of {host}:{port} is {algorithm} {fingerprint}, which differs from the key(s) known_hosts lists \
                     for it; refusing to connect (possible man-in-the-middle, or the host was reinstalled)"
                ))
            }
        }
    }
}

fn parse_key(line: &str) -> Result<PublicKey, String> {
    PublicKey::from_openssh(line.trim()).map_err(|e| e.to_string())
}

/// Keys compare by algorithm and key data; comments do not matter.
fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

/// The keys known_hosts lists for `host:port` (plain or hashed host patterns; `@revoked`
/// lines and `@cert-authority` lines are never treated as trusted host keys).
fn entries_for<'a>(
    content: &'a str,
    host: &'a str,
    port: u16,
) -> impl Iterator<Item = PublicKey> + 'a {
    let wanted = if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    };
    content.lines().filter_map(move |line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            return None;
        }
        let mut fields = line.split_whitespace();
        let patterns = fields.next()?;
        let key_type = fields.next()?;
        let key_b64 = fields.next()?;
        if !patterns.split(',').any(|p| host_matches(p, &wanted)) {
            return None;
        }
        parse_key(&format!("{key_type} {key_b64}")).ok()
    })
}

/// A plain pattern matches exactly; `|1|salt|hash` is OpenSSH's HMAC-SHA1 hashed host name.
fn host_matches(pattern: &str, wanted: &str) -> bool {
    let Some(hashed) = pattern.strip_prefix("|1|") else {
        return pattern == wanted;
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut parts = hashed.splitn(2, '|');
    let (Some(Ok(salt)), Some(Ok(hash))) = (
        parts.next().map(|s| b64.decode(s)),
        parts.next().map(|h| b64.decode(h)),
    ) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(wanted.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two throwaway ed25519 public keys, used only as test data.
    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWhRkrGuNErFwKCOlOtiYQhzsSPwdYy6fKhI911QjPh a@test";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDuK2iiU9JwtclS7PCXHca0yr7WTiXxeTb7HBgA5SFp4 b@test";

    fn key(line: &str) -> PublicKey {
        parse_key(line).unwrap()
    }

    fn body(line: &str) -> &str {
        line.splitn(3, ' ').take(2).last().unwrap()
    }

    #[test]
    fn known_hosts_accepts_listed_key_on_custom_port() {
        let content = format!("[127.0.0.1]:2222 ssh-ed25519 {}\n", body(KEY_A));
        assert!(verify(
            &HostKeyPolicy::KnownHosts(content),
            "127.0.0.1",
            2222,
            &key(KEY_A)
        )
        .is_ok());
    }

    #[test]
    fn known_hosts_refuses_other_key_naming_the_fingerprint() {
        let content = format!("[127.0.0.1]:2222 ssh-ed25519 {}\n", body(KEY_A));
        let offered = key(KEY_B);
        let err = verify(
            &HostKeyPolicy::KnownHosts(content),
            "127.0.0.1",
            2222,
            &offered,
        )
        .unwrap_err();
        assert!(
            err.contains(&offered.fingerprint(HashAlg::Sha256).to_string()),
            "{err}"
        );
        assert!(err.contains("differs"), "{err}");
    }

    #[test]
    fn known_hosts_without_the_host_refuses() {
        let content = format!("otherhost ssh-ed25519 {}\n", body(KEY_A));
        let err = verify(
            &HostKeyPolicy::KnownHosts(content),
            "127.0.0.1",
            22,
            &key(KEY_A),
        )
        .unwrap_err();
        assert!(err.contains("no entry"), "{err}");
    }

    #[test]
    fn revoked_lines_are_never_trusted() {
        let content = format!("@revoked 127.0.0.1 ssh-ed25519 {}\n", body(KEY_A));
        assert!(verify(
            &HostKeyPolicy::KnownHosts(content),
            "127.0.0.1",
            22,
            &key(KEY_A)
        )
        .is_err());
    }

    #[test]
    fn hashed_host_names_match() {
        // Build a hashed entry the way `ssh-keygen -H` does.
        let salt = [7u8; 20];
        let mut mac = Hmac::<Sha1>::new_from_slice(&salt).unwrap();
        mac.update(b"[10.0.0.2]:22");
        let b64 = base64::engine::general_purpose::STANDARD;
        let hash = b64.encode(mac.finalize().into_bytes());
        let pattern = format!("|1|{}|{hash}", b64.encode(salt));
        assert!(host_matches(&pattern, "[10.0.0.2]:22"));
        assert!(!host_matches(&pattern, "[10.0.0.3]:22"));
    }

    #[test]
    fn pinned_key_compares_key_data_not_comment() {
        let pinned = HostKeyPolicy::Pinned(KEY_A.replace("a@test", "other comment"));
        assert!(verify(&pinned, "h", 22, &key(KEY_A)).is_ok());
        assert!(verify(&pinned, "h", 22, &key(KEY_B))
            .unwrap_err()
            .contains("pinned host_key"));
    }
}
