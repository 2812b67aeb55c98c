-- Golden file: the schedule of plans/0006_merge_address.toml against tests/golden/catalog/public.users.json.
-- Bless a reviewed change with BACKFILL_BLESS=1 cargo test --test tests golden

-- plan 0006_merge_address on "public"."users" (row estimate 0)

-- ==== phase expand (no release gate)

-- step 1: merge columns "street", "city" into "address", metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" ADD COLUMN IF NOT EXISTS "address" text;

-- ==== phase dual-write (no release gate)

-- step 1: install the sync trigger "bf_0006_merge_address_sync"
-- mode: in one transaction
-- lock: no table lock
DO $bf_schema$ BEGIN IF to_regnamespace('"backfill"') IS NULL THEN EXECUTE 'CREATE SCHEMA "backfill"'; END IF; END $bf_schema$;
-- lock: no table lock
CREATE OR REPLACE FUNCTION "backfill"."bf_0006_merge_address_sync"() RETURNS trigger LANGUAGE plpgsql AS $bf_sync$
#variable_conflict use_column
BEGIN
  -- operations[0]: merge columns "street", "city" into "address"
  IF TG_OP = 'INSERT' THEN
    -- The old release inserts without the new columns; the new release fills them.
    IF NOT ROW(NEW."address") IS NULL THEN
      SELECT CAST((split_part(address, ', ', 1)) AS text), CAST((split_part(address, ', ', 2)) AS text) INTO NEW."street", NEW."city" FROM (SELECT NEW.*) AS "users";
    ELSIF EXISTS (SELECT FROM (SELECT NEW.*) AS "users" WHERE ROW("address") IS NULL AND ROW("street", "city") IS DISTINCT FROM ROW(CAST((split_part(address, ', ', 1)) AS text), CAST((split_part(address, ', ', 2)) AS text))) THEN
      SELECT CAST((concat_ws(', ', street, city)) AS text) INTO NEW."address" FROM (SELECT NEW.*) AS "users";
    END IF;
  ELSIF ROW(NEW."street", NEW."city") IS DISTINCT FROM ROW(OLD."street", OLD."city") THEN
    -- The old release wrote: derive the new columns, unless the writer set them too.
    IF ROW(NEW."address") IS NOT DISTINCT FROM ROW(OLD."address") THEN
      SELECT CAST((concat_ws(', ', street, city)) AS text) INTO NEW."address" FROM (SELECT NEW.*) AS "users";
    END IF;
  ELSIF ROW(NEW."address") IS DISTINCT FROM ROW(OLD."address") THEN
    -- The new release wrote: derive the old columns.
    SELECT CAST((split_part(address, ', ', 1)) AS text), CAST((split_part(address, ', ', 2)) AS text) INTO NEW."street", NEW."city" FROM (SELECT NEW.*) AS "users";
  ELSIF ROW(NEW."address") IS NULL THEN
    -- A write of other columns of a row the backfill has not filled yet: fill it now, so
    -- that no constraint on the new columns rejects a write the old schema accepts.
    IF EXISTS (SELECT FROM (SELECT NEW.*) AS "users" WHERE ROW("address") IS NULL AND ROW("street", "city") IS DISTINCT FROM ROW(CAST((split_part(address, ', ', 1)) AS text), CAST((split_part(address, ', ', 2)) AS text))) THEN
      SELECT CAST((concat_ws(', ', street, city)) AS text) INTO NEW."address" FROM (SELECT NEW.*) AS "users";
    END IF;
  END IF;
  RETURN NEW;
END;
$bf_sync$;
-- lock: SHARE ROW EXCLUSIVE
CREATE TRIGGER "bf_0006_merge_address_sync" BEFORE INSERT OR UPDATE ON "public"."users" FOR EACH ROW WHEN (current_setting('backfill.bypass', true) IS DISTINCT FROM '0006_merge_address') EXECUTE FUNCTION "backfill"."bf_0006_merge_address_sync"();

-- ==== phase backfill (no release gate)

-- step 1: backfill "address" in chunks of rows by key ("id")
-- mode: backfill, run by the engine in chunks
-- lock: ROW EXCLUSIVE
WITH _bf_changed AS (
  UPDATE "public"."users" AS "users"
     SET "address" = CAST((concat_ws(', ', street, city)) AS text)
   WHERE (true)
     AND (ROW("address") IS NULL AND ROW("street", "city") IS DISTINCT FROM ROW(CAST((split_part(address, ', ', 1)) AS text), CAST((split_part(address, ', ', 2)) AS text)))
     AND ROW("users"."address") IS DISTINCT FROM ROW(CAST((concat_ws(', ', street, city)) AS text))
  RETURNING 1
)
SELECT count(*) FROM _bf_changed;

-- ==== phase contract (no release gate)

-- step 1: switch to the new schema, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
DROP TRIGGER IF EXISTS "bf_0006_merge_address_sync" ON "public"."users";
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" DROP COLUMN IF EXISTS "street";
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" DROP COLUMN IF EXISTS "city";

-- step 2: drop the sync function and the undo data
-- mode: in one transaction
-- lock: no table lock
DROP FUNCTION IF EXISTS "backfill"."bf_0006_merge_address_sync"();

-- ==== rollback

-- step 1: drop the trigger, new columns and constraints, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
DROP TRIGGER IF EXISTS "bf_0006_merge_address_sync" ON "public"."users";
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" DROP COLUMN IF EXISTS "address";
-- lock: no table lock
DROP FUNCTION IF EXISTS "backfill"."bf_0006_merge_address_sync"();

-- ==== backfill spec

-- table: "public"."users"
-- key: "id"
-- targets: "address"
-- bypass: 0006_merge_address

-- whole-table update
WITH _bf_changed AS (
  UPDATE "public"."users" AS "users"
     SET "address" = CAST((concat_ws(', ', street, city)) AS text)
   WHERE (true)
     AND (ROW("address") IS NULL AND ROW("street", "city") IS DISTINCT FROM ROW(CAST((split_part(address, ', ', 1)) AS text), CAST((split_part(address, ', ', 2)) AS text)))
     AND ROW("users"."address") IS DISTINCT FROM ROW(CAST((concat_ws(', ', street, city)) AS text))
  RETURNING 1
)
SELECT count(*) FROM _bf_changed;

-- rows out of sync (read-only)
SELECT count(*) FROM "public"."users" AS _bf_t CROSS JOIN LATERAL (SELECT "id", "full_name", "email", "age", "nickname", "score", "legacy_code", "street", "city", CASE WHEN (ROW("address") IS NULL AND ROW("street", "city") IS DISTINCT FROM ROW(CAST((split_part(address, ', ', 1)) AS text), CAST((split_part(address, ', ', 2)) AS text))) THEN CAST((concat_ws(', ', street, city)) AS text) ELSE "address" END AS "address" FROM (SELECT _bf_t.*) AS "users") AS _bf_n WHERE ROW(_bf_t."address") IS DISTINCT FROM ROW(_bf_n."address");

-- the trigger's bypass, per transaction
SELECT set_config('backfill.bypass', '0006_merge_address', true);

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
     SET "address" = CAST((concat_ws(', ', street, city)) AS text)
   WHERE (true AND "users"."id" <= (SELECT "id" FROM _bf_last))
     AND (ROW("address") IS NULL AND ROW("street", "city") IS DISTINCT FROM ROW(CAST((split_part(address, ', ', 1)) AS text), CAST((split_part(address, ', ', 2)) AS text)))
     AND ROW("users"."address") IS DISTINCT FROM ROW(CAST((concat_ws(', ', street, city)) AS text))
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
     SET "address" = CAST((concat_ws(', ', street, city)) AS text)
   WHERE ("users"."id" > ($4::text[])[1]::bigint AND "users"."id" <= (SELECT "id" FROM _bf_last))
     AND (ROW("address") IS NULL AND ROW("street", "city") IS DISTINCT FROM ROW(CAST((split_part(address, ', ', 1)) AS text), CAST((split_part(address, ', ', 2)) AS text)))
     AND ROW("users"."address") IS DISTINCT FROM ROW(CAST((concat_ws(', ', street, city)) AS text))
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
