-- squawk-disable-assume-in-transaction
-- Rebuild hotels_star_rating_idx as 0005 made it, without blocking writes to
-- hotels. Runs outside a transaction like its forward file (yoyo takes
-- `transactional: false` from there). A build that fails leaves an INVALID
-- index that IF NOT EXISTS would keep: yoyo then drops it again through the
-- forward file; if it is still there, DROP INDEX CONCURRENTLY it by hand.
SET lock_timeout = '5s';
SET statement_timeout = '10min';
CREATE INDEX CONCURRENTLY IF NOT EXISTS hotels_star_rating_idx ON hotels (star_rating);
RESET lock_timeout;
RESET statement_timeout;
