//! JSON documents exchanged between the provider and an agent (docs/design.md §4).
//!
//! The same documents travel over HTTP(S) and over SSH `stdio`. Deserialising one validates
//! every name, size and stack in it, so an agent handler only ever sees valid input.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::{LayerStack, NodeName, ResourceName, Size, StoragePoolName};

/// Highest volume number accepted; LINSTOR's `<rd>_<vol:05>` naming leaves room for more, but
/// no real resource has this many volumes.
pub const MAX_VOLUME_NUMBER: u32 = 99;

/// A LUKS passphrase on the wire. `Debug` and `Display` redact it; the agent hands it to
/// cryptsetup on stdin only, and never stores it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Passphrase(SecretString);

impl Passphrase {
    pub fn new(secret: impl Into<String>) -> Self {
        Passphrase(SecretString::from(secret.into()))
    }

    /// The only way to the plaintext: for cryptsetup's stdin and for the request body.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn is_empty(&self) -> bool {
        self.0.expose_secret().is_empty()
    }
}

impl Serialize for Passphrase {
    /// Serialised only into the request body sent to an agent over TLS or SSH.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose_secret())
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase([REDACTED])")
    }
}

/// What one node must converge to for one resource definition. Holds secrets: `Debug` is
/// written by hand (below) and shows none.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredResource {
    pub name: ResourceName,
    pub layer_stack: LayerStack,
    pub volumes: Vec<VolumeSpec>,
    pub storage: StorageSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub luks: Option<LuksSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drbd: Option<DrbdSpec>,
    #[serde(default)]
    pub props: BTreeMap<String, String>,
    /// Bumped by the provider on every change; the agent records the last one applied.
    #[serde(default)]
    pub generation: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    pub number: u32,
    pub size_kib: Size,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSpec {
    pub pool: StoragePoolName,
}

/// Holds secrets: `Debug` is written by hand (below) and shows none.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LuksSpec {
    pub passphrase: Passphrase,
    /// Set only while rotating: the passphrase the header holds now. The agent adds
    /// `passphrase` to a free keyslot, checks it opens the header, then removes this one;
    /// a header that holds both (a rotation cut short) is valid and finishes on the next apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_passphrase: Option<Passphrase>,
}

/// Holds a secret: `Debug` is written by hand (below) and shows none.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrbdSpec {
    pub node_id: u32,
    pub port: u16,
    /// One minor per volume, in the order of `volumes`.
    pub minors: Vec<u32>,
    pub peers: Vec<DrbdPeer>,
    /// `A`, `B` or `C`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    pub shared_secret: Passphrase,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// This node's replication address.
    pub address: String,
    /// This node is a diskless client: no STORAGE and no LUKS here; its `.res` says `disk none;`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub diskless: bool,
    /// Set when this node is ADDED to a resource that already has data on its peers: the agent
    /// creates metadata, brings it up with `adjust` and waits (bounded by `wait_seconds`) until
    /// it is the sync target of an UpToDate peer. It never takes the initial-sync branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<DrbdJoin>,
    /// Bound on any DRBD wait of this request, in seconds (from the resource's `timeouts`).
    /// Absent: the agent's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

/// How a node added to a resource with data joins it (docs/design.md §5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrbdJoin {
    /// Wait until this node's own disk is UpToDate, not only until the sync started (a move on
    /// DRBD 9, where a removal follows).
    #[serde(default)]
    pub until_up_to_date: bool,
}

/// Options of a delete: the optional JSON body of `DELETE /v1/resources/{rd}`, or the fields
/// next to `name` on the stdio line. Absent or empty: all defaults, a plain teardown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteOptions {
    /// Tear down even if a device is in use (mounted, open, held, DRBD Primary). Without it the
    /// agent refuses with `device_in_use`, naming node, device and user.
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
    /// Removing ONE replica of a DRBD resource whose other replicas stay: before `down`, wait
    /// (bounded by `wait_seconds`) until one of these peers is UpToDate. Empty: the whole
    /// resource goes, no wait.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remaining: Vec<NodeName>,
    /// Bound on the wait for `remaining`, in seconds; absent: the agent's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

impl DeleteOptions {
    /// Whether these are the defaults (no body needs to be sent).
    pub fn is_default(&self) -> bool {
        *self == DeleteOptions::default()
    }
}

fn default_protocol() -> String {
    "C".to_owned()
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl fmt::Debug for DesiredResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DesiredResource")
            .field("name", &self.name)
            .field("layer_stack", &self.layer_stack)
            .field("volumes", &self.volumes)
            .field("storage", &self.storage)
            .field("luks", &self.luks)
            .field("drbd", &self.drbd)
            .field("props", &self.props)
            .field("generation", &self.generation)
            .finish()
    }
}

impl fmt::Debug for LuksSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LuksSpec")
            .field("passphrase", &REDACTED)
            .field(
                "previous_passphrase",
                &self.previous_passphrase.as_ref().map(|_| REDACTED),
            )
            .finish()
    }
}

impl fmt::Debug for DrbdSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrbdSpec")
            .field("node_id", &self.node_id)
            .field("port", &self.port)
            .field("minors", &self.minors)
            .field("peers", &self.peers)
            .field("protocol", &self.protocol)
            .field("shared_secret", &REDACTED)
            .field("options", &self.options)
            .field("address", &self.address)
            .field("diskless", &self.diskless)
            .field("join", &self.join)
            .field("wait_seconds", &self.wait_seconds)
            .finish()
    }
}

/// What `Debug` shows in place of a secret.
const REDACTED: Redacted = Redacted;

struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrbdPeer {
    pub name: NodeName,
    pub node_id: u32,
    pub address: String,
    pub port: u16,
    /// The peer is a diskless DRBD client (`disk none;` in its `on` section).
    #[serde(default, skip_serializing_if = "is_false")]
    pub diskless: bool,
}

/// What a node actually has for one resource, read from the system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedResource {
    pub name: ResourceName,
    pub node: NodeName,
    pub layer_stack: LayerStack,
    pub volumes: Vec<ObservedVolume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drbd: Option<ObservedDrbd>,
    /// The generation of the last DesiredResource applied, 0 when never applied here.
    #[serde(default)]
    pub generation: u64,
    /// Who built the chain, as far as the node shows; older agents do not send it.
    #[serde(default)]
    pub origin: Origin,
}

/// Who built an observed chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// blockstor, or nothing says otherwise.
    #[default]
    Blockstor,
    /// LINSTOR: its `.res` file or its dm-crypt mapping name (`Linstor-Crypt-<rd>_<vol:05>`)
    /// is on the node.
    Linstor,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedVolume {
    pub number: u32,
    /// Size of the backing volume, in KiB; `None` when it is missing.
    pub size_kib: Option<u64>,
    /// e.g. `/dev/loop3`, `/dev/vg0/db_00000`.
    pub backing_device: Option<String>,
    /// The topmost device a user mounts: `/dev/drbd1000`, `/dev/mapper/db-0-luks`, or the
    /// backing device for `["STORAGE"]`. `None` while a layer above is not active.
    pub device_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub luks: Option<ObservedLuks>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedLuks {
    pub uuid: String,
    pub open: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedDrbd {
    pub node_id: u32,
    pub port: u16,
    pub minors: Vec<u32>,
    pub res_file: String,
    pub up: bool,
    /// `Primary`, `Secondary` or `Unknown`, as last read from the kernel; `None` when not up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// This node's disk state (`UpToDate`, `Inconsistent`, `Outdated`, `Diskless`, ...), the
    /// worst over the volumes; `None` when not up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_state: Option<String>,
    /// This node is a diskless client of the resource.
    #[serde(default, skip_serializing_if = "is_false")]
    pub diskless: bool,
}

/// `GET /v1/node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: NodeName,
    pub versions: Versions,
    pub pools: Vec<PoolInfo>,
    pub used_minors: Vec<u32>,
    pub used_ports: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Versions {
    pub agent: String,
    pub cryptsetup: Option<String>,
    pub drbd_kernel: Option<String>,
    pub drbd_utils: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolInfo {
    pub name: StoragePoolName,
    /// `loopfile`, `lvm`, `lvm-thin` or `zfs`.
    pub backend: String,
    pub free_kib: u64,
    pub total_kib: u64,
}

/// `POST /v1/resources/{rd}/plan`: the steps apply would run, secrets shown as `<redacted>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedSteps {
    pub steps: Vec<PlannedStep>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStep {
    /// `STORAGE`, `LUKS` or `DRBD`.
    pub layer: String,
    pub argv: Vec<String>,
}

/// Answer of `DELETE /v1/resources/{rd}` (and the stdio `delete`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub name: ResourceName,
    /// False when nothing of the resource existed (delete is idempotent).
    pub deleted: bool,
}

/// Every error an agent returns: a stable code, a message that says what to do, and the
/// DesiredResource field it concerns (the provider maps it to a Terraform attribute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AgentError {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl AgentError {
    /// The code, when this build knows it (an agent newer than the provider may send others).
    pub fn code(&self) -> Option<crate::ErrorCode> {
        self.code.parse().ok()
    }

    /// Whether the agent answered with `code`.
    pub fn is(&self, code: crate::ErrorCode) -> bool {
        self.code == code.as_str()
    }
}

/// One request line in SSH `stdio` mode; the response line is the same JSON the HTTP route
/// returns on success, or `{"error": AgentError}`. No bearer token: the SSH login already
/// authenticated the caller. The operations and their fields are the table in
/// [`crate::contract`]. Holds secrets (apply, plan): `Debug` is written by hand and shows none.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StdioRequest {
    Node,
    Apply {
        resource: DesiredResource,
    },
    Plan {
        resource: DesiredResource,
    },
    Get {
        name: ResourceName,
    },
    Delete {
        name: ResourceName,
        #[serde(flatten)]
        options: DeleteOptions,
    },
    List,
}

impl fmt::Debug for StdioRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StdioRequest::Node => f.write_str("Node"),
            StdioRequest::List => f.write_str("List"),
            StdioRequest::Apply { resource } => {
                f.debug_struct("Apply").field("resource", resource).finish()
            }
            StdioRequest::Plan { resource } => {
                f.debug_struct("Plan").field("resource", resource).finish()
            }
            StdioRequest::Get { name } => f.debug_struct("Get").field("name", name).finish(),
            StdioRequest::Delete { name, options } => f
                .debug_struct("Delete")
                .field("name", name)
                .field("options", options)
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_every_secret_holding_type_shows_no_secret() {
        let json = r#"{"name":"db","layer_stack":["drbd","luks","storage"],
            "volumes":[{"number":0,"size_kib":65536}],"storage":{"pool":"files"},
            "luks":{"passphrase":"s3cret-pass","previous_passphrase":"0ld-s3cret"},
            "drbd":{"node_id":0,"port":7000,"minors":[1000],"peers":[],
                    "shared_secret":"drbd-s3cret","address":"10.0.0.1"}}"#;
        let d: DesiredResource = serde_json::from_str(json).unwrap();
        let shown = [
            format!("{:?}", d.luks.as_ref().unwrap().passphrase),
            format!("{:?}", d.luks.as_ref().unwrap()),
            format!("{:?}", d.drbd.as_ref().unwrap()),
            format!("{d:?}"),
            format!(
                "{:?}",
                StdioRequest::Apply {
                    resource: d.clone()
                }
            ),
            format!(
                "{:?}",
                StdioRequest::Plan {
                    resource: d.clone()
                }
            ),
        ];
        for text in &shown {
            for secret in ["s3cret-pass", "0ld-s3cret", "drbd-s3cret"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
        // Everything else still shows, so Debug stays useful.
        assert!(
            shown[3].contains("files") && shown[3].contains("10.0.0.1"),
            "{}",
            shown[3]
        );
    }

    fn desired_json(name: &str) -> String {
        format!(
            r#"{{"name":"{name}","layer_stack":["luks","storage"],"volumes":[{{"number":0,"size_kib":65536}}],
               "storage":{{"pool":"files"}},"luks":{{"passphrase":"s3cret-pass"}}}}"#
        )
    }

    #[test]
    fn desired_resource_round_trips_and_normalises() {
        let d: DesiredResource = serde_json::from_str(&desired_json("db")).unwrap();
        assert_eq!(d.layer_stack.names(), ["LUKS", "STORAGE"]);
        let back = serde_json::to_string(&d).unwrap();
        assert!(back.contains("\"passphrase\":\"s3cret-pass\""));
    }

    #[test]
    fn debug_never_shows_the_passphrase() {
        let d: DesiredResource = serde_json::from_str(&desired_json("db")).unwrap();
        assert!(!format!("{d:?}").contains("s3cret"));
    }

    #[test]
    fn a_rotation_carries_the_previous_passphrase_redacted() {
        let json = desired_json("db").replace(
            r#""passphrase":"s3cret-pass""#,
            r#""passphrase":"s3cret-pass","previous_passphrase":"0ld-s3cret""#,
        );
        let d: DesiredResource = serde_json::from_str(&json).unwrap();
        let luks = d.luks.as_ref().unwrap();
        assert_eq!(
            luks.previous_passphrase.as_ref().unwrap().expose(),
            "0ld-s3cret"
        );
        assert!(!format!("{d:?}").contains("0ld"));
        let plain: DesiredResource = serde_json::from_str(&desired_json("db")).unwrap();
        let back = serde_json::to_string(&plain).unwrap();
        assert!(
            !back.contains("previous_passphrase"),
            "absent unless rotating"
        );
    }

    #[test]
    fn hostile_names_fail_at_deserialisation() {
        assert!(serde_json::from_str::<DesiredResource>(&desired_json("../x")).is_err());
        assert!(serde_json::from_str::<DesiredResource>(&desired_json("all")).is_err());
    }

    #[test]
    fn origin_defaults_to_blockstor_for_older_agents() {
        let json = r#"{"name":"db","node":"n1","layer_stack":["storage"],"volumes":[]}"#;
        let o: ObservedResource = serde_json::from_str(json).unwrap();
        assert_eq!(o.origin, Origin::Blockstor);
        let mut o = o;
        o.origin = Origin::Linstor;
        let back = serde_json::to_string(&o).unwrap();
        assert!(back.contains(r#""origin":"linstor""#), "{back}");
    }

    #[test]
    fn documents_without_the_replica_change_fields_parse_and_serialise_as_before() {
        let desired = r#"{"name":"db","layer_stack":["DRBD","STORAGE"],"volumes":[{"number":0,"size_kib":65536}],"storage":{"pool":"files"},"drbd":{"node_id":0,"port":7000,"minors":[1000],"peers":[{"name":"n2","node_id":1,"address":"10.0.0.2","port":7000}],"protocol":"C","shared_secret":"x","options":{},"address":"10.0.0.1"},"props":{},"generation":3}"#;
        let d: DesiredResource = serde_json::from_str(desired).unwrap();
        let drbd = d.drbd.as_ref().unwrap();
        assert!(!drbd.diskless && drbd.join.is_none() && drbd.wait_seconds.is_none());
        assert!(!drbd.peers[0].diskless);
        assert_eq!(serde_json::to_string(&d).unwrap(), desired);

        let observed = r#"{"name":"db","node":"n1","layer_stack":["DRBD","STORAGE"],"volumes":[],"drbd":{"node_id":0,"port":7000,"minors":[1000],"res_file":"/x/db.res","up":true},"generation":3,"origin":"blockstor"}"#;
        let o: ObservedResource = serde_json::from_str(observed).unwrap();
        let od = o.drbd.as_ref().unwrap();
        assert_eq!(
            (&od.role, &od.disk_state, od.diskless),
            (&None, &None, false)
        );
        assert_eq!(serde_json::to_string(&o).unwrap(), observed);

        let line = r#"{"op":"delete","name":"db"}"#;
        let r: StdioRequest = serde_json::from_str(line).unwrap();
        assert!(
            matches!(&r, StdioRequest::Delete { options, .. } if options.is_default()),
            "{r:?}"
        );
        assert_eq!(serde_json::to_string(&r).unwrap(), line);
    }

    #[test]
    fn the_replica_change_fields_round_trip() {
        let json = desired_json("db").replace(
            r#""luks":{"passphrase":"s3cret-pass"}"#,
            r#""drbd":{"node_id":2,"port":7000,"minors":[1001],"shared_secret":"x","address":"10.0.0.3",
                "peers":[{"name":"n1","node_id":0,"address":"10.0.0.1","port":7000,"diskless":true}],
                "diskless":true,"join":{"until_up_to_date":true},"wait_seconds":90}"#,
        );
        let d: DesiredResource = serde_json::from_str(&json).unwrap();
        let drbd = d.drbd.as_ref().unwrap();
        assert!(drbd.diskless && drbd.peers[0].diskless);
        assert_eq!(
            drbd.join,
            Some(DrbdJoin {
                until_up_to_date: true
            })
        );
        assert_eq!(drbd.wait_seconds, Some(90));
        let back: DesiredResource =
            serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{d:?}"));
        assert!(serde_json::from_str::<DrbdJoin>(r#"{"until":true}"#).is_err());

        let options = DeleteOptions {
            force: true,
            remaining: vec!["n2".parse().unwrap()],
            wait_seconds: Some(30),
        };
        let r = StdioRequest::Delete {
            name: "db".parse().unwrap(),
            options: options.clone(),
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(
            line,
            r#"{"op":"delete","name":"db","force":true,"remaining":["n2"],"wait_seconds":30}"#
        );
        let back: StdioRequest = serde_json::from_str(&line).unwrap();
        assert!(matches!(back, StdioRequest::Delete { options: o, .. } if o == options));
        assert!(serde_json::from_str::<DeleteOptions>(r#"{"forced":true}"#).is_err());
        assert!(serde_json::from_str::<DeleteOptions>(r#"{"remaining":["../x"]}"#).is_err());
    }

    #[test]
    fn stdio_requests_are_tagged_by_op() {
        let r: StdioRequest = serde_json::from_str(r#"{"op":"get","name":"db"}"#).unwrap();
        assert!(matches!(r, StdioRequest::Get { name } if name.as_str() == "db"));
    }
}
