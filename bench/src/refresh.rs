//! `quiver-bench refresh`: the cost of `quiver refresh` against a full
//! warm-started retrain with the same epochs, on a generated power-law
//! graph (the scale run's generator) after 1% new edges, some at new nodes.

use std::io::{BufRead, Write};
use std::path::Path;

use serde_json::json;

/// `quiver ARGS` timed: (wall seconds, peak RSS in MiB).
fn timed(bin: &Path, args: &[&str]) -> (f64, f64) {
    let (secs, rss, _) = crate::timed_run(bin, args);
    (secs, rss)
}

/// Trains model `m` on `nodes`/`edges` power-law edges less 1%, inserts
/// that 1% (a fifth of it from new nodes), then times `quiver refresh` and
/// a warm-started retrain of `epochs` epochs each.
pub(crate) fn bench_refresh(
    bin: &Path,
    nodes: u64,
    edges: u64,
    partitions: u64,
    epochs: u64,
    dim: u64,
) -> serde_json::Value {
    let work =
        tempfile::tempdir_in(std::env::var_os("QUIVER_SCALE_DIR").unwrap_or_else(|| ".".into())).unwrap();
    let all = work.path().join("all.tsv");
    crate::power_law_file(&all, nodes, edges, 0x5ca1e);
    let (old, new) = (work.path().join("old.tsv"), work.path().join("new.tsv"));
    {
        let mut o = std::io::BufWriter::new(std::fs::File::create(&old).unwrap());
        let mut n = std::io::BufWriter::new(std::fs::File::create(&new).unwrap());
        for (i, line) in std::io::BufReader::new(std::fs::File::open(&all).unwrap())
            .lines()
            .enumerate()
        {
            let line = line.unwrap();
            match (i % 100, i % 500) {
                (_, 0) => writeln!(n, "x{i}\t{}", line.split_once('\t').unwrap().1).unwrap(),
                (0, _) => writeln!(n, "{line}").unwrap(),
                _ => writeln!(o, "{line}").unwrap(),
            }
        }
    }
    let db = work.path().join("db");
    let d = db.to_str().unwrap();
    let (p, e, d_arg) = (partitions.to_string(), epochs.to_string(), dim.to_string());
    let settings = [
        "--dim",
        &d_arg,
        "--partitions",
        &p,
        "--epochs",
        &e,
        "--threads",
        "0",
    ];
    timed(bin, &["import", d, old.to_str().unwrap()]);
    let mut train = vec!["train", d, "--model", "m", "--device", "cpu", "--valid", "none"];
    train.extend(settings);
    let (train_s, train_rss) = timed(bin, &train);
    timed(bin, &["import", d, new.to_str().unwrap()]);
    let (refresh_s, refresh_rss) = timed(bin, &["refresh", d, "--model", "m", "--as", "r", "--epochs", &e]);
    let mut warm = vec![
        "train",
        d,
        "--model",
        "w",
        "--device",
        "cpu",
        "--valid",
        "none",
        "--warm-start",
        "m",
    ];
    warm.extend(settings);
    let (warm_s, warm_rss) = timed(bin, &warm);
    eprintln!(
        "refresh {refresh_s:.1} s ({refresh_rss:.0} MiB) against a warm-started retrain {warm_s:.1} s ({warm_rss:.0} MiB): {:.1}%",
        100.0 * refresh_s / warm_s
    );
    json!({"bench": "quiver_refresh", "nodes": nodes, "edges": edges, "partitions": partitions,
           "epochs": epochs, "dim": dim, "changed": edges / 100,
           "train_s": train_s, "train_peak_rss_mib": train_rss,
           "refresh_s": refresh_s, "refresh_peak_rss_mib": refresh_rss,
           "warm_retrain_s": warm_s, "warm_retrain_peak_rss_mib": warm_rss,
           "refresh_share": refresh_s / warm_s})
}
