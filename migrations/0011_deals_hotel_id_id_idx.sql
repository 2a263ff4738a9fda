-- depends: 0010_deal_totals
-- transactional: false
-- squawk-disable-assume-in-transaction
-- A city page by id (list_deals_in_city_by_id, sql/deals.sql) reads, for each
-- hotel of the city, its first deals by id: an index on (hotel_id, id) gives
-- them in order, so the page costs hotels x (limit + skip) index entries
-- whatever the city's size, with one generic plan for every city.
-- deals_hotel_id_idx (0005, hotel_id alone) is a prefix of it; dropping it is
-- a later migration, once this one has been measured in production.
--
-- CONCURRENTLY takes SHARE UPDATE EXCLUSIVE instead of SHARE, so writes to
-- deals go on during the build; PostgreSQL refuses it inside a transaction,
-- hence `transactional: false` and plain SET (SET LOCAL would do nothing
-- outside a transaction); the settings are reset at the end.
-- Interrupted, it can leave an INVALID index that IF NOT EXISTS would keep:
-- DROP INDEX CONCURRENTLY deals_hotel_id_id_idx, then run it again.
SET lock_timeout = '5s';
SET statement_timeout = '10min';
CREATE INDEX CONCURRENTLY IF NOT EXISTS deals_hotel_id_id_idx ON deals (hotel_id, id);
RESET lock_timeout;
RESET statement_timeout;
