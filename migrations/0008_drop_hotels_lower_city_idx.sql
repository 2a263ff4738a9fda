-- depends: 0007_hotels_city_folded_idx
-- transactional: false
-- squawk-disable-assume-in-transaction
-- hotels_lower_city_idx (0005, lower(city) in the database's default
-- collation) served the city filter before API contract v2; every city
-- filter now compares lower(upper(normalize(city, NFC) COLLATE "pg_c_utf8"))
-- through hotels_city_folded_idx (0007), and no query in sql/ names
-- lower(h.city) any more, yet every write to hotels kept the old index up to
-- date. A release older than 0007's still filters by lower(h.city): while one
-- serves, its city filter reads hotels whole (a few pages at the sample's
-- 150 hotels); if hotels is large, apply this only once none does.
--
-- CONCURRENTLY takes SHARE UPDATE EXCLUSIVE instead of ACCESS EXCLUSIVE, so
-- reads and writes of hotels go on; PostgreSQL refuses it inside a
-- transaction, hence `transactional: false` and plain SET (SET LOCAL would do
-- nothing outside a transaction); the settings are reset at the end.
-- Interrupted, it can leave the index INVALID: run the migration again.
SET lock_timeout = '5s';
SET statement_timeout = '10min';
DROP INDEX CONCURRENTLY IF EXISTS hotels_lower_city_idx;
RESET lock_timeout;
RESET statement_timeout;
