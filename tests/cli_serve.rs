//! `quiver serve` as a client sees it: the JSON API, errors as JSON with
//! their statuses, the token and read-only rules, many readers beside a writer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

mod cli_common;
use cli_common::{p, quiver, text, trained};

/// A running `quiver serve`, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_quiver"))
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{line}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    Server { child, addr }
}

/// One HTTP/1.1 request; (status, JSON body).
fn http(addr: &str, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let json = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        status,
        serde_json::from_str(json).unwrap_or_else(|_| panic!("not JSON: {out}")),
    )
}

fn query(addr: &str, q: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    http(
        addr,
        "POST",
        "/api/query",
        &serde_json::json!({ "query": q }).to_string(),
        token,
    )
}

#[test]
fn the_api_answers_as_the_cli_and_every_failure_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = trained(dir.path());
    // The server holds the database: it stops for the CLI's turn, then starts again.
    let args = [
        p(&db),
        "--bind",
        "127.0.0.1:0",
        "--max-rows",
        "5",
        "--max-body",
        "4096",
    ];
    let s = serve(&args);
    let a = s.addr.as_str();
    let body = r#"{"query": "MATCH (a {key: $k})-[r]->(b) RETURN a, r, b.key", "params": {"k": "e1"}}"#;
    let (status, r) = http(a, "POST", "/api/query", body, None);
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["columns"], serde_json::json!(["a", "r", "b.key"]));
    assert_eq!(
        r["rows"],
        serde_json::json!([[{"type": "Entity", "key": "e1"}, {"type": "next", "src": "e1", "dst": "e2"}, "e2"]])
    );
    assert!(r["elapsed_ms"].as_f64().unwrap() >= 0.0);
    // The same values as `quiver query --format json`.
    drop(s);
    let o = quiver(&[
        "query",
        p(&db),
        "--format",
        "json",
        "-e",
        "MATCH (a {key: 'e1'})-[r]->(b) RETURN a, r, b.key",
    ]);
    let cli: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(cli[0]["r"], r["rows"][0][1]);
    let s = serve(&args);
    let a = s.addr.as_str();

    let (status, r) = query(a, "MATCH (a)\nRETURN b", None);
    assert_eq!(
        (status, r["error"]["kind"].as_str()),
        (400, Some("semantic")),
        "{r}"
    );
    assert_eq!(
        (r["error"]["line"].as_u64(), r["error"]["column"].as_u64()),
        (Some(2), Some(8)),
        "{r}"
    );
    let (status, r) = query(a, "MATCH (a RETURN a", None);
    assert_eq!(
        (status, r["error"]["kind"].as_str()),
        (400, Some("syntax")),
        "{r}"
    );
    let (status, r) = query(a, "MATCH (a) RETURN a", None);
    assert_eq!(
        (status, r["error"]["kind"].as_str()),
        (413, Some("row_cap")),
        "{r}"
    );
    assert_eq!(http(a, "POST", "/api/query", "{not json", None).0, 400);
    assert_eq!(http(a, "POST", "/api/query", r#"{"query": 1}"#, None).0, 400);
    assert_eq!(
        http(
            a,
            "POST",
            "/api/query",
            r#"{"query": "RETURN 1", "params": [1]}"#,
            None
        )
        .0,
        400
    );
    let big = format!(r#"{{"query": "RETURN 1", "pad": "{}"}}"#, "x".repeat(5000));
    let (status, r) = http(a, "POST", "/api/query", &big, None);
    assert_eq!(status, 413, "{r}");
    assert_eq!(http(a, "GET", "/etc/passwd", "", None).0, 404);
    assert_eq!(http(a, "GET", "/api/../../etc/passwd", "", None).0, 404);

    let (status, r) = http(a, "GET", "/api/schema", "", None);
    assert_eq!(status, 200);
    assert_eq!(
        r,
        serde_json::json!({"node_types": ["Entity"], "relations": [{"name": "next", "from": "Entity", "to": "Entity"}]})
    );
    let (_, r) = http(a, "GET", "/api/stats", "", None);
    assert_eq!((r["nodes"].as_u64(), r["edges"].as_u64()), (Some(40), Some(40)));
    let (_, r) = http(a, "GET", "/api/models", "", None);
    assert_eq!(r[0]["name"], "m");
    assert_eq!(r[0]["finished"], true);
    assert_eq!(
        r[0]["metrics"]["loss"].as_array().map(|a| a.len()),
        Some(2),
        "{r}"
    );
    assert!(r[0]["settings"].to_string().contains("\"dim\":8"), "{r}");
    let (status, r) = http(
        a,
        "GET",
        "/api/neighbors?type=Entity&key=e3&k=4&model=m",
        "",
        None,
    );
    assert_eq!(status, 200, "{r}");
    let keys: Vec<&str> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[0]["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 4);
    assert!(!keys.contains(&"e3"));
    assert_eq!(http(a, "GET", "/api/neighbors?type=Entity", "", None).0, 400);
    assert_eq!(
        http(a, "GET", "/api/neighbors?type=Entity)--(x&key=e1", "", None).0,
        400
    );
}

#[test]
fn tokens_read_only_and_addresses_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = trained(dir.path());
    // Any other address than loopback needs a token.
    let o = quiver(&["serve", p(&db), "--bind", "0.0.0.0:0"]);
    assert!(
        !o.status.success() && text(&o).contains("without a token"),
        "{}",
        text(&o)
    );
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let s = serve(&[
        p(&db),
        "--bind",
        "0.0.0.0:0",
        "--token-file",
        p(&token),
        "--read-only",
    ]);
    let port = s.addr.rsplit(':').next().unwrap();
    let a = format!("127.0.0.1:{port}");
    for bad in [None, Some("wrong"), Some("s3cre"), Some("s3cret2")] {
        let (status, r) = query(&a, "RETURN 1", bad);
        assert_eq!(
            (status, r["error"]["kind"].as_str()),
            (401, Some("unauthorized")),
            "{bad:?}"
        );
    }
    assert_eq!(http(&a, "GET", "/api/stats", "", None).0, 401);
    let (status, r) = query(&a, "RETURN 1 AS one", Some("s3cret"));
    assert_eq!((status, &r["rows"]), (200, &serde_json::json!([[1]])));
    // Read-only: every kind of write is refused before it runs.
    for w in [
        "CREATE (:Entity {key: 'x'})",
        "MATCH (n {key: 'e1'}) SET n.age = 3",
        "MATCH (n {key: 'e1'}) DETACH DELETE n",
        "MERGE (:Entity {key: 'y'})",
        "CREATE NODE TYPE T",
        "RETURN 1; CREATE (:Entity {key: 'z'})",
        "call QUIVER.TRAIN({dim: 4, epochs: 1})",
        "CALL quiver.index({model: 'm'})",
    ] {
        let (status, r) = query(&a, w, Some("s3cret"));
        assert_eq!(
            (status, r["error"]["kind"].as_str()),
            (403, Some("read_only")),
            "{w}: {r}"
        );
    }
    let (_, r) = http(&a, "GET", "/api/stats", "", Some("s3cret"));
    assert_eq!(r["nodes"].as_u64(), Some(40));
}

#[test]
fn readers_run_beside_a_writer_and_the_cap_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = trained(dir.path());
    let s = serve(&[p(&db), "--bind", "127.0.0.1:0"]);
    let a = s.addr.clone();
    let writer = {
        let a = a.clone();
        std::thread::spawn(move || {
            for i in 0..100 {
                let (status, r) = query(
                    &a,
                    &format!("CREATE (:Entity {{key: 'w{i}'}})-[:next]->(:Entity {{key: 'v{i}'}})"),
                    None,
                );
                assert_eq!(status, 200, "{r}");
            }
        })
    };
    let readers: Vec<_> = (0..6)
        .map(|_| {
            let a = a.clone();
            std::thread::spawn(move || {
                let mut last = 0;
                for _ in 0..100 {
                    let (status, r) = query(&a, "MATCH (a)-[:next]->(b) RETURN count(*)", None);
                    assert_eq!(status, 200, "{r}");
                    // A snapshot per statement: counts never go back, and each batch is whole.
                    let n = r["rows"][0][0].as_u64().unwrap();
                    assert!(n >= last && n >= 40);
                    last = n;
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    let (_, r) = query(&a, "MATCH (a)-[:next]->(b) RETURN count(*)", None);
    assert_eq!(r["rows"][0][0], 140);
    drop(s);

    // One query at a time: a second is answered 503 while a long one runs,
    // and the long one ends at the timeout with 408.
    let s = serve(&[
        p(&db),
        "--bind",
        "127.0.0.1:0",
        "--max-queries",
        "1",
        "--timeout-ms",
        "1500",
    ]);
    let a = s.addr.clone();
    let long = {
        let a = a.clone();
        std::thread::spawn(move || query(&a, "MATCH (a), (b), (c), (d) RETURN count(*)", None))
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (status, r) = query(&a, "RETURN 1", None);
    assert_eq!((status, r["error"]["kind"].as_str()), (503, Some("busy")), "{r}");
    let (status, r) = long.join().unwrap();
    assert_eq!(
        (status, r["error"]["kind"].as_str()),
        (408, Some("timeout")),
        "{r}"
    );
    assert_eq!(query(&a, "RETURN 1", None).0, 200);
}

#[test]
fn training_jobs_run_beside_queries_and_the_map_is_cached() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = trained(dir.path());
    let s = serve(&[p(&db), "--bind", "127.0.0.1:0"]);
    let a = s.addr.as_str();
    let post = |path: &str, body: serde_json::Value| http(a, "POST", path, &body.to_string(), None);
    // Settings are checked before a job starts.
    let (status, r) = post(
        "/api/train",
        serde_json::json!({"model": "n", "config": {"dimm": 4}}),
    );
    assert_eq!(status, 400, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown setting `dimm`"),
        "{r}"
    );
    assert_eq!(
        post("/api/train", serde_json::json!({"model": "m"})).0,
        400,
        "m exists: overwrite needed"
    );
    let (status, r) = post(
        "/api/train",
        serde_json::json!({"model": "n", "config": {"dim": 4, "epochs": 3, "threads": 1}}),
    );
    assert_eq!(status, 202, "{r}");
    let job = r["job"].as_u64().unwrap();
    // Queries go on while it trains; then it is done with a loss per epoch.
    let mut state = serde_json::Value::Null;
    for _ in 0..600 {
        assert_eq!(query(a, "MATCH (a)-->(b) RETURN count(*)", None).0, 200);
        state = http(a, "GET", &format!("/api/jobs/{job}"), "", None).1;
        if state["state"] != "running" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(state["state"], "done", "{state}");
    assert_eq!(state["epochs"].as_array().unwrap().len(), 3, "{state}");
    let (_, models) = http(a, "GET", "/api/models", "", None);
    assert!(models
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "n" && m["finished"] == true));
    assert_eq!(http(a, "GET", "/api/jobs/99", "", None).0, 404);

    // A cancelled job stops at a bucket boundary, resumable.
    let (status, r) = post(
        "/api/train",
        serde_json::json!({"model": "c", "config": {"dim": 4, "epochs": 100000, "threads": 1}}),
    );
    assert_eq!(status, 202, "{r}");
    let job = r["job"].as_u64().unwrap();
    assert_eq!(
        post("/api/train", serde_json::json!({"model": "d"})).0,
        409,
        "one job at a time"
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        post(&format!("/api/jobs/{job}/cancel"), serde_json::json!({})).0,
        200
    );
    for _ in 0..500 {
        state = http(a, "GET", &format!("/api/jobs/{job}"), "", None).1;
        if state["state"] != "running" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(state["state"], "cancelled", "{state}");

    // The map: one point per row (40), the same answer again from the cache.
    let (status, m) = http(a, "GET", "/api/embedding-map?model=m&type=Entity", "", None);
    assert_eq!(status, 200, "{m}");
    assert_eq!(
        (
            m["keys"].as_array().unwrap().len(),
            m["x"].as_array().unwrap().len()
        ),
        (40, 40)
    );
    assert_eq!(
        http(a, "GET", "/api/embedding-map?model=m&type=Entity", "", None).1,
        m
    );
    let (_, small) = http(a, "GET", "/api/embedding-map?model=m&type=Entity&n=10", "", None);
    assert_eq!(small["keys"].as_array().unwrap().len(), 10);
    assert_eq!(
        http(a, "GET", "/api/embedding-map?model=m&type=Entity&n=0", "", None).0,
        400
    );
    let (_, modes) = http(
        a,
        "GET",
        "/api/embedding-map?model=m&type=Entity&modes=3",
        "",
        None,
    );
    let mut seen: Vec<u64> = modes["mode"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(seen.len(), 40);
    seen.sort();
    seen.dedup();
    assert_eq!(seen, [0, 1, 2]);
    assert_eq!(modes["x"], m["x"], "the same projection, coloured");
    assert_eq!(
        http(
            a,
            "GET",
            "/api/embedding-map?model=m&type=Entity&modes=65",
            "",
            None
        )
        .0,
        400
    );
    assert_eq!(
        http(a, "GET", "/api/embedding-map?model=zz&type=Entity", "", None).0,
        400
    );
    // The page and its libraries come from the binary.
    let mut s2 = TcpStream::connect(a).unwrap();
    write!(s2, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut page = String::new();
    s2.read_to_string(&mut page).unwrap();
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("data-testid=\"query\""),
        "{page}"
    );
}

#[test]
fn a_write_past_refresh_after_starts_a_refresh_job() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = trained(dir.path());
    let s = serve(&[p(&db), "--bind", "127.0.0.1:0"]);
    let a = s.addr.as_str();
    let config = serde_json::json!({"dim": 4, "epochs": 1, "threads": 1, "refresh_after": 3});
    let (status, r) = http(
        a,
        "POST",
        "/api/train",
        &serde_json::json!({"model": "t", "config": config}).to_string(),
        None,
    );
    assert_eq!(status, 202, "{r}");
    let wait = |job: u64| {
        for _ in 0..1000 {
            let state = http(a, "GET", &format!("/api/jobs/{job}"), "", None).1;
            if state["state"] != "running" {
                return state;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("job {job} still running");
    };
    assert_eq!(wait(0)["state"], "done");
    let models = || http(a, "GET", "/api/models", "", None).1;
    let since = |name: &str| {
        models()
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .map(|m| m["since"].clone())
    };
    // Two changed edges: below the setting, no job.
    for q in [
        "MATCH (a {key: 'e1'}), (b {key: 'e5'}) CREATE (a)-[:next]->(b)",
        "MATCH (a {key: 'e1'})-[r]->(b {key: 'e2'}) DELETE r",
    ] {
        assert_eq!(query(a, q, None).0, 200, "{q}");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(http(a, "GET", "/api/jobs/1", "", None).0, 404, "no refresh yet");
    assert_eq!(since("t").unwrap()["edges_added"], 1);
    assert_eq!(since("t").unwrap()["edges_deleted"], 1);
    // The third starts one; the write itself answers at once.
    let (status, r) = query(
        a,
        "CREATE (:Entity {key: 'fresh'})-[:next]->(:Entity {key: 'e9'})",
        None,
    );
    assert_eq!(status, 200, "{r}");
    let mut job = (404, serde_json::Value::Null);
    for _ in 0..500 {
        job = http(a, "GET", "/api/jobs/1", "", None);
        if job.0 == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(job.0, 200, "a refresh job started");
    assert_eq!(job.1["refresh_of"], "t");
    assert_eq!(job.1["model"], "t@2");
    assert_eq!(wait(1)["state"], "done");
    assert_eq!(since("t@2").unwrap()["edges_added"], 0);
    // t@2 inherits the setting; t, refreshed already, is not refreshed again.
    let (status, _) = query(
        a,
        "MATCH (a {key: 'e3'}), (b {key: 'e9'}) CREATE (a)-[:next]->(b)",
        None,
    );
    assert_eq!(status, 200);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(http(a, "GET", "/api/jobs/2", "", None).0, 404);
}
