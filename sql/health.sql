-- name: ping :val
-- Liveness of the database for GET /health: one round trip, no table read.
SELECT 1

-- name: applied_migrations :many
-- Migration ids yoyo has applied, for GET /health/ready; a handful of rows.
SELECT migration_id
FROM _yoyo_migration
ORDER BY migration_id
