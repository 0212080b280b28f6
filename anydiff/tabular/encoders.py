"""Column encoders for tables: pandas DataFrame <-> float array for a Gaussian diffusion model.

:class:`TableEncoder` turns a mixed-type :class:`pandas.DataFrame` into a float32 array
``Z`` of shape ``(n_rows, n_dims_)`` in which every dimension is roughly standard normal or
in ``{-1, +1}``, and turns any such array (a model's samples) back into a DataFrame with the
training columns' exact dtypes.

* numeric columns: the empirical quantile transform to a standard normal, as in TabDDPM
  (Kotelnikov et al. 2023), truncated at +-5; integers are dequantized with uniform noise first;
  datetimes and timedeltas go through their integer epoch count.
* categorical columns: a +-1 codebook, one-hot for few categories, analog bits
  (Chen, Zhang & Hinton 2022, "Analog Bits") for many, so ``K`` categories cost
  ``ceil(log2 K)`` dimensions.
* missing values are modelled: an extra "missing" indicator dimension for numeric columns,
  an extra "missing" code for categorical ones.

Only numpy, pandas and ``scipy.special`` (``ndtr`` / ``ndtri``) are needed.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

__all__ = ["TableEncoder", "ColumnLayout", "KINDS"]

#: Column kinds a ``column_types`` override may name.
KINDS = ("numeric", "integer", "categorical", "boolean", "datetime", "timedelta")

_FORMAT = "anydiff.tabular.TableEncoder"
_VERSION = 1
_Z_MAX = 5.0           # normal scores live in [-_Z_MAX, _Z_MAX] (a normal truncated there)
_DEQUANT = 0.49        # half width of the dequantization noise of integer columns
_MAX_DECIMALS = 6      # floats with at most this many decimals are rounded back to them
_CHUNK_ELEMS = 1 << 23  # float32 elements per block in the nearest-code search (32 MiB)
_U64 = 1 << 64
# Time resolutions tried for datetimes / timedeltas, coarsest first, in nanoseconds.
_RESOLUTIONS_NS = (86_400 * 10**9, 3_600 * 10**9, 60 * 10**9, 10**9, 10**6, 10**3, 1)
_UNIT_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


# ----------------------------------------------------------------------------------------------
# Standard normal CDF and its inverse
# ----------------------------------------------------------------------------------------------

def _uniform_to_normal(u: np.ndarray) -> np.ndarray:
    """Map ``u`` in [0, 1] to a standard normal truncated at +-_Z_MAX (a bijection)."""
    a = float(ndtr(-_Z_MAX))
    z = ndtri(a + np.clip(u, 0.0, 1.0) * (1.0 - 2.0 * a))
    return np.clip(z, -_Z_MAX, _Z_MAX)


def _normal_to_uniform(z: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_uniform_to_normal`; scores outside +-_Z_MAX are clipped first."""
    a = float(ndtr(-_Z_MAX))
    u = (ndtr(np.clip(z, -_Z_MAX, _Z_MAX)) - a) / (1.0 - 2.0 * a)
    return np.clip(u, 0.0, 1.0)


class _QuantileMap:
    """Empirical quantile transform to a standard normal (TabDDPM's ``QuantileTransformer``).

    ``refs`` (q,) are the data's quantiles at the levels ``linspace(0, 1, q)``; the CDF between
    them is piecewise linear. A value shared by a run of quantiles maps to the middle of the run
    (forward and backward interpolation averaged, as scikit-learn does).
    """

    def __init__(self, refs):
        self.refs = np.asarray(refs, dtype=np.float64)
        self.levels = np.linspace(0.0, 1.0, len(self.refs))

    @classmethod
    def fit(cls, x: np.ndarray, n_quantiles: int) -> "_QuantileMap":
        """Knots at ``min(n_quantiles, max(10, n // 10))`` levels: a summary of the column, never
        the list of its values (a model file of a small table would otherwise hold them all)."""
        xs = np.sort(np.asarray(x, dtype=np.float64))
        levels = np.linspace(0.0, 1.0, min(n_quantiles, max(10, len(xs) // 10)))
        refs = np.maximum.accumulate(np.quantile(xs, levels))
        refs[0], refs[-1] = xs[0], xs[-1]
        return cls(refs)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(n,) values -> (n,) normal scores in [-5, 5]."""
        refs, levels = self.refs, self.levels
        u = 0.5 * (np.interp(x, refs, levels) - np.interp(-x, -refs[::-1], -levels[::-1]))
        return _uniform_to_normal(u)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """(n,) normal scores -> (n,) values inside [refs[0], refs[-1]]."""
        return np.interp(_normal_to_uniform(z), self.levels, self.refs)


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------

def _native(value):
    """A numpy scalar as the Python scalar JSON understands."""
    return value.item() if isinstance(value, np.generic) else value


def _value_class(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (numbers.Integral, numbers.Real)) and not isinstance(value, (bool, np.bool_)):
        return "number"
    return type(value).__name__


_MASKED_DTYPES = (pd.BooleanDtype, pd.Float32Dtype, pd.Float64Dtype, pd.Int8Dtype, pd.Int16Dtype,
                  pd.Int32Dtype, pd.Int64Dtype, pd.UInt8Dtype, pd.UInt16Dtype, pd.UInt32Dtype,
                  pd.UInt64Dtype)


def _is_masked_dtype(dtype) -> bool:
    """pandas' nullable Int*/UInt*/Float*/boolean dtypes."""
    return isinstance(dtype, _MASKED_DTYPES)


def _numpy_dtype(dtype) -> np.dtype:
    """The numpy dtype holding a column's values (the masked dtypes' ``numpy_dtype``)."""
    return dtype.numpy_dtype if _is_masked_dtype(dtype) else np.dtype(dtype)


def _dtype_to_json(dtype, name: str) -> dict:
    if isinstance(dtype, pd.CategoricalDtype):
        return {"type": "category", "ordered": bool(dtype.ordered),
                "categories": [_native(v) for v in dtype.categories],
                "categories_dtype": _dtype_to_json(dtype.categories.dtype, name)}
    if isinstance(dtype, pd.StringDtype):
        return {"type": "string", "storage": dtype.storage,
                "na_value": "NA" if dtype.na_value is pd.NA else "nan"}
    text = str(dtype)
    try:
        same = pd.api.types.pandas_dtype(text) == dtype
    except (TypeError, ValueError):
        same = False
    if not same:
        raise ValueError(f"column {name!r}: its dtype {dtype} cannot be stored as JSON; convert the "
                         f"column before fitting (e.g. a fixed-offset time zone with "
                         f"df[{name!r}].dt.tz_convert('UTC')).")
    return {"type": "dtype", "name": text}


def _dtype_from_json(spec: Mapping):
    if spec["type"] == "category":
        cats = pd.Index(spec["categories"], dtype=_dtype_from_json(spec["categories_dtype"]))
        return pd.CategoricalDtype(cats, ordered=spec["ordered"])
    if spec["type"] == "string":
        return pd.StringDtype(spec["storage"], na_value=pd.NA if spec["na_value"] == "NA" else np.nan)
    return pd.api.types.pandas_dtype(spec["name"])


def _default_kind(dtype, name: str) -> str:
    """The column kind a dtype implies."""
    if isinstance(dtype, pd.ArrowDtype) or isinstance(dtype, pd.SparseDtype):
        raise ValueError(f"column {name!r} has dtype {dtype}, which is not supported; convert it "
                         f"to a numpy or nullable dtype, e.g. df[{name!r}] = "
                         f"df[{name!r}].astype(df[{name!r}].dtype.numpy_dtype).")
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if isinstance(dtype, (pd.CategoricalDtype, pd.StringDtype)) or dtype == object:
        return "categorical"
    if pd.api.types.is_complex_dtype(dtype):
        raise ValueError(f"column {name!r} is complex, which is not supported; split it into two "
                         f"float columns (np.real(df[{name!r}]) and np.imag(df[{name!r}])).")
    if pd.api.types.is_float_dtype(dtype):
        return "numeric"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "timedelta"
    raise ValueError(f"column {name!r} has the unsupported dtype {dtype}; convert it to a number, "
                     f"string, category, bool or datetime64 column, or drop it.")


def _check_kind_fits_dtype(kind: str, dtype, name: str) -> None:
    numberlike = (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
                  and not isinstance(dtype, pd.CategoricalDtype))
    if kind == "numeric" and not numberlike:
        raise ValueError(f"column {name!r} has dtype {dtype} but column_types says 'numeric'; convert "
                         f"it with df[{name!r}] = pd.to_numeric(df[{name!r}]) or change column_types.")
    if kind == "integer" and not (numberlike and not pd.api.types.is_bool_dtype(dtype)):
        raise ValueError(f"column {name!r} has dtype {dtype} but column_types says 'integer'; convert "
                         f"it with df[{name!r}] = pd.to_numeric(df[{name!r}]) or change column_types.")
    if kind == "datetime" and not pd.api.types.is_datetime64_any_dtype(dtype):
        raise ValueError(f"column {name!r} has dtype {dtype} but column_types says 'datetime'; convert "
                         f"it with df[{name!r}] = pd.to_datetime(df[{name!r}]).")
    if kind == "timedelta" and not pd.api.types.is_timedelta64_dtype(dtype):
        raise ValueError(f"column {name!r} has dtype {dtype} but column_types says 'timedelta'; "
                         f"convert it with df[{name!r}] = pd.to_timedelta(df[{name!r}]).")
    if kind in ("categorical", "boolean") and (pd.api.types.is_datetime64_any_dtype(dtype)
                                               or pd.api.types.is_timedelta64_dtype(dtype)):
        raise ValueError(f"column {name!r}: a {dtype} column cannot be {kind}; convert it with "
                         f"df[{name!r}] = df[{name!r}].astype(str) first.")
    if kind in ("categorical", "boolean"):
        _default_kind(dtype, name)  # rejects complex, arrow and sparse dtypes


def _time_unit(dtype) -> str:
    return dtype.unit if isinstance(dtype, pd.DatetimeTZDtype) else np.datetime_data(dtype)[0]


def _round_to(values: np.ndarray, res: int) -> np.ndarray:
    """Round int64 ``values`` to the nearest multiple of ``res`` (halves up)."""
    if res == 1:
        return values
    return (values + res // 2) // res * res


# ----------------------------------------------------------------------------------------------
# Layout record
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=True)
class ColumnLayout:
    """Where one column lives in the encoded array, and how.

    Attributes
    ----------
    name : str
        Column name.
    kind : str
        One of ``"numeric"``, ``"integer"``, ``"categorical"``, ``"boolean"``, ``"datetime"``,
        ``"timedelta"``.
    dtype : str
        ``str`` of the training column's dtype (decoded columns have exactly that dtype).
    slice : slice
        All of the column's dimensions in ``Z``.
    encoding : str
        ``"quantile"`` (one normal score), ``"onehot"`` or ``"bits"`` (a +-1 codebook), or
        ``"constant"`` (one dimension of zeros).
    value_dims : slice
        The dimensions holding the value or the codebook (``slice`` less the missing indicator).
    missing_dim : int or None
        Index in ``Z`` of the missing indicator (+1 missing, -1 present) of a numeric-like
        column that had missing values in training; else None.
    missing_code : int or None
        Index in the codebook of the "missing" code of a categorical column that had missing
        values in training (always the last code, ``len(categories)``); else None.
    categories : tuple or None
        The observed categories in code order (categorical / boolean columns).
    """

    name: str
    kind: str
    dtype: str
    slice: slice
    encoding: str
    value_dims: slice
    missing_dim: int | None = None
    missing_code: int | None = None
    categories: tuple | None = None

    @property
    def n_dims(self) -> int:
        return self.slice.stop - self.slice.start


# ----------------------------------------------------------------------------------------------
# Column codecs
# ----------------------------------------------------------------------------------------------

class _Column:
    """One column's fitted state. ``encode`` -> ``(block (n, d) float64, known (n, d) bool)``."""

    name: str
    kind: str
    dtype: Any
    has_missing: bool
    n_dims: int
    encoding: str

    def _missing_in_full(self, miss: np.ndarray) -> None:
        if miss.any() and not self.has_missing:
            raise ValueError(f"column {self.name!r} has missing values but had none in training, so "
                             f"the encoder has no way to encode them; use transform_partial() to "
                             f"treat them as unknown, or fill them (df[{self.name!r}].fillna(...)).")

    def check_finite(self, block: np.ndarray) -> None:
        if not np.isfinite(block).all():
            raise ValueError(f"Z holds NaN or inf in the dimensions of column {self.name!r}; pass "
                             f"finite values (e.g. np.nan_to_num(Z)).")


class _NumericColumn(_Column):
    """numeric / integer / datetime / timedelta: one normal score (+ a missing indicator)."""

    def __init__(self, name, kind, dtype, state):
        self.name, self.kind, self.dtype = name, kind, dtype
        self.has_missing = bool(state["has_missing"])
        self.lo, self.hi = state["lo"], state["hi"]
        self.constant = bool(state["constant"])
        self.decimals = state.get("decimals")
        self.resolution = int(state.get("resolution", 1))
        self.noise_seed = state.get("noise_seed")
        self.map = None if self.constant else _QuantileMap(state["refs"])
        self.n_dims = 1 + self.has_missing
        self.encoding = "constant" if self.constant else "quantile"
        self.int_based = kind in ("integer", "datetime", "timedelta")
        if self.int_based:
            self.signed = not (kind == "integer" and np.dtype(_numpy_dtype(dtype)).kind == "u")
            self.span = self.hi - self.lo

    # -- fitting -------------------------------------------------------------------------------
    @classmethod
    def fit(cls, name, kind, s: pd.Series, n_quantiles: int, noise_seed: list[int]):
        dtype = s.dtype
        state: dict[str, Any] = {}
        proto = cls(name, kind, dtype, {"has_missing": False, "lo": 0, "hi": 0, "constant": True})
        miss, vals = proto._extract(s)
        if kind in ("datetime", "timedelta"):
            state["unit"] = _time_unit(dtype)
        state["has_missing"] = bool(miss.any())
        if kind == "numeric":
            state["lo"], state["hi"] = float(vals.min()), float(vals.max())
            state["decimals"] = cls._decimals(vals, _numpy_dtype(dtype))
        else:
            state["lo"], state["hi"] = int(vals.min()), int(vals.max())
        state["constant"] = state["lo"] == state["hi"]
        if kind in ("datetime", "timedelta"):
            wall = proto._wall(vals) if kind == "datetime" else vals
            state["resolution"] = cls._resolution(wall, state["unit"])
        if not state["constant"]:
            col = cls(name, kind, dtype, dict(state, constant=True))
            x = col._offsets(vals) if col.int_based else vals
            if kind == "integer":
                state["noise_seed"] = list(noise_seed)
                x = x + _DEQUANT * np.random.default_rng(noise_seed + [0]).uniform(-1, 1, len(x))
            state["refs"] = _QuantileMap.fit(x, n_quantiles).refs.tolist()
        return cls(name, kind, dtype, state)

    @staticmethod
    def _decimals(vals: np.ndarray, np_dtype: np.dtype) -> int | None:
        """Smallest d <= 6 such that every value has at most d decimals (None: more)."""
        if np_dtype.kind != "f":
            return 0
        with np.errstate(over="ignore", invalid="ignore"):
            for d in range(_MAX_DECIMALS + 1):
                if np.array_equal(np.round(vals, d).astype(np_dtype), vals.astype(np_dtype)):
                    return d
        return None

    @staticmethod
    def _resolution(values: np.ndarray, unit: str) -> int:
        """Coarsest of day/hour/minute/s/ms/us/ns (in ``unit``s) dividing every value."""
        unit_ns = _UNIT_NS[unit]
        for res_ns in _RESOLUTIONS_NS:
            if res_ns % unit_ns == 0 and res_ns >= unit_ns:
                res = res_ns // unit_ns
                if np.all(values % res == 0):
                    return int(res)
        return 1

    def state(self) -> dict:
        out = {"has_missing": self.has_missing, "lo": self.lo, "hi": self.hi,
               "constant": self.constant}
        if self.kind == "numeric":
            out["decimals"] = self.decimals
        if self.kind in ("datetime", "timedelta"):
            out["resolution"] = self.resolution
            out["unit"] = _time_unit(self.dtype)
        if self.noise_seed is not None:
            out["noise_seed"] = list(self.noise_seed)
        if self.map is not None:
            out["refs"] = self.map.refs.tolist()
        return out

    # -- raw values ------------------------------------------------------------------------------
    def _extract(self, s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """``(missing (n,) bool, values of the present cells)``: float64 for numeric, an
        integer array (or integral float64) for integer, int64 epoch counts for datetimes."""
        name, kind = self.name, self.kind
        if kind in ("datetime", "timedelta"):
            return self._extract_time(s)
        if kind == "integer" and pd.api.types.is_integer_dtype(s.dtype) and not isinstance(
                s.dtype, pd.CategoricalDtype):
            miss = s.isna().to_numpy(dtype=bool)
            if _is_masked_dtype(s.dtype):
                vals = s.to_numpy(dtype=s.dtype.numpy_dtype, na_value=0)
            else:
                vals = s.to_numpy()
            return miss, vals[~miss]
        try:
            x = s.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            raise ValueError(f"column {name!r} (dtype {s.dtype}) must hold numbers for a {kind} "
                             f"column; convert it with df[{name!r}] = pd.to_numeric(df[{name!r}]).")
        if np.isinf(x).any():
            raise ValueError(f"column {name!r} holds inf or -inf; replace them, e.g. df[{name!r}] = "
                             f"df[{name!r}].replace([np.inf, -np.inf], np.nan).")
        miss = np.isnan(x)
        vals = x[~miss]
        if kind == "integer":
            if not np.array_equal(vals, np.round(vals)) or np.abs(vals).max(initial=0) >= 2.0**63:
                raise ValueError(f"column {name!r} is an integer column but holds non-integer "
                                 f"values; round them (df[{name!r}].round()) or use column_types="
                                 f"{{{name!r}: 'numeric'}}.")
        return miss, vals

    def _extract_time(self, s: pd.Series):
        name, dtype = self.name, self.dtype
        if self.kind == "datetime":
            if not pd.api.types.is_datetime64_any_dtype(s.dtype):
                raise ValueError(f"column {name!r} must hold datetimes like in training (dtype "
                                 f"{dtype}); convert it with df[{name!r}] = pd.to_datetime(df[{name!r}]).")
            aware = isinstance(s.dtype, pd.DatetimeTZDtype)
            if aware != isinstance(dtype, pd.DatetimeTZDtype):
                raise ValueError(f"column {name!r} has dtype {s.dtype} but {dtype} in training; "
                                 f"convert it with df[{name!r}].dt.tz_localize(...) / "
                                 f".dt.tz_convert(...).")
            if aware:
                s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        elif not pd.api.types.is_timedelta64_dtype(s.dtype):
            raise ValueError(f"column {name!r} must hold timedeltas like in training (dtype {dtype}); "
                             f"convert it with df[{name!r}] = pd.to_timedelta(df[{name!r}]).")
        unit = _time_unit(dtype)
        miss = s.isna().to_numpy(dtype=bool)
        vals = s.dt.as_unit(unit).to_numpy().view(np.int64)
        return miss, vals[~miss]

    def _wall(self, utc: np.ndarray) -> np.ndarray:
        """int64 UTC epoch counts -> int64 local wall-clock counts (tz-aware columns)."""
        if not isinstance(self.dtype, pd.DatetimeTZDtype) or len(utc) == 0:
            return utc
        unit = self.dtype.unit
        idx = pd.DatetimeIndex(utc.view(f"M8[{unit}]")).tz_localize("UTC").tz_convert(self.dtype.tz)
        return idx.tz_localize(None).as_unit(unit).to_numpy().view(np.int64)

    # -- exact integer offsets -------------------------------------------------------------------
    def _offsets(self, vals: np.ndarray) -> np.ndarray:
        """Integers -> float64 ``value - lo`` computed exactly (wrap-around uint64 arithmetic);
        values outside [lo, hi] go to -1 or span + 1 (the quantile map clips them)."""
        lo, hi = self.lo, self.hi
        below, above = vals < lo, vals > hi  # numpy compares with out-of-range Python ints right
        inside = ~(below | above)
        out = np.empty(len(vals), dtype=np.float64)
        out[below], out[above] = -1.0, float(self.span) + 1.0
        w = vals[inside]
        if self.signed:
            bits = w.astype(np.int64).view(np.uint64)
        else:
            bits = w.astype(np.uint64)
        out[inside] = (bits - np.uint64(lo % _U64)).astype(np.float64)
        return out

    def _from_offsets(self, x: np.ndarray) -> np.ndarray:
        """float64 offsets -> int64 / uint64 values in [lo, hi] (rounded)."""
        top = min(float(self.span), np.nextafter(2.0**64, 0.0))
        d = np.clip(np.rint(x), 0.0, top).astype(np.uint64)
        d = np.minimum(d, np.uint64(self.span))
        bits = d + np.uint64(self.lo % _U64)
        return bits.view(np.int64) if self.signed else bits

    # -- encode / decode -------------------------------------------------------------------------
    def _noise(self, n: int) -> np.ndarray:
        rng = np.random.default_rng(list(self.noise_seed) + [1])
        return _DEQUANT * rng.uniform(-1.0, 1.0, n)

    def encode(self, s: pd.Series, mode: str) -> tuple[np.ndarray, np.ndarray]:
        miss, vals = self._extract(s)
        n = len(s)
        block = np.zeros((n, self.n_dims))
        known = np.ones((n, self.n_dims), dtype=bool)
        if mode == "full":
            self._missing_in_full(miss)
        if not self.constant:
            x = self._offsets(vals) if self.int_based else vals
            if self.kind == "integer":
                x = x + self._noise(n)[~miss]
            block[~miss, 0] = self.map.forward(x)
        if self.has_missing:
            block[:, 1] = np.where(miss, 1.0, -1.0)
        if mode != "full":
            known[miss, 0] = False
            if self.has_missing:
                if mode == "impute":
                    block[miss, 1] = -1.0  # an imputed cell must get a value
                else:
                    known[miss, 1] = False
        block[~known] = 0.0
        return block, known

    def decode(self, block: np.ndarray, forbid_missing: bool):
        self.check_finite(block)
        n = len(block)
        miss = (block[:, 1] > 0) if (self.has_missing and not forbid_missing) else np.zeros(n, bool)
        if self.kind == "numeric":
            if self.constant:
                x = np.full(n, self.lo)
            else:
                x = self.map.inverse(block[:, 0])
                if self.decimals is not None:
                    x = np.round(x, self.decimals)
                x = np.clip(x, self.lo, self.hi)
            return self._restore_numeric(x, miss)
        if self.constant:
            vals = self._from_offsets(np.zeros(n))
        else:
            vals = self._from_offsets(self.map.inverse(block[:, 0]))
        if self.kind == "integer":
            return self._restore_numeric(vals, miss)
        # datetime / timedelta: round on the (local wall) clock, keep within the training range
        if self.resolution > 1:
            wall = self._wall(vals)
            vals = _round_to(wall, self.resolution) - (wall - vals)
            vals = np.clip(vals, self.lo, self.hi)
        vals = np.where(miss, np.iinfo(np.int64).min, vals)  # NaT
        unit = _time_unit(self.dtype)
        if self.kind == "timedelta":
            return pd.array(vals.view(f"m8[{unit}]"), dtype=self.dtype)
        arr = pd.DatetimeIndex(vals.view(f"M8[{unit}]"))
        if isinstance(self.dtype, pd.DatetimeTZDtype):
            arr = arr.tz_localize("UTC").tz_convert(self.dtype.tz)
        return pd.array(arr, dtype=self.dtype)

    def _restore_numeric(self, vals: np.ndarray, miss: np.ndarray):
        dtype = self.dtype
        if _is_masked_dtype(dtype):
            np_dtype = dtype.numpy_dtype
            data = np.where(miss, 0, vals).astype(np_dtype)
            if isinstance(dtype, pd.BooleanDtype):
                return pd.arrays.BooleanArray(data, miss.copy())
            if np_dtype.kind == "f":
                return pd.arrays.FloatingArray(data, miss.copy())
            return pd.arrays.IntegerArray(data, miss.copy())
        np_dtype = np.dtype(dtype)
        if np_dtype.kind == "f":
            return np.where(miss, np.nan, vals).astype(np_dtype)
        return vals.astype(np_dtype)  # numpy int / bool columns never had missing values


class _CategoricalColumn(_Column):
    """categorical / boolean: a +-1 codebook (one-hot or analog bits) over the observed
    categories, plus a "missing" code (the last one) where training had missing values."""

    def __init__(self, name, kind, dtype, state, max_onehot: int):
        self.name, self.kind, self.dtype = name, kind, dtype
        self.categories = list(state["categories"])
        self.has_missing = bool(state["has_missing"])
        self.na_value = state.get("na_value", "nan")
        self.n_codes = len(self.categories) + self.has_missing
        if self.n_codes == 1:
            self.encoding, self.n_dims = "constant", 1
        elif len(self.categories) <= max_onehot:
            self.encoding, self.n_dims = "onehot", self.n_codes
        else:
            self.encoding, self.n_dims = "bits", max(1, math.ceil(math.log2(self.n_codes)))
        self._lookup = pd.Index(self.categories, dtype=object)
        if isinstance(dtype, pd.CategoricalDtype):  # observed category -> position in the dtype
            positions = dtype.categories.get_indexer(pd.Index(self.categories, dtype=object))
            if (positions < 0).any():
                positions = np.array([list(map(_native, dtype.categories)).index(c)
                                      for c in self.categories])
            self._positions = positions

    @classmethod
    def fit(cls, name, kind, s: pd.Series, max_onehot: int):
        dtype = s.dtype
        miss = s.isna().to_numpy(dtype=bool)
        if isinstance(dtype, pd.CategoricalDtype):
            codes = s.cat.codes.to_numpy()
            counts = np.bincount(codes[codes >= 0], minlength=len(dtype.categories))
            cats = [_native(dtype.categories[i]) for i in np.flatnonzero(counts)]
            cls._check_values(name, [_native(v) for v in dtype.categories], dtype)
        else:
            cats = [_native(v) for v in pd.unique(s[~miss].to_numpy(dtype=object))]
            cls._check_values(name, cats, dtype)
            try:
                cats = sorted(cats)
            except TypeError:  # pragma: no cover - a single value class always sorts
                pass
        if kind == "boolean" and len(cats) > 2:
            raise ValueError(f"column {name!r} is 'boolean' in column_types but holds {len(cats)} "
                             f"distinct values; use column_types={{{name!r}: 'categorical'}}.")
        state = {"categories": cats, "has_missing": bool(miss.any())}
        if dtype == object and miss.any():
            missing = s[miss]
            if all(v is None for v in missing):
                state["na_value"] = "None"
            elif all(v is pd.NA for v in missing):
                state["na_value"] = "NA"
        return cls(name, kind, dtype, state, max_onehot)

    @staticmethod
    def _check_values(name, values, dtype) -> None:
        classes = {_value_class(v) for v in values}
        if len(classes) > 1:
            raise ValueError(f"column {name!r} mixes value types ({', '.join(sorted(classes))}, e.g. "
                             f"1 and 'a'); convert it with df[{name!r}] = df[{name!r}].astype(str), "
                             f"or with pd.to_numeric and column_types={{{name!r}: 'numeric'}}.")
        if classes - {"str", "bool", "number"}:
            raise ValueError(f"column {name!r} holds values of type {classes.pop()}, which the "
                             f"encoder cannot store; convert it with df[{name!r}] = "
                             f"df[{name!r}].astype(str) (dates and times: pd.to_datetime).")

    def state(self) -> dict:
        out = {"categories": list(self.categories), "has_missing": self.has_missing}
        if self.na_value != "nan":
            out["na_value"] = self.na_value
        return out

    # -- codebook ------------------------------------------------------------------------------
    def codebook(self, n_codes: int | None = None) -> np.ndarray:
        """(n_codes, n_dims) +-1 code vectors of codes 0 .. n_codes - 1 (float32)."""
        codes = np.arange(self.n_codes if n_codes is None else n_codes)
        return self._code_vectors(codes).astype(np.float32)

    def _code_vectors(self, codes: np.ndarray) -> np.ndarray:
        n = len(codes)
        if self.encoding == "constant":
            return np.zeros((n, 1))
        if self.encoding == "onehot":
            out = -np.ones((n, self.n_dims))
            out[np.arange(n), codes] = 1.0
            return out
        bits = (codes[:, None] >> np.arange(self.n_dims)[None, :]) & 1
        return bits * 2.0 - 1.0

    # -- encode / decode -------------------------------------------------------------------------
    def codes_of(self, s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """``(codes (n,) int64 with -1 where missing, missing (n,) bool)``."""
        miss = s.isna().to_numpy(dtype=bool)
        values = s.to_numpy(dtype=object)
        codes = self._lookup.get_indexer(pd.Index(values, dtype=object)).astype(np.int64)
        unseen = (codes < 0) & ~miss
        if unseen.any():
            value = values[np.flatnonzero(unseen)[0]]
            raise ValueError(f"column {self.name!r} holds the value {value!r}, never seen in "
                             f"training (known: {self.categories[:10]!r}"
                             f"{' ...' if len(self.categories) > 10 else ''}); replace it or "
                             f"refit the encoder on data that includes it.")
        return codes, miss

    def encode(self, s: pd.Series, mode: str) -> tuple[np.ndarray, np.ndarray]:
        codes, miss = self.codes_of(s)
        known = np.ones((len(s), self.n_dims), dtype=bool)
        if mode == "full":
            self._missing_in_full(miss)
            codes = np.where(miss, len(self.categories), codes)
        else:
            known[miss] = False
            codes = np.where(miss, 0, codes)
        block = self._code_vectors(codes)
        block[~known] = 0.0
        return block, known

    def decode_codes(self, block: np.ndarray, forbid_missing: bool) -> np.ndarray:
        """(n, n_dims) -> (n,) code indices; only valid (and, with ``forbid_missing``,
        non-missing) codes come out."""
        n = len(block)
        allowed = len(self.categories) + (self.has_missing and not forbid_missing)
        if self.encoding == "constant" or allowed == 1:
            return np.zeros(n, dtype=np.int64)
        if self.encoding == "onehot":
            return np.argmax(block[:, :allowed], axis=1).astype(np.int64)
        # analog bits: threshold at 0; an invalid code goes to the valid code vector with the
        # largest dot product (the nearest one), searched in blocks of rows to bound memory
        codes = ((block > 0).astype(np.int64) << np.arange(self.n_dims)).sum(axis=1)
        bad = np.flatnonzero(codes >= allowed)
        if len(bad):
            book = self.codebook(allowed)  # (allowed, n_dims)
            step = max(1, _CHUNK_ELEMS // allowed)
            for i in range(0, len(bad), step):
                rows = bad[i:i + step]
                scores = block[rows].astype(np.float32) @ book.T
                codes[rows] = np.argmax(scores, axis=1)
        return codes

    def decode(self, block: np.ndarray, forbid_missing: bool):
        self.check_finite(block)
        codes = self.decode_codes(block, forbid_missing)
        k = len(self.categories)
        miss = codes >= k
        safe = np.where(miss, 0, codes)
        dtype = self.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            full = np.where(miss, -1, self._positions[safe])
            return pd.Categorical.from_codes(full, dtype=dtype)
        cats = np.empty(k, dtype=object)
        cats[:] = self.categories
        values = cats[safe]
        if dtype == object:
            values[miss] = {"None": None, "NA": pd.NA}.get(self.na_value, np.nan)
            return values
        if isinstance(dtype, pd.StringDtype):
            values[miss] = None
            return pd.array(values, dtype=dtype)
        if _is_masked_dtype(dtype):
            np_dtype = dtype.numpy_dtype
            values[miss] = 0
            data = values.astype(np_dtype)
            if isinstance(dtype, pd.BooleanDtype):
                return pd.arrays.BooleanArray(data, miss)
            if np_dtype.kind == "f":
                return pd.arrays.FloatingArray(data, miss)
            return pd.arrays.IntegerArray(data, miss)
        np_dtype = np.dtype(dtype)
        if np_dtype.kind == "f":
            values[miss] = np.nan
        return values.astype(np_dtype)


# ----------------------------------------------------------------------------------------------
# The table encoder
# ----------------------------------------------------------------------------------------------

def _check_frame(df, what: str = "df") -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame, got {type(df).__name__}; wrap it, e.g. "
                         f"pd.DataFrame(data).")
    for col in df.columns:
        if not isinstance(col, str):
            raise ValueError(f"column {col!r} of {what} is not named by a string; rename the columns "
                             f"with df.columns = df.columns.astype(str).")
    dup = df.columns[df.columns.duplicated()]
    if len(dup):
        raise ValueError(f"column {dup[0]!r} appears more than once in {what}; give every column a "
                         f"unique name (or drop the copies with df.loc[:, ~df.columns.duplicated()]).")


class TableEncoder:
    """Encode a mixed-type DataFrame as a float32 array for a Gaussian diffusion model, and back.

    Every column becomes a block of dimensions of ``Z`` (see :attr:`layout_`):

    * float columns (``numeric``): the empirical quantile transform to a standard normal
      (TabDDPM, Kotelnikov et al. 2023): at most ``quantiles`` quantiles, piecewise-linear
      interpolation, ``ndtri``, a normal truncated at +-5. Decoded values stay within the
      training range and, where every training value has at most 6 decimals, are rounded to the
      largest number of decimals seen.
    * integer columns (``integer``): the same on values dequantized with uniform noise of half
      width 0.49 (seeded by ``random_state``), rounded and clipped back.
    * ``datetime`` / ``timedelta`` columns: the same on the int64 epoch count, rounded back to
      the coarsest of day/hour/minute/second/ms/us/ns that divides every training value (on the
      local clock for time-zone-aware columns).
    * ``categorical`` / ``boolean`` columns: a +-1 codebook over the observed categories: one-hot
      when there are at most ``max_onehot`` of them, analog bits (Chen et al. 2022,
      ``ceil(log2 K)`` dimensions) above; decoding takes the nearest valid code.
    * a constant column is one dimension of zeros.

    Missing values (NaN, None, pd.NA, NaT) are modelled: a numeric-like column with missing
    training values gets a missing indicator dimension (+1 missing, -1 present; the value
    dimension of a missing cell is 0), a categorical one a "missing" code.

    Parameters
    ----------
    column_types : dict of str to str, optional
        Kind overrides per column name: ``"numeric"``, ``"integer"``, ``"categorical"``,
        ``"boolean"``, ``"datetime"`` or ``"timedelta"``. Other columns' kinds follow their dtypes.
    max_onehot : int, default 16
        Largest number of observed categories encoded one-hot; more use analog bits.
    quantiles : int, default 1000
        Largest number of quantiles of the quantile transform (at least 2); a column of n values
        gets ``min(quantiles, max(10, n // 10))``, interpolated between its order statistics.
    random_state : int or None, default 0
        Seeds the dequantization noise of integer columns (``fit`` and ``transform``), so
        ``transform`` is reproducible. None draws a seed once, at ``fit``.

    Attributes
    ----------
    columns_ : list of str
        Training column names, in order.
    n_dims_ : int
        Width of the encoded array.
    layout_ : list of ColumnLayout
        One record per column: name, kind, dtype, slice of dims, encoding, missing indicator or
        code, categories.
    seed_ : int
        The seed actually used.

    Notes
    -----
    ``inverse_transform(transform(df))`` reproduces categorical, boolean, integer and datetime
    columns exactly, and floats up to the float32 resolution of ``Z`` (exactly, after the
    decimals rounding, for the usual few-decimal measurements), as long as float32 resolves the
    column: a score changes by about 1e-8 of the quantile level per float32 step, so a gap of
    ``g`` between neighbouring quantiles, of which there are ``q``, moves a decoded value by up
    to about ``1.5e-8 * q * g``. Integers survive that while it stays under the 0.01 margin the
    noise leaves (e.g. ages or counts; not a sparse 64-bit ID column, which is better declared
    categorical); datetimes while it stays under half their resolution.

    Only per-column summaries are kept (at most ``quantiles`` quantiles, and at most one per ten
    values, so a small table's values are not stored one by one; the category lists; each
    column's minimum and maximum): never rows.

    Examples
    --------
    >>> enc = TableEncoder().fit(df)                     # doctest: +SKIP
    >>> Z = enc.transform(df)                            # (n, enc.n_dims_) float32
    >>> enc.inverse_transform(Z).dtypes.equals(df.dtypes)  # doctest: +SKIP
    True
    """

    def __init__(self, column_types: Mapping[str, str] | None = None, max_onehot: int = 16,
                 quantiles: int = 1000, random_state: int | None = 0):
        self.column_types = column_types
        self.max_onehot = max_onehot
        self.quantiles = quantiles
        self.random_state = random_state

    def __repr__(self) -> str:
        return (f"TableEncoder(column_types={self.column_types!r}, max_onehot={self.max_onehot!r}, "
                f"quantiles={self.quantiles!r}, random_state={self.random_state!r})")

    # -- parameters --------------------------------------------------------------------------
    def _check_params(self) -> None:
        ok_int = lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool)  # noqa: E731
        if not ok_int(self.max_onehot) or self.max_onehot < 0:
            raise ValueError(f"max_onehot must be an integer >= 0, got {self.max_onehot!r}.")
        if not ok_int(self.quantiles) or self.quantiles < 2:
            raise ValueError(f"quantiles must be an integer >= 2, got {self.quantiles!r}.")
        rs = self.random_state
        if rs is not None and not isinstance(rs, np.random.Generator) and not (ok_int(rs) and rs >= 0):
            raise ValueError(f"random_state must be None or an integer >= 0, got {rs!r}.")
        if self.column_types is not None and not isinstance(self.column_types, Mapping):
            raise ValueError("column_types must be a dict mapping column names to one of "
                             f"{KINDS}, got {type(self.column_types).__name__}.")
        for col, kind in (self.column_types or {}).items():
            if kind not in KINDS:
                raise ValueError(f"column_types[{col!r}] = {kind!r} is not a column kind; use one of "
                                 f"{KINDS}.")

    def _check_fitted(self) -> None:
        if not hasattr(self, "layout_"):
            from sklearn.exceptions import NotFittedError
            raise NotFittedError("This TableEncoder is not fitted yet; call fit(df) first.")

    # -- fit -----------------------------------------------------------------------------------
    def fit(self, df: pd.DataFrame, y=None) -> "TableEncoder":
        """Learn every column's kind, codebook or quantiles from ``df``.

        Parameters
        ----------
        df : pandas.DataFrame, (n_rows, n_columns)
            Training table; string column names, missing values allowed (not a whole column).
        y : ignored

        Returns
        -------
        self
        """
        self._check_params()
        _check_frame(df)
        if df.shape[0] == 0 or df.shape[1] == 0:
            raise ValueError(f"df is empty ({df.shape[0]} rows, {df.shape[1]} columns); pass a table "
                             f"with at least one row and one column.")
        overrides = dict(self.column_types or {})
        for col in overrides:
            if col not in df.columns:
                raise ValueError(f"column_types names column {col!r}, which df does not have; remove "
                                 f"it from column_types or fix the name.")
        rs = self.random_state
        if isinstance(rs, np.random.Generator):
            seed = int(rs.integers(2**63))
        elif rs is None:
            seed = int(np.random.SeedSequence().entropy % 2**63)
        else:
            seed = int(rs)
        columns = []
        for j, name in enumerate(df.columns):
            s = df[name]
            kind = overrides.get(name) or _default_kind(s.dtype, name)
            _check_kind_fits_dtype(kind, s.dtype, name)
            if s.isna().all():
                raise ValueError(f"column {name!r} is entirely missing; drop it "
                                 f"(df.drop(columns=[{name!r}])) or fill it.")
            if kind in ("categorical", "boolean"):
                columns.append(_CategoricalColumn.fit(name, kind, s, self.max_onehot))
            else:
                columns.append(_NumericColumn.fit(name, kind, s, self.quantiles, [seed, j]))
        self.seed_ = seed
        self._set_columns(columns)
        return self

    def _set_columns(self, columns: list[_Column]) -> None:
        self._columns = columns
        self.columns_ = [c.name for c in columns]
        layout, start = [], 0
        for c in columns:
            stop = start + c.n_dims
            numeric = isinstance(c, _NumericColumn)
            missing_dim = start + 1 if (numeric and c.has_missing) else None
            layout.append(ColumnLayout(
                name=c.name, kind=c.kind, dtype=str(c.dtype), slice=slice(start, stop),
                encoding=c.encoding, value_dims=slice(start, start + 1) if numeric else slice(start, stop),
                missing_dim=missing_dim,
                missing_code=len(c.categories) if (not numeric and c.has_missing) else None,
                categories=None if numeric else tuple(c.categories)))
            start = stop
        self.layout_ = layout
        self.n_dims_ = start

    def fit_transform(self, df: pd.DataFrame, y=None) -> np.ndarray:
        """``fit(df).transform(df)``."""
        return self.fit(df).transform(df)

    def column_slices(self) -> dict[str, slice]:
        """Column name -> its slice of dimensions in ``Z``."""
        self._check_fitted()
        return {rec.name: rec.slice for rec in self.layout_}

    # -- transform -----------------------------------------------------------------------------
    def _check_columns(self, df, partial: bool) -> None:
        _check_frame(df)
        extra = [c for c in df.columns if c not in self.columns_]
        if extra:
            raise ValueError(f"column {extra[0]!r} was not in the training table; drop it "
                             f"(df.drop(columns={extra!r})). Training columns: {self.columns_!r}.")
        if not partial:
            missing = [c for c in self.columns_ if c not in df.columns]
            if missing:
                raise ValueError(f"column {missing[0]!r} of the training table is absent; add it "
                                 f"(use transform_partial for a table with some columns unknown).")

    def _encode(self, df: pd.DataFrame, mode: str) -> tuple[np.ndarray, np.ndarray]:
        n = len(df)
        out = np.zeros((n, self.n_dims_), dtype=np.float32)
        mask = np.zeros((n, self.n_dims_), dtype=np.float32)
        for rec, col in zip(self.layout_, self._columns):
            if col.name not in df.columns:
                continue
            block, known = col.encode(df[col.name], mode)
            out[:, rec.slice] = block
            mask[:, rec.slice] = known
        return out, mask

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Encode a table with the training columns (any order).

        Parameters
        ----------
        df : pandas.DataFrame, (n_rows, n_columns)

        Returns
        -------
        Z : ndarray of float32, (n_rows, n_dims_)
            Missing cells encoded by the missing indicator / code (see the class docstring).
        """
        self._check_fitted()
        self._check_columns(df, partial=False)
        return self._encode(df, "full")[0]

    def transform_partial(self, df: pd.DataFrame, impute: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Encode a partly known table for inpainting (conditions or imputation).

        A missing cell, and every cell of a training column absent from ``df``, is unknown:
        its dimensions have ``mask == 0``. With ``impute=True`` the missing indicator of a
        missing numeric-like cell is known and set to -1 (present), so the cell gets a value; for
        a categorical cell decode with ``inverse_transform(Z, forbid_missing=True)``.

        Parameters
        ----------
        df : pandas.DataFrame, (n_rows, n_columns)
            Some or all of the training columns.
        impute : bool, default True

        Returns
        -------
        known : ndarray of float32, (n_rows, n_dims_)
            Encoded values where known, 0 elsewhere.
        mask : ndarray of float32, (n_rows, n_dims_)
            1 where known, 0 where unknown.
        """
        self._check_fitted()
        self._check_columns(df, partial=True)
        return self._encode(df, "impute" if impute else "partial")

    def inverse_transform(self, Z, forbid_missing: bool = False) -> pd.DataFrame:
        """Decode an array (e.g. a model's samples) into a table.

        Parameters
        ----------
        Z : array-like of float, (n_rows, n_dims_)
        forbid_missing : bool, default False
            Decode every cell to a non-missing value (ignore missing indicators and codes), as
            imputation needs.

        Returns
        -------
        pandas.DataFrame, (n_rows, n_columns)
            The training columns in order, with their exact dtypes (and a ``category`` dtype's
            full category list); a RangeIndex.
        """
        self._check_fitted()
        Z = np.asarray(Z)
        if Z.ndim != 2 or Z.shape[1] != self.n_dims_:
            raise ValueError(f"Z must have shape (n_rows, {self.n_dims_}) for the columns "
                             f"{self.columns_!r}, got {Z.shape}; pass an array from transform() or "
                             f"a model trained on it.")
        if not np.issubdtype(Z.dtype, np.number) or np.issubdtype(Z.dtype, np.complexfloating):
            raise ValueError(f"Z must hold real numbers, got dtype {Z.dtype}.")
        Z = Z.astype(np.float64, copy=False)
        index = pd.RangeIndex(len(Z))
        data = {}
        for rec, col in zip(self.layout_, self._columns):
            values = col.decode(Z[:, rec.slice], bool(forbid_missing))
            # a Series of the training dtype, so that pandas infers nothing (object stays object)
            data[col.name] = pd.Series(values, index=index, dtype=col.dtype, copy=False)
        return pd.DataFrame(data, index=index)

    # -- serialisation -------------------------------------------------------------------------
    def to_json(self) -> dict:
        """The fitted state as a JSON-serialisable dict (per-column quantiles and categories,
        never rows); :meth:`from_json` rebuilds an encoder that behaves identically."""
        self._check_fitted()
        rs = self.random_state
        params = {"column_types": dict(self.column_types) if self.column_types else None,
                  "max_onehot": int(self.max_onehot), "quantiles": int(self.quantiles),
                  "random_state": int(rs) if isinstance(rs, numbers.Integral) else None}
        cols = [{"name": c.name, "kind": c.kind, "dtype": _dtype_to_json(c.dtype, c.name),
                 "state": c.state()} for c in self._columns]
        return {"format": _FORMAT, "version": _VERSION, "params": params, "seed": self.seed_,
                "columns": cols}

    @classmethod
    def from_json(cls, meta: Mapping) -> "TableEncoder":
        """Rebuild a fitted encoder from :meth:`to_json`'s dict (after ``json.loads`` too)."""
        if not isinstance(meta, Mapping) or meta.get("format") != _FORMAT:
            raise ValueError(f"meta is not a TableEncoder.to_json() dict (format {_FORMAT!r}).")
        if meta.get("version") != _VERSION:
            raise ValueError(f"meta has version {meta.get('version')!r}; this anydiff reads "
                             f"version {_VERSION}.")
        enc = cls(**meta["params"])
        columns: list[_Column] = []
        for spec in meta["columns"]:
            dtype = _dtype_from_json(spec["dtype"])
            if spec["kind"] in ("categorical", "boolean"):
                columns.append(_CategoricalColumn(spec["name"], spec["kind"], dtype, spec["state"],
                                                  enc.max_onehot))
            else:
                columns.append(_NumericColumn(spec["name"], spec["kind"], dtype, spec["state"]))
        enc.seed_ = int(meta["seed"])
        enc._set_columns(columns)
        return enc
