"""HealthScore, presets, baselines and segmented models on synthetic account tables."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.special import expit
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from hsutils.baselines import cross_validated_auc
from hsutils.errors import InputError
from hsutils.model import (
    MISSING_ONLY,
    BoostingReference,
    HealthScore,
    LogisticBaseline,
    SegmentedHealthScore,
    SignalTransform,
    _blend_transforms,
    coefficient_table,
    fit_signal_transform,
    preset,
)


def synthetic_table(kind: str, n: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A numeric account table and churn outcomes (1 = churned) of a known shape."""
    rng = np.random.default_rng(seed)
    if kind == "linear":
        X = rng.normal(size=(n, 5))
        eta = -1.5 + X @ np.array([1.0, -0.8, 0.5, 0.3, -0.2])
    elif kind == "u_shape":
        X = rng.normal(size=(n, 3))
        eta = -2.0 + 1.2 * X[:, 0] ** 2 - 0.7 * X[:, 1] + 0.4 * X[:, 2]
    elif kind == "noise":
        X = rng.normal(size=(n, 10))
        eta = -1.5 + 0.9 * X[:, 0] - 0.6 * X[:, 1]
    elif kind == "missing":
        X = rng.normal(size=(n, 4))
        eta = -1.5 + X @ np.array([0.9, -0.7, 0.5, 0.0])
        X[rng.random(n) < 0.25, 0] = np.nan
        X[rng.random(n) < 0.15, 2] = np.nan
        X[rng.random(n) < expit(-2 + 1.5 * (eta > -1)), 3] = np.nan  # missingness itself predicts churn
    elif kind == "skewed":
        Z = rng.normal(size=(n, 4))
        eta = -1.5 + Z @ np.array([0.9, -0.7, 0.5, 0.3])
        X = np.exp(1.5 * Z)
    elif kind == "counts":
        X = rng.poisson(rng.gamma(1.0, 3.0, size=(n, 3))).astype(float)
        X = np.column_stack([X, rng.integers(0, 2, size=n)])
        eta = -1.0 - 0.25 * X[:, 0] + 0.15 * X[:, 1] + 0.8 * X[:, 3]
    else:
        raise ValueError(kind)
    y = (rng.random(n) < expit(eta)).astype(int)
    return pd.DataFrame(X, columns=[f"s{i}" for i in range(X.shape[1])]), y


# ---- scikit-learn conformance ---------------------------------------------------------------------------------
# All scikit-learn estimator checks pass for the three estimators (none is expected to fail).
@parametrize_with_checks([HealthScore(), LogisticBaseline(), BoostingReference(max_iter=20)])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check(estimator)


def test_get_set_params_and_clone():
    model = HealthScore(max_bins=12, healthy=75.0)
    copy = clone(model).set_params(at_risk=50.0)
    assert copy.get_params()["max_bins"] == 12
    assert copy.get_params()["at_risk"] == 50.0 and model.at_risk == 55.0


# ---- accuracy against logistic regression -----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["linear", "u_shape", "noise", "missing", "skewed", "counts"])
def test_cross_validated_auc_within_a_hundredth_of_logistic(kind):
    X, y = synthetic_table(kind)
    fitted = cross_validated_auc(HealthScore(), X, y)
    logistic = cross_validated_auc(LogisticBaseline(), X, y)
    assert fitted >= logistic - 0.01, (kind, fitted, logistic)


def test_u_shaped_signal_gets_learned_order_and_beats_logistic():
    X, y = synthetic_table("u_shape")
    model = HealthScore().fit(X, y)
    transform = model.transforms_["s0"]
    assert transform.shape == "learned order"
    middle, tails = transform.apply(np.array([0.0])), transform.apply(np.array([-2.5, 2.5]))
    assert middle[0] > tails.max()  # the middle of a U is the healthy place
    assert cross_validated_auc(HealthScore(), X, y) > cross_validated_auc(LogisticBaseline(), X, y) + 0.05


def test_directions_are_learned():
    X, y = synthetic_table("linear")
    model = HealthScore().fit(X, y)
    assert model.transforms_["s0"].shape == "decreasing"  # higher s0 raises churn
    assert model.transforms_["s1"].shape == "increasing"


def test_noise_columns_earn_few_points():
    X, y = synthetic_table("noise", n=3000)
    points = HealthScore().fit(X, y).points_
    assert points["s0"] + points["s1"] > 80
    assert max(points[f"s{i}"] for i in range(2, 10)) < 8


# ---- points, scores, bands --------------------------------------------------------------------------------------
def test_points_non_negative_and_sum_to_100():
    X, y = synthetic_table("missing")
    model = HealthScore().fit(X, y)
    assert set(model.points_) == set(X.columns)
    assert all(p >= 0 for p in model.points_.values())
    assert sum(model.points_.values()) == pytest.approx(100.0, abs=1e-9)


def test_health_score_range_probability_and_bands():
    X, y = synthetic_table("linear")
    model = HealthScore(calibrate_modifiers=False).fit(X, y)
    scores = model.health_score(X)
    assert scores.min() >= 0 and scores.max() <= 100
    assert scores[y == 1].mean() < scores[y == 0].mean()
    churn = model.predict_proba(X)[:, 1]
    order = np.argsort(scores)
    assert np.all(np.diff(churn[order]) <= 1e-12)  # monotone decreasing in the score
    assert abs(churn.mean() - y.mean()) < 0.02  # calibrated in the large
    bands = model.band(X)
    assert set(bands) <= {"Healthy", "Neutral", "At risk"}
    assert np.all(bands[scores >= 70] == "Healthy") and np.all(bands[scores < 55] == "At risk")
    strict = clone(model).set_params(healthy=90.0).fit(X, y)
    assert (strict.band(X) == "Healthy").sum() < (bands == "Healthy").sum()


def test_healthy_majority_scores_high_and_churners_low():
    """With ~8% churn, retained accounts keep most of their points and most churners fall below them."""
    rng = np.random.default_rng(11)
    n = 6000
    usage = rng.gamma(3.0, 1.0, n)  # skewed: a long healthy tail, a few near-zero accounts
    sponsor_gap = rng.exponential(30.0, n)  # days since the sponsor was last reached
    complaints = rng.poisson(0.5, n).astype(float)
    seats = np.clip(rng.beta(5, 2, n) * 1.1, 0, 1.2)
    eta = -3.2 - 0.6 * (usage - 3) + 0.02 * (sponsor_gap - 30) + 0.5 * complaints - 2.0 * (seats - 0.7)
    X = pd.DataFrame({"usage": usage, "sponsor_gap": sponsor_gap, "complaints": complaints, "seats": seats})
    y = (rng.random(n) < expit(eta)).astype(int)
    assert 0.05 < y.mean() < 0.12
    train, test = np.arange(n) < n // 2, np.arange(n) >= n // 2
    model = HealthScore().fit(X[train], y[train])
    scores = model.health_score(X[test])
    churned = y[test] == 1
    retained_median = np.median(scores[~churned])
    assert retained_median >= 65
    assert np.mean(scores[churned] < retained_median) > 0.75
    assert np.median(scores[churned]) <= retained_median - 10
    bands = model.band(X[test])
    assert 0.05 < np.mean(bands == "At risk") < 0.3  # a minority, but not nobody
    assert np.mean(bands == "Healthy") > 0.4
    assert np.mean(scores >= 85) > 0.03  # the best accounts reach the top of the scale


def test_component_points_add_up_to_the_score():
    X, y = synthetic_table("linear")
    model = HealthScore().fit(X, y)
    parts = model.component_points(X)
    np.testing.assert_allclose(parts.sum(axis=1).to_numpy(), model.health_score(X), atol=1e-9)


def test_deterministic():
    X, y = synthetic_table("missing")
    first, second = HealthScore().fit(X, y), HealthScore().fit(X, y)
    assert first.points_ == second.points_
    np.testing.assert_array_equal(first.health_score(X), second.health_score(X))
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))


def test_numpy_input_and_column_order():
    X, y = synthetic_table("linear", n=600)
    from_array = HealthScore().fit(X.to_numpy(), y)
    assert list(from_array.points_) == [f"x{i}" for i in range(5)]
    model = HealthScore().fit(X, y)
    np.testing.assert_allclose(model.health_score(X[X.columns[::-1]]), model.health_score(X))


def test_columns_are_read_by_text_name_or_by_the_default_positions_only():
    """Points are kept per column name: a frame made from an array (labels 0..n-1) is read by position like the
    array, but other names that are not text, and duplicate names, are one-line errors (a reordered unnamed frame
    used to score differently without a word; mixed names gave a scikit-learn TypeError)."""
    X, y = synthetic_table("linear", n=600)
    unnamed = pd.DataFrame(X.to_numpy())
    model = HealthScore().fit(unnamed, y)
    assert list(model.points_) == [f"x{i}" for i in range(5)]
    np.testing.assert_allclose(model.health_score(unnamed), model.health_score(X.to_numpy()))
    with pytest.raises(InputError, match="column names must be text, not 4, 3, 2"):
        model.health_score(unnamed[unnamed.columns[::-1]])
    with pytest.raises(InputError, match="column names must be text, not 1, 3"):
        HealthScore().fit(X.set_axis(["s0", 1, "s2", 3, "s4"], axis=1), y)
    with pytest.raises(InputError, match="duplicate column name.* s0: give each"):
        HealthScore().fit(X.set_axis(["s0", "s0", "s2", "s3", "s4"], axis=1), y)
    with pytest.raises(InputError, match="duplicate column name.* s0: give each"):
        HealthScore().fit(X, y).health_score(X[["s0", *X.columns]])
    segments, y_segments = _segmented_table()
    with pytest.raises(InputError, match="duplicate column name.* arr_segment"):
        SegmentedHealthScore().fit(segments.assign(s2=segments.arr_segment).rename(columns={"s2": "arr_segment"}),
                                   y_segments)
    with pytest.raises(InputError, match="column names must be text, not 0, 1, 2"):
        SegmentedHealthScore().fit(segments.set_axis([0, 1, 2, "arr_segment"], axis=1), y_segments)


# ---- missing values ---------------------------------------------------------------------------------------------
def test_missing_values_get_a_learned_goodness():
    X, y = synthetic_table("missing", n=3000)
    model = HealthScore().fit(X, y)
    # s3 carries no value signal, but its missingness marks risky accounts
    missing_rows = X["s3"].isna()
    assert y[missing_rows].mean() > y[~missing_rows].mean()
    transform = model.transforms_["s3"]
    assert transform.missing_goodness < transform.apply(X.loc[~missing_rows, "s3"].to_numpy()).mean()
    assert np.isfinite(model.health_score(X)).all()


def test_missing_at_predict_time_without_missing_in_training():
    X, y = synthetic_table("linear", n=800)
    model = HealthScore().fit(X, y)
    row = X.iloc[:1].copy()
    row.iloc[0, 0] = np.nan
    assert 0 <= model.health_score(row)[0] <= 100


# ---- bad input --------------------------------------------------------------------------------------------------
def test_one_class_is_a_clear_error():
    X, _ = synthetic_table("linear", n=200)
    with pytest.raises(InputError, match="only one class"):
        HealthScore().fit(X, np.zeros(200))


@pytest.mark.parametrize(("retained", "churned"), [("retained", "churned"), ("Renewed", "Churned"),
                                                   ("Not churned", "Churned"), ("won", "closed lost")])
def test_text_labels_that_would_turn_churn_into_health_are_refused(retained, churned):
    """The larger label is churn (column 1 of predict_proba): labels whose smaller one says churned would score
    churned accounts as healthy, so they are refused, naming the label to compare y with."""
    X, y = synthetic_table("linear", n=300)
    with pytest.raises(InputError, match=f"^y: labels '{churned}' and '{retained}': the larger one, '{retained}', "
                                         f"would be taken as churn .*pass y == '{churned}' \\(1 = churned\\)$"):
        HealthScore().fit(X, np.where(y == 1, churned, retained))
    model = HealthScore().fit(X, np.where(y == 1, churned, retained) == churned)
    assert roc_auc_score(y, model.predict_proba(X)[:, 1]) > 0.7


@pytest.mark.parametrize(("retained", "churned"), [("no", "yes"), ("active", "cancelled"), ("0", "1")])
def test_text_labels_whose_larger_one_is_churn_are_read_as_given(retained, churned):
    X, y = synthetic_table("linear", n=300)
    model = HealthScore().fit(X, np.where(y == 1, churned, retained))
    assert list(model.classes_) == [retained, churned] and roc_auc_score(y, model.predict_proba(X)[:, 1]) > 0.7


def test_too_few_rows_is_a_clear_error():
    X, y = synthetic_table("linear", n=200)
    with pytest.raises(InputError, match="too few rows"):
        HealthScore().fit(X.iloc[:5], np.array([0, 1, 0, 1, 0]))


def test_non_numeric_column_named_in_error():
    X, y = synthetic_table("linear", n=200)
    X["plan"] = "gold"
    with pytest.raises(InputError, match="plan.*not numeric"):
        HealthScore().fit(X, y)


def test_a_column_without_values_earns_no_points_and_all_empty_is_an_error():
    """A signal the portal does not record (no NPS surveys, no emails) is all missing: the score is fitted on the
    other columns, with a warning naming it; a table whose every column is empty is refused."""
    X, y = synthetic_table("linear", n=400)
    X["s4"] = np.nan
    with pytest.warns(UserWarning, match="column s4 has no values .* the score rests on the other columns"):
        model = HealthScore().fit(X, y)
    assert model.points_["s4"] == 0.0 and sum(model.points_.values()) == pytest.approx(100.0)
    scores = model.health_score(X)
    assert np.isfinite(scores).all() and np.allclose(scores, model.health_score(X.assign(s4=1.0)))
    with pytest.warns(UserWarning, match="column s4 has no values .* the score rests on the other columns"):
        fixed = HealthScore(fixed_points={"s0": 30, "s1": 30, "s4": 40}).fit(X, y)
    assert fixed.points_["s4"] == 0.0 and fixed.points_["s0"] == pytest.approx(50.0)
    with pytest.raises(InputError, match="s0.*all missing"):
        HealthScore().fit(X.assign(**{c: np.nan for c in X.columns}), y)


def test_references_and_segments_fit_with_a_column_without_values():
    X, y = synthetic_table("linear", n=600)
    X["s4"] = np.nan
    for reference in (LogisticBaseline(), BoostingReference()):
        probabilities = reference.fit(X, y).predict_proba(X)[:, 1]
        assert np.isfinite(probabilities).all() and roc_auc_score(y, probabilities) > 0.7
    segments, _ = _segmented_table()
    segmented = segments.assign(s2=np.where(segments.arr_segment == "high_touch", np.nan, segments.s2))
    _, y_segments = _segmented_table()
    with warnings.catch_warnings():  # s2 has values in the scaled segment only
        warnings.simplefilter("ignore")
        model = SegmentedHealthScore(shrinkage=5).fit(segmented, y_segments)
    assert np.isfinite(model.health_score(segmented)).all()


def test_mismatched_columns_at_predict_time():
    X, y = synthetic_table("linear", n=300)
    model = HealthScore().fit(X, y)
    with pytest.raises(InputError, match="missing: s4"):
        model.health_score(X.drop(columns=["s4"]))
    with pytest.raises(InputError, match=r"^X: column\(s\) s0 hold infinite values \(1 rows, .*rows: \{s0=inf\}\)"):
        model.health_score(X.replace({X.iloc[0, 0]: np.inf}))
    with pytest.raises(InputError, match=r"^X: column\(s\) s1, s3 hold infinite values \(2 rows"):
        HealthScore().fit(X.assign(s1=np.where(X.index == 4, -np.inf, X.s1), s3=np.where(X.index == 7, np.inf, X.s3)), y)


def test_error_messages_are_one_line():
    X, y = synthetic_table("linear", n=300)
    model = HealthScore().fit(X, y)
    with pytest.raises(InputError) as caught:
        model.health_score(X.rename(columns={"s0": "other"}))
    assert "\n" not in str(caught.value)


# ---- modifiers and presets ---------------------------------------------------------------------------------------
def _with_renewal(X: pd.DataFrame, y: np.ndarray, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = rng.uniform(0, 120, size=len(X))
    return X.assign(days_to_renewal=days)


def test_days_to_renewal_is_a_modifier_not_a_point_source():
    X, y = synthetic_table("linear")
    X = _with_renewal(X, y)
    model = HealthScore().fit(X, y)
    assert model.points_["days_to_renewal"] == 0.0
    assert "days_to_renewal" in model.modifiers_ and "days_to_renewal" not in model.point_sources_
    assert sum(model.points_.values()) == pytest.approx(100.0)


def test_modifier_moves_probability_when_it_predicts_churn():
    X, y = synthetic_table("linear", n=3000)
    rng = np.random.default_rng(5)
    near = rng.random(len(y)) < 0.5
    y = np.where(near & (rng.random(len(y)) < 0.3), 1, y)  # renewals near: more churn at any score
    X = X.assign(days_to_renewal=np.where(near, 15.0, 80.0))
    model = HealthScore().fit(X, y)
    assert model.calibration_["modifiers"]["days_to_renewal"] < 0
    same_score = X.iloc[[0, 0]].copy()
    same_score["days_to_renewal"] = [15.0, 80.0]
    scores = model.health_score(same_score)
    churn = model.predict_proba(same_score)[:, 1]
    assert scores[0] == scores[1] and churn[0] > churn[1]


def test_seed_preset_points_fixed_and_urgency_modifier():
    rng = np.random.default_rng(3)
    n = 1500
    X = pd.DataFrame(
        {
            "core_depth": rng.gamma(2.0, 5.0, n),
            "eb_engagement": rng.poisson(2.0, n).astype(float),
            "support_negative_trend": rng.normal(0, 0.3, n),
            "seat_utilisation": rng.uniform(0, 1.2, n),
            "days_to_renewal": rng.uniform(0, 200, n),
            "logins_28d": rng.poisson(30, n).astype(float),
        }
    )
    eta = -1 - 0.08 * X["core_depth"] - 0.3 * X["eb_engagement"] + 1.0 * X["support_negative_trend"]
    y = (rng.random(n) < expit(eta - 1.5 * X["seat_utilisation"] + 1)).astype(int)
    model = preset("seed").fit(X, y)
    expected = {"core_depth": 33.33, "eb_engagement": 27.78, "support_negative_trend": 22.22,
                "seat_utilisation": 16.67}
    for column, points in expected.items():
        assert model.points_[column] == pytest.approx(points, abs=0.011)
    assert model.points_["logins_28d"] == 0.0 and model.points_["days_to_renewal"] == 0.0
    assert sum(model.points_.values()) == pytest.approx(100.0)
    # urgency: the same account reads further from the middle of the Neutral band when its renewal is near
    pivot = (model.healthy + model.at_risk) / 2
    far_scores = model.health_score(X.assign(days_to_renewal=150.0))
    for offset in (-15.0, 15.0):  # an account below and one above the pivot, neither clipped at 0 or 100
        row = int(np.argmin(np.abs(far_scores - (pivot + offset))))
        account = X.iloc[[row, row]].copy()
        account["days_to_renewal"] = [10.0, 150.0]
        near, far = model.health_score(account)
        assert np.sign(near - pivot) == np.sign(far - pivot) == np.sign(offset)
        assert abs(near - pivot) == pytest.approx(abs(far - pivot) * (1 + 0.5 * 80 / 90))
    # a different training sample learns other transforms but the same points
    other = preset("seed").fit(X.iloc[:800], y[:800])
    assert other.points_ == model.points_


def test_preset_40_30_30_and_errors():
    model = preset("40-30-30")
    assert model.fixed_points == {"logins_28d": 40, "ticket_volume_90d": 30, "email_open_rate": 15, "latest_nps": 15}
    assert not hasattr(model, "points_")
    with pytest.raises(InputError, match="unknown preset"):
        preset("gut-feeling")
    X, y = synthetic_table("linear", n=300)
    with pytest.raises(InputError, match="logins_28d"):
        model.fit(X, y)


# ---- transforms -------------------------------------------------------------------------------------------------
def test_transform_handles_ties_and_constant_columns():
    rng = np.random.default_rng(0)
    values = np.where(rng.random(2000) < 0.7, 0.0, rng.integers(1, 5, 2000)).astype(float)
    churned = (rng.random(2000) < np.where(values == 0, 0.3, 0.1)).astype(float)
    transform = fit_signal_transform(values, churned)
    assert transform.apply(np.array([0.0]))[0] < transform.apply(np.array([3.0]))[0]
    flat = fit_signal_transform(np.ones(500), (rng.random(500) < 0.2).astype(float))
    # no level is riskier than another: no point is lost on it
    assert flat.shape == "flat" and np.all(flat.apply(np.array([0.0, 1.0, 9.0, np.nan])) == 1)


def test_transform_that_scores_only_missingness_says_so():
    """Present values that say nothing (one value), missing values that mark churn (an unanswered survey): the
    transform's shape reads "missing only", not "flat", as its points come from missingness alone."""
    rng = np.random.default_rng(3)
    missing = rng.random(3000) < 0.4
    values = np.where(missing, np.nan, 5.0)
    churned = (rng.random(3000) < np.where(missing, 0.3, 0.05)).astype(float)
    transform = fit_signal_transform(values, churned)
    present = transform.apply(np.array([-2.0, 0.0, 2.0]))
    assert np.all(present == present[0]) and transform.apply(np.array([np.nan]))[0] < present[0]
    assert transform.shape == "missing only"


# ---- baselines --------------------------------------------------------------------------------------------------
def test_coefficient_table_and_baselines():
    X, y = synthetic_table("missing", n=1500)
    table = coefficient_table(X, y)
    assert {"term", "coef", "std_err", "ci_low", "ci_high", "p_value", "odds_ratio"} <= set(table.columns)
    row = table.set_index("term").loc["s0"]
    assert row["coef"] > 0 and row["p_value"] < 0.001 and row["ci_low"] < row["coef"] < row["ci_high"]
    assert "s3_missing" in set(table["term"])
    for model in (LogisticBaseline(), BoostingReference(max_iter=30)):
        proba = model.fit(X, y).predict_proba(X)
        assert proba.shape == (len(X), 2) and np.allclose(proba.sum(axis=1), 1)


# ---- segments ---------------------------------------------------------------------------------------------------
def _segmented_table(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_big, n_small = 4000, 200
    X = rng.normal(size=(n_big + n_small, 3))
    segment = np.array(["scaled"] * n_big + ["high_touch"] * n_small, dtype=object)
    # scaled accounts churn on s0, high-touch accounts on s1
    eta = np.where(segment == "scaled", -1.5 + 1.2 * X[:, 0], -2.5 - 1.2 * X[:, 1])
    y = (rng.random(len(eta)) < expit(eta)).astype(int)
    frame = pd.DataFrame(X, columns=["s0", "s1", "s2"]).assign(arr_segment=segment)
    return frame, y


def test_segmented_model_shrinks_small_segments_toward_global():
    X, y = _segmented_table()
    with pytest.warns(UserWarning, match="high_touch"):
        model = SegmentedHealthScore(shrinkage=50).fit(X, y)
    churns = model.segment_churns_
    assert churns["scaled"] > churns["high_touch"]
    assert model.segment_weights_["high_touch"] == pytest.approx(churns["high_touch"] / (churns["high_touch"] + 50))
    assert model.segment_weights_["scaled"] > model.segment_weights_["high_touch"]
    glob = model.global_model_.points_
    high_touch = model.segment_points_["high_touch"]
    with pytest.warns(UserWarning, match="churned rows in training for 3 signals"):  # the segment's own fit
        own = HealthScore().fit(X[X.arr_segment == "high_touch"].drop(columns="arr_segment"), y[X.arr_segment == "high_touch"])
    w = model.segment_weights_["high_touch"]
    for column in ("s0", "s1"):
        assert high_touch[column] == pytest.approx(w * own.points_[column] + (1 - w) * glob[column], abs=0.02)
    assert sum(high_touch.values()) == pytest.approx(100.0)
    # stronger shrinkage pulls the segment's points closer to the global ones
    strong = SegmentedHealthScore(shrinkage=5000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strong.fit(X, y)
    gap = lambda pts: abs(pts["s1"] - glob["s1"])  # noqa: E731
    assert gap(strong.segment_points_["high_touch"]) < gap(high_touch)


def test_segment_weight_counts_churned_accounts_not_weekly_rows():
    """On a weekly panel one churned account labels about 13 rows (90-day horizon): given the company ids as
    groups, a segment's weight and warning count churned accounts, so 13 weekly copies of each account's row give
    the weights of one row per account; without groups every row counts as an account."""
    from hsutils.evaluate import MIN_TEST_CHURNS_FOR_AUC

    X, y = _segmented_table()
    weekly, y_weekly, companies = X.loc[X.index.repeat(13)], np.repeat(y, 13), np.repeat(np.arange(len(y)), 13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        per_account = SegmentedHealthScore().fit(X, y)
    with pytest.warns(UserWarning, match=r"high_touch: \d+ churned accounts for 3 signals .* its model is \d+% its own"):
        model = SegmentedHealthScore().fit(weekly, y_weekly, groups=companies)
    assert SegmentedHealthScore().shrinkage == MIN_TEST_CHURNS_FOR_AUC
    accounts = per_account.segment_churns_
    assert model.segment_churned_companies_ == accounts and per_account.segment_churned_companies_ == {
        "high_touch": None, "scaled": None}
    assert model.segment_churns_ == {segment: 13 * n for segment, n in accounts.items()}
    assert model.segment_weights_ == pytest.approx(per_account.segment_weights_)
    assert model.segment_weights_["high_touch"] == pytest.approx(accounts["high_touch"] / (accounts["high_touch"] + 30))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_rows = SegmentedHealthScore().fit(weekly, y_weekly)
    rows = 13 * accounts["high_touch"]
    assert by_rows.segment_weights_["high_touch"] == pytest.approx(rows / (rows + 30))
    with pytest.raises(InputError, match="groups: 5 values for 4200 rows"):
        SegmentedHealthScore().fit(X, y, groups=companies[:5])


def test_segmented_scoring_uses_the_row_segment_and_global_for_unknown():
    X, y = _segmented_table()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = SegmentedHealthScore().fit(X, y)
    rows = X.iloc[[0, 0]].copy()
    rows["arr_segment"] = ["high_touch", "brand_new"]
    scores = model.health_score(rows)
    signals = rows.drop(columns="arr_segment")
    assert scores[0] == pytest.approx(model.segment_models_["high_touch"].health_score(signals.iloc[[0]])[0])
    assert scores[1] == pytest.approx(model.global_model_.health_score(signals.iloc[[1]])[0])
    assert model.predict_proba(rows).shape == (2, 2)
    assert list(model.band(rows)) == list(model.segment_models_["high_touch"].band(signals.iloc[[0]])) + list(
        model.global_model_.band(signals.iloc[[1]])
    )
    with pytest.raises(InputError, match="segment column"):
        model.health_score(signals)


# ---- blending a segment's transform with the global one ----------------------------------------------------------
TRANSFORM_KINDS = ("monotone steps", "learned order", "linear", "linear with jumps", "flat", "missing only")


def _random_transform(kind: str, rng: np.random.Generator) -> SignalTransform:
    """A transform of one kind the models produce ("linear with jumps": a blend of steps and linear), its edges on
    a half-unit grid so that two transforms often share some."""
    missing = float(rng.uniform())
    if kind in ("flat", "missing only"):
        level = float(rng.uniform())
        return SignalTransform("flat" if kind == "flat" else MISSING_ONLY, np.empty(0), np.array([level]),
                               level if kind == "flat" else missing)
    edges = np.sort(rng.choice(np.arange(-6, 7) / 2, size=int(rng.integers(1, 8)), replace=False))
    if kind == "monotone steps":
        return SignalTransform("increasing", edges, np.sort(rng.uniform(size=len(edges) + 1)), missing)
    if kind == "learned order":
        return SignalTransform("learned order", edges, rng.uniform(size=len(edges) + 1), missing)
    if kind == "linear":
        return SignalTransform("decreasing", edges, np.sort(rng.uniform(size=len(edges)))[::-1], missing, "linear")
    knots = np.repeat(edges, rng.integers(1, 3, size=len(edges)))
    return SignalTransform("blended", knots, rng.uniform(size=len(knots)), missing, "linear")


def _probe_values(*transforms: SignalTransform) -> np.ndarray:
    """Every knot and edge, the floats either side of it, a dense grid, values far beyond both ends and NaN."""
    knots = np.unique(np.concatenate([t.edges for t in transforms] + [np.empty(0)]))
    near = np.concatenate([knots, np.nextafter(knots, -np.inf), np.nextafter(knots, np.inf)])
    return np.concatenate([near, np.linspace(-4, 4, 1601), [-1e9, 1e9, -np.inf, np.inf, np.nan]])


@pytest.mark.parametrize("kind_a", TRANSFORM_KINDS)
@pytest.mark.parametrize("kind_b", TRANSFORM_KINDS)
def test_blended_transform_is_the_weighted_sum_of_its_parts_at_every_value(kind_a, kind_b):
    """A segment's transform blended with the global one has goodness w * segment + (1 - w) * global at every
    value (between, at and beyond the knots and step edges, and for a missing value); two step functions blend to
    steps, anything with a linear part to a linear transform; weight 0 is the global transform and 1 the
    segment's, exactly; the blend survives the model file (YAML) unchanged."""
    rng = np.random.default_rng([TRANSFORM_KINDS.index(kind_a), TRANSFORM_KINDS.index(kind_b)])
    for _ in range(20):
        a, b = _random_transform(kind_a, rng), _random_transform(kind_b, rng)
        values = _probe_values(a, b)
        for weight in (0.0, 0.3, 1.0):
            blend = _blend_transforms(a, b, weight)
            expected = weight * a.apply(values) + (1 - weight) * b.apply(values)
            np.testing.assert_allclose(blend.apply(values), expected, rtol=0, atol=1e-12)
            assert blend.kind == ("steps" if a.kind == b.kind == "steps" else "linear") or weight in (0.0, 1.0)
            stored = SignalTransform.from_dict(yaml.safe_load(yaml.safe_dump(blend.to_dict())))
            np.testing.assert_array_equal(stored.apply(values), blend.apply(values))
        np.testing.assert_array_equal(_blend_transforms(a, b, 0.0).apply(values), b.apply(values))
        np.testing.assert_array_equal(_blend_transforms(a, b, 1.0).apply(values), a.apply(values))


def test_linear_transform_with_a_jump_takes_the_first_goodness_at_the_knot():
    jump = SignalTransform("blended", np.array([0.0, 1.0, 1.0, 2.0]), np.array([0.0, 0.5, 0.9, 1.0]), 0.2, "linear")
    np.testing.assert_allclose(jump.apply(np.array([-1.0, 0.5, 1.0, 1.5, 2.0, 3.0, np.nan])),
                               [0.0, 0.25, 0.5, 0.95, 1.0, 1.0, 0.2])
    np.testing.assert_allclose(jump.goodness_above(np.array([0.0, 1.0, 1.5])), [0.0, 0.9, 0.95])


def _mixed_shape_table(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Scaled accounts churn linearly on s0, high-touch ones on s0 squared: the global transform of s0 is
    linear, the high-touch one learned-order steps."""
    rng = np.random.default_rng(seed)
    n_big, n_small = 3000, 600
    X = rng.normal(size=(n_big + n_small, 2))
    segment = np.array(["scaled"] * n_big + ["high_touch"] * n_small, dtype=object)
    eta = np.where(segment == "scaled", -1.5 + X[:, 0] - 0.5 * X[:, 1], -3.0 + 1.5 * X[:, 0] ** 2 - 0.5 * X[:, 1])
    y = (rng.random(len(eta)) < expit(eta)).astype(int)
    return pd.DataFrame(X, columns=["s0", "s1"]).assign(arr_segment=segment), y


@pytest.fixture(scope="module")
def mixed_segments() -> tuple[pd.DataFrame, np.ndarray, SegmentedHealthScore]:
    X, y = _mixed_shape_table()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return X, y, SegmentedHealthScore().fit(X, y)


def test_segment_goodness_is_the_weighted_sum_of_its_own_and_the_global_goodness(mixed_segments):
    """Each segment model's goodness is w * (the segment's own fit) + (1 - w) * (the global fit) per signal, also
    where one is linear and the other steps; a segment whose own weight is near 0 scores like the global model,
    one with weight 1 like its own fit."""
    X, y, model = mixed_segments
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nearly_global = SegmentedHealthScore(shrinkage=1e12).fit(X, y)
        own_only = SegmentedHealthScore(shrinkage=0).fit(X, y)
    glob = model.global_model_
    grid = pd.DataFrame({c: np.concatenate([np.linspace(-4, 4, 2001), [np.nan]]) for c in ("s0", "s1")})
    kinds = set()
    for segment, weight in model.segment_weights_.items():
        mask = (X.arr_segment == segment).to_numpy()
        signals = X[mask].drop(columns="arr_segment")
        own = HealthScore().fit(signals, y[mask])
        blended = model.segment_models_[segment]
        np.testing.assert_allclose(blended.goodness(grid), weight * own.goodness(grid) + (1 - weight) * glob.goodness(grid),
                                   rtol=0, atol=1e-12)
        kinds |= {(own.transforms_[c].kind, glob.transforms_[c].kind) for c in ("s0", "s1")}
        np.testing.assert_allclose(nearly_global.health_score(X[mask]), glob.health_score(signals), rtol=0, atol=1e-6)
        np.testing.assert_array_equal(own_only.health_score(X[mask]), own.health_score(signals))
    assert ("steps", "linear") in kinds  # a step function blended with a linear one


def test_segmented_model_file_round_trip_keeps_blends_with_jumps(mixed_segments, tmp_path):
    """A segment's blend of a step function and a linear one (a linear transform listing a knot twice) is written
    to the model file and read back with identical scores."""
    from hsutils.model import load_model, save_model

    X, _, model = mixed_segments
    path = save_model(model, tmp_path / "segments.yml")
    transforms = [signal["transform"] for section in yaml.safe_load(path.read_text())["segments"]["models"].values()
                  for signal in section["signals"]]
    assert any(t["kind"] == "linear" and len(set(t["edges"])) < len(t["edges"]) for t in transforms)
    loaded = load_model(path)
    grid = X.assign(s0=np.linspace(-5, 5, len(X)))
    for rows in (X, grid):
        np.testing.assert_array_equal(loaded.health_score(rows), model.health_score(rows))
        np.testing.assert_array_equal(loaded.predict_proba(rows), model.predict_proba(rows))


@pytest.mark.parametrize(("churned", "says"), [(1, "only 1 churned row of 200"), (199, "only 1 retained row of 200")])
def test_a_fit_on_a_single_churned_or_retained_row_is_refused(churned, says):
    """One churned row (or one retained) gives points fitted on the very row they score: refused in one line,
    not a model that looks like any other."""
    X, _ = synthetic_table("linear", n=200)
    y = np.zeros(200)
    y[:churned] = 1
    with pytest.raises(InputError, match=f"{says}; fitting a churn model needs at least 2 churned and 2 retained rows"):
        HealthScore().fit(X, y)


def test_a_weekly_panel_counts_the_minimum_in_churned_accounts_and_warns_below_ten_per_signal():
    """Given company ids, one churned account labelling 13 weekly rows is still one: refused. A few churned accounts
    fit, with a one-line warning that they are too few for the signals (the comparison table's rule)."""
    X, _ = synthetic_table("linear", n=260)
    companies = np.repeat(np.arange(20), 13)
    one = (companies == 0).astype(int)
    with pytest.raises(InputError, match="only 1 churned account of 20; .* 2 churned and 2 retained accounts"):
        HealthScore().fit(X, one, groups=companies)
    three = (companies < 3).astype(int)
    with pytest.warns(UserWarning, match=r"^HealthScore: 3 churned accounts in training for 5 signals \(fewer than 10 "
                      r"per signal\): points fitted on so few may overfit$"):
        HealthScore().fit(X, three, groups=companies)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HealthScore(fixed_points={"s0": 50, "s1": 50}).fit(X, three, groups=companies)  # points not fitted: silent


def test_a_fit_on_outcomes_with_gaps_says_to_keep_the_rows_whose_outcome_is_known():
    """A weekly panel's outcome is empty where no renewal falls within the horizon: fitting on it as it is says so
    in one line, not scikit-learn's 'Input y contains NaN.'"""
    X, y = synthetic_table("linear", n=200)
    y = np.asarray(y, dtype=float)
    y[:30] = np.nan
    with pytest.raises(InputError, match=r"^y: 30 of 200 outcomes are missing; fit on the rows whose outcome is known"):
        HealthScore().fit(X, y)


def _weekly_panel(companies: int = 300, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A weekly panel sorted by company id: 6-20 weekly rows per company, about 45 churned companies whose last
    4 weeks are labelled churned; signals drift with each company's latent risk."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=companies)
    churned = rng.random(companies) < expit(-2.4 + 1.3 * risk)
    weeks = rng.integers(6, 21, size=companies)
    company = np.repeat(np.arange(companies), weeks)
    week = np.concatenate([np.arange(w) for w in weeks])
    last = np.repeat(weeks, weeks) - week <= 4
    y = (churned[company] & last).astype(int)
    n = len(company)
    X = pd.DataFrame({
        "usage": -risk[company] + rng.normal(scale=1.0, size=n),
        "tickets": rng.poisson(np.exp(0.4 * risk[company])).astype(float),
        "nps": np.where(rng.random(n) < 0.3, np.nan, -0.6 * risk[company] + rng.normal(size=n)),
        "noise": rng.normal(size=n),
    })
    return X, y, np.array([f"c{i:05d}" for i in company])


def test_fitted_points_do_not_depend_on_how_companies_are_named_or_ordered():
    """Renumbering the company ids (the panel then sorted by the new ids) draws the same cross-fitting folds, so
    the points and scores are the same: the folds depend on the data and random_state alone."""
    X, y, companies = _weekly_panel()
    reference = HealthScore().fit(X, y, groups=companies)
    names = np.unique(companies)
    for seed in range(3):
        renamed = dict(zip(names, np.random.default_rng(seed).permutation(len(names)).astype(str), strict=True))
        new_ids = np.array([renamed[c] for c in companies])
        order = np.argsort(new_ids, kind="stable")
        refit = HealthScore().fit(X.iloc[order].reset_index(drop=True), y[order], groups=new_ids[order])
        for column, points in reference.points_.items():
            assert refit.points_[column] == pytest.approx(points, abs=0.011), column
        np.testing.assert_allclose(refit.health_score(X), reference.health_score(X), rtol=0, atol=1e-9)


def _churned_companies_per_fold(folds, companies: np.ndarray, churned_rows: np.ndarray) -> list[int]:
    """How many companies with a churned row each fold holds out."""
    return [len(np.unique(companies[held][churned_rows[held]])) for _, held in folds]


def test_folds_with_groups_keep_companies_whole_and_share_out_the_churned_companies():
    """Each company's rows sit in one fold and every fold holds about the same number of churned companies (at most
    one apart), where folds balanced on rows alone would not; random_state draws the folds; there are no more
    folds than churned companies, and no warning."""
    from sklearn.model_selection import GroupKFold

    X, y, companies = _weekly_panel()
    matrix, churned = X.to_numpy(dtype=float), y == 1
    by_rows = _churned_companies_per_fold(GroupKFold(n_splits=5).split(matrix, y, companies), companies, churned)
    assert max(by_rows) - min(by_rows) >= 2  # the case the balance is for
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        folds = HealthScore()._crossfit_folds(matrix, y.astype(float), companies)
        other = HealthScore(random_state=1)._crossfit_folds(matrix, y.astype(float), companies)
        three = churned & np.isin(companies, np.unique(companies[churned])[:3])
        few = HealthScore()._crossfit_folds(matrix, three.astype(float), companies)
    counts = _churned_companies_per_fold(folds, companies, churned)
    assert len(folds) == 5 and sum(counts) == len(np.unique(companies[churned])) and max(counts) - min(counts) <= 1
    assert np.array_equal(np.sort(np.concatenate([held for _, held in folds])), np.arange(len(y)))
    for train, held in folds:
        assert len(train) + len(held) == len(y) and not set(companies[train]) & set(companies[held])
    assert any(not np.array_equal(a, b) for (_, a), (_, b) in zip(folds, other, strict=True))
    assert _churned_companies_per_fold(few, companies, three) == [1, 1, 1]
