//! The provider configuration: one `node "<name>" {}` block per agent.

use super::{Attribute, Block, NestedBlock, Schema};
use crate::values::Ty;

fn http_block() -> Block {
    Block {
        description: "Reach the agent over HTTP(S) with a bearer token.",
        attributes: vec![
            Attribute::required(
                "endpoint",
                Ty::String,
                "Agent URL, e.g. `https://10.0.0.1:3370` (plain `http://` only on loopback).",
            ),
            Attribute::optional(
                "token",
                Ty::String,
                "Bearer token the agent expects (its `token_file`); defaults to the `BLOCKSTOR_TOKEN` environment variable.",
            )
            .sensitive(),
            Attribute::optional(
                "ca_cert_pem",
                Ty::String,
                "PEM certificate of a CA to trust for the agent's TLS certificate, in addition to the system roots.",
            ),
        ],
        blocks: vec![],
    }
}

/// Host-key and login attributes shared by `ssh` and its `bastion`.
fn ssh_login_attributes() -> Vec<Attribute> {
    vec![
        Attribute::required("host", Ty::String, "Host name or address of the SSH server."),
        Attribute::optional("port", Ty::Number, "SSH port; 22 when unset."),
        Attribute::optional("user", Ty::String, "Login user; `root` when unset. A non-root user needs `agent_command` with sudo (see the security model)."),
        Attribute::optional(
            "private_key",
            Ty::String,
            "PEM/OpenSSH private key; defaults to the `BLOCKSTOR_SSH_PRIVATE_KEY` environment variable.",
        )
        .sensitive(),
        Attribute::optional(
            "known_hosts",
            Ty::String,
            "Content (not a path) of a known_hosts file used to verify the host key, e.g. `file(\"known_hosts\")`; this or `host_key` is required.",
        ),
        Attribute::optional(
            "host_key",
            Ty::String,
            "The host's public key, e.g. `ssh-ed25519 AAAA...`; this or `known_hosts` is required.",
        ),
    ]
}

fn bastion_block() -> Block {
    Block {
        description: "A jump host to reach the node through; same host-key rules as `ssh`.",
        attributes: ssh_login_attributes(),
        blocks: vec![],
    }
}

fn ssh_block() -> Block {
    let mut attributes = ssh_login_attributes();
    attributes.extend([
        Attribute::optional(
            "use_agent",
            Ty::Bool,
            "Authenticate with the keys of the SSH agent at `SSH_AUTH_SOCK` instead of `private_key`; no key material reaches Terraform state.",
        ),
        Attribute::optional(
            "insecure_ignore_host_key",
            Ty::Bool,
            "Skip host-key verification (trust on first use). Insecure: a warning shows on every plan.",
        ),
        Attribute::optional(
            "agent_command",
            Ty::String,
            "Command line run on the node over SSH; it must speak the agent's stdio protocol. Default `blockstor-agent stdio --config /etc/blockstor/agent.toml`; with a non-root `user`, e.g. `sudo -n /usr/local/bin/blockstor-agent stdio --config /etc/blockstor/agent.toml`.",
        ),
    ]);
    Block {
        description: "Reach the agent by running `blockstor-agent stdio` over SSH; no port opens on the node.",
        attributes,
        blocks: vec![NestedBlock::at_most_one("bastion", bastion_block())],
    }
}

fn node_block() -> Block {
    Block {
        description: "One node running the blockstor agent; the block label is the node name.",
        attributes: vec![Attribute::optional(
            "address",
            Ty::String,
            "The node's DRBD replication address (IP or host name); required for DRBD stacks.",
        )],
        blocks: vec![
            NestedBlock::at_most_one("http", http_block()),
            NestedBlock::at_most_one("ssh", ssh_block()),
        ],
    }
}

/// The `provider "blockstor" {}` schema.
pub fn schema() -> Schema {
    Schema::new(
        0,
        Block {
            description:
                "Provision layered block devices (STORAGE, LUKS, DRBD) through blockstor agents.",
            attributes: vec![],
            blocks: vec![NestedBlock::map("node", node_block())],
        },
    )
}

#[cfg(test)]
mod tests {
    use blockstor_proto::tfplugin6 as tf;

    use super::*;

    #[test]
    fn provider_node_block_is_a_map_with_http_and_ssh_at_most_once() {
        let p = schema().to_proto();
        let node = &p.block.unwrap().block_types[0];
        assert_eq!(node.type_name, "node");
        assert_eq!(
            node.nesting,
            tf::schema::nested_block::NestingMode::Map as i32
        );
        let inner = node.block.as_ref().unwrap();
        for b in &inner.block_types {
            assert_eq!(b.max_items, 1, "{}", b.type_name);
        }
    }
}
