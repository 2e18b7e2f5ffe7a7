"""Shared fixtures: small demo portals written once per test session (per xdist worker)."""

from __future__ import annotations

from pathlib import Path

import pytest


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
