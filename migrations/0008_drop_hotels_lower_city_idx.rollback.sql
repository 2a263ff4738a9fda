-- squawk-disable-assume-in-transaction
-- Rebuild hotels_lower_city_idx as 0005 made it, for a release older than
-- 0007's, without blocking writes to hotels. Runs outside a transaction like
-- its forward file (yoyo takes `transactional: false` from there). A build
-- that fails leaves an INVALID index that IF NOT EXISTS would keep: yoyo then
-- drops it again through the forward file; if it is still there,
-- DROP INDEX CONCURRENTLY it by hand.
SET lock_timeout = '5s';
SET statement_timeout = '10min';
CREATE INDEX CONCURRENTLY IF NOT EXISTS hotels_lower_city_idx ON hotels (lower(city));
RESET lock_timeout;
RESET statement_timeout;
