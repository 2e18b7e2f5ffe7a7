"""Snapshot loading and validation: time and peak memory on the large portal (about 10 million usage events).

Uses the demo section's large portal when it exists, otherwise writes a synthetic one of the same size
(20,000 companies, 10 million usage events). Figures: parquet load (read + coerce) and validation, the same
for the snapshot written as CSV, and the time to report a check that fails on millions of rows.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from peak import measure

USAGE_EVENTS = 10_000_000


def synthetic_portal(out: str, companies: int, events: int, seed: int = 0) -> str:
    """Write a valid snapshot with `companies` companies and `events` usage events (small other tables)."""
    from datetime import UTC, datetime

    import numpy as np
    import polars as pl

    from hsutils.schema import TABLES
    from hsutils.snapshot import Manifest, write_snapshot

    rng = np.random.default_rng(seed)
    utc = pl.Datetime("us", "UTC")
    ids = pl.Series("company_id", [str(100_000 + i) for i in range(companies)])
    start = datetime(2024, 1, 1, tzinfo=UTC)

    def canonical(table: str, frame: pl.DataFrame) -> pl.DataFrame:
        schema = TABLES[table].polars_schema
        return frame.select(
            [
                (pl.col(c) if c in frame.columns else pl.lit(None)).cast(dtype).alias(c)
                for c, dtype in schema.items()
            ]
        )

    def stamps(n: int, days: int = 700) -> pl.Series:
        offsets = rng.integers(0, days * 86_400 * 1_000_000, n)
        return pl.Series(offsets).cast(pl.Duration("us")) + pl.lit(start).cast(utc)

    tables = {
        "companies": canonical(
            "companies",
            pl.DataFrame({"company_id": ids, "name": "Company " + ids, "tier": "pro"}).with_columns(
                created_at=pl.lit(start).cast(utc)
            ),
        ),
        "contacts": canonical(
            "contacts",
            pl.DataFrame({"contact_id": "c" + ids, "company_id": ids, "role": "economic_buyer"}).with_columns(
                created_at=pl.lit(start).cast(utc)
            ),
        ),
        "deals": canonical(
            "deals",
            pl.DataFrame(
                {"deal_id": "d" + ids, "company_id": ids, "deal_type": "new", "stage": "won", "seats": 10}
            ).with_columns(
                term_start=pl.lit(start).cast(utc),
                term_end=pl.lit(datetime(2025, 1, 1, tzinfo=UTC)).cast(utc),
                close_date=pl.lit(start).cast(utc),
                arr=pl.lit(12_000.0),
            ),
        ),
        "engagements": canonical(
            "engagements",
            pl.DataFrame(
                {"engagement_id": "e" + ids, "company_id": ids, "type": "email", "direction": "outbound"}
            ).with_columns(occurred_at=stamps(companies), opened=pl.lit(True)),
        ),
        "tickets": canonical(
            "tickets",
            pl.DataFrame(
                {"ticket_id": "t" + ids, "company_id": ids, "priority": "low", "sentiment": "neutral"}
            ).with_columns(created_at=stamps(companies), escalated=pl.lit(False)),
        ),
        "surveys": canonical(
            "surveys",
            pl.DataFrame({"response_id": "s" + ids, "company_id": ids, "kind": "nps"}).with_columns(
                submitted_at=stamps(companies), score=pl.lit(8.0)
            ),
        ),
    }
    names = np.array(["login", "report_published", "workflow_run", "dashboard_viewed", "export", "search"])
    usage = pl.DataFrame(
        {
            "company_id": ids.gather(rng.integers(0, companies, events)),
            "user_id": pl.Series(rng.integers(0, companies * 10, events)).cast(pl.String),
            "event": names[rng.integers(0, len(names), events)],
            "count": rng.integers(1, 4, events),
        }
    ).with_columns(occurred_at=stamps(events))
    tables["usage_events"] = canonical("usage_events", usage)
    manifest = Manifest(
        1, "synthetic", datetime(2026, 1, 1, tzinfo=UTC), ["report_published", "workflow_run"]
    )
    write_snapshot(tables, manifest, out)
    return out


def load_and_validate(folder: str) -> dict:
    """Import, load (read + coerce) and validate a snapshot; seconds per phase (run in a child process)."""
    started = time.perf_counter()
    import pandera.polars  # noqa: F401  (imported by validation; timed on its own)

    from hsutils import validate
    from hsutils.snapshot import load_snapshot

    imported = time.perf_counter()
    snapshot = load_snapshot(folder, validate=False)
    loaded = time.perf_counter()
    validate.validate_snapshot(snapshot)
    validated = time.perf_counter()
    return {
        "usage_events": snapshot["usage_events"].height,
        "import_seconds": round(imported - started, 2),
        "read_coerce_seconds": round(loaded - imported, 2),
        "validate_seconds": round(validated - loaded, 2),
    }


def failing_check(folder: str) -> dict:
    """Time to report a check failing on about half the usage events (a snapshot moment in mid-history)."""
    from hsutils import validate
    from hsutils.errors import InputError
    from hsutils.snapshot import load_snapshot

    snapshot = load_snapshot(folder, validate=False)
    usage = snapshot["usage_events"]
    middle = usage["occurred_at"].sort()[usage.height // 2]
    known = {"company_id": snapshot["companies"]["company_id"].implode()}
    started = time.perf_counter()
    try:
        validate.validate_table("usage_events", usage, created_at=middle, known_ids=known)
        message = "no error"
    except InputError as exc:
        message = str(exc)
    return {"seconds": round(time.perf_counter() - started, 2), "message": message[:160]}


def _csv_copy(folder: str, out: str) -> str:
    from hsutils.snapshot import load_snapshot, write_snapshot

    snapshot = load_snapshot(folder)
    write_snapshot(snapshot.tables, snapshot.manifest, out, fmt="csv")
    return out


def run(ctx) -> dict:
    """Load + validate the large portal as parquet and as CSV; time a check failing on millions of rows."""
    folder = ctx.big_snapshot
    source = "demo portal"
    if folder is None or not Path(folder).is_dir():
        folder = ctx.workdir / f"validate-synthetic-{ctx.big_companies}"
        source = "synthetic portal"
        if not folder.is_dir():
            measure(synthetic_portal, str(folder), ctx.big_companies, USAGE_EVENTS)
    parquet = measure(load_and_validate, str(folder))
    csv_folder = ctx.workdir / "validate-csv-copy"
    shutil.rmtree(csv_folder, ignore_errors=True)
    measure(_csv_copy, str(folder), str(csv_folder))
    csv = measure(load_and_validate, str(csv_folder))
    shutil.rmtree(csv_folder, ignore_errors=True)
    failing = measure(failing_check, str(folder))
    return {
        "snapshot": source,
        "parquet": {
            **parquet.pop("result"),
            "seconds": round(parquet["seconds"], 2),
            "peak_memory_mb": parquet["peak_memory_mb"],
        },
        "csv": {
            **csv.pop("result"),
            "seconds": round(csv["seconds"], 2),
            "peak_memory_mb": csv["peak_memory_mb"],
        },
        "failing_check": failing["result"],
    }
