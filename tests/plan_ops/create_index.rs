//! `create_index`: its scenarios through every path (contract, rollback, runner, abort).

use super::*;

pub(super) const CREATE_INDEX: Scenario = Scenario {
    name: "create_index",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "create_index"
expression = "lower(email)"
where = "email IS NOT NULL"
name = "t_email_lower_idx"
"#,
    old_writes: "INSERT INTO t (id, email) VALUES (10, 'X@example.com') ON CONFLICT (id) DO NOTHING;",
    new_writes: "",
    transition: ("SELECT indisvalid::text FROM pg_index WHERE indexrelid = 't_email_lower_idx'::regclass", &["true"]),
    result: ("SELECT pg_get_indexdef('t_email_lower_idx'::regclass)", &["CREATE INDEX t_email_lower_idx ON public.t USING btree (lower(email)) WHERE (email IS NOT NULL)"]),
};

scenario_tests! {
    create_index_contract, create_index_rollback, create_index_runner, create_index_abort => CREATE_INDEX;
}
