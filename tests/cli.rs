//! The `quiver` command line, run as a user would (this file belongs to the
//! root package, which builds the binary; see its Cargo.toml).

use std::path::Path;
use std::process::Command;

mod cli_common;
use cli_common::{p, quiver, ring_with_valid, text};

/// The one value `query` returns (`quiver query --format csv`), as text.
fn value_of(db: &Path, query: &str) -> String {
    let o = quiver(&["query", p(db), "--format", "csv", "-e", query]);
    assert!(o.status.success(), "{query}: {}", text(&o));
    text(&o).lines().nth(1).unwrap_or_default().trim().to_string()
}

#[test]
fn import_stats_check_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let good = dir.path().join("good.tsv");
    std::fs::write(
        &good,
        "User\tu1\tFollows\tUser\tu2\nUser\tu1\tAuthors\tTweet\tt1\t2\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.tsv");
    std::fs::write(&bad, "User\tu3\tFollows\tUser\tu4\nUser\tu3\tFollows\n").unwrap();

    let o = quiver(&["import", p(&db), p(&good)]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("good.tsv:1:1: unknown node type `User` (use --create-types to create it)"),
        "{}",
        text(&o)
    );

    let o = quiver(&["import", "--create-types", p(&db), p(&good)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("2 new edges, 3 new nodes"), "{}", text(&o));

    let o = quiver(&["import", p(&db), p(&bad)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("bad.tsv:2:1: expected 5 or 6 columns"),
        "{}",
        text(&o)
    );
    let o = quiver(&["import", "--skip-bad", p(&db), p(&bad)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("skipped 1 bad line(s)"), "{}", text(&o));

    let o = quiver(&["stats", "--json", p(&db)]);
    assert!(o.status.success(), "{}", text(&o));
    let json = String::from_utf8(o.stdout).unwrap();
    for needle in [
        r#""nodes":5"#,
        r#""edges":3"#,
        r#""User":4"#,
        r#""Tweet":1"#,
        r#""Follows":2"#,
        r#""Authors":1"#,
    ] {
        assert!(json.contains(needle), "{needle} not in {json}");
    }
    let o = quiver(&["check", p(&db)]);
    assert!(
        o.status.success() && text(&o).contains("check passed"),
        "{}",
        text(&o)
    );

    // Damage a segment: the next command fails with exit status 1 and names the file.
    let adj = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "adj"))
        .unwrap();
    let mut bytes = std::fs::read(&adj).unwrap();
    let n = bytes.len();
    bytes[n - 70] ^= 0x55;
    std::fs::write(&adj, bytes).unwrap();
    let o = quiver(&["check", p(&db)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("corrupted database file") && text(&o).contains(".adj"),
        "{}",
        text(&o)
    );
}

#[test]
fn train_eval_models_export() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let train = dir.path().join("train.tsv");
    let lines: String = (0..40)
        .map(|i| format!("e{i}\tnext\te{}\n", (i + 1) % 40))
        .collect();
    std::fs::write(&train, lines).unwrap();
    let test = dir.path().join("test.tsv");
    std::fs::write(&test, "e1\tnext\te2\r\nghost\tnext\te1\r\n").unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "dim = 8\nepochs = 3\nchunk_size = 10\nuniform_negatives = 10\nthreads = 1\n",
    )
    .unwrap();
    assert!(quiver(&["import", p(&db), p(&train)]).status.success());

    let o = quiver(&[
        "train",
        p(&db),
        "--model",
        "m",
        "--config",
        p(&config),
        "--epochs",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        text(&o).matches("epoch ").count(),
        2,
        "--epochs overrides the file: {}",
        text(&o)
    );
    let o = quiver(&["train", p(&db), "--model", "m", "--score", "cosine"]);
    assert!(
        !o.status.success() && text(&o).contains("expected l1, l2 or dot"),
        "{}",
        text(&o)
    );

    let o = quiver(&["eval", p(&db), "--model", "m", "--test", p(&test), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let json = String::from_utf8(o.stdout).unwrap();
    for key in [
        r#""mrr":"#,
        r#""mr":"#,
        r#""hits@1":"#,
        r#""hits@3":"#,
        r#""hits@10":"#,
        r#""skipped":1"#,
        r#""triples":1"#,
    ] {
        assert!(json.contains(key), "{key} not in {json}");
    }
    let o = quiver(&["models", p(&db)]);
    assert!(
        text(&o).contains("m: dim 8 epochs 2") && text(&o).contains("finished"),
        "{}",
        text(&o)
    );

    let out = dir.path().join("export");
    let o = quiver(&["export", p(&db), "--model", "m", "--out", p(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    let npy = std::fs::read(out.join("Entity.npy")).unwrap();
    assert_eq!(&npy[..6], b"\x93NUMPY");
    assert_eq!(npy.len(), 128 + 40 * 8 * 4);
    assert!(String::from_utf8_lossy(&npy[10..128]).contains("'shape': (40, 8)"));
    assert_eq!(
        std::fs::read_to_string(out.join("Entity.keys.tsv"))
            .unwrap()
            .lines()
            .count(),
        40
    );
}

#[test]
fn query_command_formats_params_and_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let setup = "CREATE NODE TYPE User; CREATE RELATION TYPE Follows (User -> User);\n\
                 CREATE (:User {key: 'alice'})-[:Follows]->(:User {key: 'bob'}), (:User {key: 'alice'})-[:Follows]->(:User {key: 'carol, jr'})";
    let o = quiver(&["query", p(&db), "-e", setup]);
    assert!(o.status.success(), "{}", text(&o));
    let q = "MATCH (a:User {key: $k})-[:Follows]->(b) RETURN b.key AS who, b ORDER BY who";
    let o = quiver(&["query", p(&db), "-e", q, "--param", "k=alice", "--format", "json"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        r#"[{"who":"bob","b":{"type":"User","key":"bob"}},{"who":"carol, jr","b":{"type":"User","key":"carol, jr"}}]"#
    );
    let o = quiver(&["query", p(&db), "-e", q, "--param", "k=alice", "--format", "csv"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "who,b\nbob,(:User 'bob')\n\"carol, jr\",\"(:User 'carol, jr')\"\n"
    );
    // A script on standard input; the error names its line in the script.
    let mut child = Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(["query", p(&db)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"MATCH (u:User) RETURN count(*) AS users;\n\nMATCH (u:User)\nRETURN v;\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("| users |") && t.contains("| 3     |"), "{t}");
    assert!(
        t.contains("error: line 4, column 8: unknown variable `v`\n  RETURN v;\n         ^"),
        "{t}"
    );
    let o = quiver(&["query", p(&db), "-e", "RETURN 1", "--format", "xml"]);
    assert!(text(&o).contains("--format xml: expected table, json or csv"));
}

/// Drives `quiver shell` through a pseudo-terminal (util-linux `script`),
/// one line at a time, waiting for each prompt as a user would.
#[test]
fn shell_session_with_history_multiline_and_error() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let history = dir.path().join("history");
    let o = quiver(&[
        "query",
        p(&db),
        "-e",
        "CREATE NODE TYPE User; CREATE (:User {key: 'alice'})",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let cmd = format!("{} shell {}", env!("CARGO_BIN_EXE_quiver"), p(&db));
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("QUIVER_HISTORY", &history)
        .env("TERM", "dumb")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = out.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let wait_for = |what: &str, times: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while out.lock().unwrap().matches(what).count() < times {
            assert!(
                Instant::now() < deadline,
                "no {what:?} in:\n{}",
                out.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut prompts = 1;
    wait_for("quiver> ", prompts);
    for line in [
        "MATCH (u:User)",
        " RETURN u.key AS name;",
        "MATCH (x RETURN 1;",
        ":schema",
        ":quit",
    ] {
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        if line.ends_with(';') || line.starts_with(':') {
            prompts += 1;
            if line != ":quit" {
                wait_for("quiver> ", prompts);
            }
        } else {
            wait_for("...> ", 1);
        }
    }
    let status = child.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    let out = out.lock().unwrap().clone();
    assert!(status.success(), "{out}");
    assert!(out.contains("| name  |") && out.contains("| alice |"), "{out}");
    assert!(
        out.contains("error: line 1, column 10: expected ')' to close the node pattern, found 'RETURN'"),
        "{out}"
    );
    assert!(out.contains("| node | User | null | null | 1     |"), "{out}");
    let h = std::fs::read_to_string(&history).unwrap();
    assert!(
        h.contains("MATCH (u:User)\\n RETURN u.key AS name;") && h.contains(":schema"),
        "{h}"
    );
}

#[test]
fn neighbors_quantize_recall_drift_and_rce() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    // Two cliques of 8 users each, following each other.
    let mut lines = String::new();
    for c in 0..2 {
        for i in 0..8 {
            for j in 0..8 {
                if i != j {
                    lines.push_str(&format!("User\tc{c}u{i}\tFollows\tUser\tc{c}u{j}\n"));
                }
            }
        }
    }
    let file = dir.path().join("g.tsv");
    std::fs::write(&file, lines).unwrap();
    assert!(quiver(&["import", p(&db), p(&file), "--create-types"])
        .status
        .success());
    let train = quiver(&[
        "train",
        p(&db),
        "--dim",
        "8",
        "--epochs",
        "30",
        "--device",
        "cpu",
        "--score",
        "dot",
        "--seed",
        "1",
    ]);
    assert!(train.status.success(), "{}", text(&train));

    // neighbors: the rest of u0's clique, best first, in text and JSON.
    let o = quiver(&[
        "neighbors",
        p(&db),
        "--node",
        "User:c0u0",
        "--k",
        "7",
        "--json",
        "--metric",
        "cosine",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    let keys: Vec<&str> = v["neighbors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 7);
    assert!(
        keys.iter().filter(|k| k.starts_with("c0")).count() >= 6,
        "{keys:?}"
    );
    // Translated by Follows and leaving out who u0 already follows: nothing of its clique is left.
    let o = quiver(&[
        "neighbors",
        p(&db),
        "--node",
        "User:c0u0",
        "--relation",
        "Follows",
        "--exclude-connected",
        "--k",
        "3",
    ]);
    assert!(
        o.status.success() && text(&o).matches("c0u").count() == 1,
        "{}",
        text(&o)
    );
    let o = quiver(&["neighbors", p(&db), "--node", "User:nobody"]);
    assert!(
        !o.status.success() && text(&o).contains("no User with key \"nobody\""),
        "{}",
        text(&o)
    );
    let o = quiver(&["neighbors", p(&db), "--node", "User:c0u0", "--quantized"]);
    assert!(
        !o.status.success() && text(&o).contains("quiver quantize"),
        "{}",
        text(&o)
    );

    // quantize, then the int8 copy answers like the floats.
    let o = quiver(&["quantize", p(&db)]);
    assert!(
        o.status.success() && text(&o).contains("User: 16 rows"),
        "{}",
        text(&o)
    );
    let o = quiver(&[
        "neighbors",
        p(&db),
        "--node",
        "User:c0u0",
        "--k",
        "7",
        "--quantized",
        "--metric",
        "cosine",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).matches("c0u").count() >= 6, "{}", text(&o));

    // eval recall: held-out follows come back within the clique.
    let o = quiver(&[
        "eval",
        "recall",
        p(&db),
        "--relation",
        "Follows",
        "--holdout",
        "0.2",
        "--k",
        "5,7",
        "--dim",
        "8",
        "--epochs",
        "30",
        "--score",
        "dot",
        "--device",
        "cpu",
        "--json",
        "--mixture",
        "--clusters",
        "2",
        "--modes",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    let r = &v["reports"][0];
    assert_eq!(r["method"], "translation");
    assert!(r["held_out"].as_u64().unwrap() > 0);
    assert!(r["recall"][1][1].as_f64().unwrap() >= 0.5, "{v}");
    assert_eq!(v["reports"][1]["method"], "mixture");

    // drift between the model and the held-out one; models --drop.
    let o = quiver(&[
        "drift",
        p(&db),
        "default",
        "default-holdout",
        "--type",
        "User",
        "--k",
        "3",
    ]);
    assert!(
        o.status.success() && text(&o).contains("mean cosine"),
        "{}",
        text(&o)
    );
    assert!(quiver(&["models", p(&db), "--drop", "default-holdout"])
        .status
        .success());
    assert!(!text(&quiver(&["models", p(&db)])).contains("default-holdout"));

    // rce: against the label mean, and errors that say where.
    let pred = dir.path().join("pred.txt");
    std::fs::write(&pred, "0.9\t1\n0.2\t0\n# comment\n0.8,1\n0.7 1\n").unwrap();
    let o = quiver(&["rce", p(&pred)]);
    assert!(
        o.status.success() && text(&o).contains("RCE ") && text(&o).contains("4 examples"),
        "{}",
        text(&o)
    );
    std::fs::write(&pred, "0.9\t1\n1.5\t0\n").unwrap();
    let o = quiver(&["rce", p(&pred)]);
    assert!(
        text(&o).contains("pred.txt:2:1: probability \"1.5\""),
        "{}",
        text(&o)
    );
}

#[test]
fn a_database_held_by_another_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let held = quiver::Database::create(&db).unwrap();
    // This process holds it; the `quiver` process gets a clear error.
    let o = quiver(&["stats", p(&db)]);
    assert!(!o.status.success());
    assert!(text(&o).contains("locked"), "{}", text(&o));
    drop(held);
    assert!(quiver(&["stats", p(&db)]).status.success());
    // A database another process is still creating (it holds the lock of a
    // directory with nothing else in it yet): "locked", not "already exists".
    let new = dir.path().join("new");
    std::fs::create_dir(&new).unwrap();
    let lock = std::fs::File::create(new.join("LOCK")).unwrap();
    lock.try_lock().unwrap();
    let o = quiver(&["query", p(&new), "-e", "RETURN 1"]);
    assert!(!o.status.success() && text(&o).contains("locked"), "{}", text(&o));
    drop(lock);
    let o = quiver(&["query", p(&new), "-e", "RETURN 1"]);
    assert!(o.status.success(), "{}", text(&o));
}

/// Inputs as users hand them over: standard input, FIFOs, byte-order marks,
/// gzip test files, directories, and values that must stay strings.
#[test]
fn inputs_from_pipes_boms_and_typed_params() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let run_with_stdin = |args: &[&str], input: &[u8]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quiver"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };
    // `-` is standard input; a BOM is not part of the first key.
    let o = run_with_stdin(&["import", p(&db), "-"], b"\xEF\xBB\xBFa\tr\tb\nb\tr\tc\n");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(value_of(&db, "MATCH (n {key: 'a'}) RETURN count(n)"), "1");
    // A FIFO is read like a file.
    let fifo = dir.path().join("edges.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, "c\tr\td\n").unwrap())
    };
    let o = quiver(&["import", p(&db), p(&fifo)]);
    writer.join().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // A directory is named as one; a `.csv` in a directory name does not make a TSV file CSV.
    let o = quiver(&["import", p(&db), p(dir.path())]);
    assert!(
        !o.status.success() && text(&o).contains("is a directory"),
        "{}",
        text(&o)
    );
    let csv_dir = dir.path().join("x.csv.d");
    std::fs::create_dir(&csv_dir).unwrap();
    std::fs::write(csv_dir.join("e.tsv"), "d\tr\t\"e,f\"\n").unwrap();
    let o = quiver(&["import", p(&db), p(&csv_dir.join("e.tsv"))]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(value_of(&db, "MATCH (n {key: '\"e,f\"'}) RETURN count(n)"), "1");
    // A line over the cap is an error with its place, not a 2 GB buffer.
    let long = dir.path().join("long.tsv");
    std::fs::write(&long, format!("a\tr\t{}\n", "x".repeat(2 << 20))).unwrap();
    let o = quiver(&["import", p(&db), p(&long)]);
    assert!(
        !o.status.success() && text(&o).contains("long.tsv:1:1: line longer than 1 MiB"),
        "{}",
        text(&o)
    );
    let o = quiver(&["import", "--memory-edges", "0", p(&db), p(&long)]);
    assert!(
        !o.status.success() && text(&o).contains("memory_edges must be at least 1"),
        "{}",
        text(&o)
    );
    // A BOM before a script's first statement.
    let o = run_with_stdin(
        &["query", p(&db), "--format", "csv"],
        "\u{feff}RETURN 1 AS x;".as_bytes(),
    );
    assert!(o.status.success() && text(&o).contains("x\n1"), "{}", text(&o));
    // `k:str=007` stays a string.
    let o = quiver(&[
        "query",
        p(&db),
        "--format",
        "csv",
        "--param",
        "k:str=007",
        "--param",
        "n=007",
        "-e",
        "RETURN $k AS k, $n AS n",
    ]);
    assert!(text(&o).contains("k,n\n007,7"), "{}", text(&o));
    let o = quiver(&["query", p(&db), "--param", "k:int=x", "-e", "RETURN $k"]);
    assert!(
        !o.status.success() && text(&o).contains("is not an int"),
        "{}",
        text(&o)
    );
    // eval reads gzip; nothing to evaluate is an error, not MRR -0.
    let o = quiver(&["train", p(&db), "--device", "cpu", "--dim", "4", "--epochs", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let gz = dir.path().join("test.tsv.gz");
    let mut enc = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    enc.stdin.take().unwrap().write_all(b"a\tr\tb\n").unwrap();
    std::fs::write(&gz, enc.wait_with_output().unwrap().stdout).unwrap();
    let o = quiver(&["eval", p(&db), "--device", "cpu", "--test", p(&gz)]);
    assert!(
        o.status.success() && text(&o).contains("1 triples ranked"),
        "{}",
        text(&o)
    );
    let unknown = dir.path().join("unknown.tsv");
    std::fs::write(&unknown, "zz\tr\tyy\n").unwrap();
    let empty = dir.path().join("empty.tsv");
    std::fs::write(&empty, "").unwrap();
    for (file, says) in [(&unknown, "all 1 test triples"), (&empty, "no test triples")] {
        let o = quiver(&["eval", p(&db), "--device", "cpu", "--test", p(file)]);
        assert!(!o.status.success() && text(&o).contains(says), "{}", text(&o));
    }
    // RCE with one label has nothing to compare.
    let preds = dir.path().join("preds.txt");
    std::fs::write(&preds, "0.9 1\n0.8 1\n").unwrap();
    let o = quiver(&["rce", p(&preds)]);
    assert!(
        !o.status.success() && text(&o).contains("every label is 1"),
        "{}",
        text(&o)
    );
}

/// A write whose result `quiver query` printed survives kill -9 right after
/// (sled alone would still hold it in memory for up to 500 ms).
#[test]
fn acknowledged_writes_survive_kill_9() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let o = quiver(&["query", p(&db), "-e", "CREATE NODE TYPE N"]);
    assert!(o.status.success(), "{}", text(&o));
    let script = dir.path().join("script.cypher");
    let statements: String = (0..5000)
        .map(|i| format!("CREATE (:N {{key: 'k{i}'}});\n"))
        .collect();
    std::fs::write(&script, statements).unwrap();
    for (trial, kill_after) in [40, 120, 300].into_iter().enumerate() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quiver"))
            .args(["query", p(&db), "--format", "csv"])
            .stdin(std::fs::File::open(&script).unwrap())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Each statement prints a header and one row of counts.
        let mut acknowledged = 0;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            if !line.unwrap().starts_with("nodes_created") {
                acknowledged += 1;
            }
            if acknowledged == kill_after {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Statements before this trial's were acknowledged by earlier trials
        // (their creates of existing keys change nothing).
        let stored: usize = value_of(&db, "MATCH (n:N) RETURN count(n)").parse().unwrap();
        assert!(
            stored >= kill_after,
            "trial {trial}: {kill_after} writes acknowledged, {stored} stored"
        );
    }
}

/// Type names never leave `--out`, keys with tabs and newlines survive the
/// key tables, and export writes neither into a database nor over files.
#[test]
fn export_keeps_to_its_directory_and_round_trips_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let keys = ["a\tb", "line\nbreak", "back\\slash", "plain"];
    let script = "CREATE NODE TYPE `../../x`; CREATE NODE TYPE `sub/dir`; CREATE NODE TYPE `_relations`;
        CREATE RELATION TYPE r (`../../x` -> `sub/dir`);
        CREATE (:`../../x` {key: 'a\\tb'})-[:r]->(:`sub/dir` {key: 'line\\nbreak'});
        CREATE (:`../../x` {key: 'back\\\\slash'})-[:r]->(:`sub/dir` {key: 'plain'});
        CREATE (:`_relations` {key: 'z'});";
    let o = quiver(&["query", p(&db), "-e", script]);
    assert!(o.status.success(), "{}", text(&o));
    let o = quiver(&["train", p(&db), "--dim", "4", "--epochs", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = dir.path().join("deep/out");
    for format in ["npy", "tsv"] {
        let o = quiver(&["export", p(&db), "--format", format, "--out", p(&out)]);
        assert!(o.status.success(), "{}", text(&o));
        // Nothing outside `out`.
        let mut outside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        outside.sort();
        assert_eq!(outside, ["db", "deep"], "files written outside --out");
        let mut names: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let (x, sub) = ("%2E%2E%2F%2E%2E%2Fx", "sub%2Fdir");
        let expect: Vec<String> = match format {
            "npy" => [x, "%5Frelations", "_relations", sub]
                .iter()
                .flat_map(|s| [format!("{s}.keys.tsv"), format!("{s}.npy")])
                .collect(),
            _ => [x, "%5Frelations", "_relations", sub]
                .iter()
                .map(|s| format!("{s}.tsv"))
                .collect(),
        };
        assert_eq!(names, expect);
        // Each key is one field, and unescapes to the stored key.
        let table = |stem: &str| match format {
            "npy" => std::fs::read_to_string(out.join(format!("{stem}.keys.tsv"))).unwrap(),
            _ => std::fs::read_to_string(out.join(format!("{stem}.tsv"))).unwrap(),
        };
        let field = if format == "npy" { 1 } else { 0 };
        let mut read: Vec<String> = [x, sub]
            .iter()
            .flat_map(|s| {
                table(s)
                    .lines()
                    .map(|l| unescape(l.split('\t').nth(field).unwrap()))
                    .collect::<Vec<_>>()
            })
            .collect();
        read.sort();
        let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        want.sort();
        assert_eq!(read, want);
        // Not over existing files without --force.
        let o = quiver(&["export", p(&db), "--format", format, "--out", p(&out)]);
        assert!(
            !o.status.success() && text(&o).contains("exists (--force"),
            "{}",
            text(&o)
        );
        let o = quiver(&["export", p(&db), "--format", format, "--out", p(&out), "--force"]);
        assert!(o.status.success(), "{}", text(&o));
        std::fs::remove_dir_all(&out).unwrap();
    }
    let o = quiver(&["export", p(&db), "--out", p(&db)]);
    assert!(
        !o.status.success() && text(&o).contains("is inside database"),
        "{}",
        text(&o)
    );
}

/// The inverse of export's key escaping (PostgreSQL's text format).
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(c) => out.push(c),
            None => panic!("a field ends in a lone backslash: {field:?}"),
        }
    }
    out
}

/// Unknown config keys and settings beyond the machine are refused before training.
#[test]
fn train_refuses_unknown_keys_and_settings_beyond_the_machine() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let edges = dir.path().join("e.tsv");
    std::fs::write(&edges, "a\tr\tb\nb\tr\tc\n").unwrap();
    assert!(quiver(&["import", p(&db), p(&edges)]).status.success());
    for (toml, says) in [
        ("nosuch = 3\n", "unknown field `nosuch`"),
        ("[train]\ndim = 3\n", "unknown field `train`"),
    ] {
        let config = dir.path().join("c.toml");
        std::fs::write(&config, toml).unwrap();
        let o = quiver(&["train", p(&db), "--device", "cpu", "--config", p(&config)]);
        assert!(!o.status.success() && text(&o).contains(says), "{}", text(&o));
    }
    for args in [
        &["--threads", "100000"][..],
        &["--negatives", "100000000"],
        &["--chunk", "100000000"],
    ] {
        let o = quiver(&[&["train", p(&db), "--device", "cpu"][..], args].concat());
        assert!(
            !o.status.success() && text(&o).contains("invalid configuration"),
            "{args:?}: {}",
            text(&o)
        );
    }
    let o = quiver(&["train", p(&db), "--device", "cpu", "--warm-start", "nosuch"]);
    assert!(!o.status.success() && text(&o).contains("nosuch"), "{}", text(&o));
    let long = "m".repeat(300);
    let o = quiver(&["train", p(&db), "--device", "cpu", "--model", &long]);
    assert!(
        !o.status.success() && text(&o).contains("longer than 80"),
        "{}",
        text(&o)
    );
    let models = quiver(&["models", p(&db)]);
    assert!(
        !text(&models).contains("default") && !text(&models).contains("mmm"),
        "a refused run left a model: {}",
        text(&models)
    );
    // Counts far beyond the rows are clamped, not allocated.
    let o = quiver(&["train", p(&db), "--device", "cpu", "--dim", "4", "--epochs", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = quiver(&[
        "neighbors",
        p(&db),
        "--device",
        "cpu",
        "--node",
        "Entity:a",
        "--k",
        "100000000000",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = quiver(&[
        "drift",
        p(&db),
        "default",
        "default",
        "--type",
        "Entity",
        "--k",
        "1000000000000",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // A reader that closes the pipe early ends the command quietly.
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; {} stats {} | head -1",
            env!("CARGO_BIN_EXE_quiver"),
            p(&db)
        ))
        .output()
        .unwrap();
    assert!(o.status.success() && o.stderr.is_empty(), "{}", text(&o));
}

#[test]
fn pbg_export_and_import_verbs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let train = dir.path().join("train.tsv");
    let lines: String = (0..30)
        .map(|i| format!("e{i}\tnext\te{}\n", (i + 1) % 30))
        .collect();
    std::fs::write(&train, lines).unwrap();
    assert!(quiver(&["import", p(&db), p(&train)]).status.success());
    let out = dir.path().join("pbg");
    let o = quiver(&[
        "export",
        p(&db),
        "--format",
        "pbg",
        "--partitions",
        "2",
        "--out",
        p(&out),
    ]);
    assert!(
        o.status.success() && text(&o).contains("30 edges in 4 buckets"),
        "{}",
        text(&o)
    );
    for f in [
        "edges_1_0.h5",
        "entity_count_Entity_1.txt",
        "entity_names_Entity_0.json",
        "config.py",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let o = quiver(&["import-model", p(&db), p(&out), "--model", "pbg"]);
    assert!(
        !o.status.success() && text(&o).contains("checkpoint_version.txt"),
        "{}",
        text(&o)
    );
    let o = quiver(&["models", p(&db)]);
    assert!(o.status.success() && !text(&o).contains("pbg"), "{}", text(&o));
}

#[test]
fn training_validates_keeps_the_best_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let (db, valid) = ring_with_valid(dir.path(), "e1\tnext\te2\ne7\tnext\te8\n");
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
        "6",
        "--threads",
        "1",
        "--valid",
        p(&valid),
        "--eval-every",
        "2",
        "--patience",
        "5",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(text(&o).matches("valid after epoch").count(), 3, "{}", text(&o));
    let curve = std::fs::read_to_string(db.join("m.valid.tsv")).unwrap();
    assert_eq!(curve.lines().count(), 4, "{curve}");
    let o = quiver(&["models", p(&db)]);
    assert!(
        text(&o).contains("\"valid\"") && !text(&o).contains("m~best"),
        "{}",
        text(&o)
    );
    let o = quiver(&["train", p(&db), "--valid", p(&valid), "--metric", "auc"]);
    assert!(
        !o.status.success() && text(&o).contains("expected mrr or hits@10"),
        "{}",
        text(&o)
    );
}

#[test]
fn tune_chooses_on_validation_and_keeps_only_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let (db, valid) = ring_with_valid(dir.path(), "e1\tnext\te2\ne7\tnext\te8\ne20\tnext\te21\n");
    let base = dir.path().join("base.toml");
    std::fs::write(&base, "dim = 8\nthreads = 1\n").unwrap();
    let chosen = dir.path().join("chosen.toml");
    let tune = |extra: &[&str]| {
        let mut args = vec!["tune", p(&db), "--device", "cpu", "--config", p(&base)];
        args.extend_from_slice(extra);
        quiver(&args)
    };
    let o = tune(&[
        "--valid",
        p(&valid),
        "--set",
        "epochs=2",
        "--set",
        "lr=0.001,0.1",
        "--set",
        "score=l1,l2",
        "--save-config",
        p(&chosen),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    // Four points, in grid order, one marked; the chosen one has the best
    // validation score of the table and is the stored model.
    let rows: Vec<(bool, f64)> = out
        .lines()
        .filter(|l| l.contains("epochs = 2, lr = "))
        .filter(|l| l.contains('\t'))
        .map(|l| (l.starts_with('*'), l.split('\t').nth(1).unwrap().parse().unwrap()))
        .collect();
    assert_eq!(rows.len(), 4, "{out}");
    let best = rows.iter().map(|r| r.1).fold(f64::MIN, f64::max);
    let marked: Vec<_> = rows.iter().filter(|r| r.0).collect();
    assert_eq!(marked.len(), 1, "{out}");
    assert_eq!(marked[0].1, best, "{out}");
    let o = quiver(&["models", p(&db)]);
    let models = text(&o);
    assert!(models.contains("tuned:") && !models.contains('~'), "{models}");
    let stored: serde_json::Value = serde_json::from_str(
        models
            .lines()
            .find(|l| l.starts_with("tuned:"))
            .and_then(|l| l.split("metrics ").nth(1))
            .unwrap(),
    )
    .unwrap();
    assert!(
        (stored["valid"]["best"].as_f64().unwrap() - best).abs() < 5e-5,
        "{stored} vs {best}"
    );
    let config = std::fs::read_to_string(&chosen).unwrap();
    assert!(
        config.contains("dim = 8") && config.contains("epochs = 2"),
        "{config}"
    );
    assert!(db.join("tuned.tune.tsv").exists());
    // Test triples have no way in; a misspelt setting or no --valid is refused.
    let o = tune(&["--valid", p(&valid), "--set", "margn=1,2"]);
    assert!(!o.status.success() && text(&o).contains("margn"), "{}", text(&o));
    let o = tune(&["--valid", p(&valid), "--set", "dim=8,0"]);
    assert!(
        !o.status.success() && text(&o).contains("dim = 0: dim must be"),
        "{}",
        text(&o)
    );
    let o = tune(&["--set", "lr=0.1"]);
    assert!(
        !o.status.success() && text(&o).contains("--valid"),
        "{}",
        text(&o)
    );
    let o = tune(&["--valid", p(&valid), "--set", "lr"]);
    assert!(
        !o.status.success() && text(&o).contains("KEY=VALUE"),
        "{}",
        text(&o)
    );
}

#[test]
fn demo_keeps_the_database_in_the_directory_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let o = quiver(&["demo", "--dir", p(&out), "--users", "300"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("kept in"), "{}", text(&o));
    assert!(text(&quiver(&["check", p(&out.join("db"))])).contains("check passed"));
}
