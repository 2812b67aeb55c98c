-- The tables the example plans are written for: the tests validate every plan in this folder
-- against them.
CREATE TABLE users (
  id          bigserial PRIMARY KEY,
  full_name   text,
  email       text,
  age         int CONSTRAINT users_age_check CHECK (age >= 0),
  nickname    text CONSTRAINT users_nickname_length CHECK (length(nickname) <= 20),
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

-- A log table created without a key (0018 gives it one).
CREATE TABLE events (
  tenant_id int NOT NULL,
  id        bigint NOT NULL,
  payload   text
);

-- A table the application no longer uses (plans/0014_drop_legacy_events.toml drops it).
CREATE TABLE legacy_events (
  id         bigserial PRIMARY KEY,
  kind       text NOT NULL,
  payload    jsonb,
  created_at timestamptz NOT NULL DEFAULT now()
);
