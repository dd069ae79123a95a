//! Opening: the directory lock, sled (with its unfinished snapshots removed),
//! the catalog, the base and the delta replayed from sled.

use super::*;

/// An empty path would put the database's files in the current directory.
fn no_empty_path(dir: &Path) -> Result<()> {
    match dir.as_os_str().is_empty() {
        true => Err(StorageError::InvalidInput(
            "an empty path names no database directory".into(),
        )),
        false => Ok(()),
    }
}

impl Database {
    /// Creates a new, empty database in `path`, which must not exist or be empty.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let dir = path.as_ref();
        no_empty_path(dir)?;
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
        db.apply_batch(b).in_catalog(&dir.join(CATALOG_DIR))?;
        db.flush().in_catalog(&dir.join(CATALOG_DIR))?;
        sync_dir(dir)?;
        Self::finish_open(dir, db, lock)
    }

    /// Opens an existing database.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let dir = path.as_ref();
        no_empty_path(dir)?;
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

    pub(super) fn finish_open(dir: &Path, sled: sled::Db, lock: File) -> Result<Self> {
        let sled_path = dir.join(CATALOG_DIR);
        let corrupt = |m: &str| StorageError::from(CorruptionError::new(&sled_path, m));
        let format = sled
            .get(keys::FORMAT)
            .in_catalog(&sled_path)?
            .ok_or_else(|| corrupt("no format version record"))?;
        let format = keys::read_u32(&format).ok_or_else(|| corrupt("bad format version record"))?;
        if format != FORMAT_VERSION {
            return Err(StorageError::UnsupportedFormat {
                found: format,
                supported: FORMAT_VERSION,
            });
        }
        let catalog = sled
            .get(keys::CATALOG)
            .in_catalog(&sled_path)?
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
            staged: Default::default(),
            _lock: lock,
        })
    }
}

pub(super) fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .at(&path)?;
    // A lock this process just released can still be held for a moment by
    // a child that another thread is starting (between fork and exec it
    // holds every descriptor, close-on-exec ones included): wait that long,
    // not for another process that has the database open.
    for wait in [1, 2, 5, 10, 20, 50, 100, 0] {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) if wait > 0 => {
                std::thread::sleep(Duration::from_millis(wait));
            }
            Err(std::fs::TryLockError::WouldBlock) => break,
            Err(std::fs::TryLockError::Error(e)) => return Err(StorageError::Io { path, error: e }),
        }
    }
    Err(StorageError::Locked(dir.to_path_buf()))
}

/// Opens sled, turning a panic inside it (which some damaged files cause)
/// into a corruption error rather than taking the host process down.
///
/// The caller already holds quiver's own lock, so sled's lock can only be
/// busy because a `sled::Db` this process just dropped still has background
/// threads finishing their writes (sled's own tests block on it for the same
/// reason); that is waited out for up to ten seconds.
pub(super) fn open_sled(dir: &Path) -> Result<sled::Db> {
    let path = dir.join(CATALOG_DIR);
    remove_unfinished_snapshots(&path)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let opened = loop {
        // sled holds only the catalog and the delta: a small cache bounds its memory (default 1 GiB).
        let cfg = sled::Config::new().path(&path).cache_capacity(64 << 20);
        match crate::error::caught(move || cfg.open()) {
            Some(Err(sled::Error::Io(e)))
                if e.to_string().starts_with("could not acquire lock") && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => break other,
        }
    };
    match opened {
        Some(Ok(db)) => Ok(db),
        Some(Err(sled::Error::Corruption { .. })) => {
            Err(CorruptionError::new(&path, "sled reports a damaged log").into())
        }
        Some(Err(sled::Error::Io(e))) => Err(StorageError::Io { path, error: e }),
        Some(Err(e)) => Err(CorruptionError::new(&path, e.to_string()).into()),
        None => Err(CorruptionError::new(&path, "sled failed while reading its files").into()),
    }
}

/// sled writes a snapshot of its page table at every open to
/// `snap.<lsn>.generating` and renames it when it is whole. sled 0.34 takes
/// any `snap.*` file for a snapshot, so one left unfinished (the disk filled,
/// or the process died, while it was written) would make every later open
/// fail as "damaged". Such a file is never needed: the previous snapshot is
/// removed only after the rename, and the log holds everything since.
pub(super) fn remove_unfinished_snapshots(catalog: &Path) -> Result<()> {
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

/// Rebuilds the in-memory delta from sled's `i` and `e` records.
pub(super) fn replay_delta(sled: &sled::Db, catalog: &Catalog, base: &Base, path: &Path) -> Result<Delta> {
    let corrupt = |m: String| StorageError::from(CorruptionError::new(path, m));
    let mut delta = Delta {
        nodes: vec![NodeDelta::default(); catalog.node_types.len()],
        ..Default::default()
    };
    for kv in sled.scan_prefix([keys::NODE_ID]) {
        let (k, v) = kv.in_catalog(path)?;
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
        let (ty, id) = keys::parse_node_id(&k.in_catalog(path)?)
            .ok_or_else(|| corrupt("bad deleted-node record key".into()))?;
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
        let (k, v) = kv.in_catalog(path)?;
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
pub(super) fn remove_unreferenced(dir: &Path, catalog: &Catalog) -> Result<()> {
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
