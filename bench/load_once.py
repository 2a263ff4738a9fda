"""One load in a process of its own, as `deals load` runs it, timing each phase.

    python -m bench.load_once DATABASE_URL FILE

Prints one JSON object: the loader's summary and the seconds of each phase
(reading, checking, hotels, deals, links, events, commit, vacuum), so that
bench_load.py can show where the time goes and the load without its events
phase. Only what `deals load` imports is imported here.
"""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> int:
    import asyncio

    import msgspec

    from service.load.report import Progress
    from service.load.steps import load_file

    class Phases(Progress):
        def __init__(self) -> None:
            self.at = time.perf_counter()
            self.name = "connect"
            self.seconds: dict[str, float] = {}

        def phase(self, name: str) -> None:
            now = time.perf_counter()
            self.seconds[self.name] = round(self.seconds.get(self.name, 0.0) + now - self.at, 4)
            self.at, self.name = now, name

        def close(self) -> None:
            self.phase("end")

    phases = Phases()
    summary = asyncio.run(load_file(argv[0], argv[1], progress=phases))
    print(msgspec.json.encode({"summary": summary, "phases": phases.seconds}).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
