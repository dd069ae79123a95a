//! Models to and from files from Python, as `quiver export` and
//! `quiver import-model --format npy` write and read them, and the graph as
//! arrays for networkx and PyTorch Geometric.

use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;

use crate::errors::py_err;
use crate::Database;

/// A checkpoint's HDF5 files read by a Python callable over h5py.
struct H5py(Py<PyAny>);

impl H5py {
    fn call<T>(
        &self,
        path: &std::path::Path,
        key: &str,
        values: bool,
        f: impl FnOnce(&Bound<'_, PyAny>) -> PyResult<T>,
    ) -> Result<T, String> {
        Python::attach(|py| {
            let r = self.0.call1(py, (path.to_string_lossy().as_ref(), key, values))?;
            f(r.bind(py))
        })
        .map_err(|e| e.to_string())
    }
}

impl quiver::pbg::Datasets for H5py {
    fn shape(&self, path: &std::path::Path, key: &str) -> Result<Option<Vec<usize>>, String> {
        self.call(path, key, false, |r| r.extract())
    }

    fn values(&self, path: &std::path::Path, key: &str) -> Result<Vec<f32>, String> {
        self.call(path, key, true, |r| {
            let a: numpy::PyReadonlyArray1<'_, f32> = r.extract()?;
            Ok(a.as_slice()?.to_vec())
        })
    }
}

#[pymethods]
impl Database {
    /// Writes the model's rows as `quiver export` does (`npy` or `tsv`, one
    /// file set per node type and `_relations`); returns the file count.
    #[pyo3(signature = (model, out, format="npy", force=false))]
    fn export_model(
        &self,
        py: Python<'_>,
        model: &str,
        out: std::path::PathBuf,
        format: &str,
        force: bool,
    ) -> PyResult<usize> {
        self.with(|g| {
            py.detach(|| {
                let m = quiver::Model::load(g.database(), model)?;
                quiver::vectors::export_model(g.database(), &m, format, &out, force)
            })
            .map_err(py_err)
        })
    }

    /// Stores every `STEM.npy` with its `STEM.keys.tsv` in `dir` as `model`
    /// (`quiver import-model --format npy`); returns (type, rows, nodes left
    /// without a row) per type.
    #[pyo3(signature = (model, dir, score="dot", create_nodes=false))]
    fn import_npy(
        &self,
        py: Python<'_>,
        model: &str,
        dir: std::path::PathBuf,
        score: &str,
        create_nodes: bool,
    ) -> PyResult<Vec<(String, usize, usize)>> {
        let score = quiver::vectors::Comparator::parse(score).map_err(py_err)?;
        self.with(|g| {
            py.detach(|| quiver::vectors::import_npy_dir(g.database(), &dir, model, score, create_nodes))
                .map_err(py_err)
        })
    }

    /// The files of a PyTorch-BigGraph checkpoint of `model` for `out`, for
    /// h5py to write: ([(file, [(dataset, float32 array, state_dict_key)])],
    /// [(file, text)]), as `quiver export --format pbg-checkpoint` writes them.
    #[allow(clippy::type_complexity)]
    fn pbg_checkpoint<'py>(
        &self,
        py: Python<'py>,
        model: &str,
        out: std::path::PathBuf,
        partitions: u32,
        force: bool,
    ) -> PyResult<(
        Vec<(String, Vec<(String, Bound<'py, PyAny>, Option<String>)>)>,
        Vec<(String, String)>,
    )> {
        let plan = self.with(|g| {
            py.detach(|| quiver::pbg::checkpoint_files(g.database(), model, partitions, &out, force))
                .map_err(py_err)
        })?;
        let mut files = Vec::new();
        for (file, datasets) in plan.hdf5 {
            let mut out = Vec::new();
            for d in datasets {
                let a = PyArray1::from_vec(py, d.data).reshape(d.shape)?.into_any();
                out.push((d.key, a, d.state_dict_key));
            }
            files.push((file, out));
        }
        Ok((files, plan.text))
    }

    /// Stores the PyTorch-BigGraph checkpoint in `dir` as `model`, as
    /// `quiver import-model` does; `read(path, key, values)` reads its HDF5
    /// files (h5py): None without such a dataset, else its shape, or with
    /// `values` its float32 values flat.
    fn import_pbg(
        &self,
        py: Python<'_>,
        model: &str,
        dir: std::path::PathBuf,
        read: Py<PyAny>,
    ) -> PyResult<()> {
        self.with(|g| {
            py.detach(|| quiver::pbg::import_checkpoint_with(g.database(), &dir, model, &H5py(read)))
                .map_err(py_err)
        })
    }

    /// A node type's keys in id order (None for a deleted node): the row
    /// order of `embeddings` and the node indices of `edge_index`.
    fn node_keys(&self, py: Python<'_>, node_type: &str) -> PyResult<Vec<Option<String>>> {
        self.with(|g| {
            let snap = g.database().snapshot();
            let ty = snap.catalog().node_type(node_type).map_err(py_err)?;
            Ok(py.detach(|| {
                (0..snap.node_count(ty))
                    .map(|id| match snap.is_deleted(ty, id) {
                        true => None,
                        false => snap.node_key(ty, id).map(str::to_string),
                    })
                    .collect()
            }))
        })
    }

    /// A relation's edges as (source ids int64, destination ids int64,
    /// weights float32), sources ascending.
    #[allow(clippy::type_complexity)]
    fn edge_index<'py>(
        &self,
        py: Python<'py>,
        relation: &str,
    ) -> PyResult<(
        Bound<'py, PyArray1<i64>>,
        Bound<'py, PyArray1<i64>>,
        Bound<'py, PyArray1<f32>>,
    )> {
        let (src, dst, weight) = self.with(|g| {
            let snap = g.database().snapshot();
            let rel = snap.catalog().relation(relation).map_err(py_err)?;
            let from = snap.catalog().relations[rel as usize].src;
            Ok(py.detach(|| {
                let (mut src, mut dst, mut weight) = (Vec::new(), Vec::new(), Vec::new());
                for node in 0..snap.node_count(from) {
                    for &to in snap.out_neighbors(rel, node).iter() {
                        src.push(i64::from(node));
                        dst.push(i64::from(to));
                        weight.push(snap.edge_weight(rel, node, to).unwrap_or(1.0));
                    }
                }
                (src, dst, weight)
            }))
        })?;
        Ok((
            PyArray1::from_vec(py, src),
            PyArray1::from_vec(py, dst),
            PyArray1::from_vec(py, weight),
        ))
    }
}
