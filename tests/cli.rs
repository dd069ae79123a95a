//! The `quiver` command line, run as a user would (this file belongs to the
//! root package, which builds the binary; see its Cargo.toml).

use std::path::Path;
use std::process::{Command, Output};

fn quiver(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
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
