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
