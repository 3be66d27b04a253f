-- The studio's PostgreSQL schema, equal to SQLite's after migrations m0001..m0015.
--
-- NEVER EDIT THIS FILE once it has shipped: databases were built from it. A later
-- change is a new migration (a new file for PostgreSQL beside the SQLite module).
--
-- Same table names, column names and order, primary keys, unique indexes, foreign
-- keys (all NO ACTION, as sqlite-utils declares them), defaults, NOT NULLs and
-- index names as SQLite's (tests/test_postgres_schema.py compares the two). The
-- `_migrations` table is the runner's, not made here.
--
-- Types: INTEGER -> bigint, FLOAT/REAL -> double precision, TEXT -> text (JSON
-- stays text). Text columns are COLLATE "C": SQLite compares text byte by byte
-- (BINARY), so ORDER BY, min/max and ranges give SQLite's order whatever the
-- database's locale (and LIKE/ILIKE fold ASCII case only, as SQLite's LIKE).
-- `INTEGER PRIMARY KEY` (SQLite's rowid alias) -> an identity column
-- "by default", so rows copied from SQLite keep their ids (the copier must then
-- move the sequence on: setval(pg_get_serial_sequence(...), max(id))).
--
-- Needs compat.sql applied first (app/store/postgres/migrate.py does, at every
-- start): the index dataset_items_run calls its json_valid() and json_extract(),
-- spelt as app.store.retention.DATASET_RUN spells them so that its query can use
-- the index. Those two must keep their meaning (IMMUTABLE): a change to either
-- needs a REINDEX of dataset_items_run.
--
-- What has no equivalent and is left out on purpose: PRAGMAs (journal, vacuum,
-- foreign_keys: PostgreSQL always enforces foreign keys), sqlite_stat tables,
-- and the FTS5 table `runs_fts` with its triggers (see `runs.search` below).
-- No table here is WITHOUT ROWID.

-- ---------------------------------------------------------------------------
-- Helpers the schema itself needs.
-- ---------------------------------------------------------------------------

-- The rollups' bucket keys, computed as SQLite computes them in m0013:
-- CAST(floor(at / seconds.0) AS INTEGER) * seconds. floor() makes the value
-- integral first, so PostgreSQL's rounding cast gives SQLite's truncating one.
CREATE FUNCTION rollup_period(at double precision, seconds integer) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- Clamped to ±1e15 s (31 million years): an absurd time (odd input, 1e300) lands in the
-- first or last bucket instead of overflowing bigint and failing the run's write.
RETURN floor(least(greatest(at, -1e15), 1e15) / seconds)::bigint * seconds;

-- Latency histogram bucket: 2^(1/16) apart, 799 for huge (or infinite) values,
-- -1000 for zero and below. SQLite's log(2, x) is ln(x) / ln(2) in C doubles;
-- PostgreSQL's ln() on double precision calls the same libm log().
CREATE FUNCTION rollup_latency_bucket(ms double precision) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
  WHEN ms > 1e15::double precision THEN 799
  WHEN ms > 0 THEN floor(16 * (ln(ms) / ln(2::double precision)))::bigint
  ELSE -1000
END;

-- ---------------------------------------------------------------------------
-- m0001 core: runs, events, messages, tool calls, spans.
-- ---------------------------------------------------------------------------

-- Full-text search. SQLite keeps an external-content FTS5 table `runs_fts`
-- (prompt, response; unicode61 remove_diacritics 2) kept by three triggers.
-- Here it is the generated column `search`: the same two columns, coalesced
-- and joined by a space, with the configuration agentop_search (below: no
-- stemming, no stop words, diacritics folded as FTS5 folds them) and a GIN index. PostgreSQL (15+)
-- recomputes it only when prompt or response is written, as the FTS triggers
-- did. A tsvector holds at most 1 MB: text too long for one is indexed from
-- its start (halved until it fits) instead of failing the run's write.
-- agentop_search: 'simple' after the unaccent dictionary (a trusted contrib
-- extension), so "cafe" finds "café" as with FTS5's remove_diacritics. Queries
-- use the same configuration (app.runs.filters).
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE TEXT SEARCH CONFIGURATION agentop_search (COPY = simple);
ALTER TEXT SEARCH CONFIGURATION agentop_search
  ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part,
                    numword, numhword, hword_numpart
  WITH unaccent, simple;

CREATE FUNCTION runs_search_vector(prompt text, response text) RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  keep integer;  -- characters kept of each column; NULL keeps all
BEGIN
  LOOP
    BEGIN
      RETURN to_tsvector('agentop_search'::regconfig,
        coalesce(CASE WHEN keep IS NULL THEN prompt ELSE left(prompt, keep) END, '')
        || ' ' ||
        coalesce(CASE WHEN keep IS NULL THEN response ELSE left(response, keep) END, ''));
    EXCEPTION WHEN program_limit_exceeded THEN
      keep := coalesce(keep, greatest(length(prompt), length(response))) / 2;
    END;
  END LOOP;
END
$$;

-- `rowid`: store code orders and pages runs by SQLite's implicit rowid
-- (app.runs.filters), and runs' key is text; this column stands in for it.
CREATE TABLE runs (
  id text COLLATE "C" PRIMARY KEY,
  session_id text COLLATE "C",
  parent_run_id text COLLATE "C",
  status text COLLATE "C" NOT NULL,
  model text COLLATE "C",
  provider text COLLATE "C",
  params text COLLATE "C",
  prompt text COLLATE "C",
  response text COLLATE "C",
  started_at double precision NOT NULL,
  ended_at double precision,
  latency_ms double precision,
  input_tokens bigint DEFAULT 0,
  output_tokens bigint DEFAULT 0,
  cost_usd double precision DEFAULT 0.0,
  cost_status text COLLATE "C",
  tool_calls bigint DEFAULT 0,
  tool_errors bigint DEFAULT 0,
  error text COLLATE "C",
  source text COLLATE "C" DEFAULT 'studio',
  last_seq bigint DEFAULT 0,
  parent_kind text COLLATE "C",                                          -- m0003
  extra_cost_usd double precision NOT NULL DEFAULT 0.0,      -- m0004
  usage_unknown_calls bigint NOT NULL DEFAULT 0,             -- m0007
  owner text COLLATE "C",                                                -- m0008
  label text COLLATE "C",                                                -- m0010
  trace_id text COLLATE "C",                                             -- m0012
  pinned_at double precision,                                -- m0015
  rowid bigint GENERATED ALWAYS AS IDENTITY,
  search tsvector GENERATED ALWAYS AS (runs_search_vector(prompt, response)) STORED
);
CREATE UNIQUE INDEX runs_rowid ON runs (rowid);
CREATE INDEX runs_search ON runs USING gin (search);

CREATE TABLE events (
  run_id text COLLATE "C" REFERENCES runs (id),
  seq bigint,
  type text COLLATE "C",
  at double precision,
  payload text COLLATE "C",
  PRIMARY KEY (run_id, seq)
);

CREATE TABLE messages (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  run_id text COLLATE "C" REFERENCES runs (id),
  seq bigint,
  role text COLLATE "C",
  content text COLLATE "C",
  tool_calls text COLLATE "C",
  tool_call_id text COLLATE "C",
  name text COLLATE "C",
  at double precision
);

CREATE TABLE tool_calls (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  run_id text COLLATE "C" REFERENCES runs (id),
  call_id text COLLATE "C",
  seq bigint,
  name text COLLATE "C",
  arguments text COLLATE "C",
  result text COLLATE "C",
  error text COLLATE "C",
  status text COLLATE "C",
  latency_ms double precision,
  cost_usd double precision,
  cost_lines text COLLATE "C",
  started_at double precision,
  ended_at double precision
);

CREATE TABLE spans (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  run_id text COLLATE "C" REFERENCES runs (id),
  span_id text COLLATE "C",
  parent_span_id text COLLATE "C",
  kind text COLLATE "C",
  name text COLLATE "C",
  start_at double precision,
  end_at double precision,
  status text COLLATE "C",
  input_tokens bigint,
  output_tokens bigint,
  cost_usd double precision,
  attributes text COLLATE "C",
  trace_id text COLLATE "C",                                             -- m0012
  span_kind text COLLATE "C",
  status_message text COLLATE "C",
  events text COLLATE "C",
  links text COLLATE "C",
  resource text COLLATE "C",
  scope text COLLATE "C"
);

CREATE INDEX idx_runs_started_at ON runs (started_at);
CREATE INDEX idx_runs_status_started_at ON runs (status, started_at);
CREATE INDEX idx_runs_session_id_started_at ON runs (session_id, started_at);
CREATE INDEX idx_runs_parent_run_id ON runs (parent_run_id);
CREATE INDEX idx_messages_run_id_seq ON messages (run_id, seq);
CREATE UNIQUE INDEX idx_tool_calls_run_id_call_id ON tool_calls (run_id, call_id);
CREATE UNIQUE INDEX idx_spans_run_id_span_id ON spans (run_id, span_id);  -- unique since m0012

-- ---------------------------------------------------------------------------
-- m0002 auth: API keys and login sessions.
-- ---------------------------------------------------------------------------

CREATE TABLE api_keys (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  name text COLLATE "C" NOT NULL,
  prefix text COLLATE "C",
  key_hash text COLLATE "C" NOT NULL,
  role text COLLATE "C" NOT NULL,
  created_at double precision NOT NULL,
  last_used_at double precision,
  revoked_at double precision
);
CREATE UNIQUE INDEX idx_api_keys_key_hash ON api_keys (key_hash);
CREATE UNIQUE INDEX idx_api_keys_name ON api_keys (name);

CREATE TABLE sessions (
  token_hash text COLLATE "C" PRIMARY KEY,
  key_id bigint REFERENCES api_keys (id),
  created_at double precision,
  expires_at double precision
);
CREATE INDEX idx_sessions_key_id ON sessions (key_id);

-- ---------------------------------------------------------------------------
-- m0003 replays, diffs, sessions of runs (run_sessions and its triggers below).
-- ---------------------------------------------------------------------------

CREATE INDEX idx_runs_model_started_at ON runs (model, started_at);
CREATE INDEX idx_runs_parent_run_id_started_at ON runs (parent_run_id, started_at);

CREATE TABLE diffs (
  id text COLLATE "C" PRIMARY KEY,
  run_a text COLLATE "C" NOT NULL REFERENCES runs (id),
  run_b text COLLATE "C" NOT NULL REFERENCES runs (id),
  kind text COLLATE "C" NOT NULL,
  status text COLLATE "C" NOT NULL,
  overrides text COLLATE "C",
  data text COLLATE "C",
  identical bigint,
  similarity double precision,
  created_at double precision NOT NULL,
  computed_at double precision
);
CREATE INDEX idx_diffs_run_a_created_at ON diffs (run_a, created_at);
CREATE INDEX idx_diffs_run_b_created_at ON diffs (run_b, created_at);

CREATE TABLE run_sessions (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  name text COLLATE "C" NOT NULL,
  created_at double precision,
  last_run_at double precision,
  runs bigint DEFAULT 0,
  finished bigint DEFAULT 0,
  failed bigint DEFAULT 0,
  input_tokens bigint DEFAULT 0,
  output_tokens bigint DEFAULT 0,
  cost_usd double precision DEFAULT 0.0
);
CREATE UNIQUE INDEX idx_run_sessions_name ON run_sessions (name);
CREATE INDEX idx_run_sessions_last_run_at ON run_sessions (last_run_at);

-- ---------------------------------------------------------------------------
-- m0004 integrations.
-- ---------------------------------------------------------------------------

CREATE INDEX idx_runs_ended_at ON runs (ended_at);

CREATE TABLE otlp_traces (
  trace_id text COLLATE "C" PRIMARY KEY,
  run_id text COLLATE "C" REFERENCES runs (id),
  service_name text COLLATE "C",
  root_span_id text COLLATE "C",
  messages_seen bigint DEFAULT 0,
  created_at double precision,
  conversation_id text COLLATE "C"                                       -- m0012
);
CREATE INDEX idx_otlp_traces_run_id ON otlp_traces (run_id);

CREATE TABLE price_overrides (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  vendor text COLLATE "C" NOT NULL,
  item text COLLATE "C" NOT NULL,
  field text COLLATE "C" NOT NULL,
  value double precision NOT NULL,
  effective_from text COLLATE "C" NOT NULL,
  source text COLLATE "C",
  note text COLLATE "C",
  created_at double precision
);
CREATE INDEX idx_price_overrides_vendor_item_field_effective_from
  ON price_overrides (vendor, item, field, effective_from);

CREATE TABLE integration_errors (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  integration text COLLATE "C",
  action text COLLATE "C",
  subject text COLLATE "C",
  attempt bigint,
  final bigint,
  error text COLLATE "C",
  at double precision
);
CREATE INDEX idx_integration_errors_subject_at ON integration_errors (subject, at);
CREATE INDEX idx_integration_errors_at ON integration_errors (at);

CREATE TABLE exports (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  kind text COLLATE "C" NOT NULL,
  status text COLLATE "C" NOT NULL,
  progress double precision DEFAULT 0.0,
  stage text COLLATE "C",
  params text COLLATE "C",
  result text COLLATE "C",
  error text COLLATE "C",
  created_by text COLLATE "C",
  created_at double precision NOT NULL,
  started_at double precision,
  finished_at double precision
);
CREATE INDEX idx_exports_created_at ON exports (created_at);

CREATE TABLE finetune_jobs (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  export_id bigint,
  status text COLLATE "C" NOT NULL,
  base_model text COLLATE "C" NOT NULL,
  file_path text COLLATE "C",
  mistral_file_id text COLLATE "C",
  mistral_job_id text COLLATE "C",
  fine_tuned_model text COLLATE "C",
  hyperparameters text COLLATE "C",
  detail text COLLATE "C",
  error text COLLATE "C",
  created_by text COLLATE "C",
  created_at double precision NOT NULL,
  updated_at double precision,
  finished_at double precision
);
CREATE INDEX idx_finetune_jobs_created_at ON finetune_jobs (created_at);
CREATE INDEX idx_finetune_jobs_status ON finetune_jobs (status);

CREATE TABLE registered_models (
  name text COLLATE "C" PRIMARY KEY,
  provider text COLLATE "C",
  base_model text COLLATE "C",
  finetune_job_id bigint,
  created_at double precision
);

CREATE TABLE alert_rules (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  name text COLLATE "C" NOT NULL,
  kind text COLLATE "C" NOT NULL,
  threshold_usd double precision,
  window_s double precision,
  multiplier double precision,
  baseline_runs bigint,
  webhook_url text COLLATE "C",
  email_to text COLLATE "C",
  enabled bigint DEFAULT 1,
  created_at double precision NOT NULL
);

CREATE TABLE alerts (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  rule_id bigint REFERENCES alert_rules (id),
  fingerprint text COLLATE "C",
  run_id text COLLATE "C",
  value_usd double precision,
  threshold_usd double precision,
  message text COLLATE "C",
  created_at double precision,
  resolved_at double precision
);
CREATE UNIQUE INDEX idx_alerts_fingerprint ON alerts (fingerprint);
CREATE INDEX idx_alerts_created_at ON alerts (created_at);
CREATE INDEX idx_alerts_rule_id_resolved_at ON alerts (rule_id, resolved_at);

CREATE TABLE alert_deliveries (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  alert_id bigint REFERENCES alerts (id),
  channel text COLLATE "C",
  target text COLLATE "C",
  status text COLLATE "C",
  attempts bigint DEFAULT 0,
  error text COLLATE "C",
  sent_at double precision
);
CREATE INDEX idx_alert_deliveries_alert_id ON alert_deliveries (alert_id);

-- ---------------------------------------------------------------------------
-- m0005 evals: memory snapshots, datasets, experiments, evaluations.
-- ---------------------------------------------------------------------------

CREATE TABLE memory_snapshots (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  run_id text COLLATE "C" NOT NULL REFERENCES runs (id),
  seq bigint,
  step bigint NOT NULL,
  label text COLLATE "C",
  messages text COLLATE "C",
  scratch text COLLATE "C",
  message_count bigint,
  at double precision,
  kept bigint,                                               -- m0014
  scratch_removed text COLLATE "C",
  refs text COLLATE "C"
);
CREATE UNIQUE INDEX idx_memory_snapshots_run_id_step ON memory_snapshots (run_id, step);

CREATE TABLE datasets (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  name text COLLATE "C" NOT NULL,
  description text COLLATE "C",
  source text COLLATE "C",
  item_count bigint DEFAULT 0,
  created_by text COLLATE "C",
  created_at double precision NOT NULL
);
CREATE INDEX idx_datasets_created_at ON datasets (created_at);

CREATE TABLE dataset_items (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  dataset_id bigint NOT NULL REFERENCES datasets (id),
  idx bigint NOT NULL,
  input text COLLATE "C" NOT NULL,
  expected text COLLATE "C",
  metadata text COLLATE "C"
);
CREATE UNIQUE INDEX idx_dataset_items_dataset_id_idx ON dataset_items (dataset_id, idx);

CREATE TABLE experiments (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  name text COLLATE "C",
  dataset_id bigint NOT NULL REFERENCES datasets (id),
  status text COLLATE "C" NOT NULL,
  config text COLLATE "C",
  evaluators text COLLATE "C",
  concurrency bigint,
  total bigint DEFAULT 0,
  done bigint DEFAULT 0,
  failed bigint DEFAULT 0,
  passed bigint DEFAULT 0,
  scored bigint DEFAULT 0,
  cost_usd double precision DEFAULT 0.0,
  error text COLLATE "C",
  created_by text COLLATE "C",
  created_at double precision NOT NULL,
  started_at double precision,
  finished_at double precision
);
CREATE INDEX idx_experiments_created_at ON experiments (created_at);
CREATE INDEX idx_experiments_dataset_id ON experiments (dataset_id);

CREATE TABLE experiment_items (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  experiment_id bigint NOT NULL REFERENCES experiments (id),
  item_id bigint NOT NULL REFERENCES dataset_items (id),
  idx bigint NOT NULL,
  run_id text COLLATE "C",
  status text COLLATE "C" NOT NULL,
  output text COLLATE "C",
  error text COLLATE "C",
  latency_ms double precision,
  cost_usd double precision,
  passed bigint
);
CREATE UNIQUE INDEX idx_experiment_items_experiment_id_idx ON experiment_items (experiment_id, idx);

CREATE TABLE evaluations (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  run_id text COLLATE "C" NOT NULL REFERENCES runs (id),
  metric text COLLATE "C" NOT NULL,
  value double precision,
  label text COLLATE "C",
  comment text COLLATE "C",
  source text COLLATE "C" NOT NULL,
  passed bigint,
  created_by text COLLATE "C",
  created_at double precision NOT NULL,
  experiment_id bigint REFERENCES experiments (id),
  details text COLLATE "C",
  pinned_at double precision                                 -- m0015
);
CREATE INDEX idx_evaluations_run_id_created_at ON evaluations (run_id, created_at);
CREATE INDEX idx_evaluations_created_at ON evaluations (created_at);
CREATE INDEX idx_evaluations_metric_created_at ON evaluations (metric, created_at);
CREATE INDEX idx_evaluations_experiment_id_run_id ON evaluations (experiment_id, run_id);

-- ---------------------------------------------------------------------------
-- m0006, m0007 the dashboard's covering index (with usage_unknown_calls).
-- ---------------------------------------------------------------------------

CREATE INDEX runs_totals_cover_usage ON runs (status, cost_status, input_tokens,
  output_tokens, cost_usd, extra_cost_usd, latency_ms, usage_unknown_calls);

-- ---------------------------------------------------------------------------
-- m0008 processes and run owners.
-- ---------------------------------------------------------------------------

CREATE TABLE processes (
  id text COLLATE "C" PRIMARY KEY,
  pid bigint NOT NULL,
  host text COLLATE "C" NOT NULL,
  kind text COLLATE "C" NOT NULL,
  url text COLLATE "C",
  started_at double precision NOT NULL,
  heartbeat_at double precision NOT NULL
);
CREATE INDEX processes_heartbeat ON processes (heartbeat_at);
CREATE INDEX runs_unfinished_owner ON runs (owner) WHERE status IN ('queued', 'running');

-- ---------------------------------------------------------------------------
-- m0009 failure meaning. The expression is SQLite's; on PostgreSQL it is a
-- boolean, so a query uses this index when it says `(runs.status in (...))`
-- (or `= true`), not `= 1`.
-- ---------------------------------------------------------------------------

CREATE INDEX runs_failed_like ON runs ((status IN ('failed', 'interrupted')), started_at, status);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- ---------------------------------------------------------------------------
-- m0011 storage probe, m0012 lossless spans, OTLP logs and metrics.
-- ---------------------------------------------------------------------------

CREATE TABLE storage_probe (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  probed_at double precision
);

CREATE INDEX idx_runs_trace_id ON runs (trace_id);
CREATE INDEX idx_otlp_traces_conversation_id ON otlp_traces (conversation_id);

CREATE TABLE otlp_logs (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  trace_id text COLLATE "C" DEFAULT '',
  span_id text COLLATE "C" DEFAULT '',
  run_id text COLLATE "C",
  at double precision,
  observed_at double precision,
  severity_number bigint,
  severity_text text COLLATE "C",
  event_name text COLLATE "C",
  body text COLLATE "C",
  attributes text COLLATE "C",
  resource text COLLATE "C",
  scope text COLLATE "C",
  applied bigint DEFAULT 0,
  received_at double precision NOT NULL
);
CREATE INDEX idx_otlp_logs_trace_id_span_id ON otlp_logs (trace_id, span_id);
CREATE INDEX idx_otlp_logs_run_id_at ON otlp_logs (run_id, at);
CREATE INDEX idx_otlp_logs_received_at ON otlp_logs (received_at);

CREATE TABLE otlp_metrics (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  name text COLLATE "C" NOT NULL,
  unit text COLLATE "C",
  kind text COLLATE "C",
  start_at double precision,
  at double precision,
  attributes text COLLATE "C",
  data text COLLATE "C",
  resource text COLLATE "C",
  scope text COLLATE "C",
  received_at double precision NOT NULL
);
CREATE INDEX idx_otlp_metrics_name_at ON otlp_metrics (name, at);

-- ---------------------------------------------------------------------------
-- m0015 retention (pinned_at columns are in the tables above).
-- ---------------------------------------------------------------------------

CREATE INDEX experiment_items_run ON experiment_items (run_id);
CREATE INDEX dataset_items_run ON dataset_items
  ((CASE WHEN json_valid(metadata) THEN json_extract(metadata, '$.run_id') END));
CREATE INDEX alerts_run ON alerts (run_id);
CREATE INDEX otlp_metrics_received ON otlp_metrics (received_at);

-- ---------------------------------------------------------------------------
-- m0013 rollup tables.
-- ---------------------------------------------------------------------------

CREATE TABLE rollup_runs_hour (
  period bigint NOT NULL, model text COLLATE "C" NOT NULL,
  runs bigint NOT NULL, succeeded bigint NOT NULL, failed bigint NOT NULL,
  ended bigint NOT NULL, input_tokens double precision NOT NULL,
  output_tokens double precision NOT NULL, cost_usd double precision,
  latency_n bigint NOT NULL, latency_sum double precision,
  active bigint NOT NULL, extra_cost_usd double precision, unpriced bigint NOT NULL,
  usage_unknown bigint NOT NULL,
  PRIMARY KEY (period, model)
);
CREATE TABLE rollup_session_hour (
  session text COLLATE "C" NOT NULL, period bigint NOT NULL, model text COLLATE "C" NOT NULL,
  runs bigint NOT NULL, succeeded bigint NOT NULL, failed bigint NOT NULL,
  ended bigint NOT NULL, input_tokens double precision NOT NULL,
  output_tokens double precision NOT NULL, cost_usd double precision,
  latency_n bigint NOT NULL, latency_sum double precision,
  PRIMARY KEY (session, period, model)
);
CREATE INDEX rollup_session_hour_period ON rollup_session_hour (period);
CREATE TABLE rollup_latency_hour (
  period bigint NOT NULL, bucket bigint NOT NULL, runs bigint NOT NULL,
  latency_sum double precision,
  PRIMARY KEY (period, bucket)
);
CREATE TABLE rollup_evals_hour (
  period bigint NOT NULL, metric text COLLATE "C" NOT NULL, model text COLLATE "C" NOT NULL,
  session text COLLATE "C" NOT NULL,
  n bigint NOT NULL, judged bigint NOT NULL, passed bigint NOT NULL, value_n bigint NOT NULL,
  value_sum double precision,
  PRIMARY KEY (period, metric, model, session)
);

CREATE TABLE rollup_runs_day (LIKE rollup_runs_hour INCLUDING ALL);
CREATE TABLE rollup_session_day (
  session text COLLATE "C" NOT NULL, period bigint NOT NULL, model text COLLATE "C" NOT NULL,
  runs bigint NOT NULL, succeeded bigint NOT NULL, failed bigint NOT NULL,
  ended bigint NOT NULL, input_tokens double precision NOT NULL,
  output_tokens double precision NOT NULL, cost_usd double precision,
  latency_n bigint NOT NULL, latency_sum double precision,
  PRIMARY KEY (session, period, model)
);
CREATE INDEX rollup_session_day_period ON rollup_session_day (period);
CREATE TABLE rollup_latency_day (LIKE rollup_latency_hour INCLUDING ALL);
CREATE TABLE rollup_evals_day (LIKE rollup_evals_hour INCLUDING ALL);

-- ---------------------------------------------------------------------------
-- Triggers, with the effect of SQLite's row for row.
--
-- Translation notes, for every function below:
-- - SQLite's `(x IN (...))` is 0/1: here `(...)::int`.
-- - SQLite stores NULL where a REAL operation gives NaN (inf - inf): the
--   nullable sums are wrapped in nullif(..., 'NaN') so they become NULL too,
--   and coalesce() then reads them as 0 as in SQLite.
-- - Sums keep SQLite's order of operations ((current + new) - old), so the
--   floating-point results are the same bits.
-- - SQLite runs a row trigger right after its row; PostgreSQL runs AFTER row
--   triggers at the end of the statement. The results are the same: no
--   trigger here reads a table its own statement writes.
-- ---------------------------------------------------------------------------

-- m0003/m0009: running totals per session name; "failed" counts failed and
-- interrupted runs, "finished" every ended run.
CREATE FUNCTION run_sessions_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- INSERT OR IGNORE; the NOT EXISTS spares a sequence value when the row is there.
  INSERT INTO run_sessions (name, created_at, last_run_at)
    SELECT NEW.session_id, NEW.started_at, NEW.started_at
    WHERE NOT EXISTS (SELECT 1 FROM run_sessions WHERE name = NEW.session_id)
    ON CONFLICT DO NOTHING;
  UPDATE run_sessions SET
    runs = runs + 1,
    last_run_at = greatest(coalesce(last_run_at, 0), NEW.started_at),
    input_tokens = input_tokens + coalesce(NEW.input_tokens, 0),
    output_tokens = output_tokens + coalesce(NEW.output_tokens, 0),
    cost_usd = nullif(cost_usd + coalesce(NEW.cost_usd, 0), 'NaN'),
    finished = finished + (NEW.status IN ('succeeded', 'failed', 'interrupted'))::int,
    failed = failed + (NEW.status IN ('failed', 'interrupted'))::int
  WHERE name = NEW.session_id;
  RETURN NULL;
END
$$;
CREATE TRIGGER run_sessions_insert AFTER INSERT ON runs
FOR EACH ROW WHEN (NEW.session_id IS NOT NULL) EXECUTE FUNCTION run_sessions_insert();

CREATE FUNCTION run_sessions_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE run_sessions SET
    input_tokens = input_tokens + coalesce(NEW.input_tokens, 0) - coalesce(OLD.input_tokens, 0),
    output_tokens = output_tokens + coalesce(NEW.output_tokens, 0) - coalesce(OLD.output_tokens, 0),
    cost_usd = nullif(cost_usd + coalesce(NEW.cost_usd, 0) - coalesce(OLD.cost_usd, 0), 'NaN'),
    finished = finished + (NEW.status IN ('succeeded', 'failed', 'interrupted'))::int
      - (OLD.status IN ('succeeded', 'failed', 'interrupted'))::int,
    failed = failed + (NEW.status IN ('failed', 'interrupted'))::int
      - (OLD.status IN ('failed', 'interrupted'))::int
  WHERE name = NEW.session_id;
  RETURN NULL;
END
$$;
CREATE TRIGGER run_sessions_update
AFTER UPDATE OF input_tokens, output_tokens, cost_usd, status ON runs
FOR EACH ROW WHEN (NEW.session_id IS NOT NULL) EXECUTE FUNCTION run_sessions_update();

CREATE FUNCTION run_sessions_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE run_sessions SET
    runs = runs - 1,
    input_tokens = input_tokens - coalesce(OLD.input_tokens, 0),
    output_tokens = output_tokens - coalesce(OLD.output_tokens, 0),
    cost_usd = nullif(cost_usd - coalesce(OLD.cost_usd, 0), 'NaN'),
    finished = finished - (OLD.status IN ('succeeded', 'failed', 'interrupted'))::int,
    failed = failed - (OLD.status IN ('failed', 'interrupted'))::int
  WHERE name = OLD.session_id;
  RETURN NULL;
END
$$;
CREATE TRIGGER run_sessions_delete AFTER DELETE ON runs
FOR EACH ROW WHEN (OLD.session_id IS NOT NULL) EXECUTE FUNCTION run_sessions_delete();

-- m0013 rollups. The pieces each trigger is made of, as functions of a run row
-- (`sign` 1 adds the row's contribution, -1 takes it away), then the triggers.

-- Add or take away run r in rollup_runs_* and rollup_session_* (m0013 _upsert).
CREATE FUNCTION rollup_runs_add(r runs, sign integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO rollup_runs_hour AS t (period, model, runs, succeeded, failed, ended,
    input_tokens, output_tokens, cost_usd, latency_n, latency_sum, active, extra_cost_usd,
    unpriced, usage_unknown)
  VALUES (rollup_period(r.started_at, 3600), coalesce(r.model, ''), sign,
    sign * (r.status = 'succeeded')::int,
    sign * (r.status IN ('failed', 'interrupted'))::int,
    sign * (r.status IN ('succeeded', 'failed', 'interrupted'))::int,
    sign * coalesce(r.input_tokens, 0), sign * coalesce(r.output_tokens, 0),
    sign * coalesce(r.cost_usd, 0), sign * (r.latency_ms IS NOT NULL)::int,
    sign * coalesce(r.latency_ms, 0), sign * (r.status IN ('queued', 'running'))::int,
    sign * coalesce(r.extra_cost_usd, 0),
    sign * coalesce((r.cost_status IN ('unpriced', 'partial'))::int, 0),
    sign * (coalesce(r.usage_unknown_calls, 0) > 0)::int)
  ON CONFLICT (period, model) DO UPDATE SET
    runs = t.runs + excluded.runs, succeeded = t.succeeded + excluded.succeeded,
    failed = t.failed + excluded.failed, ended = t.ended + excluded.ended,
    input_tokens = t.input_tokens + excluded.input_tokens,
    output_tokens = t.output_tokens + excluded.output_tokens,
    cost_usd = nullif(coalesce(t.cost_usd, 0) + excluded.cost_usd, 'NaN'),
    latency_n = t.latency_n + excluded.latency_n,
    latency_sum = nullif(coalesce(t.latency_sum, 0) + excluded.latency_sum, 'NaN'),
    active = t.active + excluded.active,
    extra_cost_usd = nullif(coalesce(t.extra_cost_usd, 0) + excluded.extra_cost_usd, 'NaN'),
    unpriced = t.unpriced + excluded.unpriced,
    usage_unknown = t.usage_unknown + excluded.usage_unknown;

  INSERT INTO rollup_runs_day AS t (period, model, runs, succeeded, failed, ended,
    input_tokens, output_tokens, cost_usd, latency_n, latency_sum, active, extra_cost_usd,
    unpriced, usage_unknown)
  VALUES (rollup_period(r.started_at, 86400), coalesce(r.model, ''), sign,
    sign * (r.status = 'succeeded')::int,
    sign * (r.status IN ('failed', 'interrupted'))::int,
    sign * (r.status IN ('succeeded', 'failed', 'interrupted'))::int,
    sign * coalesce(r.input_tokens, 0), sign * coalesce(r.output_tokens, 0),
    sign * coalesce(r.cost_usd, 0), sign * (r.latency_ms IS NOT NULL)::int,
    sign * coalesce(r.latency_ms, 0), sign * (r.status IN ('queued', 'running'))::int,
    sign * coalesce(r.extra_cost_usd, 0),
    sign * coalesce((r.cost_status IN ('unpriced', 'partial'))::int, 0),
    sign * (coalesce(r.usage_unknown_calls, 0) > 0)::int)
  ON CONFLICT (period, model) DO UPDATE SET
    runs = t.runs + excluded.runs, succeeded = t.succeeded + excluded.succeeded,
    failed = t.failed + excluded.failed, ended = t.ended + excluded.ended,
    input_tokens = t.input_tokens + excluded.input_tokens,
    output_tokens = t.output_tokens + excluded.output_tokens,
    cost_usd = nullif(coalesce(t.cost_usd, 0) + excluded.cost_usd, 'NaN'),
    latency_n = t.latency_n + excluded.latency_n,
    latency_sum = nullif(coalesce(t.latency_sum, 0) + excluded.latency_sum, 'NaN'),
    active = t.active + excluded.active,
    extra_cost_usd = nullif(coalesce(t.extra_cost_usd, 0) + excluded.extra_cost_usd, 'NaN'),
    unpriced = t.unpriced + excluded.unpriced,
    usage_unknown = t.usage_unknown + excluded.usage_unknown;

  INSERT INTO rollup_session_hour AS t (session, period, model, runs, succeeded, failed,
    ended, input_tokens, output_tokens, cost_usd, latency_n, latency_sum)
  VALUES (coalesce(r.session_id, ''), rollup_period(r.started_at, 3600),
    coalesce(r.model, ''), sign,
    sign * (r.status = 'succeeded')::int,
    sign * (r.status IN ('failed', 'interrupted'))::int,
    sign * (r.status IN ('succeeded', 'failed', 'interrupted'))::int,
    sign * coalesce(r.input_tokens, 0), sign * coalesce(r.output_tokens, 0),
    sign * coalesce(r.cost_usd, 0), sign * (r.latency_ms IS NOT NULL)::int,
    sign * coalesce(r.latency_ms, 0))
  ON CONFLICT (session, period, model) DO UPDATE SET
    runs = t.runs + excluded.runs, succeeded = t.succeeded + excluded.succeeded,
    failed = t.failed + excluded.failed, ended = t.ended + excluded.ended,
    input_tokens = t.input_tokens + excluded.input_tokens,
    output_tokens = t.output_tokens + excluded.output_tokens,
    cost_usd = nullif(coalesce(t.cost_usd, 0) + excluded.cost_usd, 'NaN'),
    latency_n = t.latency_n + excluded.latency_n,
    latency_sum = nullif(coalesce(t.latency_sum, 0) + excluded.latency_sum, 'NaN');

  INSERT INTO rollup_session_day AS t (session, period, model, runs, succeeded, failed,
    ended, input_tokens, output_tokens, cost_usd, latency_n, latency_sum)
  VALUES (coalesce(r.session_id, ''), rollup_period(r.started_at, 86400),
    coalesce(r.model, ''), sign,
    sign * (r.status = 'succeeded')::int,
    sign * (r.status IN ('failed', 'interrupted'))::int,
    sign * (r.status IN ('succeeded', 'failed', 'interrupted'))::int,
    sign * coalesce(r.input_tokens, 0), sign * coalesce(r.output_tokens, 0),
    sign * coalesce(r.cost_usd, 0), sign * (r.latency_ms IS NOT NULL)::int,
    sign * coalesce(r.latency_ms, 0))
  ON CONFLICT (session, period, model) DO UPDATE SET
    runs = t.runs + excluded.runs, succeeded = t.succeeded + excluded.succeeded,
    failed = t.failed + excluded.failed, ended = t.ended + excluded.ended,
    input_tokens = t.input_tokens + excluded.input_tokens,
    output_tokens = t.output_tokens + excluded.output_tokens,
    cost_usd = nullif(coalesce(t.cost_usd, 0) + excluded.cost_usd, 'NaN'),
    latency_n = t.latency_n + excluded.latency_n,
    latency_sum = nullif(coalesce(t.latency_sum, 0) + excluded.latency_sum, 'NaN');
END
$$;

-- A run that stayed in the same rows: add new minus old (m0013 _delta).
CREATE FUNCTION rollup_runs_delta(o runs, n runs) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  UPDATE rollup_runs_hour SET
    succeeded = succeeded + (n.status = 'succeeded')::int - (o.status = 'succeeded')::int,
    failed = failed + (n.status IN ('failed', 'interrupted'))::int
      - (o.status IN ('failed', 'interrupted'))::int,
    ended = ended + (n.status IN ('succeeded', 'failed', 'interrupted'))::int
      - (o.status IN ('succeeded', 'failed', 'interrupted'))::int,
    input_tokens = input_tokens + coalesce(n.input_tokens, 0) - coalesce(o.input_tokens, 0),
    output_tokens = output_tokens + coalesce(n.output_tokens, 0) - coalesce(o.output_tokens, 0),
    cost_usd = nullif(coalesce(cost_usd, 0) + coalesce(n.cost_usd, 0)
      - coalesce(o.cost_usd, 0), 'NaN'),
    latency_n = latency_n + (n.latency_ms IS NOT NULL)::int - (o.latency_ms IS NOT NULL)::int,
    latency_sum = nullif(coalesce(latency_sum, 0) + coalesce(n.latency_ms, 0)
      - coalesce(o.latency_ms, 0), 'NaN'),
    active = active + (n.status IN ('queued', 'running'))::int
      - (o.status IN ('queued', 'running'))::int,
    extra_cost_usd = nullif(coalesce(extra_cost_usd, 0) + coalesce(n.extra_cost_usd, 0)
      - coalesce(o.extra_cost_usd, 0), 'NaN'),
    unpriced = unpriced + coalesce((n.cost_status IN ('unpriced', 'partial'))::int, 0)
      - coalesce((o.cost_status IN ('unpriced', 'partial'))::int, 0),
    usage_unknown = usage_unknown + (coalesce(n.usage_unknown_calls, 0) > 0)::int
      - (coalesce(o.usage_unknown_calls, 0) > 0)::int
  WHERE period = rollup_period(n.started_at, 3600) AND model = coalesce(n.model, '');

  UPDATE rollup_runs_day SET
    succeeded = succeeded + (n.status = 'succeeded')::int - (o.status = 'succeeded')::int,
    failed = failed + (n.status IN ('failed', 'interrupted'))::int
      - (o.status IN ('failed', 'interrupted'))::int,
    ended = ended + (n.status IN ('succeeded', 'failed', 'interrupted'))::int
      - (o.status IN ('succeeded', 'failed', 'interrupted'))::int,
    input_tokens = input_tokens + coalesce(n.input_tokens, 0) - coalesce(o.input_tokens, 0),
    output_tokens = output_tokens + coalesce(n.output_tokens, 0) - coalesce(o.output_tokens, 0),
    cost_usd = nullif(coalesce(cost_usd, 0) + coalesce(n.cost_usd, 0)
      - coalesce(o.cost_usd, 0), 'NaN'),
    latency_n = latency_n + (n.latency_ms IS NOT NULL)::int - (o.latency_ms IS NOT NULL)::int,
    latency_sum = nullif(coalesce(latency_sum, 0) + coalesce(n.latency_ms, 0)
      - coalesce(o.latency_ms, 0), 'NaN'),
    active = active + (n.status IN ('queued', 'running'))::int
      - (o.status IN ('queued', 'running'))::int,
    extra_cost_usd = nullif(coalesce(extra_cost_usd, 0) + coalesce(n.extra_cost_usd, 0)
      - coalesce(o.extra_cost_usd, 0), 'NaN'),
    unpriced = unpriced + coalesce((n.cost_status IN ('unpriced', 'partial'))::int, 0)
      - coalesce((o.cost_status IN ('unpriced', 'partial'))::int, 0),
    usage_unknown = usage_unknown + (coalesce(n.usage_unknown_calls, 0) > 0)::int
      - (coalesce(o.usage_unknown_calls, 0) > 0)::int
  WHERE period = rollup_period(n.started_at, 86400) AND model = coalesce(n.model, '');

  UPDATE rollup_session_hour SET
    succeeded = succeeded + (n.status = 'succeeded')::int - (o.status = 'succeeded')::int,
    failed = failed + (n.status IN ('failed', 'interrupted'))::int
      - (o.status IN ('failed', 'interrupted'))::int,
    ended = ended + (n.status IN ('succeeded', 'failed', 'interrupted'))::int
      - (o.status IN ('succeeded', 'failed', 'interrupted'))::int,
    input_tokens = input_tokens + coalesce(n.input_tokens, 0) - coalesce(o.input_tokens, 0),
    output_tokens = output_tokens + coalesce(n.output_tokens, 0) - coalesce(o.output_tokens, 0),
    cost_usd = nullif(coalesce(cost_usd, 0) + coalesce(n.cost_usd, 0)
      - coalesce(o.cost_usd, 0), 'NaN'),
    latency_n = latency_n + (n.latency_ms IS NOT NULL)::int - (o.latency_ms IS NOT NULL)::int,
    latency_sum = nullif(coalesce(latency_sum, 0) + coalesce(n.latency_ms, 0)
      - coalesce(o.latency_ms, 0), 'NaN')
  WHERE session = coalesce(n.session_id, '') AND period = rollup_period(n.started_at, 3600)
    AND model = coalesce(n.model, '');

  UPDATE rollup_session_day SET
    succeeded = succeeded + (n.status = 'succeeded')::int - (o.status = 'succeeded')::int,
    failed = failed + (n.status IN ('failed', 'interrupted'))::int
      - (o.status IN ('failed', 'interrupted'))::int,
    ended = ended + (n.status IN ('succeeded', 'failed', 'interrupted'))::int
      - (o.status IN ('succeeded', 'failed', 'interrupted'))::int,
    input_tokens = input_tokens + coalesce(n.input_tokens, 0) - coalesce(o.input_tokens, 0),
    output_tokens = output_tokens + coalesce(n.output_tokens, 0) - coalesce(o.output_tokens, 0),
    cost_usd = nullif(coalesce(cost_usd, 0) + coalesce(n.cost_usd, 0)
      - coalesce(o.cost_usd, 0), 'NaN'),
    latency_n = latency_n + (n.latency_ms IS NOT NULL)::int - (o.latency_ms IS NOT NULL)::int,
    latency_sum = nullif(coalesce(latency_sum, 0) + coalesce(n.latency_ms, 0)
      - coalesce(o.latency_ms, 0), 'NaN')
  WHERE session = coalesce(n.session_id, '') AND period = rollup_period(n.started_at, 86400)
    AND model = coalesce(n.model, '');
END
$$;

-- Delete run r's old rows if nothing is left in them (m0013 _prune).
CREATE FUNCTION rollup_runs_prune(r runs) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM rollup_runs_hour WHERE period = rollup_period(r.started_at, 3600)
    AND model = coalesce(r.model, '') AND runs = 0;
  DELETE FROM rollup_runs_day WHERE period = rollup_period(r.started_at, 86400)
    AND model = coalesce(r.model, '') AND runs = 0;
  DELETE FROM rollup_session_hour WHERE session = coalesce(r.session_id, '')
    AND period = rollup_period(r.started_at, 3600) AND model = coalesce(r.model, '')
    AND runs = 0;
  DELETE FROM rollup_session_day WHERE session = coalesce(r.session_id, '')
    AND period = rollup_period(r.started_at, 86400) AND model = coalesce(r.model, '')
    AND runs = 0;
END
$$;

-- Add or take away run r's latency (nothing when it has none; m0013 _latency).
CREATE FUNCTION rollup_latency_add(r runs, sign integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF r.latency_ms IS NULL THEN
    RETURN;
  END IF;
  INSERT INTO rollup_latency_hour AS t (period, bucket, runs, latency_sum)
  VALUES (rollup_period(r.started_at, 3600), rollup_latency_bucket(r.latency_ms), sign,
    sign * r.latency_ms)
  ON CONFLICT (period, bucket) DO UPDATE SET runs = t.runs + excluded.runs,
    latency_sum = nullif(coalesce(t.latency_sum, 0) + excluded.latency_sum, 'NaN');
  INSERT INTO rollup_latency_day AS t (period, bucket, runs, latency_sum)
  VALUES (rollup_period(r.started_at, 86400), rollup_latency_bucket(r.latency_ms), sign,
    sign * r.latency_ms)
  ON CONFLICT (period, bucket) DO UPDATE SET runs = t.runs + excluded.runs,
    latency_sum = nullif(coalesce(t.latency_sum, 0) + excluded.latency_sum, 'NaN');
END
$$;

CREATE FUNCTION rollup_latency_prune(r runs) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM rollup_latency_hour WHERE period = rollup_period(r.started_at, 3600)
    AND bucket = rollup_latency_bucket(r.latency_ms) AND runs = 0;
  DELETE FROM rollup_latency_day WHERE period = rollup_period(r.started_at, 86400)
    AND bucket = rollup_latency_bucket(r.latency_ms) AND runs = 0;
END
$$;

-- Move run r's evaluations in or out of rollup_evals_* under r's model and
-- session (m0013 _evals_of_run). sum() of bigint is numeric here: the insert
-- casts it back.
CREATE FUNCTION rollup_evals_of_run_add(r runs, sign integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO rollup_evals_hour AS t (period, metric, model, session, n, judged, passed,
    value_n, value_sum)
  SELECT rollup_period(ev.created_at, 3600), ev.metric, coalesce(r.model, ''),
    coalesce(r.session_id, ''), sign * count(*), sign * count(ev.passed),
    sign * coalesce(sum(ev.passed), 0), sign * count(ev.value),
    sign * coalesce(sum(ev.value), 0)
  FROM evaluations ev WHERE ev.run_id = r.id GROUP BY 1, 2
  ON CONFLICT (period, metric, model, session) DO UPDATE SET
    n = t.n + excluded.n, judged = t.judged + excluded.judged,
    passed = t.passed + excluded.passed, value_n = t.value_n + excluded.value_n,
    value_sum = nullif(coalesce(t.value_sum, 0) + excluded.value_sum, 'NaN');
  INSERT INTO rollup_evals_day AS t (period, metric, model, session, n, judged, passed,
    value_n, value_sum)
  SELECT rollup_period(ev.created_at, 86400), ev.metric, coalesce(r.model, ''),
    coalesce(r.session_id, ''), sign * count(*), sign * count(ev.passed),
    sign * coalesce(sum(ev.passed), 0), sign * count(ev.value),
    sign * coalesce(sum(ev.value), 0)
  FROM evaluations ev WHERE ev.run_id = r.id GROUP BY 1, 2
  ON CONFLICT (period, metric, model, session) DO UPDATE SET
    n = t.n + excluded.n, judged = t.judged + excluded.judged,
    passed = t.passed + excluded.passed, value_n = t.value_n + excluded.value_n,
    value_sum = nullif(coalesce(t.value_sum, 0) + excluded.value_sum, 'NaN');
END
$$;

CREATE FUNCTION rollup_evals_of_run_prune(r runs) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM rollup_evals_hour WHERE n = 0 AND period IN
    (SELECT rollup_period(created_at, 3600) FROM evaluations WHERE run_id = r.id)
    AND model = coalesce(r.model, '') AND session = coalesce(r.session_id, '');
  DELETE FROM rollup_evals_day WHERE n = 0 AND period IN
    (SELECT rollup_period(created_at, 86400) FROM evaluations WHERE run_id = r.id)
    AND model = coalesce(r.model, '') AND session = coalesce(r.session_id, '');
END
$$;

-- Add or take away one evaluation, under its run's model and session (nothing
-- when the run is gone; m0013 _evaluation).
CREATE FUNCTION rollup_evaluation_add(e evaluations, sign integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO rollup_evals_hour AS t (period, metric, model, session, n, judged, passed,
    value_n, value_sum)
  SELECT rollup_period(e.created_at, 3600), e.metric, coalesce(run.model, ''),
    coalesce(run.session_id, ''), sign, sign * (e.passed IS NOT NULL)::int,
    sign * coalesce(e.passed, 0), sign * (e.value IS NOT NULL)::int,
    sign * coalesce(e.value, 0)
  FROM runs run WHERE run.id = e.run_id
  ON CONFLICT (period, metric, model, session) DO UPDATE SET
    n = t.n + excluded.n, judged = t.judged + excluded.judged,
    passed = t.passed + excluded.passed, value_n = t.value_n + excluded.value_n,
    value_sum = nullif(coalesce(t.value_sum, 0) + excluded.value_sum, 'NaN');
  INSERT INTO rollup_evals_day AS t (period, metric, model, session, n, judged, passed,
    value_n, value_sum)
  SELECT rollup_period(e.created_at, 86400), e.metric, coalesce(run.model, ''),
    coalesce(run.session_id, ''), sign, sign * (e.passed IS NOT NULL)::int,
    sign * coalesce(e.passed, 0), sign * (e.value IS NOT NULL)::int,
    sign * coalesce(e.value, 0)
  FROM runs run WHERE run.id = e.run_id
  ON CONFLICT (period, metric, model, session) DO UPDATE SET
    n = t.n + excluded.n, judged = t.judged + excluded.judged,
    passed = t.passed + excluded.passed, value_n = t.value_n + excluded.value_n,
    value_sum = nullif(coalesce(t.value_sum, 0) + excluded.value_sum, 'NaN');
END
$$;

-- The triggers themselves, named, ordered and conditioned as in m0013. The
-- UPDATE ones name their columns and check that a measure changed: the
-- recorder updates runs.last_seq on every event, and that must cost nothing.

CREATE FUNCTION rollup_runs_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM rollup_runs_add(NEW, 1);
  PERFORM rollup_latency_add(NEW, 1);
  RETURN NULL;
END
$$;
CREATE TRIGGER rollup_runs_insert AFTER INSERT ON runs
FOR EACH ROW EXECUTE FUNCTION rollup_runs_insert();

CREATE FUNCTION rollup_runs_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM rollup_runs_add(OLD, -1);
  PERFORM rollup_latency_add(OLD, -1);
  PERFORM rollup_runs_prune(OLD);
  PERFORM rollup_latency_prune(OLD);
  RETURN NULL;
END
$$;
CREATE TRIGGER rollup_runs_delete AFTER DELETE ON runs
FOR EACH ROW EXECUTE FUNCTION rollup_runs_delete();

-- Tokens, cost, status... changed, and the run stays in the same rows.
CREATE FUNCTION rollup_runs_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM rollup_runs_delta(OLD, NEW);
  RETURN NULL;
END
$$;
CREATE TRIGGER rollup_runs_update
AFTER UPDATE OF started_at, model, session_id, status, input_tokens, output_tokens, cost_usd,
  extra_cost_usd, cost_status, usage_unknown_calls, latency_ms ON runs
FOR EACH ROW WHEN (
  rollup_period(OLD.started_at, 3600) = rollup_period(NEW.started_at, 3600)
  AND coalesce(OLD.model, '') = coalesce(NEW.model, '')
  AND coalesce(OLD.session_id, '') = coalesce(NEW.session_id, '')
  AND (OLD.status IS DISTINCT FROM NEW.status
    OR OLD.input_tokens IS DISTINCT FROM NEW.input_tokens
    OR OLD.output_tokens IS DISTINCT FROM NEW.output_tokens
    OR OLD.cost_usd IS DISTINCT FROM NEW.cost_usd
    OR OLD.extra_cost_usd IS DISTINCT FROM NEW.extra_cost_usd
    OR OLD.cost_status IS DISTINCT FROM NEW.cost_status
    OR OLD.usage_unknown_calls IS DISTINCT FROM NEW.usage_unknown_calls
    OR OLD.latency_ms IS DISTINCT FROM NEW.latency_ms)
) EXECUTE FUNCTION rollup_runs_update();

-- The run moved to another hour, model or session: out of the old rows, into the new.
CREATE FUNCTION rollup_runs_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM rollup_runs_add(OLD, -1);
  PERFORM rollup_runs_add(NEW, 1);
  PERFORM rollup_runs_prune(OLD);
  RETURN NULL;
END
$$;
CREATE TRIGGER rollup_runs_move AFTER UPDATE OF started_at, model, session_id ON runs
FOR EACH ROW WHEN (NOT (
  rollup_period(OLD.started_at, 3600) = rollup_period(NEW.started_at, 3600)
  AND coalesce(OLD.model, '') = coalesce(NEW.model, '')
  AND coalesce(OLD.session_id, '') = coalesce(NEW.session_id, '')
)) EXECUTE FUNCTION rollup_runs_move();

CREATE FUNCTION rollup_latency_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM rollup_latency_add(OLD, -1);
  PERFORM rollup_latency_add(NEW, 1);
  PERFORM rollup_latency_prune(OLD);
  RETURN NULL;
END
$$;
CREATE TRIGGER rollup_latency_update AFTER UPDATE OF started_at, latency_ms ON runs
FOR EACH ROW WHEN (
  OLD.latency_ms IS DISTINCT FROM NEW.latency_ms
  OR rollup_period(OLD.started_at, 3600) <> rollup_period(NEW.started_at, 3600)
) EXECUTE FUNCTION rollup_latency_update();

CREATE FUNCTION rollup_run_evals_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM rollup_evals_of_run_add(OLD, -1);
  PERFORM rollup_evals_of_run_add(NEW, 1);
  PERFORM rollup_evals_of_run_prune(OLD);
  RETURN NULL;
END
$$;
CREATE TRIGGER rollup_run_evals_update AFTER UPDATE OF model, session_id ON runs
FOR EACH ROW WHEN (
  coalesce(OLD.model, '') <> coalesce(NEW.model, '')
  OR coalesce(OLD.session_id, '') <> coalesce(NEW.session_id, '')
) EXECUTE FUNCTION rollup_run_evals_update();

CREATE FUNCTION rollup_evals_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM rollup_evaluation_add(NEW, 1);
  RETURN NULL;
END
$$;
CREATE TRIGGER rollup_evals_insert AFTER INSERT ON evaluations
FOR EACH ROW EXECUTE FUNCTION rollup_evals_insert();

CREATE FUNCTION rollup_evals_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM rollup_evaluation_add(OLD, -1);
  DELETE FROM rollup_evals_hour WHERE period = rollup_period(OLD.created_at, 3600)
    AND metric = OLD.metric AND n = 0;
  DELETE FROM rollup_evals_day WHERE period = rollup_period(OLD.created_at, 86400)
    AND metric = OLD.metric AND n = 0;
  RETURN NULL;
END
$$;
CREATE TRIGGER rollup_evals_delete AFTER DELETE ON evaluations
FOR EACH ROW EXECUTE FUNCTION rollup_evals_delete();
