//! Validation during a run: the schedule, the best model kept so far and
//! early stopping.

use super::*;

/// The best validation score so far, the scorings since it, and every
/// scoring: (1-based epoch, MRR, Hits@10).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(super) struct ValidState {
    pub(super) best_epoch: usize,
    pub(super) best: f64,
    pub(super) stale: usize,
    #[serde(default)]
    pub(super) curve: Vec<(usize, f64, f64)>,
    /// The best is the run's starting point (a refresh's old model).
    #[serde(default)]
    pub(super) initial: bool,
}

/// Validation during a run, as LibKGE and PyKEEN do it: every `every`
/// epochs (and after the last) the model is scored on `triples` (filtered
/// by the graph and the triples themselves, both directions, realistic
/// ties: [`crate::evaluate`]); the best model so far is kept (as model
/// `NAME~best` while the run goes on) and becomes the model when the run
/// ends; after `patience` scorings without improvement (0: never) the run
/// ends early.
#[derive(Debug, Clone)]
pub struct Validation {
    /// The validation triples.
    pub triples: Vec<crate::Triple>,
    /// Epochs between scorings.
    pub every: usize,
    /// Scorings without improvement before stopping (0: train all epochs).
    pub patience: usize,
    /// What "better" means.
    pub metric: ValidMetric,
}

/// Where a validating run keeps its best model until it ends.
pub fn best_model_name(name: &str) -> String {
    format!("{name}~best")
}

/// Scores the model after `epoch` when the schedule says so, keeps it when
/// it is the best so far, and records the state in the run's progress.
/// True when patience ran out.
pub(super) fn validate(
    ctx: &RunCtx<'_>,
    v: &Validation,
    device: &Device,
    epoch: usize,
    start: &mut Progress,
    on_event: &mut dyn FnMut(&TrainEvent),
) -> Result<bool> {
    let last = epoch + 1 == ctx.cfg().epochs;
    if !v.due(epoch, ctx.cfg().epochs) {
        return Ok(false);
    }
    let (db, name) = (ctx.db, ctx.name);
    // The parts as saved after the epoch's last bucket.
    let model = Model::load(db, name)?;
    let r = crate::evaluate(db, &model, &v.triples, &v.triples, device)?;
    let value = match v.metric {
        ValidMetric::Mrr => r.mrr,
        ValidMetric::Hits10 => r.hits10,
    };
    let st = ValidState::record(start.valid.take(), epoch, value, (r.mrr, r.hits10));
    if st.stale == 0 {
        // Kept as saved (its partitions, pools and optimizer state), so
        // that a warm start or a refresh of the model continues it.
        let keep = best_model_name(name);
        if db.catalog().models.iter().any(|m| m.name == keep) {
            db.drop_model(&keep)?;
        }
        db.copy_model(name, &keep)?;
    }
    on_event(&TrainEvent::Validation {
        epoch,
        mrr: r.mrr,
        hits10: r.hits10,
        best_epoch: st.best_epoch,
        best: st.best,
    });
    let done = v.patience > 0 && st.stale >= v.patience;
    start.valid = Some(st);
    if !last {
        let next = Progress {
            epoch: epoch + 1,
            bucket: 0,
            ..start.clone()
        };
        let json = serde_json::to_string(&next).map_err(|e| EngineError::Internal(e.to_string()))?;
        db.save_model_parts(name, &ctx.settings_json, &json, &[])?;
    }
    Ok(done)
}

impl ValidState {
    /// The state after scoring `value` (and MRR, Hits@10) after `epoch`:
    /// `stale` is 0 when it is the best so far.
    fn record(state: Option<ValidState>, epoch: usize, value: f64, (mrr, hits10): (f64, f64)) -> ValidState {
        let mut st = state.unwrap_or(ValidState {
            best_epoch: 0,
            best: f64::NEG_INFINITY,
            stale: 0,
            curve: Vec::new(),
            initial: false,
        });
        st.curve.push((epoch + 1, mrr, hits10));
        if value > st.best {
            (st.best_epoch, st.best, st.stale, st.initial) = (epoch, value, 0, false);
        } else {
            st.stale += 1;
        }
        st
    }
}

/// A refresh's starting point (the old model's rows, cold-start rows for
/// nodes created since), scored as its first candidate and kept as model
/// `NAME~best`: the best so far, at epoch 0 of the curve.
pub(super) fn baseline(
    db: &Database,
    name: &str,
    settings: &Settings,
    prev: &Model,
    v: &Validation,
    device: &Device,
) -> Result<ValidState> {
    let mut m = prev.clone();
    m.extend_to(&db.snapshot());
    let d = m.dim();
    m.nodes.resize(settings.node_counts.len(), Vec::new());
    for (rows, &n) in m.nodes.iter_mut().zip(&settings.node_counts) {
        rows.resize(n as usize * d, 0.0);
    }
    m.config = settings.config.clone();
    let r = crate::evaluate(db, &m, &v.triples, &v.triples, device)?;
    let value = match v.metric {
        ValidMetric::Mrr => r.mrr,
        ValidMetric::Hits10 => r.hits10,
    };
    // Stored as the run stores its partitions, with the old optimizer state.
    let cfg = &settings.config;
    let old = match &cfg.refresh {
        Some(r) => Some(crate::refresh::OldState::load(db, &r.model, cfg)?),
        None => None,
    };
    let width = cfg.optimizer.state_width(d);
    let state_of = |t: usize, range: std::ops::Range<u32>| -> Vec<f32> {
        let mut s = vec![0.0; range.len() * width];
        if let Some(o) = old.as_ref().and_then(|o| o.nodes.get(t)) {
            let end = (range.end as usize * width)
                .min(o.len())
                .max(range.start as usize * width);
            s[..end - range.start as usize * width].copy_from_slice(&o[range.start as usize * width..end]);
        }
        s
    };
    let mut parts: Vec<(String, [Vec<f32>; 2])> = Vec::new();
    for t in 0..settings.node_counts.len() {
        for p in 0..cfg.partitions {
            let r = settings.part_range(t, p);
            let rows = m.nodes[t][r.start as usize * d..r.end as usize * d].to_vec();
            parts.push((
                PartId {
                    ty: t as u32,
                    part: p,
                }
                .key(),
                [rows, state_of(t, r)],
            ));
        }
    }
    let rel_state = (old.map(|o| o.relations))
        .filter(|s| s.len() == settings.relation_rows() * width)
        .unwrap_or_else(|| vec![0.0; settings.relation_rows() * width]);
    parts.push((RELATIONS_KEY.to_string(), [m.relations.clone(), rel_state]));
    let arrays: Vec<[&[f32]; 2]> = parts.iter().map(|(_, [a, b])| [&a[..], &b[..]]).collect();
    let named: Vec<(&str, &[&[f32]])> = parts
        .iter()
        .zip(&arrays)
        .map(|((k, _), a)| (k.as_str(), &a[..]))
        .collect();
    let keep = best_model_name(name);
    if db.catalog().models.iter().any(|m| m.name == keep) {
        db.drop_model(&keep)?;
    }
    let json = serde_json::to_string(settings).map_err(|e| EngineError::Internal(e.to_string()))?;
    db.save_model_parts(&keep, &json, "", &named)?;
    Ok(ValidState {
        best_epoch: 0,
        best: value,
        stale: 0,
        curve: vec![(0, r.mrr, r.hits10)],
        initial: true,
    })
}

/// A refresh that validates scores its starting point first (before its
/// first bucket, also when it resumes from there) and keeps it as the best
/// so far ([`baseline`]), so that it never ends below the old model on
/// validation; the state is saved with the run's progress.
pub(super) fn refresh_baseline(
    db: &Database,
    name: &str,
    settings: &Settings,
    start: &mut Progress,
    (prev, valid): (Option<&Model>, Option<&Validation>),
    device: &Device,
) -> Result<()> {
    let fresh = start.valid.is_none() && start.epoch == 0 && start.bucket == 0;
    if let (Some(_), Some(prev), Some(v), true) = (&settings.config.refresh, prev, valid, fresh) {
        start.valid = Some(baseline(db, name, settings, prev, v, device)?);
        let json = serde_json::to_string(&*start).map_err(|e| EngineError::Internal(e.to_string()))?;
        let settings_json =
            serde_json::to_string(settings).map_err(|e| EngineError::Internal(e.to_string()))?;
        db.save_model_parts(name, &settings_json, &json, &[])?;
    }
    Ok(())
}

impl Validation {
    /// Whether the model is scored after `epoch` of `epochs`: every
    /// `every`-th epoch, and the last.
    pub(super) fn due(&self, epoch: usize, epochs: usize) -> bool {
        (epoch + 1).is_multiple_of(self.every.max(1)) || epoch + 1 == epochs
    }

    /// Whether a run whose validation stands at `state` has run out of patience.
    pub(super) fn exhausted(&self, state: Option<&ValidState>) -> bool {
        self.patience > 0 && state.is_some_and(|s| s.stale >= self.patience)
    }
}

/// Settles what a new run validates on: with a validation file (`given`)
/// the config's split is off; otherwise the split's fraction is chosen
/// ([`AutoValid::choose_fraction`]) from the edges it may hold out, and
/// dropped when it holds none. Then `epochs = 0` becomes [`AUTO_EPOCHS`].
pub(super) fn settle_validation(
    cfg: &mut TrainConfig,
    buckets: &Buckets,
    relations: usize,
    given: bool,
) -> Result<()> {
    if given {
        cfg.validation = None;
    }
    if let Some(v) = &cfg.validation {
        if let Some(t) = v.target.filter(|&t| t as usize >= relations) {
            return Err(EngineError::Config(format!(
                "validation target relation {t} does not exist (the graph has {relations})"
            )));
        }
        let fraction = match v.fraction {
            0.0 => {
                let edges = (buckets.edges().iter())
                    .filter(|e| in_scope(cfg, e) && v.target.is_none_or(|t| t == e.rel))
                    .count() as u64;
                let nodes = buckets.node_counts().iter().map(|&n| n as u64).sum();
                AutoValid::choose_fraction(edges, nodes, cfg.dim)
            }
            f => f,
        };
        cfg.validation = (fraction > 0.0).then(|| AutoValid {
            fraction,
            ..v.clone()
        });
    }
    if cfg.epochs == 0 {
        cfg.epochs = match given || cfg.validation.is_some() {
            true => AUTO_EPOCHS.0,
            false => AUTO_EPOCHS.1,
        };
    }
    Ok(())
}

/// The validation of a run whose config holds edges out ([`AutoValid`]):
/// those edges as triples, scored every `every` epochs.
pub(super) fn held_out(db: &Database, buckets: &Buckets, cfg: &TrainConfig) -> Result<Option<Validation>> {
    let Some(v) = &cfg.validation else {
        return Ok(None);
    };
    let snap = db.snapshot();
    let c = snap.catalog();
    let key = |ty: u32, id: u32| {
        snap.node_key(ty, id)
            .map(str::to_string)
            .ok_or_else(|| EngineError::Internal(format!("node {id} of type {ty} has no key")))
    };
    let mut triples = Vec::new();
    for e in buckets.edges() {
        if in_scope(cfg, e) && v.holds(e.rel, e.src, e.dst) {
            let r = &c.relations[e.rel as usize];
            triples.push(crate::Triple {
                head: key(r.src, e.src)?,
                relation: r.name.clone(),
                tail: key(r.dst, e.dst)?,
            });
        }
    }
    Ok(Some(Validation {
        triples,
        every: v.every,
        patience: v.patience,
        metric: v.metric,
    }))
}

/// `config` as a run on the database's current edges without a validation
/// file stores it: the validation split's fraction chosen (or the split
/// dropped when the graph is too small for one) and `epochs = 0` resolved.
/// Runs given the result hold out the same edges, whatever else they change.
pub fn settled(db: &Database, config: &TrainConfig) -> Result<TrainConfig> {
    config.validate()?;
    let buckets = db.buckets(config.partitions)?;
    let mut config = config.clone();
    settle_validation(&mut config, &buckets, db.catalog().relations.len(), false)?;
    Ok(config)
}

/// The run's own validation, when it has no validation file and its
/// config holds edges out ([`held_out`]); announces the run.
pub(super) fn auto_validation(
    db: &Database,
    buckets: &Buckets,
    cfg: &TrainConfig,
    given: Option<&Validation>,
    on_event: &mut dyn FnMut(&TrainEvent),
) -> Result<Option<Validation>> {
    let auto = match given {
        Some(_) => None,
        None => held_out(db, buckets, cfg)?,
    };
    let split = cfg.validation.as_ref().filter(|_| auto.is_some());
    on_event(&TrainEvent::Start {
        epochs: cfg.epochs,
        held_out: auto.as_ref().map_or(0, |a| a.triples.len() as u64),
        fraction: split.map_or(0.0, |v| v.fraction),
        target: split.and_then(|v| v.target),
    });
    Ok(auto)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A known curve: the best epoch is kept, a tie is no improvement, and
    /// patience counts the scorings since the best.
    #[test]
    fn early_stopping_keeps_the_best_epoch_of_a_known_curve() {
        let v = Validation {
            triples: Vec::new(),
            every: 1,
            patience: 3,
            metric: ValidMetric::Mrr,
        };
        let curve = [0.10, 0.30, 0.20, 0.30, 0.31, 0.25, 0.31, 0.30, 0.5];
        let mut st = None;
        let mut ended = None;
        for (epoch, &x) in curve.iter().enumerate() {
            let next = ValidState::record(st.take(), epoch, x, (x, 2.0 * x));
            let done = v.exhausted(Some(&next));
            st = Some(next);
            if done {
                ended = Some(epoch);
                break;
            }
        }
        let st = st.unwrap();
        assert_eq!(
            ended,
            Some(7),
            "three scorings after epoch 5's 0.31 without improvement"
        );
        assert_eq!((st.best_epoch, st.best, st.stale), (4, 0.31, 3));
        assert_eq!(st.curve.len(), 8);
        assert_eq!(st.curve[1], (2, 0.30, 0.60));
        let without = Validation { patience: 0, ..v };
        assert!(!without.exhausted(Some(&st)));
    }
}
