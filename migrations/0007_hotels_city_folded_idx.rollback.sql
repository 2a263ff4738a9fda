-- squawk-disable-assume-in-transaction
-- Drop hotels_city_folded_idx without blocking reads or writes of hotels.
-- Runs outside a transaction like its forward file (yoyo takes
-- `transactional: false` from there). Only once no deployed release filters
-- by the expression it serves: without it that filter reads hotels whole.
SET lock_timeout = '5s';
SET statement_timeout = '10min';
DROP INDEX CONCURRENTLY IF EXISTS hotels_city_folded_idx;
RESET lock_timeout;
RESET statement_timeout;
