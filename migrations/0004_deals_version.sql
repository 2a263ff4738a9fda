-- depends: 0003_normalize_categories
-- Optimistic locking: every change to a deal raises its version.
ALTER TABLE deals ADD COLUMN version integer NOT NULL DEFAULT 1 CHECK (version > 0);
