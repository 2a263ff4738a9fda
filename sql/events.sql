-- The change feed: the events table (migration 0009), written in the same
-- transaction as each change of a deal, and read by GET /events.
--
-- Why id order is commit order. A sequence hands out ids when a transaction
-- inserts, not when it commits: with plain nextval, T1 could take id 7, T2
-- id 8 and commit first, and a reader that saw 8 and moved its cursor past
-- it would never see 7. Ordering by transaction id (pg_current_xact_id()),
-- with events handed out only below pg_snapshot_xmin(), is exactly-once but
-- in the order transactions first wrote, not the order they committed: a load
-- that began first and updates a deal after an API PATCH of it committed
-- would come first with the later version. So every writer of events takes
-- one transaction-level advisory lock, 'deals.events', right before drawing
-- its ids (in the same statement), and keeps it until its commit or rollback:
-- the ids of a transaction are drawn only after every earlier holder has
-- ended, so id order is commit order, and when a reader sees id n every id
-- below n is either visible or was rolled back (a gap) -- never still to
-- come. A reader may then follow `id > last` with no horizon and no skips.
-- The cost is that writers' last step and their commit are serialized: the
-- lock is taken as the last statement before COMMIT (one row for a request;
-- for a load, its INSERT ... SELECT of all its events). The lock is always
-- the last one a transaction takes, so it cannot join a deadlock cycle.
-- pg_notify() in the same statement wakes the listeners at commit.

-- name: insert_deal_event :exec
-- POST/PATCH/DELETE /deals: the request's one event, its last statement before
-- COMMIT (takes the 'deals.events' lock, held to commit; see the top of the file).
WITH ordered AS (
    SELECT pg_advisory_xact_lock(hashtext('deals.events')) AS locked,
           pg_notify('deals_events', '') AS notified
)
INSERT INTO events (type, deal, deal_id, version, at, data)
SELECT $1::text, $2::bigint, $3::bigint, $4::bigint, clock_timestamp(), $5::jsonb
FROM ordered

-- name: delete_expired_events :execrows
-- Retention, at write time: before its own event (outside the order lock), a
-- writer deletes at most $2 events older than $1 (EVENTS_RETENTION), oldest
-- first, skipping rows another writer is deleting; events_at_idx.
DELETE FROM events
WHERE id IN (
    SELECT id
    FROM events
    WHERE at < now() - $1::interval
    ORDER BY at
    LIMIT $2::bigint
    FOR UPDATE SKIP LOCKED
)

-- name: list_events :many
-- GET /events: the next events after id $1, oldest first, none older than
-- $3 (EVENTS_RETENTION, whether or not a writer has deleted them yet); events_pkey.
SELECT id, type, deal, deal_id, version, at, data::text AS data
FROM events
WHERE id > $1::bigint
  AND at >= now() - $3::interval
ORDER BY id
LIMIT $2::bigint
