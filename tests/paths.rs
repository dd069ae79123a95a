//! Shortest paths against the enumeration of every path: on random graphs,
//! `shortestPath` has the least length of the variable-length matches
//! between two distinct nodes, and `allShortestPaths` gives exactly the
//! matches of that length (from a node to itself there is none, as in Neo4j).

use quiver_query::{Graph, Params, Value};
use quiver_tests::RngCore;

#[test]
fn shortest_paths_are_the_shortest_of_all_paths() {
    let dir = tempfile::tempdir().unwrap();
    let g = Graph::open(dir.path()).unwrap();
    let p = Params::new();
    g.query(
        "CREATE NODE TYPE N; CREATE RELATION TYPE R (N -> N); CREATE RELATION TYPE S (N -> N)",
        &p,
    )
    .unwrap();
    let mut rng = quiver_tests::rng(11);
    let mut below = |n: u64| rng.next_u64() % n;
    let n = 14;
    let edges: Vec<Value> = (0..30)
        .map(|_| {
            Value::Map(std::sync::Arc::new(
                [
                    ("a".to_string(), Value::from(format!("n{}", below(n)))),
                    ("b".to_string(), Value::from(format!("n{}", below(n)))),
                    (
                        "r".to_string(),
                        Value::from(if below(3) == 0 { "S" } else { "R" }),
                    ),
                ]
                .into(),
            ))
        })
        .collect();
    let params = Params::from([("edges".to_string(), Value::List(edges.into()))]);
    g.query(
        "UNWIND $edges AS e MERGE (a:N {key: e.a}) MERGE (b:N {key: e.b}) \
         FOREACH (x IN CASE e.r WHEN 'R' THEN [1] ELSE [] END | MERGE (a)-[:R]->(b)) \
         FOREACH (x IN CASE e.r WHEN 'S' THEN [1] ELSE [] END | MERGE (a)-[:S]->(b))",
        &params,
    )
    .unwrap();
    let mut compared = 0;
    for (pattern, rels) in [
        ("-[:R*1..5]->", "R"),
        ("-[*1..5]-", "any"),
        ("<-[:R|S*1..5]-", "R|S"),
    ] {
        for a in 0..n {
            for b in (0..n).filter(|&b| b != a) {
                let ends = Params::from([
                    ("a".to_string(), Value::from(format!("n{a}"))),
                    ("b".to_string(), Value::from(format!("n{b}"))),
                ]);
                let q = |text: &str| g.query(&text.replace("PAT", pattern), &ends).unwrap().rows;
                let ends_match = "MATCH (a:N {key: $a}), (b:N {key: $b})";
                let all = q(&format!(
                    "{ends_match} MATCH p = (a)PAT(b) WITH min(length(p)) AS m \
                     {ends_match} MATCH p = (a)PAT(b) WHERE length(p) = m \
                     RETURN [x IN nodes(p) | x.key] AS k ORDER BY k"
                ));
                let shortest = q(&format!(
                    "{ends_match} MATCH p = allShortestPaths((a)PAT(b)) RETURN [x IN nodes(p) | x.key] AS k ORDER BY k"
                ));
                let one = q(&format!(
                    "{ends_match} MATCH p = shortestPath((a)PAT(b)) RETURN [x IN nodes(p) | x.key]"
                ));
                assert_eq!(shortest, all, "allShortestPaths n{a} {pattern} n{b} ({rels})");
                assert_eq!(
                    one.len(),
                    usize::from(!all.is_empty()),
                    "shortestPath n{a} n{b} ({rels})"
                );
                if let Some(row) = one.first() {
                    assert!(
                        all.contains(row),
                        "shortestPath n{a} n{b}: {row:?} not among {all:?}"
                    );
                }
                compared += all.len();
            }
            let to_itself = g
                .query(
                    &format!(
                        "MATCH (a:N {{key: 'n{a}'}}) MATCH p = allShortestPaths((a){pattern}(a)) RETURN p"
                    ),
                    &p,
                )
                .unwrap();
            assert!(to_itself.rows.is_empty(), "n{a} to itself: {to_itself:?}");
        }
    }
    assert!(compared > 200, "the random graphs had too few paths: {compared}");
}

/// Two-hop path counts taken from degrees equal the paths listed one by
/// one (the `WITH` keeps the planner from counting), self-loops and an edge
/// that a second hop could take back (relationship uniqueness) included.
#[test]
fn two_hop_path_counts_equal_the_paths_listed() {
    let dir = tempfile::tempdir().unwrap();
    let g = Graph::open(dir.path()).unwrap();
    let p = Params::new();
    g.query(
        "CREATE NODE TYPE N; CREATE NODE TYPE M; CREATE RELATION TYPE R (N -> N); \
         CREATE RELATION TYPE S (N -> N); CREATE RELATION TYPE T (N -> M)",
        &p,
    )
    .unwrap();
    let mut rng = quiver_tests::rng(5);
    let mut below = |n: u64| rng.next_u64() % n;
    let n = 12;
    for _ in 0..60 {
        let (a, b) = (below(n), below(n).min(below(n))); // some self-loops
        let rel = ["R", "S", "T"][below(3) as usize];
        let dst = if rel == "T" { "M" } else { "N" };
        g.query(
            &format!("MERGE (a:N {{key: 'n{a}'}}) MERGE (b:{dst} {{key: 'n{b}'}}) MERGE (a)-[:{rel}]->(b)"),
            &p,
        )
        .unwrap();
    }
    let shapes = [
        "-[:R]->()-[:R]->(c)",
        "-->()<--(c)",
        "<-[:S]-()-[:R|S]->(c)",
        "-[:R|S]->()-->(c:M)",
        "<--()<--(c)",
        "-[:R]->(:N)-[:S]->(c)",
    ];
    let mut total = 0;
    for shape in shapes {
        for a in 0..n {
            let k = Params::from([("k".to_string(), Value::from(format!("n{a}")))]);
            let q = |ret: &str| {
                g.query(&format!("MATCH (a:N {{key: $k}}){shape} {ret}"), &k)
                    .unwrap()
            };
            let plan = g
                .query(
                    &format!("EXPLAIN MATCH (a:N {{key: $k}}){shape} RETURN count(*)"),
                    &k,
                )
                .unwrap();
            assert!(
                plan.rows
                    .iter()
                    .any(|r| r[0].as_str().is_some_and(|l| l.contains("PathCount"))),
                "{shape}: not counted from degrees: {plan:?}"
            );
            let (counted, listed) = (q("RETURN count(*)"), q("WITH c RETURN count(*)"));
            assert_eq!(counted.rows, listed.rows, "n{a}{shape}");
            total += listed.rows[0][0].as_i64().unwrap();
        }
    }
    assert!(total > 100, "too few two-hop paths in the random graph: {total}");
}
