"""Figures for the notebooks and the leadership report: seaborn, titled, labelled, readable.

Each function draws one figure with pyplot and returns it; in a notebook, assign the result (`fig = ...`) and the
inline backend shows it once at the end of the cell.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from hsutils.backtest import grouping_words, owner_noun, segment_words
from hsutils.evaluate import segment_sort_key, signal_words
from hsutils.narrative import model_words, no_points_note

FAMILY_COLOURS = {"value": "#1b7837", "activity": "#b2abd2", None: "#999999"}
OUTCOME_COLOURS = {"churned": "#d73027", "renewed": "#4575b4", "expanded": "#1a9850"}
BAND_COLOURS = {"At risk": "#d73027", "Neutral": "#fdae61", "Healthy": "#1a9850"}
# the playbook's two measures in words, and colours of their own (not those of churned or renewed accounts)
PLAYBOOK_MEASURES = {"precision": "alerts followed by the event", "recall": "events flagged in time"}
PLAYBOOK_COLOURS = {"alerts followed by the event": "#54278f", "events flagged in time": "#9e9ac8"}


def set_style() -> None:
    """The suite's plotting style: white grid, readable fonts, figures sized for a report page."""
    sns.set_theme(context="notebook", style="whitegrid", font_scale=1.1)
    plt.rcParams.update({"figure.figsize": (10, 5.5), "figure.dpi": 96, "axes.titleweight": "bold"})


def _finish(fig: plt.Figure, title: str) -> plt.Figure:
    fig.suptitle(title, fontsize=15, fontweight="bold")
    fig.tight_layout()
    return fig


def decile_churn_grid(deciles: pd.DataFrame, families: Mapping[str, str], col_wrap: int = 4) -> plt.Figure:
    """Churn rate per decile cohort of every signal, named in words (cohort 1 = lowest values; grey = missing)."""
    data = deciles.copy()
    data["cohort_label"] = data["cohort"].astype(str)
    signals = list(dict.fromkeys(data["signal"]))
    rows = int(np.ceil(len(signals) / col_wrap))
    fig, axes = plt.subplots(rows, col_wrap, figsize=(4.2 * col_wrap, 3.2 * rows), sharey=True, squeeze=False)
    for ax, signal in zip(axes.flat, signals, strict=False):
        part = data[data["signal"] == signal]
        colours = [FAMILY_COLOURS["activity" if families.get(signal) == "activity" else "value"]
                   if c != "missing" else "#cccccc" for c in part["cohort"]]
        ax.bar(part["cohort_label"], 100 * part["churn_rate"], color=colours)
        ax.set_title(f"{signal_words(signal)} ({families.get(signal, '?')})", fontsize=11)
        ax.set_xlabel("decile cohort (1 = lowest)")
        ax.set_ylabel("churn rate (%)")
        ax.tick_params(axis="x", labelsize=8)
    for ax in list(axes.flat)[len(signals):]:
        ax.set_visible(False)
    return _finish(fig, "Churn rate by decile cohort of each signal")


def univariate_auc_bars(univariate: pd.DataFrame) -> plt.Figure:
    """Each signal's AUC alone (oriented: 0.5 = no information, 1 = perfect), with 95% intervals; signals in words."""
    data = univariate.dropna(subset=["auc"]).copy()
    flip = data["auc"] < 0.5
    data["oriented"] = np.where(flip, 1 - data["auc"], data["auc"])
    data["low"] = np.where(flip, 1 - data["auc_high"], data["auc_low"])
    data["high"] = np.where(flip, 1 - data["auc_low"], data["auc_high"])
    data = data.sort_values("oriented")
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(data) + 1.8))
    colours = [FAMILY_COLOURS.get(f, "#999999") for f in data["family"]]
    ax.barh(data["signal"].map(signal_words), data["oriented"] - 0.5, left=0.5, color=colours,
            xerr=[data["oriented"] - data["low"], data["high"] - data["oriented"]], capsize=3)
    ax.axvline(0.5, color="black", lw=1)
    ax.set_xlim(0.4, max(0.8, float(data["high"].max()) + 0.02))
    ax.set_xlabel("AUC for churn, signal alone (0.5 = no better than chance)")
    ax.set_ylabel("")
    handles = [plt.Rectangle((0, 0), 1, 1, color=FAMILY_COLOURS[f]) for f in ("value", "activity")]
    ax.legend(handles, ["value signal", "activity signal"], loc="lower right")
    return _finish(fig, "Which signals predict churn on their own")


def correlation_heatmap(correlation: pd.DataFrame) -> plt.Figure:
    """Rank correlation between signals, named in words."""
    correlation = correlation.rename(index=signal_words, columns=signal_words)
    size = 0.6 * len(correlation) + 3
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    sns.heatmap(correlation, vmin=-1, vmax=1, cmap="vlag", annot=True, fmt=".2f", annot_kws={"size": 8},
                square=True, cbar_kws={"label": "Spearman correlation"}, ax=ax)
    ax.set_xlabel("")
    ax.set_ylabel("")
    return _finish(fig, "How the signals move together")


def model_comparison_bars(table: pd.DataFrame, metric: str = "auc", segment: str = "all") -> plt.Figure:
    """One metric per model on held-out time, with bootstrap 95% intervals."""
    data = table[table["segment"] == segment].dropna(subset=[metric]).copy()
    data["label"] = data["model"].map(model_words)
    data = data.sort_values(metric)
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(data) + 1.8))
    colours = ["#1b7837" if m.startswith("fitted") else "#888888" for m in data["model"]]
    ax.barh(data["label"], data[metric], color=colours,
            xerr=[data[metric] - data[f"{metric}_low"], data[f"{metric}_high"] - data[metric]], capsize=4)
    for y, (value, high) in enumerate(zip(data[metric], data[f"{metric}_high"].fillna(data[metric]), strict=True)):
        ax.text(high + 0.008, y, f"{value:.3f}", va="center", fontsize=10)
    if metric == "auc":  # from 0.5 (chance) unless a score ranks worse than chance: its bar shows then too
        lowest = data[[metric, f"{metric}_low"]].min().min() if len(data) else 0.5
        ax.set_xlim(min(0.5, math.floor(10 * lowest) / 10), 1.0)
        ax.axvline(0.5, color="black", lw=1)
        ax.set_xlabel("AUC on held-out time (0.5 = chance, 1 = perfect)")
    else:
        ax.set_xlabel(f"{metric} on held-out time")
    ax.set_ylabel("")
    return _finish(fig, "How well each score predicts churn on later, unseen weeks")


def points_bars(points: pd.DataFrame, leave_out: Sequence[str] = ()) -> plt.Figure:
    """Points per signal for several models, signals named in words; `points` has columns signal, model, points
    (and optional low, high). The signals in `leave_out` (those that set urgency rather than earning points,
    narrative.no_points_signals) are not drawn: a line under the chart says why."""
    data = points[~points["signal"].isin(list(leave_out))].copy()
    order = (data[data["model"] == data["model"].iloc[0]].sort_values("points", ascending=False)["signal"].tolist())
    order += [s for s in dict.fromkeys(data["signal"]) if s not in order]
    models = list(dict.fromkeys(data["model"]))
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(order) * max(1, len(models) / 2) + 2))
    height = 0.8 / len(models)
    palette = sns.color_palette("deep", len(models))
    for i, model in enumerate(models):
        part = data[data["model"] == model].set_index("signal").reindex(order)
        y = np.arange(len(order)) + i * height
        xerr = None
        if {"low", "high"} <= set(part.columns) and part["low"].notna().any():
            xerr = [np.clip(part["points"] - part["low"], 0, None).fillna(0),
                    np.clip(part["high"] - part["points"], 0, None).fillna(0)]
        ax.barh(y, part["points"].fillna(0), height=height, color=palette[i], label=model_words(model), xerr=xerr,
                capsize=2)
    ax.set_yticks(np.arange(len(order)) + height * (len(models) - 1) / 2, [signal_words(s) for s in order])
    ax.invert_yaxis()
    ax.set_xlabel("points out of 100")
    ax.legend(loc="lower right")
    fig = _finish(fig, "Points per signal")
    note = no_points_note(list(leave_out))
    if note:  # under the chart, where the signal would have been
        fig.text(0.01, 0.0, note, ha="left", va="top", fontsize=10, style="italic")
    return fig


def calibration_curves(reliability: Mapping[str, Sequence[Mapping[str, Any]]]) -> plt.Figure:
    """Predicted churn probability against the churn rate observed, per model (10 equal-count bins)."""
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    top = 0.05
    for model, bins in reliability.items():
        frame = pd.DataFrame(list(bins)).dropna(subset=["mean_predicted", "observed_rate"])
        if frame.empty:
            continue
        top = max(top, frame["mean_predicted"].max(), frame["observed_rate"].max())
        ax.plot(100 * frame["mean_predicted"], 100 * frame["observed_rate"], marker="o",
                label=model_words(model))
    limit = 100 * min(1.0, top * 1.1)
    ax.plot([0, limit], [0, limit], color="black", lw=1, ls="--", label="perfect calibration")
    ax.set_xlim(0, limit)
    ax.set_ylim(0, limit)
    ax.set_xlabel("predicted churn probability (%)")
    ax.set_ylabel("churn observed (%)")
    ax.legend(fontsize=9)
    return _finish(fig, "Are the churn probabilities right?")


def renewal_score_distributions(renewals: pd.DataFrame, horizons: Sequence[int], threshold: float = 60) -> plt.Figure:
    """Health score 90/60/30 days before each renewal, for churned, renewed and expanded accounts."""
    long = renewals.melt(id_vars=["company_id", "outcome"], value_vars=[f"score_{d}d" for d in horizons],
                         var_name="checkpoint", value_name="health_score").dropna(subset=["health_score"])
    long["checkpoint"] = long["checkpoint"].str.extract(r"(\d+)")[0] + " days before renewal"
    order = [f"{d} days before renewal" for d in sorted(horizons, reverse=True)]
    hue_order = [o for o in ("churned", "renewed", "expanded") if o in set(long["outcome"])]
    fig, ax = plt.subplots(figsize=(11, 5.5))
    with warnings.catch_warnings():  # seaborn still passes Matplotlib's deprecated `vert` (3.11); not ours to fix
        warnings.filterwarnings("ignore", message="vert: bool was deprecated", category=DeprecationWarning)
        sns.boxplot(data=long, x="checkpoint", y="health_score", hue="outcome", order=order, hue_order=hue_order,
                    palette=OUTCOME_COLOURS, showfliers=False, ax=ax)
    ax.axhline(threshold, color="black", ls="--", lw=1)
    # the line's label and the legend sit outside the plot, where no box or whisker can fall under them
    ax.text(1.01, threshold, f"{threshold:g}: the\nfield's line", transform=ax.get_yaxis_transform(), va="center",
            fontsize=9)
    ax.set_ylim(0, 100)
    ax.set_xlabel("")
    ax.set_ylabel("health score (0-100)")
    ax.legend(title="at renewal the account", loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=len(hue_order),
              frameon=False)
    return _finish(fig, "Scores before renewal: did churned accounts stand out in time?")


def threshold_tradeoff(table: pd.DataFrame, chosen: float | None, owner: str = "cs_owner_id") -> plt.Figure:
    """For each possible At-risk threshold: share of churns flagged in time, and the workload in the At-risk
    line's words: the at-risk accounts each `owner` holds in a typical week (on average)."""
    fig, left = plt.subplots(figsize=(10, 5.5))
    left.plot(table["threshold"], 100 * table["recall"].astype(float), color="#d73027", lw=2.5,
              label="churns flagged in time (%)")
    left.set_xlabel("At-risk threshold (score below)")
    left.set_ylabel("churns flagged within the horizon (%)", color="#d73027")
    left.set_ylim(0, 100)
    right = left.twinx()
    workload = f"at-risk accounts each {owner_noun(owner)}\nhas in a typical week (average)"  # two lines fit the axis
    right.plot(table["threshold"], table["flagged_per_owner_per_week"], color="#4575b4", lw=2.5, label=workload)
    right.set_ylabel(workload, color="#4575b4")
    right.grid(False)
    if chosen is not None:
        left.axvline(chosen, color="black", ls="--", lw=1)
        left.text(chosen + 0.5, 5, f"chosen: below {chosen:g}", fontsize=10)
    return _finish(fig, "Choosing the At-risk line: catch rate against workload")


def playbook_bars(playbook: pd.DataFrame) -> plt.Figure:
    """Precision and recall of each playbook rule, each share written at its bar's end."""
    labelled = playbook.assign(label=playbook["condition"] + "\n→ " + playbook["action"])
    data = labelled.melt(id_vars=["label"], value_vars=["precision", "recall"], var_name="measure", value_name="share")
    data["share"] = 100 * data["share"].astype(float)
    data["measure"] = data["measure"].map(PLAYBOOK_MEASURES)
    fig, ax = plt.subplots(figsize=(12, 1.0 * len(playbook) + 2.2))
    sns.barplot(data=data, y="label", x="share", hue="measure", hue_order=list(PLAYBOOK_COLOURS),
                palette=PLAYBOOK_COLOURS, ax=ax)
    for bars in ax.containers:  # each share written at its bar's end: a rule that caught nothing reads 0%
        ax.bar_label(bars, labels=["" if np.isnan(v) else f"{v:.0f}%" for v in bars.datavalues], padding=3,
                     fontsize=9)
    ax.set_xlabel("share (%)")
    ax.set_ylabel("")
    ax.set_xlim(0, 108)  # room for the label of a 100% bar
    ax.set_xticks(range(0, 101, 20))
    ax.tick_params(axis="y", labelsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    events = playbook["events"].fillna(0).astype(float) if "events" in playbook.columns else None
    if events is not None and not events.any():
        ax.text(50, (len(playbook) - 1) / 2, "No event of the test period could be judged:\nthe bars stay empty "
                "until renewals have been decided", ha="center", va="center", fontsize=11, color="#555555")
    elif events is not None:  # a rule whose event never happened (a portal without expansions): say so on its row
        targets = playbook["target"] if "target" in playbook.columns else pd.Series("event", index=playbook.index)
        for row, (count, target) in enumerate(zip(events, targets, strict=True)):
            if count == 0:
                ax.text(1, row, f"no {target} in the test period to judge this rule on", va="center", fontsize=10,
                        color="#555555")
    return _finish(fig, "Alert playbook on past weeks")


def score_distribution_shift(current: np.ndarray, previous: np.ndarray, current_label: str,
                             previous_label: str, psi: float) -> plt.Figure:
    """Distribution of health scores now against the comparison point, with the population stability index."""
    fig, ax = plt.subplots(figsize=(10, 5))
    bins = np.linspace(0, 100, 26)
    for scores, colour, alpha, label in ((previous, "#999999", 0.5, previous_label),
                                         (current, "#1b7837", 0.6, current_label)):
        scores = np.asarray(scores, dtype=float)
        ax.hist(scores, bins=bins, alpha=alpha, color=colour, label=label,
                weights=np.full(len(scores), 100 / max(len(scores), 1)))
    ax.set_xlabel("health score (0-100)")
    ax.set_ylabel(f"share of accounts in each {bins[1] - bins[0]:g}-point band (%)")
    ax.legend()
    return _finish(fig, f"Score distribution: now against before (population stability index {psi:.3f})")


def arr_by_band(scores: pd.DataFrame, segment_column: str = "arr_segment") -> plt.Figure:
    """ARR by health band and segment (segments in words, sizes by size, the axis naming the grouping: tier,
    company size...)."""
    data = scores.groupby([segment_column, "band"], as_index=False)["arr"].sum()
    data = data.sort_values(segment_column, key=lambda values: values.map(segment_sort_key), kind="stable")
    data[segment_column] = data[segment_column].map(segment_words)
    data["arr_m"] = data["arr"] / 1e6
    fig, ax = plt.subplots(figsize=(10, 5))
    sns.barplot(data=data, x=segment_column, y="arr_m", hue="band", hue_order=["At risk", "Neutral", "Healthy"],
                palette=BAND_COLOURS, ax=ax)
    grouping = grouping_words(segment_column)
    ax.set_xlabel(grouping)
    ax.set_ylabel("ARR (millions)")
    ax.legend(title="band")
    return _finish(fig, f"Where the ARR sits: by health band and {grouping}")
