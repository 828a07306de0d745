//! Diagnostics: errors and warnings on an attribute path, the way Terraform shows them.

use blockstor_proto::tfplugin6 as tf;
use tf::attribute_path::step::Selector;

use crate::transport::TransportError;

/// A path to an attribute: `volume[0].size` is `AttrPath::attr("volume").index(0).then("size")`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttrPath(Vec<Selector>);

impl AttrPath {
    /// The top-level attribute `name`.
    pub fn attr(name: &str) -> Self {
        AttrPath(vec![Selector::AttributeName(name.to_owned())])
    }

    /// A nested attribute.
    pub fn then(mut self, name: &str) -> Self {
        self.0.push(Selector::AttributeName(name.to_owned()));
        self
    }

    /// An element of a list.
    pub fn index(mut self, i: usize) -> Self {
        self.0.push(Selector::ElementKeyInt(i as i64));
        self
    }

    /// An element of a map (or a map block such as `node "n1"`).
    pub fn key(mut self, k: &str) -> Self {
        self.0.push(Selector::ElementKeyString(k.to_owned()));
        self
    }

    pub fn to_proto(&self) -> tf::AttributePath {
        tf::AttributePath {
            steps: self
                .0
                .iter()
                .map(|s| tf::attribute_path::Step {
                    selector: Some(s.clone()),
                })
                .collect(),
        }
    }

    /// The first attribute name, e.g. `passphrase` for `passphrase`.
    pub fn root(&self) -> Option<&str> {
        match self.0.first() {
            Some(Selector::AttributeName(n)) => Some(n),
            _ => None,
        }
    }
}

/// Collected diagnostics of one request.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics(pub Vec<tf::Diagnostic>);

impl Diagnostics {
    fn push(
        &mut self,
        severity: tf::diagnostic::Severity,
        path: Option<&AttrPath>,
        summary: String,
        detail: String,
    ) {
        self.0.push(tf::Diagnostic {
            severity: severity as i32,
            summary,
            detail,
            attribute: path.map(AttrPath::to_proto),
        });
    }

    /// An error on an attribute.
    pub fn error(
        &mut self,
        path: &AttrPath,
        summary: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.push(
            tf::diagnostic::Severity::Error,
            Some(path),
            summary.into(),
            detail.into(),
        );
    }

    /// An error not tied to one attribute.
    pub fn error_global(&mut self, summary: impl Into<String>, detail: impl Into<String>) {
        self.push(
            tf::diagnostic::Severity::Error,
            None,
            summary.into(),
            detail.into(),
        );
    }

    /// A warning on an attribute.
    pub fn warning(
        &mut self,
        path: &AttrPath,
        summary: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.push(
            tf::diagnostic::Severity::Warning,
            Some(path),
            summary.into(),
            detail.into(),
        );
    }

    pub fn has_errors(&self) -> bool {
        self.0
            .iter()
            .any(|d| d.severity == tf::diagnostic::Severity::Error as i32)
    }

    /// Only the errors: what ValidateResourceConfig returns, because plan gives the warnings
    /// again with every value known (Terraform would print both).
    pub fn errors_only(mut self) -> Self {
        self.0
            .retain(|d| d.severity == tf::diagnostic::Severity::Error as i32);
        self
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// An error from an agent, on the attribute its `field` names (see [`field_to_path`]).
    pub fn transport(&mut self, operation: &str, err: &TransportError) {
        match err.agent_error() {
            Some(agent) => {
                let summary = format!("{operation} failed on node {}: {}", err.node(), agent.code);
                match agent.field.as_deref().and_then(field_to_path) {
                    Some(path) => self.error(&path, summary, agent.message.clone()),
                    None => self.error_global(summary, agent.message.clone()),
                }
            }
            None => self.error_global(
                format!("{operation} failed: cannot reach the agent of node {}", err.node()),
                format!("{err}. Check that the agent runs and that the provider's `node \"{}\"` block points at it.", err.node()),
            ),
        }
    }
}

/// Maps a `DesiredResource` field named by an agent error to the HCL attribute that sets it:
/// `volumes[1].size_kib` → `volume[1].size`, `luks.passphrase` → `passphrase`,
/// `storage.pool` → `resource_group.storage_pool`, `drbd.*` → `nodes`.
pub fn field_to_path(field: &str) -> Option<AttrPath> {
    let mut parts = field.split('.');
    let head = parts.next()?;
    let (head, index) = match head.split_once('[') {
        Some((h, rest)) => (h, rest.trim_end_matches(']').parse::<usize>().ok()),
        None => (head, None),
    };
    let next = parts.next();
    Some(match head {
        "name" => AttrPath::attr("name"),
        "layer_stack" => AttrPath::attr("layer_stack"),
        "volumes" | "volume" => {
            let p = AttrPath::attr("volume");
            match (index, next) {
                (Some(i), Some("size_kib" | "size")) => p.index(i).then("size"),
                (Some(i), Some("number")) => p.index(i).then("number"),
                (Some(i), _) => p.index(i),
                _ => p,
            }
        }
        "storage" | "pool" | "storage_pool" => {
            AttrPath::attr("resource_group").then("storage_pool")
        }
        "luks" | "passphrase" => AttrPath::attr("passphrase"),
        "drbd" | "nodes" => AttrPath::attr("nodes"),
        "props" => AttrPath::attr("props"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_fields_map_to_hcl_attributes() {
        assert_eq!(
            field_to_path("volumes[1].size_kib"),
            Some(AttrPath::attr("volume").index(1).then("size"))
        );
        assert_eq!(
            field_to_path("luks.passphrase"),
            Some(AttrPath::attr("passphrase"))
        );
        assert_eq!(
            field_to_path("storage.pool"),
            Some(AttrPath::attr("resource_group").then("storage_pool"))
        );
        assert_eq!(field_to_path("drbd.port"), Some(AttrPath::attr("nodes")));
        assert_eq!(field_to_path("whatever"), None);
    }
}
