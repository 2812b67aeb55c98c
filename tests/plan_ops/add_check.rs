//! `add_check`: its scenarios through every path (contract, rollback, runner, abort).

use super::*;

pub(super) const ADD_CHECK: Scenario = Scenario {
    name: "add_check",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "add_check"
name = "t_age_positive"
check = "age >= 0"
fill = { age = "0" }
"#,
    old_writes: "INSERT INTO t (id, age) VALUES (10, -1) ON CONFLICT (id) DO UPDATE SET age = -2; UPDATE t SET age = -3 WHERE id = 2;",
    new_writes: "INSERT INTO t (id, age) VALUES (11, 30);",
    transition: ("SELECT id || ':' || coalesce(age::text, 'NULL') FROM t ORDER BY id", &["1:36", "2:0", "3:NULL", "4:0", "10:0", "11:30"]),
    result: ("SELECT id || ':' || coalesce(age::text, 'NULL') || ':' || (SELECT convalidated::text FROM pg_constraint WHERE conname = 't_age_positive') FROM t ORDER BY id", &["1:36:true", "2:0:true", "3:NULL:true", "4:0:true", "10:0:true", "11:30:true"]),
};

scenario_tests! {
    add_check_contract, add_check_rollback, add_check_runner, add_check_abort => ADD_CHECK;
}
