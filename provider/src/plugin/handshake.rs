//! The go-plugin handshake: the magic cookie, protocol version negotiation and the one line the
//! plugin prints on stdout to tell Terraform where to connect (TERRAFORM-PROTOCOL.md §1).

use std::fmt;
use std::net::SocketAddr;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;

/// Environment variable Terraform sets to prove it started this process.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
/// The value Terraform puts in [`MAGIC_COOKIE_KEY`] (fixed for every Terraform release).
pub const MAGIC_COOKIE_VALUE: &str =
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// Environment variable listing the plugin protocol versions Terraform speaks, e.g. `5,6`.
pub const PROTOCOL_VERSIONS_KEY: &str = "PLUGIN_PROTOCOL_VERSIONS";

/// go-plugin's own handshake version: the first field of the handshake line; always 1.
const CORE_PROTOCOL_VERSION: u32 = 1;

/// Test-only knob: a comma-separated subset of [`ProtocolVersion::SUPPORTED`] to offer, e.g. `5`,
/// so a Terraform that offers `5,6` really talks protocol 5 to this provider. Unset: offer all.
pub const RESTRICT_VERSIONS_KEY: &str = "BLOCKSTOR_PROTOCOL_VERSIONS";

/// A Terraform plugin protocol major version this provider can serve.
///
/// Ordered: negotiation picks the highest one both sides speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// tfplugin5 (Terraform 0.12 to 1.x and OpenTofu; 5.2 is the revision this build speaks),
    /// served by an adapter over the protocol 6 implementation.
    V5,
    /// tfplugin6 (Terraform ≥ 1.0, OpenTofu).
    V6,
}

impl ProtocolVersion {
    /// Every version this build serves.
    pub const SUPPORTED: &'static [ProtocolVersion] = &[ProtocolVersion::V5, ProtocolVersion::V6];

    /// The number Terraform uses for this version.
    pub fn number(self) -> u32 {
        match self {
            ProtocolVersion::V5 => 5,
            ProtocolVersion::V6 => 6,
        }
    }

    /// The versions to offer: [`Self::SUPPORTED`], narrowed to the numbers listed in
    /// `restrict` (the value of [`RESTRICT_VERSIONS_KEY`]) when it is set.
    pub fn offered(restrict: Option<&str>) -> Vec<ProtocolVersion> {
        let Some(restrict) = restrict else {
            return Self::SUPPORTED.to_vec();
        };
        let numbers = parse_versions(restrict);
        Self::SUPPORTED
            .iter()
            .copied()
            .filter(|version| numbers.contains(&version.number()))
            .collect()
    }
}

fn parse_versions(list: &str) -> Vec<u32> {
    list.split(',')
        .filter_map(|part| part.trim().parse().ok())
        .collect()
}

/// Why this process refuses to run the handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Started by hand (or by something that is not Terraform).
    #[error(
        "[plugin.magic_cookie] This binary is a Terraform plugin and is meant to be started by \
         Terraform, not run directly. To use it, declare `cozystack/blockstor` in \
         `required_providers` and run terraform (for a local build, point a `dev_overrides` \
         entry in your Terraform CLI config at the directory holding this binary)."
    )]
    MissingMagicCookie,
    /// Terraform offered no protocol version this provider speaks.
    #[error(
        "[plugin.protocol_version] Terraform offered plugin protocol version(s) {offered:?} \
         ({PROTOCOL_VERSIONS_KEY}), but this provider speaks only {supported}; use Terraform \
         0.15.4 or newer, or OpenTofu (and leave {RESTRICT_VERSIONS_KEY} unset)"
    )]
    NoCommonProtocol {
        /// The value of `PLUGIN_PROTOCOL_VERSIONS` as received.
        offered: String,
        /// The versions this build supports, comma-separated.
        supported: String,
    },
}

/// Checks the magic cookie. Must run first in `main`, before any other I/O.
pub fn check_magic_cookie(value: Option<&str>) -> Result<(), HandshakeError> {
    match value {
        Some(v) if v == MAGIC_COOKIE_VALUE => Ok(()),
        _ => Err(HandshakeError::MissingMagicCookie),
    }
}

/// Picks the highest protocol version both sides speak.
///
/// `offered` is `PLUGIN_PROTOCOL_VERSIONS` (comma-separated, e.g. `5,6`). Unparsable entries are
/// ignored, like go-plugin does. When the variable is absent (a very old client) go-plugin
/// assumes the plugin's own version, so we pick our highest.
pub fn negotiate_protocol(
    offered: Option<&str>,
    supported: &[ProtocolVersion],
) -> Result<ProtocolVersion, HandshakeError> {
    let Some(offered) = offered else {
        if let Some(highest) = supported.iter().max() {
            return Ok(*highest);
        }
        return Err(no_common(String::new(), supported));
    };
    let numbers = parse_versions(offered);
    supported
        .iter()
        .filter(|version| numbers.contains(&version.number()))
        .max()
        .copied()
        .ok_or_else(|| no_common(offered.to_owned(), supported))
}

fn no_common(offered: String, supported: &[ProtocolVersion]) -> HandshakeError {
    let supported = supported
        .iter()
        .map(|v| v.number().to_string())
        .collect::<Vec<_>>()
        .join(",");
    HandshakeError::NoCommonProtocol { offered, supported }
}

/// The line printed on stdout once the server listens:
/// `1|<app version>|tcp|<address>|grpc|<server cert>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeLine {
    /// The negotiated protocol version.
    pub protocol: ProtocolVersion,
    /// Where the gRPC server listens.
    pub address: SocketAddr,
    /// DER of the server certificate Terraform must trust, or `None` when serving plaintext.
    pub server_cert_der: Option<Vec<u8>>,
}

impl fmt::Display for HandshakeLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Go decodes the certificate with RawStdEncoding: padding makes Terraform fail with
        // "illegal base64 data", so the standard alphabet without padding it must be.
        let cert = self
            .server_cert_der
            .as_deref()
            .map(|der| STANDARD_NO_PAD.encode(der))
            .unwrap_or_default();
        write!(
            f,
            "{CORE_PROTOCOL_VERSION}|{}|tcp|{}|grpc|{cert}",
            self.protocol.number(),
            self.address
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_accepts_only_terraforms_value() {
        assert_eq!(check_magic_cookie(Some(MAGIC_COOKIE_VALUE)), Ok(()));
        assert_eq!(
            check_magic_cookie(None),
            Err(HandshakeError::MissingMagicCookie)
        );
        assert_eq!(
            check_magic_cookie(Some("wrong")),
            Err(HandshakeError::MissingMagicCookie)
        );
    }

    #[test]
    fn cookie_error_is_one_line_and_says_how_to_use_the_plugin() {
        let message = HandshakeError::MissingMagicCookie.to_string();
        assert!(!message.contains('\n'));
        assert!(message.contains("required_providers"));
        assert!(message.contains("dev_overrides"));
    }

    #[test]
    fn negotiation_picks_5_when_the_client_offers_only_5() {
        assert_eq!(
            negotiate_protocol(Some("5"), ProtocolVersion::SUPPORTED),
            Ok(ProtocolVersion::V5)
        );
        assert_eq!(
            negotiate_protocol(Some("4, 5"), ProtocolVersion::SUPPORTED),
            Ok(ProtocolVersion::V5)
        );
    }

    #[test]
    fn restricting_to_5_makes_a_5_6_offer_negotiate_5() {
        let offered = ProtocolVersion::offered(Some("5"));
        assert_eq!(offered, vec![ProtocolVersion::V5]);
        assert_eq!(
            negotiate_protocol(Some("5,6"), &offered),
            Ok(ProtocolVersion::V5)
        );
        assert_eq!(
            ProtocolVersion::offered(None),
            ProtocolVersion::SUPPORTED.to_vec()
        );
        let err = negotiate_protocol(Some("6"), &offered).unwrap_err();
        assert!(err.to_string().contains("only 5"), "{err}");
    }

    #[test]
    fn handshake_line_carries_the_negotiated_version() {
        let line = HandshakeLine {
            protocol: ProtocolVersion::V5,
            address: "127.0.0.1:1".parse().unwrap(),
            server_cert_der: None,
        };
        assert_eq!(line.to_string(), "1|5|tcp|127.0.0.1:1|grpc|");
    }

    #[test]
    fn negotiation_picks_6_from_terraforms_offer() {
        let supported = ProtocolVersion::SUPPORTED;
        assert_eq!(
            negotiate_protocol(Some("5,6"), supported),
            Ok(ProtocolVersion::V6)
        );
        assert_eq!(
            negotiate_protocol(Some("6"), supported),
            Ok(ProtocolVersion::V6)
        );
        assert_eq!(
            negotiate_protocol(Some(" 6 , x"), supported),
            Ok(ProtocolVersion::V6)
        );
        assert_eq!(negotiate_protocol(None, supported), Ok(ProtocolVersion::V6));
    }

    #[test]
    fn negotiation_without_a_common_version_names_the_offered_versions() {
        let err = negotiate_protocol(Some("3,4"), ProtocolVersion::SUPPORTED).unwrap_err();
        assert_eq!(
            err,
            HandshakeError::NoCommonProtocol {
                offered: "3,4".into(),
                supported: "5,6".into()
            }
        );
        let message = err.to_string();
        assert!(message.contains("\"3,4\""), "{message}");
        assert!(message.contains("only 5,6"), "{message}");
    }

    #[test]
    fn handshake_line_has_six_fields_and_unpadded_standard_base64() {
        let line = HandshakeLine {
            protocol: ProtocolVersion::V6,
            address: "127.0.0.1:41234".parse().unwrap(),
            // 4 bytes: padded base64 would end in "==", and 0xfb 0xff hits '+' and '/'.
            server_cert_der: Some(vec![0xfb, 0xff, 0xbf, 0x01]),
        };
        assert_eq!(line.to_string(), "1|6|tcp|127.0.0.1:41234|grpc|+/+/AQ");
    }

    #[test]
    fn plaintext_handshake_line_has_an_empty_cert_field() {
        let line = HandshakeLine {
            protocol: ProtocolVersion::V6,
            address: "127.0.0.1:1".parse().unwrap(),
            server_cert_der: None,
        };
        assert_eq!(line.to_string(), "1|6|tcp|127.0.0.1:1|grpc|");
    }
}
