//! The agent's embedded store (`redb`, in `state_dir`): one record per resource with the last
//! desired state *without secrets*, the generation, what this agent created, and a journal of
//! steps (intent → done). Also the per-resource locks.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use blockstor_proto::wire::{DesiredResource, DrbdPeer, Origin, VolumeSpec};
use blockstor_proto::{LayerStack, ResourceName, StoragePoolName};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const RESOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("resources");

/// Journal entries kept per resource; older ones are dropped.
const JOURNAL_KEEP: usize = 64;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Db(Box<redb::Error>),
    #[error("store: corrupt record: {0}")]
    Json(#[from] serde_json::Error),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(Box::new(e.into())) }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What the agent remembers about one resource. Holds no secret by construction: the passphrase
/// and DRBD shared secret have no field here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRecord {
    pub spec: StoredSpec,
    /// The generation of the last DesiredResource applied completely; 0 while none was.
    pub generation: u64,
    pub volumes: BTreeMap<u32, VolumeRecord>,
    pub journal: Vec<JournalEntry>,
    /// Who built the chain: LINSTOR's chains keep LINSTOR's dm-crypt names when adopted.
    #[serde(default)]
    pub origin: Origin,
}

/// A DesiredResource minus its secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSpec {
    pub name: ResourceName,
    pub layer_stack: LayerStack,
    pub volumes: Vec<VolumeSpec>,
    pub pool: StoragePoolName,
    pub props: BTreeMap<String, String>,
    pub drbd: Option<StoredDrbd>,
}

/// DRBD settings minus the shared secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDrbd {
    pub node_id: u32,
    pub port: u16,
    pub minors: Vec<u32>,
    pub peers: Vec<DrbdPeer>,
    pub protocol: String,
    pub address: String,
    /// This node is a diskless client: observed through DRBD alone (no backing volume).
    /// Absent in records written before diskless clients existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub diskless: bool,
}

impl StoredSpec {
    /// Drops every secret of `d`.
    pub fn from_desired(d: &DesiredResource) -> Self {
        StoredSpec {
            name: d.name.clone(),
            layer_stack: d.layer_stack.clone(),
            volumes: d.volumes.clone(),
            pool: d.storage.pool.clone(),
            // Validation refuses secret-looking props; never store one whatever the caller.
            props: d
                .props
                .iter()
                .filter(|(k, _)| !blockstor_proto::secret_rules::is_secret_prop(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            drbd: d.drbd.as_ref().map(|x| StoredDrbd {
                node_id: x.node_id,
                port: x.port,
                minors: x.minors.clone(),
                peers: x.peers.clone(),
                protocol: x.protocol.clone(),
                address: x.address.clone(),
                diskless: x.diskless,
            }),
        }
    }
}

/// What the agent knows about one backing volume beyond what the system shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// This agent created the backing volume (so it may delete it).
    pub created_by_agent: bool,
    /// A volume found existing that this agent took over: its LUKS passphrase was verified or
    /// an apply completed on it. Only created or adopted volumes are ever erased or removed,
    /// so a failed apply over someone else's device never leads to destroying it on delete.
    #[serde(default)]
    pub adopted: bool,
    /// Created by this agent and not yet LUKS-formatted: the one case where formatting a
    /// non-zero device is allowed, and where a header without any keyslot (a `luksFormat`
    /// killed midway) is formatted again. Set (fsynced) before the volume is created; cleared
    /// (fsynced) once a format succeeds or a passphrase is verified on its header.
    pub awaiting_luks_format: bool,
    /// DRBD metadata was created by this agent and the initial sync has not been started:
    /// the one case where the lowest node id forces itself primary.
    #[serde(default)]
    pub awaiting_initial_sync: bool,
    /// The backing volume was (or is being) grown under DRBD and `drbdadm resize` has not yet
    /// succeeded on this node. Set durably before the grow starts and cleared only after a
    /// successful resize, so a failed resize, a killed agent or a power cut between the two
    /// leaves DRBD to be resized on every later apply (the storage is then already at size,
    /// so nothing else would tell). Records written before this field load as `false`.
    #[serde(default)]
    pub pending_drbd_resize: bool,
    /// The loop device a loop-file volume was last attached to or found on. A hint only, so
    /// a lookup checks one device instead of scanning every loop device: it is trusted only
    /// after the kernel confirms that device backs this very file (it may be stale after a
    /// reboot or a manual `losetup -d`). Records written before it load as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_device: Option<String>,
}

/// The DRBD minors and port one resource holds on this node ([`Store::drbd_uses`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrbdUse {
    pub name: ResourceName,
    pub minors: Vec<u32>,
    pub port: u16,
}

/// One step of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub seq: u64,
    pub layer: String,
    /// The argv of the step (holds no secret: those go on stdin).
    pub action: String,
    pub state: StepState,
}

/// Where a journalled step got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Intent,
    Done,
    /// Found as `Intent` after a restart: the process died mid-step. The next apply
    /// re-observes the system and converges.
    Interrupted,
}

impl ResourceRecord {
    /// A fresh record for a first apply.
    pub fn new(spec: StoredSpec) -> Self {
        ResourceRecord {
            spec,
            generation: 0,
            volumes: BTreeMap::new(),
            journal: Vec::new(),
            origin: Origin::Blockstor,
        }
    }

    /// Appends an `Intent` entry and returns its sequence number.
    pub fn intent(&mut self, layer: &str, action: String) -> u64 {
        let seq = self.journal.last().map_or(1, |e| e.seq + 1);
        self.journal.push(JournalEntry {
            seq,
            layer: layer.to_owned(),
            action,
            state: StepState::Intent,
        });
        if self.journal.len() > JOURNAL_KEEP {
            let drop = self.journal.len() - JOURNAL_KEEP;
            self.journal.drain(..drop);
        }
        seq
    }

    /// Marks entry `seq` done.
    pub fn done(&mut self, seq: u64) {
        if let Some(e) = self.journal.iter_mut().find(|e| e.seq == seq) {
            e.state = StepState::Done;
        }
    }

    /// Whether teardown may erase and remove volume `number`.
    pub fn owns(&self, number: u32) -> bool {
        self.volumes
            .get(&number)
            .is_some_and(|v| v.created_by_agent || v.adopted)
    }

    /// The mutable per-volume record, created on first use.
    pub fn volume(&mut self, number: u32) -> &mut VolumeRecord {
        self.volumes.entry(number).or_default()
    }
}

/// The redb database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

impl Store {
    /// Opens (or creates) `state_dir/agent.redb`; the directory is made 0700 and the file 0600
    /// whatever the umask (see [`private_state_dir`]).
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let file = private_state_dir(state_dir).map_err(redb::StorageError::Io)?;
        let db = Database::create(file)?;
        // Create the table once; later opens skip the (fsynced) write.
        let exists = db.begin_read()?.open_table(RESOURCES).is_ok();
        if !exists {
            let tx = db.begin_write()?;
            tx.open_table(RESOURCES)?;
            tx.commit()?;
        }
        Ok(Store { db: Arc::new(db) })
    }

    /// Like [`Store::open`], but waits while another agent process holds the database (two
    /// `stdio` requests over SSH for different resources at once); gives up after `timeout`.
    pub fn open_waiting(
        state_dir: &Path,
        timeout: std::time::Duration,
    ) -> Result<Store, StoreError> {
        let start = std::time::Instant::now();
        loop {
            match Store::open(state_dir) {
                Err(StoreError::Db(e))
                    if matches!(*e, redb::Error::DatabaseAlreadyOpen)
                        && start.elapsed() < timeout =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    pub fn get(&self, name: &ResourceName) -> Result<Option<ResourceRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(RESOURCES)?;
        let value = table.get(name.as_str())?;
        Ok(match value {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    /// Writes the record durably (the commit is fsynced before this returns).
    pub fn put(&self, record: &ResourceRecord) -> Result<(), StoreError> {
        self.write(record, redb::Durability::Immediate)
    }

    /// Writes the record without waiting for the disk; the next durable write carries it, and
    /// a kill before that loses it. For what decides nothing (journal entries, the desired
    /// spec before any step that could destroy data): a lost entry only means a step cut short
    /// goes unreported, and the next apply re-observes the system and converges anyway.
    /// Marks that allow formatting or removing a volume are written with [`Store::put`].
    pub fn put_lazy(&self, record: &ResourceRecord) -> Result<(), StoreError> {
        self.write(record, redb::Durability::None)
    }

    fn write(
        &self,
        record: &ResourceRecord,
        durability: redb::Durability,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record)?;
        let mut tx = self.db.begin_write()?;
        tx.set_durability(durability);
        {
            let mut table = tx.open_table(RESOURCES)?;
            table.insert(record.spec.name.as_str(), bytes.as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn remove(&self, name: &ResourceName) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(RESOURCES)?;
            table.remove(name.as_str())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every record, ordered by name.
    pub fn list(&self) -> Result<Vec<ResourceRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(RESOURCES)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (_, v) = item?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    /// The DRBD minors and port of every resource that has them. Reads only those fields of
    /// each record (the journal and the rest are skipped, not built): `GET /v1/node` and every
    /// DRBD apply's collision check ask this, over every record.
    pub fn drbd_uses(&self) -> Result<Vec<DrbdUse>, StoreError> {
        #[derive(Deserialize)]
        struct Partial {
            spec: PartialSpec,
        }
        #[derive(Deserialize)]
        struct PartialSpec {
            name: ResourceName,
            drbd: Option<PartialDrbd>,
        }
        #[derive(Deserialize)]
        struct PartialDrbd {
            port: u16,
            minors: Vec<u32>,
        }
        let tx = self.db.begin_read()?;
        let table = tx.open_table(RESOURCES)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (_, v) = item?;
            let p: Partial = serde_json::from_slice(v.value())?;
            if let Some(d) = p.spec.drbd {
                out.push(DrbdUse {
                    name: p.spec.name,
                    minors: d.minors,
                    port: d.port,
                });
            }
        }
        Ok(out)
    }

    /// After a restart: every step left at `Intent` was cut short. Marks them `Interrupted` and
    /// returns `(resource, entry)` pairs so the caller can log them; the next apply of each
    /// resource re-observes the system and finishes the work.
    pub fn reconcile(&self) -> Result<Vec<(ResourceName, JournalEntry)>, StoreError> {
        let mut found = Vec::new();
        for mut record in self.list()? {
            let mut changed = false;
            for e in record
                .journal
                .iter_mut()
                .filter(|e| e.state == StepState::Intent)
            {
                e.state = StepState::Interrupted;
                found.push((record.spec.name.clone(), e.clone()));
                changed = true;
            }
            if changed {
                self.put(&record)?;
            }
        }
        Ok(found)
    }
}

/// Creates `state_dir` (0700) and an empty `agent.redb` in it (0600) unless they exist, and
/// narrows both to those modes if they do: the store names every volume and the directory
/// holds the DRBD `.res` files with their shared secrets, whatever umask the agent started
/// with (0644 and 0755 outside the shipped unit). Returns the database's path.
fn private_state_dir(state_dir: &Path) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)?;
    std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700))?;
    let file = state_dir.join("agent.redb");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&file)?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// One async lock per resource name: requests for one RD serialize, distinct RDs run in parallel.
#[derive(Default, Clone)]
pub struct Locks {
    map: Arc<Mutex<HashMap<ResourceName, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Locks {
    /// Waits for and holds the lock of `name` until the guard drops.
    pub async fn lock(&self, name: &ResourceName) -> tokio::sync::OwnedMutexGuard<()> {
        let m = self
            .map
            .lock()
            .expect("lock map poisoned")
            .entry(name.clone())
            .or_default()
            .clone();
        m.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> StoredSpec {
        StoredSpec {
            name: name.parse().unwrap(),
            layer_stack: LayerStack::parse(&["STORAGE"]).unwrap(),
            volumes: vec![],
            pool: "files".parse().unwrap(),
            props: BTreeMap::new(),
            drbd: None,
        }
    }

    #[test]
    fn records_survive_reopen_and_interrupted_steps_are_found() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut r = ResourceRecord::new(spec("db"));
            let s1 = r.intent("STORAGE", "losetup -f --show /x".into());
            r.done(s1);
            r.intent("LUKS", "cryptsetup luksFormat".into());
            store.put(&r).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let found = store.reconcile().unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.layer, "LUKS");
        let r = store.get(&"db".parse().unwrap()).unwrap().unwrap();
        assert_eq!(r.journal[1].state, StepState::Interrupted);
        assert!(store.reconcile().unwrap().is_empty());
        store.remove(&"db".parse().unwrap()).unwrap();
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn a_record_written_before_pending_drbd_resize_existed_still_loads() {
        let old = r#"{"created_by_agent":true,"adopted":true,"awaiting_luks_format":false,
                      "awaiting_initial_sync":false}"#;
        let v: VolumeRecord = serde_json::from_str(old).unwrap();
        assert!(v.created_by_agent && !v.pending_drbd_resize);
        assert_eq!(
            v.loop_device, None,
            "nor before the loop device hint existed"
        );
    }

    #[test]
    fn drbd_uses_reads_minors_and_ports_of_every_drbd_record_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut with = spec("db");
        with.drbd = Some(StoredDrbd {
            node_id: 0,
            port: 7001,
            minors: vec![1001, 1002],
            peers: vec![],
            protocol: "C".into(),
            address: "10.0.0.1".into(),
            diskless: false,
        });
        let mut r = ResourceRecord::new(with);
        r.intent("DRBD", "drbdadm adjust db".into());
        r.volume(0).loop_device = Some("/dev/loop3".into());
        store.put(&r).unwrap();
        store.put(&ResourceRecord::new(spec("plain"))).unwrap();
        assert_eq!(
            store.drbd_uses().unwrap(),
            [DrbdUse {
                name: "db".parse().unwrap(),
                minors: vec![1001, 1002],
                port: 7001,
            }]
        );
        assert_eq!(store.get(&"db".parse().unwrap()).unwrap().unwrap(), r);
    }

    #[test]
    fn the_store_and_its_directory_are_private_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("var/lib/blockstor");
        // SAFETY: umask(2) only changes this process's file-creation mask; restored below.
        let old = unsafe { libc::umask(0o022) };
        let opened = Store::open(&state);
        unsafe { libc::umask(old) };
        drop(opened.unwrap());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700, "state directory");
        assert_eq!(mode(&state.join("agent.redb")), 0o600, "store file");
        // An older agent's store, left readable, is narrowed on the next open.
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
        let db = state.join("agent.redb");
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(Store::open(&state).unwrap());
        assert_eq!((mode(&state), mode(&db)), (0o700, 0o600));
    }

    #[test]
    fn a_second_process_waits_for_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let held = std::time::Duration::from_millis(300);
        let t = std::thread::spawn(move || {
            std::thread::sleep(held);
            drop(first);
        });
        let start = std::time::Instant::now();
        Store::open_waiting(dir.path(), std::time::Duration::from_secs(10)).unwrap();
        assert!(start.elapsed() >= held);
        t.join().unwrap();
        let _keep = Store::open(dir.path()).unwrap();
        let err = Store::open_waiting(dir.path(), std::time::Duration::from_millis(200));
        assert!(err.is_err(), "gives up after the timeout");
    }

    #[tokio::test]
    async fn one_resource_serializes_distinct_resources_do_not() {
        let locks = Locks::default();
        let a: ResourceName = "aa".parse().unwrap();
        let b: ResourceName = "bb".parse().unwrap();
        let _g = locks.lock(&a).await;
        let other =
            tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock(&b)).await;
        assert!(other.is_ok(), "distinct resources run in parallel");
        let same = tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock(&a)).await;
        assert!(same.is_err(), "one resource serializes");
    }
}
