"""`deals generate`: write a synthetic deals CSV (service/load/generator.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from service.cli.common import say

if TYPE_CHECKING:
    from service.settings import Settings

# The first paragraph of service/load/generator.py's docstring: the generator itself
# (and the loader's source module it imports) is imported only when the command runs.
DESCRIPTION = "A realistic synthetic deals CSV, the same bytes for the same seed."


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    if args.rows < 0 or args.hotels < 1 or args.first_id < 1:
        say("error: --rows must be >= 0, --hotels and --first-id >= 1")
        return 2
    from service.load import generator

    path = None if args.output == "-" else Path(args.output)
    try:
        generator.generate(path, args.rows, args.hotels, args.seed, args.first_id)
    except OSError as exc:
        say(f"error: cannot write {args.output}: {exc.strerror or exc}")
        return 2
    if path is not None:
        say(f"wrote {args.rows:,} rows ({args.hotels} hotels, seed {args.seed}) to {path}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "generate",
        help="write a realistic synthetic deals CSV (deterministic for a seed)",
        description=DESCRIPTION,
    )
    parser.add_argument("--rows", type=int, default=50_000, help="data rows (default 50000)")
    parser.add_argument("--hotels", type=int, default=150, help="distinct hotels (default 150)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--first-id", type=int, default=1, help="deal_id of the first row (default 1)"
    )
    parser.add_argument("-o", "--output", default="-", help="file to write (default stdout)")
    parser.set_defaults(handler=cmd_generate)
