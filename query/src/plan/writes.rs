//! The writing clauses: CREATE, MERGE and the targets of SET and REMOVE.

use super::*;

impl Planner<'_> {
    pub(super) fn create(&mut self, patterns: &[PathPattern], writes: &mut Vec<Write>) -> Result<()> {
        for p in patterns {
            named_path(p, "CREATE")?;
            let mut srcs = Vec::new();
            // Where each node this pattern creates put its write.
            let mut made = Vec::new();
            for np in std::iter::once(&p.start).chain(p.steps.iter().map(|(_, n)| n)) {
                let at = writes.len();
                srcs.push(self.create_node(np, writes)?);
                made.push((writes.len() > at).then_some(at));
            }
            for (i, (r, _)) in p.steps.iter().enumerate() {
                if r.types.len() != 1 || r.hops.is_some() {
                    return Err(sem(
                        r.pos.pos,
                        "CREATE needs exactly one relation type and one hop: -[:Follows]->",
                    ));
                }
                let rel = self.relation(&r.types[0])?;
                let (src, dst) = match r.dir {
                    Dir::Out => (srcs[i].clone(), srcs[i + 1].clone()),
                    Dir::In => (srcs[i + 1].clone(), srcs[i].clone()),
                    Dir::Both => return Err(sem(r.pos.pos, "CREATE needs a direction: -> or <-")),
                };
                if let Some(v) = &r.var {
                    if self.vars.contains_key(&v.text) || self.created.contains_key(&v.text) {
                        return Err(sem(
                            v.pos,
                            format!("`{}` is already bound; CREATE makes a new relationship", v.text),
                        ));
                    }
                    self.created.insert(
                        v.text.clone(),
                        Target::Edge {
                            rel,
                            src: src.clone(),
                            dst: dst.clone(),
                        },
                    );
                }
                writes.push(Write::Edge {
                    rel,
                    src,
                    dst,
                    weight: None,
                });
            }
            // A new node without properties at an end of a new edge is
            // created by the edge (a batch's edge creates its missing ends):
            // one write per row fewer, and one key look-up less in the commit.
            if !p.steps.is_empty() {
                let mut implied: Vec<usize> = made
                    .into_iter()
                    .flatten()
                    .filter(|&at| matches!(&writes[at], Write::Node { props, .. } if props.is_empty()))
                    .collect();
                implied.sort_unstable();
                for at in implied.into_iter().rev() {
                    writes.remove(at);
                }
            }
        }
        Ok(())
    }

    pub(super) fn create_node(&mut self, np: &NodePattern, writes: &mut Vec<Write>) -> Result<NodeSrc> {
        if let Some(v) = &np.var {
            if let Some(Target::Node { ty, key }) = self.created.get(&v.text).or(self.merged.get(&v.text)) {
                return Ok(NodeSrc::New {
                    ty: *ty,
                    key: key.clone(),
                });
            }
            if let Some(&s) = self.vars.get(&v.text) {
                if np.label.is_some() || !np.props.is_empty() {
                    return Err(sem(
                        np.pos.pos,
                        format!("`{}` is already bound; CREATE cannot relabel it", v.text),
                    ));
                }
                return Ok(NodeSrc::Bound(s));
            }
        }
        let label = np.label.as_ref().ok_or_else(|| {
            sem(
                np.pos.pos,
                "a created node needs a type: CREATE (:User {key: 'alice'})",
            )
        })?;
        let ty = self.node_type(label)?;
        let key = np.props.iter().find(|(k, _)| k.text == "key").ok_or_else(|| {
            sem(
                np.pos.pos,
                "a created node needs a key: CREATE (:User {key: 'alice'})",
            )
        })?;
        let key = self.expr(&key.1)?;
        let props = self.other_props(np)?;
        writes.push(Write::Node {
            ty,
            key: key.clone(),
            props,
        });
        if let Some(v) = &np.var {
            self.created
                .insert(v.text.clone(), Target::Node { ty, key: key.clone() });
        }
        Ok(NodeSrc::New { ty, key })
    }

    /// `MERGE`: for each node not yet bound, an OPTIONAL MATCH by its key;
    /// for a hop, an OPTIONAL MATCH of the edge between the two nodes; the
    /// write then creates what was not found.
    pub(super) fn merge(
        &mut self,
        p: &PathPattern,
        on_create: &[SetItem],
        on_match: &[SetItem],
        ops: &mut Vec<Op>,
    ) -> Result<Write> {
        named_path(p, "MERGE")?;
        if p.steps.len() > 1 {
            return Err(sem(
                p.start.pos.pos,
                "MERGE takes one node or one hop: split a longer path into one MERGE per hop",
            ));
        }
        let ends: Vec<&NodePattern> = std::iter::once(&p.start)
            .chain(p.steps.iter().map(|(_, n)| n))
            .collect();
        let mut nodes = Vec::new();
        let mut srcs = Vec::new();
        // The slot each end is read from (a merged node's may hold null).
        let mut end_slots = Vec::new();
        for np in ends {
            let bound = np.var.as_ref().and_then(|v| {
                if let Some(Target::Node { ty, key }) = self.merged.get(&v.text).or(self.created.get(&v.text))
                {
                    return Some(NodeSrc::New {
                        ty: *ty,
                        key: key.clone(),
                    });
                }
                self.vars.get(&v.text).map(|&s| NodeSrc::Bound(s))
            });
            if let Some(src) = bound {
                if np.label.is_some() || !np.props.is_empty() {
                    return Err(sem(
                        np.pos.pos,
                        format!(
                            "`{}` is already bound; MERGE cannot add a type or properties to it",
                            np.var.as_ref().map_or("", |v| &v.text)
                        ),
                    ));
                }
                let v = np.var.as_ref().map_or("", |v| &v.text);
                end_slots.push(self.vars.get(v).copied().ok_or_else(|| {
                    sem(
                        np.pos.pos,
                        format!("`{v}` is created by this query; MERGE cannot read it"),
                    )
                })?);
                srcs.push(src);
                continue;
            }
            let (Some(label), Some((_, key))) = (&np.label, np.props.iter().find(|(k, _)| k.text == "key"))
            else {
                return Err(sem(
                    np.pos.pos,
                    "a merged node needs a type and a key: MERGE (:User {key: 'alice'})",
                ));
            };
            let ty = self.node_type(label)?;
            self.outer = self.vars.keys().cloned().collect();
            let mut found = Vec::new();
            let slot = self.bind_node(np, Some(key), &mut found)?;
            ops.push(Op::Optional(found));
            let key = self.expr(key)?;
            let props = self.other_props(np)?;
            if let Some(v) = &np.var {
                self.merged
                    .insert(v.text.clone(), Target::Node { ty, key: key.clone() });
            }
            end_slots.push(slot);
            nodes.push(MergeNode {
                implied: false,
                slot,
                ty,
                key: key.clone(),
                props,
            });
            srcs.push(NodeSrc::New { ty, key });
        }
        let edge = match p.steps.first() {
            None => None,
            Some((r, _)) => {
                if r.types.len() != 1 || r.hops.is_some() || r.dir == Dir::Both {
                    return Err(sem(
                        r.pos.pos,
                        "a merged relationship needs one type, one hop and a direction: -[:Follows]->",
                    ));
                }
                let rel = self.relation(&r.types[0])?;
                let (src, dst) = match r.dir {
                    Dir::In => (srcs[1].clone(), srcs[0].clone()),
                    _ => (srcs[0].clone(), srcs[1].clone()),
                };
                let slot = self.slot();
                if let Some(v) = &r.var {
                    self.bind(v.text.clone(), slot);
                    self.merged.insert(
                        v.text.clone(),
                        Target::Edge {
                            rel,
                            src: src.clone(),
                            dst: dst.clone(),
                        },
                    );
                }
                // The edge between the two ends, now both bound (null when new).
                let (from, to) = match r.dir {
                    Dir::In => (end_slots[1], end_slots[0]),
                    _ => (end_slots[0], end_slots[1]),
                };
                ops.push(Op::Optional(vec![Op::Expand(Step {
                    from,
                    to,
                    edge: slot,
                    rels: Some(vec![rel]),
                    dir: Dir::Out,
                    to_types: None,
                    into: true,
                    uniq: Vec::new(),
                })]));
                Some(MergeEdge {
                    slot,
                    rel,
                    src,
                    dst,
                    ends: [from, to],
                })
            }
        };
        let mut on_c = Vec::new();
        self.set_items(on_create, &mut on_c)?;
        let mut on_m = Vec::new();
        self.set_items(on_match, &mut on_m)?;
        Ok(Write::Merge(Box::new(Merge {
            nodes,
            edge,
            on_create: on_c,
            on_match: on_m,
        })))
    }

    /// A node pattern's properties other than its key.
    fn other_props(&mut self, np: &NodePattern) -> Result<Vec<(String, CExpr)>> {
        np.props
            .iter()
            .filter(|(k, _)| k.text != "key")
            .map(|(k, v)| Ok((k.text.clone(), self.expr(v)?)))
            .collect()
    }

    /// SET items as writes; a literal map is one write per key.
    pub(super) fn set_items(&mut self, items: &[SetItem], writes: &mut Vec<Write>) -> Result<()> {
        for item in items {
            match item {
                SetItem::Prop(var, prop, e) => {
                    if prop.text == "key" {
                        return Err(sem(prop.pos, "a node's key cannot be changed"));
                    }
                    writes.push(Write::Set {
                        target: self.target(var)?,
                        prop: prop.text.clone(),
                        value: self.expr(e)?,
                    });
                }
                // A literal map naming the key is checked row by row: its
                // own key is left alone, another is an error.
                SetItem::Map(var, Expr::Map(m)) if m.iter().all(|(k, _)| k.text != "key") => {
                    for (k, v) in m {
                        self.set_items(&[SetItem::Prop(var.clone(), k.clone(), v.clone())], writes)?;
                    }
                }
                SetItem::Map(var, e) => writes.push(Write::SetMap {
                    target: self.target(var)?,
                    value: self.expr(e)?,
                }),
            }
        }
        Ok(())
    }

    /// What a SET or REMOVE of variable `v` changes.
    pub(super) fn target(&self, v: &Name) -> Result<Target> {
        if let Some(t) = self.merged.get(&v.text).or(self.created.get(&v.text)) {
            return Ok(t.clone());
        }
        self.var(v).map(Target::Slot)
    }
}

/// Writes name their nodes and relationships, not paths.
fn named_path(p: &PathPattern, clause: &str) -> Result<()> {
    match (&p.var, p.shortest) {
        (Some(v), _) => Err(sem(
            v.pos,
            format!("{clause} does not bind paths: name its nodes and relationships"),
        )),
        (None, Some(_)) => Err(sem(p.start.pos.pos, format!("{clause} cannot take shortestPath"))),
        (None, None) => Ok(()),
    }
}
