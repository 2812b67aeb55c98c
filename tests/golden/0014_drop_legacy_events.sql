-- Golden file: the schedule of plans/0014_drop_legacy_events.toml against tests/golden/catalog/public.legacy_events.json.
-- Bless a reviewed change with BACKFILL_BLESS=1 cargo test --test tests golden

-- plan 0014_drop_legacy_events on "public"."legacy_events" (row estimate 0)

-- ==== phase expand (due from release 2.5.0)

-- (no steps)

-- ==== phase dual-write (due from release 2.5.0)

-- (no steps)

-- ==== phase backfill (due from release 2.5.0)

-- (no steps)

-- ==== phase contract (due from release 2.6.0)

-- step 1: switch to the new schema, metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
DROP TABLE IF EXISTS "public"."legacy_events";

-- ==== rollback

-- (no steps)

-- ==== backfill spec: none (the plan moves no data)
