//! Training as a background job: `POST /api/train` starts one (on its own
//! thread, so queries go on), `GET /api/jobs/{id}` says where it is,
//! `POST /api/jobs/{id}/cancel` stops it at the next bucket boundary (the
//! model is saved there and resumable, as after Ctrl-C). A write that takes
//! a model `refresh_after` changed edges past its state starts a refresh job
//! by itself ([`after_write`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::{ApiError, Shared};
use crate::{EngineError, TrainConfig, TrainEvent};

/// What a job runs.
enum Work {
    Train(Box<TrainConfig>),
    /// A refresh of this model into the job's.
    Refresh(String),
}

/// One training job.
pub(super) struct Job {
    model: String,
    stop: AtomicBool,
    state: Mutex<serde_json::Value>,
}

impl Job {
    fn update(&self, f: impl FnOnce(&mut serde_json::Value)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s)
        }
    }

    fn snapshot(&self) -> serde_json::Value {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn running(&self) -> bool {
        self.snapshot()["state"] == "running"
    }
}

type Reply = Result<(StatusCode, Json<serde_json::Value>), ApiError>;

/// `POST /api/train` with `{"model": name, "config": {...}, "overwrite": bool}`.
pub(super) async fn start(
    State(s): State<Arc<Shared>>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Reply {
    let body = super::api::json_body(body)?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "request", m);
    if s.opts.read_only {
        let m = "the server is read-only: training is refused";
        return Err(ApiError::new(StatusCode::FORBIDDEN, "read_only", m));
    }
    let model = body
        .get("model")
        .and_then(|m| m.as_str())
        .unwrap_or("default")
        .to_string();
    let settings = match body.get("config") {
        None | Some(serde_json::Value::Null) => serde_json::Map::new(),
        Some(serde_json::Value::Object(m)) => m.clone(),
        Some(_) => return Err(bad("config must be an object of training settings".into())),
    };
    let config = TrainConfig::from_settings(settings).map_err(|e| bad(format!("config: {e}")))?;
    config.validate().map_err(|e| bad(e.to_string()))?;
    let overwrite = body.get("overwrite").and_then(|o| o.as_bool()).unwrap_or(false);
    if !overwrite && s.graph.database().model_info(&model).is_ok() {
        return Err(bad(format!(
            "model `{model}` exists; \"overwrite\": true replaces it"
        )));
    }
    match spawn(&s, model, Work::Train(Box::new(config)))? {
        Some(id) => Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "job": id })))),
        None => {
            let m = "a training job is running; wait for it or cancel it";
            Err(ApiError::new(StatusCode::CONFLICT, "busy", m))
        }
    }
}

/// Starts `work` as a job training `model` on a thread of its own; its id,
/// or `None` when a job is running (one at a time).
fn spawn(s: &Arc<Shared>, model: String, work: Work) -> Result<Option<usize>, ApiError> {
    let mut jobs = s
        .jobs
        .lock()
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "jobs"))?;
    if jobs.iter().any(|j| j.running()) {
        return Ok(None);
    }
    let id = jobs.len();
    let mut state = serde_json::json!({"id": id, "model": model, "state": "running", "epochs": [] });
    if let Work::Refresh(from) = &work {
        state["refresh_of"] = from.as_str().into();
    }
    let job = Arc::new(Job {
        model,
        stop: AtomicBool::new(false),
        state: Mutex::new(state),
    });
    jobs.push(job.clone());
    let shared = s.clone();
    std::thread::spawn(move || run(&shared, &job, &work));
    Ok(Some(id))
}

/// After a write that changed edges: on a thread of its own (the write has
/// answered), at most one at a time, a refresh job for the first model one
/// is due for ([`crate::refresh::due`]), unless a job is running; the
/// next write checks again.
pub(super) fn after_write(s: &Arc<Shared>) {
    if s.opts.read_only || s.checking.swap(true, Ordering::AcqRel) {
        return;
    }
    let shared = s.clone();
    std::thread::spawn(move || {
        let db = shared.graph.database();
        if let Ok(due) = crate::refresh::due(db) {
            if let Some(from) = due.into_iter().next() {
                let to = crate::refresh::next_version(db, &from);
                let _ = spawn(&shared, to, Work::Refresh(from));
            }
        }
        shared.checking.store(false, Ordering::Release);
    });
}

fn run(s: &Shared, job: &Job, work: &Work) {
    let on_event = &mut |e: &TrainEvent| match e {
        TrainEvent::Start { epochs, .. } => job.update(|s| s["of_epochs"] = (*epochs).into()),
        TrainEvent::Bucket {
            epoch,
            bucket,
            buckets,
            edges,
            loss,
        } => job.update(|s| {
            s["epoch"] = (*epoch).into();
            s["bucket"] = (*bucket).into();
            s["buckets"] = (*buckets).into();
            s["mean_loss"] = (loss / (*edges).max(1) as f64).into();
        }),
        TrainEvent::Epoch(st) => job.update(|s| {
            let mean = st.loss / st.edges.max(1) as f64;
            if let Some(a) = s["epochs"].as_array_mut() {
                a.push(serde_json::json!({"epoch": st.epoch, "mean_loss": mean, "seconds": st.seconds}));
            }
        }),
        TrainEvent::Validation { epoch, mrr, .. } => job.update(|s| {
            s["validation"] = serde_json::json!({"epoch": epoch, "mrr": mrr});
        }),
        _ => {}
    };
    let (db, cpu) = (s.graph.database(), &crate::Device::Cpu);
    let result = match work {
        Work::Train(config) => crate::train_on_until(db, &job.model, config, cpu, on_event, &job.stop, None),
        Work::Refresh(from) => {
            let opts = crate::refresh::RefreshOptions::default();
            crate::refresh::refresh_on_until(db, from, &job.model, &opts, cpu, on_event, &job.stop)
        }
    };
    job.update(|st| match result {
        Ok(()) => st["state"] = "done".into(),
        Err(EngineError::Stopped(_)) => st["state"] = "cancelled".into(),
        Err(e) => {
            st["state"] = "failed".into();
            st["error"] = e.to_string().into();
        }
    });
}

fn job(s: &Shared, id: usize) -> Result<Arc<Job>, ApiError> {
    let jobs = s
        .jobs
        .lock()
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "jobs"))?;
    jobs.get(id)
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no job {id}")))
}

/// `GET /api/jobs/{id}`: state (running, done, cancelled, failed), the
/// epoch and bucket, the mean loss so far and per epoch, the last validation.
pub(super) async fn status(State(s): State<Arc<Shared>>, Path(id): Path<usize>) -> Reply {
    Ok((StatusCode::OK, Json(job(&s, id)?.snapshot())))
}

/// `POST /api/jobs/{id}/cancel`: the run stops at its next bucket boundary.
pub(super) async fn cancel(State(s): State<Arc<Shared>>, Path(id): Path<usize>) -> Reply {
    if s.opts.read_only {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "read_only",
            "the server is read-only",
        ));
    }
    job(&s, id)?.stop.store(true, Ordering::Relaxed);
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({ "job": id, "cancelling": true })),
    ))
}
