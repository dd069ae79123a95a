//! Expression evaluation: parameters, properties, operators and functions.

use super::*;

impl Ctx<'_> {
    pub(super) fn param(&self, name: &str) -> Result<Value> {
        self.params
            .get(name)
            .cloned()
            .ok_or_else(|| runtime(format!("missing parameter ${name}")))
    }

    pub(crate) fn eval(&self, e: &CExpr, row: &Row) -> Result<Value> {
        Ok(match e {
            CExpr::Const(v) => v.clone(),
            CExpr::Param(p) => self.param(p)?,
            CExpr::Slot(s) => row[*s].clone(),
            // A map in a slot (`UNWIND $rows AS r ... r.src`): read in place.
            CExpr::Prop(x, name) => match x.slot_in(row) {
                Some(Value::Map(m)) => m.get(name).cloned().unwrap_or(Value::Null),
                _ => self.prop(self.eval(x, row)?, name)?,
            },
            CExpr::List(l) => Value::List(l.iter().map(|x| self.eval(x, row)).collect::<Result<_>>()?),
            CExpr::Map(m) => Value::Map(Arc::new(
                m.iter()
                    .map(|(k, x)| Ok((k.clone(), self.eval(x, row)?)))
                    .collect::<Result<_>>()?,
            )),
            CExpr::Not(x) => match self.eval(x, row)? {
                Value::Bool(b) => Value::Bool(!b),
                Value::Null => Value::Null,
                other => return Err(runtime(format!("NOT needs a boolean, not {}", kind(&other)))),
            },
            CExpr::Neg(x) => match self.eval(x, row)? {
                Value::Int(i) => Value::Int(i.checked_neg().ok_or_else(|| runtime("integer overflow"))?),
                Value::Float(f) => Value::Float(-f),
                Value::Null => Value::Null,
                other => return Err(runtime(format!("cannot negate {}", kind(&other)))),
            },
            CExpr::IsNull(x, not) => Value::Bool(matches!(self.eval(x, row)?, Value::Null) != *not),
            CExpr::Case {
                subject,
                whens,
                otherwise,
            } => {
                let subject = subject.as_ref().map(|s| self.eval(s, row)).transpose()?;
                for (w, t) in whens {
                    let w = self.eval(w, row)?;
                    let hit = match &subject {
                        // `=`: null equals nothing.
                        Some(s) => !matches!(s, Value::Null) && *s == w,
                        None => matches!(w, Value::Bool(true)),
                    };
                    if hit {
                        return self.eval(t, row);
                    }
                }
                match otherwise {
                    Some(e) => self.eval(e, row)?,
                    None => Value::Null,
                }
            }
            CExpr::Bin(op, a, b) => self.binary(*op, a, b, row)?,
            CExpr::Func(f, args) => self.func(*f, args, row)?,
            CExpr::Exists(ops) => match self.pipeline(ops, row.clone()).next() {
                Some(Err(e)) => return Err(e),
                found => Value::Bool(found.is_some()),
            },
            CExpr::Count(ops) => {
                let mut n = 0;
                for r in self.pipeline(ops, row.clone()) {
                    r?;
                    n += 1;
                }
                Value::Int(n)
            }
            CExpr::PatternList { ops, map } => {
                let (mut out, mut held) = (Vec::new(), 0);
                for r in self.pipeline(ops, row.clone()) {
                    let v = self.eval(map, &r?)?;
                    held += super::held(&v);
                    self.cap_values(1, held)?;
                    out.push(v);
                    if out.len() > MAX_LIST {
                        return Err(too_long("list", out.len()));
                    }
                }
                Value::List(out.into())
            }
            CExpr::ListComp {
                list,
                slot,
                filter,
                map,
            } => {
                let items = match self.eval(list, row)? {
                    Value::List(l) => l,
                    Value::Null => return Ok(Value::Null),
                    other => {
                        return Err(runtime(format!(
                            "a list comprehension takes a list, not {}",
                            kind(&other)
                        )))
                    }
                };
                let mut r = row.clone();
                let (mut out, mut held) = (Vec::new(), 0);
                for x in items.iter() {
                    self.tick()?;
                    self.cap_values(1, held)?;
                    r[*slot] = x.clone();
                    if let Some(f) = filter {
                        if !matches!(self.eval(f, &r)?, Value::Bool(true)) {
                            continue;
                        }
                    }
                    let v = match map {
                        Some(m) => self.eval(m, &r)?,
                        None => x.clone(),
                    };
                    held += super::held(&v);
                    out.push(v);
                }
                Value::List(out.into())
            }
        })
    }

    /// The value of `e`, borrowed from the row when it is a map's entry
    /// there (`row.key` of `UNWIND $rows AS row`), so that a key looked up
    /// costs no copy.
    pub(crate) fn eval_ref<'r>(&self, e: &CExpr, row: &'r Row) -> Result<std::borrow::Cow<'r, Value>> {
        if let CExpr::Prop(x, name) = e {
            if let Some(Value::Map(m)) = x.slot_in(row) {
                return Ok(match m.get(name) {
                    Some(v) => std::borrow::Cow::Borrowed(v),
                    None => std::borrow::Cow::Owned(Value::Null),
                });
            }
        }
        Ok(std::borrow::Cow::Owned(self.eval(e, row)?))
    }

    pub(super) fn prop(&self, v: Value, name: &str) -> Result<Value> {
        Ok(match v {
            Value::Null => Value::Null,
            Value::Node { ty, id } => {
                if name == "key" {
                    self.snap.node_key(ty, id).map_or(Value::Null, Value::from)
                } else {
                    self.property(ty, id, name)?.map_or(Value::Null, stored)
                }
            }
            Value::Edge { rel, src, dst } => match name {
                "weight" => self
                    .snap
                    .edge_weight(rel, src, dst)
                    .map_or(Value::Null, |w| Value::Float(w as f64)),
                _ => Value::Null,
            },
            Value::Map(m) => m.get(name).cloned().unwrap_or(Value::Null),
            other => {
                return Err(runtime(format!(
                    "cannot read property `{name}` of {}",
                    kind(&other)
                )))
            }
        })
    }

    pub(super) fn binary(&self, op: BinOp, a: &CExpr, b: &CExpr, row: &Row) -> Result<Value> {
        use Value::*;
        let truth = |v: Value| -> Result<Option<bool>> {
            match v {
                Bool(b) => Ok(Some(b)),
                Null => Ok(None),
                other => Err(runtime(format!(
                    "{} needs booleans, not {}",
                    op.text(),
                    kind(&other)
                ))),
            }
        };
        let tri = |x: Option<bool>| x.map_or(Null, Bool);
        match op {
            BinOp::And => {
                let l = truth(self.eval(a, row)?)?;
                if l == Some(false) {
                    return Ok(Bool(false));
                }
                let r = truth(self.eval(b, row)?)?;
                return Ok(match (l, r) {
                    (_, Some(false)) => Bool(false),
                    (Some(true), Some(true)) => Bool(true),
                    _ => Null,
                });
            }
            BinOp::Or => {
                let l = truth(self.eval(a, row)?)?;
                if l == Some(true) {
                    return Ok(Bool(true));
                }
                let r = truth(self.eval(b, row)?)?;
                return Ok(match (l, r) {
                    (_, Some(true)) => Bool(true),
                    (Some(false), Some(false)) => Bool(false),
                    _ => Null,
                });
            }
            BinOp::Xor => {
                let (l, r) = (truth(self.eval(a, row)?)?, truth(self.eval(b, row)?)?);
                return Ok(tri(l.zip(r).map(|(x, y)| x != y)));
            }
            _ => {}
        }
        let (l, r) = (self.eval(a, row)?, self.eval(b, row)?);
        if matches!(l, Null) || matches!(r, Null) {
            return Ok(match (op, &r) {
                (BinOp::In, List(items)) if items.is_empty() => Bool(false),
                _ => Null,
            });
        }
        let num = |v: &Value| matches!(v, Int(_) | Float(_));
        // NaN equals nothing and is neither above nor below anything (IEEE,
        // openCypher), though it sorts and groups as one value.
        let nan = |v: &Value| matches!(v, Float(x) if x.is_nan());
        let comparable = ((num(&l) && num(&r)) || std::mem::discriminant(&l) == std::mem::discriminant(&r))
            && !(nan(&l) || nan(&r));
        let ord = l.total_cmp(&r);
        Ok(match op {
            BinOp::Eq => Bool(comparable && ord.is_eq()),
            BinOp::Ne => Bool(!(comparable && ord.is_eq())),
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge if nan(&l) || nan(&r) => Bool(false),
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                if !comparable || matches!(l, List(_) | Node { .. } | Edge { .. }) {
                    return Ok(Null);
                }
                Bool(match op {
                    BinOp::Lt => ord.is_lt(),
                    BinOp::Le => ord.is_le(),
                    BinOp::Gt => ord.is_gt(),
                    _ => ord.is_ge(),
                })
            }
            BinOp::In => match r {
                List(items) => {
                    if items.iter().any(|x| {
                        (num(x) && num(&l) || std::mem::discriminant(x) == std::mem::discriminant(&l))
                            && !(nan(x) || nan(&l))
                            && *x == l
                    }) {
                        Bool(true)
                    } else if items.iter().any(|x| matches!(x, Null)) {
                        Null
                    } else {
                        Bool(false)
                    }
                }
                other => {
                    return Err(runtime(format!(
                        "IN needs a list on its right, not {}",
                        kind(&other)
                    )))
                }
            },
            BinOp::StartsWith | BinOp::EndsWith | BinOp::Contains => match (&l, &r) {
                (Str(x), Str(y)) => Bool(match op {
                    BinOp::StartsWith => x.starts_with(y.as_str()),
                    BinOp::EndsWith => x.ends_with(y.as_str()),
                    _ => x.contains(y.as_str()),
                }),
                _ => Null,
            },
            _ => arith(op, l, r)?,
        })
    }

    pub(super) fn func(&self, f: Func, args: &[CExpr], row: &Row) -> Result<Value> {
        let vals = args
            .iter()
            .map(|a| self.eval(a, row))
            .collect::<Result<Vec<_>>>()?;
        let c = self.snap.catalog();
        let bad = |what: &str| Err(runtime(format!("{f:?} needs {what}, not {}", kind(&vals[0]))));
        Ok(match (f, &vals[0]) {
            (Func::Coalesce, _) => vals
                .iter()
                .find(|v| !matches!(v, Value::Null))
                .cloned()
                .unwrap_or(Value::Null),
            (_, Value::Null) => Value::Null,
            (Func::Type, Value::Edge { rel, .. }) => Value::Str(c.relations[*rel as usize].name.clone()),
            (Func::Type, _) => return bad("an edge"),
            (Func::Id, Value::Node { id, .. }) => Value::Int(*id as i64),
            (Func::Id, _) => return bad("a node"),
            (Func::Labels, Value::Node { ty, .. }) => {
                Value::List([Value::Str(c.type_name(*ty).to_string())].into())
            }
            (Func::Labels, _) => return bad("a node"),
            (Func::Size, Value::List(l)) => Value::Int(l.len() as i64),
            (Func::Size, Value::Path(p)) => Value::Int((p.len() / 2) as i64),
            (Func::Nodes, Value::Path(p)) => Value::List(p.iter().step_by(2).cloned().collect()),
            (Func::Relationships, Value::Path(p)) => {
                Value::List(p.iter().skip(1).step_by(2).cloned().collect())
            }
            (Func::Nodes | Func::Relationships, _) => return bad("a path"),
            (Func::Size, Value::Str(s)) => Value::Int(s.chars().count() as i64),
            (Func::Size, _) => return bad("a list, a string or a path"),
            (Func::ToLower, Value::Str(s)) => Value::Str(s.to_lowercase()),
            (Func::ToUpper, Value::Str(s)) => Value::Str(s.to_uppercase()),
            (Func::Trim, Value::Str(s)) => Value::Str(s.trim().to_string()),
            (Func::ToLower | Func::ToUpper | Func::Trim, _) => return bad("a string"),
            (Func::Substring, Value::Str(s)) => {
                let int = |v: Option<&Value>, what: &str| match v {
                    None => Ok(None),
                    Some(Value::Int(i)) if *i >= 0 => Ok(Some(*i as usize)),
                    Some(Value::Int(i)) => Err(runtime(format!(
                        "substring's {what} must not be negative, not {i}"
                    ))),
                    Some(other) => Err(runtime(format!(
                        "substring's {what} is an integer, not {}",
                        kind(other)
                    ))),
                };
                let start = int(vals.get(1), "start")?.unwrap_or(0);
                let len = int(vals.get(2), "length")?.unwrap_or(usize::MAX);
                Value::Str(s.chars().skip(start).take(len).collect())
            }
            (Func::Split, Value::Str(s)) => match &vals[1] {
                // An empty delimiter splits into characters, as in Neo4j.
                Value::Str(d) if d.is_empty() => {
                    Value::List(s.chars().map(|c| Value::Str(c.into())).collect())
                }
                Value::Str(d) => {
                    Value::List(s.split(d.as_str()).map(|p| Value::Str(p.to_string())).collect())
                }
                Value::Null => Value::Null,
                other => {
                    return Err(runtime(format!(
                        "split's delimiter is a string, not {}",
                        kind(other)
                    )))
                }
            },
            (Func::Replace, Value::Str(s)) => match (&vals[1], &vals[2]) {
                (Value::Str(from), Value::Str(to)) => {
                    // The result's size, known before it is built.
                    let n = s.matches(from.as_str()).count();
                    let len = (s.len() - n * from.len()).saturating_add(n.saturating_mul(to.len()));
                    if len > MAX_STRING {
                        return Err(too_long("string", len));
                    }
                    Value::Str(s.replace(from.as_str(), to))
                }
                (Value::Null, _) | (_, Value::Null) => Value::Null,
                _ => return Err(runtime("replace takes strings")),
            },
            (Func::Substring | Func::Split | Func::Replace, _) => return bad("a string"),
            (Func::Head, Value::List(l)) => l.first().cloned().unwrap_or(Value::Null),
            (Func::Last, Value::List(l)) => l.last().cloned().unwrap_or(Value::Null),
            (Func::Head | Func::Last, _) => return bad("a list"),
            (Func::Range, Value::Int(start)) => {
                let (Value::Int(end), step) = (&vals[1], vals.get(2).unwrap_or(&Value::Int(1))) else {
                    return Err(runtime("range takes integers"));
                };
                let Value::Int(step) = *step else {
                    return Err(runtime("range takes integers"));
                };
                if step == 0 {
                    return Err(runtime("range's step must not be 0"));
                }
                // Counted before anything is allocated: a list is held to the row cap.
                let n = ((*end as i128 - *start as i128) / step as i128 + 1).max(0);
                self.cap(n.min(usize::MAX as i128) as usize)?;
                Value::List((0..n as i64).map(|i| Value::Int(start + i * step)).collect())
            }
            (Func::Range, _) => return bad("an integer"),
            (Func::Keys, Value::Node { ty, id }) => {
                let mut names = vec![Value::Str("key".into())];
                names.extend(self.properties(*ty, *id)?.into_iter().map(|(n, _)| Value::Str(n)));
                Value::List(names.into())
            }
            (Func::Keys, Value::Map(m)) => Value::List(m.keys().map(|k| Value::Str(k.clone())).collect()),
            (Func::Keys, _) => return bad("a node or a map"),
            (Func::Properties, Value::Node { ty, id }) => {
                let mut m = std::collections::BTreeMap::from([(
                    "key".to_string(),
                    self.prop(vals[0].clone(), "key")?,
                )]);
                m.extend(
                    self.properties(*ty, *id)?
                        .into_iter()
                        .map(|(n, x)| (n, stored(x))),
                );
                Value::Map(Arc::new(m))
            }
            (Func::Properties, Value::Edge { .. }) => Value::Map(Arc::new(std::collections::BTreeMap::from(
                [("weight".to_string(), self.prop(vals[0].clone(), "weight")?)],
            ))),
            (Func::Properties, Value::Map(m)) => Value::Map(m.clone()),
            (Func::Properties, _) => return bad("a node, an edge or a map"),
            (Func::Abs, Value::Int(i)) => {
                Value::Int(i.checked_abs().ok_or_else(|| runtime("integer overflow"))?)
            }
            (Func::Abs, Value::Float(x)) => Value::Float(x.abs()),
            (Func::Abs, _) => return bad("a number"),
            (Func::ToInteger, Value::Int(i)) => Value::Int(*i),
            (Func::ToInteger, Value::Float(x)) if x.is_finite() => Value::Int(*x as i64),
            (Func::ToInteger, Value::Str(s)) => s.trim().parse().map_or(Value::Null, Value::Int),
            (Func::ToInteger, _) => return bad("a number or a string"),
            (Func::ToFloat, v @ (Value::Int(_) | Value::Float(_))) => Value::Float(v.as_f64().unwrap_or(0.0)),
            (Func::ToFloat, Value::Str(s)) => s.trim().parse().map_or(Value::Null, Value::Float),
            (Func::ToFloat, _) => return bad("a number or a string"),
            (Func::ToString, Value::Str(s)) => Value::Str(s.clone()),
            (Func::ToString, Value::Int(i)) => Value::Str(i.to_string()),
            (Func::ToString, Value::Float(x)) => Value::Str(format_float(*x)),
            (Func::ToString, Value::Bool(b)) => Value::Str(b.to_string()),
            (Func::ToString, _) => return bad("a number, a boolean or a string"),
            (Func::StartNode | Func::EndNode, Value::Edge { rel, src, dst }) => {
                let def = &c.relations[*rel as usize];
                if f == Func::StartNode {
                    Value::Node {
                        ty: def.src,
                        id: *src,
                    }
                } else {
                    Value::Node {
                        ty: def.dst,
                        id: *dst,
                    }
                }
            }
            (Func::StartNode | Func::EndNode, _) => return bad("an edge"),
            (Func::Score, _) => {
                let m = self.model(vals.get(3), false)?;
                let (h, rel, t) = (
                    self.node_arg(&vals[0])?,
                    self.rel_arg(&vals[1])?,
                    self.node_arg(&vals[2])?,
                );
                if matches!(vals[2], Value::Null) {
                    return Ok(Value::Null);
                }
                self.seen(&m, None, Some(rel))?;
                let q = m.tail_query(rel, &self.row(&m, h)?);
                Value::Float(m.compare(&q, &self.row(&m, t)?) as f64)
            }
            (Func::Embed, _) => {
                let m = self.model(vals.get(1), false)?;
                let node = self.node_arg(&vals[0])?;
                Value::List(
                    self.row(&m, node)?
                        .iter()
                        .map(|&x| Value::Float(x as f64))
                        .collect(),
                )
            }
        })
    }
}

pub(super) fn arith(op: BinOp, l: Value, r: Value) -> Result<Value> {
    use Value::*;
    let overflow = || runtime("integer overflow");
    Ok(match (op, l, r) {
        (BinOp::Add, Str(a), Str(b)) if a.len() + b.len() > MAX_STRING => {
            return Err(too_long("string", a.len() + b.len()))
        }
        (BinOp::Add, Str(a), Str(b)) => Str(a + &b),
        (BinOp::Add, List(a), List(b)) if a.len() + b.len() > MAX_LIST => {
            return Err(too_long("list", a.len() + b.len()))
        }
        (BinOp::Add, List(a), List(b)) => List(a.iter().chain(b.iter()).cloned().collect()),
        (_, Int(a), Int(b)) => Int(match op {
            BinOp::Add => a.checked_add(b).ok_or_else(overflow)?,
            BinOp::Sub => a.checked_sub(b).ok_or_else(overflow)?,
            BinOp::Mul => a.checked_mul(b).ok_or_else(overflow)?,
            BinOp::Div => a.checked_div(b).ok_or_else(|| runtime("division by zero"))?,
            _ => a.checked_rem(b).ok_or_else(|| runtime("division by zero"))?,
        }),
        (_, a @ (Int(_) | Float(_)), b @ (Int(_) | Float(_))) => {
            let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            Float(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
                _ => x % y,
            })
        }
        (op, a, b) => {
            return Err(runtime(format!(
                "cannot apply {} to {} and {}",
                op.text(),
                kind(&a),
                kind(&b)
            )))
        }
    })
}

/// A stored property value as a query value.
fn stored(v: quiver_storage::Value) -> Value {
    match v {
        quiver_storage::Value::Str(s) => Value::Str(s),
        quiver_storage::Value::Int(i) => Value::Int(i),
        quiver_storage::Value::Float(x) => Value::Float(x),
        quiver_storage::Value::Bool(b) => Value::Bool(b),
    }
}
