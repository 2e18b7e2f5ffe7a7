"""Measure wall time and peak resident memory of a callable run in a fresh child process."""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from collections.abc import Callable
from typing import Any


def _child(func: Callable[..., Any], args: tuple, queue: mp.Queue) -> None:
    started = time.perf_counter()
    result = func(*args)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put({"seconds": seconds, "peak_memory_mb": round(peak_kib / 1024, 1), "result": result})


def measure(func: Callable[..., Any], *args: Any) -> dict[str, Any]:
    """Run `func(*args)` in a child process; return its seconds, peak memory (MB) and picklable result."""
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(func, args, queue))
    proc.start()
    figures = queue.get()
    proc.join()
    return figures
