//! Two hops from one node, when only the distinct ends are used
//! (`RETURN count(DISTINCT c)`, `RETURN DISTINCT c`): the union of the
//! middle nodes' neighbour lists in one bitmap, instead of a row per path;
//! when only the number of paths is (`RETURN count(*)`), the sum of the
//! middle nodes' degrees.

use super::*;

/// Rewrites `NodeByKey (a:T) → Expand (a)-[e1]->(x) → Expand (x)-[e2]->(c)`
/// with a RETURN that reads only `a` and `c` (DISTINCT, or one
/// `count(DISTINCT c)`) into one `TwoHop` operator. `x`, `e1` and `e2`
/// must be unused: nothing but the set of `c` is observable.
pub(super) fn rewrite(plan: &mut Plan, fresh: usize) {
    let (Some(ret), true) = (&mut plan.ret, plan.writes.is_empty() && plan.before.is_empty()) else {
        return;
    };
    let [Op::ByKey {
        slot: a,
        types: Some(types),
        ..
    }, Op::Expand(s1), Op::Expand(s2)] = plan.ops.as_slice()
    else {
        return;
    };
    let (a, c) = (*a, s2.to);
    if types.len() != 1 || s1.from != a || s2.from != s1.to || s1.into || s2.into || c == a {
        return;
    }
    let only_ends = |e: &CExpr| reads_only(e, &[a, c]);
    let order_ok = ret
        .order
        .iter()
        .all(|(o, _)| o.as_ref().map_or_else(only_ends, |_| true));
    let (count, paths) = match ret.items.as_slice() {
        _ if ret.distinct && order_ok && ret.items.iter().all(|i| i.as_ref().is_ok_and(only_ends)) => {
            (None, false)
        }
        [Err(Agg {
            kind: AggKind::Count,
            distinct: true,
            arg: Some(CExpr::Slot(s)),
        })] if *s == c => (Some(fresh), false),
        // Every path counts once (`c` is never null): from degrees, when
        // the second hop has a direction (an undirected one meets its
        // self-loops twice).
        [Err(Agg {
            kind: AggKind::Count,
            distinct: false,
            arg,
        })] if !ret.distinct
            && s2.dir != Dir::Both
            && arg
                .as_ref()
                .is_none_or(|x| matches!(x, CExpr::Slot(s) if *s == c)) =>
        {
            (Some(fresh), true)
        }
        _ => return,
    };
    if let Some(n) = count {
        // One row per start node carries the number of ends; summing it over
        // the (at most one) start row keeps `0` for a missing key.
        ret.items = vec![Err(Agg {
            kind: AggKind::Sum,
            distinct: false,
            arg: Some(CExpr::Slot(n)),
        })];
    }
    let (a_step, b_step) = (s1.clone(), s2.clone());
    plan.ops.truncate(1);
    plan.ops.push(Op::TwoHop {
        a: a_step,
        b: b_step,
        count,
        paths,
    });
    plan.width = plan.width.max(fresh + 1);
}

/// True when `e` reads no slot outside `allowed`.
fn reads_only(e: &CExpr, allowed: &[usize]) -> bool {
    let all = |v: &[CExpr]| v.iter().all(|x| reads_only(x, allowed));
    match e {
        CExpr::Const(_) | CExpr::Param(_) => true,
        CExpr::Slot(s) => allowed.contains(s),
        CExpr::Prop(x, _) | CExpr::Not(x) | CExpr::Neg(x) | CExpr::IsNull(x, _) => reads_only(x, allowed),
        CExpr::List(l) | CExpr::Func(_, l) => all(l),
        CExpr::Map(m) => m.iter().all(|(_, x)| reads_only(x, allowed)),
        CExpr::Bin(_, x, y) => reads_only(x, allowed) && reads_only(y, allowed),
        CExpr::Exists(_)
        | CExpr::Count(_)
        | CExpr::ListComp { .. }
        | CExpr::PatternList { .. }
        | CExpr::Case { .. } => false,
    }
}
