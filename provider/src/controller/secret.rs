//! Where a LUKS passphrase comes from. `passphrase` is a literal (sensitive, but Terraform
//! keeps it in state); `passphrase_file` and `passphrase_env` are references resolved on the
//! provider's machine at plan and at apply, so state holds only the path or variable name and
//! `passphrase_fingerprint`. A change of the referenced secret is found through the
//! fingerprint, and rotating away from a referenced secret needs the old one once, through
//! `previous_passphrase_file` / `previous_passphrase_env`. `passphrase_wo` (Terraform ≥ 1.11) is
//! a value like `passphrase` that Terraform sends in config only and never stores: for the
//! provider it behaves like a reference (state holds only the fingerprint), and rotating away
//! from it needs `previous_passphrase_wo` (or a previous file/env reference).

use super::resolve::Known;
use crate::values::Value;

/// One way to give a passphrase, as configured on a definition or its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `passphrase`: the value itself.
    Literal(String),
    /// `passphrase_file`: a file on the provider's machine.
    File(String),
    /// `passphrase_env`: an environment variable of the provider process.
    Env(String),
    /// `passphrase_wo`: the value itself, write-only (config only, never in state).
    WriteOnly(String),
}

/// The attributes of one source family: `passphrase*` or `previous_passphrase*`.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub literal: Option<&'static str>,
    pub file: &'static str,
    pub env: &'static str,
    /// The write-only attribute, where the level has one.
    pub wo: Option<&'static str>,
}

/// `passphrase`, `passphrase_file`, `passphrase_env`.
pub const CURRENT: Family = Family {
    literal: Some("passphrase"),
    file: "passphrase_file",
    env: "passphrase_env",
    wo: Some("passphrase_wo"),
};

/// `previous_passphrase_file`, `previous_passphrase_env`: only while rotating.
pub const PREVIOUS: Family = Family {
    literal: None,
    file: "previous_passphrase_file",
    env: "previous_passphrase_env",
    wo: Some("previous_passphrase_wo"),
};

/// A group's sources: `passphrase_wo` is left out, because it cannot reach a definition (a
/// group is read through its state, where a write-only value is null); validation rejects it.
pub const GROUP: Family = Family {
    wo: None,
    ..CURRENT
};

impl Family {
    /// Every attribute name of the family.
    pub fn attributes(&self) -> Vec<&'static str> {
        self.literal
            .into_iter()
            .chain([self.file, self.env])
            .chain(self.wo)
            .collect()
    }

    /// The source set on `obj` (an RD or RG object). `Err` names the attributes when more
    /// than one is set; unknown when any of them is not known yet.
    pub fn source(&self, obj: &Value) -> Result<Known<Source>, Vec<&'static str>> {
        let mut set = Vec::new();
        let mut unknown = false;
        for attr in self.attributes() {
            match obj.get(attr) {
                Value::Null => {}
                Value::String(s) => set.push((attr, s.clone())),
                _ => unknown = true,
            }
        }
        if set.len() > 1 {
            return Err(set.into_iter().map(|(a, _)| a).collect());
        }
        if unknown {
            return Ok(Known::Unknown);
        }
        Ok(match set.pop() {
            None => Known::Null,
            Some((attr, v)) if Some(attr) == self.literal => Known::Some(Source::Literal(v)),
            Some((attr, v)) if attr == self.file => Known::Some(Source::File(v)),
            Some((attr, v)) if Some(attr) == self.wo => Known::Some(Source::WriteOnly(v)),
            Some((_, v)) => Known::Some(Source::Env(v)),
        })
    }
}

impl Source {
    /// The attribute this source is configured by, in `family`.
    pub fn attribute(&self, family: &Family) -> &'static str {
        match self {
            Source::Literal(_) => family.literal.unwrap_or("passphrase"),
            Source::File(_) => family.file,
            Source::Env(_) => family.env,
            Source::WriteOnly(_) => family.wo.unwrap_or("passphrase_wo"),
        }
    }

    /// The passphrase. A file's one trailing line break (`echo secret > file`) is dropped.
    /// The error says what to fix and never holds the secret.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Source::Literal(s) | Source::WriteOnly(s) => Ok(s.clone()),
            Source::File(path) => {
                let mut text = std::fs::read_to_string(path).map_err(|e| {
                    format!("cannot read the passphrase file {path:?} on the machine running terraform: {e}. Create it (mode 0600) or fix the path.")
                })?;
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                Ok(text)
            }
            Source::Env(name) => std::env::var(name).map_err(|_| {
                format!("the environment variable {name} is not set (or not UTF-8) where terraform runs the provider. Export it before running terraform.")
            }),
        }
    }
}

/// The effective passphrase of a definition object: its own source, else its group's, read
/// now. A source that cannot be read is unknown here; validation reports why.
pub fn effective(rd: &Value) -> Known<String> {
    level(rd, &CURRENT).or(level(rd.get("resource_group"), &GROUP))
}

fn level(obj: &Value, family: &Family) -> Known<String> {
    match family.source(obj) {
        Ok(Known::Some(src)) => src.read().map_or(Known::Unknown, Known::Some),
        Ok(Known::Null) => Known::Null,
        _ => Known::Unknown,
    }
}

/// The literal passphrase a state object holds (own, else inherited), without reading any
/// reference: a reference in prior state points at today's secret, not the one applied.
pub fn literal_in_state(rd: &Value) -> Known<String> {
    let own = |v: &Value| match v.get("passphrase") {
        Value::String(s) => Known::Some(s.clone()),
        Value::Null => Known::Null,
        _ => Known::Unknown,
    };
    own(rd).or(own(rd.get("resource_group")))
}

/// The previous passphrase configured for a rotation away from a referenced secret.
pub fn previous(rd: &Value) -> Known<Result<String, String>> {
    match PREVIOUS.source(rd) {
        Ok(Known::Some(src)) => Known::Some(src.read()),
        Ok(Known::Null) => Known::Null,
        _ => Known::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_reference_is_read_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "file-secret\n").unwrap();
        let rd = Value::object([("passphrase_file", Value::string(path.to_str().unwrap()))]);
        assert_eq!(effective(&rd), Known::Some("file-secret".into()));
        assert_eq!(
            literal_in_state(&rd),
            Known::Null,
            "nothing literal in state"
        );
    }

    #[test]
    fn the_groups_env_reference_is_inherited() {
        std::env::set_var("BLOCKSTOR_TEST_SECRET_ENV", "env-secret");
        let rg = Value::object([("passphrase_env", Value::string("BLOCKSTOR_TEST_SECRET_ENV"))]);
        let rd = Value::object([("resource_group", rg)]);
        assert_eq!(effective(&rd), Known::Some("env-secret".into()));
    }

    #[test]
    fn a_write_only_value_is_the_passphrase_and_nothing_of_it_is_literal_in_state() {
        let rd = Value::object([("passphrase_wo", Value::string("wo-secret"))]);
        assert_eq!(effective(&rd), Known::Some("wo-secret".into()));
        assert_eq!(literal_in_state(&rd), Known::Null);
        let both = Value::object([
            ("passphrase_file", Value::string("/k")),
            ("passphrase_wo", Value::string("wo-secret")),
        ]);
        assert_eq!(
            CURRENT.source(&both),
            Err(vec!["passphrase_file", "passphrase_wo"])
        );
        let prev = Value::object([("previous_passphrase_wo", Value::string("old"))]);
        assert_eq!(previous(&prev), Known::Some(Ok("old".into())));
    }

    #[test]
    fn two_sources_on_one_level_conflict_and_a_missing_file_says_so() {
        let rd = Value::object([
            ("passphrase", Value::string("x")),
            ("passphrase_env", Value::string("Y")),
        ]);
        assert_eq!(
            CURRENT.source(&rd),
            Err(vec!["passphrase", "passphrase_env"])
        );
        let err = Source::File("/nonexistent/key".into()).read().unwrap_err();
        assert!(err.contains("/nonexistent/key"), "{err}");
    }
}
