//! The executor, on any query over a small database, returns rows or an error
//! and never panics or runs away (row cap and timeout). Writes and procedure
//! calls run too (the database drifts from run to run, which only widens
//! what is tried); `quiver.train` runs when every number in the statement is
//! at most 16, so that training stays small (the timeout does not stop it).
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use quiver_query::{Graph, Limits, Params, Value};

fn graph() -> &'static Graph {
    static G: OnceLock<(tempfile::TempDir, Graph)> = OnceLock::new();
    &G.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let g = Graph::open(dir.path()).unwrap();
        let p = Params::new();
        g.query(
            "CREATE NODE TYPE User; CREATE NODE TYPE Tweet; CREATE RELATION TYPE Follows (User -> User); \
             CREATE RELATION TYPE Likes (User -> Tweet)",
            &p,
        )
        .unwrap();
        g.query(
            "CREATE (a:User {key: 'alice', age: 31}), (b:User {key: 'bob', age: 25}), (c:User {key: 'carol'}), \
             (a)-[:Follows]->(b), (b)-[:Follows]->(c), (c)-[:Follows]->(a), (c)-[:Follows]->(c), \
             (a)-[:Likes]->(:Tweet {key: 't1'}), (b)-[:Likes]->(:Tweet {key: 't2', text: 'hi'})",
            &p,
        )
        .unwrap();
        g.query("CALL quiver.train({dim: 4, epochs: 1, threads: 1})", &p).unwrap();
        (dir, g)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(statements) = quiver_query::parse(text) else { return };
    for s in statements {
        let printed = s.to_string();
        let small_numbers = printed
            .split(|c: char| !c.is_ascii_digit())
            .all(|n| n.is_empty() || n.parse::<u64>().is_ok_and(|n| n <= 16));
        if printed.to_lowercase().contains("quiver.train") && !small_numbers {
            continue;
        }
        let g = graph();
        let params = Params::from([
            ("k".to_string(), Value::from("alice")),
            ("n".to_string(), Value::Int(2)),
            (
                "rows".to_string(),
                Value::List(
                    [
                        Value::Map(std::sync::Arc::new([("key".into(), "alice".into()), ("w".into(), 2.5.into())].into())),
                        Value::Map(std::sync::Arc::new([("key".into(), "dan".into()), ("age".into(), 3i64.into())].into())),
                    ]
                    .into(),
                ),
            ),
        ]);
        let limits = Limits {
            max_rows: 10_000,
            timeout: Some(Duration::from_millis(200)),
        };
        if let Ok(p) = g.prepare(&printed) {
            if let Ok(rows) = g.execute(&p, &params, limits) {
                let _ = (rows.to_table(), rows.to_json(), rows.to_csv());
            }
        }
    }
});
