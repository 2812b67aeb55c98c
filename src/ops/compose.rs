//! Several changes to one column in one plan, composed into one operation before the plan is
//! checked or planned.
//!
//! - A `change_type` takes in the plan's other changes of the same column: a `rename_column`
//!   before it (of the name it changes) or after it (of its column) becomes its `rename_to`;
//!   a `set_not_null` (with its `fill`), `drop_not_null` or `set_default` of the column, before
//!   or after it under the name the column has there, becomes its `not_null`, `fill` or
//!   `default`. One new column is built, under its final name and in its final type.
//! - Without a `change_type`, a `set_not_null`, `drop_not_null`, `set_default` or
//!   `set_comment` of a column's new name, after its `rename_column`, is done on the column
//!   itself (the old name): `rename_column` keeps that column and renames it at contract, with
//!   what is on it, while the copy under the new name is dropped.
//!
//! Each expression is written with the names the column has at its place in the plan; it is
//! rewritten for the names the columns have during the transition ([`crate::rewrite`]). An
//! operation taken into another keeps its place in the plan as [`Composed`], which does
//! nothing, so that errors and `plan` still name each operation where it is written.

use super::change_type::{temp_name, ChangeType};
use super::{Effects, Operation, OperationSpec, Problems};
use crate::diagnostics::FieldPath;
use crate::rewrite::{rename_columns, Replacement};

/// An operation of the plan composed into another one (`into`, its position).
#[derive(Debug, Clone)]
pub struct Composed {
    kind: &'static str,
    summary: String,
    into: usize,
}

impl Operation for Composed {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn summary(&self) -> String {
        format!("{} (done by operations[{}])", self.summary, self.into)
    }

    fn effects(&self) -> Effects {
        Effects::default()
    }
}

/// The plan's operations with changes of one column composed (see the module's text).
/// Problems name the operations as written: an expression that cannot be rewritten.
pub fn compose(
    mut operations: Vec<OperationSpec>,
    table: &str,
    problems: &mut Problems,
) -> Vec<OperationSpec> {
    for k in 0..operations.len() {
        if let OperationSpec::ChangeType(c) = &operations[k] {
            let c = c.clone();
            compose_change_type(&mut operations, k, c, table, problems);
        }
    }
    retarget_after_renames(&mut operations, table, problems);
    operations
}

fn at(i: usize, field: &str) -> FieldPath {
    FieldPath::of("operations").index(i).key(field)
}

fn column_map(pairs: &[(&str, &str)]) -> Vec<(String, Replacement)> {
    pairs
        .iter()
        .filter(|(from, to)| from != to)
        .map(|(from, to)| (from.to_string(), Replacement::Column(to.to_string())))
        .collect()
}

/// `expr` rewritten, or a problem at `field` and the text unchanged.
fn rewritten(
    expr: &str,
    table: &str,
    map: &[(String, Replacement)],
    field: FieldPath,
    problems: &mut Problems,
) -> String {
    if map.is_empty() {
        return expr.to_string();
    }
    match rename_columns(expr, table, map) {
        Some(e) => e,
        None => {
            problems.add(
                field,
                "this expression cannot be read to rename the columns it uses (an unclosed quote or comment, or a qualified column replaced by an expression); put the change of this column in a plan of its own",
            );
            expr.to_string()
        }
    }
}

fn rename_of(op: &OperationSpec) -> Option<(&str, &str)> {
    match op {
        OperationSpec::RenameColumn(r) => Some((&r.from, &r.to)),
        _ => None,
    }
}

fn compose_change_type(
    ops: &mut [OperationSpec],
    k: usize,
    mut c: ChangeType,
    table: &str,
    problems: &mut Problems,
) {
    let written = c.column.clone();
    // The name `down` gives the new value, as written.
    let user_temp = c.temp();
    // A rename of the name this operation changes, before it; one of its column, after it.
    let before = if c.rename_to.is_none() {
        (0..k)
            .rev()
            .find(|&r| rename_of(&ops[r]).is_some_and(|(_, to)| to == written))
    } else {
        None
    };
    let after = if c.rename_to.is_none() {
        (k + 1..ops.len()).find(|&r| rename_of(&ops[r]).is_some_and(|(from, _)| from == written))
    } else {
        None
    };
    let old = match before.and_then(|r| rename_of(&ops[r])) {
        Some((from, _)) => from.to_string(),
        None => written.clone(),
    };
    let renamed = match (before, after.and_then(|r| rename_of(&ops[r]))) {
        (_, Some((_, to))) => Some(to.to_string()),
        (Some(_), None) => Some(written.clone()),
        (None, None) => c.rename_to.clone(),
    };
    if renamed.as_deref() == Some(old.as_str()) {
        // Renamed back to where it started: nothing to compose.
        return;
    }
    // A rename names the new column; without one, the hidden column keeps its `temp_column`.
    let temp_column = if renamed.is_some() {
        None
    } else {
        c.temp_column.clone()
    };
    let new = temp_name(&old, renamed.as_deref(), temp_column.as_deref());
    // The name the column has at position `p` of the plan.
    let name_at = |p: usize| -> &str {
        match (before, after) {
            (_, Some(r)) if p > r => renamed.as_deref().unwrap_or(&written),
            (Some(r), _) if p <= r => &old,
            (None, _) if p < k => &old,
            _ => &written,
        }
    };
    let mut fill_before: Option<String> = None;
    let mut taken: Vec<usize> = before.into_iter().chain(after).collect();
    for (p, op) in ops.iter().enumerate() {
        if p == k || taken.contains(&p) {
            continue;
        }
        let name = name_at(p);
        // Written after the change, the column's name stands for its value in the new type.
        let here = if p > k { new.as_str() } else { old.as_str() };
        match op {
            OperationSpec::SetNotNull(n) if n.column == name && c.not_null.is_none() => {
                c.not_null = Some(true);
                if let Some(f) = &n.fill {
                    let map = column_map(&[(name, here)]);
                    let f = rewritten(f, table, &map, at(p, "fill"), problems);
                    if p > k {
                        c.fill = Some(f);
                    } else {
                        fill_before = Some(f);
                    }
                }
                taken.push(p);
            }
            OperationSpec::DropNotNull(n) if n.column == name && c.not_null.is_none() => {
                c.not_null = Some(false);
                taken.push(p);
            }
            OperationSpec::SetDefault(d) if d.column == name => {
                // Later wins: a default set before the change is the new type's unless the
                // change gives its own.
                if p > k || c.default.is_none() {
                    c.default = Some(d.default.clone());
                }
                taken.push(p);
            }
            _ => {}
        }
    }
    if taken.is_empty() {
        return;
    }
    let up_map = column_map(&[(&written, &old)]);
    let up =
        c.up.as_ref()
            .map(|u| rewritten(u, table, &up_map, at(k, "up"), problems));
    if let Some(f) = fill_before {
        // NULLs of the old column get the fill, in the old type: the new value is what `up`
        // gives for the fill.
        c.fill = Some(match &up {
            Some(u) => rewritten(
                u,
                table,
                &[(old.clone(), Replacement::Expr(f))],
                at(k, "up"),
                problems,
            ),
            None => f,
        });
    }
    let down_map = column_map(&[(&user_temp, &new), (&written, &old)]);
    let down = c
        .down
        .as_ref()
        .map(|d| rewritten(d, table, &down_map, at(k, "down"), problems));
    let fused = ChangeType {
        column: old,
        up,
        down,
        rename_to: renamed,
        temp_column,
        ..c
    };
    for p in taken {
        let op = ops[p].op();
        ops[p] = OperationSpec::Composed(Composed {
            kind: op.kind(),
            summary: op.summary(),
            into: k,
        });
    }
    ops[k] = OperationSpec::ChangeType(fused);
}

/// Metadata of a column's new name after its `rename_column`, done on the column itself.
fn retarget_after_renames(ops: &mut [OperationSpec], table: &str, problems: &mut Problems) {
    for r in 0..ops.len() {
        let Some((from, to)) = rename_of(&ops[r]).map(|(f, t)| (f.to_string(), t.to_string()))
        else {
            continue;
        };
        for (p, op) in ops.iter_mut().enumerate().skip(r + 1) {
            match op {
                OperationSpec::SetNotNull(n) if n.column == to => {
                    n.column = from.clone();
                    if let Some(f) = &n.fill {
                        let map = column_map(&[(&to, &from)]);
                        n.fill = Some(rewritten(f, table, &map, at(p, "fill"), problems));
                        // The rename's sync ran first: the copy has the NULL too.
                        n.copy = Some(to.clone());
                    }
                }
                OperationSpec::DropNotNull(n) if n.column == to => n.column = from.clone(),
                OperationSpec::SetDefault(d) if d.column == to => d.column = from.clone(),
                OperationSpec::SetComment(s) if s.column.as_deref() == Some(to.as_str()) => {
                    s.column = Some(from.clone());
                }
                _ => {}
            }
        }
    }
}
