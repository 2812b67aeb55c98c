-- The tables the example plans are written for: the tests validate every plan in this folder
-- against them.
CREATE TABLE users (
  id          bigserial PRIMARY KEY,
  full_name   text,
  email       text,
  age         int,
  nickname    text,
  score       int NOT NULL DEFAULT 0,
  legacy_code text,
  street      text,
  city        text
);

CREATE TABLE orders (
  id        bigserial PRIMARY KEY,
  user_id   bigint,
  reference text,
  total     numeric(12, 2)
);
CREATE INDEX orders_total_idx ON orders (total);

-- A table the application no longer uses (plans/0014_drop_legacy_events.toml drops it).
CREATE TABLE legacy_events (
  id         bigserial PRIMARY KEY,
  kind       text NOT NULL,
  payload    jsonb,
  created_at timestamptz NOT NULL DEFAULT now()
);
