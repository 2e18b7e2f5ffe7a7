"""Reference models the health score is judged against: a logistic regression and a gradient-boosting ceiling.

- `LogisticBaseline`: median imputation with missing-value indicators, standard scaling and an L2 logistic
  regression (scikit-learn), the baseline for cross-validation and held-out comparisons.
- `coefficient_table(X, y)`: the same logistic model fitted with statsmodels, reported as a table of
  coefficients per standard deviation of each signal, standard errors, 95% intervals and p-values.
- `BoostingReference`: a HistGradientBoostingClassifier (missing values handled natively), the ceiling of what an
  unconstrained model finds on the same signals.

Both estimators take numeric DataFrames (or arrays) and expose `fit` / `predict_proba` (column 1 = churn).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from hsutils.errors import InputError, example_rows


class BaselineInputError(InputError, ValueError):
    """Bad input to a baseline model (also a ValueError, as scikit-learn expects)."""


def _numeric_frame(X, what: str = "X") -> pd.DataFrame:
    """X as a float DataFrame (NaN for missing); clear error on non-numeric columns."""
    if hasattr(X, "to_pandas") and not isinstance(X, pd.DataFrame):
        X = X.to_pandas()
    if not isinstance(X, pd.DataFrame):
        array = np.asarray(X, dtype=float)
        if array.ndim != 2:
            raise BaselineInputError(f"{what}: expected a 2-d table, got shape {array.shape}")
        X = pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])
    bad = [c for c in X.columns if not (pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c]))]
    if bad:
        raise BaselineInputError(
            f"{what}: column(s) {', '.join(map(str, bad[:3]))} are not numeric; rows: {example_rows(X[bad[:3]])}"
        )
    return pd.DataFrame(X.to_numpy(dtype=float, na_value=np.nan), columns=X.columns, index=X.index)


def _binary_target(y) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).ravel()
    classes = np.unique(y)
    if len(classes) != 2:
        raise BaselineInputError(f"y: need exactly two classes (churned and not), got {len(classes)} class(es)")
    return (y == classes[1]).astype(int), classes


class _BinaryScorer(ClassifierMixin, BaseEstimator):
    """Shared input handling of the reference models: numeric X (NaN allowed), binary y, column checks."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        return tags

    def _validated(self, X, y=None, *, reset: bool):
        if hasattr(X, "to_pandas") and not isinstance(X, pd.DataFrame | np.ndarray):
            X = X.to_pandas()
        if isinstance(X, pd.DataFrame):
            if not reset and hasattr(self, "feature_names_in_") and set(X.columns) == set(self.feature_names_in_):
                X = X[list(self.feature_names_in_)]
            X = _numeric_frame(X)
        try:
            if y is None:
                return validate_data(self, X, reset=reset, ensure_all_finite="allow-nan", dtype=np.float64), None
            matrix, y = validate_data(self, X, y, reset=reset, ensure_all_finite="allow-nan", dtype=np.float64)
            check_classification_targets(y)
        except BaselineInputError:
            raise
        except ValueError as exc:
            raise BaselineInputError(str(exc)) from None
        kind = type_of_target(y, input_name="y")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise BaselineInputError("y: only one class is present; a churn model needs churned and retained rows")
        if kind != "binary":
            raise BaselineInputError(f"Only binary classification is supported. The type of the target is {kind}.")
        return matrix, (y == self.classes_[1]).astype(int)

    def predict(self, X) -> np.ndarray:
        churn = self.predict_proba(X)[:, 1]
        return self.classes_[(churn >= 0.5).astype(int)]


class LogisticBaseline(_BinaryScorer):
    """Logistic regression on the raw signals: impute (median) + missing indicators + scale + L2 logistic.

    `C` is the inverse regularisation strength of scikit-learn's LogisticRegression.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 2000) -> None:
        self.C = C
        self.max_iter = max_iter

    def fit(self, X, y) -> LogisticBaseline:
        matrix, target = self._validated(X, y, reset=True)
        self.pipeline_ = make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=self.C, max_iter=self.max_iter),
        ).fit(matrix, target)
        self.n_iter_ = self.pipeline_[-1].n_iter_
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "pipeline_")
        matrix, _ = self._validated(X, reset=False)
        return self.pipeline_.predict_proba(matrix)


class BoostingReference(_BinaryScorer):
    """HistGradientBoostingClassifier on the raw signals (missing values handled natively): the ceiling.

    `n_threads` limits its OpenMP threads (default 1: on a small or busy machine, more threads mostly wait for
    each other, several times slower; None lets scikit-learn use every core).
    """

    def __init__(
        self,
        max_iter: int = 100,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 15,
        l2_regularization: float = 1.0,
        random_state: int = 0,
        n_threads: int | None = 1,
    ) -> None:
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.l2_regularization = l2_regularization
        self.random_state = random_state
        self.n_threads = n_threads

    def fit(self, X, y) -> BoostingReference:
        matrix, target = self._validated(X, y, reset=True)
        # a column without any value (a signal the portal does not record) carries nothing: held as a constant,
        # as scikit-learn's binning fails on a column of missing values only
        self.empty_columns_ = np.isnan(matrix).all(axis=0)
        matrix = np.where(self.empty_columns_, 0.0, matrix)
        with threadpool_limits(limits=self.n_threads):
            self.model_ = HistGradientBoostingClassifier(
                max_iter=self.max_iter,
                learning_rate=self.learning_rate,
                max_leaf_nodes=self.max_leaf_nodes,
                l2_regularization=self.l2_regularization,
                early_stopping=False,
                random_state=self.random_state,
            ).fit(matrix, target)
        self.n_iter_ = self.model_.n_iter_
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        matrix, _ = self._validated(X, reset=False)
        with threadpool_limits(limits=self.n_threads):
            return self.model_.predict_proba(np.where(self.empty_columns_, 0.0, matrix))


def coefficient_table(X, y, alpha: float = 0.05) -> pd.DataFrame:
    """Logistic regression (statsmodels Logit) of churn on the signals, one row per term.

    Signals are median-imputed and standardised, so a coefficient is the change in log-odds of churn per standard
    deviation of the signal; a column with missing values gets an extra `<name>_missing` indicator term. Columns
    that are constant are dropped. Columns: term, coef, std_err, ci_low, ci_high, p_value, odds_ratio.
    """
    import statsmodels.api as sm

    frame = _numeric_frame(X)
    target, _ = _binary_target(y)
    design = pd.DataFrame(index=frame.index)
    for column in frame.columns:
        values = frame[column]
        missing = values.isna()
        if missing.all():
            continue
        filled = values.fillna(values.median())
        sd = filled.std(ddof=0)
        if sd > 0:
            design[str(column)] = (filled - filled.mean()) / sd
        if missing.any() and not missing.all() and missing.nunique() > 1:
            design[f"{column}_missing"] = missing.astype(float)
    if design.shape[1] == 0:
        raise BaselineInputError("coefficient table: no column varies; nothing to estimate")
    design = sm.add_constant(design, has_constant="add")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = sm.Logit(target, design).fit(disp=0, maxiter=200)
        except np.linalg.LinAlgError:
            try:
                result = sm.Logit(target, design).fit(method="bfgs", disp=0, maxiter=500)
            except np.linalg.LinAlgError as exc:
                raise BaselineInputError(f"coefficient table: the signals are collinear ({exc})") from None
    interval = result.conf_int(alpha=alpha)
    table = pd.DataFrame(
        {
            "term": design.columns,
            "coef": result.params.to_numpy(),
            "std_err": result.bse.to_numpy(),
            "ci_low": interval.iloc[:, 0].to_numpy(),
            "ci_high": interval.iloc[:, 1].to_numpy(),
            "p_value": result.pvalues.to_numpy(),
        }
    )
    table["odds_ratio"] = np.exp(table["coef"])
    return table


def cross_validated_auc(model, X, y, folds: int = 5, random_state: int = 0) -> float:
    """Mean ROC AUC of `model` (any estimator with predict_proba) under stratified k-fold cross-validation."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X, dtype=float))
    target = np.asarray(y).ravel()
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    aucs = []
    for train_idx, test_idx in splitter.split(frame, target):
        fitted = clone(model).fit(frame.iloc[train_idx], target[train_idx])
        aucs.append(roc_auc_score(target[test_idx], fitted.predict_proba(frame.iloc[test_idx])[:, 1]))
    return float(np.mean(aucs))
