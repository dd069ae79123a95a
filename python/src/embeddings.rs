//! Embeddings out to Python: a node type's rows (a read-only view of the
//! mapped part when the model keeps them in one), relation vectors, one
//! node's row.

use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::errors::{self, py_err, Error};
use crate::{seen, Database};

/// A model's node rows: memory-mapped as stored, or assembled (with the dimension).
enum Rows {
    Mapped((quiver::StoredPart, usize)),
    Owned(Vec<f32>, usize),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Mapped((p, d)) => p.array(0).len() / (*d).max(1),
            Rows::Owned(v, d) => v.len() / (*d).max(1),
        }
    }
}

/// Keeps a mapped model part alive under the numpy arrays that view it.
#[pyclass(frozen, module = "quiver._native")]
struct Mapped(quiver::StoredPart);

#[pymethods]
impl Database {
    /// (keys, float32 matrix [n, d]) of a node type: a read-only view of the
    /// memory-mapped stored rows when the model keeps them in one part (one
    /// partition), else an array that owns the assembled rows (one copy).
    fn embeddings<'py>(
        &self,
        py: Python<'py>,
        model: &str,
        node_type: &str,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyAny>)> {
        let parts = self.with(|g| {
            let info = g.database().model_info(model).map_err(py_err)?;
            Ok(info
                .parts
                .iter()
                .map(|(k, r)| format!("{k}:{}:{}", r.file, r.crc))
                .collect::<Vec<_>>()
                .join(","))
        })?;
        let slot = (model.to_string(), node_type.to_string());
        if let Some((p, keys, array)) = self
            .views
            .lock()
            .map_err(|_| Error::new_err("poisoned"))?
            .get(&slot)
        {
            if *p == parts {
                return Ok((PyList::new(py, keys.bind(py).iter())?, array.bind(py).clone()));
            }
        }
        let (names, rows) = self.with(|g| {
            py.detach(|| {
                let db = g.database();
                let snap = db.snapshot();
                let ty = snap.catalog().node_type(node_type)?;
                let rows = match quiver::Model::mapped_rows(db, model, ty)? {
                    Some(mapped) => Rows::Mapped(mapped),
                    None => {
                        let mut m = quiver::Model::load(db, model)?;
                        seen(&m, model, snap.catalog(), Some(ty), None)?;
                        Rows::Owned(std::mem::take(&mut m.nodes[ty as usize]), m.dim())
                    }
                };
                let n = rows.len();
                let names = (0..n as u32)
                    .map(|id| snap.node_key(ty, id).unwrap_or("").to_string())
                    .collect::<Vec<_>>();
                Ok::<_, quiver::Error>((names, rows))
            })
            .map_err(py_err)
        })?;
        let n = names.len();
        let keys = PyList::new(py, names)?;
        let array = match rows {
            Rows::Owned(v, dim) => PyArray1::from_vec(py, v).reshape([n, dim])?.into_any(),
            Rows::Mapped((part, dim)) => {
                let owner = Bound::new(py, Mapped(part))?;
                let rows = owner.get().0.array(0);
                let view = numpy::ndarray::ArrayView2::from_shape((n, dim), rows)
                    .map_err(|e| Error::new_err(format!("stored rows: {e}")))?;
                // SAFETY: `view` borrows the mapped segment `owner` holds;
                // the array keeps `owner` alive and the mapping never moves.
                #[allow(unsafe_code)]
                let a = unsafe { numpy::PyArray2::borrow_from_array(&view, owner.clone().into_any()) };
                let kw = PyDict::new(py);
                kw.set_item("write", false)?;
                a.call_method("setflags", (), Some(&kw))?;
                let a = a.into_any();
                self.views.lock().map_err(|_| Error::new_err("poisoned"))?.insert(
                    slot,
                    (parts, PyTuple::new(py, keys.iter())?.unbind(), a.clone().unbind()),
                );
                a
            }
        };
        Ok((keys, array))
    }

    /// (relation names, float32 matrix [relations, d]).
    fn relation_vectors<'py>(
        &self,
        py: Python<'py>,
        model: &str,
    ) -> PyResult<(Vec<String>, Bound<'py, PyAny>)> {
        let (names, rows, dim) = self.with(|g| {
            let db = g.database();
            let m = quiver::Model::load(db, model).map_err(py_err)?;
            let names = quiver::tasks::relation_row_names(&db.snapshot(), &m);
            Ok((names, m.relations.clone(), m.dim()))
        })?;
        let n = rows.len() / dim.max(1);
        Ok((names, PyArray1::from_vec(py, rows).reshape([n, dim])?.into_any()))
    }

    /// One node's row; a node created after training gets one inferred from
    /// its neighbours, as the query layer does (models are cached while their
    /// stored parts and the graph are unchanged).
    fn embedding<'py>(
        &self,
        py: Python<'py>,
        model: &str,
        node_type: &str,
        key: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let row = self.with(|g| {
            let db = g.database();
            let snap = db.snapshot();
            let m = g.model(model).map_err(py_err)?;
            let ty = snap.catalog().node_type(node_type).map_err(py_err)?;
            let id = snap.node_id(ty, key).ok_or_else(|| {
                errors::StorageError::new_err(format!("no {node_type} node with key `{key}`"))
            })?;
            seen(&m, model, snap.catalog(), Some(ty), None).map_err(py_err)?;
            Ok(m.node(ty, id).to_vec())
        })?;
        Ok(PyArray1::from_vec(py, row).into_any())
    }
}
