-- depends: 0011_deals_hotel_id_id_idx
-- transactional: false
-- squawk-disable-assume-in-transaction
-- deals_hotel_id_idx (0002, hotel_id alone) is a prefix of deals_hotel_id_id_idx
-- (0011, hotel_id then id): every lookup by hotel_id it served, the wider index
-- serves too (the foreign key's check when a hotel is deleted or its id
-- changes, a city page, a count by hotel), yet every write to deals kept both
-- up to date. At a million deals bench_plans' plans (docs/query-plans.md) name
-- it nowhere once the city's exact total comes from deal_totals (0010).
--
-- CONCURRENTLY takes SHARE UPDATE EXCLUSIVE instead of ACCESS EXCLUSIVE, so
-- reads and writes of deals go on; PostgreSQL refuses it inside a
-- transaction, hence `transactional: false` and plain SET (SET LOCAL would do
-- nothing outside a transaction); the settings are reset at the end.
-- Interrupted, it can leave the index INVALID: run the migration again.
SET lock_timeout = '5s';
SET statement_timeout = '10min';
DROP INDEX CONCURRENTLY IF EXISTS deals_hotel_id_idx;
RESET lock_timeout;
RESET statement_timeout;
