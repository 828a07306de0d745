//! The one redaction point: every error the agent answers or logs for a request passes through
//! [`RequestSecrets::redact`] ([`crate::api::handle`] applies it), which replaces each secret
//! of that request with `[REDACTED]`. Tools may quote what they were given (drbdadm's conflict
//! message quotes both shared secrets of a resource), and a tool's stderr ends up in messages.

use std::path::Path;

use blockstor_proto::wire::StdioRequest;
use blockstor_proto::ResourceName;

use crate::error::Error;

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// The secrets one request brought or touches: its passphrase, previous passphrase and DRBD
/// shared secret, and for a request by name the shared secret in the resource's rendered
/// `.res` (a delete's drbdadm reads it). `Debug` shows only how many there are.
#[derive(Default)]
pub struct RequestSecrets(Vec<String>);

impl std::fmt::Debug for RequestSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestSecrets({} redacted)", self.0.len())
    }
}

impl RequestSecrets {
    /// Collects the secrets of `req`; `drbd_res_dir` holds the agent's rendered `.res` files.
    pub fn of(req: &StdioRequest, drbd_res_dir: &Path) -> Self {
        let mut out = RequestSecrets::default();
        match req {
            StdioRequest::Apply { resource } | StdioRequest::Plan { resource } => {
                if let Some(l) = &resource.luks {
                    out.add(l.passphrase.expose());
                    if let Some(p) = &l.previous_passphrase {
                        out.add(p.expose());
                    }
                }
                if let Some(x) = &resource.drbd {
                    out.add(x.shared_secret.expose());
                }
                out.add_rendered(drbd_res_dir, &resource.name);
            }
            StdioRequest::Get { name } | StdioRequest::Delete { name, .. } => {
                out.add_rendered(drbd_res_dir, name);
            }
            StdioRequest::Node | StdioRequest::List => {}
        }
        // Longest first, so a secret that contains another is replaced whole.
        out.0.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out.0.dedup();
        out
    }

    fn add(&mut self, secret: &str) {
        if !secret.is_empty() {
            self.0.push(secret.to_owned());
            // A tool may print one line of a multi-line secret (a rotation sends two lines).
            self.0.extend(
                secret
                    .lines()
                    .filter(|l| !l.is_empty() && *l != secret)
                    .map(str::to_owned),
            );
        }
    }

    /// The `shared-secret "…"` of the resource's rendered `.res`, if there is one.
    fn add_rendered(&mut self, dir: &Path, rd: &ResourceName) {
        let Ok(text) = std::fs::read_to_string(dir.join(format!("{rd}.res"))) else {
            return;
        };
        for rest in text.split("shared-secret").skip(1) {
            if let Some(secret) = rest
                .trim_start()
                .strip_prefix('"')
                .and_then(|r| r.split('"').next())
            {
                self.add(secret);
            }
        }
    }

    /// `text` with every secret of the request replaced. A secret shorter than
    /// [`SHORT_SECRET`] characters is replaced where it stands as a word of its own, so a
    /// one-letter passphrase does not garble every message (a tool quotes a secret as a word).
    pub fn redact_text(&self, text: &str) -> String {
        self.0.iter().fold(text.to_owned(), |t, s| {
            if s.chars().count() >= SHORT_SECRET {
                t.replace(s.as_str(), REDACTED)
            } else {
                replace_words(&t, s)
            }
        })
    }

    /// `e` with every secret of the request replaced in its message. The field is a path the
    /// agent built from the request's keys, never from a value.
    pub fn redact(&self, mut e: Error) -> Error {
        e.message = self.redact_text(&e.message);
        e
    }
}

/// Secrets shorter than this are replaced only as whole words.
const SHORT_SECRET: usize = 6;

/// `text` with each occurrence of `word` that no letter or digit touches replaced.
fn replace_words(text: &str, word: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut before: Option<char> = None;
    while let Some(at) = rest.find(word) {
        let prev = rest[..at].chars().next_back().or(before);
        let next = rest[at + word.len()..].chars().next();
        let alone = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
        out.push_str(&rest[..at]);
        if alone(prev) && alone(next) {
            out.push_str(REDACTED);
        } else {
            out.push_str(word);
        }
        before = word.chars().next_back();
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply_request(body: &str) -> StdioRequest {
        serde_json::from_str(&format!(r#"{{"op":"apply","resource":{body}}}"#)).unwrap()
    }

    #[test]
    fn every_secret_of_a_request_is_replaced_and_nothing_else() {
        let req = apply_request(
            r#"{"name":"db","layer_stack":["DRBD","LUKS","STORAGE"],
                "volumes":[{"number":0,"size_kib":4096}],"storage":{"pool":"files"},
                "luks":{"passphrase":"pass-now-123","previous_passphrase":"pass-before-456"},
                "drbd":{"node_id":0,"port":7000,"minors":[1000],"peers":[],
                        "shared_secret":"drbdSecret99","address":"10.0.0.1"}}"#,
        );
        let dir = tempfile::tempdir().unwrap();
        let secrets = RequestSecrets::of(&req, dir.path());
        let text = "db: shared-secret \"drbdSecret99\" conflicts; keys pass-now-123 / \
                    pass-before-456";
        let out = secrets.redact_text(text);
        assert_eq!(
            out,
            "db: shared-secret \"[REDACTED]\" conflicts; keys [REDACTED] / [REDACTED]"
        );
        assert_eq!(format!("{secrets:?}"), "RequestSecrets(3 redacted)");
    }

    #[test]
    fn a_short_secret_is_replaced_only_as_a_word_and_fields_are_left_alone() {
        let req = apply_request(
            r#"{"name":"db","layer_stack":["LUKS","STORAGE"],
                "volumes":[{"number":0,"size_kib":4096}],"storage":{"pool":"files"},
                "luks":{"passphrase":"p"}}"#,
        );
        let dir = tempfile::tempdir().unwrap();
        let e = RequestSecrets::of(&req, dir.path())
            .redact(Error::internal("key 'p' rejected; use pbkdf2").field("props[\"Luks/pbkdf\"]"));
        assert_eq!(e.message, "key '[REDACTED]' rejected; use pbkdf2");
        assert_eq!(e.field.as_deref(), Some("props[\"Luks/pbkdf\"]"));
    }

    #[test]
    fn a_delete_learns_the_shared_secret_from_the_rendered_res() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("db.res"),
            "resource \"db\" {\n net {\n  shared-secret \"onDisk42\";\n }\n}\n",
        )
        .unwrap();
        let req = StdioRequest::Delete {
            name: "db".parse().unwrap(),
            options: Default::default(),
        };
        let e = RequestSecrets::of(&req, dir.path()).redact(Error::internal(
            "drbdadm down db: net { shared-secret onDisk42; } conflicts",
        ));
        assert!(!e.message.contains("onDisk42"), "{}", e.message);
        assert!(e.message.contains(REDACTED), "{}", e.message);
    }
}
