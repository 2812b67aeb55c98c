//! The dual-write phase: the plan's trigger function (one block per operation, in plan order)
//! and its trigger, followed by the NOT VALID constraints.

use super::{ensure_schema, Parts, Step, StepMode, BYPASS_SETTING};
use crate::ops::{Assign, LockLevel, Statement, Sync};
use crate::sql::{comment, dollar_quote, literal, qualified_list, Ident, QualifiedName};

/// The dual-write phase: nothing when no operation needs a trigger; else one transaction that
/// installs the function and the trigger, then adds the NOT VALID constraints, so that a row
/// written from then on passes through the trigger's fill before the check sees it.
pub(super) fn steps(parts: &Parts<'_>) -> Vec<Step> {
    if parts.syncs.is_empty() {
        return Vec::new();
    }
    let (function, trigger) = (&parts.function, &parts.trigger);
    vec![Step {
        description: format!("install the sync trigger {trigger}"),
        mode: StepMode::Transaction,
        statements: vec![
            ensure_schema(&function.schema),
            Statement::new(
                LockLevel::None,
                trigger_function(function, parts.catalog.alias(), &parts.syncs),
            ),
            Statement::new(
                LockLevel::ShareRowExclusive,
                format!(
                    "CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE ON {} FOR EACH ROW WHEN (current_setting({}, true) IS DISTINCT FROM {}) EXECUTE FUNCTION {function}()",
                    parts.catalog.name,
                    literal(BYPASS_SETTING),
                    literal(&parts.plan.name)
                ),
            ),
        ]
        .into_iter()
        .chain(parts.constraints())
        .collect(),
    }]
}

/// `SELECT e1, e2 INTO NEW."a", NEW."b" FROM (SELECT NEW.*) AS "table";`
fn select_into(assign: &[Assign], when: Option<&str>, alias: &Ident) -> String {
    let values: Vec<String> = assign
        .iter()
        .map(|a| match when {
            Some(w) => format!("CASE WHEN ({w}) THEN {} ELSE {} END", a.cast(), a.column),
            None => a.cast(),
        })
        .collect();
    let targets: Vec<String> = assign.iter().map(|a| format!("NEW.{}", a.column)).collect();
    format!(
        "SELECT {} INTO {} FROM (SELECT NEW.*) AS {alias};",
        values.join(", "),
        targets.join(", ")
    )
}

/// One column derived by `up`: filled whenever a write leaves it NULL (what the backfill and
/// `verify` take for "not filled"); on `UPDATE`, unless the writer changed it, recomputed when
/// `up` gives something else than it gave for the row before the write (what it is derived
/// from changed).
fn derived_block(a: &Assign, alias: &Ident) -> String {
    let c = &a.column;
    let up = a.cast();
    format!(
        "  IF NEW.{c} IS NULL THEN\n    -- Not filled (NULL is what the backfill fills, whoever wrote it).\n    SELECT {up} INTO NEW.{c} FROM (SELECT NEW.*) AS {alias};\n  ELSIF TG_OP = 'UPDATE' THEN\n    IF NEW.{c} IS NOT DISTINCT FROM OLD.{c} THEN\n      -- The writer left the derived column alone: it follows what it is derived from.\n      SELECT CASE WHEN _bf_n._bf_v IS DISTINCT FROM _bf_o._bf_v THEN _bf_n._bf_v ELSE NEW.{c} END INTO NEW.{c}\n        FROM (SELECT {up} AS _bf_v FROM (SELECT NEW.*) AS {alias}) AS _bf_n,\n             (SELECT {up} AS _bf_v FROM (SELECT OLD.*) AS {alias}) AS _bf_o;\n    END IF;\n  END IF;\n"
    )
}

/// `ROW(record.c1, record.c2)`.
fn row_of(record: &str, cols: &[Ident]) -> String {
    format!("ROW({})", qualified_list(record, cols))
}

/// The plan's dual-write function: one block per operation, in plan order, each seeing the row
/// as the blocks before it left it.
fn trigger_function(name: &QualifiedName, alias: &Ident, syncs: &[(String, Sync)]) -> String {
    let mut body = String::new();
    for (what, sync) in syncs {
        body.push_str(&format!("  {}\n", comment(what)));
        match sync {
            Sync::TwoWay {
                old, new, up, down, ..
            } => {
                let unfilled = sync.unfilled().unwrap_or_else(|| "false".to_string());
                let up = select_into(up, None, alias);
                let down = if down.is_empty() {
                    "NULL;".to_string()
                } else {
                    select_into(down, None, alias)
                };
                body.push_str(&format!(
                    "  IF TG_OP = 'INSERT' THEN\n    -- The old release inserts without the new columns; the new release fills them.\n    IF NOT {new_null} IS NULL THEN\n      {down}\n    ELSIF EXISTS (SELECT FROM (SELECT NEW.*) AS {alias} WHERE {unfilled}) THEN\n      {up}\n    END IF;\n  ELSIF {old_new} IS DISTINCT FROM {old_old} THEN\n    -- The old release wrote: derive the new columns, unless the writer set them too.\n    IF {new_new} IS NOT DISTINCT FROM {new_old} THEN\n      {up}\n    END IF;\n  ELSIF {new_new} IS DISTINCT FROM {new_old} THEN\n    -- The new release wrote: derive the old columns.\n    {down}\n  ELSIF {new_null} IS NULL THEN\n    -- A write of other columns of a row the backfill has not filled yet: fill it now, so\n    -- that no constraint on the new columns rejects a write the old schema accepts.\n    IF EXISTS (SELECT FROM (SELECT NEW.*) AS {alias} WHERE {unfilled}) THEN\n      {up}\n    END IF;\n  END IF;\n",
                    new_null = row_of("NEW", new),
                    old_new = row_of("NEW", old),
                    old_old = row_of("OLD", old),
                    new_new = row_of("NEW", new),
                    new_old = row_of("OLD", new),
                ));
            }
            Sync::Derived { assign } => {
                for a in assign {
                    body.push_str(&derived_block(a, alias));
                }
            }
            Sync::OnWrite {
                when,
                assign,
                inserts_only,
            } => {
                let stmt = select_into(assign, when.as_deref(), alias);
                if *inserts_only {
                    body.push_str(&format!(
                        "  IF TG_OP = 'INSERT' THEN\n    {stmt}\n  END IF;\n"
                    ));
                } else {
                    body.push_str(&format!("  {stmt}\n"));
                }
            }
        }
    }
    format!(
        "CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS {}",
        // `use_column`: a column named like a PL/pgSQL variable (`new`, `old`, `tg_op`,
        // `found`) is the column inside queries, never an ambiguous reference that would make
        // every write of the application fail.
        dollar_quote(
            "bf_sync",
            &format!("\n#variable_conflict use_column\nBEGIN\n{body}  RETURN NEW;\nEND;\n")
        )
    )
}
