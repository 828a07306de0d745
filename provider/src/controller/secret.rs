//! Where a LUKS passphrase comes from. `passphrase` is a literal (sensitive, but Terraform
//! keeps it in state); `passphrase_file` and `passphrase_env` are references resolved on the
//! provider's machine at plan and at apply, so state holds only the path or variable name and
//! `passphrase_fingerprint`. A change of the referenced secret is found through the
//! fingerprint, and rotating away from a referenced secret needs the old one once, through
//! `previous_passphrase_file` / `previous_passphrase_env`. `passphrase_wo` (Terraform ≥ 1.11) is
//! a value like `passphrase` that Terraform sends in config only and never stores: for the
//! provider it behaves like a reference (state holds only the fingerprint), and rotating away
//! from it needs `previous_passphrase_wo` (or a previous file/env reference).

use std::fmt;

use blockstor_proto::wire::Passphrase;

use super::known::Known;
use crate::values::Value;

/// One way to give a passphrase, as configured on a definition or its group. A value given
/// in the configuration is a [`Passphrase`] from the moment it is read; a file path or a
/// variable name is not secret.
#[derive(Clone)]
pub enum Source {
    /// `passphrase`: the value itself.
    Literal(Passphrase),
    /// `passphrase_file`: a file on the provider's machine.
    File(String),
    /// `passphrase_env`: an environment variable of the provider process.
    Env(String),
    /// `passphrase_wo`: the value itself, write-only (config only, never in state).
    WriteOnly(Passphrase),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Literal(_) => f.write_str("Literal([redacted])"),
            Source::File(path) => f.debug_tuple("File").field(path).finish(),
            Source::Env(name) => f.debug_tuple("Env").field(name).finish(),
            Source::WriteOnly(_) => f.write_str("WriteOnly([redacted])"),
        }
    }
}

/// Same kind and same value (tests compare what [`Family::source`] found).
impl PartialEq for Source {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Source::Literal(a), Source::Literal(b))
            | (Source::WriteOnly(a), Source::WriteOnly(b)) => a.expose() == b.expose(),
            (Source::File(a), Source::File(b)) | (Source::Env(a), Source::Env(b)) => a == b,
            _ => false,
        }
    }
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
                Value::String(s) => set.push((attr, s)),
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
            Some((attr, v)) if Some(attr) == self.literal => {
                Known::Some(Source::Literal(Passphrase::new(v.as_str())))
            }
            Some((attr, v)) if attr == self.file => Known::Some(Source::File(v.clone())),
            Some((attr, v)) if Some(attr) == self.wo => {
                Known::Some(Source::WriteOnly(Passphrase::new(v.as_str())))
            }
            Some((_, v)) => Known::Some(Source::Env(v.clone())),
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
    pub fn read(&self) -> Result<Passphrase, String> {
        match self {
            Source::Literal(p) | Source::WriteOnly(p) => Ok(p.clone()),
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
                Ok(Passphrase::new(text))
            }
            Source::Env(name) => std::env::var(name).map(Passphrase::new).map_err(|_| {
                format!("the environment variable {name} is not set (or not UTF-8) where terraform runs the provider. Export it before running terraform.")
            }),
        }
    }
}

/// One family's source on one object, read once.
#[derive(Clone, Default)]
pub enum Level {
    /// None of the family's attributes is set.
    #[default]
    Null,
    /// Some attribute is not known yet.
    Unknown,
    /// More than one attribute is set (named here); nothing was read.
    Conflict(Vec<&'static str>),
    /// The one source set, and what reading it gave.
    Read {
        source: Source,
        value: Result<Passphrase, String>,
    },
}

impl fmt::Debug for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Level::Null => f.write_str("Null"),
            Level::Unknown => f.write_str("Unknown"),
            Level::Conflict(attrs) => f.debug_tuple("Conflict").field(attrs).finish(),
            Level::Read { source, value } => f
                .debug_struct("Read")
                .field("source", source)
                .field("value", &value.as_ref().map(|_| Redacted))
                .finish(),
        }
    }
}

/// Stands in for a secret in `Debug` output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Level {
    /// Finds `family`'s source on `obj` and reads it: the one read of a call.
    pub fn of(family: &Family, obj: &Value) -> Level {
        match family.source(obj) {
            Err(attrs) => Level::Conflict(attrs),
            Ok(Known::Null) => Level::Null,
            Ok(Known::Unknown) => Level::Unknown,
            Ok(Known::Some(source)) => {
                let value = source.read();
                Level::Read { source, value }
            }
        }
    }

    /// The passphrase; unknown when it cannot be read (validation reports why).
    pub fn passphrase(&self) -> Known<Passphrase> {
        match self {
            Level::Null => Known::Null,
            Level::Read { value: Ok(p), .. } => Known::Some(p.clone()),
            _ => Known::Unknown,
        }
    }

    /// The passphrase or why it cannot be read.
    pub fn result(&self) -> Known<Result<Passphrase, String>> {
        match self {
            Level::Null => Known::Null,
            Level::Read { value, .. } => Known::Some(value.clone()),
            _ => Known::Unknown,
        }
    }
}

/// Every passphrase source of one definition object (config or plan), each read once: an
/// RPC call resolves them at its start and passes them down, so a `passphrase_file` is read
/// once per call, not once per check.
#[derive(Clone, Default)]
pub struct Passphrases {
    /// `passphrase*` on the definition.
    pub own: Level,
    /// `previous_passphrase*` on the definition.
    pub previous: Level,
    /// `passphrase*` on its `resource_group`.
    pub group: Level,
}

impl fmt::Debug for Passphrases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Passphrases")
            .field("own", &self.own)
            .field("previous", &self.previous)
            .field("group", &self.group)
            .finish()
    }
}

impl Passphrases {
    /// Reads every source set on `rd` and its group.
    pub fn read(rd: &Value) -> Passphrases {
        Passphrases {
            own: Level::of(&CURRENT, rd),
            previous: Level::of(&PREVIOUS, rd),
            group: Level::of(&GROUP, rd.get("resource_group")),
        }
    }

    /// Each level with its family and, for the group, the attribute its paths start at.
    pub fn levels(&self) -> [(&Level, Family, Option<&'static str>); 3] {
        [
            (&self.own, CURRENT, None),
            (&self.previous, PREVIOUS, None),
            (&self.group, GROUP, Some("resource_group")),
        ]
    }

    /// The effective passphrase: the definition's own, else its group's.
    pub fn current(&self) -> Known<Passphrase> {
        self.own.passphrase().or(self.group.passphrase())
    }

    /// The previous passphrase configured for a rotation away from a referenced secret.
    pub fn previous(&self) -> Known<Result<Passphrase, String>> {
        self.previous.result()
    }
}

/// The literal passphrase a state object holds (own, else inherited), without reading any
/// reference: a reference in prior state points at today's secret, not the one applied.
pub fn literal_in_state(rd: &Value) -> Known<Passphrase> {
    let own = |v: &Value| match v.get("passphrase") {
        Value::String(s) => Known::Some(Passphrase::new(s.as_str())),
        Value::Null => Known::Null,
        _ => Known::Unknown,
    };
    own(rd).or(own(rd.get("resource_group")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plaintext of a resolved passphrase, for comparing in assertions.
    fn exposed(k: Known<Passphrase>) -> Known<String> {
        k.map(|p| p.expose().to_owned())
    }

    fn effective(rd: &Value) -> Known<String> {
        exposed(Passphrases::read(rd).current())
    }

    #[test]
    fn a_file_reference_is_read_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "file-secret\n").unwrap();
        let rd = Value::object([("passphrase_file", Value::string(path.to_str().unwrap()))]);
        assert_eq!(effective(&rd), Known::Some("file-secret".into()));
        assert_eq!(
            exposed(literal_in_state(&rd)),
            Known::Null,
            "nothing literal in state"
        );
    }

    #[test]
    fn a_file_reference_is_read_once_per_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "first-secret\n").unwrap();
        let rd = Value::object([("passphrase_file", Value::string(path.to_str().unwrap()))]);
        let resolved = Passphrases::read(&rd);
        std::fs::write(&path, "second-secret\n").unwrap();
        assert_eq!(
            exposed(resolved.current()),
            Known::Some("first-secret".into()),
            "later checks of the same call use the value read at its start"
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
        assert_eq!(exposed(literal_in_state(&rd)), Known::Null);
        let both = Value::object([
            ("passphrase_file", Value::string("/k")),
            ("passphrase_wo", Value::string("wo-secret")),
        ]);
        assert_eq!(
            CURRENT.source(&both),
            Err(vec!["passphrase_file", "passphrase_wo"])
        );
        let prev = Value::object([("previous_passphrase_wo", Value::string("old"))]);
        assert_eq!(
            Passphrases::read(&prev)
                .previous()
                .map(|r| r.map(|p| p.expose().to_owned())),
            Known::Some(Ok("old".into()))
        );
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

    #[test]
    fn debug_output_of_every_secret_holding_type_never_shows_the_secret() {
        const SECRET: &str = "hunter2-debug-secret";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, SECRET).unwrap();
        std::env::set_var("BLOCKSTOR_TEST_DEBUG_ENV", SECRET);
        let rd = Value::object([
            ("passphrase", Value::string(SECRET)),
            (
                "previous_passphrase_file",
                Value::string(path.to_str().unwrap()),
            ),
            (
                "resource_group",
                Value::object([("passphrase_env", Value::string("BLOCKSTOR_TEST_DEBUG_ENV"))]),
            ),
        ]);
        let resolved = Passphrases::read(&rd);
        assert_eq!(exposed(resolved.current()), Known::Some(SECRET.into()));
        let shown = [
            format!("{resolved:?}"),
            format!("{:?}", resolved.own),
            format!("{:?}", Source::Literal(Passphrase::new(SECRET))),
            format!("{:?}", Source::WriteOnly(Passphrase::new(SECRET))),
            format!("{:?}", Source::File(path.to_str().unwrap().into()).read()),
            format!("{:?}", literal_in_state(&rd)),
        ];
        for text in shown {
            assert!(!text.contains(SECRET), "{text}");
            assert!(
                text.contains("redacted") || text.contains("REDACTED"),
                "{text}"
            );
        }
    }
}
