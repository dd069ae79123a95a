//! The JSON endpoints.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;

use super::{ApiError, Shared};
use crate::{Params, QueryError, QueryValue, Rows};

type Reply = Result<Json<serde_json::Value>, ApiError>;

/// The status and kind of a query layer error (its message is the CLI's).
fn query_error(e: QueryError) -> ApiError {
    let (status, kind, pos) = match &e {
        QueryError::Syntax { pos, .. } => (StatusCode::BAD_REQUEST, "syntax", Some(*pos)),
        QueryError::Semantic { pos, .. } => (StatusCode::BAD_REQUEST, "semantic", Some(*pos)),
        QueryError::Runtime(_) => (StatusCode::BAD_REQUEST, "runtime", None),
        QueryError::RowCap(_) => (StatusCode::PAYLOAD_TOO_LARGE, "row_cap", None),
        QueryError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "timeout", None),
        QueryError::Storage(crate::StorageError::Io { .. } | crate::StorageError::Corruption(_)) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "storage", None)
        }
        QueryError::Storage(_) => (StatusCode::BAD_REQUEST, "storage", None),
        QueryError::Engine(_) => (StatusCode::BAD_REQUEST, "engine", None),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
    };
    let mut err = ApiError::new(status, kind, &e);
    if let Some(p) = pos {
        err.1["line"] = p.line.into();
        err.1["column"] = p.column.into();
    }
    err
}

fn bad_request(message: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "request", message)
}

/// `{columns, rows: [[value, ...], ...]}`, values as `quiver query --format json` writes them.
fn rows_json(rows: &Rows) -> serde_json::Value {
    let values = rows
        .rows
        .iter()
        .map(|r| r.iter().map(|v| rows.json_value(v)).collect::<Vec<_>>())
        .collect::<Vec<_>>();
    serde_json::json!({"columns": rows.columns, "rows": values})
}

/// Runs `text` on the blocking pool under the concurrency cap.
async fn run(s: Arc<Shared>, text: String, params: Params) -> Reply {
    let Ok(_permit) = s.queries.try_acquire() else {
        let m = format!("{} queries are running; try again", s.opts.max_queries);
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", m));
    };
    if s.opts.read_only && crate::query_writes(&text).map_err(query_error)? {
        let m = "the server is read-only: statements that write are refused";
        return Err(ApiError::new(StatusCode::FORBIDDEN, "read_only", m));
    }
    let started = Instant::now();
    let edges_before = s.graph.database().catalog().edge_version;
    // On this worker thread (the runtime moves its other tasks away), which
    // saves the two thread hand-offs of `spawn_blocking` on every query.
    // A panic is a 500 reply, not a dropped connection.
    let result = tokio::task::block_in_place(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let rows = s.graph.query(&text, &params)?;
            Ok::<_, QueryError>(rows_json(&rows))
        }))
    })
    .map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the query failed inside quiver (please report it)",
        )
    })?;
    let mut body = result.map_err(query_error)?;
    body["elapsed_ms"] = (started.elapsed().as_secs_f64() * 1e3).into();
    if s.graph.database().catalog().edge_version != edges_before {
        super::jobs::after_write(&s);
    }
    Ok(Json(body))
}

/// A request body as JSON (too large: 413; not JSON: 400).
pub(super) fn json_body(body: Result<Bytes, BytesRejection>) -> Result<serde_json::Value, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), "request", e.body_text()))?;
    serde_json::from_slice(&body).map_err(|e| bad_request(format!("the body is not JSON: {e}")))
}

/// `POST /api/query` with `{"query": text, "params": {...}}`.
pub(super) async fn query(State(s): State<Arc<Shared>>, body: Result<Bytes, BytesRejection>) -> Reply {
    let request = json_body(body)?;
    let Some(text) = request.get("query").and_then(|q| q.as_str()) else {
        return Err(bad_request("expected {\"query\": \"...\", \"params\": {...}}"));
    };
    let params = match request.get("params") {
        None | Some(serde_json::Value::Null) => Params::new(),
        Some(serde_json::Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), QueryValue::from_json(v.clone())))
            .collect(),
        Some(_) => return Err(bad_request("params must be an object")),
    };
    run(s, text.to_string(), params).await
}

/// `GET /api/schema`: node types and relations.
pub(super) async fn schema(State(s): State<Arc<Shared>>) -> Reply {
    let c = s.graph.database().catalog();
    let types: Vec<&str> = c.node_types.iter().map(|t| t.name.as_str()).collect();
    let rels: Vec<serde_json::Value> = c
        .relations
        .iter()
        .map(|r| serde_json::json!({"name": r.name, "from": c.type_name(r.src), "to": c.type_name(r.dst)}))
        .collect();
    Ok(Json(serde_json::json!({"node_types": types, "relations": rels})))
}

/// `GET /api/stats`: counts per node type and relation.
pub(super) async fn stats(State(s): State<Arc<Shared>>) -> Reply {
    let shared = s.clone();
    tokio::task::spawn_blocking(move || crate::tasks::stats_json(shared.graph.database()))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e))
}

/// `GET /api/models`: each model's settings, progress and metrics (curves,
/// evaluations), and the changes since the graph state it was trained on.
pub(super) async fn models(State(s): State<Arc<Shared>>) -> Reply {
    let shared = s.clone();
    tokio::task::spawn_blocking(move || crate::tasks::models_json(shared.graph.database()))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e))
}

/// `GET /api/neighbors?type=T&key=K[&k=10][&model=M]`: the model's nearest
/// nodes of the node's type (its index when it has one), as `CALL quiver.nearest`.
pub(super) async fn neighbors(
    State(s): State<Arc<Shared>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Reply {
    let need = |name: &str| {
        q.get(name)
            .cloned()
            .ok_or_else(|| bad_request(format!("`{name}` is required")))
    };
    let (ty, key) = (need("type")?, need("key")?);
    let k: i64 = match q.get("k") {
        None => 10,
        Some(v) => v
            .parse()
            .map_err(|_| bad_request(format!("k = `{v}`: expected a whole number")))?,
    };
    if !ty.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Err(bad_request(format!("type `{ty}`: not a node type name")));
    }
    let mut params = Params::new();
    params.insert("key".into(), QueryValue::Str(key));
    params.insert("k".into(), QueryValue::Int(k));
    let model = match q.get("model") {
        Some(m) => {
            params.insert("model".into(), QueryValue::Str(m.clone()));
            ", $model"
        }
        None => "",
    };
    let text = format!(
        "MATCH (n:{ty} {{key: $key}}) CALL quiver.nearest(n, $k{model}) YIELD node, score RETURN node, score"
    );
    run(s, text, params).await
}
