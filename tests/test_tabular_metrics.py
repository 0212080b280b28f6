"""Tests of anydiff.tabular.metrics against references: brute-force implementations, scipy, an
independently built scikit-learn pipeline, and tables whose answer is known by construction."""
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anydiff.tabular import metrics as tm


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread():
    """HistGradientBoosting's OpenMP threads spin against each other on a busy shared machine
    (several times slower); the small fits here run best on one thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def make_table(n, seed, *, cat_p=(0.5, 0.3, 0.2)):
    """A mixed-type table: float with NaN, correlated float, nullable Int64, category, bool, object
    strings with None, datetime with NaT, and a learnable string label."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = 2.0 * x + rng.normal(size=n)
    k = pd.array(rng.integers(0, 5, size=n), dtype="Int64")
    k[rng.random(n) < 0.1] = pd.NA
    cat = pd.Categorical(rng.choice(["a", "b", "c"], size=n, p=cat_p), categories=["a", "b", "c"])
    flag = rng.random(n) < 0.3
    s = rng.choice(np.array(["u", "v", None], dtype=object), size=n, p=[0.5, 0.4, 0.1])
    when = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 365, size=n), unit="D")
    when = pd.Series(when).where(rng.random(n) > 0.05)
    score = x + 1.5 * (np.asarray(cat) == "a") - 1.0 * flag + 0.5 * rng.normal(size=n)
    label = np.where(score > 0.3, "pos", "neg").astype(object)
    x_missing = np.where(rng.random(n) < 0.1, np.nan, x)
    return pd.DataFrame({"x": x_missing, "y": y, "k": k, "cat": cat, "flag": flag, "s": s,
                         "when": when, "label": label})


# ------------------------------------------------------------------------------------------------
# input checks
# ------------------------------------------------------------------------------------------------

def _calls():
    return {
        "column_shapes": lambda r, s: tm.column_shapes(r, s),
        "column_pair_trends": lambda r, s: tm.column_pair_trends(r, s),
        "c2st": lambda r, s: tm.c2st(r, s),
        "ml_efficiency": lambda r, s: tm.ml_efficiency(s, r, "y"),
        "dcr": lambda r, s: tm.dcr(s, r, r),
        "dcr_holdout": lambda r, s: tm.dcr(r, r, s),
        "missing_rate_error": lambda r, s: tm.missing_rate_error(r, s),
        "missing_pattern_similarity": lambda r, s: tm.missing_pattern_similarity(r, s),
    }


@pytest.mark.parametrize("name", list(_calls()))
def test_column_mismatch_names_the_column(name):
    call = _calls()[name]
    real = make_table(20, 0)
    with pytest.raises(ValueError, match="'when'"):
        call(real, real.drop(columns="when"))
    with pytest.raises(ValueError, match="'extra_col'"):
        call(real, real.assign(extra_col=1.0))
    with pytest.raises(ValueError, match="empty"):
        call(real, real.iloc[:0])
    with pytest.raises(ValueError, match="DataFrame"):
        call(real, real.to_numpy())


def test_empty_reference_and_bad_options():
    real = make_table(20, 0)
    with pytest.raises(ValueError, match="empty"):
        tm.missing_rate_error(real.iloc[:0], real)
    with pytest.raises(ValueError, match="n_splits"):
        tm.c2st(real, real.iloc[:3], n_splits=5)
    with pytest.raises(ValueError, match="target"):
        tm.ml_efficiency(real, real, "nope")
    with pytest.raises(ValueError, match="task"):
        tm.ml_efficiency(real, real, "y", task="ranking")
    with pytest.raises(ValueError, match="classification"):
        tm.ml_efficiency(real, real, "label", task="regression")
    with pytest.raises(ValueError, match="max_rows"):
        tm.dcr(real, real, real, max_rows=0)


def test_column_order_is_aligned_on_real():
    real = make_table(60, 0)
    shuffled_cols = real[list(reversed(real.columns))]
    err = tm.missing_rate_error(real, shuffled_cols)
    assert list(err.index) == list(real.columns)
    assert (err == 0).all()
    assert tm.missing_pattern_similarity(real, shuffled_cols) == 1.0


def test_sdmetrics_missing_gives_install_hint(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sdmetrics", None)
    real = make_table(20, 0)
    with pytest.raises(ImportError, match=r"anydiff\[tabular\]"):
        tm.column_shapes(real, real)


# ------------------------------------------------------------------------------------------------
# missingness, against brute force
# ------------------------------------------------------------------------------------------------

def _is_missing(v):
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def _brute_patterns(df):
    rows = df.astype(object).itertuples(index=False)
    return Counter(tuple(_is_missing(v) for v in row) for row in rows)


def test_missing_rates_and_patterns_by_hand():
    real = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0], "b": ["x", "y", None, "z"]})
    synthetic = pd.DataFrame({"b": ["x", "y", "z", "w"], "a": [1.0, 2.0, 3.0, 4.0]})
    # real: 25 % missing in each column; synthetic: none.
    err = tm.missing_rate_error(real, synthetic)
    assert err.to_dict() == pytest.approx({"a": 25.0, "b": 25.0})
    # patterns: real {complete: 1/2, a: 1/4, b: 1/4}, synthetic {complete: 1}; TV = 1/2.
    assert tm.missing_pattern_similarity(real, synthetic) == pytest.approx(0.5)


def test_missing_metrics_against_brute_force():
    real, synthetic = make_table(200, 1), make_table(150, 2)
    synthetic.loc[synthetic.index[:40], "y"] = np.nan
    err = tm.missing_rate_error(real, synthetic)
    for col in real.columns:
        rate_r = sum(_is_missing(v) for v in real[col].astype(object)) / len(real)
        rate_s = sum(_is_missing(v) for v in synthetic[col].astype(object)) / len(synthetic)
        assert err[col] == pytest.approx(100 * abs(rate_r - rate_s), abs=1e-12)
    p, q = _brute_patterns(real), _brute_patterns(synthetic)
    tv = 0.5 * sum(abs(p[k] / len(real) - q[k] / len(synthetic)) for k in set(p) | set(q))
    assert tm.missing_pattern_similarity(real, synthetic) == pytest.approx(1 - tv, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 11), st.integers(0, 2 ** 32 - 1))
def test_missing_pattern_similarity_hypothesis(n_real, n_synthetic, n_cols, seed):
    rng = np.random.default_rng(seed)
    tables = []
    for n in (n_real, n_synthetic):
        values = rng.normal(size=(n, n_cols))
        values[rng.random((n, n_cols)) < 0.4] = np.nan
        tables.append(pd.DataFrame(values, columns=[f"c{i}" for i in range(n_cols)]))
    p, q = _brute_patterns(tables[0]), _brute_patterns(tables[1])
    tv = 0.5 * sum(abs(p[k] / n_real - q[k] / n_synthetic) for k in set(p) | set(q))
    assert tm.missing_pattern_similarity(*tables) == pytest.approx(1 - tv, abs=1e-12)


# ------------------------------------------------------------------------------------------------
# c2st
# ------------------------------------------------------------------------------------------------

def test_c2st_same_distribution_is_chance():
    auc = tm.c2st(make_table(1000, 0), make_table(1000, 1))
    assert abs(auc - 0.5) < 0.06


def test_c2st_balances_unequal_sizes():
    auc = tm.c2st(make_table(900, 12), make_table(400, 13), n_splits=3)
    assert abs(auc - 0.5) < 0.08


def test_c2st_detects_categorical_frequency_shift():
    real = make_table(500, 20, cat_p=(0.7, 0.2, 0.1))
    synthetic = make_table(500, 21, cat_p=(0.1, 0.2, 0.7))
    # the best single-column classifier reaches AUC 0.86 here
    assert tm.c2st(real, synthetic) > 0.65


def test_c2st_detects_numeric_shift():
    real, synthetic = make_table(500, 30), make_table(500, 31)
    synthetic["y"] = synthetic["y"] + synthetic["y"].std()
    assert tm.c2st(real, synthetic) > 0.65


@pytest.mark.parametrize("column", ["flag", "y"])
def test_c2st_detects_missingness_alone(column):
    # same distribution (not a row copy: twin rows with opposite labels in the training folds
    # would be memorised and mislead the held-out predictions), half of one column blanked
    real, synthetic = make_table(500, 40), make_table(500, 41)
    blank = np.random.default_rng(0).random(len(real)) < 0.5
    synthetic[column] = synthetic[column].astype(object).where(~blank, None) if column == "flag" \
        else synthetic[column].where(~blank)
    # the missing indicator alone separates at AUC 0.75
    assert tm.c2st(real, synthetic) > 0.65


def _odd_table(n, seed):
    """Over 255 categories (plain codes in the model), an all-missing column, a constant,
    time-zone aware datetimes and an object column of booleans with None."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": [f"id{i}" for i in rng.integers(0, 1000, size=n)],
        "empty": np.full(n, np.nan),
        "const": 1.0,
        "when": pd.Timestamp("2021-01-01", tz="Europe/Berlin")
        + pd.to_timedelta(rng.integers(0, 10_000, size=n), unit="h"),
        "ob": pd.Series(rng.random(n) < 0.5).astype(object).where(rng.random(n) < 0.9, None),
        "f": rng.normal(size=n)})


def test_c2st_codes_do_not_reveal_the_table():
    # Level codes must not depend on the table a level first appears in (a regression: codes by
    # order of appearance put synthetic-only ids above all real ones, AUC 0.8 on equal tables).
    real, synthetic = _odd_table(600, 90), _odd_table(600, 91)
    synthetic["when"] = synthetic["when"].dt.tz_convert("UTC")  # same instants, another zone
    assert abs(tm.c2st(real, synthetic) - 0.5) < 0.08


# ------------------------------------------------------------------------------------------------
# ml_efficiency, against an independently built scikit-learn pipeline
# ------------------------------------------------------------------------------------------------

def _reference_score(train, test, target, task):
    """Ordinal-encode discrete columns with sklearn's OrdinalEncoder, datetimes as epoch seconds,
    and fit a HistGradientBoosting model with the same seed."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import f1_score, r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    train, test = train[train[target].notna()], test[test[target].notna()]

    def prepare(df):
        out = df.drop(columns=target).copy()
        out["when"] = (out["when"] - pd.Timestamp("1970-01-01")).dt.total_seconds()
        out["k"] = out["k"].astype("float64")
        for col in discrete:
            out[col] = out[col].astype(object).where(out[col].notna(), np.nan).astype(str)
        return out

    discrete = [c for c in ("cat", "flag", "s", "label") if c != target]
    numeric = [c for c in prepare(train).columns if c not in discrete]
    encoder = ColumnTransformer([("cat", OrdinalEncoder(handle_unknown="use_encoded_value",
                                                        unknown_value=np.nan), discrete),
                                 ("num", "passthrough", numeric)])
    categorical = [True] * len(discrete) + [False] * len(numeric)
    if task == "classification":
        model = HistGradientBoostingClassifier(categorical_features=categorical, random_state=0)
    else:
        model = HistGradientBoostingRegressor(categorical_features=categorical, random_state=0)
    pipe = make_pipeline(encoder, model).fit(prepare(train), train[target].astype(str)
                                             if task == "classification" else train[target])
    pred = pipe.predict(prepare(test))
    if task == "classification":
        return f1_score(test[target].astype(str), pred, average="macro")
    return r2_score(test[target], pred)


@pytest.mark.parametrize("target, task", [("label", "classification"), ("y", "regression")])
def test_ml_efficiency_real_train_matches_reference_and_shuffle_drops(target, task):
    train, test = make_table(600, 50), make_table(400, 51)
    score = tm.ml_efficiency(train, test, target)
    reference = _reference_score(train, test, target, task)
    assert score == pytest.approx(reference, abs=0.03)
    assert score > (0.7 if task == "classification" else 0.6)
    shuffled = train.copy()
    shuffled[target] = np.random.default_rng(0).permutation(shuffled[target].to_numpy())
    assert tm.ml_efficiency(shuffled, test, target) < score - 0.2


def test_ml_efficiency_task_inference():
    train, test = make_table(200, 52), make_table(150, 53)
    # nullable Int64 with 5 values -> classification (rows with a missing target dropped)
    auto = tm.ml_efficiency(train, test, "k")
    assert auto == tm.ml_efficiency(train, test, "k", task="classification")
    assert 0.0 <= auto <= 1.0
    # bool -> classification; float -> regression
    assert tm.ml_efficiency(train, test, "flag") == tm.ml_efficiency(train, test, "flag",
                                                                     task="classification")
    assert tm.ml_efficiency(train, test, "y") == tm.ml_efficiency(train, test, "y", task="regression")


def test_ml_efficiency_missing_classes_do_not_crash():
    train, test = make_table(300, 54), make_table(200, 55)
    no_c = train[train["cat"] != "c"]
    score = tm.ml_efficiency(no_c, test, "cat")
    assert 0.0 <= score < 2 / 3 + 1e-9  # class "c" never predicted: its F1 is 0
    one_class = train[train["label"] == "pos"]
    share_pos = (test["label"] == "pos").mean()
    # constant "pos": F1(pos) = 2p / (1 + p), F1(neg) = 0
    expected = 0.5 * (2 * share_pos / (1 + share_pos))
    assert tm.ml_efficiency(one_class, test, "label") == pytest.approx(expected)


# ------------------------------------------------------------------------------------------------
# dcr
# ------------------------------------------------------------------------------------------------

def test_dcr_copy_of_train():
    train, holdout = make_table(300, 60), make_table(300, 61)
    synthetic = train.sample(frac=1.0, random_state=0).reset_index(drop=True)
    synthetic["k"] = synthetic["k"].astype("float64")  # same values, another dtype
    out = tm.dcr(synthetic, train, holdout)
    assert out["share_closer_to_train"] == 1.0
    assert out["exact_copies"] == len(train)
    assert out["median_dcr_train"] == pytest.approx(0.0, abs=1e-6)
    assert out["median_dcr_holdout"] > 0.1


def test_dcr_fresh_draws():
    train, holdout, synthetic = make_table(300, 62), make_table(500, 63), make_table(300, 64)
    out = tm.dcr(synthetic, train, holdout)
    assert abs(out["share_closer_to_train"] - 0.5) < 0.1
    assert out["exact_copies"] == 0
    assert out["median_dcr_train"] == pytest.approx(out["median_dcr_holdout"], rel=0.3)
    small = tm.dcr(synthetic, train, holdout, max_rows=50)
    assert 0.0 <= small["share_closer_to_train"] <= 1.0
    assert small["exact_copies"] == 0


def _brute_distances(synthetic, reference, train):
    """Distances written per column, not as an embedding: numbers (v - median) / (IQR / 1.349) of
    the training column, missing -> 0, plus 1 if missingness differs; categories contribute 1 when
    both are observed and differ, 1/2 + 1 when exactly one is missing."""
    sq = np.zeros((len(synthetic), len(reference)))
    for col in train.columns:
        if col == "c":
            for i, u in enumerate(synthetic[col]):
                for j, v in enumerate(reference[col]):
                    mu, mv = pd.isna(u), pd.isna(v)
                    sq[i, j] += (0.5 + 1.0) if mu != mv else float(not mu and u != v)
        else:
            t = train[col].dropna().to_numpy()
            q75, q25 = np.percentile(t, [75, 25])
            scale = (q75 - q25) / 1.349
            a = np.nan_to_num((synthetic[col].to_numpy() - np.median(t)) / scale)
            b = np.nan_to_num((reference[col].to_numpy() - np.median(t)) / scale)
            ma, mb = synthetic[col].isna().to_numpy(), reference[col].isna().to_numpy()
            sq += (a[:, None] - b[None, :]) ** 2 + (ma[:, None] != mb[None, :])
    return np.sqrt(sq).min(axis=1)


def test_dcr_nearest_distances_brute_force():
    train = pd.DataFrame({"u": [0.0, 1.0, 2.0, np.nan, 4.0, 10.0], "w": [5, 3, 1, 2, 2, 0],
                          "c": ["a", "b", None, "a", "c", "b"]})
    holdout = pd.DataFrame({"c": ["b", "a", "a", None, "c", "c"], "u": [0.5, np.nan, 3.0, 2.5, 7.0, 1.0],
                            "w": [1, 1, 4, 0, 2, 3]})
    synthetic = pd.DataFrame({"u": [0.2, np.nan, 9.0, 2.0], "w": [5, 2, 0, 2],
                              "c": ["a", "b", "d", None]})
    d_train = _brute_distances(synthetic, train, train)
    d_holdout = _brute_distances(synthetic, holdout[train.columns], train)
    for i in range(len(synthetic)):
        out = tm.dcr(synthetic.iloc[[i]], train, holdout)
        assert out["median_dcr_train"] == pytest.approx(d_train[i], abs=1e-9)
        assert out["median_dcr_holdout"] == pytest.approx(d_holdout[i], abs=1e-9)
    out = tm.dcr(synthetic, train, holdout)
    expected_share = np.mean((d_train < d_holdout) + 0.5 * (d_train == d_holdout))
    assert out["share_closer_to_train"] == pytest.approx(expected_share)
    assert out["median_dcr_train"] == pytest.approx(np.median(d_train), abs=1e-9)


def test_dcr_exact_copies_nan_equals_nan():
    train = pd.DataFrame({"u": [1.0, np.nan, 3.0], "c": ["a", None, "b"]})
    synthetic = pd.DataFrame({"u": [np.nan, 3.0, 3.0, 1.0], "c": [None, "b", "a", "a"]})
    # rows 0 (NaN, None), 1 (3, b) and 3 (1, a) are training rows; row 2 is not
    assert tm.dcr(synthetic, train, train)["exact_copies"] == 3


# ------------------------------------------------------------------------------------------------
# sdmetrics: column shapes and pair trends
# ------------------------------------------------------------------------------------------------

def test_column_shapes_identical_shifted_and_ks_reference():
    pytest.importorskip("sdmetrics")
    from scipy.stats import ks_2samp

    real = make_table(300, 70)
    shapes = tm.column_shapes(real, real.copy())
    assert list(shapes["column"]) == list(real.columns)
    assert shapes.set_index("column")["metric"].to_dict() == {
        "x": "KSComplement", "y": "KSComplement", "k": "KSComplement", "cat": "TVComplement",
        "flag": "TVComplement", "s": "TVComplement", "when": "KSComplement", "label": "TVComplement"}
    assert np.allclose(shapes["score"], 1.0)

    synthetic = make_table(250, 71)
    synthetic["x"] = synthetic["x"] + 1.0
    synthetic["when"] = synthetic["when"].astype("datetime64[s]")  # another resolution
    scores = tm.column_shapes(real, synthetic).set_index("column")["score"]
    assert scores["x"] < 0.8
    for col in ("x", "y"):
        ref = 1 - ks_2samp(real[col].dropna(), synthetic[col].dropna()).statistic
        assert scores[col] == pytest.approx(ref, abs=1e-12)
    seconds = [(t["when"].dropna() - pd.Timestamp(0)).dt.total_seconds() for t in (real, synthetic)]
    assert scores["when"] == pytest.approx(1 - ks_2samp(*seconds).statistic, abs=1e-12)
    freq_r = real["cat"].value_counts(normalize=True)
    freq_s = synthetic["cat"].value_counts(normalize=True)
    assert scores["cat"] == pytest.approx(1 - 0.5 * (freq_r - freq_s).abs().sum(), abs=1e-12)


def test_sdmetrics_scores_on_degenerate_columns():
    pytest.importorskip("sdmetrics")
    real, synthetic = _odd_table(200, 92), _odd_table(200, 92)
    synthetic["when"] = synthetic["when"].dt.tz_convert("UTC").astype("datetime64[ms, UTC]")
    shapes = tm.column_shapes(real, synthetic).set_index("column")
    assert shapes.loc["ob", "kind"] == "boolean" and shapes.loc["when", "kind"] == "datetime"
    assert np.isnan(shapes.loc["empty", "score"])  # no observed value
    assert np.allclose(shapes["score"].drop("empty"), 1.0)
    trends = tm.column_pair_trends(real, synthetic).set_index(["column_1", "column_2"])["score"]
    assert np.isnan(trends[("const", "f")])  # no correlation for a constant
    assert np.isnan(trends[("empty", "f")])  # no complete row
    assert trends[("when", "f")] == pytest.approx(1.0)


def test_column_pair_trends_identical_and_broken_correlation():
    pytest.importorskip("sdmetrics")
    real = make_table(300, 80)
    cols = ["x", "y", "cat", "flag", "when"]
    trends = tm.column_pair_trends(real[cols], real[cols].copy())
    assert len(trends) == 10
    assert np.allclose(trends["score"], 1.0)
    metric = trends.set_index(["column_1", "column_2"])["metric"]
    assert metric[("x", "y")] == "CorrelationSimilarity"
    assert metric[("x", "when")] == "CorrelationSimilarity"
    assert metric[("x", "cat")] == "ContingencySimilarity"
    assert metric[("cat", "flag")] == "ContingencySimilarity"

    synthetic = make_table(300, 81)[cols]
    synthetic["y"] = np.random.default_rng(1).permutation(synthetic["y"].to_numpy())
    scores = tm.column_pair_trends(real[cols], synthetic).set_index(["column_1", "column_2"])["score"]

    def pearson(t):
        both = t[["x", "y"]].dropna().to_numpy()
        return np.corrcoef(both[:, 0], both[:, 1])[0, 1]

    expected = 1 - abs(pearson(real) - pearson(synthetic)) / 2
    assert scores[("x", "y")] == pytest.approx(expected, abs=1e-12)
    assert scores[("x", "y")] < 0.7

    few = tm.column_pair_trends(real[cols], synthetic, max_pairs=4, random_state=3)
    assert len(few) == 4
    assert set(zip(few["column_1"], few["column_2"])) <= set(scores.index)
