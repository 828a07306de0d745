//! Volume sizes: `"10GiB"`, `"512MiB"`, or a number of KiB; at least 4 MiB, rounded up to
//! 4 MiB extents so every backend (LVM extents, zvol blocks, loop files) agrees on the size.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The extent every size is rounded up to, in KiB.
pub const EXTENT_KIB: u64 = 4 * 1024;
/// Largest accepted size: 1 PiB, far beyond any single volume and far from u64 overflow.
pub const MAX_KIB: u64 = 1024 * 1024 * 1024 * 1024;

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("size {0:?} is not a size: write e.g. \"10GiB\", \"512MiB\" or a number of KiB")]
    Syntax(String),
    #[error("size {0:?} uses an unknown unit: use KiB, MiB, GiB or TiB (binary units)")]
    Unit(String),
    #[error("size {0:?} is below the minimum of 4MiB")]
    TooSmall(String),
    #[error("size {0:?} is above the maximum of 1PiB")]
    TooLarge(String),
}

/// A volume size in KiB, always a positive multiple of 4 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Size(u64);

impl Size {
    /// Rounds `kib` up to the next 4 MiB extent; refuses less than 4 MiB or more than 1 PiB.
    pub fn from_kib(kib: u64) -> Result<Self, SizeError> {
        if kib < EXTENT_KIB {
            return Err(SizeError::TooSmall(format!("{kib}")));
        }
        if kib > MAX_KIB {
            return Err(SizeError::TooLarge(format!("{kib}")));
        }
        Ok(Self(kib.div_ceil(EXTENT_KIB) * EXTENT_KIB))
    }

    /// The size in KiB.
    pub fn kib(self) -> u64 {
        self.0
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0 * 1024
    }
}

impl FromStr for Size {
    type Err = SizeError;

    fn from_str(raw: &str) -> Result<Self, SizeError> {
        let s = raw.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        if digits.is_empty() {
            return Err(SizeError::Syntax(raw.to_owned()));
        }
        let number: u64 = digits
            .parse()
            .map_err(|_| SizeError::TooLarge(raw.to_owned()))?;
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "k" | "kib" => 1,
            "m" | "mib" => 1024,
            "g" | "gib" => 1024 * 1024,
            "t" | "tib" => 1024 * 1024 * 1024,
            u if u.starts_with(['.', ',']) => return Err(SizeError::Syntax(raw.to_owned())),
            _ => return Err(SizeError::Unit(raw.to_owned())),
        };
        let kib = number
            .checked_mul(multiplier)
            .ok_or_else(|| SizeError::TooLarge(raw.to_owned()))?;
        Size::from_kib(kib).map_err(|e| match e {
            SizeError::TooSmall(_) => SizeError::TooSmall(raw.to_owned()),
            SizeError::TooLarge(_) => SizeError::TooLarge(raw.to_owned()),
            other => other,
        })
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Size::from_kib(u64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Size {
    /// The largest binary unit that divides the size exactly: `10GiB`, `516MiB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const GIB: u64 = 1024 * 1024;
        const TIB: u64 = 1024 * GIB;
        match self.0 {
            k if k % TIB == 0 => write!(f, "{}TiB", k / TIB),
            k if k % GIB == 0 => write!(f, "{}GiB", k / GIB),
            k => write!(f, "{}MiB", k / 1024),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_plain_kib() {
        assert_eq!("10GiB".parse::<Size>().unwrap().kib(), 10 * 1024 * 1024);
        assert_eq!("512MiB".parse::<Size>().unwrap().kib(), 512 * 1024);
        assert_eq!("65536".parse::<Size>().unwrap().kib(), 65536);
        assert_eq!("1 tib".parse::<Size>().unwrap().kib(), 1024 * 1024 * 1024);
    }

    #[test]
    fn rounds_up_to_4mib_extents() {
        assert_eq!("5MiB".parse::<Size>().unwrap().kib(), 8 * 1024);
        assert_eq!(Size::from_kib(4097).unwrap().kib(), 8192);
        assert_eq!("5MiB".parse::<Size>().unwrap().to_string(), "8MiB");
    }

    #[test]
    fn refuses_bad_sizes_with_the_fix() {
        assert!(matches!("-1GiB".parse::<Size>(), Err(SizeError::Syntax(_))));
        assert!(matches!("".parse::<Size>(), Err(SizeError::Syntax(_))));
        assert!(matches!(
            "1.5GiB".parse::<Size>(),
            Err(SizeError::Syntax(_))
        ));
        assert!(matches!("10GB".parse::<Size>(), Err(SizeError::Unit(_))));
        assert!(matches!(
            "1MiB".parse::<Size>(),
            Err(SizeError::TooSmall(_))
        ));
        assert!(matches!("0".parse::<Size>(), Err(SizeError::TooSmall(_))));
        assert!(matches!(
            "99999999999999999999999".parse::<Size>(),
            Err(SizeError::TooLarge(_))
        ));
        assert!(matches!(
            "18014398509481984GiB".parse::<Size>(),
            Err(SizeError::TooLarge(_))
        ));
        assert!("10GB"
            .parse::<Size>()
            .unwrap_err()
            .to_string()
            .contains("GiB"));
    }
}
