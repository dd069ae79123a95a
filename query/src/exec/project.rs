//! `RETURN`: plain items, aggregates by group, `DISTINCT`, sort and paging.

use super::*;

impl Ctx<'_> {
    /// Runs `RETURN`.
    pub(crate) fn project(&self, ret: &Ret, mut rows: RowIter<'_>) -> Result<Vec<Vec<Value>>> {
        let empty = Row::new();
        let konst = |e: &Option<CExpr>, what: &str| -> Result<Option<usize>> {
            match e {
                None => Ok(None),
                Some(e) => match self.eval(e, &empty)? {
                    Value::Int(n) if n >= 0 => Ok(Some(n as usize)),
                    Value::Int(n) => Err(runtime(format!("{what} needs a non-negative integer, found {n}"))),
                    other => Err(runtime(format!(
                        "{what} needs a non-negative integer, not {}",
                        kind(&other)
                    ))),
                },
            }
        };
        let skip = konst(&ret.skip, "SKIP")?.unwrap_or(0);
        let limit = konst(&ret.limit, "LIMIT")?;
        let aggregating = ret.items.iter().any(|i| i.is_err());
        let mut seen = FxHashSet::default();
        // Without sorting or aggregates, rows stream and the pipeline stops at the limit.
        if !aggregating && ret.order.is_empty() {
            let mut out = Vec::new();
            let mut skipped = 0;
            while limit.is_none_or(|l| out.len() < l) {
                let Some(row) = rows.next().transpose()? else {
                    break;
                };
                let vals = self.items(ret, &row)?;
                if ret.distinct && !seen.insert(vals.clone()) {
                    continue;
                }
                if skipped < skip {
                    skipped += 1;
                    continue;
                }
                out.push(vals);
                self.cap(out.len())?;
            }
            return Ok(out);
        }
        let mut keyed: Vec<(Vec<Value>, Vec<Value>)> = Vec::new();
        if aggregating {
            let mut groups: FxHashMap<Vec<Value>, usize> = FxHashMap::default();
            let mut states: Vec<(Vec<Value>, Vec<AggState>)> = Vec::new();
            let grouped = ret.items.iter().any(|i| i.is_ok());
            // A group's aggregates before any row.
            let fresh = || -> Vec<AggState> {
                ret.items
                    .iter()
                    .filter_map(|i| i.as_ref().err())
                    .map(AggState::new)
                    .collect()
            };
            for row in rows {
                let row = row?;
                let key: Vec<Value> = if grouped {
                    ret.items
                        .iter()
                        .filter_map(|i| i.as_ref().ok())
                        .map(|e| self.eval(e, &row))
                        .collect::<Result<_>>()?
                } else {
                    Vec::new()
                };
                // Without grouping keys every row falls in the one group.
                let g = match if key.is_empty() && !states.is_empty() {
                    Some(&0)
                } else {
                    groups.get(&key)
                } {
                    Some(&g) => g,
                    None => {
                        states.push((key.clone(), fresh()));
                        groups.insert(key, states.len() - 1);
                        self.cap(states.len())?;
                        states.len() - 1
                    }
                };
                let aggs = ret.items.iter().filter_map(|i| i.as_ref().err());
                for (st, agg) in states[g].1.iter_mut().zip(aggs) {
                    let v = match &agg.arg {
                        None => Value::Bool(true),
                        Some(e) => self.eval(e, &row)?,
                    };
                    st.add(v)?;
                }
                self.recycle(row);
            }
            if states.is_empty() && ret.items.iter().all(|i| i.is_err()) {
                states.push((Vec::new(), fresh()));
            }
            for (key, aggs) in states {
                let (mut k, mut a) = (key.into_iter(), aggs.into_iter());
                let vals: Vec<Value> = ret
                    .items
                    .iter()
                    .map(|i| match i {
                        Ok(_) => k.next().unwrap_or(Value::Null),
                        Err(_) => a.next().map_or(Value::Null, AggState::finish),
                    })
                    .collect();
                if ret.distinct && !seen.insert(vals.clone()) {
                    continue;
                }
                let sort = ret
                    .order
                    .iter()
                    .map(|(o, _)| vals[*o.as_ref().unwrap_or(&0)].clone())
                    .collect();
                keyed.push((sort, vals));
            }
        } else {
            for row in rows {
                let row = row?;
                let vals = self.items(ret, &row)?;
                if ret.distinct && !seen.insert(vals.clone()) {
                    continue;
                }
                let sort = ret
                    .order
                    .iter()
                    .map(|(o, _)| match o {
                        Ok(c) => Ok(vals[*c].clone()),
                        Err(e) => self.eval(e, &row),
                    })
                    .collect::<Result<_>>()?;
                keyed.push((sort, vals));
                self.cap_values(keyed.len(), ret.items.len() + ret.order.len())?;
            }
        }
        if !ret.order.is_empty() {
            // The sort checks the clock too: once past the timeout, every
            // comparison is cut short and the error follows the sort.
            let (mut compared, mut late) = (0u64, None);
            keyed.sort_by(|(a, _), (b, _)| {
                if late.is_some() {
                    return std::cmp::Ordering::Equal;
                }
                compared += 1;
                if compared.is_multiple_of(4096) {
                    late = self.check_time().err();
                }
                for (i, (_, desc)) in ret.order.iter().enumerate() {
                    let o = a[i].total_cmp(&b[i]);
                    let o = if *desc { o.reverse() } else { o };
                    if o.is_ne() {
                        return o;
                    }
                }
                std::cmp::Ordering::Equal
            });
            if let Some(e) = late {
                return Err(e);
            }
        }
        let out: Vec<Vec<Value>> = keyed
            .into_iter()
            .skip(skip)
            .take(limit.unwrap_or(usize::MAX))
            .map(|(_, v)| v)
            .collect();
        self.cap(out.len())?;
        Ok(out)
    }

    pub(super) fn items(&self, ret: &Ret, row: &Row) -> Result<Vec<Value>> {
        ret.items
            .iter()
            .map(|i| match i {
                Ok(e) => self.eval(e, row),
                Err(_) => Ok(Value::Null),
            })
            .collect()
    }
}

/// Running state of one aggregate in one group: with `DISTINCT`, a value
/// already seen is left out, whatever the aggregate.
pub(super) struct AggState {
    seen: Option<FxHashSet<Value>>,
    acc: Acc,
}

enum Acc {
    Count(u64),
    Sum(Value),
    Avg(f64, u64),
    Min(Option<Value>),
    Max(Option<Value>),
    Collect(Vec<Value>),
}

impl AggState {
    pub(super) fn new(a: &Agg) -> Self {
        let acc = match a.kind {
            AggKind::Count => Acc::Count(0),
            AggKind::Sum => Acc::Sum(Value::Int(0)),
            AggKind::Avg => Acc::Avg(0.0, 0),
            AggKind::Min => Acc::Min(None),
            AggKind::Max => Acc::Max(None),
            AggKind::Collect => Acc::Collect(Vec::new()),
        };
        AggState {
            seen: a.distinct.then(FxHashSet::default),
            acc,
        }
    }

    pub(super) fn add(&mut self, v: Value) -> Result<()> {
        if matches!(v, Value::Null) || self.seen.as_mut().is_some_and(|s| !s.insert(v.clone())) {
            return Ok(());
        }
        match &mut self.acc {
            Acc::Count(n) => *n += 1,
            Acc::Sum(s) => *s = arith(BinOp::Add, std::mem::replace(s, Value::Null), v)?,
            Acc::Avg(s, n) => {
                *s += v
                    .as_f64()
                    .ok_or_else(|| runtime(format!("avg needs numbers, not {}", kind(&v))))?;
                *n += 1;
            }
            Acc::Min(m) => {
                if m.as_ref().is_none_or(|x| v.total_cmp(x).is_lt()) {
                    *m = Some(v);
                }
            }
            Acc::Max(m) => {
                if m.as_ref().is_none_or(|x| v.total_cmp(x).is_gt()) {
                    *m = Some(v);
                }
            }
            Acc::Collect(l) if l.len() >= MAX_LIST => return Err(too_long("list", l.len() + 1)),
            Acc::Collect(l) => l.push(v),
        }
        Ok(())
    }

    pub(super) fn finish(self) -> Value {
        match self.acc {
            Acc::Count(n) => Value::Int(n as i64),
            Acc::Sum(s) => s,
            Acc::Avg(_, 0) => Value::Null,
            Acc::Avg(s, n) => Value::Float(s / n as f64),
            Acc::Min(m) | Acc::Max(m) => m.unwrap_or(Value::Null),
            Acc::Collect(l) => Value::List(l.into()),
        }
    }
}
