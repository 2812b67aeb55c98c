-- Golden file: the schedule of plans/0017_orders_statistics.toml against tests/golden/catalog/public.orders.json.
-- Bless a reviewed change with BACKFILL_BLESS=1 cargo test --test tests golden

-- plan 0017_orders_statistics on "public"."orders" (row estimate 0)

-- ==== phase expand (due from release 3.2.0)

-- step 1: unchecked SQL: CREATE STATISTICS orders_user_total (dependencies) ON user_i..., metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
CREATE STATISTICS orders_user_total (dependencies) ON user_id, total FROM orders;

-- ==== phase dual-write (due from release 3.2.0)

-- (no steps)

-- ==== phase backfill (due from release 3.2.0)

-- (no steps)

-- ==== phase contract (due from release 3.3.0)

-- (no steps)

-- ==== rollback

-- step 1: drop the trigger, new columns and constraints, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
DROP STATISTICS IF EXISTS orders_user_total;

-- ==== backfill spec: none (the plan moves no data)
