"""Plain words for leadership: the quarter's summary, drift against the previous report, the account lists; and
the tables of the report as its readers see them.

Everything here turns numbers already computed (comparison, back-test, scores) into sentences and small tables;
nothing is fitted or estimated here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hsutils.backtest import (
    AT_RISK_BELOW,
    checkpoint_words,
    grouping_words,
    no_churn_to_judge,
    segment_words,
    unscored_churns,
)
from hsutils.errors import counted
from hsutils.evaluate import (
    MIN_TEST_CHURNS_FOR_AUC,
    auc_unstable,
    churn_evidence,
    segment_sort_key,
    signal_words,
)
from hsutils.explore import population_stability_index, psi_by_chance, signals_sentence
from hsutils.files import read_yaml_mapping

PSI_NOTABLE = 0.1
PSI_MAJOR = 0.25


def money(value: float | None) -> str:
    """$1.2M / $350k / $900 style."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    value = float(value)
    if abs(value) >= 1e6:
        return f"${value / 1e6:.1f}M"
    if abs(value) >= 1e3:
        return f"${value / 1e3:.0f}k"
    return f"${value:.0f}"


def percent(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return f"{100 * float(value):.{digits}f}%"


def whole_points(score: float | None) -> str:
    """A health score in the whole points it has reached (54.7 reads 54): the bands count a score below 55 as At
    risk, so a rounded '55' would contradict them."""
    return "" if score is None or pd.isna(score) else f"{math.floor(float(score)):d}"


def small_share(value: float | None) -> str:
    """A share in whole percent, with '<1%' for one above 0 that would round to '0%'."""
    if value is not None and not pd.isna(value) and 0 < float(value) < 0.005:
        return "<1%"
    return percent(value)


@dataclass
class PreviousReport:
    """What the previous period's report left: its folder, points per signal, metrics, scores (if kept)."""

    folder: Path
    period: str
    points: dict[str, float]
    metrics: dict[str, Any]
    scores: pd.DataFrame | None


def load_previous_report(folder: str | Path | None) -> PreviousReport | None:
    """Read a previous report folder (model.yml, metrics.json, scores.parquet), or None when there is none."""
    if not folder:
        return None
    folder = Path(folder)
    model = read_yaml_mapping(folder / "model.yml", "previous report's model file")
    points = {s["name"]: float(s.get("points") or 0.0) for s in model.get("signals", [])}
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    scores_path = folder / "scores.parquet"
    scores = pd.read_parquet(scores_path) if scores_path.is_file() else None
    return PreviousReport(folder=folder, period=folder.name, points=points, metrics=metrics, scores=scores)


def points_change(current: dict[str, float], previous: dict[str, float], previous_label: str,
                  leave_out: Sequence[str] = ()) -> pd.DataFrame:
    """Points per signal now and before, and the change, largest moves first; the signals in `leave_out` (those
    that set urgency rather than earning points, no_points_signals) are not listed."""
    left_out = set(leave_out)
    names = [n for n in dict.fromkeys([*current, *previous]) if n not in left_out]
    table = pd.DataFrame({
        "signal": names,
        "points_now": [round(float(current.get(n, 0.0)), 1) for n in names],
        f"points_{previous_label}": [round(float(previous.get(n, 0.0)), 1) for n in names],
    })
    table["change"] = table["points_now"] - table[f"points_{previous_label}"]
    return table.reindex(table["change"].abs().sort_values(ascending=False).index).reset_index(drop=True)


def points_of_100(points: Mapping[str, float]) -> dict[str, float]:
    """Points rescaled to sum to 100, as a preset scores with them (the field preset's 30/25/20/15 sum to 90)."""
    total = float(sum(points.values()))
    return {name: 100 * float(value) / total for name, value in points.items()} if total > 0 else dict(points)


def no_points_signals(model: Any) -> list[str]:
    """The signals a fitted health score reads without earning points from them (its modifiers: days to renewal
    sets urgency); [] for a scorer without them."""
    return [str(name) for name in getattr(getattr(model, "global_model_", model), "modifiers_", None) or []]


def no_points_note(signals: Sequence[str]) -> str:
    """A short line on the signals left out of a points chart: they set urgency rather than earning points ('' for
    none)."""
    if not signals:
        return ""
    names = ", ".join(signal_words(name) for name in signals)
    one = len(signals) == 1
    return (f"{names[:1].upper()}{names[1:]} {'is' if one else 'are'} not shown: {'it sets' if one else 'they set'} "
            "the urgency of a score as the renewal nears rather than earning points.")


def _points_before(moves: pd.DataFrame) -> tuple[str, str]:
    """A points_change table's column of the points before, and its previous_label in words ('field preset')."""
    before = next(c for c in moves.columns if c.startswith("points_") and c != "points_now")
    return before, before.removeprefix("points_").replace("_", " ")


def points_for_chart(moves: pd.DataFrame, now_label: str) -> pd.DataFrame:
    """A points_change table in the long form figures.points_bars draws (signal, model, points): the points now
    (named `now_label`) and before ('field preset (before)'), so the chart lists what the table lists."""
    before, label = _points_before(moves)
    return pd.concat([
        pd.DataFrame({"signal": moves["signal"], "model": now_label, "points": moves["points_now"]}),
        pd.DataFrame({"signal": moves["signal"], "model": f"{label} (before)", "points": moves[before]}),
    ], ignore_index=True)


def points_change_for_readers(moves: pd.DataFrame) -> pd.DataFrame:
    """A points_change table as leadership reads it: signals in words, headers without underscores."""
    before, label = _points_before(moves)
    return pd.DataFrame({
        "Signal": moves["signal"].map(signal_words),
        "Points now": moves["points_now"],
        f"Points before ({label})": moves[before],
        "Change": moves["change"],
    })


@dataclass
class Drift:
    """How far this quarter's score distribution moved from the comparison point. A shift counts only when its
    PSI is above PSI_NOTABLE (PSI_MAJOR: major) and above what chance alone reaches on that many accounts
    (`by_chance`): on a few hundred accounts sampling noise alone passes 0.1."""

    psi: float
    compared_with: str
    current: np.ndarray
    previous: np.ndarray

    @cached_property
    def by_chance(self) -> float:
        """The PSI one random split in 20 of these same scores exceeds (explore.psi_by_chance)."""
        return psi_by_chance(self.previous, self.current)

    @property
    def words(self) -> str:
        psi, chance = self.psi, self.by_chance
        index = f"population stability index {psi:.3f}"
        if psi >= PSI_NOTABLE and psi < chance:
            return (f"The score distribution shows no shift beyond chance against {self.compared_with}: its {index} "
                    f"is above the usual {PSI_NOTABLE} mark, but with {counted(len(self.current), 'account')} now and "
                    f"{len(self.previous):,} then, a random split of the same scores reaches {chance:.3f} one time "
                    "in 20.")
        level = ("a major shift" if psi >= PSI_MAJOR else "a notable shift" if psi >= PSI_NOTABLE
                 else "no meaningful shift")
        bar = (f"under {PSI_NOTABLE} is stable" if chance < PSI_NOTABLE else
               f"chance alone reaches {chance:.3f} on so few accounts")
        return f"The score distribution shows {level} against {self.compared_with} ({index}; {bar})."


def score_drift(scores: pd.DataFrame, previous: PreviousReport | None, history: pd.DataFrame | None,
                weeks_back: int = 13) -> Drift:
    """Drift of the current scores against the previous report's scores, or, for a first report, against the
    same model's scores `weeks_back` weeks earlier."""
    current = scores["health_score"].to_numpy(dtype=float)
    if previous is not None and previous.scores is not None and len(previous.scores):
        before = previous.scores["health_score"].to_numpy(dtype=float)
        label = f"the {previous.period} report"
    elif history is not None and len(history):
        dates = np.sort(history["as_of"].unique())
        reference = dates[max(0, len(dates) - 1 - weeks_back)]
        before = history.loc[history["as_of"] == reference, "health_score"].to_numpy(dtype=float)
        label = f"the scores of {pd.Timestamp(reference).date()}, {weeks_back} weeks earlier"
    else:
        before, label = current, "itself (no earlier scores)"
    return Drift(population_stability_index(before, current), label, current, before)


def for_readers(table: pd.DataFrame, empty_note: str = "Nothing to list this quarter.", digits: int = 1,
                caption: str = "") -> Any:
    """A table as leadership should see it: no index column, `digits` decimals, `caption` (if any) above it; a
    sentence instead of an empty table."""
    from IPython.display import Markdown

    if table.empty:
        return Markdown(f"*{empty_note}*")
    readable = table.rename(columns=lambda c: c.replace("_", " ").capitalize() if "_" in c else c)
    styled = readable.style.hide(axis="index").format(precision=digits, na_rep="", thousands=",")
    if caption:
        styled = styled.set_caption(caption).set_table_styles(
            [{"selector": "caption", "props": "caption-side: top; text-align: left; font-style: italic;"}])
    return styled


NOT_DEFINED = "—"
NOT_DEFINED_NOTE = "not defined for that row (e.g. an AUC where nobody churned, or a measure that does not apply to it)"


def analyst_words(column: Any) -> str:
    """A column header of an analysts' table in words (ANALYST_COLUMNS: 'PR-AUC (precision on churners)', not
    'pr_auc'); another snake_case name with spaces, capitalised ('field_view' -> 'Field view'); others as they are."""
    name = str(column)
    if name in ANALYST_COLUMNS:
        return ANALYST_COLUMNS[name]
    return name.replace("_", " ").capitalize() if "_" in name else name


def for_analysts(table: pd.DataFrame, digits: int = 3, note: str = NOT_DEFINED_NOTE) -> Any:
    """A table of measures as analysts should see it: headers in words (analyst_words), `digits` decimals (ARR as
    money, days whole), no index column, and a dash instead of NaN where a measure is not defined, explained under
    the table by `note` (the numbers are not changed)."""
    formats = {column: ANALYST_FORMATS[str(column)] for column in table.columns if str(column) in ANALYST_FORMATS}
    styled = table.style.hide(axis="index").format(precision=digits, na_rep=NOT_DEFINED, thousands=",")
    if formats:
        styled = styled.format(formats, na_rep=NOT_DEFINED)
    styled = styled.relabel_index([analyst_words(c) for c in table.columns], axis="columns")
    if table.isna().to_numpy().any():
        styled = styled.set_caption(f"{NOT_DEFINED} {note}").set_table_styles(
            [{"selector": "caption", "props": "caption-side: bottom; text-align: left; font-style: italic;"}])
    return styled


def segments_in_words(table: pd.DataFrame, segment_column: str = "arr_segment", column: str = "segment") -> pd.DataFrame:
    """A table of measures per segment as analysts read it: segments in words ('high-touch', not 'high_touch')
    under a header naming the grouping ('ARR segment', 'tier', 'company size'); a table without `column` as it is."""
    if column not in table.columns:
        return table
    return table.assign(**{column: table[column].map(segment_words)}).rename(
        columns={column: grouping_words(segment_column)})


def signals_in_words(table: pd.DataFrame, column: str = "signal") -> pd.DataFrame:
    """A table of signals with each named in words, as the charts name them (signal_words); without `column` as
    it is."""
    if column not in table.columns:
        return table
    return table.assign(**{column: table[column].map(signal_words)})


# the compared scorers (evaluate.default_models and the per-segment fit) as the charts and tables name them
MODEL_LABELS = {
    "fitted": "Fitted health score",
    "fitted_by_segment": "Fitted per segment",
    "seed": "Field preset (30/25/20/15)",
    "40-30-30": "Template 40/30/30",
    "logistic": "Logistic regression",
    "boosting": "Gradient boosting (ceiling)",
}


def model_words(name: Any) -> str:
    """A compared scorer as readers name it: 'Fitted per segment', not 'fitted_by_segment'; another as it is."""
    return MODEL_LABELS.get(str(name), str(name))


def models_in_words(table: pd.DataFrame, column: str = "model") -> pd.DataFrame:
    """A comparison table with its scorers named as the charts name them (model_words); without `column` as it is."""
    if column not in table.columns:
        return table
    return table.assign(**{column: table[column].map(model_words)})


SEGMENT_NOTES = {  # why the signals are judged per segment, for the grouping the report uses
    "arr_segment": "High-touch accounts (the top 20% by ARR each week; accounts tied with the last of them count as "
                   "high-touch too) and scaled accounts can churn for different reasons.",
}


def segments_note(segment_column: str = "arr_segment") -> str:
    """One sentence on the groups the signals are judged in, for the grouping `segment_column`."""
    return SEGMENT_NOTES.get(segment_column, f"Accounts of each {grouping_words(segment_column)} can churn for "
                                             "different reasons.")


def owner_words(owner_id: Any, owner_names: Mapping[str, str] | None = None) -> str:
    """A CS owner as a reader knows them: the name `owner_names` gives the id, else 'id <the id>', else
    'unassigned'."""
    if not has_owner(owner_id):
        return "unassigned"
    return (owner_names or {}).get(str(owner_id)) or f"id {owner_id}"


def has_owner(owner_id: Any) -> bool:
    """Whether an owner column's value names an owner (not empty, NaN or None)."""
    return not (pd.isna(owner_id) or str(owner_id).strip() in ("", "nan", "None"))


def change_words(change: Any, new_account: str) -> str:
    """A 30-day score change in whole points, signed (-0.4 reads +0, not -0); `new_account` where it is unknown."""
    return new_account if pd.isna(change) else f"{round(change):+d}"


ACCOUNT_LIST_LIMIT = 20  # the accounts an account list shows, largest ARR first


def listed_accounts(scores: pd.DataFrame, which: str) -> pd.DataFrame:
    """Every account the at-risk list ("at_risk") or the expansion list ("expansion") could show, in no order."""
    if which == "at_risk":
        return scores[scores["band"] == "At risk"]
    if which == "expansion":
        return scores[scores["expansion_candidate"].fillna(False).astype(bool)]
    raise ValueError(f"unknown list {which!r}")


def account_list_caption(scores: pd.DataFrame, which: str, limit: int = ACCOUNT_LIST_LIMIT) -> str:
    """The line under an account list's heading when it shows only the `limit` largest by ARR ('The 20 largest
    of 204 accounts At risk, by ARR.'); '' when it shows them all."""
    count = len(listed_accounts(scores, which))
    if count <= limit:
        return ""
    what = "accounts At risk" if which == "at_risk" else "expansion candidates"
    largest = "The largest" if limit == 1 else f"The {limit:,} largest"
    return f"{largest} of {count:,} {what}, by ARR."


def account_list(scores: pd.DataFrame, which: str, limit: int = ACCOUNT_LIST_LIMIT,
                 owner_names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The at-risk list ("at_risk", by ARR) or the expansion list ("expansion"), in words a CS lead reads; the CS
    owner by name where `owner_names` ({owner id: name}, a snapshot's `manifest.owner_names`) knows it ('id <the
    id>' where it does not), under the header "CS owner id" and as bare ids when it knows none of the list's
    owners. An account without a score 30 days earlier reads "new" as its change, unless no account has one (a
    snapshot younger than that), when the column stays blank. Only the `limit` largest by ARR are listed:
    account_list_caption says so under the list's heading."""
    chosen = listed_accounts(scores, which)
    columns = {"name": "Account", "arr": "ARR", "health_score": "Score", "score_change_30d": "Change (30 days)",
               "churn_probability": "Churn risk", "days_to_renewal": "Days to renewal",
               "seat_utilisation": "Seats used", "cs_owner_id": "CS owner"}
    table = chosen.sort_values("arr", ascending=False).head(limit)
    names = {str(k): v for k, v in (owner_names or {}).items() if v}
    owners = table["cs_owner_id"] if "cs_owner_id" in table else pd.Series(dtype=object)
    if not any(str(owner) in names for owner in owners if has_owner(owner)):  # no name to show: the ids, so headed
        columns["cs_owner_id"] = "CS owner id"
    table = table[[c for c in columns if c in table.columns]].rename(columns=columns)
    history = "score_change_30d" in scores and scores["score_change_30d"].notna().any()
    formats = {"ARR": money, "Score": whole_points, "Churn risk": small_share, "Seats used": percent,
               "Change (30 days)": lambda v: change_words(v, "new" if history else ""),
               "Days to renewal": lambda v: "" if pd.isna(v) else f"{v:.0f}",
               "CS owner": lambda v: owner_words(v, names),
               "CS owner id": lambda v: str(v) if has_owner(v) else "unassigned"}
    for column, formatter in formats.items():
        if column in table.columns:
            table[column] = table[column].map(formatter)
    return table.reset_index(drop=True)


def segment_breakdown(scores: pd.DataFrame, segment_column: str = "arr_segment") -> pd.DataFrame:
    """Accounts, ARR, median score (in the whole points reached, as the bands count them: 54.5 reads 54) and the
    share of ARR at risk per segment (segments in words, under a header naming the grouping: 'ARR segment', 'Tier',
    'Company size'; sizes by size, an unknown segment last)."""
    grouped = scores.assign(at_risk_arr=np.where(scores["band"] == "At risk", scores["arr"], 0.0)).groupby(
        segment_column)
    table = pd.DataFrame({
        "Accounts": grouped.size(),
        "ARR": grouped["arr"].sum().map(money),
        "Median score": grouped["health_score"].median().map(whole_points),
        "At risk": grouped["band"].apply(lambda b: int((b == "At risk").sum())),
        "ARR at risk": grouped["at_risk_arr"].sum().map(money),
        "Share of ARR at risk": (grouped["at_risk_arr"].sum() / grouped["arr"].sum()).map(percent),
    })
    table = table.loc[sorted(table.index, key=segment_sort_key)]
    table.index = table.index.map(segment_words)
    table.index.name = grouping_words(segment_column, capital=True)
    return table.reset_index()


def held_out_caution(comparison_table: pd.DataFrame, model: str = "fitted") -> str:
    """A plain-words caution when the model's held-out AUC (segment "all") cannot be relied on, by the same rule
    as the comparison table's warning (evaluate.auc_unstable); '' when it can."""
    rows = comparison_table[(comparison_table["segment"] == "all") & (comparison_table["model"] == model)]
    if rows.empty:
        return ""
    row = rows.iloc[0]
    churns = churn_evidence(row)
    low, high = (None if pd.isna(row.get(bound)) else float(row[bound]) for bound in ("auc_low", "auc_high"))
    if not auc_unstable(churns, [low, high]):
        return ""
    if churns < MIN_TEST_CHURNS_FOR_AUC:  # the bootstrap range of so few churns is no guide either: not quoted
        return too_few_churns_caution(churns, "figure") + " Read it, and the figures beside it, " + ROUGH_INDICATION
    return (f"**Not precise enough to rely on:** this figure rests on {churned_accounts(churns)}, and the true "
            f"figure could lie anywhere from {low:.2f} to {high:.2f}. Read it, and the figures beside it, "
            + ROUGH_INDICATION)


ROUGH_INDICATION = "as a rough indication until more renewals have been decided."


def fit_caution(comparison_table: pd.DataFrame, cutoff: str, model: str = "fitted") -> str:
    """The too-few-churns caution for the model's points when they were fitted on fewer than
    MIN_TEST_CHURNS_FOR_AUC churned accounts of the weeks before `cutoff` (the comparison's
    `train_churned_companies`, segment "all"); '' when on enough, or when the count is unknown."""
    rows = comparison_table[(comparison_table["segment"] == "all") & (comparison_table["model"] == model)]
    if rows.empty or "train_churned_companies" not in rows or pd.isna(rows["train_churned_companies"].iloc[0]):
        return ""
    churned = int(rows["train_churned_companies"].iloc[0])
    if churned >= MIN_TEST_CHURNS_FOR_AUC:
        return ""
    basis = f"{counted(churned, 'churned account')} of the weeks before {cutoff}"
    return too_few_churns_caution(churned, "fit", basis) + " Read it " + ROUGH_INDICATION


def churned_accounts(churns: int) -> str:
    """'1 account that churned in the test period' / 'N accounts that churned in the test period'."""
    return f"{churns:,} account{' that' if churns == 1 else 's that'} churned in the test period"


def too_few_churns_caution(churns: int, what: str, basis: str | None = None) -> str:
    """'Too few churns to rely on this <what>: ...' for a measure resting on fewer than MIN_TEST_CHURNS_FOR_AUC
    churned accounts; `basis` names them (default: the accounts that churned in the test period)."""
    return (f"**Too few churns to rely on this {what}:** it rests on only {basis or churned_accounts(churns)}, and "
            f"a reliable {what} needs at least {MIN_TEST_CHURNS_FOR_AUC}.")


def few_churns_caution(churns: int | None, what: str, noun: str = "churn") -> str:
    """'Too few churns to rely on this <what>: it rests on only N <noun>s ...' for a figure resting on fewer than
    MIN_TEST_CHURNS_FOR_AUC churns (the held-out AUC's rule of thumb); '' when it rests on enough, when the count
    is unknown, or when it is 0 (the figure then says itself that it has nothing to rest on)."""
    if not churns or churns >= MIN_TEST_CHURNS_FOR_AUC:
        return ""
    basis = f"{churns:,} {noun}{'' if churns == 1 else 's'}"
    return too_few_churns_caution(churns, what, basis) + " Read it " + ROUGH_INDICATION


def field_claim(sentence: str, churned: int | None, label: str | None = None) -> str:
    """A field-claim sentence of notebook 01 in Markdown ('**label:** sentence', or the sentence in bold without a
    label), with the too-few-churns caution when it rests on fewer than MIN_TEST_CHURNS_FOR_AUC churned accounts
    (`churned`, the exploration's churned_accounts or segment_churned_accounts)."""
    head = f"**{label}:** {sentence}" if label else f"**{sentence}**"
    return " ".join(filter(None, [head, few_churns_caution(churned, "finding", "churned account")]))


def verdict_caution(churned: int | None) -> str:
    """The caution for a validation verdict resting on fewer than MIN_TEST_CHURNS_FOR_AUC churned accounts. It
    names the churned accounts the verdict counted, as the verdict does, not those of the test period: the
    verdict leaves out the ones without a score before their term ended."""
    return few_churns_caution(churned, "verdict", "churned account")


def verdict_line(verdict_text: str, test_churned: int, verdict_churned: int | None, verdict_unscored: int | None,
                 before_scored_weeks: int | None = None, horizons: Sequence[int] | None = None) -> str:
    """The validation verdict as the leadership page states it: its text, a clause when its churned renewals
    (counted and left out) do not add up to the accounts that churned in the weeks the AUC was judged on, and its
    too-few-churns caution. The clause names the renewals lost as the test period began, before any of its weeks
    was scored (`before_scored_weeks`, its details' "churned_before_scored_weeks"), when they make the difference;
    else what each number counts (an account can lose two renewals); none when they agree or a count is unknown.
    When the verdict also left renewals out (no score at its checkpoints, `horizons`) and the period's start makes
    the difference, the clause says in one place how every count relates, in place of the verdict's own sentence on
    them (backtest.unscored_churns)."""
    note = ""
    if verdict_churned is not None and verdict_unscored is not None:
        renewals = verdict_churned + verdict_unscored
        if before_scored_weeks and renewals - before_scored_weeks == test_churned:
            began = "churned as the test period began, before any of its weeks was scored"
            own = unscored_churns(verdict_unscored, renewals, horizons) if verdict_unscored and horizons else ""
            if own and own in verdict_text:
                verdict_text = " ".join(verdict_text.replace(own, "").split())
                verdict_counts = (f"the {verdict_churned:,} of them that had a score {checkpoint_words(horizons)} before "
                           "their term ended" if verdict_churned != 1 else
                           f"the one of them that had a score {checkpoint_words(horizons)} before its term ended")
                note = (f"The test period lost {counted(renewals, 'renewal')}: the {test_churned:,} "
                        f"account{'' if test_churned == 1 else 's'} above and {before_scored_weeks:,} that {began}. "
                        f"The verdict counts {verdict_counts}.")
            else:
                note = (f"({before_scored_weeks:,} more than the {test_churned:,} above: "
                        f"{'it' if before_scored_weeks == 1 else 'they'} {began}.)")
        elif renewals != test_churned:
            churned = ("no account churned" if test_churned == 0 else "the 1 above is the account that churned"
                       if test_churned == 1 else f"the {test_churned:,} above are the accounts that churned")
            note = (f"(The validation step counts {counted(renewals, 'lost renewal')}; {churned} in the weeks the "
                    "score was judged on.)")
    return " ".join(filter(None, [verdict_text, note, verdict_caution(verdict_churned)]))


def seats_in_use_unknown(scores: pd.DataFrame) -> bool:
    """True when no account has a share of seats in use (a snapshot without product usage): expansion candidates,
    which need it, cannot be picked."""
    return len(scores) > 0 and "seat_utilisation" in scores and bool(scores["seat_utilisation"].isna().all())


EXPANSION_UNKNOWN = ("No account can be picked: expansion candidates need the share of seats in use, which this "
                     "snapshot does not record.")


def expansion_empty_note(scores: pd.DataFrame) -> str:
    """What the expansion list says when it is empty: why, when seats in use are unknown."""
    return EXPANSION_UNKNOWN if seats_in_use_unknown(scores) else "No account qualifies for an expansion conversation this quarter."


def data_gaps(unmeasured: Sequence[str], usage_rows: int | None = None) -> str:
    """Plain words on the signals without any value in the snapshot ('' when every signal has values)."""
    if not unmeasured:
        return ""
    one = len(unmeasured) == 1
    if usage_rows == 0:
        names = ", ".join(signal_words(name) for name in unmeasured)
        return (f"It holds no product usage, so {names} {'has' if one else 'have'} no values: "
                f"{'it earns' if one else 'they earn'} no points and the score rests on the other signals. Add the "
                "product's usage export to the next pull to measure them.")
    return signals_sentence(unmeasured, "has no values in this snapshot: it earns no points",
                            "have no values in this snapshot: they earn no points") + (
        " and the score rests on the other signals.")


def leadership_summary(
    period: str,
    comparison_table: pd.DataFrame,
    verdict_text: str,
    threshold_text: str,
    scores: pd.DataFrame,
    drift: Drift,
    points_moves: pd.DataFrame,
    previous: PreviousReport | None,
    horizon_days: int,
    cutoff: str,
    verdict_churned: int | None = None,
    unmeasured: Sequence[str] = (),
    usage_rows: int | None = None,
    verdict_unscored: int | None = None,
    verdict_before_scored_weeks: int | None = None,
    threshold_churns: int | None = None,
    threshold_target_recall: float | None = None,
    threshold_capacity: float | None = None,
    verdict_horizons: Sequence[int] | None = None,
    at_risk_below: float = AT_RISK_BELOW,
) -> str:
    """The first page of the leadership report, in Markdown: what changed, how well the score predicts, how many
    accounts and how much ARR are at risk, and the expansion candidates. `verdict_churned`: the churned accounts
    the validation verdict rests on (its details' "churned"), for its caution, and `verdict_unscored` those it
    left out (its details' "churned_unscored"), to check that both add up to the test period's churned accounts;
    `verdict_before_scored_weeks` (its details' "churned_before_scored_weeks") explains when they do not, and
    `verdict_horizons` (the back-test's "horizons") lets that explanation stand in for the verdict's sentence on
    the renewals it left out (verdict_line).
    `unmeasured`: signals without any value in the snapshot, and `usage_rows` its usage events, for the line on
    what the snapshot lacks. `threshold_churns`: the churns the At-risk line was chosen on, for its caution;
    `threshold_target_recall` and `threshold_capacity`: what it was chosen for (its backtest summary's
    "target_recall" and "capacity_per_owner_per_week"), for at_risk_line_aim. `at_risk_below`: the score below
    which the scores' model bands an account At risk (at_risk_band), the band the chosen line is set against."""
    overall = comparison_table[comparison_table["segment"] == "all"].set_index("model")
    auc = overall["auc"].to_dict()
    fitted = auc.get("fitted")
    caution = held_out_caution(comparison_table)
    test_churned = churn_evidence(overall.loc["fitted"])
    at_risk = scores[scores["band"] == "At risk"]
    near_renewal = at_risk[at_risk.get("days_to_renewal", pd.Series(np.inf, index=at_risk.index)) <= horizon_days]
    expansion = scores[scores["expansion_candidate"].fillna(False).astype(bool)]
    total_arr = float(scores["arr"].sum())
    lines = [f"# Customer health: {period} recalibration", ""]
    lines.append("## In brief")
    lines.append(
        f"- **How well the score predicts churn.** Judged on the weeks from {cutoff} on, which the model never saw "
        f"while it was fitted and in which {test_churned:,} account{'' if test_churned == 1 else 's'} churned: "
        "when we pick one account that churned and one that renewed, the churned one had the "
        f"lower health score {percent(fitted)} of the time (AUC {fitted:.2f}). "
        + (f"{caution} " if caution else "")
        + "The field's hand-set weights reach "
        f"{auc.get('seed', float('nan')):.2f}, the common 40/30/30 template {auc.get('40-30-30', float('nan')):.2f}, "
        f"and an unconstrained machine-learning model {auc.get('boosting', float('nan')):.2f}."
    )
    gaps = data_gaps(unmeasured, usage_rows)
    if gaps:
        lines.append(f"- **What this snapshot lacks.** {gaps}")
    lines.append("- **The validation step.** " + verdict_line(
        verdict_text, test_churned, verdict_churned, verdict_unscored, verdict_before_scored_weeks, verdict_horizons))
    lines.append(
        f"- **At risk today.** {len(at_risk):,} of {len(scores):,} customers ({percent(len(at_risk) / max(len(scores), 1))}) "
        f"are At risk, holding {money(at_risk['arr'].sum())} of {money(total_arr)} ARR; {len(near_renewal):,} of them "
        f"({money(near_renewal['arr'].sum())}) renew within {horizon_days} days."
    )
    if seats_in_use_unknown(scores) or expansion.empty:
        lines.append(f"- **Expansion candidates.** {expansion_empty_note(scores)}")
    else:
        lines.append(
            f"- **Expansion candidates.** {len(expansion):,} healthy "
            + ("account" if len(expansion) == 1 else "accounts")
            + f" (score 85 or more, 80% or more of seats in use) {'holds' if len(expansion) == 1 else 'hold'} "
            f"{money(expansion['arr'].sum())} ARR: route {'it' if len(expansion) == 1 else 'them'} to account "
            "executives for an upgrade conversation."
        )
    moved = points_moves.head(3)
    if previous is not None:
        change_words = "; ".join(f"{signal_words(r.signal)} {r.change:+.1f}" for r in moved.itertuples()
                                 if abs(r.change) >= 0.5)
        changed = (f"- **What changed since {previous.period}.** {drift.words} Largest changes of points: "
                   f"{change_words or 'none above half a point'}.")
    else:
        changed = (f"- **What changed.** This is the first recalibration report, so there is no earlier report to "
                   f"compare with. {drift.words} Against the field's hand-set weights, the fitted points move most on: "
                   + "; ".join(f"{signal_words(r.signal)} {r.change:+.1f}" for r in moved.itertuples()) + ".")
    lines.append(" ".join(filter(None, [changed, fit_caution(comparison_table, cutoff)])))
    lines.append(" ".join(filter(None, [
        "- **Where to draw the At-risk line.** Picked on past weeks "
        + " ".join(filter(None, [at_risk_line_aim(threshold_target_recall, threshold_capacity),
                                 f"(the band used today is At risk below {at_risk_below:g}): {threshold_text}"])),
        few_churns_caution(threshold_churns, "line"),
    ])))
    lines.append("")
    return "\n".join(lines)


def at_risk_band(model: Any) -> float:
    """The score below which `model` bands an account At risk (a per-segment model's global one, whose bands it
    uses); the default band's for a scorer without bands of its own."""
    scorer = getattr(model, "global_model_", model)
    return float(getattr(scorer, "at_risk", AT_RISK_BELOW))


def at_risk_line_aim(target_recall: float | None, capacity_per_owner_per_week: float | None) -> str:
    """What the At-risk line was chosen for, as choose_at_risk_threshold chose it: within the owners' capacity
    when one is given (the recall target, if any, only checked), else for the recall target; '' for neither."""
    recall = (f"the target of flagging {100 * target_recall:.0f}% of churns in time"
              if target_recall is not None else "")
    if capacity_per_owner_per_week is not None:
        capacity = (f"to keep the accounts at risk within the owners' capacity of {capacity_per_owner_per_week:g} "
                    f"per owner a week")
        return f"{capacity}, checked against {recall}" if recall else capacity
    return f"for {recall}" if recall else ""


def playbook_what_if(playbook: pd.DataFrame, save_rate_early: float, save_rate_late: float,
                     horizon_days: int) -> str:
    """The alerts' what-if in plain words: the ARR the churn rules would have protected with the field's save
    rates, or why there is no such figure (no churn to judge them on, or none caught in time)."""
    rates = (f"Caught early, the field saves about {save_rate_early:.0%} of accounts; reacting late, about "
             f"{save_rate_late:.0%}.")
    churn_rules = playbook[playbook["target"] == "churn"] if "target" in playbook else playbook
    churns = int(churn_rules["events"].fillna(0).max()) if len(churn_rules) else 0
    if churns == 0:
        return f"{rates} There is no what-if figure this quarter: {no_churn_to_judge(horizon_days)}."
    caught_arr = churn_rules["arr_at_risk"].max()
    if not caught_arr > 0:
        return (f"{rates} The alerts caught none of the {churns} churn{'' if churns == 1 else 's'} of the test "
                "period in time, so they would have protected no ARR.")
    return " ".join(filter(None, [
        f"{rates} With those rates, the alerts on the test period would have protected about "
        f"{money(churn_rules['arr_saved_what_if'].max())} of the {money(caught_arr)} ARR they caught.",
        few_churns_caution(churns, "figure"),
    ]))


def summary_figures(scores: pd.DataFrame, drift: Drift, comparison: dict[str, Any]) -> dict[str, Any]:
    """The leadership page's numbers, JSON-ready: customers, ARR at risk, expansion candidates, drift, AUCs."""
    at_risk = scores[scores["band"] == "At risk"]
    expansion = scores[scores["expansion_candidate"].fillna(False).astype(bool)]
    overall = [row for row in comparison.get("table", []) if row.get("segment") == "all"]
    return {
        "customers": int(len(scores)),
        "arr": float(scores["arr"].sum()),
        "bands": {band: int(n) for band, n in scores["band"].value_counts().sort_index().items()},
        "at_risk_accounts": int(len(at_risk)),
        "at_risk_arr": float(at_risk["arr"].sum()),
        "expansion_candidates": int(len(expansion)),
        "expansion_arr": float(expansion["arr"].sum()),
        "psi": drift.psi,
        "psi_by_chance": drift.by_chance,
        "drift_compared_with": drift.compared_with,
        "held_out_auc": {row["model"]: row.get("auc") for row in overall},
    }


METRIC_WORDS = {
    "auc": "AUC (ranking of churners, 0.5 = chance)",
    "pr_auc": "PR-AUC (precision on churners)",
    "top_decile_lift": "Churn rate in the riskiest 10% vs average",
    "brier": "Brier score (lower is better)",
    "ece": "Calibration error (lower is better)",
}


# the headers of the analysts' tables (notebooks 01-03) in words; the held-out measures as the leadership page
# names them (METRIC_WORDS)
ANALYST_COLUMNS = {
    **METRIC_WORDS,
    "auc_low": "AUC 95% low", "auc_high": "AUC 95% high", "log_loss": "Log loss (lower is better)",
    "model": "Model", "rows": "Company-weeks", "companies": "Accounts", "churns": "Churned company-weeks",
    "churned_companies": "Churned accounts", "train_churned_companies": "Churned accounts in training",
    "warning": "Caution",
    "signal": "Signal", "family": "Family", "field_view": "The field's view", "data_says": "What this data says",
    "missing_share": "Share missing",
    "term": "Term (signals standardised)", "coef": "Coefficient (log-odds per SD)", "std_err": "Standard error",
    "ci_low": "95% low", "ci_high": "95% high", "p_value": "p-value", "odds_ratio": "Odds ratio per SD",
    "days_before": "Days before the term ended", "outcome": "Outcome", "accounts": "Accounts",
    "median": "Median score", "q25": "Lower quartile", "q75": "Upper quartile", "mean": "Mean score",
    "share_below": "Share below the validation line",
    "rule": "Rule", "condition": "Alert when", "action": "Action", "alerts": "Alerts", "alerts_per_owner_per_week": "Alerts per owner a week",
    "precision": "Precision (alerts followed by the event)", "recall": "Recall (events flagged in time)",
    "median_lead_days": "Median warning (days)", "arr_at_risk": "ARR caught", "arr_saved_what_if": "ARR saved (what-if)",
}
ANALYST_FORMATS = {"arr_at_risk": money, "arr_saved_what_if": money, "median_lead_days": "{:,.0f}"}


METRICS_CHANGE_DIGITS = 3  # decimals of metrics_change, and of its table on the page (AUC 0.734, not 0.7)


def metrics_change(comparison: dict[str, Any], previous: PreviousReport | None, model: str = "fitted") -> pd.DataFrame:
    """The fitted score's held-out metrics this quarter against the previous report's (empty for a first report),
    rounded to METRICS_CHANGE_DIGITS decimals."""
    def overall(table: list[dict[str, Any]]) -> dict[str, Any]:
        rows = [r for r in table if r.get("model") == model and r.get("segment") == "all"]
        return rows[0] if rows else {}

    if previous is None:
        return pd.DataFrame()
    now = overall(comparison.get("table", []))
    before = overall(previous.metrics.get("comparison", {}).get("table", []))
    rows = []
    for key, words in METRIC_WORDS.items():
        current, earlier = now.get(key), before.get(key)
        rows.append({
            "Measure": words,
            "This quarter": None if current is None else round(float(current), METRICS_CHANGE_DIGITS),
            previous.period: None if earlier is None else round(float(earlier), METRICS_CHANGE_DIGITS),
            "Change": (None if current is None or earlier is None
                       else round(float(current) - float(earlier), METRICS_CHANGE_DIGITS)),
        })
    return pd.DataFrame(rows)
