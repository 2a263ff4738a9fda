-- squawk-disable-assume-in-transaction
-- Drop deals_hotel_id_id_idx without blocking reads and writes of deals.
-- Runs outside a transaction like its forward file (yoyo takes
-- `transactional: false` from there). City pages by id then plan without it.
SET lock_timeout = '5s';
SET statement_timeout = '10min';
DROP INDEX CONCURRENTLY IF EXISTS deals_hotel_id_id_idx;
RESET lock_timeout;
RESET statement_timeout;
