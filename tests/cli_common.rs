//! What the command-line tests share: running `quiver` and reading what it said.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `quiver` binary of this build.
pub fn quiver(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(args)
        .output()
        .unwrap()
}

/// Standard output, then standard error.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A database in `dir/db` holding a ring of 40 `next` edges, and
/// `dir/valid.tsv` with `valid` lines.
pub fn ring_with_valid(dir: &Path, valid: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let db = dir.join("db");
    let train = dir.join("train.tsv");
    let lines: String = (0..40)
        .map(|i| format!("e{i}\tnext\te{}\n", (i + 1) % 40))
        .collect();
    std::fs::write(&train, lines).unwrap();
    let valid_path = dir.join("valid.tsv");
    std::fs::write(&valid_path, valid).unwrap();
    assert!(quiver(&["import", p(&db), p(&train)]).status.success());
    (db, valid_path)
}

/// A ring database with a trained 8-dimensional model `m`, and a
/// validation file.
// Not every test binary that includes this file trains.
#[allow(dead_code)]
pub fn trained(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (db, valid) = ring_with_valid(dir, "e1\tnext\te2\ne7\tnext\te8\n");
    let o = quiver(&[
        "train",
        p(&db),
        "--model",
        "m",
        "--device",
        "cpu",
        "--dim",
        "8",
        "--epochs",
        "2",
        "--threads",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    (db, valid)
}
