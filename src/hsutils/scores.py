"""Scoring current customers: one row per company at an as-of date, ready for the report and for HubSpot.

`score_snapshot(snapshot, model, as_of)` builds the two panel weeks it needs (the as-of and 28 days earlier, for
`score_change_30d`), applies a fitted scorer and returns one row per company that is a customer at the as-of:
company_id, as_of, health_score, band, churn_probability, points_<signal> per point-source signal (points
earned = points x goodness, before the renewal-urgency modifier), score_change_30d, expansion_candidate
(health_score >= 85 and seat_utilisation >= 0.8), arr, cs_owner_id, model_version, and context for
the account lists: arr_segment, ae_owner_id, days_to_renewal, seat_utilisation; and the other segment columns,
tier and size_bucket.

`hsutils score DIR --model MODEL --out FILE` does the same from the command line. A preset named instead of a
model file (`--model seed`) has fixed points but still learns its per-signal transforms and its probability
calibration: it is first fitted on the snapshot's labelled history whose outcomes were known by the as-of
(rows with as_of + 90 days <= the scoring as-of), then applied.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from hsutils.backtest import CHANGE_DAYS, score_history
from hsutils.errors import InputError, counted
from hsutils.evaluate import (
    OUTCOME,
    fit_scorer,
    fitted_columns,
    iso,
    model_columns,
    parse_when,
    resolve_model,
    when_literal,
)
from hsutils.files import write_frame_atomic

EXPANSION_SCORE = 85.0
EXPANSION_SEATS = 0.8
FIT_HORIZON_DAYS = 90
SCORE_COLUMNS_HEAD = ("company_id", "as_of", "health_score", "band", "churn_probability")
SCORE_COLUMNS_TAIL = (
    "score_change_30d", "expansion_candidate", "arr", "cs_owner_id", "model_version",
    "arr_segment", "ae_owner_id", "days_to_renewal", "seat_utilisation", "tier", "size_bucket",
)


def _registered() -> dict[str, Any]:
    from hsutils.signals import SIGNALS

    return SIGNALS


def _panel_signals_for(columns: list[str]) -> list[str]:
    """Registered signals to build for a scorer reading `columns` (plus seat_utilisation for expansion)."""
    from hsutils.panel import check_model_columns_known

    check_model_columns_known(columns)
    registry = _registered()
    wanted = [c for c in columns if c in registry]
    if "seat_utilisation" in registry and "seat_utilisation" not in wanted:
        wanted.append("seat_utilisation")
    return wanted


def default_as_of(snapshot: Any) -> datetime:
    """The snapshot's latest weekly as-of (midnight of the day the snapshot was taken)."""
    from hsutils.panel import default_as_of_dates

    return default_as_of_dates(snapshot)[-1]


def component_points(model: Any, X: pd.DataFrame) -> pd.DataFrame | None:
    """Points earned per point-source signal per row, or None when the scorer has no points."""
    if hasattr(model, "component_points"):
        return model.component_points(X).reset_index(drop=True)
    if hasattr(model, "global_model_") and hasattr(model, "segment_column"):
        segment_column = model.segment_column
        signals = X.drop(columns=[segment_column])
        segments = X[segment_column].astype(object).where(X[segment_column].notna(), "missing").astype(str)
        result = model.global_model_.component_points(signals).reset_index(drop=True)
        for segment, own in getattr(model, "segment_models_", {}).items():
            mask = (segments == segment).to_numpy()
            if mask.any():
                part = own.component_points(signals[mask])
                for column in part.columns:
                    if column in result.columns:
                        result.loc[mask, column] = part[column].to_numpy()
        return result
    return None


def score_snapshot(
    snapshot: Any, model: Any, as_of: str | date | datetime | None = None, model_version: str | None = None
) -> pl.DataFrame:
    """Score every customer of `snapshot` at `as_of` (default: the latest week) with a fitted scorer.

    Returns one row per company (see the module docstring for the columns), sorted by company_id. InputError
    when the as-of lies outside the data or the scorer reads signals the suite cannot build.
    """
    from hsutils.panel import build_panel, first_customer_moment

    when = default_as_of(snapshot) if as_of is None else parse_when(as_of)
    columns = fitted_columns(model, [])
    if not columns:
        raise InputError("model is not fitted: it names no signal columns")
    signals = _panel_signals_for(columns)
    earlier = when - timedelta(days=CHANGE_DAYS)
    start = first_customer_moment(snapshot)
    dates = [earlier, when] if start is not None and earlier >= start else [when]
    panel = build_panel(snapshot, as_of_dates=dates, signals=signals)
    missing = [c for c in columns if c not in panel.columns]
    if missing:
        raise InputError(f"model reads signal(s) not in the panel: {', '.join(missing)}")
    history = score_history(model, panel)
    current_rows = panel.filter(pl.col("as_of") == when_literal(when, panel.schema["as_of"]))
    if current_rows.height == 0:
        raise InputError(f"no company is a customer at {iso(when)}: nothing to score")
    current = history.filter(pl.col("as_of") == when_literal(when, history.schema["as_of"]))
    current = current_rows.select("company_id", "as_of", "tier", "size_bucket").join(
        current, on=["company_id", "as_of"], how="left"
    )
    X = current_rows.select(columns).to_pandas()
    points = component_points(model, X)
    version = model_version or getattr(model, "version_", None) or "unknown"
    out = current.select(
        pl.col("company_id").cast(pl.String),
        "as_of",
        pl.col("health_score").cast(pl.Float64),
        pl.col("band").cast(pl.String),
        pl.col("churn_probability").cast(pl.Float64),
        pl.col("score_change_30d").cast(pl.Float64),
        ((pl.col("health_score") >= EXPANSION_SCORE) & (pl.col("seat_utilisation") >= EXPANSION_SEATS))
        .fill_null(False).alias("expansion_candidate"),
        pl.col("arr").cast(pl.Float64),
        pl.col("cs_owner_id").cast(pl.String),
        pl.lit(str(version)).alias("model_version"),
        pl.col("arr_segment").cast(pl.String),
        pl.col("ae_owner_id").cast(pl.String),
        pl.col("days_to_renewal").cast(pl.Float64),
        pl.col("seat_utilisation").cast(pl.Float64),
        pl.col("tier").cast(pl.String),
        pl.col("size_bucket").cast(pl.String),
    )
    if points is not None:
        out = out.with_columns(
            [pl.Series(f"points_{c}", np.asarray(points[c], dtype=float)) for c in points.columns]
        )
    point_columns = [c for c in out.columns if c.startswith("points_")]
    return out.select(*SCORE_COLUMNS_HEAD, *point_columns, *SCORE_COLUMNS_TAIL).sort("company_id")


def fit_preset_on_history(scorer: Any, snapshot: Any, as_of: datetime, horizon_days: int = FIT_HORIZON_DAYS) -> Any:
    """Fit an unfitted preset's transforms and calibration on the snapshot's labelled rows whose outcomes were
    known by `as_of` (as_of_row + horizon_days <= as_of)."""
    from hsutils.evaluate import panel_signals
    from hsutils.panel import build_panel

    probe_columns = model_columns(scorer, [], list(_registered()))
    panel = build_panel(snapshot, horizon_days=horizon_days, signals=_panel_signals_for(probe_columns))
    columns = model_columns(scorer, panel_signals(panel), panel.columns)
    limit = when_literal(as_of - timedelta(days=horizon_days), panel.schema["as_of"])
    history = panel.filter(pl.col(OUTCOME).is_not_null() & (pl.col("as_of") <= limit))
    churns = int(history.get_column(OUTCOME).sum() or 0)
    if history.height == 0 or churns == 0 or churns == history.height:
        raise InputError(
            f"cannot fit the preset on this snapshot: {counted(history.height, 'labelled row')} with "
            f"{counted(churns, 'churn')} before {iso(as_of)}; a preset needs churned and renewed accounts in the history to learn its transforms"
        )
    return fit_scorer(scorer, history, columns)


def cli_score(args: Any) -> int:
    """`hsutils score DIR --model MODEL --out FILE [--as-of DATE]`: score every current customer."""
    from hsutils.snapshot import load_snapshot

    out = Path(args.out)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise InputError(f"--out {out}: use a .parquet or .csv file name")
    resolved = resolve_model(args.model)
    snapshot = load_snapshot(args.dir, mapping=getattr(args, "mapping", None))
    when = default_as_of(snapshot) if not getattr(args, "as_of", None) else parse_when(args.as_of)
    if when > snapshot.manifest.created_at:
        raise InputError(
            f"--as-of {iso(when)} is after the snapshot was taken ({iso(snapshot.manifest.created_at)})"
        )
    scorer = resolved.scorer
    if resolved.needs_fit:
        scorer = fit_preset_on_history(scorer, snapshot, when)
    scores = score_snapshot(snapshot, scorer, as_of=when, model_version=resolved.version)
    write_frame_atomic(scores, out)
    bands = scores.group_by("band").len().sort("band")
    counts = ", ".join(f"{row['band']} {row['len']}" for row in bands.to_dicts())
    print(f"{counted(scores.height, 'company')} scored at {iso(when)} with {resolved.name} ({counts}); "
          f"written to {out}")
    return 0
