-- depends: 0009_create_events
-- GET /deals/stats and the exact total of GET /deals read every deal (a scan
-- that grows with the table: 2 s at 10M deals). deal_totals keeps, per
-- (hotel_id, is_available), the number of deals and the sum of their
-- prices, in step with every write: statement-level triggers on deals with
-- transition tables add one row per key a statement changed (set-based,
-- whatever the statement: API writes, the loader's INSERT ... SELECT and
-- UPDATE). sql/stats.sql reads it joined to hotels, so a hotel's new city
-- or star rating needs no maintenance.
--
-- A key may have several rows: the answer is their sum. Each statement folds
-- the committed rows of the keys it touches into its own (DELETE ... SKIP
-- LOCKED, then one INSERT), so the table stays near one row per key, and no
-- writer ever waits for another here: a load that holds its folded rows
-- until commit only makes concurrent writers skip them. The sums are exact
-- at every snapshot (a fold deletes and inserts in one statement).
--
-- ENABLE ALWAYS: the triggers fire under session_replication_role = replica
-- too, which the loader sets to skip the per-row foreign-key triggers
-- (sql/load.sql, may_skip_row_triggers ignores ALWAYS triggers for this).
--
-- The backfill runs in this transaction: CREATE TRIGGER holds SHARE ROW
-- EXCLUSIVE on deals until commit, so writes to deals wait for the backfill
-- (reads do not); nothing is counted twice or missed. At 10M deals the
-- backfill takes seconds (docs/scaling.md), hence statement_timeout 10min.
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
SET LOCAL statement_timeout = '10min';

CREATE TABLE deal_totals (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hotel_id     bigint NOT NULL,   -- hotels.id; no foreign key: a hotel with deals cannot go
    is_available boolean NOT NULL,
    deal_count   bigint NOT NULL,   -- may be negative in one row: the key's sum is what counts
    price_sum    numeric NOT NULL   -- sum of price_per_night
);
-- The fold's lookup by key.
CREATE INDEX deal_totals_key_idx ON deal_totals (hotel_id, is_available);

-- One statement's change of deals, set-based: the count and price sum per key
-- of its transition tables (new rows added, old rows taken away), keys that
-- did not change left out; then the key's committed rows, those no other
-- transaction holds, folded in: deleted and summed into the one new row.
CREATE FUNCTION deal_totals_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    hotel_ids bigint[];
    availables boolean[];
    counts bigint[];
    sums numeric[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(c.hotel_id), array_agg(c.is_available),
               array_agg(c.deal_count), array_agg(c.price_sum)
        INTO hotel_ids, availables, counts, sums
        FROM (
            SELECT n.hotel_id, n.is_available,
                   count(*) AS deal_count, sum(n.price_per_night) AS price_sum
            FROM new_rows AS n
            GROUP BY n.hotel_id, n.is_available
        ) AS c;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(c.hotel_id), array_agg(c.is_available),
               array_agg(c.deal_count), array_agg(c.price_sum)
        INTO hotel_ids, availables, counts, sums
        FROM (
            SELECT o.hotel_id, o.is_available,
                   -count(*) AS deal_count, -sum(o.price_per_night) AS price_sum
            FROM old_rows AS o
            GROUP BY o.hotel_id, o.is_available
        ) AS c;
    ELSE
        SELECT array_agg(c.hotel_id), array_agg(c.is_available),
               array_agg(c.deal_count), array_agg(c.price_sum)
        INTO hotel_ids, availables, counts, sums
        FROM (
            SELECT x.hotel_id, x.is_available,
                   sum(x.n)::bigint AS deal_count, sum(x.price) AS price_sum
            FROM (
                SELECT n.hotel_id, n.is_available, 1 AS n, n.price_per_night AS price
                FROM new_rows AS n
                UNION ALL
                SELECT o.hotel_id, o.is_available, -1 AS n, -o.price_per_night AS price
                FROM old_rows AS o
            ) AS x
            GROUP BY x.hotel_id, x.is_available
            HAVING sum(x.n) <> 0 OR sum(x.price) <> 0
        ) AS c;
    END IF;
    IF hotel_ids IS NULL THEN
        RETURN NULL;
    END IF;
    WITH delta AS (
        SELECT d.hotel_id, d.is_available, d.deal_count, d.price_sum
        FROM unnest(hotel_ids, availables, counts, sums)
             AS d (hotel_id, is_available, deal_count, price_sum)
    ), folded AS (
        DELETE FROM deal_totals AS t
        WHERE t.id IN (
            SELECT f.id
            FROM deal_totals AS f
            JOIN delta AS d ON d.hotel_id = f.hotel_id AND d.is_available = f.is_available
            FOR UPDATE OF f SKIP LOCKED
        )
        RETURNING t.hotel_id, t.is_available, t.deal_count, t.price_sum
    )
    INSERT INTO deal_totals (hotel_id, is_available, deal_count, price_sum)
    SELECT a.hotel_id, a.is_available, sum(a.deal_count), sum(a.price_sum)
    FROM (
        SELECT delta.hotel_id, delta.is_available, delta.deal_count, delta.price_sum FROM delta
        UNION ALL
        SELECT folded.hotel_id, folded.is_available, folded.deal_count, folded.price_sum
        FROM folded
    ) AS a
    GROUP BY a.hotel_id, a.is_available
    HAVING sum(a.deal_count) <> 0 OR sum(a.price_sum) <> 0
    ORDER BY a.hotel_id, a.is_available;
    RETURN NULL;
END
$$;

-- TRUNCATE deals (nothing in the service does it) empties the totals too.
CREATE FUNCTION deal_totals_clear() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM deal_totals;
    RETURN NULL;
END
$$;

CREATE TRIGGER deal_totals_insert AFTER INSERT ON deals
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deal_totals_apply();
CREATE TRIGGER deal_totals_update AFTER UPDATE ON deals
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deal_totals_apply();
CREATE TRIGGER deal_totals_delete AFTER DELETE ON deals
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deal_totals_apply();
CREATE TRIGGER deal_totals_truncate AFTER TRUNCATE ON deals
    FOR EACH STATEMENT EXECUTE FUNCTION deal_totals_clear();
ALTER TABLE deals ENABLE ALWAYS TRIGGER deal_totals_insert;
ALTER TABLE deals ENABLE ALWAYS TRIGGER deal_totals_update;
ALTER TABLE deals ENABLE ALWAYS TRIGGER deal_totals_delete;
ALTER TABLE deals ENABLE ALWAYS TRIGGER deal_totals_truncate;

-- The backfill: every deal there is, under the triggers' lock (no write in between).
INSERT INTO deal_totals (hotel_id, is_available, deal_count, price_sum)
SELECT d.hotel_id, d.is_available, count(*), sum(d.price_per_night)
FROM deals AS d
GROUP BY d.hotel_id, d.is_available
ORDER BY d.hotel_id, d.is_available;
