//! Writes: a statement's creates, sets and deletes gathered into one batch.

use super::*;

impl Ctx<'_> {
    /// Applies the plan's writes for every row, in one batch.
    pub(crate) fn write(&self, plan: &Plan, rows: RowIter<'_>) -> Result<Vec<Vec<Value>>> {
        let c = self.snap.catalog();
        let mut batch = self.db.batch();
        let mut props = 0i64;
        // Edges this statement deletes, and the nodes it deletes without
        // DETACH: those must have no edges left once the statement's own
        // deletes are counted, whatever their order.
        let mut deleted: FxHashSet<(u32, u32, u32)> = FxHashSet::default();
        let mut bare: Vec<(u32, u32)> = Vec::new();
        let key_of = |e: &CExpr, row: &Row| -> Result<String> {
            match self.eval(e, row)? {
                Value::Str(s) => Ok(s),
                other => Err(runtime(format!("a node key is a string, not {}", kind(&other)))),
            }
        };
        let node_ref = |src: &NodeSrc,
                        want: u32,
                        row: &Row,
                        def: &quiver_storage::RelationDef|
         -> Result<Option<NodeRef>> {
            let rel = &def.name;
            let (ty, r) = match src {
                NodeSrc::New { ty, key } => (*ty, NodeRef::Key(key_of(key, row)?)),
                NodeSrc::Bound(s) => match row[*s] {
                    Value::Node { ty, id } => (ty, NodeRef::Id(id)),
                    Value::Null => return Ok(None),
                    ref other => return Err(runtime(format!("{rel} joins nodes, not {}", kind(other)))),
                },
            };
            if ty != want {
                return Err(runtime(format!(
                    "{rel} joins {} to {}: a {} cannot be an end of it",
                    c.type_name(def.src),
                    c.type_name(def.dst),
                    c.type_name(ty)
                )));
            }
            Ok(Some(r))
        };
        for row in rows {
            let row = row?;
            for w in &plan.writes {
                match w {
                    Write::Node { ty, key, props: ps } => {
                        let k = key_of(key, &row)?;
                        batch.insert_node(*ty, &k);
                        for (name, e) in ps {
                            batch.set_property(
                                *ty,
                                NodeRef::Key(k.clone()),
                                name,
                                stored(self.eval(e, &row)?, name)?,
                            );
                            props += 1;
                        }
                    }
                    Write::Edge {
                        rel,
                        src,
                        dst,
                        weight,
                    } => {
                        let def = &c.relations[*rel as usize];
                        let (Some(s), Some(d)) = (
                            node_ref(src, def.src, &row, def)?,
                            node_ref(dst, def.dst, &row, def)?,
                        ) else {
                            continue;
                        };
                        let w = weight
                            .as_ref()
                            .map(|e| self.eval(e, &row))
                            .transpose()?
                            .and_then(|v| v.as_f64());
                        // Edges are a set: creating one that exists, without a
                        // weight, changes nothing (its weight stays).
                        if let (None, NodeRef::Id(si), NodeRef::Id(di)) = (w, &s, &d) {
                            if self.snap.has_edge(*rel, *si, *di) && !deleted.contains(&(*rel, *si, *di)) {
                                continue;
                            }
                        }
                        batch.insert_edge(*rel, s, d, w.map(|w| w as f32));
                    }
                    Write::Delete { target, detach } => {
                        let v = self.eval(target, &row)?;
                        let edges = match v {
                            Value::List(l) => l,
                            other => vec![other],
                        };
                        for e in edges {
                            match e {
                                Value::Edge { rel, src, dst } => {
                                    batch.delete_edge(rel, src, dst);
                                    deleted.insert((rel, src, dst));
                                }
                                Value::Node { ty, id } if *detach => self.detach_delete(&mut batch, ty, id),
                                Value::Node { ty, id } => bare.push((ty, id)),
                                Value::Null => {}
                                other => {
                                    return Err(runtime(format!(
                                        "DELETE takes nodes and edges, not {}",
                                        kind(&other)
                                    )))
                                }
                            }
                        }
                    }
                    Write::Set { slot, prop, value } => match row[*slot] {
                        Value::Node { ty, id } => {
                            batch.set_property(
                                ty,
                                NodeRef::Id(id),
                                prop,
                                stored(self.eval(value, &row)?, prop)?,
                            );
                            props += 1;
                        }
                        // An edge's one property is its weight.
                        Value::Edge { rel, src, dst } if prop == "weight" => {
                            let w = match self.eval(value, &row)? {
                                v @ (Value::Int(_) | Value::Float(_)) => v.as_f64().unwrap_or(0.0) as f32,
                                other => {
                                    return Err(runtime(format!(
                                        "an edge's weight is a number, not {}",
                                        kind(&other)
                                    )))
                                }
                            };
                            batch.insert_edge(rel, src, dst, Some(w));
                            props += 1;
                        }
                        Value::Edge { .. } => {
                            return Err(runtime(format!("an edge has a weight and no property `{prop}`")))
                        }
                        Value::Null => {}
                        ref other => {
                            return Err(runtime(format!(
                                "SET works on nodes and edges, not {}",
                                kind(other)
                            )))
                        }
                    },
                    Write::Remove { slot, prop } => match row[*slot] {
                        Value::Node { ty, id } => {
                            batch.remove_property(ty, NodeRef::Id(id), prop);
                            props += 1;
                        }
                        Value::Null => {}
                        ref other => {
                            return Err(runtime(format!(
                                "REMOVE works on node properties, not {}",
                                kind(other)
                            )))
                        }
                    },
                }
            }
        }
        bare.sort_unstable();
        bare.dedup();
        for (ty, id) in bare {
            let left = [Direction::Out, Direction::In]
                .into_iter()
                .flat_map(|d| {
                    self.snap
                        .all_neighbors(ty, id, d)
                        .into_iter()
                        .map(move |(rel, n)| match d {
                            Direction::Out => (rel, id, n),
                            Direction::In => (rel, n, id),
                        })
                })
                .filter(|e| !deleted.contains(e))
                .count();
            if left > 0 {
                return Err(runtime(format!(
                    "cannot delete node '{}': it still has {left} edges (use DETACH DELETE)",
                    self.snap.node_key(ty, id).unwrap_or("?")
                )));
            }
            batch.delete_node(ty, id);
        }
        let info = self.db.commit(batch)?;
        Ok(vec![vec![
            Value::Int(info.nodes_created as i64),
            Value::Int(info.nodes_deleted as i64),
            Value::Int(info.edges_changed as i64),
            Value::Int(props),
        ]])
    }

    /// DETACH DELETE: the node and every edge it has.
    pub(super) fn detach_delete(&self, batch: &mut quiver_storage::WriteBatch, ty: u32, id: u32) {
        for d in [Direction::Out, Direction::In] {
            for (rel, n) in self.snap.all_neighbors(ty, id, d) {
                let (s, t) = if d == Direction::Out { (id, n) } else { (n, id) };
                batch.delete_edge(rel, s, t);
            }
        }
        batch.delete_node(ty, id);
    }
}

/// A query value as a stored property.
pub(super) fn stored(v: Value, name: &str) -> Result<quiver_storage::Value> {
    Ok(match v {
        Value::Str(s) => quiver_storage::Value::Str(s),
        Value::Int(i) => quiver_storage::Value::Int(i),
        Value::Float(x) => quiver_storage::Value::Float(x),
        Value::Bool(b) => quiver_storage::Value::Bool(b),
        other => {
            return Err(runtime(format!(
                "property `{name}` can hold a string, number or boolean, not {}",
                kind(&other)
            )))
        }
    })
}
