//! Progress of an apply, as INFO log lines Terraform shows with `TF_LOG=INFO` (provider logs
//! go to stderr as JSON, see `plugin::log`): one line per node when its agent is asked to
//! converge, naming the layers it works through bottom-up, and one when it answers, with the
//! duration. The agent converges in one call and does not stream its steps, so these lines
//! bracket each dispatch. Nothing secret is logged: passphrases and DRBD secrets are not
//! mentioned, and agent errors never carry them (docs/design.md).

use std::time::{Duration, Instant};

use blockstor_proto::wire::{DesiredResource, ObservedResource};
use blockstor_proto::{Layer, NodeName, ResourceName};

use crate::transport::TransportError;

/// Logs that `node` is about to converge `desired`; returns the start time for [`finished`].
pub fn started(node: &NodeName, desired: &DesiredResource) -> Instant {
    tracing::info!(
        node = %node,
        resource = %desired.name,
        generation = desired.generation,
        "{node}: applying {}: {}",
        desired.name,
        steps(desired)
    );
    Instant::now()
}

/// Logs how the dispatch that began at `since` ended.
pub fn finished(
    node: &NodeName,
    name: &ResourceName,
    since: Instant,
    result: &Result<ObservedResource, TransportError>,
) {
    let took = seconds(since.elapsed());
    match result {
        Ok(observed) => {
            let devices: Vec<String> = observed
                .volumes
                .iter()
                .map(|v| {
                    let device = v.device_path.as_deref().unwrap_or("(no device yet)");
                    format!("volume {} at {device}", v.number)
                })
                .collect();
            tracing::info!(
                node = %node,
                resource = %name,
                seconds = took,
                "{node}: {name} applied in {took:.1}s: {}",
                devices.join(", ")
            );
        }
        Err(err) => tracing::warn!(
            node = %node,
            resource = %name,
            seconds = took,
            "{node}: applying {name} failed after {took:.1}s: {err}"
        ),
    }
}

/// Logs that `node` is asked to tear `name` down.
pub fn deleting(node: &NodeName, name: &ResourceName) -> Instant {
    tracing::info!(node = %node, resource = %name, "{node}: deleting {name}");
    Instant::now()
}

/// Logs how a teardown that began at `since` ended.
pub fn deleted(
    node: &NodeName,
    name: &ResourceName,
    since: Instant,
    result: &Result<(), TransportError>,
) {
    let took = seconds(since.elapsed());
    match result {
        Ok(()) => tracing::info!(
            node = %node,
            resource = %name,
            seconds = took,
            "{node}: {name} deleted in {took:.1}s"
        ),
        Err(err) => tracing::warn!(
            node = %node,
            resource = %name,
            seconds = took,
            "{node}: deleting {name} failed after {took:.1}s: {err}"
        ),
    }
}

/// What the agent works through, bottom-up: e.g. `STORAGE volume 0 (64MiB) in pool files,
/// LUKS format/open volume 0, DRBD up and initial sync with 1 peer(s)`.
fn steps(desired: &DesiredResource) -> String {
    let volumes: Vec<String> = desired
        .volumes
        .iter()
        .map(|v| v.number.to_string())
        .collect();
    let volumes = volumes.join(",");
    desired
        .layer_stack
        .bottom_up()
        .map(|layer| match layer {
            Layer::Storage => {
                let sizes: Vec<String> = desired
                    .volumes
                    .iter()
                    .map(|v| format!("volume {} ({})", v.number, v.size_kib))
                    .collect();
                format!(
                    "STORAGE {} in pool {}",
                    sizes.join(", "),
                    desired.storage.pool
                )
            }
            Layer::Luks => match desired
                .luks
                .as_ref()
                .and_then(|l| l.previous_passphrase.as_ref())
            {
                Some(_) => format!("LUKS format/open and passphrase rotation on volume {volumes}"),
                None => format!("LUKS format/open volume {volumes}"),
            },
            Layer::Drbd => {
                let peers = desired.drbd.as_ref().map_or(0, |d| d.peers.len());
                format!("DRBD up and initial sync with {peers} peer(s)")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockstor_proto::wire::{LuksSpec, Passphrase, StorageSpec, VolumeSpec};
    use blockstor_proto::LayerStack;

    #[test]
    fn steps_name_each_layer_bottom_up_and_never_the_passphrase() {
        let desired = DesiredResource {
            name: "db".parse().unwrap(),
            layer_stack: LayerStack::parse(&["LUKS", "STORAGE"]).unwrap(),
            volumes: vec![VolumeSpec {
                number: 0,
                size_kib: "64MiB".parse().unwrap(),
            }],
            storage: StorageSpec {
                pool: "files".parse().unwrap(),
            },
            luks: Some(LuksSpec {
                passphrase: Passphrase::new("do-not-log-me"),
                previous_passphrase: None,
            }),
            drbd: None,
            props: Default::default(),
            generation: 3,
        };
        let text = steps(&desired);
        assert!(text.starts_with("STORAGE volume 0 ("), "{text}");
        assert!(
            text.contains("in pool files, LUKS format/open volume 0"),
            "{text}"
        );
        assert!(!text.contains("do-not-log-me"));
    }
}
