"""Tests of anydiff.tabular.encoders.TableEncoder against references: the tables themselves
(round trips), the standard normal (scipy.stats), brute-force nearest-code search, and tables
whose answer is known by construction."""
import json
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import pandas as hpd
from scipy import stats

from anydiff.tabular import encoders as E
from anydiff.tabular.encoders import TableEncoder

FAST = settings(max_examples=25, deadline=None)


def json_roundtrip(enc):
    return TableEncoder.from_json(json.loads(json.dumps(enc.to_json())))


def as_list(values):
    """Values as a list, every kind of missing value as None."""
    return [None if pd.isna(v) else v for v in values]


def bit_codebook(n_codes, n_bits):
    """Reference analog-bit code vectors, built from the definition: bit b of code i, as +-1."""
    return np.array([[1.0 if (i >> b) & 1 else -1.0 for b in range(n_bits)] for i in range(n_codes)])


from table_strategies import tables  # noqa: E402


def assert_roundtrip(df, out, approx=()):
    assert list(out.columns) == list(df.columns)
    assert out.dtypes.equals(df.dtypes), (out.dtypes, df.dtypes)
    exact = [c for c in df.columns if c not in approx]
    pd.testing.assert_frame_equal(out[exact], df[exact].reset_index(drop=True), check_exact=True,
                                  check_column_type=False)
    for c in approx:
        a, b = df[c].to_numpy(dtype=np.float64), out[c].to_numpy(dtype=np.float64)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        ok = ~np.isnan(a)
        span = a[ok].max() - a[ok].min()
        np.testing.assert_allclose(b[ok], a[ok], rtol=0, atol=1e-5 * span + 1e-12)


# ------------------------------------------------------------------------------------------------
# round trips
# ------------------------------------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(tables())
def test_roundtrip_random_tables(spec):
    df, types, approx, max_onehot = spec
    enc = TableEncoder(column_types=types, max_onehot=max_onehot).fit(df)
    Z = enc.transform(df)
    assert Z.dtype == np.float32 and Z.shape == (len(df), enc.n_dims_)
    assert np.isfinite(Z).all() and np.abs(Z).max() <= 5.0
    assert_roundtrip(df, enc.inverse_transform(Z), approx)
    # the layout tiles the dimensions in column order
    stops = [rec.slice.start for rec in enc.layout_] + [enc.n_dims_]
    assert stops[0] == 0 and all(r.slice.stop == s for r, s in zip(enc.layout_, stops[1:]))
    assert enc.columns_ == list(df.columns)
    # JSON round trip: same codes, same decoding of arbitrary arrays
    enc2 = json_roundtrip(enc)
    np.testing.assert_array_equal(enc2.transform(df), Z)
    Zr = np.random.default_rng(0).normal(size=(7, enc.n_dims_)) * 2
    pd.testing.assert_frame_equal(enc2.inverse_transform(Zr), enc.inverse_transform(Zr))


@FAST
@given(hpd.data_frames(
    [hpd.column("length", elements=st.integers(300, 600).map(lambda k: k / 10)),
     hpd.column("count", dtype=np.int32, elements=st.integers(-1000, 1000)),
     hpd.column("flag", dtype=bool),
     hpd.column("ratio", dtype=np.float32, elements=st.floats(0, 1, width=32))],
    index=hpd.range_indexes(min_size=1, max_size=40)))
def test_roundtrip_hypothesis_pandas_frames(df):
    enc = TableEncoder().fit(df)
    out = enc.inverse_transform(enc.transform(df))
    assert_roundtrip(df, out, approx={"ratio"})


def test_roundtrip_reorders_columns_and_keeps_missing_sentinels():
    # regression (found by test_roundtrip_random_tables): with pandas' string inference an object
    # column of strings came back as `str`; it must stay object, its None stay None
    df = pd.DataFrame({"a": [1.5, np.nan, 2.5], "o": pd.Series(["x", None, "y"], dtype=object),
                       "p": pd.Series(["x", pd.NA, "y"], dtype=object)})
    df.index = [30, 10, 20]
    enc = TableEncoder().fit(df)
    out = enc.inverse_transform(enc.transform(df[["p", "o", "a"]]))
    assert out["o"][1] is None and out["p"][1] is pd.NA
    assert_roundtrip(df, out)


# ------------------------------------------------------------------------------------------------
# numeric columns: quantile transform
# ------------------------------------------------------------------------------------------------

def test_quantile_transform_of_normal_sample_is_standardization():
    x = np.random.default_rng(1).normal(3.0, 2.0, size=20_000)
    z = TableEncoder().fit_transform(pd.DataFrame({"x": x}))[:, 0]
    ref = (x - x.mean()) / x.std()
    # sampling error of an empirical quantile, in normal-score units: sqrt(p(1-p)/n) / pdf(z)
    p = stats.norm.cdf(ref)
    tol = 4 * np.sqrt(p * (1 - p) / len(x)) / stats.norm.pdf(ref) + 0.03
    central = np.abs(ref) < 3.5
    assert (np.abs(z - ref) < tol)[central].all()
    assert np.abs(z - ref)[central].mean() < 0.02
    assert np.corrcoef(z, ref)[0, 1] > 0.999


@pytest.mark.parametrize("dist", ["exponential", "lognormal", "uniform", "beta", "bimodal", "poisson"])
def test_encoded_columns_are_standard_normal(dist):
    rng = np.random.default_rng(2)
    n = 5000
    x = {"exponential": lambda: rng.exponential(size=n),
         "lognormal": lambda: rng.lognormal(0, 2, size=n),
         "uniform": lambda: rng.uniform(-1, 1, size=n),
         "beta": lambda: rng.beta(0.5, 0.5, size=n),
         "bimodal": lambda: np.concatenate([rng.normal(-5, 1, n // 2), rng.normal(5, 0.1, n - n // 2)]),
         "poisson": lambda: rng.poisson(3, size=n)}[dist]()  # int64: dequantized
    z = TableEncoder().fit_transform(pd.DataFrame({"x": x}))[:, 0].astype(np.float64)
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.03
    assert stats.kstest(z, "norm").statistic < 0.02


def test_quantile_transform_maps_new_values_monotonically_and_clips():
    x = np.random.default_rng(3).gamma(2.0, size=3000)
    enc = TableEncoder(quantiles=100).fit(pd.DataFrame({"x": x}))
    grid = np.linspace(-5, 30, 500)
    z = enc.transform(pd.DataFrame({"x": grid}))[:, 0]
    assert np.all(np.diff(z) >= 0)
    assert z[0] == -5 and z[-1] == 5
    assert len(enc.to_json()["columns"][0]["state"]["refs"]) == 100


@FAST
@given(st.lists(st.floats(-1e4, 1e4, allow_subnormal=False), min_size=2, max_size=50),
       st.integers(0, 2**32 - 1))
def test_decoded_floats_stay_in_training_range(values, seed):
    df = pd.DataFrame({"x": values})
    enc = TableEncoder().fit(df)
    Z = np.random.default_rng(seed).normal(size=(200, enc.n_dims_)) * 4  # beyond +-5 too
    out = enc.inverse_transform(Z)["x"].to_numpy()
    assert out.min() >= min(values) and out.max() <= max(values)


@FAST
@given(st.lists(st.integers(-10**6, 10**6), min_size=1, max_size=50), st.integers(0, 2**32 - 1),
       st.sampled_from(["int64", "int16", "Int64"]))
def test_decoded_integers_are_integers_in_range(values, seed, dtype):
    values = [max(-2**15, min(2**15 - 1, v)) for v in values] if dtype == "int16" else values
    df = pd.DataFrame({"k": pd.array(values, dtype=dtype)})
    enc = TableEncoder().fit(df)
    Z = np.random.default_rng(seed).normal(size=(200, enc.n_dims_)) * 4
    out = enc.inverse_transform(Z)["k"]
    assert out.dtype == df["k"].dtype
    assert out.min() >= min(values) and out.max() <= max(values)


def test_integer_dequantization_is_seeded():
    df = pd.DataFrame({"k": np.random.default_rng(4).integers(0, 5, size=300)})
    z1 = TableEncoder(random_state=7).fit(df).transform(df)
    enc = TableEncoder(random_state=7).fit(df)
    np.testing.assert_array_equal(enc.transform(df), z1)   # reproducible
    np.testing.assert_array_equal(enc.transform(df), enc.transform(df))
    z3 = TableEncoder(random_state=8).fit(df).transform(df)
    assert not np.array_equal(z1, z3)
    # dequantized: many distinct codes per integer value, not one
    assert len(np.unique(z1)) > 250


def test_decimals_rounding():
    rng = np.random.default_rng(5)
    bill = np.round(rng.normal(44, 5, size=300), 1)            # like penguins' bill length
    fine = rng.normal(size=300)                                  # many decimals: never rounded
    whole = rng.integers(0, 50, size=300).astype(np.float64)     # a float column holding integers
    df = pd.DataFrame({"bill": bill, "fine": fine, "whole": whole})
    enc = TableEncoder().fit(df)
    out = enc.inverse_transform(rng.normal(size=(500, enc.n_dims_)))
    assert (np.round(out["bill"], 1) == out["bill"]).all()
    assert (np.round(out["fine"], 6) != out["fine"]).any()
    assert out["whole"].dtype == np.float64 and (out["whole"] == np.round(out["whole"])).all()
    assert len(np.unique(out["bill"])) > 30


def test_float_dtypes_kept():
    df = pd.DataFrame({"f32": np.array([0.5, 1.25, 3.0], dtype=np.float32),
                       "F": pd.array([0.1, None, 0.3], dtype="Float64")})
    enc = TableEncoder().fit(df)
    out = enc.inverse_transform(np.random.default_rng(0).normal(size=(50, enc.n_dims_)))
    assert out["f32"].dtype == np.float32 and out["F"].dtype == "Float64"
    assert out["F"].isna().any() and not out["F"].isna().all()


# ------------------------------------------------------------------------------------------------
# datetimes
# ------------------------------------------------------------------------------------------------

def test_dates_come_back_as_dates():
    rng = np.random.default_rng(6)
    days = pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 900, 200), unit="D")
    berlin = pd.Series(days).dt.tz_localize("Europe/Berlin")  # local midnights across DST changes
    df = pd.DataFrame({"d": days, "b": berlin, "s": pd.Series(days).dt.as_unit("s")})
    enc = TableEncoder().fit(df)
    out = enc.inverse_transform(rng.normal(size=(400, enc.n_dims_)) * 2)
    assert out.dtypes.equals(df.dtypes)
    for c in df:
        assert (out[c] == out[c].dt.normalize()).all(), c
        assert out[c].min() >= df[c].min() and out[c].max() <= df[c].max()
    assert out["d"].nunique() > 50


def test_datetime_resolution_hour_and_seconds():
    base = pd.Timestamp("2021-06-01 00:00:00")
    hours = base + pd.to_timedelta(np.arange(0, 500, 7), unit="h")
    secs = base + pd.to_timedelta(np.arange(0, 5000, 13), unit="s")
    df = pd.DataFrame({"h": hours, "s": secs[: len(hours)]})
    enc = TableEncoder().fit(df)
    out = enc.inverse_transform(np.random.default_rng(0).normal(size=(300, enc.n_dims_)))
    assert (out["h"] == out["h"].dt.floor("h")).all() and (out["h"].dt.minute == 0).all()
    assert (out["s"] == out["s"].dt.floor("s")).all()
    assert (out["s"].dt.second != 0).any()


# ------------------------------------------------------------------------------------------------
# categorical columns: one-hot and analog bits
# ------------------------------------------------------------------------------------------------

def test_analog_bits_for_many_categories():
    rng = np.random.default_rng(7)
    names = np.array([f"user-{i}" for i in rng.permutation(10_000)], dtype=object)
    enc = TableEncoder().fit(pd.DataFrame({"id": names}))
    rec = enc.layout_[0]
    assert enc.n_dims_ == 14 and rec.encoding == "bits" and len(rec.categories) == 10_000
    out = enc.inverse_transform(rng.normal(size=(3000, 14)))
    assert out["id"].isin(set(names)).all()
    assert out["id"].nunique() > 1000
    Z = enc.transform(pd.DataFrame({"id": names}))
    assert set(np.unique(Z)) == {-1.0, 1.0}
    with_missing = pd.DataFrame({"id": np.append(names, None)})
    assert TableEncoder().fit(with_missing).n_dims_ == 14


@FAST
@given(st.integers(3, 60), st.integers(0, 2**32 - 1), st.booleans(), st.booleans())
def test_bits_decode_to_nearest_valid_code(k, seed, with_missing, forbid):
    cats = [f"c{i}" for i in range(k)]
    values = cats + ([None] if with_missing else [])
    enc = TableEncoder(max_onehot=2).fit(pd.DataFrame({"c": values}))
    rec = enc.layout_[0]
    n_codes = k + with_missing
    n_bits = int(np.ceil(np.log2(n_codes)))
    assert rec.encoding == "bits" and enc.n_dims_ == n_bits
    # the codes are the reference bit vectors, the missing code last
    book = bit_codebook(n_codes, n_bits)
    order = list(rec.categories) + ([None] if with_missing else [])  # code -> value
    assert sorted(rec.categories) == sorted(cats)
    codes = [order.index(v) for v in values]
    np.testing.assert_array_equal(enc.transform(pd.DataFrame({"c": values})), book[codes])
    Z = np.random.default_rng(seed).normal(size=(300, n_bits))
    allowed = k if forbid else n_codes
    nearest = np.argmax(Z @ book[:allowed].T, axis=1)  # brute force
    out = enc.inverse_transform(Z, forbid_missing=forbid)["c"]
    expected = [order[i] for i in nearest]
    assert as_list(out) == expected


def test_bits_nearest_search_in_chunks(monkeypatch):
    monkeypatch.setattr(E, "_CHUNK_ELEMS", 5000)  # force many blocks
    cats = [f"v{i}" for i in range(1500)]       # 11 bits, 548 invalid codes
    enc = TableEncoder().fit(pd.DataFrame({"c": cats}))
    Z = np.random.default_rng(8).normal(size=(400, 11))
    nearest = np.argmax(Z @ bit_codebook(1500, 11).T, axis=1)
    order = enc.layout_[0].categories
    assert list(enc.inverse_transform(Z)["c"]) == [order[i] for i in nearest]


def test_onehot_decodes_by_argmax_and_forbids_missing():
    df = pd.DataFrame({"s": ["a", "b", None, "c"]})
    enc = TableEncoder().fit(df)
    rec = enc.layout_[0]
    assert rec.encoding == "onehot" and enc.n_dims_ == 4 and rec.missing_code == 3
    assert rec.categories == ("a", "b", "c")
    np.testing.assert_array_equal(enc.transform(df), 2 * np.eye(4)[[0, 1, 3, 2]] - 1)
    Z = np.random.default_rng(9).normal(size=(200, 4))
    out = enc.inverse_transform(Z)["s"]
    ref = np.array(["a", "b", "c", None], dtype=object)
    assert as_list(out) == list(ref[np.argmax(Z, axis=1)])
    out = enc.inverse_transform(Z, forbid_missing=True)["s"]
    assert as_list(out) == list(ref[np.argmax(Z[:, :3], axis=1)])


def test_category_dtype_keeps_category_list_but_samples_observed_only():
    cat = pd.Categorical(["lo", "hi", "lo", None], categories=["hi", "mid", "lo"], ordered=True)
    df = pd.DataFrame({"c": cat})
    enc = TableEncoder().fit(df)
    assert enc.layout_[0].categories == ("hi", "lo")
    out = enc.inverse_transform(np.random.default_rng(10).normal(size=(500, enc.n_dims_)))
    assert out["c"].dtype == df["c"].dtype
    assert set(out["c"].dropna()) == {"hi", "lo"} and out["c"].isna().any()


def test_boolean_columns():
    df = pd.DataFrame({"b": [True, False, True], "B": pd.array([True, None, False], dtype="boolean")})
    enc = TableEncoder().fit(df)
    assert [r.kind for r in enc.layout_] == ["boolean", "boolean"]
    out = enc.inverse_transform(np.random.default_rng(11).normal(size=(100, enc.n_dims_)))
    assert out["b"].dtype == bool and out["B"].dtype == "boolean"
    assert out["B"].isna().any()


# ------------------------------------------------------------------------------------------------
# constant columns and missing values
# ------------------------------------------------------------------------------------------------

def test_constant_columns():
    df = pd.DataFrame({"f": [2.5] * 4, "i": np.full(4, 9), "s": ["k"] * 4,
                       "t": pd.to_datetime(["2020-02-02"] * 4), "fm": [1.0, np.nan, 1.0, 1.0]})
    enc = TableEncoder().fit(df)
    assert [r.n_dims for r in enc.layout_] == [1, 1, 1, 1, 2]
    assert all(r.encoding == "constant" for r in enc.layout_)
    Z = enc.transform(df)
    np.testing.assert_array_equal(Z[:, :5], 0)
    np.testing.assert_array_equal(Z[:, 5], [-1, 1, -1, -1])
    out = enc.inverse_transform(np.random.default_rng(12).normal(size=(30, 6)))
    assert (out["f"] == 2.5).all() and (out["i"] == 9).all() and (out["s"] == "k").all()
    assert (out["t"] == pd.Timestamp("2020-02-02")).all()
    assert set(out["fm"].dropna()) == {1.0}


def test_missing_indicator_encoding():
    df = pd.DataFrame({"x": [1.0, np.nan, 3.0, 4.0], "k": pd.array([1, 2, None, 4], dtype="Int64"),
                       "t": pd.to_datetime(["2020-01-01", None, "2020-01-03", "2020-01-04"])})
    enc = TableEncoder().fit(df)
    Z = enc.transform(df)
    for rec, missing in zip(enc.layout_, [1, 2, 1]):
        assert rec.missing_dim == rec.slice.start + 1
        ind = Z[:, rec.missing_dim]
        np.testing.assert_array_equal(ind, np.where(np.arange(4) == missing, 1, -1))
        assert Z[missing, rec.slice.start] == 0
    Z2 = Z.copy()
    Z2[:, [r.missing_dim for r in enc.layout_]] = 1.0
    assert enc.inverse_transform(Z2).isna().all().all()
    assert not enc.inverse_transform(Z2, forbid_missing=True).isna().any().any()


# ------------------------------------------------------------------------------------------------
# transform_partial
# ------------------------------------------------------------------------------------------------

def _partial_table():
    rng = np.random.default_rng(13)
    n = 40
    df = pd.DataFrame({
        "x": rng.normal(size=n),
        "k": pd.array(rng.integers(0, 9, n), dtype="Int64"),
        "s": rng.choice(np.array(["a", "b", "c"], dtype=object), n),
        "t": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 99, n), unit="D"),
        "full": rng.normal(size=n),   # never missing in training
    })
    for c, p in [("x", 0.3), ("k", 0.3), ("s", 0.3), ("t", 0.3)]:
        df.loc[rng.random(n) < p, c] = None
    return df


@pytest.mark.parametrize("impute", [True, False])
def test_transform_partial_agrees_with_transform(impute):
    df = _partial_table()
    enc = TableEncoder().fit(df)
    Z = enc.transform(df)
    known, mask = enc.transform_partial(df, impute=impute)
    assert known.dtype == mask.dtype == np.float32 and known.shape == Z.shape
    assert set(np.unique(mask)) <= {0.0, 1.0}
    on = mask == 1
    np.testing.assert_array_equal(known[~on], 0)
    observed = np.zeros_like(on)  # the dims of the observed cells
    for rec in enc.layout_:
        observed[:, rec.slice] = ~df[rec.name].isna().to_numpy()[:, None]
    np.testing.assert_array_equal(known[observed], Z[observed])
    assert on[observed].all()
    for rec in enc.layout_:
        miss = df[rec.name].isna().to_numpy()
        m = mask[:, rec.slice]
        assert (m[~miss] == 1).all()                       # observed cells: every dim known
        if rec.missing_dim is None:
            assert (m[miss] == 0).all()                    # categorical: codebook unknown
        else:
            val = mask[:, rec.value_dims][:, 0]
            ind_m, ind_k = mask[:, rec.missing_dim], known[:, rec.missing_dim]
            assert (val[miss] == 0).all()
            if impute:                                     # a cell to impute must get a value
                assert (ind_m[miss] == 1).all() and (ind_k[miss] == -1).all()
            else:
                assert (ind_m[miss] == 0).all()


def test_transform_partial_subset_of_columns():
    df = _partial_table()
    enc = TableEncoder().fit(df)
    cond = pd.DataFrame({"s": ["b", None], "full": [0.1, np.nan]})  # NaN in 'full' is unknown
    known, mask = enc.transform_partial(cond)
    sl = enc.column_slices()
    for c in ["x", "k", "t"]:
        assert (mask[:, sl[c]] == 0).all()
    assert (mask[0, sl["s"]] == 1).all() and (mask[1, sl["s"]] == 0).all()
    assert mask[0, sl["full"]].all() and not mask[1, sl["full"]].any()
    ref = enc.transform(df.assign(s="b"))
    np.testing.assert_array_equal(known[0, sl["s"]], ref[0, sl["s"]])
    with pytest.raises(ValueError, match="'s'.*'zebra'"):
        enc.transform_partial(pd.DataFrame({"s": ["zebra"]}))


# ------------------------------------------------------------------------------------------------
# serialisation
# ------------------------------------------------------------------------------------------------

def test_json_roundtrip_and_no_rows():
    rng = np.random.default_rng(14)
    n = 3000
    df = pd.DataFrame({"x": rng.normal(size=n), "k": rng.integers(0, 1000, n),
                       "id": np.array([f"row{i}" for i in range(n)], dtype=object)[rng.permutation(n)],
                       "c": pd.Categorical(rng.choice(["u", "v"], n)),
                       "t": pd.Series(pd.date_range("2020", periods=n, freq="min", tz="UTC"))})
    enc = TableEncoder(quantiles=64, random_state=3).fit(df)
    meta = enc.to_json()
    text = json.dumps(meta)
    enc2 = TableEncoder.from_json(json.loads(text))
    np.testing.assert_array_equal(enc2.transform(df), enc.transform(df))
    Z = rng.normal(size=(500, enc.n_dims_))
    pd.testing.assert_frame_equal(enc2.inverse_transform(Z), enc.inverse_transform(Z))
    k2, m2 = enc2.transform_partial(df.iloc[:50])
    k1, m1 = enc.transform_partial(df.iloc[:50])
    np.testing.assert_array_equal(k1, k2)
    np.testing.assert_array_equal(m1, m2)
    assert enc2.layout_ == enc.layout_ and enc2.n_dims_ == enc.n_dims_
    # marginal summaries only: at most `quantiles` numbers per numeric column, no row order
    for col in meta["columns"]:
        assert len(col["state"].get("refs", [])) <= 64
    assert "row0" in text and len(text) < 100_000  # categories are kept, the 3000 x 5 rows are not


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------

GOOD = pd.DataFrame({"a": [1.0, 2.0, 3.0], "s": ["x", "y", "x"], "k": [1, 2, 3]})


def _fit(df, **kw):
    return lambda: TableEncoder(**kw).fit(df)


def _after_fit(method, *args, **kw):
    return lambda: getattr(TableEncoder().fit(GOOD), method)(*args, **kw)


BAD = {
    "not a frame": (_fit(np.zeros((3, 2))), "DataFrame"),
    "no rows": (_fit(GOOD.iloc[:0]), "empty"),
    "no columns": (_fit(GOOD[[]]), "empty"),
    "duplicate": (_fit(pd.DataFrame([[1, 2]], columns=["d", "d"])), "'d'"),
    "int name": (_fit(pd.DataFrame({0: [1.0, 2.0]})), r"0.*astype\(str\)"),
    "all missing": (_fit(GOOD.assign(gone=np.nan)), "'gone'"),
    "all missing object": (_fit(GOOD.assign(gone=pd.Series([None] * 3, dtype=object))), "'gone'"),
    "inf": (_fit(GOOD.assign(big=[1.0, np.inf, 2.0])), "'big'.*inf"),
    "-inf int as float": (_fit(GOOD.assign(big=[1.0, -np.inf, 2.0]), column_types={"big": "integer"}),
                          "'big'"),
    "complex": (_fit(GOOD.assign(cx=np.array([1j, 2, 3]))), "'cx'"),
    "period": (_fit(GOOD.assign(per=pd.period_range("2020", periods=3, freq="M"))), "'per'"),
    "interval": (_fit(GOOD.assign(iv=pd.interval_range(0, 3))), "'iv'"),
    "mixed object": (_fit(GOOD.assign(mix=np.array([1, "a", 2], dtype=object))), r"'mix'.*astype\(str\)"),
    "objects of other type": (_fit(GOOD.assign(obj=[Decimal("1"), Decimal("2"), None])), "'obj'"),
    "bad kind": (_fit(GOOD, column_types={"a": "float"}), "'a'"),
    "kind for absent column": (_fit(GOOD, column_types={"zz": "numeric"}), "'zz'"),
    "numeric on strings": (_fit(GOOD, column_types={"s": "numeric"}), "'s'.*to_numeric"),
    "datetime on floats": (_fit(GOOD, column_types={"a": "datetime"}), "'a'.*to_datetime"),
    "non-integral integer": (_fit(GOOD.assign(h=[0.5, 1.0, 2.0]), column_types={"h": "integer"}), "'h'"),
    "boolean with 3 values": (_fit(GOOD, column_types={"k": "boolean"}), "'k'"),
    "max_onehot": (_fit(GOOD, max_onehot=-1), "max_onehot"),
    "quantiles": (_fit(GOOD, quantiles=1), "quantiles"),
    "transform missing column": (_after_fit("transform", GOOD[["a", "s"]]), "'k'"),
    "transform extra column": (_after_fit("transform", GOOD.assign(e=1)), "'e'"),
    "partial extra column": (_after_fit("transform_partial", GOOD[["a"]].assign(e=1)), "'e'"),
    "transform unseen": (_after_fit("transform", GOOD.assign(s=["x", "new", "y"])), "'s'.*'new'"),
    "transform NaN never seen": (_after_fit("transform", GOOD.assign(a=[1.0, np.nan, 2.0])),
                                 "'a'.*transform_partial"),
    "transform inf": (_after_fit("transform", GOOD.assign(a=[1.0, np.inf, 2.0])), "'a'"),
    "transform strings in numeric": (_after_fit("transform", GOOD.assign(a=["p", "q", "r"])), "'a'"),
    "transform not a frame": (_after_fit("transform", GOOD.to_numpy()), "DataFrame"),
    "width": (_after_fit("inverse_transform", np.zeros((2, 3))), r"Z.*\['a', 's', 'k'\]"),
    "nan in Z": (_after_fit("inverse_transform", np.array([[np.nan, 0, 0, 0]])), "'a'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_raises_value_error_naming_it(case):
    call, pattern = BAD[case]
    with pytest.raises(ValueError, match=pattern):
        call()


def test_not_fitted():
    with pytest.raises(ValueError, match="fit"):
        TableEncoder().transform(GOOD)


def test_mixed_object_but_all_strings_is_fine():
    df = pd.DataFrame({"o": np.array(["1", "a", None], dtype=object)})
    out = TableEncoder().fit(df).inverse_transform(TableEncoder().fit(df).transform(df))
    assert_roundtrip(df, out)
