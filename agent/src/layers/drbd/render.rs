//! Renders a DRBD `.res` file from a DesiredResource, for DRBD 8.4 (two nodes, no node ids)
//! and 9.x (node ids, connection mesh, quorum on three or more nodes). Every value that reaches
//! the file was validated first ([`validate`]), so a request cannot inject configuration.
//! A diskless replica (a DRBD client, reading and writing through its peers) has `disk none;`
//! in its volumes, on its own node and in its peers' files alike; both dialects accept it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::IpAddr;

#[cfg(doc)]
use blockstor_proto::secret_rules::MANAGED_DRBD_OPTIONS;
use blockstor_proto::secret_rules::{drbd_option_key, managed_drbd_option};
use blockstor_proto::wire::{DesiredResource, DrbdSpec};
use blockstor_proto::{NodeName, ResourceName};

use crate::error::{Error, ErrorCode, Result};

/// Which `.res` dialect to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    V84,
    V9,
}

/// A peer's disk is not known here; DRBD 9 only needs a placeholder (as LINSTOR writes).
const PEER_DISK: &str = "/dev/drbd/this/is/not/used";

/// What a diskless replica has instead of a disk, in the `.res` of every node.
const NO_DISK: &str = "none";

/// The `options` the renderer adds on DRBD 9 with three or more nodes, unless set by the user.
const QUORUM_DEFAULTS: [(&str, &str); 2] = [("quorum", "majority"), ("on-no-quorum", "io-error")];

/// One volume of the local node: number, minor and backing disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalVolume {
    pub number: u32,
    pub minor: u32,
    /// The lower device; `None` on a diskless replica (a DRBD client).
    pub disk: Option<String>,
}

/// Checks the DRBD section of a request; the error names the field and never shows the secret.
pub fn validate(d: &DesiredResource, local: &NodeName) -> Result<()> {
    let Some(x) = &d.drbd else { return Ok(()) };
    address(&x.address).map_err(|m| Error::invalid(ErrorCode::InvalidDrbd, "drbd.address", m))?;
    if !["A", "B", "C"].contains(&x.protocol.as_str()) {
        return Err(Error::invalid(
            ErrorCode::InvalidDrbd,
            "drbd.protocol",
            format!("protocol {:?} is not A, B or C", x.protocol),
        ));
    }
    // Port 0 would let the kernel pick a port no peer knows.
    let port_zero = |field: String| {
        Error::invalid(
            ErrorCode::InvalidDrbd,
            field,
            "port 0 is not a port DRBD can listen on; give one from 1 to 65535 (LINSTOR uses \
             7000 and up)",
        )
    };
    if x.port == 0 {
        return Err(port_zero("drbd.port".into()));
    }
    if let Some(i) = x.peers.iter().position(|p| p.port == 0) {
        return Err(port_zero(format!("drbd.peers[{i}].port")));
    }
    let secret = x.shared_secret.expose();
    if secret.is_empty()
        || secret.len() > 64
        || !secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=._-".contains(c))
    {
        return Err(Error::invalid(
            ErrorCode::InvalidDrbd,
            "drbd.shared_secret",
            "the shared secret must be 1 to 64 characters of letters, digits and '+/=._-'",
        ));
    }
    let mut ids = vec![x.node_id];
    for (i, p) in x.peers.iter().enumerate() {
        address(&p.address).map_err(|m| {
            Error::invalid(
                ErrorCode::InvalidDrbd,
                format!("drbd.peers[{i}].address"),
                m,
            )
        })?;
        if ids.contains(&p.node_id) || p.node_id > 31 {
            return Err(Error::invalid(
                ErrorCode::InvalidDrbd,
                format!("drbd.peers[{i}].node_id"),
                format!("node id {} is repeated or above 31", p.node_id),
            ));
        }
        if &p.name == local {
            return Err(Error::invalid(
                ErrorCode::InvalidDrbd,
                format!("drbd.peers[{i}].name"),
                format!("peer {} is this node itself", p.name),
            ));
        }
        ids.push(p.node_id);
    }
    if x.node_id > 31 {
        return Err(Error::invalid(
            ErrorCode::InvalidDrbd,
            "drbd.node_id",
            "node ids go from 0 to 31",
        ));
    }
    if x.minors.iter().any(|m| *m > 1_048_575) {
        return Err(Error::invalid(
            ErrorCode::InvalidDrbd,
            "drbd.minors",
            "minors go up to 1048575",
        ));
    }
    for (k, v) in options(d) {
        if !k
            .1
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            || v.is_empty()
            || !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c))
        {
            return Err(Error::invalid(
                ErrorCode::InvalidDrbd,
                format!("drbd.options[\"{}/{}\"]", k.0, k.1),
                "DRBD option names are lower-case words with '-', values letters, digits and '._:-'",
            ));
        }
    }
    Ok(())
}

/// `ipv4 1.2.3.4:7000` or `ipv6 [::1]:7000`.
fn address(a: &str) -> std::result::Result<IpAddr, String> {
    a.parse::<IpAddr>().map_err(|_| {
        format!("{a:?} is not an IP address; DRBD needs a literal IPv4 or IPv6 address")
    })
}

fn endpoint(a: &str, port: u16) -> String {
    match a.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("ipv6 [{v6}]:{port}"),
        _ => format!("ipv4 {a}:{port}"),
    }
}

/// DRBD options by `(section, name)`: `props` keys `DrbdOptions/<Section>/<name>`, then
/// `drbd.options` keys `<Section>/<name>` (which win). Sections: `Net`, `Disk`, `Resource`.
/// Options the renderer writes itself ([`MANAGED_DRBD_OPTIONS`]) are left out: validation
/// refuses them, except the protocol prop, which is `drbd.protocol`'s source.
pub fn options(d: &DesiredResource) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    let mut add = |key: &str, v: &String| {
        if let Some((section, name)) = drbd_option_key(key) {
            if managed_drbd_option(key).is_none() {
                out.insert((section.to_owned(), name.to_owned()), v.clone());
            }
        }
    };
    for (k, v) in &d.props {
        if let Some(rest) = k.strip_prefix("DrbdOptions/") {
            add(rest, v);
        }
    }
    if let Some(x) = &d.drbd {
        for (k, v) in &x.options {
            add(k.strip_prefix("DrbdOptions/").unwrap_or(k), v);
        }
    }
    out
}

/// The `.res` text; peers flagged `diskless` get `disk none;`. `d` must have passed
/// [`validate`].
pub fn render(
    d: &DesiredResource,
    x: &DrbdSpec,
    local: &NodeName,
    vols: &[LocalVolume],
    dialect: Dialect,
) -> Result<String> {
    let diskless: BTreeSet<NodeName> = x
        .peers
        .iter()
        .filter(|p| p.diskless)
        .map(|p| p.name.clone())
        .collect();
    render_with_diskless_peers(d, x, local, vols, dialect, &diskless)
}

/// [`render`] where the peers in `diskless_peers` are DRBD clients without a local disk (the
/// local node is diskless when its [`LocalVolume::disk`] is `None`). DRBD 9 learns from
/// `disk none;` in a peer's section that the peer is a client, so every node's file says it.
pub fn render_with_diskless_peers(
    d: &DesiredResource,
    x: &DrbdSpec,
    local: &NodeName,
    vols: &[LocalVolume],
    dialect: Dialect,
    diskless_peers: &BTreeSet<NodeName>,
) -> Result<String> {
    if dialect == Dialect::V84 && x.peers.len() > 1 {
        return Err(Error::invalid(
            ErrorCode::DrbdVersionUnsupported,
            "drbd.peers",
            format!(
                "this node runs DRBD 8.4, which replicates between two nodes; {} were requested. \
                 Install DRBD 9 or use two nodes",
                x.peers.len() + 1
            ),
        ));
    }
    let rd: &ResourceName = &d.name;
    let opts = options(d);
    let section = |name: &str| -> Vec<String> {
        opts.iter()
            .filter(|((s, _), _)| s == name)
            .map(|((_, k), v)| format!("{k} {v};"))
            .collect()
    };
    let mut s = String::new();
    let w = &mut s;
    // The dialect is stated so an operator (and the tier-4 CI log) sees which format the
    // agent chose for the DRBD it found.
    let flavour = match dialect {
        Dialect::V84 => "DRBD 8.4",
        Dialect::V9 => "DRBD 9",
    };
    let _ = writeln!(
        w,
        "# Written by blockstor-agent for {flavour} (.res dialect); changes are overwritten."
    );
    let _ = writeln!(w, "resource \"{rd}\" {{");
    let mut resource_opts = section("options");
    if dialect == Dialect::V9 && x.peers.len() >= 2 {
        // Three or more replicas: only a majority may write, so a split never diverges.
        // Defaults only: an option the user set is written once, with the user's value.
        for (at, (name, value)) in QUORUM_DEFAULTS.iter().enumerate() {
            if !opts.contains_key(&("options".to_owned(), (*name).to_owned())) {
                resource_opts.insert(at, format!("{name} {value};"));
            }
        }
    }
    if !resource_opts.is_empty() {
        block(w, 1, "options", &resource_opts);
    }
    let mut net = vec![
        format!("protocol {};", x.protocol),
        "cram-hmac-alg sha256;".to_owned(),
        format!("shared-secret \"{}\";", x.shared_secret.expose()),
        "verify-alg sha256;".to_owned(),
    ];
    net.extend(section("net"));
    block(w, 1, "net", &net);
    let disk = section("disk");
    if !disk.is_empty() {
        block(w, 1, "disk", &disk);
    }
    let mut hosts: Vec<(&NodeName, u32, &str, u16, bool)> =
        vec![(local, x.node_id, x.address.as_str(), x.port, true)];
    hosts.extend(
        x.peers
            .iter()
            .map(|p| (&p.name, p.node_id, p.address.as_str(), p.port, false)),
    );
    hosts.sort_by_key(|h| h.1);
    for (name, node_id, addr, port, is_local) in &hosts {
        let _ = writeln!(w, "    on \"{name}\" {{");
        if dialect == Dialect::V9 {
            let _ = writeln!(w, "        node-id {node_id};");
        }
        for v in vols {
            let disk = match (*is_local, v.disk.as_deref()) {
                (true, Some(disk)) => disk,
                (true, None) => NO_DISK,
                (false, _) if diskless_peers.contains(*name) => NO_DISK,
                (false, _) => PEER_DISK,
            };
            block(
                w,
                2,
                &format!("volume {}", v.number),
                &[
                    format!("device minor {};", v.minor),
                    format!("disk {disk};"),
                    "meta-disk internal;".to_owned(),
                ],
            );
        }
        let _ = writeln!(w, "        address {};", endpoint(addr, *port));
        let _ = writeln!(w, "    }}");
    }
    if dialect == Dialect::V9 && hosts.len() > 1 {
        let names: Vec<String> = hosts.iter().map(|h| format!("\"{}\"", h.0)).collect();
        block(
            w,
            1,
            "connection-mesh",
            &[format!("hosts {};", names.join(" "))],
        );
    }
    let _ = writeln!(w, "}}");
    Ok(s)
}

fn block(w: &mut String, depth: usize, head: &str, lines: &[String]) {
    let pad = "    ".repeat(depth);
    let _ = writeln!(w, "{pad}{head} {{");
    for l in lines {
        let _ = writeln!(w, "{pad}    {l}");
    }
    let _ = writeln!(w, "{pad}}}");
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn desired(peers: usize) -> DesiredResource {
        let peer_list: Vec<String> = (1..=peers)
            .map(|i| {
                format!(
                    r#"{{"name":"n{}","node_id":{i},"address":"10.0.0.{}","port":7000}}"#,
                    i + 1,
                    i + 1
                )
            })
            .collect();
        serde_json::from_str(&format!(
            r#"{{"name":"db","layer_stack":["DRBD","STORAGE"],
                "volumes":[{{"number":0,"size_kib":65536}},{{"number":1,"size_kib":65536}}],
                "storage":{{"pool":"files"}},"props":{{"DrbdOptions/Net/max-buffers":"8000"}},
                "drbd":{{"node_id":0,"port":7000,"minors":[1000,1001],"peers":[{}],
                         "shared_secret":"Zm9vYmFy","address":"10.0.0.1",
                         "options":{{"Disk/on-io-error":"detach"}}}}}}"#,
            peer_list.join(",")
        ))
        .unwrap()
    }

    fn vols() -> Vec<LocalVolume> {
        vec![
            LocalVolume {
                number: 0,
                minor: 1000,
                disk: Some("/dev/loop3".into()),
            },
            LocalVolume {
                number: 1,
                minor: 1001,
                disk: Some("/dev/loop4".into()),
            },
        ]
    }

    fn n1() -> NodeName {
        "n1".parse().unwrap()
    }

    #[test]
    fn renders_drbd9_with_node_ids_mesh_and_quorum_on_three_nodes() {
        let d = desired(2);
        validate(&d, &n1()).unwrap();
        let text = render(&d, d.drbd.as_ref().unwrap(), &n1(), &vols(), Dialect::V9).unwrap();
        for needle in [
            "resource \"db\" {",
            "quorum majority;",
            "protocol C;",
            "cram-hmac-alg sha256;",
            "shared-secret \"Zm9vYmFy\";",
            "verify-alg sha256;",
            "max-buffers 8000;",
            "on-io-error detach;",
            "node-id 2;",
            "device minor 1001;",
            "disk /dev/loop3;",
            "disk /dev/drbd/this/is/not/used;",
            "address ipv4 10.0.0.3:7000;",
            "hosts \"n1\" \"n2\" \"n3\";",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
    }

    #[test]
    fn renders_drbd84_for_two_nodes_without_node_ids_or_quorum() {
        let d = desired(1);
        let text = render(&d, d.drbd.as_ref().unwrap(), &n1(), &vols(), Dialect::V84).unwrap();
        assert!(
            text.starts_with("# Written by blockstor-agent for DRBD 8.4 "),
            "{text}"
        );
        assert!(
            !text.contains("node-id")
                && !text.contains("connection-mesh")
                && !text.contains("quorum"),
            "{text}"
        );
        assert!(text.contains("on \"n2\" {"));
        let err = render(
            &desired(2),
            desired(2).drbd.as_ref().unwrap(),
            &n1(),
            &vols(),
            Dialect::V84,
        )
        .unwrap_err();
        assert_eq!(err.code, "drbd_version_unsupported");
    }

    /// `(section, name)` of every option line in the resource-level `net`, `disk` and
    /// `options` blocks of a rendered file.
    fn option_lines(text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut section = None;
        for line in text.lines() {
            match line.strip_prefix("    ").and_then(|l| l.strip_suffix(" {")) {
                Some(s @ ("net" | "disk" | "options")) => section = Some(s.to_owned()),
                _ if line == "    }" => section = None,
                _ => {
                    if let Some(s) = &section {
                        let name = line.trim().split(' ').next().unwrap_or_default();
                        out.push((s.clone(), name.to_owned()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn the_managed_option_list_is_exactly_what_the_renderer_writes_itself() {
        use blockstor_proto::secret_rules::MANAGED_DRBD_OPTIONS;
        let managed: BTreeSet<(String, String)> = MANAGED_DRBD_OPTIONS
            .iter()
            .map(|m| (m.section.to_owned(), m.name.to_owned()))
            .collect();
        let defaults: BTreeSet<(String, String)> = QUORUM_DEFAULTS
            .iter()
            .map(|(n, _)| ("options".to_owned(), (*n).to_owned()))
            .collect();
        for (peers, dialect) in [(1, Dialect::V84), (1, Dialect::V9), (2, Dialect::V9)] {
            let mut d = desired(peers);
            d.props.clear();
            d.drbd.as_mut().unwrap().options.clear();
            let text = render(&d, d.drbd.as_ref().unwrap(), &n1(), &vols(), dialect).unwrap();
            let written: BTreeSet<(String, String)> = option_lines(&text)
                .into_iter()
                .filter(|o| !defaults.contains(o))
                .collect();
            assert_eq!(written, managed, "{dialect:?} with {peers} peers:\n{text}");
        }
    }

    #[test]
    fn a_quorum_the_user_sets_replaces_the_default_and_is_written_once() {
        let mut d = desired(2);
        d.props
            .insert("DrbdOptions/Resource/quorum".into(), "2".into());
        let text = render(&d, d.drbd.as_ref().unwrap(), &n1(), &vols(), Dialect::V9).unwrap();
        let quorum: Vec<_> = option_lines(&text)
            .into_iter()
            .filter(|(_, n)| n == "quorum")
            .collect();
        assert_eq!(quorum.len(), 1, "{text}");
        assert!(
            text.contains("quorum 2;") && text.contains("on-no-quorum io-error;"),
            "{text}"
        );
    }

    #[test]
    fn two_nodes_on_drbd9_have_no_quorum() {
        let d = desired(1);
        let text = render(&d, d.drbd.as_ref().unwrap(), &n1(), &vols(), Dialect::V9).unwrap();
        assert!(!text.contains("quorum"), "{text}");
    }

    #[test]
    fn injection_through_addresses_secrets_or_options_is_refused() {
        let mut d = desired(1);
        d.drbd.as_mut().unwrap().address = "10.0.0.1; } evil {".into();
        assert_eq!(
            validate(&d, &n1()).unwrap_err().field.as_deref(),
            Some("drbd.address")
        );

        let mut d = desired(1);
        d.drbd.as_mut().unwrap().shared_secret = blockstor_proto::wire::Passphrase::new("a\"; x");
        let err = validate(&d, &n1()).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("drbd.shared_secret"));
        assert!(!err.message.contains("a\"; x"));

        let mut d = desired(1);
        d.drbd
            .as_mut()
            .unwrap()
            .options
            .insert("Net/x".into(), "1; }".into());
        assert!(validate(&d, &n1()).is_err());

        let mut d = desired(1);
        d.drbd.as_mut().unwrap().peers[0].node_id = 0;
        assert_eq!(
            validate(&d, &n1()).unwrap_err().field.as_deref(),
            Some("drbd.peers[0].node_id")
        );
    }

    #[test]
    fn port_zero_is_refused_for_this_node_and_for_peers() {
        let mut d = desired(1);
        d.drbd.as_mut().unwrap().port = 0;
        assert_eq!(
            validate(&d, &n1()).unwrap_err().field.as_deref(),
            Some("drbd.port")
        );
        let mut d = desired(1);
        d.drbd.as_mut().unwrap().peers[0].port = 0;
        assert_eq!(
            validate(&d, &n1()).unwrap_err().field.as_deref(),
            Some("drbd.peers[0].port")
        );
    }

    fn diskless(vols: &[LocalVolume]) -> Vec<LocalVolume> {
        vols.iter()
            .map(|v| LocalVolume {
                disk: None,
                ..v.clone()
            })
            .collect()
    }

    /// The text of one `on "<name>" { … }` section.
    fn host_section<'a>(text: &'a str, name: &str) -> &'a str {
        let start = text
            .find(&format!("on \"{name}\" {{"))
            .unwrap_or_else(|| panic!("no section for {name} in\n{text}"));
        let rest = &text[start..];
        let end = rest.find("\n    }\n").expect("section ends");
        &rest[..end]
    }

    #[test]
    fn diskless_replicas_render_disk_none_on_their_own_node_and_on_their_peers() {
        let d = desired(2);
        let x = d.drbd.as_ref().unwrap();
        let n3: NodeName = "n3".parse().unwrap();
        for dialect in [Dialect::V9, Dialect::V84] {
            let d = if dialect == Dialect::V84 {
                desired(1)
            } else {
                d.clone()
            };
            let x = d.drbd.as_ref().unwrap();
            // The local node is a client: its volumes have no disk, its peers keep theirs.
            let text = render(&d, x, &n1(), &diskless(&vols()), dialect).unwrap();
            let local = host_section(&text, "n1");
            assert_eq!(local.matches("disk none;").count(), 2, "{text}");
            assert!(!text.contains("/dev/loop3"), "{text}");
            let peer = host_section(&text, "n2");
            assert!(peer.contains("disk /dev/drbd/this/is/not/used;"), "{text}");
            assert!(!peer.contains("disk none;"), "{text}");
        }
        // A diskful node names the diskless peer as a client and keeps its own disk.
        let text =
            render_with_diskless_peers(&d, x, &n1(), &vols(), Dialect::V9, &[n3].into()).unwrap();
        assert_eq!(
            host_section(&text, "n3").matches("disk none;").count(),
            2,
            "{text}"
        );
        assert!(host_section(&text, "n2").contains("disk /dev/drbd/this/is/not/used;"));
        assert!(host_section(&text, "n1").contains("disk /dev/loop3;"));
    }

    /// `drbdadm -c FILE dump` (8.4 and 9 utils) parses files with diskless replicas, local and
    /// peer. Skips without drbd-utils.
    #[test]
    fn drbdadm_dump_accepts_diskless_replicas() {
        if std::process::Command::new("drbdadm")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: needs drbdadm (apt-get install -y drbd-utils)");
            return;
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
            .to_owned();
        let local: NodeName = host.parse().unwrap();
        let n2: NodeName = "n2".parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (peers, dialect, util, local_diskless) in [
            (2, Dialect::V9, "drbdadm", true),
            (2, Dialect::V9, "drbdadm", false),
            (1, Dialect::V84, "drbdadm-84", true),
            (1, Dialect::V84, "drbdadm-84", false),
        ] {
            let d = desired(peers);
            let vols = if local_diskless {
                diskless(&vols())
            } else {
                vols()
            };
            let peers_without_disk: BTreeSet<NodeName> = if local_diskless {
                BTreeSet::new()
            } else {
                [n2.clone()].into()
            };
            let text = render_with_diskless_peers(
                &d,
                d.drbd.as_ref().unwrap(),
                &local,
                &vols,
                dialect,
                &peers_without_disk,
            )
            .unwrap();
            assert!(text.contains("disk none;"), "{text}");
            let file = dir
                .path()
                .join(format!("db-{peers}-{dialect:?}-{local_diskless}.res"));
            std::fs::write(&file, &text).unwrap();
            let program = if std::path::Path::new(&format!("/usr/lib/drbd/{util}")).exists() {
                format!("/usr/lib/drbd/{util}")
            } else {
                "drbdadm".to_owned()
            };
            let out = std::process::Command::new(&program)
                .args(["-c", file.to_str().unwrap(), "dump", "db"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{program} dump failed for {dialect:?}:\n{}\n{text}",
                String::from_utf8_lossy(&out.stderr)
            );
            let dumped = String::from_utf8_lossy(&out.stdout);
            assert!(dumped.contains("disk         none;"), "{dumped}");
        }
    }

    /// `drbdadm -c FILE dump` parses every rendered file (tier 2). Skips without drbd-utils.
    #[test]
    fn drbdadm_dump_accepts_rendered_files() {
        if std::process::Command::new("drbdadm")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: needs drbdadm (apt-get install -y drbd-utils)");
            return;
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
            .to_owned();
        let local: NodeName = host.parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (peers, dialect, util) in [
            (2, Dialect::V9, "drbdadm"),
            (1, Dialect::V9, "drbdadm"),
            (1, Dialect::V84, "drbdadm-84"),
        ] {
            let d = desired(peers);
            let text = render(&d, d.drbd.as_ref().unwrap(), &local, &vols(), dialect).unwrap();
            let file = dir.path().join(format!("db-{peers}-{dialect:?}.res"));
            std::fs::write(&file, &text).unwrap();
            let program = if std::path::Path::new(&format!("/usr/lib/drbd/{util}")).exists() {
                format!("/usr/lib/drbd/{util}")
            } else {
                "drbdadm".to_owned()
            };
            let out = std::process::Command::new(&program)
                .args(["-c", file.to_str().unwrap(), "dump", "db"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{program} dump failed for {dialect:?}:\n{}\n{text}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
