//! What the connected role must be allowed to do for a plan, checked from the catalog before
//! anything changes (managed PostgreSQL has no superuser, and a run that fails half way for a
//! missing right leaves a half-done change behind).
//!
//! - DDL on the table (expand, contract, rollback): own the table, or be a member of the role
//!   that owns it (PostgreSQL's rule for `ALTER TABLE`, `CREATE INDEX` and `CREATE TRIGGER` on
//!   a table one does not own is the `TRIGGER` right, but every plan with a trigger also adds
//!   or drops columns or constraints).
//! - The backfill and `verify`: `SELECT` and `UPDATE` on the table.
//! - A foreign key: `REFERENCES` on the referenced table.
//! - The state schema (`backfill`): when it exists, `USAGE` and `CREATE` on it and the right to
//!   read and write its tables; when it does not, `CREATE` on the database to create it.
//!
//! Nothing here writes: the checks are `has_*_privilege` and `pg_has_role` calls.

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::planner::{Phase, Schedule};
use crate::sql::{Ident, QualifiedName};

/// Checks that the current role may run every phase of `schedule` still to run
/// (`phases_left`), and use the state schema. Returns every missing right at once.
pub async fn check(
    client: &Client,
    plan: &Plan,
    schedule: &Schedule,
    phases_left: &[Phase],
    state_schema: &Ident,
) -> Result<()> {
    let fail = |e: tokio_postgres::Error| {
        Error::db(format!("checking the rights of plan `{}`", plan.name), &e)
    };
    let table = schedule.table.to_string();
    let row = client
        .query_one(
            "SELECT current_user::text,
                    pg_get_userbyid(c.relowner)::text,
                    pg_has_role(current_user, c.relowner, 'USAGE'),
                    has_table_privilege(c.oid, 'SELECT'),
                    has_table_privilege(c.oid, 'UPDATE'),
                    has_database_privilege(current_database(), 'CREATE'),
                    to_regnamespace(quote_ident($2)) IS NOT NULL,
                    coalesce(has_schema_privilege(to_regnamespace(quote_ident($2)), 'USAGE, CREATE'), false),
                    coalesce(has_table_privilege(to_regclass(quote_ident($2) || '.plans'), 'SELECT, INSERT, UPDATE, DELETE'), true)
               FROM pg_class c WHERE c.oid = $1::text::regclass",
            &[&table, &state_schema.as_str()],
        )
        .await
        .map_err(fail)?;
    let (user, owner): (String, String) = (row.get(0), row.get(1));
    let (member, select, update): (bool, bool, bool) = (row.get(2), row.get(3), row.get(4));
    let (create_db, schema_exists, schema_rights, state_tables): (bool, bool, bool, bool) =
        (row.get(5), row.get(6), row.get(7), row.get(8));
    let ddl = phases_left.iter().any(|p| {
        matches!(p, Phase::Expand | Phase::DualWrite | Phase::Contract)
            && !schedule.phase(*p).is_empty()
    });
    let mut missing = Vec::new();
    if ddl && !member {
        missing.push(format!(
            "it does not own table {} (the owner is \"{owner}\"): changing a table's schema takes its owner; run as \"{owner}\" or a member of it (GRANT \"{owner}\" TO \"{user}\")",
            schedule.table
        ));
    }
    if schedule.backfill.is_some() && phases_left.contains(&Phase::Backfill) && !(select && update)
    {
        missing.push(format!(
            "the backfill reads and updates {}: GRANT SELECT, UPDATE ON {} TO \"{user}\"",
            schedule.table, schedule.table
        ));
    }
    missing.extend(state_problem(
        &user,
        state_schema,
        schema_exists,
        schema_rights && state_tables,
        create_db,
    ));
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

fn state_problem(
    user: &str,
    state_schema: &Ident,
    exists: bool,
    usable: bool,
    create_db: bool,
) -> Option<String> {
    if exists && !usable {
        Some(format!(
            "the state schema {state_schema} exists but this role may not use it: as its owner, GRANT USAGE, CREATE ON SCHEMA {state_schema} TO \"{user}\" and GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {state_schema} TO \"{user}\" (or pick another with --state-schema)"
        ))
    } else if !exists && !create_db {
        Some(format!(
            "the state schema {state_schema} does not exist and this role may not create schemas in this database: GRANT CREATE ON DATABASE to \"{user}\", or have an administrator run CREATE SCHEMA {state_schema} AUTHORIZATION \"{user}\""
        ))
    } else {
        None
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
    let row = client
        .query_one(
            "SELECT current_user::text,
                    n.oid IS NOT NULL,
                    coalesce(has_schema_privilege(n.oid, 'USAGE, CREATE'), false)
                    AND coalesce((SELECT has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE')
                                    FROM pg_class c WHERE c.relnamespace = n.oid AND c.relname = 'plans'), true)
               FROM (SELECT 1) AS one LEFT JOIN pg_namespace n ON n.nspname = $1",
            &[&state_schema.as_str()],
        )
        .await
        .map_err(fail)?;
    let (user, exists, usable): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
    if !exists || usable {
        return Ok(());
    }
    let mut missing = Vec::new();
    for plan in plans {
        let row = client
            .query_opt(
                "SELECT pg_get_userbyid(c.relowner)::text, pg_has_role(current_user, c.relowner, 'USAGE')
                   FROM pg_class c WHERE c.oid = to_regclass($1)",
                &[&plan.table.to_string()],
            )
            .await
            .map_err(fail)?;
        if let Some(row) = row {
            let (owner, member): (String, bool) = (row.get(0), row.get(1));
            if !member {
                missing.push(format!(
                    "it does not own table {} (the owner is \"{owner}\"): changing a table's schema takes its owner; run as \"{owner}\" or a member of it (GRANT \"{owner}\" TO \"{user}\")",
                    plan.table
                ));
            }
        }
    }
    missing.extend(state_problem(&user, state_schema, true, false, false));
    Err(Error::Privileges {
        plan: plans
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join("`, `"),
        role: user,
        missing,
    })
}
