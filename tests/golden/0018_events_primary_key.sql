-- Golden file: the schedule of plans/0018_events_primary_key.toml against tests/golden/catalog/public.events.json.
-- Bless a reviewed change with BACKFILL_BLESS=1 cargo test --test tests golden

-- plan 0018_events_primary_key on "public"."events" (row estimate 0)

-- ==== phase expand (due from release 3.4.0)

-- step 1: build index "events_pkey" concurrently
-- mode: outside a transaction, concurrent build of index "public"."events_pkey"
-- lock: SHARE UPDATE EXCLUSIVE
CREATE UNIQUE INDEX CONCURRENTLY "events_pkey" ON "public"."events" ("tenant_id", "id");

-- ==== phase dual-write (due from release 3.4.0)

-- (no steps)

-- ==== phase backfill (due from release 3.4.0)

-- (no steps)

-- ==== phase contract (due from release 3.5.0)

-- step 1: switch to the new schema, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."events" ADD CONSTRAINT "events_pkey" PRIMARY KEY USING INDEX "events_pkey";

-- ==== rollback

-- step 1: drop index "events_pkey" concurrently
-- mode: outside a transaction
-- lock: SHARE UPDATE EXCLUSIVE
DROP INDEX CONCURRENTLY IF EXISTS "public"."events_pkey";

-- ==== backfill spec: none (the plan moves no data)
