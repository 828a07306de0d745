//! The engine: validates a request, takes the resource's lock, and walks the layer stack —
//! bottom-up to apply (each layer observes, then acts only where needed), top-down to tear
//! down. It owns no tool knowledge: layers describe steps, the runner runs them.

use std::collections::BTreeSet;
use std::sync::Arc;

use blockstor_proto::wire::{
    DesiredResource, NodeInfo, ObservedLuks, ObservedResource, ObservedVolume, PlannedSteps,
    PoolInfo, Versions, MAX_VOLUME_NUMBER,
};
use blockstor_proto::{Layer as L, LayerStack, ResourceName};

use crate::backends;
use crate::config::Config;
use crate::error::{Error, Kind, Result};
use crate::host::Host;
use crate::layers::{drbd, luks, storage, Cx, Layer, Vol};
use crate::runner::{Command, Runner};
use crate::store::{Locks, ResourceRecord, Store, StoredSpec};

/// Everything a request needs. Cheap to clone; shared by the HTTP and stdio front ends.
#[derive(Clone)]
pub struct Engine {
    pub config: Arc<Config>,
    pub runner: Arc<dyn Runner>,
    pub host: Arc<dyn Host>,
    pub store: Store,
    pub locks: Locks,
}

/// Answer of `DELETE`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Deleted {
    pub name: ResourceName,
    /// False when nothing of the resource existed (delete is idempotent).
    pub deleted: bool,
}

impl Engine {
    pub fn new(config: Config, runner: Arc<dyn Runner>, host: Arc<dyn Host>, store: Store) -> Self {
        Engine {
            config: Arc::new(config),
            runner,
            host,
            store,
            locks: Locks::default(),
        }
    }

    /// Converges this node to `d` and returns what it then has.
    pub async fn apply(&self, d: DesiredResource) -> Result<ObservedResource> {
        self.validate(&d)?;
        let _guard = self.locks.lock(&d.name).await;
        let existing = self.store.get(&d.name)?;
        self.check_against_record(&d, existing.as_ref())?;
        self.check_collisions(&d)?;
        let mut record =
            existing.unwrap_or_else(|| ResourceRecord::new(StoredSpec::from_desired(&d)));
        let generation = record.generation;
        record.spec = StoredSpec::from_desired(&d);
        record.generation = generation;
        self.store.put(&record)?;
        let walk = self.walk_apply(&d, &mut record, false).await?;
        record.generation = d.generation;
        self.store.put(&record)?;
        Ok(self.observed(&record, &walk))
    }

    /// The steps `apply` would run now, as argv; changes nothing.
    pub async fn plan(&self, d: DesiredResource) -> Result<PlannedSteps> {
        self.validate(&d)?;
        let _guard = self.locks.lock(&d.name).await;
        let existing = self.store.get(&d.name)?;
        self.check_against_record(&d, existing.as_ref())?;
        self.check_collisions(&d)?;
        let mut record =
            existing.unwrap_or_else(|| ResourceRecord::new(StoredSpec::from_desired(&d)));
        let walk = self.walk_apply(&d, &mut record, true).await?;
        Ok(PlannedSteps { steps: walk.steps })
    }

    /// The observed chain, read from the system. Without a record (state lost, import), the
    /// pools are searched for the resource's backing volumes. `not_found` when nothing exists.
    pub async fn get(&self, name: &ResourceName) -> Result<ObservedResource> {
        let _guard = self.locks.lock(name).await;
        let mut record = match self.store.get(name)? {
            Some(r) => r,
            None => self.discover(name).await?.ok_or_else(|| not_found(name))?,
        };
        let walk = self.observe_all(&mut record).await?;
        Ok(self.observed(&record, &walk))
    }

    /// Every resource this agent knows, observed.
    pub async fn list(&self) -> Result<Vec<ObservedResource>> {
        let mut out = Vec::new();
        for r in self.store.list()? {
            match self.get(&r.spec.name).await {
                Ok(o) => out.push(o),
                Err(e) if e.kind == Kind::NotFound => {} // deleted meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Tears the resource down top-down and forgets it. Idempotent.
    pub async fn delete(&self, name: &ResourceName) -> Result<Deleted> {
        let _guard = self.locks.lock(name).await;
        let Some(mut record) = self.store.get(name)? else {
            return Ok(Deleted {
                name: name.clone(),
                deleted: false,
            });
        };
        let layers = self.layers(&record.spec.layer_stack, &record.spec.pool)?;
        let mut vols = initial_vols(&record);
        let mut cx = self.cx(&mut record, None, false);
        for layer in &layers {
            layer.observe(&mut cx, &mut vols).await?;
        }
        for layer in layers.iter().rev() {
            layer.teardown(&mut cx, &mut vols).await?;
        }
        self.store.remove(name)?;
        Ok(Deleted {
            name: name.clone(),
            deleted: true,
        })
    }

    /// Rebuilds a record (not stored) from what the system holds: backing volumes named
    /// `<rd>_<vol:05>` in some pool, LUKS if the first one has a header, DRBD if a `.res` exists.
    async fn discover(&self, name: &ResourceName) -> Result<Option<ResourceRecord>> {
        for pool in &self.config.pools {
            let backend = backends::for_pool(pool);
            let mut record = ResourceRecord::new(StoredSpec {
                name: name.clone(),
                layer_stack: LayerStack::parse(&["STORAGE"]).expect("valid stack"),
                volumes: vec![],
                pool: pool.name.clone(),
                props: Default::default(),
                drbd: None,
            });
            let mut cx = self.cx(&mut record, None, true);
            let numbers = match backend.discover(&cx).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(pool = %pool.name, error = %e, "discovery skipped a pool");
                    continue;
                }
            };
            let Some(&first) = numbers.first() else {
                continue;
            };
            let mut volumes = Vec::new();
            let mut luks = false;
            for n in &numbers {
                let Some(b) = backend.observe(&mut cx, *n).await? else {
                    continue;
                };
                if *n == first {
                    if let Some(dev) = &b.device {
                        luks = cx
                            .observe(&Command::new("cryptsetup", ["isLuks", dev.as_str()]))
                            .await?
                            .success();
                    }
                }
                let size_kib = blockstor_proto::Size::from_kib(
                    b.size_kib.max(blockstor_proto::size::EXTENT_KIB),
                )
                .map_err(|e| Error::internal(e.to_string()))?;
                volumes.push(blockstor_proto::wire::VolumeSpec {
                    number: *n,
                    size_kib,
                });
            }
            let res = self
                .config
                .state_dir
                .join("drbd.d")
                .join(format!("{name}.res"));
            let mut layers = Vec::new();
            if self.host.exists(&res) {
                layers.push(L::Drbd);
            }
            if luks {
                layers.push(L::Luks);
            }
            layers.push(L::Storage);
            record.spec.layer_stack =
                LayerStack::from_layers(layers).map_err(|e| Error::internal(e.to_string()))?;
            record.spec.volumes = volumes;
            return Ok(Some(record));
        }
        Ok(None)
    }

    /// `GET /v1/node`: versions, pools with space, used minors and ports.
    pub async fn node(&self) -> Result<NodeInfo> {
        let mut scratch = ResourceRecord::new(StoredSpec {
            name: "node_info".parse().expect("valid name"),
            layer_stack: LayerStack::parse(&["STORAGE"]).expect("valid stack"),
            volumes: vec![],
            pool: "none".parse().expect("valid name"),
            props: Default::default(),
            drbd: None,
        });
        let cx = self.cx(&mut scratch, None, true);
        let mut pools = Vec::new();
        for p in &self.config.pools {
            let backend = backends::for_pool(p);
            // A pool whose tool is missing reports zero rather than failing the whole call.
            let (free_kib, total_kib) = backend.space(&cx).await.unwrap_or_else(|e| {
                tracing::warn!(pool = %p.name, error = %e, "pool space unavailable");
                (0, 0)
            });
            pools.push(PoolInfo {
                name: p.name.clone(),
                backend: p.backend.kind().to_owned(),
                free_kib,
                total_kib,
            });
        }
        let (mut used_minors, mut used_ports) = (Vec::new(), Vec::new());
        for r in self.store.list()? {
            if let Some(d) = &r.spec.drbd {
                used_minors.extend(d.minors.iter().copied());
                used_ports.push(d.port);
            }
        }
        used_minors.sort_unstable();
        used_ports.sort_unstable();
        Ok(NodeInfo {
            name: self.config.node_name.clone(),
            versions: self.versions().await,
            pools,
            used_minors,
            used_ports,
        })
    }

    async fn versions(&self) -> Versions {
        let first_line = |o: Option<crate::runner::Output>| {
            o.filter(|o| o.success())
                .and_then(|o| o.stdout.lines().next().map(|l| l.trim().to_owned()))
        };
        let cryptsetup = first_line(
            self.runner
                .run(&Command::new("cryptsetup", ["--version"]))
                .await
                .ok(),
        )
        .map(|l| {
            l.trim_start_matches("cryptsetup ")
                .split(' ')
                .next()
                .unwrap_or("")
                .to_owned()
        });
        let drbd = self
            .runner
            .run(&Command::new("drbdadm", ["--version"]))
            .await
            .ok();
        let field = |key: &str| {
            drbd.as_ref().and_then(|o| {
                o.stdout
                    .lines()
                    .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
            })
        };
        Versions {
            agent: env!("CARGO_PKG_VERSION").to_owned(),
            cryptsetup,
            drbd_kernel: field("DRBD_KERNEL_VERSION=").filter(|_| self.host.drbd_available()),
            drbd_utils: field("DRBDADM_VERSION="),
        }
    }

    fn cx<'a>(
        &'a self,
        record: &'a mut ResourceRecord,
        d: Option<&DesiredResource>,
        dry_run: bool,
    ) -> Cx<'a> {
        let rd = record.spec.name.clone();
        let props = record.spec.props.clone();
        Cx {
            runner: self.runner.as_ref(),
            host: self.host.as_ref(),
            store: Some(&self.store),
            record,
            rd,
            passphrase: d.and_then(|d| d.luks.as_ref().map(|l| l.passphrase.clone())),
            props,
            desired: d.cloned(),
            drbd: None,
            dry_run,
            steps: Vec::new(),
        }
    }

    /// The layer objects for a stack, bottom-up.
    fn layers(
        &self,
        stack: &LayerStack,
        pool: &blockstor_proto::StoragePoolName,
    ) -> Result<Vec<Box<dyn Layer>>> {
        let pool = self
            .config
            .pool(pool)
            .ok_or_else(|| unknown_pool(pool, &self.config))?;
        let mut out: Vec<Box<dyn Layer>> = Vec::new();
        for layer in stack.bottom_up() {
            match layer {
                L::Storage => out.push(Box::new(storage::Storage {
                    backend: backends::for_pool(pool),
                    luks_above: stack.has(L::Luks),
                })),
                L::Luks => out.push(Box::new(luks::Luks)),
                L::Drbd => out.push(Box::new(drbd::Drbd {
                    res_dir: self.config.state_dir.join("drbd.d"),
                    node: self.config.node_name.clone(),
                })),
            }
        }
        Ok(out)
    }

    async fn walk_apply(
        &self,
        d: &DesiredResource,
        record: &mut ResourceRecord,
        dry_run: bool,
    ) -> Result<Walk> {
        let layers = self.layers(&d.layer_stack, &d.storage.pool)?;
        let mut vols: Vec<Vol> = d
            .volumes
            .iter()
            .map(|v| Vol {
                number: v.number,
                size_kib: v.size_kib.kib(),
                ..Default::default()
            })
            .collect();
        let mut cx = self.cx(record, Some(d), dry_run);
        for layer in &layers {
            layer.observe(&mut cx, &mut vols).await?;
            layer.apply(&mut cx, &mut vols).await?;
        }
        Ok(Walk {
            steps: std::mem::take(&mut cx.steps),
            drbd: cx.drbd.take(),
            vols,
        })
    }

    async fn observe_all(&self, record: &mut ResourceRecord) -> Result<Walk> {
        let layers = self.layers(&record.spec.layer_stack, &record.spec.pool)?;
        let mut vols = initial_vols(record);
        let mut cx = self.cx(record, None, true);
        for layer in &layers {
            layer.observe(&mut cx, &mut vols).await?;
        }
        Ok(Walk {
            steps: Vec::new(),
            drbd: cx.drbd.take(),
            vols,
        })
    }

    fn observed(&self, record: &ResourceRecord, walk: &Walk) -> ObservedResource {
        let vols = &walk.vols;
        ObservedResource {
            name: record.spec.name.clone(),
            node: self.config.node_name.clone(),
            layer_stack: record.spec.layer_stack.clone(),
            volumes: vols
                .iter()
                .map(|v| ObservedVolume {
                    number: v.number,
                    size_kib: v.backing.as_ref().map(|b| b.size_kib),
                    backing_device: v.backing.as_ref().and_then(|b| b.device.clone()),
                    device_path: v.top.clone(),
                    luks: v.luks.as_ref().map(|l| ObservedLuks {
                        uuid: l.uuid.clone(),
                        open: l.open,
                    }),
                })
                .collect(),
            drbd: walk.drbd.clone(),
            generation: record.generation,
        }
    }

    /// Checks that need the config but no system access; run before any process.
    fn validate(&self, d: &DesiredResource) -> Result<()> {
        if self.config.pool(&d.storage.pool).is_none() {
            return Err(unknown_pool(&d.storage.pool, &self.config));
        }
        if d.volumes.is_empty() {
            return Err(Error::invalid(
                "invalid_volumes",
                "volumes",
                "at least one volume is required",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, v) in d.volumes.iter().enumerate() {
            if v.number > MAX_VOLUME_NUMBER {
                return Err(Error::invalid(
                    "invalid_volumes",
                    format!("volumes[{i}].number"),
                    format!(
                        "volume number {} is above the limit {MAX_VOLUME_NUMBER}",
                        v.number
                    ),
                ));
            }
            if !seen.insert(v.number) {
                return Err(Error::invalid(
                    "invalid_volumes",
                    format!("volumes[{i}].number"),
                    format!("volume number {} appears twice", v.number),
                ));
            }
        }
        if d.layer_stack.has(L::Luks) {
            if d.luks.as_ref().is_none_or(|l| l.passphrase.is_empty()) {
                return Err(Error::invalid(
                    "luks_passphrase_missing",
                    "passphrase",
                    "the layer stack holds LUKS but no passphrase was given; set passphrase on \
                     the resource definition or its resource group (blockstor never creates an \
                     unencrypted volume for a LUKS stack)",
                ));
            }
            luks::validate_props(&d.props)?;
        }
        if d.layer_stack.has(L::Drbd) {
            let Some(drbd) = &d.drbd else {
                return Err(Error::invalid(
                    "drbd_missing",
                    "drbd",
                    "the layer stack holds DRBD but the request has no drbd section",
                ));
            };
            drbd::render::validate(d, &self.config.node_name)?;
            if drbd.minors.len() != d.volumes.len() {
                return Err(Error::invalid(
                    "invalid_drbd",
                    "drbd.minors",
                    format!(
                        "{} minors for {} volumes; give one minor per volume",
                        drbd.minors.len(),
                        d.volumes.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A resource keeps its stack and pool for life (the provider replaces it instead).
    fn check_against_record(&self, d: &DesiredResource, r: Option<&ResourceRecord>) -> Result<()> {
        let Some(r) = r else { return Ok(()) };
        if r.spec.layer_stack != d.layer_stack {
            return Err(Error::new(
                Kind::Conflict,
                "layer_stack_changed",
                format!(
                    "{} exists here with layer stack {}; a stack cannot change in place, replace the resource",
                    d.name, r.spec.layer_stack
                ),
            )
            .field("layer_stack"));
        }
        if r.spec.pool != d.storage.pool {
            return Err(Error::new(
                Kind::Conflict,
                "storage_pool_changed",
                format!(
                    "{} lives in pool {} here; replace the resource to move it",
                    d.name, r.spec.pool
                ),
            )
            .field("storage.pool"));
        }
        Ok(())
    }

    /// Rejects a DRBD minor or port already used by another resource on this node (409).
    fn check_collisions(&self, d: &DesiredResource) -> Result<()> {
        let Some(drbd) = &d.drbd else { return Ok(()) };
        for other in self.store.list()? {
            if other.spec.name == d.name {
                continue;
            }
            let Some(o) = &other.spec.drbd else { continue };
            if let Some((i, m)) = drbd
                .minors
                .iter()
                .enumerate()
                .find(|(_, m)| o.minors.contains(m))
            {
                return Err(Error::new(
                    Kind::Conflict,
                    "minor_in_use",
                    format!(
                        "DRBD minor {m} is used by {} on this node; pick a free minor",
                        other.spec.name
                    ),
                )
                .field(format!("drbd.minors[{i}]")));
            }
            if o.port == drbd.port {
                return Err(Error::new(
                    Kind::Conflict,
                    "port_in_use",
                    format!(
                        "port {} is used by {} on this node; pick a free port",
                        drbd.port, other.spec.name
                    ),
                )
                .field("drbd.port"));
            }
        }
        Ok(())
    }
}

/// What one walk over the stack found and did.
struct Walk {
    vols: Vec<Vol>,
    steps: Vec<blockstor_proto::wire::PlannedStep>,
    drbd: Option<blockstor_proto::wire::ObservedDrbd>,
}

fn initial_vols(record: &ResourceRecord) -> Vec<Vol> {
    record
        .spec
        .volumes
        .iter()
        .map(|v| Vol {
            number: v.number,
            size_kib: v.size_kib.kib(),
            ..Default::default()
        })
        .collect()
}

fn not_found(name: &ResourceName) -> Error {
    Error::new(
        Kind::NotFound,
        "not_found",
        format!("resource {name} does not exist on this node"),
    )
}

fn unknown_pool(pool: &blockstor_proto::StoragePoolName, config: &Config) -> Error {
    let known: Vec<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
    Error::invalid(
        "unknown_pool",
        "storage.pool",
        format!(
            "storage pool {pool} is not configured on node {}; configured pools: {known:?}",
            config.node_name
        ),
    )
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
