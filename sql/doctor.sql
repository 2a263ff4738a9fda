-- `deals doctor` (service/doctor/): what it reads of a live database. Only the
-- statistics views and catalogs: no table of the service is read or locked,
-- and nothing is written (but pg_stat_statements' CREATE EXTENSION, below).

-- name: doctor_server :one
-- The server the checks look at: its version, the connection limit less the
-- slots kept for superusers, and whether pg_stat_statements is loaded and installed.
SELECT current_database() AS database,
       current_setting('server_version') AS version,
       current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS reserved_connections,
       current_setting('shared_preload_libraries') ~ '(^|[\s,])pg_stat_statements($|[\s,])'
           AS statements_preloaded,
       to_regclass('pg_stat_statements') IS NOT NULL AS statements_installed

-- name: doctor_install_pg_stat_statements :exec
-- missing_index: the view over the preloaded pg_stat_statements, when the
-- database lacks it; needs CREATE on the database (the doctor goes on without).
CREATE EXTENSION IF NOT EXISTS pg_stat_statements

-- name: doctor_seq_scanned_tables :many
-- missing_index: tables of the search path of at least $1 rows that sequential
-- scans have read at least $2 rows per scan of, since the last pg_stat_reset().
-- Rows are reltuples (the last ANALYZE) when pg_stat_reset() zeroed n_live_tup.
SELECT s.relname AS table_name,
       greatest(c.reltuples, s.n_live_tup)::bigint AS live_rows,
       c.relpages::bigint AS pages,
       s.seq_scan,
       s.seq_tup_read,
       coalesce(s.idx_scan, 0) AS idx_scan,
       coalesce(s.idx_tup_fetch, 0) AS idx_tup_fetch
FROM pg_stat_user_tables AS s
JOIN pg_class AS c ON c.oid = s.relid
WHERE s.schemaname = ANY (current_schemas(false))
  AND greatest(c.reltuples, s.n_live_tup) >= $1::bigint
  AND s.seq_scan > 0
  AND s.seq_tup_read / s.seq_scan >= $2::bigint
ORDER BY s.seq_tup_read DESC, s.relname

-- name: doctor_statements_on_table :many
-- missing_index: the statements of this database that name table $1 after FROM
-- or JOIN and read at least $2 blocks per call (shared hit + read), most blocks
-- first, at most $3; name is the sql/ name the catalogue puts in /* ... */.
SELECT substring(s.query FROM '/\* ([a-z_][a-z0-9_]*) \*/') AS name,
       s.calls,
       s.rows,
       s.shared_blks_hit + s.shared_blks_read AS blocks,
       s.shared_blks_read AS blocks_read,
       s.total_exec_time AS total_ms,
       left(regexp_replace(s.query, '\s+', ' ', 'g'), 160) AS query
FROM pg_stat_statements AS s
WHERE s.dbid = (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database())
  AND s.calls > 0
  AND s.query ~* ('\m(from|join)\s+(\w+\.)?' || $1::text || '\M')
  AND (s.shared_blks_hit + s.shared_blks_read) / s.calls >= $2::bigint
ORDER BY s.shared_blks_hit + s.shared_blks_read DESC
LIMIT $3::int

-- name: doctor_index_names :many
-- missing_index: every index of the search path's schemas, to tell which index
-- the migrations define that the database lacks.
SELECT i.indexname AS name
FROM pg_indexes AS i
WHERE i.schemaname = ANY (current_schemas(false))
ORDER BY i.indexname

-- name: doctor_idle_in_transaction :many
-- pool: sessions of this database idle inside a transaction for at least $1
-- seconds (they hold locks and the xmin horizon); query is the last one they ran.
SELECT a.pid,
       coalesce(a.application_name, '') AS application_name,
       a.state,
       extract(epoch FROM clock_timestamp() - a.state_change)::float8 AS idle_seconds,
       extract(epoch FROM clock_timestamp() - a.xact_start)::float8 AS transaction_seconds,
       left(regexp_replace(coalesce(a.query, ''), '\s+', ' ', 'g'), 160) AS query
FROM pg_stat_activity AS a
WHERE a.datname = current_database()
  AND a.pid <> pg_backend_pid()
  AND a.state IN ('idle in transaction', 'idle in transaction (aborted)')
  AND clock_timestamp() - a.state_change >= make_interval(secs => $1::float8)
ORDER BY a.state_change, a.pid

-- name: doctor_connections :many
-- pool: client connections to the whole server by application_name (what
-- max_connections limits), most first.
SELECT coalesce(nullif(a.application_name, ''), '(none)') AS application_name,
       count(*)::int AS connections
FROM pg_stat_activity AS a
WHERE a.backend_type = 'client backend'
GROUP BY 1
ORDER BY 2 DESC, 1

-- name: doctor_table_health :many
-- bloat: for the tables named in $1 (of the search path's schemas), dead and
-- live rows, changes since the last analyze, the last (auto)vacuum and
-- (auto)analyze, pages and all-visible pages (as of the last VACUUM or ANALYZE).
SELECT s.relname AS table_name,
       s.n_live_tup AS live_rows,
       s.n_dead_tup AS dead_rows,
       s.n_mod_since_analyze AS changed_since_analyze,
       c.reltuples::bigint AS estimated_rows,
       c.relpages::bigint AS pages,
       c.relallvisible::bigint AS all_visible_pages,
       greatest(s.last_vacuum, s.last_autovacuum) AS last_vacuum,
       greatest(s.last_analyze, s.last_autoanalyze) AS last_analyze,
       coalesce(c.reloptions, '{}'::text[]) AS options
FROM pg_stat_user_tables AS s
JOIN pg_class AS c ON c.oid = s.relid
WHERE s.schemaname = ANY (current_schemas(false))
  AND s.relname = ANY ($1::text[])
ORDER BY s.relname
