"""The test suite; ROOT is the checkout it runs from."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
