-- Golden file: the schedule of plans/0008_orders_user_fk.toml against tests/golden/catalog/public.orders.json.
-- Bless a reviewed change with BACKFILL_BLESS=1 cargo test --test tests golden

-- plan 0008_orders_user_fk on "public"."orders" (row estimate 0)

-- ==== phase expand (no release gate)

-- step 1: add foreign key ("user_id") references users ("id"), metadata only
-- mode: in one transaction
-- lock: SHARE ROW EXCLUSIVE
ALTER TABLE "public"."orders" ADD CONSTRAINT "orders_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "public"."users" ("id") ON DELETE SET NULL NOT VALID;

-- ==== phase dual-write (no release gate)

-- (no steps)

-- ==== phase backfill (no release gate)

-- (no steps)

-- ==== phase contract (no release gate)

-- step 1: validate for add foreign key ("user_id") references users ("id"); scans without blocking writes
-- mode: in one transaction
-- lock: SHARE UPDATE EXCLUSIVE
ALTER TABLE "public"."orders" VALIDATE CONSTRAINT "orders_user_id_fkey";

-- ==== rollback

-- step 1: drop the trigger, new columns and constraints, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."orders" DROP CONSTRAINT IF EXISTS "orders_user_id_fkey";

-- ==== backfill spec: none (the plan moves no data)
