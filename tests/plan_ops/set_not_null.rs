//! `set_not_null`: its scenarios through every path (contract, rollback, runner, abort).

use super::*;

pub(super) const SET_NOT_NULL: Scenario = Scenario {
    name: "set_not_null",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "set_not_null"
column = "email"
fill = "'unknown+' || id || '@invalid'"
"#,
    old_writes: "INSERT INTO t (id, email) VALUES (10, NULL) ON CONFLICT (id) DO UPDATE SET email = NULL; UPDATE t SET email = NULL WHERE id = 2;",
    new_writes: "INSERT INTO t (id, email) VALUES (11, 'new@example.com');",
    transition: ("SELECT id || ':' || email FROM t ORDER BY id", &["1: Ada@Example.com", "2:unknown+2@invalid", "3:unknown+3@invalid", "4:GRACE@example.com ", "10:unknown+10@invalid", "11:new@example.com"]),
    result: ("SELECT id || ':' || email || ':' || (SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'email') FROM t ORDER BY id", &["1: Ada@Example.com:true", "2:unknown+2@invalid:true", "3:unknown+3@invalid:true", "4:GRACE@example.com :true", "10:unknown+10@invalid:true", "11:new@example.com:true"]),
};

scenario_tests! {
    set_not_null_contract, set_not_null_rollback, set_not_null_runner, set_not_null_abort => SET_NOT_NULL;
}
