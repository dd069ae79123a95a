//! I/O faults: a child process whose writes start failing (RLIMIT_FSIZE with
//! SIGXFSZ ignored: every write that would grow a file past the limit fails
//! with EFBIG, as on a full disk) runs an import, a big commit, a compaction,
//! a training run and a quantization. Each either succeeds or returns an
//! error (never a panic or an abort); afterwards the database opens, passes
//! `check`, and holds exactly what was acknowledged: the old state after an
//! error, the new one after a success.

use std::path::Path;
use std::process::Command;

use quiver_engine::{train, Int8Rows, Model, TrainConfig};
use quiver_storage::import::ImportOptions;
use quiver_storage::Database;

const CHILD_ENV: &str = "QUIVER_FAULT_CHILD";
const OPS: [&str; 5] = ["commit", "import", "compact", "train", "quantize"];

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
    let file = path.with_extension("import.tsv");
    if op == "import" {
        let text: String = (0..20_000).map(|i| format!("i{i}\tr\ti{}\n", i + 1)).collect();
        std::fs::write(&file, text).map_err(|x| e(&x))?;
    }
    fault();
    match op {
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
            db.import(&[file], &opts, &mut |_| {})
                .map(drop)
                .map_err(|x| e(&x))
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

#[test]
fn failing_writes_return_errors_and_lose_nothing() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let mut it = spec.splitn(3, ':');
        let (op, limit, path) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        let limit: u64 = limit.parse().unwrap();
        match run(op, Path::new(path), &|| limit_file_size(limit)) {
            // On lines of their own: the test harness prints its own text around them.
            Ok(()) => println!("\nRESULT OK"),
            Err(message) => println!("\nRESULT ERR {message}"),
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean");
    {
        let db = Database::create(&clean).unwrap();
        db.create_node_type("N").unwrap();
        db.create_relation_type("r", "N", "N").unwrap();
        // Imported, not committed: the edges go straight into a base segment,
        // so sled's log (which sets the larger limit below) stays small.
        let file = dir.path().join("clean.tsv");
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
    }
    // Two limits: one below sled's log file (every write fails), one above
    // it (sled's appends go through; new segment files fail).
    let sled_log = std::fs::read_dir(clean.join("catalog"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .max()
        .unwrap();
    eprintln!("sled's largest file: {sled_log} bytes");
    let mut failed = 0;
    for (op, limit) in OPS
        .iter()
        .flat_map(|op| [(*op, 16 * 1024), (*op, sled_log + 4096)])
    {
        let path = dir.path().join(format!("{op}-{limit}"));
        let status = Command::new("cp")
            .arg("-r")
            .arg(&clean)
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        let before = state(&Database::open(&path).unwrap());
        // What the operation does without faults, on another copy.
        let reference = dir.path().join(format!("{op}-{limit}-ref"));
        assert!(Command::new("cp")
            .arg("-r")
            .arg(&clean)
            .arg(&reference)
            .status()
            .unwrap()
            .success());
        run(op, &reference, &|| {}).unwrap();
        let after_ok = state(&Database::open(&reference).unwrap());
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "failing_writes_return_errors_and_lose_nothing",
                "--test-threads=1",
                "--nocapture",
            ])
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
        let db = Database::open(&path).unwrap_or_else(|e| panic!("{op}: reopening: {e}"));
        assert!(db.check().unwrap().ok(), "{op}: check failed");
        let now = state(&db);
        if let Some(line) = text.lines().find(|l| l.starts_with("RESULT ERR ")) {
            failed += 1;
            eprintln!("{op}, files limited to {limit} bytes: {line}");
            // An error leaves the old state or, where the change was
            // committed before a later write failed, the new one; a training
            // run left in progress resumes to the uninterrupted result.
            let in_progress = db.model_info("m").is_ok_and(|m| !m.progress.is_empty());
            if op == "train" && in_progress {
                let resumed = quiver_engine::resume(&db, "m", &mut |_| {}).unwrap();
                assert!(Some(resumed.nodes) == after_ok.1, "{op}: the resumed run differs");
            } else {
                assert!(
                    now == before || now == after_ok,
                    "{op}: failed, and left a third state"
                );
            }
        } else {
            assert!(text.lines().any(|l| l == "RESULT OK"), "{op}: no result: {text}");
            eprintln!("{op}, files limited to {limit} bytes: succeeded");
            assert!(
                now == after_ok,
                "{op}: succeeded, but its effect is not all there"
            );
        }
    }
    assert!(
        failed >= 8,
        "only {failed} of {} runs met the fault",
        2 * OPS.len()
    );
}
