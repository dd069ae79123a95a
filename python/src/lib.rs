//! `quiver._native`: the Python bindings, thin over quiver's public Rust
//! API. Every behaviour lives in the Rust crates and is tested there; this
//! module converts values and errors, releases the GIL for long calls and
//! turns any panic into `quiver.Error`.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use quiver::{Device, EngineError, Graph, Params, QueryError, QueryValue, StorageError, TrainConfig};

mod convert;
mod embeddings;
mod errors;
mod exchange;
mod retrieval;
mod training;
mod trigger;
use convert::*;
use errors::{guard, py_err, ConfigError, CorruptionError, Error, LockedError, QuerySyntaxError};

/// [`quiver::Model::seen`] as quiver's error for model `name`.
fn seen(
    m: &quiver::Model,
    name: &str,
    c: &quiver::Catalog,
    ty: Option<u32>,
    rel: Option<u32>,
) -> Result<(), quiver::Error> {
    m.seen(c, ty, rel).map_err(|message| {
        EngineError::Model {
            name: name.to_string(),
            message,
        }
        .into()
    })
}

/// Per query node, k neighbour keys (None past the last neighbour).
type KeyGrid = Vec<Vec<Option<String>>>;

/// A prepared statement.
#[pyclass(frozen, module = "quiver._native")]
struct Prepared(quiver::Prepared);

/// A mapped embedding matrix handed out: the model's parts when it was
/// mapped, the keys, the read-only array.
type View = (String, Py<PyTuple>, Py<PyAny>);

/// An open database (`quiver.open`).
#[pyclass(frozen, module = "quiver._native")]
struct Database {
    graph: RwLock<Option<Graph>>,
    #[pyo3(get)]
    path: String,
    /// Mapped embeddings by (model, node type): the model's parts when they
    /// were mapped, the keys, the read-only array (so that a second call
    /// neither maps nor checks the part again).
    views: Mutex<HashMap<(String, String), View>>,
    /// A triggered refresh is running ([`trigger::after_write`]).
    refreshing: std::sync::atomic::AtomicBool,
    /// Set by `close`: a triggered refresh stops.
    closing: std::sync::atomic::AtomicBool,
}

thread_local! {
    /// Calls into a database under way on this thread (a callback of one
    /// runs inside it), so that `close` from a callback is refused rather
    /// than waiting forever for the call that runs it.
    static IN_CALL: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts a call under way on this thread for as long as it lives.
struct InCall;

impl InCall {
    fn enter() -> Self {
        IN_CALL.with(|n| n.set(n.get() + 1));
        InCall
    }
}

impl Drop for InCall {
    fn drop(&mut self) {
        IN_CALL.with(|n| n.set(n.get() - 1));
    }
}

/// Runs `run` with an interrupt check that takes the GIL every few
/// milliseconds to look for a signal (Ctrl-C): a pending KeyboardInterrupt
/// ends the query ([`QueryError::Interrupted`]) and is raised in its place.
fn interruptible<T>(
    py: Python<'_>,
    run: impl FnOnce(&dyn Fn() -> bool) -> Result<T, QueryError> + Send,
) -> PyResult<T>
where
    T: Send,
{
    let pending: Mutex<Option<PyErr>> = Mutex::new(None);
    let check = || {
        Python::attach(|py| match py.check_signals() {
            Ok(()) => false,
            Err(e) => {
                if let Ok(mut p) = pending.lock() {
                    *p = Some(e);
                }
                true
            }
        })
    };
    let r = py.detach(|| run(&check));
    match (r, pending.into_inner().ok().flatten()) {
        (Err(QueryError::Interrupted), Some(e)) => Err(e),
        (r, _) => r.map_err(py_err),
    }
}

impl Database {
    fn with<T>(&self, f: impl FnOnce(&Graph) -> PyResult<T>) -> PyResult<T> {
        let _call = InCall::enter();
        guard(|| {
            let g = self
                .graph
                .read()
                .map_err(|_| Error::new_err("the database handle is poisoned"))?;
            match g.as_ref() {
                Some(g) => f(g),
                None => Err(Error::new_err(format!("database {} is closed", self.path))),
            }
        })
    }
}

fn device(name: &str) -> PyResult<Device> {
    Device::select(name).map_err(py_err)
}

#[pymethods]
impl Database {
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        guard(|| {
            let g = Graph::open(&path).map_err(py_err)?;
            Ok(Database {
                graph: RwLock::new(Some(g)),
                path: path.display().to_string(),
                views: Mutex::new(HashMap::new()),
                refreshing: Default::default(),
                closing: Default::default(),
            })
        })
    }

    /// Closes the database; later calls raise `quiver.Error`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if IN_CALL.with(|n| n.get()) > 0 {
            return Err(Error::new_err(
                "close() inside one of this database's calls (an on_event callback) would wait for that call forever; close it after the call returns",
            ));
        }
        if let Ok(mut v) = self.views.lock() {
            v.clear();
        }
        self.closing.store(true, std::sync::atomic::Ordering::Relaxed);
        // Waits, without the GIL, for calls in other threads (a training run) to finish.
        let closed = py.detach(|| self.graph.write().map(|mut g| drop(g.take())).is_ok());
        if !closed {
            return Err(Error::new_err("the database handle is poisoned"));
        }
        Ok(())
    }

    #[getter]
    fn closed(&self) -> bool {
        self.graph.read().map(|g| g.is_none()).unwrap_or(true)
    }

    /// Runs `;`-separated statements; returns the last one's (columns, rows).
    #[pyo3(signature = (text, params=None))]
    fn query<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
        text: &str,
        params: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<(Vec<String>, Bound<'py, PyList>)> {
        let p = self::params(params)?;
        let this = slf.borrow();
        let before = this.edge_version();
        let rows = this.with(|g| interruptible(py, |stop| g.query_interruptible(text, &p, Some(stop))))?;
        drop(this);
        trigger::after_write(slf, before);
        rows_out(py, rows)
    }

    fn prepare(&self, text: &str) -> PyResult<Prepared> {
        self.with(|g| g.prepare(text).map(Prepared).map_err(py_err))
    }

    #[pyo3(signature = (prepared, params=None))]
    fn execute<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
        prepared: &Prepared,
        params: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<(Vec<String>, Bound<'py, PyList>)> {
        let p = self::params(params)?;
        let this = slf.borrow();
        let before = this.edge_version();
        let rows = this.with(|g| {
            interruptible(py, |stop| {
                g.execute_interruptible(&prepared.0, &p, g.limits(), Some(stop))
            })
        })?;
        drop(this);
        trigger::after_write(slf, before);
        rows_out(py, rows)
    }

    /// Inserts edges `src_keys[i] -relation-> dst_keys[i]` (nodes created as
    /// needed) in one atomic batch.
    #[pyo3(signature = (src_type, src_keys, relation, dst_type, dst_keys, weights=None))]
    #[allow(clippy::too_many_arguments)]
    fn add_edges<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
        src_type: &str,
        src_keys: &Bound<'py, PyAny>,
        relation: &str,
        dst_type: &str,
        dst_keys: &Bound<'py, PyAny>,
        weights: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (s, d) = (keys(src_keys, "src_keys")?, keys(dst_keys, "dst_keys")?);
        let w: Option<Vec<f64>> = match weights {
            None => None,
            Some(w) if w.hasattr("tolist")? => Some(w.call_method0("tolist")?.extract()?),
            Some(w) => Some(w.extract()?),
        };
        // Weights are stored as 32-bit floats: a value beyond them is named, not stored as inf.
        if let Some((i, x)) = w
            .iter()
            .flatten()
            .enumerate()
            .find(|(_, x)| x.abs() > f32::MAX as f64)
        {
            return Err(PyValueError::new_err(format!(
                "weights[{i}] = {x:e} does not fit a 32-bit float"
            )));
        }
        let w: Option<Vec<f32>> = w.map(|w| w.into_iter().map(|x| x as f32).collect());
        if s.len() != d.len() || w.as_ref().is_some_and(|w| w.len() != s.len()) {
            return Err(PyTypeError::new_err(format!(
                "src_keys, dst_keys and weights must have one length (found {}, {}{})",
                s.len(),
                d.len(),
                w.as_ref().map_or(String::new(), |w| format!(", {}", w.len()))
            )));
        }
        let this = slf.borrow();
        let before = this.edge_version();
        let info = this.with(|g| {
            let db = g.database();
            let c = db.catalog();
            let bad = |e: StorageError| py_err(e);
            let rel = c.relation(relation).map_err(bad)?;
            let def = &c.relations[rel as usize];
            for (want, given, side) in [(def.src, src_type, "source"), (def.dst, dst_type, "destination")] {
                if c.type_name(want) != given {
                    return Err(errors::StorageError::new_err(format!(
                        "relation {relation} has {side} type {}, not {given}",
                        c.type_name(want)
                    )));
                }
            }
            py.detach(|| {
                let mut b = db.batch();
                for (i, (s, d)) in s.iter().zip(&d).enumerate() {
                    b.insert_edge(rel, s.as_str(), d.as_str(), w.as_ref().map(|w| w[i]));
                }
                let info = db.commit(b)?;
                db.flush()?;
                Ok::<_, StorageError>(info)
            })
            .map_err(bad)
        })?;
        drop(this);
        trigger::after_write(slf, before);
        dict(
            py,
            serde_json::json!({"nodes_created": info.nodes_created, "edges_changed": info.edges_changed}),
        )
    }

    /// Imports edge-list files as `quiver import` does (`create_types`:
    /// its `--create-types`; `node_type`: its `--node-type`).
    #[pyo3(signature = (paths, skip_bad=false, create_types=false, node_type=None))]
    fn import_files<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<PathBuf>,
        skip_bad: bool,
        create_types: bool,
        node_type: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let defaults = quiver::import::ImportOptions::default();
        let opts = quiver::import::ImportOptions {
            skip_bad,
            create_types,
            node_type: node_type.unwrap_or(defaults.node_type.clone()),
            ..defaults
        };
        let report = self.with(|g| {
            py.detach(|| g.database().import(&paths, &opts, &mut |_| {}))
                .map_err(py_err)
        })?;
        dict(
            py,
            serde_json::json!({"lines": report.lines, "edges_read": report.edges_read,
                "edges_added": report.edges_added, "nodes_added": report.nodes_added,
                "skipped": report.skipped.total, "seconds": report.seconds}),
        )
    }

    /// Counts per type and relation, as `quiver stats --json`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = self.with(|g| quiver::tasks::stats_json(g.database()).map_err(py_err))?;
        dict(py, s)
    }

    /// The full consistency check: {"ok": bool, "problems": [...]}.
    fn check<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let r = self.with(|g| py.detach(|| g.database().check()).map_err(py_err))?;
        dict(py, serde_json::json!({"ok": r.ok(), "problems": r.problems}))
    }

    /// The stored models: name, settings, progress (empty when finished),
    /// metrics, and `since`: edges and nodes added and deleted since the
    /// graph state it was trained on (None when it has no record of it).
    fn models<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let ms = self.with(|g| {
            py.detach(|| quiver::tasks::models_json(g.database()))
                .map_err(py_err)
        })?;
        dict(py, ms)
    }

    fn drop_model(&self, name: &str) -> PyResult<()> {
        self.with(|g| g.database().drop_model(name).map_err(py_err))
    }

    /// Stores an int8 copy of each node type's rows; returns bytes per type.
    fn quantize<'py>(&self, py: Python<'py>, model: &str) -> PyResult<Bound<'py, PyAny>> {
        let sizes = self.with(|g| {
            py.detach(|| {
                let db = g.database();
                let m = quiver::Model::load(db, model)?;
                let c = db.catalog();
                let mut out = serde_json::Map::new();
                for (ty, t) in c.node_types.iter().enumerate() {
                    let codes = quiver::Int8Rows::store(db, model, &m, ty as u32)?;
                    out.insert(t.name.clone(), codes.bytes().into());
                }
                Ok::<_, quiver::Error>(out)
            })
            .map_err(py_err)
        })?;
        dict(py, serde_json::Value::Object(sizes))
    }
}

/// For the test that shows a panic in a binding surfaces as quiver.Error.
#[pyfunction]
fn _panic_for_test() -> PyResult<()> {
    guard(|| panic!("a deliberate panic"))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Database>()?;
    m.add_class::<Prepared>()?;
    m.add_function(wrap_pyfunction!(_panic_for_test, m)?)?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("QuerySyntaxError", py.get_type::<QuerySyntaxError>())?;
    m.add("QueryError", py.get_type::<errors::QueryError>())?;
    m.add("StorageError", py.get_type::<errors::StorageError>())?;
    m.add("CorruptionError", py.get_type::<CorruptionError>())?;
    m.add("LockedError", py.get_type::<LockedError>())?;
    m.add("EngineError", py.get_type::<errors::EngineError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
