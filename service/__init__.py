"""The deals service: a raw-SQL JSON API over PostgreSQL for hotel deals.

The queries (sql/) and the migrations (migrations/) sit at the top of the
checkout and ship inside the wheel as the packages service.sql and
service.migrations; `data_dir` finds them through importlib.resources, so a
checkout, an editable install and an installed wheel read them alike.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path


class PackageDataError(RuntimeError):
    """The SQL or the migrations that ship with the service are missing."""


def data_dir(package: str) -> Path:
    """The folder of a data package (service.sql, service.migrations) on disk."""
    try:
        folder = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise PackageDataError(
            f"{package} is not installed: the wheel or checkout is incomplete "
            "(reinstall the service)"
        ) from None
    if not isinstance(folder, Path) or not folder.is_dir():
        raise PackageDataError(f"{package} is not a folder on disk: install the wheel unzipped")
    return folder
