//! The table during the transition (the live columns plus those expand creates) and the checks
//! of a plan against its table's catalog that need no database.

use crate::db::catalog::{ColumnInfo, KeySource, TableInfo};
use crate::ops::Removal;
use crate::ops::{Ctx, Problems};
use crate::plan::{FieldPath, Plan};

/// The table as it is during the transition: the live columns plus those expand creates.
pub fn transition_table(plan: &Plan, catalog: &TableInfo) -> TableInfo {
    let mut table = catalog.clone();
    for op in &plan.operations {
        for c in op.op().effects().creates {
            if table.column(&c.name).is_some() {
                continue;
            }
            let type_name = match (&c.type_name, &c.type_of) {
                (Some(t), _) => t.clone(),
                (None, Some(src)) => table
                    .column(src)
                    .map(|s| s.type_name.clone())
                    .unwrap_or_else(|| "text".to_string()),
                (None, None) => "text".to_string(),
            };
            table.columns.push(ColumnInfo {
                name: c.name,
                type_name,
                not_null: false,
                default: None,
                identity: None,
                generated: false,
                comment: None,
                grants: Vec::new(),
                statistics: None,
                owned_sequence: None,
            });
        }
    }
    table
}

/// Columns the plan's expand creates.
fn created_columns(plan: &Plan) -> Vec<String> {
    plan.operations
        .iter()
        .flat_map(|o| o.op().effects().creates.into_iter().map(|c| c.name))
        .collect()
}

/// The catalog as it was before the plan's expand ran: without the columns expand creates.
/// The planner builds the same schedule from it after expand as before, so a later process
/// (the backfill, the contract) runs exactly the SQL the first one planned.
pub fn catalog_before_expand(plan: &Plan, catalog: &TableInfo) -> TableInfo {
    let created = created_columns(plan);
    let mut table = catalog.clone();
    table.columns.retain(|c| !created.contains(&c.name));
    table
}

/// Columns the plan's expand creates that the table does not have: non-empty while expand has
/// not run.
pub fn missing_after_expand(plan: &Plan, catalog: &TableInfo) -> Vec<String> {
    created_columns(plan)
        .into_iter()
        .filter(|c| catalog.column(c).is_none())
        .collect()
}

/// Checks the plan against the live catalog of its table: the key, every column named, and
/// each operation's own checks. Type names, expressions and referenced tables need the
/// database and are checked by [`crate::validate`].
///
/// `in_flight`: the plan's expand has run (the catalog passed in is the live one without the
/// columns expand created); the operations' own checks, which are about the catalog before the
/// plan (an index or constraint of that name already exists), are skipped.
pub fn check_catalog(plan: &Plan, catalog: &TableInfo, in_flight: bool) -> Problems {
    let mut problems = Problems::default();
    let transition = transition_table(plan, catalog);
    // A table with no key is walked by physical location; what needs the key is the undo
    // table of values rewritten in place (rollback puts them back by key).
    let forwards: Vec<_> = plan
        .operations
        .iter()
        .enumerate()
        .filter_map(|(i, spec)| {
            let path = FieldPath::of("operations").index(i);
            let ctx = Ctx {
                plan: &plan.name,
                table: &transition,
                position: i,
                path: &path,
            };
            spec.op().forward(&ctx)
        })
        .collect();
    let in_place = super::backfill::in_place_columns(catalog, &forwards);
    if catalog.key.is_empty() && !in_place.is_empty() {
        problems.add(
            FieldPath::of("table"),
            format!(
                "table {} has neither a primary key nor a unique index on NOT NULL columns, and this plan rewrites {} in place: rollback restores the values it saved by key. Add a primary key first (backfills of new columns walk such a table by physical location)",
                catalog.name,
                crate::sql::ident_list(&in_place.iter().map(|c| c.column.clone()).collect::<Vec<_>>())
            ),
        );
    }
    constraint_problems(plan, catalog, !forwards.is_empty(), &mut problems);
    let mut created_so_far: Vec<String> = Vec::new();
    for (i, spec) in plan.operations.iter().enumerate() {
        let op = spec.op();
        let base = FieldPath::of("operations").index(i);
        let effects = op.effects();
        let exists =
            |name: &str| catalog.column(name).is_some() || created_so_far.iter().any(|c| c == name);
        for c in &effects.creates {
            if catalog.column(&c.name).is_some() {
                problems.add(
                    base.join(&c.field),
                    format!(
                        "column \"{}\" already exists in table {}",
                        c.name, catalog.name
                    ),
                );
            }
        }
        let all_uses = effects.reads.iter().map(|u| (u, false)).chain(
            effects
                .writes
                .iter()
                .chain(effects.removes.iter())
                .map(|u| (u, true)),
        );
        for (u, changes) in all_uses {
            if !exists(&u.name) {
                problems.add(
                    base.join(&u.field),
                    format!(
                        "column \"{}\" does not exist in table {}",
                        u.name, catalog.name
                    ),
                );
                continue;
            }
            // A key column's type changes through a new key switched at contract.
            let carried = op.removal() == Removal::Carried;
            if changes && catalog.key.contains(&u.name) && !carried {
                problems.add(
                    base.join(&u.field),
                    format!("column \"{}\" is part of the key of {}, which the backfill walks by; it cannot be changed or dropped", u.name, catalog.name),
                );
            }
            if let Some(col) = catalog.column(&u.name) {
                if changes && (col.generated || col.identity == Some('a')) {
                    problems.add(
                        base.join(&u.field),
                        format!(
                            "column \"{}\" of {} is generated; it cannot be written",
                            u.name, catalog.name
                        ),
                    );
                }
            }
        }
        let ctx = Ctx {
            plan: &plan.name,
            table: &transition,
            position: i,
            path: &base,
        };
        let mut own = Problems::default();
        if !in_flight {
            op.check_catalog(&ctx, &mut own);
            for u in &effects.removes {
                removal_problems(catalog, op.removal(), &u.name, &u.field, &mut own);
            }
        }
        for p in own.0 {
            problems.add(base.join(&p.field), p.message);
        }
        created_so_far.extend(effects.creates.into_iter().map(|c| c.name));
    }
    problems
}

/// Constraints that operations drop or rename ([`crate::ops::Operation::constraint_uses`]),
/// against the rest of the plan: the key a backfill of the plan walks by may not be dropped, and
/// a constraint on a column that another operation carries over to a new column (`change_type`)
/// may not be dropped or renamed in the same plan: the carried copy, taken from the catalog as
/// it was before the plan, would bring it back under its old name at contract.
fn constraint_problems(
    plan: &Plan,
    catalog: &TableInfo,
    moves_data: bool,
    problems: &mut Problems,
) {
    let key = match &catalog.key_source {
        Some(KeySource::PrimaryKey(k) | KeySource::UniqueIndex(k)) if moves_data => Some(k),
        _ => None,
    };
    let carried: Vec<(usize, String)> = plan
        .operations
        .iter()
        .enumerate()
        .filter(|(_, spec)| spec.op().removal() == Removal::Carried)
        .flat_map(|(j, spec)| {
            spec.op()
                .effects()
                .removes
                .into_iter()
                .map(move |r| (j, r.name))
        })
        .collect();
    for (i, spec) in plan.operations.iter().enumerate() {
        for u in spec.op().constraint_uses() {
            let field = FieldPath::of("operations").index(i).join(&u.field);
            if u.drops && Some(&u.name) == key {
                problems.add(
                    field.clone(),
                    format!("constraint \"{}\" holds the key of {}, by which this plan's backfill walks the table: drop it in a plan of its own", u.name, catalog.name),
                );
            }
            let Some(c) = catalog.constraint(&u.name) else {
                continue;
            };
            if let Some((j, column)) = carried
                .iter()
                .find(|(j, col)| *j != i && c.columns.contains(col))
            {
                problems.add(
                    field,
                    format!("conflicting operations: constraint \"{}\" is on column \"{column}\", which operations[{j}] carries over to a new column with its constraints; put one of them in a later plan", u.name),
                );
            }
        }
    }
}

/// What contract would lose or fail on when it drops `column`, per [`Removal`]: dependent
/// objects (views, policies, ...) always; indexes and constraints unless carried over or, for
/// a dropped column, on it alone.
fn removal_problems(
    catalog: &TableInfo,
    removal: Removal,
    column: &str,
    field: &FieldPath,
    problems: &mut Problems,
) {
    if removal == Removal::Kept || catalog.column(column).is_none() {
        return;
    }
    let verb = if removal == Removal::Dropped {
        "drops"
    } else {
        "replaces"
    };
    for d in catalog.dependents.iter().filter(|d| d.column == column) {
        problems.add(
            field.clone(),
            format!(
                "{} {} depends on column \"{column}\" of {}, which contract {verb}: PostgreSQL would refuse to drop the column. Change or drop the {} first",
                d.kind, d.name, catalog.name, d.kind
            ),
        );
    }
    if removal == Removal::Carried {
        return;
    }
    let alone = |cols: &[String]| removal == Removal::Dropped && cols.iter().all(|c| c == column);
    for i in catalog.indexes_involving(column) {
        if !alone(&i.involves) {
            problems.add(
                field.clone(),
                format!(
                    "index \"{}\" ({}) involves column \"{column}\", which contract {verb}: it would be lost. Drop it first (DROP INDEX CONCURRENTLY), or build what you need on the new columns",
                    i.name, i.definition
                ),
            );
        }
    }
    let indexed = |name: &str| catalog.indexes.iter().any(|i| i.name == name);
    for c in catalog.constraints_on(column) {
        if c.foreign {
            problems.add(
                field.clone(),
                format!(
                    "foreign key \"{}\" of {} references column \"{column}\", which contract {verb}: drop it first",
                    c.name, c.table
                ),
            );
        } else if !indexed(&c.name) && !alone(&c.columns) {
            problems.add(
                field.clone(),
                format!(
                    "constraint \"{}\" ({}) involves column \"{column}\", which contract {verb}: it would be lost. Drop it first, or add what you need on the new columns",
                    c.name, c.definition
                ),
            );
        }
    }
}
