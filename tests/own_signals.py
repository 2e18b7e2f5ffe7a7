"""A product's own signal in a file of its own, as the README shows it: for the tests of `--signal-module` and the
report's `signal_modules`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hsutils.signals import SIGNALS

README = Path(__file__).resolve().parents[1] / "README.md"
SIGNAL = "integrations_synced_28d"  # syncs of the demo portal's `integration_synced` usage event in 28 days
ROWS_SIGNAL = "acme_rows"  # a second module's signal: 1.0 on every panel row
ROWS_SOURCE = f"""from hsutils.signals import register_signal


@register_signal("{ROWS_SIGNAL}", family="activity", unit="rows", direction=0)
def acme_rows(ctx):
    return ctx.keys.with_columns(value=1.0)
"""


def readme_example() -> str:
    """The README's example of a signal of one's own (the python block registering integrations_synced_28d)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    return next(block for block in blocks if f'@register_signal("{SIGNAL}"' in block)


def write_signal_module(folder: Path, source: str | None = None, name: str = "my_signals.py") -> Path:
    """`folder/name` holding `source` (default: the README's example)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(readme_example() if source is None else source, encoding="utf-8")
    return path


@contextmanager
def signal_registry_restored() -> Iterator[None]:
    """Loading a signal module registers its signals in this process: take them back out afterwards."""
    saved = dict(SIGNALS)
    try:
        yield
    finally:
        SIGNALS.clear()
        SIGNALS.update(saved)
