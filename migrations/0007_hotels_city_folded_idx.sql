-- depends: 0006_drop_hotels_star_rating_idx
-- transactional: false
-- squawk-disable-assume-in-transaction
-- The city filter of API contract v2 (sql/hotels.sql, sql/deals.sql) compares
--   lower(upper(normalize(city, NFC) COLLATE "pg_c_utf8"))
-- on both sides: Unicode-aware and normalization-insensitive whatever the
-- database's default locale (C included). This index serves it;
-- hotels_lower_city_idx (0005, lower(city) in the default collation) stays
-- until no deployed release reads it (0008 drops it).
--
-- Needs PostgreSQL 17 or newer (pg_c_utf8 is the builtin provider's C.UTF-8)
-- and a UTF8 database (normalize()). Both functions are IMMUTABLE; their
-- answers follow the server's Unicode tables, which change only with a major
-- version: after pg_upgrade to one with a newer Unicode, REINDEX this index.
--
-- CONCURRENTLY takes SHARE UPDATE EXCLUSIVE instead of SHARE, so writes to
-- hotels go on during the build; PostgreSQL refuses it inside a transaction,
-- hence `transactional: false` and plain SET (SET LOCAL would do nothing
-- outside a transaction); the settings are reset at the end.
-- Interrupted, it can leave an INVALID index that IF NOT EXISTS would keep:
-- DROP INDEX CONCURRENTLY hotels_city_folded_idx, then run it again.
SET lock_timeout = '5s';
SET statement_timeout = '10min';
CREATE INDEX CONCURRENTLY IF NOT EXISTS hotels_city_folded_idx
    ON hotels (lower(upper(normalize(city, NFC) COLLATE "pg_c_utf8")));
RESET lock_timeout;
RESET statement_timeout;
