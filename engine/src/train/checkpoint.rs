//! Where a run stands and what a checkpoint saves: the position, the
//! changed partitions, pools and relation vectors in one atomic group, and
//! the check that nothing non-finite is saved.

use super::*;

/// Where a run stands, stored with the model at every checkpoint.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(super) struct Progress {
    /// Next epoch to train.
    pub(super) epoch: usize,
    /// Next bucket (index in the epoch's order) to train.
    pub(super) bucket: usize,
    /// The catalog's edge version the buckets had.
    pub(super) edge_version: u64,
    /// Validation so far, when the run validates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) valid: Option<ValidState>,
    /// Mean loss per edge of every finished epoch: (1-based epoch, mean).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) losses: Vec<(usize, f64)>,
    /// Loss and edges of the epoch in progress so far, so that a resumed
    /// epoch's mean counts the visits before the stop.
    #[serde(default)]
    pub(super) partial: (f64, u64),
}

impl Progress {
    /// `self` with the epoch whose visits summed to `sums` finished.
    pub(super) fn with_epoch(&self, epoch: usize, (loss, edges): (f64, u64)) -> Progress {
        let mut next = self.clone();
        next.losses.push((epoch + 1, loss / edges.max(1) as f64));
        next.partial = (0.0, 0);
        next
    }
}

/// Where the run stands after visit `b` of `epoch` (empty when it is done).
/// After an epoch's last visit that validation still has to score
/// (`validating`), the run stands at the end of that epoch, not at the next:
/// a run killed before the scoring was recorded scores it when resumed, as
/// the uninterrupted run did.
/// `sums` are the loss and edges of the epoch's visits so far.
pub(super) fn progress_after(
    ctx: &RunCtx<'_>,
    start: &Progress,
    (epoch, b): (usize, usize),
    visits: usize,
    validating: bool,
    sums: (f64, u64),
) -> String {
    let next = match (b + 1 < visits, validating) {
        (true, _) => Progress {
            epoch,
            bucket: b + 1,
            partial: sums,
            ..start.clone()
        },
        (false, true) => Progress {
            epoch,
            bucket: visits,
            ..start.with_epoch(epoch, sums)
        },
        (false, false) => Progress {
            epoch: epoch + 1,
            bucket: 0,
            ..start.with_epoch(epoch, sums)
        },
    };
    // The last checkpoint marks the run finished; a refresh's is marked in `finish`.
    if next.epoch >= ctx.cfg().epochs && ctx.cfg().refresh.is_none() {
        String::new()
    } else {
        serde_json::to_string(&next).unwrap_or_default()
    }
}

/// A checkpoint is due at least this long after the last one began, and no
/// sooner than ten times as long as the last one took (so that checkpoints
/// take at most about a tenth of the run); also at every epoch's end and
/// when the run is stopped.
pub(super) const CHECKPOINT_SECS: f64 = 10.0;

/// Saves, in one atomic group with `progress`, every partition changed
/// since the last checkpoint (the dirty resident ones, and the staged ones
/// evicted meanwhile), the relation vectors and the pools that changed.
pub(super) fn checkpoint(ctx: &RunCtx<'_>, state: &mut RunState<'_>, progress: &str) -> Result<()> {
    let p = ctx.cfg().partitions;
    let dirty: Vec<(PartId, &Part)> = (state.resident.iter().enumerate())
        .filter_map(|(slot, part)| Some((PartId::of_slot(slot, p), part.as_ref().filter(|x| x.dirty)?)))
        .collect();
    let keys: Vec<String> = dirty.iter().map(|(id, _)| id.key()).collect();
    let arrays: Vec<[&[f32]; 2]> = dirty
        .iter()
        .map(|(_, part)| [&part.table[..], &part.state[..]])
        .collect();
    let mut parts: Vec<(&str, &[&[f32]])> = keys
        .iter()
        .map(String::as_str)
        .zip(arrays.iter().map(|a| &a[..]))
        .collect();
    let rel_arrays: [&[f32]; 2] = [&state.relations, &state.relation_state];
    parts.push((RELATIONS_KEY, &rel_arrays));
    state.dirty_pools.sort_unstable();
    state.dirty_pools.dedup();
    let pool_keys: Vec<String> = state.dirty_pools.iter().map(|&t| pool_key(t as usize)).collect();
    let pool_arrays: Vec<Vec<&[f32]>> = state
        .dirty_pools
        .iter()
        .map(|&t| {
            (0..p)
                .flat_map(|part| {
                    state
                        .pools
                        .get(&PartId { ty: t, part })
                        .map_or([&[][..]; 3], Pool::arrays)
                })
                .collect()
        })
        .collect();
    parts.extend(
        pool_keys
            .iter()
            .map(String::as_str)
            .zip(pool_arrays.iter().map(|a| &a[..])),
    );
    let staged: Vec<(String, StagedPart)> = (state.staged.parts.drain())
        .map(|(id, s)| (id.key(), s))
        .collect();
    ctx.db
        .save_model_checkpoint(ctx.name, &ctx.settings_json, progress, &parts, staged)?;
    state.dirty_pools.clear();
    for part in state.resident.iter_mut().flatten() {
        part.dirty = false;
    }
    Ok(())
}

/// What is not finite after a visit (its loss, a row of a partition it
/// trained, a relation vector), if anything.
pub(super) fn diverged(loss: f64, state: &RunState<'_>, trained: &[PartId], p: u32) -> Option<String> {
    if !loss.is_finite() {
        return Some(format!("the loss is {loss}"));
    }
    let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
    if !finite(&state.relations) {
        return Some("a relation vector is not finite".into());
    }
    let part = trained.iter().find(|id| {
        state.resident[id.slot(p)]
            .as_ref()
            .is_some_and(|part| !finite(&part.table))
    })?;
    Some(format!(
        "a row of node type {}'s partition {} is not finite",
        part.ty, part.part
    ))
}

/// The end of a run: the relation vectors saved with the model marked
/// finished; with validation, the best epoch's model made the model; the
/// loss curve (each epoch's mean loss per edge) and the validation curve
/// stored as its metrics; the index built when the settings ask for one.
pub(super) fn finish(
    ctx: &RunCtx<'_>,
    state: &RunState<'_>,
    start: &Progress,
    valid: Option<&Validation>,
    stop: &AtomicBool,
) -> Result<()> {
    let (db, name, cfg) = (ctx.db, ctx.name, ctx.cfg());
    let rel_arrays: [&[f32]; 2] = [&state.relations, &state.relation_state];
    let mut last: &[(&str, &[&[f32]])] = &[(RELATIONS_KEY, &rel_arrays)];
    if let (Some(r), Some(prev)) = (&cfg.refresh, ctx.prev) {
        // A refresh is whole (every partition, the index carried over)
        // before it is marked finished: killed in between, it resumes here.
        let at_end = Progress {
            epoch: cfg.epochs,
            bucket: 0,
            partial: (0.0, 0),
            ..start.clone()
        };
        let pending = serde_json::to_string(&at_end).map_err(|e| EngineError::Internal(e.to_string()))?;
        let best = best_model_name(name);
        if valid.is_some() && db.model_info(&best).is_ok() {
            // The best epoch (or the old model) becomes the model, its
            // relation vectors with it; the partitions no epoch trained
            // are added below.
            db.replace_model(&best, name, Some(&pending))?;
            last = &[];
        }
        let untrained = untrained_parts(ctx)?;
        db.save_model_checkpoint(name, &ctx.settings_json, &pending, last, untrained)?;
        crate::refresh::carry_indexes(db, &r.model, name, prev, cfg.threads, stop)?;
        // Saved: the carried indexes were built from these parts.
        last = &[];
    }
    // A run whose last buckets were empty, or that had nothing left to do, still ends finished.
    db.save_model_parts(name, &ctx.settings_json, "", last)?;
    // Each epoch's mean loss per edge, as the curves of `quiver serve` and Python show it.
    let losses: Vec<_> = (start.losses.iter())
        .map(|&(epoch, mean)| serde_json::json!({"epoch": epoch, "mean_loss": mean}))
        .collect();
    let mut metrics = serde_json::json!({ "loss": losses });
    if let (Some(v), Some(st)) = (valid, &start.valid) {
        // The best model becomes the model, with what chose it (a refresh's already has).
        if cfg.refresh.is_none() {
            db.replace_model(&best_model_name(name), name, None)?;
        }
        let curve: Vec<_> = (st.curve.iter())
            .map(|&(epoch, mrr, hits10)| serde_json::json!({"epoch": epoch, "mrr": mrr, "hits@10": hits10}))
            .collect();
        metrics["valid"] = serde_json::json!({"metric": v.metric, "best": st.best,
            "epoch": if st.initial { 0 } else { st.best_epoch + 1 }, "triples": v.triples.len(),
            "held_out": cfg.validation.is_some(), "curve": curve});
    }
    db.set_model_metrics(name, &metrics.to_string())?;
    if cfg.index {
        for ty in 0..ctx.settings.node_counts.len() as u32 {
            let settings = crate::IndexSettings {
                threads: cfg.threads,
                ..Default::default()
            };
            crate::index_model(db, name, ty, &settings, &|_, _| !stop.load(Relaxed))?;
        }
    }
    Ok(())
}

/// For a refresh, the partitions it never loaded (no edge of its scope
/// falls in them), staged from their first rows (the refreshed model's, or
/// cold-start rows for new nodes), so that the new version is whole; for
/// other runs nothing (a partition never trained loads as initialised).
fn untrained_parts(ctx: &RunCtx<'_>) -> Result<Vec<(String, StagedPart)>> {
    let cfg = ctx.cfg();
    if cfg.refresh.is_none() {
        return Ok(Vec::new());
    }
    let info = ctx.db.model_info(ctx.name)?;
    let mut staged = Vec::new();
    for t in 0..ctx.settings.node_counts.len() {
        for part in 0..cfg.partitions {
            let id = PartId { ty: t as u32, part };
            if info.parts.iter().any(|(k, _)| *k == id.key()) {
                continue;
            }
            let range = ctx.settings.part_range(t, part);
            let state = first_state(ctx, id, range.clone());
            let rows = first_rows(cfg, ctx.prev, &ctx.snap, id, range);
            staged.push((id.key(), ctx.db.stage_model_part(&[&rows, &state])?));
        }
    }
    Ok(staged)
}
