//! `quiver serve`: the database over HTTP (`quiver::serve`).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Database directory.
    db: PathBuf,
    /// Address and port to listen on (port 0: any free port). Any address
    /// other than loopback needs --token-file.
    #[arg(long, default_value = "127.0.0.1:7474")]
    bind: SocketAddr,
    /// Answer statements that write, and training, with 403.
    #[arg(long)]
    read_only: bool,
    /// A file holding the token clients send as `Authorization: Bearer TOKEN`.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Most rows a query may return or buffer.
    #[arg(long, default_value_t = quiver::Limits::default().max_rows)]
    max_rows: u64,
    /// Stop a query after this many milliseconds (0: never).
    #[arg(long, default_value_t = 60_000)]
    timeout_ms: u64,
    /// Largest request body, bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body: usize,
    /// Queries running at once; more are answered 503.
    #[arg(long, default_value_t = 64)]
    max_queries: usize,
}

pub fn serve(a: &ServeArgs) -> anyhow::Result<()> {
    let token = match &a.token_file {
        Some(path) => Some(
            quiver::read_text(path, 4096)
                .with_context(|| format!("reading the token from {}", path.display()))?,
        ),
        None => None,
    };
    let opts = quiver::serve::Options {
        bind: a.bind,
        read_only: a.read_only,
        token,
        limits: quiver::Limits {
            max_rows: a.max_rows,
            timeout: (a.timeout_ms > 0).then(|| Duration::from_millis(a.timeout_ms)),
        },
        max_body: a.max_body,
        max_queries: a.max_queries,
    };
    let graph = quiver::Graph::open(&a.db).with_context(|| format!("opening {}", a.db.display()))?;
    quiver::serve::serve(graph, opts, |addr| {
        // Tests and scripts read this line for the port.
        println!(
            "listening on http://{addr}{}",
            if a.read_only { " (read-only)" } else { "" }
        );
        let _ = std::io::stdout().flush();
    })?;
    Ok(())
}
