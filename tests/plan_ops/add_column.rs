//! `add_column`: its scenarios through every path (contract, rollback, runner, abort).

use super::*;

pub(super) const ADD_COLUMN: Scenario = Scenario {
    name: "add_column",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "add_column"
name = "initials"
type = "text"
up = "upper(left(split_part(full_name, ' ', 1), 1) || left(split_part(full_name, ' ', 2), 1))"
"#,
    old_writes:
        "INSERT INTO t (id, full_name) VALUES (10, 'Edsger Dijkstra') ON CONFLICT (id) DO NOTHING;",
    new_writes: "INSERT INTO t (id, full_name, initials) VALUES (11, 'Barbara Liskov', 'BL');",
    transition: (
        "SELECT id || ':' || coalesce(initials, 'NULL') FROM t ORDER BY id",
        &["1:AL", "2:AT", "3:NULL", "4:GH", "10:ED", "11:BL"],
    ),
    result: (
        "SELECT id || ':' || coalesce(initials, 'NULL') FROM t ORDER BY id",
        &["1:AL", "2:AT", "3:NULL", "4:GH", "10:ED", "11:BL"],
    ),
};

pub(super) const ADD_COLUMN_NOT_NULL_DEFAULT: Scenario = Scenario {
    name: "add_column_not_null_default",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "add_column"
name = "status"
type = "text"
default = "'active'"
nullable = false
"#,
    old_writes: "INSERT INTO t (id, full_name) VALUES (10, 'Edsger Dijkstra') ON CONFLICT (id) DO NOTHING;",
    new_writes: "INSERT INTO t (id, full_name, status) VALUES (11, 'Barbara Liskov', 'invited'); UPDATE t SET status = 'blocked' WHERE id = 2;",
    transition: ("SELECT id || ':' || status FROM t ORDER BY id", &["1:active", "2:blocked", "3:active", "4:active", "10:active", "11:invited"]),
    result: ("SELECT id || ':' || status || ':' || (SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'status') FROM t ORDER BY id", &["1:active:true", "2:blocked:true", "3:active:true", "4:active:true", "10:active:true", "11:invited:true"]),
};

scenario_tests! {
    add_column_contract, add_column_rollback, add_column_runner, add_column_abort => ADD_COLUMN;
    add_column_not_null_contract, add_column_not_null_rollback, add_column_not_null_runner, add_column_not_null_abort => ADD_COLUMN_NOT_NULL_DEFAULT;
}

/// `add_column` with `unique`, `check` and `references` in one operation: the unique index
/// built concurrently and attached at contract, the check and the foreign key NOT VALID with
/// the column and validated at contract.
pub(super) const ADD_COLUMN_CONSTRAINTS: Scenario = Scenario {
    name: "add_column_constraints",
    setup: "CREATE TABLE teams (id bigint PRIMARY KEY);
INSERT INTO teams VALUES (1), (2);
CREATE TABLE t (id bigserial PRIMARY KEY, full_name text, email text, age int, score int NOT NULL DEFAULT 0);
INSERT INTO t (full_name, email, age) VALUES ('Ada Lovelace', ' Ada@Example.com', 36), ('Alan Turing', 'alan@example.com', 41), (NULL, NULL, NULL), ('Grace Hopper', 'GRACE@example.com ', -5);",
    plan: r#"
table = "t"
[[operations]]
kind = "add_column"
name = "handle"
type = "text"
up = "lower(replace(coalesce(full_name, 'anon' || id), ' ', '_'))"
unique = true
check = "length(handle) < 40"
[[operations]]
kind = "add_column"
name = "team_id"
type = "bigint"
default = "1"
references = { table = "teams", on_delete = "cascade" }
"#,
    old_writes: "INSERT INTO t (full_name) VALUES ('Old ' || clock_timestamp());",
    new_writes: "UPDATE t SET team_id = 2 WHERE id = 1;",
    transition: (
        "SELECT conname || ' ' || convalidated FROM pg_constraint WHERE conrelid = 't'::regclass ORDER BY 1",
        &["t_handle_check false", "t_pkey true", "t_team_id_fkey false"],
    ),
    result: (
        "SELECT conname || ' ' || pg_get_constraintdef(oid) || ' ' || convalidated FROM pg_constraint WHERE conrelid = 't'::regclass UNION ALL SELECT 'row ' || id || ' ' || handle || ' ' || team_id FROM t WHERE id <= 4 ORDER BY 1",
        &[
            "row 1 ada_lovelace 2",
            "row 2 alan_turing 1",
            "row 3 anon3 1",
            "row 4 grace_hopper 1",
            "t_handle_check CHECK ((length(handle) < 40)) true",
            "t_handle_key UNIQUE (handle) true",
            "t_pkey PRIMARY KEY (id) true",
            "t_team_id_fkey FOREIGN KEY (team_id) REFERENCES teams(id) ON DELETE CASCADE true",
        ],
    ),
};

scenario_tests! {
    add_column_constraints_contract, add_column_constraints_rollback, add_column_constraints_runner, add_column_constraints_abort => ADD_COLUMN_CONSTRAINTS;
}
