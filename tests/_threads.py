"""Run one callable from several Python threads at once (GIL-release checks of the native kernels)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def run_concurrently(fn: Callable[[int], Any], n: int = 2) -> list[Any]:
    """Call ``fn(0) .. fn(n - 1)`` from ``n`` threads started together; return the results in index order."""
    results: list[Any] = [None] * n

    def work(i: int) -> None:
        results[i] = fn(i)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return results
