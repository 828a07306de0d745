//! Names that become LV names, mapper names, file names and DRBD resource names.
//!
//! Every rule lives here, once. Functions elsewhere take these types, never `&str`, so an
//! unchecked name cannot reach a path, a device name or an argv.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a name was refused; the message says which rule failed and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} {name:?} is {len} characters long; the limit is {max}")]
    TooLong {
        kind: &'static str,
        name: String,
        len: usize,
        max: usize,
    },
    #[error("{kind} {name:?} is too short: use at least {min} characters")]
    TooShort {
        kind: &'static str,
        name: String,
        min: usize,
    },
    #[error("{kind} {name:?} must start with {first}")]
    BadFirst {
        kind: &'static str,
        name: String,
        first: &'static str,
    },
    #[error("{kind} {name:?} contains {ch:?}; only {allowed} are allowed")]
    BadChar {
        kind: &'static str,
        name: String,
        ch: char,
        allowed: &'static str,
    },
    #[error("{kind} {name:?} is reserved by drbdadm; choose another name")]
    Reserved { kind: &'static str, name: String },
}

/// The shape rules of one kind of name.
struct Rule {
    kind: &'static str,
    min: usize,
    max: usize,
    first: fn(char) -> bool,
    first_text: &'static str,
    rest: fn(char) -> bool,
    rest_text: &'static str,
    reserved: &'static [&'static str],
}

impl Rule {
    fn check(&self, s: &str) -> Result<(), NameError> {
        let kind = self.kind;
        let name = || s.chars().take(64).collect::<String>();
        if s.is_empty() {
            return Err(NameError::Empty { kind });
        }
        let len = s.chars().count();
        if len > self.max {
            return Err(NameError::TooLong {
                kind,
                name: name(),
                len,
                max: self.max,
            });
        }
        let mut chars = s.chars();
        let first = chars.next().expect("non-empty");
        if !(self.first)(first) {
            return Err(NameError::BadFirst {
                kind,
                name: name(),
                first: self.first_text,
            });
        }
        if let Some(ch) = chars.find(|c| !(self.rest)(*c)) {
            return Err(NameError::BadChar {
                kind,
                name: name(),
                ch,
                allowed: self.rest_text,
            });
        }
        if len < self.min {
            return Err(NameError::TooShort {
                kind,
                name: name(),
                min: self.min,
            });
        }
        if self.reserved.iter().any(|r| r.eq_ignore_ascii_case(s)) {
            return Err(NameError::Reserved { kind, name: name() });
        }
        Ok(())
    }
}

fn ascii_letter_or_underscore(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn ascii_word_or_dash(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn ascii_alphanumeric(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn hostname_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

/// `^[A-Za-z_][A-Za-z0-9_-]{1,47}$`, not a drbdadm keyword.
const RESOURCE_RULE: Rule = Rule {
    kind: "name",
    min: 2,
    max: 48,
    first: ascii_letter_or_underscore,
    first_text: "a letter or '_'",
    rest: ascii_word_or_dash,
    rest_text: "ASCII letters, digits, '_' and '-'",
    reserved: &["all", "proxy"],
};

const POOL_RULE: Rule = Rule {
    kind: "storage_pool",
    reserved: &[],
    ..RESOURCE_RULE
};

/// Node names follow host names: letters, digits, '-', '_', '.'; they appear in `.res` files.
const NODE_RULE: Rule = Rule {
    kind: "node name",
    min: 1,
    max: 63,
    first: ascii_alphanumeric,
    first_text: "a letter or digit",
    rest: hostname_char,
    rest_text: "ASCII letters, digits, '-', '_' and '.'",
    reserved: &["all", "proxy"],
};

macro_rules! validated_name {
    ($(#[$doc:meta])* $ty:ident, $rule:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $ty(String);

        impl $ty {
            /// The validated name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                $rule.check(s)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                $rule.check(&s)?;
                Ok(Self(s))
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::try_from(s).map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

validated_name!(
    /// A resource definition or resource group name: `^[A-Za-z_][A-Za-z0-9_-]{1,47}$`, not
    /// `all` or `proxy`. Safe to use in file names, LV names, mapper names and `.res` files.
    ResourceName,
    RESOURCE_RULE
);

validated_name!(
    /// A storage pool name from the agent's config; same character rules as [`ResourceName`].
    StoragePoolName,
    POOL_RULE
);

validated_name!(
    /// A node name: host-name characters, 1–63 long; it appears in DRBD `.res` files.
    NodeName,
    NODE_RULE
);

/// The backing volume name of volume `vol` of `rd`: `<rd>_<vol:05>`, LINSTOR's name for a data
/// volume in every provider (LV, ZFS dataset, loop file stem). Valid by construction: `rd` is
/// a [`ResourceName`] and the suffix is digits.
pub fn volume_name(rd: &ResourceName, vol: u32) -> String {
    format!("{rd}_{vol:05}")
}

/// The resource a backing volume name `<rd>_<vol:05>` belongs to, if it is one of ours.
pub fn resource_of_volume(name: &str) -> Option<ResourceName> {
    let (rd, digits) = name.trim().rsplit_once('_')?;
    is_volume_suffix(digits).then(|| rd.parse().ok()).flatten()
}

/// The volume number in a backing volume name `<rd>_<vol:05>`, if `name` is one of `rd`'s.
pub fn parse_volume_name(rd: &ResourceName, name: &str) -> Option<u32> {
    let digits = name.strip_prefix(rd.as_str())?.strip_prefix('_')?;
    is_volume_suffix(digits)
        .then(|| digits.parse().ok())
        .flatten()
}

/// Exactly five ASCII digits naming a volume number blockstor can create (at most
/// [`MAX_VOLUME_NUMBER`](crate::wire::MAX_VOLUME_NUMBER)): `db_99999` is not one of ours.
fn is_volume_suffix(digits: &str) -> bool {
    digits.len() == 5
        && digits.bytes().all(|b| b.is_ascii_digit())
        && digits
            .parse::<u32>()
            .is_ok_and(|n| n <= crate::wire::MAX_VOLUME_NUMBER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_above_the_volume_number_limit_are_not_ours() {
        let rd: ResourceName = "db".parse().unwrap();
        assert_eq!(parse_volume_name(&rd, "db_00099"), Some(99));
        assert_eq!(parse_volume_name(&rd, "db_00100"), None);
        assert_eq!(parse_volume_name(&rd, "db_99999"), None);
        assert_eq!(resource_of_volume("db_00007"), Some(rd));
        assert_eq!(resource_of_volume("db_99999"), None);
    }

    #[test]
    fn accepts_typical_resource_names() {
        for ok in ["db-data", "pvc_1", "_x", "A1", &"a".repeat(48)] {
            ok.parse::<ResourceName>()
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn rejects_hostile_resource_names_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("a", "too short"),
            ("../etc", "must start"),
            ("a/b", "contains '/'"),
            ("a b", "contains ' '"),
            ("a;rm", "contains ';'"),
            ("x$(id)", "contains '$'"),
            ("1abc", "must start"),
            ("-abc", "must start"),
            ("all", "reserved"),
            ("Proxy", "reserved"),
            ("dätä", "contains 'ä'"),
        ];
        for (bad, why) in cases {
            let err = bad.parse::<ResourceName>().unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        let long = "a".repeat(49);
        assert!(long
            .parse::<ResourceName>()
            .unwrap_err()
            .to_string()
            .contains("limit is 48"));
    }

    #[test]
    fn deserialising_a_bad_name_fails() {
        assert!(serde_json::from_str::<ResourceName>("\"../x\"").is_err());
        assert_eq!(
            serde_json::from_str::<ResourceName>("\"db\"")
                .unwrap()
                .as_str(),
            "db"
        );
    }

    #[test]
    fn node_names_allow_dots_but_not_slashes() {
        assert!("node-1.example".parse::<NodeName>().is_ok());
        assert!("n/1".parse::<NodeName>().is_err());
        assert!(".hidden".parse::<NodeName>().is_err());
    }

    #[test]
    fn volume_names_are_rd_and_five_digits_both_ways() {
        let rd: ResourceName = "db".parse().unwrap();
        assert_eq!(volume_name(&rd, 7), "db_00007");
        assert_eq!(parse_volume_name(&rd, "db_00007"), Some(7));
        assert_eq!(parse_volume_name(&rd, "db_x_00007"), None);
        assert_eq!(parse_volume_name(&rd, "db_0007"), None);
        assert_eq!(resource_of_volume("db_00007"), Some(rd));
        assert_eq!(resource_of_volume("db_0007"), None);
        assert_eq!(resource_of_volume("../x_00001"), None);
    }
}
