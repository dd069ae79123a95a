//! `quiver serve`: one process owns the database and answers HTTP clients
//! with JSON (`api.rs`). Handlers translate requests into the same calls the
//! CLI and Python make (the query layer, `quiver::tasks`) and nothing else.
//!
//! Rules: loopback unless a token is given; the token is compared in
//! constant time; `read_only` refuses statements that write (403); every
//! failure is a JSON error with an HTTP status; requests run on the blocking
//! pool, at most `max_queries` at a time, each under the query layer's
//! limits (timeout, row cap).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::{Graph, Limits};

mod api;
mod assets;
mod jobs;
mod map;

/// How `quiver serve` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to listen on (port 0: any free port).
    pub bind: SocketAddr,
    /// Refuse statements that write, with 403.
    pub read_only: bool,
    /// Clients must send `Authorization: Bearer TOKEN`. Required for a bind
    /// address other than loopback.
    pub token: Option<String>,
    /// Each query's timeout and row cap.
    pub limits: Limits,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Queries running at once; more are answered 503.
    pub max_queries: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bind: SocketAddr::from(([127, 0, 0, 1], 7474)),
            read_only: false,
            token: None,
            limits: Limits::default(),
            max_body: 1 << 20,
            max_queries: 64,
        }
    }
}

struct Shared {
    graph: Graph,
    opts: Options,
    queries: tokio::sync::Semaphore,
    jobs: std::sync::Mutex<Vec<Arc<jobs::Job>>>,
    /// A check for due refreshes is under way ([`jobs::after_write`]).
    checking: std::sync::atomic::AtomicBool,
    maps: map::MapCache,
}

/// A JSON error with its status: `{"error": {"kind", "message"[, "line", "column"]}}`.
struct ApiError(StatusCode, serde_json::Value);

impl ApiError {
    fn new(status: StatusCode, kind: &str, message: impl std::fmt::Display) -> Self {
        ApiError(
            status,
            serde_json::json!({"kind": kind, "message": message.to_string()}),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// Serves `graph` until Ctrl-C; `ready` is told the address once listening.
pub fn serve(mut graph: Graph, opts: Options, ready: impl FnOnce(SocketAddr)) -> std::io::Result<()> {
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    if !opts.bind.ip().is_loopback() && opts.token.is_none() {
        return Err(invalid(format!(
            "refusing to serve on {} without a token: any other address than loopback needs --token-file",
            opts.bind
        )));
    }
    if opts.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(invalid("the token is empty".into()));
    }
    if opts.max_queries == 0 {
        return Err(invalid("max_queries must be at least 1".into()));
    }
    graph.set_limits(opts.limits);
    let shared = Arc::new(Shared {
        graph,
        queries: tokio::sync::Semaphore::new(opts.max_queries),
        jobs: Default::default(),
        checking: Default::default(),
        maps: Default::default(),
        opts,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(shared.opts.bind).await?;
        ready(listener.local_addr()?);
        let api = Router::new()
            .route("/api/query", post(api::query))
            .route("/api/schema", get(api::schema))
            .route("/api/stats", get(api::stats))
            .route("/api/models", get(api::models))
            .route("/api/neighbors", get(api::neighbors))
            .route("/api/embedding-map", get(map::embedding_map))
            .route("/api/train", post(jobs::start))
            .route("/api/jobs/{id}", get(jobs::status))
            .route("/api/jobs/{id}/cancel", post(jobs::cancel))
            .route("/api/{*rest}", axum::routing::any(not_found))
            .layer(axum::middleware::from_fn_with_state(shared.clone(), authorize))
            .layer(DefaultBodyLimit::max(shared.opts.max_body))
            .with_state(shared);
        // The page and its libraries, built into the binary: no path reaches the file system.
        let app = api.merge(assets::routes()).fallback(not_found);
        // Replies go out at once (no Nagle delay behind a keep-alive client's next request).
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    })
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// With a token, every request must carry it (`Authorization: Bearer ...`).
async fn authorize(State(s): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if let Some(token) = &s.opts.token {
        use subtle::ConstantTimeEq;
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(token.trim().as_bytes())) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            )
            .into_response();
        }
    }
    next.run(request).await
}
