//! The operation catalog: one file per kind, one [`Operation`] trait.
//!
//! An operation *describes* its change (statements with their lock level, the dual-write rule,
//! the backfill assignments, the contract and rollback statements) and never touches a
//! connection; the planner assembles the descriptions into a schedule and the runner executes it.
//! Adding a kind means adding a file and one line in `registry!` below.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::db::catalog::{ColumnInfo, ConstraintInfo, TableInfo};
use crate::diagnostics::FieldPath;
use crate::sql::{object_name, Ident, QualifiedName};

pub mod add_check;
pub mod add_column;
pub mod add_enum_value;
pub mod add_foreign_key;
pub mod add_primary_key;
pub mod add_unique;
pub mod carry;
pub mod change_type;
pub mod compose;
pub mod create_enum;
pub mod create_index;
pub mod create_table;
pub mod drop_column;
pub mod drop_constraint;
pub mod drop_index;
pub mod drop_not_null;
pub mod drop_table;
pub mod merge_columns;
pub mod rename_column;
pub mod rename_constraint;
pub mod rename_table;
pub mod set_comment;
pub mod set_default;
pub mod set_not_null;
pub mod set_replica_identity;
pub mod split_column;
pub mod sql;
pub mod update_rows;

/// The table-level lock a statement takes, as documented in PostgreSQL's "Explicit Locking"
/// chapter and on each statement's reference page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LockLevel {
    /// No lock on the user's table (functions, the state schema).
    None,
    /// `ACCESS SHARE`: plain reads; conflicts only with `ACCESS EXCLUSIVE`.
    AccessShare,
    /// `ROW SHARE`: taken on a referenced table by `VALIDATE` of a foreign key.
    RowShare,
    /// `ROW EXCLUSIVE`: `UPDATE`, `INSERT`, `DELETE`; does not block the application.
    RowExclusive,
    /// `SHARE UPDATE EXCLUSIVE`: `CREATE INDEX CONCURRENTLY`, `VALIDATE CONSTRAINT`; reads and
    /// writes continue.
    ShareUpdateExclusive,
    /// `SHARE ROW EXCLUSIVE`: `CREATE TRIGGER`, `ADD FOREIGN KEY`; blocks writes while held
    /// (briefly: these statements do not scan the table).
    ShareRowExclusive,
    /// `ACCESS EXCLUSIVE`: most `ALTER TABLE` forms; blocks everything while held, so these
    /// statements are metadata-only and run under `lock_timeout`.
    AccessExclusive,
}

impl fmt::Display for LockLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockLevel::None => "no table lock",
            LockLevel::AccessShare => "ACCESS SHARE",
            LockLevel::RowShare => "ROW SHARE",
            LockLevel::RowExclusive => "ROW EXCLUSIVE",
            LockLevel::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockLevel::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockLevel::AccessExclusive => "ACCESS EXCLUSIVE",
        })
    }
}

/// One SQL statement with the lock it takes on the plan's table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Statement {
    /// The exact SQL.
    pub sql: String,
    /// The strongest table lock it takes.
    pub lock: LockLevel,
}

impl Statement {
    /// A statement taking `lock`.
    pub fn new(lock: LockLevel, sql: impl Into<String>) -> Self {
        Statement {
            sql: sql.into(),
            lock,
        }
    }
}

/// A `CREATE INDEX CONCURRENTLY`, which cannot run in a transaction. An earlier attempt that
/// failed half way leaves an INVALID index behind; the executor drops it and builds again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexBuild {
    /// The index, in the table's schema.
    pub name: QualifiedName,
    /// The `CREATE ... INDEX CONCURRENTLY` statement.
    pub create: String,
}

/// `column := expr` where `expr` is written over the row's columns by bare name (or qualified by
/// the table's own name), cast to the column's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assign {
    /// The physical column written.
    pub column: Ident,
    /// The expression, as the user wrote it.
    pub expr: String,
    /// The column's type, for the cast.
    pub type_name: String,
}

impl Assign {
    /// `CAST((expr) AS type)`.
    pub fn cast(&self) -> String {
        format!("CAST(({}) AS {})", self.expr, self.type_name)
    }
}

/// What the backfill computes for existing rows: `when` (over the row) picks the rows the
/// assignments apply to; other rows keep their values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// A boolean SQL condition over the row; `None` means every row.
    pub when: Option<String>,
    /// The assignments, evaluated together on the row as it was before this operation.
    pub assign: Vec<Assign>,
}

/// How the dual-write trigger keeps a written row consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sync {
    /// Old and new columns represent the same data: the old release writes `old` (the trigger
    /// derives `new` with `up`), the new release writes `new` (the trigger derives `old` with
    /// `down`).
    TwoWay {
        /// Columns the old release writes.
        old: Vec<Ident>,
        /// Columns the new release writes.
        new: Vec<Ident>,
        /// New columns from old ones.
        up: Vec<Assign>,
        /// Old columns from new ones.
        down: Vec<Assign>,
        /// The new columns are NOT NULL from expand on: NULL there is never a value the new
        /// release wrote, the row is not filled.
        required: bool,
    },
    /// Columns derived from others by `up` (an added column with `up`): filled on `INSERT`
    /// when the writer gives no value, and on `UPDATE`, unless the writer set the column itself,
    /// recomputed when what it is derived from changed (or it is still NULL): the column
    /// follows every write of the old release until contract.
    Derived {
        /// The derived columns.
        assign: Vec<Assign>,
    },
    /// Recompute columns of every written row for which `when` holds.
    OnWrite {
        /// A boolean condition over the written row; `None` means always.
        when: Option<String>,
        /// The assignments.
        assign: Vec<Assign>,
        /// Only on `INSERT` (filling a value the writer did not give).
        inserts_only: bool,
    },
}

impl Sync {
    /// For a two-way sync, the condition (over the row) that picks rows whose new columns have
    /// not been filled: all NULL, while the old columns are not what `down` derives from them
    /// (a new-release write of NULLs is a value, the row is in sync). The trigger fills such a
    /// row on any write of it; the backfill and `verify` use the same test.
    pub fn unfilled(&self) -> Option<String> {
        let Sync::TwoWay {
            new,
            down,
            required,
            ..
        } = self
        else {
            return None;
        };
        let empty = format!("ROW({}) IS NULL", crate::sql::ident_list(new));
        if down.is_empty() || *required {
            return Some(empty);
        }
        let olds: Vec<&Ident> = down.iter().map(|a| &a.column).collect();
        let derived: Vec<String> = down.iter().map(Assign::cast).collect();
        Some(format!(
            "{empty} AND ROW({}) IS DISTINCT FROM ROW({})",
            crate::sql::ident_list(olds),
            derived.join(", ")
        ))
    }

    /// For a two-way sync, the backfill: rows [`Sync::unfilled`] get their new columns from
    /// `up`; every other row (filled by the trigger, or written by the new release) is left as
    /// it is, so a lossy mapping never overwrites what the new release wrote.
    pub fn two_way_forward(&self) -> Option<Forward> {
        let Sync::TwoWay { up, .. } = self else {
            return None;
        };
        Some(Forward {
            when: self.unfilled(),
            assign: up.clone(),
        })
    }
}

/// The statements of the contract phase, in two groups: validations run first, each in its own
/// transaction and without blocking writes; the switch runs as one short transaction that moves
/// the application onto the new schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contract {
    /// `VALIDATE CONSTRAINT` and the like: scan the table under a weak lock.
    pub validate: Vec<Statement>,
    /// Metadata-only changes applied together under `lock_timeout`.
    pub switch: Vec<Statement>,
    /// Indexes dropped with `DROP INDEX CONCURRENTLY` after the switch, each outside a
    /// transaction.
    pub drop_indexes: Vec<QualifiedName>,
}

/// How to undo an operation's expand. The planner runs, for all operations of a plan: the
/// `indexes` dropped, the `rebuild` built, then `statements` and `put_back` in one transaction
/// (with the trigger dropped), the values changed in place restored, each `validate` in its own
/// transaction, and `after_validate` in a last one. Every statement must be harmless when run
/// twice, or when expand never ran: `abort` may be run again after a failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollback {
    /// Indexes to drop with `DROP INDEX CONCURRENTLY IF EXISTS`.
    pub indexes: Vec<QualifiedName>,
    /// Metadata-only statements run together in one transaction: what expand added, dropped.
    pub statements: Vec<Statement>,
    /// Indexes built again concurrently (a dropped primary key's or unique constraint's), before
    /// `put_back` attaches them; an existing valid index of that name is kept.
    pub rebuild: Vec<IndexBuild>,
    /// What expand changed or removed, put back in the same transaction as `statements`
    /// (metadata only): a default, a comment, a constraint's name, a dropped constraint
    /// (`NOT VALID`, or `USING INDEX` a rebuilt index).
    pub put_back: Vec<Statement>,
    /// `VALIDATE CONSTRAINT` of what `put_back` added `NOT VALID` and must be valid again, each in
    /// its own transaction (a scan under `SHARE UPDATE EXCLUSIVE`: reads and writes go on).
    pub validate: Vec<Statement>,
    /// Metadata-only statements that need `validate` done (`SET NOT NULL` proven by a validated
    /// check), in one last transaction.
    pub after_validate: Vec<Statement>,
}

/// `statements` run only while `condition` (an SQL boolean, read when the step runs) holds, in
/// one `DO` block taking `lock`: for rollback statements without an `IF [NOT] EXISTS` form (a
/// constraint added back, renamed back), so that a rollback run twice, or run when expand never
/// did, changes nothing it should not. Each statement is passed to `EXECUTE` as a [`literal`];
/// the block is in a dollar quote whose tag does not occur in it.
///
/// [`literal`]: crate::sql::literal
pub fn guarded(lock: LockLevel, condition: &str, statements: &[String]) -> Statement {
    let body: String = statements
        .iter()
        .map(|s| format!(" EXECUTE {};", crate::sql::literal(s)))
        .collect();
    Statement::new(
        lock,
        format!(
            "DO {}",
            crate::sql::dollar_quote(
                "bf_guard",
                &format!(" BEGIN IF {condition} THEN{body} END IF; END ")
            )
        ),
    )
}

/// An SQL condition: the context's table has a constraint named `name` (and, with `and`, one
/// for which that condition over `pg_constraint` holds), for [`guarded`].
pub fn constraint_exists(ctx: &Ctx<'_>, name: &str, and: Option<&str>) -> String {
    format!(
        "EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE conrelid = to_regclass({}) AND conname = {}{})",
        crate::sql::literal(&ctx.qualified().to_string()),
        crate::sql::literal(name),
        and.map(|a| format!(" AND {a}")).unwrap_or_default()
    )
}

/// An SQL condition: the context's table has column `column` (and, with `and`, one for which
/// that condition over `pg_attribute` holds), for [`guarded`].
pub fn column_exists(ctx: &Ctx<'_>, column: &str, and: Option<&str>) -> String {
    format!(
        "EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass({}) AND attname = {} AND NOT attisdropped{})",
        crate::sql::literal(&ctx.qualified().to_string()),
        crate::sql::literal(column),
        and.map(|a| format!(" AND {a}")).unwrap_or_default()
    )
}

/// Constraint `name` of the context's table; when it has none, a problem in `field` that names
/// the table and says where a foreign key of another table of that name would be.
pub fn own_constraint<'a>(
    ctx: &Ctx<'a>,
    field: &FieldPath,
    name: &str,
    problems: &mut Problems,
) -> Option<&'a ConstraintInfo> {
    let found = ctx.table.constraint(name);
    if found.is_none() {
        let elsewhere = ctx
            .table
            .constraints
            .iter()
            .find(|c| c.foreign && c.name == name)
            .map(|c| {
                format!(
                    " (a foreign key of {} that references it has that name: write a plan for that table)",
                    c.table
                )
            })
            .unwrap_or_default();
        problems.add(
            field.clone(),
            format!(
                "{} has no constraint named {}{elsewhere}",
                ctx.qualified(),
                Ident::new(name)
            ),
        );
    }
    found
}

/// A constraint of the table an operation drops or renames, by name (see
/// [`Operation::constraint_uses`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstraintUse {
    /// The constraint's name.
    pub name: String,
    /// Where the plan names it.
    pub field: FieldPath,
    /// Whether the operation drops it (a rename does not).
    pub drops: bool,
}

/// A column an operation creates during expand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewColumn {
    /// Its name.
    pub name: String,
    /// Its type, when the plan says it; `None` when it copies the type of an existing column.
    pub type_name: Option<String>,
    /// The column whose type it copies.
    pub type_of: Option<String>,
    /// Whether the application may write it directly in the transition (false for the hidden
    /// column of `change_type`).
    pub visible: bool,
    /// Where the plan names it.
    pub field: FieldPath,
}

/// A column an operation names, and what it does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnUse {
    /// The column's name.
    pub name: String,
    /// Where the plan names it.
    pub field: FieldPath,
}

/// What an operation does to columns, for conflict checks and for building the schema that
/// exists during the transition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// Columns added during expand.
    pub creates: Vec<NewColumn>,
    /// Columns dropped (or replaced) at contract.
    pub removes: Vec<ColumnUse>,
    /// Existing columns whose values the backfill rewrites in place.
    pub writes: Vec<ColumnUse>,
    /// Columns that must exist and that are not written.
    pub reads: Vec<ColumnUse>,
}

/// An SQL fragment of the plan to compile against the live schema during validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprCheck {
    /// A value expression, cast to a type.
    Value {
        /// Where the plan has it.
        field: FieldPath,
        /// The expression.
        expr: String,
        /// The type it must cast to.
        type_name: String,
    },
    /// A boolean condition.
    Condition {
        /// Where the plan has it.
        field: FieldPath,
        /// The condition.
        expr: String,
    },
    /// `ALTER TABLE <the validation copy> <action>`, run and undone at once: what the action
    /// adds (a default, an identity, a key, a check) is checked by PostgreSQL itself on the
    /// copy's columns.
    Alter {
        /// Where the plan has what the action is made of.
        field: FieldPath,
        /// The action, as it follows `ALTER TABLE <table>`.
        action: String,
    },
    /// An index, built (not concurrently, without a name) on the validation copy of the table
    /// by [`index_sql`]: method, expression and predicate are checked together.
    Index {
        /// Where the plan has what the index is built from.
        field: FieldPath,
        /// `UNIQUE`.
        unique: bool,
        /// `USING` method.
        method: Option<String>,
        /// The column list or expression, as it goes between parentheses.
        body: String,
        /// `INCLUDE` columns.
        include: Vec<String>,
        /// `WHERE` predicate.
        predicate: Option<String>,
    },
}

/// Rows that break a constraint the plan adds, found at `validate` before anything changes
/// (a constraint with a `fill` repairs them instead, and has no such check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataCheck {
    /// Where the plan has the constraint.
    pub field: FieldPath,
    /// What is wrong with such a row, for the message (`have no row in "orders"`).
    pub what: String,
    /// A condition over the row (aliased by the table's own name) that picks them.
    pub condition: String,
    /// Columns the condition reads: a check on columns an earlier plan creates is skipped.
    pub columns: Vec<String>,
    /// The condition reads only the row (and other tables by index): it can be counted page by
    /// page of the key. Duplicates need the whole table at once.
    pub per_row: bool,
}

impl DataCheck {
    /// Rows where `column` is NULL, which NOT NULL would refuse; `why` ends the message's
    /// description of them.
    pub fn nulls(field: FieldPath, column: &str, why: &str) -> DataCheck {
        let col = Ident::new(column);
        DataCheck {
            field,
            what: format!("have {col} NULL{why}"),
            condition: format!("{col} IS NULL"),
            columns: vec![column.to_string()],
            per_row: true,
        }
    }

    /// Rows whose `columns` (all non-NULL) are shared with another row: what a unique
    /// constraint or index over them would refuse.
    pub fn duplicates(
        ctx: &Ctx<'_>,
        field: FieldPath,
        columns: &[String],
        predicate: Option<&str>,
    ) -> DataCheck {
        let table = ctx.qualified();
        let alias = ctx.table.alias();
        let list = column_list(columns);
        let mut not_null: Vec<String> = columns
            .iter()
            .map(|c| format!("{} IS NOT NULL", Ident::new(c)))
            .collect();
        not_null.extend(predicate.map(|p| format!("({p})")));
        let row = crate::sql::qualified_list(
            &alias.to_string(),
            &columns.iter().map(Ident::new).collect::<Vec<_>>(),
        );
        DataCheck {
            field,
            what: format!("share their ({list}) with another row"),
            // The subquery reads the table under its own name, as plan expressions do.
            condition: format!(
                "{}ROW({row}) IN (SELECT {list} FROM {table} AS {alias} WHERE {} GROUP BY {list} HAVING count(*) > 1)",
                predicate.map(|p| format!("({p}) AND ")).unwrap_or_default(),
                not_null.join(" AND ")
            ),
            columns: columns.to_vec(),
            per_row: false,
        }
    }
}

/// The referenced side of a foreign key, for validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Where the plan has it.
    pub field: FieldPath,
    /// The referenced table.
    pub table: QualifiedName,
    /// Its columns.
    pub columns: Vec<String>,
    /// The referencing columns of the plan's table.
    pub local_columns: Vec<String>,
}

pub use crate::diagnostics::{Problem, Problems};

/// A `{ column = "expression" }` table of a plan, in column order.
pub type ExprMap = BTreeMap<String, String>;

/// What an operation may look at while it describes its SQL.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The plan's name (part of generated object names).
    pub plan: &'a str,
    /// The live catalog of the plan's table.
    pub table: &'a TableInfo,
    /// The operation's place in the plan (0-based), for generated names and paths.
    pub position: usize,
    /// The path of this operation in the plan file (`operations[2]`).
    pub path: &'a FieldPath,
}

impl<'a> Ctx<'a> {
    /// The table as written in SQL.
    pub fn qualified(&self) -> &'a QualifiedName {
        &self.table.name
    }

    /// A column of the table as it was before the plan.
    pub fn column(&self, name: &str) -> Option<&'a ColumnInfo> {
        self.table.column(name)
    }

    /// The catalog type of an existing column, or `text` if it is missing (validation reports
    /// missing columns before any SQL is built from them).
    pub fn type_of(&self, name: &str) -> String {
        self.column(name)
            .map(|c| c.type_name.clone())
            .unwrap_or_else(|| "text".to_string())
    }

    /// `ALTER TABLE <table> <action>`.
    pub fn alter(&self, action: impl fmt::Display) -> String {
        format!("ALTER TABLE {} {}", self.table.name, action)
    }

    /// The name of a constraint `backfill` adds for this operation.
    pub fn constraint_name(&self, what: &str) -> String {
        object_name(&[self.table.name.name.as_str(), what])
    }
}

/// What becomes at contract of the indexes, constraints and dependent objects of a column an
/// operation removes (see [`Operation::removal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The column is replaced by new ones that cannot carry them (split, merge): any index,
    /// constraint or dependent object on it is refused at `validate`, named.
    Replaced,
    /// The column is dropped: what involves it alone goes with it; what also involves other
    /// columns, foreign keys of other tables and dependent objects are refused.
    Dropped,
    /// Everything is carried over to the new column (`change_type`); dependent objects that
    /// PostgreSQL would not let the old column be dropped with are refused.
    Carried,
    /// The physical column stays (`rename_column` renames it): nothing is lost.
    Kept,
}

/// What an operation does to its table as a whole (see [`Operation::table_change`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableChange {
    /// The plan's table does not exist yet: expand creates it (`create_table`).
    Create,
    /// Expand renames the table (in its schema) and leaves a view under the old name
    /// (`rename_table`).
    Rename {
        /// The new name.
        to: String,
    },
    /// Contract drops the table (`drop_table`).
    Drop,
}

impl TableChange {
    /// Kinds that may follow `create_table` in its plan: they add to the new, empty table what
    /// `create_table` itself does not describe.
    pub const AFTER_CREATE: &'static [&'static str] = &["create_index", "add_foreign_key"];
}

/// The trait every operation kind implements. All methods but `kind`, `summary` and `effects`
/// have defaults for kinds that have nothing to say in a phase.
pub trait Operation: fmt::Debug {
    /// The kind as written in plans (`split_column`).
    fn kind(&self) -> &'static str;

    /// One line for humans: `split "full_name" into "first_name", "last_name"`.
    fn summary(&self) -> String;

    /// Checks that need no database (empty names, contradictory fields).
    fn check(&self, problems: &mut Problems) {
        let _ = problems;
    }

    /// The columns this operation creates, drops, rewrites and reads.
    fn effects(&self) -> Effects;

    /// What it does to the table as a whole: create, rename or drop it. Such an operation
    /// takes a plan of its own (`create_table` may be followed by indexes and foreign keys of
    /// the new table).
    fn table_change(&self) -> Option<TableChange> {
        None
    }

    /// Relations this operation creates under names of its choosing (a table, a view), with
    /// the field that names each: validation refuses a name that is taken.
    fn new_relations(&self, ctx: &Ctx<'_>) -> Vec<(FieldPath, QualifiedName)> {
        let _ = ctx;
        Vec::new()
    }

    /// `(from, to)` for an operation that renames a column at contract.
    fn renames_column(&self) -> Option<(&str, &str)> {
        None
    }

    /// Whether what it does stays on the columns it reads (an index, a constraint, NOT NULL, a
    /// default, a comment), rather than only reading their values.
    fn attaches(&self) -> bool {
        false
    }

    /// What becomes of what the columns it removes carry.
    fn removal(&self) -> Removal {
        Removal::Replaced
    }

    /// Checks against the live catalog beyond column existence (which the planner checks from
    /// [`Operation::effects`]).
    fn check_catalog(&self, ctx: &Ctx<'_>, problems: &mut Problems) {
        let _ = (ctx, problems);
    }

    /// SQL fragments to compile against the live schema.
    fn expressions(&self, ctx: &Ctx<'_>) -> Vec<ExprCheck> {
        let _ = ctx;
        Vec::new()
    }

    /// Rows that break what this operation adds, counted at `validate`.
    fn data_checks(&self, ctx: &Ctx<'_>) -> Vec<DataCheck> {
        let _ = ctx;
        Vec::new()
    }

    /// Constraints of the table this operation drops or renames (both names of a rename): two
    /// operations of a plan may not name the same one, and a plan that moves data may not drop
    /// the constraint its backfill walks the table by.
    fn constraint_uses(&self) -> Vec<ConstraintUse> {
        Vec::new()
    }

    /// A table this operation references (foreign keys), checked against the catalog.
    fn references(&self) -> Option<Reference> {
        None
    }

    /// Expand: additive, metadata-only statements run together in one short transaction.
    fn expand(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        let _ = ctx;
        Vec::new()
    }

    /// NOT VALID constraints. They are enforced for every row written from the moment they
    /// exist, so the planner adds them right after the dual-write trigger, in the same
    /// transaction: a row the running release writes passes through the trigger's fill before
    /// the check sees it (with no trigger, at the end of expand).
    fn constraints(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        let _ = ctx;
        Vec::new()
    }

    /// Expand: statements PostgreSQL runs only outside a transaction block (`ALTER TYPE ... ADD
    /// VALUE`), each its own step after the expand transaction. They must be safe to run again.
    fn standalone(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        let _ = ctx;
        Vec::new()
    }

    /// Statements `validate` tries first in its rolled-back transaction, each with the field
    /// its error is reported on: they only create new objects (a type), which later operations
    /// of the plan may then use. Nothing here may lock an existing table.
    fn trial(&self, ctx: &Ctx<'_>) -> Vec<(FieldPath, String)> {
        let _ = ctx;
        Vec::new()
    }

    /// Types this operation creates, for the plan's table (a column of a later operation may
    /// have one of them).
    fn creates_types(&self, table: &QualifiedName) -> Vec<QualifiedName> {
        let _ = table;
        Vec::new()
    }

    /// Something `validate`, `plan` and `run` say about this operation before anything runs.
    fn notice(&self) -> Option<String> {
        None
    }

    /// Expand: indexes built concurrently, outside any transaction.
    fn indexes(&self, ctx: &Ctx<'_>) -> Vec<IndexBuild> {
        let _ = ctx;
        Vec::new()
    }

    /// Dual-write: how the trigger keeps written rows consistent.
    fn sync(&self, ctx: &Ctx<'_>) -> Option<Sync> {
        let _ = ctx;
        None
    }

    /// Backfill: what existing rows need.
    fn forward(&self, ctx: &Ctx<'_>) -> Option<Forward> {
        let _ = ctx;
        None
    }

    /// Contract: validations and the switch to the new schema.
    fn contract(&self, ctx: &Ctx<'_>) -> Contract {
        let _ = ctx;
        Contract::default()
    }

    /// Rollback: undo this operation's expand.
    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        let _ = ctx;
        Rollback::default()
    }
}

macro_rules! registry {
    ($($kind:ident => $module:ident :: $ty:ident),+ $(,)?) => {
        /// One operation of a plan, as written in `[[operations]]` with its `kind`.
        #[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum OperationSpec {
            $(
                #[doc = concat!("`kind = \"", stringify!($kind), "\"`")]
                $ty($module::$ty),
            )+
            /// An operation taken into another one of the plan ([`compose`]); never written.
            #[serde(skip)]
            Composed(compose::Composed),
        }

        impl OperationSpec {
            /// The operation behind the spec.
            pub fn op(&self) -> &dyn Operation {
                match self {
                    $(OperationSpec::$ty(op) => op,)+
                    OperationSpec::Composed(op) => op,
                }
            }
        }

        /// Every kind, as written in plans.
        pub const KINDS: &[&str] = &[$(stringify!($kind)),+];
    };
}

registry! {
    add_column => add_column::AddColumn,
    rename_column => rename_column::RenameColumn,
    change_type => change_type::ChangeType,
    split_column => split_column::SplitColumn,
    merge_columns => merge_columns::MergeColumns,
    set_not_null => set_not_null::SetNotNull,
    add_check => add_check::AddCheck,
    add_foreign_key => add_foreign_key::AddForeignKey,
    add_unique => add_unique::AddUnique,
    create_index => create_index::CreateIndex,
    drop_column => drop_column::DropColumn,
    drop_index => drop_index::DropIndex,
    update_rows => update_rows::UpdateRows,
    create_enum => create_enum::CreateEnum,
    add_enum_value => add_enum_value::AddEnumValue,
    sql => sql::Sql,
    add_primary_key => add_primary_key::AddPrimaryKey,
    drop_constraint => drop_constraint::DropConstraint,
    rename_constraint => rename_constraint::RenameConstraint,
    drop_not_null => drop_not_null::DropNotNull,
    set_default => set_default::SetDefault,
    set_comment => set_comment::SetComment,
    set_replica_identity => set_replica_identity::SetReplicaIdentity,
    create_table => create_table::CreateTable,
    rename_table => rename_table::RenameTable,
    drop_table => drop_table::DropTable,
}

/// The three statements that put NOT NULL on a column without a long `ACCESS EXCLUSIVE` lock:
/// a `CHECK (col IS NOT NULL) NOT VALID` in expand (instant; enforced for new writes), its
/// `VALIDATE` in contract (scans under `SHARE UPDATE EXCLUSIVE`, writes go on), then
/// `SET NOT NULL`, which PostgreSQL 12+ proves from the validated check without a scan, and the
/// check is dropped.
#[derive(Debug, Clone)]
pub struct NotNullViaCheck {
    /// The check constraint's name.
    pub constraint: Ident,
    /// The column.
    pub column: Ident,
}

impl NotNullViaCheck {
    /// For `column` of the context's table.
    pub fn new(ctx: &Ctx<'_>, column: &str) -> Self {
        NotNullViaCheck {
            constraint: Ident::new(ctx.constraint_name(&format!("{column}_not_null"))),
            column: Ident::new(column),
        }
    }

    /// The NOT VALID check (see [`Operation::constraints`]).
    pub fn expand(&self, ctx: &Ctx<'_>) -> Statement {
        Statement::new(
            LockLevel::AccessExclusive,
            ctx.alter(format_args!(
                "ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID",
                self.constraint, self.column
            )),
        )
    }

    /// Contract, validation group.
    pub fn validate(&self, ctx: &Ctx<'_>) -> Statement {
        validate_constraint(ctx, &self.constraint)
    }

    /// Contract, switch group.
    pub fn switch(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        vec![
            Statement::new(
                LockLevel::AccessExclusive,
                ctx.alter(format_args!("ALTER COLUMN {} SET NOT NULL", self.column)),
            ),
            self.drop(ctx),
        ]
    }

    /// Rollback (and the end of contract): drop the check.
    pub fn drop(&self, ctx: &Ctx<'_>) -> Statement {
        Statement::new(
            LockLevel::AccessExclusive,
            ctx.alter(format_args!(
                "DROP CONSTRAINT IF EXISTS {}",
                self.constraint
            )),
        )
    }
}

/// `ADD COLUMN IF NOT EXISTS` for a new nullable column without a default (metadata only).
pub fn add_column(ctx: &Ctx<'_>, name: &str, type_name: &str) -> Statement {
    Statement::new(
        LockLevel::AccessExclusive,
        ctx.alter(format_args!(
            "ADD COLUMN IF NOT EXISTS {} {}",
            Ident::new(name),
            type_name
        )),
    )
}

/// `DROP COLUMN IF EXISTS` (metadata only: the space is reclaimed by later updates and vacuum).
pub fn drop_column(ctx: &Ctx<'_>, name: &str) -> Statement {
    Statement::new(
        LockLevel::AccessExclusive,
        ctx.alter(format_args!("DROP COLUMN IF EXISTS {}", Ident::new(name))),
    )
}

/// `ALTER TABLE ... VALIDATE CONSTRAINT`: scans under `SHARE UPDATE EXCLUSIVE`, so reads and
/// writes go on (a foreign key also takes `ROW SHARE` on the referenced table).
pub fn validate_constraint(ctx: &Ctx<'_>, name: &Ident) -> Statement {
    Statement::new(
        LockLevel::ShareUpdateExclusive,
        ctx.alter(format_args!("VALIDATE CONSTRAINT {name}")),
    )
}

/// `ALTER TABLE ... DROP CONSTRAINT IF EXISTS` (metadata only).
pub fn drop_constraint(ctx: &Ctx<'_>, name: &Ident) -> Statement {
    Statement::new(
        LockLevel::AccessExclusive,
        ctx.alter(format_args!("DROP CONSTRAINT IF EXISTS {name}")),
    )
}

/// `"a", "b"` for a list of column names.
pub fn column_list(columns: &[String]) -> String {
    crate::sql::ident_list(&columns.iter().map(Ident::new).collect::<Vec<_>>())
}

/// Checks that `columns` is a non-empty list of non-empty names without repeats.
pub fn check_column_list(problems: &mut Problems, field: FieldPath, columns: &[String]) {
    if columns.is_empty() {
        problems.add(field.clone(), "must name at least one column");
    }
    for (i, c) in columns.iter().enumerate() {
        problems.require_text(field.index(i), c);
        if columns[..i].contains(c) {
            problems.add(field.index(i), format!("column \"{c}\" is named twice"));
        }
    }
}

/// `ColumnUse`s for a list of names under `field`.
pub fn uses(field: &FieldPath, columns: &[String]) -> Vec<ColumnUse> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| ColumnUse {
            name: c.clone(),
            field: field.index(i),
        })
        .collect()
}

/// One `ColumnUse`.
pub fn use_of(field: FieldPath, column: &str) -> ColumnUse {
    ColumnUse {
        name: column.to_string(),
        field,
    }
}

/// The name of an index `backfill` creates when the plan gives none.
pub fn default_index_name(table: &QualifiedName, columns: &[String], suffix: &str) -> String {
    let mut parts: Vec<&str> = vec![table.name.as_str()];
    parts.extend(columns.iter().map(String::as_str));
    parts.push(suffix);
    crate::sql::fit_identifier(&parts.join("_"))
}

/// What an index is built from, as it goes into `CREATE INDEX`.
#[derive(Debug, Clone, Copy)]
pub struct IndexShape<'a> {
    /// `UNIQUE`.
    pub unique: bool,
    /// `USING` method, one of the names the kind checks.
    pub method: Option<&'a str>,
    /// The column list or expression, as it goes between parentheses.
    pub body: &'a str,
    /// `INCLUDE` columns.
    pub include: &'a [String],
    /// `WHERE` predicate.
    pub predicate: Option<&'a str>,
}

/// Builds `CREATE [UNIQUE] INDEX CONCURRENTLY` and its rollback for an index in the table's
/// schema.
pub fn concurrent_index(ctx: &Ctx<'_>, name: &str, shape: IndexShape<'_>) -> IndexBuild {
    let qualified = ctx.qualified().sibling(name);
    IndexBuild {
        create: index_sql(ctx.qualified(), Some(&qualified.name), true, shape),
        name: qualified,
    }
}

/// `CREATE [UNIQUE] INDEX [CONCURRENTLY] [name] ON table [USING method] (body)
/// [INCLUDE (columns)] [WHERE (p)]`. Body and predicate are the plan's expressions, compiled
/// at `validate`.
pub fn index_sql(
    table: &QualifiedName,
    name: Option<&Ident>,
    concurrently: bool,
    shape: IndexShape<'_>,
) -> String {
    let IndexShape {
        unique,
        method,
        body,
        include,
        predicate,
    } = shape;
    let mut sql = format!(
        "CREATE {}INDEX {}{}ON {table}",
        if unique { "UNIQUE " } else { "" },
        if concurrently { "CONCURRENTLY " } else { "" },
        name.map(|n| format!("{n} ")).unwrap_or_default(),
    );
    if let Some(m) = method {
        sql.push_str(&format!(" USING {m}"));
    }
    sql.push_str(&format!(" ({body})"));
    if !include.is_empty() {
        sql.push_str(&format!(" INCLUDE ({})", column_list(include)));
    }
    if let Some(p) = predicate {
        sql.push_str(&format!(" WHERE ({p})"));
    }
    sql
}

/// Where operations on the table as a whole may stand: `create_table` first, followed only by
/// [`TableChange::AFTER_CREATE`] kinds; `rename_table` and `drop_table` alone.
fn check_table_changes(operations: &[OperationSpec], problems: &mut Problems) {
    let kind_at = |i: usize| FieldPath::of("operations").index(i).key("kind");
    let creates = operations
        .first()
        .is_some_and(|o| o.op().table_change() == Some(TableChange::Create));
    for (i, spec) in operations.iter().enumerate() {
        let op = spec.op();
        match op.table_change() {
            Some(TableChange::Create) if i > 0 => problems.add(
                kind_at(i),
                "create_table must be the first operation of its plan: the table does not exist before it",
            ),
            Some(TableChange::Rename { .. } | TableChange::Drop) if operations.len() > 1 => problems.add(
                kind_at(i),
                format!(
                    "{} changes the table as a whole: give it a plan of its own",
                    op.kind()
                ),
            ),
            None if creates && !TableChange::AFTER_CREATE.contains(&op.kind()) => problems.add(
                kind_at(i),
                format!(
                    "after create_table, a plan takes only {} on the new table: it is empty and only the new release writes it, so give columns, keys and checks to create_table itself, or change the table in a later plan",
                    TableChange::AFTER_CREATE.join(" and ")
                ),
            ),
            _ => {}
        }
    }
}

/// Checks across operations that need no database: a column created twice, dropped twice, or
/// changed by one operation while another drops or replaces it.
pub fn check_conflicts(operations: &[OperationSpec], problems: &mut Problems) {
    let effects: Vec<Effects> = operations.iter().map(|o| o.op().effects()).collect();
    let at = |i: usize, f: &FieldPath| FieldPath::of("operations").index(i).join(f);
    check_table_changes(operations, problems);
    let mut created: BTreeMap<&str, usize> = BTreeMap::new();
    let mut removed: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, e) in effects.iter().enumerate() {
        for c in &e.creates {
            // The first operation keeps the column: later ones are reported against it.
            if let Some(&first) = created.get(c.name.as_str()) {
                problems.add(
                    at(i, &c.field),
                    format!("conflicting operations: column \"{}\" is already created by operations[{first}]", c.name),
                );
            } else {
                created.insert(&c.name, i);
            }
        }
        for r in &e.removes {
            if let Some(&first) = removed.get(r.name.as_str()) {
                problems.add(
                    at(i, &r.field),
                    format!("conflicting operations: column \"{}\" is already dropped or replaced by operations[{first}]", r.name),
                );
            } else {
                removed.insert(&r.name, i);
            }
        }
    }
    let mut named: BTreeMap<String, usize> = BTreeMap::new();
    for (i, spec) in operations.iter().enumerate() {
        for u in spec.op().constraint_uses() {
            match named.get(&u.name) {
                Some(&first) if first != i => problems.add(
                    at(i, &u.field),
                    format!("conflicting operations: constraint \"{}\" is already dropped or renamed by operations[{first}]; put one of them in a later plan", u.name),
                ),
                Some(_) => {}
                None => {
                    named.insert(u.name, i);
                }
            }
        }
    }
    for (i, e) in effects.iter().enumerate() {
        let used = e
            .reads
            .iter()
            .map(|u| (u, "uses"))
            .chain(e.writes.iter().map(|u| (u, "changes")))
            .chain(e.removes.iter().map(|u| (u, "drops")));
        for (u, verb) in used {
            if let Some(&j) = removed.get(u.name.as_str()) {
                // Two operations dropping one column are reported once, above. A column that
                // is renamed at contract keeps what is on it.
                let kept = operations[j].op().removal() == Removal::Kept
                    && (verb == "uses"
                        || matches!(&operations[i], OperationSpec::SetNotNull(n) if n.copy.is_some()));
                if j != i && verb != "drops" && !kept {
                    problems.add(
                        at(i, &u.field),
                        format!("conflicting operations: this operation {verb} column \"{}\", which operations[{j}] drops or replaces; put one of them in a later plan", u.name),
                    );
                }
            }
            if let Some(&j) = created.get(u.name.as_str()) {
                let creator = effects[j].creates.iter().find(|c| c.name == u.name);
                let derived = creator.is_some_and(|c| c.type_name.is_none() || !c.visible);
                if j == i {
                    // An operation naming a column it creates itself (rename to the same name)
                    // is reported by the operation's own check.
                } else if j > i {
                    problems.add(
                        at(i, &u.field),
                        format!("column \"{}\" is created by a later operation (operations[{j}]); order the operations so it exists first", u.name),
                    );
                } else if derived && (verb != "uses" || operations[i].op().attaches()) {
                    if let Some((from, to)) = operations[j].op().renames_column() {
                        problems.add(
                            at(i, &u.field),
                            format!("column \"{to}\" is a copy of \"{from}\" until contract (operations[{j}], rename_column), when the copy is dropped and \"{from}\" is renamed with what is on it: name \"{from}\" here"),
                        );
                        continue;
                    }
                    problems.add(
                        at(i, &u.field),
                        format!("conflicting operations: column \"{}\" is the new side of operations[{j}] ({}) until contract; change it in a later plan", u.name, operations[j].op().kind()),
                    );
                }
            }
        }
    }
}
