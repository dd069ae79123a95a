//! I/O faults. A child process whose writes start failing runs an import, a
//! big commit, a compaction, a training run and a quantization: once under
//! RLIMIT_FSIZE with SIGXFSZ ignored (every write that would grow a file past
//! the limit fails with EFBIG), and once on a real full filesystem (a small
//! tmpfs, when the tests run as root). Each either succeeds or returns an
//! error (never a panic, an abort or a signal); afterwards the database opens,
//! passes `check`, and holds exactly what was acknowledged: the old state
//! after an error, the new one after a success.

use std::path::Path;
use std::process::Command;

use quiver_engine::{train, Int8Rows, Model, TrainConfig};
use quiver_storage::import::ImportOptions;
use quiver_storage::Database;

#[path = "tmpfs.rs"]
mod tmpfs;
use tmpfs::Tmpfs;

const CHILD_ENV: &str = "QUIVER_FAULT_CHILD";
const OPS: [&str; 5] = ["commit", "import", "compact", "train", "quantize"];
const TEST: &str = "failing_writes_return_errors_and_lose_nothing";

/// The two tests take turns. Run side by side, each spawning child
/// processes, a database one of them had just copied and opened was at times
/// still locked when its child (or it, after the child) opened it: 4 of 12
/// runs on a loaded 2-core machine, against 0 of 10 one test at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn config() -> TrainConfig {
    TrainConfig {
        dim: 16,
        epochs: 2,
        partitions: 2,
        threads: 1,
        ..Default::default()
    }
}

/// What a user can read back: every edge and the model's rows.
type State = (Vec<(u32, u32, u32, f32)>, Option<Vec<Vec<f32>>>);

fn state(db: &Database) -> State {
    let model = Model::load(db, "m").ok().map(|m| m.nodes);
    (quiver_tests::all_edges(db), model)
}

/// The operation `op` on the database at `path`; `fault` runs between
/// opening the database and the operation (the child limits its writes there).
fn run(op: &str, path: &Path, fault: &dyn Fn()) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let db = Database::open(path).map_err(|x| e(&x))?;
    // Outside the database's filesystem, which may be full.
    let file = std::env::temp_dir().join(format!("quiver-fault-{}.tsv", std::process::id()));
    if op == "import" {
        let text: String = (0..20_000).map(|i| format!("i{i}\tr\ti{}\n", i + 1)).collect();
        std::fs::write(&file, text).map_err(|x| e(&x))?;
    }
    fault();
    match op {
        "open" => db.stats().map(drop).map_err(|x| e(&x)),
        "commit" => {
            let mut b = db.batch();
            for i in 0..20_000u32 {
                b.insert_edge(0, format!("c{i}"), format!("c{}", i + 1), Some(2.0));
            }
            db.commit(b).map(drop).map_err(|x| e(&x))?;
            db.flush().map_err(|x| e(&x))
        }
        "import" => {
            let opts = ImportOptions {
                node_type: "N".into(),
                ..ImportOptions::default()
            };
            let imported = db.import(std::slice::from_ref(&file), &opts, &mut |_| {});
            let _ = std::fs::remove_file(&file);
            imported.map(drop).map_err(|x| e(&x))
        }
        "compact" => db.compact().map_err(|x| e(&x)),
        "train" => train(&db, "m", &TrainConfig { seed: 7, ..config() }, &mut |_| {})
            .map(drop)
            .map_err(|x| e(&x)),
        "quantize" => {
            let m = Model::load(&db, "m").map_err(|x| e(&x))?;
            Int8Rows::store(&db, "m", &m, 0).map(drop).map_err(|x| e(&x))
        }
        other => Err(format!("unknown op {other}")),
    }
}

#[allow(unsafe_code)]
fn limit_file_size(bytes: u64) {
    // SAFETY: plain libc calls with valid arguments, made before any other
    // thread of this child exists; ignoring SIGXFSZ turns an over-limit
    // write into an EFBIG error instead of killing the process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let lim = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: bytes,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
}

/// The child's side: `QUIVER_FAULT_CHILD=op:limit:path` runs `op` with
/// files limited to `limit` bytes (0: no limit) and prints its result.
fn child_main(spec: &str) {
    let mut it = spec.splitn(3, ':');
    let (op, limit, path) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    let limit: u64 = limit.parse().unwrap();
    let fault = || {
        if limit > 0 {
            limit_file_size(limit)
        }
    };
    match run(op, Path::new(path), &fault) {
        // On lines of their own: the test harness prints its own text around them.
        Ok(()) => println!("\nRESULT OK"),
        Err(message) => println!("\nRESULT ERR {message}"),
    }
}

/// Runs `op` on the database at `path` in a child process (files limited to
/// `limit` bytes, 0: no limit) and returns its result line.
fn in_child(op: &str, limit: u64, path: &Path) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, format!("{op}:{limit}:{}", path.display()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{op}: the child did not exit cleanly ({:?}): {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text.lines().find(|l| l.starts_with("RESULT "));
    line.unwrap_or_else(|| panic!("{op}: no result: {text}"))
        .to_string()
}

/// After `op` reported `result` on `path`: the database opens, passes
/// `check` and holds `before` or `after_ok` (an error) or `after_ok` (a
/// success); a training run left in progress resumes to `after_ok`.
/// Returns whether the operation failed.
fn verify(op: &str, path: &Path, result: &str, before: &State, after_ok: &State) -> bool {
    let db = Database::open(path).unwrap_or_else(|e| panic!("{op}: reopening: {e}"));
    assert!(db.check().unwrap().ok(), "{op}: check failed");
    let now = state(&db);
    if result.starts_with("RESULT ERR ") {
        // An error leaves the old state or, where the change was committed
        // before a later write failed, the new one.
        let in_progress = db.model_info("m").is_ok_and(|m| !m.progress.is_empty());
        if op == "train" && in_progress {
            let resumed = quiver_engine::resume(&db, "m", &mut |_| {}).unwrap();
            assert!(Some(resumed.nodes) == after_ok.1, "{op}: the resumed run differs");
        } else {
            assert!(
                now == *before || now == *after_ok,
                "{op}: failed, and left a third state"
            );
        }
        true
    } else {
        assert_eq!(result, "RESULT OK");
        assert!(
            now == *after_ok,
            "{op}: succeeded, but its effect is not all there"
        );
        false
    }
}

/// A small database with a trained model and pending writes.
fn clean_database(dir: &Path) -> std::path::PathBuf {
    let clean = dir.join("clean");
    let db = Database::create(&clean).unwrap();
    db.create_node_type("N").unwrap();
    db.create_relation_type("r", "N", "N").unwrap();
    // Imported, not committed: the edges go straight into a base segment,
    // so sled's log (which sets the larger limit below) stays small.
    let file = dir.join("clean.tsv");
    let text: String = (0..3000u32)
        .map(|i| format!("n{i}\tr\tn{}\n", (i * 7 + 1) % 3000))
        .collect();
    std::fs::write(&file, text).unwrap();
    let opts = ImportOptions {
        node_type: "N".into(),
        ..ImportOptions::default()
    };
    db.import(&[file], &opts, &mut |_| {}).unwrap();
    train(&db, "m", &config(), &mut |_| {}).unwrap();
    // Pending writes, so that compaction has work to do.
    let mut b = db.batch();
    for i in 0..200u32 {
        b.insert_edge(0, format!("n{i}"), format!("p{i}"), None);
    }
    db.commit(b).unwrap();
    db.flush().unwrap();
    clean
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-r").arg(from).arg(to).status().unwrap();
    assert!(status.success(), "cp -r {} {}", from.display(), to.display());
}

/// What `op` does without faults, on a copy of `clean` in `scratch`.
fn reference(op: &str, clean: &Path, scratch: &Path) -> State {
    let path = scratch.join(format!("{op}-ref"));
    copy_dir(clean, &path);
    run(op, &path, &|| {}).unwrap();
    let s = state(&Database::open(&path).unwrap());
    std::fs::remove_dir_all(&path).unwrap();
    s
}

#[test]
fn failing_writes_return_errors_and_lose_nothing() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        return child_main(&spec);
    }
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let clean = clean_database(dir.path());
    // Two limits: one below sled's log file (every write fails), one above
    // it (sled's appends go through; new segment files fail).
    let sled_log = std::fs::read_dir(clean.join("catalog"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .max()
        .unwrap();
    eprintln!("sled's largest file: {sled_log} bytes");
    let mut failed = 0;
    for op in OPS {
        let after_ok = reference(op, &clean, dir.path());
        for limit in [16 * 1024, sled_log + 4096] {
            let path = dir.path().join(format!("{op}-{limit}"));
            copy_dir(&clean, &path);
            let before = state(&Database::open(&path).unwrap());
            let result = in_child(op, limit, &path);
            eprintln!("{op}, files limited to {limit} bytes: {result}");
            failed += verify(op, &path, &result, &before, &after_ok) as usize;
        }
    }
    assert!(
        failed >= 8,
        "only {failed} of {} runs met the fault",
        2 * OPS.len()
    );
}

/// Fills the filesystem holding `dir` with one file, to the last byte or to
/// `slack` bytes short of it, and returns the file.
fn fill(dir: &Path, slack: u64) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    for size in [1 << 20, 4096, 1] {
        let block = vec![0u8; size];
        while f.write_all(&block).is_ok() {}
    }
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(slack)).unwrap();
    path
}

#[test]
fn a_full_filesystem_never_destroys_the_database() {
    let _turn = one_at_a_time();
    let Some(fs) = Tmpfs::mount("8m") else { return };
    let scratch = tempfile::tempdir().unwrap();
    let clean = clean_database(scratch.path());
    let (mut runs, mut failed) = (0, 0);
    // "open" only opens: sled writes at every open, read-only commands too.
    for op in ["open"].into_iter().chain(OPS) {
        let after_ok = reference(op, &clean, scratch.path());
        // No space at all (sled's open fails), and a little (sled's open
        // goes through; writes of segment files fail).
        for slack in [0, 96 << 10] {
            let path = fs.path().join(op);
            copy_dir(&clean, &path);
            let before = state(&Database::open(&path).unwrap());
            let filler = fill(fs.path(), slack);
            // Twice: the first failure must not damage what the second opens.
            let first = in_child(op, 0, &path);
            let second = in_child(op, 0, &path);
            eprintln!("{op} on a tmpfs with {slack} bytes free: {first}, then {second}");
            std::fs::remove_file(filler).unwrap();
            runs += 1;
            failed += verify(op, &path, &second, &before, &after_ok) as usize;
            std::fs::remove_dir_all(&path).unwrap();
        }
    }
    assert!(failed >= 8, "only {failed} of {runs} runs met the full disk");
}
