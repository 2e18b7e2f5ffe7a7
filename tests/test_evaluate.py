"""Evaluation: metrics against scikit-learn, bootstrap intervals, the time split, the comparison table, the CLI."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline

from hsutils.errors import InputError
from hsutils.evaluate import (
    compare_models,
    default_cutoff,
    default_models,
    json_safe,
    score_metrics,
    segment_warning,
    time_split,
    univariate_auc,
    write_json_atomic,
)
from hsutils.model import HealthScore

START = datetime(2024, 1, 1, tzinfo=UTC)


def synthetic_panel(companies: int = 300, weeks: int = 104, seed: int = 3, horizon: int = 90) -> pl.DataFrame:
    """A weekly panel shaped like build_panel's: annual terms, churn at renewal driven by a hidden risk that the
    value signals see and the activity signals do not."""
    rng = np.random.default_rng(seed)
    data_end = START + timedelta(weeks=weeks - 1)
    rows = []
    for c in range(companies):
        risk = rng.normal()
        arr = float(np.round(rng.lognormal(9.5, 0.8), 2))
        first_end = START + timedelta(days=int(rng.integers(7, 365)))
        term_ends = [first_end + timedelta(days=365 * k) for k in range(4)]
        churned_at = None
        outcomes = {}
        for end in term_ends:
            churn = rng.random() < 1 / (1 + np.exp(-(-1.8 + 1.6 * risk)))
            expanded = (not churn) and rng.random() < 0.25
            outcomes[end] = (churn, expanded)
            if churn:
                churned_at = end
                break
        for w in range(weeks):
            as_of = START + timedelta(weeks=w)
            if churned_at is not None and as_of >= churned_at:
                break
            term_end = next(e for e in term_ends if e > as_of)
            churn, expanded = outcomes.get(term_end, (False, False))
            days = (term_end - as_of).days
            in_horizon = days <= horizon
            known = in_horizon and term_end <= data_end
            rows.append({
                "company_id": f"c{c:04d}",
                "as_of": as_of,
                "core_depth": float(np.exp(-0.5 * risk + rng.normal(0, 0.4))),
                "eb_engagement": float(max(0.0, 2 - risk + rng.normal(0, 1.0))),
                "support_negative_trend": float(0.3 * risk + rng.normal(0, 0.5)),
                "seat_utilisation": float(np.clip(0.7 - 0.12 * risk + rng.normal(0, 0.1), 0, 1)),
                "days_to_renewal": float(days),
                "logins_28d": float(rng.poisson(40)),
                "ticket_volume_90d": float(rng.poisson(3)),
                "email_open_rate": float(rng.uniform()),
                "latest_nps": float(rng.integers(0, 11)) if rng.random() < 0.5 else None,
                "arr": arr,
                "term_end": term_end,
                "cs_owner_id": f"o{c % 4}",
                "ae_owner_id": f"a{c % 2}",
                "outcome_churned": (1 if churn else 0) if known else None,
                "outcome_expanded": (1 if expanded and in_horizon else 0) if as_of + timedelta(days=horizon) <= data_end else None,
                "outcome_days_to_churn": float(days) if known and churn else None,
            })
    panel = pl.DataFrame(rows).with_columns(
        pl.col("as_of").cast(pl.Datetime("us", "UTC")), pl.col("term_end").cast(pl.Datetime("us", "UTC")),
        pl.col("outcome_churned").cast(pl.Int8), pl.col("outcome_expanded").cast(pl.Int8),
    )
    rank = pl.col("arr").rank("min", descending=True).over("as_of")
    cut = (pl.len().over("as_of") * 0.2).ceil()
    return panel.with_columns(
        pl.when(rank <= cut).then(pl.lit("high_touch")).otherwise(pl.lit("scaled")).alias("arr_segment")
    )


@pytest.fixture(scope="module")
def panel() -> pl.DataFrame:
    return synthetic_panel()


# ---- metrics ---------------------------------------------------------------------------------------------------
def _scores(n: int = 2000, seed: int = 1, round_to: int | None = 2):
    rng = np.random.default_rng(seed)
    p = rng.beta(1.2, 6, n)
    if round_to is not None:
        p = np.round(p, round_to)  # many ties
    y = (rng.random(n) < p).astype(int)
    groups = rng.integers(0, n // 5, n)
    return y, p, groups


def test_metrics_match_scikit_learn_with_ties():
    y, p, _ = _scores()
    m = score_metrics(y, p, n_boot=0)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert m["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert m["log_loss"] == pytest.approx(log_loss(y, p), abs=1e-9)
    assert (m["rows"], m["churns"]) == (y.size, int(y.sum()))
    assert m["churned_companies"] is None  # no groups given
    y_c, p_c, groups = _scores()
    assert score_metrics(y_c, p_c, n_boot=0, groups=groups)["churned_companies"] == np.unique(groups[y_c == 1]).size


def test_top_decile_lift_and_ece_by_hand():
    y, p, _ = _scores(n=1000, round_to=None)  # no ties: the top decile is exactly the 100 highest
    m = score_metrics(y, p, n_boot=0)
    top = np.argsort(-p)[:100]
    assert m["top_decile_lift"] == pytest.approx(y[top].mean() / y.mean())
    edges = np.quantile(p, np.linspace(0, 1, 11))
    bins = np.clip(np.searchsorted(edges[1:-1], p, side="right"), 0, 9)
    ece = sum((bins == b).sum() / p.size * abs(p[bins == b].mean() - y[bins == b].mean()) for b in range(10))
    assert m["ece"] == pytest.approx(ece)
    assert [b["rows"] for b in m["reliability"]] == [int((bins == b).sum()) for b in range(10)]
    assert sum(b["rows"] for b in m["reliability"]) == p.size


def test_bootstrap_intervals_contain_the_estimate_and_repeat_for_a_seed():
    y, p, groups = _scores()
    first = score_metrics(y, p, n_boot=200, seed=5, groups=groups)
    again = score_metrics(y, p, n_boot=200, seed=5, groups=groups)
    other = score_metrics(y, p, n_boot=200, seed=6, groups=groups)
    assert first["intervals"] == again["intervals"]
    assert first["intervals"]["auc"] != other["intervals"]["auc"]
    for name in ("auc", "pr_auc", "brier", "log_loss", "top_decile_lift", "ece"):
        low, high = first["intervals"][name]
        assert low <= first[name] <= high, name
        assert low < high


def test_cluster_bootstrap_ignores_copies_of_a_company_row():
    """Weekly copies of the same company add no evidence: company resampling gives the same interval with one
    row or ten identical rows per company, while row resampling would shrink it."""
    y, p, _ = _scores(n=400)
    companies = np.arange(400)
    once = score_metrics(y, p, n_boot=200, seed=0, groups=companies)
    tenfold = score_metrics(np.repeat(y, 10), np.repeat(p, 10), n_boot=200, seed=0, groups=np.repeat(companies, 10))
    rows = score_metrics(np.repeat(y, 10), np.repeat(p, 10), n_boot=200, seed=0)
    assert tenfold["intervals"]["auc"] == pytest.approx(once["intervals"]["auc"])
    width = np.diff(once["intervals"]["auc"])[0]
    assert np.diff(rows["intervals"]["auc"])[0] < 0.6 * width


def test_one_class_and_bad_input():
    m = score_metrics([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4], n_boot=50)
    assert m["auc"] is None and m["pr_auc"] is None and m["brier"] == pytest.approx(0.075)
    with pytest.raises(InputError):
        score_metrics([0, 1], [0.2, float("nan")])
    with pytest.raises(InputError):
        score_metrics([0, 1, 1], [0.2, 0.3])
    with pytest.raises(InputError):
        score_metrics([0, 2], [0.2, 0.3])


# ---- time split ------------------------------------------------------------------------------------------------
def test_time_split_keeps_training_outcomes_out_of_the_test_period(panel):
    train, test, cutoff = time_split(panel, horizon_days=90)
    assert train.get_column("as_of").max() + timedelta(days=90) <= cutoff
    assert test.get_column("as_of").min() >= cutoff
    assert train.get_column("outcome_churned").null_count() == 0
    # every training outcome (a churn date) lies before the cutoff
    churn_dates = train.filter(pl.col("outcome_churned") == 1).select(
        pl.col("as_of") + pl.duration(days=pl.col("outcome_days_to_churn").cast(pl.Int64))
    ).to_series()
    assert churn_dates.max() <= cutoff
    labelled_weeks = panel.filter(pl.col("outcome_churned").is_not_null()).get_column("as_of").unique()
    test_share = (labelled_weeks >= cutoff).mean()
    assert 0.28 <= test_share <= 0.38
    assert cutoff == default_cutoff(panel)


def test_time_split_explicit_cutoff_and_errors(panel):
    _, test, cutoff = time_split(panel, cutoff="2025-06-02", horizon_days=60)
    assert cutoff == datetime(2025, 6, 2, tzinfo=UTC)
    assert test.get_column("as_of").min() >= cutoff
    with pytest.raises(InputError, match="no churn among"):
        time_split(panel, cutoff="2024-01-15")  # nothing can be learnt before
    with pytest.raises(InputError, match="no churn among"):
        time_split(panel, cutoff="2030-01-01")  # nothing to judge after
    with pytest.raises(InputError):
        time_split(panel, cutoff="not a date")


def test_time_split_says_when_nothing_churned_at_all(panel):
    renewed = panel.with_columns(pl.col("outcome_churned") * 0)
    with pytest.raises(InputError, match="no churn anywhere: none of the .* labelled rows") as refusal:
        time_split(renewed)
    assert "cutoff" not in str(refusal.value)  # no cutoff would help


def test_time_split_with_few_churns_says_which_cutoffs_leave_churn_on_both_sides(panel):
    """A portal with a handful of churns, all early: the default cutoff leaves none to judge, and the refusal names
    the last churned as-of, so the analyst knows which earlier cutoff to give."""
    churned = panel.filter(pl.col("outcome_churned") == 1).sort("as_of")
    early = churned["company_id"].unique(maintain_order=True).head(3).implode()
    few = panel.with_columns(pl.when(pl.col("company_id").is_in(early)).then("outcome_churned")
                             .otherwise(pl.col("outcome_churned") * 0).alias("outcome_churned"))
    last = few.filter(pl.col("outcome_churned") == 1)["as_of"].max()
    with pytest.raises(InputError, match=f"no churn among .* test rows .*on or before {last.date().isoformat()}"):
        time_split(few)
    with pytest.raises(InputError, match="no churn among .* training rows .*the first churned row is at as-of"):
        time_split(few, cutoff=few["as_of"].min() + timedelta(days=7))


def test_a_panel_read_back_from_csv_or_written_by_another_tool_splits_like_the_original(panel, tmp_path):
    """as_of as ISO text (a panel CSV read back) and an outcome of text 0/1 or booleans give the same split; an
    as_of that is no timestamp, or an outcome other than 1, 0 or empty, is refused naming the rows."""
    path = tmp_path / "panel.csv"
    panel.write_csv(path)
    expected = time_split(panel)
    for other in (pl.read_csv(path), panel.with_columns(pl.col("outcome_churned").cast(pl.String)),
                  panel.with_columns(pl.col("outcome_churned").cast(pl.Boolean))):
        train, test, cut = time_split(other)
        assert cut == expected[2] and train.height == expected[0].height and test.height == expected[1].height
        assert train["outcome_churned"].sum() == expected[0]["outcome_churned"].sum()
    typo = panel.with_columns(pl.col("as_of").dt.strftime("%Y-%m-%d")).with_row_index()
    typo = typo.with_columns(pl.when(pl.col("index") == 3).then(pl.lit("next week")).otherwise("as_of").alias("as_of"))
    with pytest.raises(InputError, match=r"^panel, column as_of: not a timestamp .*rows: \{as_of=next week\}$"):
        time_split(typo.drop("index"))
    worded = panel.with_columns(pl.col("outcome_churned").replace_strict({0: "renewed", 1: "churned"}, default=None))
    with pytest.raises(InputError, match=r"^panel, column outcome_churned: [\d,]+ value\(s\) other than 1 .*"
                                         r"outcome_churned=churned"):
        time_split(worded)


def test_signals_named_twice_count_once_and_outcome_columns_are_no_signals(panel):
    once = compare_models(panel, signals=["core_depth", "eb_engagement"], n_boot=0, models={"fitted": HealthScore()})
    twice = compare_models(panel, signals=["core_depth", "eb_engagement", "core_depth"], n_boot=0,
                           models={"fitted": HealthScore()})
    assert twice.signals == ["core_depth", "eb_engagement"]
    assert twice.models["fitted"].points_ == once.models["fitted"].points_
    with pytest.raises(InputError, match=r"^signals: outcome_expanded look ahead"):
        compare_models(panel, signals=["core_depth", "outcome_expanded"], n_boot=0, models={"fitted": HealthScore()})


# ---- comparison ------------------------------------------------------------------------------------------------
def test_compare_models_table_matches_direct_metrics(panel):
    models = {"logit": make_pipeline(SimpleImputer(), LogisticRegression(max_iter=500))}
    signals = ["core_depth", "eb_engagement", "seat_utilisation", "logins_28d"]
    result = compare_models(panel, signals=signals, n_boot=50, seed=1, models=models)
    table = result.table
    assert list(table["segment"]) == ["all", "high_touch", "scaled"]
    assert table.loc[0, "rows"] == table.loc[1, "rows"] + table.loc[2, "rows"]
    train, test, _ = time_split(panel)
    test = test.filter(pl.col("outcome_churned").is_not_null())
    proba = result.models["logit"].predict_proba(test.select(signals).to_pandas())[:, 1]
    y = test.get_column("outcome_churned").to_numpy()
    assert table.loc[0, "auc"] == pytest.approx(roc_auc_score(y, proba))
    assert table.loc[0, "auc_low"] <= table.loc[0, "auc"] <= table.loc[0, "auc_high"]
    assert result.metrics["logit"]["all"]["bootstrap"] == "companies"
    # the rules count churned accounts, not the weekly rows each of them labels
    churned_test = test.filter(pl.col("outcome_churned") == 1)
    assert table.loc[0, "churned_companies"] == churned_test["company_id"].n_unique() < table.loc[0, "churns"]
    # 4 signals need 40 churned accounts in training per segment: the small high-touch segment is warned about
    churned_train = train.filter(pl.col("outcome_churned") == 1)
    high_train_churns = churned_train.filter(pl.col("arr_segment") == "high_touch")["company_id"].n_unique()
    assert high_train_churns < 40 <= churned_train.filter(pl.col("arr_segment") == "high_touch").height
    assert "fewer than 10 per signal" in table.loc[1, "warning"]
    assert f"{high_train_churns} churned accounts in training" in table.loc[1, "warning"]
    assert "per signal" not in table.loc[0, "warning"]
    # the count itself, for the leadership page's caution on points fitted on few churns
    assert table.loc[1, "train_churned_companies"] == high_train_churns
    assert table.loc[0, "train_churned_companies"] == churned_train["company_id"].n_unique()


def test_compare_models_fits_segments_on_churned_accounts(panel):
    """compare_models hands a segmented scorer the company ids: each segment's shrinkage weight counts its
    churned accounts in training, not the weekly rows each of them labels."""
    from hsutils.model import SegmentedHealthScore

    signals = ["core_depth", "eb_engagement", "seat_utilisation", "logins_28d"]
    with pytest.warns(UserWarning, match=r"arr_segment=high_touch: \d+ churned accounts for 4 signals"):
        result = compare_models(panel, signals=signals, n_boot=0, models={"by_segment": SegmentedHealthScore()})
    model = result.models["by_segment"]
    train, _, _ = time_split(panel)
    churned = train.filter(pl.col("outcome_churned") == 1)
    for segment in ("high_touch", "scaled"):
        rows = churned.filter(pl.col("arr_segment") == segment)
        accounts = rows["company_id"].n_unique()
        assert model.segment_churns_[segment] == rows.height > accounts
        assert model.segment_churned_companies_[segment] == accounts
        assert model.segment_weights_[segment] == pytest.approx(accounts / (accounts + model.shrinkage))


def test_compare_models_warning_counts_the_signals_that_earn_points(panel):
    """The too-few-churns warning counts the signals a health score puts points on: not the renewal proximity
    modifier, nor the segment column a segmented score reads (the console's segment warning counts the same)."""
    from hsutils.model import SegmentedHealthScore

    signals = ["core_depth", "eb_engagement", "seat_utilisation", "logins_28d", "days_to_renewal"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compare_models(panel, signals=signals, n_boot=0, models={
            "fitted": HealthScore(), "by_segment": SegmentedHealthScore(), "logit": make_pipeline(
                SimpleImputer(), LogisticRegression(max_iter=500))})
    high_touch = result.table[result.table["segment"] == "high_touch"].set_index("model")["warning"]
    assert "churned accounts in training for 4 signals" in high_touch["fitted"]
    assert "churned accounts in training for 4 signals" in high_touch["by_segment"]
    assert "churned accounts in training for 5 signals" in high_touch["logit"]  # it reads all five


def test_compare_models_names_the_fit_that_cannot_be_made(panel):
    """A training period with a single churned account is refused naming the model and the training rows, not
    with the estimator's 'y: ...' alone."""
    train, _, cut = time_split(panel)
    churned = train.filter(pl.col("outcome_churned") == 1)["company_id"].unique().sort()
    one_churn = panel.filter(~pl.col("company_id").is_in(churned[1:].implode()))
    with pytest.raises(InputError, match=rf"^model fitted: cannot be fitted on the training rows \(before "
                       rf"{cut:%Y-%m-%d}\): y: only 1 churned account of \d+;"):
        compare_models(one_churn, cutoff=cut, signals=["core_depth"], n_boot=0, models={"fitted": HealthScore()})


def test_compare_models_standard_scorers(panel):
    standard = default_models()
    assert list(standard) == ["fitted", "seed", "40-30-30", "logistic", "boosting"]
    del standard["boosting"]  # the slowest to fit; it is judged exactly like the others
    result = compare_models(panel, n_boot=20, models=standard)
    assert list(result.table["model"].unique()) == ["fitted", "seed", "40-30-30", "logistic"]
    overall = result.table[result.table["segment"] == "all"].set_index("model")
    # value signals carry the churn risk here, activity signals are noise
    assert overall.loc["fitted", "auc"] > overall.loc["40-30-30", "auc"] + 0.1
    assert overall.loc["seed", "auc"] > overall.loc["40-30-30", "auc"] + 0.1
    assert abs(sum(result.models["fitted"].points_.values()) - 100) < 0.01


def test_univariate_auc_finds_the_predictive_signals(panel):
    table = univariate_auc(panel, ["core_depth", "support_negative_trend", "logins_28d", "latest_nps"], n_boot=100)
    rows = table.set_index("signal")
    assert rows.loc["core_depth", "auc_high"] < 0.5 and rows.loc["core_depth", "direction"] == 1
    assert rows.loc["support_negative_trend", "auc_low"] > 0.5 and rows.loc["support_negative_trend", "direction"] == -1
    assert rows.loc["logins_28d", "auc_low"] < 0.5 < rows.loc["logins_28d", "auc_high"]
    assert 0.4 < rows.loc["latest_nps", "missing_share"] < 0.6
    assert table["signal"].iloc[-1] in ("logins_28d", "latest_nps")


# ---- JSON --------------------------------------------------------------------------------------------------------
def test_json_is_nan_free_and_deterministic(tmp_path):
    payload = {"b": float("nan"), "a": [np.float64(0.1234567891), np.int64(3), float("inf")],
               "when": datetime(2026, 1, 2, tzinfo=UTC)}
    assert json_safe(payload) == {"b": None, "a": [0.123457, 3, None], "when": "2026-01-02T00:00:00Z"}
    first = write_json_atomic(payload, tmp_path / "m.json").read_bytes()
    second = write_json_atomic(dict(reversed(list(payload.items()))), tmp_path / "m.json").read_bytes()
    assert first == second and b"NaN" not in first
    assert json.loads(first)["b"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


# ---- command line ------------------------------------------------------------------------------------------------
def test_cli_evaluate_writes_deterministic_metrics(small_demo, tmp_path, capsys):
    from hsutils.cli import main

    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(small_demo), "--model", "seed", "--out", str(out)]) == 0
    first = out.read_bytes()
    assert main(["evaluate", str(small_demo), "--model", "seed", "--out", str(out)]) == 0
    assert out.read_bytes() == first
    metrics = json.loads(first)
    assert b"NaN" not in first
    assert metrics["model"]["kind"] == "preset"
    assert set(metrics["metrics"]["segments"]) == {"high_touch", "scaled"}
    assert metrics["renewal_backtest"]["verdict"]["text"].startswith(("PASS", "FAIL", "NOT JUDGED"))
    assert {r["rule"] for r in metrics["playbook"]} >= {"owner_alert", "expansion_task"}
    out_text = capsys.readouterr().out
    assert "written to" in out_text and "optimistic" not in out_text  # a preset fitted on the training side
    # the console repeats the overall warning (here: 29 churned accounts in training for the seed preset's 4 point
    # signals; days to renewal sets urgency and is not counted)
    warning = metrics["metrics"]["overall"]["warning"]
    assert warning and f"caution: {warning}\n" in out_text
    assert "in training for 4 signals" in warning


def test_cli_evaluate_says_on_the_console_when_the_metrics_are_optimistic(small_demo, tmp_path, capsys):
    """A model file trained on outcomes up to the panel's end, judged from the default cutoff: the test period lies
    inside its training period, so the console line under the verdict says the metrics are optimistic."""
    from hsutils.cli import main
    from hsutils.evaluate import iso, panel_signals
    from hsutils.model import HealthScore, save_model
    from hsutils.panel import build_panel
    from hsutils.snapshot import load_snapshot

    panel = build_panel(load_snapshot(small_demo))
    labelled = panel.filter(pl.col("outcome_churned").is_not_null())
    signals = panel_signals(panel)
    model = HealthScore().fit(labelled.select(signals).to_pandas(), labelled["outcome_churned"].to_numpy())
    trained_to = iso(panel["as_of"].max())
    model_file = save_model(model, tmp_path / "model.yml", {"training": {"cutoff": trained_to}})
    cutoff = iso(default_cutoff(panel))
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(small_demo), "--model", str(model_file), "--cutoff", cutoff, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("AUC ") and lines[0].split(". ", 1)[1].startswith(("PASS", "FAIL"))
    assert lines[1] == f"caution: {json.loads(out.read_text())['notes'][0]}"
    assert "optimistic" in lines[1] and trained_to in lines[1] and cutoff in lines[1]


@pytest.mark.parametrize("model, out", [("no-such-preset", "m.json"), ("seed", "m.txt")])
def test_cli_evaluate_bad_input_exits_2(small_demo, tmp_path, capsys, model, out):
    from hsutils.cli import main

    assert main(["evaluate", str(small_demo), "--model", model, "--out", str(tmp_path / out)]) == 2
    assert "error" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("test_churns", "interval", "says"),
    [
        (12, (0.80, 0.90), "only 12 churned accounts in the test period: AUC not stable"),
        (51, (0.343, 0.573), "AUC 95% interval 0.34 to 0.57 is wider than 0.2: AUC not stable"),
        (51, (0.80, 0.90), ""),
    ],
)
def test_unstable_auc_warning_names_its_reason(test_churns, interval, says):
    """51 churned accounts are enough: a wide interval is then the reason, not 'only 51 churned accounts'."""
    assert segment_warning(1000, test_churns, 10, list(interval)) == says


def test_a_signal_of_ones_own_registered_without_points_sets_no_points_in_the_fitted_models():
    """A product's own signal registered with point_source=False (a second urgency measure, say) is a modifier of
    the health scores fitted here, as days to renewal is: it earns no points in the fitted or per-segment model."""
    from hsutils.model import fit_candidate
    from hsutils.signals import register_signal, unregister_signal

    panel = synthetic_panel(companies=200, weeks=80)
    panel = panel.with_columns(weeks_to_term_end=pl.col("days_to_renewal") / 7)

    @register_signal("weeks_to_term_end", family="value", unit="weeks", direction=0, point_source=False)
    def weeks_to_term_end(ctx):
        return ctx.keys.with_columns(value=0.0)

    try:
        with warnings.catch_warnings():  # the high-touch segment's few churns
            warnings.simplefilter("ignore", UserWarning)
            candidate = fit_candidate(panel, signals=["core_depth", "eb_engagement", "weeks_to_term_end"], n_boot=0,
                                      segment_column="arr_segment")
    finally:
        unregister_signal("weeks_to_term_end")
    by_segment = candidate.comparison.models["fitted_by_segment"]
    for model in (candidate.model, by_segment.global_model_, *by_segment.segment_models_.values()):
        assert "weeks_to_term_end" in model.modifiers_ and model.points_.get("weeks_to_term_end", 0.0) == 0.0
        assert set(model.point_sources_) == {"core_depth", "eb_engagement"}
