//! The store's commands: `import`, `stats`, `check`, `buckets`, `compact`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use quiver::import::{ImportOptions, Progress};
use quiver::Database;

use super::{ms, open};

/// An input is `-` (standard input) or a path that exists and is not a
/// directory (pipes, FIFOs and process substitution included).
fn check_input(path: &Path) -> anyhow::Result<()> {
    if path.as_os_str() == "-" {
        return Ok(());
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => bail!("input {} is a directory", path.display()),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("input file {} does not exist", path.display())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// `quiver import`: checks the inputs, opens or creates DB, imports.
pub fn import_files(db: &Path, files: &[PathBuf], opts: ImportOptions) -> anyhow::Result<()> {
    for f in files {
        check_input(f)?;
    }
    let database = Database::open_or_create(db).with_context(|| format!("opening {}", db.display()))?;
    import(&database, files, &opts)
}

/// `quiver check`: exit status 1 with a report when DB is inconsistent.
pub fn check(db: &Path) -> anyhow::Result<ExitCode> {
    let report = open(db)?.check()?;
    for n in &report.notes {
        say!("note: {n}");
    }
    if !report.ok() {
        for p in &report.problems {
            say!("problem: {p}");
        }
        say!("check FAILED: {} problem(s)", report.problems.len());
        return Ok(ExitCode::from(1));
    }
    say!("check passed");
    Ok(ExitCode::SUCCESS)
}

/// `quiver buckets`.
pub fn buckets(db: &Path, partitions: u32) -> anyhow::Result<()> {
    let database = open(db)?;
    let t = Instant::now();
    let b = database.buckets(partitions)?;
    say!(
        "{} edges in {}x{} buckets ({:.1} ms)",
        b.edge_count(),
        partitions,
        partitions,
        ms(t.elapsed())
    );
    for i in 0..partitions {
        let row: Vec<String> = (0..partitions)
            .map(|j| b.bucket(i, j).len().to_string())
            .collect();
        say!("  {}", row.join("\t"));
    }
    Ok(())
}

/// `quiver compact`.
pub fn compact(db: &Path) -> anyhow::Result<()> {
    let t = Instant::now();
    open(db)?.compact()?;
    say!("compacted in {:.1} ms", ms(t.elapsed()));
    Ok(())
}

pub fn import(db: &Database, files: &[PathBuf], opts: &ImportOptions) -> anyhow::Result<()> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut last_log = Instant::now();
    let mut on_progress = |p: Progress| match &bar {
        Some(b) => {
            b.set_length(p.total_bytes);
            b.set_position(p.bytes);
            b.set_message(format!("{} lines", p.lines));
        }
        None if last_log.elapsed() > Duration::from_secs(2) => {
            last_log = Instant::now();
            eprintln!("import: {} lines, {}/{} bytes", p.lines, p.bytes, p.total_bytes);
        }
        None => {}
    };
    let result = db.import(files, opts, &mut on_progress);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let r = result?;
    if r.skipped.total > 0 {
        eprintln!("skipped {} bad line(s):", r.skipped.total);
        for e in &r.skipped.first {
            eprintln!("  {e}");
        }
        if r.skipped.total > r.skipped.first.len() as u64 {
            eprintln!(
                "  ... and {} more",
                r.skipped.total - r.skipped.first.len() as u64
            );
        }
    }
    say!(
        "imported {} edge lines: {} new edges, {} new nodes in {:.3} s",
        r.edges_read,
        r.edges_added,
        r.nodes_added,
        r.seconds
    );
    Ok(())
}

pub fn print_stats(db: &Database, json: bool) -> anyhow::Result<()> {
    let s = db.stats()?;
    if json {
        let obj = serde_json::json!({
            "nodes": s.nodes,
            "edges": s.edges,
            "node_types": s.node_types.iter().map(|(n, c)| (n.clone(), serde_json::json!(c))).collect::<serde_json::Map<_, _>>(),
            "relation_types": s.relations.iter().map(|(n, _, _, c)| (n.clone(), serde_json::json!(c))).collect::<serde_json::Map<_, _>>(),
            "out_degree": degree_json(&s.out_degree),
            "in_degree": degree_json(&s.in_degree),
            "delta_changes": s.delta_changes,
            "generation": s.generation,
            "disk_bytes": s.disk.iter().map(|(n, b)| (n.clone(), serde_json::json!(b))).collect::<serde_json::Map<_, _>>(),
        });
        say!("{obj}");
        return Ok(());
    }
    say!(
        "{} nodes, {} edges (base generation {}, {} pending changes)",
        s.nodes,
        s.edges,
        s.generation,
        s.delta_changes
    );
    say!("node types:");
    for (n, c) in &s.node_types {
        say!("  {n:<24} {c:>12}");
    }
    say!("relation types:");
    for (n, src, dst, c) in &s.relations {
        say!("  {:<40} {c:>12}", format!("{n} ({src} -> {dst})"));
    }
    for (label, d) in [("out-degree", &s.out_degree), ("in-degree", &s.in_degree)] {
        say!(
            "{label}: min {} median {} mean {:.2} p99 {} max {}",
            d.min,
            d.median,
            d.mean,
            d.p99,
            d.max
        );
    }
    say!("disk:");
    let mut total = 0;
    for (n, b) in &s.disk {
        total += b;
        say!("  {n:<24} {:>10.2} MiB", *b as f64 / 1048576.0);
    }
    say!("  {:<24} {:>10.2} MiB", "total", total as f64 / 1048576.0);
    Ok(())
}

fn degree_json(d: &quiver::DegreeSummary) -> serde_json::Value {
    serde_json::json!({"min": d.min, "median": d.median, "mean": d.mean, "p99": d.p99, "max": d.max})
}
