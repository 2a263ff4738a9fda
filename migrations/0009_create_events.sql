-- depends: 0008_drop_hotels_lower_city_idx
-- The change feed (GET /events): one outbox row per committed change of a
-- deal, written in the same transaction as the change (sql/events.sql,
-- sql/load.sql). A new table, so no existing query or lock is affected.
-- id is the feed's order: it is drawn while the writer holds the
-- 'deals.events' advisory lock until its commit (sql/events.sql says why
-- that makes id order commit order); the primary key serves the feed.
-- events_at_idx serves the retention's DELETE (EVENTS_RETENTION).
-- deal is deals.id with no foreign key: a delete's event outlives its deal.
--
-- Rules (CONTRIBUTING.md, "Adding a migration"); `make lint` runs squawk on this file.
-- * Keep the two SET LOCAL lines first: a statement that waits longer than
--   lock_timeout for its lock fails (run it again later) instead of queueing
--   every query of the table behind it. Raise statement_timeout only for a
--   backfill that needs it.
-- * Expand, migrate, contract: add (a nullable column, a table) in one
--   migration, backfill in the next, drop the old shape only once no deployed
--   release reads it.
-- * A constraint on an existing table: ADD CONSTRAINT ... NOT VALID here,
--   VALIDATE CONSTRAINT in a later migration. NOT NULL: a CHECK (c IS NOT
--   NULL) NOT VALID, validated, then SET NOT NULL.
-- * An index on an existing table: CREATE INDEX CONCURRENTLY IF NOT EXISTS,
--   one per migration, in a file of its own that starts with the directive
--   `-- transactional: false` (and `-- squawk-disable-assume-in-transaction`)
--   and uses plain SET: SET LOCAL does nothing outside a transaction.
-- * Never edit a migration once it is applied anywhere: write a new one.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

CREATE TABLE events (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type    text NOT NULL CHECK (type IN ('deal.created', 'deal.updated', 'deal.deleted')),
    deal    bigint NOT NULL,  -- deals.id of the deal changed
    deal_id bigint,           -- its upstream id (null for deals created through the API)
    version bigint NOT NULL,  -- the deal's version after the change (the deleted one for a delete)
    at      timestamptz NOT NULL,  -- clock_timestamp() as the id is drawn, just before commit
    data    jsonb             -- the deal as GET /deals/{id} returns it; null for a delete
);
CREATE INDEX events_at_idx ON events (at);
