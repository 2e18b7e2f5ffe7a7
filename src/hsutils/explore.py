"""Signal exploration on a panel: churn by decile cohort, correlation, and which signals really predict churn.

These tables feed notebook 01 and the leadership report. They read labelled panel rows only (rows whose
`outcome_churned` is known) and never fit anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from hsutils.errors import InputError

FIELD_VIEW = {"value": "predicts churn", "activity": "feels good"}
MIN_SEPARATION = 0.05  # |AUC - 0.5| below this counts as "little or no signal"


def labelled_rows(panel: pl.DataFrame | pd.DataFrame) -> pd.DataFrame:
    """Panel rows whose churn outcome is known, as pandas."""
    frame = panel.to_pandas() if isinstance(panel, pl.DataFrame) else panel
    labelled = frame[frame["outcome_churned"].notna()].copy()
    if labelled.empty:
        raise InputError("panel: no row has a known churn outcome (outcome_churned is empty everywhere)")
    labelled["outcome_churned"] = labelled["outcome_churned"].astype(int)
    return labelled


def decile_churn_rates(panel: pl.DataFrame | pd.DataFrame, signals: list[str]) -> pd.DataFrame:
    """Churn rate per decile cohort of each signal (missing values form their own cohort).

    Returns one row per (signal, cohort): signal, cohort (1..10 or "missing"), low, high, rows, churn_rate.
    """
    labelled = labelled_rows(panel)
    parts = []
    for signal in signals:
        values = labelled[signal]
        present = values.notna()
        cohorts = pd.Series("missing", index=labelled.index, dtype=object)
        if present.sum() >= 10:
            ranks = values[present].rank(method="first")
            deciles = pd.qcut(ranks, 10, labels=False).astype(int) + 1
            cohorts[present] = pd.Series([int(d) for d in deciles], index=deciles.index, dtype=object)
        grouped = labelled.assign(cohort=cohorts).groupby("cohort", sort=False)
        table = grouped.agg(
            low=(signal, "min"), high=(signal, "max"), rows=("outcome_churned", "size"),
            churn_rate=("outcome_churned", "mean"),
        ).reset_index()
        table.insert(0, "signal", signal)
        parts.append(table)
    result = pd.concat(parts, ignore_index=True)
    result["order"] = result["cohort"].map(lambda c: 99 if c == "missing" else int(c))
    return result.sort_values(["signal", "order"]).drop(columns="order").reset_index(drop=True)


def count_churned_accounts(panel: pl.DataFrame) -> int:
    """How many accounts have a labelled row that churned (the accounts a signal's verdict rests on)."""
    return panel.filter(pl.col("outcome_churned") == 1).get_column("company_id").n_unique()


def signal_correlation(panel: pl.DataFrame | pd.DataFrame, signals: list[str]) -> pd.DataFrame:
    """Spearman rank correlation between signals on labelled rows."""
    return labelled_rows(panel)[signals].corr(method="spearman")


def signal_verdicts(univariate: pd.DataFrame) -> pd.DataFrame:
    """Add the field's view and the data's verdict to a univariate AUC table (`evaluate.univariate_auc`).

    A signal "predicts churn" on this data when its 95% interval excludes 0.5 and its AUC is at least
    MIN_SEPARATION away from 0.5.
    """
    table = univariate.dropna(subset=["auc"]).copy()
    table["field_view"] = table["family"].map(FIELD_VIEW)
    separation = (table["auc"] - 0.5).abs()
    excludes_half = (table["auc_low"] > 0.5) | (table["auc_high"] < 0.5)
    table["separation"] = separation.round(4)
    table["data_says"] = np.where(excludes_half & (separation >= MIN_SEPARATION), "predicts churn", "little or no signal")
    table["agrees_with_field"] = table["data_says"] == table["field_view"].replace({"feels good": "little or no signal"})
    return table.sort_values("separation", ascending=False).reset_index(drop=True)


def unmeasured_signals(panel: pl.DataFrame, signals: list[str]) -> list[str]:
    """The signals among `signals` that have no value in any row of the panel (a table the snapshot lacks, such as
    product usage): they cannot be judged and earn no points."""
    return [name for name in signals if panel.get_column(name).null_count() == panel.height]


def unmeasured_words(unmeasured: list[str]) -> str:
    """Plain words naming the signals without any value ('' when there are none)."""
    return signals_sentence(unmeasured, "has no values in this snapshot, so it is not judged.",
                     "have no values in this snapshot, so they are not judged.")


def signals_sentence(signals: Sequence[str], one: str, several: str) -> str:
    """'<signals in words> <one|several>', capitalised as a sentence ('' without signals)."""
    if not signals:
        return ""
    from hsutils.evaluate import signal_words

    names = ", ".join(signal_words(name) for name in signals)
    return f"{names[:1].upper()}{names[1:]} {one if len(signals) == 1 else several}"


def field_claim_sentence(verdicts: pd.DataFrame, unmeasured: list[str] | None = None) -> str:
    """One plain sentence: does this data confirm that value signals predict churn and activity signals don't?
    Only signals that can earn points are counted; one that sets urgency instead (days to renewal) is named
    after it, and so are signals without any value (`unmeasured`)."""
    from hsutils.evaluate import signals_without_points

    earns = ~verdicts["signal"].isin(signals_without_points())
    counted = verdicts[earns]
    value = counted[counted["family"] == "value"]
    activity = counted[counted["family"] == "activity"]
    value_hits = int((value["data_says"] == "predicts churn").sum())
    activity_hits = int((activity["data_says"] == "predicts churn").sum())
    mean_value = value["separation"].mean() if len(value) else float("nan")
    mean_activity = activity["separation"].mean() if len(activity) else float("nan")
    confirmed = value_hits > 0 and (np.isnan(mean_activity) or mean_value > 2 * mean_activity)
    verdict = "confirms" if confirmed else "does not confirm"
    urgency = signals_sentence(verdicts.loc[~earns, "signal"].tolist(),
                        "is not counted: it sets urgency rather than earning points.",
                        "are not counted: they set urgency rather than earning points.")
    return " ".join(filter(None, [
        f"This data {verdict} the field's claim: {value_hits} of {len(value)} value signals predict churn, "
        f"against {activity_hits} of {len(activity)} activity signals (mean distance of AUC from 0.5: "
        f"value {mean_value:.2f}, activity {mean_activity:.2f}).",
        urgency,
        unmeasured_words(unmeasured or []),
    ]))


def _scores_on_both_sides(expected: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both score sets as float arrays without NaN; InputError when either is then empty."""
    expected = np.asarray(expected, dtype=float)
    actual = np.asarray(actual, dtype=float)
    expected = expected[~np.isnan(expected)]
    actual = actual[~np.isnan(actual)]
    if expected.size == 0 or actual.size == 0:
        raise InputError("population stability index needs scores on both sides")
    return expected, actual


def population_stability_index(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """PSI of `actual` against `expected` over the expected distribution's quantile bins (0.1+ = notable drift)."""
    expected, actual = _scores_on_both_sides(expected, actual)
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    edges[0], edges[-1] = -np.inf, np.inf
    expected_share = np.histogram(expected, edges)[0] / expected.size
    actual_share = np.histogram(actual, edges)[0] / actual.size
    floor = 1e-4
    expected_share = np.clip(expected_share, floor, None)
    actual_share = np.clip(actual_share, floor, None)
    return float(np.sum((actual_share - expected_share) * np.log(actual_share / expected_share)))


def psi_by_chance(expected: np.ndarray, actual: np.ndarray, bins: int = 10, draws: int = 200,
                  seed: int = 0) -> float:
    """The population stability index chance alone reaches on samples of these sizes: both score sets pooled,
    split at random into groups of the two sizes `draws` times; the PSI one split in 20 exceeds (the 95th
    percentile). A PSI below it is within sampling noise (about 0.14 on 250 accounts a side, 0.015 on 2,500)."""
    expected, actual = _scores_on_both_sides(expected, actual)
    pooled = np.concatenate([expected, actual])
    rng = np.random.default_rng(seed)
    chance = []
    for _ in range(draws):
        shuffled = rng.permutation(pooled)
        chance.append(population_stability_index(shuffled[:expected.size], shuffled[expected.size:], bins))
    return float(np.quantile(chance, 0.95))


@dataclass
class SignalExploration:
    """Everything notebook 01 shows: decile cohorts, univariate AUCs with the field's verdict, correlations,
    the same verdicts per segment, and one plain sentence on the field's claim."""

    signals: list[str]
    deciles: pd.DataFrame
    verdicts: pd.DataFrame
    correlation: pd.DataFrame
    by_segment: pd.DataFrame
    sentence: str
    segment_sentences: dict[str, str] = field(default_factory=dict)
    unmeasured: list[str] = field(default_factory=list)
    churned_accounts: int | None = None
    segment_churned_accounts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary for metrics.json."""
        columns = ["signal", "family", "field_view", "data_says", "auc", "auc_low", "auc_high", "missing_share"]
        return {
            "signals": self.signals,
            "field_claim": self.sentence,
            "verdicts": self.verdicts[columns].to_dict(orient="records"),
            "by_segment": self.segment_sentences,
            "unmeasured": self.unmeasured,
            "churned_accounts": self.churned_accounts,
            "segment_churned_accounts": self.segment_churned_accounts,
        }


def explore_signals(
    panel: pl.DataFrame | pd.DataFrame,
    signals: list[str] | None = None,
    segment_column: str | None = "arr_segment",
    n_boot: int = 200,
    seed: int = 0,
) -> SignalExploration:
    """Decile churn rates, univariate AUCs and verdicts (overall and per segment) and correlations of signals, with
    the churned accounts each verdict rests on."""
    from hsutils.evaluate import panel_signals, segment_sort_key, to_polars, univariate_auc

    frame = to_polars(panel)
    names = panel_signals(frame, signals)
    verdicts = signal_verdicts(univariate_auc(frame, names, n_boot=n_boot, seed=seed))
    unmeasured = unmeasured_signals(frame, names)
    parts, sentences, churned = [], {}, {}
    if segment_column:
        for segment in sorted(frame.get_column(segment_column).drop_nulls().unique().to_list(), key=segment_sort_key):
            part = frame.filter(pl.col(segment_column) == segment)
            if part.filter(pl.col("outcome_churned") == 1).height < 2:
                continue
            table = signal_verdicts(univariate_auc(part, names, n_boot=n_boot, seed=seed))
            table.insert(0, "segment", segment)
            parts.append(table)
            sentences[str(segment)] = field_claim_sentence(table)
            churned[str(segment)] = count_churned_accounts(part)
    by_segment = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return SignalExploration(
        signals=names,
        deciles=decile_churn_rates(frame, names),
        verdicts=verdicts,
        correlation=signal_correlation(frame, names),
        by_segment=by_segment,
        sentence=field_claim_sentence(verdicts, unmeasured),
        segment_sentences=sentences,
        unmeasured=unmeasured,
        churned_accounts=count_churned_accounts(frame),
        segment_churned_accounts=churned,
    )
