//! Choosing training settings on the validation split: every point of a grid
//! over a base config is trained with validation (so each run also keeps its
//! best epoch), and the point with the best validation score is kept as the
//! model. Test triples never enter: the chosen model is scored on test once,
//! afterwards (`quiver eval`).

use std::time::Instant;

use quiver_engine::{AutoValid, EngineError, TrainConfig, TrainEvent, Validation};
use quiver_storage::Database;

use crate::Result;

/// One setting and the values to try for it.
#[derive(Debug, Clone)]
pub struct Axis {
    /// A [`TrainConfig`] field as written in a config file (`lr`, `margin`).
    pub key: String,
    /// Its values.
    pub values: Vec<toml::Value>,
}

/// One grid point: the settings it changes and the whole config.
#[derive(Debug, Clone)]
pub struct Point {
    /// (key, value) per axis.
    pub settings: Vec<(String, toml::Value)>,
    /// The base config file's table with those settings.
    pub table: toml::Table,
    /// That table as settings (defaults for what it leaves out).
    pub config: TrainConfig,
}

/// A trained grid point and what validation said of it.
#[derive(Debug, Clone)]
pub struct Trial {
    /// The point.
    pub point: Point,
    /// The best validation score of the run, in its metric.
    pub best: f64,
    /// The 1-based epoch that scored it (the epoch kept).
    pub epoch: usize,
    /// Epochs trained (fewer than configured after an early stop).
    pub epochs_run: usize,
    /// Training time, validation included.
    pub seconds: f64,
}

/// Most points a grid may have (each trains a model).
pub const MAX_POINTS: usize = 1000;

/// Every combination of the axes' values over `base` (the first axis varies
/// slowest), at most [`MAX_POINTS`], counted before any is built. A key that
/// is not a setting, set twice, or a value of the wrong kind is an error
/// naming it.
pub fn grid(base: &toml::Table, axes: &[Axis]) -> Result<Vec<Point>> {
    let mut count: usize = 1;
    for (i, axis) in axes.iter().enumerate() {
        if axis.values.is_empty() {
            return Err(config_error(format!("`{}`: no values to try", axis.key)));
        }
        if axes[..i].iter().any(|a| a.key == axis.key) {
            return Err(config_error(format!(
                "`{}` is set twice: give its values as one list (`{}=a,b`)",
                axis.key, axis.key
            )));
        }
        count = count.saturating_mul(axis.values.len());
    }
    if count > MAX_POINTS {
        return Err(config_error(format!(
            "the grid has {count} points; at most {MAX_POINTS} (each trains a model)"
        )));
    }
    let mut points = vec![Vec::new()];
    for axis in axes {
        points = points
            .into_iter()
            .flat_map(|p: Vec<(String, toml::Value)>| {
                axis.values.iter().map(move |v| {
                    let mut p = p.clone();
                    p.push((axis.key.clone(), v.clone()));
                    p
                })
            })
            .collect();
    }
    points
        .into_iter()
        .map(|settings| {
            let mut table = base.clone();
            for (k, v) in &settings {
                table.insert(k.clone(), v.clone());
            }
            let config: TrainConfig = toml::Value::Table(table.clone())
                .try_into()
                .map_err(|e| config_error(format!("{}: {e}", describe(&settings))))?;
            match config.validate() {
                Err(EngineError::Config(m)) => {
                    return Err(config_error(format!("{}: {m}", describe(&settings))))
                }
                other => other?,
            }
            Ok(Point {
                settings,
                table,
                config,
            })
        })
        .collect()
}

/// How the points of a search are judged and for how long.
#[derive(Clone, Copy)]
pub struct Judge<'a> {
    /// Validation triples; None: each point's own held-out edges (the same
    /// for every point when their configs share one settled split,
    /// [`quiver_engine::settled`]).
    pub valid: Option<&'a Validation>,
    /// No point starts after this (the first always runs).
    pub deadline: Option<Instant>,
    /// Set (by the caller's Ctrl-C) to stop: the point training stops at
    /// its next checkpoint and is dropped, and the search ends with the
    /// trials before it (an error when there are none).
    pub stop: Option<&'a std::sync::atomic::AtomicBool>,
}

/// Trains every point as model `{name}~trial` judged by `judge`, keeping
/// the best so far ([`chosen`]) as `name`. `on_event` sees each run's
/// events with the point's index. Returns the trials in grid order (fewer
/// than the points when the deadline passed).
pub fn run(
    db: &Database,
    name: &str,
    points: &[Point],
    device: &quiver_engine::Device,
    judge: Judge<'_>,
    on_event: &mut dyn FnMut(usize, &TrainEvent),
) -> Result<Vec<Trial>> {
    let trial_name = format!("{name}~trial");
    // A trial left by a run that was killed, or by this one when it fails.
    let discard = || -> Result<()> {
        for m in [quiver_engine::best_model_name(&trial_name), trial_name.clone()] {
            if db.catalog().models.iter().any(|x| x.name == m) {
                db.drop_model(&m)?;
            }
        }
        Ok(())
    };
    discard()?;
    let trials = run_points(db, name, &trial_name, points, device, judge, on_event);
    if trials.is_err() {
        discard()?;
    }
    trials
}

fn run_points(
    db: &Database,
    name: &str,
    trial_name: &str,
    points: &[Point],
    device: &quiver_engine::Device,
    judge: Judge<'_>,
    on_event: &mut dyn FnMut(usize, &TrainEvent),
) -> Result<Vec<Trial>> {
    let never = std::sync::atomic::AtomicBool::new(false);
    let mut trials: Vec<Trial> = Vec::with_capacity(points.len());
    for (i, point) in points.iter().enumerate() {
        if i > 0 && judge.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let started = Instant::now();
        let (mut best, mut epoch, mut epochs_run) = (f64::NEG_INFINITY, 0, 0);
        let mut log = |e: &TrainEvent| {
            match *e {
                TrainEvent::Validation {
                    best: b, best_epoch, ..
                } => (best, epoch) = (b, best_epoch + 1),
                TrainEvent::Epoch(ref s) => epochs_run = s.epoch + 1,
                _ => {}
            }
            on_event(i, e)
        };
        let run = crate::train_on_until(
            db,
            trial_name,
            &point.config,
            device,
            &mut log,
            judge.stop.unwrap_or(&never),
            judge.valid,
        );
        match run {
            Err(EngineError::Stopped(_)) if !trials.is_empty() => {
                for m in [quiver_engine::best_model_name(trial_name), trial_name.to_string()] {
                    if db.catalog().models.iter().any(|x| x.name == m) {
                        db.drop_model(&m)?;
                    }
                }
                break;
            }
            run => run?,
        }
        trials.push(Trial {
            point: point.clone(),
            best,
            epoch,
            epochs_run,
            seconds: started.elapsed().as_secs_f64(),
        });
        if chosen(&trials) == Some(i) {
            db.replace_model(trial_name, name, None)?;
        } else {
            db.drop_model(trial_name)?;
        }
    }
    Ok(trials)
}

/// What `quiver train --auto` (Python `train(auto=True)`) tries, in this
/// order, over the run's other settings: the defaults first, then the
/// points of the choice of the defaults that came first on some graph
/// (`bench/defaults.py`: relation balance on Last.fm; L2, margin and d = 64
/// on CiaoDVD and FB15k-237), then the best of the rest by the mean of
/// validation / best.
pub const AUTO_POINTS: [&str; 4] = [
    "",
    "relation_balance = 0.5",
    "score = \"l2\"\nloss = \"margin\"\ndim = 64",
    "dim = 64\nrelation_balance = 0.5",
];

/// [`AUTO_POINTS`] over `base`, every point holding out the same edges
/// (`base` settled once, [`quiver_engine::settled`]), and that split; an
/// error when the graph is too small for one or `base` has no validation.
pub fn auto_points(db: &Database, base: &TrainConfig) -> Result<(Vec<Point>, AutoValid)> {
    let base = quiver_engine::settled(db, base)?;
    let Some(split) = base.validation.clone() else {
        return Err(config_error(
            "--auto needs validation: the graph has too few edges to hold some out".into(),
        ));
    };
    let json = serde_json::to_value(&base).map_err(|e| config_error(e.to_string()))?;
    let points = AUTO_POINTS
        .iter()
        .map(|text| {
            let table: toml::Table = toml::from_str(text).map_err(|e| config_error(e.to_string()))?;
            let mut config = json.clone();
            for (k, v) in &table {
                config[k] = serde_json::to_value(v).map_err(|e| config_error(e.to_string()))?;
            }
            let mut config: TrainConfig =
                serde_json::from_value(config).map_err(|e| config_error(e.to_string()))?;
            config.validation = Some(split.clone());
            Ok(Point {
                settings: table.clone().into_iter().collect(),
                table,
                config,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((points, split))
}

/// The trial with the best validation score; the earliest of equals.
pub fn chosen(trials: &[Trial]) -> Option<usize> {
    (0..trials.len()).reduce(|a, b| if trials[b].best > trials[a].best { b } else { a })
}

/// `key = value, ...` of a point's settings.
pub fn describe(settings: &[(String, toml::Value)]) -> String {
    if settings.is_empty() {
        return "(the settings as given)".into();
    }
    settings
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn config_error(message: String) -> crate::Error {
    EngineError::Config(message).into()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// 400 nodes, 3,000 seeded edges of two relations: enough for a split.
    fn graph(dir: &std::path::Path) -> Database {
        let db = Database::create(dir.join("db")).unwrap();
        db.create_node_type("N").unwrap();
        let a = db.create_relation_type("a", "N", "N").unwrap();
        let b = db.create_relation_type("b", "N", "N").unwrap();
        let mut batch = db.batch();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..3000u64 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let rel = if i % 3 == 0 { b } else { a };
            batch.insert_edge(
                rel,
                format!("n{}", (x >> 33) % 400),
                format!("n{}", (x >> 13) % 400),
                None,
            );
        }
        db.commit(batch).unwrap();
        db
    }

    #[test]
    fn a_stopped_search_keeps_the_trials_before_it_and_no_trial_model() {
        let dir = tempfile::tempdir().unwrap();
        let db = graph(dir.path());
        let base = TrainConfig {
            dim: 8,
            epochs: 2,
            threads: 1,
            ..TrainConfig::default()
        };
        let (points, split) = auto_points(&db, &base).unwrap();
        assert_eq!(points.len(), AUTO_POINTS.len());
        assert!(points
            .iter()
            .all(|p| p.config.validation.as_ref() == Some(&split)));
        // Ctrl-C while the second point trains.
        let stop = AtomicBool::new(false);
        let judge = Judge {
            valid: None,
            deadline: None,
            stop: Some(&stop),
        };
        let device = quiver_engine::Device::Cpu;
        let trials = run(&db, "m", &points, &device, judge, &mut |i, _| {
            if i == 1 {
                stop.store(true, Ordering::Relaxed);
            }
        })
        .unwrap();
        assert_eq!(trials.len(), 1);
        let names: Vec<String> = db.catalog().models.iter().map(|m| m.name.clone()).collect();
        assert_eq!(names, ["m"]);
        // Stopped during the first point, the search has nothing: an error.
        stop.store(true, Ordering::Relaxed);
        let judge = Judge {
            valid: None,
            deadline: None,
            stop: Some(&stop),
        };
        assert!(run(&db, "n", &points, &device, judge, &mut |_, _| {}).is_err());
        let names: Vec<String> = db.catalog().models.iter().map(|m| m.name.clone()).collect();
        assert_eq!(names, ["m"]);
    }
}
