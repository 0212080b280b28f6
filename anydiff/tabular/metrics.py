"""Quality figures for synthetic tables: fidelity, utility, privacy and missingness.

Every function compares pandas DataFrames of mixed dtypes (float, int, nullable ``Int64``, bool,
``category``, object / string, datetime, with missing values) that share their column names; the
column order may differ and is aligned on the reference table (``real``, ``test_real`` or
``train``).

* :func:`column_shapes` and :func:`column_pair_trends` -- the per-column and per-pair scores of
  sdmetrics (https://docs.sdv.dev/sdmetrics): ``KSComplement`` / ``TVComplement`` and
  ``CorrelationSimilarity`` / ``ContingencySimilarity``. They need the optional ``sdmetrics``
  package (``pip install 'anydiff[tabular]'``), imported only when called.
* :func:`c2st` -- classifier two-sample test on mixed tables (held-out ROC-AUC).
* :func:`ml_efficiency` -- machine-learning efficiency: train on synthetic, test on real.
* :func:`dcr` -- distance to closest record, a memorisation / privacy check against a holdout.
* :func:`missing_rate_error` and :func:`missing_pattern_similarity` -- how well missingness is
  reproduced, which the sdmetrics scores (computed on observed values only) do not see.

Column kinds
------------
Each column gets one kind, read from the reference table's dtype:

``"boolean"``
    ``bool`` / ``boolean`` dtype, or an object column whose observed values are all booleans.
``"datetime"``
    ``datetime64`` (naive or time-zone aware). Datetimes are compared as float seconds since the
    Unix epoch (aware ones in UTC), so tables of different datetime resolutions agree.
``"numeric"``
    any other numeric dtype (float, int, nullable ``Int64`` / ``Float64``) and ``timedelta64``
    (as seconds). Integer columns stay numeric whatever their number of distinct values.
``"categorical"``
    everything else: ``category``, object, string. Values are compared by equality (``1 == 1.0``).

Missing values (``NaN``, ``None``, ``pd.NA``, ``NaT``) are found with :func:`pandas.isna`.
"""
from __future__ import annotations

import itertools
import math
import numbers
import warnings
from collections import Counter
from typing import Sequence

import numpy as np
import pandas as pd

from .._utils import check_int

__all__ = ["column_shapes", "column_pair_trends", "c2st", "ml_efficiency", "dcr",
           "missing_rate_error", "missing_pattern_similarity"]

_EXTRA_HINT = "pip install 'anydiff[tabular]'"
# HistGradientBoosting accepts categorical features of at most max_bins (255 by default) levels.
_MAX_TREE_CATEGORIES = 255
# A target of integer dtype with at most this many distinct values is treated as classes.
_MAX_INTEGER_CLASSES = 20
_CONTINUOUS = ("numeric", "datetime")


# ---------------------------------------------------------------------------------------------
# Input checks and column handling (shared by every public function)
# ---------------------------------------------------------------------------------------------

def _check_frame(df, name: str) -> None:
    """Raise ValueError unless ``df`` is a non-empty DataFrame with unique column names."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {df.shape}); pass a table with at least one row "
                         "and one column")
    duplicated = df.columns[df.columns.duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"{name} has duplicated column names {duplicated}; rename them first")


def _align(reference: pd.DataFrame, ref_name: str, other, other_name: str) -> pd.DataFrame:
    """Check ``other`` and return it with the columns in the order of ``reference``."""
    _check_frame(other, other_name)
    ref_cols, other_cols = list(reference.columns), list(other.columns)
    missing = [c for c in ref_cols if c not in set(other_cols)]
    extra = [c for c in other_cols if c not in set(ref_cols)]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{other_name} lacks column(s) {missing} of {ref_name}")
        if extra:
            parts.append(f"{other_name} has extra column(s) {extra} not in {ref_name}")
        raise ValueError("; ".join(parts) + "; both tables need the same column names")
    return other[ref_cols]


def _check_seed(random_state) -> None:
    if random_state is not None and (isinstance(random_state, bool)
                                     or not isinstance(random_state, numbers.Integral)):
        raise ValueError(f"random_state={random_state!r} must be an int or None")


def _column_kind(series: pd.Series) -> str:
    """``"boolean"``, ``"datetime"``, ``"numeric"`` or ``"categorical"`` (see the module notes)."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "numeric"
    if pd.api.types.is_numeric_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
        return "numeric"
    if dtype == object:
        observed = series.dropna()
        if len(observed) and all(isinstance(v, (bool, np.bool_)) for v in observed):
            return "boolean"
    return "categorical"


def _kinds(reference: pd.DataFrame) -> dict:
    return {col: _column_kind(reference[col]) for col in reference.columns}


def _as_float(series: pd.Series, column) -> np.ndarray:
    """Numeric column -> float64 array, NaN where missing (timedeltas in seconds)."""
    try:
        if pd.api.types.is_timedelta64_dtype(series.dtype):
            values = series / pd.Timedelta(seconds=1)
        elif pd.api.types.is_numeric_dtype(series.dtype) and not isinstance(series.dtype,
                                                                             pd.CategoricalDtype):
            values = series
        else:
            values = pd.to_numeric(series.astype(object), errors="raise")
        return pd.Series(values).to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as err:
        raise ValueError(f"column {column!r} is numeric in the reference table but holds values "
                         f"that are not numbers ({err}); fix its dtype") from None


def _as_utc_naive(series: pd.Series, column) -> pd.Series:
    """Datetime column -> naive datetime64 Series (aware ones converted to UTC)."""
    try:
        if not pd.api.types.is_datetime64_any_dtype(series.dtype):
            series = pd.to_datetime(series, errors="raise")
    except (TypeError, ValueError) as err:
        raise ValueError(f"column {column!r} is a datetime in the reference table but holds values "
                         f"that are not datetimes ({err}); fix its dtype") from None
    if getattr(series.dt, "tz", None) is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    return series


def _epoch_seconds(series: pd.Series, column) -> np.ndarray:
    """Datetime column -> float64 seconds since 1970-01-01 (UTC), NaN where missing."""
    seconds = (_as_utc_naive(series, column) - pd.Timestamp(0)) / pd.Timedelta(seconds=1)
    return seconds.to_numpy(dtype=np.float64, na_value=np.nan)


def _continuous(series: pd.Series, kind: str, column) -> np.ndarray:
    return _epoch_seconds(series, column) if kind == "datetime" else _as_float(series, column)


def _as_object(series: pd.Series) -> pd.Series:
    """Discrete column -> object Series of its values, missing values as NaN."""
    values = series.astype(object)
    return values.where(~series.isna().to_numpy(), np.nan)


def _ordinal_codes(columns: Sequence[pd.Series]) -> tuple[list[np.ndarray], int]:
    """Integer codes (float, NaN where missing) over the union of the values of several columns.

    Codes follow the sorted order of the levels (by type name and text when the values cannot be
    compared), never the table a level first appears in: a code must not tell which table a row
    comes from. Returns the code arrays and the number of levels.
    """
    values = [s.astype(object).to_numpy() for s in columns]
    masks = [s.isna().to_numpy() for s in columns]
    observed = pd.unique(np.concatenate([v[~m] for v, m in zip(values, masks)]))
    try:
        ordered = sorted(observed)
    except TypeError:
        ordered = sorted(observed, key=lambda v: (type(v).__name__, str(v)))
    levels = pd.Index(ordered, dtype=object)
    codes = []
    for v, m in zip(values, masks):
        c = np.full(len(v), np.nan)
        if (~m).any():
            c[~m] = levels.get_indexer(v[~m])
        codes.append(c)
    return codes, len(levels)


def _tree_features(frames: Sequence[pd.DataFrame], kinds: dict) -> tuple[list[np.ndarray], np.ndarray]:
    """Encode tables the same way for a histogram gradient-boosting model.

    Numeric columns as they are, datetimes as epoch seconds, categorical / boolean columns as
    ordinal codes over the union of the tables' values (categorical features of the model, or plain
    numbers when they have more than 255 levels), missing numbers as NaN; then one 0/1 indicator per
    column with a missing value in any table.

    Returns the feature matrices, one ``(n_i, F)`` float64 array per table, and the ``(F,)`` boolean
    mask of the categorical features.
    """
    blocks: list[list[np.ndarray]] = [[] for _ in frames]
    is_categorical: list[bool] = []
    for col, kind in kinds.items():
        if kind in _CONTINUOUS:
            encoded = [_continuous(f[col], kind, col) for f in frames]
            is_categorical.append(False)
        else:
            encoded, n_levels = _ordinal_codes([f[col] for f in frames])
            is_categorical.append(n_levels <= _MAX_TREE_CATEGORIES)
        for block, x in zip(blocks, encoded):
            block.append(x)
    for col in kinds:
        missing = [f[col].isna().to_numpy() for f in frames]
        if any(m.any() for m in missing):
            for block, m in zip(blocks, missing):
                block.append(m.astype(np.float64))
            is_categorical.append(False)
    matrices = [np.column_stack(b) if b else np.empty((len(f), 0)) for b, f in zip(blocks, frames)]
    return matrices, np.asarray(is_categorical, dtype=bool)


def _fit_hist_gradient_boosting(task: str, x_train: np.ndarray, y_train: np.ndarray,
                                is_categorical: np.ndarray, random_state):
    """Fit a HistGradientBoosting classifier or regressor on ``(n, F)`` features.

    Features without any observed value in ``x_train`` are left out (scikit-learn cannot bin
    them; their missing indicator, if any, remains). Returns the fitted model and the ``(F,)`` mask
    of the features it uses, or ``(None, mask)`` when no feature is left or a classification
    target has a single class: then the prediction is a constant.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    used = ~np.isnan(x_train).all(axis=0)
    if not used.any() or (task == "classification" and np.unique(y_train).size < 2):
        return None, used
    cls = HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor
    categorical = is_categorical[used] if is_categorical[used].any() else None
    model = cls(categorical_features=categorical, random_state=random_state)
    return model.fit(x_train[:, used], y_train), used


def _import_sdmetrics():
    try:
        import sdmetrics.column_pairs  # noqa: F401
        import sdmetrics.single_column  # noqa: F401
    except ImportError as err:
        raise ImportError("this table metric calls sdmetrics, a dependency of anydiff's tabular "
                          f"modality; install it with: {_EXTRA_HINT}") from err
    return sdmetrics


# ---------------------------------------------------------------------------------------------
# sdmetrics: column shapes and column pair trends
# ---------------------------------------------------------------------------------------------

def column_shapes(real: pd.DataFrame, synthetic: pd.DataFrame) -> pd.DataFrame:
    """Per-column similarity of the marginal distributions (sdmetrics "column shapes").

    Numeric and datetime columns are scored with sdmetrics' ``KSComplement`` (one minus the
    two-sample Kolmogorov-Smirnov statistic, i.e. one minus the largest gap between the empirical
    CDFs); categorical and boolean columns with ``TVComplement`` (one minus the total variation
    distance between the category frequencies). Needs ``sdmetrics`` (``pip install
    'anydiff[tabular]'``).

    Missing values are dropped from each column of each table before scoring, so the scores
    describe the observed values only; use :func:`missing_rate_error` for the missing rates.
    Datetimes are passed as float seconds since the epoch (UTC), numbers as float64, so dtypes and
    datetime resolutions may differ between the tables.

    Parameters
    ----------
    real : DataFrame, shape (n, d)
        The reference table.
    synthetic : DataFrame, shape (m, d)
        The table to score, with the same column names (any order).

    Returns
    -------
    DataFrame, shape (d, 4)
        One row per column, in the order of ``real``, with columns ``"column"``, ``"kind"``
        (see the module notes), ``"metric"`` (``"KSComplement"`` or ``"TVComplement"``) and
        ``"score"`` in [0, 1] (1 = identical marginals). The score is NaN when a table has no
        observed value in that column.

    Raises
    ------
    ValueError
        If a table is not a non-empty DataFrame or their column names differ.
    ImportError
        If sdmetrics is not installed.
    """
    _check_frame(real, "real")
    synthetic = _align(real, "real", synthetic, "synthetic")
    _import_sdmetrics()
    from sdmetrics.errors import IncomputableMetricError
    from sdmetrics.single_column import KSComplement, TVComplement

    rows = []
    for col, kind in _kinds(real).items():
        if kind in _CONTINUOUS:
            metric, name = KSComplement, "KSComplement"
            r = pd.Series(_continuous(real[col], kind, col))
            s = pd.Series(_continuous(synthetic[col], kind, col))
        else:
            metric, name = TVComplement, "TVComplement"
            r, s = _as_object(real[col]), _as_object(synthetic[col])
        if r.notna().any() and s.notna().any():
            try:
                score = float(metric.compute(r, s))
            except IncomputableMetricError:
                score = math.nan
        else:
            score = math.nan
        rows.append({"column": col, "kind": kind, "metric": name, "score": score})
    return pd.DataFrame(rows, columns=["column", "kind", "metric", "score"])


def column_pair_trends(real: pd.DataFrame, synthetic: pd.DataFrame, max_pairs: int | None = None,
                       random_state: int | None = 0) -> pd.DataFrame:
    """Per-pair similarity of the dependence between two columns (sdmetrics "column pair trends").

    The metric follows the kinds of the two columns, as in sdmetrics' quality report:

    * both numeric / datetime: ``CorrelationSimilarity`` with Pearson's coefficient,
      ``1 - |r_real - r_synthetic| / 2``;
    * both categorical / boolean: ``ContingencySimilarity``, one minus the total variation distance
      between the normalised contingency tables;
    * one of each: ``ContingencySimilarity`` after sdmetrics bins the continuous column into 10
      equal-width bins fitted on the real column (outer edges open).

    Needs ``sdmetrics`` (``pip install 'anydiff[tabular]'``). Rows with a missing value in either
    column of a pair are dropped from that pair in each table (sdmetrics does so for correlations;
    here contingency tables do the same), so the scores describe observed values only; see
    :func:`missing_pattern_similarity` for the missingness itself. Datetimes are passed as float
    seconds since the epoch (UTC).

    Parameters
    ----------
    real : DataFrame, shape (n, d)
        The reference table.
    synthetic : DataFrame, shape (m, d)
        The table to score, with the same column names (any order).
    max_pairs : int or None, default None
        Score at most this many of the ``d (d - 1) / 2`` pairs, drawn at random without replacement
        (kept in table order); None scores them all.
    random_state : int or None, default 0
        Seed of the draw of pairs.

    Returns
    -------
    DataFrame, shape (n_pairs, 4)
        One row per pair (``column_1`` before ``column_2`` in the order of ``real``), with columns
        ``"column_1"``, ``"column_2"``, ``"metric"`` (``"CorrelationSimilarity"`` or
        ``"ContingencySimilarity"``) and ``"score"`` in [0, 1] (1 = same trend). The score is NaN
        when it is undefined: fewer than two complete rows, or a constant column (no correlation).

    Raises
    ------
    ValueError
        If a table is not a non-empty DataFrame, their column names differ, or an option is invalid.
    ImportError
        If sdmetrics is not installed.
    """
    _check_frame(real, "real")
    synthetic = _align(real, "real", synthetic, "synthetic")
    _check_seed(random_state)
    if max_pairs is not None:
        max_pairs = check_int(max_pairs, "max_pairs", 1)
    _import_sdmetrics()
    from sdmetrics.column_pairs import ContingencySimilarity, CorrelationSimilarity
    from sdmetrics.errors import ConstantInputError, IncomputableMetricError

    kinds = _kinds(real)
    # Every column once in the form sdmetrics gets it: floats for continuous, objects for discrete.
    prepared = {}
    for col, kind in kinds.items():
        if kind in _CONTINUOUS:
            prepared[col] = tuple(pd.Series(_continuous(t[col], kind, col), name=col)
                                  for t in (real, synthetic))
        else:
            prepared[col] = tuple(_as_object(t[col]).reset_index(drop=True)
                                  for t in (real, synthetic))

    pairs = list(itertools.combinations(real.columns, 2))
    if max_pairs is not None and len(pairs) > max_pairs:
        keep = np.sort(np.random.default_rng(random_state).choice(len(pairs), max_pairs, replace=False))
        pairs = [pairs[i] for i in keep]

    rows = []
    for col_1, col_2 in pairs:
        continuous = [kinds[c] in _CONTINUOUS for c in (col_1, col_2)]
        tables = []
        for i in range(2):
            t = pd.DataFrame({col_1: prepared[col_1][i].to_numpy(), col_2: prepared[col_2][i].to_numpy()})
            tables.append(t.dropna())
        real_pair, synthetic_pair = tables
        if all(continuous):
            metric, options = CorrelationSimilarity, {"coefficient": "Pearson"}
        else:
            binned = [c for c, cont in zip((col_1, col_2), continuous) if cont] or None
            metric, options = ContingencySimilarity, {"continuous_column_names": binned}
        score = math.nan
        if len(real_pair) >= 2 and len(synthetic_pair) >= 2:
            with warnings.catch_warnings():
                # constant columns after dropping NaN rows (scipy), chained assignment (sdmetrics)
                warnings.simplefilter("ignore")
                try:
                    score = float(metric.compute(real_pair, synthetic_pair, **options))
                except (ConstantInputError, IncomputableMetricError):
                    score = math.nan
        rows.append({"column_1": col_1, "column_2": col_2, "metric": metric.__name__,
                     "score": score})
    return pd.DataFrame(rows, columns=["column_1", "column_2", "metric", "score"])


# ---------------------------------------------------------------------------------------------
# Classifier two-sample test and machine-learning efficiency
# ---------------------------------------------------------------------------------------------

def c2st(real: pd.DataFrame, synthetic: pd.DataFrame, *, n_splits: int = 5,
         random_state: int | None = 0) -> float:
    """Classifier two-sample test on mixed-type tables: held-out ROC-AUC of real vs synthetic.

    Lopez-Paz & Oquab 2017, "Revisiting classifier two-sample tests", ICLR, with the ROC-AUC in
    place of the accuracy. The larger table is subsampled at random to the size ``k`` of the smaller
    one, rows are labelled 0 (real) and 1 (synthetic), and scikit-learn's
    ``HistGradientBoostingClassifier`` is fitted and scored on stratified K-fold splits.

    Features: numeric columns as they are (NaN left for the model's native missing-value handling),
    datetimes as seconds since the epoch, categorical / boolean / object columns ordinal-encoded
    over the union of both tables' values (codes in the sorted order of the values, so that a code
    never reveals the table its value first appears in) and declared as categorical features (as plain codes when
    a column has more than 255 levels), plus a 0/1 missing indicator per column with a missing value
    in either table. A difference in missingness alone is therefore detected.

    Parameters
    ----------
    real : DataFrame, shape (n, d)
        The reference table.
    synthetic : DataFrame, shape (m, d)
        The table to test, with the same column names (any order).
    n_splits : int, default 5
        Number of folds, >= 2; both tables need at least this many rows.
    random_state : int or None, default 0
        Seed of the subsampling, the fold shuffling and the classifier.

    Returns
    -------
    float
        Mean held-out ROC-AUC over the folds, in [0, 1]: 0.5 = indistinguishable, 1 = fully
        separable. Values a little below 0.5 are chance-level noise (of order ``0.4 / sqrt(k)``).

    Raises
    ------
    ValueError
        If a table is not a non-empty DataFrame, their column names differ, a table has fewer than
        ``n_splits`` rows, or an option is invalid.
    """
    _check_frame(real, "real")
    synthetic = _align(real, "real", synthetic, "synthetic")
    n_splits = check_int(n_splits, "n_splits", 2)
    _check_seed(random_state)
    for name, t in (("real", real), ("synthetic", synthetic)):
        if len(t) < n_splits:
            raise ValueError(f"{name} has {len(t)} rows; c2st needs at least n_splits={n_splits}")
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    k = min(len(real), len(synthetic))
    rng = np.random.default_rng(random_state)
    real_k = real.iloc[np.sort(rng.choice(len(real), k, replace=False))]
    synthetic_k = synthetic.iloc[np.sort(rng.choice(len(synthetic), k, replace=False))]
    (x_real, x_synthetic), is_categorical = _tree_features([real_k, synthetic_k], _kinds(real))
    features = np.concatenate([x_real, x_synthetic])
    labels = np.concatenate([np.zeros(k, dtype=np.int64), np.ones(k, dtype=np.int64)])

    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    aucs = []
    for train, test in folds.split(features, labels):
        clf, used = _fit_hist_gradient_boosting("classification", features[train], labels[train],
                                                is_categorical, random_state)
        # no usable feature: a constant score, AUC 0.5
        proba = np.full(len(test), 0.5) if clf is None else clf.predict_proba(features[test][:, used])[:, 1]
        aucs.append(roc_auc_score(labels[test], proba))
    return float(np.mean(aucs))


def _infer_task(target: pd.Series) -> str:
    kind = _column_kind(target)
    if kind in ("categorical", "boolean"):
        return "classification"
    if kind == "numeric" and pd.api.types.is_integer_dtype(target.dtype) \
            and target.nunique(dropna=True) <= _MAX_INTEGER_CLASSES:
        return "classification"
    return "regression"


def ml_efficiency(train_synthetic: pd.DataFrame, test_real: pd.DataFrame, target, *,
                  task: str = "auto", random_state: int | None = 0) -> float:
    """Machine-learning efficiency: train on synthetic, test on real (TSTR).

    Esteban et al. 2017 (TSTR); Xu et al. 2019, "Modeling tabular data using conditional GAN"
    (machine-learning efficacy). A scikit-learn ``HistGradientBoostingClassifier`` (scored by the
    macro F1) or ``HistGradientBoostingRegressor`` (scored by R^2) is fitted on ``train_synthetic``
    to predict ``target`` from all other columns and scored on ``test_real``. The features are
    encoded as in :func:`c2st` (same helper, categories from the union of both tables).

    With ``task="auto"`` the target's dtype in ``test_real`` decides: categorical, boolean, object /
    string, or integer (also nullable ``Int64``) with at most 20 distinct values -> classification;
    any other numeric or datetime target -> regression. Rows whose target is missing are dropped
    from both tables. Target values are matched by equality (``1 == 1.0``).

    For classification the macro F1 averages over the classes present in ``test_real``: a class the
    synthetic table lacks is never predicted and scores an F1 of 0 (no error is raised); a class
    present only in the synthetic table counts only through the wrong predictions it causes.

    Call it with ``train_synthetic=real_train`` (a real training split disjoint from ``test_real``)
    to get the real-data reference the synthetic score should be compared with.

    Parameters
    ----------
    train_synthetic : DataFrame, shape (m, d)
        Training table (synthetic, or real for the reference), same column names as ``test_real``.
    test_real : DataFrame, shape (n, d)
        Real held-out table; the reference for column order and dtypes.
    target : hashable
        Name of the column to predict.
    task : {"auto", "classification", "regression"}, default "auto"
    random_state : int or None, default 0
        Seed of the model.

    Returns
    -------
    float
        Macro F1 in [0, 1] (classification) or R^2 in (-inf, 1] (regression); higher is better.

    Raises
    ------
    ValueError
        If a table is not a non-empty DataFrame, their column names differ, ``target`` is not a
        column, no feature column is left, a table has no row with an observed target, ``task`` is
        unknown, or a regression target is not numeric.
    """
    _check_frame(test_real, "test_real")
    train_synthetic = _align(test_real, "test_real", train_synthetic, "train_synthetic")
    _check_seed(random_state)
    if target not in test_real.columns:
        raise ValueError(f"target={target!r} is not a column of test_real; columns are "
                         f"{list(test_real.columns)}")
    if test_real.shape[1] < 2:
        raise ValueError(f"test_real has no column besides target={target!r}; ml_efficiency needs "
                         "at least one feature column")
    if task not in ("auto", "classification", "regression"):
        raise ValueError(f"task={task!r} must be 'auto', 'classification' or 'regression'")
    if task == "auto":
        task = _infer_task(test_real[target])
    if task == "regression" and _column_kind(test_real[target]) not in _CONTINUOUS:
        raise ValueError(f"target={target!r} has dtype {test_real[target].dtype}, which cannot be "
                         "regressed on; use task='classification'")

    train = train_synthetic[train_synthetic[target].notna().to_numpy()]
    test = test_real[test_real[target].notna().to_numpy()]
    for name, t in (("train_synthetic", train), ("test_real", test)):
        if len(t) == 0:
            raise ValueError(f"{name} has no row with an observed target={target!r}")

    kinds = _kinds(test_real)
    target_kind = kinds.pop(target)
    (x_train, x_test), is_categorical = _tree_features([train, test], kinds)
    if task == "classification":
        (y_train, y_test), _ = _ordinal_codes([train[target], test[target]])
        y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
    else:
        y_train = _continuous(train[target], target_kind, target)
        y_test = _continuous(test[target], target_kind, target)

    model, used = _fit_hist_gradient_boosting(task, x_train, y_train, is_categorical, random_state)
    if model is not None:
        prediction = model.predict(x_test[:, used])
    elif task == "classification":
        # nothing to learn from: predict the most frequent training class
        values, counts = np.unique(y_train, return_counts=True)
        prediction = np.full(len(y_test), values[np.argmax(counts)])
    else:
        prediction = np.full(len(y_test), float(np.mean(y_train)))

    from sklearn.metrics import f1_score, r2_score

    if task == "classification":
        return float(f1_score(y_test, prediction, labels=np.unique(y_test), average="macro",
                              zero_division=0))
    return float(r2_score(y_test, prediction))


# ---------------------------------------------------------------------------------------------
# Distance to closest record
# ---------------------------------------------------------------------------------------------

class _Missing:
    """Hashable stand-in for every kind of missing value, so that NaN == NaN in row keys."""

    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _row_keys(table: pd.DataFrame, kinds: dict) -> list[tuple]:
    """One hashable tuple of normalised original values per row (numbers as float, datetimes as
    UTC-naive Timestamps, discrete values as they are, any missing value as one sentinel)."""
    columns = []
    for col, kind in kinds.items():
        s = table[col]
        if kind == "numeric":
            values = _as_float(s, col).astype(object)
        elif kind == "datetime":
            values = _as_utc_naive(s, col).astype(object).to_numpy()
        else:
            values = s.astype(object).to_numpy()
        values = np.asarray(values, dtype=object).copy()
        values[s.isna().to_numpy()] = _MISSING
        columns.append(values)
    return list(zip(*columns))


def _distance_features(train: pd.DataFrame, others: Sequence[pd.DataFrame],
                       kinds: dict) -> list[np.ndarray]:
    """Encode the training table and others in one Euclidean space for nearest-neighbour search.

    Continuous columns: ``(x - median_train) / scale_train`` with the robust scale IQR / 1.349 of the
    training column (its standard deviation when the IQR is 0, 1 when both are 0), missing -> 0.
    Categorical / boolean columns: one-hot over the union of the tables' values, times 1/sqrt(2), so
    that two different categories are at distance 1 (one robust sd); missing -> all zeros. Then one
    0/1 indicator per column with a missing value in any table.
    """
    frames = [train, *others]
    blocks: list[list[np.ndarray]] = [[] for _ in frames]
    for col, kind in kinds.items():
        if kind in _CONTINUOUS:
            values = [_continuous(f[col], kind, col) for f in frames]
            if any(np.isinf(v).any() for v in values):
                raise ValueError(f"column {col!r} holds infinite values; dcr needs finite numbers")
            ref = values[0][~np.isnan(values[0])]
            center, scale = (float(np.median(ref)), 0.0) if ref.size else (0.0, 0.0)
            if ref.size:
                q75, q25 = np.percentile(ref, [75, 25])
                scale = (q75 - q25) / 1.349
                if not scale > 0:
                    scale = float(np.std(ref))
            if not scale > 0:
                scale = 1.0
            for block, v in zip(blocks, values):
                block.append(np.nan_to_num((v - center) / scale, nan=0.0)[:, None])
        else:
            codes, n_levels = _ordinal_codes([f[col] for f in frames])
            for block, c in zip(blocks, codes):
                one_hot = np.zeros((len(c), n_levels))
                seen = ~np.isnan(c)
                one_hot[np.flatnonzero(seen), c[seen].astype(np.int64)] = 1.0 / math.sqrt(2.0)
                block.append(one_hot)
    for col in kinds:
        missing = [f[col].isna().to_numpy() for f in frames]
        if any(m.any() for m in missing):
            for block, m in zip(blocks, missing):
                block.append(m.astype(np.float64)[:, None])
    return [np.concatenate(b, axis=1) for b in blocks]


def dcr(synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame, *,
        random_state: int | None = 0, max_rows: int | None = None) -> dict:
    """Distance to closest record: does the synthetic table sit closer to its training rows?

    Park et al. 2018, "Data synthesis based on generative adversarial networks", VLDB (DCR);
    Platzer & Reutterer 2021, "Holdout-based fidelity and privacy assessment of mixed-type synthetic
    data" (comparison with a holdout). The three tables are encoded in one Euclidean space (below);
    for each synthetic row the distance to its nearest training row and to its nearest holdout row
    are found with scikit-learn's ``NearestNeighbors``. Train and holdout are first brought to the
    same size by subsampling the larger at random, so that a generator that did not memorise is
    equally likely to land nearer either.

    Encoding: numeric and datetime (epoch seconds) columns centred on the training median and
    divided by the training column's robust scale IQR / 1.349 (its standard deviation when the IQR
    is 0), missing numbers set to 0; categorical / boolean columns one-hot over the union of values,
    weighted 1/sqrt(2) so that two different categories are at distance 1, like a one-sd gap;
    missing categories all-zero; plus a 0/1 indicator per column with a missing value in any table.

    Parameters
    ----------
    synthetic : DataFrame, shape (m, d)
        The table to check.
    train : DataFrame, shape (n, d)
        The real rows the generator was fitted on; the reference for column order and dtypes.
    holdout : DataFrame, shape (h, d)
        Real rows from the same source the generator never saw.
    random_state : int or None, default 0
        Seed of the subsampling.
    max_rows : int or None, default None
        Use at most this many rows of each table (drawn at random) in the distance computation;
        None uses all (after equalising train and holdout).

    Returns
    -------
    dict
        ``"share_closer_to_train"``: float in [0, 1], the share of synthetic rows strictly closer to
        the training set than to the holdout, ties counted half; about 0.5 means no memorisation,
        near 1 means the synthetic rows copy or hug the training rows.
        ``"exact_copies"``: int, the number of synthetic rows (all of them, not subsampled) equal to
        some row of the full training table, compared on the original values (numbers by value
        whatever their dtype, NaN == NaN).
        ``"median_dcr_train"``, ``"median_dcr_holdout"``: float, medians over the synthetic rows of
        the distance to the nearest training / holdout row, in the encoded units.

    Raises
    ------
    ValueError
        If a table is not a non-empty DataFrame, the column names differ, a continuous column holds
        infinite values, or an option is invalid.
    """
    _check_frame(train, "train")
    synthetic = _align(train, "train", synthetic, "synthetic")
    holdout = _align(train, "train", holdout, "holdout")
    _check_seed(random_state)
    if max_rows is not None:
        max_rows = check_int(max_rows, "max_rows", 1)
    from sklearn.neighbors import NearestNeighbors

    kinds = _kinds(train)
    train_keys = set(_row_keys(train, kinds))
    exact_copies = int(sum(key in train_keys for key in _row_keys(synthetic, kinds)))

    rng = np.random.default_rng(random_state)

    def subsample(table: pd.DataFrame, size: int) -> pd.DataFrame:
        if len(table) <= size:
            return table
        return table.iloc[np.sort(rng.choice(len(table), size, replace=False))]

    size = min(len(train), len(holdout))
    if max_rows is not None:
        size = min(size, max_rows)
    train_s, holdout_s = subsample(train, size), subsample(holdout, size)
    synthetic_s = subsample(synthetic, max_rows) if max_rows is not None else synthetic

    x_train, x_synthetic, x_holdout = _distance_features(train_s, [synthetic_s, holdout_s], kinds)
    d_train = NearestNeighbors(n_neighbors=1).fit(x_train).kneighbors(x_synthetic)[0][:, 0]
    d_holdout = NearestNeighbors(n_neighbors=1).fit(x_holdout).kneighbors(x_synthetic)[0][:, 0]
    closer = (d_train < d_holdout) + 0.5 * (d_train == d_holdout)
    return {
        "share_closer_to_train": float(np.mean(closer)),
        "exact_copies": exact_copies,
        "median_dcr_train": float(np.median(d_train)),
        "median_dcr_holdout": float(np.median(d_holdout)),
    }


# ---------------------------------------------------------------------------------------------
# Missingness
# ---------------------------------------------------------------------------------------------

def missing_rate_error(real: pd.DataFrame, synthetic: pd.DataFrame) -> pd.Series:
    """Per-column absolute difference of the missing rates, in percentage points.

    Parameters
    ----------
    real : DataFrame, shape (n, d)
        The reference table.
    synthetic : DataFrame, shape (m, d)
        The table to score, with the same column names (any order).

    Returns
    -------
    Series, shape (d,)
        ``100 * |mean(isna(real[c])) - mean(isna(synthetic[c]))|`` for each column ``c``, indexed by
        column name in the order of ``real``, named ``"missing_rate_error"``; 0 is best, 100 worst.

    Raises
    ------
    ValueError
        If a table is not a non-empty DataFrame or their column names differ.
    """
    _check_frame(real, "real")
    synthetic = _align(real, "real", synthetic, "synthetic")
    rate_real = real.isna().mean(axis=0).to_numpy(dtype=np.float64)
    rate_synthetic = synthetic.isna().mean(axis=0).to_numpy(dtype=np.float64)
    return pd.Series(100.0 * np.abs(rate_real - rate_synthetic), index=real.columns,
                     name="missing_rate_error")


def missing_pattern_similarity(real: pd.DataFrame, synthetic: pd.DataFrame) -> float:
    """One minus the total variation distance between the tables' missingness patterns.

    A row's pattern is the set of columns missing in it. With ``p`` and ``q`` the frequencies of the
    patterns among the rows of ``real`` and ``synthetic``, the score is
    ``1 - 0.5 * sum_pattern |p - q|``: 1 when the patterns (which columns are missing together)
    have the same distribution, 0 when the tables share no pattern. Complete rows form a pattern too.

    Parameters
    ----------
    real : DataFrame, shape (n, d)
        The reference table.
    synthetic : DataFrame, shape (m, d)
        The table to score, with the same column names (any order).

    Returns
    -------
    float
        Similarity in [0, 1].

    Raises
    ------
    ValueError
        If a table is not a non-empty DataFrame or their column names differ.
    """
    _check_frame(real, "real")
    synthetic = _align(real, "real", synthetic, "synthetic")
    counts = []
    for t in (real, synthetic):
        patterns = t.isna().to_numpy(dtype=bool)
        counts.append(Counter(map(bytes, np.packbits(patterns, axis=1))))
    p, q = counts
    n_real, n_synthetic = len(real), len(synthetic)
    total_variation = 0.5 * sum(abs(p[k] / n_real - q[k] / n_synthetic) for k in p.keys() | q.keys())
    return float(max(0.0, 1.0 - total_variation))
