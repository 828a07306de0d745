//! The stable error codes an agent answers with (`AgentError.code` on the wire). Both sides
//! name them through [`ErrorCode`], never as string literals; the wire text is the same
//! snake_case word it always was.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// One stable error code of the agent API (docs/design.md §4).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The wire text, e.g. `not_found`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }
        }

        impl FromStr for ErrorCode {
            type Err = UnknownErrorCode;
            fn from_str(s: &str) -> Result<Self, UnknownErrorCode> {
                match s {
                    $($text => Ok(ErrorCode::$variant),)*
                    other => Err(UnknownErrorCode(other.to_owned())),
                }
            }
        }
    };
}

error_codes! {
    // The request itself.
    /// The body or stdio line does not parse, or a field is invalid.
    InvalidRequest = "invalid_request",
    /// A resource name in the path does not follow the name rules.
    InvalidName = "invalid_name",
    /// The path and the body name different resources.
    NameMismatch = "name_mismatch",
    /// Missing or wrong bearer token.
    Unauthorized = "unauthorized",
    /// Nothing of the resource (or no such route) on this node.
    NotFound = "not_found",
    /// The volumes list is empty, repeated or out of range.
    InvalidVolumes = "invalid_volumes",
    /// The storage pool is not configured on this node.
    UnknownPool = "unknown_pool",
    /// A `props` entry has a bad value.
    InvalidProp = "invalid_prop",
    /// The storage pool has less free space than a new volume needs.
    InsufficientSpace = "insufficient_space",
    // Against what exists.
    /// The layer stack differs from the one the resource was created with.
    LayerStackChanged = "layer_stack_changed",
    /// The storage pool differs from the one the resource was created with.
    StoragePoolChanged = "storage_pool_changed",
    /// A volume would shrink.
    ShrinkRefused = "shrink_refused",
    /// A DRBD minor is used by another resource.
    MinorInUse = "minor_in_use",
    /// A DRBD port is used by another resource.
    PortInUse = "port_in_use",
    /// LINSTOR's DRBD resource of the same name is up.
    LinstorDrbdActive = "linstor_drbd_active",
    /// LINSTOR's `.res` file exists but cannot be read or parsed.
    LinstorResUnreadable = "linstor_res_unreadable",
    // LUKS.
    /// The stack holds LUKS but the request has no passphrase.
    LuksPassphraseMissing = "luks_passphrase_missing",
    /// The passphrase does not open the volume's LUKS header.
    LuksPassphraseMismatch = "luks_passphrase_mismatch",
    /// A passphrase rotation cannot proceed (neither passphrase opens the header).
    LuksPassphraseUnrotatable = "luks_passphrase_unrotatable",
    /// The device holds data and no LUKS header; formatting is refused.
    LuksForeignData = "luks_foreign_data",
    // DRBD.
    /// The stack holds DRBD but the request has no drbd section.
    DrbdMissing = "drbd_missing",
    /// The drbd section is inconsistent (minors, node ids, peers, options).
    InvalidDrbd = "invalid_drbd",
    /// The installed DRBD cannot do what the request asks.
    DrbdVersionUnsupported = "drbd_version_unsupported",
    /// A grow of a DRBD volume needs this node to be primary (or all peers connected).
    DrbdResizeNeedsPrimary = "drbd_resize_needs_primary",
    /// DRBD did not finish synchronising within the time the agent waits.
    DrbdSyncTimeout = "drbd_sync_timeout",
    /// The device is open (mounted, held by a process or a VM) and cannot be changed now.
    DeviceInUse = "device_in_use",
    // The node.
    /// A kernel feature (device-mapper, the DRBD module) is missing.
    KernelFeatureMissing = "kernel_feature_missing",
    /// A tool is not installed.
    ToolMissing = "tool_missing",
    /// A tool ran past its timeout.
    ToolTimeout = "tool_timeout",
    /// A tool failed.
    ToolFailed = "tool_failed",
    /// A step the agent does itself (a file, a loop device) failed.
    HostIoFailed = "host_io_failed",
    /// The agent's store could not be read or written.
    StoreFailed = "store_failed",
    /// The agent itself broke.
    Internal = "internal",
}

/// A code this build does not know (an agent newer than the provider).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown agent error code {0:?}")]
pub struct UnknownErrorCode(pub String);

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Lets tests and callers compare with the wire text directly.
impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_as_its_snake_case_text() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), *code);
            assert!(code
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
        assert_eq!(ErrorCode::HostIoFailed.as_str(), "host_io_failed");
        assert_eq!(ErrorCode::NotFound, "not_found");
        assert!("no_such_code".parse::<ErrorCode>().is_err());
    }
}
