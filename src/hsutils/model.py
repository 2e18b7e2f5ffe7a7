"""The health score: points per signal fitted on churn history, presets, segments and the model file.

How `HealthScore` turns a table of numeric signals into a 0..100 score
---------------------------------------------------------------------
1. **Goodness transform, per signal.** The signal's observed values are cut into quantile bins (at most
   `max_bins`, at least `min_bin_rows` rows each). Each bin's churn rate is shrunk toward the overall rate
   (`prior_strength` pseudo-rows). Candidate shapes of churn rate against the value: monotone steps (isotonic
   regression of the bin rates, in whichever direction fits better: this is how the direction is learned),
   "learned order" steps (each bin keeps its own shrunk rate, so a U-shaped signal is not forced into a bad
   monotone fit; `shape="monotone"` forbids it), and two smooth ones (churn log-odds linear in the value, or in
   its normal score). The candidate with the best penalised likelihood wins (`penalty`: BIC by default).
   **The goodness scale.** Goodness is measured on the churn-probability scale: a level's goodness is the share
   of the signal's excess churn risk (riskiest level minus healthiest level) that the level avoids,
   (p_risky - p) / (p_risky - p_healthy). The ends are set by the training rows, not by single extreme bins:
   goodness 0 = as risky as the riskiest 5% of rows (`RISKY_SHARE`), 1 = as healthy as the healthiest 10%
   (`HEALTHY_SHARE`), clipped beyond. An account thus loses points on a signal in proportion to the extra churn
   risk it shows there, and an account near the base churn rate keeps most of them: in a base with ~10% annual
   churn, most accounts score in the Healthy band, the clearly risky fall below 55 and the best reach 85+.
   (On the log-odds scale the small rates of the healthy majority sit as far apart as the rates of failing
   accounts, which leaves a typical account half-way between its signal's best and worst bin and squeezes the
   total score around 55.)
   The transform is a step function (bin edges, one goodness per bin) or piecewise linear through knots (a
   segment's blend of a step function and a linear one lists a knot twice where it jumps).
   A signal on which no level (missing included) is riskier than another is "flat": goodness 1 for every row.
   One whose present values all share a level while missing values sit at another is "missing only": what it
   tells about churn is whether it was recorded.
2. **Missing values** are a level of their own: rows where the signal is missing get a goodness learned from
   the (shrunk) churn rate of the training rows where it was missing, on the same scale, so that missingness is
   scored for what it says about churn. When no training row was missing, a missing value gets the goodness of
   the overall churn rate (a typical account's).
3. **Points.** A logistic regression of churn on the goodness values with non-negative weights (scipy L-BFGS-B
   with bounds, small L2 penalty `l2`) gives one weight per signal; points are the weights rescaled to sum to 100
   (rounded to 2 decimals). The weights are fitted on *cross-fitted* goodness (transforms learned on the other
   `cv` folds), so a signal whose transform only memorises noise earns few points. Given `groups` (company ids),
   each company's rows stay in one fold and the churned companies are shared out evenly (the folds' counts differ
   by at most one); the companies are taken in an order drawn by `random_state` from their rows, not their ids, so
   renaming or reordering companies leaves the points as they are. Presets fix the points instead
   (`fixed_points`).
4. **Score** = sum over signals of points x goodness, so 0..100 with higher = healthier. Columns named in
   `modifiers` (default: days_to_renewal) are never point sources. The column named by `urgency` (the seed preset
   uses days_to_renewal) scales the score's distance from the middle of the Neutral band,
   pivot = (`healthy` + `at_risk`) / 2, when a renewal is near:
   `score = pivot + (base - pivot) * (1 + urgency_gain * max(0, (urgency_days - days) / urgency_days))`,
   clipped to 0..100 (a missing `days` leaves the score unchanged). Near a renewal, healthy accounts read
   healthier and risky ones riskier; accounts at the same distance from renewal keep their order.
5. **Churn probability**: a logistic (Platt) or isotonic calibration of the cross-fitted training scores,
   monotone decreasing in the score. With logistic calibration (`calibrate_modifiers=True`), each modifier
   present in X also gets a learned goodness transform and a non-positive weight in the calibration:
   logit P(churn) = intercept + slope * score + sum(weight_m * goodness_m). Renewal proximity thus moves the
   churn probability of an account without earning it points; at a fixed modifier value the probability still
   falls as the score rises. **Bands**: Healthy >= `healthy` (70), At risk < `at_risk` (55), else Neutral.

Everything is deterministic for a given `random_state` (used only to draw the cross-fitting folds: another value
holds out other rows, which moves fitted points most when few accounts churned).

Presets (`preset("seed")`, `preset("40-30-30")`) are HealthScores with fixed points; fitting them learns only
the transforms and the calibration, on the training data given. `load_model("seed")` returns such an unfitted
preset: the `score` and `evaluate` commands fit it on the training part of the panel before scoring.
"""

from __future__ import annotations

import hashlib
import math
import sys
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy.optimize import minimize
from scipy.special import expit
from scipy.stats import norm
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.isotonic import IsotonicRegression, isotonic_regression
from sklearn.model_selection import StratifiedKFold
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from hsutils.baselines import BoostingReference, LogisticBaseline, coefficient_table
from hsutils.errors import InputError, counted, example_rows
from hsutils.evaluate import (
    MIN_CHURNS_PER_SIGNAL,
    MIN_TEST_CHURNS_FOR_AUC,
    churn_evidence,
    churned_companies,
    few_training_churns,
)
from hsutils.files import load_yaml_text, write_text_atomic, yes_no_setting

__all__ = [
    "BAND_AT_RISK",
    "BAND_HEALTHY",
    "BAND_NEUTRAL",
    "PRESETS",
    "BoostingReference",
    "HealthScore",
    "LogisticBaseline",
    "ModelInputError",
    "SegmentedHealthScore",
    "SignalTransform",
    "bands_for",
    "coefficient_table",
    "fit_signal_transform",
    "load_model",
    "model_to_dict",
    "preset",
    "save_model",
    "signals_with_presets",
]

BAND_HEALTHY, BAND_NEUTRAL, BAND_AT_RISK = "Healthy", "Neutral", "At risk"
MODEL_FILE_FORMAT = 2
_EPS = 1e-9
# the ends of each signal's goodness scale: 0 = as risky as the riskiest 5% of training rows, 1 = as healthy as
# the healthiest 10% (a healthy majority should keep most of its points; see the module docstring)
RISKY_SHARE = 0.05
HEALTHY_SHARE = 0.10
MISSING_ONLY = "missing only"  # the shape of a transform that scores only whether a value is missing
# the fewest churned (and retained) accounts a fit takes: with one, no cross-fitting fold can hold it out
MIN_ACCOUNTS_PER_CLASS = 2


class ModelInputError(InputError, ValueError):
    """Bad input to a model (one clear line; also a ValueError, as scikit-learn expects)."""


# --------------------------------------------------------------------------------------------------------------
# Per-signal goodness transforms
# --------------------------------------------------------------------------------------------------------------


@dataclass
class SignalTransform:
    """A learned map from a signal's value to goodness in 0..1 (1 = as healthy as the healthiest rows in training,
    0 = as risky as the riskiest; see the module docstring for the scale).

    kind "steps": bin k holds values v with edges[k-1] < v <= edges[k] (first bin: v <= edges[0]; last bin:
    v > edges[-1]) and `goodness[k]` is its goodness. kind "linear": goodness is interpolated linearly between
    `edges[i]` -> `goodness[i]` (the knots) and held flat beyond the first and last knot; a knot listed twice is a
    jump (as a segment's blend of a step and a linear transform has): its first goodness holds at the knot itself,
    like a step edge, and its second just above it.
    `missing_goodness` applies to missing values. `shape` says what was learned: "increasing" (higher is
    healthier), "decreasing" (higher is riskier), "learned order" (not monotone), "missing only" (only whether the
    value is missing tells), "flat" (no signal) or "blended" (a segment's blend of transforms of two shapes).
    """

    shape: str
    edges: np.ndarray
    goodness: np.ndarray
    missing_goodness: float
    kind: str = "steps"

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Goodness of each value (NaN = missing)."""
        values = np.asarray(values, dtype=float)
        if self.kind == "linear":
            present = _interpolate_with_jumps(values, self.edges, self.goodness)
        else:
            index = np.minimum(np.searchsorted(self.edges, values, side="left"), len(self.goodness) - 1)
            present = self.goodness[index]
        return np.where(np.isnan(values), self.missing_goodness, present)

    def goodness_above(self, values: np.ndarray) -> np.ndarray:
        """Goodness just above each (present) value: the limit from the right, which differs from `apply` only at
        a step edge or a jump."""
        values = np.asarray(values, dtype=float)
        if self.kind != "linear":
            return self.goodness[np.minimum(np.searchsorted(self.edges, values, side="right"), len(self.goodness) - 1)]
        last = np.searchsorted(self.edges, values, side="right") - 1  # the last knot at or below each value
        at_knot = (last >= 0) & (self.edges[np.maximum(last, 0)] == values)
        return np.where(at_knot, self.goodness[np.maximum(last, 0)], self.apply(values))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "shape": self.shape,
            "edges": [float(e) for e in self.edges],
            "goodness": [float(g) for g in self.goodness],
            "missing_goodness": float(self.missing_goodness),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SignalTransform:
        """The transform of a model file's `transform:` entry (ModelInputError naming the bad key)."""
        _check_transform(raw, "model file: transform")
        edges = np.asarray(raw.get("edges") or [], dtype=float)
        goodness = np.asarray(raw["goodness"], dtype=float)
        kind = str(raw.get("kind", "steps"))
        return cls(str(raw.get("shape", "")), edges, goodness, float(raw.get("missing_goodness", 0.0)), kind)


def _interpolate_with_jumps(values: np.ndarray, knots: np.ndarray, goodness: np.ndarray) -> np.ndarray:
    """np.interp through the knots, where a knot listed twice is a jump: each piece between jumps is interpolated
    on its own, and a value at a jump belongs to the piece below it (its first goodness)."""
    jumps = np.flatnonzero(np.diff(knots) == 0) + 1  # the second listing of each jump knot
    if not len(jumps):
        return np.interp(values, knots, goodness)
    bounds = np.concatenate([[0], jumps, [len(knots)]])
    piece = np.searchsorted(knots[jumps], values, side="left")
    present = np.empty(values.shape)
    for k, (start, end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        mask = piece == k
        present[mask] = np.interp(values[mask], knots[start:end], goodness[start:end])
    return present


def _binomial_loglik(levels: np.ndarray, churns: np.ndarray, counts: np.ndarray) -> float:
    levels = np.clip(levels, _EPS, 1 - _EPS)
    return float(np.sum(churns * np.log(levels) + (counts - churns) * np.log1p(-levels)))


def _distinct(levels: np.ndarray) -> int:
    return len(np.unique(np.round(levels, 12)))


def _quantiles(ordered: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Quantiles of sorted values at `levels` (inverted CDF: always observed values)."""
    index = np.clip(np.ceil(len(ordered) * np.asarray(levels) - 1e-9).astype(int) - 1, 0, len(ordered) - 1)
    return ordered[index]


def _goodness_scale(levels: np.ndarray, missing_level: float, has_missing: bool) -> tuple[np.ndarray, float]:
    """Goodness 0..1 of churn-rate levels and of the missing level, linear in the churn rate itself (not its
    log-odds): 1 at the lowest churn, 0 at the highest (before `_stretch_to_rows` moves both ends inside the
    training rows). A level's goodness is the share of the signal's excess churn risk that it avoids."""
    scaled = np.clip(np.asarray(levels, dtype=float), 0.0, 1.0)
    scaled_missing = float(np.clip(missing_level, 0.0, 1.0))
    span = np.append(scaled, scaled_missing) if has_missing else scaled
    low, high = float(span.min()), float(span.max())
    if high - low < 1e-12:
        return np.ones(len(scaled)), 1.0
    goodness = np.round((high - scaled) / (high - low), 4)
    return goodness, round(float(np.clip((high - scaled_missing) / (high - low), 0.0, 1.0)), 4)


def _stretch_to_rows(
    transform: SignalTransform, values: np.ndarray, risky_share: float, healthy_share: float
) -> SignalTransform:
    """Rescale a transform so that goodness 0 is the level of the riskiest `risky_share` of the training rows and
    1 the level of the healthiest `healthy_share` (clipped beyond): the ends of the scale are levels a group of
    accounts actually holds, not the single most extreme bin."""
    if transform.shape in ("flat", MISSING_ONLY) or risky_share + healthy_share <= 0:
        return transform
    rows = transform.apply(values)
    low, high = np.quantile(rows, [risky_share, 1.0 - healthy_share])
    if high - low < 1e-6:
        return transform
    goodness = np.round(np.clip((transform.goodness - low) / (high - low), 0.0, 1.0), 4)
    missing = round(float(np.clip((transform.missing_goodness - low) / (high - low), 0.0, 1.0)), 4)
    edges = transform.edges
    if transform.kind == "steps":  # merge neighbouring bins that clipping made equal
        keep = np.flatnonzero(np.diff(goodness) != 0)
        edges, goodness = edges[keep], np.append(goodness[keep], goodness[-1])
    return SignalTransform(transform.shape, edges, goodness, missing, transform.kind)


def fit_signal_transform(
    values: np.ndarray,
    churned: np.ndarray,
    *,
    max_bins: int = 20,
    min_bin_rows: int = 30,
    prior_strength: float = 10.0,
    shape: str = "auto",
    clip_share: float = 0.005,
    smooth: bool = True,
    penalty: str = "bic",
    risky_share: float = RISKY_SHARE,
    healthy_share: float = HEALTHY_SHARE,
) -> SignalTransform:
    """Learn one signal's goodness transform from its values (NaN = missing) and churn outcomes (1 = churned).

    Candidates, compared by Akaike's criterion (log-likelihood of the training rows minus degrees of freedom):
    "linear" (churn log-odds linear in the value, clipped to its `clip_share` and 1 - `clip_share` quantiles),
    "monotone" steps (isotonic regression of the quantile-bin churn rates, in the better direction) and, with
    shape="auto", "learned order" steps (each bin keeps its own churn rate, shrunk toward the overall rate).
    Goodness is linear in the churn rate; 0 and 1 are the levels of the riskiest `risky_share` and the healthiest
    `healthy_share` of the rows (missing values included).
    """
    if shape not in ("auto", "monotone"):
        raise ModelInputError(f"shape must be 'auto' or 'monotone', got {shape!r}")
    values = np.asarray(values, dtype=float)
    churned = np.asarray(churned, dtype=float)
    base = float(np.clip(churned.mean(), _EPS, 1 - _EPS))
    present = ~np.isnan(values)
    x, y = values[present], churned[present]
    n_missing = int((~present).sum())
    missing_rate = (churned[~present].sum() + prior_strength * base) / (n_missing + prior_strength)

    ordered = np.sort(x)
    n_bins = int(min(max_bins, max(1, len(x) // max(1, min_bin_rows))))
    edges = np.empty(0)
    if n_bins > 1:
        quantiles = _quantiles(ordered, np.linspace(0, 1, n_bins + 1)[1:-1])
        edges = np.unique(quantiles)
        edges = edges[edges < x.max()]
    index = np.searchsorted(edges, x, side="left")
    counts = np.bincount(index, minlength=len(edges) + 1).astype(float)
    churns = np.bincount(index, weights=y, minlength=len(edges) + 1)
    rates = (churns + prior_strength * base) / (counts + prior_strength)

    weight = counts + prior_strength
    rising = isotonic_regression(rates, sample_weight=weight, increasing=True)
    falling = isotonic_regression(rates, sample_weight=weight, increasing=False)
    fit_rising = _binomial_loglik(rising, churns, counts)
    fit_falling = _binomial_loglik(falling, churns, counts)
    monotone, fit_monotone = (rising, fit_rising) if fit_rising >= fit_falling else (falling, fit_falling)
    if penalty not in ("bic", "aic", "none"):
        raise ModelInputError(f"penalty must be 'bic', 'aic' or 'none', got {penalty!r}")
    per_df = {"aic": 1.0, "none": 0.0}.get(penalty, 0.5 * math.log(max(len(values), 2)))
    candidates: list[tuple[float, str]] = [(fit_monotone - per_df * _distinct(monotone), "monotone")]
    if shape == "auto" and len(rates) > 2:
        candidates.append((_binomial_loglik(rates, churns, counts) - per_df * _distinct(rates), "learned order"))
    # parametric candidates, piecewise linear through knots: churn log-odds linear in the value (knots at its
    # clip_share and 1 - clip_share quantiles: robust to outliers), or in its normal score (knots at quantiles;
    # rank-based, for skewed signals)
    linear_fits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if len(rates) > 2:
        levels_p = np.linspace(clip_share, 1 - clip_share, 41)
        quantile_x, first = np.unique(_quantiles(ordered, levels_p), return_index=True)
        ends = np.append(first[1:], len(levels_p))
        knot_p = np.array([levels_p[a:b].mean() for a, b in zip(first, ends, strict=True)])
        shapes = []
        if len(quantile_x) >= 2:
            shapes.append(("linear", quantile_x[[0, -1]], np.array([0.0, 1.0])))
            shapes.append(("normal score", quantile_x, norm.ppf(knot_p)))
        # rows grouped by value (exact), or by fine quantile bins on large tables (>= 20,000 rows) for speed
        if len(x) >= 20_000:
            fine_edges = np.unique(_quantiles(ordered, np.linspace(0, 1, 1001)[1:-1]))
            group = np.searchsorted(fine_edges, x, side="left")
        else:
            fine_edges, group = np.unique(x, return_inverse=True)
        group_rows = np.bincount(group).astype(float)
        occupied = group_rows > 0
        group_x = (np.bincount(group, weights=x) / np.maximum(group_rows, 1))[occupied]
        group_churns = np.bincount(group, weights=y)[occupied]
        group_rows = group_rows[occupied]
        for label, knots_x, knot_u in shapes:
            unit = np.interp(group_x, knots_x, knot_u)
            b0, slope = _fit_logistic_1d(unit, group_churns, group_rows)
            eta = b0 + slope * unit
            fit = float(np.sum(group_churns * eta - group_rows * np.logaddexp(0.0, eta)))
            if math.isfinite(fit):
                # knots at every clip quantile: the churn probability is not linear between two far knots
                dense_u = np.interp(quantile_x, knots_x, knot_u)
                linear_fits[label] = (quantile_x, expit(b0 + slope * dense_u))
                candidates.append((fit - 2.0 * per_df, label))
    chosen = max(candidates, key=lambda item: item[0])[1]

    transform = _shape_transform(chosen, linear_fits, edges, index, x, counts, monotone, rates, smooth,
                                 missing_rate, n_missing > 0)
    return _stretch_to_rows(transform, values, risky_share, healthy_share)


def _flat_label(present_goodness: float, missing_goodness: float) -> str:
    """The shape of a transform whose present values share one goodness: "flat" unless missing values differ."""
    return "flat" if abs(present_goodness - missing_goodness) < 1e-12 else MISSING_ONLY


def _shape_transform(
    chosen: str,
    linear_fits: dict[str, tuple[np.ndarray, np.ndarray]],
    edges: np.ndarray,
    index: np.ndarray,
    x: np.ndarray,
    counts: np.ndarray,
    monotone: np.ndarray,
    rates: np.ndarray,
    smooth: bool,
    missing_rate: float,
    has_missing: bool,
) -> SignalTransform:
    """The chosen candidate as a SignalTransform (goodness on the full scale, before stretching to the rows)."""
    if chosen in linear_fits:
        knots_x, knot_levels = linear_fits[chosen]
        goodness, missing_goodness = _goodness_scale(knot_levels, missing_rate, has_missing)
        if goodness[0] == goodness[-1]:
            return SignalTransform(_flat_label(goodness[0], missing_goodness), np.empty(0), goodness[:1],
                                   missing_goodness)
        label = "increasing" if goodness[-1] > goodness[0] else "decreasing"
        return SignalTransform(label, knots_x, goodness, missing_goodness, kind="linear")

    levels = monotone if chosen == "monotone" else rates
    goodness, missing_goodness = _goodness_scale(levels, missing_rate, has_missing)
    if chosen == "monotone" and smooth and _distinct(goodness) > 1:
        # piecewise linear through the centre (mean value) of each block of equal goodness: keeps the order of
        # accounts within a block instead of tying them
        sums = np.bincount(index, weights=x, minlength=len(levels))
        block = np.concatenate([[0], np.cumsum(np.diff(goodness) != 0)])
        centres = np.bincount(block, weights=sums) / np.bincount(block, weights=counts)
        knots_goodness = goodness[np.flatnonzero(np.diff(np.append(-1, block)))]
        label = "increasing" if knots_goodness[-1] > knots_goodness[0] else "decreasing"
        return SignalTransform(label, centres, knots_goodness, missing_goodness, kind="linear")
    # merge neighbouring bins of equal goodness: fewer edges, same function
    keep = np.flatnonzero(np.diff(goodness) != 0)
    edges, goodness = edges[keep], np.append(goodness[keep], goodness[-1])
    if len(goodness) == 1:
        label = _flat_label(goodness[0], missing_goodness)
    elif np.all(np.diff(goodness) >= 0):
        label = "increasing"
    elif np.all(np.diff(goodness) <= 0):
        label = "decreasing"
    else:
        label = "learned order"
    return SignalTransform(label, edges, goodness, missing_goodness)


# --------------------------------------------------------------------------------------------------------------
# Non-negative logistic fit and calibration
# --------------------------------------------------------------------------------------------------------------


def _fit_logistic_1d(
    unit: np.ndarray, churns: np.ndarray, counts: np.ndarray, iterations: int = 50
) -> tuple[float, float]:
    """Intercept and slope of a one-signal logistic regression on grouped rows (`counts` rows at value `unit`,
    `churns` of them churned), by damped Newton steps with a tiny ridge for separable data."""
    total = float(counts.sum())
    base = float(np.clip(churns.sum() / total, 1e-6, 1 - 1e-6))
    theta = np.array([math.log(base / (1 - base)), 0.0])
    design = np.column_stack([np.ones_like(unit), unit])
    ridge = np.diag([0.0, 1e-6 * total])

    def loss(params: np.ndarray) -> float:
        eta = design @ params
        return float(np.sum(counts * np.logaddexp(0.0, eta) - churns * eta) + 0.5 * params @ ridge @ params)

    current = loss(theta)
    for _ in range(iterations):
        prob = expit(design @ theta)
        gradient = design.T @ (churns - counts * prob) - ridge @ theta
        hessian = (design * (counts * prob * (1 - prob))[:, None]).T @ design + ridge + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        for _ in range(30):  # halve the step until the loss does not rise
            trial = loss(theta + step)
            if trial <= current + 1e-12:
                break
            step = step / 2
        else:
            break
        theta, current = theta + step, trial
        if np.max(np.abs(step)) < 1e-8:
            break
    return float(theta[0]), float(theta[1])


def _fit_logistic(
    features: np.ndarray, target: np.ndarray, l2: float, lower: list[float] | None = None
) -> tuple[float, np.ndarray]:
    """Intercept and weights of logit P(churn) = b0 + features @ w, minimising mean log loss + l2/2 |w|^2.

    The weights are bounded below by `lower` (default 0 for every weight; scipy L-BFGS-B).
    """
    n, p = features.shape
    base = float(np.clip(target.mean(), 1e-6, 1 - 1e-6))

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = theta[0] + features @ theta[1:]
        loss = float(np.mean(np.logaddexp(0.0, eta) - target * eta)) + 0.5 * l2 * float(theta[1:] @ theta[1:])
        residual = expit(eta) - target
        grad = np.empty(p + 1)
        grad[0] = residual.mean()
        grad[1:] = features.T @ residual / n + l2 * theta[1:]
        return loss, grad

    lower = [0.0] * p if lower is None else list(lower)
    start = np.zeros(p + 1)
    start[0] = math.log(base / (1 - base))
    start[1:] = lower
    with threadpool_limits(limits=1):  # L-BFGS-B's tiny BLAS calls only slow down with several threads
        result = minimize(
            objective,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=[(None, None)] + [(bound, None) for bound in lower],
            options={"maxiter": 1000, "ftol": 1e-12, "gtol": 1e-8},
        )
    return float(result.x[0]), np.asarray(result.x[1:])


def _fit_calibration(
    scores: np.ndarray,
    target: np.ndarray,
    method: str,
    modifier_goodness: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Map scores to churn probability, monotone decreasing in the score.

    "logistic": logit P(churn) = intercept + slope * score + sum(weight_m * goodness_m) over the modifiers
    (slope <= 0, weights <= 0: a modifier's goodness can only lower the churn probability). "isotonic": a
    decreasing step function of the score alone.
    """
    modifier_goodness = modifier_goodness or {}
    if method == "logistic":
        names = list(modifier_goodness)
        features = np.column_stack([(100.0 - scores) / 100.0] + [1.0 - modifier_goodness[m] for m in names])
        # the slope stays strictly negative, so the probability always ranks accounts as the score does
        b0, weights = _fit_logistic(features, target, l2=1e-6, lower=[1e-3] + [0.0] * len(names))
        a, modifier_weights = float(weights[0]), [float(w) for w in weights[1:]]
        calibration: dict[str, Any] = {
            "method": "logistic",
            "intercept": float(b0 + a + sum(modifier_weights)),
            "slope": float(-a / 100.0),
        }
        if names:
            calibration["modifiers"] = {m: -w for m, w in zip(names, modifier_weights, strict=True)}
        return calibration
    if method == "isotonic":
        iso = IsotonicRegression(increasing=False, out_of_bounds="clip").fit(scores, target)
        return {
            "method": "isotonic",
            "scores": [float(v) for v in iso.X_thresholds_],
            "probabilities": [float(v) for v in iso.y_thresholds_],
        }
    raise ModelInputError(f"calibration must be 'logistic' or 'isotonic', got {method!r}")


def _apply_calibration(
    calibration: dict[str, Any], scores: np.ndarray, modifier_goodness: dict[str, np.ndarray] | None = None
) -> np.ndarray:
    if calibration["method"] == "logistic":
        eta = calibration["intercept"] + calibration["slope"] * scores
        for name, weight in (calibration.get("modifiers") or {}).items():
            eta = eta + weight * (modifier_goodness or {})[name]
        return expit(eta)
    probabilities = np.interp(scores, calibration["scores"], calibration["probabilities"])
    return np.clip(probabilities, 1e-6, 1 - 1e-6)


def _round_points(raw: np.ndarray) -> np.ndarray:
    """Rescale non-negative weights to points summing to exactly 100.00 (largest-remainder rounding)."""
    hundredths = raw / raw.sum() * 10_000.0
    points = np.floor(hundredths + 1e-9)
    remainder = int(round(10_000.0 - points.sum()))
    order = np.argsort(-(hundredths - points), kind="stable")
    points[order[:remainder]] += 1
    return points / 100.0


# --------------------------------------------------------------------------------------------------------------
# HealthScore
# --------------------------------------------------------------------------------------------------------------


def _as_pandas(X):
    if hasattr(X, "to_pandas") and not isinstance(X, pd.DataFrame | pd.Series | np.ndarray):
        return X.to_pandas()
    return X


def _check_column_names(X: pd.DataFrame, *, by_position: bool = True) -> None:
    """Refuse column names points cannot be kept by: duplicates, and names that are not text, except (when
    `by_position`) the default labels 0..n-1 of a frame made from an array, which is read by position."""
    names = pd.Index(X.columns)
    duplicated = names[names.duplicated()].unique()
    if len(duplicated):
        raise ModelInputError(
            f"X: duplicate column name(s) {', '.join(map(str, duplicated[:5]))}: give each column a name of its own"
        )
    if all(isinstance(c, str) for c in names) or (by_position and names.equals(pd.RangeIndex(len(names)))):
        return
    other = [str(c) for c in names if not isinstance(c, str)]
    raise ModelInputError(
        f"X: column names must be text, not {', '.join(other[:5])}: points are kept per column name (only a frame "
        "with the default labels 0..n-1, as made from an array, is read by position); name the columns, e.g. "
        "X.columns = X.columns.astype(str)"
    )


_CHURN_WORDS = ("churn", "lost", "cancel", "terminat", "lapsed")
_NEGATIONS = ("not", "no", "non", "un", "never")


def _names_churn(label: Any) -> bool:
    """Whether a text label says churned ("Churned", "closed lost", "cancelled"; not "Not churned")."""
    if not isinstance(label, str):
        return False
    words = label.strip().lower().replace("-", " ").replace("_", " ").split()
    if not words or words[0] in _NEGATIONS or words[0].startswith("non"):
        return False
    return any(word in label.lower() for word in _CHURN_WORDS)


def _numeric_dataframe(X: pd.DataFrame) -> pd.DataFrame:
    bad = [c for c in X.columns if not (pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c]))]
    if bad:
        raise ModelInputError(
            f"X: column(s) {', '.join(map(str, bad[:3]))} are not numeric (a health score needs numeric signals); "
            f"rows: {example_rows(X[bad[:3]])}"
        )
    numbers = pd.DataFrame(X.to_numpy(dtype=float, na_value=np.nan), columns=X.columns, index=X.index)
    infinite = np.isinf(numbers.to_numpy())
    if infinite.any():
        columns = list(numbers.columns[infinite.any(axis=0)])
        rows = infinite.any(axis=1)
        raise ModelInputError(
            f"X: column(s) {', '.join(map(str, columns[:3]))} hold infinite values ({int(rows.sum()):,} rows, e.g. a "
            f"ratio over 0; rows: {example_rows(X.loc[rows, columns[:3]])}); use NaN where a value is unknown"
        )
    return numbers


class HealthScore(ClassifierMixin, BaseEstimator):
    """A points-based customer health score fitted to predict churn (scikit-learn estimator).

    `HealthScore().fit(X, y)`: X numeric signals (DataFrame or array; NaN = missing), y = 1 for churned (any two
    labels: the larger one is churn). After fitting: `points_` (column -> points, >= 0, summing to 100; 0 for
    modifiers and unused columns), `transforms_` (column -> SignalTransform), `calibration_`, `classes_`,
    `n_features_in_`, `feature_names_in_` (DataFrame input). A DataFrame's columns are read by name (text, each
    once); an array, or a DataFrame with the default labels 0..n-1, by position (named x0, x1, ...). Methods:
    `health_score(X)` (0..100, higher is healthier), `predict_proba(X)` (column 1 = churn probability), `predict(X)`, `band(X)`,
    `goodness(X)` and `component_points(X)` (per-signal breakdown). See the module docstring for the method.

    Parameters: `max_bins`, `min_bin_rows`, `prior_strength`, `shape` ("auto" | "monotone") shape the
    transforms; `l2` and `cv` the points fit; `calibration` ("logistic" | "isotonic"); `calibrate_modifiers`
    (modifiers enter the logistic calibration); `fixed_points`
    ({column: points}, rescaled to 100: the points are then not fitted); `modifiers` (columns never used as point
    sources); `urgency`, `urgency_days`, `urgency_gain` (renewal-urgency modifier); `healthy`, `at_risk` (band
    thresholds); `min_rows`; `random_state` (draws the cross-fitting folds; company ids and row order do not);
    `name` (shown in reports and model files).
    """

    def __init__(
        self,
        *,
        max_bins: int = 20,
        min_bin_rows: int = 30,
        prior_strength: float = 10.0,
        shape: str = "auto",
        smooth: bool = True,
        penalty: str = "bic",
        l2: float = 1e-3,
        cv: int = 5,
        calibration: str = "logistic",
        calibrate_modifiers: bool = True,
        fixed_points: dict[str, float] | None = None,
        modifiers: tuple[str, ...] = ("days_to_renewal",),
        urgency: str | None = None,
        urgency_days: float = 90.0,
        urgency_gain: float = 0.5,
        healthy: float = 70.0,
        at_risk: float = 55.0,
        min_rows: int = 10,
        random_state: int = 0,
        name: str | None = None,
    ) -> None:
        self.max_bins = max_bins
        self.min_bin_rows = min_bin_rows
        self.prior_strength = prior_strength
        self.shape = shape
        self.smooth = smooth
        self.penalty = penalty
        self.l2 = l2
        self.cv = cv
        self.calibration = calibration
        self.calibrate_modifiers = calibrate_modifiers
        self.fixed_points = fixed_points
        self.modifiers = modifiers
        self.urgency = urgency
        self.urgency_days = urgency_days
        self.urgency_gain = urgency_gain
        self.healthy = healthy
        self.at_risk = at_risk
        self.min_rows = min_rows
        self.random_state = random_state
        self.name = name

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        return tags

    # ---- input checks -----------------------------------------------------------------------------------------
    def _matrix(self, X, y=None, *, reset: bool) -> tuple[np.ndarray, np.ndarray | None]:
        X = _as_pandas(X)
        if isinstance(X, pd.DataFrame):
            _check_column_names(X)
            if not reset and hasattr(self, "feature_names_in_"):
                expected = list(self.feature_names_in_)
                columns = list(X.columns)
                if set(columns) != set(expected) or len(columns) != len(expected):
                    missing = [c for c in expected if c not in columns]
                    extra = [c for c in columns if c not in expected]
                    raise ModelInputError(
                        "X: columns differ from the ones the model was fitted on "
                        f"(missing: {', '.join(map(str, missing[:5])) or 'none'}; "
                        f"unexpected: {', '.join(map(str, extra[:5])) or 'none'})"
                    )
                X = X[expected]
            X = _numeric_dataframe(X)
        try:
            if y is None:
                matrix = validate_data(self, X, reset=reset, ensure_all_finite="allow-nan", dtype=np.float64)
                return matrix, None
            matrix, y = validate_data(
                self, X, y, reset=reset, ensure_all_finite="allow-nan", dtype=np.float64, ensure_min_samples=1
            )
        except ModelInputError:
            raise
        except ValueError as exc:
            if y is not None and "Input y contains NaN" in str(exc):  # a panel's outcome is empty where no renewal falls
                raise ModelInputError(
                    f"y: {int(pd.isna(pd.Series(np.asarray(y).ravel())).sum()):,} of {len(np.asarray(y).ravel()):,} "
                    "outcomes are missing; fit on the rows whose outcome is known (a panel's outcome_churned is "
                    "empty where no renewal falls within the horizon)"
                ) from None
            raise ModelInputError(str(exc)) from None
        return matrix, y

    def _columns(self) -> list[str]:
        if hasattr(self, "feature_names_in_"):
            return [str(c) for c in self.feature_names_in_]
        return [f"x{i}" for i in range(self.n_features_in_)]

    def _target(self, y: np.ndarray) -> np.ndarray:
        try:
            check_classification_targets(y)
        except ValueError as exc:
            raise ModelInputError(str(exc)) from None
        kind = type_of_target(y, input_name="y")
        classes = np.unique(y)
        if len(classes) < 2:
            raise ModelInputError(
                f"y: only one class ({classes[0] if len(classes) else 'none'}) is present; fitting a churn model needs "
                "both churned and retained rows"
            )
        if kind != "binary":
            raise ModelInputError(
                f"Only binary classification is supported. The type of the target is {kind} (y must be churned or not)."
            )
        if _names_churn(classes[0]) and not _names_churn(classes[1]):
            churned, other = str(classes[0]), str(classes[1])
            raise ModelInputError(
                f"y: labels {churned!r} and {other!r}: the larger one, {other!r}, would be taken as churn (column 1 of "
                f"predict_proba) and the score would rank churned accounts as healthy; pass y == {churned!r} (1 = churned)"
            )
        self.classes_ = classes
        return (y == classes[1]).astype(float)

    # ---- fitting ----------------------------------------------------------------------------------------------
    def fit(self, X, y, groups=None) -> HealthScore:
        """Learn transforms, points (unless fixed) and calibration from signals X and churn outcomes y.

        `groups` (optional, e.g. company ids of a weekly panel) keeps each group's rows in one cross-fitting fold,
        shares the churned groups out evenly over the folds, and makes the counts below count accounts. Refused with
        fewer than MIN_ACCOUNTS_PER_CLASS churned or retained; fitted points warn with fewer than
        MIN_CHURNS_PER_SIGNAL churned per signal earning points.
        """
        matrix, y = self._matrix(X, y, reset=True)
        target = self._target(y)
        n = len(target)
        if n < self.min_rows:
            raise ModelInputError(
                f"too few rows: {n} sample(s); a health score needs at least {self.min_rows} rows"
            )
        if groups is not None:
            groups = np.asarray(groups).ravel()
            if len(groups) != n:
                raise ModelInputError(f"groups: {len(groups)} values for {n} rows")
        churns = _check_both_classes(target, groups)
        columns = self._columns()
        modifiers = [c for c in columns if c in tuple(self.modifiers or ()) or c == self.urgency]
        if self.urgency is not None and self.urgency not in columns:
            raise ModelInputError(f"X: the urgency column {self.urgency!r} is missing")
        if self.fixed_points is not None:
            unknown = [c for c in self.fixed_points if c not in columns]
            if unknown:
                raise ModelInputError(
                    f"X: column(s) {', '.join(unknown)} needed by the {self.name or 'preset'} points are missing "
                    f"(columns given: {', '.join(columns[:8])})"
                )
            raw_points = np.array([float(v) for v in self.fixed_points.values()])
            if np.any(raw_points < 0) or raw_points.sum() <= 0:
                raise ModelInputError("fixed_points: points must be >= 0 and not all zero")
            sources = [c for c in columns if c in self.fixed_points and c not in modifiers]
        else:
            sources = [c for c in columns if c not in modifiers]
        if not sources:
            raise ModelInputError("X: no column can earn points (all columns are modifiers)")
        position = {c: i for i, c in enumerate(columns)}
        empty = [c for c in sources if np.isnan(matrix[:, position[c]]).all()]
        if len(empty) == len(sources):
            raise ModelInputError(f"X: column(s) {', '.join(empty[:3])} have no values (all missing)")
        if empty:  # a signal the portal does not record (no NPS surveys, say): it earns no points
            # the same words for a fitted score and a preset, so a command fitting both says it once
            one = len(empty) == 1
            warnings.warn(
                f"HealthScore: {'column' if one else 'columns'} {', '.join(empty)} {'has' if one else 'have'} no "
                f"values (all missing) and {'earns' if one else 'earn'} no points: the score rests on the other "
                "columns",
                UserWarning,
                stacklevel=2,
            )
            sources = [c for c in sources if c not in empty]
        source_matrix = matrix[:, [position[c] for c in sources]]

        transforms = {c: self._fit_transform(source_matrix[:, j], target) for j, c in enumerate(sources)}
        folds = self._crossfit_folds(matrix, target, groups)
        crossfit = self._crossfit_goodness(source_matrix, target, folds)
        if self.fixed_points is not None:
            weights = np.array([float(self.fixed_points[c]) for c in sources])
        else:
            if churns < MIN_CHURNS_PER_SIGNAL * len(sources):
                warnings.warn(f"HealthScore: {few_training_churns(churns, len(sources), groups is not None)}",
                              UserWarning, stacklevel=2)
            _, weights = _fit_logistic(1.0 - crossfit, target, self.l2)
            if weights.sum() <= 1e-8:
                warnings.warn(
                    "HealthScore: no signal separates churned from retained rows; points are split equally",
                    UserWarning,
                    stacklevel=2,
                )
                weights = np.ones(len(sources))
        source_points = _round_points(weights)
        self.points_ = {c: 0.0 for c in columns}
        self.points_.update({c: float(p) for c, p in zip(sources, source_points, strict=True)})
        self.transforms_ = transforms
        self.point_sources_ = sources
        self.modifiers_ = modifiers
        crossfit_scores = self._apply_urgency(crossfit @ source_points, matrix)
        usable = [c for c in modifiers if not np.isnan(matrix[:, position[c]]).all()]
        if not self.calibrate_modifiers or self.calibration != "logistic":
            usable = []
        self.modifier_transforms_ = {c: self._fit_transform(matrix[:, position[c]], target) for c in usable}
        modifier_crossfit = self._crossfit_goodness(matrix[:, [position[c] for c in usable]], target, folds)
        self.calibration_ = _fit_calibration(
            crossfit_scores, target, self.calibration,
            {c: modifier_crossfit[:, j] for j, c in enumerate(usable)},
        )
        self.n_train_rows_ = n
        self.n_train_churns_ = int(target.sum())
        return self

    def _fit_transform(self, values: np.ndarray, target: np.ndarray) -> SignalTransform:
        return fit_signal_transform(
            values,
            target,
            max_bins=self.max_bins,
            min_bin_rows=self.min_bin_rows,
            prior_strength=self.prior_strength,
            shape=self.shape,
            smooth=self.smooth,
            penalty=self.penalty,
        )

    def _crossfit_folds(
        self, matrix: np.ndarray, target: np.ndarray, groups: np.ndarray | None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The cross-fitting folds as (training rows, held-out rows); none when fewer than 2 folds are possible.

        At most `cv` folds, and no more than the churned accounts, the retained accounts (and the groups). Without
        groups, rows are split stratified on churn. With groups, each group's rows stay in one fold and the churned
        groups (those with a churned row) are dealt out in turn, then the others, so the folds' churned groups differ
        by at most one. The groups are taken in an order drawn by `random_state` from their content
        (_groups_by_content), so renaming the groups or reordering the rows draws the same folds.
        """
        folds = min(int(self.cv or 0), *_class_accounts(target, groups).values())
        if groups is None:
            if folds < 2:
                return []
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.random_state)
            return list(splitter.split(matrix, target))
        group_of_row = _groups_by_content(matrix, target, groups)
        n_groups = int(group_of_row.max()) + 1
        folds = min(folds, n_groups)
        if folds < 2:
            return []
        churned_group = np.zeros(n_groups, dtype=bool)
        churned_group[group_of_row[target == 1.0]] = True
        order = check_random_state(self.random_state).permutation(n_groups)
        order = order[np.argsort(~churned_group[order], kind="stable")]  # churned groups first, each in drawn order
        fold_of_group = np.empty(n_groups, dtype=np.int64)
        fold_of_group[order] = np.arange(n_groups) % folds
        fold_of_row = fold_of_group[group_of_row]
        return [(np.flatnonzero(fold_of_row != fold), np.flatnonzero(fold_of_row == fold)) for fold in range(folds)]

    def _crossfit_goodness(
        self, source_matrix: np.ndarray, target: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]
    ) -> np.ndarray:
        """Goodness of each row from transforms learned without its fold (in-sample when there are no folds)."""
        goodness = np.empty(source_matrix.shape)
        for j in range(source_matrix.shape[1]):
            values = source_matrix[:, j]
            if not folds:
                goodness[:, j] = self._fit_transform(values, target).apply(values)
            for train_idx, held_idx in folds:
                transform = self._fit_transform(values[train_idx], target[train_idx])
                goodness[held_idx, j] = transform.apply(values[held_idx])
        return goodness

    # ---- scoring ----------------------------------------------------------------------------------------------
    def _apply_urgency(self, base: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        base = np.clip(base, 0.0, 100.0)
        if self.urgency is None:
            return base
        days = matrix[:, self._columns().index(self.urgency)]
        closeness = np.clip((self.urgency_days - days) / self.urgency_days, 0.0, 1.0)
        amplify = 1.0 + self.urgency_gain * np.nan_to_num(closeness, nan=0.0)
        pivot = (self.healthy + self.at_risk) / 2.0
        return np.clip(pivot + (base - pivot) * amplify, 0.0, 100.0)

    def _goodness_matrix(self, matrix: np.ndarray) -> np.ndarray:
        position = {c: i for i, c in enumerate(self._columns())}
        return np.column_stack(
            [self.transforms_[c].apply(matrix[:, position[c]]) for c in self.point_sources_]
        )

    def _modifier_goodness(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        columns = self._columns()
        return {c: t.apply(matrix[:, columns.index(c)]) for c, t in self.modifier_transforms_.items()}

    def _scores(self, matrix: np.ndarray) -> np.ndarray:
        points = np.array([self.points_[c] for c in self.point_sources_])
        return self._apply_urgency(self._goodness_matrix(matrix) @ points, matrix)

    def health_score(self, X) -> np.ndarray:
        """Health score 0..100 per row (higher is healthier)."""
        check_is_fitted(self, "points_")
        matrix, _ = self._matrix(X, reset=False)
        return self._scores(matrix)

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities per row: column 0 retained, column 1 churned (calibrated on training data)."""
        check_is_fitted(self, "points_")
        matrix, _ = self._matrix(X, reset=False)
        churn = _apply_calibration(self.calibration_, self._scores(matrix), self._modifier_goodness(matrix))
        return np.column_stack([1.0 - churn, churn])

    def predict(self, X) -> np.ndarray:
        """The churn label where the churn probability is at least 0.5, else the retained label."""
        churn = self.predict_proba(X)[:, 1]
        return self.classes_[(churn >= 0.5).astype(int)]

    def band(self, X) -> np.ndarray:
        """Band per row: "Healthy" (score >= healthy), "At risk" (score < at_risk), else "Neutral"."""
        return bands_for(self.health_score(X), self.healthy, self.at_risk)

    def goodness(self, X) -> pd.DataFrame:
        """Goodness (0..1) of each point-source signal per row."""
        check_is_fitted(self, "points_")
        matrix, _ = self._matrix(X, reset=False)
        return pd.DataFrame(self._goodness_matrix(matrix), columns=self.point_sources_)

    def component_points(self, X) -> pd.DataFrame:
        """Points earned per point-source signal per row (points x goodness; before the urgency modifier)."""
        frame = self.goodness(X)
        for column in frame.columns:
            frame[column] = frame[column] * self.points_[column]
        return frame

    # ---- construction from a stored state --------------------------------------------------------------------
    def _set_state(
        self,
        columns: list[str],
        classes: list,
        points: dict[str, float],
        transforms: dict[str, SignalTransform],
        calibration: dict[str, Any],
        modifier_transforms: dict[str, SignalTransform] | None = None,
    ) -> HealthScore:
        self.feature_names_in_ = np.asarray(columns, dtype=object)
        self.n_features_in_ = len(columns)
        self.classes_ = np.asarray(classes)
        self.point_sources_ = [c for c in columns if c in transforms]
        self.modifiers_ = [c for c in columns if c in tuple(self.modifiers or ()) or c == self.urgency]
        self.points_ = {c: float(points.get(c, 0.0)) for c in columns}
        self.transforms_ = dict(transforms)
        self.modifier_transforms_ = dict(modifier_transforms or {})
        self.calibration_ = dict(calibration)
        return self


def _groups_by_content(matrix: np.ndarray, target: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each row's group as that group's rank (0, 1, ...) by a hash of its rows (signal values and outcome, taken
    in any order): labels that do not depend on the groups' names or on the row order. Groups whose rows are the
    same are interchangeable, so how such a tie falls changes nothing."""
    values = np.column_stack([matrix, target]) + 0.0  # + 0.0 makes -0.0 read as 0.0
    values[np.isnan(values)] = np.nan  # one NaN bit pattern (pandas hashes a float's bits)
    row_hash = pd.util.hash_pandas_object(pd.DataFrame(values), index=False).to_numpy()
    _, group_index = np.unique(groups, return_inverse=True)
    group_index = group_index.ravel()
    group_hash = np.zeros(int(group_index.max()) + 1, dtype=np.uint64)
    np.add.at(group_hash, group_index, row_hash)  # a sum: the order of a group's rows does not matter
    rank = np.empty(group_hash.size, dtype=np.int64)
    rank[np.argsort(group_hash, kind="stable")] = np.arange(group_hash.size)
    return rank[group_index]


def _class_accounts(target: np.ndarray, groups: np.ndarray | None) -> dict[str, int]:
    """Churned and retained accounts of a target: distinct `groups` with a row of that outcome (a churned company
    counts in both when it also has retained rows), or rows when there are no groups."""
    counts = {}
    for label, name in ((1.0, "churned"), (0.0, "retained")):
        rows = target == label
        counts[name] = int(rows.sum()) if groups is None else int(np.unique(groups[rows]).size)
    return counts


def _check_both_classes(target: np.ndarray, groups: np.ndarray | None) -> int:
    """The churned accounts (distinct `groups` with a churned row; churned rows without groups) of a fit's
    target; ModelInputError when either class has fewer than MIN_ACCOUNTS_PER_CLASS: the cross-fitting cannot then
    hold one out, and the points would be fitted on the very rows they score."""
    counts = _class_accounts(target, groups)
    short = {name: count for name, count in counts.items() if count < MIN_ACCOUNTS_PER_CLASS}
    if short:
        unit = "row" if groups is None else "account"
        name, count = next(iter(short.items()))
        raise ModelInputError(
            f"y: only {count} {name} {unit}{'' if count == 1 else 's'} of {sum(counts.values()):,}; fitting a churn "
            f"model needs at least {MIN_ACCOUNTS_PER_CLASS} churned and {MIN_ACCOUNTS_PER_CLASS} retained {unit}s "
            f"(and {MIN_CHURNS_PER_SIGNAL} churned per signal to be trusted)"
        )
    return counts["churned"]


def bands_for(scores: np.ndarray, healthy: float = 70.0, at_risk: float = 55.0) -> np.ndarray:
    """Band names for health scores: Healthy >= healthy, At risk < at_risk, Neutral between."""
    scores = np.asarray(scores, dtype=float)
    return np.where(scores >= healthy, BAND_HEALTHY, np.where(scores < at_risk, BAND_AT_RISK, BAND_NEUTRAL)).astype(
        object
    )


# --------------------------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    "seed": {
        "points": {"core_depth": 30, "eb_engagement": 25, "support_negative_trend": 20, "seat_utilisation": 15},
        "urgency": "days_to_renewal",
        "description": "hand weights from the field: core usage 30, economic buyer 25, support trend 20, seat "
        "utilisation 15 (rescaled to 100), renewal proximity as an urgency modifier",
    },
    "40-30-30": {
        "points": {"logins_28d": 40, "ticket_volume_90d": 30, "email_open_rate": 15, "latest_nps": 15},
        "urgency": None,
        "description": "the common template: usage 40 (logins), support 30 (ticket volume), engagement 30 "
        "(email opens 15, NPS 15)",
    },
}


def signals_with_presets(signals: list[str] | None) -> list[str] | None:
    """The signals a panel needs to fit on `signals` and compare the fit with the presets: those, then the presets'
    own (None, every registered signal, when `signals` is None)."""
    if not signals:
        return None
    preset_signals = [c for spec in PRESETS.values() for c in (*spec["points"], spec["urgency"]) if c]
    return list(dict.fromkeys([*signals, *preset_signals]))


def preset(name: str) -> HealthScore:
    """An unfitted preset: fixed points; fitting learns only the transforms and the calibration.

    A preset's transforms are monotone (a hand-made score never rewards a middle value) and chosen by fit alone
    (penalty "none"), so each of its signals keeps the direction the training data show, however weak.
    """
    if name not in PRESETS:
        raise ModelInputError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    spec = PRESETS[name]
    return HealthScore(
        fixed_points=dict(spec["points"]), urgency=spec["urgency"], shape="monotone", penalty="none", name=name
    )


# --------------------------------------------------------------------------------------------------------------
# Segmented models
# --------------------------------------------------------------------------------------------------------------


# A segment's own fit gets half the weight at this many churned accounts: as many as the evaluation needs to trust a
# segment's AUC (below it the AUC moves by several points, so the segment's own ranking is about as unsure).
SEGMENT_SHRINKAGE = float(MIN_TEST_CHURNS_FOR_AUC)


def _blend_transforms(a: SignalTransform, b: SignalTransform, weight_a: float) -> SignalTransform:
    """The transform whose goodness is weight_a * a + (1 - weight_a) * b at every value, missing included.

    Two step functions blend to steps over the union of their edges. Otherwise the blend is piecewise linear
    over the union of edges and knots (both parts are linear, or flat, between two of them), with a jump (the
    knot listed twice) where a step edge or a jump of either part makes the two sides differ. Weight 0 gives b,
    weight 1 gives a, unchanged.
    """
    if weight_a <= 0:
        return b
    if weight_a >= 1:
        return a
    missing = weight_a * a.missing_goodness + (1 - weight_a) * b.missing_goodness
    shape = a.shape if a.shape == b.shape else "blended"
    knots = np.union1d(a.edges, b.edges)
    if a.kind != "linear" and b.kind != "linear":
        probes = np.append(knots, np.inf)  # each bin of the union is identified by its right edge
        goodness = weight_a * a.apply(probes) + (1 - weight_a) * b.apply(probes)
        keep = np.flatnonzero(np.diff(goodness) != 0)  # merge neighbouring bins of equal goodness
        return SignalTransform(shape, knots[keep], np.append(goodness[keep], goodness[-1]), missing)
    at = weight_a * a.apply(knots) + (1 - weight_a) * b.apply(knots)
    above = weight_a * a.goodness_above(knots) + (1 - weight_a) * b.goodness_above(knots)
    jump = above != at
    listings = np.where(jump, 2, 1)
    edges, goodness = np.repeat(knots, listings), np.repeat(at, listings)
    goodness[np.cumsum(listings)[jump] - 1] = above[jump]  # the second listing of a jump knot: just above it
    return SignalTransform(shape, edges, goodness, missing, kind="linear")


class SegmentedHealthScore(ClassifierMixin, BaseEstimator):
    """Separate health scores per segment (e.g. high_touch / scaled), shrunk toward one global model.

    X holds the signals plus `segment_column`. A global model (a clone of `base`, default HealthScore()) is fitted
    on all rows; each segment's own model is fitted on its rows and blended with the global one with weight
    w = churns / (churns + shrinkage): points, transforms and calibration are w * segment + (1 - w) * global (a
    transform's goodness at every value, missing included; see `_blend_transforms`). `churns` counts the
    segment's churned accounts: distinct `groups` (company ids) with a churned row when fit is given groups, else
    churned rows (each row taken for one account; on a weekly panel pass groups, as one churned account labels
    about horizon / 7 rows). The default shrinkage, 30 churned accounts, gives a segment half its own weight at
    the churned accounts the evaluation needs to trust a segment's AUC (MIN_TEST_CHURNS_FOR_AUC). A segment whose own fit is impossible (too few rows, fewer than 2 churned accounts)
    uses the global model (w = 0). Rows of a segment unseen in training use the global model. A warning is
    issued when a segment has fewer than `min_churns_per_signal` churns per point-source signal.
    `points_` is the global model's; `segment_points_`, `segment_weights_`, `segment_models_` the per-segment
    ones; `segment_churns_` the churned rows and `segment_churned_companies_` the churned accounts (None without
    groups) per segment.
    """

    def __init__(
        self,
        base: HealthScore | None = None,
        segment_column: str = "arr_segment",
        shrinkage: float = SEGMENT_SHRINKAGE,
        min_churns_per_signal: int = MIN_CHURNS_PER_SIGNAL,
    ) -> None:
        self.base = base
        self.segment_column = segment_column
        self.shrinkage = shrinkage
        self.min_churns_per_signal = min_churns_per_signal

    def _split(self, X) -> tuple[pd.DataFrame, np.ndarray]:
        X = _as_pandas(X)
        if not isinstance(X, pd.DataFrame):
            raise ModelInputError("SegmentedHealthScore needs a DataFrame holding the segment column")
        _check_column_names(X, by_position=False)
        if self.segment_column not in X.columns:
            raise ModelInputError(
                f"X: segment column {self.segment_column!r} is missing (columns: {', '.join(map(str, X.columns[:8]))})"
            )
        segments = X[self.segment_column].astype(object).where(X[self.segment_column].notna(), "missing")
        return X.drop(columns=[self.segment_column]), segments.astype(str).to_numpy()

    def fit(self, X, y, groups=None) -> SegmentedHealthScore:
        """Fit the global model and each segment's blended one.

        `groups` (optional, e.g. company ids of a weekly panel) keeps each group's rows in one cross-fitting fold
        and makes a segment's churns its churned groups (accounts) rather than its churned rows.
        """
        signals, segments = self._split(X)
        y = np.asarray(y).ravel()
        if groups is not None:
            groups = np.asarray(groups).ravel()
            if groups.size != y.size:
                raise ModelInputError(f"groups: {groups.size} values for {y.size} rows")
        base = self.base if self.base is not None else HealthScore()
        self.global_model_ = clone(base).fit(signals, y, groups=groups)
        churned = (y == self.global_model_.classes_[1]).astype(int)
        self.classes_ = self.global_model_.classes_
        self.feature_names_in_ = np.asarray(list(map(str, X.columns)), dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.points_ = dict(self.global_model_.points_)
        n_sources = len(self.global_model_.point_sources_)
        self.segment_models_: dict[str, HealthScore] = {}
        self.segment_weights_: dict[str, float] = {}
        self.segment_churns_: dict[str, int] = {}
        self.segment_churned_companies_: dict[str, int | None] = {}
        for segment in sorted(set(segments)):
            mask = segments == segment
            counts = {"churns": int(churned[mask].sum()),
                      "churned_companies": churned_companies(churned[mask], None if groups is None else groups[mask])}
            self.segment_churns_[segment] = counts["churns"]
            self.segment_churned_companies_[segment] = counts["churned_companies"]
            churns = churn_evidence(counts)
            weight = churns / (churns + self.shrinkage) if churns + self.shrinkage > 0 else 0.0
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    own = clone(base).fit(signals[mask], y[mask], groups=None if groups is None else groups[mask])
            except ModelInputError:
                own, weight = None, 0.0
            if churns < self.min_churns_per_signal * n_sources:
                warnings.warn(
                    f"segment {self.segment_column}={segment}: "
                    f"{counted(churns, 'churned row' if groups is None else 'churned account')}"
                    f" for {counted(n_sources, 'signal')} (fewer than {self.min_churns_per_signal} per signal); its model is "
                    f"{weight:.0%} its own fit and {1 - weight:.0%} the global one",
                    UserWarning,
                    stacklevel=2,
                )
            self.segment_weights_[segment] = float(weight)
            self.segment_models_[segment] = self._blend(own, weight, signals[mask], churned[mask].astype(bool))
        self.segment_points_ = {s: dict(m.points_) for s, m in self.segment_models_.items()}
        return self

    def _blend(self, own: HealthScore | None, weight: float, signals: pd.DataFrame, churned: np.ndarray) -> HealthScore:
        glob = self.global_model_
        if own is None or weight <= 0:
            return glob
        sources = glob.point_sources_
        raw = np.array([weight * own.points_[c] + (1 - weight) * glob.points_[c] for c in sources])
        points = dict(zip(sources, _round_points(raw) if raw.sum() > 0 else raw, strict=True))
        # a signal without values in the segment has no transform of its own there: the global one stands
        transforms = {c: _blend_transforms(own.transforms_.get(c, glob.transforms_[c]), glob.transforms_[c], weight)
                      for c in sources}
        blended = clone(glob)._set_state(
            list(glob._columns()), list(glob.classes_), points, transforms, glob.calibration_,
            glob.modifier_transforms_,
        )
        matrix, _ = blended._matrix(signals, reset=False)
        modifier_goodness = blended._modifier_goodness(matrix)
        local = _fit_calibration(blended._scores(matrix), churned.astype(float), glob.calibration, modifier_goodness)
        if local["method"] == "logistic":
            calibration = {
                "method": "logistic",
                "intercept": weight * local["intercept"] + (1 - weight) * glob.calibration_["intercept"],
                "slope": weight * local["slope"] + (1 - weight) * glob.calibration_["slope"],
            }
            if "modifiers" in local:
                calibration["modifiers"] = {
                    m: weight * w + (1 - weight) * glob.calibration_["modifiers"][m]
                    for m, w in local["modifiers"].items()
                }
        else:
            grid = np.linspace(0.0, 100.0, 201)
            mixed = weight * _apply_calibration(local, grid) + (1 - weight) * _apply_calibration(glob.calibration_, grid)
            calibration = {"method": "isotonic", "scores": grid.tolist(), "probabilities": mixed.tolist()}
        blended.calibration_ = calibration
        return blended

    def _by_segment(self, X, method: str) -> np.ndarray:
        check_is_fitted(self, "segment_models_")
        signals, segments = self._split(X)
        result = None
        for segment in sorted(set(segments)):
            mask = segments == segment
            model = self.segment_models_.get(segment, self.global_model_)
            part = np.asarray(getattr(model, method)(signals[mask]))
            if result is None:
                result = np.empty((len(segments),) + part.shape[1:], dtype=part.dtype if part.dtype != object else object)
            result[mask] = part
        return result if result is not None else np.empty(0)

    def health_score(self, X) -> np.ndarray:
        """Health score 0..100 per row, from the row's segment model."""
        return self._by_segment(X, "health_score")

    def predict_proba(self, X) -> np.ndarray:
        return self._by_segment(X, "predict_proba")

    def predict(self, X) -> np.ndarray:
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]

    def band(self, X) -> np.ndarray:
        return self._by_segment(X, "band")


# --------------------------------------------------------------------------------------------------------------
# Model file
# --------------------------------------------------------------------------------------------------------------

_PARAMS_IN_FILE = (
    "max_bins", "min_bin_rows", "prior_strength", "shape", "smooth", "penalty", "l2", "cv", "calibration",
    "calibrate_modifiers", "modifiers", "urgency", "urgency_days", "urgency_gain", "min_rows", "random_state",
)
_YES_NO_PARAMS = ("smooth", "calibrate_modifiers")


def _signal_family(name: str) -> str:
    try:
        from hsutils.signals import SIGNALS
    except ImportError:
        return "custom"
    signal = SIGNALS.get(name)
    return str(signal.family) if signal is not None else "custom"


def _plain(value: Any) -> Any:
    """Numpy scalars and tuples as plain YAML-friendly Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    return value


def _scorer_dict(model: HealthScore) -> dict[str, Any]:
    """Signals, calibration and classes of a fitted HealthScore."""
    signals = []
    for column in model._columns():
        role = "points" if column in model.point_sources_ else ("modifier" if column in model.modifiers_ else "unused")
        entry: dict[str, Any] = {"name": column, "family": _signal_family(column), "role": role,
                                 "points": float(model.points_[column])}
        if column in model.transforms_:
            entry["transform"] = model.transforms_[column].to_dict()
        elif column in model.modifier_transforms_:
            entry["transform"] = model.modifier_transforms_[column].to_dict()
        signals.append(entry)
    return {"columns": model._columns(), "classes": _plain(list(model.classes_)), "signals": signals,
            "calibration": _plain(model.calibration_)}


def model_to_dict(model, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model file content (without `version`) of a HealthScore, preset or SegmentedHealthScore."""
    metadata = dict(metadata or {})
    segmented = isinstance(model, SegmentedHealthScore)
    scorer = model.global_model_ if segmented else model
    if not isinstance(scorer, HealthScore):
        raise ModelInputError(f"cannot write a {type(model).__name__} as a model file (HealthScore models only)")
    fitted = hasattr(scorer, "points_")
    content: dict[str, Any] = {
        "format": MODEL_FILE_FORMAT,
        "kind": "preset" if scorer.fixed_points is not None else "fitted",
        "name": scorer.name or ("fitted" if scorer.fixed_points is None else "preset"),
        "created_at": metadata.pop("created_at", None)
        or datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "training": _plain(metadata.pop("training", {})),
        "bands": {"healthy": float(scorer.healthy), "at_risk": float(scorer.at_risk)},
        "urgency": None if scorer.urgency is None else {
            "column": scorer.urgency, "days": float(scorer.urgency_days), "gain": float(scorer.urgency_gain),
            "pivot": (float(scorer.healthy) + float(scorer.at_risk)) / 2.0,
            "formula": "pivot + (score - pivot) * (1 + gain * max(0, (days - days_to_renewal) / days)); "
                       "pivot = (healthy + at_risk) / 2",
        },
        "params": _plain({k: getattr(scorer, k) for k in _PARAMS_IN_FILE}),
    }
    if scorer.fixed_points is not None:
        content["fixed_points"] = _plain(dict(scorer.fixed_points))
    if fitted:
        content.update(_scorer_dict(scorer))
    else:
        content["signals"] = [
            {"name": c, "family": _signal_family(c), "role": "points", "points": float(p)}
            for c, p in (scorer.fixed_points or {}).items()
        ]
        content["calibration"] = None
    if segmented:
        content["segments"] = {
            "column": model.segment_column,
            "shrinkage": float(model.shrinkage),
            "min_churns_per_signal": int(model.min_churns_per_signal),
            "models": {
                segment: {"weight": model.segment_weights_[segment], "churns": model.segment_churns_[segment],
                          "churned_companies": model.segment_churned_companies_.get(segment),
                          **{k: v for k, v in _scorer_dict(seg_model).items() if k in ("signals", "calibration")}}
                for segment, seg_model in model.segment_models_.items()
            },
        }
    if "metrics" in metadata:
        content["metrics"] = _plain(metadata.pop("metrics"))
    content.update(_plain(metadata))
    return content


def _version(content: dict[str, Any]) -> str:
    body = {k: v for k, v in content.items() if k not in ("version", "created_at")}
    digest = hashlib.sha256(yaml.safe_dump(body, sort_keys=True).encode()).hexdigest()[:8]
    return f"{str(content.get('created_at') or '')[:10]}-{digest}"


def save_model(model, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write the model file (YAML) atomically; returns the path. Sets `model.version_`.

    `metadata` may hold `training` ({cutoff, from, to, horizon_days, rows, churns}), `metrics`, `created_at`
    and any other top-level keys. `version` is the creation date plus a short hash of the content.
    """
    content = model_to_dict(model, metadata)
    version = _version(content)
    ordered = {"version": version, **content}
    text = "# hsutils health score model: points per signal, transforms, bands, calibration.\n" + yaml.safe_dump(
        ordered, sort_keys=False, allow_unicode=True, width=110, default_flow_style=None
    )
    path = write_text_atomic(path, text)
    model.version_ = version
    return path


_SIGNAL_ROLES = ("points", "modifier", "unused")


def _not_among(subject: str, names: list[str], what: str = "the model's columns") -> ModelInputError:
    """The error for a name that is not one of `names` (listing the first ten)."""
    listing = ", ".join(map(str, names[:10])) + (", ..." if len(names) > 10 else "")
    return ModelInputError(f"{subject} is not among {what} ({listing or 'none'})")


def _number(value: Any, key: str, low: float = -math.inf, high: float = math.inf) -> float:
    """`value` as a float; ModelInputError naming `key` unless it is a finite number within low..high."""
    if value is None:
        raise ModelInputError(f"{key} is missing")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not (
        low <= value <= high
    ):
        bounds = {(True, True): f" within {low:g}..{high:g}", (True, False): f" >= {low:g}",
                  (False, True): f" <= {high:g}", (False, False): ""}[(math.isfinite(low), math.isfinite(high))]
        raise ModelInputError(f"{key} is {value!r}; it must be a finite number{bounds}")
    return float(value)


def _numbers(value: Any, key: str, low: float = -math.inf, high: float = math.inf) -> np.ndarray:
    """A list of finite numbers within low..high as an array; ModelInputError naming `key` (and the item)."""
    if value is None:
        raise ModelInputError(f"{key} is missing")
    if not isinstance(value, list):
        raise ModelInputError(f"{key} is {value!r}; it must be a list of numbers")
    return np.array([_number(item, f"{key}[{i}]", low, high) for i, item in enumerate(value)], dtype=float)


def _mapping(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ModelInputError(f"{key} is {value!r}; it must be a mapping of keys to values")
    return value


def _check_transform(raw: Any, key: str) -> None:
    """A transform entry: kind, increasing edges (a linear transform may list a knot twice: a jump), goodness and
    missing_goodness within 0..1, all finite."""
    kind = _mapping(raw, key).get("kind", "steps")
    if kind not in ("steps", "linear"):
        raise ModelInputError(f"{key}.kind is {kind!r}; it must be steps or linear")
    edges = _numbers(raw.get("edges") or [], f"{key}.edges")
    goodness = _numbers(raw.get("goodness"), f"{key}.goodness", 0.0, 1.0)
    expected = len(edges) if kind == "linear" else len(edges) + 1
    if not len(goodness) or len(goodness) != expected:
        raise ModelInputError(
            f"{key}: {len(edges)} edges and {len(goodness)} goodness values; a {kind} transform has "
            + ("one goodness per edge (knot), at least one" if kind == "linear" else "one more goodness than edges")
        )
    falls = np.flatnonzero(np.diff(edges) < 0 if kind == "linear" else np.diff(edges) <= 0) + 1
    if len(falls):
        raise ModelInputError(f"{key}.edges[{falls[0]}] is {float(edges[falls[0]])!r}; the edges must increase")
    thrice = np.flatnonzero((np.diff(edges)[:-1] == 0) & (np.diff(edges)[1:] == 0)) + 2
    if len(thrice):
        raise ModelInputError(
            f"{key}.edges[{thrice[0]}] is {float(edges[thrice[0]])!r} a third time; a knot is listed at most twice "
            "(a jump)"
        )
    _number(raw.get("missing_goodness", 0.0), f"{key}.missing_goodness", 0.0, 1.0)


def _check_calibration(raw: Any, key: str, modifier_transforms: list[str]) -> None:
    """A calibration entry: churn probability falls as the score rises; modifier weights are <= 0 and name
    modifiers that have a transform."""
    method = _mapping(raw, key).get("method")
    if method == "logistic":
        _number(raw.get("intercept"), f"{key}.intercept")
        slope = _number(raw.get("slope"), f"{key}.slope")
        if slope >= 0:
            raise ModelInputError(
                f"{key}.slope is {slope!r}; it must be negative (a higher score means a lower churn probability)"
            )
        for name, weight in _mapping(raw.get("modifiers") or {}, f"{key}.modifiers").items():
            if name not in modifier_transforms:
                raise _not_among(f"{key}.modifiers: {name!r}", modifier_transforms, "the modifiers with a transform")
            _number(weight, f"{key}.modifiers.{name}", high=0.0)
    elif method == "isotonic":
        scores = _numbers(raw.get("scores"), f"{key}.scores")
        probabilities = _numbers(raw.get("probabilities"), f"{key}.probabilities", 0.0, 1.0)
        if not len(scores) or len(scores) != len(probabilities):
            raise ModelInputError(
                f"{key}: {len(scores)} scores and {len(probabilities)} probabilities; it needs one probability per "
                "score"
            )
        if np.any(np.diff(scores) < 0) or np.any(np.diff(probabilities) > 1e-12):
            raise ModelInputError(
                f"{key}: the scores must increase and the probabilities must not (a higher score means a lower "
                "churn probability)"
            )
    else:
        raise ModelInputError(f"{key}.method is {method!r}; it must be logistic or isotonic")


def _check_signals(
    section: dict[str, Any], where: str, columns: list[str], modifiers: list[str], fitted: bool
) -> list[str]:
    """The `signals` list of a model (or of a segment's model); returns the modifiers that have a transform.

    Each signal is one of `columns` (once), has finite points >= 0 (0 unless its role is points), and a role
    that agrees with the params: modifiers are never point sources. A fitted model's point sources have a
    transform and points summing to 100; an unfitted preset has no transforms.
    """
    signals = section.get("signals")
    if not isinstance(signals, list) or not signals:
        raise ModelInputError(f"{where}signals is {signals!r}; it must list the model's signals")
    seen: set[str] = set()
    total, sources, modifier_transforms = 0.0, 0, []
    for signal in signals:
        name = _mapping(signal, f"{where}signals item").get("name")
        key = f"{where}signal {name!r}"
        if name not in columns:
            raise _not_among(key, columns, "the model's columns" if fitted else "the preset's fixed_points")
        if name in seen:
            raise ModelInputError(f"{key} is listed twice")
        seen.add(name)
        points = _number(signal.get("points", 0.0), f"{key}: points", low=0.0)
        role = signal.get("role")
        if role not in _SIGNAL_ROLES:
            raise ModelInputError(f"{key}: role is {role!r}; it must be one of {', '.join(_SIGNAL_ROLES)}")
        if fitted and (role == "modifier") != (name in modifiers):
            raise ModelInputError(
                f"{key}: role is {role!r} but it is {'' if name in modifiers else 'not '}among the modifiers "
                f"(params.modifiers and params.urgency: {', '.join(modifiers) or 'none'})"
            )
        if role != "points" and points != 0:
            raise ModelInputError(f"{key}: points is {points!r} but a signal of role {role} earns none; set 0")
        transform = signal.get("transform")
        if transform is not None and (not fitted or role == "unused"):
            raise ModelInputError(f"{key}: a signal of role {role} in {'a fitted' if fitted else 'an unfitted'} "
                                  "model has no transform")
        if transform is None and fitted and role == "points":
            raise ModelInputError(f"{key}: a signal of role points needs its transform")
        if transform is not None:
            _check_transform(transform, f"{key}: transform")
        total, sources = total + (points if role == "points" else 0.0), sources + (role == "points")
        if role == "modifier" and transform is not None:
            modifier_transforms.append(name)
    if fitted and not sources:
        raise ModelInputError(f"{where}signals: none has role points; a score needs at least one")
    if fitted and abs(total - 100.0) > 0.05:
        raise ModelInputError(f"{where}signals: the points of the point-source signals sum to {total:g}, not 100")
    return modifier_transforms


def _check_model_content(content: dict[str, Any]) -> None:
    """Check a parsed model file before a model is built from it: ModelInputError, one line naming the key and
    its bad value, on the first problem (names, ranges, finiteness, band order, roles, calibration, segments).

    A file of kind fitted has its columns, classes and calibration; so does a fitted preset (kind preset). An
    unfitted preset (as `save_model` writes `preset(...)`) has neither columns nor calibration: its signals are
    its fixed_points, without transforms, and the callers fit it on the snapshot.
    """
    kind = content.get("kind")
    if kind not in ("fitted", "preset"):
        raise ModelInputError(f"kind is {kind!r}; it must be fitted or preset")
    bands = _mapping(content.get("bands") or {}, "bands")
    healthy = _number(bands.get("healthy", 70.0), "bands.healthy", 0.0, 100.0)
    at_risk = _number(bands.get("at_risk", 55.0), "bands.at_risk", 0.0, 100.0)
    if healthy <= at_risk:
        raise ModelInputError(f"bands: healthy ({healthy:g}) must be above at_risk ({at_risk:g})")
    defaults = HealthScore().get_params()
    params = _mapping(content.get("params") or {}, "params")
    for key in params:
        if key not in _PARAMS_IN_FILE:
            raise _not_among(f"params.{key}", list(_PARAMS_IN_FILE), "the model parameters")
    for key in _YES_NO_PARAMS:
        if key in params and yes_no_setting(params[key]) is None:
            raise ModelInputError(f"params.{key} is {params[key]!r}; it must be true or false")
    settings = {**defaults, **params}
    modifiers = settings["modifiers"] or []
    if not isinstance(modifiers, list | tuple) or not all(isinstance(m, str) for m in modifiers):
        raise ModelInputError(f"params.modifiers is {modifiers!r}; it must be a list of column names")
    urgency = settings["urgency"]
    if urgency is not None:
        if not isinstance(urgency, str):
            raise ModelInputError(f"params.urgency is {urgency!r}; it must be a column name or null")
        if _number(settings["urgency_days"], "params.urgency_days") <= 0:
            raise ModelInputError(f"params.urgency_days is {settings['urgency_days']!r}; it must be above 0")
        _number(settings["urgency_gain"], "params.urgency_gain", low=0.0)
    if "urgency" in content:  # the readable copy of the urgency params: an edit there alone would do nothing
        shown = content["urgency"]
        written = None if shown is None else tuple(_mapping(shown, "urgency").get(k) for k in ("column", "days", "gain"))
        expected = None if urgency is None else (urgency, settings["urgency_days"], settings["urgency_gain"])
        if written != expected:
            raise ModelInputError(
                f"urgency.column/days/gain {written!r} disagree with params.urgency/urgency_days/urgency_gain "
                f"{expected!r}; edit both alike"
            )
    role_modifiers = [*modifiers, *([urgency] if urgency else [])]
    fixed = content.get("fixed_points")
    if (fixed is not None) != (kind == "preset"):
        raise ModelInputError(f"kind is {kind!r} {'without' if fixed is None else 'with'} fixed_points; a preset "
                              "has fixed_points, a fitted model has none")
    for name, points in _mapping(fixed or {}, "fixed_points").items():
        _number(points, f"fixed_points.{name}", low=0.0)
    if fixed is not None and not sum(fixed.values()) > 0:
        raise ModelInputError(f"fixed_points are {fixed!r}; they must not all be 0")

    missing = [k for k in ("columns", "calibration") if content.get(k) is None]
    if kind == "preset" and len(missing) == 2:  # an unfitted preset: the callers fit it on the snapshot
        if content.get("segments"):
            raise ModelInputError("segments need a fitted model; the columns and calibration are missing")
        _check_signals(content, "", list(fixed), role_modifiers, fitted=False)
        for signal in content["signals"]:
            if signal.get("points", 0.0) != fixed[signal["name"]]:
                raise ModelInputError(
                    f"signal {signal['name']!r}: points is {signal.get('points')!r} but fixed_points say "
                    f"{fixed[signal['name']]!r}; a preset's points are its fixed_points: edit both alike"
                )
        return
    if missing:
        raise ModelInputError(
            f"kind {kind} needs its {' and '.join(missing)} (only a preset that was never fitted goes without both)"
        )
    columns = content["columns"]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(
        columns
    ):
        raise ModelInputError(f"columns is {columns!r}; it must be a list of distinct column names")
    classes = content.get("classes")
    if not isinstance(classes, list) or len(classes) != 2 or classes[0] == classes[1]:
        raise ModelInputError(f"classes is {classes!r}; it must be two distinct labels (retained, churned)")
    for name in modifiers:  # a default modifier may be absent: the model was fitted without it (fit --signals)
        if name not in columns and name not in defaults["modifiers"]:
            raise _not_among(f"params.modifiers: {name!r}", columns)
    if urgency is not None and urgency not in columns:
        raise _not_among(f"params.urgency: {urgency!r}", columns)
    for name in fixed or {}:
        if name not in columns:
            raise _not_among(f"fixed_points: {name!r}", columns)
    sections = {"": content}
    segments = content.get("segments")
    if segments:
        segments = _mapping(segments, "segments")
        column = segments.get("column")
        if not isinstance(column, str) or not column or column in columns:
            raise ModelInputError(f"segments.column is {column!r}; it must be a column name that is not a signal")
        _number(segments.get("shrinkage", SEGMENT_SHRINKAGE), "segments.shrinkage", low=0.0)
        _number(segments.get("min_churns_per_signal", MIN_CHURNS_PER_SIGNAL), "segments.min_churns_per_signal", low=0.0)
        for segment, section in _mapping(segments.get("models") or {}, "segments.models").items():
            where = f"segments.models.{segment}"
            _number(_mapping(section, where).get("weight", 0.0), f"{where}.weight", 0.0, 1.0)
            _number(section.get("churns", 0), f"{where}.churns", low=0.0)
            if section.get("churned_companies") is not None:  # absent from files written before it was recorded
                _number(section["churned_companies"], f"{where}.churned_companies", low=0.0)
            sections[f"{where}: "] = section
    for where, section in sections.items():
        modifier_transforms = _check_signals(section, where, columns, role_modifiers, fitted=True)
        _check_calibration(section.get("calibration"), f"{where}calibration", modifier_transforms)


def _scorer_from(content: dict[str, Any], section: dict[str, Any], params: dict[str, Any]) -> HealthScore:
    model = HealthScore(**params)
    columns = [str(c) for c in content["columns"]]
    points, transforms, modifier_transforms = {}, {}, {}
    for signal in section["signals"]:
        points[signal["name"]] = float(signal.get("points", 0.0))
        if signal.get("transform"):
            target = modifier_transforms if signal.get("role") == "modifier" else transforms
            target[signal["name"]] = SignalTransform.from_dict(signal["transform"])
    return model._set_state(
        columns, content["classes"], points, transforms, section["calibration"], modifier_transforms
    )


def load_model(path_or_preset: str | Path):
    """Load a model file, or return the unfitted preset of that name ("seed", "40-30-30").

    A model file yields a fitted scorer (HealthScore or SegmentedHealthScore) with `version_` and `metadata_`
    (training, metrics); a file of kind "preset" without transforms yields the unfitted preset.
    """
    text_path = str(path_or_preset)
    path = Path(text_path)
    if text_path in PRESETS and not path.is_file():
        return preset(text_path)
    if not path.is_file():
        raise ModelInputError(f"model {text_path}: no such file (or name a preset: {', '.join(PRESETS)})")
    try:
        content = load_yaml_text(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelInputError(f"model file {path}: not valid YAML ({type(exc).__name__})") from None
    if not isinstance(content, dict) or "signals" not in content or "kind" not in content:
        raise ModelInputError(f"model file {path}: not an hsutils model file (needs kind and signals)")
    try:
        _check_model_content(content)
    except ModelInputError as exc:
        raise ModelInputError(f"model file {path}: {exc}") from None
    try:
        params = dict(content.get("params") or {})
        params.update({key: yes_no_setting(params[key]) for key in _YES_NO_PARAMS if key in params})
        if "modifiers" in params:
            params["modifiers"] = tuple(params["modifiers"] or ())
        bands = content.get("bands") or {}
        params.update(healthy=float(bands.get("healthy", 70.0)), at_risk=float(bands.get("at_risk", 55.0)))
        params["name"] = content.get("name")
        if content.get("fixed_points"):
            params["fixed_points"] = {str(k): float(v) for k, v in content["fixed_points"].items()}
        if content.get("columns") is None:  # an unfitted preset (checked above)
            model = HealthScore(**params)
        else:
            model = _scorer_from(content, content, params)
            if content.get("segments"):
                spec = content["segments"]
                segmented = SegmentedHealthScore(
                    base=HealthScore(**params),
                    segment_column=spec["column"],
                    shrinkage=float(spec.get("shrinkage", SEGMENT_SHRINKAGE)),
                    min_churns_per_signal=int(spec.get("min_churns_per_signal", MIN_CHURNS_PER_SIGNAL)),
                )
                segmented.global_model_ = model
                segmented.classes_ = model.classes_
                segmented.points_ = dict(model.points_)
                segmented.feature_names_in_ = np.asarray(list(model._columns()) + [spec["column"]], dtype=object)
                segmented.n_features_in_ = len(segmented.feature_names_in_)
                segmented.segment_models_, segmented.segment_weights_, segmented.segment_churns_ = {}, {}, {}
                segmented.segment_churned_companies_ = {}
                for segment, section in (spec.get("models") or {}).items():
                    segmented.segment_models_[str(segment)] = _scorer_from(content, section, params)
                    segmented.segment_weights_[str(segment)] = float(section.get("weight", 0.0))
                    segmented.segment_churns_[str(segment)] = int(section.get("churns", 0))
                    companies = section.get("churned_companies")
                    segmented.segment_churned_companies_[str(segment)] = None if companies is None else int(companies)
                segmented.segment_points_ = {s: dict(m.points_) for s, m in segmented.segment_models_.items()}
                model = segmented
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise ModelInputError(f"model file {path}: malformed ({type(exc).__name__}: {exc})") from None
    model.version_ = str(content.get("version", ""))
    model.metadata_ = {k: content.get(k) for k in ("training", "metrics", "created_at", "kind", "name")}
    return model


# --------------------------------------------------------------------------------------------------------------
# Command line: hsutils fit
# --------------------------------------------------------------------------------------------------------------


def _summary_lines(model: HealthScore, table: pd.DataFrame | None, path: Path, version: str) -> list[str]:
    """The fit's console summary: points per signal and the held-out comparison; a row whose AUC cannot be relied
    on (evaluate.auc_unstable) is marked, and its warning from the comparison follows as a `caution:` line."""
    from hsutils.evaluate import auc_unstable, churn_evidence

    lines = [f"model {version} written to {path}", "points per signal:"]
    value_points = 0.0
    for column, points in sorted(model.points_.items(), key=lambda item: -item[1]):
        if column not in model.point_sources_:
            continue
        family = _signal_family(column)
        value_points += points if family == "value" else 0.0
        shape = model.transforms_[column].shape
        lines.append(f"  {column:<26} {points:6.2f}  ({family}, {shape})")
    if model.modifiers_:
        lines.append(f"  modifiers (no points): {', '.join(model.modifiers_)}")
    lines.append(f"points on value signals: {value_points:.1f} of 100")
    if table is not None and len(table):
        overall = table
        if "segment" in table.columns:
            overall = table[table["segment"].isin(["all", "overall", None]) | table["segment"].isna()]
            if overall.empty:
                overall = table
        lines.append("held-out comparison (test period):")
        model_column = "model" if "model" in overall.columns else overall.columns[0]
        cautions = []
        width = max([10, *(len(str(name)) for name in overall[model_column])])  # fitted_by_segment: 17
        for _, row in overall.iterrows():
            auc = row.get("auc")
            low, high = row.get("auc_low"), row.get("auc_high")
            interval = f" [{low:.3f}, {high:.3f}]" if isinstance(low, float) and isinstance(high, float) else ""
            auc_text = f"{auc:.3f}" if isinstance(auc, float) else str(auc)
            unstable = auc_unstable(churn_evidence(row), [low, high])
            marker = "  (not stable)" if unstable else ""
            lines.append(f"  {str(row[model_column]):<{width}} AUC {auc_text}{interval}{marker}")
            if unstable and row.get("warning"):
                cautions.append(f"caution: {row[model_column]}: {row['warning']}")
        lines.extend(cautions)
    return lines


@dataclass
class Candidate:
    """A quarter's candidate model: the fitted HealthScore (trained before the cutoff), the held-out comparison
    it is judged by, the statsmodels coefficient table of the logistic baseline, and the model file's metadata."""

    model: HealthScore
    comparison: Any
    coefficients: pd.DataFrame
    metadata: dict[str, Any]

    @property
    def value_points(self) -> float:
        """Points the model puts on signals of the value family."""
        return float(sum(p for c, p in self.model.points_.items() if _signal_family(c) == "value"))

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary for metrics.json: split, points, and the comparison table."""
        return {
            "cutoff": self.comparison.cutoff.isoformat(),
            "horizon_days": self.comparison.horizon_days,
            "train_rows": self.comparison.train_rows,
            "test_rows": self.comparison.test_rows,
            "signals": list(self.comparison.signals),
            "model_version": self.model.version_,
            "points": dict(self.model.points_),
            "value_points": self.value_points,
            "table": self.comparison.table.to_dict(orient="records"),
        }


def _check_horizon_spans_as_of_spacing(panel, horizon_days: int, train_churns: int) -> None:
    """InputError when the horizon is shorter than the days between the panel's as-of dates: a renewal is then
    labelled only if it ends within the horizon after an as-of date, so most renewals never reach the fit."""
    from hsutils import evaluate

    dates = evaluate.to_polars(panel).get_column("as_of").unique().sort()
    if dates.len() < 2:
        return
    spacing = dates.diff().drop_nulls().min() / timedelta(days=1)
    if horizon_days < spacing:
        raise InputError(
            f"horizon {horizon_days} day(s) is shorter than the {spacing:g} days between as-of dates: only renewals "
            f"ending within {horizon_days} day(s) after an as-of date are labelled (about {horizon_days} in "
            f"{spacing:g}; {train_churns} churns in the training period); use a horizon of at least {spacing:g} days "
            "(default 90)"
        )


def fit_candidate(
    panel,
    cutoff=None,
    horizon_days: int = 90,
    signals: list[str] | None = None,
    segment_column: str | None = "arr_segment",
    n_boot: int = 200,
    seed: int = 0,
    source: str | Path | None = None,
    source_created_at: Any = None,
) -> Candidate:
    """Fit every scorer on the panel's training period, judge them on held-out time, and return the fitted
    HealthScore as the candidate with its metadata (training period, source, held-out metrics). InputError when
    the horizon is shorter than the days between as-of dates (most renewals would fall in no horizon).

    With a `segment_column`, a SegmentedHealthScore ("fitted_by_segment") joins the comparison. When
    `source_created_at` (the snapshot's moment) is given, it is the model's `created_at`, so the same snapshot
    always gives the same model version (and a repeated push changes nothing).
    """
    from hsutils import evaluate

    train, test, cut = evaluate.time_split(panel, cutoff=cutoff, horizon_days=horizon_days)
    if train.height == 0 or test.height == 0:
        raise InputError(
            f"panel: the cutoff {cut} leaves {train.height} training and {test.height} test rows; choose another cutoff"
        )
    _check_horizon_spans_as_of_spacing(panel, horizon_days, int(train["outcome_churned"].sum() or 0))
    models = evaluate.default_models()
    if segment_column:
        models["fitted_by_segment"] = SegmentedHealthScore(base=evaluate.fitted_health_score(),
                                                           segment_column=segment_column)
    comparison = evaluate.compare_models(
        panel, cutoff=cut, horizon_days=horizon_days, signals=signals, segment_column=segment_column,
        n_boot=n_boot, seed=seed, models=models,
    )
    labelled = train.filter(train["outcome_churned"].is_not_null())
    columns = list(comparison.signals)
    model = comparison.models["fitted"]
    metadata = {
        "training": {
            "cutoff": evaluate.iso(cut),
            "from": evaluate.iso(labelled["as_of"].min()),
            "to": evaluate.iso(labelled["as_of"].max()),
            "horizon_days": int(horizon_days),
            "rows": int(labelled.height),
            "churns": int(labelled["outcome_churned"].sum()),
        },
        "source": {"snapshot": Path(source).name if source else None, "created_at": evaluate.iso(source_created_at)},
        "metrics": {"held_out": evaluate.json_safe(comparison.table.to_dict(orient="records"))},
    }
    if source_created_at is not None:
        metadata["created_at"] = evaluate.iso(source_created_at)
    model.version_ = _version(model_to_dict(model, metadata))
    coefficients = coefficient_table(
        labelled.select(columns).to_pandas(), labelled["outcome_churned"].cast(int).to_numpy()
    )
    return Candidate(model=model, comparison=comparison, coefficients=coefficients, metadata=metadata)


def points_with_intervals(
    panel,
    cutoff=None,
    horizon_days: int = 90,
    signals: list[str] | None = None,
    n_refits: int = 20,
    seed: int = 0,
) -> pd.DataFrame:
    """Points of the fitted score with 95% intervals from refits on company-bootstrap resamples of the training
    period, beside the two presets' points (rescaled to 100). Columns: signal, model, points, low, high."""
    from hsutils import evaluate

    train, _, _ = evaluate.time_split(panel, cutoff=cutoff, horizon_days=horizon_days)
    labelled = train.filter(train["outcome_churned"].is_not_null())
    columns = evaluate.panel_signals(labelled, signals)
    X = labelled.select(columns).to_pandas()
    y = labelled["outcome_churned"].cast(int).to_numpy()
    companies = labelled["company_id"].cast(str).to_numpy()
    fitted = evaluate.fitted_health_score().fit(X, y, groups=companies)
    unique, inverse = np.unique(companies, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    rows_of = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_refits):
        picked = rng.integers(0, len(unique), len(unique))
        index = np.concatenate([rows_of[i] for i in picked])
        groups = np.repeat(np.arange(len(picked)), [len(rows_of[i]) for i in picked])
        with warnings.catch_warnings():  # a sparse signal may have no values in a resample: no points there
            warnings.simplefilter("ignore", UserWarning)
            try:
                refit = clone(fitted).fit(X.iloc[index].reset_index(drop=True), y[index], groups=groups)
            except ModelInputError:  # a resample with fewer than MIN_ACCOUNTS_PER_CLASS churned accounts
                continue
        draws.append([refit.points_.get(c, 0.0) for c in columns])
    draws_array = np.array(draws) if draws else np.full((1, len(columns)), np.nan)
    table = pd.DataFrame({
        "signal": columns,
        "model": "fitted",
        "points": [fitted.points_.get(c, 0.0) for c in columns],
        "low": np.nanpercentile(draws_array, 2.5, axis=0),
        "high": np.nanpercentile(draws_array, 97.5, axis=0),
    })
    presets = []
    for name, spec in PRESETS.items():
        total = sum(spec["points"].values())
        presets.append(pd.DataFrame({
            "signal": list(spec["points"]), "model": name,
            "points": [100 * v / total for v in spec["points"].values()],
        }))
    return pd.concat([table, *presets], ignore_index=True)


def cli_fit(args) -> int:
    """`hsutils fit DIR --out MODEL.yml`: fit on the training period, judge on held-out time, write the model."""
    from hsutils.panel import build_panel
    from hsutils.snapshot import load_snapshot

    out = Path(args.out)
    if out.suffix.lower() not in (".yml", ".yaml"):
        raise InputError(f"--out {out}: the model file must end in .yml or .yaml")
    signals = [s.strip() for s in args.signals.split(",") if s.strip()] if getattr(args, "signals", None) else None
    snapshot = load_snapshot(args.dir, mapping=getattr(args, "mapping", None))
    panel = build_panel(snapshot, horizon_days=args.horizon_days, signals=signals_with_presets(signals))
    candidate = fit_candidate(
        panel, cutoff=args.cutoff, horizon_days=args.horizon_days, signals=signals, source=args.dir,
        source_created_at=snapshot.manifest.created_at,
    )
    path = save_model(candidate.model, out, candidate.metadata)
    for line in _summary_lines(candidate.model, candidate.comparison.table, path, candidate.model.version_):
        print(line)
    sys.stdout.flush()
    return 0
