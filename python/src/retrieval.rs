//! Neighbour search from Python: `neighbors` of stored nodes, `search` of
//! arbitrary vectors, and `create_index`.

use std::sync::atomic::{AtomicBool, Ordering};

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use quiver::tasks::{self, NeighborQuery};
use quiver::{IndexSettings, Quantization, Snapshot, StorageError};

use crate::errors::{py_err, ConfigError, Error};
use crate::{keys, Database, KeyGrid};

/// (keys [n][k], row-major scores n × k) with None / NaN past each list's end.
fn grid(snap: &Snapshot, target: u32, results: &[Vec<(u32, f32)>], k: usize) -> (KeyGrid, Vec<f32>) {
    let mut scores = vec![f32::NAN; results.len() * k];
    let keys = results
        .iter()
        .enumerate()
        .map(|(i, list)| {
            (0..k)
                .map(|j| {
                    list.get(j).map(|&(id, s)| {
                        scores[i * k + j] = s;
                        snap.node_key(target, id).unwrap_or("").to_string()
                    })
                })
                .collect()
        })
        .collect();
    (keys, scores)
}

#[pymethods]
impl Database {
    /// Top-k for a batch of nodes (keys of `node_type`): (keys [n, k] of
    /// object, scores [n, k] float32); short rows are padded with None / nan.
    #[pyo3(signature = (model, node_type, nodes, k=10, metric="model", relation=None, exclude_connected=false, quantized=false, device="cpu", exact=false, ef=None))]
    #[allow(clippy::too_many_arguments)]
    fn neighbors<'py>(
        &self,
        py: Python<'py>,
        model: &str,
        node_type: &str,
        nodes: &Bound<'py, PyAny>,
        k: usize,
        metric: &str,
        relation: Option<&str>,
        exclude_connected: bool,
        quantized: bool,
        device: &str,
        exact: bool,
        ef: Option<usize>,
    ) -> PyResult<(KeyGrid, Bound<'py, PyAny>)> {
        let nodes = keys(nodes, "nodes")?;
        let dev = crate::device(device)?;
        let (keys_out, scores, k) = self.with(|g| {
            py.detach(|| {
                let db = g.database();
                let snap = db.snapshot();
                let c = snap.catalog();
                let ty = c.node_type(node_type)?;
                let queries = nodes
                    .iter()
                    .map(|k| {
                        snap.node_id(ty, k)
                            .map(|id| (ty, id))
                            .ok_or_else(|| StorageError::NodeNotFound {
                                node_type: node_type.to_string(),
                                key: k.clone(),
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let q = NeighborQuery {
                    k,
                    metric: match metric {
                        "model" => None,
                        m => Some(quiver::Metric::parse(m)?),
                    },
                    relation: relation.map(|r| c.relation(r)).transpose()?,
                    exclude_connected,
                    quantized,
                    exact,
                    ef,
                };
                let m = g.model(model)?;
                let cached = |ty| Ok(g.index(model, ty)?);
                let (target, results) =
                    tasks::neighbors(db, &snap, (&m, model), &queries, &q, &dev, &cached)?;
                // A k past the target's rows asks for every row (as the CLI does).
                let k = k.min(snap.node_count(target) as usize);
                let (keys, scores) = grid(&snap, target, &results, k);
                Ok::<_, quiver::Error>((keys, scores, k))
            })
            .map_err(py_err)
        })?;
        let n = keys_out.len();
        Ok((
            keys_out,
            PyArray1::from_vec(py, scores).reshape([n, k])?.into_any(),
        ))
    }

    /// The k best nodes of `node_type` for each row of `queries` (float32
    /// [n, d]): (keys [n][k], scores [n, k] float32), through the model's
    /// index when it has a current one unless `exact`.
    #[pyo3(signature = (model, node_type, queries, k=10, exact=false, ef=None))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        model: &str,
        node_type: &str,
        queries: PyReadonlyArray2<'py, f32>,
        k: usize,
        exact: bool,
        ef: Option<usize>,
    ) -> PyResult<(KeyGrid, Bound<'py, PyAny>)> {
        let q = queries.as_slice().map_err(|_| {
            pyo3::exceptions::PyValueError::new_err("queries must be a C-contiguous float32 array [n, d]")
        })?;
        let n = queries.shape()[0];
        let (keys_out, scores, k) = self.with(|g| {
            let run = || {
                let snap = g.database().snapshot();
                let ty = snap.catalog().node_type(node_type)?;
                let results = g.search(model, ty, q, k, exact, ef)?;
                let k = k.min(snap.node_count(ty) as usize);
                let (keys, scores) = grid(&snap, ty, &results, k);
                Ok::<_, quiver::Error>((keys, scores, k))
            };
            // One query is answered faster than the GIL changes hands.
            match n {
                0 | 1 => run(),
                _ => py.detach(run),
            }
            .map_err(py_err)
        })?;
        Ok((
            keys_out,
            PyArray1::from_vec(py, scores).reshape([n, k])?.into_any(),
        ))
    }

    /// Builds the model's approximate nearest-neighbour index of
    /// `node_type` (every type when None); returns what was stored per type.
    /// Ctrl-C stops it, storing nothing.
    #[pyo3(signature = (model, node_type=None, quantization="f32", connectivity=16, expansion_add=200, expansion_search=96, threads=0))]
    #[allow(clippy::too_many_arguments)]
    fn create_index<'py>(
        &self,
        py: Python<'py>,
        model: &str,
        node_type: Option<&str>,
        quantization: &str,
        connectivity: usize,
        expansion_add: usize,
        expansion_search: usize,
        threads: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let settings = IndexSettings {
            quantization: Quantization::parse(quantization)
                .map_err(|e| ConfigError::new_err(e.to_string()))?,
            connectivity,
            expansion_add,
            expansion_search,
            threads,
        };
        let stop = AtomicBool::new(false);
        let pending: std::sync::Mutex<Option<PyErr>> = std::sync::Mutex::new(None);
        let infos = self.with(|g| {
            py.detach(|| {
                std::thread::scope(|s| {
                    let build = s.spawn(|| {
                        let db = g.database();
                        let c = db.catalog();
                        let types: Vec<u32> = match node_type {
                            Some(t) => vec![c.node_type(t)?],
                            None => (0..g.model(model)?.nodes.len() as u32).collect(),
                        };
                        let mut out = Vec::new();
                        for ty in types {
                            let info = quiver::index_model(db, model, ty, &settings, &|_, _| {
                                !stop.load(Ordering::Relaxed)
                            })?;
                            out.push((c.type_name(ty).to_string(), info));
                        }
                        Ok::<_, quiver::Error>(out)
                    });
                    // This thread looks for Ctrl-C while the build runs.
                    while !build.is_finished() {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        Python::attach(|py| {
                            if let Err(e) = py.check_signals() {
                                stop.store(true, Ordering::Relaxed);
                                if let Ok(mut p) = pending.lock() {
                                    p.get_or_insert(e);
                                }
                            }
                        });
                    }
                    build.join().unwrap_or_else(|_| {
                        Err(quiver::EngineError::Internal("the index build panicked".into()).into())
                    })
                })
            })
            .map_err(|e| match pending.lock().ok().and_then(|mut p| p.take()) {
                Some(interrupt) => interrupt,
                None => py_err(e),
            })
        })?;
        let out: serde_json::Map<String, serde_json::Value> = infos
            .into_iter()
            .map(|(t, i)| {
                Ok((
                    t,
                    serde_json::to_value(i).map_err(|e| Error::new_err(e.to_string()))?,
                ))
            })
            .collect::<PyResult<_>>()?;
        crate::dict(py, serde_json::Value::Object(out))
    }

    /// Sets `node_type`'s rows of model `model` to `array` (float32 [n, d],
    /// row i for `keys[i]`), creating the model when missing; `score` is how
    /// searches compare them (dot, l2 or cosine). Keys not in the database
    /// are an error naming the first, unless `create_nodes`. Returns the
    /// number of the type's nodes left without a row (zeros).
    #[pyo3(signature = (model, node_type, keys, array, score="dot", create_nodes=false))]
    #[allow(clippy::too_many_arguments)]
    fn import_embeddings<'py>(
        &self,
        py: Python<'py>,
        model: &str,
        node_type: &str,
        keys: &Bound<'py, PyAny>,
        array: PyReadonlyArray2<'py, f32>,
        score: &str,
        create_nodes: bool,
    ) -> PyResult<usize> {
        let keys = crate::keys(keys, "keys")?;
        let d = array.shape()[1];
        let rows = array.as_slice().map_err(|_| {
            pyo3::exceptions::PyValueError::new_err("array must be a C-contiguous float32 array [n, d]")
        })?;
        if array.shape()[0] != keys.len() {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "{} keys for {} rows",
                keys.len(),
                array.shape()[0]
            )));
        }
        let score = quiver::vectors::Comparator::parse(score).map_err(py_err)?;
        self.with(|g| {
            py.detach(|| {
                let db = g.database();
                let ty = match db.catalog().node_type(node_type) {
                    Ok(t) => t,
                    Err(_) if create_nodes => db.create_node_type(node_type)?,
                    Err(e) => return Err(e.into()),
                };
                quiver::vectors::import_rows(db, model, score, (ty, &keys, rows, d), create_nodes)
            })
            .map_err(py_err)
        })
    }
}
