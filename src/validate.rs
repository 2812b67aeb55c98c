//! Validation of plans against the live database, before the first DDL statement: the table and
//! its key, every column, every type, every referenced table, and every SQL expression compiled
//! on a temporary copy of the table's shape inside a transaction that is rolled back. Nothing is
//! changed in the database and the live table is only read (`ACCESS SHARE`, via `LIKE`).

use tokio_postgres::Client;

use crate::db::catalog::{self, ColumnInfo, TableInfo};
use crate::error::{Error, PlanErrors, Result};
use crate::ops::{Ctx, ExprCheck, Problems};
use crate::plan::{FieldPath, Plan};
use crate::planner::{self, PlannerOptions, Schedule, StepMode};
use crate::sql::Ident;

/// A plan that passed validation, with what was learnt on the way.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The plan.
    pub plan: Plan,
    /// Its table as the catalog describes it.
    pub catalog: TableInfo,
    /// The schedule `run` would execute.
    pub schedule: Schedule,
    /// Things worth knowing that do not stop the plan.
    pub warnings: Vec<String>,
}

/// Validates `plan` against the database behind `client`. Plan problems come back as
/// [`Error::Plan`] (exit code 2); a failing connection as a database error.
pub async fn validate(
    client: &mut Client,
    plan: &Plan,
    options: &PlannerOptions,
) -> Result<Validated> {
    validate_with(client, plan, options, &[]).await
}

/// As [`validate`], with `earlier` columns that plans run before this one in the same
/// invocation add to the table (a plan may use a column an earlier plan of the folder adds):
/// they are checked and compiled as if they existed.
pub async fn validate_with(
    client: &mut Client,
    plan: &Plan,
    options: &PlannerOptions,
    earlier: &[ColumnInfo],
) -> Result<Validated> {
    let mut catalog = table_of(client, plan).await?;
    let real_columns = catalog.columns.len();
    for c in earlier {
        if catalog.column(&c.name).is_none() {
            catalog.columns.push(c.clone());
        }
    }
    let mut problems = planner::check_catalog(plan, &catalog, false);
    check_types(client, plan, &mut problems).await?;
    check_references(client, plan, &catalog, &mut problems).await?;
    if !problems.0.is_empty() {
        return Err(plan.errors(problems).into());
    }
    compile(client, plan, &catalog, real_columns, &mut problems).await?;
    if !problems.0.is_empty() {
        return Err(plan.errors(problems).into());
    }
    let mut warnings = warnings(plan, &catalog);
    check_data(
        client,
        plan,
        &catalog,
        real_columns,
        &mut problems,
        &mut warnings,
    )
    .await?;
    if !problems.0.is_empty() {
        return Err(plan.errors(problems).into());
    }
    let schedule = planner::build(plan, &catalog, options);
    Ok(Validated {
        plan: plan.clone(),
        catalog,
        schedule,
        warnings,
    })
}

/// How long one data check may read before it is given up (with a warning: the contract's
/// `VALIDATE` still checks every row).
pub const DATA_CHECK_TIMEOUT: &str = "60s";

/// Rows that break a constraint the plan adds without a `fill` (orphans of a foreign key,
/// duplicates under a unique constraint or index, rows failing a check, NULLs under NOT
/// NULL): counted read-only, each check bounded by [`DATA_CHECK_TIMEOUT`], and reported with
/// the keys of the first ten, before anything changes. A check over columns that an earlier
/// operation of the plan (or an earlier plan) creates or rewrites is skipped: those rows change
/// before the constraint is validated.
async fn check_data(
    client: &mut Client,
    plan: &Plan,
    catalog: &TableInfo,
    real_columns: usize,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let real: Vec<&str> = catalog.columns[..real_columns.min(catalog.columns.len())]
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let key: Vec<crate::sql::Ident> = catalog.key_idents();
    let alias = catalog.alias().to_string();
    // Rows are named by their key, or by their physical location in a table without one.
    let (describe, order) = if key.is_empty() {
        (
            vec![format!("format('ctid = %L', {alias}.ctid)")],
            format!("{alias}.ctid"),
        )
    } else {
        (
            key.iter()
                .map(|k| {
                    format!(
                        "format('%s = %L', {}, {alias}.{k})",
                        crate::sql::literal(&k.to_string())
                    )
                })
                .collect::<Vec<_>>(),
            crate::sql::qualified_list(&alias, &key),
        )
    };
    let mut changed: Vec<String> = Vec::new();
    for (i, spec) in plan.operations.iter().enumerate() {
        let op = spec.op();
        let base = FieldPath::of("operations").index(i);
        let ctx = Ctx {
            plan: &plan.name,
            table: catalog,
            position: i,
            path: &base,
        };
        for check in op.data_checks(&ctx) {
            let readable = check
                .columns
                .iter()
                .all(|c| real.contains(&c.as_str()) && !changed.contains(c));
            if !readable {
                continue;
            }
            let from = format!("FROM {} AS {alias} WHERE {}", catalog.name, check.condition);
            let sql = format!(
                "SELECT (SELECT count(*) {from})::int8, ARRAY(SELECT concat_ws(', ', {}) {from} ORDER BY {order} LIMIT 10)",
                describe.join(", ")
            );
            let ctx_err = |e: tokio_postgres::Error| {
                Error::db(format!("checking the rows of {}", catalog.name), &e)
            };
            let tx = client.transaction().await.map_err(ctx_err)?;
            tx.execute("SET TRANSACTION READ ONLY", &[])
                .await
                .map_err(ctx_err)?;
            tx.execute(
                "SELECT set_config('statement_timeout', $1, true)",
                &[&DATA_CHECK_TIMEOUT],
            )
            .await
            .map_err(ctx_err)?;
            match tx.query_one(&sql, &[]).await {
                Ok(row) => {
                    let n: i64 = row.get(0);
                    let keys: Vec<String> = row.get(1);
                    if n > 0 {
                        problems.add(
                            base.join(&check.field),
                            format!(
                                "{n} {} of {} {}, for example the {} with {}; the contract's VALIDATE would fail on them",
                                if n == 1 { "row" } else { "rows" },
                                catalog.name,
                                check.what,
                                if keys.len() == 1 { "row" } else { "rows" },
                                keys.join("; ")
                            ),
                        );
                    }
                }
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) => {
                    warnings.push(format!(
                        "{}: the rows of {} were not checked within {DATA_CHECK_TIMEOUT}; the contract's VALIDATE checks them",
                        base.join(&check.field),
                        catalog.name
                    ));
                }
                Err(e) => return Err(ctx_err(e)),
            }
            let _ = tx.rollback().await;
        }
        let effects = op.effects();
        changed.extend(effects.writes.into_iter().map(|u| u.name));
        changed.extend(effects.creates.into_iter().map(|c| c.name));
    }
    Ok(())
}

/// The live catalog of the plan's table; a plan error (located at `table`) when there is no
/// such table.
pub async fn table_of(client: &Client, plan: &Plan) -> Result<TableInfo> {
    match catalog::table_info(client, &plan.table).await? {
        Some(t) => Ok(t),
        None => {
            let mut p = Problems::default();
            p.add(
                FieldPath::of("table"),
                format!("table {} does not exist", plan.table),
            );
            Err(plan.errors(p).into())
        }
    }
}

/// Validates every plan and gathers all plan problems into one error.
pub async fn validate_all(
    client: &mut Client,
    plans: &[Plan],
    options: &PlannerOptions,
) -> Result<Vec<Validated>> {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for plan in plans {
        match validate(client, plan, options).await {
            Ok(v) => ok.push(v),
            Err(Error::Plan(e)) => errors.extend(e.0),
            Err(other) => return Err(other),
        }
    }
    if errors.is_empty() {
        Ok(ok)
    } else {
        Err(PlanErrors(errors).into())
    }
}

async fn check_types(client: &Client, plan: &Plan, problems: &mut Problems) -> Result<()> {
    for (i, spec) in plan.operations.iter().enumerate() {
        for c in spec.op().effects().creates {
            let Some(t) = &c.type_name else { continue };
            if !catalog::type_exists(client, t).await? {
                let field = FieldPath::of("operations").index(i);
                // The type sits next to the name: `type` in the same table.
                let type_field = match c.field.0.split_last() {
                    Some((_, parent)) => FieldPath(parent.to_vec()).key("type"),
                    None => FieldPath::of("type"),
                };
                problems.add(
                    field.join(&type_field),
                    format!("type `{t}` does not exist (column \"{}\")", c.name),
                );
            }
        }
    }
    Ok(())
}

async fn check_references(
    client: &Client,
    plan: &Plan,
    catalog: &TableInfo,
    problems: &mut Problems,
) -> Result<()> {
    for (i, spec) in plan.operations.iter().enumerate() {
        let Some(r) = spec.op().references() else {
            continue;
        };
        let at = FieldPath::of("operations").index(i).join(&r.field);
        let target = if r.table == catalog.name {
            Some(catalog.clone())
        } else {
            catalog::table_info(client, &r.table).await?
        };
        let Some(target) = target else {
            problems.add(
                at.key("table"),
                format!("referenced table {} does not exist", r.table),
            );
            continue;
        };
        let mut missing = false;
        for (j, c) in r.columns.iter().enumerate() {
            if target.column(c).is_none() {
                missing = true;
                problems.add(
                    at.key("columns").index(j),
                    format!(
                        "column \"{c}\" does not exist in referenced table {}",
                        r.table
                    ),
                );
            }
        }
        if missing {
            continue;
        }
        let unique = target.indexes.iter().any(|ix| {
            ix.unique && ix.valid && !ix.partial && {
                let mut a = ix.columns.clone();
                let mut b = r.columns.clone();
                a.sort();
                b.sort();
                a == b
            }
        });
        if !unique {
            problems.add(
                at.key("columns"),
                format!(
                    "no primary key or unique constraint of {} covers exactly ({}): a foreign key must reference one",
                    r.table,
                    r.columns.join(", ")
                ),
            );
        }
    }
    Ok(())
}

/// Compiles every expression of the plan and the generated trigger and backfill against a
/// temporary copy of the table's shape, inside a transaction that is rolled back.
async fn compile(
    client: &mut Client,
    plan: &Plan,
    catalog: &TableInfo,
    real_columns: usize,
    problems: &mut Problems,
) -> Result<()> {
    let ctx_err =
        |e: tokio_postgres::Error| Error::db(format!("validating plan {}", plan.name), &e);
    let tx = client.transaction().await.map_err(ctx_err)?;
    let lock_ms = format!("{}ms", plan.backfill.lock_timeout.as_millis().max(1));
    tx.execute("SELECT set_config('lock_timeout', $1, true)", &[&lock_ms])
        .await
        .map_err(ctx_err)?;
    // The copy has the table's own name (in pg_temp), so expressions that name columns by the
    // table (`users.full_name`) compile here exactly as they will on the table.
    let scratch = catalog.name.in_schema("pg_temp");
    tx.execute(
        &format!(
            "CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP",
            scratch.name, catalog.name
        ),
        &[],
    )
    .await
    .map_err(ctx_err)?;
    let transition = planner::transition_table(plan, catalog);
    // The copy has the table's real columns; earlier plans' and this plan's new ones are added.
    for c in transition.columns.iter().skip(real_columns) {
        tx.execute(
            &format!(
                "ALTER TABLE {scratch} ADD COLUMN {} {}",
                Ident::new(&c.name),
                c.type_name
            ),
            &[],
        )
        .await
        .map_err(ctx_err)?;
    }
    let alias = catalog.alias();
    let from = format!("{scratch} AS {alias}");
    for (i, spec) in plan.operations.iter().enumerate() {
        let base = FieldPath::of("operations").index(i);
        let ctx = Ctx {
            plan: &plan.name,
            table: &transition,
            position: i,
            path: &base,
        };
        for check in spec.op().expressions(&ctx) {
            let (field, sql) = match check {
                ExprCheck::Value {
                    field,
                    expr,
                    type_name,
                } => (
                    field,
                    format!("EXPLAIN SELECT CAST(({expr}) AS {type_name}) FROM {from}"),
                ),
                ExprCheck::Condition { field, expr } => (
                    field,
                    format!("EXPLAIN SELECT 1 FROM {from} WHERE ({expr})"),
                ),
                ExprCheck::Index {
                    field,
                    unique,
                    method,
                    body,
                    predicate,
                } => (
                    field,
                    crate::ops::index_sql(
                        &scratch,
                        None,
                        unique,
                        false,
                        method.as_deref(),
                        &body,
                        predicate.as_deref(),
                    ),
                ),
            };
            if let Err(message) = try_in_savepoint(&tx, &sql).await? {
                problems.add(base.join(&field), message);
            }
        }
    }
    if problems.0.is_empty() {
        compile_generated(&tx, plan, catalog, &scratch, problems).await?;
    }
    tx.rollback().await.map_err(ctx_err)?;
    Ok(())
}

/// The generated SQL itself, compiled on the scratch copy: the trigger function, the trigger,
/// the undo table and the backfill statement. A failure here is reported on the plan.
async fn compile_generated(
    tx: &tokio_postgres::Transaction<'_>,
    plan: &Plan,
    catalog: &TableInfo,
    scratch: &crate::sql::QualifiedName,
    problems: &mut Problems,
) -> Result<()> {
    // The generated SQL itself, on the scratch copy: the trigger function, the trigger, the
    // undo table and the backfill statement. A failure here is reported on the plan.
    let mut scratch_catalog = catalog.clone();
    scratch_catalog.name = scratch.clone();
    let schedule = planner::build(
        plan,
        &scratch_catalog,
        &PlannerOptions {
            state_schema: "pg_temp".to_string(),
        },
    );
    // The copy has the table's columns but none of its constraints (`LIKE` copies NOT NULL
    // only): a rename of one is checked against the catalog by `rename_constraint` instead.
    let rename_constraint = format!("ALTER TABLE {scratch} RENAME CONSTRAINT ");
    let mut statements: Vec<String> = Vec::new();
    for phase in &schedule.phases {
        for step in &phase.steps {
            if step.mode == StepMode::Transaction && phase.phase != planner::Phase::Contract {
                // The scratch copy lives in pg_temp, which exists already, and a temporary
                // table cannot reference a permanent one (foreign keys are checked
                // against the catalog in `check_references`).
                statements.extend(
                    step.statements
                        .iter()
                        .filter(|s| {
                            !s.sql.starts_with("DO $bf_schema")
                                && !s.sql.contains(" FOREIGN KEY (")
                                && !s.sql.starts_with(&rename_constraint)
                        })
                        .map(|s| s.sql.clone()),
                );
            }
        }
    }
    if let Some(b) = &schedule.backfill {
        statements.push(format!("EXPLAIN {}", b.update_sql(None)));
    }
    for sql in statements {
        if let Err(message) = try_in_savepoint(tx, &sql).await? {
            problems.add(
                FieldPath::of("operations"),
                format!("the generated SQL does not compile: {message}"),
            );
            break;
        }
    }
    Ok(())
}

/// Runs `sql` in a savepoint; a database error becomes `Ok(Err(message))` and the transaction
/// goes on.
async fn try_in_savepoint(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
) -> Result<std::result::Result<(), String>> {
    let fail = |e: tokio_postgres::Error| Error::db("validating", &e);
    tx.batch_execute("SAVEPOINT bf_check").await.map_err(fail)?;
    // One statement through the extended protocol: text that holds more than one is refused.
    match tx.execute(sql, &[]).await {
        Ok(_) => {
            tx.batch_execute("RELEASE SAVEPOINT bf_check")
                .await
                .map_err(fail)?;
            Ok(Ok(()))
        }
        Err(e) => {
            let message = match e.as_db_error() {
                Some(db) => match db.hint() {
                    Some(h) => format!("PostgreSQL says: {} (hint: {h})", db.message()),
                    None => format!("PostgreSQL says: {}", db.message()),
                },
                None => return Err(fail(e)),
            };
            tx.batch_execute("ROLLBACK TO SAVEPOINT bf_check")
                .await
                .map_err(fail)?;
            Ok(Err(message))
        }
    }
}

fn warnings(plan: &Plan, catalog: &TableInfo) -> Vec<String> {
    let mut out = Vec::new();
    for spec in &plan.operations {
        let op = spec.op();
        if op.removal() != crate::ops::Removal::Dropped {
            // Kept (rename), carried over (change_type) or refused (split, merge).
            continue;
        }
        for r in op.effects().removes {
            let indexes: Vec<&str> = catalog
                .indexes_on(&r.name)
                .map(|i| i.name.as_str())
                .collect();
            if !indexes.is_empty() {
                out.push(format!(
                    "{}: contract drops column \"{}\" of {} and with it the index(es) {}",
                    plan.file.display(),
                    r.name,
                    catalog.name,
                    indexes.join(", ")
                ));
            }
        }
    }
    out
}
