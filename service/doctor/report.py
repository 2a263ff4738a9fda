"""What a check ends with, and the thresholds it judges by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec

Status = Literal["ok", "warn", "fail"]
SEVERITY: dict[Status, int] = {"ok": 0, "warn": 1, "fail": 2}

# n_plus_one: mean statements per request above which a route fails.
MAX_QUERIES_PER_REQUEST = 3.0
# missing_index: a table this large, read by sequential scans of this many rows each,
APPLIES_FROM_ROWS = 10_000
SEQ_SCAN_ROWS = 1_000
# ... and the statements naming it that read at least this share of its pages per call.
STATEMENT_PAGE_SHARE = 0.5
STATEMENTS_SHOWN = 3
# pool: idle in transaction this long warns, this long fails (seconds).
IDLE_IN_TRANSACTION_WARN = 5.0
IDLE_IN_TRANSACTION_FAIL = 60.0
# pool: share of a limit (the API pool's size, max_connections) in use that warns, that fails.
IN_USE_WARN = 0.8
IN_USE_FAIL = 0.95
# bloat: dead rows over live + dead rows that warn, that fail; fewer dead rows than
# DEAD_ROWS_MIN (autovacuum's own base threshold) never count.
DEAD_RATIO_WARN = 0.1
DEAD_RATIO_FAIL = 0.4
DEAD_ROWS_MIN = 50
# bloat: statistics are stale past 50 + this share of the rows changed since the last
# analyze (autovacuum's analyze trigger); fewer all-visible pages than this share of a
# table of at least VISIBILITY_MIN_PAGES pages makes index-only scans visit the heap.
STALE_ANALYZE_SHARE = 0.1
ALL_VISIBLE_WARN = 0.5
VISIBILITY_MIN_PAGES = 10
# bloat: the service's tables (what the API reads and the loader writes).
TABLES = ("hotels", "deals", "categories", "deal_categories")


@dataclass(frozen=True, slots=True)
class Thresholds:
    max_queries_per_request: float = MAX_QUERIES_PER_REQUEST
    applies_from_rows: int = APPLIES_FROM_ROWS
    seq_scan_rows: int = SEQ_SCAN_ROWS
    statement_page_share: float = STATEMENT_PAGE_SHARE
    idle_in_transaction_warn: float = IDLE_IN_TRANSACTION_WARN
    idle_in_transaction_fail: float = IDLE_IN_TRANSACTION_FAIL
    in_use_warn: float = IN_USE_WARN
    in_use_fail: float = IN_USE_FAIL
    dead_ratio_warn: float = DEAD_RATIO_WARN
    dead_ratio_fail: float = DEAD_RATIO_FAIL
    dead_rows_min: int = DEAD_ROWS_MIN
    stale_analyze_share: float = STALE_ANALYZE_SHARE
    all_visible_warn: float = ALL_VISIBLE_WARN
    visibility_min_pages: int = VISIBILITY_MIN_PAGES
    tables: tuple[str, ...] = TABLES


class Check(msgspec.Struct, frozen=True, kw_only=True):
    """One diagnosis: its status, one line saying why, the evidence, the fix (empty when ok)."""

    name: str
    status: Status
    summary: str
    evidence: list[str] = msgspec.field(default_factory=list)
    fix: str = ""


def worst(statuses: list[Status]) -> Status:
    return max(statuses, key=SEVERITY.__getitem__, default="ok")


def human(checks: list[Check]) -> str:
    """One line per check (status, name, summary), its evidence indented, then its fix."""
    width = max((len(c.name) for c in checks), default=0)
    lines: list[str] = []
    for check in checks:
        lines.append(f"{check.status:<4}  {check.name:<{width}}  {check.summary}")
        lines.extend(f"        {item}" for item in check.evidence)
        if check.fix:
            first, *rest = check.fix.splitlines()
            lines.append(f"      fix: {first}")
            lines.extend(f"           {line}" for line in rest)
    return "\n".join(lines)


def as_json(checks: list[Check]) -> bytes:
    return msgspec.json.encode({"checks": checks})
