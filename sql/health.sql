-- name: ping :val
-- Liveness of the database for GET /health: one round trip, no table read.
SELECT 1

-- name: applied_migrations :many
-- Migration ids yoyo has applied, for GET /health/ready; a handful of rows.
SELECT migration_id
FROM _yoyo_migration
ORDER BY migration_id

-- name: wal_position :val
-- The primary's WAL write position in bytes, sampled every second by each worker to tell
-- how far each read replica's replay is behind it (service/db/replicas.py).
SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS position

-- name: replay_status :one
-- On a read replica, every second per worker: is it a standby, how far has its replay
-- come (WAL bytes), and how long ago did its last replayed transaction commit (seconds).
SELECT pg_is_in_recovery() AS standby,
       (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint AS replayed,
       extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8
           AS commit_age
