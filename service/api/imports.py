"""POST /deals/import: a deals CSV body loaded as `deals load` loads a file.

One load path: the body becomes the loader's source (service/load/source.py,
BodySource) and service/load/steps.py does the rest, in one transaction on a
connection of its own (not one of the pool's: a load may take minutes).
The body streams into COPY as it arrives, so memory stays flat whatever its
size; a copy goes to a temporary file on disk, read again only to name the
lines of bad records, and removed when the request ends.

IMPORT_MAX_BYTES bounds the body: a Content-Length above it is refused
before anything is read, and a chunked body is counted as it streams.
Another load running: the import waits for its advisory lock up to
IMPORT_LOCK_WAIT_SECONDS, then answers 503 LOAD_BUSY. A client that
disconnects mid-body aborts the COPY; its transaction rolls back.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.exceptions import InternalServerException
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType
from litestar.params import Parameter

from service.api.errors import ApiError, UnsupportedMediaType, error_responses
from service.db.pool import Database
from service.load.errors import TooLarge
from service.load.report import RejectedRow
from service.load.source import BodySource
from service.load.steps import load_source
from service.settings import Settings

ImportMode = Annotated[
    Literal["strict", "skip-bad-rows"],
    Parameter(
        description=(
            "strict: any bad row fails the import (422 BAD_ROWS, nothing written); "
            "skip-bad-rows: the good rows are loaded and the bad ones listed."
        )
    ),
]
PROBLEMS_SHOWN = 1000  # problems in a 422 BAD_ROWS, rejected rows in a 200: the counts are exact


class ImportSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The summary of `deals load --json` (its keys, service/load/report.py LoadSummary),
    and the first 1,000 rows skip-bad-rows left out, in file order."""

    file: str
    rows_read: int
    rows_loaded: int
    rows_rejected: Annotated[int, msgspec.Meta(description="Every rejected row, counted.")]
    hotels_new: int
    hotels_updated: int
    hotels_disagreeing: int
    deals_new: int
    deals_updated: int
    deals_unchanged: int
    categories_new: int
    category_links_added: int
    category_links_removed: int
    seconds: float
    rows_per_second: float
    rejects_file: str | None
    foreign_key_checks: str
    skipped: bool
    rejected: Annotated[
        list[RejectedRow],
        msgspec.Meta(description="The first 1,000 rejected rows: line and reasons."),
    ]


class ClientDisconnected(ApiError):
    status_code, code = 400, "CLIENT_DISCONNECTED"


class TooLargeBody(ApiError):
    status_code, code = 413, "PAYLOAD_TOO_LARGE"


async def body_of(request: Request[Any, Any, Any]) -> AsyncIterator[bytes]:
    """The request body as it arrives; a client gone mid-body is ClientDisconnected."""
    try:
        async for piece in request.stream():
            yield piece
    except InternalServerException:  # Litestar's word for http.disconnect before the end
        raise ClientDisconnected(
            "the client disconnected before the body ended; nothing was written"
        ) from None


@dataclass
class CsvBodyOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={
                "text/csv": OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY),
                )
            },
            description=(
                "A deals CSV (header line, then one deal per line) as `deals load` takes; "
                "at most IMPORT_MAX_BYTES."
            ),
            required=True,
        )


class ImportController(Controller):
    path = "/deals/import"
    tags = ["deals"]  # noqa: RUF012

    @post(
        "/",
        status_code=200,
        summary="Import deals from a CSV body",
        operation_id="importDeals",
        operation_class=CsvBodyOperation,
        request_max_body_size=None,  # IMPORT_MAX_BYTES, checked by the handler as it streams
        responses=error_responses(400, 409, 413, 415, 422, 503),
    )
    async def import_deals(
        self, request: Request[Any, Any, Any], state: State, mode: ImportMode = "strict"
    ) -> ImportSummary:
        """The loader's summary; in skip-bad-rows mode, the first 1,000 rejected rows
        (line, reason). Strict mode with bad rows: 422 BAD_ROWS with the first 1,000
        problems (line, column, value, reason); nothing written. One transaction."""
        settings: Settings = state.settings
        db: Database = state.db
        media_type = request.content_type[0]
        if media_type != "text/csv":
            raise UnsupportedMediaType(f"send the body as text/csv, not {media_type or 'nothing'}")
        length = request.content_length
        if length is not None and length > settings.import_max_bytes:
            raise TooLargeBody(
                f"the body is {length:,} bytes; at most {settings.import_max_bytes:,} "
                "(IMPORT_MAX_BYTES); nothing was written"
            )
        skip = mode == "skip-bad-rows"
        rejected: list[RejectedRow] = []
        with tempfile.TemporaryDirectory(prefix="deals-import-") as folder:
            source = BodySource(
                body_of(request), Path(folder) / "body.csv", settings.import_max_bytes
            )
            try:
                await source.open()
                summary = await load_source(
                    settings.direct_url or db.url,  # PostgreSQL itself when it is known
                    source,
                    skip_bad_rows=skip,
                    report_limit=PROBLEMS_SHOWN,
                    events_retention=settings.events_retention,
                    lock_wait=settings.import_lock_wait_seconds,
                    rejected_rows=rejected if skip else None,
                    pooled=settings.database_pooler == "pgbouncer"
                    and settings.database_direct_url is None,
                )
            except TooLarge as exc:
                raise TooLargeBody(f"{exc.message}; nothing was written") from None
            finally:
                source.close()
        return ImportSummary(**msgspec.structs.asdict(summary), rejected=rejected)
