-- Golden file: the schedule of plans/0001_split_full_name.toml against tests/golden/catalog/public.users.json.
-- Bless a reviewed change with BACKFILL_BLESS=1 cargo test --test tests golden

-- plan split_full_name on "public"."users" (row estimate 0)

-- ==== phase expand (due from release 1.4.0)

-- step 1: split column "full_name" into "first_name", "last_name", metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" ADD COLUMN IF NOT EXISTS "first_name" text;
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" ADD COLUMN IF NOT EXISTS "last_name" text;

-- ==== phase dual-write (due from release 1.4.0)

-- step 1: install the sync trigger "bf_split_full_name_sync"
-- mode: in one transaction
-- lock: no table lock
DO $bf_schema$ BEGIN IF to_regnamespace('"backfill"') IS NULL THEN EXECUTE 'CREATE SCHEMA "backfill"'; END IF; END $bf_schema$;
-- lock: no table lock
CREATE OR REPLACE FUNCTION "backfill"."bf_split_full_name_sync"() RETURNS trigger LANGUAGE plpgsql AS $bf_sync$
#variable_conflict use_column
BEGIN
  -- operations[0]: split column "full_name" into "first_name", "last_name"
  IF TG_OP = 'INSERT' THEN
    -- The old release inserts without the new columns; the new release fills them.
    IF NOT ROW(NEW."first_name", NEW."last_name") IS NULL THEN
      SELECT CAST((concat_ws(' ', first_name, last_name)) AS text) INTO NEW."full_name" FROM (SELECT NEW.*) AS "users";
    ELSIF EXISTS (SELECT FROM (SELECT NEW.*) AS "users" WHERE ROW("first_name", "last_name") IS NULL AND ROW("full_name") IS DISTINCT FROM ROW(CAST((concat_ws(' ', first_name, last_name)) AS text))) THEN
      SELECT CAST((split_part(full_name, ' ', 1)) AS text), CAST((split_part(full_name, ' ', 2)) AS text) INTO NEW."first_name", NEW."last_name" FROM (SELECT NEW.*) AS "users";
    END IF;
  ELSIF ROW(NEW."full_name") IS DISTINCT FROM ROW(OLD."full_name") THEN
    -- The old release wrote: derive the new columns, unless the writer set them too.
    IF ROW(NEW."first_name", NEW."last_name") IS NOT DISTINCT FROM ROW(OLD."first_name", OLD."last_name") THEN
      SELECT CAST((split_part(full_name, ' ', 1)) AS text), CAST((split_part(full_name, ' ', 2)) AS text) INTO NEW."first_name", NEW."last_name" FROM (SELECT NEW.*) AS "users";
    END IF;
  ELSIF ROW(NEW."first_name", NEW."last_name") IS DISTINCT FROM ROW(OLD."first_name", OLD."last_name") THEN
    -- The new release wrote: derive the old columns.
    SELECT CAST((concat_ws(' ', first_name, last_name)) AS text) INTO NEW."full_name" FROM (SELECT NEW.*) AS "users";
  ELSIF ROW(NEW."first_name", NEW."last_name") IS NULL THEN
    -- A write of other columns of a row the backfill has not filled yet: fill it now, so
    -- that no constraint on the new columns rejects a write the old schema accepts.
    IF EXISTS (SELECT FROM (SELECT NEW.*) AS "users" WHERE ROW("first_name", "last_name") IS NULL AND ROW("full_name") IS DISTINCT FROM ROW(CAST((concat_ws(' ', first_name, last_name)) AS text))) THEN
      SELECT CAST((split_part(full_name, ' ', 1)) AS text), CAST((split_part(full_name, ' ', 2)) AS text) INTO NEW."first_name", NEW."last_name" FROM (SELECT NEW.*) AS "users";
    END IF;
  END IF;
  RETURN NEW;
END;
$bf_sync$;
-- lock: SHARE ROW EXCLUSIVE
CREATE TRIGGER "bf_split_full_name_sync" BEFORE INSERT OR UPDATE ON "public"."users" FOR EACH ROW WHEN (current_setting('backfill.bypass', true) IS DISTINCT FROM 'split_full_name') EXECUTE FUNCTION "backfill"."bf_split_full_name_sync"();

-- ==== phase backfill (due from release 1.4.0)

-- step 1: backfill "first_name", "last_name" in chunks of rows by key ("id")
-- mode: backfill, run by the engine in chunks
-- lock: ROW EXCLUSIVE
WITH _bf_changed AS (
  UPDATE "public"."users" AS "users"
     SET "first_name" = CAST((split_part(full_name, ' ', 1)) AS text), "last_name" = CAST((split_part(full_name, ' ', 2)) AS text)
   WHERE (true)
     AND (ROW("first_name", "last_name") IS NULL AND ROW("full_name") IS DISTINCT FROM ROW(CAST((concat_ws(' ', first_name, last_name)) AS text)))
     AND ROW("users"."first_name", "users"."last_name") IS DISTINCT FROM ROW(CAST((split_part(full_name, ' ', 1)) AS text), CAST((split_part(full_name, ' ', 2)) AS text))
  RETURNING 1
)
SELECT count(*) FROM _bf_changed;

-- ==== phase contract (due from release 1.5.0)

-- step 1: switch to the new schema, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
DROP TRIGGER IF EXISTS "bf_split_full_name_sync" ON "public"."users";
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" DROP COLUMN IF EXISTS "full_name";

-- step 2: drop the sync function and the undo data
-- mode: in one transaction
-- lock: no table lock
DROP FUNCTION IF EXISTS "backfill"."bf_split_full_name_sync"();

-- ==== rollback

-- step 1: drop the trigger, new columns and constraints, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
DROP TRIGGER IF EXISTS "bf_split_full_name_sync" ON "public"."users";
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" DROP COLUMN IF EXISTS "first_name";
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" DROP COLUMN IF EXISTS "last_name";
-- lock: no table lock
DROP FUNCTION IF EXISTS "backfill"."bf_split_full_name_sync"();

-- ==== backfill spec

-- table: "public"."users"
-- key: "id"
-- targets: "first_name", "last_name"
-- bypass: split_full_name

-- whole-table update
WITH _bf_changed AS (
  UPDATE "public"."users" AS "users"
     SET "first_name" = CAST((split_part(full_name, ' ', 1)) AS text), "last_name" = CAST((split_part(full_name, ' ', 2)) AS text)
   WHERE (true)
     AND (ROW("first_name", "last_name") IS NULL AND ROW("full_name") IS DISTINCT FROM ROW(CAST((concat_ws(' ', first_name, last_name)) AS text)))
     AND ROW("users"."first_name", "users"."last_name") IS DISTINCT FROM ROW(CAST((split_part(full_name, ' ', 1)) AS text), CAST((split_part(full_name, ' ', 2)) AS text))
  RETURNING 1
)
SELECT count(*) FROM _bf_changed;

-- rows out of sync (read-only)
SELECT count(*) FROM "public"."users" AS _bf_t CROSS JOIN LATERAL (SELECT "id", "full_name", "email", "age", "nickname", "score", "legacy_code", "street", "city", CASE WHEN (ROW("first_name", "last_name") IS NULL AND ROW("full_name") IS DISTINCT FROM ROW(CAST((concat_ws(' ', first_name, last_name)) AS text))) THEN CAST((split_part(full_name, ' ', 1)) AS text) ELSE "first_name" END AS "first_name", CASE WHEN (ROW("first_name", "last_name") IS NULL AND ROW("full_name") IS DISTINCT FROM ROW(CAST((concat_ws(' ', first_name, last_name)) AS text))) THEN CAST((split_part(full_name, ' ', 2)) AS text) ELSE "last_name" END AS "last_name" FROM (SELECT _bf_t.*) AS "users") AS _bf_n WHERE ROW(_bf_t."first_name", _bf_t."last_name") IS DISTINCT FROM ROW(_bf_n."first_name", _bf_n."last_name");

-- the trigger's bypass, per transaction
SELECT set_config('backfill.bypass', 'split_full_name', true);

-- engine: a segment's first chunk
WITH _bf_keys AS MATERIALIZED (
  SELECT _bf_t."id" FROM "public"."users" AS _bf_t
   WHERE true AND _bf_t."id" <= ($5::text[])[1]::bigint
   ORDER BY _bf_t."id"
   LIMIT $3
),
_bf_last AS MATERIALIZED (
  SELECT _bf_t."id" FROM _bf_keys AS _bf_t ORDER BY _bf_t."id" DESC LIMIT 1
),
_bf_changed AS (
  UPDATE "public"."users" AS "users"
     SET "first_name" = CAST((split_part(full_name, ' ', 1)) AS text), "last_name" = CAST((split_part(full_name, ' ', 2)) AS text)
   WHERE (true AND "users"."id" <= (SELECT "id" FROM _bf_last))
     AND (ROW("first_name", "last_name") IS NULL AND ROW("full_name") IS DISTINCT FROM ROW(CAST((concat_ws(' ', first_name, last_name)) AS text)))
     AND ROW("users"."first_name", "users"."last_name") IS DISTINCT FROM ROW(CAST((split_part(full_name, ' ', 1)) AS text), CAST((split_part(full_name, ' ', 2)) AS text))
  RETURNING 1
),
_bf_ckpt AS (
  UPDATE "backfill"."segments"
     SET cursor = coalesce((SELECT ARRAY[_bf_t."id"::text] FROM _bf_last AS _bf_t), cursor),
         rows_seen = rows_seen + (SELECT count(*) FROM _bf_keys),
         rows_changed = rows_changed + (SELECT count(*) FROM _bf_changed),
         done = (SELECT count(*) FROM _bf_keys) < $3,
         updated_at = now()
   WHERE plan = $1 AND segment = $2 AND cursor IS NOT DISTINCT FROM $4::text[] AND upper_bound = $5::text[]
  RETURNING cursor, done
)
SELECT (SELECT count(*) FROM _bf_keys) AS seen, (SELECT count(*) FROM _bf_changed) AS changed, _bf_c.cursor, coalesce(_bf_c.done, false) AS done
  FROM (SELECT 1) AS _bf_one LEFT JOIN _bf_ckpt AS _bf_c ON true
 WHERE "backfill"."checkpoint_guard"(_bf_c.done IS NOT NULL, $1, $2);

-- engine: every later chunk
WITH _bf_keys AS MATERIALIZED (
  SELECT _bf_t."id" FROM "public"."users" AS _bf_t
   WHERE _bf_t."id" > ($4::text[])[1]::bigint AND _bf_t."id" <= ($5::text[])[1]::bigint
   ORDER BY _bf_t."id"
   LIMIT $3
),
_bf_last AS MATERIALIZED (
  SELECT _bf_t."id" FROM _bf_keys AS _bf_t ORDER BY _bf_t."id" DESC LIMIT 1
),
_bf_changed AS (
  UPDATE "public"."users" AS "users"
     SET "first_name" = CAST((split_part(full_name, ' ', 1)) AS text), "last_name" = CAST((split_part(full_name, ' ', 2)) AS text)
   WHERE ("users"."id" > ($4::text[])[1]::bigint AND "users"."id" <= (SELECT "id" FROM _bf_last))
     AND (ROW("first_name", "last_name") IS NULL AND ROW("full_name") IS DISTINCT FROM ROW(CAST((concat_ws(' ', first_name, last_name)) AS text)))
     AND ROW("users"."first_name", "users"."last_name") IS DISTINCT FROM ROW(CAST((split_part(full_name, ' ', 1)) AS text), CAST((split_part(full_name, ' ', 2)) AS text))
  RETURNING 1
),
_bf_ckpt AS (
  UPDATE "backfill"."segments"
     SET cursor = coalesce((SELECT ARRAY[_bf_t."id"::text] FROM _bf_last AS _bf_t), cursor),
         rows_seen = rows_seen + (SELECT count(*) FROM _bf_keys),
         rows_changed = rows_changed + (SELECT count(*) FROM _bf_changed),
         done = (SELECT count(*) FROM _bf_keys) < $3,
         updated_at = now()
   WHERE plan = $1 AND segment = $2 AND cursor IS NOT DISTINCT FROM $4::text[] AND upper_bound = $5::text[]
  RETURNING cursor, done
)
SELECT (SELECT count(*) FROM _bf_keys) AS seen, (SELECT count(*) FROM _bf_changed) AS changed, _bf_c.cursor, coalesce(_bf_c.done, false) AS done
  FROM (SELECT 1) AS _bf_one LEFT JOIN _bf_ckpt AS _bf_c ON true
 WHERE "backfill"."checkpoint_guard"(_bf_c.done IS NOT NULL, $1, $2);

-- engine: the keys of a first chunk (naming a bad row)
SELECT ARRAY[_bf_t."id"::text] FROM "public"."users" AS _bf_t
 WHERE $1::text[] IS NULL AND _bf_t."id" <= ($2::text[])[1]::bigint
 ORDER BY _bf_t."id"
 LIMIT $3;

-- engine: the keys of a later chunk (naming a bad row)
SELECT ARRAY[_bf_t."id"::text] FROM "public"."users" AS _bf_t
 WHERE _bf_t."id" > ($1::text[])[1]::bigint AND _bf_t."id" <= ($2::text[])[1]::bigint
 ORDER BY _bf_t."id"
 LIMIT $3;
