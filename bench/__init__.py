"""Benchmarks: ratios against raw COPY and pgbench, never timed assertions."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
