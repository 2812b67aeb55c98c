-- Golden file: the schedule of plans/0010_drop_legacy_code.toml against tests/golden/catalog/public.users.json.
-- Bless a reviewed change with BACKFILL_BLESS=1 cargo test --test tests golden

-- plan 0010_drop_legacy_code on "public"."users" (row estimate 0)

-- ==== phase expand (due from release 2.0.0)

-- (no steps)

-- ==== phase dual-write (due from release 2.0.0)

-- step 1: install the sync trigger "bf_0010_drop_legacy_code_sync"
-- mode: in one transaction
-- lock: no table lock
DO $bf_schema$ BEGIN IF to_regnamespace('"backfill"') IS NULL THEN EXECUTE 'CREATE SCHEMA "backfill"'; END IF; END $bf_schema$;
-- lock: no table lock
CREATE OR REPLACE FUNCTION "backfill"."bf_0010_drop_legacy_code_sync"() RETURNS trigger LANGUAGE plpgsql AS $bf_sync$
#variable_conflict use_column
BEGIN
  -- operations[0]: drop column "legacy_code"
  IF TG_OP = 'INSERT' THEN
    SELECT CASE WHEN ("legacy_code" IS NULL) THEN CAST(('none') AS text) ELSE "legacy_code" END INTO NEW."legacy_code" FROM (SELECT NEW.*) AS "users";
  END IF;
  RETURN NEW;
END;
$bf_sync$;
-- lock: SHARE ROW EXCLUSIVE
CREATE TRIGGER "bf_0010_drop_legacy_code_sync" BEFORE INSERT OR UPDATE ON "public"."users" FOR EACH ROW WHEN (current_setting('backfill.bypass', true) IS DISTINCT FROM '0010_drop_legacy_code') EXECUTE FUNCTION "backfill"."bf_0010_drop_legacy_code_sync"();

-- ==== phase backfill (due from release 2.0.0)

-- (no steps)

-- ==== phase contract (due from release 2.1.0)

-- step 1: switch to the new schema, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
DROP TRIGGER IF EXISTS "bf_0010_drop_legacy_code_sync" ON "public"."users";
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" DROP COLUMN IF EXISTS "legacy_code";

-- step 2: drop the sync function and the undo data
-- mode: in one transaction
-- lock: no table lock
DROP FUNCTION IF EXISTS "backfill"."bf_0010_drop_legacy_code_sync"();

-- ==== rollback

-- step 1: drop the trigger, new columns and constraints, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
DROP TRIGGER IF EXISTS "bf_0010_drop_legacy_code_sync" ON "public"."users";
-- lock: no table lock
DROP FUNCTION IF EXISTS "backfill"."bf_0010_drop_legacy_code_sync"();

-- ==== backfill spec: none (the plan moves no data)
