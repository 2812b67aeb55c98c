-- Golden file: the schedule of plans/0012_orders_indexes.toml against tests/golden/catalog/public.orders.json.
-- Bless a reviewed change with BACKFILL_BLESS=1 cargo test --test tests golden

-- plan 0012_orders_indexes on "public"."orders" (row estimate 0)

-- ==== phase expand (due from release 2.3.0)

-- step 1: build index "orders_user_id_total_idx" concurrently
-- mode: outside a transaction, concurrent build of index "public"."orders_user_id_total_idx"
-- lock: SHARE UPDATE EXCLUSIVE
CREATE INDEX CONCURRENTLY "orders_user_id_total_idx" ON "public"."orders" ("user_id", "total" DESC NULLS LAST) INCLUDE ("reference");

-- ==== phase dual-write (due from release 2.3.0)

-- (no steps)

-- ==== phase backfill (due from release 2.3.0)

-- (no steps)

-- ==== phase contract (due from release 2.4.0)

-- step 1: drop index "orders_total_idx" concurrently
-- mode: outside a transaction
-- lock: SHARE UPDATE EXCLUSIVE
DROP INDEX CONCURRENTLY IF EXISTS "public"."orders_total_idx";

-- ==== rollback

-- step 1: drop index "orders_user_id_total_idx" concurrently
-- mode: outside a transaction
-- lock: SHARE UPDATE EXCLUSIVE
DROP INDEX CONCURRENTLY IF EXISTS "public"."orders_user_id_total_idx";

-- ==== backfill spec: none (the plan moves no data)
