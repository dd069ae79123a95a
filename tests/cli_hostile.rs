//! The command line used as a hostile user would (issue 34): outputs aimed
//! into a database directory, a disk that fills up during an export, runs
//! that diverge.

use std::path::Path;

mod cli_common;
use cli_common::{p, quiver, ring_with_valid, text, trained};

#[path = "tmpfs.rs"]
mod tmpfs;

/// The database opens and passes `check`.
fn intact(db: &Path) {
    let o = quiver(&["check", p(db)]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn tune_save_config_is_checked_before_the_grid_and_never_inside_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let (db, valid) = trained(dir.path());
    let tune = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "tune",
            p(&db),
            "--device",
            "cpu",
            "--valid",
            p(&valid),
            "--set",
            "dim=8",
            "--set",
            "epochs=1",
            "--save-config",
            p(out),
        ];
        args.extend_from_slice(extra);
        quiver(&args)
    };
    // Inside the database, however spelt: refused before any point trains.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(db.join("catalog"), &link).unwrap();
    for out in [
        db.join("catalog/conf"),
        db.join("catalog"),
        db.join("nowhere/../catalog/db"),
        link.join("conf"),
        db.join("chosen.toml"),
    ] {
        let o = tune(&out, &[]);
        let said = text(&o);
        assert!(!o.status.success(), "{}: {said}", out.display());
        assert!(said.contains("is inside database"), "{said}");
        assert!(!said.contains("point 1/"), "trained before refusing: {said}");
        intact(&db);
    }
    // An existing file is kept unless --force; a missing directory is named first.
    let chosen = dir.path().join("chosen.toml");
    std::fs::write(&chosen, "mine = 1\n").unwrap();
    let o = tune(&chosen, &[]);
    assert!(
        !o.status.success() && text(&o).contains("--force"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("point 1/"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&chosen).unwrap(), "mine = 1\n");
    let o = tune(&dir.path().join("no/such/dir.toml"), &[]);
    assert!(
        !o.status.success() && text(&o).contains("no directory"),
        "{}",
        text(&o)
    );
    let o = tune(&chosen, &["--force"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::read_to_string(&chosen).unwrap().contains("dim = 8"));
    intact(&db);
}

#[test]
fn exports_never_write_inside_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = trained(dir.path());
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&db, &link).unwrap();
    for format in ["npy", "tsv", "pbg", "pbg-checkpoint"] {
        for out in [
            db.clone(),
            db.join("catalog"),
            db.join("sub/dir"),
            dir.path().join("x/../db/catalog"),
            link.join("catalog"),
        ] {
            let o = quiver(&[
                "export",
                p(&db),
                "--model",
                "m",
                "--format",
                format,
                "--out",
                p(&out),
            ]);
            assert!(
                !o.status.success() && text(&o).contains("is inside database"),
                "{format} {}: {}",
                out.display(),
                text(&o)
            );
        }
    }
    assert!(!db.join("sub").exists());
    intact(&db);
}

#[test]
fn an_export_onto_a_full_disk_names_the_file_and_leaves_nothing_half_written() {
    let Some(fs) = tmpfs::Tmpfs::mount("64k") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let train = dir.path().join("train.tsv");
    let lines: String = (0..2000)
        .map(|i| format!("e{i}\tnext\te{}\n", (i + 1) % 2000))
        .collect();
    std::fs::write(&train, lines).unwrap();
    assert!(quiver(&["import", p(&db), p(&train)]).status.success());
    let o = quiver(&[
        "train",
        p(&db),
        "--model",
        "m",
        "--device",
        "cpu",
        "--dim",
        "16",
        "--epochs",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // 2,000 rows × 16 floats: 128 KB, twice the disk.
    let out = fs.path().join("out");
    for format in ["npy", "tsv"] {
        let o = quiver(&[
            "export",
            p(&db),
            "--model",
            "m",
            "--format",
            format,
            "--out",
            p(&out),
        ]);
        let said = text(&o);
        assert!(!o.status.success(), "{said}");
        let name = if format == "npy" {
            "Entity.npy"
        } else {
            "Entity.tsv"
        };
        assert!(said.contains(&out.join(name).display().to_string()), "{said}");
        assert!(said.contains("No space left"), "{said}");
        // No truncated file, no temporary.
        let left: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn a_diverging_run_is_an_error_and_its_model_is_not_finished() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = ring_with_valid(dir.path(), "");
    // (Inside the max-norm ball a huge rate is projected back; without it, it diverges.)
    for (flag, value) in [("--lr", "1e38"), ("--init-scale", "1e30")] {
        let o = quiver(&[
            "train",
            p(&db),
            "--model",
            "wild",
            "--device",
            "cpu",
            "--dim",
            "8",
            "--max-norm",
            "0",
            "--force",
            flag,
            value,
        ]);
        let said = text(&o);
        assert!(!o.status.success(), "{flag} {value}: {said}");
        assert!(said.contains("diverged in epoch "), "{said}");
        let o = quiver(&["models", p(&db)]);
        assert!(
            text(&o).contains("wild:") && text(&o).contains("stopped at"),
            "{}",
            text(&o)
        );
    }
    intact(&db);
}

#[test]
fn tune_and_validation_flags_are_checked_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let (db, valid) = trained(dir.path());
    let run = |args: &[&str]| {
        let o = quiver(args);
        let said = text(&o);
        assert!(!o.status.success(), "{args:?}: {said}");
        assert!(
            !said.contains("point 1/") && !said.contains("epoch   1"),
            "{said}"
        );
        said
    };
    let tune = |extra: &[&str]| {
        let mut args = vec!["tune", p(&db), "--device", "cpu", "--valid", p(&valid)];
        args.extend_from_slice(extra);
        run(&args)
    };
    assert!(tune(&["--set", "lr=0.1", "--set", "lr=0.2"]).contains("`lr` is set twice"));
    let values: Vec<String> = (1..=100).map(|i| i.to_string()).collect();
    let many = format!("margin={}", values.join(","));
    let many_lr = format!("seed={}", values.join(","));
    assert!(tune(&["--set", &many, "--set", &many_lr]).contains("10000 points; at most 1000"));
    assert!(tune(&["--set", "lr=0.1", "--eval-every", "0"]).contains("--eval-every 0"));
    // Validation settings with validation turned off, a target with a
    // validation file, an unknown target, and a validation file that never ends.
    for flag in [
        ["--patience", "3"],
        ["--eval-every", "2"],
        ["--metric", "hits@10"],
        ["--target", "next"],
    ] {
        let said = run(&[
            "train",
            p(&db),
            "--model",
            "x",
            "--device",
            "cpu",
            "--dim",
            "8",
            "--valid",
            "none",
            flag[0],
            flag[1],
        ]);
        assert!(said.contains("need validation (--valid none"), "{said}");
    }
    let train = |extra: &[&str]| {
        let mut args = vec!["train", p(&db), "--model", "x", "--device", "cpu", "--dim", "8"];
        args.extend_from_slice(extra);
        run(&args)
    };
    let said = train(&["--valid", p(&valid), "--target", "next"]);
    assert!(said.contains("--target chooses the held-out edges"), "{said}");
    let said = train(&["--target", "Nope"]);
    assert!(said.contains("Nope"), "{said}");
    let said = run(&[
        "train",
        p(&db),
        "--model",
        "x",
        "--device",
        "cpu",
        "--dim",
        "8",
        "--valid",
        "/dev/zero",
    ]);
    assert!(said.contains("/dev/zero:1:1: line longer than 1 MiB"), "{said}");
    // No trial model is left behind by a grid that fails.
    let said = tune(&["--set", "lr=0.1", "--metric", "nope"]);
    assert!(said.contains("--metric nope"), "{said}");
    let o = quiver(&["models", p(&db)]);
    assert!(!text(&o).contains('~'), "{}", text(&o));
    intact(&db);
}

#[test]
fn special_files_and_huge_counts_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = trained(dir.path());
    let o = quiver(&["query", p(&db), "--param", "x:json=@/dev/zero", "-e", "RETURN $x"]);
    assert!(
        !o.status.success() && text(&o).contains("not a regular file"),
        "{}",
        text(&o)
    );
    let o = quiver(&["rce", "/dev/zero"]);
    assert!(
        !o.status.success() && text(&o).contains("not a regular file"),
        "{}",
        text(&o)
    );
    // Endless input where a stream is allowed: given up on at a bound.
    let o = quiver(&["import", p(&dir.path().join("zero")), "/dev/zero"]);
    assert!(
        !o.status.success() && text(&o).contains("a line longer than"),
        "{}",
        text(&o)
    );
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(["query", p(&db)])
        .stdin(std::fs::File::open("/dev/zero").unwrap())
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains("the script on standard input passes"),
        "{}",
        text(&o)
    );
    // PBG exports: partitions bounded by the node count; settings PBG could not load refused.
    let out = dir.path().join("pbg");
    for format in ["pbg", "pbg-checkpoint"] {
        let o = quiver(&[
            "export",
            p(&db),
            "--model",
            "m",
            "--format",
            format,
            "--partitions",
            "4294967295",
            "--out",
            p(&out),
        ]);
        assert!(
            !o.status.success() && text(&o).contains("from 1 to 40"),
            "{}",
            text(&o)
        );
    }
    for bad in ["margin = nan", "lr = inf"] {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, bad).unwrap();
        let o = quiver(&[
            "export",
            p(&db),
            "--format",
            "pbg",
            "--config",
            p(&config),
            "--out",
            p(&out),
        ]);
        assert!(
            !o.status.success() && text(&o).contains("invalid configuration"),
            "{}",
            text(&o)
        );
    }
    assert!(!out.exists());
    // drift with k as large as the rows, or far larger, answers at once.
    let o = quiver(&[
        "train",
        p(&db),
        "--model",
        "m2",
        "--device",
        "cpu",
        "--dim",
        "8",
        "--epochs",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for k in ["40", "1000000000000"] {
        let started = std::time::Instant::now();
        let o = quiver(&["drift", p(&db), "m", "m2", "--type", "Entity", "--k", k]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(started.elapsed().as_secs_f64() < 10.0, "--k {k}");
    }
}
