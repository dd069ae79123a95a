//! Writes that RETURN and reads after writes: a statement that writes and
//! then reads gives what the write followed by the read as two statements
//! gives (a random differential), commits all or nothing, and holds its
//! view against writers in other threads.

use quiver_query::{Graph, Params, Value};
use quiver_storage::Database;
use quiver_tests::RngCore;

const SCHEMA: &str = "CREATE NODE TYPE N; CREATE RELATION TYPE R (N -> N)";
const EDGES: &str = "MATCH (p:N)-[e:R]->(q:N) RETURN p.key, q.key, e.weight ORDER BY p.key, q.key";
const NODES: &str = "MATCH (n:N) RETURN n.key, n.v ORDER BY n.key";

fn params(x: usize, y: usize, v: usize) -> Params {
    Params::from([
        ("x".to_string(), Value::from(format!("k{x}"))),
        ("y".to_string(), Value::from(format!("k{y}"))),
        ("v".to_string(), Value::Int(v as i64)),
    ])
}

/// Random writes, each once as `WRITE ... WITH count(*) AS c READ` (or
/// `WRITE ... RETURN`) on one database and as the write and then the read
/// on another: the rows and the databases agree at every step.
#[test]
fn a_write_then_a_read_in_one_statement_equals_two_statements() {
    // (write, the read after it: its own statement, or after `WITH count(*) AS c`)
    let cases: &[(&str, &str)] = &[
        (
            "MERGE (a:N {key: $x}) MERGE (b:N {key: $y}) MERGE (a)-[:R]->(b)",
            EDGES,
        ),
        ("MATCH (a:N {key: $x})-[r:R]->() DELETE r", EDGES),
        ("MATCH (a:N {key: $x}) DETACH DELETE a", NODES),
        (
            "MATCH (a:N {key: $x}), (b:N {key: $y}) CREATE (a)-[:R {weight: 2.5}]->(b)",
            EDGES,
        ),
        (
            "UNWIND [$x, $y] AS k MERGE (n:N {key: k}) ON CREATE SET n.v = $v ON MATCH SET n.v = n.v + 1",
            NODES,
        ),
        ("CREATE (:N {key: $x, v: $v})", NODES),
        (
            "MATCH (a:N {key: $x}) SET a.v = $v",
            "MATCH (a:N {key: $x}) RETURN a.key, a.v",
        ),
        ("MATCH (a:N) WHERE a.v IS NOT NULL REMOVE a.v", NODES),
    ];
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (one, two) = (
        Graph::open(dirs[0].path()).unwrap(),
        Graph::open(dirs[1].path()).unwrap(),
    );
    for g in [&one, &two] {
        g.query(SCHEMA, &Params::new()).unwrap();
    }
    let mut rng = quiver_tests::rng(7);
    let mut below = |n: usize| (rng.next_u64() % n as u64) as usize;
    let mut rows = 0;
    for step in 0..400 {
        let (write, read) = cases[below(cases.len())];
        let p = params(below(8), below(8), below(100));
        let together = one.query(&format!("{write} WITH count(*) AS c {read}"), &p);
        let apart = two.query(write, &p).and_then(|_| two.query(read, &p));
        match (together, apart) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.rows, b.rows, "step {step}: {write} / {read}");
                rows += a.rows.len();
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "step {step}: {write}"),
            (a, b) => panic!("step {step}: {write} / {read}: {a:?} against {b:?}"),
        }
        for q in [EDGES, NODES] {
            let (a, b) = (one.query(q, &p).unwrap(), two.query(q, &p).unwrap());
            assert_eq!(a.rows, b.rows, "step {step}: {write}: the databases differ");
        }
    }
    assert!(rows > 400, "the random writes read back too little: {rows} rows");
}

/// An error in a clause after the writes leaves nothing written, and the
/// writer lock is released for the next statement.
#[test]
fn a_statement_that_fails_after_writing_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let g = Graph::open(dir.path()).unwrap();
    g.query(SCHEMA, &Params::new()).unwrap();
    let p = Params::new();
    let err = g
        .query(
            "UNWIND range(1, 100) AS i CREATE (:N {key: toString(i)}) WITH count(*) AS c MATCH (n:N) RETURN n.key / 2",
            &p,
        )
        .unwrap_err();
    assert!(err.to_string().contains("string"), "{err}");
    assert_eq!(
        g.query("MATCH (n:N) RETURN count(n)", &p).unwrap().rows,
        vec![vec![Value::Int(0)]]
    );
    g.query("CREATE (:N {key: 'a'}) RETURN 1", &p).unwrap();
    assert_eq!(
        g.query("MATCH (n:N) RETURN count(n)", &p).unwrap().rows,
        vec![vec![Value::Int(1)]]
    );
}

/// Threads writing at once: each statement's later clauses see its own new
/// node under the id the commit gives it, and no write is lost.
#[test]
fn concurrent_statements_see_their_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let g = Graph::open(dir.path()).unwrap();
    g.query(SCHEMA, &Params::new()).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let g = &g;
            s.spawn(move || {
                for i in 0..50 {
                    let p = Params::from([("k".to_string(), Value::from(format!("t{t}-{i}")))]);
                    let rows = g
                        .query(
                            "CREATE (u:N {key: $k}) WITH u MATCH (v:N {key: $k}) MERGE (v)-[:R]->(v) RETURN id(u) = id(v), u.key",
                            &p,
                        )
                        .unwrap()
                        .rows;
                    assert_eq!(rows, vec![vec![Value::Bool(true), Value::from(format!("t{t}-{i}"))]]);
                    let after = g.query("MATCH (v:N {key: $k})-[:R]->(w) RETURN id(v) = id(w)", &p).unwrap();
                    assert_eq!(after.rows, vec![vec![Value::Bool(true)]]);
                }
            });
        }
    });
    let p = Params::new();
    let n = g.query("MATCH (n:N)-[:R]->(n) RETURN count(*)", &p).unwrap();
    assert_eq!(n.rows, vec![vec![Value::Int(200)]]);
}

/// The storage transaction: staged batches are seen by its view, not by
/// readers, and dropped uncommitted they leave nothing.
#[test]
fn a_transaction_shows_its_staged_writes_only_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path()).unwrap();
    let ty = db.create_node_type("N").unwrap();
    let rel = db.create_relation_type("R", "N", "N").unwrap();
    let v = quiver_storage::Value::Int(3);
    {
        let mut txn = db.begin();
        let mut b = db.batch();
        b.insert_edge(rel, "a", "b", Some(1.0));
        b.set_property(ty, "a", "v", v.clone());
        txn.stage(b).unwrap();
        let a = txn.snapshot().node_id(ty, "a").unwrap();
        assert_eq!(txn.snapshot().out_neighbors(rel, a).len(), 1);
        assert_eq!(txn.property(ty, a, "v").unwrap(), Some(v.clone()));
        assert_eq!(db.snapshot().node_id(ty, "a"), None);
    }
    assert_eq!(db.snapshot().node_count(ty), 0);
    let mut txn = db.begin();
    let mut b = db.batch();
    b.insert_node(ty, "a");
    txn.stage(b).unwrap();
    let a = txn.snapshot().node_id(ty, "a").unwrap();
    let mut b = db.batch();
    b.set_property(ty, a, "v", v.clone());
    b.delete_node(ty, "missing");
    let info = txn.commit(b).unwrap();
    assert_eq!(info.nodes_created, 1);
    assert_eq!(db.property(ty, a, "v").unwrap(), Some(v));
}

/// What a read-only server refuses: every statement that may write,
/// whatever clause the write hides in.
#[test]
fn statements_that_write_are_recognised() {
    let writes = |q: &str| quiver_query::writes(q).unwrap();
    assert!(writes("CREATE (a:N {key: 'x'}) RETURN a"));
    assert!(writes("MATCH (a:N) FOREACH (k IN ['x'] | MERGE (:N {key: k}))"));
    assert!(writes("MATCH (a:N) SET a.v = 1 WITH a MATCH (b:N) RETURN b"));
    assert!(writes("MATCH (a:N) DETACH DELETE a RETURN count(*)"));
    assert!(!writes(
        "MATCH (a:N) CALL { WITH a MATCH (a)-->(b) RETURN count(b) AS n } RETURN a, n"
    ));
    assert!(!writes(
        "MATCH (a:N) RETURN a.key AS k UNION MATCH (b:N) RETURN b.key AS k"
    ));
    assert!(!writes(
        "MATCH p = shortestPath((a:N {key: 'x'})-[*..3]-(b:N {key: 'y'})) RETURN p"
    ));
    assert!(!writes("RETURN [x IN range(1, 3) | x], COUNT { MATCH (n:N) }"));
}
