-- Golden file: the schedule of plans/0009_unique_order_reference.toml against tests/golden/catalog/public.orders.json.
-- Bless a reviewed change with BACKFILL_BLESS=1 cargo test --test tests golden

-- plan 0009_unique_order_reference on "public"."orders" (row estimate 0)

-- ==== phase expand (no release gate)

-- step 1: build index "orders_reference_key" concurrently
-- mode: outside a transaction, concurrent build of index "public"."orders_reference_key"
-- lock: SHARE UPDATE EXCLUSIVE
CREATE UNIQUE INDEX CONCURRENTLY "orders_reference_key" ON "public"."orders" ("reference");

-- ==== phase dual-write (no release gate)

-- (no steps)

-- ==== phase backfill (no release gate)

-- (no steps)

-- ==== phase contract (no release gate)

-- step 1: switch to the new schema, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."orders" ADD CONSTRAINT "orders_reference_key" UNIQUE USING INDEX "orders_reference_key";

-- ==== rollback

-- step 1: drop index "orders_reference_key" concurrently
-- mode: outside a transaction
-- lock: SHARE UPDATE EXCLUSIVE
DROP INDEX CONCURRENTLY IF EXISTS "public"."orders_reference_key";

-- ==== backfill spec: none (the plan moves no data)
