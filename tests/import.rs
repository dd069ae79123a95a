//! Import formats and bad input: each problem gives the documented error, with
//! file, line and column, and leaves the database unchanged.

use quiver_tests::RngCore;
use std::io::Write;
use std::path::{Path, PathBuf};

use quiver_storage::import::ImportOptions;
use quiver_storage::{Database, StorageError};
use quiver_tests::named_edges;

fn file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn import(
    db: &Database,
    files: &[PathBuf],
    opts: &ImportOptions,
) -> Result<quiver_storage::import::ImportReport, StorageError> {
    db.import(files, opts, &mut |_| {})
}

#[test]
fn plain_triples_lf_crlf_csv_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("db")).unwrap();
    let tsv = file(
        dir.path(),
        "a.txt",
        b"/m/1\t/r/x\t/m/2\r\n/m/2\t/r/x\t/m/3\r\n\r\n/m/1\t/r/x\t/m/2\r\n",
    );
    let csv = file(
        dir.path(),
        "b.csv",
        b"head,relation,tail\n\"/m/3\",/r/y,\"/m/\"\"4\"\"\"\n",
    );
    let mut gz = flate2_writer();
    gz.write_all(b"/m/4\t/r/y\t/m/1\n").unwrap();
    let gzf = file(dir.path(), "c.txt.gz", &gz.finish().unwrap());
    let r = import(&db, &[tsv, csv, gzf], &ImportOptions::default()).unwrap();
    assert_eq!(r.edges_read, 5);
    assert_eq!(r.edges_added, 4);
    assert_eq!(r.nodes_added, 5);
    let c = db.catalog();
    assert_eq!(c.node_types[0].name, "Entity");
    assert_eq!(c.relations.len(), 2);
    let e = named_edges(&db);
    assert!(
        e.contains(&("/r/y".into(), "/m/3".into(), "/m/\"4\"".into(), 1f32.to_bits())),
        "{e:?}"
    );
    assert!(db.snapshot().node_id(0, "/m/1\r").is_none());
    // A second import adds to the first.
    let more = file(dir.path(), "d.txt", b"/m/9\t/r/x\t/m/1\n");
    assert_eq!(
        import(&db, &[more], &ImportOptions::default())
            .unwrap()
            .edges_added,
        1
    );
    assert_eq!(db.snapshot().edge_count(), 5);
    assert!(db.check().unwrap().ok());
}

/// A gzip writer without a direct flate2 dependency in this crate: the
/// storage crate reads gzip; we write it with the system's `gzip`.
fn flate2_writer() -> GzipPipe {
    GzipPipe(Vec::new())
}

struct GzipPipe(Vec<u8>);

impl Write for GzipPipe {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl GzipPipe {
    fn finish(self) -> std::io::Result<Vec<u8>> {
        let mut child = std::process::Command::new("gzip")
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        child.stdin.take().unwrap().write_all(&self.0)?;
        Ok(child.wait_with_output()?.stdout)
    }
}

fn typed_db(dir: &Path) -> Database {
    let db = Database::create(dir.join("db")).unwrap();
    db.create_node_type("User").unwrap();
    db.create_node_type("Tweet").unwrap();
    db.create_relation_type("Follows", "User", "User").unwrap();
    db.create_relation_type("Authors", "User", "Tweet").unwrap();
    db
}

#[test]
fn typed_edges_with_weights_and_schema_checks() {
    let dir = tempfile::tempdir().unwrap();
    let db = typed_db(dir.path());
    let f = file(
        dir.path(),
        "e.tsv",
        b"User\talice\tFollows\tUser\tbob\nUser\talice\tAuthors\tTweet\tt1\t2.5\n",
    );
    import(&db, &[f], &ImportOptions::default()).unwrap();
    let e = named_edges(&db);
    assert_eq!(e.len(), 2);
    assert!(e.contains(&("Authors".into(), "alice".into(), "t1".into(), 2.5f32.to_bits())));
    // Unknown types only with --create-types.
    let g = file(dir.path(), "g.tsv", b"User\talice\tLikes\tHashtag\t#rust\n");
    let err = import(&db, std::slice::from_ref(&g), &ImportOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("g.tsv:1:18: unknown node type `Hashtag`"),
        "{err}"
    );
    let opts = ImportOptions {
        create_types: true,
        ..Default::default()
    };
    import(&db, &[g], &opts).unwrap();
    let c = db.catalog();
    let likes = &c.relations[c.relation("Likes").unwrap() as usize];
    assert_eq!(c.type_name(likes.dst), "Hashtag");
}

/// Each bad input and the error it must give.
#[test]
fn bad_lines_are_rejected_whole_with_positions() {
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "cols.tsv",
            b"a\tr\tb\na\tr\n",
            "cols.tsv:2:1: expected 3 columns (head, relation, tail), found 2",
        ),
        (
            "cols4.tsv",
            b"a\tr\tb\tc\n",
            "cols4.tsv:1:7: expected 3 columns (head, relation, tail), found 4",
        ),
        ("empty.tsv", b"a\tr\tb\n\tr\tb\n", "empty.tsv:2:1: empty head key"),
        ("emptyrel.tsv", b"a\t\tb\n", "emptyrel.tsv:1:3: empty relation"),
        ("utf8.tsv", b"a\tr\tb\xff\n", "utf8.tsv:1:6: invalid UTF-8"),
        ("quote.csv", b"a,\"r,b\n", "quote.csv:1:3: unclosed quote"),
        (
            "typed.tsv",
            b"User\tu1\tFollows\tTweet\tt1\n",
            "typed.tsv:1:9: relation `Follows` goes User -> User, not User -> Tweet",
        ),
        (
            "weight.tsv",
            b"User\tu1\tFollows\tUser\tu2\tx\n",
            "weight.tsv:1:25: weight `x` is not a finite number ≥ 0",
        ),
        (
            "weight2.tsv",
            b"User\tu1\tFollows\tUser\tu2\tinf\n",
            "weight2.tsv:1:25: weight `inf` is not a finite number ≥ 0",
        ),
        (
            "unknownrel.tsv",
            b"User\tu1\tLikes\tUser\tu2\n",
            "unknownrel.tsv:1:9: unknown relation `Likes` (use --create-types to create it)",
        ),
        (
            "typedcols.tsv",
            b"User\tu1\tFollows\tUser\n",
            "typedcols.tsv:1:17: expected 3 columns (head, relation, tail), found 4",
        ),
    ];
    for (name, bytes, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let db = typed_db(dir.path());
        let seed = file(dir.path(), "seed.tsv", b"User\tx\tFollows\tUser\ty\n");
        import(&db, &[seed], &ImportOptions::default()).unwrap();
        let before = (named_edges(&db), db.catalog());
        let f = file(dir.path(), name, bytes);
        let err = import(&db, &[f], &ImportOptions::default()).unwrap_err();
        assert!(matches!(err, StorageError::ImportRejected(_)), "{name}: {err}");
        assert!(
            err.to_string().contains(expected),
            "{name}: got\n{err}\nwanted {expected}"
        );
        assert_eq!(
            (named_edges(&db), db.catalog()),
            before,
            "{name}: database changed"
        );
        drop(db);
        let db = Database::open(dir.path().join("db")).unwrap();
        assert_eq!(named_edges(&db), before.0, "{name}: changed on disk");
    }
}

#[test]
fn many_bad_lines_list_twenty_then_count_and_skip_bad_imports_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("db")).unwrap();
    let mut text = String::new();
    for i in 0..50 {
        text.push_str(&format!("a{i}\tr\tb{i}\n"));
        text.push_str(&format!("bad{i}\n"));
    }
    let f = file(dir.path(), "many.tsv", text.as_bytes());
    let err = import(&db, std::slice::from_ref(&f), &ImportOptions::default()).unwrap_err();
    let StorageError::ImportRejected(list) = &err else {
        panic!("{err}")
    };
    assert_eq!((list.first.len(), list.total), (20, 50));
    assert!(err.to_string().ends_with("... and 30 more"), "{err}");
    assert_eq!(db.snapshot().edge_count(), 0);
    let r = import(
        &db,
        &[f],
        &ImportOptions {
            skip_bad: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((r.edges_added, r.skipped.total), (50, 50));
    assert_eq!(r.skipped.first[0].line, 2);
}

#[test]
fn spilled_import_equals_in_memory_import() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    let mut random = quiver_tests::rng(99);
    for i in 0..20_000 {
        let x = random.next_u64();
        // Duplicates on purpose: the last weight of an edge must win in both paths.
        text.push_str(&format!(
            "User\tu{}\tFollows\tUser\tu{}\t{}\n",
            x % 300,
            (x >> 9) % 300,
            i % 5
        ));
    }
    let f = file(dir.path(), "big.tsv", text.as_bytes());
    let small = ImportOptions {
        memory_edges: 1000,
        ..Default::default()
    };
    let a = typed_db(&dir.path().join("a"));
    let b = typed_db(&dir.path().join("b"));
    import(&a, std::slice::from_ref(&f), &ImportOptions::default()).unwrap();
    import(&b, std::slice::from_ref(&f), &small).unwrap();
    assert_eq!(named_edges(&a), named_edges(&b));
    // A second spilled import on top of a base merges with it.
    let g = file(dir.path(), "more.tsv", b"User\tu1\tFollows\tUser\tnew\t7\n");
    import(&b, &[g], &small).unwrap();
    assert_eq!(named_edges(&b).len(), named_edges(&a).len() + 1);
    assert!(b.check().unwrap().ok());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("b/db"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A Parquet file with `head`, `relation`, `tail` (nullable) and a column
/// the import ignores, in row groups of two rows.
fn parquet_triples(path: &Path, rows: &[(&str, &str, Option<&str>)]) {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let schema = parquet::schema::parser::parse_message_type(
        "message m { required binary extra (UTF8); required binary head (UTF8);
                     required binary relation (UTF8); optional binary tail (UTF8); }",
    )
    .unwrap();
    let props = std::sync::Arc::new(WriterProperties::builder().build());
    let mut w =
        SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema.into(), props).unwrap();
    for group in rows.chunks(2) {
        let mut g = w.next_row_group().unwrap();
        for c in 0..4 {
            let mut col = g.next_column().unwrap().unwrap();
            let (values, defs): (Vec<ByteArray>, Vec<i16>) = match c {
                0 => (group.iter().map(|_| "x".into()).collect(), vec![]),
                1 => (group.iter().map(|r| r.0.into()).collect(), vec![]),
                2 => (group.iter().map(|r| r.1.into()).collect(), vec![]),
                _ => (
                    group.iter().filter_map(|r| r.2.map(ByteArray::from)).collect(),
                    group.iter().map(|r| r.2.is_some() as i16).collect(),
                ),
            };
            let defs = (c == 3).then_some(&defs[..]);
            col.typed::<ByteArrayType>()
                .write_batch(&values, defs, None)
                .unwrap();
            col.close().unwrap();
        }
        g.close().unwrap();
    }
    w.close().unwrap();
}

#[test]
fn parquet_files_import_as_triples_and_damaged_ones_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("db")).unwrap();
    let good = dir.path().join("t.parquet");
    parquet_triples(
        &good,
        &[
            ("a", "r", Some("b")),
            ("b", "r", Some("c")),
            ("c", "s", Some("a")),
        ],
    );
    let r = import(&db, std::slice::from_ref(&good), &ImportOptions::default()).unwrap();
    assert_eq!((r.edges_read, r.nodes_added, r.lines), (3, 3, 3));
    assert!(named_edges(&db).contains(&("s".into(), "c".into(), "a".into(), 1f32.to_bits())));

    // A null is an error at its row and column; nothing is stored.
    let nulls = dir.path().join("n.parquet");
    parquet_triples(
        &nulls,
        &[("d", "r", Some("e")), ("e", "r", Some("f")), ("f", "r", None)],
    );
    let Err(StorageError::ImportRejected(e)) = import(&db, &[nulls], &ImportOptions::default()) else {
        panic!("a null key was accepted")
    };
    assert_eq!((e.first[0].line, e.first[0].column), (3, 4));
    assert_eq!(e.first[0].message, "`tail` is null");
    assert_eq!(db.snapshot().edge_count(), 3);

    // Damaged copies (bytes changed, the file cut short): an error or a
    // clean import, never a panic, and the database as it was on error.
    let bytes = std::fs::read(&good).unwrap();
    let mut rng = quiver_tests::rng(11);
    let bad = dir.path().join("bad.parquet");
    for _ in 0..400 {
        let mut b = bytes.clone();
        for _ in 0..1 + rng.next_u32() % 6 {
            let i = rng.next_u32() as usize % b.len();
            b[i] = rng.next_u32() as u8;
        }
        if rng.next_u32().is_multiple_of(3) {
            let cut = rng.next_u32() as usize % b.len();
            b.drain(cut..b.len() - 8);
        }
        std::fs::write(&bad, &b).unwrap();
        let before = db.snapshot().edge_count();
        if import(&db, std::slice::from_ref(&bad), &ImportOptions::default()).is_err() {
            assert_eq!(db.snapshot().edge_count(), before);
        }
    }
    db.check().unwrap();
}
