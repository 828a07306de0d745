//! The engine: validates a request, takes the resource's lock, and walks the layer stack —
//! bottom-up to apply (each layer observes, then acts only where needed), top-down to tear
//! down. It owns no tool knowledge: layers describe steps, the runner runs them.

use std::sync::Arc;

use blockstor_proto::wire::{
    DeleteOptions, DesiredResource, ObservedLuks, ObservedResource, ObservedVolume, PlannedSteps,
};
use blockstor_proto::{Layer as L, LayerStack, ResourceName};

use crate::backends::{self, PoolScan};
use crate::config::Config;
use crate::error::{Error, ErrorCode, Kind, Result};
use crate::host::Host;
use crate::layers::{drbd, luks, storage, Cx, Layer, Vol};
use crate::runner::Runner;
use crate::step::StepCx;
use crate::store::{Locks, ResourceRecord, Store, StoredSpec};

mod discover;
mod diskless;
mod node_info;
mod teardown_guard;
mod validate;
mod versions;

/// Everything a request needs. Cheap to clone; shared by the HTTP and stdio front ends.
#[derive(Clone)]
pub struct Engine {
    pub config: Arc<Config>,
    pub runner: Arc<dyn Runner>,
    pub host: Arc<dyn Host>,
    pub store: Store,
    pub locks: Locks,
    /// Tool versions for `GET /v1/node`, kept until a tool or the DRBD module changes.
    versions: Arc<versions::VersionCache>,
}

/// Answer of `DELETE` (a wire type: the agent contract names it).
pub use blockstor_proto::wire::Deleted;

impl Engine {
    pub fn new(config: Config, runner: Arc<dyn Runner>, host: Arc<dyn Host>, store: Store) -> Self {
        Engine {
            config: Arc::new(config),
            runner,
            host,
            store,
            locks: Locks::default(),
            versions: Arc::default(),
        }
    }

    /// Converges this node to `d` and returns what it then has.
    pub async fn apply(&self, d: DesiredResource) -> Result<ObservedResource> {
        self.validate(&d)?;
        let _guard = self.locks.lock(&d.name).await;
        let existing = self.store.get(&d.name)?;
        self.check_against_record(&d, existing.as_ref())?;
        self.check_collisions(&d)?;
        self.check_linstor_drbd(&d)?;
        let spec = StoredSpec::from_desired(&d);
        let unchanged = existing.as_ref().is_some_and(|r| r.spec == spec);
        let mut record = existing.unwrap_or_else(|| self.new_record(spec.clone()));
        let dropped = dropped_volumes(&record, &d)?;
        if !dropped.is_empty() {
            self.teardown(&mut record, dropped, false, None).await?;
            // Durably: the record no longer names what is gone.
            self.store.put(&record)?;
        }
        record.spec = spec;
        if !unchanged {
            // Lazily: the first durable write (a mark that guards data, or the final one)
            // carries it, and no step before that can destroy anything.
            self.store.put_lazy(&record)?;
        }
        let before = record.clone();
        let walk = match self.walk_apply(&d, &mut record, false).await {
            Ok(walk) => walk,
            Err(e) => {
                // A first apply refused before it made anything (no space, a passphrase a new
                // header may not take) leaves no record: nothing of the resource exists here.
                if before.volumes.is_empty() && record.volumes.is_empty() {
                    self.store.remove(&d.name)?;
                }
                return Err(e);
            }
        };
        record.generation = d.generation;
        // A diskless client holds no volume to adopt.
        if !d.drbd.as_ref().is_some_and(|x| x.diskless) {
            for v in &d.volumes {
                record.volume(v.number).adopted = true;
            }
        }
        // Also makes lazily written "done" marks durable; a no-op re-apply writes nothing.
        if record != before {
            self.store.put(&record)?;
        }
        Ok(self.observed(&record, &walk))
    }

    /// The steps `apply` would run now, as argv; changes nothing.
    pub async fn plan(&self, d: DesiredResource) -> Result<PlannedSteps> {
        self.validate(&d)?;
        let _guard = self.locks.lock(&d.name).await;
        let existing = self.store.get(&d.name)?;
        self.check_against_record(&d, existing.as_ref())?;
        self.check_collisions(&d)?;
        self.check_linstor_drbd(&d)?;
        let mut record = existing.unwrap_or_else(|| self.new_record(StoredSpec::from_desired(&d)));
        let dropped = dropped_volumes(&record, &d)?;
        let mut steps = if dropped.is_empty() {
            Vec::new()
        } else {
            self.teardown(&mut record, dropped, true, None).await?
        };
        steps.extend(self.walk_apply(&d, &mut record, true).await?.steps);
        Ok(PlannedSteps { steps })
    }

    /// The observed chain, read from the system. Without a record (state lost, import), the
    /// pools are searched for the resource's backing volumes. `not_found` when nothing exists.
    pub async fn get(&self, name: &ResourceName) -> Result<ObservedResource> {
        self.get_with(name, None).await
    }

    /// [`Engine::get`], observing the pools through `scan` when given (one for a list).
    async fn get_with(
        &self,
        name: &ResourceName,
        scan: Option<Arc<PoolScan>>,
    ) -> Result<ObservedResource> {
        let _guard = self.locks.lock(name).await;
        let mut record = match self.store.get(name)? {
            Some(r) => r,
            None => self.discover(name).await?.ok_or_else(|| not_found(name))?,
        };
        let walk = self.observe_all(&mut record, scan).await?;
        Ok(self.observed(&record, &walk))
    }

    /// Every resource this agent knows, observed: those in the store, and those whose backing
    /// volumes (`<rd>_<vol:05>`) sit in a pool without a record (state lost, or not yet
    /// imported), as GET of one resource finds them.
    pub async fn list(&self) -> Result<Vec<ObservedResource>> {
        let mut names: std::collections::BTreeSet<ResourceName> = self
            .store
            .list()?
            .into_iter()
            .map(|r| r.spec.name)
            .collect();
        names.extend(self.discover_names().await?);
        // One read of the pools (loop attachments) for all, not one per resource (O(N) each).
        let scan = Some(Arc::new(PoolScan::take(self.host.as_ref())));
        let mut out = Vec::new();
        for name in names {
            match self.get_with(&name, scan.clone()).await {
                Ok(o) => out.push(o),
                Err(e) if e.kind == Kind::NotFound => {} // deleted meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Tears the resource down top-down and forgets it, with the default options. Idempotent.
    pub async fn delete(&self, name: &ResourceName) -> Result<Deleted> {
        self.delete_with(name, &DeleteOptions::default()).await
    }

    /// Tears the resource down top-down and forgets it, as `options` say. Idempotent.
    pub async fn delete_with(
        &self,
        name: &ResourceName,
        options: &DeleteOptions,
    ) -> Result<Deleted> {
        let _guard = self.locks.lock(name).await;
        let Some(mut record) = self.store.get(name)? else {
            return Ok(Deleted {
                name: name.clone(),
                deleted: false,
            });
        };
        let vols = recorded_vols(&record);
        self.teardown(&mut record, vols, false, Some(options))
            .await?;
        self.store.remove(name)?;
        Ok(Deleted {
            name: name.clone(),
            deleted: true,
        })
    }

    /// Tears `vols` down top-down through the record's stack (planning only, when `dry_run`)
    /// and returns the steps. Delete passes every volume the record knows; apply those the
    /// desired document dropped. A delete passes its `options`: the in-use guard (unless
    /// `force`) and the wait for a remaining replica run before anything is torn down.
    async fn teardown(
        &self,
        record: &mut ResourceRecord,
        mut vols: Vec<Vol>,
        dry_run: bool,
        delete: Option<&DeleteOptions>,
    ) -> Result<Vec<blockstor_proto::wire::PlannedStep>> {
        let layers = self.layers(&record.spec.layer_stack, &record.spec.pool, None)?;
        let mut cx = self.cx(record, None, dry_run);
        // Every layer's device, bottom-up, for the in-use guard.
        let mut devices: Vec<String> = Vec::new();
        for layer in &layers {
            layer.observe(&mut cx, &mut vols).await?;
            layer.prepare_teardown(&mut cx, &mut vols).await?;
            for top in vols.iter().filter_map(|v| v.top.clone()) {
                if !devices.contains(&top) {
                    devices.push(top);
                }
            }
        }
        if let Some(options) = delete.filter(|_| !dry_run) {
            if !options.force {
                let topmost: Vec<String> = vols.iter().filter_map(|v| v.top.clone()).collect();
                self.refuse_in_use(&cx, &devices, &topmost).await?;
            }
            if !options.remaining.is_empty() {
                self.leave_replica_set(&mut cx, options).await?;
            }
        }
        for layer in layers.iter().rev() {
            layer.teardown(&mut cx, &mut vols).await?;
        }
        Ok(std::mem::take(&mut cx.steps))
    }

    /// Where the DRBD layer writes its `.res` files.
    pub fn drbd_res_dir(&self) -> std::path::PathBuf {
        self.config.state_dir.join("drbd.d")
    }

    /// A record for a resource first applied here: LINSTOR's when LINSTOR's marks of it are on
    /// the node (its `.res`, its dm-crypt name), so the adopted chain keeps LINSTOR's names.
    fn new_record(&self, spec: StoredSpec) -> ResourceRecord {
        let vols: Vec<u32> = spec.volumes.iter().map(|v| v.number).collect();
        let linstor = crate::linstor::has_marks(
            self.host.as_ref(),
            &self.config.linstor_res_dir,
            &spec.name,
            &vols,
        );
        let mut record = ResourceRecord::new(spec);
        if linstor {
            record.origin = blockstor_proto::wire::Origin::Linstor;
        }
        record
    }

    fn cx<'a>(
        &'a self,
        record: &'a mut ResourceRecord,
        d: Option<&'a DesiredResource>,
        dry_run: bool,
    ) -> Cx<'a> {
        let rd = record.spec.name.clone();
        let props = record.spec.props.clone();
        Cx {
            step: StepCx {
                runner: self.runner.as_ref(),
                host: self.host.as_ref(),
                store: Some(&self.store),
                record,
                rd,
                dry_run,
                read_only: dry_run && d.is_none(),
                steps: Vec::new(),
            },
            desired: d,
            luks: d.and_then(|d| d.luks.as_ref()),
            props,
            drbd: None,
        }
    }

    /// The layer objects for a stack, bottom-up; the pool observed through `scan` when given
    /// (read-only walks over a list).
    fn layers(
        &self,
        stack: &LayerStack,
        pool: &blockstor_proto::StoragePoolName,
        scan: Option<Arc<PoolScan>>,
    ) -> Result<Vec<Box<dyn Layer>>> {
        let pool = self
            .config
            .pool(pool)
            .ok_or_else(|| unknown_pool(pool, &self.config))?;
        let mut out: Vec<Box<dyn Layer>> = Vec::new();
        for layer in stack.bottom_up() {
            match layer {
                L::Storage => out.push(Box::new(storage::Storage {
                    backend: backends::for_pool_with(pool, scan.clone()),
                    luks_above: stack.has(L::Luks),
                    drbd_above: stack.has(L::Drbd),
                })),
                L::Luks => out.push(Box::new(luks::Luks)),
                L::Drbd => out.push(Box::new(drbd::Drbd {
                    res_dir: self.drbd_res_dir(),
                    node: self.config.node_name.clone(),
                    linstor_res_dir: self.config.linstor_res_dir.clone(),
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
        let mut layers = self.layers(&d.layer_stack, &d.storage.pool, None)?;
        let mut dropped = Vec::new();
        if d.drbd.as_ref().is_some_and(|x| x.diskless) {
            // A diskless DRBD client: no backing volume and no LUKS on this node; a disk it
            // still has (diskful before) is detached and torn down first.
            dropped = self.drop_local_disk(record, dry_run).await?;
            layers.retain(|l| l.kind() == L::Drbd);
        }
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
        cx.steps = dropped;
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

    async fn observe_all(
        &self,
        record: &mut ResourceRecord,
        scan: Option<Arc<PoolScan>>,
    ) -> Result<Walk> {
        let mut layers = self.layers(&record.spec.layer_stack, &record.spec.pool, scan)?;
        if record.spec.drbd.as_ref().is_some_and(|x| x.diskless) {
            // A diskless client has nothing below DRBD here (as its apply walks it).
            layers.retain(|l| l.kind() == L::Drbd);
        }
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
            origin: record.origin,
        }
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

/// What DELETE tears down: every volume of the last spec and every volume the record holds
/// marks of (created before a crash cut the apply short, or dropped from a spec whose teardown
/// failed), so nothing the agent made outlives its record.
fn recorded_vols(record: &ResourceRecord) -> Vec<Vol> {
    let mut vols = initial_vols(record);
    for &number in record.volumes.keys() {
        if !vols.iter().any(|v| v.number == number) {
            vols.push(Vol {
                number,
                ..Default::default()
            });
        }
    }
    vols
}

/// The volumes the record holds that the desired document no longer lists. The provider always
/// sends the full volume list and plans a dropped volume as a visible replacement, so a volume
/// missing from the document is the user's plan saying to remove it: apply tears it down. Under
/// DRBD a volume cannot leave a running resource this way (its metadata and minor go with the
/// whole resource): refused, replace the resource.
fn dropped_volumes(record: &ResourceRecord, d: &DesiredResource) -> Result<Vec<Vol>> {
    let dropped: Vec<Vol> = recorded_vols(record)
        .into_iter()
        .filter(|v| !d.volumes.iter().any(|w| w.number == v.number))
        .collect();
    if let (Some(v), true) = (dropped.first(), record.spec.layer_stack.has(L::Drbd)) {
        return Err(Error::invalid(
            ErrorCode::InvalidVolumes,
            "volumes",
            format!(
                "volume {} of {} is not in the request; a volume cannot be dropped from a DRBD                  resource in place: replace the resource",
                v.number, d.name
            ),
        ));
    }
    Ok(dropped)
}

fn not_found(name: &ResourceName) -> Error {
    Error::new(
        Kind::NotFound,
        ErrorCode::NotFound,
        format!("resource {name} does not exist on this node"),
    )
}

pub(crate) fn unknown_pool(pool: &blockstor_proto::StoragePoolName, config: &Config) -> Error {
    let known: Vec<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
    Error::invalid(
        ErrorCode::UnknownPool,
        "storage.pool",
        format!(
            "storage pool {pool} is not configured on node {}; configured pools: {known:?}",
            config.node_name
        ),
    )
}

#[cfg(test)]
mod tests;
