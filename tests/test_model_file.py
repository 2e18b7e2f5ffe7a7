"""The model file: YAML round trips, presets by name, bad files, and `hsutils fit` end to end."""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.special import expit

from hsutils.errors import InputError
from hsutils.model import HealthScore, SegmentedHealthScore, SignalTransform, load_model, preset, save_model


def _table(n: int = 1500, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "core_depth": rng.gamma(2.0, 5.0, n),
            "eb_engagement": rng.poisson(2.0, n).astype(float),
            "support_negative_trend": rng.normal(0, 0.3, n),
            "seat_utilisation": rng.uniform(0, 1.2, n),
            "latest_nps": np.where(rng.random(n) < 0.4, np.nan, rng.integers(0, 11, n)),
            "days_to_renewal": rng.uniform(0, 200, n),
        }
    )
    eta = 0.5 - 0.08 * X["core_depth"] - 0.3 * X["eb_engagement"] + X["support_negative_trend"]
    eta = eta - 1.5 * X["seat_utilisation"] + 0.8 * (X["seat_utilisation"] - 0.6) ** 2
    y = (rng.random(n) < expit(eta)).astype(int)
    return X, y


METADATA = {
    "training": {"cutoff": "2026-06-01T00:00:00Z", "from": "2025-01-05T00:00:00Z", "to": "2026-03-01T00:00:00Z",
                 "horizon_days": 90, "rows": 1500, "churns": 300},
    "metrics": {"held_out": [{"model": "fitted", "segment": "all", "auc": 0.81}]},
    "created_at": "2026-11-15T00:00:00Z",
}


def _assert_same_scorer(loaded, original, X):
    np.testing.assert_array_equal(loaded.health_score(X), original.health_score(X))
    np.testing.assert_allclose(loaded.predict_proba(X), original.predict_proba(X), rtol=0, atol=1e-15)
    assert list(loaded.band(X)) == list(original.band(X))
    assert loaded.points_ == original.points_


def test_fitted_model_round_trip_reproduces_scores(tmp_path):
    X, y = _table()
    model = HealthScore().fit(X, y)
    path = save_model(model, tmp_path / "model.yml", METADATA)
    loaded = load_model(path)
    _assert_same_scorer(loaded, model, X)
    assert loaded.version_ == model.version_
    assert loaded.metadata_["training"]["cutoff"] == "2026-06-01T00:00:00Z"
    assert loaded.metadata_["metrics"]["held_out"][0]["auc"] == 0.81
    assert [p.name for p in tmp_path.iterdir()] == ["model.yml"]  # no temporary file left behind


def test_model_file_is_human_readable(tmp_path):
    X, y = _table()
    model = HealthScore().fit(X, y)
    content = yaml.safe_load(save_model(model, tmp_path / "m.yml", METADATA).read_text())
    assert {"version", "kind", "created_at", "training", "signals", "bands", "calibration", "metrics"} <= set(content)
    assert content["kind"] == "fitted"
    assert content["version"].startswith("2026-11-15-") and len(content["version"]) == len("2026-11-15-") + 8
    assert content["bands"] == {"healthy": 70.0, "at_risk": 55.0}
    signals = {s["name"]: s for s in content["signals"]}
    assert sum(s["points"] for s in signals.values()) == pytest.approx(100.0)
    assert signals["days_to_renewal"]["role"] == "modifier" and signals["days_to_renewal"]["points"] == 0
    transform = signals["core_depth"]["transform"]
    assert {"kind", "shape", "edges", "goodness", "missing_goodness"} <= set(transform)
    assert content["calibration"]["method"] == "logistic"


def test_version_changes_with_content(tmp_path):
    X, y = _table()
    first = save_model(HealthScore().fit(X, y), tmp_path / "a.yml", METADATA)
    again = save_model(HealthScore().fit(X, y), tmp_path / "b.yml", METADATA)
    other = save_model(HealthScore().fit(X.iloc[:900], y[:900]), tmp_path / "c.yml", METADATA)
    versions = [yaml.safe_load(p.read_text())["version"] for p in (first, again, other)]
    assert versions[0] == versions[1] != versions[2]


def test_isotonic_calibration_round_trip(tmp_path):
    X, y = _table()
    model = HealthScore(calibration="isotonic").fit(X, y)
    _assert_same_scorer(load_model(save_model(model, tmp_path / "iso.yml")), model, X)


def test_presets_by_name_and_fitted_preset_round_trip(tmp_path):
    seed = load_model("seed")
    assert isinstance(seed, HealthScore) and not hasattr(seed, "points_")
    assert seed.fixed_points == preset("seed").fixed_points and seed.urgency == "days_to_renewal"
    X, y = _table()
    fitted = preset("seed").fit(X, y)
    path = save_model(fitted, tmp_path / "seed.yml", METADATA)
    assert yaml.safe_load(path.read_text())["kind"] == "preset"
    _assert_same_scorer(load_model(path), fitted, X)
    unfitted = load_model(save_model(preset("40-30-30"), tmp_path / "template.yml"))
    assert not hasattr(unfitted, "points_") and unfitted.fixed_points == preset("40-30-30").fixed_points


@pytest.mark.parametrize(("written", "read"), [("false", False), ("no", False), ("Yes", True), ("off", False)])
def test_yes_no_params_of_a_hand_edited_model_file(written, read, tmp_path):
    """A model file's yes/no params (smooth, calibrate_modifiers) read true/false and the words a YAML 1.1 file meant
    as them (yes, no, on, off): text to the loader, where "no" would be a true value."""
    path = save_model(preset("40-30-30"), tmp_path / "template.yml")
    text = path.read_text()
    assert "  smooth: true\n" in text
    path.write_text(text.replace("  smooth: true\n", f"  smooth: {written}\n"))
    assert load_model(path).smooth is read


def test_a_yes_no_param_neither_true_nor_false_is_refused_in_one_line(tmp_path):
    path = save_model(preset("40-30-30"), tmp_path / "template.yml")
    path.write_text(path.read_text().replace("  calibrate_modifiers: true\n", "  calibrate_modifiers: maybe\n"))
    with pytest.raises(InputError, match=r"params\.calibrate_modifiers is 'maybe'; it must be true or false$"):
        load_model(path)


def test_segmented_model_round_trip(tmp_path):
    """A segmented model fitted on company ids keeps its churned rows and accounts per segment; a file written
    before the accounts were recorded (shrinkage on rows, no churned_companies) still loads."""
    X, y = _table(n=2500)
    X["arr_segment"] = np.where(np.arange(len(X)) % 5 == 0, "high_touch", "scaled")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = SegmentedHealthScore().fit(X, y, groups=np.arange(len(X)) % 500)  # 5 rows each, one segment
    path = save_model(model, tmp_path / "seg.yml", METADATA)
    loaded = load_model(path)
    assert isinstance(loaded, SegmentedHealthScore)
    np.testing.assert_array_equal(loaded.health_score(X), model.health_score(X))
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), atol=1e-15)
    assert loaded.segment_points_ == model.segment_points_
    assert loaded.segment_churns_ == model.segment_churns_
    assert loaded.segment_churned_companies_ == model.segment_churned_companies_
    assert loaded.segment_weights_ == model.segment_weights_ and loaded.shrinkage == model.shrinkage
    content = yaml.safe_load(path.read_text())
    assert content["segments"]["models"]["high_touch"]["churned_companies"] < content["segments"]["models"][
        "high_touch"]["churns"]
    content["segments"]["shrinkage"] = 50.0
    for section in content["segments"]["models"].values():
        del section["churned_companies"]
    old = tmp_path / "old.yml"
    old.write_text(yaml.safe_dump(content, sort_keys=False))
    before = load_model(old)
    assert before.segment_churned_companies_ == {"high_touch": None, "scaled": None} and before.shrinkage == 50.0
    np.testing.assert_array_equal(before.health_score(X), model.health_score(X))


def test_bad_model_files_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_model(tmp_path / "absent.yml")
    broken = tmp_path / "broken.yml"
    broken.write_text("signals: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_model(broken)
    foreign = tmp_path / "foreign.yml"
    foreign.write_text("hello: world\n")
    with pytest.raises(InputError, match="not an hsutils model file"):
        load_model(foreign)
    X, y = _table(n=600)
    path = save_model(HealthScore().fit(X, y), tmp_path / "m.yml")
    content = yaml.safe_load(path.read_text())
    content["signals"][0]["points"] += 7
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(InputError, match="sum to"):
        load_model(path)


def test_a_linear_transform_may_list_a_knot_twice_as_a_jump_steps_may_not():
    """A segment's blend of a step function and a linear one is a linear transform with jumps: the file lists
    the knot twice (goodness at the knot, then just above it). A step edge listed twice, or a knot listed three
    times, is refused."""
    jump = {"kind": "linear", "shape": "blended", "edges": [0.0, 1.0, 1.0, 2.0], "goodness": [0.0, 0.5, 0.9, 1.0],
            "missing_goodness": 0.2}
    assert SignalTransform.from_dict(jump).apply(np.array([1.0, 1.5, np.nan])) == pytest.approx([0.5, 0.95, 0.2])
    with pytest.raises(InputError, match=r"transform.edges\[3\] is 1.0 a third time; a knot is listed at most twice"):
        SignalTransform.from_dict({**jump, "edges": [0.0, 1.0, 1.0, 1.0]})
    with pytest.raises(InputError, match=r"transform.edges\[2\] is 1.0; the edges must increase"):
        SignalTransform.from_dict({**jump, "kind": "steps", "edges": [0.0, 1.0, 1.0]})


@pytest.fixture(scope="module")
def saved_contents(tmp_path_factory) -> dict[str, dict[str, Any]]:
    """The parsed model files of a fitted HealthScore and of a SegmentedHealthScore, to edit by hand."""
    folder = tmp_path_factory.mktemp("saved")
    X, y = _table(n=1500)
    fitted = save_model(HealthScore().fit(X, y), folder / "fitted.yml", METADATA)
    X["arr_segment"] = np.where(np.arange(len(X)) % 5 == 0, "high_touch", "scaled")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        segmented = save_model(SegmentedHealthScore().fit(X, y), folder / "segmented.yml", METADATA)
    return {"fitted": yaml.safe_load(fitted.read_text()), "segmented": yaml.safe_load(segmented.read_text())}


DROP = object()
POINTS_WITH_A_NEGATIVE = {"signals/core_depth/points": -5, "signals/eb_engagement/points": 45,
                          "signals/support_negative_trend/points": 20, "signals/seat_utilisation/points": 20,
                          "signals/latest_nps/points": 20}  # still 100 in all
# case: (which saved file, {path: new value or DROP}, the error it must give); a path walks mappings by key and
# lists of signals by name; each edit was accepted (or failed with a traceback) before the model file was checked
HAND_EDITS: dict[str, tuple[str, dict[str, Any], str]] = {
    "misspelt signal": ("fitted", {"signals/eb_engagement/name": "eb_engagment"},
                        r"signal 'eb_engagment' is not among the model's columns \(core_depth, eb_engagement,"),
    "negative points": ("fitted", POINTS_WITH_A_NEGATIVE,
                        r"signal 'core_depth': points is -5; it must be a finite number >= 0"),
    "nan points": ("fitted", {"signals/latest_nps/points": math.nan}, r"signal 'latest_nps': points is nan"),
    "inf points": ("fitted", {"signals/days_to_renewal/points": math.inf}, r"signal 'days_to_renewal': points is inf"),
    "points on a modifier": ("fitted", {"signals/days_to_renewal/points": 5.0},
                             r"signal 'days_to_renewal': points is 5.0 but a signal of role modifier earns none"),
    "nan goodness": ("fitted", {"signals/core_depth/transform/goodness/2": math.nan},
                     r"signal 'core_depth': transform.goodness\[2\] is nan; it must be a finite number within 0..1"),
    "missing_goodness above 1": ("fitted", {"signals/eb_engagement/transform/missing_goodness": 1.5},
                                 r"signal 'eb_engagement': transform.missing_goodness is 1.5; .* within 0..1"),
    "missing_goodness inf": ("fitted", {"signals/eb_engagement/transform/missing_goodness": math.inf},
                             r"signal 'eb_engagement': transform.missing_goodness is inf"),
    "swapped bands": ("fitted", {"bands": {"healthy": 50, "at_risk": 70}},
                      r"bands: healthy \(50\) must be above at_risk \(70\)"),
    "band above 100": ("fitted", {"bands/healthy": 150}, r"bands.healthy is 150; it must be a finite number within 0..100"),
    "positive calibration slope": ("fitted", {"calibration/slope": 0.05},
                                   r"calibration.slope is 0.05; it must be negative"),
    "unknown calibration method": ("fitted", {"calibration/method": "platt"},
                                   r"calibration.method is 'platt'; it must be logistic or isotonic"),
    "calibration without slope": ("fitted", {"calibration/slope": DROP}, r"calibration.slope is missing"),
    "isotonic calibration without probabilities": ("fitted", {"calibration": {"method": "isotonic", "scores": [0, 100]}},
                                                   r"calibration.probabilities is missing"),
    "misspelt modifier column": ("fitted", {"params/modifiers": ["days_to_renewl"]},
                                 r"params.modifiers: 'days_to_renewl' is not among the model's columns"),
    "misspelt urgency column": ("fitted", {"params/urgency": "days_to_renewl",
                                           "urgency": {"column": "days_to_renewl", "days": 90.0, "gain": 0.5}},
                                r"params.urgency: 'days_to_renewl' is not among the model's columns"),
    "no signals": ("fitted", {"signals": []}, r"signals is \[\]; it must list the model's signals"),
    "fitted without calibration": ("fitted", {"calibration": None}, r"kind fitted needs its calibration"),
    "fitted without columns": ("fitted", {"columns": DROP}, r"kind fitted needs its columns"),
    "segment with a positive slope": ("segmented", {"segments/models/scaled/calibration/slope": 0.05},
                                      r"segments.models.scaled: calibration.slope is 0.05; it must be negative"),
    "segment with negative churned accounts": ("segmented", {"segments/models/scaled/churned_companies": -3},
                                               r"segments.models.scaled.churned_companies is -3; .* >= 0"),
    "segment with a misspelt signal": ("segmented", {"segments/models/high_touch/signals/core_depth/name": "core"},
                                       r"segments.models.high_touch: signal 'core' is not among the model's columns"),
}


def _child(node: Any, key: str) -> Any:
    if isinstance(node, list):
        return node[int(key)] if key.isdigit() else next(item for item in node if item["name"] == key)
    return node[key]


def _hand_edited(content: dict[str, Any], edits: dict[str, Any]) -> dict[str, Any]:
    content = copy.deepcopy(content)
    for path, value in edits.items():
        *parents, last = path.split("/")
        node = content
        for key in parents:
            node = _child(node, key)
        index = int(last) if isinstance(node, list) else last
        if value is DROP:
            del node[index]
        else:
            node[index] = value
    return content


@pytest.mark.parametrize("case", list(HAND_EDITS))
def test_hand_edited_model_file_is_checked_and_refused_in_one_line(saved_contents, tmp_path, case):
    source, edits, message = HAND_EDITS[case]
    path = tmp_path / "edited.yml"
    path.write_text(yaml.safe_dump(_hand_edited(saved_contents[source], edits), sort_keys=False))
    with pytest.raises(InputError, match=message) as caught:
        load_model(path)
    assert str(caught.value).startswith(f"model file {path}: ") and "\n" not in str(caught.value)


def test_cli_fit_writes_model_and_summary(small_demo, tmp_path, capsys):
    from hsutils.cli import main

    out = tmp_path / "models" / "health.yml"
    assert main(["fit", str(small_demo), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "points per signal" in printed and "held-out comparison" in printed and "logistic" in printed
    model = load_model(out)
    content = yaml.safe_load(out.read_text())
    assert content["training"]["rows"] > 0 and content["training"]["cutoff"]
    assert {row["model"] for row in content["metrics"]["held_out"]} >= {"fitted", "seed", "40-30-30", "logistic"}
    assert sum(model.points_.values()) == pytest.approx(100.0)
    assert model.points_.get("days_to_renewal", 0.0) == 0.0
    assert main(["fit", str(small_demo), "--out", str(tmp_path / "model.txt")]) == 2


def test_cli_fit_marks_a_held_out_auc_that_cannot_be_relied_on(small_demo, tmp_path, capsys):
    """The fit's comparison flags a row whose AUC is not stable (here the 40-30-30 preset's 95% interval is
    wider than 0.2) by the comparison's own rule, and prints that row's warning as a `caution:` line, as
    `hsutils evaluate` does; a stable row is not flagged."""
    from hsutils.cli import main
    from hsutils.evaluate import auc_unstable, churn_evidence

    out = tmp_path / "flagged.yml"
    assert main(["fit", str(small_demo), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    overall = {row["model"]: row for row in yaml.safe_load(out.read_text())["metrics"]["held_out"]
               if row["segment"] == "all"}
    unstable = {name for name, row in overall.items()
                if auc_unstable(churn_evidence(row), [row["auc_low"], row["auc_high"]])}
    assert "40-30-30" in unstable and "fitted" not in unstable
    for name in overall:
        row_line = next(line for line in printed if line.startswith(f"  {name} ") and " AUC " in line)
        assert row_line.endswith("(not stable)") == (name in unstable), row_line
    cautions = [line for line in printed if line.startswith("caution: ")]
    assert cautions == [f"caution: {name}: {overall[name]['warning']}" for name in overall if name in unstable]
    assert "AUC not stable" in overall["40-30-30"]["warning"]


def test_cli_fit_on_a_few_signals_is_still_compared_with_the_presets(small_demo, tmp_path):
    from hsutils.cli import main

    out = tmp_path / "few.yml"
    assert main(["fit", str(small_demo), "--out", str(out), "--signals", "core_depth,eb_engagement"]) == 0
    assert set(load_model(out).points_) == {"core_depth", "eb_engagement"}
    content = yaml.safe_load(out.read_text())
    assert {row["model"] for row in content["metrics"]["held_out"]} >= {"fitted", "seed", "40-30-30"}


def test_cli_fit_refuses_a_horizon_shorter_than_the_week_between_as_of_dates(small_demo, tmp_path, capsys):
    """With weekly as-of dates, a 1-day horizon labels only renewals ending the day after an as-of date (about 1
    in 7): the fit rested on a handful of churns and handed noise points (latest_nps, for being missing). It is a
    one-line error (exit 2) and no model is written."""
    from hsutils.cli import main

    out = tmp_path / "short.yml"
    assert main(["fit", str(small_demo), "--horizon-days", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "horizon 1 day(s) is shorter than the 7 days between as-of dates" in err and "at least 7" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and not out.exists()


def test_fit_console_lines_up_long_model_names():
    from hsutils.model import _summary_lines

    X, y = _table(n=600)
    model = HealthScore().fit(X, y)
    table = pd.DataFrame({"model": ["fitted", "fitted_by_segment"], "segment": ["all", "all"], "churns": [400, 400],
                          "churned_companies": [60, 60], "auc": [0.81, 0.8], "auc_low": [0.78, 0.77],
                          "auc_high": [0.84, 0.83], "warning": ["", ""]})
    rows = [line for line in _summary_lines(model, table, "m.yml", "v1") if " AUC " in line]
    assert [line.index(" AUC ") for line in rows] == [len("  fitted_by_segment")] * 2
