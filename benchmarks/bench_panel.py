"""`make bench` section "panel": the weekly panel of the large demo portal against a raw scan and pandas.

Figures (each timed in a fresh child process by `peak.measure`; the modules are imported when the child loads
this file, so no timing includes an import):
- raw_scan_seconds: `pl.scan_parquet(...).collect()` of every table of the snapshot (the floor for any reader),
  the median of REPEATS runs (after one warm-up run of the scan and of the panel, listed but not counted);
- panel_seconds: `load_snapshot` + `build_panel` (all signals, weekly as-of dates, 90-day horizon), with the two
  parts (load_seconds: reading, coercing and validating the snapshot; build_seconds: `build_panel` alone on the
  loaded snapshot), of the run with the median build time among REPEATS runs; the peak memory of all runs, and
  rows per second of both; every run's scan, load and build seconds are listed too;
- ratios to the raw scan: panel_vs_scan (load + build), build_vs_scan (build alone) and load_vs_scan;
- pandas: the straightforward pandas implementation of the same panel (benchmarks/pandas_reference.py) and the
  polars panel on the same as-of dates, both timed from reading the files. The pandas loop over as-of dates is
  slow at this size, so both run on the last `PANDAS_WEEKS` weekly as-of dates; `pandas_full_estimate_seconds`
  scales the pandas time per as-of date up to the full panel (an estimate, labelled as such).
- prefaulted (a diagnostic, not a target): PREFAULTED_RUNS more panel runs whose process first touches and
  releases PREFAULT_MB of memory, so that the build's memory is already backed by the host when it is used. On a
  virtual machine whose host takes idle guest memory back (free-page reporting), the first touch of such memory
  is slow, and the build, which grows the process by about 0.8 GB, pays for it in kernel time; the gap between
  build_seconds and prefaulted_build_seconds estimates how much of the build time that is, in that run (it comes
  and goes with what the host does: 0.23 s in one run, none in the next);
- build_user_seconds_all / build_kernel_seconds_all: the CPU time of each counted build, all threads, in user code
  and in the kernel (diagnostics: the user time stays put from run to run; the kernel time, mostly first touches
  of memory, is what varies with the host);
Targets: panel time <= 3 x raw_scan_seconds (reported both for load + build and for the build alone: the load
validates every row of every table and is a cost of its own), >= 5 x faster than pandas, peak memory <= 4 GB.
Timings share the machine with whatever else runs: compare the ratios of one run, not seconds across runs.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import pandera.polars  # noqa: F401  imported here: load_snapshot imports it on first use, and timings leave imports out
import polars as pl
from peak import measure

from hsutils.panel import build_panel, default_as_of_dates  # imported here: the timings leave imports out
from hsutils.snapshot import load_snapshot

TABLES = ("companies", "contacts", "deals", "engagements", "tickets", "surveys", "usage_events")
PANDAS_WEEKS = 13
REPEATS = 7  # runs of the scan and of the full panel after one warm-up run of each; the figures are their medians
PREFAULTED_RUNS = 3
PREFAULT_MB = 2048
TARGET_SCAN_RATIO = 3.0
TARGET_PANDAS_SPEEDUP = 5.0
TARGET_PEAK_MB = 4096.0


def raw_scan(folder: str) -> int:
    """Read every table of the snapshot with a plain polars parquet scan; returns the number of rows."""
    return sum(pl.scan_parquet(Path(folder) / f"{table}.parquet").collect().height for table in TABLES)


def polars_panel(folder: str, last_weeks: int | None = None) -> dict[str, Any]:
    """load_snapshot + build_panel; returns rows, the load / build split and the build's CPU time (all threads of
    the process, in user code and in the kernel)."""
    started = time.perf_counter()
    snapshot = load_snapshot(folder)
    loaded = time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    dates = default_as_of_dates(snapshot)
    panel = build_panel(snapshot, as_of_dates=dates[-last_weeks:] if last_weeks else None)
    built = time.perf_counter()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    return {"rows": panel.height, "as_of_dates": panel["as_of"].n_unique(), "load_seconds": round(loaded - started, 3),
            "build_seconds": round(built - loaded, 3),
            "build_user_seconds": round(cpu_after.ru_utime - cpu_before.ru_utime, 3),
            "build_kernel_seconds": round(cpu_after.ru_stime - cpu_before.ru_stime, 3)}


def prefaulted_panel(folder: str) -> dict[str, Any]:
    """polars_panel in a process that has first touched and released PREFAULT_MB of memory (see the docstring)."""
    import numpy as np

    touched = np.ones(PREFAULT_MB * 2**20 // 8)
    del touched
    return polars_panel(folder)


def pandas_panel(folder: str, last_weeks: int) -> dict[str, Any]:
    """The pandas reference on the last `last_weeks` weekly as-of dates, timed from reading the files."""
    import pandas as pd
    from pandas_reference import panel_pandas, read_tables

    tables, manifest = read_tables(folder)
    last = pd.Timestamp(manifest["created_at"]).tz_convert("UTC").normalize()
    dates = [last - pd.Timedelta(weeks=w) for w in range(last_weeks - 1, -1, -1)]
    return {"rows": len(panel_pandas(tables, manifest, as_of_dates=dates))}


def ensure_portal(ctx: Any) -> Path:
    """The large demo portal: reuse ctx.big_snapshot, or generate it (and record it on ctx)."""
    if ctx.big_snapshot is None:
        from hsutils.demo import write_demo

        out = Path(ctx.workdir) / f"portal-{ctx.big_companies}"
        if not out.is_dir():
            write_demo(out, companies=ctx.big_companies)
        ctx.big_snapshot = out
    return Path(ctx.big_snapshot)


def run(ctx: Any) -> dict[str, Any]:
    folder = str(ensure_portal(ctx))
    # timings on this kind of machine vary by 10-20 % from run to run: each figure is the median of REPEATS fresh
    # processes (the scan and the panel runs alternate), and every run is kept in the JSON. One scan and one panel
    # run come first and are not counted: on a virtual machine the first process after a quiet spell pays for the
    # memory the host took back meanwhile (their times are kept in the JSON too).
    warm_up = {"raw_scan_seconds": round(measure(raw_scan, folder)["seconds"], 3),
               "build_seconds": measure(polars_panel, folder)["result"]["build_seconds"]}
    scans, fulls = [], []
    for _ in range(REPEATS):
        scans.append(measure(raw_scan, folder))
        fulls.append(measure(polars_panel, folder))
    prefaulted = sorted((measure(prefaulted_panel, folder)["result"] for _ in range(PREFAULTED_RUNS)),
                        key=lambda run: run["build_seconds"])
    scan = sorted(scans, key=lambda run: run["seconds"])[REPEATS // 2]
    full = sorted(fulls, key=lambda run: run["result"]["build_seconds"])[REPEATS // 2]
    weeks = min(PANDAS_WEEKS, full["result"]["as_of_dates"])
    subset = measure(polars_panel, folder, weeks)
    reference = measure(pandas_panel, folder, weeks)
    if reference["result"]["rows"] != subset["result"]["rows"]:
        raise RuntimeError(f"pandas reference rows {reference['result']['rows']} != panel rows {subset['result']['rows']}")
    panel_seconds = full["seconds"]
    per_date = reference["seconds"] / weeks
    figures = {
        "companies": ctx.big_companies,
        "snapshot_rows": scan["result"],
        "raw_scan_seconds": round(scan["seconds"], 2),
        "panel_seconds": round(panel_seconds, 2),
        "load_seconds": full["result"]["load_seconds"],
        "build_seconds": full["result"]["build_seconds"],
        "panel_rows": full["result"]["rows"],
        "as_of_dates": full["result"]["as_of_dates"],
        "rows_per_second": round(full["result"]["rows"] / panel_seconds),
        "build_rows_per_second": round(full["result"]["rows"] / full["result"]["build_seconds"]),
        "peak_memory_mb": max(run["peak_memory_mb"] for run in fulls),
        "runs": REPEATS,
        "raw_scan_seconds_all": [round(run["seconds"], 3) for run in scans],
        "build_seconds_all": [run["result"]["build_seconds"] for run in fulls],
        "load_seconds_all": [run["result"]["load_seconds"] for run in fulls],
        "build_user_seconds_all": [run["result"]["build_user_seconds"] for run in fulls],
        "build_kernel_seconds_all": [run["result"]["build_kernel_seconds"] for run in fulls],
        "warm_up_not_counted": warm_up,
        "prefaulted_build_seconds": prefaulted[PREFAULTED_RUNS // 2]["build_seconds"],
        "prefaulted_build_vs_scan": round(prefaulted[PREFAULTED_RUNS // 2]["build_seconds"] / scan["seconds"], 2),
        "prefaulted_build_seconds_all": [run["build_seconds"] for run in prefaulted],
        "prefaulted_load_seconds_all": [run["load_seconds"] for run in prefaulted],
        "raw_scan_peak_memory_mb": scan["peak_memory_mb"],
        "panel_vs_scan": round(panel_seconds / scan["seconds"], 2),
        "build_vs_scan": round(full["result"]["build_seconds"] / scan["seconds"], 2),
        "load_vs_scan": round(full["result"]["load_seconds"] / scan["seconds"], 2),
        "pandas_as_of_dates": weeks,
        "pandas_seconds": round(reference["seconds"], 2),
        "polars_same_dates_seconds": round(subset["seconds"], 2),
        "pandas_speedup_same_dates": round(reference["seconds"] / subset["seconds"], 1),
        "pandas_full_estimate_seconds": round(per_date * full["result"]["as_of_dates"], 1),
        "pandas_speedup_full_estimate": round(per_date * full["result"]["as_of_dates"] / panel_seconds, 1),
    }
    figures["targets_met"] = {
        "panel_within_3x_scan": figures["panel_vs_scan"] <= TARGET_SCAN_RATIO,
        "build_within_3x_scan": figures["build_vs_scan"] <= TARGET_SCAN_RATIO,
        "5x_faster_than_pandas": figures["pandas_speedup_same_dates"] >= TARGET_PANDAS_SPEEDUP,
        "peak_memory_within_4gb": figures["peak_memory_mb"] <= TARGET_PEAK_MB,
    }
    return figures
