"""Scoring current customers: the scores file's columns and values, presets fitted on history, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from hsutils.cli import main
from hsutils.model import HealthScore, save_model
from hsutils.panel import build_panel
from hsutils.scores import score_snapshot
from hsutils.snapshot import load_snapshot

SIGNALS = ["core_depth", "eb_engagement", "seat_utilisation", "support_negative_trend", "days_to_renewal"]
CONTRACT_HEAD = ["company_id", "as_of", "health_score", "band", "churn_probability"]
CONTRACT_TAIL = [
    "score_change_30d", "expansion_candidate", "arr", "cs_owner_id", "model_version",
    "arr_segment", "ae_owner_id", "days_to_renewal", "seat_utilisation", "tier", "size_bucket",
]


def _fitted_model(columns: list[str], seed: int = 0) -> HealthScore:
    """A HealthScore fitted on made-up rows with the given column names (scoring needs only the names)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(600, len(columns))), columns=columns)
    X["seat_utilisation"] = rng.uniform(size=600) if "seat_utilisation" in columns else None
    if "seat_utilisation" not in columns:
        X = X.drop(columns="seat_utilisation")
    y = (rng.random(600) < 1 / (1 + np.exp(2 + 1.5 * X[columns[0]]))).astype(int)
    return HealthScore(cv=2).fit(X, y)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.yml"
    save_model(_fitted_model(SIGNALS), path, {"training": {"cutoff": "2026-01-01"}})
    return path


@pytest.fixture(scope="module")
def snapshot(small_demo):
    return load_snapshot(small_demo)


def test_score_cli_writes_one_row_per_current_customer(small_demo, snapshot, model_file, tmp_path):
    out = tmp_path / "scores.parquet"
    assert main(["score", str(small_demo), "--model", str(model_file), "--out", str(out)]) == 0
    scores = pl.read_parquet(out)
    points = [f"points_{s}" for s in SIGNALS if s != "days_to_renewal"]  # renewal proximity is not a point source
    assert scores.columns == CONTRACT_HEAD + points + CONTRACT_TAIL
    when = datetime(2026, 11, 15, tzinfo=UTC)  # the demo snapshot's day
    customers = build_panel(snapshot, as_of_dates=[when], signals=["seat_utilisation"])
    assert scores.height == customers.height == scores["company_id"].n_unique()
    assert set(scores["company_id"]) == set(customers["company_id"])
    assert (scores["as_of"] == when).all()
    assert scores["health_score"].is_between(0, 100).all()
    assert scores["churn_probability"].is_between(0, 1).all()
    assert set(scores["band"].unique()) <= {"Healthy", "Neutral", "At risk"}
    merged = scores.join(customers.select("company_id", "seat_utilisation"), on="company_id")
    expected = ((merged["health_score"] >= 85) & (merged["seat_utilisation"] >= 0.8)).fill_null(False)
    assert (merged["expansion_candidate"] == expected).all()
    version = model_file.read_text().split("version: ", 1)[1].split()[0]
    assert (scores["model_version"] == version).all()
    assert not [p for p in tmp_path.iterdir() if p.name != "scores.parquet"]  # no temporary file left


def test_score_change_is_the_score_28_days_earlier(snapshot, model_file):
    from hsutils.model import load_model

    model = load_model(model_file)
    when = datetime(2026, 10, 4, tzinfo=UTC)
    now = score_snapshot(snapshot, model, as_of=when)
    before = score_snapshot(snapshot, model, as_of=when - timedelta(days=28))
    both = now.join(before.select("company_id", pl.col("health_score").alias("then")), on="company_id", how="left")
    assert both["score_change_30d"].to_numpy() == pytest.approx(
        (both["health_score"] - both["then"]).to_numpy(), nan_ok=True
    )
    assert both["score_change_30d"].null_count() == both["then"].null_count() < both.height
    # the points per signal add up to the score before the renewal-urgency modifier (none in this model)
    point_sum = now.select(pl.sum_horizontal(pl.col("^points_.*$"))).to_series()
    assert point_sum.to_numpy() == pytest.approx(now["health_score"].to_numpy(), abs=1e-6)


def test_score_cli_preset_is_fitted_on_history_and_written_as_csv(small_demo, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    assert main(["score", str(small_demo), "--model", "seed", "--out", str(out), "--as-of", "2026-09-01"]) == 0
    scores = pl.read_csv(out)
    assert scores.columns[:5] == CONTRACT_HEAD and scores.columns[-len(CONTRACT_TAIL):] == CONTRACT_TAIL
    assert {c for c in scores.columns if c.startswith("points_")} == {
        "points_core_depth", "points_eb_engagement", "points_support_negative_trend", "points_seat_utilisation"
    }
    assert scores["as_of"].unique().to_list() == ["2026-09-01T00:00:00Z"]
    assert scores["model_version"].unique().to_list() == ["preset:seed"]
    assert "companies scored" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["unknown preset", "missing model file", "as-of after snapshot",
                                  "as-of before data", "bad output suffix", "model signal not in panel",
                                  "misspelt signal in the model file"])
def test_score_cli_bad_input_exits_2_and_writes_nothing(small_demo, tmp_path, capsys, case):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    model = str(tmp_path / "model.yml")
    save_model(_fitted_model(SIGNALS), model)
    args = {"model": model, "out": str(out_dir / "scores.parquet"), "as_of": None}
    if case == "unknown preset":
        args["model"] = "gut-feeling"
    elif case == "missing model file":
        args["model"] = str(tmp_path / "nope.yml")
    elif case == "as-of after snapshot":
        args["as_of"] = "2030-01-01"
    elif case == "as-of before data":
        args["as_of"] = "2001-01-01"
    elif case == "bad output suffix":
        args["out"] = str(out_dir / "scores.xlsx")
    elif case == "model signal not in panel":
        save_model(_fitted_model(["mystery_signal", "core_depth"]), model)
    else:  # a hand edit: its points would silently vanish
        text = Path(model).read_text()
        Path(model).write_text(text.replace("name: eb_engagement", "name: eb_engagment"))
    argv = ["score", str(small_demo), "--model", args["model"], "--out", args["out"]]
    if args["as_of"]:
        argv += ["--as-of", args["as_of"]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hsutils score: error:") and err.count("\n") == 1
    if case == "model signal not in panel":
        assert "mystery_signal" in err
    if case == "misspelt signal in the model file":
        assert "signal 'eb_engagment' is not among the model's columns" in err
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("segment_column", ["arr_segment", "tier", "size_bucket"])
def test_scores_carry_every_segment_column_the_report_accepts(snapshot, model_file, segment_column):
    """The leadership page breaks the scores down by the report's `segment_column` (`tier` was a KeyError)."""
    from hsutils import figures, narrative
    from hsutils.model import load_model

    scores = score_snapshot(snapshot, load_model(model_file))
    panel = build_panel(snapshot, as_of_dates=[scores["as_of"][0]], signals=["seat_utilisation"])
    expected = panel.select("company_id", pl.col(segment_column).cast(pl.String).alias("expected"))
    joined = scores.join(expected, on="company_id")
    assert joined.height == scores.height and (joined[segment_column] == joined["expected"]).all()
    table = narrative.segment_breakdown(scores.to_pandas(), segment_column)
    assert len(table) == panel[segment_column].n_unique()
    figures.arr_by_band(scores.to_pandas(), segment_column)


def test_score_cli_counts_one_company_in_the_singular(snapshot, model_file, tmp_path, capsys):
    """A portal with one current customer: the command says '1 company scored', not '1 companies'."""
    from hsutils.snapshot import write_snapshot

    when = datetime(2026, 11, 15, tzinfo=UTC)  # the demo snapshot's day
    company = build_panel(snapshot, as_of_dates=[when], signals=["seat_utilisation"])["company_id"].sort()[0]
    tables = {name: snapshot[name].filter(pl.col("company_id") == company) for name in snapshot.tables}
    one = write_snapshot(tables, snapshot.manifest, tmp_path / "one", fmt="parquet")
    assert main(["score", str(one), "--model", str(model_file), "--out", str(tmp_path / "scores.csv")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("1 company scored at ") and "companies" not in printed
