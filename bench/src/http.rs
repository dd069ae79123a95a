//! `quiver-bench serve`: a load generator for `quiver serve`. It starts the
//! server on a database, then `clients` threads each send 1-hop queries
//! (`MATCH (a {key: $k})-->(b) RETURN b.key`, keys drawn from the graph)
//! over one keep-alive connection for `seconds`; with `--write` a thread
//! commits small batches meanwhile, with `--train` a training job runs.
//! Prints queries/s and latency percentiles as JSON; any failed request
//! makes it exit non-zero (the load test in `make test`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).ok();
        Conn {
            reader: BufReader::new(s.try_clone().expect("clone")),
            writer: s,
        }
    }

    /// (status, body).
    fn send(&mut self, method: &str, path: &str, body: &str) -> (u16, String) {
        write!(
            self.writer,
            "{method} {path} HTTP/1.1\r\nHost: q\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut len = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut buf = vec![0; len];
        self.reader.read_exact(&mut buf).expect("body");
        (status, String::from_utf8_lossy(&buf).into_owned())
    }
}

fn query_body(text: &str, key: Option<&str>) -> String {
    serde_json::json!({"query": text, "params": key.map_or(serde_json::json!({}), |k| serde_json::json!({"k": k}))})
        .to_string()
}

pub fn bench_serve(
    bin: &Path,
    db: &Path,
    clients: usize,
    seconds: f64,
    write: bool,
    train: bool,
) -> (serde_json::Value, bool) {
    let mut server = Command::new(bin)
        .args([
            "serve",
            db.to_str().expect("path"),
            "--bind",
            "127.0.0.1:0",
            "--max-queries",
            "256",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("quiver serve");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|a| a.split_whitespace().next())
        .expect("address")
        .to_string();
    let mut c = Conn::open(&addr);
    let (_, keys) = c.send(
        "POST",
        "/api/query",
        &query_body("MATCH (a)-->() RETURN DISTINCT a.key LIMIT 2000", None),
    );
    let keys: Vec<String> = serde_json::from_str::<serde_json::Value>(&keys).expect("keys")["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r[0].as_str().map(str::to_string))
        .collect();
    let keys = Arc::new(keys);
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    if train {
        let body =
            r#"{"model": "load", "overwrite": true, "config": {"dim": 32, "epochs": 1000, "threads": 1}}"#;
        let (status, r) = c.send("POST", "/api/train", body);
        assert_eq!(status, 202, "{r}");
    }
    let (_, schema) = c.send("GET", "/api/schema", "");
    let schema: serde_json::Value = serde_json::from_str(&schema).expect("schema");
    let ty = schema["node_types"][0].as_str().unwrap_or("Entity").to_string();
    let writer = write.then(|| {
        let (addr, stop, failures) = (addr.clone(), stop.clone(), failures.clone());
        std::thread::spawn(move || {
            let mut c = Conn::open(&addr);
            let mut commits = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let q = format!("CREATE (:`{ty}` {{key: 'load-{commits}'}})");
                let (status, body) = c.send("POST", "/api/query", &query_body(&q, None));
                if status != 200 {
                    eprintln!("writer: {status} {body}");
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                commits += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            commits
        })
    });
    let text = "MATCH (a {key: $k})-->(b) RETURN b.key";
    let readers: Vec<_> = (0..clients)
        .map(|i| {
            let (addr, keys, stop, failures) = (addr.clone(), keys.clone(), stop.clone(), failures.clone());
            std::thread::spawn(move || {
                let mut c = Conn::open(&addr);
                let mut lat = Vec::new();
                let mut j = i * 7919;
                while !stop.load(Ordering::Relaxed) {
                    j = (j + 104_729) % keys.len().max(1);
                    let body = query_body(text, keys.get(j).map(String::as_str));
                    let t = Instant::now();
                    let (status, r) = c.send("POST", "/api/query", &body);
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                    if status != 200 {
                        eprintln!("reader: {status} {r}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<f64> = readers
        .into_iter()
        .flat_map(|r| r.join().expect("reader"))
        .collect();
    let commits = writer.map(|w| w.join().expect("writer"));
    let job = train.then(|| {
        let (_, s) = c.send("GET", "/api/jobs/0", "");
        let s: serde_json::Value = serde_json::from_str(&s).unwrap_or_default();
        let cancelled = c.send("POST", "/api/jobs/0/cancel", "{}").0 == 200;
        serde_json::json!({"state": s["state"], "epochs_done": s["epochs"].as_array().map_or(0, |a| a.len()), "cancelled": cancelled})
    });
    let _ = server.kill();
    let _ = server.wait();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let failed = failures.load(Ordering::Relaxed);
    let out = serde_json::json!({
        "bench": "serve", "clients": clients, "seconds": seconds, "queries": lat.len(),
        "queries_per_s": lat.len() as f64 / seconds, "p50_us": pct(0.5), "p99_us": pct(0.99),
        "failures": failed, "writer_commits": commits, "training": job,
    });
    (out, failed == 0 && !lat.is_empty())
}
