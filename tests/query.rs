//! The query language: golden files (`tests/query/*.txt`), a differential
//! test of the planner against a naive evaluator, and the embedding
//! procedures against the engine's model.
//!
//! A golden file is a list of cases, each the query text, a `----` line and
//! the expected output (the result table, or the error with its caret),
//! ended by a blank line. Lines starting with `#` between cases are comments;
//! `$name = value` lines before a query set parameters (a quoted string, or
//! JSON: numbers, lists, maps) and `:max_rows N` sets the row cap. All cases of a file run
//! in order against one fresh database. `QUIVER_BLESS=1` rewrites the
//! expected outputs from what the queries return.

use std::path::Path;

use quiver_query::{Graph, Limits, Params, Value};

fn run_case(g: &Graph, query: &str, params: &Params, limits: Limits) -> String {
    let run = || -> quiver_query::Result<quiver_query::Rows> {
        if quiver_query::parse(query).is_ok_and(|s| s.len() > 1) {
            return g.query(query, params);
        }
        let p = g.prepare(query)?;
        g.execute(&p, params, limits)
    };
    match run() {
        Ok(rows) => rows.to_table(),
        Err(e) => format!("{}\n", e.render(query)),
    }
}

fn parse_value(v: &str) -> Value {
    let v = v.trim();
    if let Some(s) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return Value::Str(s.to_string());
    }
    Value::from_json(serde_json::from_str(v).unwrap_or_else(|_| panic!("bad parameter value {v}")))
}

/// Runs one golden file; panics with a diff-friendly message on mismatch.
fn check(name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("query").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let g = Graph::open(dir.path()).unwrap();
    let bless = std::env::var_os("QUIVER_BLESS").is_some();
    let mut out = String::new();
    let mut failures = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut params = Params::new();
        let mut limits = Limits::default();
        let mut query = Vec::new();
        let mut l = line;
        loop {
            if let Some(rest) = l.strip_prefix('$') {
                let (k, v) = rest.split_once('=').expect("`$name = value`");
                params.insert(k.trim().to_string(), parse_value(v));
            } else if let Some(n) = l.strip_prefix(":max_rows ") {
                limits.max_rows = n.trim().parse().unwrap();
            } else {
                query.push(l);
            }
            out.push_str(l);
            out.push('\n');
            l = lines
                .next()
                .unwrap_or_else(|| panic!("{name}: case without `----`"));
            if l == "----" {
                break;
            }
        }
        out.push_str("----\n");
        let mut expected = String::new();
        for l in lines.by_ref() {
            if l.is_empty() {
                break;
            }
            expected.push_str(l);
            expected.push('\n');
        }
        let query = query.join("\n");
        let actual = run_case(&g, &query, &params, limits);
        if actual != expected {
            failures.push(format!(
                "{name}: {query}\n--- expected\n{expected}--- actual\n{actual}"
            ));
        }
        out.push_str(&actual);
        out.push('\n');
    }
    if bless {
        std::fs::write(&path, out.trim_end().to_string() + "\n").unwrap();
    } else {
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

#[test]
fn golden_schema() {
    check("schema.txt");
}

#[test]
fn golden_writes() {
    check("writes.txt");
}

#[test]
fn golden_match() {
    check("match.txt");
}

#[test]
fn golden_triples() {
    check("triples.txt");
}

#[test]
fn golden_errors() {
    check("errors.txt");
}

#[test]
fn golden_procedures() {
    check("procedures.txt");
}

#[test]
fn golden_functions() {
    check("functions.txt");
}

#[test]
fn golden_numbers() {
    check("numbers.txt");
}

#[test]
fn golden_unwind() {
    check("unwind.txt");
}

#[test]
fn golden_optional() {
    check("optional.txt");
}

#[test]
fn golden_set_remove() {
    check("set_remove.txt");
}

#[test]
fn golden_with() {
    check("with.txt");
}

#[test]
fn golden_subqueries() {
    check("subqueries.txt");
}

#[test]
fn golden_paths() {
    check("paths.txt");
}

#[test]
fn golden_union() {
    check("union.txt");
}

#[test]
fn golden_write_return() {
    check("write_return.txt");
}

#[test]
fn golden_merge() {
    check("merge.txt");
}

/// Every ```cypher block of docs/query.md runs, in order, on one database.
#[test]
fn docs_examples_run() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/query.md");
    let text = std::fs::read_to_string(path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let g = Graph::open(dir.path()).unwrap();
    let blocks: Vec<&str> = text
        .split("```cypher\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert!(blocks.len() >= 2, "docs/query.md lost its examples");
    let mut last = None;
    for b in &blocks {
        g.query_each(b, &Params::new(), &mut |rows| last = Some(rows.clone()))
            .unwrap_or_else(|e| panic!("docs/query.md example failed: {}\n{b}", e.render(b)));
    }
    // The last statement: alice's two-hop ends, carol (through bob) and dave
    // (through carol).
    let last = last.unwrap();
    assert_eq!(last.rows, vec![vec![Value::Int(2)]], "{last:?}");
}

/// The differential test's random choices.
struct Rng(rand_xoshiro::SplitMix64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        use quiver_tests::RngCore;
        (self.0.next_u64() % n as u64) as usize
    }
}

/// One step of a random path pattern: relation types (empty: any),
/// direction (0 out, 1 in, 2 both) and hop bounds (`None`: one hop).
#[derive(Debug, Clone)]
struct RandStep {
    rels: Vec<usize>,
    dir: usize,
    hops: Option<(usize, usize)>,
}

/// Every walk matching `steps` from `at`, edges distinct over the whole
/// pattern, as the node reached after each step: the naive semantics.
fn naive(
    edges: &[(usize, usize, usize)],
    steps: &[RandStep],
    at: usize,
    used: &mut Vec<usize>,
    nodes: &mut Vec<usize>,
    out: &mut Vec<Vec<usize>>,
) {
    let Some((step, rest)) = steps.split_first() else {
        out.push(nodes.clone());
        return;
    };
    let (lo, hi) = step.hops.unwrap_or((1, 1));
    // Walk `len` more hops of this step from `x`.
    #[allow(clippy::too_many_arguments)]
    fn walk(
        edges: &[(usize, usize, usize)],
        step: &RandStep,
        rest: &[RandStep],
        x: usize,
        done: usize,
        lo: usize,
        hi: usize,
        used: &mut Vec<usize>,
        nodes: &mut Vec<usize>,
        out: &mut Vec<Vec<usize>>,
    ) {
        if done >= lo {
            nodes.push(x);
            naive(edges, rest, x, used, nodes, out);
            nodes.pop();
        }
        if done == hi {
            return;
        }
        for (i, &(r, s, d)) in edges.iter().enumerate() {
            if used.contains(&i) || !(step.rels.is_empty() || step.rels.contains(&r)) {
                continue;
            }
            let mut next = Vec::new();
            if step.dir != 1 && s == x {
                next.push(d);
            }
            if step.dir != 0 && d == x && !(step.dir == 2 && s == d) {
                next.push(s);
            }
            for n in next {
                used.push(i);
                walk(edges, step, rest, n, done + 1, lo, hi, used, nodes, out);
                used.pop();
            }
        }
    }
    walk(edges, step, rest, at, 0, lo, hi, used, nodes, out);
}

#[test]
fn planner_matches_naive_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let g = Graph::open(dir.path()).unwrap();
    let p = Params::new();
    g.query("CREATE NODE TYPE N; CREATE RELATION TYPE R0 (N -> N); CREATE RELATION TYPE R1 (N -> N); CREATE RELATION TYPE R2 (N -> N)", &p)
        .unwrap();
    let mut rng = Rng(quiver_tests::rng(0x9e3779b97f4a7c15));
    let n = 12;
    // Edges go in through queries in three batches, with a compaction and
    // deletions in between, so reads merge the base with the delta.
    let mut edges: Vec<(usize, usize, usize)> = Vec::new();
    for round in 0..3 {
        for _ in 0..14 {
            let e = (rng.below(3), rng.below(n), rng.below(n));
            if !edges.contains(&e) {
                edges.push(e);
                g.query(
                    &format!(
                        "CREATE (:N {{key: 'n{}'}})-[:R{}]->(:N {{key: 'n{}'}})",
                        e.1, e.0, e.2
                    ),
                    &p,
                )
                .unwrap();
            }
        }
        if round == 0 {
            g.database().compact().unwrap();
        }
        for _ in 0..3 {
            let i = rng.below(edges.len());
            let (r, s, d) = edges.remove(i);
            g.query(
                &format!("MATCH (a {{key: 'n{s}'}})-[e:R{r}]->(b {{key: 'n{d}'}}) DELETE e"),
                &p,
            )
            .unwrap();
        }
    }
    let present: Vec<usize> = (0..n)
        .filter(|i| g.database().snapshot().node_id(0, &format!("n{i}")).is_some())
        .collect();
    let mut checked = 0;
    let mut two_hops = 0;
    for case in 0..400 {
        let len = 1 + rng.below(3);
        let steps: Vec<RandStep> = (0..len)
            .map(|_| RandStep {
                rels: (0..rng.below(3)).map(|_| rng.below(3)).collect(),
                dir: rng.below(3),
                hops: (rng.below(4) == 0).then(|| {
                    let lo = rng.below(3);
                    (lo, lo + rng.below(3))
                }),
            })
            .collect();
        let start = present[rng.below(present.len())];
        // Sometimes the end is given too (an intersection or an expand-into).
        let end = (rng.below(3) == 0).then(|| present[rng.below(present.len())]);
        // Sometimes the start is not given: every node is a start.
        let scan = rng.below(4) == 0;
        let mut text = if scan {
            "MATCH (x0)".to_string()
        } else {
            format!("MATCH (x0 {{key: 'n{start}'}})")
        };
        for (i, s) in steps.iter().enumerate() {
            let types: Vec<String> = s.rels.iter().map(|r| format!("R{r}")).collect();
            let types = if types.is_empty() {
                String::new()
            } else {
                format!(":{}", types.join("|"))
            };
            let hops = s.hops.map_or(String::new(), |(lo, hi)| format!("*{lo}..{hi}"));
            let (l, r) = [("-", "->"), ("<-", "-"), ("-", "-")][s.dir];
            let node = match end {
                Some(e) if i + 1 == len => format!("(x{} {{key: 'n{e}'}})", i + 1),
                _ => format!("(x{})", i + 1),
            };
            text.push_str(&format!("{l}[{types}{hops}]{r}{node}"));
        }
        let cols: Vec<String> = (0..=len).map(|i| format!("x{i}.key")).collect();
        text.push_str(&format!(" RETURN {}", cols.join(", ")));
        let rows = g
            .query(&text, &p)
            .unwrap_or_else(|e| panic!("case {case}: {text}: {e}"));
        let mut got: Vec<Vec<String>> = rows
            .rows
            .iter()
            .map(|r| r.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .collect();
        let mut want = Vec::new();
        for s in if scan { present.clone() } else { vec![start] } {
            naive(&edges, &steps, s, &mut Vec::new(), &mut vec![s], &mut want);
        }
        let mut want: Vec<Vec<String>> = want
            .into_iter()
            .filter(|w| end.is_none_or(|e| *w.last().unwrap() == e))
            .map(|w| w.iter().map(|x| format!("n{x}")).collect())
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "case {case}: {text}");
        checked += want.len();
        // Two single hops from one node, only the distinct ends returned:
        // the bitmap plan must give the same set.
        if len == 2 && !scan && end.is_none() && steps.iter().all(|s| s.hops.is_none()) {
            let pattern = text
                .split(" RETURN")
                .next()
                .unwrap()
                .replacen("(x0 ", "(x0:N ", 1);
            let ends: std::collections::BTreeSet<String> = want.iter().map(|w| w[2].clone()).collect();
            let count = format!("{pattern} RETURN count(DISTINCT x2)");
            let plan = g.query(&format!("EXPLAIN {count}"), &p).unwrap();
            assert!(format!("{plan:?}").contains("TwoHopCount"), "{count}: {plan:?}");
            let n = g.query(&count, &p).unwrap().rows[0][0].clone();
            assert_eq!(n, Value::Int(ends.len() as i64), "case {case}: {count}");
            let rows = g.query(&format!("{pattern} RETURN DISTINCT x2.key"), &p).unwrap();
            let got: std::collections::BTreeSet<String> = rows
                .rows
                .iter()
                .map(|r| r[0].as_str().unwrap().to_string())
                .collect();
            assert_eq!(got, ends, "case {case}: {pattern} RETURN DISTINCT x2.key");
            two_hops += 1;
        }
    }
    assert!(
        checked > 1000,
        "the random queries matched too little: {checked} rows"
    );
    assert!(two_hops > 20, "too few two-hop cases: {two_hops}");
}

/// A small TwHIN-like network (from the demo generator), trained in the query language.
fn demo_graph(dir: &Path) -> Graph {
    let shape = quiver::demo::Shape {
        users: 300,
        communities: 6,
        advertisers: 10,
        ..Default::default()
    };
    let file = dir.join("twhin.tsv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    quiver::demo::write(&shape, &mut out).unwrap();
    drop(out);
    let db = quiver::Database::create(dir.join("db")).unwrap();
    quiver::demo::create_schema(&db).unwrap();
    db.import(&[file], &quiver::import::ImportOptions::default(), &mut |_| {})
        .unwrap();
    let g = Graph::new(db);
    let rows = g
        .query(
            "CALL quiver.train({dim: 16, epochs: 20, threads: 1, seed: 3, lr: 0.1}) YIELD model, epochs, edges",
            &Params::new(),
        )
        .unwrap();
    assert_eq!(rows.rows[0][0], Value::Str("default".into()));
    assert_eq!(rows.rows[0][1], Value::Int(20));
    assert!(rows.rows[0][2].as_i64().unwrap() > 1000, "{rows:?}");
    g
}

#[test]
fn embedding_procedures_agree_with_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let g = demo_graph(dir.path());
    let db = g.database();
    let model = quiver_engine::Model::load(db, "default").unwrap();
    let snap = db.snapshot();
    let c = snap.catalog();
    let (user, follows) = (c.node_type("User").unwrap(), c.relation("Follows").unwrap());
    let u0 = snap.node_id(user, "u0").unwrap();
    let key = |id: u32| snap.node_key(user, id).unwrap().to_string();
    let p = Params::from([("k".to_string(), Value::from("u0"))]);

    // predict: top tails of u0 -Follows-> ?, as the model ranks them.
    let rows = g
        .query(
            "MATCH (a:User {key: $k}) CALL quiver.predict(a, 'Follows', 5) YIELD node, score RETURN node.key, score",
            &p,
        )
        .unwrap();
    let q = model.tail_query(follows, model.node(user, u0));
    let want = model.top_k(&q, user, 5, &|x| x == u0);
    assert_eq!(rows.len(), 5);
    for (row, (id, s)) in rows.rows.iter().zip(&want) {
        assert_eq!(row[0].as_str().unwrap(), key(*id));
        assert!((row[1].as_f64().unwrap() - *s as f64).abs() < 1e-5);
    }

    // predict_head: top heads of ? -Follows-> u0.
    let rows = g
        .query(
            "MATCH (a:User {key: $k}) CALL quiver.predict_head(a, 'Follows', 3) YIELD node RETURN node.key",
            &p,
        )
        .unwrap();
    let hq = model.head_query(follows, model.node(user, u0));
    let want: Vec<String> = model
        .top_k(&hq, user, 3, &|x| x == u0)
        .into_iter()
        .map(|(i, _)| key(i))
        .collect();
    let got: Vec<&str> = rows.rows.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(got, want);

    // nearest: leaves the node itself out, best first.
    let rows = g
        .query(
            "MATCH (a:User {key: $k}) CALL quiver.nearest(a, 10) YIELD node, score RETURN node.key, score",
            &p,
        )
        .unwrap();
    assert_eq!(rows.len(), 10);
    assert!(rows.rows.iter().all(|r| r[0].as_str() != Some("u0")));
    assert!(rows.rows.windows(2).all(|w| w[0][1].as_f64() >= w[1][1].as_f64()));

    // score, and the issue's example: friends of friends u0 does not follow yet, ranked.
    let rows = g
        .query(
            "MATCH (a:User {key: $k})-[:Follows]->(f)-[:Follows]->(c) \
             WHERE c <> a AND NOT (a)-[:Follows]->(c) \
             RETURN DISTINCT c.key AS who, quiver.score(a, 'Follows', c) AS score ORDER BY score DESC LIMIT 10",
            &p,
        )
        .unwrap();
    assert_eq!(rows.len(), 10);
    for r in &rows.rows {
        let c = snap.node_id(user, r[0].as_str().unwrap()).unwrap();
        assert!(!snap.has_edge(follows, u0, c) && c != u0);
        let s = model.compare(&q, model.node(user, c)) as f64;
        assert!((r[1].as_f64().unwrap() - s).abs() < 1e-5);
    }
    assert!(rows.rows.windows(2).all(|w| w[0][1].as_f64() >= w[1][1].as_f64()));

    // embed: the stored vector.
    let rows = g
        .query("MATCH (a:User {key: $k}) RETURN quiver.embed(a)", &p)
        .unwrap();
    let Value::List(v) = &rows.rows[0][0] else {
        panic!("{rows:?}")
    };
    assert_eq!(v.len(), 16);
    assert!((v[0].as_f64().unwrap() - model.node(user, u0)[0] as f64).abs() < 1e-7);

    // A wrong node type for the relation is an error that says so.
    let e = g
        .query(
            "MATCH (t:Tweet) CALL quiver.predict(t, 'Follows', 3) YIELD node RETURN node LIMIT 1",
            &p,
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Follows joins User to User: the node given is a Tweet"),
        "{e}"
    );

    // Cold start: a user created after training is embedded from its
    // neighbours, the mean over its followees of the query that predicts a
    // head from them (t + Follows′ with reciprocal relations, the default;
    // t − Follows without), without retraining.
    let embed = |key: &str| -> Vec<f64> {
        let p = Params::from([("k".to_string(), Value::from(key))]);
        let rows = g
            .query("MATCH (a:User {key: $k}) RETURN quiver.embed(a)", &p)
            .unwrap();
        match &rows.rows[0][0] {
            Value::List(v) => v.iter().map(|x| x.as_f64().unwrap()).collect(),
            other => panic!("{other:?}"),
        }
    };
    let mean = |ids: &[u32]| -> Vec<f64> {
        (0..16)
            .map(|j| {
                ids.iter()
                    .map(|&t| model.head_query(follows, model.node(user, t))[j] as f64)
                    .sum::<f64>()
                    / ids.len() as f64
            })
            .collect()
    };
    g.query(
        "MATCH (a:User {key: 'u1'}), (b:User {key: 'u2'}) CREATE (:User {key: 'fresh'})-[:Follows]->(a), (fresh2:User {key: 'fresh2'})",
        &Params::new(),
    )
    .unwrap();
    let (u1, u2) = (
        snap.node_id(user, "u1").unwrap(),
        snap.node_id(user, "u2").unwrap(),
    );
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
    assert!(close(&embed("fresh"), &mean(&[u1])));
    // A node with no trained neighbour gets zeros; then its first edge counts.
    assert!(embed("fresh2").iter().all(|&x| x == 0.0));
    // New edges invalidate the cached row.
    g.query(
        "MATCH (a:User {key: 'fresh'}), (b:User {key: 'u2'}) CREATE (a)-[:Follows]->(b)",
        &Params::new(),
    )
    .unwrap();
    assert!(close(&embed("fresh"), &mean(&[u1, u2])));
    // And the new node is a candidate of nearest for its neighbours' queries.
    let rows = g
        .query(
            "MATCH (a:User {key: 'fresh'}) CALL quiver.nearest(a, 3) YIELD node RETURN node.key",
            &Params::new(),
        )
        .unwrap();
    assert_eq!(rows.len(), 3);
}

#[test]
fn limits_stop_runaway_queries() {
    let dir = tempfile::tempdir().unwrap();
    let g = Graph::open(dir.path()).unwrap();
    let p = Params::new();
    g.query("CREATE NODE TYPE N; CREATE RELATION TYPE R (N -> N)", &p)
        .unwrap();
    let mut text = String::from("CREATE ");
    for i in 0..60 {
        text.push_str(&format!(
            "(:N {{key: 'n{i}'}})-[:R]->(:N {{key: 'n{}'}}), ",
            (i + 1) % 60
        ));
        text.push_str(&format!(
            "(:N {{key: 'n{i}'}})-[:R]->(:N {{key: 'n{}'}}), ",
            (i + 7) % 60
        ));
    }
    g.query(text.trim_end_matches(", "), &p).unwrap();
    // A cartesian product of 60^4 rows counted without buffering: the timeout stops it.
    let prepared = g.prepare("MATCH (a), (b), (c), (d) RETURN count(*)").unwrap();
    let limits = Limits {
        max_rows: 1_000_000,
        timeout: Some(std::time::Duration::from_millis(50)),
    };
    let started = std::time::Instant::now();
    let e = g.execute(&prepared, &p, limits).unwrap_err();
    assert!(matches!(e, quiver_query::QueryError::Timeout(50)), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // Unbounded variable-length paths hit the row cap.
    let prepared = g
        .prepare("MATCH (a {key: 'n0'})-[:R*]->(b) RETURN count(*)")
        .unwrap();
    let limits = Limits {
        max_rows: 10_000,
        timeout: None,
    };
    let e = g.execute(&prepared, &p, limits).unwrap_err();
    assert!(matches!(e, quiver_query::QueryError::RowCap(10_000)), "{e}");
    // The handle's defaults apply to `query`.
    let mut g = g;
    g.set_limits(Limits {
        max_rows: 5,
        timeout: None,
    });
    let e = g.query("MATCH (a) RETURN a.key", &p).unwrap_err();
    assert!(matches!(e, quiver_query::QueryError::RowCap(5)), "{e}");
    assert_eq!(g.query("MATCH (a) RETURN a.key LIMIT 5", &p).unwrap().len(), 5);
    // Huge literals: a 4 MiB string and a 200,000-element list parse and run
    // in bounded time; a deeper nesting than 64 is refused with its position.
    let big = "x".repeat(4 << 20);
    let rows = g.query(&format!("RETURN size('{big}') AS n"), &p);
    assert!(rows.is_ok() || rows.unwrap_err().to_string().contains("size"));
    let list: Vec<String> = (0..200_000).map(|i| i.to_string()).collect();
    let started = std::time::Instant::now();
    let rows = g
        .query(
            &format!("MATCH (a) WHERE 17 IN [{}] RETURN count(*)", list.join(",")),
            &p,
        )
        .unwrap();
    assert_eq!(rows.rows[0][0], Value::Int(60));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let deep = format!("RETURN {}1{}", "(".repeat(100), ")".repeat(100));
    let e = g.query(&deep, &p).unwrap_err().to_string();
    assert!(e.contains("line 1, column") && e.contains("deep"), "{e}");
    // Postfix chains count as nesting; unary plus does not recurse.
    let e = g
        .query(&format!("RETURN 1{}", ".a".repeat(10_000)), &p)
        .unwrap_err();
    assert!(e.to_string().contains("nesting deeper than 64"), "{e}");
    let rows = g
        .query(&format!("RETURN {}1 AS x", "+".repeat(100_000)), &p)
        .unwrap();
    assert_eq!(rows.rows[0][0], Value::Int(1));
}

/// Variable-length expansion walks without recursion and stops at `LIMIT`.
#[test]
fn variable_length_expansion_is_lazy_and_iterative() {
    let dir = tempfile::tempdir().unwrap();
    let g = Graph::open(dir.path()).unwrap();
    let p = Params::new();
    g.query("CREATE NODE TYPE N; CREATE RELATION TYPE R (N -> N)", &p)
        .unwrap();
    // A chain of 20,000 edges: a recursive walk needs a frame per edge (2 MiB of stack is about 10,000).
    let db = g.database();
    let mut b = db.batch();
    for i in 0..20_000u32 {
        b.insert_edge(0, format!("c{i}"), format!("c{}", i + 1), None);
    }
    db.commit(b).unwrap();
    let limits = Limits {
        max_rows: 1_000_000,
        timeout: None,
    };
    let q = g
        .prepare("MATCH (a:N {key: 'c0'})-[:R*]->(b) RETURN count(*)")
        .unwrap();
    let rows = g.execute(&q, &p, limits).unwrap();
    assert_eq!(rows.rows[0][0], Value::Int(20_000));
    // Every node of a dense ring has more trails than the cap; LIMIT needs five.
    let mut b = db.batch();
    for i in 0..200u32 {
        for j in [1, 7, 31] {
            b.insert_edge(0, format!("r{i}"), format!("r{}", (i + j) % 200), None);
        }
    }
    db.commit(b).unwrap();
    let limits = Limits {
        max_rows: 10_000,
        timeout: Some(std::time::Duration::from_secs(30)),
    };
    let started = std::time::Instant::now();
    let q = g
        .prepare("MATCH (a:N {key: 'r0'})-[*]-(b) RETURN b.key LIMIT 5")
        .unwrap();
    assert_eq!(g.execute(&q, &p, limits).unwrap().len(), 5);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    // Without LIMIT the cap stops it.
    let q = g
        .prepare("MATCH (a:N {key: 'r0'})-[*]-(b) RETURN count(*)")
        .unwrap();
    let e = g.execute(&q, &p, limits).unwrap_err();
    assert!(matches!(e, quiver_query::QueryError::RowCap(10_000)), "{e}");
}

/// Answers openCypher defines that quiver got wrong: DISTINCT in sum and
/// avg, CREATE of an existing edge, and a node deleted with its edges in one
/// statement.
#[test]
fn distinct_sums_edge_sets_and_same_statement_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let g = Graph::open(dir.path()).unwrap();
    let p = Params::new();
    g.query("CREATE NODE TYPE I; CREATE RELATION TYPE L (I -> I)", &p)
        .unwrap();
    g.query(
        "CREATE (:I {key: 'a', rank: 3}), (:I {key: 'b', rank: 3}), (:I {key: 'c', rank: 1})",
        &p,
    )
    .unwrap();
    let rows = g
        .query(
            "MATCH (n:I) RETURN sum(DISTINCT n.rank), avg(DISTINCT n.rank), count(DISTINCT n.rank), sum(n.rank)",
            &p,
        )
        .unwrap();
    assert_eq!(
        rows.rows[0],
        [Value::Int(4), Value::Float(2.0), Value::Int(2), Value::Int(7)]
    );
    let rows = g.query("MATCH (n) RETURN sum(DISTINCT 35), sum(35)", &p).unwrap();
    assert_eq!(rows.rows[0], [Value::Int(35), Value::Int(105)]);
    // An imported weight survives a CREATE of the same edge.
    let db = g.database();
    let mut b = db.batch();
    b.insert_edge(0, "a", "b", Some(3.5));
    db.commit(b).unwrap();
    let rows = g
        .query(
            "MATCH (a:I {key: 'a'}), (b:I {key: 'b'}) CREATE (a)-[:L]->(b)",
            &p,
        )
        .unwrap();
    assert_eq!(rows.rows[0][2], Value::Int(0), "edges_changed");
    let rows = g
        .query("MATCH (:I {key: 'a'})-[r:L]->() RETURN r.weight", &p)
        .unwrap();
    assert_eq!(rows.rows[0][0], Value::Float(3.5));
    // A node and all its edges in one statement, in either order.
    g.query(
        "MATCH (a:I {key: 'a'}), (c:I {key: 'c'}) CREATE (c)-[:L]->(a)",
        &p,
    )
    .unwrap();
    let rows = g.query("MATCH (n:I {key: 'a'})-[r]-() DELETE r, n", &p).unwrap();
    assert_eq!(rows.rows[0][..3], [Value::Int(0), Value::Int(1), Value::Int(2)]);
    g.query(
        "MATCH (b:I {key: 'b'}), (c:I {key: 'c'}) CREATE (b)-[:L]->(c)",
        &p,
    )
    .unwrap();
    let rows = g.query("MATCH (n:I {key: 'b'})-[r]-() DELETE n, r", &p).unwrap();
    assert_eq!(rows.rows[0][1], Value::Int(1), "nodes_deleted");
    // Without its edges in the statement it is still refused.
    g.query("MATCH (c:I {key: 'c'}) CREATE (c)-[:L]->(:I {key: 'd'})", &p)
        .unwrap();
    let e = g.query("MATCH (n:I {key: 'c'}) DELETE n", &p).unwrap_err();
    assert!(e.to_string().contains("still has 1 edges"), "{e}");
}

/// A host's batch as one statement and one commit: UNWIND of a list parameter.
#[test]
fn unwind_a_list_parameter_writes_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let g = Graph::open(dir.path()).unwrap();
    g.query("CREATE NODE TYPE U", &Params::new()).unwrap();
    let keys: Vec<Value> = (0..100_000).map(|i| Value::Str(format!("u{i}"))).collect();
    let params = Params::from([("keys".to_string(), Value::List(keys.into()))]);
    let rows = g
        .query("UNWIND $keys AS k CREATE (:U {key: k})", &params)
        .unwrap();
    assert_eq!(rows.rows[0][0], Value::Int(100_000));
    let rows = g.query("MATCH (n:U) RETURN count(n)", &Params::new()).unwrap();
    assert_eq!(rows.rows[0][0], Value::Int(100_000));
}
