-- squawk-disable-assume-in-transaction
-- Rebuild deals_hotel_id_idx as 0002 made it, without blocking writes to
-- deals. Runs outside a transaction like its forward file (yoyo takes
-- `transactional: false` from there). A build that fails leaves an INVALID
-- index that IF NOT EXISTS would keep: DROP INDEX CONCURRENTLY
-- deals_hotel_id_idx, then run it again.
SET lock_timeout = '5s';
SET statement_timeout = '10min';
CREATE INDEX CONCURRENTLY IF NOT EXISTS deals_hotel_id_idx ON deals (hotel_id);
RESET lock_timeout;
RESET statement_timeout;
