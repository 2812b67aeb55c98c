//! `add_foreign_key`: its scenarios through every path (contract, rollback, runner, abort).

use super::*;

pub(super) const ADD_FOREIGN_KEY: Scenario = Scenario {
    name: "add_foreign_key",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY, name text);
INSERT INTO users VALUES (1, 'ada'), (2, 'alan');
CREATE TABLE t (id bigserial PRIMARY KEY, user_id bigint);
INSERT INTO t (user_id) VALUES (1), (2), (NULL);",
    plan: r#"
table = "t"
[[operations]]
kind = "add_foreign_key"
columns = ["user_id"]
references = { table = "users", columns = ["id"] }
on_delete = "set_null"
"#,
    old_writes: "INSERT INTO t (id, user_id) VALUES (10, 2) ON CONFLICT (id) DO NOTHING;",
    new_writes: "DELETE FROM users WHERE id = 1;",
    transition: ("SELECT id || ':' || coalesce(user_id::text, 'NULL') FROM t ORDER BY id", &["1:NULL", "2:2", "3:NULL", "10:2"]),
    result: ("SELECT id || ':' || coalesce(user_id::text, 'NULL') || ':' || (SELECT convalidated::text FROM pg_constraint WHERE conname = 't_user_id_fkey') FROM t ORDER BY id", &["1:NULL:true", "2:2:true", "3:NULL:true", "10:2:true"]),
};

scenario_tests! {
    add_foreign_key_contract, add_foreign_key_rollback, add_foreign_key_runner, add_foreign_key_abort => ADD_FOREIGN_KEY;
}
