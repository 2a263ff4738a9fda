"""What a serving worker does to its heap once the app is built (service.serve.settle_heap)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from service import serve
from tests.test_load_reload import printed_by_a_fresh_python


@pytest.fixture
def gc_restored() -> Iterator[None]:
    """The test process's collector as it was: nothing frozen, the default threshold."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


class Cycle:
    """An object that refers to itself: reference counting never frees it, only the
    collector does."""

    def __init__(self) -> None:
        self.me = self


@pytest.mark.usefixtures("gc_restored")
def test_settle_heap_freezes_the_startup_heap_and_still_frees_later_cycles() -> None:
    gc.unfreeze()
    serve.settle_heap()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == serve.GEN0_THRESHOLD

    # A cycle made afterwards (a request's garbage) is freed with no explicit collect,
    # once the allocations pass the raised threshold: no leak.
    first = Cycle()
    freed = weakref.ref(first)
    del first
    for _ in range(3 * serve.GEN0_THRESHOLD):
        Cycle()
    assert freed() is None


def test_an_app_without_auth_or_redis_imports_neither() -> None:
    """PyJWT, cryptography and redis cost about 100 ms of every worker's start-up: an app
    built without AUTH_JWT_* and REDIS_URL does not load them (auth and the shared rate
    limit and cache import them where they use them)."""
    code = (
        "import sys\n"
        "from service.api.app import create_app\n"
        "from service.settings import Settings\n"
        "create_app(Settings(database_url='postgresql://unused@127.0.0.1:1/unused'))\n"
        "print(','.join(m for m in ('jwt', 'cryptography', 'redis') if m in sys.modules))\n"
    )
    assert printed_by_a_fresh_python(code) == ""
    with_redis = code.replace("unused')", "unused', redis_url='redis://127.0.0.1:1')")
    assert "redis" in printed_by_a_fresh_python(with_redis).split(",")  # the test can tell
