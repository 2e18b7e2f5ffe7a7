"""Judging health scores on held-out time: the split, the metrics with bootstrap intervals, the comparison table.

The split is by time: models learn from as-of weeks whose outcome windows closed before the cutoff and are judged
on the as-of weeks from the cutoff on, so no training label overlaps the test period.

Bootstrap intervals resample *companies* (a cluster bootstrap), not panel rows: the weekly rows of one company
share its signals and, before a renewal, the very same outcome, so resampling rows would treat dozens of copies
of one renewal as independent evidence and give intervals that are far too narrow. Each resample draws as many
companies as there are, with replacement; a company drawn k times weighs k in every metric. All resamples are
computed at once from one array of company counts (percentile intervals, 2.5% and 97.5%).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from hsutils.errors import InputError, counted, example_rows
from hsutils.files import write_text_atomic

OUTCOME = "outcome_churned"
SEGMENT_ALL = "all"
UNKNOWN_SEGMENTS = ("unknown", "(none)", "")  # segment values that say the grouping is not known: listed last
N_BINS = 10
# The rules below count churned accounts, not churned panel rows: with weekly as-of dates one account that churns
# labels about horizon / 7 rows (13 at 90 days), which are one piece of evidence, not 13.
MIN_CHURNS_PER_SIGNAL = 10  # churned accounts in training per signal, below which a model of its own overfits
MIN_TEST_CHURNS_FOR_AUC = 30  # churned accounts in the test period, below which the AUC moves by several points
MAX_STABLE_AUC_WIDTH = 0.2  # a 95% AUC interval wider than this is called unstable
MODEL_NAMES = ("fitted", "seed", "40-30-30", "logistic", "boosting")
TABLE_METRICS = ("auc", "pr_auc", "brier", "log_loss", "top_decile_lift", "ece")
# Columns of a panel that are never signals.
NON_SIGNAL_COLUMNS = {
    "company_id", "as_of", "arr_segment", "tier", "size_bucket", "arr", "contracted_seats", "active_seats",
    "term_end", "cs_owner_id", "ae_owner_id",
}
_CHUNK_CELLS = 4_000_000  # resamples x rows handled per numpy step (bounds memory on large panels)


# --------------------------------------------------------------------------------------------------------------
# small helpers shared with backtest.py and scores.py
# --------------------------------------------------------------------------------------------------------------
def to_polars(frame: pl.DataFrame | pd.DataFrame) -> pl.DataFrame:
    """A polars view of a panel given as polars or pandas, with `as_of` as UTC timestamps (a panel read back from
    CSV holds it as ISO text) and an `outcome_churned` of 1, 0 or null (InputError naming the rows otherwise)."""
    if isinstance(frame, pd.DataFrame):
        frame = pl.from_pandas(frame)
    if not isinstance(frame, pl.DataFrame):
        raise InputError(f"expected a polars or pandas DataFrame, got {type(frame).__name__}")
    if frame.schema.get("as_of") == pl.String:
        from hsutils.validate import _parse_timestamps

        as_of, bad, what = _parse_timestamps(frame.get_column("as_of"))
        if bad is not None:
            raise InputError(f"panel, column as_of: {what}; rows: {example_rows(frame.filter(bad).select('as_of'))}")
        frame = frame.with_columns(as_of.alias("as_of"))
    if OUTCOME in frame.columns:
        outcome = frame.get_column(OUTCOME)
        try:
            number = outcome.cast(pl.Float64, strict=False)  # text "0"/"1" too (a panel written by another tool)
        except pl.exceptions.PolarsError:
            number = pl.Series(OUTCOME, [None] * frame.height, dtype=pl.Float64)
        bad = outcome.is_not_null() & ~number.is_in([0.0, 1.0]).fill_null(False)
        if bad.any():
            raise InputError(
                f"panel, column {OUTCOME}: {int(bad.sum()):,} value(s) other than 1 (churned), 0 (retained) or empty "
                f"(not yet known); rows: {example_rows(frame.filter(bad).select(c for c in ('company_id', 'as_of', OUTCOME) if c in frame.columns))}"
            )
        if outcome.dtype == pl.String:
            frame = frame.with_columns(number.cast(pl.Int8).alias(OUTCOME))
    return frame


def require_columns(frame: pl.DataFrame, columns: Iterable[str], what: str = "panel") -> None:
    """Raise InputError naming the columns of `columns` that `frame` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{what}: column(s) missing: {', '.join(missing)} (has: {', '.join(frame.columns[:12])})")


def parse_when(value: str | date | datetime) -> datetime:
    """A date, datetime or ISO text as an aware UTC datetime (a bare date means its midnight UTC)."""
    from hsutils.snapshot import parse_utc

    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    try:
        return parse_utc(value)
    except ValueError:
        raise InputError(f"date {value!r} is not an ISO date such as 2026-05-01") from None


def when_literal(value: datetime, dtype: pl.DataType) -> pl.Expr:
    """A polars literal of `value` comparable with a column of `dtype` (aware UTC or naive)."""
    tz = getattr(dtype, "time_zone", None)
    unit = getattr(dtype, "time_unit", None) or "us"
    if tz is None:
        return pl.lit(value.replace(tzinfo=None)).cast(pl.Datetime(unit))
    return pl.lit(value).cast(pl.Datetime(unit, tz))


def iso(value: Any) -> str | None:
    """ISO-8601 text of a datetime-like value (aware values in UTC with a Z); None for missing."""
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="seconds") + "Z"
    return str(value)


def json_safe(value: Any, digits: int = 6) -> Any:
    """Plain JSON values: NaN/inf -> None, numpy scalars -> Python, floats rounded, dates -> ISO text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v, digits) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v, digits) for v in value.tolist()]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return None if not math.isfinite(number) else round(number, digits)
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, datetime | pd.Timestamp | date):
        return iso(value)
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def write_json_atomic(payload: dict[str, Any], out: str | Path) -> Path:
    """Write `payload` as sorted, NaN-free JSON to `out` through a temporary file and a rename."""
    text = json.dumps(json_safe(payload), indent=2, sort_keys=True, allow_nan=False) + "\n"
    return write_text_atomic(out, text)


def panel_signals(panel: pl.DataFrame, signals: Sequence[str] | None = None) -> list[str]:
    """The signal columns to use: `signals` (checked against the panel), else the registered signals present
    in the panel, else every numeric column that is neither an outcome nor a known descriptive column."""
    if signals is not None:
        signals = list(dict.fromkeys(signals))  # a name given twice is one signal
        require_columns(panel, signals, "panel (signals)")
        if not signals:
            raise InputError("no signals chosen: name at least one signal column")
        ahead = [s for s in signals if s.startswith("outcome_")]
        if ahead:
            raise InputError(
                f"signals: {', '.join(ahead)} look ahead (outcome_* columns are what a score predicts, never a signal)"
            )
        return signals
    try:
        from hsutils.signals import SIGNALS

        registered = [name for name in SIGNALS if name in panel.columns]
    except ImportError:
        registered = []
    if registered:
        return registered
    numeric = [
        name for name, dtype in panel.schema.items()
        if dtype.is_numeric() and not name.startswith("outcome_") and name not in NON_SIGNAL_COLUMNS
    ]
    if not numeric:
        raise InputError("panel: no numeric signal columns found")
    return numeric


def signal_family(name: str) -> str | None:
    """'value' or 'activity' for a registered signal, else None."""
    try:
        from hsutils.signals import SIGNALS
    except ImportError:
        return None
    signal = SIGNALS.get(name)
    return getattr(signal, "family", None) if signal is not None else None


# The built-in signals in the words of the leadership page; a signal of the product's own reads as its name with
# spaces (signal_words).
SIGNAL_WORDS = {
    "core_depth": "core-workflow depth",
    "core_depth_trend": "trend of core-workflow depth",
    "eb_engagement": "economic-buyer engagement",
    "eb_days_since_touch": "days since the economic buyer's last touch",
    "support_negative_share": "share of negative or escalated tickets",
    "support_negative_trend": "trend of negative or escalated tickets",
    "seat_utilisation": "share of seats in use",
    "days_to_renewal": "days to renewal",
    "email_open_rate": "email open rate",
    "logins_28d": "logins in 28 days",
    "ticket_volume_90d": "tickets in 90 days",
    "latest_nps": "latest NPS",
    "feature_breadth_28d": "features used in 28 days",
}


def signal_words(name: str) -> str:
    """A signal as leadership reads it: 'share of seats in use', not 'seat_utilisation'."""
    return SIGNAL_WORDS.get(name, name.replace("_", " "))


# --------------------------------------------------------------------------------------------------------------
# time split
# --------------------------------------------------------------------------------------------------------------
def default_cutoff(panel: pl.DataFrame | pd.DataFrame, test_share: float = 1 / 3) -> datetime:
    """The first as-of week of the last `test_share` of labelled as-of weeks."""
    panel = to_polars(panel)
    require_columns(panel, ["as_of", OUTCOME])
    weeks = panel.filter(pl.col(OUTCOME).is_not_null()).get_column("as_of").unique().sort()
    if weeks.len() < 3:
        raise InputError(f"panel: only {weeks.len()} labelled as-of date(s); a time split needs at least 3")
    test_weeks = max(1, round(weeks.len() * test_share))
    value = weeks[weeks.len() - test_weeks]
    return parse_when(value)


def time_split(
    panel: pl.DataFrame | pd.DataFrame,
    cutoff: str | date | datetime | None = None,
    horizon_days: int = 90,
) -> tuple[pl.DataFrame, pl.DataFrame, datetime]:
    """Split a panel by time: (train, test, cutoff) as polars frames.

    test  = every row with as_of >= cutoff (labelled or not: back-tests need the unlabelled weeks too);
    train = labelled rows whose outcome window closed by the cutoff (as_of + horizon_days <= cutoff), so no
            training label looks into the test period.
    The default cutoff leaves about the last third of labelled as-of weeks for test. InputError when either
    side has no churn to learn from or to judge.
    """
    panel = to_polars(panel)
    require_columns(panel, ["company_id", "as_of", OUTCOME])
    if horizon_days <= 0:
        raise InputError(f"horizon_days must be positive, got {horizon_days}")
    cut = default_cutoff(panel) if cutoff is None else parse_when(cutoff)
    dtype = panel.schema["as_of"]
    if not isinstance(dtype, pl.Datetime):
        panel = panel.with_columns(pl.col("as_of").cast(pl.Datetime("us", "UTC")))
        dtype = panel.schema["as_of"]
    window_end = when_literal(cut - timedelta(days=horizon_days), dtype)
    labelled = pl.col(OUTCOME).is_not_null()
    train = panel.filter(labelled & (pl.col("as_of") <= window_end))
    test = panel.filter(pl.col("as_of") >= when_literal(cut, dtype))
    test_churns = int(test.filter(labelled).get_column(OUTCOME).sum() or 0)
    train_churns = int(train.get_column(OUTCOME).sum() or 0)
    span = panel.select(pl.col("as_of").min().alias("first"), pl.col("as_of").max().alias("last")).row(0)
    where = f"cutoff {iso(cut)}, horizon {horizon_days} days, panel as-of {iso(span[0])} to {iso(span[1])}"
    labelled_rows = panel.filter(labelled)
    if not labelled_rows.get_column(OUTCOME).sum():
        raise InputError(
            f"no churn anywhere: none of the {labelled_rows.height} labelled rows (panel as-of {iso(span[0])} to "
            f"{iso(span[1])}) churned; a health score needs churned renewals to learn from and to be judged on"
        )
    if train_churns and test_churns:
        return train, test, cut
    # the weeks with churn, to say which cutoffs leave churn on both sides
    first, last = (parse_when(when) for when in labelled_rows.filter(pl.col(OUTCOME) == 1).select(
        pl.col("as_of").min().alias("first"), pl.col("as_of").max().alias("last")).row(0))
    if train_churns == 0:
        latest = first + timedelta(days=horizon_days)
        raise InputError(
            f"time split: no churn among {train.height} training rows ({where}); the first churned row is at as-of "
            f"{iso(first)}, so choose a cutoff on or after {latest.date().isoformat()} (and on or before "
            f"{last.date().isoformat()}, the last) or a longer history"
        )
    raise InputError(
        f"time split: no churn among {test.filter(labelled).height} labelled test rows ({where}); the last "
        f"churned row is at as-of {iso(last)}, so choose a cutoff on or before {last.date().isoformat()}"
    )


# --------------------------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------------------------
BOOT_LEVELS = 4096  # probability levels the bootstrap ranks on (exact when there are fewer distinct values)


@dataclass
class _Runs:
    """Rows reduced to what every metric needs: per run of equal probability (ascending) the churn weight and
    the row weight, plus log-loss / Brier terms and reliability-bin sums (1 x ... for one weighting, or one row
    per bootstrap resample)."""

    values: np.ndarray  # (U,) probability of each run
    pos: np.ndarray  # (b, U) churn weight per run
    tot: np.ndarray  # (b, U) row weight per run
    sq: np.ndarray  # (b,) weighted sum of (p - y)^2
    ll: np.ndarray  # (b,) weighted sum of log-loss terms
    bin_w: np.ndarray  # (b, N_BINS) weight per reliability bin
    bin_p: np.ndarray  # (b, N_BINS) weighted sum of probabilities per bin
    bin_y: np.ndarray  # (b, N_BINS) churn weight per bin


def _row_terms(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-row Brier and log-loss terms, reliability bin of each row (10 equal-count bins) and the bin edges."""
    eps = np.finfo(float).eps
    pc = np.clip(p, eps, 1 - eps)
    sq = (p - y) ** 2
    ll = -(y * np.log(pc) + (1 - y) * np.log1p(-pc))
    edges = np.quantile(p, np.linspace(0.0, 1.0, N_BINS + 1))
    bins = np.clip(np.searchsorted(edges[1:-1], p, side="right"), 0, N_BINS - 1)
    return sq, ll, bins, edges


def _metrics(r: _Runs) -> dict[str, np.ndarray]:
    """Every metric for each weighting in `r`, vectorised over weightings (rows of r.pos)."""
    pos, tot = r.pos, r.tot
    neg = tot - pos
    total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
    total = total_pos + total_neg
    with np.errstate(divide="ignore", invalid="ignore"):
        # AUC: Mann-Whitney, ties counted half
        neg_below = np.cumsum(neg, axis=1) - neg
        auc = (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (total_pos * total_neg)
        # average precision (step-wise, as scikit-learn), thresholds from the highest probability down
        pos_d, tot_d = pos[:, ::-1], tot[:, ::-1]
        tp, flagged = np.cumsum(pos_d, axis=1), np.cumsum(tot_d, axis=1)
        precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
        pr_auc = (pos_d * precision).sum(axis=1) / total_pos
        # top-decile lift: the 10% of weight with the highest probability; a tied run at the edge counts in part
        cap = 0.1 * total
        share = np.clip((cap[:, None] - (flagged - tot_d)) / np.where(tot_d > 0, tot_d, 1.0), 0.0, 1.0)
        lift = ((pos_d * share).sum(axis=1) / cap) / (total_pos / total)
        ece = np.abs(r.bin_p - r.bin_y).sum(axis=1) / total  # sum_b w_b |mean predicted_b - observed_b| / w
        return {
            "auc": auc, "pr_auc": pr_auc, "brier": r.sq / total, "log_loss": r.ll / total,
            "top_decile_lift": lift, "ece": ece,
        }


def _point_runs(y: np.ndarray, p: np.ndarray) -> tuple[_Runs, np.ndarray]:
    """Unit-weight runs of the rows (exact) and the reliability bin edges."""
    order = np.argsort(p, kind="stable")
    ps, ys = p[order], y[order]
    starts = np.flatnonzero(np.concatenate([[True], ps[1:] != ps[:-1]]))
    sq, ll, bins, edges = _row_terms(y, p)
    runs = _Runs(
        values=ps[starts],
        pos=np.add.reduceat(ys, starts)[None, :],
        tot=np.diff(np.append(starts, ps.size)).astype(float)[None, :],
        sq=np.array([sq.sum()]),
        ll=np.array([ll.sum()]),
        bin_w=np.bincount(bins, minlength=N_BINS).astype(float)[None, :],
        bin_p=np.bincount(bins, weights=p, minlength=N_BINS)[None, :],
        bin_y=np.bincount(bins, weights=y, minlength=N_BINS)[None, :],
    )
    return runs, edges


def _bootstrap_draws(
    y: np.ndarray, p: np.ndarray, groups: np.ndarray | None, n_boot: int, seed: int
) -> dict[str, np.ndarray]:
    """Every metric on `n_boot` resamples of companies (or rows without `groups`).

    Rows are first summed per company: the Brier and log-loss terms and the reliability bins exactly, the
    ranking into at most BOOT_LEVELS probability levels (exact below that many distinct values; above it,
    rows in one level count as tied, which moves an AUC by well under 0.001). A resample is then a vector of
    company counts, and every metric of all resamples follows from a few matrix products.
    """
    from scipy import sparse

    rng = np.random.default_rng(seed)
    if groups is None:
        codes, n_groups = np.arange(y.size), y.size
    else:
        _, codes = np.unique(groups, return_inverse=True)
        n_groups = int(codes.max()) + 1
    distinct, level = np.unique(p, return_inverse=True)
    if distinct.size > BOOT_LEVELS:
        ranks = np.argsort(np.argsort(p, kind="stable"), kind="stable")
        level = ranks * BOOT_LEVELS // y.size
        n_levels = BOOT_LEVELS
    else:
        n_levels = distinct.size
    sq, ll, bins, _ = _row_terms(y, p)
    by_level = sparse.csr_matrix((y, (codes, level)), shape=(n_groups, n_levels))
    rows_by_level = sparse.csr_matrix((np.ones(y.size), (codes, level)), shape=(n_groups, n_levels))
    cell = codes * N_BINS + bins
    per_bin = [np.bincount(cell, weights=w, minlength=n_groups * N_BINS).reshape(n_groups, N_BINS)
               for w in (np.ones(y.size), p, y)]
    per_company = np.stack([np.bincount(codes, weights=w, minlength=n_groups) for w in (sq, ll)], axis=1)
    chunk = max(1, _CHUNK_CELLS // max(n_groups, n_levels, 1))
    draws: dict[str, list[np.ndarray]] = {name: [] for name in TABLE_METRICS}
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        picks = rng.integers(0, n_groups, size=(size, n_groups))
        offsets = (np.arange(size) * n_groups)[:, None]
        counts = np.bincount((picks + offsets).ravel(), minlength=size * n_groups).reshape(size, n_groups)
        counts = counts.astype(float)
        terms = counts @ per_company
        runs = _Runs(
            values=np.empty(0),
            pos=np.asarray((by_level.T @ counts.T).T),
            tot=np.asarray((rows_by_level.T @ counts.T).T),
            sq=terms[:, 0], ll=terms[:, 1],
            bin_w=counts @ per_bin[0], bin_p=counts @ per_bin[1], bin_y=counts @ per_bin[2],
        )
        for name, values in _metrics(runs).items():
            draws[name].append(values)
    return {name: np.concatenate(parts) for name, parts in draws.items()}


def _percentile_interval(draws: np.ndarray, n_boot: int) -> list[float | None]:
    finite = draws[np.isfinite(draws)]
    if finite.size < max(10, n_boot // 2):
        return [None, None]
    low, high = np.percentile(finite, [2.5, 97.5])
    return [float(low), float(high)]


def _check_inputs(y_true: Any, proba: Any, groups: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    y = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(proba, dtype=float).ravel()
    if y.size != p.size:
        raise InputError(f"score_metrics: {y.size} outcomes but {p.size} probabilities")
    if y.size == 0:
        raise InputError("score_metrics: no rows to judge")
    if np.isnan(y).any() or not np.isin(y, (0.0, 1.0)).all():
        raise InputError("score_metrics: outcomes must be 0 or 1 (no missing values)")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        bad = p[np.isnan(p) | (p < 0) | (p > 1)][:3]
        raise InputError(f"score_metrics: churn probabilities must lie in 0..1, e.g. {bad.tolist()}")
    g = None
    if groups is not None:
        g = np.asarray(groups).ravel()
        if g.size != y.size:
            raise InputError(f"score_metrics: {g.size} group labels for {y.size} rows")
    return y, p, g


def churned_companies(y: np.ndarray, groups: np.ndarray | None) -> int | None:
    """How many distinct companies (groups) have a churned row; None without groups."""
    return None if groups is None else int(np.unique(np.asarray(groups)[np.asarray(y) == 1]).size)


def churn_evidence(metrics: Mapping[str, Any]) -> int:
    """The churns a rule of thumb should count in a score_metrics result: churned companies when known (each
    labels several weekly rows), else churned rows."""
    companies = metrics.get("churned_companies")
    return int(metrics["churns"] if companies is None or companies != companies else companies)


def score_metrics(
    y_true: Any,
    churn_probability: Any,
    n_boot: int = 200,
    seed: int = 0,
    groups: Any = None,
) -> dict[str, Any]:
    """How well churn probabilities predict churn: AUC, PR-AUC (average precision), Brier, log loss,
    top-decile lift, expected calibration error, a reliability curve (10 equal-count bins of the probability:
    churn probabilities are skewed low, so equal-width bins would leave most of them empty) and bootstrap 95%
    percentile intervals (`intervals`: metric -> [low, high]).

    `groups` (e.g. company_id per row) makes the bootstrap resample companies rather than rows (see the module
    docstring); `n_boot=0` skips it. AUC, PR-AUC and lift are None when only one class is present.
    Deterministic for a given seed.
    """
    y, p, g = _check_inputs(y_true, churn_probability, groups)
    runs, edges = _point_runs(y, p)
    point = _metrics(runs)
    churns = int(y.sum())
    one_class = churns in (0, y.size)
    result: dict[str, Any] = {
        "rows": int(y.size),
        "churns": churns,
        "churn_rate": churns / y.size,
        "companies": int(np.unique(g).size) if g is not None else None,
        "churned_companies": churned_companies(y, g),
    }
    for name in TABLE_METRICS:
        value = float(point[name][0])
        result[name] = None if not math.isfinite(value) or (one_class and name in _RANKING) else value
    reliability = []
    for b in range(N_BINS):
        weight = float(runs.bin_w[0, b])
        reliability.append({
            "bin": b + 1,
            "low": float(edges[b]),
            "high": float(edges[b + 1]),
            "rows": int(weight),
            "mean_predicted": float(runs.bin_p[0, b] / weight) if weight else None,
            "observed_rate": float(runs.bin_y[0, b] / weight) if weight else None,
        })
    result["reliability"] = reliability
    if n_boot > 0:
        draws = _bootstrap_draws(y, p, g, n_boot, seed)
        result["intervals"] = {name: _percentile_interval(draws[name], n_boot) for name in TABLE_METRICS}
    else:
        result["intervals"] = {name: [None, None] for name in TABLE_METRICS}
    result["n_boot"] = int(n_boot)
    result["bootstrap"] = "companies" if g is not None else "rows"
    return result


_RANKING = ("auc", "pr_auc", "top_decile_lift")


def auc_with_interval(
    y_true: Any, score: Any, n_boot: int = 200, seed: int = 0, groups: Any = None
) -> tuple[float | None, float | None, float | None]:
    """AUC of any score (higher = more churn; missing values left out) with its bootstrap 95% interval:
    (auc, low, high)."""
    y = np.asarray(y_true, dtype=float).ravel()
    x = np.asarray(score, dtype=float).ravel()
    keep = ~np.isnan(x) & ~np.isnan(y)
    y, x = y[keep], x[keep]
    g = None if groups is None else np.asarray(groups).ravel()[keep]
    if y.size == 0 or y.min() == y.max():
        return None, None, None
    # rank-transform to 0..1 so the score can be treated like a probability (AUC depends on order only)
    distinct, level = np.unique(x, return_inverse=True)
    scaled = level / max(distinct.size - 1, 1)
    auc = float(_metrics(_point_runs(y, scaled)[0])["auc"][0])
    if n_boot <= 0:
        return auc, None, None
    low, high = _percentile_interval(_bootstrap_draws(y, scaled, g, n_boot, seed)["auc"], n_boot)
    return auc, low, high


# --------------------------------------------------------------------------------------------------------------
# univariate signal AUCs (exploration)
# --------------------------------------------------------------------------------------------------------------
def univariate_auc(
    panel: pl.DataFrame | pd.DataFrame,
    signals: Sequence[str] | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """AUC of each signal alone for churn on labelled rows, with company-bootstrap 95% intervals.

    `auc` treats higher values as riskier (0.5 = no signal; below 0.5 = higher is healthier). Columns: signal,
    family, rows, missing_share, churns, auc, auc_low, auc_high, auc_oriented (max of auc and 1 - auc),
    direction (+1 higher is healthier, -1 higher is riskier, 0 none), expected_direction (the registry's).
    Sorted by auc_oriented, best first. Missing values are left out of each signal's AUC.
    """
    panel = to_polars(panel)
    require_columns(panel, ["company_id", OUTCOME])
    names = panel_signals(panel, signals)
    labelled = panel.filter(pl.col(OUTCOME).is_not_null())
    if labelled.height == 0:
        raise InputError("panel: no row has a known churn outcome (outcome_churned is empty everywhere)")
    y = labelled.get_column(OUTCOME).cast(pl.Float64).to_numpy()
    groups = labelled.get_column("company_id").cast(pl.String).to_numpy()
    try:
        from hsutils.signals import SIGNALS
    except ImportError:
        SIGNALS = {}  # noqa: N806
    rows = []
    for name in names:
        values = labelled.get_column(name).cast(pl.Float64, strict=False).to_numpy()
        present = ~np.isnan(values)
        auc, low, high = auc_with_interval(y, values, n_boot=n_boot, seed=seed, groups=groups)
        oriented = None if auc is None else max(auc, 1 - auc)
        direction = 0 if auc is None or auc == 0.5 else (1 if auc < 0.5 else -1)
        signal = SIGNALS.get(name)
        rows.append({
            "signal": name,
            "family": getattr(signal, "family", None),
            "rows": int(present.sum()),
            "missing_share": float(1 - present.mean()),
            "churns": int(y[present].sum()),
            "auc": auc,
            "auc_low": low,
            "auc_high": high,
            "auc_oriented": oriented,
            "direction": direction,
            "expected_direction": getattr(signal, "direction", None),
        })
    table = pd.DataFrame(rows)
    return table.sort_values("auc_oriented", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------------------------
# model comparison
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    """A comparison of scorers on held-out time.

    table: one row per model x segment (segment "all" first) with the metrics, their 95% intervals
    (`<metric>_low`, `<metric>_high`), the churned accounts of the training side (`train_churned_companies`) and a
    `warning`; models: the fitted scorers by name; cutoff: the first
    test as-of; metrics: {model: {segment: score_metrics dict}} (reliability curves included).
    """

    table: pd.DataFrame
    models: dict[str, Any]
    cutoff: datetime
    metrics: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    signals: list[str] = field(default_factory=list)
    horizon_days: int = 90
    train_rows: int = 0
    test_rows: int = 0


def signals_without_points() -> tuple[str, ...]:
    """The registered signals that set urgency rather than earn points (`point_source=False`: days_to_renewal, and
    any of the product's own registered so), in registry order: the modifiers of the health scores fitted here."""
    from hsutils.signals import SIGNALS

    return tuple(name for name, signal in SIGNALS.items() if not signal.point_source)


def fitted_health_score() -> Any:
    """An unfitted HealthScore whose modifiers are the registry's signals without points (signals_without_points)."""
    from hsutils.model import HealthScore

    return HealthScore(modifiers=signals_without_points())


def default_models() -> dict[str, Any]:
    """Unfitted scorers of the standard comparison: fitted HealthScore, the two presets, logistic, boosting."""
    from hsutils.model import BoostingReference, LogisticBaseline, preset

    return {
        "fitted": fitted_health_score(),
        "seed": preset("seed"),
        "40-30-30": preset("40-30-30"),
        "logistic": LogisticBaseline(),
        "boosting": BoostingReference(),
    }


def model_columns(model: Any, signals: Sequence[str], available: Sequence[str]) -> list[str]:
    """The columns a scorer is fitted on: a preset's own signals (its fixed points and urgency column), else
    `signals`."""
    fixed = getattr(model, "fixed_points", None)
    if isinstance(fixed, dict) and fixed:
        own = [str(c) for c in fixed]
        urgency = getattr(model, "urgency", None)
        if urgency and urgency not in own:
            own.append(str(urgency))
        missing = [c for c in own if c not in available]
        if missing:
            raise InputError(f"panel lacks the signal(s) {', '.join(missing)} that the scorer needs")
        return own
    segment_column = getattr(model, "segment_column", None)
    if segment_column:
        if segment_column not in available:
            raise InputError(f"panel lacks the segment column {segment_column!r} that the scorer needs")
        return [*signals, segment_column]
    return list(signals)


def fit_scorer(model: Any, frame: pl.DataFrame, columns: Sequence[str]) -> Any:
    """Fit a scorer on the labelled rows of `frame` (company ids as cross-fitting groups when it takes them)."""
    import inspect

    labelled = frame.filter(pl.col(OUTCOME).is_not_null())
    X = labelled.select(list(columns)).to_pandas()
    y = labelled.get_column(OUTCOME).cast(pl.Int64).to_numpy()
    if "groups" in inspect.signature(model.fit).parameters:
        return model.fit(X, y, groups=labelled.get_column("company_id").cast(pl.String).to_numpy())
    return model.fit(X, y)


def fitted_columns(model: Any, fallback: Sequence[str]) -> list[str]:
    """The columns a fitted scorer reads."""
    names = getattr(model, "feature_names_in_", None)
    return [str(c) for c in names] if names is not None else list(fallback)


def signals_fitted(model: Any, columns: Sequence[str]) -> int:
    """How many signals a fitted scorer learned from: a health score's point sources (not its modifiers, a segment
    column or a signal without values), else every column it was fitted on."""
    sources = getattr(getattr(model, "global_model_", model), "point_sources_", None)
    return len(columns) if sources is None else len(sources)


def churn_probability(model: Any, frame: pl.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Column 1 of predict_proba on the given panel columns, as a float array."""
    X = frame.select(list(columns)).to_pandas()
    return np.asarray(model.predict_proba(X), dtype=float)[:, 1]


def auc_unstable(test_churns: int, auc_interval: Sequence[Any]) -> bool:
    """Whether a held-out AUC cannot be relied on: fewer than MIN_TEST_CHURNS_FOR_AUC churned accounts in the test
    period, or a 95% interval ([low, high], None or NaN when unknown) wider than MAX_STABLE_AUC_WIDTH."""
    low, high = (list(auc_interval) + [None, None])[:2]
    known = low is not None and high is not None and not (math.isnan(low) or math.isnan(high))
    return test_churns < MIN_TEST_CHURNS_FOR_AUC or (known and high - low > MAX_STABLE_AUC_WIDTH)


def few_training_churns(churns: int, n_signals: int, accounts: bool = True) -> str:
    """'N churned accounts in training for K signals (fewer than MIN_CHURNS_PER_SIGNAL per signal): ...' for a fit
    resting on too few churns (`accounts` False: churned rows, for a fit not told which rows are one account)."""
    unit = "account" if accounts else "row"
    return (f"{churns:,} churned {unit}{'' if churns == 1 else 's'} in training for {n_signals} signal"
            f"{'' if n_signals == 1 else 's'} (fewer than {MIN_CHURNS_PER_SIGNAL} per signal): points fitted on so "
            "few may overfit")


def segment_warning(train_churns: int, test_churns: int, n_signals: int, auc_interval: Sequence[Any]) -> str:
    """Plain-words warning for a segment with too few churned accounts (in training, in the test period) to fit
    or to judge ('' when none)."""
    notes = []
    if train_churns < MIN_CHURNS_PER_SIGNAL * n_signals:
        notes.append(few_training_churns(train_churns, n_signals))
    if test_churns == 0:
        notes.append("no churn in the test period: AUC undefined")
    elif test_churns < MIN_TEST_CHURNS_FOR_AUC:
        notes.append(f"only {test_churns} churned accounts in the test period: AUC not stable")
    elif auc_unstable(test_churns, auc_interval):
        low, high = list(auc_interval)[:2]
        notes.append(f"AUC 95% interval {low:.2f} to {high:.2f} is wider than {MAX_STABLE_AUC_WIDTH}: AUC not stable")
    return "; ".join(notes)


def segment_sort_key(value: Any) -> tuple[bool, bool, float, str]:
    """Sort key for segment values as readers expect them: sizes by size ("1-49", "50-199", "200-999", "1000+",
    as panel.SIZE_BUCKETS orders them, or any label that starts with a number), other values by their text,
    and an unknown segment ("unknown", none, empty) last."""
    text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    leading = re.match(r"\s*(\d+(?:\.\d+)?)", text)
    return (text.strip().lower() in UNKNOWN_SEGMENTS, leading is None,
            float(leading.group(1)) if leading else 0.0, text)


def _churned_by_segment(frame: pl.DataFrame, segment_column: str | None) -> dict[str, int]:
    """Churned accounts of a split side, overall (SEGMENT_ALL) and per segment value."""
    churned = frame.filter(pl.col(OUTCOME).cast(pl.Int64) == 1)
    counts = {SEGMENT_ALL: churned.get_column("company_id").n_unique()}
    if segment_column is not None and segment_column in frame.columns:
        by_segment = churned.group_by(pl.col(segment_column).cast(pl.String).fill_null("(none)")).agg(
            pl.col("company_id").n_unique()
        )
        counts.update(dict(zip(*by_segment.get_columns(), strict=True)))
    return counts


def compare_models(
    panel: pl.DataFrame | pd.DataFrame,
    cutoff: str | date | datetime | None = None,
    horizon_days: int = 90,
    signals: Sequence[str] | None = None,
    segment_column: str | None = "arr_segment",
    n_boot: int = 200,
    seed: int = 0,
    models: dict[str, Any] | None = None,
) -> Comparison:
    """Fit every scorer on the training side of a time split and judge it on the test side, overall and per
    segment. `models` (name -> unfitted scikit-learn-style scorer) replaces the standard five
    (fitted, seed, 40-30-30, logistic, boosting). Presets are fitted on their own signals.
    """
    panel = to_polars(panel)
    names = panel_signals(panel, signals)
    train, test, cut = time_split(panel, cutoff, horizon_days)
    test = test.filter(pl.col(OUTCOME).is_not_null())
    if segment_column is not None:
        require_columns(panel, [segment_column], "panel (segment column)")
    available = [c for c in panel.columns if not c.startswith("outcome_")]
    y_test = test.get_column(OUTCOME).cast(pl.Int64).to_numpy()
    groups = test.get_column("company_id").cast(pl.String).to_numpy()
    train_churned = _churned_by_segment(train, segment_column)
    segments: list[tuple[str, np.ndarray, int]] = [(SEGMENT_ALL, np.ones(test.height, dtype=bool),
                                                    train_churned[SEGMENT_ALL])]
    if segment_column is not None:
        seg_test = test.get_column(segment_column).cast(pl.String).fill_null("(none)").to_numpy()
        for value in sorted(set(seg_test.tolist()), key=segment_sort_key):
            segments.append((value, seg_test == value, train_churned.get(value, 0)))

    fitted: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    metrics: dict[str, dict[str, dict[str, Any]]] = {}
    for name, model in (models if models is not None else default_models()).items():
        columns = model_columns(model, names, available)
        try:
            fit_scorer(model, train, columns)
        except (InputError, ValueError) as exc:  # named: "y: ..." alone does not say which fit, on which rows
            raise InputError(f"model {name}: cannot be fitted on the training rows (before {iso(cut)[:10]}): {exc}") \
                from None
        fitted[name] = model
        proba = churn_probability(model, test, fitted_columns(model, columns))
        metrics[name] = {}
        for segment, mask, train_churns in segments:
            m = score_metrics(y_test[mask], proba[mask], n_boot=n_boot, seed=seed, groups=groups[mask])
            metrics[name][segment] = m
            row: dict[str, Any] = {
                "model": name, "segment": segment, "rows": m["rows"], "companies": m["companies"],
                "churns": m["churns"], "churned_companies": m["churned_companies"], "churn_rate": m["churn_rate"],
                "train_churned_companies": train_churns,
            }
            for metric in TABLE_METRICS:
                row[metric] = m[metric]
                row[f"{metric}_low"], row[f"{metric}_high"] = m["intervals"][metric]
            row["warning"] = segment_warning(train_churns, churn_evidence(m), signals_fitted(model, columns),
                                             m["intervals"]["auc"])
            rows.append(row)
    table = pd.DataFrame(rows)
    return Comparison(
        table=table, models=fitted, cutoff=cut, metrics=metrics, signals=names, horizon_days=horizon_days,
        train_rows=train.height, test_rows=test.height,
    )


def split_summary(frame: pl.DataFrame) -> dict[str, Any]:
    """Rows, companies, churns and as-of span of one side of a split (labelled rows only)."""
    labelled = frame.filter(pl.col(OUTCOME).is_not_null())
    if labelled.height == 0:
        return {"rows": 0, "companies": 0, "churns": 0, "from": None, "to": None}
    return {
        "rows": labelled.height,
        "companies": labelled.get_column("company_id").n_unique(),
        "churns": int(labelled.get_column(OUTCOME).sum() or 0),
        "from": iso(labelled.get_column("as_of").min()),
        "to": iso(labelled.get_column("as_of").max()),
    }


# --------------------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------------------
@dataclass
class ResolvedModel:
    """A model named on the command line: the scorer, whether it still needs fitting, and its description."""

    scorer: Any
    needs_fit: bool
    name: str
    version: str
    training: dict[str, Any]


def resolve_model(reference: str) -> ResolvedModel:
    """A model file path or a preset name -> ResolvedModel (InputError for anything else).

    A preset (named, or a model file of kind preset) comes back unfitted: the caller fits its transforms and
    calibration on the snapshot's labelled history before scoring with it.
    """
    from hsutils.model import load_model

    scorer = load_model(reference)
    needs_fit = not (hasattr(scorer, "points_") or hasattr(scorer, "global_model_"))
    metadata = getattr(scorer, "metadata_", None) or {}
    name = Path(reference).name if Path(reference).is_file() else reference
    version = getattr(scorer, "version_", None) or (f"preset:{reference}" if needs_fit else "unknown")
    return ResolvedModel(scorer, needs_fit, name, str(version), dict(metadata.get("training") or {}))


def check_model_signals(scorer: Any, panel: pl.DataFrame, columns: Sequence[str] | None = None) -> list[str]:
    """The columns the scorer reads, InputError when the panel lacks any."""
    from hsutils.panel import check_model_columns_known

    needed = list(columns) if columns is not None else fitted_columns(scorer, [])
    missing = [c for c in needed if c not in panel.columns]
    check_model_columns_known(missing)  # not in the panel because nobody registered it (e.g. no --signal-module)
    if missing:
        raise InputError(f"model reads signal(s) not in the panel: {', '.join(missing)}")
    return needed


def evaluate_model(
    panel: pl.DataFrame | pd.DataFrame,
    resolved: ResolvedModel,
    cutoff: str | date | datetime | None = None,
    horizon_days: int = 90,
    segment_column: str = "arr_segment",
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Everything `hsutils evaluate` writes: split, metrics overall and per segment, renewal and playbook
    back-tests. A preset is fitted (transforms and calibration) on the training side first; a fitted model
    file is judged from its own training cutoff on unless `cutoff` says otherwise."""
    from hsutils import backtest

    panel = to_polars(panel)
    notes: list[str] = []
    trained_cutoff = resolved.training.get("cutoff") if resolved.training else None
    if cutoff is None and trained_cutoff:
        cutoff = trained_cutoff
    train, test, cut = time_split(panel, cutoff, horizon_days)
    scorer = resolved.scorer
    if resolved.needs_fit:
        fit_scorer(scorer, train, model_columns(scorer, panel_signals(panel), panel.columns))
    elif trained_cutoff and parse_when(trained_cutoff) > cut:
        notes.append(
            f"the model was trained on outcomes up to {iso(parse_when(trained_cutoff))}, after the test period "
            f"starts ({iso(cut)}): these metrics are optimistic"
        )
    columns = check_model_signals(scorer, panel)
    labelled = test.filter(pl.col(OUTCOME).is_not_null())
    y = labelled.get_column(OUTCOME).cast(pl.Int64).to_numpy()
    groups = labelled.get_column("company_id").cast(pl.String).to_numpy()
    proba = churn_probability(scorer, labelled, columns)
    overall = score_metrics(y, proba, n_boot=n_boot, seed=seed, groups=groups)
    train_churned = _churned_by_segment(train, segment_column)
    per_segment: dict[str, Any] = {}
    if segment_column in panel.columns:
        seg = labelled.get_column(segment_column).cast(pl.String).fill_null("(none)").to_numpy()
        for value in sorted(set(seg.tolist()), key=segment_sort_key):
            mask = seg == value
            m = score_metrics(y[mask], proba[mask], n_boot=n_boot, seed=seed, groups=groups[mask])
            m["warning"] = segment_warning(train_churned.get(value, 0), churn_evidence(m), signals_fitted(scorer, columns),
                                           m["intervals"]["auc"])
            per_segment[value] = m
    overall["warning"] = segment_warning(train_churned[SEGMENT_ALL], churn_evidence(overall), signals_fitted(scorer, columns),
                                         overall["intervals"]["auc"])

    # the whole history is scored so that score changes at the start of the test period are known; only
    # renewals, alerts and events from the cutoff on are counted
    history = backtest.score_history(scorer, panel)
    renewals = backtest.renewal_backtest(history, panel, period_start=cut)
    verdict = backtest.validation_verdict(renewals)
    playbook = backtest.playbook_backtest(history, panel, horizon_days=horizon_days, period_start=cut)
    points = getattr(scorer, "points_", None)
    return {
        "model": {
            "name": resolved.name,
            "version": resolved.version,
            "kind": "preset" if resolved.needs_fit else "fitted",
            "signals": list(columns),
            "points": {str(k): float(v) for k, v in points.items()} if isinstance(points, dict) else None,
        },
        "split": {
            "cutoff": iso(cut),
            "horizon_days": horizon_days,
            "train": split_summary(train),
            "test": split_summary(test),
        },
        "metrics": {"overall": overall, "segments": per_segment},
        "renewal_backtest": {
            "renewals": renewals.renewals.height,
            "summary": renewals.summary.to_dicts(),
            "verdict": {"passed": verdict.passed, "text": verdict.text},
        },
        "playbook": playbook.to_dict(orient="records"),
        "notes": notes,
    }


def cli_evaluate(args: Any) -> int:
    """`hsutils evaluate DIR --model MODEL --out metrics.json`: judge a model file or preset on held-out time."""
    from hsutils.panel import build_panel
    from hsutils.snapshot import load_snapshot

    out = Path(args.out)
    if out.suffix.lower() != ".json":
        raise InputError(f"--out {out}: the metrics file must end in .json")
    resolved = resolve_model(args.model)
    horizon = int(getattr(args, "horizon_days", 90) or 90)
    snapshot = load_snapshot(args.dir, mapping=getattr(args, "mapping", None))
    panel = build_panel(snapshot, horizon_days=horizon)
    payload = evaluate_model(panel, resolved, cutoff=getattr(args, "cutoff", None), horizon_days=horizon)
    payload["snapshot"] = {
        "created_at": iso(snapshot.manifest.created_at),
        "source": snapshot.manifest.source,
    }
    write_json_atomic(payload, out)
    verdict = payload["renewal_backtest"]["verdict"]["text"]
    overall = payload["metrics"]["overall"]
    auc = overall["auc"]
    print(f"AUC {auc:.3f} on {counted(overall['rows'], 'held-out row')} ({counted(overall['churns'], 'churned row')} "
          f"from {counted(overall['churned_companies'], 'account')}). {verdict}"
          if auc is not None else verdict)
    # e.g. a test period inside the model's training period (optimistic metrics), or too few churns to judge by
    for note in [*payload["notes"], *([overall["warning"]] if overall.get("warning") else [])]:
        print(f"caution: {note}")
    print(f"metrics written to {out}")
    return 0
