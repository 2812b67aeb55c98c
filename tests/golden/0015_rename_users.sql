-- Golden file: the schedule of plans/0015_rename_users.toml against tests/golden/catalog/public.users.json.
-- Bless a reviewed change with BACKFILL_BLESS=1 cargo test --test tests golden

-- plan 0015_rename_users on "public"."users" (row estimate 0)

-- ==== phase expand (due from release 3.0.0)

-- step 1: rename the table to "accounts" (the old name stays, as a view, until contract), metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" RENAME TO "accounts";
-- lock: ACCESS SHARE
CREATE VIEW "public"."users" AS SELECT * FROM "public"."accounts";
-- lock: no table lock
GRANT DELETE, INSERT, REFERENCES, SELECT, TRIGGER, TRUNCATE, UPDATE ON "public"."users" TO "postgres";

-- ==== phase dual-write (due from release 3.0.0)

-- (no steps)

-- ==== phase backfill (due from release 3.0.0)

-- (no steps)

-- ==== phase contract (due from release 3.1.0)

-- step 1: switch to the new schema, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
DROP VIEW IF EXISTS "public"."users";

-- ==== rollback

-- step 1: drop the view under the old name and rename the table back, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
DO $bf_rename$ BEGIN IF EXISTS (SELECT FROM pg_class WHERE oid = to_regclass('"public"."users"') AND relkind = 'v') THEN EXECUTE 'DROP VIEW "public"."users"'; END IF; IF to_regclass('"public"."users"') IS NULL AND to_regclass('"public"."accounts"') IS NOT NULL THEN EXECUTE 'ALTER TABLE "public"."accounts" RENAME TO "users"'; END IF; END $bf_rename$;

-- ==== backfill spec: none (the plan moves no data)
