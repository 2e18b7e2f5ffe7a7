"""Shared fixtures: small demo portals written once per test session (per xdist worker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def close_figures() -> Iterator[None]:
    """Figures a test draws through pyplot are closed after it: pyplot keeps every open figure, and a worker running
    many figure tests would hold them all."""
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory) -> Path:
    """A small demo portal (400 companies) as a parquet snapshot folder; its truth sits in `<folder>.truth/`."""
    from hsutils.demo import write_demo

    out = tmp_path_factory.mktemp("demo") / "snapshot"
    write_demo(out, companies=400, seed=11)
    return out


@pytest.fixture(scope="session")
def small_demo_csv(tmp_path_factory) -> Path:
    """The same small demo portal written as CSV tables."""
    from hsutils.demo import write_demo

    out = tmp_path_factory.mktemp("demo_csv") / "snapshot"
    write_demo(out, companies=400, seed=11, fmt="csv")
    return out


@pytest.fixture
def own_signal_module(tmp_path) -> Iterator[Path]:
    """`my_signals.py` in tmp_path registering the README's integrations_synced_28d; the signal registry of this
    process is restored after the test (a file at a new path is imported afresh)."""
    from own_signals import signal_registry_restored, write_signal_module

    with signal_registry_restored():
        yield write_signal_module(tmp_path)
