//! `quiver index`, `import-model --format npy` and the searches that use an
//! index, from the command line; kill -9 during a build.

use std::path::Path;
use std::process::Command;

#[path = "cli_common.rs"]
mod cli_common;
use cli_common::{p, quiver, ring_with_valid, text};

/// An NPY 1.0 float32 matrix and its keys file, as `export --format npy` writes them.
fn write_npy(dir: &Path, stem: &str, rows: usize, d: usize, value: impl Fn(usize, usize) -> f32) {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {d}), }}");
    let len = (10 + dict.len() + 1).div_ceil(64) * 64 - 10;
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(len as u16).to_le_bytes());
    b.extend_from_slice(format!("{dict:<width$}\n", width = len - 1).as_bytes());
    for i in 0..rows {
        for j in 0..d {
            b.extend_from_slice(&value(i, j).to_le_bytes());
        }
    }
    std::fs::write(dir.join(format!("{stem}.npy")), b).unwrap();
    let keys: String = (0..rows).map(|i| format!("{i}\tk{i}\n")).collect();
    std::fs::write(dir.join(format!("{stem}.keys.tsv")), keys).unwrap();
}

/// A deterministic value in [-0.5, 0.5) for row i, column j (no two rows alike).
fn noise(i: usize, j: usize, seed: u64) -> f32 {
    let mut x = ((i as u64) << 32 | j as u64).wrapping_add(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((x ^ (x >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
}

/// A ring database in `dir/db` and `dir/vecs` holding an `Item` matrix.
fn with_vectors(dir: &Path, rows: usize, d: usize, seed: u64) -> (std::path::PathBuf, std::path::PathBuf) {
    let (db, _) = ring_with_valid(dir, "");
    let vecs = dir.join("vecs");
    std::fs::create_dir(&vecs).unwrap();
    write_npy(&vecs, "Item", rows, d, |i, j| noise(i, j, seed));
    (db, vecs)
}

/// `quiver import-model DB VECS --format npy --model v` and `extra`.
fn import_npy(db: &Path, vecs: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["import-model", p(db), p(vecs), "--format", "npy", "--model", "v"];
    args.extend_from_slice(extra);
    quiver(&args)
}

fn neighbors(db: &Path, model: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec![
        "neighbors",
        p(db),
        "--model",
        model,
        "--node",
        "Item:k3",
        "--k",
        "5",
        "--json",
    ];
    args.extend_from_slice(extra);
    let o = quiver(&args);
    assert!(o.status.success(), "{}", text(&o));
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn import_vectors_index_and_search_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (db, vecs) = with_vectors(dir.path(), 3000, 8, 1);
    // Keys the database lacks are refused, naming the first.
    let o = import_npy(&db, &vecs, &["--score", "l2"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no node type `Item`"), "{}", text(&o));
    let o = import_npy(&db, &vecs, &["--score", "l2", "--create-nodes"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Item: 3000 rows"), "{}", text(&o));
    let (exact, _) = neighbors(&db, "v", &["--exact"]);
    let o = quiver(&[
        "index",
        p(&db),
        "--model",
        "v",
        "--type",
        "Item",
        "--connectivity",
        "12",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("indexed 3000 rows of Item"), "{}", text(&o));
    let listed = text(&quiver(&["models", p(&db)]));
    assert!(
        listed.contains("index over Item: 3000 rows, f32, M 12"),
        "{listed}"
    );
    let (approx, warned) = neighbors(&db, "v", &["--ef", "200"]);
    assert_eq!(
        approx, exact,
        "the index agrees with the scan on 3000 rows at ef 200"
    );
    assert!(warned.is_empty(), "{warned}");
    assert!(text(&quiver(&["check", p(&db)])).contains("check passed"));
    // New rows for the same name: the old index is not used.
    write_npy(&vecs, "Item", 3000, 8, |i, j| noise(i, j, 2));
    let o = import_npy(&db, &vecs, &["--score", "l2"]);
    assert!(o.status.success(), "{}", text(&o));
    let (exact2, _) = neighbors(&db, "v", &["--exact"]);
    let (after, _) = neighbors(&db, "v", &[]);
    assert_eq!(after, exact2);
    assert!(
        !text(&quiver(&["models", p(&db)])).contains("index over"),
        "replaced with the model"
    );
    // Training into the name (--force) starts a new model: the old version's index goes with it.
    // (An index made stale by a resumed run is `tests/ann.rs`'s `a_stale_index_is_never_used`.)
    let o = quiver(&["index", p(&db), "--model", "v", "--type", "Item"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = quiver(&[
        "train",
        p(&db),
        "--model",
        "v",
        "--epochs",
        "1",
        "--dim",
        "8",
        "--threads",
        "1",
        "--force",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&quiver(&["models", p(&db)])).contains("index over"));
    let (trained, _) = neighbors(&db, "v", &[]);
    assert_eq!(trained, neighbors(&db, "v", &["--exact"]).0);
    // Settings that cannot work are refused.
    let o = quiver(&["index", p(&db), "--model", "v", "--connectivity", "1"]);
    assert!(
        !o.status.success() && text(&o).contains("connectivity"),
        "{}",
        text(&o)
    );
    let o = quiver(&["index", p(&db), "--model", "v", "--quantization", "f8"]);
    assert!(
        !o.status.success() && text(&o).contains("f32, f16 or i8"),
        "{}",
        text(&o)
    );
}

#[test]
fn kill_9_during_an_index_build_leaves_no_index_and_check_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (db, vecs) = with_vectors(dir.path(), 60_000, 16, 3);
    let o = import_npy(&db, &vecs, &["--create-nodes"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut killed = 0;
    for (round, wait_ms) in [150u64, 600, 1200, 2000].into_iter().enumerate() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quiver"))
            .args(["index", p(&db), "--model", "v", "--type", "Item"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        let finished = child.try_wait().unwrap().is_some();
        // SIGKILL (std's kill on Unix).
        let _ = child.kill();
        child.wait().unwrap();
        killed += usize::from(!finished);
        let o = quiver(&["check", p(&db)]);
        assert!(text(&o).contains("check passed"), "round {round}: {}", text(&o));
        let listed = text(&quiver(&["models", p(&db)]));
        if !finished {
            assert!(
                !listed.contains("index over"),
                "round {round}: a killed build left an index: {listed}"
            );
        }
        let leftovers: Vec<String> = std::fs::read_dir(&db)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".tmp") || f.contains("staged"))
            .collect();
        // A killed build's temporary file is removed at the next open (check opened it).
        assert!(leftovers.is_empty(), "round {round}: {leftovers:?}");
    }
    assert!(
        killed >= 2,
        "the builds were too quick to be killed ({killed} of 4)"
    );
    let o = quiver(&["index", p(&db), "--model", "v", "--type", "Item"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&quiver(&["models", p(&db)])).contains("index over Item: 60000 rows"));
}

#[test]
fn ctrl_c_during_an_index_build_stores_nothing_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (db, vecs) = with_vectors(dir.path(), 60_000, 16, 5);
    let o = import_npy(&db, &vecs, &["--create-nodes"]);
    assert!(o.status.success(), "{}", text(&o));
    let child = Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(["index", p(&db), "--model", "v", "--type", "Item"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let o = child.wait_with_output().unwrap();
    if o.status.success() {
        eprintln!("the build finished before Ctrl-C reached it; nothing to check");
        return;
    }
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(
        text(&o).contains("stopped: no index of Item was stored"),
        "{}",
        text(&o)
    );
    assert!(!text(&quiver(&["models", p(&db)])).contains("index over"));
    let leftovers: Vec<String> = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(text(&quiver(&["check", p(&db)])).contains("check passed"));
}
