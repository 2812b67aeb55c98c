-- Golden file: the schedule of plans/0011_relax_users.toml against tests/golden/catalog/public.users.json.
-- Bless a reviewed change with BACKFILL_BLESS=1 cargo test --test tests golden

-- plan 0011_relax_users on "public"."users" (row estimate 0)

-- ==== phase expand (due from release 3.0.0)

-- step 1: drop constraint "users_nickname_length"; rename constraint "users_age_check" to "users_age_not_negative"; drop NOT NULL on "score"; set the default of "nickname" to 'anonymous'; set the comment of column "email", metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" DROP CONSTRAINT IF EXISTS "users_nickname_length";
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" RENAME CONSTRAINT "users_age_check" TO "users_age_not_negative";
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" ALTER COLUMN "score" DROP NOT NULL;
-- lock: ACCESS EXCLUSIVE
ALTER TABLE "public"."users" ALTER COLUMN "nickname" SET DEFAULT 'anonymous';
-- lock: SHARE UPDATE EXCLUSIVE
COMMENT ON COLUMN "public"."users"."email" IS 'lower-cased at write time';

-- ==== phase dual-write (due from release 3.0.0)

-- (no steps)

-- ==== phase backfill (due from release 3.0.0)

-- (no steps)

-- ==== phase contract (due from release 3.1.0)

-- (no steps)

-- ==== rollback

-- step 1: undo: set the comment of column "email"; set the default of "nickname" to 'anonymous'; drop NOT NULL on "score"; rename constraint "users_age_check" to "users_age_not_negative"; drop constraint "users_nickname_length", metadata only
-- mode: in one transaction
-- lock: SHARE UPDATE EXCLUSIVE
DO $bf_guard$ BEGIN IF EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass('"public"."users"') AND attname = 'email' AND NOT attisdropped) THEN EXECUTE 'COMMENT ON COLUMN "public"."users"."email" IS NULL'; END IF; END $bf_guard$;
-- lock: ACCESS EXCLUSIVE
DO $bf_guard$ BEGIN IF EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass('"public"."users"') AND attname = 'nickname' AND NOT attisdropped) THEN EXECUTE 'ALTER TABLE "public"."users" ALTER COLUMN "nickname" DROP DEFAULT'; END IF; END $bf_guard$;
-- lock: ACCESS EXCLUSIVE
DO $bf_guard$ BEGIN IF EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass('"public"."users"') AND attname = 'score' AND NOT attisdropped AND NOT attnotnull) AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE conrelid = to_regclass('"public"."users"') AND conname = 'bf_users_score_not_null') THEN EXECUTE 'ALTER TABLE "public"."users" ADD CONSTRAINT "bf_users_score_not_null" CHECK ("score" IS NOT NULL) NOT VALID'; END IF; END $bf_guard$;
-- lock: ACCESS EXCLUSIVE
DO $bf_guard$ BEGIN IF EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE conrelid = to_regclass('"public"."users"') AND conname = 'users_age_not_negative') AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE conrelid = to_regclass('"public"."users"') AND conname = 'users_age_check') THEN EXECUTE 'ALTER TABLE "public"."users" RENAME CONSTRAINT "users_age_not_negative" TO "users_age_check"'; END IF; END $bf_guard$;
-- lock: ACCESS EXCLUSIVE
DO $bf_guard$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE conrelid = to_regclass('"public"."users"') AND conname = 'users_nickname_length') THEN EXECUTE 'ALTER TABLE "public"."users" ADD CONSTRAINT "users_nickname_length" CHECK ((length(nickname) <= 20)) NOT VALID'; END IF; END $bf_guard$;

-- step 2: validate what undoing drop NOT NULL on "score" put back; scans without blocking writes
-- mode: in one transaction
-- lock: SHARE UPDATE EXCLUSIVE
DO $bf_guard$ BEGIN IF EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE conrelid = to_regclass('"public"."users"') AND conname = 'bf_users_score_not_null') THEN EXECUTE 'ALTER TABLE "public"."users" VALIDATE CONSTRAINT "bf_users_score_not_null"'; END IF; END $bf_guard$;

-- step 3: validate what undoing drop constraint "users_nickname_length" put back; scans without blocking writes
-- mode: in one transaction
-- lock: SHARE UPDATE EXCLUSIVE
DO $bf_guard$ BEGIN IF EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE conrelid = to_regclass('"public"."users"') AND conname = 'users_nickname_length' AND NOT convalidated) THEN EXECUTE 'ALTER TABLE "public"."users" VALIDATE CONSTRAINT "users_nickname_length"'; END IF; END $bf_guard$;

-- step 4: SET NOT NULL again, proven by the validated checks (no scan), metadata only
-- mode: in one transaction
-- lock: ACCESS EXCLUSIVE
DO $bf_guard$ BEGIN IF EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE conrelid = to_regclass('"public"."users"') AND conname = 'bf_users_score_not_null') THEN EXECUTE 'ALTER TABLE "public"."users" ALTER COLUMN "score" SET NOT NULL'; EXECUTE 'ALTER TABLE "public"."users" DROP CONSTRAINT IF EXISTS "bf_users_score_not_null"'; END IF; END $bf_guard$;

-- ==== backfill spec: none (the plan moves no data)
