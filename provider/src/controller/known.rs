//! [`Known`]: a configuration value that may be null or not known yet (Terraform plans with
//! unknowns). Below both [`super::resolve`] and [`super::secret`], which use it.

/// A configuration value that may be null or not known yet.
#[derive(Debug, Clone, PartialEq)]
pub enum Known<T> {
    Null,
    Unknown,
    Some(T),
}

impl<T> Known<T> {
    /// `rd` if set, else `rg`; unknown wins over null, because it may turn out set.
    pub fn or(self, rg: Known<T>) -> Known<T> {
        match self {
            Known::Null => rg,
            other => other,
        }
    }

    pub fn known(self) -> Option<T> {
        match self {
            Known::Some(v) => Some(v),
            _ => None,
        }
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Known::Unknown)
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Known<U> {
        match self {
            Known::Null => Known::Null,
            Known::Unknown => Known::Unknown,
            Known::Some(v) => Known::Some(f(v)),
        }
    }
}
