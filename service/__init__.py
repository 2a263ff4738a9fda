"""The deals service: a raw-SQL JSON API over PostgreSQL for hotel deals."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = ROOT / "sql"
MIGRATIONS_DIR = ROOT / "migrations"
