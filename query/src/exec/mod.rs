//! The executor: operators pull rows lazily from the ones before them, so a
//! `LIMIT` without sorting stops the whole pipeline early. Every operator
//! ticks a counter that checks the timeout, and buffers are held to the row cap.

use std::cell::Cell;
use std::collections::HashMap;

use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_engine::Model;
use quiver_storage::{Database, Direction, Neighbors, NodeRef, Snapshot, Txn};

use crate::ast::{BinOp, Dir};
use crate::error::{runtime, QueryError, Result};
use crate::plan::{Agg, AggKind, CExpr, Func, Merge, NodeSrc, Op, Proc, Ret, Step, Target, Write};
use crate::value::{format_float, Params, Value};

mod expr;
mod ops;
mod paths;
mod procs;
mod two_hop;
pub(crate) use procs::{cached_index, cached_model};
mod project;
mod write;

use expr::*;

/// One row: a value per slot.
pub(crate) type Row = Vec<Value>;
pub(crate) type RowIter<'a> = Box<dyn Iterator<Item = Result<Row>> + 'a>;

/// Loads models on first use and keeps them while their stored parts are
/// unchanged; beside each, the model extended with rows inferred for nodes
/// created since training, kept while the graph's edges and node counts are.
pub(crate) type ModelCache = parking_lot::Mutex<HashMap<String, CachedModel>>;

#[derive(Clone)]
pub(crate) struct CachedModel {
    parts: Vec<String>,
    base: Arc<Model>,
    extended: Option<(Vec<String>, Arc<Model>)>,
    /// Per node type searched so far: its current index, if any.
    indexes: Vec<(u32, Option<Arc<quiver_engine::AnnIndex>>)>,
}

pub(crate) struct Ctx<'a> {
    pub db: &'a Database,
    pub snap: &'a Snapshot,
    /// The statement's write transaction, once it has written: properties
    /// are read through it, so later clauses see earlier writes.
    pub txn: Option<&'a Txn<'a>>,
    pub params: &'a Params,
    pub models: &'a ModelCache,
    pub start: Instant,
    pub timeout: Option<Duration>,
    pub max_rows: u64,
    /// Slots per row (rows made by WITH start null everywhere else).
    pub width: usize,
    pub ticks: Cell<u64>,
    /// Asked, at most every [`POLL`], whether the caller wants the query
    /// stopped (a Python host's Ctrl-C); when it was last asked.
    pub interrupt: Option<&'a dyn Fn() -> bool>,
    pub polled: Cell<Instant>,
    /// Rows dropped by the aggregate and filters, reused by expansions so
    /// that a row costs no allocation in the steady state.
    pub pool: std::cell::RefCell<Vec<Row>>,
}

/// What every part of one statement runs with.
pub(crate) struct Run<'r> {
    pub db: &'r Database,
    pub models: &'r ModelCache,
    pub params: &'r Params,
    pub limits: crate::Limits,
    pub interrupt: Option<&'r dyn Fn() -> bool>,
    pub start: Instant,
    pub width: usize,
}

impl Run<'_> {
    /// A context reading `snap` (and, once the statement has written, its
    /// properties through `txn`).
    pub(crate) fn ctx<'a>(&'a self, snap: &'a Snapshot, txn: Option<&'a Txn<'a>>) -> Ctx<'a> {
        Ctx {
            db: self.db,
            snap,
            txn,
            params: self.params,
            models: self.models,
            start: self.start,
            timeout: self.limits.timeout,
            max_rows: self.limits.max_rows,
            width: self.width,
            ticks: Cell::new(0),
            interrupt: self.interrupt,
            polled: Cell::new(Instant::now()),
            pool: Default::default(),
        }
    }
}

/// Longest string a query may build (in bytes): `replace`, `+`.
pub(crate) const MAX_STRING: usize = 16 << 20;
/// Longest list a query may build: `collect`, `+`.
pub(crate) const MAX_LIST: usize = 1 << 24;

/// An error for a string or list that would pass its cap.
pub(crate) fn too_long(what: &str, len: usize) -> QueryError {
    let max = if what == "string" { MAX_STRING } else { MAX_LIST };
    runtime(format!(
        "a {what} of {len} {} would pass the cap of {max}",
        if what == "string" { "bytes" } else { "elements" }
    ))
}

/// The values `v` holds: one, or a list's elements (a comprehension's
/// output is bounded by what its items hold together).
pub(crate) fn held(v: &Value) -> usize {
    match v {
        Value::List(l) | Value::Path(l) => 1 + l.len(),
        Value::Map(m) => 1 + m.len(),
        _ => 1,
    }
}

/// Values a buffered row may hold on average, in units of the row cap.
const VALUES_PER_ROW: u64 = 32;

/// How often a running query asks its caller whether to stop.
const POLL: Duration = Duration::from_millis(20);

impl Ctx<'_> {
    pub(crate) fn tick(&self) -> Result<()> {
        let t = self.ticks.get() + 1;
        self.ticks.set(t);
        if t.is_multiple_of(256) {
            self.check_time()?;
        }
        Ok(())
    }

    /// A node property, as the statement sees it.
    fn property(&self, ty: u32, id: u32, name: &str) -> Result<Option<quiver_storage::Value>> {
        Ok(match self.txn {
            Some(t) => t.property(ty, id, name)?,
            None => self.db.property(ty, id, name)?,
        })
    }

    /// A node's properties, as the statement sees them.
    fn properties(&self, ty: u32, id: u32) -> Result<Vec<(String, quiver_storage::Value)>> {
        Ok(match self.txn {
            Some(t) => t.properties(ty, id)?,
            None => self.db.properties(ty, id)?,
        })
    }

    /// The timeout and the caller's interrupt.
    fn check_time(&self) -> Result<()> {
        if let Some(limit) = self.timeout {
            if self.start.elapsed() > limit {
                return Err(QueryError::Timeout(limit.as_millis() as u64));
            }
        }
        if let Some(stop) = self.interrupt {
            if self.polled.get().elapsed() >= POLL {
                self.polled.set(Instant::now());
                if stop() {
                    return Err(QueryError::Interrupted);
                }
            }
        }
        Ok(())
    }

    /// A copy of `row` in a recycled buffer.
    fn copy(&self, row: &Row) -> Row {
        match self.pool.borrow_mut().pop() {
            Some(mut r) => {
                r.clone_from(row);
                r
            }
            None => row.clone(),
        }
    }

    /// Hands a finished row back for reuse.
    fn recycle(&self, row: Row) {
        let mut pool = self.pool.borrow_mut();
        if pool.len() < 1024 {
            pool.push(row);
        }
    }

    pub(crate) fn cap(&self, n: usize) -> Result<()> {
        if n as u64 > self.max_rows {
            return Err(QueryError::RowCap(self.max_rows));
        }
        Ok(())
    }

    /// Bounds the values a buffer of `n` rows of `width` values each holds
    /// (a sort's keys and items): [`VALUES_PER_ROW`] per row of the row cap,
    /// so that wide rows cannot hold what the row cap forbids.
    pub(crate) fn cap_values(&self, n: usize, width: usize) -> Result<()> {
        let (held, most) = (
            n as u64 * width as u64,
            self.max_rows.saturating_mul(VALUES_PER_ROW),
        );
        if held > most {
            return Err(runtime(format!(
                "holding {held} values ({n} rows of {width}) passes the cap of {most} (the row cap × {VALUES_PER_ROW}); return fewer items or add LIMIT"
            )));
        }
        self.cap(n)
    }
}

/// What kind of value, for error messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Int(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Str(_) => "a string",
        Value::Node { .. } => "a node",
        Value::Edge { .. } => "an edge",
        Value::List(_) => "a list",
        Value::Map(_) => "a map",
        Value::Path(_) => "a path",
    }
}
