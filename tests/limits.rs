//! The query layer's bounds on memory and time under hostile statements
//! (issue 34): rows that carry a long list share it, strings and lists a
//! statement builds are capped, sorts hold a bounded number of values and
//! watch the clock, statements have a bounded number of clauses, and a
//! statement that writes a large batch leaves no large delta behind;
//! training and index builds run by a statement stop at its timeout.
//! Memory is measured as the peak RSS of a child process that runs one
//! statement.

use std::process::Command;

use quiver_query::{Graph, Limits, Params, QueryError, Value};

const CHILD_ENV: &str = "QUIVER_LIMITS_CHILD";

/// Runs `query` on an empty database in a child process; its peak RSS in
/// MiB (the child's own `VmHWM`: `ru_maxrss` would count the parent's pages
/// too when the child was spawned sharing its memory).
fn peak_mib(query: &str) -> u64 {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_child_runs_one_statement",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_ENV, query)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{query}: {text}");
    let kb: u64 = text
        .lines()
        .find_map(|l| l.split("peak_kb ").nth(1))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak in {text}"));
    kb / 1024
}

#[test]
fn a_child_runs_one_statement() {
    if let Ok(query) = std::env::var(CHILD_ENV) {
        let dir = tempfile::tempdir().unwrap();
        let g = Graph::open(dir.path()).unwrap();
        g.query(&query, &Params::new()).unwrap();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let hwm = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap();
        println!("peak_kb {}", hwm.trim().trim_end_matches("kB").trim());
    }
}

#[test]
fn rows_share_the_list_they_carry() {
    // 12,000 rows each holding the 12,000-element list: 2.3 GB as copies.
    let q =
        "UNWIND range(1, 12000) AS x WITH collect(x) AS l UNWIND l AS y WITH l, y RETURN count(*), size(l)";
    let mib = peak_mib(q);
    assert!(mib < 300, "{mib} MiB");
}

fn run(g: &Graph, q: &str) -> Result<Vec<Vec<Value>>, QueryError> {
    g.query(q, &Params::new()).map(|r| r.rows)
}

#[test]
fn built_strings_and_lists_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let g = Graph::open(dir.path()).unwrap();
    // Ten nested tenfold replaces: 10^10 characters.
    let mut e = "'x'".to_string();
    for _ in 0..10 {
        e = format!("replace({e}, 'x', 'xxxxxxxxxx')");
    }
    let started = std::time::Instant::now();
    let err = run(&g, &format!("RETURN size({e})")).unwrap_err().to_string();
    assert!(err.contains("would pass the cap"), "{err}");
    assert!(started.elapsed().as_secs_f64() < 5.0);
    // Doubling a list in a chain of WITHs.
    let mut q = "WITH [1, 2, 3, 4, 5, 6, 7, 8] AS l".to_string();
    for _ in 0..30 {
        q.push_str(" WITH l + l AS l");
    }
    let err = run(&g, &format!("{q} RETURN size(l)")).unwrap_err().to_string();
    assert!(
        err.contains("a list of") && err.contains("would pass the cap"),
        "{err}"
    );
    let mut s = "WITH 'abcdefgh' AS s".to_string();
    for _ in 0..30 {
        s.push_str(" WITH s + s AS s");
    }
    let err = run(&g, &format!("{s} RETURN size(s)")).unwrap_err().to_string();
    assert!(err.contains("a string of"), "{err}");
    // Within the caps, the same expressions answer.
    assert_eq!(
        run(&g, "RETURN size(replace('xx', 'x', 'yyy'))").unwrap(),
        [[Value::Int(6)]]
    );
}

#[test]
fn wide_sorts_and_long_statements_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let g = Graph::open(dir.path()).unwrap();
    // 100,000 rows sorted by 10,000 keys: 10^9 values.
    let keys = vec!["a"; 10_000].join(", ");
    let started = std::time::Instant::now();
    let err = run(
        &g,
        &format!("UNWIND range(1, 100000) AS a RETURN a ORDER BY {keys}"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("passes the cap"), "{err}");
    assert!(started.elapsed().as_secs_f64() < 10.0);
    let clauses: Vec<String> = (0..10_000).map(|i| format!("MATCH (n{i})")).collect();
    let err = run(&g, &format!("{} RETURN 1", clauses.join(" "))).unwrap_err();
    assert!(err.to_string().contains("at most 256 clauses"), "{err}");
    // A sort past the timeout stops at it.
    let limits = Limits {
        timeout: Some(std::time::Duration::from_millis(200)),
        ..Limits::default()
    };
    let p = g
        .prepare("UNWIND range(1, 1000000) AS a RETURN a ORDER BY toString(a % 1000) + toString(a), a DESC")
        .unwrap();
    let started = std::time::Instant::now();
    let r = g.execute(&p, &Params::new(), limits);
    assert!(
        matches!(r, Err(QueryError::Timeout(200))),
        "{:?}",
        r.map(|r| r.rows.len())
    );
    assert!(started.elapsed().as_secs_f64() < 5.0);
}

#[test]
fn a_large_statement_batch_is_folded_into_the_base() {
    let dir = tempfile::tempdir().unwrap();
    let g = Graph::open(dir.path()).unwrap();
    run(&g, "CREATE NODE TYPE U; CREATE RELATION TYPE F (U -> U)").unwrap();
    let rows: Vec<Value> = (0..60_000)
        .map(|i| {
            Value::Map(std::sync::Arc::new(
                [
                    ("s", format!("u{i}")),
                    ("t", format!("u{}", (i * 7 + 1) % 60_000)),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), Value::Str(v)))
                .collect(),
            ))
        })
        .collect();
    let mut params = Params::new();
    params.insert("rows".into(), Value::List(rows.into()));
    g.query(
        "UNWIND $rows AS row MERGE (s:U {key: row.s}) MERGE (t:U {key: row.t}) MERGE (s)-[:F]->(t)",
        &params,
    )
    .unwrap();
    let stats = g.database().stats().unwrap();
    assert_eq!(stats.delta_changes, 0, "a delta of the whole batch was left");
    assert_eq!(stats.edges, 60_000);
    assert!(g.database().check().unwrap().ok());
}

#[test]
fn training_and_index_builds_by_a_statement_stop_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let g = Graph::open(dir.path()).unwrap();
    run(&g, "CREATE NODE TYPE U; CREATE RELATION TYPE F (U -> U)").unwrap();
    run(&g, "UNWIND range(0, 29999) AS i MERGE (a:U {key: toString(i)}) MERGE (b:U {key: toString((i + 1) % 30000)}) CREATE (a)-[:F]->(b)").unwrap();
    let limits = |ms| Limits {
        timeout: Some(std::time::Duration::from_millis(ms)),
        ..Limits::default()
    };
    let train = g
        .prepare("CALL quiver.train({model: 'm', dim: 16, epochs: 100000, validation: false})")
        .unwrap();
    let started = std::time::Instant::now();
    let r = g.execute(&train, &Params::new(), limits(300));
    assert!(
        matches!(r, Err(QueryError::Timeout(300))),
        "{:?}",
        r.map(|r| r.rows)
    );
    assert!(started.elapsed().as_secs_f64() < 10.0);
    let info = g.database().model_info("m").unwrap();
    assert!(!info.progress.is_empty(), "stopped at a checkpoint, resumable");
    // A finished model's index build past the timeout stores nothing.
    run(
        &g,
        "CALL quiver.train({model: 'n', dim: 16, epochs: 1, validation: false})",
    )
    .unwrap();
    let index = g.prepare("CALL quiver.index({model: 'n'})").unwrap();
    let r = g.execute(&index, &Params::new(), limits(20));
    assert!(
        matches!(r, Err(QueryError::Timeout(20))),
        "{:?}",
        r.map(|r| r.rows)
    );
    let parts: Vec<String> = g
        .database()
        .model_info("n")
        .unwrap()
        .parts
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    assert!(!parts.iter().any(|k| k.starts_with("index/")), "{parts:?}");
    // Without a timeout it builds.
    run(&g, "CALL quiver.index({model: 'n'})").unwrap();
}
