"""One typed function per query of sql/categories.sql."""

from __future__ import annotations

from service.db.catalogue import Connection, Many
from service.db.rows import Category

LIST_CATEGORIES = Many("list_categories")


async def list_categories(conn: Connection) -> list[Category]:
    return [Category(id=row["id"], name=row["name"]) for row in await LIST_CATEGORIES(conn)]
