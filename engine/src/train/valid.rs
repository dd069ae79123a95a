//! Validation during a run: the schedule, the best model kept so far and
//! early stopping.

use super::*;

/// The best validation score so far and the scorings since it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub(super) struct ValidState {
    pub(super) best_epoch: usize,
    pub(super) best: f64,
    pub(super) stale: usize,
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

/// The validation figure a run selects on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidMetric {
    /// Filtered mean reciprocal rank.
    Mrr,
    /// Filtered Hits@10.
    #[serde(rename = "hits@10")]
    Hits10,
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
    let mut st = start.valid.unwrap_or(ValidState {
        best_epoch: 0,
        best: f64::NEG_INFINITY,
        stale: 0,
    });
    if value > st.best {
        st = ValidState {
            best_epoch: epoch,
            best: value,
            stale: 0,
        };
        let keep = best_model_name(name);
        if db.catalog().models.iter().any(|m| m.name == keep) {
            db.drop_model(&keep)?;
        }
        model.store(db, &keep)?;
    } else {
        st.stale += 1;
    }
    start.valid = Some(st);
    on_event(&TrainEvent::Validation {
        epoch,
        mrr: r.mrr,
        hits10: r.hits10,
        best_epoch: st.best_epoch,
        best: st.best,
    });
    if !last {
        let next = Progress {
            epoch: epoch + 1,
            bucket: 0,
            ..*start
        };
        let json = serde_json::to_string(&next).map_err(|e| EngineError::Internal(e.to_string()))?;
        db.save_model_parts(name, &ctx.settings_json, &json, &[])?;
    }
    Ok(v.patience > 0 && st.stale >= v.patience)
}

impl Validation {
    /// Whether the model is scored after `epoch` of `epochs`: every
    /// `every`-th epoch, and the last.
    pub(super) fn due(&self, epoch: usize, epochs: usize) -> bool {
        (epoch + 1).is_multiple_of(self.every.max(1)) || epoch + 1 == epochs
    }

    /// Whether a run whose validation stands at `state` has run out of patience.
    pub(super) fn exhausted(&self, state: Option<ValidState>) -> bool {
        self.patience > 0 && state.is_some_and(|s| s.stale >= self.patience)
    }
}
