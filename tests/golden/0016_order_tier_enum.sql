-- Golden file: the schedule of plans/0016_order_tier_enum.toml against tests/golden/catalog/public.orders.json.
-- Bless a reviewed change with BACKFILL_BLESS=1 cargo test --test tests golden

-- plan 0016_order_tier_enum on "public"."orders" (row estimate 0)

-- ==== phase expand (due from release 3.0.0)

-- step 1: create enum type "order_tier"; add column "tier" order_tier, metadata only
-- mode: in one transaction
-- lock: no table lock
CREATE TYPE "public"."order_tier" AS ENUM ('free', 'pro');
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."orders" ADD COLUMN IF NOT EXISTS "tier" order_tier DEFAULT 'free';

-- step 2: add value 'enterprise' to enum type "order_tier", outside a transaction
-- mode: outside a transaction
-- lock: no table lock
ALTER TYPE "public"."order_tier" ADD VALUE IF NOT EXISTS 'enterprise' AFTER 'pro';

-- ==== phase dual-write (due from release 3.0.0)

-- (no steps)

-- ==== phase backfill (due from release 3.0.0)

-- (no steps)

-- ==== phase contract (due from release 3.1.0)

-- (no steps)

-- ==== rollback

-- step 1: drop the trigger, new columns and constraints, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."orders" DROP COLUMN IF EXISTS "tier";
-- lock: no table lock
DROP TYPE IF EXISTS "public"."order_tier";

-- ==== backfill spec: none (the plan moves no data)
