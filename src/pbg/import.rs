//! PBG checkpoints read through libhdf5 (the `hdf5-metno` crate).

use super::*;

/// Stores the PBG checkpoint in `dir` as quiver model `name`, as
/// [`import_checkpoint_with`] does, reading its HDF5 files with libhdf5.
pub fn import_checkpoint(db: &Database, dir: &Path, name: &str) -> Result<()> {
    import_checkpoint_with(db, dir, name, &Hdf5)
}

struct Hdf5;

impl Datasets for Hdf5 {
    fn shape(&self, path: &Path, key: &str) -> std::result::Result<Option<Vec<usize>>, String> {
        use hdf5::types::{FloatSize, TypeDescriptor};
        let f = hdf5::File::open(path).map_err(|e| e.to_string())?;
        if !f.link_exists(key) {
            return Ok(None);
        }
        let ds = f.dataset(key).map_err(|e| e.to_string())?;
        let ty = ds
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(|e| e.to_string())?;
        if ty != TypeDescriptor::Float(FloatSize::U4) {
            return Err(format!("values of type {ty}; PBG writes float32"));
        }
        Ok(Some(ds.shape()))
    }

    fn values(&self, path: &Path, key: &str) -> std::result::Result<Vec<f32>, String> {
        let f = hdf5::File::open(path).map_err(|e| e.to_string())?;
        f.dataset(key)
            .and_then(|ds| ds.read_raw())
            .map_err(|e| e.to_string())
    }
}
