"""PostgreSQL: the pool, the SQL catalogue, and one module of typed functions per sql/ file."""
