//! A write transaction: batches staged one after another, each read back
//! before the next (a statement whose later clauses see its earlier
//! writes), committed as one batch at the end or not at all.

use super::commit::{edge_changes, next_state, resolve, Resolved};
use super::*;
use batch::Op;
use rustc_hash::FxHashMap;

/// A write in progress. It holds the writer lock from [`Database::begin`]
/// until it is committed or dropped, so the ids its view gives new nodes
/// are the ones the commit gives them. Readers elsewhere keep seeing the
/// committed state; dropping it uncommitted writes nothing.
pub struct Txn<'a> {
    db: &'a Database,
    _writer: parking_lot::MutexGuard<'a, ()>,
    /// The committed state it started from.
    start: Snapshot,
    ops: Vec<Op>,
    /// `start` with the staged batches applied.
    view: Snapshot,
    /// Properties the staged batches set (`Some`) or removed (`None`).
    props: HashMap<(u32, u32, String), Option<Value>>,
    /// Nodes the staged batches delete (true) or bring back (false):
    /// either way their stored properties are gone.
    deaths: FxHashMap<(u32, u32), bool>,
}

impl Database {
    /// Starts a write transaction (waits for the writer lock). Nothing
    /// else may write through this handle on the same thread until the
    /// transaction is committed or dropped.
    pub fn begin(&self) -> Txn<'_> {
        let writer = self.writer.lock();
        let start = self.snapshot();
        Txn {
            db: self,
            _writer: writer,
            view: start.clone(),
            start,
            ops: Vec::new(),
            props: HashMap::new(),
            deaths: FxHashMap::default(),
        }
    }
}

impl Txn<'_> {
    /// The committed state with every staged batch applied.
    pub fn snapshot(&self) -> &Snapshot {
        &self.view
    }

    /// Applies `batch` to the transaction's view (nothing is written). An
    /// invalid operation fails here, leaving the view as it was.
    pub fn stage(&mut self, batch: WriteBatch) -> Result<()> {
        let mut ops = self.ops.clone();
        ops.extend(batch.ops);
        let Resolved {
            mut catalog,
            new_keys,
            edges,
            order,
            props,
            deaths,
        } = resolve(&self.start, ops.clone())?;
        let changes = edge_changes(&self.start, &mut catalog, &edges, &order);
        self.view = Snapshot {
            state: Arc::new(next_state(&self.start, catalog, new_keys, changes, &deaths)),
        };
        self.props = props
            .into_iter()
            .map(|(ty, id, name, v)| ((ty, id, name), v))
            .collect();
        self.deaths = deaths;
        self.ops = ops;
        Ok(())
    }

    /// A node property as the transaction sees it.
    pub fn property(&self, ty: u32, id: u32, name: &str) -> Result<Option<Value>> {
        if let Some(v) = self.props.get(&(ty, id, name.to_string())) {
            return Ok(v.clone());
        }
        if self.deaths.contains_key(&(ty, id)) {
            return Ok(None);
        }
        self.db.property(ty, id, name)
    }

    /// All properties of a node as the transaction sees them, by name.
    pub fn properties(&self, ty: u32, id: u32) -> Result<Vec<(String, Value)>> {
        let mut all: std::collections::BTreeMap<String, Option<Value>> =
            match self.deaths.contains_key(&(ty, id)) {
                true => Default::default(),
                false => self
                    .db
                    .properties(ty, id)?
                    .into_iter()
                    .map(|(n, v)| (n, Some(v)))
                    .collect(),
            };
        for ((t, i, name), v) in &self.props {
            if (*t, *i) == (ty, id) {
                all.insert(name.clone(), v.clone());
            }
        }
        Ok(all.into_iter().filter_map(|(n, v)| Some((n, v?))).collect())
    }

    /// Commits every staged batch and then `last` as one batch (atomic, as
    /// [`Database::commit`]).
    pub fn commit(self, last: WriteBatch) -> Result<CommitInfo> {
        let mut ops = self.ops;
        ops.extend(last.ops);
        self.db.commit_locked(WriteBatch { ops })
    }
}
