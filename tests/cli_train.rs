//! Training as a user with no config meets it: validation on edges the run
//! holds out by itself, and mixtures that step aside unless they help.

use std::path::{Path, PathBuf};

mod cli_common;
use cli_common::{p, quiver, ring_with_valid, text, trained};

/// 40 communities of 15 users: each follows 6 others of its own community
/// (both ways stored as given) and likes 6 of its community's 20 items.
fn network(dir: &Path) -> PathBuf {
    let mut lines = String::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for c in 0..40 {
        for u in 0..15 {
            for _ in 0..6 {
                let v = next(15);
                if v != u {
                    lines.push_str(&format!("User\tc{c}u{u}\tFollows\tUser\tc{c}u{v}\n"));
                }
                lines.push_str(&format!("User\tc{c}u{u}\tLikes\tItem\tc{c}i{}\n", next(20)));
            }
        }
    }
    let file = dir.join("net.tsv");
    std::fs::write(&file, lines).unwrap();
    let db = dir.join("db");
    let o = quiver(&["import", "--create-types", p(&db), p(&file)]);
    assert!(o.status.success(), "{}", text(&o));
    db
}

/// `quiver train DB --model MODEL --device cpu EXTRA...`.
fn train(db: &Path, model: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["train", p(db), "--model", model, "--device", "cpu"];
    args.extend_from_slice(extra);
    quiver(&args)
}

fn metrics(db: &Path, model: &str) -> serde_json::Value {
    let o = quiver(&["models", p(db)]);
    let line = text(&o)
        .lines()
        .find(|l| l.starts_with(&format!("{model}:")))
        .unwrap_or_else(|| panic!("{}", text(&o)))
        .to_string();
    serde_json::from_str(line.split("metrics ").nth(1).unwrap()).unwrap_or_default()
}

#[test]
fn train_validates_on_its_own_held_out_edges_unless_told_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let db = network(dir.path());
    let o = train(&db, "m", &["--dim", "8", "--epochs", "4"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("held-out edges"), "{}", text(&o));
    let v = &metrics(&db, "m")["valid"].clone();
    assert_eq!(v["held_out"], true, "{v}");
    assert!(v["triples"].as_u64().unwrap() > 100, "{v}");
    assert!(!v["curve"].as_array().unwrap().is_empty(), "{v}");
    // Scoring it on a test file keeps what validation said.
    let test = dir.path().join("test.tsv");
    std::fs::write(&test, "c0u1\tFollows\tc0u2\n").unwrap();
    let o = quiver(&["eval", p(&db), "--model", "m", "--test", p(&test)]);
    assert!(o.status.success(), "{}", text(&o));
    let after = metrics(&db, "m");
    assert_eq!(&after["valid"], v, "{after}");
    assert!(after["mrr"].is_number(), "{after}");
    let tsv = std::fs::read_to_string(db.join("m.valid.tsv")).unwrap();
    assert!(tsv.starts_with("epoch\tmrr\thits@10\n1\t"), "{tsv}");

    let o = train(&db, "n", &["--dim", "8", "--valid", "none"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("held-out"), "{}", text(&o));
    assert_eq!(text(&o).matches("epoch ").count(), 10, "{}", text(&o));
    assert!(metrics(&db, "n").get("valid").is_none());

    // A model of that name is kept unless --force.
    let o = train(&db, "n", &["--dim", "8", "--valid", "none"]);
    assert!(
        !o.status.success() && text(&o).contains("model `n` exists: --force replaces it"),
        "{}",
        text(&o)
    );
    let o = train(&db, "n", &["--dim", "8", "--epochs", "1", "--force"]);
    assert!(o.status.success(), "{}", text(&o));

    // A graph too small to spare edges trains 10 epochs on all of them.
    let small = dir.path().join("ring");
    std::fs::create_dir(&small).unwrap();
    let (ring, _) = ring_with_valid(&small, "");
    let o = quiver(&["train", p(&ring), "--dim", "8", "--device", "cpu"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("held-out"), "{}", text(&o));
    assert_eq!(text(&o).matches("epoch ").count(), 10, "{}", text(&o));
}

#[test]
fn mixtures_choose_their_modes_on_validation_and_step_aside() {
    let dir = tempfile::tempdir().unwrap();
    let db = network(dir.path());
    let o = quiver(&[
        "eval",
        "recall",
        p(&db),
        "--relation",
        "Follows",
        "--dim",
        "16",
        "--epochs",
        "6",
        "--score",
        "dot",
        "--loss",
        "softmax",
        "--device",
        "cpu",
        "--json",
        "--mixture",
        "--clusters",
        "8",
        "--target",
        "Follows",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("modes chosen on validation"), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    let (single, mix) = (&v["reports"][0], &v["reports"][1]);
    assert_eq!(mix["method"], "mixture");
    let modes = mix["modes"].as_u64().unwrap();
    assert!([1, 2, 3, 5].contains(&modes), "{v}");
    if modes == 1 {
        assert_eq!(
            mix["recall"], single["recall"],
            "a mixture that steps aside is the node's own row"
        );
    }
    // A model without its own validation edges cannot choose: --modes is asked for.
    let o = quiver(&[
        "eval",
        "recall",
        p(&db),
        "--relation",
        "Follows",
        "--dim",
        "8",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--mixture",
        "--valid",
        "none",
        "--model",
        "x",
    ]);
    assert!(
        !o.status.success() && text(&o).contains("give --modes"),
        "{}",
        text(&o)
    );
}

#[test]
fn train_auto_tries_its_points_on_one_split_and_keeps_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let db = network(dir.path());
    let o = train(&db, "a", &["--auto", "--epochs", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    let said = text(&o);
    // Every point judged on the same held-out edges, the best marked and kept.
    let rows: Vec<&str> = said.lines().filter(|l| l.contains("\t")).collect();
    assert_eq!(rows.len(), 5, "{said}");
    assert_eq!(rows.iter().filter(|l| l.starts_with('*')).count(), 1, "{said}");
    let kept: f64 = rows
        .iter()
        .find(|l| l.starts_with('*'))
        .unwrap()
        .split('\t')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let all: Vec<f64> = rows[1..]
        .iter()
        .map(|l| l.split('\t').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(all.iter().all(|&x| x <= kept), "{said}");
    let v = &metrics(&db, "a")["valid"];
    assert!((v["best"].as_f64().unwrap() - kept).abs() < 1e-4, "{v}");
    assert!(!text(&quiver(&["models", p(&db)])).contains('~'));
    // A zero budget still trains the first point, and only it.
    let o = train(&db, "b", &["--auto", "--budget", "0s", "--epochs", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        text(&o).lines().filter(|l| l.contains("\t")).count(),
        2,
        "{}",
        text(&o)
    );
    for (args, says) in [
        (vec!["--auto", "--valid", "none"], "it takes no --valid"),
        (
            vec!["--auto", "--budget", "soon"],
            "expected 90s, 10m, 1h or seconds",
        ),
        (vec!["--budget", "1m"], "--auto"),
    ] {
        let o = train(&db, "c", &args);
        assert!(
            !o.status.success() && text(&o).contains(says),
            "{args:?}: {}",
            text(&o)
        );
    }
}

#[test]
fn ctrl_c_stops_training_at_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let db = network(dir.path());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args([
            "train",
            p(&db),
            "--model",
            "m",
            "--dim",
            "32",
            "--epochs",
            "3000",
            "--valid",
            "none",
        ])
        .args(["--device", "cpu"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(
        text(&o).contains("stopping at the next safe point"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("`--resume` continues it") || text(&o).contains("--resume` continues it"),
        "{}",
        text(&o)
    );
    let listed = text(&quiver(&["models", p(&db)]));
    assert!(
        listed.contains("m: ") && listed.contains("stopped at"),
        "{listed}"
    );
    assert!(text(&quiver(&["check", p(&db)])).contains("check passed"));
}

#[test]
fn models_show_the_changes_since_training_and_refresh_trains_on_them() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = trained(dir.path());
    let json = |db: &Path| -> Vec<serde_json::Value> {
        let o = quiver(&["models", p(db), "--json"]);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert_eq!(json(&db)[0]["since"]["edges_added"], 0);
    let more = dir.path().join("more.tsv");
    std::fs::write(&more, "e1\tnext\te20\nnew\tnext\te3\n").unwrap();
    assert!(quiver(&["import", p(&db), p(&more)]).status.success());
    let o = quiver(&["models", p(&db)]);
    assert!(
        text(&o).contains("since trained: 2 edges added, 0 deleted; 1 nodes added, 0 deleted"),
        "{}",
        text(&o)
    );
    let o = quiver(&[
        "refresh",
        p(&db),
        "--model",
        "m",
        "--threads",
        "1",
        "--epochs",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("refreshed `m` as `m@2`"), "{}", text(&o));
    let models = json(&db);
    let m2 = models.iter().find(|m| m["name"] == "m@2").unwrap();
    assert_eq!(
        m2["since"],
        serde_json::json!({"edges_added": 0, "edges_deleted": 0, "nodes_added": 0, "nodes_deleted": 0})
    );
    assert_eq!(m2["settings"]["config"]["refresh"]["model"], "m");
    // Nothing changed since m@2: nothing to refresh.
    let o = quiver(&["refresh", p(&db), "--model", "m@2"]);
    assert!(
        !o.status.success() && text(&o).contains("nothing changed"),
        "{}",
        text(&o)
    );
    assert!(quiver(&["check", p(&db)]).status.success());
}
