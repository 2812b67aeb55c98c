//! What the connected role must be allowed to do for a plan, checked from the catalog before
//! anything changes (managed PostgreSQL has no superuser, and a run that fails half way for a
//! missing right leaves a half-done change behind).
//!
//! - DDL on the table (expand, contract, rollback): own the table, or be a member of the role
//!   that owns it (PostgreSQL's rule for `ALTER TABLE`, `CREATE INDEX` and `CREATE TRIGGER` on
//!   a table one does not own is the `TRIGGER` right, but every plan with a trigger also adds
//!   or drops columns or constraints).
//! - The backfill and `verify`: `SELECT` and `UPDATE` on the table.
//! - An index (built by the plan, or carried onto a new column): `CREATE` on the table's schema.
//! - A foreign key: `REFERENCES` on the referenced table.
//! - A column whose type changes carries the foreign keys of other tables that reference it:
//!   own (or be a member of the owner of) each of those tables.
//! - The state schema (`backfill`): when it exists, `USAGE` and `CREATE` on it and the right to
//!   read and write its tables; when it does not, `CREATE` on the database to create it.
//!
//! Nothing here writes: the checks are `has_*_privilege` and `pg_has_role` calls.

use tokio_postgres::Client;

use crate::db::catalog::TableInfo;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::planner::{Phase, Schedule};
use crate::sql::{Ident, QualifiedName};

/// Checks that the current role may run every phase of `schedule` still to run
/// (`phases_left`), and use the state schema. Returns every missing right at once.
pub async fn check(
    client: &Client,
    plan: &Plan,
    catalog: &TableInfo,
    schedule: &Schedule,
    phases_left: &[Phase],
    state_schema: &Ident,
) -> Result<()> {
    let fail = |e: tokio_postgres::Error| {
        Error::db(format!("checking the rights of plan `{}`", plan.name), &e)
    };
    let table = schedule.table.to_string();
    // The table may not exist: a plan that creates it has not run yet (or an earlier plan of
    // the invocation creates it), or a plan that dropped or renamed it is done. Its owner is
    // then whoever creates it, so only the right to create in its schema is needed.
    let row = client
        .query_one(
            "SELECT current_user::text,
                    pg_get_userbyid(c.relowner)::text,
                    coalesce(pg_has_role(current_user, c.relowner, 'USAGE'), true),
                    coalesce(has_table_privilege(c.oid, 'SELECT') AND has_table_privilege(c.oid, 'UPDATE'), true)
               FROM (SELECT 1) AS one LEFT JOIN pg_class c ON c.oid = to_regclass($1)",
            &[&table],
        )
        .await
        .map_err(fail)?;
    let (user, owner): (String, Option<String>) = (row.get(0), row.get(1));
    let (member, select_update): (bool, bool) = (row.get(2), row.get(3));
    let state = state_rights(client, state_schema).await.map_err(fail)?;
    let ddl = phases_left.iter().any(|p| {
        matches!(p, Phase::Expand | Phase::DualWrite | Phase::Contract)
            && !schedule.phase(*p).is_empty()
    });
    let mut missing = Vec::new();
    if let (true, false, Some(owner)) = (ddl, member, &owner) {
        missing.push(not_owner(&schedule.table, owner, &user));
    }
    // A new table, or the view that keeps a renamed table's old name, is made in the table's
    // schema.
    let creates = match plan.table_change() {
        Some(crate::ops::TableChange::Create) => Some("creating table"),
        Some(crate::ops::TableChange::Rename { .. }) => Some("the view that keeps the old name of"),
        _ => None,
    };
    if let (Some(what), true) = (creates, phases_left.contains(&Phase::Expand)) {
        let schema = &schedule.table.schema;
        let may: bool = client
            .query_one(
                "SELECT has_schema_privilege($1, 'CREATE')",
                &[&schema.as_str()],
            )
            .await
            .map_err(fail)?
            .get(0);
        if !may {
            missing.push(format!(
                "{what} {} takes CREATE on schema {schema}: GRANT CREATE ON SCHEMA {schema} TO \"{user}\"",
                schedule.table
            ));
        }
    }
    if schedule.backfill.is_some() && phases_left.contains(&Phase::Backfill) && !select_update {
        missing.push(format!(
            "the backfill reads and updates {}: GRANT SELECT, UPDATE ON {} TO \"{user}\"",
            schedule.table, schedule.table
        ));
    }
    missing.extend(state.problem(state_schema));
    // An index is made in its table's schema, which takes CREATE there (PostgreSQL 15 no
    // longer grants it on `public` to everyone), owner or not.
    let builds: Vec<String> = phases_left
        .iter()
        .flat_map(|p| schedule.phase(*p))
        .filter_map(|s| match &s.mode {
            crate::planner::StepMode::ConcurrentIndex { index } => Some(index.to_string()),
            _ => None,
        })
        .collect();
    if let Some(first) = builds.first() {
        let schema = &schedule.table.schema;
        let may: bool = client
            .query_one(
                "SELECT has_schema_privilege($1, 'CREATE')",
                &[&schema.as_str()],
            )
            .await
            .map_err(fail)?
            .get(0);
        if !may {
            missing.push(format!(
                "building index {first}{} takes CREATE on schema {schema}, where its table is: GRANT CREATE ON SCHEMA {schema} TO \"{user}\"",
                if builds.len() > 1 {
                    format!(" (and {} more)", builds.len() - 1)
                } else {
                    String::new()
                }
            ));
        }
    }
    if phases_left.contains(&Phase::Expand) || phases_left.contains(&Phase::Contract) {
        for spec in &plan.operations {
            if let Some(r) = spec.op().references() {
                if !references_allowed(client, &r.table).await.map_err(fail)? {
                    missing.push(format!(
                        "a foreign key to {} needs the REFERENCES right on it: GRANT REFERENCES ON {} TO \"{user}\"",
                        r.table, r.table
                    ));
                }
            }
        }
        for (table, constraint) in carried_foreign_keys(catalog, plan) {
            let Some((owner, member)) = ownership(client, &table).await.map_err(fail)? else {
                continue;
            };
            if !member {
                missing.push(format!(
                    "the contract moves foreign key \"{constraint}\" of {table} onto the new column, which alters {table}: run as its owner \"{owner}\" or a member of it (GRANT {} TO {})",
                    Ident::new(&owner),
                    Ident::new(&user)
                ));
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Privileges {
        plan: plan.name.clone(),
        role: user,
        missing,
    })
}

/// The owner of `table` and whether the current role is it or a member of it (what `ALTER
/// TABLE` takes); `None` when there is no such table.
async fn ownership(
    client: &Client,
    table: &str,
) -> std::result::Result<Option<(String, bool)>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT pg_get_userbyid(c.relowner)::text, pg_has_role(current_user, c.relowner, 'USAGE')
               FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&table],
        )
        .await?
        .map(|row| (row.get(0), row.get(1))))
}

/// The foreign keys of other tables (table, constraint) that the plan's operations carry onto a
/// new column (see [`crate::ops::Removal::Carried`]).
fn carried_foreign_keys(catalog: &TableInfo, plan: &Plan) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for spec in &plan.operations {
        let op = spec.op();
        if op.removal() != crate::ops::Removal::Carried {
            continue;
        }
        for column in op.effects().removes {
            for c in catalog.constraints_on(&column.name).filter(|c| c.foreign) {
                let pair = (c.table.clone(), c.name.clone());
                if !out.contains(&pair) {
                    out.push(pair);
                }
            }
        }
    }
    out
}

async fn references_allowed(
    client: &Client,
    table: &QualifiedName,
) -> std::result::Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT coalesce(has_table_privilege(to_regclass($1), 'REFERENCES'), true)",
            &[&table.to_string()],
        )
        .await?;
    Ok(row.get(0))
}

/// What the current role may do with the state schema.
struct StateRights {
    user: String,
    database: String,
    exists: bool,
    /// `USAGE` and `CREATE` on the schema, every right `backfill` uses on each of its tables,
    /// `USAGE` on each of its sequences (each right checked on its own: the `has_*_privilege`
    /// functions answer true for a list when any one of the rights is held).
    usable: bool,
    create_db: bool,
}

async fn state_rights(
    client: &Client,
    state_schema: &Ident,
) -> std::result::Result<StateRights, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_user::text, current_database()::text, n.oid IS NOT NULL,
                    coalesce(has_schema_privilege(n.oid, 'USAGE') AND has_schema_privilege(n.oid, 'CREATE')
                      AND NOT EXISTS (SELECT FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind = 'r'
                                         AND NOT (has_table_privilege(c.oid, 'SELECT') AND has_table_privilege(c.oid, 'INSERT')
                                                  AND has_table_privilege(c.oid, 'UPDATE') AND has_table_privilege(c.oid, 'DELETE')))
                      -- CASE: the planner may evaluate conditions in any order, and
                      -- has_sequence_privilege raises an error on other relations.
                      AND NOT EXISTS (SELECT FROM pg_class c WHERE c.relnamespace = n.oid
                                         AND CASE WHEN c.relkind = 'S' THEN NOT has_sequence_privilege(c.oid, 'USAGE') ELSE false END), false),
                    has_database_privilege(current_database(), 'CREATE')
               FROM (SELECT 1) AS one LEFT JOIN pg_namespace n ON n.nspname = $1",
            &[&state_schema.as_str()],
        )
        .await?;
    Ok(StateRights {
        user: row.get(0),
        database: row.get(1),
        exists: row.get(2),
        usable: row.get(3),
        create_db: row.get(4),
    })
}

impl StateRights {
    fn problem(&self, state_schema: &Ident) -> Option<String> {
        let user = Ident::new(&self.user);
        if self.exists && !self.usable {
            Some(format!(
                "the state schema {state_schema} exists but this role may not use it: as its owner, GRANT USAGE, CREATE ON SCHEMA {state_schema} TO {user}; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {state_schema} TO {user}; GRANT USAGE ON ALL SEQUENCES IN SCHEMA {state_schema} TO {user} (or pick another with --state-schema)"
            ))
        } else if !self.exists && !self.create_db {
            Some(format!(
                "the state schema {state_schema} does not exist and this role may not create schemas in this database: GRANT CREATE ON DATABASE {} TO {user}, or have an administrator run CREATE SCHEMA {state_schema} AUTHORIZATION {user}",
                Ident::new(&self.database)
            ))
        } else {
            None
        }
    }
}

/// Whether the current role can read the state schema; when it cannot, the rights it lacks,
/// with those on each plan's table (a plan's record cannot be read to know more). Checked first,
/// since reading a plan's record needs it.
pub async fn check_state_access(
    client: &Client,
    plans: &[Plan],
    state_schema: &Ident,
) -> Result<()> {
    let fail = |e: tokio_postgres::Error| Error::db("checking the rights on the state schema", &e);
    let state = state_rights(client, state_schema).await.map_err(fail)?;
    if !state.exists || state.usable {
        return Ok(());
    }
    let mut missing = Vec::new();
    for plan in plans {
        if let Some((owner, member)) = ownership(client, &plan.table.to_string())
            .await
            .map_err(fail)?
        {
            if !member {
                missing.push(not_owner(&plan.table, &owner, &state.user));
            }
        }
    }
    missing.extend(state.problem(state_schema));
    Err(Error::Privileges {
        plan: plans
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join("`, `"),
        role: state.user,
        missing,
    })
}

fn not_owner(table: &QualifiedName, owner: &str, user: &str) -> String {
    format!(
        "it does not own table {table} (the owner is \"{owner}\"): changing a table's schema takes its owner; run as \"{owner}\" or a member of it (GRANT {} TO {})",
        Ident::new(owner),
        Ident::new(user)
    )
}
