//! The embedding procedures and functions, and the cache of loaded models
//! (the query crate's only use of `engine`).

use super::*;

impl Ctx<'_> {
    pub(super) fn node_arg(&self, v: &Value) -> Result<(u32, u32)> {
        match v {
            Value::Node { ty, id } => Ok((*ty, *id)),
            Value::Null => Ok((u32::MAX, 0)),
            other => Err(runtime(format!("expected a node, not {}", kind(other)))),
        }
    }

    pub(super) fn rel_arg(&self, v: &Value) -> Result<u32> {
        let Value::Str(name) = v else {
            return Err(runtime(format!("expected a relation type name, not {}", kind(v))));
        };
        self.snap
            .catalog()
            .relations
            .iter()
            .position(|r| &r.name == name)
            .map(|r| r as u32)
            .ok_or_else(|| runtime(format!("unknown relation type `{name}`")))
    }

    /// A node's row: trained, or inferred from its neighbours now (cold
    /// start) for a node created since training (zeros when none has a
    /// row); a node type the model never saw is an error.
    pub(super) fn row<'m>(&self, m: &'m Model, (ty, id): (u32, u32)) -> Result<std::borrow::Cow<'m, [f32]>> {
        self.seen(m, Some(ty), None)?;
        Ok(if id < m.rows(ty) {
            std::borrow::Cow::Borrowed(m.node(ty, id))
        } else {
            std::borrow::Cow::Owned(m.infer(self.snap, ty, id).unwrap_or_else(|| vec![0.0; m.dim()]))
        })
    }

    /// [`Model::seen`] as a query error.
    pub(super) fn seen(&self, m: &Model, ty: Option<u32>, rel: Option<u32>) -> Result<()> {
        m.seen(self.snap.catalog(), ty, rel).map_err(runtime)
    }

    /// The named model, or the only one / the one named `default`; with
    /// `new_nodes`, extended with rows for every node created since training
    /// (for procedures that rank all nodes of a type).
    pub(super) fn model(&self, name: Option<&Value>, new_nodes: bool) -> Result<Arc<Model>> {
        let name = self.model_name(name)?;
        cached_model(self.db, self.snap, self.models, &name, new_nodes)
    }

    /// The name [`Ctx::model`] resolves `name` to.
    fn model_name(&self, name: Option<&Value>) -> Result<String> {
        let c = self.snap.catalog();
        Ok(match name {
            Some(Value::Str(s)) => s.clone(),
            Some(other) => return Err(runtime(format!("a model name is a string, not {}", kind(other)))),
            None if c.models.iter().any(|m| m.name == "default") => "default".into(),
            None if c.models.len() == 1 => c.models[0].name.clone(),
            None if c.models.is_empty() => {
                return Err(runtime("no trained model: run CALL quiver.train({...}) first"))
            }
            None => {
                return Err(runtime(
                    "several models are stored: name one as the last argument",
                ))
            }
        })
    }

    /// The `k` best nodes of type `ty` for query `q` by model `m` (named by
    /// `name`, as for [`Ctx::model`]): through the model's index of `ty`
    /// when it has a current one, else exactly. Deleted nodes and those
    /// `skip` names never come back.
    fn top_k(
        &self,
        (m, name): (&Model, Option<&Value>),
        q: &[f32],
        ty: u32,
        k: usize,
        skip: &(dyn Fn(u32) -> bool + Sync),
    ) -> Result<Vec<(u32, f32)>> {
        let skip = |id: u32| skip(id) || self.snap.is_deleted(ty, id);
        match cached_index(self.db, self.models, &self.model_name(name)?, ty)? {
            Some(index) => Ok(index.search(&m.nodes[ty as usize], q, k, None, &skip)?),
            None => Ok(m.top_k(q, ty, k, &skip)),
        }
    }

    /// Runs `proc`; `exclude` (a relation and direction from the first
    /// argument) leaves the nodes it joins out of a neighbour search.
    pub(super) fn call(
        &self,
        proc: Proc,
        args: &[Value],
        exclude: Option<(u32, Direction)>,
    ) -> Result<Vec<Vec<Value>>> {
        // The nodes joined to the first argument, sorted.
        let joined: Vec<u32> = match (exclude, args.first()) {
            (Some((rel, dir)), Some(Value::Node { id, .. })) => {
                let mut v: Vec<u32> = self.snap.neighbors(rel, *id, dir).iter().copied().collect();
                v.sort_unstable();
                v
            }
            _ => Vec::new(),
        };
        let joined = |x: u32| joined.binary_search(&x).is_ok();
        let name = proc.name();
        let count = |v: &Value| match v {
            Value::Int(k) if *k >= 0 => Ok(usize::try_from(*k).unwrap_or(usize::MAX)),
            Value::Int(k) => Err(runtime(format!(
                "{name}: the number of results must not be negative, not {k}"
            ))),
            other => Err(runtime(format!(
                "{name}: the number of results is an integer, not {}",
                kind(other)
            ))),
        };
        // The node argument: a node, or null (no rows, as for a missing match).
        let node = |v: &Value| match v {
            Value::Node { ty, id } => Ok(Some((*ty, *id))),
            Value::Null => Ok(None),
            other => Err(runtime(format!(
                "{name}: the first argument is a node, not {}",
                kind(other)
            ))),
        };
        let scored = |ty: u32, best: Vec<(u32, f32)>| -> Vec<Vec<Value>> {
            best.into_iter()
                .map(|(id, s)| vec![Value::Node { ty, id }, Value::Float(s as f64)])
                .collect()
        };
        match proc {
            Proc::Train => self.train(args.first()),
            Proc::Refresh => self.refresh(args.first()),
            Proc::Index => self.index(args.first()),
            Proc::Nearest => {
                let k = count(&args[1])?;
                let m = self.model(args.get(2), true)?;
                let Some((ty, id)) = node(&args[0])? else {
                    return Ok(Vec::new());
                };
                self.seen(&m, Some(ty), None)?;
                let best = self.top_k((&m, args.get(2)), m.node(ty, id), ty, k, &|x| {
                    x == id || joined(x)
                })?;
                Ok(scored(ty, best))
            }
            Proc::Predict | Proc::PredictHead => {
                let k = count(&args[2])?;
                let m = self.model(args.get(3), true)?;
                let Some((ty, id)) = node(&args[0])? else {
                    return Ok(Vec::new());
                };
                let rel = self.rel_arg(&args[1])?;
                self.seen(&m, Some(ty), Some(rel))?;
                let def = &self.snap.catalog().relations[rel as usize];
                let (from, to) = if proc == Proc::Predict {
                    (def.src, def.dst)
                } else {
                    (def.dst, def.src)
                };
                if ty != from {
                    return Err(runtime(format!(
                        "{} joins {} to {}: the node given is a {}",
                        def.name,
                        self.snap.catalog().type_name(def.src),
                        self.snap.catalog().type_name(def.dst),
                        self.snap.catalog().type_name(ty)
                    )));
                }
                let q = if proc == Proc::Predict {
                    m.tail_query(rel, m.node(ty, id))
                } else {
                    m.head_query(rel, m.node(ty, id))
                };
                // A node is not its own answer (no self-loops among the predictions).
                let best = self.top_k((&m, args.get(3)), &q, to, k, &|x| {
                    (from == to && x == id) || joined(x)
                })?;
                Ok(scored(to, best))
            }
        }
    }

    /// `CALL quiver.index({model, type, quantization, connectivity,
    /// expansion_add, expansion_search})`: builds and stores the model's
    /// index of the type (every type it has rows for when none is named).
    pub(super) fn index(&self, config: Option<&Value>) -> Result<Vec<Vec<Value>>> {
        let mut s = quiver_engine::IndexSettings::default();
        let (mut model, mut ty) = (None, None);
        let none = std::collections::BTreeMap::new();
        let pairs = match config {
            None => &none,
            Some(Value::Map(pairs)) => pairs,
            Some(_) => {
                return Err(runtime(
                    "quiver.index takes a map: {model: 'm', type: 'User', ...}",
                ))
            }
        };
        let int = |k: &str, v: &Value| match v {
            Value::Int(n) if *n > 0 => Ok(*n as usize),
            other => Err(runtime(format!(
                "quiver.index: {k} is a positive integer, not {}",
                kind(other)
            ))),
        };
        for (k, v) in pairs {
            match (k.as_str(), v) {
                ("model", Value::Str(_)) => model = Some(v.clone()),
                ("type", Value::Str(t)) => ty = Some(self.snap.catalog().node_type(t.as_str())?),
                ("quantization", Value::Str(q)) => s.quantization = quiver_engine::Quantization::parse(q.as_str())?,
                ("connectivity", v) => s.connectivity = int(k, v)?,
                ("expansion_add", v) => s.expansion_add = int(k, v)?,
                ("expansion_search", v) => s.expansion_search = int(k, v)?,
                ("model" | "type" | "quantization", other) => {
                    return Err(runtime(format!("quiver.index: {k} is a string, not {}", kind(other))))
                }
                _ => {
                    return Err(runtime(format!(
                        "quiver.index: unknown setting `{k}` (model, type, quantization, connectivity, expansion_add, expansion_search)"
                    )))
                }
            }
        }
        let name = self.model_name(model.as_ref())?;
        let m = self.model(model.as_ref(), false)?;
        let types: Vec<u32> = match ty {
            Some(t) => vec![t],
            None => (0..m.nodes.len() as u32).collect(),
        };
        let mut out = Vec::new();
        // The build's threads check the statement's deadline (the caller's
        // interrupt is not theirs to call); a build cut short stores nothing.
        let deadline = self.timeout.map(|limit| self.start + limit);
        for t in types {
            let built = quiver_engine::index_model(self.db, &name, t, &s, &|_, _| {
                deadline.is_none_or(|d| Instant::now() < d)
            });
            let info = match (built, self.timeout) {
                (Err(quiver_engine::EngineError::Interrupted), Some(limit)) => {
                    return Err(QueryError::Timeout(limit.as_millis() as u64))
                }
                (built, _) => built?,
            };
            out.push(vec![
                Value::Str(name.clone()),
                Value::Str(self.snap.catalog().type_name(t).to_string()),
                Value::Int(info.rows as i64),
                Value::Float(info.build_seconds),
            ]);
        }
        Ok(out)
    }

    pub(super) fn train(&self, config: Option<&Value>) -> Result<Vec<Vec<Value>>> {
        let mut name = "default".to_string();
        let mut overwrite = false;
        let mut obj = serde_json::Map::new();
        if let Some(v) = config {
            let Value::Map(pairs) = v else {
                return Err(runtime("quiver.train takes a map: {dim: 200, epochs: 10, ...}"));
            };
            for (k, v) in pairs.iter() {
                if k == "model" {
                    name = v
                        .as_str()
                        .ok_or_else(|| runtime("model: expected a string"))?
                        .to_string();
                    continue;
                }
                if k == "overwrite" {
                    let Value::Bool(b) = v else {
                        return Err(runtime("quiver.train: overwrite: expected true or false"));
                    };
                    overwrite = *b;
                    continue;
                }
                obj.insert(k.clone(), json_of(v));
            }
        }
        let cfg = quiver_engine::TrainConfig::from_settings(obj)
            .map_err(|e| runtime(format!("quiver.train: {e}")))?;
        if !overwrite && self.db.model_info(&name).is_ok() {
            return Err(runtime(format!(
                "quiver.train: model `{name}` exists; {{overwrite: true}} replaces it"
            )));
        }
        let (mut last, mut epochs, mut cut) = (None, cfg.epochs, None);
        let t = Instant::now();
        // Events come between buckets: there the statement's timeout and
        // interrupt stop the run at a checkpoint (it resumes from it).
        let stop = std::sync::atomic::AtomicBool::new(false);
        let run = quiver_engine::train_on_until(
            self.db,
            &name,
            &cfg,
            &quiver_engine::Device::Cpu,
            &mut |e| {
                match e {
                    quiver_engine::TrainEvent::Epoch(s) => last = Some(*s),
                    quiver_engine::TrainEvent::Start { epochs: n, .. } => epochs = *n,
                    _ => {}
                }
                if let Err(err) = self.check_time() {
                    cut.get_or_insert(err);
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            },
            &stop,
            None,
        );
        match (run, cut) {
            (Err(quiver_engine::EngineError::Stopped(_)), Some(err)) => return Err(err),
            (run, _) => run?,
        }
        Ok(vec![vec![
            Value::Str(name),
            Value::Int(epochs as i64),
            Value::Int(last.map_or(0, |s| s.edges) as i64),
            Value::Float(t.elapsed().as_secs_f64()),
            last.map_or(Value::Null, |s| Value::Float(s.loss)),
        ]])
    }
}

impl Ctx<'_> {
    /// `CALL quiver.refresh({model, as, epochs, replay, drift_penalty})`:
    /// a new version of the model trained on the graph's changes since its
    /// state ([`quiver_engine::refresh`]); stopped by the statement's
    /// timeout or interrupt at a checkpoint, resumable.
    pub(super) fn refresh(&self, config: Option<&Value>) -> Result<Vec<Vec<Value>>> {
        use quiver_engine::refresh::{next_version, refresh_on_until, RefreshOptions};
        let mut o = RefreshOptions::default();
        let (mut from, mut to) = ("default".to_string(), None);
        let none = std::collections::BTreeMap::new();
        let pairs = match config {
            None => &none,
            Some(Value::Map(pairs)) => pairs,
            Some(_) => {
                return Err(runtime(
                    "quiver.refresh takes a map: {model: 'm', epochs: 5, ...}",
                ))
            }
        };
        for (k, v) in pairs {
            match (k.as_str(), v) {
                ("model", Value::Str(s)) => from = s.to_string(),
                ("as", Value::Str(s)) => to = Some(s.to_string()),
                ("epochs", Value::Int(n)) if *n > 0 => o.epochs = *n as usize,
                ("threads", Value::Int(n)) if *n >= 0 => o.threads = *n as usize,
                ("replay", Value::Int(n)) => o.replay = *n as f64,
                ("replay", Value::Float(x)) => o.replay = *x,
                ("drift_penalty", Value::Int(n)) => o.drift_penalty = *n as f32,
                ("drift_penalty", Value::Float(x)) => o.drift_penalty = *x as f32,
                ("model" | "as" | "epochs" | "threads" | "replay" | "drift_penalty", other) => {
                    return Err(runtime(format!("quiver.refresh: {k} cannot be {}", kind(other))))
                }
                _ => {
                    return Err(runtime(format!(
                        "quiver.refresh: unknown setting `{k}` (model, as, epochs, replay, drift_penalty, threads)"
                    )))
                }
            }
        }
        let to = to.unwrap_or_else(|| next_version(self.db, &from));
        let (mut edges, mut cut) = (0u64, None);
        let t = Instant::now();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let mut on = |e: &quiver_engine::TrainEvent| {
            if let quiver_engine::TrainEvent::Epoch(s) = e {
                edges = s.edges;
            }
            if let Err(err) = self.check_time() {
                cut.get_or_insert(err);
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        };
        let run = refresh_on_until(
            self.db,
            &from,
            &to,
            &o,
            &quiver_engine::Device::Cpu,
            &mut on,
            &stop,
        );
        match (run, cut) {
            (Err(quiver_engine::EngineError::Stopped(_)), Some(err)) => return Err(err),
            (run, _) => run?,
        }
        Ok(vec![vec![
            Value::Str(to),
            Value::Str(from),
            Value::Int(o.epochs as i64),
            Value::Int(edges as i64),
            Value::Float(t.elapsed().as_secs_f64()),
        ]])
    }
}

pub(super) fn json_of(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::Float(x) => (*x).into(),
        Value::Str(s) => s.clone().into(),
        Value::List(l) => l.iter().map(json_of).collect(),
        Value::Map(m) => m.iter().map(|(k, x)| (k.clone(), json_of(x))).collect(),
        Value::Node { .. } | Value::Edge { .. } | Value::Path(_) => serde_json::Value::Null,
    }
}

/// Model `name` from the cache while its stored parts are unchanged (loaded
/// otherwise); with `new_nodes`, extended with rows inferred for nodes
/// created since training, kept while the graph's edges and node counts are.
pub(crate) fn cached_model(
    db: &Database,
    snap: &Snapshot,
    models: &ModelCache,
    name: &str,
    new_nodes: bool,
) -> Result<Arc<Model>> {
    let c = snap.catalog();
    let info = db.model_info(name)?;
    let parts: Vec<String> = info
        .parts
        .iter()
        .map(|(k, s)| format!("{k}:{}:{}", s.file, s.crc))
        .collect();
    // Loads happen outside the lock: readers never wait on another's load.
    let cached = models.lock().get(name).filter(|c| c.parts == parts).cloned();
    let mut entry = match cached {
        Some(c) => c,
        None => CachedModel {
            parts,
            base: Arc::new(Model::load(db, name)?),
            extended: None,
            indexes: Vec::new(),
        },
    };
    // No node created since training (of a type the model has): the model
    // itself, not a copy.
    let no_new_nodes = (0..c.node_types.len() as u32)
        .all(|t| t as usize >= entry.base.nodes.len() || snap.node_count(t) <= entry.base.rows(t));
    let result = if new_nodes && !no_new_nodes {
        let mut graph = vec![format!("edges:{}", c.edge_version)];
        graph.extend((0..c.node_types.len() as u32).map(|t| format!("nodes:{}", snap.node_count(t))));
        match &entry.extended {
            Some((g, m)) if *g == graph => m.clone(),
            _ => {
                let mut m = (*entry.base).clone();
                m.extend_to(snap);
                let m = Arc::new(m);
                entry.extended = Some((graph, m.clone()));
                m
            }
        }
    } else {
        entry.base.clone()
    };
    models.lock().insert(name.to_string(), entry);
    Ok(result)
}

/// Node type `ty`'s current index of model `name` (cached beside the model,
/// which [`cached_model`] has just loaded or checked).
pub(crate) fn cached_index(
    db: &Database,
    models: &ModelCache,
    name: &str,
    ty: u32,
) -> Result<Option<Arc<quiver_engine::AnnIndex>>> {
    let known = models
        .lock()
        .get(name)
        .and_then(|c| c.indexes.iter().find(|(t, _)| *t == ty).map(|(_, i)| i.clone()));
    if let Some(found) = known {
        return Ok(found);
    }
    let index = quiver_engine::AnnIndex::current(db, name, ty)?.map(Arc::new);
    if let Some(c) = models.lock().get_mut(name) {
        c.indexes.push((ty, index.clone()));
    }
    Ok(index)
}
