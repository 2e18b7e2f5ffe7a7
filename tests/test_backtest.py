"""Back-tests on hand-made weekly histories: score look-ups before renewals, the verdict, the playbook rules."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import polars as pl
import pytest

from hsutils.backtest import (
    DEFAULT_RULES,
    RenewalBacktest,
    backtest_summary,
    choose_at_risk_threshold,
    grouping_words,
    outcome_events,
    playbook_backtest,
    renewal_backtest,
    score_history,
    segment_words,
    validation_verdict,
    with_score_change,
    workload_words,
)
from hsutils.errors import InputError

W0 = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday: as-of weeks are W0 + k weeks
DAY = timedelta(days=1)


def week(k: int) -> datetime:
    return W0 + timedelta(weeks=k)


class ColumnScore:
    """A stand-in scorer: the health score is column `s`, churn probability 1 - s/100."""

    feature_names_in_ = np.array(["s"], dtype=object)

    def health_score(self, X):
        return X["s"].to_numpy(dtype=float)

    def predict_proba(self, X):
        churn = 1 - X["s"].to_numpy(dtype=float) / 100
        return np.column_stack([1 - churn, churn])


def make_panel(companies: dict[str, dict], horizon: int = 90) -> pl.DataFrame:
    """Panel rows from per-company specs: scores (list by week, None = no row), term_end, outcome
    ("churned" / "renewed"), expansion (date or None) and context columns."""
    last_as_of = max(week(k) for spec in companies.values() for k, s in enumerate(spec["scores"]) if s is not None)
    rows = []
    for cid, spec in companies.items():
        for k, score in enumerate(spec["scores"]):
            if score is None:
                continue
            as_of, end = week(k), spec["term_end"]
            in_horizon = as_of < end <= as_of + timedelta(days=horizon)
            churned = spec.get("outcome") == "churned"
            expansion = spec.get("expansion")
            expanded = None if as_of + timedelta(days=horizon) > last_as_of else 0
            if expansion is not None and as_of < expansion <= as_of + timedelta(days=horizon):
                expanded = 1
            rows.append({
                "company_id": cid, "as_of": as_of, "s": float(score), "term_end": end,
                "days_to_renewal": (end - as_of) / DAY,
                "arr": spec.get("arr", 10_000.0), "arr_segment": spec.get("segment", "scaled"),
                "cs_owner_id": spec.get("cs"), "ae_owner_id": spec.get("ae"),
                "seat_utilisation": spec.get("seats", 0.5),
                "outcome_churned": (1 if churned else 0) if in_horizon else None,
                "outcome_expanded": expanded,
                "outcome_days_to_churn": (end - as_of) / DAY if in_horizon and churned else None,
            })
    return pl.DataFrame(rows).with_columns(
        pl.col("as_of").cast(pl.Datetime("us", "UTC")), pl.col("term_end").cast(pl.Datetime("us", "UTC")),
        pl.col("outcome_churned").cast(pl.Int8), pl.col("outcome_expanded").cast(pl.Int8),
        pl.col("cs_owner_id").cast(pl.String), pl.col("ae_owner_id").cast(pl.String),
    )


# ---- score history -----------------------------------------------------------------------------------------------
def test_score_history_columns_and_30_day_change():
    panel = make_panel({"A": {"scores": [80, 78, 60, 75, 62, 50], "term_end": week(30)}})
    history = score_history(ColumnScore(), panel)
    assert history.columns[:5] == ["company_id", "as_of", "health_score", "churn_probability", "band"]
    assert history["band"].to_list() == ["Healthy", "Healthy", "Neutral", "Healthy", "Neutral", "At risk"]
    assert history["churn_probability"].to_list() == pytest.approx([0.2, 0.22, 0.4, 0.25, 0.38, 0.5])
    # the score four weeks earlier: weeks 4 and 5 compare with weeks 0 and 1
    assert history["score_change_30d"].to_list() == [None, None, None, None, -18.0, -28.0]


def test_score_history_needs_the_model_columns():
    panel = make_panel({"A": {"scores": [80], "term_end": week(30)}}).drop("s")
    with pytest.raises(InputError, match="s"):
        score_history(ColumnScore(), panel)


# ---- renewal back-test ---------------------------------------------------------------------------------------------
def renewal_companies() -> dict[str, dict]:
    term_end = datetime(2025, 6, 15, tzinfo=UTC)  # a Sunday, off the weekly grid
    weeks = 24  # week 23 = 2025-06-16, after the term ended
    gap = [100 - k for k in range(weeks)]
    gap[14] = None  # no row 2025-04-14 for B
    return {
        "A": {"scores": [50 - k for k in range(weeks)], "term_end": term_end, "outcome": "churned"},
        "B": {"scores": gap, "term_end": term_end, "outcome": "renewed"},
        "C": {"scores": [90.0] * weeks, "term_end": term_end, "outcome": "renewed",
              "expansion": term_end - 5 * DAY},
    }


def test_renewal_backtest_picks_the_latest_week_at_or_before_each_checkpoint():
    panel = make_panel(renewal_companies())
    result = renewal_backtest(score_history(ColumnScore(), panel), panel)
    rows = {r["company_id"]: r for r in result.renewals.to_dicts()}
    assert {c: r["outcome"] for c, r in rows.items()} == {"A": "churned", "B": "renewed", "C": "expanded"}
    # 90 days before 2025-06-15 is Monday 2025-03-17 (week 10); 60 days before is Wednesday 2025-04-16 -> Monday
    # 2025-04-14 (week 14); 30 days before is Friday 2025-05-16 -> Monday 2025-05-12 (week 18)
    assert rows["A"]["as_of_90d"] == week(10) and rows["A"]["score_90d"] == 40
    assert rows["A"]["as_of_60d"] == week(14) and rows["A"]["score_60d"] == 36
    assert rows["A"]["as_of_30d"] == week(18) and rows["A"]["score_30d"] == 32
    # B has no row in week 14; week 13 is 9 days before the checkpoint, more than a week: unknown
    assert rows["B"]["score_60d"] is None and rows["B"]["score_90d"] == 90
    summary = result.summary.filter(pl.col("outcome") == "churned")
    assert summary["share_below"].to_list() == [1.0, 1.0, 1.0]
    assert summary["days_before"].to_list() == [90, 60, 30]


def test_renewal_backtest_period_start_keeps_later_renewals_only():
    panel = make_panel(renewal_companies())
    history = score_history(ColumnScore(), panel)
    assert renewal_backtest(history, panel, period_start="2025-06-16").renewals.height == 0
    assert renewal_backtest(history, panel, period_start="2025-06-15").renewals.height == 3


def verdict_for(churned: float, renewed: float, expanded: float):
    term_end = datetime(2025, 6, 15, tzinfo=UTC)
    companies = {
        f"{name}{i}": {"scores": [score + i] * 24, "term_end": term_end, "outcome": outcome,
                       "expansion": term_end - 5 * DAY if name == "x" else None}
        for name, score, outcome in (("c", churned, "churned"), ("r", renewed, "renewed"), ("x", expanded, "renewed"))
        for i in range(3)
    }
    panel = make_panel(companies)
    return validation_verdict(renewal_backtest(score_history(ColumnScore(), panel), panel))


def test_validation_verdict_pass_and_the_two_ways_to_fail():
    passed = verdict_for(churned=45, renewed=70, expanded=80)
    assert passed.passed and passed.text.startswith("PASS") and "100% of 3 churned accounts" in passed.text
    not_predictive = verdict_for(churned=65, renewed=80, expanded=85)
    assert not not_predictive.passed and "not predictive" in not_predictive.text
    no_gap = verdict_for(churned=50, renewed=54, expanded=80)
    assert no_gap.passed is False and "did not score meaningfully higher" in no_gap.text
    assert no_gap.details["gaps"]["renewed_30d"] == pytest.approx(4)


@pytest.mark.parametrize(("renewed", "expanded", "head"), [
    (54, 80, "FAIL: renewed accounts did not score meaningfully higher"),
    (70, 55, "FAIL: expanded accounts did not score meaningfully higher"),
    (54, 55, "FAIL: renewed and expanded accounts did not score meaningfully higher"),
])
def test_a_failed_gap_names_only_the_accounts_that_fell_short(renewed, expanded, head):
    """'renewed and expanded accounts did not score higher' only when both did not: the FAIL names the outcomes
    whose gap to the churned accounts fell short, as its parenthesis does."""
    verdict = verdict_for(churned=50, renewed=renewed, expanded=expanded)
    assert verdict.passed is False and verdict.text.startswith(head)


# ---- playbook -------------------------------------------------------------------------------------------------------
def playbook_companies() -> dict[str, dict]:
    """26 weeks. A (high-touch, 100k ARR) slides from 80 to 50 in weeks 14-16 and churns 10 days after week 19;
    B dips once to 68 in week 4 and renews later; C stays at 90 with 90% of seats used and expands after week 12."""
    a_scores = [80.0] * 14 + [68.0, 66.0, 50.0, 50.0, 50.0, 50.0] + [None] * 6
    b_scores = [75.0] * 26
    b_scores[4] = 68.0
    return {
        "A": {"scores": a_scores, "term_end": week(19) + 10 * DAY, "outcome": "churned", "arr": 100_000.0,
              "segment": "high_touch", "cs": "o1", "ae": "a1"},
        "B": {"scores": b_scores, "term_end": week(60), "outcome": "renewed", "arr": 20_000.0, "cs": "o1"},
        "C": {"scores": [90.0] * 26, "term_end": week(60), "outcome": "renewed", "arr": 50_000.0, "cs": "o2",
              "ae": "a2", "seats": 0.9, "expansion": week(12) + 3 * DAY},
    }


@pytest.fixture(scope="module")
def playbook_data() -> tuple[pl.DataFrame, pl.DataFrame]:
    panel = make_panel(playbook_companies())
    return score_history(ColumnScore(), panel), panel


def test_playbook_rules_fire_where_the_data_says(playbook_data):
    history, panel = playbook_data
    table = playbook_backtest(history, panel).set_index("rule")
    # owner alert: A's change vs 4 weeks earlier is -12 in week 14 (68 - 80): one alert that stays open
    # automated email: B's change is -7 in week 4 (68 - 75); A's drops are all above 10
    # AE task and escalation: A (high-touch) below 60 and below 55 from week 16
    # QBR: A below 70 in week 14 with 45 days to renewal; B's dip is 56 weeks before its renewal
    # expansion task: C at 90 with 90% of seats from week 0
    expected = {"owner_alert": 1, "automated_email": 1, "ae_task": 1, "executive_escalation": 1,
                "schedule_qbr": 1, "expansion_task": 1}
    assert table["alerts"].to_dict() == expected
    assert table.loc["owner_alert", "owners"] == 2 and table.loc["owner_alert", "weeks"] == 26
    assert table.loc["owner_alert", "alerts_per_owner_per_week"] == pytest.approx(1 / 52)
    assert table.loc["ae_task", "owners"] == 3  # a1, a2 and B's missing AE
    assert table.loc["executive_escalation", "flagged_per_owner_per_week"] == pytest.approx(4 / 52)
    # precision: A's alerts end in churn; B's email (week 4, judged: week 4 + 90 days is before week 25) does not
    for rule in ("owner_alert", "ae_task", "executive_escalation", "schedule_qbr"):
        assert table.loc[rule, "precision"] == 1.0 and table.loc[rule, "recall"] == 1.0
    assert table.loc["automated_email", "precision"] == 0.0 and table.loc["automated_email", "recall"] == 0.0
    # lead time: churn on week 19 + 10 days; owner alert and QBR from week 14 (45 days), escalation week 16 (31)
    assert table.loc["owner_alert", "median_lead_days"] == pytest.approx(45)
    assert table.loc["schedule_qbr", "median_lead_days"] == pytest.approx(45)
    assert table.loc["executive_escalation", "median_lead_days"] == pytest.approx(31)
    assert table.loc["owner_alert", "arr_at_risk"] == pytest.approx(100_000)
    # expansion: C's rows are flagged up to week 12, so the expansion is dated week 13
    assert table.loc["expansion_task", "precision"] == 1.0 and table.loc["expansion_task", "recall"] == 1.0
    assert table.loc["expansion_task", "median_lead_days"] == pytest.approx(91)
    assert table.loc["expansion_task", "arr_at_risk"] is None or np.isnan(table.loc["expansion_task", "arr_at_risk"])


def test_expansion_events_dated_after_the_flagged_run(playbook_data):
    _, panel = playbook_data
    events = outcome_events(panel, "expansion")
    assert events.to_dicts() == [{"company_id": "C", "event_date": week(13)}]
    churns = outcome_events(panel, "churn")
    assert churns.to_dicts() == [{"company_id": "A", "event_date": week(19) + 10 * DAY}]


def test_save_rate_what_if_scales_with_the_rates(playbook_data):
    history, panel = playbook_data

    def saved(**kwargs) -> float:
        table = playbook_backtest(history, panel, **kwargs).set_index("rule")
        return table.loc["owner_alert", "arr_saved_what_if"]

    assert saved() == pytest.approx(0.34 * 100_000)  # 45 days of lead: caught late
    assert saved(save_rate_late=0.5) == pytest.approx(50_000)
    assert saved(early_days=40) == pytest.approx(0.71 * 100_000)  # now counted as early
    assert saved(early_days=40, save_rate_early=0.2) == pytest.approx(20_000)
    with pytest.raises(InputError):
        saved(save_rate_early=1.5)


def test_rule_thresholds_are_data(playbook_data):
    history, panel = playbook_data
    stricter = [dataclasses.replace(r, drop_more_than=20) for r in DEFAULT_RULES if r.name == "owner_alert"]
    looser = [dataclasses.replace(r, drop_at_least=5, drop_more_than=None) for r in DEFAULT_RULES
              if r.name == "owner_alert"]
    # A's largest 4-week drop is 30 (week 16: 50 - 80): a 20-point rule still fires once, from week 16
    strict = playbook_backtest(history, panel, rules=stricter).iloc[0]
    assert strict["alerts"] == 1 and strict["median_lead_days"] == pytest.approx(31)
    # a 5-point rule also catches B's dip
    assert playbook_backtest(history, panel, rules=looser).iloc[0]["alerts"] == 2


def test_with_score_change_matches_by_date_not_position():
    history = pl.DataFrame({
        "company_id": ["A", "A", "A"], "as_of": [week(0), week(3), week(4)], "health_score": [80.0, 70.0, 60.0],
    }).with_columns(pl.col("as_of").cast(pl.Datetime("us", "UTC")))
    assert with_score_change(history)["score_change_30d"].to_list() == [None, None, -20.0]


def test_choose_at_risk_threshold_for_recall_and_capacity(playbook_data):
    history, panel = playbook_data
    # the only churn (A) scored 80, 68, 66 then 50 within 90 days before it: "below 51" is the lowest catch
    for_recall = choose_at_risk_threshold(history, panel, target_recall=1.0)
    assert for_recall.threshold == 51 and for_recall.recall == 1.0 and for_recall.met
    # at-risk weeks per owner-week (2 CS owners x 26 weeks): below 51..66 -> 4/52, below 67..68 -> 5/52,
    # below 69..75 -> 7/52 (A's 68 and B's 68 join)
    for_capacity = choose_at_risk_threshold(history, panel, capacity_per_owner_per_week=0.1)
    assert for_capacity.threshold == 68
    assert for_capacity.flagged_per_owner_per_week == pytest.approx(5 / 52)
    none_fit = choose_at_risk_threshold(history, panel, capacity_per_owner_per_week=0.01, candidates=range(55, 70))
    assert none_fit.threshold is None and not none_fit.met
    with pytest.raises(InputError):
        choose_at_risk_threshold(history, panel)


def test_choose_at_risk_threshold_says_when_no_account_has_an_owner(playbook_data):
    history, panel = playbook_data
    owned = choose_at_risk_threshold(history, panel, target_recall=1.0)
    assert owned.text.startswith("At risk below 51: each CS owner would have fewer than 1 at-risk account in a "
                                 "typical week (0.1 on average), with fewer than 1 new one a quarter; ")
    ownerless = panel.with_columns(pl.lit(None, dtype=pl.String).alias("cs_owner_id"))
    unowned = choose_at_risk_threshold(history, ownerless, target_recall=1.0)
    assert unowned.text.startswith("At risk below 51: the whole team (no account has a CS owner) would have "
                                   "fewer than 1 at-risk account in a typical week (0.1 on average), ")
    assert "CS owner would" not in unowned.text


@pytest.mark.parametrize(("at_risk", "new", "words"), [
    (12.52, 3.31, "each CS owner would have about 13 at-risk accounts in a typical week, about 3 of them new each "
                  "week"),
    (1.02, 0.15, "each CS owner would have about 1 at-risk account in a typical week, with about 2 new ones a "
                 "quarter"),
    (0.76, 0.25, "each CS owner would have about 1 at-risk account in a typical week (0.8 on average), with about 3 "
                 "new ones a quarter"),
    (1.46, 0.2, "each CS owner would have about 2 at-risk accounts in a typical week (1.5 on average), with about 3 "
                "new ones a quarter"),
    (0.04, 0.01, "each CS owner would have fewer than 1 at-risk account in a typical week, with fewer than 1 new one "
                 "a quarter"),
    (0.0, 0.0, "each CS owner would have no at-risk accounts in a typical week, with no new ones a quarter"),
])
def test_at_risk_workload_reads_in_whole_accounts(at_risk, new, words):
    """'1.02 at-risk accounts per owner per week (0.15 new)' is no figure a reader grasps: the line says about
    how many accounts an owner holds in a typical week, and how many new ones come up each week, or each quarter
    when fewer than one a week does; the exact average when rounding moves it."""
    assert workload_words("each CS owner", at_risk, new) == words


def test_a_capacity_no_line_keeps_within_is_said_in_whole_accounts(playbook_data):
    """'keeps at-risk accounts within 0.01 per owner per week (lowest 0.08)' spoke another language than the
    At-risk line: the refusal says how many accounts each owner would hold in a typical week even at the lowest
    line, with the average beside it (also when rounding does not move it)."""
    history, panel = playbook_data
    none_fit = choose_at_risk_threshold(history, panel, capacity_per_owner_per_week=0.01, candidates=range(55, 70))
    assert none_fit.text == (
        "No threshold among 55-69 keeps each CS owner within 0.01 at-risk accounts in a typical week: even at the "
        "lowest line (at risk below 55), each CS owner would have fewer than 1 at-risk account in a typical week "
        "(0.1 on average), with fewer than 1 new one a quarter.")
    ownerless = panel.with_columns(pl.lit(None, dtype=pl.String).alias("cs_owner_id"))
    unowned = choose_at_risk_threshold(history, ownerless, capacity_per_owner_per_week=0.01, candidates=[55])
    assert unowned.text.startswith("No threshold among 55-55 keeps the whole team (no account has a CS owner) "
                                   "within 0.01 at-risk accounts in a typical week")
    assert workload_words("each CS owner", 12.04, 1.0, average=1) == (
        "each CS owner would have about 12 at-risk accounts in a typical week (12.0 on average), about 1 of them "
        "new each week")
    # 7/52 against a capacity of 0.12: the average shows as many decimals as it takes to read above it, not 0.1
    tight = choose_at_risk_threshold(history, panel, capacity_per_owner_per_week=0.12, candidates=[69])
    assert "within 0.12 at-risk accounts" in tight.text and "(0.13 on average)" in tight.text


def test_choose_at_risk_threshold_says_when_no_churn_could_be_judged(playbook_data):
    history, panel = playbook_data
    # A churns on week 19 + 10 days: from week 10 on, the 90 days before it are not all in the period
    for_recall = choose_at_risk_threshold(history, panel, target_recall=0.8, period_start=week(10))
    assert for_recall.threshold is None and for_recall.table["events"].eq(0).all()
    assert for_recall.text == ("No threshold can be chosen for the recall target: no churn in the test period came "
                               "late enough to judge the alerts on (each needs the 90 days before it inside the "
                               "test period).")
    for_capacity = choose_at_risk_threshold(history, panel, capacity_per_owner_per_week=0.1, period_start=week(10))
    assert for_capacity.recall is None and "% of churns flagged" not in for_capacity.text
    assert "no churn in the test period came late enough" in for_capacity.text


def test_playbook_rules_name_segments_in_words():
    """The alert chart's label reads 'high-touch account, score below 60', not 'high_touch account'; a segment
    value of the portal's own (a tier) reads as it is."""
    ae_task = next(rule for rule in DEFAULT_RULES if rule.name == "ae_task")
    assert ae_task.describe() == "high-touch account, score below 60"
    assert dataclasses.replace(ae_task, segment="Enterprise").describe() == "Enterprise account, score below 60"
    assert segment_words("scaled") == "scaled" and segment_words("50-199") == "50-199"


def test_groupings_are_named_in_words():
    assert [grouping_words(c) for c in ("arr_segment", "tier", "size_bucket")] == [
        "ARR segment", "tier", "company size"]
    assert grouping_words("size_bucket", capital=True) == "Company size"
    assert grouping_words("region_code") == "region code"


def test_boundaries_and_breaks_in_history():
    """A drop of exactly 10 is an email, not an owner alert; a break of weeks in the history opens a new alert."""
    panel = make_panel({
        "D": {"scores": [80.0, 80.0, 80.0, 80.0, 70.0], "term_end": week(60), "cs": "o1"},
        "E": {"scores": [50.0, 50.0, None, None, 50.0, 50.0], "term_end": week(60), "cs": "o1"},
    })
    table = playbook_backtest(score_history(ColumnScore(), panel), panel).set_index("rule")
    assert table.loc["owner_alert", "alerts"] == 0
    assert table.loc["automated_email", "alerts"] == 1
    assert table.loc["executive_escalation", "alerts"] == 2


def test_verdict_counts_the_churns_decided_before_any_week_of_the_period_was_scored():
    """A renewal lost on the test period's first day is one of the period's lost renewals, but no week of the
    period saw the account as a customer, so the held-out AUC leaves it out: the verdict's details count such
    renewals, for the leadership page to say why its two counts differ."""
    start = week(20)
    companies = {
        "first_day": {"scores": [40.0] * 20, "term_end": start, "outcome": "churned"},
        "later": {"scores": [40.0] * 24, "term_end": week(23) + 3 * DAY, "outcome": "churned"},
        "renewed": {"scores": [80.0] * 26, "term_end": week(23) + 3 * DAY, "outcome": "renewed"},
    }
    panel = make_panel(companies)
    history = score_history(ColumnScore(), panel)
    verdict = validation_verdict(renewal_backtest(history, panel, period_start=start))
    assert verdict.details["churned"] + verdict.details["churned_unscored"] == 2
    assert verdict.details["churned_before_scored_weeks"] == 1
    test_rows = panel.filter((pl.col("as_of") >= start) & (pl.col("outcome_churned") == 1))
    assert test_rows["company_id"].unique().to_list() == ["later"]  # the only churn the AUC counts
    assert "churned_before_scored_weeks" not in validation_verdict(renewal_backtest(history, panel)).details


def test_verdict_writes_large_counts_with_thousands_separators():
    """Leadership reads '1,234 churned accounts', not '1234'."""
    outcomes = ["churned"] * 1234 + ["renewed"] * 10
    renewals = pl.DataFrame({"company_id": [str(i) for i in range(len(outcomes))], "outcome": outcomes,
                             **{f"score_{d}d": [40.0 if o == "churned" else 80.0 for o in outcomes] for d in (90, 60, 30)}})
    summary = pl.DataFrame({"days_before": [90, 60, 30] * 2, "outcome": ["churned"] * 3 + ["renewed"] * 3,
                            "median": [40.0] * 3 + [80.0] * 3, "share_below": [1.0] * 3 + [0.0] * 3})
    verdict = validation_verdict(RenewalBacktest(renewals, summary, (90, 60, 30)))
    assert "100% of 1,234 churned accounts" in verdict.text


def test_verdict_names_the_churns_it_cannot_count_so_its_count_adds_up():
    """A churned account with no score 90, 60 or 30 days before its term ended (a customer for three weeks) is
    left out of the verdict's share, and the verdict says so: its counts add up to every churn of the period,
    the number the leadership page's AUC line quotes."""
    term_end = datetime(2025, 6, 15, tzinfo=UTC)
    companies = {
        **{f"c{i}": {"scores": [40.0] * 24, "term_end": term_end, "outcome": "churned"} for i in range(3)},
        **{f"r{i}": {"scores": [80.0] * 24, "term_end": term_end, "outcome": "renewed"} for i in range(3)},
        "new": {"scores": [None] * 20 + [40.0] * 3, "term_end": term_end, "outcome": "churned"},
    }
    panel = make_panel(companies)
    verdict = validation_verdict(renewal_backtest(score_history(ColumnScore(), panel), panel))
    assert verdict.passed and verdict.details["churned"] == 3 and verdict.details["churned_unscored"] == 1
    assert "100% of 3 churned accounts scored below 60" in verdict.text
    assert ("One more of the 4 churned accounts is not counted: it had no score 90, 60 or 30 days before its term "
            "ended") in verdict.text
    only_new = make_panel({"new": companies["new"], "r0": companies["r0"]})
    cannot = validation_verdict(renewal_backtest(score_history(ColumnScore(), only_new), only_new))
    assert cannot.details == {"churned": 0, "churned_unscored": 1}
    assert cannot.passed is None
    assert cannot.text == ("NOT JUDGED: the 1 churned account of the test period had no score 90, 60 or 30 days "
                           "before its term ended, so the score cannot be checked against it.")


def test_a_period_without_churn_is_not_judged_rather_than_failed():
    """No renewal of the test period was lost: the score did not fail, there was nothing to judge it on. The
    verdict says so (NOT JUDGED, passed None: null in the JSON) instead of 'FAIL: cannot validate', which reads
    as if the score had failed; a real failure stays FAIL."""
    term_end = datetime(2025, 6, 15, tzinfo=UTC)
    panel = make_panel({f"r{i}": {"scores": [70.0 + i] * 24, "term_end": term_end, "outcome": "renewed"}
                        for i in range(3)})
    renewals = renewal_backtest(score_history(ColumnScore(), panel), panel)
    verdict = validation_verdict(renewals)
    assert verdict.passed is None and "FAIL" not in verdict.text
    assert verdict.text == ("NOT JUDGED: no renewal of the test period was lost, so there is no churn to check the "
                            "score against.")
    summary = backtest_summary(renewals, verdict, pd.DataFrame(), choose_at_risk_threshold(
        score_history(ColumnScore(), panel), panel, target_recall=0.8))
    assert summary["passed"] is None and summary["verdict"].startswith("NOT JUDGED")
    only_churned = make_panel({f"c{i}": {"scores": [40.0] * 24, "term_end": term_end, "outcome": "churned"}
                               for i in range(3)})
    lone = validation_verdict(renewal_backtest(score_history(ColumnScore(), only_churned), only_churned))
    assert lone.passed is None and lone.text.startswith(
        "NOT JUDGED: no account that renewed in the test period had a score before its term ended to compare the "
        "churned ones with. 100% of 3 churned accounts scored below 60")


def test_a_failed_gap_names_the_checkpoint_where_it_fell_short():
    """The verdict quotes the gaps 30 days before the renewal; when the gap rule failed at another checkpoint
    (here 9.5 points 60 days before), the FAIL says where, or it reads '+14 points ... did not score 10 points
    higher', a contradiction; and a gap just under the rule is not rounded up to it."""
    term_end = datetime(2025, 6, 15, tzinfo=UTC)
    churned = [40.0] * 14 + [50.5] * 4 + [40.0] * 6  # week 14 is the 60-day checkpoint
    companies = {
        **{f"c{i}": {"scores": churned, "term_end": term_end, "outcome": "churned"} for i in range(3)},
        **{f"r{i}": {"scores": [60.0] * 24, "term_end": term_end, "outcome": "renewed"} for i in range(3)},
    }
    panel = make_panel(companies)
    verdict = validation_verdict(renewal_backtest(score_history(ColumnScore(), panel), panel))
    assert verdict.details["gaps"] == {"renewed_90d": 20.0, "renewed_60d": 9.5, "renewed_30d": 20.0}
    assert verdict.text.startswith(  # no expansion in the period: 'renewed accounts', not 'renewed and expanded'
        "FAIL: renewed accounts did not score meaningfully higher (at least 10 points at every checkpoint) than "
        "churned accounts (60 days before, renewed accounts only a median +9.5 points). ")
    assert "30 days before the term ended, renewed accounts a median +20 points against churned" in verdict.text


def test_at_risk_line_says_how_many_churns_it_was_chosen_on():
    """The At-risk line's '100% of churns flagged' counts only the churns with the horizon before them inside the
    test period, fewer than the churned accounts the AUC line counts: the line says how many, and why."""
    panel = make_panel(playbook_companies())
    choice = choose_at_risk_threshold(score_history(ColumnScore(), panel), panel, target_recall=0.8)
    assert choice.churns == 1
    assert "100% of churns flagged within 90 days before they happened (1 churn of the test period came late " \
           "enough to judge this on)" in choice.text


def test_the_backtest_summary_keeps_what_the_at_risk_line_was_chosen_for(playbook_data):
    """The leadership page says what the line was chosen for (a recall target, or the owners' capacity, which then
    decides): the choice and its summary keep both, as they were asked for."""
    history, panel = playbook_data
    for_recall = choose_at_risk_threshold(history, panel, target_recall=0.8)
    both = choose_at_risk_threshold(history, panel, target_recall=0.8, capacity_per_owner_per_week=0.1)
    none_fit = choose_at_risk_threshold(history, panel, capacity_per_owner_per_week=0.01, candidates=range(55, 70))
    assert (for_recall.target_recall, for_recall.capacity_per_owner_per_week) == (0.8, None)
    assert (both.target_recall, both.capacity_per_owner_per_week) == (0.8, 0.1)
    assert none_fit.threshold is None and none_fit.capacity_per_owner_per_week == 0.01
    renewals = renewal_backtest(history, panel)
    summary = backtest_summary(renewals, validation_verdict(renewals), pd.DataFrame(), both)["threshold"]
    assert (summary["target_recall"], summary["capacity_per_owner_per_week"]) == (0.8, 0.1)


@pytest.mark.parametrize(("churned", "says"), [
    (59, "FAIL: the score is not predictive: fewer than 50% of churned accounts dropped below 60. 33% of 3 churned "),
    (65, "FAIL: the score is not predictive: no churned account dropped below 60. 0% of 3 churned "),
])
def test_a_score_that_is_not_predictive_says_how_many_churned_accounts_dropped(churned, says):
    """'churned accounts did not drop below 60' sat before '33% of 3 churned accounts scored below 60': the FAIL
    says what fell short (fewer than the share it takes), and 'none' only when none did."""
    verdict = verdict_for(churned=churned, renewed=80, expanded=85)
    assert verdict.passed is False and verdict.text.startswith(says)
