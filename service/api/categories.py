"""GET /categories."""

from __future__ import annotations

from litestar import Controller
from litestar.datastructures import State

from service.api.errors import read
from service.db.categories import list_categories
from service.db.pool import Database
from service.db.rows import Category


class CategoriesController(Controller):
    path = "/categories"
    tags = ["categories"]  # noqa: RUF012

    @read("/", "List categories", "listCategories", 503, 504)
    async def categories(self, state: State) -> list[Category]:
        """Every category, by name (names are lower case)."""
        db: Database = state.db
        async with db.connection() as conn:
            return await list_categories(conn)
