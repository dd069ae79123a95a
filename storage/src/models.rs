//! Stored models: named sets of `f32` arrays (embedding tables, optimizer
//! state) in one segment each, listed in the catalog. Storage keeps them
//! durable and checksummed; what the arrays mean is the engine's business.

use crate::catalog::ModelRef;
use crate::db::Database;
use crate::error::{Result, StorageError};
use crate::segment::{Kind, Segment, SegmentWriter};

/// A model's arrays, memory-mapped and verified.
pub struct StoredModel {
    info: ModelRef,
    segment: Segment,
}

impl StoredModel {
    /// Name, settings and metrics.
    pub fn info(&self) -> &ModelRef {
        &self.info
    }

    /// Number of arrays.
    pub fn len(&self) -> usize {
        self.segment.section_count()
    }

    /// True when the model has no arrays.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Array `i` (empty when out of range).
    pub fn array(&self, i: usize) -> &[f32] {
        self.segment.array(i)
    }
}

impl Database {
    /// Stores (or replaces) model `name` with the given arrays, atomically.
    pub fn save_model(&self, name: &str, settings: &str, arrays: &[&[f32]]) -> Result<()> {
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(StorageError::InvalidInput(format!(
                "model name {name:?} is empty or has control characters"
            )));
        }
        let _w = self.writer.lock();
        let mut catalog = self.catalog().as_ref().clone();
        catalog.model_seq += 1;
        let file = format!("model-{}", catalog.model_seq);
        let sections: Vec<&[u8]> = arrays.iter().map(|a| bytemuck::cast_slice(a)).collect();
        let segment = SegmentWriter::write(self.path(), &file, Kind::Model, &sections)?;
        let old = catalog
            .models
            .iter()
            .position(|m| m.name == name)
            .map(|i| catalog.models.remove(i));
        catalog.models.push(ModelRef {
            name: name.to_string(),
            settings: settings.to_string(),
            metrics: String::new(),
            segment,
        });
        self.commit_catalog(catalog)?;
        self.flush()?;
        if let Some(old) = old {
            let _ = std::fs::remove_file(self.path().join(old.segment.file));
        }
        Ok(())
    }

    /// Records evaluation results for a model.
    pub fn set_model_metrics(&self, name: &str, metrics: &str) -> Result<()> {
        let _w = self.writer.lock();
        let mut catalog = self.catalog().as_ref().clone();
        let m = catalog
            .models
            .iter_mut()
            .find(|m| m.name == name)
            .ok_or_else(|| no_model(name))?;
        m.metrics = metrics.to_string();
        self.commit_catalog(catalog)?;
        self.flush()
    }

    /// Opens a stored model, verifying its checksum.
    pub fn model(&self, name: &str) -> Result<StoredModel> {
        let info = self
            .catalog()
            .models
            .iter()
            .find(|m| m.name == name)
            .cloned()
            .ok_or_else(|| no_model(name))?;
        let segment = Segment::open(self.path(), &info.segment, Kind::Model)?;
        for i in 0..segment.section_count() {
            segment.check_array::<f32>(i)?;
        }
        Ok(StoredModel { info, segment })
    }

    /// Every stored model.
    pub fn models(&self) -> Vec<ModelRef> {
        self.catalog().models.clone()
    }
}

fn no_model(name: &str) -> StorageError {
    StorageError::InvalidInput(format!("no model named `{name}`"))
}
