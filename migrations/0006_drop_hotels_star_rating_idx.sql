-- depends: 0005_filter_indexes
-- transactional: false
-- squawk-disable-assume-in-transaction
-- hotels_star_rating_idx (0005) serves no query: with hotels at the sample's
-- size every min_stars plan reads hotels whole or probes hotels_pkey per deal
-- (tests/test_migrations.py EXPLAINs them), yet every write to hotels keeps
-- it up to date. Revisit if hotels grows to thousands of rows (CONTRIBUTING.md).
--
-- CONCURRENTLY takes SHARE UPDATE EXCLUSIVE instead of ACCESS EXCLUSIVE, so
-- reads and writes of hotels go on; PostgreSQL refuses it inside a transaction,
-- hence `transactional: false` and plain SET (SET LOCAL would do nothing
-- outside a transaction); yoyo runs every migration on one connection, so
-- the settings are reset at the end.
-- Interrupted, it can leave the index INVALID: run the migration again.
SET lock_timeout = '5s';
SET statement_timeout = '10min';
DROP INDEX CONCURRENTLY IF EXISTS hotels_star_rating_idx;
RESET lock_timeout;
RESET statement_timeout;
