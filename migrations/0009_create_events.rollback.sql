-- Undo 0009_create_events exactly.
-- The same rules as the forward file: it runs on the live database too.
-- Dropping what the forward file added loses what was written to it since:
-- say so in a `-- squawk-ignore ban-drop-column` line over the statement.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

-- squawk-ignore ban-drop-table
DROP TABLE events;
