"""Data sets of the tabular benchmark (``benchmarks/tabular.py``): one function per set, each
returning a pandas DataFrame with proper dtypes (categoricals as ``category``, integer columns as
``int64`` or, where they have missing values, nullable ``Int64``, the target as a column).

* :func:`load_wine_frame` -- sklearn's wine (178 x 14): 13 measurements (``magnesium`` and
  ``proline`` are whole numbers: int64) and ``target`` (3 classes, category).
* :func:`load_cancer_frame` -- sklearn's breast cancer (569 x 31): 30 floats and ``target``
  (malignant / benign, category).
* :func:`load_digits_frame` -- sklearn's digits (1797 x 65): 64 int64 pixels in 0..16 and
  ``target`` (0..9, category).
* :func:`load_penguins_frame` -- palmerpenguins (344 x 8): species, island, sex (category, sex
  with NaN), four measurements with NaN (the two whole-number ones as nullable Int64), ``year``
  int64. Needs ``pip install palmerpenguins``.
* :func:`make_mixed` -- a generated mixed-type table (``n`` rows, 15 columns by default, up to any
  number with ``n_columns``): correlated floats, skewed floats, counts, categoricals of 3 to 50
  levels that depend on the numerics, a boolean, a datetime and missing values in three columns
  (5-20 %) whose missingness depends on another column.

``DATASETS`` maps the benchmark's set names to ``(loader, target column)``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def _sklearn_frame(loader, target_names=None) -> pd.DataFrame:
    bunch = loader(as_frame=True)
    df = bunch.frame.copy()
    for col in df.columns[:-1]:
        values = df[col].to_numpy()
        if np.issubdtype(values.dtype, np.floating) and np.all(values == np.round(values)):
            df[col] = values.astype(np.int64)
    target = df["target"].to_numpy()
    if target_names is not None:
        df["target"] = pd.Categorical.from_codes(target, categories=list(target_names))
    else:
        df["target"] = pd.Categorical(target)
    return df


def load_wine_frame() -> pd.DataFrame:
    from sklearn.datasets import load_wine

    return _sklearn_frame(load_wine, ["class_0", "class_1", "class_2"])


def load_cancer_frame() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    return _sklearn_frame(load_breast_cancer, ["malignant", "benign"])


def load_digits_frame() -> pd.DataFrame:
    from sklearn.datasets import load_digits

    return _sklearn_frame(load_digits)


def load_penguins_frame() -> pd.DataFrame:
    from palmerpenguins import load_penguins

    df = load_penguins()
    for col in ("species", "island", "sex"):
        df[col] = df[col].astype("category")
    for col in ("bill_length_mm", "bill_depth_mm"):
        df[col] = df[col].astype(np.float64)
    for col in ("flipper_length_mm", "body_mass_g"):  # whole numbers with NaN
        df[col] = df[col].round().astype("Int64")
    df["year"] = df["year"].astype(np.int64)
    return df.reset_index(drop=True)


def _categorical_from_logits(logits: np.ndarray, rng: np.random.Generator, labels) -> pd.Categorical:
    """One draw per row from softmax(logits) (n, k); a category with the given labels."""
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random(len(p))[:, None]
    codes = np.minimum((p.cumsum(axis=1) < u).sum(axis=1), p.shape[1] - 1)
    return pd.Categorical.from_codes(codes, categories=list(labels))


def make_mixed(n: int = 5000, seed: int = 0, n_columns: int = 15) -> pd.DataFrame:
    """A mixed-type table of ``n`` rows with dependence between all kinds of columns.

    The 15 base columns:

    ``x1, x2, x3``
        correlated Gaussians (correlations 0.6, -0.4, 0.3).
    ``income``
        log-normal, depends on ``x1``; 5-20 % missing, more often when ``x1`` is high (MAR).
    ``wait``
        gamma (skewed, shape 1.5), scale depends on ``x2``.
    ``ratio``
        beta in (0, 1), depends on ``x3``; rounded to 4 decimals.
    ``score``
        ``x1 + 0.5 x2`` plus noise; missing 5 % in region A, 10 % in B, 20 % in C (MAR on
        ``region``).
    ``visits``
        Poisson count (int64), rate ``exp(1 + 0.5 x1)``.
    ``items``
        negative-binomial count (int64, heavy tail), depends on ``visits``.
    ``region``
        3 levels, logits from ``x2``.
    ``segment``
        5 levels, logits from ``x1``, ``x2`` and ``region`` (the benchmark's target column).
    ``product``
        12 levels, logits from ``segment`` and ``income``; about 8 % missing, 3 % for members and
        15 % for the others (MAR on ``member``).
    ``city``
        50 levels, Zipf-like frequencies, shifted by ``x3``.
    ``member``
        boolean, more likely with high ``visits``.
    ``signup``
        datetime (day resolution) between 2015 and 2024, later with high ``x2``.

    Columns beyond 15 (``n_columns``) cycle through: a float linear in ``x1``, ``x2`` plus noise
    (``f<i>``), a Poisson count of it (``c<i>``, int64) and a 6-level category binned from it
    (``k<i>``).
    """
    if n_columns < 15:
        raise ValueError(f"n_columns={n_columns} must be >= 15")
    rng = np.random.default_rng(seed)
    cov = np.array([[1.0, 0.6, -0.4], [0.6, 1.0, 0.3], [-0.4, 0.3, 1.0]])
    x = rng.multivariate_normal(np.zeros(3), cov, size=n)
    x1, x2, x3 = x[:, 0], x[:, 1], x[:, 2]
    df = pd.DataFrame({"x1": x1.round(5), "x2": x2.round(5), "x3": x3.round(5)})

    income = np.exp(10.5 + 0.5 * x1 + 0.4 * rng.standard_normal(n))
    df["income"] = income.round(2)
    df["wait"] = rng.gamma(1.5, np.exp(0.4 * x2), size=n).round(3)
    a = np.exp(0.6 * x3)
    df["ratio"] = rng.beta(2.0 * a, 2.0, size=n).round(4)
    df["score"] = (x1 + 0.5 * x2 + 0.5 * rng.standard_normal(n)).round(4)
    visits = rng.poisson(np.exp(1.0 + 0.5 * x1))
    df["visits"] = visits.astype(np.int64)
    df["items"] = rng.negative_binomial(2, 2.0 / (2.0 + 1.0 + 0.8 * visits)).astype(np.int64)

    region = _categorical_from_logits(np.column_stack([0 * x2, 1.2 * x2, -1.2 * x2 + 0.3]), rng, "ABC")
    df["region"] = region
    rcode = np.asarray(region.codes)
    seg_logits = np.column_stack([1.5 * x1, -1.5 * x1, 1.5 * x2, -1.5 * x2 + 0.5 * (rcode == 2),
                                  0.8 * (rcode == 1) + 0.5 * x1 * x2])
    segment = _categorical_from_logits(seg_logits, rng, ["s1", "s2", "s3", "s4", "s5"])
    df["segment"] = segment
    scode = np.asarray(segment.codes)
    lin = (np.log(income) - 10.5) / 0.64
    prod_logits = np.stack([0.9 * np.cos(j + 1.3 * scode) + 0.5 * lin * np.sin(0.7 * j) - 0.12 * j
                            for j in range(12)], axis=1)
    df["product"] = _categorical_from_logits(prod_logits, rng, [f"p{j:02d}" for j in range(12)])
    city_logits = np.stack([-1.0 * np.log1p(j) + 0.6 * x3 * np.cos(0.3 * j) for j in range(50)], axis=1)
    df["city"] = _categorical_from_logits(city_logits, rng, [f"city{j:02d}" for j in range(50)])
    member = rng.random(n) < 1.0 / (1.0 + np.exp(-(visits - 3.0) / 1.5))
    df["member"] = member
    days = np.clip(1800 + 700 * x2 + 400 * rng.standard_normal(n), 0, 3650).round()
    df["signup"] = pd.Timestamp("2015-01-01") + pd.to_timedelta(days, unit="D")
    df["signup"] = df["signup"].astype("datetime64[ns]")

    # missing values, each depending on another column (MAR)
    p_income = 1.0 / (1.0 + np.exp(-(x1 - 1.2) * 2.0)) * 0.5 + 0.02  # ~ 10 %
    df.loc[rng.random(n) < p_income, "income"] = np.nan
    p_score = np.array([0.05, 0.10, 0.20])[rcode]
    df.loc[rng.random(n) < p_score, "score"] = np.nan
    p_product = np.where(member, 0.03, 0.15)
    prod = df["product"].copy()
    prod[rng.random(n) < p_product] = np.nan
    df["product"] = prod

    extra = n_columns - 15
    for i in range(extra):
        kind, j = i % 3, i // 3
        w1, w2 = np.cos(0.9 * j), np.sin(0.9 * j)
        f = w1 * x1 + w2 * x2 + 0.5 * rng.standard_normal(n)
        if kind == 0:
            df[f"f{j}"] = f.round(4)
        elif kind == 1:
            df[f"c{j}"] = rng.poisson(np.exp(0.5 + 0.4 * f)).astype(np.int64)
        else:
            bins = np.digitize(f + 0.3 * rng.standard_normal(n), [-1.5, -0.7, 0.0, 0.7, 1.5])
            df[f"k{j}"] = pd.Categorical.from_codes(bins, categories=[f"q{b}" for b in range(6)])
    return df


DATASETS = {
    "wine": (load_wine_frame, "target"),
    "cancer": (load_cancer_frame, "target"),
    "digits": (load_digits_frame, "target"),
    "penguins": (load_penguins_frame, "species"),
    "mixed": (make_mixed, "segment"),
}
