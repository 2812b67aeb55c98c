-- Golden file: the schedule of plans/0019_orders_replica_identity.toml against tests/golden/catalog/public.orders.json.
-- Bless a reviewed change with BACKFILL_BLESS=1 cargo test --test tests golden

-- plan 0019_orders_replica_identity on "public"."orders" (row estimate 0)

-- ==== phase expand (due from release 3.6.0)

-- step 1: set replica identity full, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."orders" REPLICA IDENTITY FULL;

-- ==== phase dual-write (due from release 3.6.0)

-- (no steps)

-- ==== phase backfill (due from release 3.6.0)

-- (no steps)

-- ==== phase contract (due from release 3.7.0)

-- (no steps)

-- ==== rollback

-- step 1: drop the trigger, new columns and constraints, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."orders" REPLICA IDENTITY DEFAULT;

-- ==== backfill spec: none (the plan moves no data)
