-- SQLite's functions that the studio's queries use and PostgreSQL lacks, with
-- SQLite's meaning, so each query keeps one text (app/store/postgres/sql.py).
-- Applied at every start (CREATE OR REPLACE): fixing one is editing it here.

-- total(x): the sum as a float, 0.0 over no rows or only NULLs (sum() gives NULL).
CREATE OR REPLACE AGGREGATE total(double precision) (
    SFUNC = float8pl, STYPE = double precision, INITCOND = '0',
    COMBINEFUNC = float8pl, PARALLEL = SAFE
);

-- instr(haystack, needle): 1-based position of needle, 0 when absent.
CREATE OR REPLACE FUNCTION instr(haystack text, needle text) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN strpos(haystack, needle);

-- round(x, digits) for floats (PostgreSQL has it for numeric only).
CREATE OR REPLACE FUNCTION round(x double precision, digits integer) RETURNS double precision
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN round(x::numeric, digits)::double precision;

-- log(base, x) for floats, computed as SQLite computes it: ln(x) / ln(base).
CREATE OR REPLACE FUNCTION log(base double precision, x double precision)
    RETURNS double precision
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ln(x) / ln(base);

-- A SQLite JSON path ('$.a.b', '$."gen_ai.request.model"', '$.list[2]') as a text[] path.
CREATE OR REPLACE FUNCTION _json_path(path text) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ARRAY(
        SELECT coalesce(m[1], m[2], m[3])
        FROM regexp_matches(path, '\."([^"]*)"|\.([^.\[]+)|\[([0-9]+)\]', 'g') AS m
    );

-- json_valid and json_extract must stay IMMUTABLE and keep their meaning: the index
-- dataset_items_run (baseline.sql) is built on them (a change needs REINDEX INDEX).

-- json_extract(doc, path): a string as its text, a number, boolean, object or array as
-- its JSON text, JSON null or a missing key as NULL. One return type (text) where SQLite
-- returns the value's own: queries that add up what it returns cast it.
CREATE OR REPLACE FUNCTION json_extract(doc text, path text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN (
        SELECT CASE jsonb_typeof(v) WHEN 'string' THEN v #>> '{}' WHEN 'null' THEN NULL
                                    ELSE v::text END
        FROM (SELECT doc::jsonb #> _json_path(path) AS v) AS s
    );

-- json_valid(text): whether it parses as JSON (a boolean here: PostgreSQL's CASE WHEN
-- wants one, where SQLite reads 1 and 0 as true and false).
CREATE OR REPLACE FUNCTION json_valid(doc text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
BEGIN
    PERFORM doc::jsonb;
    RETURN true;
EXCEPTION WHEN others THEN
    RETURN false;
END
$$;

-- SQLite's comparisons are integers (1 or 0), and the queries add them up:
-- `finished + (status in (...))`, `sum(status = 'failed')`. PostgreSQL's are
-- booleans; these operators and aggregates give them SQLite's arithmetic.
CREATE OR REPLACE FUNCTION _int_plus_flag(n bigint, flag boolean) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN n + flag::integer;
CREATE OR REPLACE FUNCTION _flag_plus_int(flag boolean, n bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN flag::integer + n;
CREATE OR REPLACE FUNCTION _add_flag(total bigint, flag boolean) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN flag IS NULL THEN total ELSE coalesce(total, 0) + flag::integer END;
CREATE OR REPLACE FUNCTION _add_flag_float(total double precision, flag boolean)
    RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN total + coalesce(flag::integer, 0);
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_operator WHERE oprname = '+'
                   AND oprleft = 'bigint'::regtype AND oprright = 'boolean'::regtype) THEN
        CREATE OPERATOR + (LEFTARG = bigint, RIGHTARG = boolean, FUNCTION = _int_plus_flag);
    END IF;
    IF NOT EXISTS (SELECT FROM pg_operator WHERE oprname = '+'
                   AND oprleft = 'boolean'::regtype AND oprright = 'bigint'::regtype) THEN
        CREATE OPERATOR + (LEFTARG = boolean, RIGHTARG = bigint, FUNCTION = _flag_plus_int);
    END IF;
END
$$;
-- sum(flag): how many are true (NULL over no rows, as sum() is); total(flag) the same
-- as a float, 0.0 over no rows.
CREATE OR REPLACE AGGREGATE sum(boolean) (SFUNC = _add_flag, STYPE = bigint);
CREATE OR REPLACE AGGREGATE total(boolean) (
    SFUNC = _add_flag_float, STYPE = double precision, INITCOND = '0'
);

-- sum(text): SQLite adds up text that holds numbers (json_extract's results here are
-- text); an integer sum stays an integer (numeric, read back as int).
CREATE OR REPLACE FUNCTION _add_number_text(total numeric, value text) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN value IS NULL THEN total ELSE coalesce(total, 0) + value::numeric END;
CREATE OR REPLACE AGGREGATE sum(text) (SFUNC = _add_number_text, STYPE = numeric);
