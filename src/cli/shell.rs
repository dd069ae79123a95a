//! `quiver query` and `quiver shell`: the query language from the command line.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use quiver::{Graph, Limits, Params, QueryValue as Value, Rows};

/// How results print.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

impl Format {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "table" => Format::Table,
            "json" => Format::Json,
            "csv" => Format::Csv,
            other => bail!("--format {other}: expected table, json or csv"),
        })
    }

    fn render(self, rows: &Rows) -> String {
        match self {
            Format::Table => rows.to_table(),
            Format::Json => rows.to_json() + "\n",
            Format::Csv => rows.to_csv(),
        }
    }
}

/// `--param k=v`: integers, floats, `true`/`false` and `null` are typed;
/// anything else is a string. `--param k:TYPE=v` says the type (`str`,
/// `int`, `float`, `bool` or `json`), so `k:str=007` is the string "007";
/// `k:json=[{"key": "a"}]` is a list of maps, and `k:json=@rows.json` reads
/// the JSON from a file (a regular file of at most [`MAX_PARAM_FILE`] bytes).
pub fn params(items: &[String]) -> anyhow::Result<Params> {
    let mut p = Params::new();
    for item in items {
        let (k, v) = item
            .split_once('=')
            .with_context(|| format!("--param {item}: expected name=value or name:type=value"))?;
        let (k, ty) = match k.split_once(':') {
            Some((k, ty)) => (k, Some(ty)),
            None => (k, None),
        };
        let bad = |ty: &str| {
            anyhow::anyhow!(
                "--param {item}: {v:?} is not a{} {ty}",
                if ty == "int" { "n" } else { "" }
            )
        };
        let value = match ty {
            Some("str") => Value::Str(v.to_string()),
            Some("int") => Value::Int(v.parse().map_err(|_| bad("int"))?),
            Some("float") => Value::Float(v.parse().map_err(|_| bad("float"))?),
            Some("bool") => Value::Bool(v.parse().map_err(|_| bad("bool"))?),
            Some("json") => {
                let text = match v.strip_prefix('@') {
                    Some(path) => quiver::read_text(Path::new(path), MAX_PARAM_FILE)
                        .with_context(|| format!("--param {k}: reading {path}"))?,
                    None => v.to_string(),
                };
                let j = serde_json::from_str(&text).with_context(|| format!("--param {k}: not JSON"))?;
                Value::from_json(j)
            }
            Some(other) => bail!("--param {item}: unknown type `{other}` (str, int, float, bool or json)"),
            None => {
                if let Ok(i) = v.parse::<i64>() {
                    Value::Int(i)
                } else if let Ok(x) = v.parse::<f64>() {
                    Value::Float(x)
                } else {
                    match v {
                        "true" => Value::Bool(true),
                        "false" => Value::Bool(false),
                        "null" => Value::Null,
                        s => Value::Str(s.to_string()),
                    }
                }
            }
        };
        p.insert(k.trim_start_matches('$').to_string(), value);
    }
    Ok(p)
}

/// Runs `text` (or standard input when `None`), printing each statement's rows.
pub fn query(
    db: &Path,
    text: Option<String>,
    params: &Params,
    format: Format,
    limits: Limits,
) -> anyhow::Result<()> {
    let mut g = Graph::open(db).with_context(|| format!("opening {}", db.display()))?;
    g.set_limits(limits);
    let text = match text {
        Some(t) => t,
        None => {
            use std::io::Read as _;
            let mut script = String::new();
            std::io::stdin()
                .take(MAX_SCRIPT + 1)
                .read_to_string(&mut script)
                .context("reading the script from standard input")?;
            if script.len() as u64 > MAX_SCRIPT {
                bail!("the script on standard input passes {MAX_SCRIPT} bytes");
            }
            script
        }
    };
    // A byte-order mark (as some editors save UTF-8) is not part of the first statement.
    let text = match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    };
    let mut out = std::io::stdout().lock();
    let mut printed = Ok(());
    let result = g.query_each(&text, params, &mut |rows| {
        if printed.is_ok() {
            printed = out.write_all(format.render(rows).as_bytes());
        }
    });
    printed?;
    if let Err(e) = result {
        bail!("{}", e.render(&text).trim_start_matches("error: "));
    }
    Ok(())
}

fn history_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("QUIVER_HISTORY") {
        return Some(p.into());
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(data.join("quiver").join("history"))
}

/// Most bytes of a script read from standard input.
pub const MAX_SCRIPT: u64 = 256 << 20;

/// Most bytes of a `--param k:json=@FILE` file.
pub const MAX_PARAM_FILE: u64 = 256 << 20;

const HELP: &str = "\
Statements end with ';' and may span lines. Examples:
  CREATE NODE TYPE User; CREATE RELATION TYPE Follows (User -> User);
  CREATE (:User {key: 'alice'})-[:Follows]->(:User {key: 'bob'});
  MATCH (a:User {key: 'alice'})-[:Follows]->(b) RETURN b.key;
  CALL quiver.train({dim: 64, epochs: 5});
  MATCH (a:User {key: 'alice'}) CALL quiver.nearest(a, 10) YIELD node, score RETURN node.key, score;
Commands:
  :help            this text
  :schema          node and relation types
  :stats           counts
  :timing on|off   print how long each statement took
  :quit            leave (or Ctrl-D)
The grammar is in docs/query.md.";

/// The interactive shell.
pub fn shell(db: &Path) -> anyhow::Result<()> {
    let g = Graph::open(db).with_context(|| format!("opening {}", db.display()))?;
    let mut rl = rustyline::DefaultEditor::new()?;
    let history = history_file();
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    let mut out = std::io::stdout();
    if std::io::stdin().is_terminal() {
        writeln!(out, "quiver shell on {} (:help for help)", db.display())?;
    }
    let mut timing = false;
    let mut buf = String::new();
    loop {
        let prompt = if buf.is_empty() { "quiver> " } else { "   ...> " };
        let line = match rl.readline(prompt) {
            Ok(l) => l,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                buf.clear();
                continue;
            }
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if buf.is_empty() && trimmed.starts_with(':') {
            let _ = rl.add_history_entry(trimmed);
            let mut words = trimmed.split_whitespace();
            match (words.next(), words.next()) {
                (Some(":quit" | ":q" | ":exit"), _) => break,
                (Some(":help"), _) => writeln!(out, "{HELP}")?,
                (Some(":schema"), _) => run_one(&g, "SHOW TYPES", timing, &mut out)?,
                (Some(":stats"), _) => {
                    let snap = g.database().snapshot();
                    let c = snap.catalog();
                    let nodes: u64 = (0..c.node_types.len() as u32)
                        .map(|t| snap.live_node_count(t) as u64)
                        .sum();
                    writeln!(
                        out,
                        "{nodes} nodes of {} types, {} edges of {} relation types, {} models",
                        c.node_types.len(),
                        snap.edge_count(),
                        c.relations.len(),
                        c.models.len()
                    )?;
                }
                (Some(":timing"), Some(v @ ("on" | "off"))) => timing = v == "on",
                _ => writeln!(out, "unknown command {trimmed}; :help lists them")?,
            }
            continue;
        }
        if trimmed.is_empty() && buf.is_empty() {
            continue;
        }
        buf.push_str(&line);
        buf.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let text = std::mem::take(&mut buf);
        let _ = rl.add_history_entry(text.trim_end());
        run_one(&g, &text, timing, &mut out)?;
    }
    if let Some(h) = &history {
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = rl.save_history(h);
    }
    Ok(())
}

fn run_one(g: &Graph, text: &str, timing: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let t = Instant::now();
    let mut printed = Ok(());
    let result = g.query_each(text, &Params::new(), &mut |rows| {
        if printed.is_ok() {
            printed = out.write_all(rows.to_table().as_bytes());
        }
    });
    printed?;
    if let Err(e) = result {
        writeln!(out, "{}", e.render(text))?;
    }
    if timing {
        writeln!(out, "({:.3} ms)", t.elapsed().as_secs_f64() * 1e3)?;
    }
    Ok(())
}
