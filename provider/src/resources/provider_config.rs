//! The provider configuration: `node "<name>" { address, http {…} | ssh {…} }` blocks become
//! transport configurations. Values not known yet (they come from other resources) are
//! accepted at validate time; such a node is left out at configure time.

use std::net::IpAddr;
use std::time::Duration;

use blockstor_proto::NodeName;
use secrecy::SecretString;

use super::diag::{AttrPath, Diagnostics};
use crate::transport::{
    HostKeyPolicy, HttpConfig, NodeConfig, SshConfig, SshEndpoint, TransportConfig,
    DEFAULT_AGENT_COMMAND,
};
use crate::values::Value;

/// Environment fallback for `http.token`.
pub const TOKEN_ENV: &str = "BLOCKSTOR_TOKEN";
/// Environment fallback for `ssh.private_key`.
pub const SSH_KEY_ENV: &str = "BLOCKSTOR_SSH_PRIVATE_KEY";

/// How long one agent request may take; operation time limits (`timeouts`) bound it further.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Parses the provider configuration. Nodes with unknown values are skipped (no error);
/// invalid ones give diagnostics on their attribute.
pub fn parse(config: &Value) -> (Vec<NodeConfig>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let mut nodes = Vec::new();
    let Some(blocks) = config.get("node").as_map() else {
        return (nodes, diags);
    };
    for (label, block) in blocks {
        let path = AttrPath::attr("node").key(label);
        let name = match label.parse::<NodeName>() {
            Ok(n) => n,
            Err(e) => {
                diags.error(&path, "Invalid node name", format!("node \"{label}\": {e}"));
                continue;
            }
        };
        if !block.is_wholly_known() {
            continue;
        }
        let http = block.get("http").as_list().and_then(|l| l.first());
        let ssh = block.get("ssh").as_list().and_then(|l| l.first());
        let transport = match (http, ssh) {
            (Some(h), None) => http_config(h),
            (None, Some(s)) => ssh_config(s, &path.clone().then("ssh").index(0), &mut diags),
            (Some(_), Some(_)) => {
                diags.error(
                    &path,
                    format!("node \"{label}\" has both http and ssh"),
                    "Use exactly one of the http or ssh blocks per node.",
                );
                continue;
            }
            (None, None) => {
                diags.error(&path, format!("node \"{label}\" has no transport"), "Add an http { endpoint = ... } or an ssh { host = ... } block to say how to reach the agent.");
                continue;
            }
        };
        let Some(transport) = transport else { continue };
        let address = block
            .get("address")
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| match &transport {
                TransportConfig::Ssh(s) => s.endpoint.host.clone(),
                TransportConfig::Http(h) => host_of(&h.endpoint),
            });
        let address_path = if block.get("address").is_null() {
            path.clone()
        } else {
            path.clone().then("address")
        };
        warn_public_address(label, &address, &address_path, &mut diags);
        nodes.push(NodeConfig {
            name,
            address,
            transport,
        });
    }
    (nodes, diags)
}

/// Warns when a node's DRBD address is a public IP: DRBD replicates unencrypted, so the data
/// of every volume would cross networks the user does not control. Host names are not resolved
/// (validation does no I/O), so only IP literals are judged.
fn warn_public_address(label: &str, address: &str, path: &AttrPath, diags: &mut Diagnostics) {
    let Ok(ip) = address.trim_matches(['[', ']']).parse::<IpAddr>() else {
        return;
    };
    if !is_private(ip) {
        diags.warning(
            path,
            format!("node \"{label}\": DRBD address {ip} is public"),
            "DRBD replicates block data unencrypted over this address. Use a private address (RFC 1918, IPv6 ULA, loopback or link-local) on a network you control, or a VPN, for `address`.",
        );
    }
}

/// RFC 1918 and RFC 4193 (ULA) networks, loopback and link-local.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// The host part of an endpoint URL, used as the default DRBD address.
fn host_of(endpoint: &str) -> String {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
            host.trim_matches(['[', ']']).to_owned()
        }
        _ => authority.to_owned(),
    }
}

fn env_secret(var: &str) -> Option<SecretString> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .map(SecretString::from)
}

fn http_config(h: &Value) -> Option<TransportConfig> {
    Some(TransportConfig::Http(HttpConfig {
        endpoint: h.get("endpoint").as_str()?.to_owned(),
        token: h
            .get("token")
            .as_str()
            .map(|t| SecretString::from(t.to_owned()))
            .or_else(|| env_secret(TOKEN_ENV)),
        ca_cert_pem: h.get("ca_cert_pem").as_str().map(str::to_owned),
        timeout: REQUEST_TIMEOUT,
    }))
}

fn endpoint(v: &Value, path: &AttrPath, diags: &mut Diagnostics) -> Option<SshEndpoint> {
    let host = v.get("host").as_str()?.to_owned();
    let port = match v.get("port").as_i64() {
        None => 22,
        Some(p) => match u16::try_from(p) {
            Ok(p) if p > 0 => p,
            _ => {
                diags.error(
                    &path.clone().then("port"),
                    "Invalid port",
                    "port must be 1..65535.",
                );
                return None;
            }
        },
    };
    let insecure = v.get("insecure_ignore_host_key").as_bool() == Some(true);
    let host_keys = match (
        v.get("known_hosts").as_str(),
        v.get("host_key").as_str(),
        insecure,
    ) {
        (_, _, true) => {
            diags.warning(
                &path.clone().then("insecure_ignore_host_key"),
                format!("Host key of {host} is not verified"),
                "insecure_ignore_host_key = true lets anyone who can intercept the connection impersonate the node. Set known_hosts or host_key instead.",
            );
            HostKeyPolicy::InsecureIgnore
        }
        (Some(k), _, _) => HostKeyPolicy::KnownHosts(k.to_owned()),
        (None, Some(k), _) => HostKeyPolicy::Pinned(k.to_owned()),
        (None, None, false) => {
            diags.error(
                &path.clone().then("known_hosts"),
                format!("No host key to verify {host}"),
                "Set known_hosts (file(\"known_hosts\")) or host_key (\"ssh-ed25519 AAAA...\"): host keys are always verified.",
            );
            return None;
        }
    };
    Some(SshEndpoint {
        host,
        port,
        user: v.get("user").as_str().unwrap_or("root").to_owned(),
        private_key: v
            .get("private_key")
            .as_str()
            .map(|k| SecretString::from(k.to_owned()))
            .or_else(|| env_secret(SSH_KEY_ENV)),
        host_keys,
    })
}

fn ssh_config(s: &Value, path: &AttrPath, diags: &mut Diagnostics) -> Option<TransportConfig> {
    let node = endpoint(s, path, diags)?;
    let bastion = match s.get("bastion").as_list().and_then(|l| l.first()) {
        Some(b) => Some(endpoint(b, &path.clone().then("bastion").index(0), diags)?),
        None => None,
    };
    let use_agent = s.get("use_agent").as_bool() == Some(true);
    if node.private_key.is_none() && !use_agent {
        diags.error(
            &path.clone().then("private_key"),
            format!("No SSH credentials for {}", node.host),
            format!("Set private_key, set use_agent = true, or export {SSH_KEY_ENV}."),
        );
        return None;
    }
    Some(TransportConfig::Ssh(SshConfig {
        endpoint: node,
        use_agent,
        agent_command: s
            .get("agent_command")
            .as_str()
            .unwrap_or(DEFAULT_AGENT_COMMAND)
            .to_owned(),
        bastion,
        timeout: REQUEST_TIMEOUT,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(attrs: Value) -> Value {
        Value::object([("node", Value::object([("n1", attrs)]))])
    }

    #[test]
    fn http_node_parses_and_defaults_address_to_the_endpoint_host() {
        let http = Value::object([
            ("endpoint", Value::string("http://127.0.0.1:3370")),
            ("token", Value::string("t")),
        ]);
        let (nodes, diags) = parse(&node(Value::object([("http", Value::List(vec![http]))])));
        assert!(diags.0.is_empty());
        assert_eq!(nodes[0].address, "127.0.0.1");
        assert_eq!(nodes[0].name.as_str(), "n1");
    }

    #[test]
    fn ssh_without_host_key_is_an_error_on_known_hosts() {
        let ssh = Value::object([
            ("host", Value::string("h")),
            ("private_key", Value::string("k")),
        ]);
        let (nodes, diags) = parse(&node(Value::object([("ssh", Value::List(vec![ssh]))])));
        assert!(nodes.is_empty());
        assert_eq!(
            diags.0[0].attribute,
            Some(
                AttrPath::attr("node")
                    .key("n1")
                    .then("ssh")
                    .index(0)
                    .then("known_hosts")
                    .to_proto()
            )
        );
    }

    fn http_node(address: Option<&str>, endpoint: &str) -> Value {
        let http = Value::object([
            ("endpoint", Value::string(endpoint)),
            ("token", Value::string("t")),
        ]);
        let mut attrs = vec![("http", Value::List(vec![http]))];
        if let Some(address) = address {
            attrs.push(("address", Value::string(address)));
        }
        node(Value::object(attrs))
    }

    #[test]
    fn public_address_warns_on_the_nodes_address() {
        let (nodes, diags) = parse(&http_node(Some("203.0.113.7"), "http://10.0.0.1:3370"));
        assert_eq!(nodes.len(), 1, "a warning does not drop the node");
        assert_eq!(diags.0.len(), 1, "{diags:?}");
        let warning = &diags.0[0];
        assert_eq!(warning.severity, 2, "severity WARNING");
        assert!(
            warning.summary.contains("203.0.113.7"),
            "{}",
            warning.summary
        );
        assert_eq!(
            warning.attribute,
            Some(AttrPath::attr("node").key("n1").then("address").to_proto())
        );
    }

    #[test]
    fn public_address_from_the_endpoint_warns_on_the_node() {
        let (_, diags) = parse(&http_node(None, "https://[2001:db8::1]:3370"));
        assert_eq!(diags.0.len(), 1, "{diags:?}");
        assert_eq!(
            diags.0[0].attribute,
            Some(AttrPath::attr("node").key("n1").to_proto())
        );
    }

    #[test]
    fn private_addresses_and_host_names_do_not_warn() {
        for address in [
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.3.4",
            "fd00::5",
            "fe80::1",
            "::1",
            "::ffff:192.168.0.1",
            "node1.internal",
        ] {
            let (_, diags) = parse(&http_node(Some(address), "http://10.0.0.1:3370"));
            assert!(diags.0.is_empty(), "{address}: {diags:?}");
        }
    }

    #[test]
    fn insecure_ignore_host_key_warns_on_that_attribute() {
        let ssh = Value::object([
            ("host", Value::string("10.0.0.5")),
            ("private_key", Value::string("k")),
            ("insecure_ignore_host_key", Value::Bool(true)),
        ]);
        let (nodes, diags) = parse(&node(Value::object([("ssh", Value::List(vec![ssh]))])));
        assert_eq!(nodes.len(), 1, "a warning does not drop the node");
        assert_eq!(diags.0.len(), 1, "{diags:?}");
        assert_eq!(diags.0[0].severity, 2, "severity WARNING");
        assert_eq!(
            diags.0[0].attribute,
            Some(
                AttrPath::attr("node")
                    .key("n1")
                    .then("ssh")
                    .index(0)
                    .then("insecure_ignore_host_key")
                    .to_proto()
            )
        );
    }

    #[test]
    fn unknown_values_are_accepted() {
        let (nodes, diags) = parse(&node(Value::object([("http", Value::Unknown)])));
        assert!(nodes.is_empty() && diags.0.is_empty());
    }
}
