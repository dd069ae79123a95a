//! The web explorer: `ui/` built into the binary (`include_bytes!`), served
//! by fixed paths only, so no request reaches the file system. The vendored
//! libraries and their licences are listed in `ui/vendor/SHA256SUMS` and
//! `ui/README.md` (`scripts/vendor-ui.sh` fetches and checks them).

use axum::http::header;
use axum::routing::get;
use axum::Router;

/// (path, content type, bytes) of every asset.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../../ui/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/app.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../ui/style.css"),
    ),
    (
        "/vendor/cytoscape.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/vendor/cytoscape.min.js"),
    ),
    (
        "/vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/vendor/uPlot.iife.min.js"),
    ),
    (
        "/vendor/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../ui/vendor/uPlot.min.css"),
    ),
];

pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |r, &(path, kind, bytes)| {
        r.route(
            path,
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")],
                    bytes,
                )
            }),
        )
    })
}
