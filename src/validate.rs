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
    validate_with(client, plan, options, &Earlier::default(), Rows::Counted).await
}

/// What the plans run before this one in the same invocation do to its table (a plan may use a
/// column an earlier plan of the folder adds, or a table an earlier plan creates or renames to
/// its name): they are checked and compiled as if those plans had run.
#[derive(Debug, Clone, Default)]
pub struct Earlier {
    /// The table as an earlier plan leaves it when it does not exist yet: created by that plan
    /// (no columns but those in `columns`), or another table renamed to this name.
    pub table: Option<TableInfo>,
    /// Columns earlier plans add.
    pub columns: Vec<ColumnInfo>,
}

/// Whether validation counts the rows a new constraint would refuse (a read of the table per
/// check): `run` counts them once, before anything changes, not again under the plan's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Count them.
    Counted,
    /// Skip the count.
    Uncounted,
}

/// As [`validate`], with what `earlier` plans of the same invocation do to the table: they are
/// checked and compiled as if they had run.
pub async fn validate_with(
    client: &mut Client,
    plan: &Plan,
    options: &PlannerOptions,
    earlier: &Earlier,
    rows: Rows,
) -> Result<Validated> {
    let live = catalog::table_info(client, &plan.table).await?;
    let exists = live.is_some();
    let mut catalog = match (live, &earlier.table) {
        (Some(t), _) => t,
        (None, _) if plan.creates_table() => TableInfo::absent(plan.table.clone()),
        (None, Some(t)) => TableInfo {
            name: plan.table.clone(),
            ..t.clone()
        },
        (None, None) => return Err(missing_table(client, plan).await?),
    };
    // Columns the live table has: the validation copy is made from them.
    let real_columns = if exists { catalog.columns.len() } else { 0 };
    for c in &earlier.columns {
        if catalog.column(&c.name).is_none() {
            catalog.columns.push(c.clone());
        }
    }
    let mut problems = Problems::default();
    if plan.creates_table() && !exists && earlier.table.is_some() {
        problems.add(
            FieldPath::of("operations").index(0).key("kind"),
            format!(
                "an earlier plan of this invocation makes {} already (creates it, or renames a table to it)",
                plan.table
            ),
        );
    }
    check_new_relations(client, plan, &catalog, &mut problems).await?;
    check_in_flight(client, plan, options, &mut problems).await?;
    if !problems.0.is_empty() {
        return Err(plan.errors(problems).into());
    }
    let mut problems = planner::check_catalog(plan, &catalog, false);
    check_types(client, plan, &mut problems).await?;
    check_references(client, plan, &catalog, &mut problems).await?;
    if !problems.0.is_empty() {
        return Err(plan.errors(problems).into());
    }
    compile(client, plan, &catalog, exists, real_columns, &mut problems).await?;
    if !problems.0.is_empty() {
        return Err(plan.errors(problems).into());
    }
    let mut warnings = warnings(plan, &catalog);
    if rows == Rows::Counted {
        check_data(
            client,
            plan,
            &catalog,
            real_columns,
            &mut problems,
            &mut warnings,
        )
        .await?;
    }
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
pub const DATA_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

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
            let rows = RowsOf {
                catalog,
                alias: &alias,
                describe: &format!("concat_ws(', ', {})", describe.join(", ")),
                order: &order,
                condition: &check.condition,
            };
            let found = if check.per_row && !key.is_empty() {
                rows.count_paged(client, plan.backfill.max_rows_per_second)
                    .await?
            } else {
                rows.count_once(client).await?
            };
            match found {
                Some((n, keys)) if n > 0 => problems.add(
                    base.join(&check.field),
                    format!(
                        "{n} {} of {} {}, for example the {} with {}; the contract's VALIDATE would fail on them",
                        if n == 1 { "row" } else { "rows" },
                        catalog.name,
                        check.what,
                        if keys.len() == 1 { "row" } else { "rows" },
                        keys.join("; ")
                    ),
                ),
                Some(_) => {}
                None => warnings.push(format!(
                    "{}: the rows of {} were not checked within {}s; the contract's VALIDATE checks them",
                    base.join(&check.field),
                    catalog.name,
                    DATA_CHECK_TIMEOUT.as_secs()
                )),
            }
        }
        let effects = op.effects();
        changed.extend(effects.writes.into_iter().map(|u| u.name));
        changed.extend(effects.creates.into_iter().map(|c| c.name));
    }
    Ok(())
}

/// Rows of a table that meet a data check's condition, counted read-only.
struct RowsOf<'a> {
    catalog: &'a TableInfo,
    /// The table's alias in the condition.
    alias: &'a str,
    /// An SQL expression naming a row (`id = '42'`).
    describe: &'a str,
    /// The order rows are named in (the key, or `ctid`).
    order: &'a str,
    condition: &'a str,
}

/// How many rows, and the first [`crate::verify::SAMPLE`] named; `None` when the check ran out
/// of time.
type Found = Option<(i64, Vec<String>)>;

impl RowsOf<'_> {
    fn fail(&self) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
        move |e| Error::db(format!("checking the rows of {}", self.catalog.name), &e)
    }

    /// A read-only transaction bounded by [`DATA_CHECK_TIMEOUT`].
    async fn read_only<'c>(
        &self,
        client: &'c mut Client,
    ) -> Result<tokio_postgres::Transaction<'c>> {
        let tx = client.transaction().await.map_err(self.fail())?;
        tx.execute("SET TRANSACTION READ ONLY", &[])
            .await
            .map_err(self.fail())?;
        tx.execute(
            "SELECT set_config('statement_timeout', $1, true)",
            &[&format!("{}ms", DATA_CHECK_TIMEOUT.as_millis())],
        )
        .await
        .map_err(self.fail())?;
        Ok(tx)
    }

    /// One statement over the whole table: the first rows by the key (an index scan that stops
    /// at the tenth), and a count only when there are that many.
    async fn count_once(&self, client: &mut Client) -> Result<Found> {
        let from = format!(
            "FROM {} AS {} WHERE {}",
            self.catalog.name, self.alias, self.condition
        );
        let tx = self.read_only(client).await?;
        let first = format!(
            "SELECT {} {from} ORDER BY {} LIMIT {}",
            self.describe,
            self.order,
            crate::verify::SAMPLE
        );
        let result = async {
            let keys: Vec<String> = tx
                .query(&first, &[])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let n = if keys.len() < crate::verify::SAMPLE {
                keys.len() as i64
            } else {
                tx.query_one(&format!("SELECT count(*)::int8 {from}"), &[])
                    .await?
                    .get(0)
            };
            Ok::<_, tokio_postgres::Error>((n, keys))
        }
        .await;
        let _ = tx.rollback().await;
        match result {
            Ok(found) => Ok(Some(found)),
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) => {
                Ok(None)
            }
            Err(e) => Err(self.fail()(e)),
        }
    }

    /// Page by page of the key, each page its own short read-only transaction (no long
    /// snapshot holding back vacuum on a large table), paced by the plan's
    /// `max_rows_per_second` when it has one ([`crate::verify::Pacer`]); [`DATA_CHECK_TIMEOUT`]
    /// bounds the whole walk, as it bounds one statement.
    async fn count_paged(&self, client: &mut Client, max_rows_per_second: u64) -> Result<Found> {
        let keyset = crate::engine::Keyset::of(self.catalog)?;
        let alias = self.alias;
        let page = |lower: bool| {
            format!(
                "WITH _bf_p AS MATERIALIZED (\n  SELECT {text} AS _bf_k, ({cond}) IS TRUE AS _bf_bad, {describe} AS _bf_d, row_number() OVER (ORDER BY {keys}) AS _bf_rn\n    FROM {table} AS {alias}\n   WHERE {lower}\n   ORDER BY {keys}\n   LIMIT $2\n)\nSELECT (SELECT count(*) FROM _bf_p)::int8, (SELECT count(*) FROM _bf_p WHERE _bf_bad)::int8,\n       ARRAY(SELECT _bf_d FROM _bf_p WHERE _bf_bad ORDER BY _bf_rn LIMIT {sample}),\n       (SELECT _bf_k FROM _bf_p ORDER BY _bf_rn DESC LIMIT 1)",
                text = keyset.to_text(alias),
                cond = self.condition,
                describe = self.describe,
                keys = keyset.list(alias),
                table = self.catalog.name,
                lower = if lower {
                    keyset.compare_param(alias, ">", 1)
                } else {
                    "$1::text[] IS NULL".to_string()
                },
                sample = crate::verify::SAMPLE,
            )
        };
        let (first, next) = (page(false), page(true));
        let deadline = std::time::Instant::now() + DATA_CHECK_TIMEOUT;
        let pacer = crate::verify::Pacer::new(max_rows_per_second);
        let batch = pacer.page;
        let (mut n, mut keys): (i64, Vec<String>) = (0, Vec::new());
        let mut cursor: Option<Vec<String>> = None;
        loop {
            pacer.wait().await;
            if std::time::Instant::now() > deadline {
                return Ok(None);
            }
            let tx = self.read_only(client).await?;
            let sql = if cursor.is_some() { &next } else { &first };
            let result = tx.query_one(sql, &[&cursor, &batch]).await;
            let _ = tx.rollback().await;
            let row = match result {
                Ok(row) => row,
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) => {
                    return Ok(None)
                }
                Err(e) => return Err(self.fail()(e)),
            };
            let rows: i64 = row.get(0);
            n += row.get::<_, i64>(1);
            let named: Vec<String> = row.get(2);
            keys.extend(
                named
                    .into_iter()
                    .take(crate::verify::SAMPLE - keys.len().min(crate::verify::SAMPLE)),
            );
            cursor = row.get(3);
            if rows < batch || cursor.is_none() {
                return Ok(Some((n, keys)));
            }
        }
    }
}

/// The live catalog of the plan's table (for a plan that creates its table and finds it
/// missing, [`TableInfo::absent`]); a plan error (located at `table`) when there is no such
/// table.
pub async fn table_of(client: &Client, plan: &Plan) -> Result<TableInfo> {
    match catalog::table_info(client, &plan.table).await? {
        Some(t) => Ok(t),
        None if plan.creates_table() => Ok(TableInfo::absent(plan.table.clone())),
        None => Err(missing_table(client, plan).await?),
    }
}

/// The plan error for a table that does not exist, saying what the name is when it is not a
/// table (a view left by a `rename_table` in flight, most likely).
async fn missing_table(client: &Client, plan: &Plan) -> Result<Error> {
    let kind: Option<String> = client
        .query_opt(
            "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)",
            &[&plan.table.to_string()],
        )
        .await
        .map_err(|e| Error::db(format!("looking for table {}", plan.table), &e))?
        .map(|r| r.get(0));
    let message = match kind.as_deref() {
        None => format!("table {} does not exist", plan.table),
        Some("v") => format!(
            "{} is a view, not a table (a rename_table plan in flight leaves a view under the old name of the table it renames until its contract): write this plan for the table's new name",
            plan.table
        ),
        Some(k) => format!("{} is not a table ({})", plan.table, relkind_name(k)),
    };
    let mut p = Problems::default();
    p.add(FieldPath::of("table"), message);
    Ok(plan.errors(p).into())
}

/// What a `pg_class.relkind` is, in words.
fn relkind_name(kind: &str) -> &'static str {
    match kind {
        "r" => "a table",
        "p" => "a partitioned table",
        "v" => "a view",
        "m" => "a materialized view",
        "i" | "I" => "an index",
        "S" => "a sequence",
        "f" => "a foreign table",
        "c" => "a composite type",
        _ => "a relation",
    }
}

/// Names the plan's operations give to relations they create (the table `create_table` makes,
/// the new name of `rename_table`) must be free in their schema, as a relation and as a type
/// (a table brings a row type of its name).
async fn check_new_relations(
    client: &Client,
    plan: &Plan,
    catalog: &TableInfo,
    problems: &mut Problems,
) -> Result<()> {
    for (i, spec) in plan.operations.iter().enumerate() {
        let base = FieldPath::of("operations").index(i);
        let ctx = Ctx {
            plan: &plan.name,
            table: catalog,
            position: i,
            path: &base,
        };
        for (field, name) in spec.op().new_relations(&ctx) {
            let row = client
                .query_one(
                    "SELECT (SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)),
                            to_regtype($1) IS NOT NULL, to_regnamespace($2) IS NOT NULL",
                    &[&name.to_string(), &name.schema.to_string()],
                )
                .await
                .map_err(|e| Error::db(format!("looking for {name}"), &e))?;
            let (relkind, is_type, schema): (Option<String>, bool, bool) =
                (row.get(0), row.get(1), row.get(2));
            let taken = match (relkind.as_deref(), is_type) {
                (Some(k), _) => Some(relkind_name(k)),
                (None, true) => Some("a type"),
                (None, false) => None,
            };
            if !schema {
                problems.add(
                    FieldPath::of("table"),
                    format!("schema {} does not exist", name.schema),
                );
            } else if let Some(what) = taken {
                problems.add(
                    base.join(&field),
                    format!("{name} already exists ({what}); pick another name"),
                );
            }
        }
    }
    Ok(())
}

/// A plan that renames or drops its table is refused while another plan on the table is in
/// flight (started, contract not done): that plan's later phases name the table, and its
/// trigger, constraints and columns would go with a dropped table.
async fn check_in_flight(
    client: &Client,
    plan: &Plan,
    options: &PlannerOptions,
    problems: &mut Problems,
) -> Result<()> {
    use crate::ops::TableChange;
    let verb = match plan.table_change() {
        Some(TableChange::Rename { .. }) => "rename",
        Some(TableChange::Drop) => "drop",
        _ => return Ok(()),
    };
    let schema = Ident::new(&options.state_schema);
    let others =
        crate::state::plans::in_flight_on(client, &schema, &plan.table, &plan.name).await?;
    for other in others {
        problems.add(
            FieldPath::of("operations").index(0).key("kind"),
            format!(
                "plan `{other}` on {} is in flight (started, its contract not done): it names the table in its later phases; {verb} the table once it is done (or aborted)",
                plan.table,
            ),
        );
    }
    Ok(())
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
    // Types an earlier operation of the plan creates (`create_enum`) exist by then, written
    // bare, quoted, or qualified by their schema (plain or quoted).
    let mut created: Vec<crate::sql::QualifiedName> = Vec::new();
    for (i, spec) in plan.operations.iter().enumerate() {
        for c in spec.op().effects().creates {
            let Some(t) = &c.type_name else { continue };
            let bare = t.trim().trim_end_matches("[]").trim();
            let names = |q: &crate::sql::QualifiedName| {
                [
                    q.name.as_str().to_string(),
                    q.name.to_string(),
                    q.plain(),
                    q.to_string(),
                ]
            };
            if created.iter().any(|q| names(q).iter().any(|n| n == bare)) {
                continue;
            }
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
        created.extend(spec.op().creates_types(&plan.table));
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
    exists: bool,
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
    // What the plan creates for later operations to use (a type), tried first.
    for (i, spec) in plan.operations.iter().enumerate() {
        let base = FieldPath::of("operations").index(i);
        let ctx = Ctx {
            plan: &plan.name,
            table: catalog,
            position: i,
            path: &base,
        };
        for (field, sql) in spec.op().trial(&ctx) {
            if let Err(message) = try_in_savepoint(&tx, &sql, true).await? {
                problems.add(base.join(&field), message);
            }
        }
    }
    if !problems.0.is_empty() {
        return Ok(());
    }
    // The copy has the table's own name (in pg_temp), so expressions that name columns by the
    // table (`users.full_name`) compile here exactly as they will on the table.
    let scratch = catalog.name.in_schema("pg_temp");
    // A table that does not exist yet (the plan, or an earlier one, creates it) starts with
    // no columns; its columns are added below like any new column.
    let like = if exists {
        format!("LIKE {}", catalog.name)
    } else {
        String::new()
    };
    tx.execute(
        &format!("CREATE TEMP TABLE {} ({like}) ON COMMIT DROP", scratch.name),
        &[],
    )
    .await
    .map_err(ctx_err)?;
    let transition = planner::transition_table(plan, catalog);
    // The copy has the table's real columns; earlier plans' and this plan's new ones are added.
    for (i, c) in transition.columns.iter().enumerate().skip(real_columns) {
        let add = |type_name: &str| {
            format!(
                "ALTER TABLE {scratch} ADD COLUMN {} {type_name}",
                Ident::new(&c.name)
            )
        };
        if i < catalog.columns.len() {
            // An earlier plan's column may have a type that plan creates, which does not exist
            // in this transaction: it stands in as `text` (this plan's expressions over it are
            // checked as text).
            if try_in_savepoint(&tx, &add(&c.type_name), true)
                .await?
                .is_err()
            {
                tx.execute(&add("text"), &[]).await.map_err(ctx_err)?;
            }
        } else {
            tx.execute(&add(&c.type_name), &[]).await.map_err(ctx_err)?;
        }
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
            let mut keep = true;
            let (field, sql) = match check {
                ExprCheck::Alter { field, action } => {
                    // Checked, then undone: the copy keeps the shape the generated SQL expects.
                    keep = false;
                    (field, format!("ALTER TABLE {scratch} {action}"))
                }
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
                    include,
                    predicate,
                } => (
                    field,
                    crate::ops::index_sql(
                        &scratch,
                        None,
                        false,
                        crate::ops::IndexShape {
                            unique,
                            method: method.as_deref(),
                            body: &body,
                            include: &include,
                            predicate: predicate.as_deref(),
                        },
                    ),
                ),
            };
            if let Err(message) = try_in_savepoint(&tx, &sql, keep).await? {
                problems.add(base.join(&field), message);
            }
        }
    }
    if problems.0.is_empty() && plan.creates_table() {
        // The generated CREATE TABLE makes the copy again, whole.
        tx.execute(&format!("DROP TABLE {scratch}"), &[])
            .await
            .map_err(ctx_err)?;
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
    // Nor its indexes: a replica identity index is checked against the catalog by its kind.
    let replica_index = format!("ALTER TABLE {scratch} REPLICA IDENTITY USING INDEX ");
    // A `sql` operation's statement names the real tables and is not backfill's to check: it
    // is never run before its phase.
    let unchecked: Vec<&str> = plan
        .operations
        .iter()
        .filter_map(|o| match o {
            crate::ops::OperationSpec::Sql(s) => Some(s.up.trim()),
            _ => None,
        })
        .collect();
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
                                && !s.sql.starts_with(&replica_index)
                                && !unchecked.contains(&s.sql.as_str())
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
        if let Err(message) = try_in_savepoint(tx, &sql, true).await? {
            problems.add(
                FieldPath::of("operations"),
                format!("the generated SQL does not compile: {message}"),
            );
            break;
        }
    }
    Ok(())
}

/// Runs `sql` in a savepoint, kept on success when `keep` (else undone); a database error
/// becomes `Ok(Err(message))` and the transaction goes on.
async fn try_in_savepoint(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
    keep: bool,
) -> Result<std::result::Result<(), String>> {
    let fail = |e: tokio_postgres::Error| Error::db("validating", &e);
    tx.batch_execute("SAVEPOINT bf_check").await.map_err(fail)?;
    // One statement through the extended protocol: text that holds more than one is refused.
    match tx.execute(sql, &[]).await {
        Ok(_) => {
            tx.batch_execute(if keep {
                "RELEASE SAVEPOINT bf_check"
            } else {
                "ROLLBACK TO SAVEPOINT bf_check; RELEASE SAVEPOINT bf_check"
            })
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
    if plan.table_change() == Some(crate::ops::TableChange::Drop) {
        out.push(format!(
            "{}: contract drops table {} (about {} rows) and everything in it",
            plan.file.display(),
            catalog.name,
            catalog.row_estimate.max(0)
        ));
    }
    for (i, spec) in plan.operations.iter().enumerate() {
        let op = spec.op();
        if let Some(notice) = op.notice() {
            out.push(format!(
                "{}: operations[{i}] ({}): {notice}",
                plan.file.display(),
                op.kind()
            ));
        }
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
