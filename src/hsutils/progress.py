"""Progress bars of the long commands (pull, push, report): on standard error, and on a terminal only."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm


def progress_bar(iterable: Iterable[Any] | None = None, *, show: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar on standard error that goes when done (unless `leave=True`), shown only with `show` and when
    standard error is a terminal (tqdm's disable=None): a scheduler's log or cron mail gets no bar redraws."""
    return tqdm(iterable, disable=None if show else True, **{"file": sys.stderr, "leave": False, **kwargs})
