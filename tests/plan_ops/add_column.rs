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
