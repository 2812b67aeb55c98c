-- Golden file: the schedule of plans/0002_normalize_emails.toml against tests/golden/catalog/public.users.json.
-- Bless a reviewed change with BACKFILL_BLESS=1 cargo test --test tests golden

-- plan 0002_normalize_emails on "public"."users" (row estimate 0)

-- ==== phase expand (no release gate)

-- step 1: create the undo table and its trigger, metadata only
-- mode: in one transaction
-- lock: no table lock
DO $bf_schema$ BEGIN IF to_regnamespace('"backfill"') IS NULL THEN EXECUTE 'CREATE SCHEMA "backfill"'; END IF; END $bf_schema$;
-- lock: no table lock
DO $bf_undo_type$ BEGIN IF to_regtype('"backfill"."bf_0002_normalize_emails_undo_row"') IS NULL THEN EXECUTE 'CREATE TYPE "backfill"."bf_0002_normalize_emails_undo_row" AS ("id" bigint, "before_email" text, "after_email" text)'; END IF; END $bf_undo_type$;
-- lock: no table lock
CREATE TABLE IF NOT EXISTS "backfill"."bf_0002_normalize_emails_undo" ("n" bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "rows" "backfill"."bf_0002_normalize_emails_undo_row"[] NOT NULL);
-- lock: no table lock
CREATE OR REPLACE FUNCTION "backfill"."bf_0002_normalize_emails_undo_save"() RETURNS trigger LANGUAGE plpgsql AS $bf_undo_save$
BEGIN
  INSERT INTO "backfill"."bf_0002_normalize_emails_undo" ("rows")
  SELECT array_agg(ROW(_bf_old."id", _bf_old."email", _bf_new."email")::"backfill"."bf_0002_normalize_emails_undo_row")
    FROM _bf_old JOIN _bf_new ON ROW(_bf_old."id") = ROW(_bf_new."id")
  HAVING count(*) > 0;
  RETURN NULL;
END;
$bf_undo_save$;
-- lock: SHARE ROW EXCLUSIVE
CREATE TRIGGER "bf_0002_normalize_emails_undo_save" AFTER UPDATE ON "public"."users" REFERENCING OLD TABLE AS _bf_old NEW TABLE AS _bf_new FOR EACH STATEMENT WHEN (current_setting('backfill.bypass', true) = '0002_normalize_emails') EXECUTE FUNCTION "backfill"."bf_0002_normalize_emails_undo_save"();

-- step 2: build index "users_email_key" concurrently
-- mode: outside a transaction, concurrent build of index "public"."users_email_key"
-- lock: SHARE UPDATE EXCLUSIVE
CREATE UNIQUE INDEX CONCURRENTLY "users_email_key" ON "public"."users" ("email");

-- ==== phase dual-write (no release gate)

-- step 1: install the sync trigger "bf_0002_normalize_emails_sync"
-- mode: in one transaction
-- lock: no table lock
DO $bf_schema$ BEGIN IF to_regnamespace('"backfill"') IS NULL THEN EXECUTE 'CREATE SCHEMA "backfill"'; END IF; END $bf_schema$;
-- lock: no table lock
CREATE OR REPLACE FUNCTION "backfill"."bf_0002_normalize_emails_sync"() RETURNS trigger LANGUAGE plpgsql AS $bf_sync$
#variable_conflict use_column
BEGIN
  -- operations[0]: update "email" where email <> lower(trim(email))
  SELECT CASE WHEN (email <> lower(trim(email))) THEN CAST((lower(trim(email))) AS text) ELSE "email" END INTO NEW."email" FROM (SELECT NEW.*) AS "users";
  -- operations[1]: set "email" NOT NULL
  SELECT CASE WHEN ("email" IS NULL) THEN CAST(('unknown+' || id || '@invalid') AS text) ELSE "email" END INTO NEW."email" FROM (SELECT NEW.*) AS "users";
  RETURN NEW;
END;
$bf_sync$;
-- lock: SHARE ROW EXCLUSIVE
CREATE TRIGGER "bf_0002_normalize_emails_sync" BEFORE INSERT OR UPDATE ON "public"."users" FOR EACH ROW WHEN (current_setting('backfill.bypass', true) IS DISTINCT FROM '0002_normalize_emails') EXECUTE FUNCTION "backfill"."bf_0002_normalize_emails_sync"();
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" ADD CONSTRAINT "bf_users_email_not_null" CHECK ("email" IS NOT NULL) NOT VALID;

-- ==== phase backfill (no release gate)

-- step 1: backfill "email" in chunks of rows by key ("id")
-- mode: backfill, run by the engine in chunks
-- lock: ROW EXCLUSIVE
WITH _bf_changed AS (
  UPDATE "public"."users" AS _bf_t
     SET ("email") = (SELECT _bf_n."email" FROM (SELECT "id", "full_name", CASE WHEN ("email" IS NULL) THEN CAST(('unknown+' || id || '@invalid') AS text) ELSE "email" END AS "email", "age", "nickname", "score", "legacy_code", "street", "city" FROM (SELECT "id", "full_name", CASE WHEN (email <> lower(trim(email))) THEN CAST((lower(trim(email))) AS text) ELSE "email" END AS "email", "age", "nickname", "score", "legacy_code", "street", "city" FROM (SELECT _bf_t.*) AS "users") AS "users") AS _bf_n)
   WHERE (true)
     AND EXISTS (SELECT FROM (SELECT "id", "full_name", CASE WHEN ("email" IS NULL) THEN CAST(('unknown+' || id || '@invalid') AS text) ELSE "email" END AS "email", "age", "nickname", "score", "legacy_code", "street", "city" FROM (SELECT "id", "full_name", CASE WHEN (email <> lower(trim(email))) THEN CAST((lower(trim(email))) AS text) ELSE "email" END AS "email", "age", "nickname", "score", "legacy_code", "street", "city" FROM (SELECT _bf_t.*) AS "users") AS "users") AS _bf_n WHERE ROW(_bf_t."email") IS DISTINCT FROM ROW(_bf_n."email"))
  RETURNING 1
)
SELECT count(*) FROM _bf_changed;

-- ==== phase contract (no release gate)

-- step 1: validate for set "email" NOT NULL; scans without blocking writes
-- mode: in one transaction
-- lock: SHARE UPDATE EXCLUSIVE
ALTER TABLE "public"."users" VALIDATE CONSTRAINT "bf_users_email_not_null";

-- step 2: switch to the new schema, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
DROP TRIGGER IF EXISTS "bf_0002_normalize_emails_sync" ON "public"."users";
-- lock: ACCESS EXCLUSIVE
DROP TRIGGER IF EXISTS "bf_0002_normalize_emails_undo_save" ON "public"."users";
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" ALTER COLUMN "email" SET NOT NULL;
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" DROP CONSTRAINT IF EXISTS "bf_users_email_not_null";

-- step 3: drop the sync function and the undo data
-- mode: in one transaction
-- lock: no table lock
DROP FUNCTION IF EXISTS "backfill"."bf_0002_normalize_emails_sync"();
-- lock: no table lock
DROP FUNCTION IF EXISTS "backfill"."bf_0002_normalize_emails_undo_save"();
-- lock: no table lock
DROP TABLE IF EXISTS "backfill"."bf_0002_normalize_emails_undo";
-- lock: no table lock
DROP TYPE IF EXISTS "backfill"."bf_0002_normalize_emails_undo_row";

-- ==== rollback

-- step 1: drop index "users_email_key" concurrently
-- mode: outside a transaction
-- lock: SHARE UPDATE EXCLUSIVE
DROP INDEX CONCURRENTLY IF EXISTS "public"."users_email_key";

-- step 2: drop the trigger, new columns and constraints, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
DROP TRIGGER IF EXISTS "bf_0002_normalize_emails_sync" ON "public"."users";
-- lock: ACCESS EXCLUSIVE
DROP TRIGGER IF EXISTS "bf_0002_normalize_emails_undo_save" ON "public"."users";
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" DROP CONSTRAINT IF EXISTS "bf_users_email_not_null";
-- lock: no table lock
DROP FUNCTION IF EXISTS "backfill"."bf_0002_normalize_emails_sync"();

-- step 3: restore the values the backfill changed in place (unless the application changed them since), then drop the undo data
-- mode: in one transaction
-- lock: ROW EXCLUSIVE
DO $bf_undo$ BEGIN IF to_regclass('"backfill"."bf_0002_normalize_emails_undo"') IS NOT NULL THEN EXECUTE 'UPDATE "public"."users" AS _bf_t SET "email" = CASE WHEN _bf_t."email" IS NOT DISTINCT FROM _bf_after."after_email" THEN _bf_undo."before_email" ELSE _bf_t."email" END FROM (SELECT DISTINCT ON (_bf_r."id") _bf_r."id", _bf_r."before_email" FROM "backfill"."bf_0002_normalize_emails_undo" AS _bf_c CROSS JOIN LATERAL unnest(_bf_c."rows") AS _bf_r ORDER BY _bf_r."id", _bf_c."n" ASC) AS _bf_undo JOIN (SELECT DISTINCT ON (_bf_r."id") _bf_r."id", _bf_r."after_email" FROM "backfill"."bf_0002_normalize_emails_undo" AS _bf_c CROSS JOIN LATERAL unnest(_bf_c."rows") AS _bf_r ORDER BY _bf_r."id", _bf_c."n" DESC) AS _bf_after USING ("id") WHERE ROW(_bf_t."id") = ROW(_bf_undo."id")'; END IF; END $bf_undo$;
-- lock: no table lock
DROP FUNCTION IF EXISTS "backfill"."bf_0002_normalize_emails_undo_save"();
-- lock: no table lock
DROP TABLE IF EXISTS "backfill"."bf_0002_normalize_emails_undo";
-- lock: no table lock
DROP TYPE IF EXISTS "backfill"."bf_0002_normalize_emails_undo_row";

-- ==== backfill spec

-- table: "public"."users"
-- key: "id"
-- targets: "email"
-- in place: "email" (undo columns "before_email", "after_email")
-- undo table: "backfill"."bf_0002_normalize_emails_undo" (rows of type "backfill"."bf_0002_normalize_emails_undo_row")
-- bypass: 0002_normalize_emails

-- whole-table update
WITH _bf_changed AS (
  UPDATE "public"."users" AS _bf_t
     SET ("email") = (SELECT _bf_n."email" FROM (SELECT "id", "full_name", CASE WHEN ("email" IS NULL) THEN CAST(('unknown+' || id || '@invalid') AS text) ELSE "email" END AS "email", "age", "nickname", "score", "legacy_code", "street", "city" FROM (SELECT "id", "full_name", CASE WHEN (email <> lower(trim(email))) THEN CAST((lower(trim(email))) AS text) ELSE "email" END AS "email", "age", "nickname", "score", "legacy_code", "street", "city" FROM (SELECT _bf_t.*) AS "users") AS "users") AS _bf_n)
   WHERE (true)
     AND EXISTS (SELECT FROM (SELECT "id", "full_name", CASE WHEN ("email" IS NULL) THEN CAST(('unknown+' || id || '@invalid') AS text) ELSE "email" END AS "email", "age", "nickname", "score", "legacy_code", "street", "city" FROM (SELECT "id", "full_name", CASE WHEN (email <> lower(trim(email))) THEN CAST((lower(trim(email))) AS text) ELSE "email" END AS "email", "age", "nickname", "score", "legacy_code", "street", "city" FROM (SELECT _bf_t.*) AS "users") AS "users") AS _bf_n WHERE ROW(_bf_t."email") IS DISTINCT FROM ROW(_bf_n."email"))
  RETURNING 1
)
SELECT count(*) FROM _bf_changed;

-- rows out of sync (read-only)
SELECT count(*) FROM "public"."users" AS _bf_t CROSS JOIN LATERAL (SELECT "id", "full_name", CASE WHEN ("email" IS NULL) THEN CAST(('unknown+' || id || '@invalid') AS text) ELSE "email" END AS "email", "age", "nickname", "score", "legacy_code", "street", "city" FROM (SELECT "id", "full_name", CASE WHEN (email <> lower(trim(email))) THEN CAST((lower(trim(email))) AS text) ELSE "email" END AS "email", "age", "nickname", "score", "legacy_code", "street", "city" FROM (SELECT _bf_t.*) AS "users") AS "users") AS _bf_n WHERE ROW(_bf_t."email") IS DISTINCT FROM ROW(_bf_n."email");

-- the trigger's bypass, per transaction
SELECT set_config('backfill.bypass', '0002_normalize_emails', true);

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
  UPDATE "public"."users" AS _bf_t
     SET ("email") = (SELECT _bf_n."email" FROM (SELECT "id", "full_name", CASE WHEN ("email" IS NULL) THEN CAST(('unknown+' || id || '@invalid') AS text) ELSE "email" END AS "email", "age", "nickname", "score", "legacy_code", "street", "city" FROM (SELECT "id", "full_name", CASE WHEN (email <> lower(trim(email))) THEN CAST((lower(trim(email))) AS text) ELSE "email" END AS "email", "age", "nickname", "score", "legacy_code", "street", "city" FROM (SELECT _bf_t.*) AS "users") AS "users") AS _bf_n)
   WHERE (true AND _bf_t."id" <= (SELECT "id" FROM _bf_last))
     AND EXISTS (SELECT FROM (SELECT "id", "full_name", CASE WHEN ("email" IS NULL) THEN CAST(('unknown+' || id || '@invalid') AS text) ELSE "email" END AS "email", "age", "nickname", "score", "legacy_code", "street", "city" FROM (SELECT "id", "full_name", CASE WHEN (email <> lower(trim(email))) THEN CAST((lower(trim(email))) AS text) ELSE "email" END AS "email", "age", "nickname", "score", "legacy_code", "street", "city" FROM (SELECT _bf_t.*) AS "users") AS "users") AS _bf_n WHERE ROW(_bf_t."email") IS DISTINCT FROM ROW(_bf_n."email"))
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
  UPDATE "public"."users" AS _bf_t
     SET ("email") = (SELECT _bf_n."email" FROM (SELECT "id", "full_name", CASE WHEN ("email" IS NULL) THEN CAST(('unknown+' || id || '@invalid') AS text) ELSE "email" END AS "email", "age", "nickname", "score", "legacy_code", "street", "city" FROM (SELECT "id", "full_name", CASE WHEN (email <> lower(trim(email))) THEN CAST((lower(trim(email))) AS text) ELSE "email" END AS "email", "age", "nickname", "score", "legacy_code", "street", "city" FROM (SELECT _bf_t.*) AS "users") AS "users") AS _bf_n)
   WHERE (_bf_t."id" > ($4::text[])[1]::bigint AND _bf_t."id" <= (SELECT "id" FROM _bf_last))
     AND EXISTS (SELECT FROM (SELECT "id", "full_name", CASE WHEN ("email" IS NULL) THEN CAST(('unknown+' || id || '@invalid') AS text) ELSE "email" END AS "email", "age", "nickname", "score", "legacy_code", "street", "city" FROM (SELECT "id", "full_name", CASE WHEN (email <> lower(trim(email))) THEN CAST((lower(trim(email))) AS text) ELSE "email" END AS "email", "age", "nickname", "score", "legacy_code", "street", "city" FROM (SELECT _bf_t.*) AS "users") AS "users") AS _bf_n WHERE ROW(_bf_t."email") IS DISTINCT FROM ROW(_bf_n."email"))
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
