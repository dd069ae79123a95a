//! Stored models: named sets of parts, each part a segment of `f32` arrays
//! (an embedding partition and its optimizer state, the relation vectors),
//! listed in the catalog. Storage keeps them durable and checksummed and lets
//! a checkpoint replace some parts atomically; what the arrays mean is the
//! engine's business.

use crate::catalog::{Catalog, ModelRef, SegmentRef};
use crate::db::{check_name, Database, MAX_NAME};
use crate::error::{IoContext, Result, StorageError};
use crate::segment::{make_durable, sync_dir, Kind, Segment, SegmentWriter};

/// One part of a stored model, memory-mapped and verified.
pub struct StoredPart {
    segment: Segment,
}

impl StoredPart {
    /// Number of arrays.
    pub fn len(&self) -> usize {
        self.segment.section_count()
    }

    /// True when the part has no arrays.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Array `i` (empty when out of range).
    pub fn array(&self, i: usize) -> &[f32] {
        self.segment.array(i)
    }

    /// Section `i` as bytes (empty when out of range): the sections of a
    /// part written by [`Database::save_model_blob`].
    pub fn bytes(&self, i: usize) -> &[u8] {
        self.segment.bytes(i)
    }
}

/// A model part written but not yet part of any model (a partition a
/// training run evicted between checkpoints): its file is not synced and no
/// catalog entry names it, so a crash leaves only a file that the next open
/// removes. [`Database::save_model_checkpoint`] makes it durable and a part
/// of a model; [`Database::discard_staged`] deletes it.
#[derive(Debug)]
pub struct StagedPart {
    r: SegmentRef,
}

impl Database {
    /// Writes `parts` of model `name` (creating the model if needed) and sets
    /// its settings and progress, in one atomic catalog change: after a crash
    /// either all of these parts are the model's or none. Parts not named keep
    /// their stored versions.
    pub fn save_model_parts(
        &self,
        name: &str,
        settings: &str,
        progress: &str,
        parts: &[(&str, &[&[f32]])],
    ) -> Result<()> {
        self.save_model_checkpoint(name, settings, progress, parts, Vec::new())
    }

    /// Writes `arrays` as a staged part: cheap (no sync), and read back with
    /// [`Database::staged_part`] until a checkpoint takes it or it is discarded.
    pub fn stage_model_part(&self, arrays: &[&[f32]]) -> Result<StagedPart> {
        let n = self.staged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sections: Vec<&[u8]> = arrays.iter().map(|a| bytemuck::cast_slice(a)).collect();
        // "model-" files that no catalog entry names are removed at open.
        let file = format!("model-staged-{n}");
        let r = SegmentWriter::filled(self.path(), &file, Kind::Model, &sections)?.finish_unsynced()?;
        Ok(StagedPart { r })
    }

    /// A staged part's arrays, verified as a stored part's are.
    pub fn staged_part(&self, staged: &StagedPart) -> Result<StoredPart> {
        Ok(StoredPart {
            segment: Segment::open(self.path(), &staged.r, Kind::Model)?,
        })
    }

    /// Deletes a staged part's file.
    pub fn discard_staged(&self, staged: StagedPart) {
        let _ = std::fs::remove_file(self.path().join(staged.r.file));
    }

    /// [`Database::save_model_parts`] that also makes `staged` parts, each
    /// under its key, parts of the model in the same atomic catalog change
    /// (they are synced first).
    pub fn save_model_checkpoint(
        &self,
        name: &str,
        settings: &str,
        progress: &str,
        parts: &[(&str, &[&[f32]])],
        staged: Vec<(String, StagedPart)>,
    ) -> Result<()> {
        check_name("model", name, MAX_NAME)?;
        let _w = self.writer.lock();
        let mut catalog = self.catalog().as_ref().clone();
        let mut written: Vec<(String, SegmentRef)> = Vec::with_capacity(parts.len() + staged.len());
        for (key, arrays) in parts {
            catalog.model_seq += 1;
            let file = format!("model-{}", catalog.model_seq);
            let sections: Vec<&[u8]> = arrays.iter().map(|a| bytemuck::cast_slice(a)).collect();
            written.push((
                key.to_string(),
                SegmentWriter::write(self.path(), &file, Kind::Model, &sections)?,
            ));
        }
        if !staged.is_empty() {
            for (key, StagedPart { r }) in staged {
                catalog.model_seq += 1;
                let file = format!("model-{}", catalog.model_seq);
                make_durable(self.path(), &r.file, &file)?;
                written.push((key, SegmentRef { file, ..r }));
            }
            sync_dir(self.path())?;
        }
        let at = match catalog.models.iter().position(|m| m.name == name) {
            Some(i) => i,
            None => {
                catalog.models.push(ModelRef {
                    name: name.to_string(),
                    settings: String::new(),
                    progress: String::new(),
                    metrics: String::new(),
                    parts: Vec::new(),
                });
                catalog.models.len() - 1
            }
        };
        let model = &mut catalog.models[at];
        model.settings = settings.to_string();
        model.progress = progress.to_string();
        let mut replaced = Vec::new();
        for (key, r) in written {
            match model.parts.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
                Ok(i) => replaced.push(std::mem::replace(&mut model.parts[i].1, r)),
                Err(i) => model.parts.insert(i, (key, r)),
            }
        }
        self.commit_and_delete(catalog, replaced)
    }

    /// Starts model `name` afresh with `settings` and `progress` and no
    /// parts, replacing any model of that name in the same catalog change:
    /// after a crash or an I/O error the old model is either still whole or
    /// replaced, never gone.
    pub fn start_model(&self, name: &str, settings: &str, progress: &str) -> Result<()> {
        check_name("model", name, MAX_NAME)?;
        let _w = self.writer.lock();
        let mut catalog = self.catalog().as_ref().clone();
        let old = catalog
            .models
            .iter()
            .position(|m| m.name == name)
            .map(|i| catalog.models.remove(i));
        catalog.models.push(ModelRef {
            name: name.to_string(),
            settings: settings.to_string(),
            progress: progress.to_string(),
            metrics: String::new(),
            parts: Vec::new(),
        });
        self.commit_and_delete(catalog, old.into_iter().flat_map(|m| m.parts).map(|(_, r)| r))
    }

    /// Deletes model `name` and its files.
    pub fn drop_model(&self, name: &str) -> Result<()> {
        let _w = self.writer.lock();
        let mut catalog = self.catalog().as_ref().clone();
        let i = catalog
            .models
            .iter()
            .position(|m| m.name == name)
            .ok_or_else(|| no_model(name))?;
        let old = catalog.models.remove(i);
        self.commit_and_delete(catalog, old.parts.into_iter().map(|(_, r)| r))
    }

    /// Copies model `from` as a new, finished model `to` (an error when `to`
    /// exists): its settings, metrics and every part, each part a
    /// new name for the same immutable segment file (a hard link, or a copy
    /// where the file system has none), in one catalog change.
    pub fn copy_model(&self, from: &str, to: &str) -> Result<()> {
        check_name("model", to, MAX_NAME)?;
        let _w = self.writer.lock();
        let mut catalog = self.catalog().as_ref().clone();
        let mut copy = catalog
            .models
            .iter()
            .find(|m| m.name == from)
            .cloned()
            .ok_or_else(|| no_model(from))?;
        if catalog.models.iter().any(|m| m.name == to) {
            return Err(StorageError::InvalidInput(format!("model `{to}` exists")));
        }
        copy.name = to.to_string();
        copy.progress.clear();
        for (_, r) in &mut copy.parts {
            catalog.model_seq += 1;
            let file = format!("model-{}", catalog.model_seq);
            let (src, dst) = (self.path().join(&r.file), self.path().join(&file));
            // Renamed into place only once whole: a crash leaves an unreferenced file.
            let tmp = self.path().join(format!("{file}.tmp"));
            std::fs::hard_link(&src, &tmp)
                .or_else(|_| std::fs::copy(&src, &tmp).map(drop))
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &dst))
                .at(&dst)?;
            r.file = file;
        }
        sync_dir(self.path())?;
        catalog.models.push(copy);
        self.commit_and_delete(catalog, [])
    }

    /// Renames model `from` to `to`, replacing any model `to`, in one catalog
    /// change (after a crash `to` is whole, old or new); the replaced
    /// model's files are deleted after. `to`'s record of the graph it was
    /// trained on (part [`crate::SEEN_KEY`]) stays when `from` has none: a
    /// run's best epoch, kept under another name, replaces the run's rows,
    /// not what it was trained on. With `progress`, the moved model's
    /// progress becomes that in the same change.
    pub fn replace_model(&self, from: &str, to: &str, progress: Option<&str>) -> Result<()> {
        check_name("model", to, MAX_NAME)?;
        let _w = self.writer.lock();
        let mut catalog = self.catalog().as_ref().clone();
        let i = catalog
            .models
            .iter()
            .position(|m| m.name == from)
            .ok_or_else(|| no_model(from))?;
        let mut moved = catalog.models.remove(i);
        moved.name = to.to_string();
        if let Some(p) = progress {
            moved.progress = p.to_string();
        }
        let seen = |m: &ModelRef| m.parts.iter().position(|(k, _)| k == crate::SEEN_KEY);
        if let Some(at) = catalog.models.iter_mut().find(|m| m.name == to) {
            if let (None, Some(j)) = (seen(&moved), seen(at)) {
                let part = at.parts.remove(j);
                let k = moved.parts.partition_point(|(k, _)| k.as_str() < crate::SEEN_KEY);
                moved.parts.insert(k, part);
            }
        }
        let old = catalog
            .models
            .iter()
            .position(|m| m.name == to)
            .map(|j| std::mem::replace(&mut catalog.models[j], moved.clone()));
        if old.is_none() {
            catalog.models.push(moved);
        }
        self.commit_and_delete(catalog, old.into_iter().flat_map(|m| m.parts).map(|(_, r)| r))
    }

    /// Commits `catalog` durably, then deletes the segment files it no
    /// longer references (a crash in between leaves only unreferenced files).
    fn commit_and_delete(&self, catalog: Catalog, gone: impl IntoIterator<Item = SegmentRef>) -> Result<()> {
        self.commit_catalog(catalog)?;
        self.flush()?;
        for r in gone {
            let _ = std::fs::remove_file(self.path().join(r.file));
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

    /// The catalog entry of model `name`.
    pub fn model_info(&self, name: &str) -> Result<ModelRef> {
        self.catalog()
            .models
            .iter()
            .find(|m| m.name == name)
            .cloned()
            .ok_or_else(|| no_model(name))
    }

    /// Opens part `key` of model `name`, verifying its checksum; `None` when
    /// the model has no such part.
    pub fn model_part(&self, name: &str, key: &str) -> Result<Option<StoredPart>> {
        let info = self.model_info(name)?;
        let Some((_, r)) = info.parts.iter().find(|(k, _)| k == key) else {
            return Ok(None);
        };
        let segment = Segment::open(self.path(), r, Kind::Model)?;
        for i in 0..segment.section_count() {
            segment.check_array::<f32>(i)?;
        }
        Ok(Some(StoredPart { segment }))
    }

    /// Writes part `key` of model `name` (which must exist) as byte
    /// sections of the given lengths that `fill` writes in place (a search
    /// index serialized straight into the file), and adds it to the model in
    /// one catalog change, replacing any part of that key: after a crash or
    /// an error the model has the old part or the new one, never half of
    /// one. `fill`'s error leaves nothing behind.
    pub fn save_model_blob<E: From<StorageError>>(
        &self,
        name: &str,
        key: &str,
        lens: &[usize],
        fill: impl FnOnce(Vec<&mut [u8]>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        self.model_info(name)?;
        // Written outside the writer lock (it may be large); its name is
        // fixed under the lock, below.
        let n = self.staged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = format!("model-staged-{n}");
        let mut w = SegmentWriter::create(self.path(), &file, Kind::Model, lens)?;
        fill(w.sections())?;
        let staged = StagedPart {
            r: w.finish_unsynced()?,
        };
        let _w = self.writer.lock();
        let mut catalog = self.catalog().as_ref().clone();
        let Some(model) = catalog.models.iter_mut().find(|m| m.name == name) else {
            self.discard_staged(staged);
            return Err(no_model(name).into());
        };
        catalog.model_seq += 1;
        let final_name = format!("model-{}", catalog.model_seq);
        if let Err(e) =
            make_durable(self.path(), &staged.r.file, &final_name).and_then(|_| sync_dir(self.path()))
        {
            self.discard_staged(staged);
            return Err(e.into());
        }
        let r = SegmentRef {
            file: final_name,
            ..staged.r
        };
        let replaced = match model.parts.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            Ok(i) => Some(std::mem::replace(&mut model.parts[i].1, r)),
            Err(i) => {
                model.parts.insert(i, (key.to_string(), r));
                None
            }
        };
        Ok(self.commit_and_delete(catalog, replaced)?)
    }

    /// Opens byte part `key` of model `name`, verifying its checksum by
    /// reading the file rather than through the map, and mapping it for
    /// random access: the process's resident memory then grows with the
    /// pages that are used, not with the part (a search index touches a few
    /// pages per query). `None` when the model has no such part.
    pub fn model_blob(&self, name: &str, key: &str) -> Result<Option<StoredPart>> {
        let info = self.model_info(name)?;
        let Some((_, r)) = info.parts.iter().find(|(k, _)| k == key) else {
            return Ok(None);
        };
        Ok(Some(StoredPart {
            segment: Segment::open_random(self.path(), r, Kind::Model)?,
        }))
    }

    /// Every stored model.
    pub fn models(&self) -> Vec<ModelRef> {
        self.catalog().models.clone()
    }
}

fn no_model(name: &str) -> StorageError {
    StorageError::ModelNotFound(name.to_string())
}
