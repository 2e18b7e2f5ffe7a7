"""Back-tests of a health score over weekly history: the 90/60/30-day renewal check and the alert playbook.

`score_history` scores every panel row. `renewal_backtest` looks up, for each renewal, the score some days
before the term ended and compares churned, renewed and expanded accounts; `validation_verdict` turns that into
one pass/fail line. `playbook_backtest` replays alert rules (`Rule` objects: plain data with thresholds) over
the weekly history and measures, per rule, the workload it creates and the churn (or expansion) it foresaw.

Alerts: a rule raises an alert on the week its condition starts to hold for an account (as a CRM workflow
enrols an account once); the alert stays open while the condition keeps holding, and a new one is raised only
after the condition stopped holding. An alert is "followed" by churn when the account churns after it was
raised and within the horizon after it closed; a churn is "caught" when an alert was open at some week within
the horizon before it, and its lead time runs from the day that alert was raised.
Outcome events come from the panel's outcome columns: a churn happens `outcome_days_to_churn` days after the
as-of of a row labelled churned (or at its term_end when that column is absent); an expansion closes within the
horizon after each row labelled `outcome_expanded`, so it is dated a week after the last such row of a run
(or exactly, when the panel carries `outcome_days_to_expansion`). In the renewal back-test a renewal counts as
"expanded" when it was won and an expansion closed within the horizon of a row before the term ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from hsutils.errors import InputError
from hsutils.evaluate import (
    OUTCOME,
    fitted_columns,
    parse_when,
    require_columns,
    to_polars,
    when_literal,
)

HEALTHY_AT = 70.0
AT_RISK_BELOW = 55.0
VALIDATION_THRESHOLD = 60.0
CHANGE_DAYS = 28  # "30 days" on a weekly grid: the score four weeks earlier
CONTEXT_COLUMNS = (
    "arr", "arr_segment", "cs_owner_id", "ae_owner_id", "days_to_renewal", "term_end", "seat_utilisation",
)
UNASSIGNED = "(unassigned)"
OWNER_WORDS = {"cs_owner_id": "a CS owner", "ae_owner_id": "an account executive"}  # owner columns, for readers


def owner_noun(owner: str) -> str:
    """The owner column as a reader names one owner: 'CS owner' for cs_owner_id; another column as it is."""
    return OWNER_WORDS.get(owner, f"a {owner}").split(" ", 1)[1]
# the panel's own ARR segments in words; a tier or size value of the customer's own reads as it is (segment_words)
SEGMENT_WORDS = {"high_touch": "high-touch", "scaled": "scaled"}


def segment_words(value: Any) -> str:
    """A segment value as leadership reads it: 'high-touch', not 'high_touch'; any other value (a tier, a
    company size of the portal's own) as it is."""
    return SEGMENT_WORDS.get(str(value), str(value))


# the panel's segment columns (panel.SEGMENT_COLUMNS) as readers name the grouping (grouping_words)
GROUPING_WORDS = {"arr_segment": "ARR segment", "tier": "tier", "size_bucket": "company size"}


def grouping_words(segment_column: str, capital: bool = False) -> str:
    """What the rows are grouped by, in words: 'ARR segment', 'tier', 'company size' ('Tier' with `capital`);
    another column as its name with spaces."""
    words = GROUPING_WORDS.get(segment_column, segment_column.replace("_", " "))
    return words[:1].upper() + words[1:] if capital else words


# --------------------------------------------------------------------------------------------------------------
# score history
# --------------------------------------------------------------------------------------------------------------
def _bands(scores: np.ndarray) -> np.ndarray:
    return np.where(scores >= HEALTHY_AT, "Healthy", np.where(scores < AT_RISK_BELOW, "At risk", "Neutral"))


def score_history(model: Any, panel: pl.DataFrame | pd.DataFrame, change_days: int = CHANGE_DAYS) -> pl.DataFrame:
    """Score every panel row: company_id, as_of, health_score, churn_probability, band, score_change_30d (score
    minus the score `change_days` earlier, null when that week is not in the panel) and the columns the
    playbook rules read (arr, arr_segment, owners, days_to_renewal, term_end, seat_utilisation; null when the
    panel lacks them). A scorer without `health_score` (a baseline) scores 100 x (1 - churn probability) with
    the default bands.
    """
    panel = to_polars(panel)
    require_columns(panel, ["company_id", "as_of"])
    columns = fitted_columns(model, [])
    require_columns(panel, columns, "panel (signals the model reads)")
    if panel.height == 0:
        raise InputError("panel has no rows to score")
    X = panel.select(columns).to_pandas()
    proba = np.asarray(model.predict_proba(X), dtype=float)[:, 1]
    if hasattr(model, "health_score"):
        scores = np.asarray(model.health_score(X), dtype=float)
        bands = np.asarray(model.band(X)).astype(str) if hasattr(model, "band") else _bands(scores)
    else:
        scores = 100.0 * (1.0 - proba)
        bands = _bands(scores)
    context = []
    for name in CONTEXT_COLUMNS:
        if name in panel.columns:
            context.append(pl.col(name))
        elif name == "seat_utilisation" and {"active_seats", "contracted_seats"} <= set(panel.columns):
            seats = pl.col("contracted_seats").cast(pl.Float64)
            context.append(
                pl.when(seats > 0).then(pl.col("active_seats") / seats).otherwise(None).alias(name)
            )
        else:
            context.append(pl.lit(None).alias(name))
    history = panel.select(
        pl.col("company_id"), pl.col("as_of"),
        pl.Series("health_score", scores), pl.Series("churn_probability", proba), pl.Series("band", bands),
        *context,
    )
    return with_score_change(history, change_days)


def with_score_change(history: pl.DataFrame, change_days: int = CHANGE_DAYS) -> pl.DataFrame:
    """Add score_change_30d: health_score minus the same company's score `change_days` earlier (a row within
    three days of that date), null when unknown."""
    history = history.drop("score_change_30d", strict=False).sort(["company_id", "as_of"])
    earlier = history.select(
        pl.col("company_id"), pl.col("as_of").alias("_then"), pl.col("health_score").alias("_score_then")
    )
    looked = history.with_columns((pl.col("as_of") - pl.duration(days=change_days)).alias("_then")).sort("_then")
    joined = looked.join_asof(
        earlier.sort("_then"), on="_then", by="company_id", strategy="nearest", tolerance="3d",
        check_sortedness=False,
    )
    return joined.with_columns(
        (pl.col("health_score") - pl.col("_score_then")).alias("score_change_30d")
    ).drop("_then", "_score_then").sort(["company_id", "as_of"])


# --------------------------------------------------------------------------------------------------------------
# outcome events
# --------------------------------------------------------------------------------------------------------------
def _event_dates(panel: pl.DataFrame, flag: str, days_column: str) -> pl.DataFrame:
    dtype = panel.schema["as_of"]
    rows = panel.filter(pl.col(flag) == 1)
    if days_column in panel.columns:
        rows = rows.filter(pl.col(days_column).is_not_null())
        date_expr = pl.col("as_of") + pl.duration(days=pl.col(days_column).cast(pl.Float64).round().cast(pl.Int64))
    elif "term_end" in panel.columns:
        date_expr = pl.col("term_end").cast(dtype)
    else:
        raise InputError(f"panel: {flag} needs {days_column} or term_end to date its events")
    key = ["company_id", "term_end"] if "term_end" in panel.columns else ["company_id", "_date"]
    return (
        rows.with_columns(date_expr.cast(dtype).alias("_date"))
        .group_by(key).agg(pl.col("_date").min().alias("event_date"))
        .select("company_id", "event_date").unique().sort(["company_id", "event_date"])
    )


def _expansion_events(panel: pl.DataFrame, step_days: int = 7) -> pl.DataFrame:
    """Expansion dates from outcome_expanded (an expansion closes within the horizon after as-of).

    A run of consecutive weeks flagged 1 ends on the last as-of before the expansion closed, so the event is
    dated one step (a week) after the run's last as-of: exact to within a week. Two expansions less than a
    horizon apart read as one.
    """
    rows = panel.select("company_id", "as_of", "outcome_expanded").sort(["company_id", "as_of"])
    flagged = pl.col("outcome_expanded").fill_null(0) == 1
    next_flag = flagged.shift(-1).over("company_id").fill_null(False)
    gap = (pl.col("as_of").shift(-1).over("company_id") - pl.col("as_of")).dt.total_days()
    run_end = flagged & (~next_flag | (gap > step_days + 1).fill_null(False))
    return (
        rows.filter(run_end)
        .select("company_id", (pl.col("as_of") + pl.duration(days=step_days)).alias("event_date"))
        .unique().sort(["company_id", "event_date"])
    )


def outcome_events(panel: pl.DataFrame | pd.DataFrame, target: str = "churn") -> pl.DataFrame:
    """One row per churn (target "churn") or expansion ("expansion") the panel reveals: company_id, event_date."""
    panel = to_polars(panel)
    if target == "churn":
        require_columns(panel, ["company_id", "as_of", OUTCOME])
        return _event_dates(panel, OUTCOME, "outcome_days_to_churn")
    if target == "expansion":
        require_columns(panel, ["company_id", "as_of", "outcome_expanded"])
        if "outcome_days_to_expansion" in panel.columns:
            return _event_dates(panel, "outcome_expanded", "outcome_days_to_expansion")
        return _expansion_events(panel)
    raise InputError(f"unknown rule target {target!r}: use churn or expansion")


# --------------------------------------------------------------------------------------------------------------
# renewal back-test (90 / 60 / 30 days before the term ends)
# --------------------------------------------------------------------------------------------------------------
@dataclass
class RenewalBacktest:
    """renewals: one row per renewal (company_id, term_end, outcome, arr, arr_segment, score_<d>d and
    as_of_<d>d per horizon); summary: one row per horizon x outcome (accounts, median, q25, q75, mean,
    share_below); horizons and threshold as used; first_week: the first scored week from the period's start on
    (None without one): a renewal ending at or before it was decided before any week of the period was scored."""

    renewals: pl.DataFrame
    summary: pl.DataFrame
    horizons: tuple[int, ...]
    threshold: float = VALIDATION_THRESHOLD
    first_week: datetime | None = None


def renewals_of(panel: pl.DataFrame, horizon_days: int | None = None) -> pl.DataFrame:
    """Renewal decisions seen in a panel: company_id, term_end, outcome (churned / renewed / expanded), arr,
    arr_segment. A renewal is a (company, term_end) with a labelled row; it churned when any such row says
    so, expanded when it renewed and a row says expanded."""
    require_columns(panel, ["company_id", "as_of", "term_end", OUTCOME])
    rows = panel.filter(pl.col(OUTCOME).is_not_null() & pl.col("term_end").is_not_null())
    rows = rows.filter(pl.col("term_end") > pl.col("as_of"))
    if horizon_days is not None:
        rows = rows.filter(pl.col("term_end") <= pl.col("as_of") + pl.duration(days=horizon_days))
    expanded = pl.col("outcome_expanded").max() if "outcome_expanded" in panel.columns else pl.lit(0)
    last = pl.col("as_of").arg_max()
    aggs = [
        pl.col(OUTCOME).max().alias("_churned"),
        expanded.alias("_expanded"),
        (pl.col("arr").get(last) if "arr" in panel.columns else pl.lit(None)).alias("arr"),
        (pl.col("arr_segment").get(last) if "arr_segment" in panel.columns else pl.lit(None)).alias("arr_segment"),
    ]
    grouped = rows.group_by(["company_id", "term_end"]).agg(aggs)
    outcome = (
        pl.when(pl.col("_churned") == 1).then(pl.lit("churned"))
        .when(pl.col("_expanded") == 1).then(pl.lit("expanded"))
        .otherwise(pl.lit("renewed"))
    )
    return grouped.with_columns(outcome.alias("outcome")).select(
        "company_id", "term_end", "outcome", "arr", "arr_segment"
    ).sort(["term_end", "company_id"])


def renewal_backtest(
    history: pl.DataFrame | pd.DataFrame,
    panel: pl.DataFrame | pd.DataFrame,
    horizons: Sequence[int] = (90, 60, 30),
    period_start: str | date | datetime | None = None,
    threshold: float = VALIDATION_THRESHOLD,
    max_gap_days: int = 7,
) -> RenewalBacktest:
    """For each renewal (term ending on or after `period_start` when given), the health score `d` days before
    the term ended for each d in `horizons`: the latest scored as-of at or before that day, if it is at most
    `max_gap_days` older (else null). Summarised per horizon and outcome, with the share below `threshold`."""
    history, panel = to_polars(history), to_polars(panel)
    require_columns(history, ["company_id", "as_of", "health_score"], "score history")
    horizons = tuple(sorted({int(h) for h in horizons}, reverse=True))
    if not horizons or min(horizons) <= 0:
        raise InputError(f"renewal back-test horizons must be positive days, got {horizons}")
    renewals = renewals_of(panel)
    dtype = history.schema["as_of"]
    first_week = None
    if period_start is not None:
        start = parse_when(period_start)
        renewals = renewals.filter(pl.col("term_end") >= when_literal(start, renewals.schema["term_end"]))
        first_week = history.select(pl.col("as_of").filter(pl.col("as_of") >= when_literal(start, dtype)).min()).item()
    scored = history.select(
        "company_id", pl.col("as_of").alias("_at"), pl.col("as_of").alias("_scored_at"), "health_score"
    ).sort("_at")
    for days in horizons:
        target = (pl.col("term_end").cast(dtype) - pl.duration(days=days)).alias("_at")
        looked = renewals.with_columns(target).sort("_at").join_asof(
            scored, on="_at", by="company_id", strategy="backward", tolerance=f"{max_gap_days}d",
            check_sortedness=False,
        )
        renewals = looked.rename({"health_score": f"score_{days}d", "_scored_at": f"as_of_{days}d"}).drop("_at")
    renewals = renewals.sort(["term_end", "company_id"])
    parts = []
    for days in horizons:
        col = pl.col(f"score_{days}d")
        part = (
            renewals.filter(col.is_not_null()).group_by("outcome").agg(
                pl.len().alias("accounts"),
                col.median().alias("median"),
                col.quantile(0.25, "linear").alias("q25"),
                col.quantile(0.75, "linear").alias("q75"),
                col.mean().alias("mean"),
                (col < threshold).mean().alias("share_below"),
            ).with_columns(pl.lit(days).alias("days_before"))
        )
        parts.append(part)
    summary = pl.concat(parts) if parts else pl.DataFrame()
    order = {"churned": 0, "renewed": 1, "expanded": 2}
    summary = summary.with_columns(
        pl.col("outcome").replace_strict(order, default=9).alias("_o")
    ).sort(["days_before", "_o"], descending=[True, False]).drop("_o").select(
        "days_before", "outcome", "accounts", "median", "q25", "q75", "mean", "share_below"
    )
    return RenewalBacktest(renewals=renewals, summary=summary, horizons=horizons, threshold=threshold,
                           first_week=first_week)


@dataclass
class Verdict:
    """The validation step's answer: passed (None when it could not be judged, e.g. no churned renewal with a
    score in the period), one plain line, and the figures behind it."""

    passed: bool | None
    text: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text


def checkpoint_words(horizons: Sequence[int]) -> str:
    """'90, 60 or 30 days' for the renewal back-test's checkpoints."""
    days = [str(d) for d in horizons]
    return (", ".join(days[:-1]) + " or " if len(days) > 1 else "") + f"{days[-1]} days"


def unscored_churns(unscored: int, churned: int, horizons: Sequence[int]) -> str:
    """The sentence on the churned renewals a verdict cannot count (no score at any checkpoint before the term
    ended, e.g. a customer for less time than that), so that its count adds up to every churn of the period;
    '' when there are none."""
    if unscored == 0:
        return ""
    when = f"{checkpoint_words(horizons)} before"
    if unscored == 1:
        return (f"One more of the {churned:,} churned accounts is not counted: it had no score {when} its term "
                "ended (a customer for less time than that, for instance).")
    return (f"The other {unscored:,} of the {churned:,} churned accounts are not counted: they had no score {when} "
            "their term ended (customers for less time than that, for instance).")


def gap_points(gap: float, min_gap: float) -> str:
    """'+14 points'; with one decimal where whole points would put the gap on the other side of `min_gap`
    ('+9.9 points', not '+10 points', for a gap that fails a 10-point rule)."""
    whole = f"{gap:+.0f}"
    return f"{whole if (gap >= min_gap) == (round(gap) >= min_gap) else f'{gap:+.1f}'} points"


def validation_verdict(backtest: RenewalBacktest, min_share: float = 0.5, min_gap: float = 10.0) -> Verdict:
    """The field's validation rule as a pass/fail line.

    Passes when (1) at least `min_share` of churned accounts were below the threshold (60) at one or more of
    the checkpoints before their term ended — otherwise the score is not predictive — and (2) at every
    checkpoint, the median score of renewed accounts, and of expanded accounts when there are any, is at least
    `min_gap` points above the median of churned accounts. Not judged (passed None, text "NOT JUDGED: ...")
    when there is nothing to judge: no churned renewal with a score before its term ended, or no renewed one to
    compare it with.
    """
    renewals, threshold = backtest.renewals, backtest.threshold
    score_cols = [f"score_{d}d" for d in backtest.horizons]
    churned = renewals.filter(pl.col("outcome") == "churned")
    churned_scored = churned.filter(pl.any_horizontal([pl.col(c).is_not_null() for c in score_cols]))
    unscored = churned.height - churned_scored.height
    counts: dict[str, Any] = {}
    if backtest.first_week is not None:  # churned before any week of the period was scored: no AUC counts them
        first_week = when_literal(parse_when(backtest.first_week), renewals.schema["term_end"])
        counts["churned_before_scored_weeks"] = churned.filter(pl.col("term_end") <= first_week).height
    if churned_scored.height == 0:
        when = f"{checkpoint_words(backtest.horizons)} before"
        why = ("no renewal of the test period was lost, so there is no churn to check the score against"
               if unscored == 0 else
               f"the 1 churned account of the test period had no score {when} its term ended, so the score "
               "cannot be checked against it" if unscored == 1 else
               f"none of the {unscored:,} churned accounts of the test period had a score {when} its term ended, "
               "so the score cannot be checked against them")
        return Verdict(None, f"NOT JUDGED: {why}.", {"churned": 0, "churned_unscored": unscored, **counts})
    dropped = churned_scored.select(
        pl.any_horizontal([pl.col(c) < threshold for c in score_cols]).fill_null(False).mean()
    ).item()
    details: dict[str, Any] = {"churned": churned_scored.height, "churned_unscored": unscored, **counts,
                               "share_churned_below": float(dropped), "threshold": threshold, "gaps": {}}
    summary = backtest.summary
    gaps_ok = True
    gap_words = []
    short = []  # the checkpoints where a gap fell short, named in a FAIL: the head quotes only the last one
    compared: dict[str, bool] = {}  # the outcomes compared with churned accounts: True when a gap fell short
    for days in backtest.horizons:
        medians = {r["outcome"]: r["median"] for r in summary.filter(pl.col("days_before") == days).to_dicts()}
        if "churned" not in medians:
            continue
        for other in ("renewed", "expanded"):
            if other in medians and medians[other] is not None:
                gap = medians[other] - medians["churned"]
                details["gaps"][f"{other}_{days}d"] = gap
                gaps_ok &= gap >= min_gap
                compared[other] = compared.get(other, False) or gap < min_gap
                if gap < min_gap:
                    short.append(f"{days} days before, {other} accounts only a median {gap_points(gap, min_gap)}")
                if days == backtest.horizons[-1]:
                    gap_words.append(f"{other} accounts a median {gap_points(gap, min_gap)}")
    by_checkpoint = ", ".join(
        f"{r['days_before']} days before: {100 * r['share_below']:.0f}%"
        for r in summary.filter(pl.col("outcome") == "churned").to_dicts()
    )
    drop_ok = dropped >= min_share
    passed = drop_ok and gaps_ok and bool(compared)
    compare = (f"; {backtest.horizons[-1]} days before the term ended, " + " and ".join(gap_words) +
               " against churned accounts") if gap_words else ""
    accounts = "1 churned account" if churned_scored.height == 1 else f"{churned_scored.height:,} churned accounts"
    head = (f"{100 * dropped:.0f}% of {accounts} scored below {threshold:.0f} "
            f"before their term ended ({by_checkpoint}){compare}.")
    if unscored:
        head += " " + unscored_churns(unscored, churned.height, backtest.horizons)
    renewed_below = [r["share_below"] for r in summary.filter(pl.col("outcome") == "renewed").to_dicts()]
    if renewed_below and min(renewed_below) >= 0.5:
        head += (f" Most renewed accounts also scored below {threshold:.0f} ({100 * min(renewed_below):.0f}% or "
                 f"more at every checkpoint): {threshold:.0f} does not separate them on this score's scale.")
        details["share_renewed_below"] = min(renewed_below)
    if passed:
        text = f"PASS: the score predicts churn. {head}"
    elif not drop_ok:
        how_many = "no churned account" if dropped == 0 else f"fewer than {100 * min_share:.0f}% of churned accounts"
        text = (f"FAIL: the score is not predictive: {how_many} dropped below {threshold:.0f}. {head} "
                "Recalibrate the signals or the weights.")
    elif not compared:  # churned accounts only: the gap to the others cannot be measured
        details["passed"] = None
        return Verdict(None, "NOT JUDGED: no account that renewed in the test period had a score before its term "
                       f"ended to compare the churned ones with. {head}", details)
    else:
        fell_short = [other for other, fell in compared.items() if fell]
        text = (f"FAIL: {' and '.join(fell_short)} accounts did not score meaningfully higher (at least "
                f"{min_gap:.0f} points at every checkpoint) than churned accounts ({'; '.join(short)}). {head} "
                "Revisit the signals.")
    details["passed"] = passed
    return Verdict(passed, text, details)


# --------------------------------------------------------------------------------------------------------------
# playbook back-test
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """One playbook rule: plain data, every threshold a field (None = condition not used).

    The rule holds on a week when all its conditions hold. Drops compare the score with the score four weeks
    earlier (score_change_30d): drop = -score_change_30d. `target` is the event the alert should foresee
    ("churn" or "expansion"); `owner` the history column naming who receives it.
    """

    name: str
    action: str
    owner: str = "cs_owner_id"
    target: str = "churn"
    drop_more_than: float | None = None
    drop_at_least: float | None = None
    drop_at_most: float | None = None
    score_below: float | None = None
    score_at_least: float | None = None
    segment: str | None = None
    renewal_within_days: float | None = None
    seats_used_at_least: float | None = None

    def condition(self) -> pl.Expr:
        """A polars boolean expression over a score history (null counts as not holding)."""
        drop = -pl.col("score_change_30d")
        parts: list[pl.Expr] = []
        if self.drop_more_than is not None:
            parts.append(drop > self.drop_more_than)
        if self.drop_at_least is not None:
            parts.append(drop >= self.drop_at_least)
        if self.drop_at_most is not None:
            parts.append(drop <= self.drop_at_most)
        if self.score_below is not None:
            parts.append(pl.col("health_score") < self.score_below)
        if self.score_at_least is not None:
            parts.append(pl.col("health_score") >= self.score_at_least)
        if self.segment is not None:
            parts.append(pl.col("arr_segment") == self.segment)
        if self.renewal_within_days is not None:
            parts.append(pl.col("days_to_renewal").is_between(0, self.renewal_within_days))
        if self.seats_used_at_least is not None:
            parts.append(pl.col("seat_utilisation") >= self.seats_used_at_least)
        if not parts:
            raise InputError(f"playbook rule {self.name!r} has no condition")
        return pl.all_horizontal(parts).fill_null(False)

    def describe(self) -> str:
        """The rule's conditions in words."""
        words = []
        if self.drop_more_than is not None:
            words.append(f"score fell more than {self.drop_more_than:g} points in 30 days")
        if self.drop_at_least is not None or self.drop_at_most is not None:
            low = f"{self.drop_at_least:g}" if self.drop_at_least is not None else "0"
            high = f"{self.drop_at_most:g}" if self.drop_at_most is not None else "any"
            words.append(f"score fell {low}-{high} points in 30 days")
        if self.segment is not None:
            words.append(f"{segment_words(self.segment)} account")
        if self.score_below is not None:
            words.append(f"score below {self.score_below:g}")
        if self.score_at_least is not None:
            words.append(f"score {self.score_at_least:g} or more")
        if self.renewal_within_days is not None:
            words.append(f"renewal within {self.renewal_within_days:g} days")
        if self.seats_used_at_least is not None:
            words.append(f"at least {100 * self.seats_used_at_least:g}% of seats used")
        return ", ".join(words)


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("owner_alert", "alert the CS owner to call the economic buyer", drop_more_than=10),
    Rule("automated_email", "automated email from the CS owner about the signal that fell",
         drop_at_least=5, drop_at_most=10),
    Rule("ae_task", "task for the account executive", owner="ae_owner_id", segment="high_touch", score_below=60),
    Rule("executive_escalation", "escalate to the VP of CS", score_below=AT_RISK_BELOW),
    Rule("schedule_qbr", "schedule a QBR before the renewal", score_below=70, renewal_within_days=90),
    Rule("expansion_task", "expansion conversation led by the account executive", owner="ae_owner_id",
         target="expansion", score_at_least=85, seats_used_at_least=0.8),
)


def rule_alerts(history: pl.DataFrame, rule: Rule, max_gap_days: int = 8) -> pl.DataFrame:
    """Alerts a rule raises over a score history, one row per alert: company_id, as_of (the week the condition
    started to hold), end (the last week it held without a break longer than `max_gap_days`), owner (from the
    rule's owner column at the alert) and arr (at the alert)."""
    require_columns(history, ["company_id", "as_of", "health_score"], "score history")
    frame = history.sort(["company_id", "as_of"]).with_columns(rule.condition().alias("_on"))
    previous_on = pl.col("_on").shift(1).over("company_id")
    gap = (pl.col("as_of") - pl.col("as_of").shift(1).over("company_id")).dt.total_days()
    starts = pl.col("_on") & (previous_on.is_null() | ~previous_on | (gap > max_gap_days)).fill_null(True)
    owner = pl.col(rule.owner).cast(pl.String) if rule.owner in frame.columns else pl.lit(None, pl.String)
    arr = pl.col("arr").cast(pl.Float64) if "arr" in frame.columns else pl.lit(None, pl.Float64)
    frame = frame.with_columns(
        starts.cum_sum().over("company_id").alias("_episode"), owner.fill_null(UNASSIGNED).alias("owner"),
        arr.alias("_arr"),
    )
    return (
        frame.filter(pl.col("_on"))
        .group_by(["company_id", "_episode"], maintain_order=True)
        .agg(
            pl.col("as_of").first(), pl.col("as_of").last().alias("end"), pl.col("owner").first(),
            pl.col("_arr").first().alias("arr"),
        )
        .drop("_episode")
    )


@dataclass
class _Window:
    start: Any  # first as-of counted
    end: Any  # last as-of with known outcomes
    horizon: Any  # polars duration literal


def _window(history: pl.DataFrame, panel: pl.DataFrame, horizon_days: int, period_start: Any) -> _Window:
    dtype = history.schema["as_of"]
    start = history.get_column("as_of").min()
    if period_start is not None:
        start = max(start, parse_when(period_start)) if start is not None else parse_when(period_start)
    end = panel.get_column("as_of").max()
    return _Window(when_literal(parse_when(start), dtype), when_literal(parse_when(end), dtype),
                   pl.duration(days=horizon_days))


def _judge(
    alerts: pl.DataFrame, events: pl.DataFrame, window: _Window
) -> tuple[int, int, pl.DataFrame, int]:
    """(judged alerts, alerts followed by an event, caught events with first alert and ARR, events counted).

    An alert is followed when an event comes after it was raised and no later than the horizon after it
    closed; it is judged when followed or raised at least a horizon before the end of the data. An event is
    caught when an alert was open at some week within the horizon before it.
    """
    raised = alerts.filter(pl.col("as_of") >= window.start)
    reach = pl.col("end") + window.horizon
    followed_keys = (
        raised.join(events, on="company_id", how="inner")
        .filter((pl.col("event_date") > pl.col("as_of")) & (pl.col("event_date") <= reach))
        .select("company_id", "as_of").unique()
    )
    followed = followed_keys.height
    too_recent = raised.filter(pl.col("as_of") + window.horizon > window.end)
    judged = raised.height - too_recent.join(followed_keys, on=["company_id", "as_of"], how="anti").height
    counted = events.filter(
        (pl.col("event_date") - window.horizon >= window.start) & (pl.col("event_date") <= window.end)
    )
    caught = (
        counted.join(alerts, on="company_id", how="inner")
        .filter((pl.col("as_of") < pl.col("event_date")) & (pl.col("end") >= pl.col("event_date") - window.horizon))
        .sort("as_of")
        .group_by(["company_id", "event_date"], maintain_order=True)
        .agg(pl.col("as_of").first().alias("first_alert"), pl.col("arr").first().alias("arr"))
        .with_columns(
            ((pl.col("event_date") - pl.col("first_alert")).dt.total_seconds() / 86400.0).alias("lead_days")
        )
    )
    return judged, followed, caught, counted.height


def playbook_backtest(
    history: pl.DataFrame | pd.DataFrame,
    panel: pl.DataFrame | pd.DataFrame,
    horizon_days: int = 90,
    save_rate_early: float = 0.71,
    save_rate_late: float = 0.34,
    early_days: int = 60,
    rules: Sequence[Rule] = DEFAULT_RULES,
    period_start: str | date | datetime | None = None,
) -> pd.DataFrame:
    """Replay playbook rules over a weekly score history. One row per rule:

    alerts (raised from `period_start` on), owners, weeks, alerts_per_owner_per_week, busiest_owner_week (most
    alerts one owner got in one week), flagged_per_owner_per_week (accounts for which the condition holds, open
    alerts included, per owner per week), judged_alerts and precision (share of judged alerts followed by the
    rule's target event; see the module docstring), events and recall (share of events at least `horizon_days`
    after the start that an alert caught), median_lead_days (event date minus the day the catching alert was
    raised), arr_at_risk (ARR, at that alert, of caught churns) and arr_saved_what_if (that ARR times
    `save_rate_early` when the lead was at least `early_days`, else `save_rate_late`). ARR columns are empty
    for expansion rules.
    """
    history, panel = to_polars(history), to_polars(panel)
    if horizon_days <= 0:
        raise InputError(f"horizon_days must be positive, got {horizon_days}")
    for name, rate in (("save_rate_early", save_rate_early), ("save_rate_late", save_rate_late)):
        if not 0 <= rate <= 1:
            raise InputError(f"{name} must lie between 0 and 1, got {rate}")
    window = _window(history, panel, horizon_days, period_start)
    counted_history = history.filter(pl.col("as_of") >= window.start)
    weeks = max(counted_history.get_column("as_of").n_unique(), 1)
    events_by_target: dict[str, pl.DataFrame] = {}
    rows = []
    for rule in rules:
        if rule.target not in events_by_target:
            events_by_target[rule.target] = outcome_events(panel, rule.target)
        events = events_by_target[rule.target]
        alerts = rule_alerts(history, rule)
        raised = alerts.filter(pl.col("as_of") >= window.start)
        owner_col = pl.col(rule.owner) if rule.owner in history.columns else pl.lit(None, pl.String)
        owners = max(counted_history.select(owner_col.cast(pl.String).fill_null(UNASSIGNED).n_unique()).item(), 1)
        busiest = raised.group_by(["owner", "as_of"]).len().get_column("len").max() if raised.height else 0
        flagged_weeks = counted_history.select(rule.condition().sum()).item()
        judged, followed, caught, counted = _judge(alerts, events, window)
        leads = caught.get_column("lead_days").to_numpy()
        row: dict[str, Any] = {
            "rule": rule.name,
            "action": rule.action,
            "condition": rule.describe(),
            "target": rule.target,
            "owner_column": rule.owner,
            "alerts": raised.height,
            "owners": owners,
            "weeks": weeks,
            "alerts_per_owner_per_week": raised.height / (owners * weeks),
            "busiest_owner_week": int(busiest or 0),
            "flagged_per_owner_per_week": flagged_weeks / (owners * weeks),
            "judged_alerts": judged,
            "precision": followed / judged if judged else None,
            "events": counted,
            "caught": caught.height,
            "recall": caught.height / counted if counted else None,
            "median_lead_days": float(np.median(leads)) if leads.size else None,
            "arr_at_risk": None,
            "arr_saved_what_if": None,
        }
        if rule.target == "churn":
            arr = caught.get_column("arr").cast(pl.Float64).fill_null(0.0).to_numpy()
            rates = np.where(leads >= early_days, save_rate_early, save_rate_late)
            row["arr_at_risk"] = float(arr.sum())
            row["arr_saved_what_if"] = float((arr * rates).sum())
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------------------
# choosing the At-risk threshold
# --------------------------------------------------------------------------------------------------------------
def no_churn_to_judge(horizon_days: int) -> str:
    """Why a recall is not known: no churn of the test period had the `horizon_days` before it inside the period."""
    return (f"no churn in the test period came late enough to judge the alerts on (each needs the {horizon_days} "
            "days before it inside the test period)")


WEEKS_PER_QUARTER = 13


def about(count: float, noun: str) -> str:
    """'about 13 accounts', 'about 1 account', 'fewer than 1 account' for an average count."""
    whole = int(np.floor(count + 0.5))
    if whole == 0:
        return f"fewer than 1 {noun}" if count > 0 else f"no {noun}s"
    return f"about {whole:,} {noun}{'' if whole == 1 else 's'}"


def workload_words(whom: str, at_risk: float, new: float, average: int | None = None) -> str:
    """The At-risk line's workload as a reader grasps it: the at-risk accounts `whom` (e.g. 'each CS owner')
    holds in a typical week, rounded, with the average to one decimal when it is under 10 and rounding moves it
    (always, to `average` decimals, when given: beside a capacity it is compared with);
    and how many of them are new, per week, or per quarter when fewer than one a week comes up."""
    shown = round(float(at_risk), 1)  # 'about 2 (1.5 on average)', not 'about 1 (1.5 on average)' for 1.46
    if average is not None:
        exact = f" ({float(at_risk):,.{average}f} on average)"
    else:
        exact = f" ({shown:.1f} on average)" if shown < 10 and shown != np.floor(shown + 0.5) else ""
    held = f"{whom} would have {about(shown or at_risk, 'at-risk account')} in a typical week{exact}"
    if new >= 0.5:
        return f"{held}, about {np.floor(new + 0.5):,.0f} of them new each week"
    return f"{held}, with {about(new * WEEKS_PER_QUARTER, 'new one')} a quarter"


@dataclass
class ThresholdChoice:
    """The chosen At-risk threshold, what it achieves, and the table of every candidate."""

    threshold: float | None
    recall: float | None
    precision: float | None
    flagged_per_owner_per_week: float | None
    met: bool
    text: str
    table: pd.DataFrame
    churns: int = 0  # the churns of the test period the choice was judged on
    target_recall: float | None = None  # what the line was chosen for: the share of churns to flag in time,
    capacity_per_owner_per_week: float | None = None  # or (this given, which then decides) the owners' capacity


def choose_at_risk_threshold(
    history: pl.DataFrame | pd.DataFrame,
    panel: pl.DataFrame | pd.DataFrame,
    target_recall: float | None = None,
    capacity_per_owner_per_week: float | None = None,
    horizon_days: int = 90,
    candidates: Sequence[float] = tuple(range(20, 91)),
    owner: str = "cs_owner_id",
    period_start: str | date | datetime | None = None,
) -> ThresholdChoice:
    """Pick the At-risk threshold ("score below T") from history.

    With `target_recall`: the lowest T whose alerts foresee at least that share of churns within
    `horizon_days` (fewest alerts for the recall). With `capacity_per_owner_per_week`: the highest T that keeps
    the accounts at risk (score below T) within that many per owner per week on average. With both: the
    highest T within the capacity, and `met` says whether it also reaches the recall. Recall and precision as
    in `playbook_backtest`. Both measures grow with T, so a binary search over `candidates` is used; `table`
    holds the candidates it judged (always the lowest and highest).
    """
    if target_recall is None and capacity_per_owner_per_week is None:
        raise InputError("choose_at_risk_threshold needs target_recall or capacity_per_owner_per_week")
    if target_recall is not None and not 0 < target_recall <= 1:
        raise InputError(f"target_recall must lie in (0, 1], got {target_recall}")
    if capacity_per_owner_per_week is not None and capacity_per_owner_per_week <= 0:
        raise InputError(f"capacity_per_owner_per_week must be positive, got {capacity_per_owner_per_week}")
    aims = (target_recall, capacity_per_owner_per_week)
    values = sorted({float(t) for t in candidates})
    if not values:
        raise InputError("choose_at_risk_threshold: no candidate thresholds")
    history, panel = to_polars(history), to_polars(panel)
    evaluated: dict[float, dict[str, Any]] = {}

    def judge(threshold: float) -> dict[str, Any]:
        if threshold not in evaluated:
            rule = Rule(f"below_{threshold:g}", "at-risk", owner=owner, score_below=threshold)
            row = playbook_backtest(history, panel, horizon_days=horizon_days, rules=[rule],
                                    period_start=period_start).iloc[0].to_dict()
            evaluated[threshold] = {"threshold": threshold, **row}
        return evaluated[threshold]

    def first_true(test) -> int:
        """Index of the first candidate passing a test that is monotone in the threshold (len when none)."""
        low, high = 0, len(values)
        while low < high:
            middle = (low + high) // 2
            if test(judge(values[middle])):
                high = middle
            else:
                low = middle + 1
        return low

    # both measures grow with the threshold: a binary search judges a handful of candidates, not all of them
    if capacity_per_owner_per_week is not None:
        over = first_true(lambda r: r["flagged_per_owner_per_week"] > capacity_per_owner_per_week)
        if over > 0:
            judge(values[over - 1])
    if target_recall is not None and capacity_per_owner_per_week is None:
        first_true(lambda r: (r["recall"] if r["recall"] is not None and not pd.isna(r["recall"]) else 0.0)
                   >= target_recall)
    judge(values[0])
    judge(values[-1])
    table = pd.DataFrame([evaluated[t] for t in sorted(evaluated)])
    table = table[["threshold", "flagged_per_owner_per_week", "alerts", "alerts_per_owner_per_week", "precision",
                   "recall", "median_lead_days", "arr_at_risk", "events"]]
    recall = table["recall"].fillna(0.0)
    reaches = table[recall >= target_recall] if target_recall is not None else table
    fits = (table[table["flagged_per_owner_per_week"] <= capacity_per_owner_per_week]
            if capacity_per_owner_per_week is not None else table)
    if capacity_per_owner_per_week is not None:
        pick = fits.iloc[-1] if len(fits) else None
        met = pick is not None and (target_recall is None or (pick["recall"] or 0) >= target_recall)
    else:
        pick = reaches.iloc[0] if len(reaches) else None
        met = pick is not None
    churns = int(table["events"].fillna(0).max())
    nothing_to_catch = churns == 0  # no churn the alerts could be judged on
    if pick is None and nothing_to_catch:
        text = f"No threshold can be chosen for the recall target: {no_churn_to_judge(horizon_days)}."
        return ThresholdChoice(None, None, None, None, False, text, table, churns, *aims)
    has_owners = owner in panel.columns and panel.get_column(owner).drop_nulls().len() > 0
    whom = (f"each {owner_noun(owner)}" if has_owners
            else f"the whole team (no account has {OWNER_WORDS.get(owner, f'a {owner}')})")
    if pick is None:
        among = f"No threshold among {table['threshold'].min():g}-{table['threshold'].max():g}"
        if capacity_per_owner_per_week is None:
            best = table.iloc[-1]
            text = f"{among} reaches {100 * target_recall:.0f}% recall (best {100 * (best['recall'] or 0):.0f}%)."
        else:  # in the At-risk line's words, the average to as many decimals as show it above the capacity
            lowest = table.iloc[0]
            held, new = float(lowest["flagged_per_owner_per_week"]), float(lowest["alerts_per_owner_per_week"])
            digits = next((d for d in range(1, 4) if round(held, d) > capacity_per_owner_per_week), 4)
            capacity = f"{capacity_per_owner_per_week:g} at-risk account{'' if capacity_per_owner_per_week == 1 else 's'}"
            text = (f"{among} keeps {whom} within {capacity} in a typical week: even at the lowest line (at risk "
                    f"below {lowest['threshold']:g}), {workload_words(whom, held, new, average=digits)}.")
        return ThresholdChoice(None, None, None, None, False, text, table, churns, *aims)
    rec = None if pd.isna(pick["recall"]) else float(pick["recall"])
    prec = None if pd.isna(pick["precision"]) else float(pick["precision"])
    caught = (no_churn_to_judge(horizon_days) if nothing_to_catch else
              f"{100 * (rec or 0):.0f}% of churns flagged within {horizon_days} days before they happened "
              f"({churns:,} churn{'' if churns == 1 else 's'} of the test period came late enough to judge this on)")
    text = (f"At risk below {pick['threshold']:g}: "
            f"{workload_words(whom, pick['flagged_per_owner_per_week'], pick['alerts_per_owner_per_week'])}; "
            f"{caught}, {100 * (prec or 0):.0f}% of flags followed by churn")
    if target_recall is not None and not met:
        text += f" (the {100 * target_recall:.0f}% recall target does not fit the capacity)"
    return ThresholdChoice(float(pick["threshold"]), rec, prec, float(pick["flagged_per_owner_per_week"]),
                           bool(met), text + ".", table, churns, *aims)


def backtest_summary(
    renewals: RenewalBacktest, verdict: Verdict, playbook: pd.DataFrame, threshold: ThresholdChoice
) -> dict[str, Any]:
    """The back-tests in one JSON-ready dict (for metrics.json and the leadership report)."""
    return {
        "verdict": verdict.text,
        "passed": verdict.passed,
        "verdict_details": verdict.details,
        "horizons": list(renewals.horizons),
        "validation_threshold": renewals.threshold,
        "renewal_summary": renewals.summary.to_dicts(),
        "playbook": playbook.to_dict(orient="records"),
        "threshold": {
            "value": threshold.threshold,
            "recall": threshold.recall,
            "precision": threshold.precision,
            "flagged_per_owner_per_week": threshold.flagged_per_owner_per_week,
            "met": threshold.met,
            "text": threshold.text,
            "churns": threshold.churns,
            "target_recall": threshold.target_recall,
            "capacity_per_owner_per_week": threshold.capacity_per_owner_per_week,
        },
    }
