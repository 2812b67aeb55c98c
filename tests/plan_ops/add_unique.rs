//! `add_unique`: its scenarios through every path (contract, rollback, runner, abort).

use super::*;

pub(super) const ADD_UNIQUE: Scenario = Scenario {
    name: "add_unique",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "add_unique"
columns = ["email"]
"#,
    old_writes: "INSERT INTO t (id, email) VALUES (10, 'x@example.com') ON CONFLICT (id) DO NOTHING;",
    new_writes: "INSERT INTO t (id, email) VALUES (11, 'y@example.com');",
    transition: ("SELECT id || ':' || coalesce(email, 'NULL') FROM t ORDER BY id", &["1: Ada@Example.com", "2:alan@example.com", "3:NULL", "4:GRACE@example.com ", "10:x@example.com", "11:y@example.com"]),
    result: ("SELECT conname || ':' || contype::text FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'u'", &["t_email_key:u"]),
};

scenario_tests! {
    add_unique_contract, add_unique_rollback, add_unique_runner, add_unique_abort => ADD_UNIQUE;
}
