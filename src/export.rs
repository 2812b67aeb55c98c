//! `backfill export`: a plan's schedule as files for the migration tools teams already run.
//! - `sql`: one psql script per phase (`<plan>.expand.sql`, `.dual-write.sql`, `.contract.sql`,
//!   `.rollback.sql`), each statement with the lock it takes, transactional steps in
//!   `BEGIN`/`COMMIT` under `SET LOCAL lock_timeout`, `CONCURRENTLY` statements outside.
//! - `alembic`: two revisions, expand + dual-write and contract, chained by `down_revision`;
//!   the backfill runs out of band with `backfill run` between them. Online they send each
//!   statement as is; offline (`alembic upgrade --sql`) they print the same statements as a
//!   psql script: each `;`-terminated as written, non-transactional steps between the
//!   `COMMIT;` and `BEGIN;` of Alembic's autocommit block, the check before a concurrent index
//!   build as psql's `\gset` and `\if`.
//!
//! The SQL is the planner's, exactly what `backfill run` would execute.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::planner::{Phase, Schedule, Step, StepMode};
use crate::sql::{comment, fnv1a, literal, one_line, QualifiedName};

/// The formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// psql scripts, one per phase.
    Sql,
    /// Alembic revision files.
    Alembic,
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|source| Error::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Writes the files of `plan` into `dir`; returns their paths.
pub fn export(
    plan: &Plan,
    schedule: &Schedule,
    format: Format,
    dir: &Path,
    down_revision: Option<&str>,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    match format {
        Format::Sql => {
            let mut out = Vec::new();
            for (phase, name) in [
                (Some(Phase::Expand), "expand"),
                (Some(Phase::DualWrite), "dual-write"),
                (Some(Phase::Contract), "contract"),
                (None, "rollback"),
            ] {
                let steps = match phase {
                    Some(p) => schedule.phase(p),
                    None => &schedule.rollback,
                };
                let text = sql_script(plan, schedule, name, steps);
                out.push(write(dir, &format!("{}.{name}.sql", plan.name), &text)?);
            }
            Ok(out)
        }
        Format::Alembic => {
            let expand_rev = revision_id(plan, "expand");
            let contract_rev = revision_id(plan, "contract");
            let expand = alembic_revision(
                plan,
                &format!("{}: expand and dual-write", plan.name),
                &expand_rev,
                down_revision,
                &[Phase::Expand, Phase::DualWrite]
                    .iter()
                    .flat_map(|p| schedule.phase(*p).iter())
                    .cloned()
                    .collect::<Vec<_>>(),
                Some(&schedule.rollback),
            );
            let contract = alembic_revision(
                plan,
                &format!("{}: contract", plan.name),
                &contract_rev,
                Some(&expand_rev),
                schedule.phase(Phase::Contract),
                None,
            );
            Ok(vec![
                write(
                    dir,
                    &format!("{expand_rev}_{}_expand.py", python_name(&plan.name)),
                    &expand,
                )?,
                write(
                    dir,
                    &format!("{contract_rev}_{}_contract.py", python_name(&plan.name)),
                    &contract,
                )?,
            ])
        }
    }
}

/// A stable revision id: the same plan text gives the same ids.
pub fn revision_id(plan: &Plan, part: &str) -> String {
    let h = fnv1a(format!("{}\u{0}{part}\u{0}{}", plan.name, plan.source).as_bytes());
    format!("{h:016x}")[..12].to_string()
}

fn python_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn lock_timeout_ms(plan: &Plan) -> u128 {
    plan.backfill.lock_timeout.as_millis().max(1)
}

/// `statement` ended for psql: `;` after it, or on a line of its own when its last line holds
/// `--`, which may open a comment that would swallow a `;` on the same line (a `sql`
/// operation's statement may end in one). The revisions' `_sql` applies the same rule offline.
fn terminated(statement: &str) -> String {
    if statement
        .rsplit('\n')
        .next()
        .is_some_and(|l| l.contains("--"))
    {
        format!("{statement}\n;")
    } else {
        format!("{statement};")
    }
}

/// The query that says whether `index` must be built (again): true unless a valid index of
/// that name is there. An INVALID one, left by an interrupted `CONCURRENTLY` build, is dropped
/// and built again, as `backfill run` does. Its column is the psql variable `bf_build`.
fn build_check(index: &QualifiedName) -> String {
    format!(
        "SELECT NOT EXISTS (SELECT FROM pg_index WHERE indexrelid = to_regclass({}) AND indisvalid) AS bf_build",
        literal(&index.to_string())
    )
}

fn sql_script(plan: &Plan, schedule: &Schedule, phase: &str, steps: &[Step]) -> String {
    let mut out = format!(
        "{}\n-- Run with: psql -v ON_ERROR_STOP=1 -f <this file>\n-- Every statement runs under lock_timeout = {}ms: rerun the file if one gives up waiting for\n-- its lock (steps that already ran are written to be skipped or repeated safely).\n",
        comment(&format!(
            "{phase} of plan {} on {} (generated by backfill from {})",
            plan.name,
            schedule.table,
            plan.file.display()
        )),
        lock_timeout_ms(plan)
    );
    if phase == "dual-write" {
        out.push_str(&format!(
            "{}\n",
            comment(&format!(
                "After this file, move the data with: backfill run {} --phase backfill",
                plan.file.display()
            ))
        ));
    }
    if steps.is_empty() {
        out.push_str("\n-- nothing to do in this phase\n");
    }
    for (i, step) in steps.iter().enumerate() {
        out.push_str(&format!(
            "\n{}\n",
            comment(&format!("step {}: {}", i + 1, step.description))
        ));
        match step.mode {
            StepMode::Transaction => {
                out.push_str(&format!(
                    "BEGIN;\nSET LOCAL lock_timeout = '{}ms';\n",
                    lock_timeout_ms(plan)
                ));
                for s in &step.statements {
                    out.push_str(&format!("-- lock: {}\n{}\n", s.lock, terminated(&s.sql)));
                }
                out.push_str("COMMIT;\n");
            }
            StepMode::ConcurrentIndex { ref index } => {
                // Build unless a valid index is there; an INVALID one, left by an interrupted
                // build, is dropped and built again.
                out.push_str(&format!(
                    "-- outside a transaction\nSET lock_timeout = '{}ms';\n{} \\gset\n\\if :bf_build\nDROP INDEX CONCURRENTLY IF EXISTS {index};\n",
                    lock_timeout_ms(plan),
                    build_check(index)
                ));
                for s in &step.statements {
                    out.push_str(&format!("-- lock: {}\n{}\n", s.lock, terminated(&s.sql)));
                }
                out.push_str("\\endif\nRESET lock_timeout;\n");
            }
            StepMode::NoTransaction => {
                out.push_str(&format!(
                    "-- outside a transaction\nSET lock_timeout = '{}ms';\n",
                    lock_timeout_ms(plan)
                ));
                for s in &step.statements {
                    out.push_str(&format!("-- lock: {}\n{}\n", s.lock, terminated(&s.sql)));
                }
                out.push_str("RESET lock_timeout;\n");
            }
            StepMode::Backfill => {}
        }
    }
    out
}

/// `text` for the inside of a Python `"""docstring"""`: backslashes and quotes escaped, so no
/// text from a plan or the command line can end the docstring.
fn py_doc(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A Python string literal holding `text` (JSON string syntax is valid Python).
fn py(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
}

fn python_steps(plan: &Plan, steps: &[Step], indent: &str) -> String {
    if steps.is_empty() {
        return format!("{indent}pass\n");
    }
    let mut out = String::new();
    for step in steps {
        out.push_str(&format!("{indent}# {}\n", one_line(&step.description)));
        match step.mode {
            StepMode::Transaction => {
                out.push_str(&format!(
                    "{indent}_sql(\"SET LOCAL lock_timeout = '{}ms'\")\n",
                    lock_timeout_ms(plan)
                ));
                for s in &step.statements {
                    out.push_str(&format!(
                        "{indent}# lock: {}\n{indent}_sql({})\n",
                        s.lock,
                        py(&s.sql)
                    ));
                }
            }
            StepMode::ConcurrentIndex { .. } | StepMode::NoTransaction => {
                out.push_str(&format!(
                    "{indent}with op.get_context().autocommit_block():\n{indent}    _sql(\"SET lock_timeout = '{}ms'\")\n",
                    lock_timeout_ms(plan)
                ));
                let inner = indent.to_string() + "    ";
                if let StepMode::ConcurrentIndex { index } = &step.mode {
                    // Build unless a valid index is there; drop an INVALID leftover first.
                    out.push_str(&format!(
                        "{inner}_unless_valid_index({}, [\n{inner}    {},\n",
                        py(&build_check(index)),
                        py(&format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"))
                    ));
                    for s in &step.statements {
                        out.push_str(&format!(
                            "{inner}    # lock: {}\n{inner}    {},\n",
                            s.lock,
                            py(&s.sql)
                        ));
                    }
                    out.push_str(&format!("{inner}])\n"));
                } else {
                    for s in &step.statements {
                        out.push_str(&format!(
                            "{inner}# lock: {}\n{inner}_sql({})\n",
                            s.lock,
                            py(&s.sql)
                        ));
                    }
                }
                out.push_str(&format!("{inner}_sql(\"RESET lock_timeout\")\n"));
            }
            StepMode::Backfill => {}
        }
    }
    out
}

/// The helpers every revision holds. Online `_sql` sends a statement as is: not through
/// `op.execute`, which reads `:name` as a bind parameter, and with `no_parameters`, without
/// which SQLAlchemy hands psycopg2 an empty parameter set and psycopg2 then reads every `%` as
/// a placeholder. Offline (`alembic upgrade --sql`) there is no connection: `_sql` prints the
/// statement through the migration context's output, not `op.execute`, which would also turn
/// tabs into spaces, so psql runs exactly what the online path sends. `_unless_valid_index`
/// runs a concurrent build's statements unless a valid index is there: online it asks, offline
/// psql asks (`\gset`, `\if`).
const PY_HELPERS: &str = r#"def _sql(statement):
    if context.is_offline_mode():
        # Printed as it would be sent; the `;` on a line of its own after a `--`, which may
        # open a comment.
        end = "\n;" if "--" in statement.rsplit("\n", 1)[-1] else ";"
        op.get_context().impl.static_output(statement + end)
    else:
        _send(statement)


def _send(statement):
    # Sent as is: colons are not bind parameters, `%` is not a placeholder.
    return op.get_bind().execution_options(no_parameters=True).exec_driver_sql(statement)


def _unless_valid_index(check, statements):
    # `check` is true unless a valid index of that name is there; an INVALID one, left by an
    # interrupted build, is dropped by the first statement and built again.
    if context.is_offline_mode():
        # psql keeps the answer in :bf_build and runs the statements on it.
        op.get_context().impl.static_output(check + " \\gset\n\\if :bf_build")
        for statement in statements:
            _sql(statement)
        op.get_context().impl.static_output("\\endif")
    elif _send(check).scalar():
        for statement in statements:
            _sql(statement)
"#;

fn alembic_revision(
    plan: &Plan,
    title: &str,
    revision: &str,
    down: Option<&str>,
    upgrade: &[Step],
    downgrade: Option<&[Step]>,
) -> String {
    let down_text = down.map(py).unwrap_or_else(|| "None".to_string());
    let downgrade_body = match downgrade {
        Some(steps) => python_steps(plan, steps, "    "),
        None => format!(
            "    raise RuntimeError({})\n",
            py(&format!(
                "contract of plan {} dropped or replaced the old schema; it cannot be undone. Write a new plan to go back.",
                plan.name
            ))
        ),
    };
    let note = if downgrade.is_some() {
        format!(
            "The data moves out of band, after this revision and before the next one:\n    backfill run {} --phase backfill\nthen `backfill verify {}` before upgrading to the contract revision.",
            plan.file.display(),
            plan.file.display()
        )
    } else {
        "Run it in a later application release than the expand revision, once the backfill is done and\n`backfill verify` finds no row out of sync.".to_string()
    };
    format!(
        "\"\"\"{title}\n\nGenerated by backfill from {file}; do not edit, export again.\n{note}\n\nStatements marked CONCURRENTLY run in an autocommit block; every statement runs under\nlock_timeout = {lt}ms. Offline, `alembic upgrade --sql` prints the same statements as a psql\nscript: run it with psql -v ON_ERROR_STOP=1 -f <file>.\n\nRevision ID: {revision}\nRevises: {down_doc}\n\"\"\"\nfrom alembic import context, op\n\nrevision = {rev_py}\ndown_revision = {down_text}\nbranch_labels = None\ndepends_on = None\n\n\n{PY_HELPERS}\n\ndef upgrade():\n{up}\n\ndef downgrade():\n{downgrade_body}",
        title = py_doc(title),
        note = py_doc(&note),
        file = py_doc(&plan.file.display().to_string()),
        lt = lock_timeout_ms(plan),
        down_doc = py_doc(down.unwrap_or("")),
        rev_py = py(revision),
        up = python_steps(plan, upgrade, "    "),
    )
}

#[cfg(test)]
mod tests {
    use super::terminated;

    #[test]
    fn a_statement_ending_in_a_line_comment_gets_its_semicolon_on_the_next_line() {
        assert_eq!(terminated("SELECT 1"), "SELECT 1;");
        assert_eq!(terminated("SELECT 1 -- why"), "SELECT 1 -- why\n;");
        assert_eq!(
            terminated("SELECT 1 -- why\n  + 2"),
            "SELECT 1 -- why\n  + 2;"
        );
        // A `--` inside a string only moves the `;`, which psql reads the same.
        assert_eq!(terminated("SELECT '--'"), "SELECT '--'\n;");
    }
}
