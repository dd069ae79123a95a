//! The database handle, write batches and snapshots.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use roaring::RoaringBitmap;

use crate::base::{self, Base, Direction, WEdge};
use crate::catalog::{Catalog, NodeTypeDef, RelationDef, Value, FORMAT_VERSION};
use crate::delta::{Delta, EdgeCtx, NodeDelta};
use crate::error::{CorruptionError, IoContext, Result, StorageError};
use crate::extsort::{EdgeSorter, DEFAULT_CHUNK_EDGES};
use crate::keys;
use crate::segment::sync_dir;

/// Name of the sled directory inside a database directory.
pub(crate) const CATALOG_DIR: &str = "catalog";
const LOCK_FILE: &str = "LOCK";

/// What readers see: one catalog, one base, one delta, all immutable.
#[derive(Clone)]
pub(crate) struct State {
    pub catalog: Arc<Catalog>,
    pub base: Arc<Base>,
    pub delta: Arc<Delta>,
}

/// An open quiver database: a directory holding sled (catalog, key maps,
/// delta) and segment files (base adjacency, node dictionaries, buckets).
///
/// `Database` is `Send + Sync`: any number of threads read through
/// [`Database::snapshot`] while one at a time writes; a commit holds the
/// reader-visible lock only to swap in the new in-memory state.
pub struct Database {
    dir: PathBuf,
    pub(crate) sled: sled::Db,
    pub(crate) state: RwLock<Arc<State>>,
    /// Serialises writers; held across a writer's I/O, never by readers.
    pub(crate) writer: Mutex<()>,
    _lock: File,
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .at(&path)?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(StorageError::Io { path, error: e }),
    }
}

/// Opens sled, turning a panic inside it (which some damaged files cause)
/// into a corruption error rather than taking the host process down.
///
/// The caller already holds quiver's own lock, so sled's lock can only be
/// busy because a `sled::Db` this process just dropped still has background
/// threads finishing their writes (sled's own tests block on it for the same
/// reason); that is waited out for up to ten seconds.
fn open_sled(dir: &Path) -> Result<sled::Db> {
    let path = dir.join(CATALOG_DIR);
    remove_unfinished_snapshots(&path)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let opened = loop {
        // sled holds only the catalog and the delta: a small cache bounds its memory (default 1 GiB).
        let cfg = sled::Config::new().path(&path).cache_capacity(64 << 20);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || cfg.open())) {
            Ok(Err(sled::Error::Io(e)))
                if e.to_string().starts_with("could not acquire lock") && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => break other,
        }
    };
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(sled::Error::Corruption { .. })) => {
            Err(CorruptionError::new(&path, "sled reports a damaged log").into())
        }
        Ok(Err(sled::Error::Io(e))) => Err(StorageError::Io { path, error: e }),
        Ok(Err(e)) => Err(CorruptionError::new(&path, e.to_string()).into()),
        Err(_) => Err(CorruptionError::new(&path, "sled failed while reading its files").into()),
    }
}

/// sled writes a snapshot of its page table at every open to
/// `snap.<lsn>.generating` and renames it when it is whole. sled 0.34 takes
/// any `snap.*` file for a snapshot, so one left unfinished (the disk filled,
/// or the process died, while it was written) would make every later open
/// fail as "damaged". Such a file is never needed: the previous snapshot is
/// removed only after the rename, and the log holds everything since.
fn remove_unfinished_snapshots(catalog: &Path) -> Result<()> {
    let entries = match fs::read_dir(catalog) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(StorageError::Io {
                path: catalog.to_path_buf(),
                error: e,
            })
        }
    };
    for entry in entries {
        let path = entry.at(catalog)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            fs::remove_file(&path).at(&path)?;
        }
    }
    Ok(())
}

impl Database {
    /// Creates a new, empty database in `path`, which must not exist or be empty.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let dir = path.as_ref();
        // Anything but a lock file means the directory is taken; a lock file
        // alone is another process creating a database here (it gets
        // `Locked`), or one that gave up.
        let taken = |dir: &Path| -> Result<bool> {
            Ok(dir.exists()
                && fs::read_dir(dir)
                    .at(dir)?
                    .any(|e| e.is_ok_and(|e| e.file_name() != LOCK_FILE)))
        };
        if taken(dir)? {
            return Err(StorageError::AlreadyExists(dir.to_path_buf()));
        }
        fs::create_dir_all(dir).at(dir)?;
        let lock = lock_dir(dir)?;
        if taken(dir)? {
            return Err(StorageError::AlreadyExists(dir.to_path_buf()));
        }
        let db = open_sled(dir)?;
        let mut b = sled::Batch::default();
        b.insert(keys::FORMAT, &keys::u32_value(FORMAT_VERSION));
        b.insert(keys::CATALOG, Catalog::default().encode());
        db.apply_batch(b)?;
        db.flush()?;
        sync_dir(dir)?;
        Self::finish_open(dir, db, lock)
    }

    /// Opens an existing database.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let dir = path.as_ref();
        if !dir.join(CATALOG_DIR).is_dir() {
            return Err(StorageError::NotADatabase(dir.to_path_buf()));
        }
        let lock = lock_dir(dir)?;
        let db = open_sled(dir)?;
        Self::finish_open(dir, db, lock)
    }

    /// Opens `path` if it is a database, or creates one there.
    pub fn open_or_create(path: impl AsRef<Path>) -> Result<Self> {
        if path.as_ref().join(CATALOG_DIR).is_dir() {
            Self::open(path)
        } else {
            Self::create(path)
        }
    }

    fn finish_open(dir: &Path, sled: sled::Db, lock: File) -> Result<Self> {
        let sled_path = dir.join(CATALOG_DIR);
        let corrupt = |m: &str| StorageError::from(CorruptionError::new(&sled_path, m));
        let format = sled
            .get(keys::FORMAT)?
            .ok_or_else(|| corrupt("no format version record"))?;
        let format = keys::read_u32(&format).ok_or_else(|| corrupt("bad format version record"))?;
        if format != FORMAT_VERSION {
            return Err(StorageError::UnsupportedFormat {
                found: format,
                supported: FORMAT_VERSION,
            });
        }
        let catalog = sled
            .get(keys::CATALOG)?
            .ok_or_else(|| corrupt("no catalog record"))?;
        let catalog = Catalog::decode(&catalog, &sled_path)?;
        let base = Base::open(dir, &catalog)?;
        let delta = replay_delta(&sled, &catalog, &base, &sled_path)?;
        remove_unreferenced(dir, &catalog)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            sled,
            state: RwLock::new(Arc::new(State {
                catalog: Arc::new(catalog),
                base: Arc::new(base),
                delta: Arc::new(delta),
            })),
            writer: Mutex::new(()),
            _lock: lock,
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A consistent, immutable view of the current data. Cheap: two atomic
    /// operations; later commits do not change it.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            state: self.state.read().clone(),
        }
    }

    /// The current catalog (schema, counts, segments).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.state.read().catalog.clone()
    }

    /// Makes every commit so far durable: when it returns, they survive a
    /// crash or a power cut (sled's log is written and fsynced). Imports,
    /// compactions, bucket builds and model saves flush on their own.
    pub fn flush(&self) -> Result<()> {
        self.sled.flush()?;
        Ok(())
    }

    /// Adds a node type and returns its id.
    pub fn create_node_type(&self, name: &str) -> Result<u32> {
        check_name("type", name, MAX_NAME)?;
        let _w = self.writer.lock();
        let mut catalog = (*self.catalog()).clone();
        if catalog.node_type(name).is_ok() {
            return Err(StorageError::DuplicateType(name.to_string()));
        }
        catalog.node_types.push(NodeTypeDef {
            name: name.to_string(),
            count: 0,
        });
        self.commit_catalog(catalog)?;
        Ok(self.catalog().node_types.len() as u32 - 1)
    }

    /// Adds a relation type from node type `src` to node type `dst` (by name).
    pub fn create_relation_type(&self, name: &str, src: &str, dst: &str) -> Result<u32> {
        check_name("relation", name, usize::MAX)?;
        let _w = self.writer.lock();
        let mut catalog = (*self.catalog()).clone();
        if catalog.relation(name).is_ok() {
            return Err(StorageError::DuplicateType(name.to_string()));
        }
        let (src, dst) = (catalog.node_type(src)?, catalog.node_type(dst)?);
        catalog.relations.push(RelationDef {
            name: name.to_string(),
            src,
            dst,
        });
        self.commit_catalog(catalog)?;
        Ok(self.catalog().relations.len() as u32 - 1)
    }

    /// Writes a catalog on its own; the caller holds the writer lock.
    pub(crate) fn commit_catalog(&self, catalog: Catalog) -> Result<()> {
        self.sled.insert(keys::CATALOG, catalog.encode())?;
        let mut st = self.state.write();
        Arc::make_mut(&mut st).catalog = Arc::new(catalog);
        Ok(())
    }

    /// Starts an empty write batch.
    pub fn batch(&self) -> WriteBatch {
        WriteBatch::default()
    }

    /// Applies a batch atomically: readers see all of it or none of it, and
    /// after a crash it is wholly there or wholly absent. When `commit`
    /// returns, the batch is in sled's log buffers, not necessarily on disk:
    /// it becomes durable at sled's next background flush (every 500 ms) or
    /// when [`Database::flush`] returns, whichever is first; a crash before
    /// then loses whole batches, newest first. Nothing is applied if any
    /// operation is invalid.
    pub fn commit(&self, batch: WriteBatch) -> Result<CommitInfo> {
        let _w = self.writer.lock();
        let snap = self.snapshot();
        let mut catalog = (*snap.state.catalog).clone();
        let mut new_nodes: Vec<HashMap<String, u32>> = vec![HashMap::new(); catalog.node_types.len()];
        let mut new_keys: Vec<(u32, u32, String)> = Vec::new();
        // Final state of each touched edge: Some(weight) present, None absent.
        let mut edges: HashMap<(u32, u32, u32), Option<f32>> = HashMap::new();
        let mut order: Vec<(u32, u32, u32)> = Vec::new();
        let mut props: Vec<(u32, u32, String, Value)> = Vec::new();
        // Nodes this batch deletes (true) or brings back (false).
        let mut deaths: HashMap<(u32, u32), bool> = HashMap::new();
        let mut resolve = |catalog: &mut Catalog,
                           deaths: &mut HashMap<(u32, u32), bool>,
                           ty: u32,
                           node: &NodeRef,
                           create: bool|
         -> Result<u32> {
            let def = catalog
                .node_types
                .get(ty as usize)
                .ok_or_else(|| StorageError::UnknownNodeType(format!("#{ty}")))?;
            let dead = |deaths: &HashMap<(u32, u32), bool>, id: u32| {
                deaths
                    .get(&(ty, id))
                    .copied()
                    .unwrap_or_else(|| snap.is_deleted(ty, id))
            };
            let not_found = |key: String| StorageError::NodeNotFound {
                node_type: def.name.clone(),
                key,
            };
            match node {
                NodeRef::Id(id) if *id < def.count && dead(deaths, *id) => {
                    Err(not_found(snap.node_key(ty, *id).unwrap_or("?").to_string()))
                }
                NodeRef::Id(id) if *id < def.count => Ok(*id),
                NodeRef::Id(id) => Err(StorageError::InvalidId {
                    node_type: def.name.clone(),
                    id: *id,
                    count: def.count,
                }),
                NodeRef::Key(k) => {
                    if let Some(id) = snap
                        .any_node_id(ty, k)
                        .or_else(|| new_nodes[ty as usize].get(k.as_str()).copied())
                    {
                        if !dead(deaths, id) {
                            return Ok(id);
                        }
                        if !create {
                            return Err(not_found(k.clone()));
                        }
                        deaths.insert((ty, id), false);
                        return Ok(id);
                    }
                    if !create {
                        return Err(not_found(k.clone()));
                    }
                    check_key(k)?;
                    let id = def.count;
                    catalog.node_types[ty as usize].count += 1;
                    new_nodes[ty as usize].insert(k.clone(), id);
                    new_keys.push((ty, id, k.clone()));
                    Ok(id)
                }
            }
        };
        for op in batch.ops {
            match op {
                Op::Node { ty, key } => {
                    resolve(&mut catalog, &mut deaths, ty, &NodeRef::Key(key), true)?;
                }
                Op::Edge {
                    rel,
                    src,
                    dst,
                    weight,
                } => {
                    let r = catalog
                        .relations
                        .get(rel as usize)
                        .cloned()
                        .ok_or_else(|| StorageError::UnknownRelation(format!("#{rel}")))?;
                    let create = weight.is_some();
                    let ends = resolve(&mut catalog, &mut deaths, r.src, &src, create)
                        .and_then(|s| Ok((s, resolve(&mut catalog, &mut deaths, r.dst, &dst, create)?)));
                    let (s, d) = match ends {
                        // Deleting an edge whose endpoint does not exist changes nothing.
                        Err(StorageError::NodeNotFound { .. }) if !create => continue,
                        other => other?,
                    };
                    if let Some(w) = weight {
                        check_weight(w)?;
                    }
                    if edges.insert((rel, s, d), weight).is_none() {
                        order.push((rel, s, d));
                    }
                }
                Op::Property {
                    ty,
                    node,
                    name,
                    value,
                } => {
                    let id = resolve(&mut catalog, &mut deaths, ty, &node, false)?;
                    if let Value::Float(f) = value {
                        if !f.is_finite() {
                            return Err(StorageError::InvalidInput(format!(
                                "property `{name}` is not finite"
                            )));
                        }
                    }
                    props.push((ty, id, name, value));
                }
                Op::DeleteNode { ty, node } => {
                    let id = match resolve(&mut catalog, &mut deaths, ty, &node, false) {
                        Err(StorageError::NodeNotFound { .. }) => continue,
                        other => other?,
                    };
                    // Its edges go with it: those stored and those this batch added.
                    let touches = |rel: u32, s: u32, d: u32| {
                        let r = &catalog.relations[rel as usize];
                        (r.src == ty && s == id) || (r.dst == ty && d == id)
                    };
                    for (&(rel, s, d), state) in edges.iter_mut() {
                        if touches(rel, s, d) {
                            *state = None;
                        }
                    }
                    for dir in [Direction::Out, Direction::In] {
                        for (rel, n) in snap.all_neighbors(ty, id, dir) {
                            let key = if dir == Direction::Out {
                                (rel, id, n)
                            } else {
                                (rel, n, id)
                            };
                            if edges.insert(key, None).is_none() {
                                order.push(key);
                            }
                        }
                    }
                    props.retain(|p| (p.0, p.1) != (ty, id));
                    deaths.insert((ty, id), true);
                }
            }
        }
        let mut b = sled::Batch::default();
        for (ty, id, key) in &new_keys {
            b.insert(keys::node_id(*ty, *id), key.as_bytes());
        }
        let mut changes = Vec::new();
        for key @ (rel, src, dst) in order {
            let state = edges[&key];
            let ctx = snap.edge_ctx(&catalog, rel, src, dst);
            // Only edges whose presence or weight changes count as changes.
            if snap.edge_weight_in(&catalog, rel, src, dst) == state {
                continue;
            }
            let k = keys::edge(rel, src, dst);
            match (ctx.base, state) {
                (Some(bw), Some(w)) if bw == w => b.remove(k),
                (None, None) => b.remove(k),
                _ => b.insert(k, keys::edge_value(state)),
            }
            changes.push((ctx, state));
        }
        for (ty, id, name, value) in &props {
            b.insert(keys::property(*ty, *id, name), value.encode());
        }
        for (&(ty, id), &dead) in &deaths {
            if dead {
                b.insert(keys::deleted(ty, id), &[][..]);
                for k in self.sled.scan_prefix(keys::property_prefix(ty, id)).keys() {
                    b.remove(k?);
                }
            } else {
                b.remove(keys::deleted(ty, id));
            }
        }
        if !changes.is_empty() {
            catalog.edge_version += 1;
        }
        b.insert(keys::CATALOG, catalog.encode());
        self.sled.apply_batch(b)?;
        let info = CommitInfo {
            nodes_created: new_keys.len() as u64 + deaths.values().filter(|d| !**d).count() as u64,
            nodes_deleted: deaths.values().filter(|d| **d).count() as u64,
            edges_changed: changes.len() as u64,
        };
        let mut st = self.state.write();
        let st = Arc::make_mut(&mut st);
        let delta = Arc::make_mut(&mut st.delta);
        delta
            .nodes
            .resize_with(catalog.node_types.len(), NodeDelta::default);
        for (ty, _, key) in new_keys {
            let nd = &mut delta.nodes[ty as usize];
            let key: Box<str> = key.into();
            nd.by_key
                .insert(key.clone(), catalog.base_count(ty) + nd.keys.len() as u32);
            nd.keys.push(key);
        }
        for (ctx, state) in changes {
            delta.set_edge(ctx, state);
        }
        delta
            .deleted
            .resize_with(catalog.node_types.len(), RoaringBitmap::new);
        for ((ty, id), dead) in deaths {
            if dead {
                delta.deleted[ty as usize].insert(id);
            } else {
                delta.deleted[ty as usize].remove(id);
            }
        }
        st.catalog = Arc::new(catalog);
        Ok(info)
    }

    /// A node property, read from sled.
    pub fn property(&self, ty: u32, id: u32, name: &str) -> Result<Option<Value>> {
        match self.sled.get(keys::property(ty, id, name))? {
            Some(v) => Ok(Some(Value::decode(&v, &self.dir.join(CATALOG_DIR))?)),
            None => Ok(None),
        }
    }

    /// All properties of a node, by name.
    pub fn properties(&self, ty: u32, id: u32) -> Result<Vec<(String, Value)>> {
        let prefix = keys::property_prefix(ty, id);
        let path = self.dir.join(CATALOG_DIR);
        let mut out = Vec::new();
        for kv in self.sled.scan_prefix(&prefix) {
            let (k, v) = kv?;
            let name = std::str::from_utf8(&k[prefix.len()..])
                .map_err(|_| CorruptionError::new(&path, "property name is not UTF-8"))?;
            out.push((name.to_string(), Value::decode(&v, &path)?));
        }
        Ok(out)
    }

    /// Folds the delta into a new base generation (a compaction).
    pub fn compact(&self) -> Result<()> {
        let _w = self.writer.lock();
        let snap = self.snapshot();
        let delta = !snap.state.delta.is_empty();
        if !delta && snap.catalog().generation > 0 {
            return Ok(());
        }
        let edges = self.sorter_with(&snap, DEFAULT_CHUNK_EDGES)?.finish()?;
        self.rebuild_base(&snap, (*snap.state.catalog).clone(), &[], &edges, delta)
    }

    /// An edge sorter that already holds every edge of `snap`, so that edges
    /// pushed later override them.
    pub(crate) fn sorter_with(&self, snap: &Snapshot, chunk_edges: usize) -> Result<EdgeSorter> {
        let mut sorter = EdgeSorter::new(&self.dir, chunk_edges);
        for e in snap.edges() {
            sorter.push(e)?;
        }
        Ok(sorter)
    }

    /// Writes a new base from the keys of `snap` plus `new_keys` (per type,
    /// continuing the ids of `catalog`, which already counts them) and `edges`
    /// (all of them, sorted), then commits it and clears the delta in one sled
    /// batch; `changed` says whether the edges differ from `snap`'s. The caller holds the
    /// writer lock.
    pub(crate) fn rebuild_base(
        &self,
        snap: &Snapshot,
        mut catalog: Catalog,
        new_keys: &[Vec<String>],
        edges: &[WEdge],
        changed: bool,
    ) -> Result<()> {
        let types = catalog.node_types.len();
        let mut keys_by_type: Vec<Vec<&str>> = Vec::with_capacity(types);
        for t in 0..types as u32 {
            let old = snap.node_count(t);
            let mut ks: Vec<&str> = (0..old).filter_map(|id| snap.node_key(t, id)).collect();
            if ks.len() != old as usize {
                return Err(CorruptionError::new(
                    self.dir.join(CATALOG_DIR),
                    format!("type {t} has ids without keys"),
                )
                .into());
            }
            ks.extend(new_keys.get(t as usize).into_iter().flatten().map(String::as_str));
            keys_by_type.push(ks);
        }
        let gen = catalog.generation + 1;
        let refs = base::write_base(&self.dir, gen, &catalog, &keys_by_type, edges)?;
        let old_files: Vec<String> = catalog.base.iter().map(|r| r.file.clone()).collect();
        catalog.generation = gen;
        catalog.base = refs.to_vec();
        catalog.base_counts = keys_by_type.iter().map(|k| k.len() as u32).collect();
        if changed {
            catalog.edge_version += 1;
        }
        let base = Base::open(&self.dir, &catalog)?;
        let mut b = sled::Batch::default();
        for prefix in [keys::NODE_ID, keys::EDGE] {
            for k in self.sled.scan_prefix([prefix]).keys() {
                b.remove(k?);
            }
        }
        b.insert(keys::CATALOG, catalog.encode());
        self.sled.apply_batch(b)?;
        self.sled.flush()?;
        *self.state.write() = Arc::new(State {
            catalog: Arc::new(catalog),
            base: Arc::new(base),
            delta: Arc::new(Delta {
                deleted: snap.state.delta.deleted.clone(),
                ..Default::default()
            }),
        });
        for f in old_files {
            // Readers may still map the old files; unlinking keeps their maps valid.
            let _ = fs::remove_file(self.dir.join(f));
        }
        Ok(())
    }
}

/// Longest node type or model name, in bytes: such names become file names
/// (export, loss curves), and escaped (three bytes for one) they still fit a
/// file system's 255. Relation names never do and have no limit.
pub const MAX_NAME: usize = 80;

/// Checks a type, relation or model name (`what` says which, for the message)
/// of at most `max_len` bytes.
pub(crate) fn check_name(what: &str, name: &str, max_len: usize) -> Result<()> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(StorageError::InvalidInput(format!(
            "{what} name {name:?} is empty or has control characters"
        )));
    }
    if name.len() > max_len {
        return Err(StorageError::InvalidInput(format!(
            "{what} name of {} bytes is longer than {max_len}",
            name.len()
        )));
    }
    Ok(())
}

pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StorageError::InvalidInput("empty node key".into()));
    }
    Ok(())
}

pub(crate) fn check_weight(w: f32) -> Result<()> {
    if !w.is_finite() {
        return Err(StorageError::InvalidInput(format!(
            "edge weight {w} is not finite"
        )));
    }
    Ok(())
}

/// Rebuilds the in-memory delta from sled's `i` and `e` records.
fn replay_delta(sled: &sled::Db, catalog: &Catalog, base: &Base, path: &Path) -> Result<Delta> {
    let corrupt = |m: String| StorageError::from(CorruptionError::new(path, m));
    let mut delta = Delta {
        nodes: vec![NodeDelta::default(); catalog.node_types.len()],
        ..Default::default()
    };
    for kv in sled.scan_prefix([keys::NODE_ID]) {
        let (k, v) = kv?;
        let (ty, id) = keys::parse_node_id(&k).ok_or_else(|| corrupt("bad node record key".into()))?;
        let nd = delta
            .nodes
            .get_mut(ty as usize)
            .ok_or_else(|| corrupt(format!("node of unknown type {ty}")))?;
        let key =
            std::str::from_utf8(&v).map_err(|_| corrupt(format!("node {ty}/{id}: key is not UTF-8")))?;
        let expected = base.count(ty) + nd.keys.len() as u32;
        if id != expected || id >= catalog.node_types[ty as usize].count || key.is_empty() {
            return Err(corrupt(format!("node record {ty}/{id} out of sequence")));
        }
        if nd.by_key.insert(key.into(), id).is_some() || base.lookup(ty, key).is_some() {
            return Err(corrupt(format!("node key `{key}` of type {ty} appears twice")));
        }
        nd.keys.push(key.into());
    }
    delta.deleted = vec![RoaringBitmap::new(); catalog.node_types.len()];
    for k in sled.scan_prefix([keys::DELETED]).keys() {
        let (ty, id) =
            keys::parse_node_id(&k?).ok_or_else(|| corrupt("bad deleted-node record key".into()))?;
        match catalog.node_types.get(ty as usize) {
            Some(t) if id < t.count => delta.deleted[ty as usize].insert(id),
            _ => return Err(corrupt(format!("deleted node {ty}/{id} does not exist"))),
        };
    }
    for (t, nd) in delta.nodes.iter().enumerate() {
        if base.count(t as u32) + nd.keys.len() as u32 != catalog.node_types[t].count {
            return Err(corrupt(format!(
                "type {t}: node count does not match its records"
            )));
        }
    }
    for kv in sled.scan_prefix([keys::EDGE]) {
        let (k, v) = kv?;
        let (rel, src, dst) = keys::parse_edge(&k).ok_or_else(|| corrupt("bad edge record key".into()))?;
        let state = keys::parse_edge_value(&v).ok_or_else(|| corrupt("bad edge record value".into()))?;
        let r = catalog
            .relations
            .get(rel as usize)
            .ok_or_else(|| corrupt(format!("edge of unknown relation {rel}")))?;
        if src >= catalog.node_types[r.src as usize].count || dst >= catalog.node_types[r.dst as usize].count
        {
            return Err(corrupt(format!(
                "edge ({rel}, {src}, {dst}) refers to a missing node"
            )));
        }
        let (nbrs, ws) = base.neighbors(r.src, Direction::Out, src, rel);
        let base_w = nbrs
            .binary_search(&dst)
            .ok()
            .map(|i| ws.get(i).copied().unwrap_or(1.0));
        let ctx = EdgeCtx {
            rel,
            src_type: r.src,
            dst_type: r.dst,
            src,
            dst,
            base: base_w,
        };
        delta.set_edge(ctx, state);
    }
    Ok(delta)
}

/// Deletes segment files and temporaries that the catalog does not reference:
/// leftovers of a writer that crashed before its commit, or old generations.
fn remove_unreferenced(dir: &Path, catalog: &Catalog) -> Result<()> {
    let live: Vec<&str> = catalog
        .base
        .iter()
        .chain(catalog.buckets.iter().map(|b| &b.segment))
        .chain(catalog.models.iter().flat_map(|m| m.parts.iter().map(|(_, r)| r)))
        .map(|r| r.file.as_str())
        .collect();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = ["base-", "buckets-", "model-"]
            .iter()
            .any(|p| name.starts_with(p))
            || name.ends_with(".tmp");
        if ours && !live.contains(&name) {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// A node given by dense id or by external key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRef {
    /// Dense per-type id.
    Id(u32),
    /// External key.
    Key(String),
}

impl From<u32> for NodeRef {
    fn from(id: u32) -> Self {
        NodeRef::Id(id)
    }
}

impl From<&str> for NodeRef {
    fn from(k: &str) -> Self {
        NodeRef::Key(k.to_string())
    }
}

impl From<String> for NodeRef {
    fn from(k: String) -> Self {
        NodeRef::Key(k)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Node {
        ty: u32,
        key: String,
    },
    /// `weight: None` deletes.
    Edge {
        rel: u32,
        src: NodeRef,
        dst: NodeRef,
        weight: Option<f32>,
    },
    Property {
        ty: u32,
        node: NodeRef,
        name: String,
        value: Value,
    },
    DeleteNode {
        ty: u32,
        node: NodeRef,
    },
}

/// Writes to apply together with [`Database::commit`].
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    ops: Vec<Op>,
}

impl WriteBatch {
    /// Inserts a node of type `ty` unless one with that key exists.
    pub fn insert_node(&mut self, ty: u32, key: &str) -> &mut Self {
        self.ops.push(Op::Node {
            ty,
            key: key.to_string(),
        });
        self
    }

    /// Inserts edge `src -rel-> dst` (weight 1 when `None`), creating missing
    /// endpoint nodes given by key. Inserting an existing edge sets its weight.
    pub fn insert_edge(
        &mut self,
        rel: u32,
        src: impl Into<NodeRef>,
        dst: impl Into<NodeRef>,
        weight: Option<f32>,
    ) -> &mut Self {
        self.ops.push(Op::Edge {
            rel,
            src: src.into(),
            dst: dst.into(),
            weight: Some(weight.unwrap_or(1.0)),
        });
        self
    }

    /// Deletes edge `src -rel-> dst` if present.
    pub fn delete_edge(&mut self, rel: u32, src: impl Into<NodeRef>, dst: impl Into<NodeRef>) -> &mut Self {
        self.ops.push(Op::Edge {
            rel,
            src: src.into(),
            dst: dst.into(),
            weight: None,
        });
        self
    }

    /// Sets a property of an existing node.
    pub fn set_property(&mut self, ty: u32, node: impl Into<NodeRef>, name: &str, value: Value) -> &mut Self {
        self.ops.push(Op::Property {
            ty,
            node: node.into(),
            name: name.to_string(),
            value,
        });
        self
    }

    /// Deletes a node with its edges and properties. Its id is not reused;
    /// inserting its key again brings it back, bare.
    pub fn delete_node(&mut self, ty: u32, node: impl Into<NodeRef>) -> &mut Self {
        self.ops.push(Op::DeleteNode {
            ty,
            node: node.into(),
        });
        self
    }

    /// Number of operations queued.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// What a commit changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitInfo {
    /// Nodes created (or brought back after deletion).
    pub nodes_created: u64,
    /// Nodes deleted.
    pub nodes_deleted: u64,
    /// Edges whose presence or weight changed.
    pub edges_changed: u64,
}

/// Neighbour ids, sorted: borrowed from the mapped base when the node has no
/// pending changes, merged otherwise.
#[derive(Debug)]
pub enum Neighbors<'a> {
    /// Straight from the base segment.
    Base(&'a [u32]),
    /// Base merged with the delta.
    Merged(Vec<u32>),
}

impl std::ops::Deref for Neighbors<'_> {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        match self {
            Neighbors::Base(s) => s,
            Neighbors::Merged(v) => v,
        }
    }
}

/// An immutable, consistent view of the database.
#[derive(Clone)]
pub struct Snapshot {
    pub(crate) state: Arc<State>,
}

impl Snapshot {
    /// The catalog this snapshot sees.
    pub fn catalog(&self) -> &Catalog {
        &self.state.catalog
    }

    /// Number of nodes of type `ty`.
    pub fn node_count(&self, ty: u32) -> u32 {
        self.state
            .catalog
            .node_types
            .get(ty as usize)
            .map_or(0, |t| t.count)
    }

    /// Dense id of a key (`None` for deleted nodes).
    pub fn node_id(&self, ty: u32, key: &str) -> Option<u32> {
        self.any_node_id(ty, key).filter(|&id| !self.is_deleted(ty, id))
    }

    /// Dense id of a key, deleted nodes included.
    fn any_node_id(&self, ty: u32, key: &str) -> Option<u32> {
        self.state
            .base
            .lookup(ty, key)
            .or_else(|| self.state.delta.nodes.get(ty as usize)?.by_key.get(key).copied())
    }

    /// Whether node `id` of type `ty` was deleted. Ids are not reused: a
    /// deleted node keeps its id and key, and creating its key again brings
    /// it back without edges or properties.
    pub fn is_deleted(&self, ty: u32, id: u32) -> bool {
        self.state.delta.is_deleted(ty, id)
    }

    /// Number of nodes of type `ty` that are not deleted.
    pub fn live_node_count(&self, ty: u32) -> u32 {
        let gone = self
            .state
            .delta
            .deleted
            .get(ty as usize)
            .map_or(0, |b| b.len() as u32);
        self.node_count(ty) - gone
    }

    /// Key of a dense id.
    pub fn node_key(&self, ty: u32, id: u32) -> Option<&str> {
        let base = &self.state.base;
        if id < base.count(ty) {
            return base.key(ty, id);
        }
        let nd = self.state.delta.nodes.get(ty as usize)?;
        nd.keys.get((id - base.count(ty)) as usize).map(|k| &**k)
    }

    fn rel(&self, rel: u32) -> Option<&RelationDef> {
        self.state.catalog.relations.get(rel as usize)
    }

    /// Neighbours of `node` through relation `rel` in direction `d`, sorted.
    /// The node's type is the relation's source (out) or destination (in) type.
    pub fn neighbors(&self, rel: u32, node: u32, d: Direction) -> Neighbors<'_> {
        let Some(r) = self.rel(rel) else {
            return Neighbors::Base(&[]);
        };
        let ty = match d {
            Direction::Out => r.src,
            Direction::In => r.dst,
        };
        let (base, _) = self.state.base.neighbors(ty, d, node, rel);
        match self.state.delta.get(d, ty, node, rel) {
            None => Neighbors::Base(base),
            Some(ch) => {
                let mut v: Vec<u32> = base
                    .iter()
                    .copied()
                    .filter(|x| !ch.removed.contains(*x))
                    .collect();
                v.extend(ch.added.iter());
                v.sort_unstable();
                Neighbors::Merged(v)
            }
        }
    }

    /// Out-neighbours by relation.
    pub fn out_neighbors(&self, rel: u32, node: u32) -> Neighbors<'_> {
        self.neighbors(rel, node, Direction::Out)
    }

    /// In-neighbours by relation.
    pub fn in_neighbors(&self, rel: u32, node: u32) -> Neighbors<'_> {
        self.neighbors(rel, node, Direction::In)
    }

    /// Relations through which node `node` of type `ty` has neighbours in
    /// direction `d`, in relation-id order.
    pub fn relations_of(&self, ty: u32, node: u32, d: Direction) -> Vec<u32> {
        let mut rels: Vec<u32> = self
            .state
            .base
            .all_neighbors(ty, d, node)
            .map(|(r, _)| r)
            .collect();
        if let Some(m) = self.state.delta.node_rels(d, ty, node) {
            rels.extend(m.keys());
            rels.sort_unstable();
            rels.dedup();
            rels.retain(|&r| !self.neighbors(r, node, d).is_empty());
        }
        rels
    }

    /// Neighbours across all relations: `(relation, neighbour)` pairs.
    pub fn all_neighbors(&self, ty: u32, node: u32, d: Direction) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for r in self.relations_of(ty, node, d) {
            out.extend(self.neighbors(r, node, d).iter().map(|&x| (r, x)));
        }
        out
    }

    /// Degree by relation, without materialising the neighbour list.
    pub fn degree(&self, rel: u32, node: u32, d: Direction) -> u64 {
        let Some(r) = self.rel(rel) else { return 0 };
        let ty = if d == Direction::Out { r.src } else { r.dst };
        let base = self.state.base.neighbors(ty, d, node, rel).0.len() as u64;
        match self.state.delta.get(d, ty, node, rel) {
            None => base,
            Some(ch) => base + ch.added.len() - ch.removed.len(),
        }
    }

    /// Degree across all relations.
    pub fn total_degree(&self, ty: u32, node: u32, d: Direction) -> u64 {
        let base = self.state.base.degree(ty, d, node);
        match self.state.delta.node_rels(d, ty, node) {
            None => base,
            Some(m) => m
                .values()
                .fold(base, |acc, ch| acc + ch.added.len() - ch.removed.len()),
        }
    }

    pub(crate) fn edge_ctx(&self, catalog: &Catalog, rel: u32, src: u32, dst: u32) -> EdgeCtx {
        let r = &catalog.relations[rel as usize];
        let (nbrs, ws) = self.state.base.neighbors(r.src, Direction::Out, src, rel);
        let base = nbrs
            .binary_search(&dst)
            .ok()
            .map(|i| ws.get(i).copied().unwrap_or(1.0));
        EdgeCtx {
            rel,
            src_type: r.src,
            dst_type: r.dst,
            src,
            dst,
            base,
        }
    }

    fn edge_weight_in(&self, catalog: &Catalog, rel: u32, src: u32, dst: u32) -> Option<f32> {
        let ctx = self.edge_ctx(catalog, rel, src, dst);
        let d = self.state.delta.get(Direction::Out, ctx.src_type, src, rel);
        let present = match (ctx.base, d) {
            (Some(_), Some(ch)) => !ch.removed.contains(dst),
            (Some(_), None) => true,
            (None, Some(ch)) => ch.added.contains(dst),
            (None, None) => false,
        };
        present.then(|| {
            self.state
                .delta
                .weights
                .get(&(rel, src, dst))
                .copied()
                .or(ctx.base)
                .unwrap_or(1.0)
        })
    }

    /// The weight of edge `src -rel-> dst`, or `None` when there is no such edge.
    pub fn edge_weight(&self, rel: u32, src: u32, dst: u32) -> Option<f32> {
        if rel as usize >= self.state.catalog.relations.len() {
            return None;
        }
        self.edge_weight_in(&self.state.catalog, rel, src, dst)
    }

    /// Whether edge `src -rel-> dst` exists.
    pub fn has_edge(&self, rel: u32, src: u32, dst: u32) -> bool {
        self.edge_weight(rel, src, dst).is_some()
    }

    /// Every edge with its weight, by source type, source, relation, destination.
    pub(crate) fn edges(&self) -> impl Iterator<Item = WEdge> + '_ {
        let types = self.state.catalog.node_types.len() as u32;
        (0..types).flat_map(move |t| {
            (0..self.node_count(t)).flat_map(move |node| {
                self.relations_of(t, node, Direction::Out)
                    .into_iter()
                    .flat_map(move |rel| {
                        let nbrs: Vec<u32> = self.out_neighbors(rel, node).to_vec();
                        nbrs.into_iter().map(move |dst| WEdge {
                            rel,
                            src: node,
                            dst,
                            weight: self.edge_weight(rel, node, dst).unwrap_or(1.0),
                        })
                    })
            })
        })
    }

    /// Number of distinct edges.
    pub fn edge_count(&self) -> u64 {
        let types = self.state.catalog.node_types.len() as u32;
        let base: u64 = (0..types).map(|t| self.state.base.edge_count(t)).sum();
        (base as i64 + self.state.delta.net_edges()) as u64
    }
}
