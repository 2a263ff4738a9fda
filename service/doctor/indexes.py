"""The indexes the migrations define (created and not dropped since), by name: what
missing_index compares the database with to write the CREATE INDEX of its fix."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from service import data_dir

CREATE = re.compile(
    r"CREATE\s+(?P<unique>UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(?P<name>\w+)\s+ON\s+(?:ONLY\s+)?(?P<table>[\w.]+)\s*(?P<rest>[^;]+);",
    re.IGNORECASE,
)
DROP = re.compile(
    r"DROP\s+INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+EXISTS\s+)?(?P<names>[\w.,\s]+?)\s*(?:CASCADE|RESTRICT)?\s*;",
    re.IGNORECASE,
)
COMMENT = re.compile(r"--[^\n]*")


@dataclass(frozen=True, slots=True)
class IndexDefinition:
    name: str
    table: str
    unique: bool
    rest: str  # the column list onwards: "(price_per_night, id)"
    migration: str

    def create_concurrently(self) -> str:
        unique = "UNIQUE " if self.unique else ""
        return (
            f"CREATE {unique}INDEX CONCURRENTLY IF NOT EXISTS {self.name} "
            f"ON {self.table} {self.rest};"
        )


def defined_indexes(directory: Path | None = None) -> dict[str, IndexDefinition]:
    """Every index that applying all the migrations in order leaves, by name."""
    directory = data_dir("service.migrations") if directory is None else directory
    found: dict[str, IndexDefinition] = {}
    forward = sorted(p.stem for p in directory.glob("*.sql") if not p.stem.endswith(".rollback"))
    for mid in forward:
        text = COMMENT.sub("", (directory / f"{mid}.sql").read_text(encoding="utf-8"))
        events: list[tuple[int, str, IndexDefinition | None]] = []
        for match in CREATE.finditer(text):
            definition = IndexDefinition(
                name=match["name"],
                table=match["table"],
                unique=bool(match["unique"]),
                rest=" ".join(match["rest"].split()),
                migration=mid,
            )
            events.append((match.start(), definition.name, definition))
        for match in DROP.finditer(text):
            for name in match["names"].split(","):
                events.append((match.start(), name.strip().split(".")[-1], None))
        for _at, name, maybe in sorted(events, key=lambda event: event[0]):
            if maybe is None:
                found.pop(name, None)
            else:
                found[name] = maybe
    return found
