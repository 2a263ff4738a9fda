-- Reads of categories.

-- name: list_categories :many
-- GET /categories: every category by name; a handful of rows.
SELECT c.id, c.name
FROM categories c
ORDER BY c.name
