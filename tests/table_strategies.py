"""Hypothesis strategies for random mixed-type DataFrames, shared by the tabular tests."""

import numpy as np
import pandas as pd
from hypothesis import strategies as st

# ------------------------------------------------------------------------------------------------
# random tables
# ------------------------------------------------------------------------------------------------
# Each builder returns (values, column_type_override or None, approximate?) for n rows where the
# boolean list `miss` marks the cells to blank (builders whose dtype has no missing value ignore it).
# Value ranges are kept where float32 codes resolve every value (see the encoder's docstring).

def _decimal_floats(draw, n, d=None):
    d = draw(st.integers(0, 3)) if d is None else d
    ks = draw(st.lists(st.integers(-10**4, 10**4), min_size=n, max_size=n))
    return np.array(ks, dtype=np.float64) / 10**d


def _pick(draw, n, pool):
    return draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))


def b_float(draw, n, miss):
    x = _decimal_floats(draw, n)
    x[miss] = np.nan
    return x, None, False


def b_float32(draw, n, miss):
    x = _decimal_floats(draw, n).astype(np.float32)
    x[miss] = np.nan
    return x, None, False


def b_float_any(draw, n, miss):
    x = np.array(draw(st.lists(st.floats(-1e6, 1e6, allow_subnormal=False), min_size=n, max_size=n)))
    x[miss] = np.nan
    return x, None, True


def b_Float64(draw, n, miss):
    x = _decimal_floats(draw, n)
    return pd.array([None if m else v for v, m in zip(x, miss)], dtype="Float64"), None, False


def b_int64(draw, n, miss):
    base = draw(st.integers(-2**62, 2**62))
    ks = draw(st.lists(st.integers(-500, 500), min_size=n, max_size=n))
    return np.array([base + k for k in ks], dtype=np.int64), None, False


def b_int8(draw, n, miss):
    return np.array(draw(st.lists(st.integers(-128, 127), min_size=n, max_size=n)), np.int8), None, False


def b_uint64(draw, n, miss):
    base = draw(st.integers(0, 2**64 - 1001))
    ks = draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n))
    return np.array([base + k for k in ks], dtype=np.uint64), None, False


def b_Int64(draw, n, miss):
    ks = draw(st.lists(st.integers(-1000, 1000), min_size=n, max_size=n))
    return pd.array([None if m else k for k, m in zip(ks, miss)], dtype="Int64"), None, False


def b_UInt16(draw, n, miss):
    base = draw(st.integers(0, 65535 - 1000))
    ks = draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n))
    return pd.array([None if m else base + k for k, m in zip(ks, miss)], dtype="UInt16"), None, False


def b_float_as_integer(draw, n, miss):
    x = np.array(draw(st.lists(st.integers(-300, 300), min_size=n, max_size=n)), dtype=np.float64)
    x[miss] = np.nan
    return x, "integer", False


def b_int_as_category(draw, n, miss):
    return np.array(_pick(draw, n, [3, 7, 11, 90210, -4]), dtype=np.int64), "categorical", False


def b_bool(draw, n, miss):
    return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool), None, False


def b_boolean(draw, n, miss):
    v = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return pd.array([None if m else b for b, m in zip(v, miss)], dtype="boolean"), None, False


WORDS = ["a", "b", "Adelie", "Gentoo", "x y", "", "ß", "zz", "0", "1.5"]


def b_object(draw, n, miss):
    na = draw(st.sampled_from([np.nan, None]))
    v = _pick(draw, n, WORDS)
    return pd.Series([na if m else w for w, m in zip(v, miss)], dtype=object), None, False


def b_object_int(draw, n, miss):
    v = _pick(draw, n, [1, 2, 30, -7])
    return pd.Series([np.nan if m else w for w, m in zip(v, miss)], dtype=object), None, False


def b_str(draw, n, miss):  # pandas 3's default string dtype (NaN as missing value)
    v = _pick(draw, n, WORDS)
    return pd.array([None if m else w for w, m in zip(v, miss)],
                    dtype=pd.StringDtype("python", na_value=np.nan)), None, False


def b_string(draw, n, miss):  # pd.NA as missing value
    v = _pick(draw, n, WORDS)
    return pd.array([None if m else w for w, m in zip(v, miss)], dtype="string"), None, False


def b_category(draw, n, miss):
    pool = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=6, unique=True))
    extra = draw(st.lists(st.sampled_from(["unused", "never"]), max_size=2, unique=True))
    v = _pick(draw, n, pool)
    cats = draw(st.permutations(pool + extra))
    return pd.Categorical([None if m else w for w, m in zip(v, miss)], categories=cats,
                          ordered=draw(st.booleans())), None, False


def b_category_int(draw, n, miss):
    v = _pick(draw, n, [10, 20, 30])
    cat = pd.Categorical([None if m else w for w, m in zip(v, miss)], categories=[30, 10, 20, 40])
    return cat, None, False


RES = {"D": 86_400 * 10**9, "h": 3_600 * 10**9, "min": 60 * 10**9, "s": 10**9, "ms": 10**6}
UNIT = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


def _times(draw, n, miss, unit):
    res = draw(st.sampled_from([r for r in RES if RES[r] >= UNIT[unit]]))
    base = draw(st.integers(0, 60 * 365 * 86_400)) * 10**9  # 1970 .. 2030, whole seconds
    base -= base % RES[res]
    ks = np.array(draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n)))
    ns = base + ks * RES[res]
    return ns, res


def b_datetime(draw, n, miss):
    unit = draw(st.sampled_from(list(UNIT)))
    ns, _ = _times(draw, n, miss, unit)
    s = pd.Series(pd.to_datetime(ns, unit="ns")).dt.as_unit(unit)
    s = s.mask(np.asarray(miss))
    return s.array, None, False


def b_datetime_tz(draw, n, miss):
    tz = draw(st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]))
    unit = draw(st.sampled_from(["ns", "us", "s"]))
    ns, _ = _times(draw, n, miss, unit)
    s = pd.Series(pd.to_datetime(ns, unit="ns", utc=True)).dt.tz_convert(tz).dt.as_unit(unit)
    s = s.mask(np.asarray(miss))
    return s.array, None, False


def b_timedelta(draw, n, miss):
    ns, res = _times(draw, n, miss, "ns")
    s = pd.Series(pd.to_timedelta(ns - ns.min() - draw(st.integers(0, 1000)) * RES[res], unit="ns"))
    s = s.mask(np.asarray(miss))
    return s.array, None, False


def b_constant_float(draw, n, miss):
    x = np.full(n, draw(st.floats(-1e9, 1e9, allow_subnormal=False)))
    x[miss] = np.nan
    return x, None, False


def b_constant_int(draw, n, miss):
    return np.full(n, draw(st.integers(-2**63, 2**63 - 1)), dtype=np.int64), None, False


def b_constant_str(draw, n, miss):
    return pd.Series([np.nan if m else "only" for m in miss], dtype=object), None, False


BUILDERS = {f.__name__[2:]: f for f in [
    b_float, b_float32, b_float_any, b_Float64, b_int64, b_int8, b_uint64, b_Int64, b_UInt16,
    b_float_as_integer, b_int_as_category, b_bool, b_boolean, b_object, b_object_int, b_str,
    b_string, b_category, b_category_int, b_datetime, b_datetime_tz, b_timedelta,
    b_constant_float, b_constant_int, b_constant_str]}


@st.composite
def tables(draw, max_cols=20, max_rows=20):
    """(df, column_types, approx columns, max_onehot): 1-20 columns of the builders above, 1-20
    rows (tiny ones often), random missing cells (never a whole column)."""
    n = draw(st.one_of(st.integers(1, 3), st.integers(1, max_rows)))
    n_cols = draw(st.one_of(st.integers(1, 4), st.integers(1, max_cols)))
    data, types, approx = {}, {}, set()
    for j in range(n_cols):
        kind = draw(st.sampled_from(sorted(BUILDERS)))
        if draw(st.booleans()):
            miss = draw(st.lists(st.booleans(), min_size=n, max_size=n))
            if all(miss):
                miss[draw(st.integers(0, n - 1))] = False
        else:
            miss = [False] * n
        values, override, is_approx = BUILDERS[kind](draw, n, miss)
        name = f"{kind}_{j}"
        data[name] = values
        if override:
            types[name] = override
        if is_approx:
            approx.add(name)
    max_onehot = draw(st.sampled_from([0, 1, 2, 16]))
    return pd.DataFrame(data), types, approx, max_onehot
