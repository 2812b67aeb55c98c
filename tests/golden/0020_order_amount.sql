-- Golden file: the schedule of plans/0020_order_amount.toml against tests/golden/catalog/public.orders.json.
-- Bless a reviewed change with BACKFILL_BLESS=1 cargo test --test tests golden

-- plan 0020_order_amount on "public"."orders" (row estimate 0)

-- ==== phase expand (due from release 3.7.0)

-- step 1: change the type of "total" to numeric(14, 2), renamed to "amount", NOT NULL, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."orders" ADD COLUMN IF NOT EXISTS "amount" numeric(14, 2);

-- step 2: build index "orders_total_idx_bf" concurrently
-- mode: outside a transaction, concurrent build of index "public"."orders_total_idx_bf"
-- lock: SHARE UPDATE EXCLUSIVE
CREATE INDEX CONCURRENTLY "orders_total_idx_bf" ON "public"."orders" USING btree ("amount");

-- ==== phase dual-write (due from release 3.7.0)

-- step 1: install the sync trigger "bf_0020_order_amount_sync"
-- mode: in one transaction
-- lock: no table lock
DO $bf_schema$ BEGIN IF to_regnamespace('"backfill"') IS NULL THEN EXECUTE 'CREATE SCHEMA "backfill"'; END IF; END $bf_schema$;
-- lock: no table lock
CREATE OR REPLACE FUNCTION "backfill"."bf_0020_order_amount_sync"() RETURNS trigger LANGUAGE plpgsql AS $bf_sync$
#variable_conflict use_column
BEGIN
  -- operations[1]: change the type of "total" to numeric(14, 2), renamed to "amount", NOT NULL
  IF TG_OP = 'INSERT' THEN
    -- The old release inserts without the new columns; the new release fills them.
    IF NOT ROW(NEW."amount") IS NULL THEN
      SELECT CAST(("amount") AS numeric(12,2)) INTO NEW."total" FROM (SELECT NEW.*) AS "orders";
    ELSIF EXISTS (SELECT FROM (SELECT NEW.*) AS "orders" WHERE ROW("amount") IS NULL) THEN
      SELECT CAST((COALESCE(CAST(("total") AS numeric(14, 2)), CAST((0) AS numeric(14, 2)))) AS numeric(14, 2)) INTO NEW."amount" FROM (SELECT NEW.*) AS "orders";
    END IF;
  ELSIF ROW(NEW."total") IS DISTINCT FROM ROW(OLD."total") THEN
    -- The old release wrote: derive the new columns, unless the writer set them too.
    IF ROW(NEW."amount") IS NOT DISTINCT FROM ROW(OLD."amount") THEN
      SELECT CAST((COALESCE(CAST(("total") AS numeric(14, 2)), CAST((0) AS numeric(14, 2)))) AS numeric(14, 2)) INTO NEW."amount" FROM (SELECT NEW.*) AS "orders";
    END IF;
  ELSIF ROW(NEW."amount") IS DISTINCT FROM ROW(OLD."amount") THEN
    -- The new release wrote: derive the old columns.
    SELECT CAST(("amount") AS numeric(12,2)) INTO NEW."total" FROM (SELECT NEW.*) AS "orders";
  ELSIF ROW(NEW."amount") IS NULL THEN
    -- A write of other columns of a row the backfill has not filled yet: fill it now, so
    -- that no constraint on the new columns rejects a write the old schema accepts.
    IF EXISTS (SELECT FROM (SELECT NEW.*) AS "orders" WHERE ROW("amount") IS NULL) THEN
      SELECT CAST((COALESCE(CAST(("total") AS numeric(14, 2)), CAST((0) AS numeric(14, 2)))) AS numeric(14, 2)) INTO NEW."amount" FROM (SELECT NEW.*) AS "orders";
    END IF;
  END IF;
  RETURN NEW;
END;
$bf_sync$;
-- lock: SHARE ROW EXCLUSIVE
CREATE TRIGGER "bf_0020_order_amount_sync" BEFORE INSERT OR UPDATE ON "public"."orders" FOR EACH ROW WHEN (current_setting('backfill.bypass', true) IS DISTINCT FROM '0020_order_amount') EXECUTE FUNCTION "backfill"."bf_0020_order_amount_sync"();
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."orders" ADD CONSTRAINT "bf_orders_amount_not_null" CHECK ("amount" IS NOT NULL) NOT VALID;

-- ==== phase backfill (due from release 3.7.0)

-- step 1: backfill "amount" in chunks of rows by key ("id")
-- mode: backfill, run by the engine in chunks
-- lock: ROW EXCLUSIVE
WITH _bf_changed AS (
  UPDATE "public"."orders" AS "orders"
     SET "amount" = CAST((COALESCE(CAST(("total") AS numeric(14, 2)), CAST((0) AS numeric(14, 2)))) AS numeric(14, 2))
   WHERE (true)
     AND (ROW("amount") IS NULL)
     AND ROW("orders"."amount") IS DISTINCT FROM ROW(CAST((COALESCE(CAST(("total") AS numeric(14, 2)), CAST((0) AS numeric(14, 2)))) AS numeric(14, 2)))
  RETURNING 1
)
SELECT count(*) FROM _bf_changed;

-- ==== phase contract (due from release 3.8.0)

-- step 1: validate for change the type of "total" to numeric(14, 2), renamed to "amount", NOT NULL; scans without blocking writes
-- mode: in one transaction
-- lock: SHARE UPDATE EXCLUSIVE
ALTER TABLE "public"."orders" VALIDATE CONSTRAINT "bf_orders_amount_not_null";

-- step 2: switch to the new schema, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
DROP TRIGGER IF EXISTS "bf_0020_order_amount_sync" ON "public"."orders";
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."orders" DROP COLUMN IF EXISTS "total";
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."orders" ALTER COLUMN "amount" SET DEFAULT 0;
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."orders" ALTER COLUMN "amount" SET NOT NULL;
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."orders" DROP CONSTRAINT IF EXISTS "bf_orders_amount_not_null";
-- lock: ACCESS EXCLUSIVE
ALTER INDEX "public"."orders_total_idx_bf" RENAME TO "orders_total_idx";

-- step 3: drop the sync function and the undo data
-- mode: in one transaction
-- lock: no table lock
DROP FUNCTION IF EXISTS "backfill"."bf_0020_order_amount_sync"();

-- ==== rollback

-- step 1: drop index "orders_total_idx_bf" concurrently
-- mode: outside a transaction
-- lock: SHARE UPDATE EXCLUSIVE
DROP INDEX CONCURRENTLY IF EXISTS "public"."orders_total_idx_bf";

-- step 2: drop the trigger, new columns and constraints, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
DROP TRIGGER IF EXISTS "bf_0020_order_amount_sync" ON "public"."orders";
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."orders" DROP COLUMN IF EXISTS "amount";
-- lock: no table lock
DROP FUNCTION IF EXISTS "backfill"."bf_0020_order_amount_sync"();

-- ==== backfill spec

-- table: "public"."orders"
-- key: "id"
-- targets: "amount"
-- bypass: 0020_order_amount

-- whole-table update
WITH _bf_changed AS (
  UPDATE "public"."orders" AS "orders"
     SET "amount" = CAST((COALESCE(CAST(("total") AS numeric(14, 2)), CAST((0) AS numeric(14, 2)))) AS numeric(14, 2))
   WHERE (true)
     AND (ROW("amount") IS NULL)
     AND ROW("orders"."amount") IS DISTINCT FROM ROW(CAST((COALESCE(CAST(("total") AS numeric(14, 2)), CAST((0) AS numeric(14, 2)))) AS numeric(14, 2)))
  RETURNING 1
)
SELECT count(*) FROM _bf_changed;

-- rows out of sync (read-only)
SELECT count(*) FROM "public"."orders" AS _bf_t CROSS JOIN LATERAL (SELECT "id", "user_id", "reference", "total", CASE WHEN (ROW("amount") IS NULL) THEN CAST((COALESCE(CAST(("total") AS numeric(14, 2)), CAST((0) AS numeric(14, 2)))) AS numeric(14, 2)) ELSE "amount" END AS "amount" FROM (SELECT _bf_t.*) AS "orders") AS _bf_n WHERE ROW(_bf_t."amount") IS DISTINCT FROM ROW(_bf_n."amount");

-- the trigger's bypass, per transaction
SELECT set_config('backfill.bypass', '0020_order_amount', true);

-- engine: a segment's first chunk
WITH _bf_keys AS MATERIALIZED (
  SELECT _bf_t."id" FROM "public"."orders" AS _bf_t
   WHERE true AND _bf_t."id" <= ($5::text[])[1]::bigint
   ORDER BY _bf_t."id"
   LIMIT $3
),
_bf_last AS MATERIALIZED (
  SELECT _bf_t."id" FROM _bf_keys AS _bf_t ORDER BY _bf_t."id" DESC LIMIT 1
),
_bf_changed AS (
  UPDATE "public"."orders" AS "orders"
     SET "amount" = CAST((COALESCE(CAST(("total") AS numeric(14, 2)), CAST((0) AS numeric(14, 2)))) AS numeric(14, 2))
   WHERE (true AND "orders"."id" <= (SELECT "id" FROM _bf_last))
     AND (ROW("amount") IS NULL)
     AND ROW("orders"."amount") IS DISTINCT FROM ROW(CAST((COALESCE(CAST(("total") AS numeric(14, 2)), CAST((0) AS numeric(14, 2)))) AS numeric(14, 2)))
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
  SELECT _bf_t."id" FROM "public"."orders" AS _bf_t
   WHERE _bf_t."id" > ($4::text[])[1]::bigint AND _bf_t."id" <= ($5::text[])[1]::bigint
   ORDER BY _bf_t."id"
   LIMIT $3
),
_bf_last AS MATERIALIZED (
  SELECT _bf_t."id" FROM _bf_keys AS _bf_t ORDER BY _bf_t."id" DESC LIMIT 1
),
_bf_changed AS (
  UPDATE "public"."orders" AS "orders"
     SET "amount" = CAST((COALESCE(CAST(("total") AS numeric(14, 2)), CAST((0) AS numeric(14, 2)))) AS numeric(14, 2))
   WHERE ("orders"."id" > ($4::text[])[1]::bigint AND "orders"."id" <= (SELECT "id" FROM _bf_last))
     AND (ROW("amount") IS NULL)
     AND ROW("orders"."amount") IS DISTINCT FROM ROW(CAST((COALESCE(CAST(("total") AS numeric(14, 2)), CAST((0) AS numeric(14, 2)))) AS numeric(14, 2)))
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
SELECT ARRAY[_bf_t."id"::text] FROM "public"."orders" AS _bf_t
 WHERE $1::text[] IS NULL AND _bf_t."id" <= ($2::text[])[1]::bigint
 ORDER BY _bf_t."id"
 LIMIT $3;

-- engine: the keys of a later chunk (naming a bad row)
SELECT ARRAY[_bf_t."id"::text] FROM "public"."orders" AS _bf_t
 WHERE _bf_t."id" > ($1::text[])[1]::bigint AND _bf_t."id" <= ($2::text[])[1]::bigint
 ORDER BY _bf_t."id"
 LIMIT $3;
