//! Training, evaluation and recall from Python.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::{PyKeyboardInterrupt, PyTypeError};
use pyo3::prelude::*;

use crate::convert::{dict, keys, train_config};
use crate::errors::{py_err, ConfigError, Error};
use crate::{device, Database};
use quiver::refresh::{next_version, refresh_on_until, RefreshOptions};
use quiver::EngineError;

#[pymethods]
impl Database {
    /// Trains (or resumes) a model with the GIL released; `on_event` gets a
    /// dict per bucket and epoch. Returns {model, last_epoch, history: one
    /// dict per epoch (loss, mean_loss per edge, edges, seconds), validation:
    /// one dict per scoring (epoch, mrr, hits@10), held_out}. Ctrl-C stops at the next bucket boundary
    /// (the model stays resumable) and raises KeyboardInterrupt. `valid`: a
    /// file of validation triples, "none", or None (the default): a seeded
    /// sample of the graph's edges held out and validated on (`target`: only
    /// that relation's); the best epoch is kept. `auto`: the settings of
    /// `quiver train --auto` tried on one held-out split for up to `budget`
    /// seconds, the best kept; the result adds `trials` and `chosen`
    /// (`history` and `validation` then run over every trial).
    #[pyo3(signature = (model, config=None, device="auto", resume=false, on_event=None, valid=None, eval_every=None, patience=None, metric=None, target=None, overwrite=false, auto=false, budget=600.0))]
    #[allow(clippy::too_many_arguments)]
    fn train<'py>(
        &self,
        py: Python<'py>,
        model: &str,
        config: Option<&Bound<'py, PyAny>>,
        device: &str,
        resume: bool,
        on_event: Option<Py<PyAny>>,
        valid: Option<&Bound<'py, PyAny>>,
        eval_every: Option<usize>,
        patience: Option<usize>,
        metric: Option<&str>,
        target: Option<&str>,
        overwrite: bool,
        auto: bool,
        budget: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut cfg = train_config(config)?;
        if auto && (resume || valid.is_some()) {
            return Err(ConfigError::new_err(
                "auto judges on the graph's own held-out edges: it takes neither resume nor valid",
            ));
        }
        let budget = std::time::Duration::try_from_secs_f64(budget)
            .map_err(|e| ConfigError::new_err(format!("budget = {budget}: {e}")))?;
        if !resume && !overwrite && self.with(|g| Ok(g.database().model_info(model).is_ok()))? {
            return Err(ConfigError::new_err(format!(
                "model `{model}` exists: train(..., overwrite=True) replaces it, resume=True continues it"
            )));
        }
        let metric = match metric {
            None => None,
            Some("mrr") => Some(quiver::ValidMetric::Mrr),
            Some("hits@10") => Some(quiver::ValidMetric::Hits10),
            Some(m) => {
                return Err(ConfigError::new_err(format!(
                    "metric {m}: expected mrr or hits@10"
                )))
            }
        };
        if eval_every == Some(0) {
            return Err(ConfigError::new_err(
                "eval_every = 0: validate every 1 or more epochs",
            ));
        }
        let flags = eval_every.is_some() || patience.is_some() || metric.is_some();
        let valid = match valid {
            Some(v) if v.extract::<String>().is_ok_and(|v| v == "none") => {
                if flags || target.is_some() {
                    return Err(ConfigError::new_err(
                        "eval_every, patience, metric and target need validation (valid=\"none\" turns it off)",
                    ));
                }
                cfg.validation = None;
                None
            }
            Some(v) => {
                if target.is_some() {
                    return Err(ConfigError::new_err(
                        "target chooses the held-out edges, which a valid file replaces",
                    ));
                }
                Some(quiver::Validation {
                    triples: triples(v)?,
                    every: eval_every.unwrap_or(1),
                    patience: patience.unwrap_or(0),
                    metric: metric.unwrap_or(quiver::ValidMetric::Mrr),
                })
            }
            None => {
                match &mut cfg.validation {
                    Some(v) => {
                        v.every = eval_every.unwrap_or(v.every);
                        v.patience = patience.unwrap_or(v.patience);
                        v.metric = metric.unwrap_or(v.metric);
                        if let Some(t) = target {
                            v.target =
                                Some(self.with(|g| g.database().catalog().relation(t).map_err(py_err))?);
                        }
                    }
                    None if flags || target.is_some() => return Err(ConfigError::new_err(
                        "eval_every, patience, metric and target need validation (the config turns it off)",
                    )),
                    None => {}
                }
                None
            }
        };
        let dev = self::device(device)?;
        let stop = AtomicBool::new(false);
        let mut pending: Option<PyErr> = None;
        let mut last = serde_json::Value::Null;
        let (mut history, mut curve, mut held) = (Vec::new(), Vec::new(), 0u64);
        let mut epochs = cfg.epochs;
        let result = self.with(|g| {
            let db = g.database();
            let mut on = |e: &quiver::TrainEvent| {
                let j = match *e {
                    quiver::TrainEvent::Bucket {
                        epoch,
                        bucket,
                        buckets,
                        edges,
                        loss,
                    } => serde_json::json!({
                        "event": "bucket", "epoch": epoch, "epochs": epochs, "bucket": bucket,
                        "buckets": buckets, "edges": edges, "loss": loss}),
                    quiver::TrainEvent::Chunks {
                        epoch,
                        bucket,
                        buckets,
                        done,
                        chunks,
                    } => serde_json::json!({"event": "chunks", "epoch": epoch, "epochs": epochs,
                        "bucket": bucket, "buckets": buckets, "done": done, "chunks": chunks}),
                    quiver::TrainEvent::Epoch(s) => {
                        let mean = s.loss / s.edges.max(1) as f64;
                        last = serde_json::json!({"epoch": s.epoch, "loss": s.loss, "mean_loss": mean,
                            "edges": s.edges, "seconds": s.seconds});
                        history.push(last.clone());
                        serde_json::json!({"event": "epoch", "epoch": s.epoch, "epochs": epochs,
                            "loss": s.loss, "mean_loss": mean, "edges": s.edges, "seconds": s.seconds})
                    }
                    quiver::TrainEvent::Validation {
                        epoch,
                        mrr,
                        hits10,
                        best_epoch,
                        best,
                    } => {
                        curve.push(serde_json::json!({"epoch": epoch, "mrr": mrr, "hits@10": hits10}));
                        serde_json::json!({"event": "validation", "epoch": epoch, "epochs": epochs,
                            "mrr": mrr, "hits@10": hits10, "best_epoch": best_epoch, "best": best})
                    }
                    quiver::TrainEvent::WeightSpread { relation, min, max } => serde_json::json!({
                        "event": "weight_spread", "relation": relation, "min": min, "max": max}),
                    quiver::TrainEvent::Start {
                        epochs: n,
                        held_out,
                        fraction,
                        target,
                    } => {
                        (epochs, held) = (n, held_out);
                        serde_json::json!({"event": "start", "epochs": n, "held_out": held_out,
                            "fraction": fraction, "target": target})
                    }
                };
                Python::attach(|py| {
                    let r = match &on_event {
                        Some(f) => dict(py, j).and_then(|d| f.call1(py, (d,)).map(drop)),
                        None => Ok(()),
                    };
                    if let Err(err) = r.and_then(|()| py.check_signals()) {
                        stop.store(true, Ordering::Relaxed);
                        pending.get_or_insert(err);
                    }
                });
            };
            Ok(py.detach(|| -> quiver::Result<Option<Vec<quiver::tune::Trial>>> {
                if auto {
                    // The search's points, one after another, each heard as a run.
                    let (points, _) = quiver::tune::auto_points(db, &cfg)?;
                    let judge = quiver::tune::Judge {
                        valid: None,
                        deadline: Some(std::time::Instant::now() + budget),
                        stop: Some(&stop),
                    };
                    return quiver::tune::run(db, model, &points, &dev, judge, &mut |_, e| on(e)).map(Some);
                }
                let run = match resume {
                    true => quiver::resume_on_until(db, model, &dev, &mut on, &stop, valid.as_ref()),
                    false => quiver::train_on_until(db, model, &cfg, &dev, &mut on, &stop, valid.as_ref()),
                };
                Ok(run.map(|()| None)?)
            }))
        })?;
        let stopped =
            |r: &quiver::Result<_>| matches!(r, Err(quiver::Error::Engine(EngineError::Stopped(_))));
        match (result, pending) {
            (r, Some(err)) if stopped(&r) => Err(err),
            (r, None) if stopped(&r) => Err(PyKeyboardInterrupt::new_err("training stopped")),
            (Err(e), _) => Err(py_err(e)),
            (Ok(_), Some(err)) => Err(err),
            (Ok(trials), None) => {
                let mut out = serde_json::json!({"model": model, "last_epoch": last, "history": history,
                    "validation": curve, "held_out": held});
                if let Some(trials) = trials {
                    out["chosen"] = serde_json::json!(quiver::tune::chosen(&trials));
                    out["trials"] = (trials.iter())
                        .map(|t| serde_json::json!({"settings": quiver::tune::describe(&t.point.settings),
                            "best": t.best, "epoch": t.epoch, "epochs_run": t.epochs_run, "seconds": t.seconds}))
                        .collect();
                }
                dict(py, out)
            }
        }
    }

    /// A new version of `model` trained on the graph's changes since the
    /// state it was trained on, as `quiver refresh` (the GIL released;
    /// Ctrl-C stops it resumably). Returns {model: the new name, history:
    /// per epoch {epoch, loss, edges, seconds}}.
    #[pyo3(signature = (model, new_name=None, epochs=None, replay=None, drift_penalty=None, threads=0))]
    #[allow(clippy::too_many_arguments)]
    fn refresh<'py>(
        &self,
        py: Python<'py>,
        model: &str,
        new_name: Option<String>,
        epochs: Option<usize>,
        replay: Option<f64>,
        drift_penalty: Option<f32>,
        threads: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let d = RefreshOptions::default();
        let opts = RefreshOptions {
            epochs: epochs.unwrap_or(d.epochs),
            replay: replay.unwrap_or(d.replay),
            drift_penalty: drift_penalty.unwrap_or(d.drift_penalty),
            threads,
        };
        let stop = AtomicBool::new(false);
        let (mut history, mut pending) = (Vec::new(), None);
        let (to, result) = self.with(|g| {
            let db = g.database();
            let to = new_name.clone().unwrap_or_else(|| next_version(db, model));
            let mut on = |e: &quiver::TrainEvent| {
                if let quiver::TrainEvent::Epoch(s) = e {
                    history.push(
                        serde_json::json!({"epoch": s.epoch, "loss": s.loss, "edges": s.edges,
                        "seconds": s.seconds}),
                    );
                }
                Python::attach(|py| {
                    if let Err(err) = py.check_signals() {
                        stop.store(true, Ordering::Relaxed);
                        pending.get_or_insert(err);
                    }
                });
            };
            let r =
                py.detach(|| refresh_on_until(db, model, &to, &opts, &quiver::Device::Cpu, &mut on, &stop));
            Ok((to, r))
        })?;
        match (result, pending) {
            (Err(EngineError::Stopped(_)), Some(err)) => Err(err),
            (Err(e), _) => Err(py_err(e)),
            (Ok(()), _) => dict(py, serde_json::json!({"model": to, "history": history})),
        }
    }

    /// Filtered link prediction, as `quiver eval --json` (stored with the model).
    #[pyo3(signature = (model, test, filter=Vec::new(), device="cpu"))]
    fn evaluate<'py>(
        &self,
        py: Python<'py>,
        model: &str,
        test: &Bound<'py, PyAny>,
        filter: Vec<PathBuf>,
        device: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let test = triples(test)?;
        let mut known = Vec::new();
        for f in &filter {
            known.extend(quiver::read_triples(f).map_err(py_err)?);
        }
        let dev = self::device(device)?;
        let obj = self.with(|g| {
            py.detach(|| quiver::tasks::evaluate_stored(g.database(), model, &test, &known, &dev))
                .map_err(py_err)
        })?;
        dict(py, obj)
    }

    /// Recall@K of held-out edges of `relation`, as `quiver eval recall`:
    /// with `train`, model `model` is first trained (settings from `config`)
    /// without `holdout` of those edges (and their reverses); then each
    /// source retrieves by translation or kNN and the held-out edges are
    /// looked for in its top K.
    #[pyo3(signature = (model, relation, holdout=0.1, k=vec![10, 20, 50], method="translation", config=None, seed=0, device="auto", train=true))]
    #[allow(clippy::too_many_arguments)]
    fn recall<'py>(
        &self,
        py: Python<'py>,
        model: &str,
        relation: &str,
        holdout: f64,
        k: Vec<usize>,
        method: &str,
        config: Option<&Bound<'py, PyAny>>,
        seed: u64,
        device: &str,
        train: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut cfg = train_config(config)?;
        let method = match method {
            "translation" => quiver::recall::Method::Translation,
            "knn" => quiver::recall::Method::Knn,
            m => {
                return Err(ConfigError::new_err(format!(
                    "method {m}: expected translation or knn"
                )))
            }
        };
        let dev = self::device(device)?;
        let report = self.with(|g| {
            py.detach(|| {
                let db = g.database();
                let holdout = quiver::Holdout {
                    relation: db.catalog().relation(relation)?,
                    fraction: holdout,
                    seed,
                    pairs: true,
                };
                if train {
                    cfg.holdout = Some(holdout.clone());
                    quiver::train_on(db, model, &cfg, &dev, &mut |_| {})?;
                }
                let m = quiver::Model::load(db, model)?;
                if m.config.holdout.as_ref() != Some(&holdout) {
                    return Err(EngineError::Config(format!(
                        "model `{model}` was trained with holdout {:?}, not {holdout:?}",
                        m.config.holdout
                    ))
                    .into());
                }
                Ok::<_, quiver::Error>(quiver::recall::recall(
                    &db.snapshot(),
                    &m,
                    &holdout,
                    &k,
                    method,
                    None,
                )?)
            })
            .map_err(py_err)
        })?;
        dict(
            py,
            serde_json::to_value(report).map_err(|e| Error::new_err(e.to_string()))?,
        )
    }
}

/// Triples from a file path or a (heads, relations, tails) tuple of key sequences.
fn triples(o: &Bound<'_, PyAny>) -> PyResult<Vec<quiver::Triple>> {
    if let Ok(path) = o.extract::<PathBuf>() {
        return quiver::read_triples(&path).map_err(py_err);
    }
    let (h, r, t): (Bound<PyAny>, Bound<PyAny>, Bound<PyAny>) = o.extract()?;
    let (h, r, t) = (keys(&h, "heads")?, keys(&r, "relations")?, keys(&t, "tails")?);
    if h.len() != r.len() || r.len() != t.len() {
        return Err(PyTypeError::new_err(
            "heads, relations and tails must have one length",
        ));
    }
    Ok(h.into_iter()
        .zip(r)
        .zip(t)
        .map(|((head, relation), tail)| quiver::Triple { head, relation, tail })
        .collect())
}
