"""GET /categories, with the typed function of sql/categories.sql."""

from __future__ import annotations

from litestar import Controller, get
from litestar.datastructures import State

from service.db import Connection, Database
from service.errors import error_responses
from service.models import Category
from service.sqlcat import q

LIST_CATEGORIES = q("list_categories")


async def list_categories(conn: Connection) -> list[Category]:
    rows = await conn.fetch(LIST_CATEGORIES.sql)
    return [Category(id=row["id"], name=row["name"]) for row in rows]


class CategoriesController(Controller):
    path = "/categories"
    tags = ["categories"]  # noqa: RUF012

    @get("/", summary="List categories", responses=error_responses(503, 504))
    async def categories(self, state: State) -> list[Category]:
        """Every category, by name (names are lower case)."""
        db: Database = state.db
        async with db.connection() as conn:
            return await list_categories(conn)
