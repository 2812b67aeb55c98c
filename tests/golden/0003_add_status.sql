-- Golden file: the schedule of plans/0003_add_status.toml against tests/golden/catalog/public.users.json.
-- Bless a reviewed change with BACKFILL_BLESS=1 cargo test --test tests golden

-- plan 0003_add_status on "public"."users" (row estimate 0)

-- ==== phase expand (due from release 2.0.0)

-- step 1: add column "status" text; add column "email_domain" text, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" ADD COLUMN IF NOT EXISTS "status" text DEFAULT 'active';
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" ADD COLUMN IF NOT EXISTS "email_domain" text;

-- ==== phase dual-write (due from release 2.0.0)

-- step 1: install the sync trigger "bf_0003_add_status_sync"
-- mode: in one transaction
-- lock: no table lock
DO $bf_schema$ BEGIN IF to_regnamespace('"backfill"') IS NULL THEN EXECUTE 'CREATE SCHEMA "backfill"'; END IF; END $bf_schema$;
-- lock: no table lock
CREATE OR REPLACE FUNCTION "backfill"."bf_0003_add_status_sync"() RETURNS trigger LANGUAGE plpgsql AS $bf_sync$
#variable_conflict use_column
BEGIN
  -- operations[1]: add column "email_domain" text
  IF NEW."email_domain" IS NULL THEN
    -- Not filled (NULL is what the backfill fills, whoever wrote it).
    SELECT CAST((split_part(email, '@', 2)) AS text) INTO NEW."email_domain" FROM (SELECT NEW.*) AS "users";
  ELSIF TG_OP = 'UPDATE' THEN
    IF NEW."email_domain" IS NOT DISTINCT FROM OLD."email_domain" THEN
      -- The writer left the derived column alone: it follows what it is derived from.
      SELECT CASE WHEN _bf_n._bf_v IS DISTINCT FROM _bf_o._bf_v THEN _bf_n._bf_v ELSE NEW."email_domain" END INTO NEW."email_domain"
        FROM (SELECT CAST((split_part(email, '@', 2)) AS text) AS _bf_v FROM (SELECT NEW.*) AS "users") AS _bf_n,
             (SELECT CAST((split_part(email, '@', 2)) AS text) AS _bf_v FROM (SELECT OLD.*) AS "users") AS _bf_o;
    END IF;
  END IF;
  RETURN NEW;
END;
$bf_sync$;
-- lock: SHARE ROW EXCLUSIVE
CREATE TRIGGER "bf_0003_add_status_sync" BEFORE INSERT OR UPDATE ON "public"."users" FOR EACH ROW WHEN (current_setting('backfill.bypass', true) IS DISTINCT FROM '0003_add_status') EXECUTE FUNCTION "backfill"."bf_0003_add_status_sync"();
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" ADD CONSTRAINT "bf_users_status_not_null" CHECK ("status" IS NOT NULL) NOT VALID;

-- ==== phase backfill (due from release 2.0.0)

-- step 1: backfill "email_domain" in chunks of rows by key ("id")
-- mode: backfill, run by the engine in chunks
-- lock: ROW EXCLUSIVE
WITH _bf_changed AS (
  UPDATE "public"."users" AS "users"
     SET "email_domain" = CAST((split_part(email, '@', 2)) AS text)
   WHERE (true)
     AND ("email_domain" IS NULL)
     AND ROW("users"."email_domain") IS DISTINCT FROM ROW(CAST((split_part(email, '@', 2)) AS text))
  RETURNING 1
)
SELECT count(*) FROM _bf_changed;

-- ==== phase contract (due from release 2.1.0)

-- step 1: validate for add column "status" text; scans without blocking writes
-- mode: in one transaction
-- lock: SHARE UPDATE EXCLUSIVE
ALTER TABLE "public"."users" VALIDATE CONSTRAINT "bf_users_status_not_null";

-- step 2: switch to the new schema, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
DROP TRIGGER IF EXISTS "bf_0003_add_status_sync" ON "public"."users";
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" ALTER COLUMN "status" SET NOT NULL;
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" DROP CONSTRAINT IF EXISTS "bf_users_status_not_null";

-- step 3: drop the sync function and the undo data
-- mode: in one transaction
-- lock: no table lock
DROP FUNCTION IF EXISTS "backfill"."bf_0003_add_status_sync"();

-- ==== rollback

-- step 1: drop the trigger, new columns and constraints, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
DROP TRIGGER IF EXISTS "bf_0003_add_status_sync" ON "public"."users";
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" DROP COLUMN IF EXISTS "email_domain";
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" DROP COLUMN IF EXISTS "status";
-- lock: no table lock
DROP FUNCTION IF EXISTS "backfill"."bf_0003_add_status_sync"();

-- ==== backfill spec

-- table: "public"."users"
-- key: "id"
-- targets: "email_domain"
-- bypass: 0003_add_status

-- whole-table update
WITH _bf_changed AS (
  UPDATE "public"."users" AS "users"
     SET "email_domain" = CAST((split_part(email, '@', 2)) AS text)
   WHERE (true)
     AND ("email_domain" IS NULL)
     AND ROW("users"."email_domain") IS DISTINCT FROM ROW(CAST((split_part(email, '@', 2)) AS text))
  RETURNING 1
)
SELECT count(*) FROM _bf_changed;

-- rows out of sync (read-only)
SELECT count(*) FROM "public"."users" AS _bf_t CROSS JOIN LATERAL (SELECT "id", "full_name", "email", "age", "nickname", "score", "legacy_code", "street", "city", "status", CASE WHEN ("email_domain" IS NULL) THEN CAST((split_part(email, '@', 2)) AS text) ELSE "email_domain" END AS "email_domain" FROM (SELECT _bf_t.*) AS "users") AS _bf_n WHERE ROW(_bf_t."email_domain") IS DISTINCT FROM ROW(_bf_n."email_domain");

-- the trigger's bypass, per transaction
SELECT set_config('backfill.bypass', '0003_add_status', true);

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
     SET "email_domain" = CAST((split_part(email, '@', 2)) AS text)
   WHERE (true AND "users"."id" <= (SELECT "id" FROM _bf_last))
     AND ("email_domain" IS NULL)
     AND ROW("users"."email_domain") IS DISTINCT FROM ROW(CAST((split_part(email, '@', 2)) AS text))
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
     SET "email_domain" = CAST((split_part(email, '@', 2)) AS text)
   WHERE ("users"."id" > ($4::text[])[1]::bigint AND "users"."id" <= (SELECT "id" FROM _bf_last))
     AND ("email_domain" IS NULL)
     AND ROW("users"."email_domain") IS DISTINCT FROM ROW(CAST((split_part(email, '@', 2)) AS text))
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
