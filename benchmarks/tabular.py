"""Tabular benchmark: TabularDiffusion against a Gaussian mixture, ForestDiffusion, TVAE, CTGAN, a
SMOTE-style interpolator and real data, on wine, breast cancer, digits, penguins and a generated
mixed-type table (``benchmarks/tabular_data.py``).

For each data set and seed the real table is shuffled and split 50/50 into a training and a
holdout table (the generated table is drawn afresh per seed, 2 x 5000 rows). Every method is fitted
on the training table and draws as many rows as it has; "Real" is the training table itself: a
real sample of the same size that the holdout never saw (its scores are the floor / reference).
Scores, against the holdout unless said otherwise (``anydiff.tabular.metrics``):

* C2ST ROC-AUC (0.5 best), sdmetrics column shapes and column pair trends (means of the per-column
  / per-pair scores; at most ``--max-pairs`` pairs, drawn with a fixed seed, on wide tables),
* ML efficiency: a HistGradientBoosting model trained on the synthetic table predicts the target
  column of the holdout (macro F1); "Real" trains on the training table,
* DCR: share of synthetic rows closer to the training table than to the holdout (0.5 = no
  memorisation) and the number of exact copies of training rows ("Real" is the training table:
  n/a),
* missing-rate error: the largest over the columns of |missing rate of the synthetic table -
  that of the training table|, in points ("Real": training table against the holdout, the
  sampling noise),
* fit and sample wall time, and the peak resident memory of the method: every method runs in its
  own child process (multiprocessing, 'spawn' start method, one child per method, data set and
  seed), which reads its own peak after fit + sample: ``VmHWM`` of ``/proc/self/status``, the
  high-water mark of that process's address space. (``getrusage(RUSAGE_SELF).ru_maxrss`` is not
  used: Linux carries it over fork + exec, so a spawned child reports at least the size of its
  parent, about 400 MB here.) The table shows that peak and, in brackets, the growth over the
  child's peak right after it imported the method's packages (torch alone is about 300 MB).
  TabularDiffusion's imputation runs in the same child after the peak is read.

Missing values, per method:

* TabularDiffusion: native (its encoder adds a missing indicator / a missing category).
* GMM, SMOTE: one-hot categoricals with a "missing" level, standardized numerics with NaN set to 0
  and a 0/1 missing-indicator column per column with NaN in the training table; decoded back
  (argmax for categories, indicator > 0.5 -> NaN, integers rounded, every number clipped to the
  training range).
* TVAE, CTGAN (they refuse NaN): numerics filled with the training median plus a discrete 0/1
  missing-indicator column, categoricals with a "missing" category; decoded as above.
* ForestDiffusion: NaN passed natively (it trains one model per column then), plus a binary
  missing-indicator column per column with NaN (its output never holds NaN: the indicator puts
  it back). Categories go in as integer codes (cat_indexes, >= 3 levels; bin_indexes for two),
  integers in int_indexes. Its one-hot step (``dummify``) turns a missing category into the
  reference level; the benchmark subclasses it so that missing categories stay missing (NaN
  dummies), which its imputation needs to see them at all, and so that new rows (the holdout to
  impute) get the training dummies.

Budgets (one CPU thread): TabularDiffusion runs at its defaults (max_steps="auto": 300 passes, 300
to 1000 steps of batch 512; bf16 autocast where the CPU has AMX); "TabularDiffusion-sde" is the
same model sampled with SDE-DPM-Solver++(2M) at 50 steps instead of the default ODE solver at
20. TVAE gets 300 epochs,
CTGAN 150 (about 1 s an epoch on the 5000-row table here). ForestDiffusion is very slow on one
core (about 10 ms a tree; at its defaults, n_t=50 x 100 trees x one tree per output column, a fit
on wine alone trains 80,000 trees): it runs with n_t=10, 20 trees, duplicate_K capped at
5000 // rows, and only on wine, cancer and penguins (``--fd-datasets``): on digits (74 one-hot
outputs) one fit at an even smaller budget (10 trees, duplicate_K=2) took 350 s on the loaded
machine, and the mixed table (about 80 outputs, one model per output because of its NaN) needs
about 16,000 trees per fit, twice (flow for sampling, vp for imputation), per seed. The GMM's BIC
grid is (1, 2, 3, 5, 8, 12, 20) components, (1, 5) on the large table.

Imputation table: 20 % of the cells of (up to ``--impute-rows`` rows of) the holdout are removed at
random (MCAR); every imputer is fitted on the training table and fills the holes: TabularDiffusion
(``impute(n_imputations=10)``: mean of the 10 for numbers, mode for categories), ForestDiffusion
(``diffusion_type='vp'``, ``impute(k=10)``, the same summary), sklearn's IterativeImputer and
KNNImputer (on standardized numbers and ordinal category codes, rounded back) and a mean / mode
fill. Scores: RMSE of the numeric cells on the training column's standard deviation (averaged over
the columns), accuracy of the categorical cells, and for the multiple imputers the coverage of the
90 % interval of the 10 draws (5th-95th percentile) on the numeric cells. With 10 draws even a
perfectly calibrated imputer covers only about 76 % of continuous truths with that interval (the
table prints the simulated value), so a 85-95 % coverage target needs more draws or a wider
interval. Holdout categories the training table never shows are removed too (for every imputer,
not scored): TabularDiffusion.impute raises on unseen values. Imputation is the slow part of
TabularDiffusion here: 10 draws x 100 steps x 10 RePaint repeats = 10,000 network calls, about
45 s for 100 rows, hence ``--impute-rows 100``.

Large table (full runs, unless ``--skip-large``): the generated table at 100,000 rows x 50 columns,
fit + sample time and peak memory of TabularDiffusion and of the cheapest peers (GMM, SMOTE), one
seed.

    OMP_NUM_THREADS=1 python benchmarks/tabular.py --seeds 2          # 60 min here (2 shared cores)
    OMP_NUM_THREADS=1 python benchmarks/tabular.py                    # 3 seeds: about 85 min
    OMP_NUM_THREADS=1 python benchmarks/tabular.py --quick            # smoke run, about 4 min
    OMP_NUM_THREADS=1 python benchmarks/tabular.py --quick --in-process   # about 2 min, no memory
    python benchmarks/tabular.py --datasets wine,penguins --methods TabularDiffusion,GMM --no-impute

Wall times depend heavily on what else runs: on the shared 2-core machine the same 3000-step
TabularDiffusion fit took 15 s or 95 s depending on the other jobs.

Peers missing at import time are reported as "not installed". Every seed is fixed.
"""
from __future__ import annotations

import os

# one thread everywhere, set before numpy loads; LOKY_MAX_CPU_COUNT=1 keeps ctgan's DataTransformer
# (joblib Parallel(n_jobs=-1) on tables of >= 500 rows) sequential: its idle loky workers otherwise
# held every child process open for minutes after it had finished
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "LOKY_MAX_CPU_COUNT"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import math  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import git_revision  # noqa: E402
from tabular_data import DATASETS, make_mixed  # noqa: E402

METHODS = ("TabularDiffusion", "TabularDiffusion-bits", "TabularDiffusion-sde", "GMM", "ForestDiffusion", "TVAE", "CTGAN", "SMOTE", "Real")
# ours: the default (one-hot up to 16 categories, analog bits above), the alternative
# representation measured beside it, analog bits for every categorical column (max_onehot=1), and
# the default model sampled with the stochastic sampler (the default is the probability-flow ODE)
OURS = {"TabularDiffusion": {}, "TabularDiffusion-bits": {"max_onehot": 1},
        "TabularDiffusion-sde": {"sampler": "dpmpp_2m_sde", "sampling_steps": 50}}
PEERS = tuple(m for m in METHODS if m not in (*OURS, "Real"))
IMPUTERS = ("TabularDiffusion", "ForestDiffusion", "IterativeImputer", "KNNImputer", "Mean/mode")
LARGE_METHODS = ("TabularDiffusion", "GMM", "SMOTE")
# the package each method needs (checked before running: a missing one is "not installed")
REQUIRES = {"TabularDiffusion": ["anydiff", "torch"], "TabularDiffusion-bits": ["anydiff", "torch"],
            "TabularDiffusion-sde": ["anydiff", "torch"], "GMM": ["sklearn"],
            "ForestDiffusion": ["ForestDiffusion", "xgboost"], "TVAE": ["ctgan"], "CTGAN": ["ctgan"],
            "SMOTE": ["sklearn"], "Real": []}
EPOCH = pd.Timestamp("1970-01-01")
DAY = pd.Timedelta(days=1)


def installed(method: str) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in REQUIRES[method])


def version(pkg: str) -> str:
    try:
        from importlib.metadata import version as v
        return v(pkg)
    except Exception:  # noqa: BLE001
        return "not installed"


# ---------------------------------------------------------------------------------------------
# A shared codec: DataFrame <-> float code matrix (NaN kept) <-> each peer's representation
# ---------------------------------------------------------------------------------------------

class Codec:
    """Column kinds, levels and scales of a training table.

    ``codes``: (n, p) float array, one column per table column: numbers as they are, datetimes in
    days since 1970, categories / booleans as the index of their level, NaN where missing.
    ``frame``: back to a DataFrame with the training dtypes (integers rounded, every number
    clipped to the training range, datetimes rounded to the training resolution).
    """

    def __init__(self, df: pd.DataFrame):
        self.columns = list(df.columns)
        self.dtypes = df.dtypes.to_dict()
        self.kinds, self.levels, self.has_nan = {}, {}, {}
        for col in self.columns:
            s, dt = df[col], df[col].dtype
            if pd.api.types.is_bool_dtype(dt):
                kind, levels = "categorical", [False, True]
            elif isinstance(dt, pd.CategoricalDtype):
                observed = set(s.dropna().unique())
                kind, levels = "categorical", [c for c in dt.categories if c in observed]
            elif dt == object or isinstance(dt, pd.StringDtype):
                kind, levels = "categorical", sorted(s.dropna().unique(), key=str)
            elif pd.api.types.is_datetime64_any_dtype(dt):
                kind, levels = "datetime", None
            elif pd.api.types.is_integer_dtype(dt):
                kind, levels = "integer", None
            else:
                kind, levels = "numeric", None
            self.kinds[col], self.levels[col] = kind, levels
            self.has_nan[col] = bool(s.isna().any())
        C = self.codes(df)
        self.lo, self.hi = np.nanmin(C, axis=0), np.nanmax(C, axis=0)
        self.mean = np.nanmean(C, axis=0)
        sd = np.nanstd(C, axis=0)
        self.sd = np.where(sd > 0, sd, 1.0)
        self.median = np.nanmedian(C, axis=0)
        self.day_resolution = {c: bool(np.all(np.mod(C[~np.isnan(C[:, j]), j], 1.0) == 0))
                               for j, c in enumerate(self.columns) if self.kinds[c] == "datetime"}

    @property
    def p(self) -> int:
        return len(self.columns)

    def is_cat(self, j: int) -> bool:
        return self.kinds[self.columns[j]] == "categorical"

    @property
    def cat_idx(self) -> list[int]:
        return [j for j in range(self.p) if self.is_cat(j)]

    @property
    def num_idx(self) -> list[int]:
        return [j for j in range(self.p) if not self.is_cat(j)]

    def codes(self, df: pd.DataFrame) -> np.ndarray:
        out = np.full((len(df), len(self.columns)), np.nan)
        for j, col in enumerate(self.columns):
            s, kind = df[col], self.kinds[col]
            if kind == "categorical":
                idx = pd.Index(self.levels[col], dtype=object).get_indexer(s.astype(object))
                out[:, j] = np.where(idx >= 0, idx, np.nan)
            elif kind == "datetime":
                out[:, j] = ((s - EPOCH) / DAY).to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                out[:, j] = pd.to_numeric(s).to_numpy(dtype=np.float64, na_value=np.nan)
        return out

    def frame(self, C: np.ndarray) -> pd.DataFrame:
        out = {}
        for j, col in enumerate(self.columns):
            x, kind, dtype = C[:, j].astype(np.float64), self.kinds[col], self.dtypes[col]
            if not self.has_nan[col]:  # a peer's NaN in a column that never has one: the median
                x = np.where(np.isnan(x), self.median[j], x)
            miss = np.isnan(x)
            if kind == "categorical":
                k = np.clip(np.round(np.nan_to_num(x)), 0, len(self.levels[col]) - 1).astype(np.int64)
                values = np.asarray(self.levels[col], dtype=object)[k]
                values[miss] = None
                if pd.api.types.is_bool_dtype(dtype):
                    out[col] = pd.Series(values.astype(bool), dtype=dtype)
                else:
                    out[col] = pd.Series(values, dtype=dtype)
                continue
            x = np.clip(x, self.lo[j], self.hi[j])
            if kind == "integer":
                x = np.round(x)
                if isinstance(dtype, np.dtype):  # int64: no missing values (see above)
                    out[col] = pd.Series(x.astype(dtype))
                else:  # nullable Int64: NaN -> <NA>
                    out[col] = pd.Series(pd.array(np.where(miss, np.nan, x), dtype="Float64")).astype(dtype)
            elif kind == "datetime":
                days = np.round(x) if self.day_resolution[col] else np.round(x * 86400) / 86400
                ts = EPOCH + pd.to_timedelta(np.where(miss, np.nan, days), unit="D")
                out[col] = pd.Series(ts).astype(dtype)
            else:
                out[col] = pd.Series(x, dtype=dtype)
        return pd.DataFrame(out)

    # -- one-hot space (GMM, SMOTE's neighbours) -------------------------------------------------
    def onehot(self, C: np.ndarray) -> np.ndarray:
        blocks = []
        for j, col in enumerate(self.columns):
            x = C[:, j]
            miss = np.isnan(x)
            if self.is_cat(j):
                k = len(self.levels[col]) + (1 if self.has_nan[col] else 0)
                code = np.where(miss, k - 1, np.nan_to_num(x)).astype(np.int64)
                block = np.zeros((len(x), k))
                block[np.arange(len(x)), code] = 1.0
                blocks.append(block)
            else:
                blocks.append(np.nan_to_num((x - self.mean[j]) / self.sd[j])[:, None])
                if self.has_nan[col]:
                    blocks.append(miss.astype(np.float64)[:, None])
        return np.concatenate(blocks, axis=1)

    def from_onehot(self, X: np.ndarray) -> np.ndarray:
        C, pos = np.empty((len(X), self.p)), 0
        for j, col in enumerate(self.columns):
            if self.is_cat(j):
                n_lev = len(self.levels[col])
                k = n_lev + (1 if self.has_nan[col] else 0)
                arg = X[:, pos:pos + k].argmax(axis=1).astype(np.float64)
                C[:, j] = np.where(arg >= n_lev, np.nan, arg)
                pos += k
            else:
                C[:, j] = X[:, pos] * self.sd[j] + self.mean[j]
                pos += 1
                if self.has_nan[col]:
                    C[X[:, pos] > 0.5, j] = np.nan
                    pos += 1
        return C

    # -- CTGAN / TVAE frames -----------------------------------------------------------------------
    def gan_frame(self, C: np.ndarray) -> tuple[pd.DataFrame, list[str]]:
        out, discrete = {}, []
        for j, col in enumerate(self.columns):
            x = C[:, j]
            miss = np.isnan(x)
            if self.is_cat(j):
                out[col] = np.where(miss, "missing", np.char.add("L", np.nan_to_num(x).astype(np.int64).astype(str)))
                discrete.append(col)
            else:
                out[col] = np.where(miss, self.median[j], x)
                if self.has_nan[col]:
                    out[col + "__missing"] = np.where(miss, "1", "0")
                    discrete.append(col + "__missing")
        return pd.DataFrame(out), discrete

    def from_gan_frame(self, df: pd.DataFrame) -> np.ndarray:
        C = np.empty((len(df), self.p))
        for j, col in enumerate(self.columns):
            if self.is_cat(j):
                s = df[col].astype(str)
                C[:, j] = np.where(s == "missing", np.nan, pd.to_numeric(s.str[1:], errors="coerce"))
            else:
                C[:, j] = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
                if self.has_nan[col]:
                    C[df[col + "__missing"].astype(str).to_numpy() == "1", j] = np.nan
        return C


# ---------------------------------------------------------------------------------------------
# Methods (each runs in a child process)
# ---------------------------------------------------------------------------------------------

def _forest_class():
    """ForestDiffusionModel whose one-hot step keeps missing categories missing (NaN dummies) and
    lines up the dummies of new data with the training ones (for imputation)."""
    from ForestDiffusion.diffusion_with_trees_class import ForestDiffusionModel

    class NaNAwareForestDiffusion(ForestDiffusionModel):
        def dummify(self, X):
            df = pd.DataFrame(X, columns=[str(i) for i in range(X.shape[1])])
            names_before = df.columns
            for i in self.cat_indexes:
                miss = df[str(i)].isna().to_numpy()
                levels = getattr(self, "_levels", {}).get(i)
                col = df[str(i)]
                if levels is not None:  # new data: the training levels, in their order
                    col = pd.Categorical(col, categories=levels)
                dummies = pd.get_dummies(col, prefix=str(i), dtype="float", drop_first=True)
                dummies.loc[miss, :] = np.nan
                pos = df.columns.get_loc(str(i))
                df = pd.concat([df.iloc[:, :pos], dummies, df.iloc[:, pos + 1:]], axis=1)
            if not hasattr(self, "_levels"):
                self._levels = {i: sorted(pd.unique(X[~np.isnan(X[:, i]), i])) for i in self.cat_indexes}
            return df.to_numpy(), names_before, df.columns

        def transform_new(self, X):
            """Raw code matrix (NaN = to impute) -> the model's scaled space."""
            Xd, _, names = self.dummify(X) if len(self.cat_indexes) else (X, None, None)
            return self.scaler.transform(Xd)

    return NaNAwareForestDiffusion


def _forest_layout(codec: Codec, indicators: bool):
    """Column roles for ForestDiffusion: (extra indicator columns, cat, bin, int indexes)."""
    cat_idx, bin_idx, int_idx = [], [], []
    for j, col in enumerate(codec.columns):
        if codec.is_cat(j):
            (bin_idx if len(codec.levels[col]) <= 2 else cat_idx).append(j)
        elif codec.kinds[col] == "integer":
            int_idx.append(j)
    extra = [j for j, col in enumerate(codec.columns) if indicators and codec.has_nan[col]]
    bin_idx += list(range(codec.p, codec.p + len(extra)))
    return extra, cat_idx, bin_idx, int_idx


def fit_forest(C, codec, cfg, seed, diffusion_type="flow", indicators=True):
    cls = _forest_class()
    extra, cat_idx, bin_idx, int_idx = _forest_layout(codec, indicators)
    X = np.concatenate([C, np.isnan(C[:, extra]).astype(np.float64)], axis=1) if extra else C.copy()
    dup = max(1, min(cfg.fd_duplicate_k, cfg.fd_max_rows // max(len(X), 1)))
    model = cls(X, n_t=cfg.fd_n_t, duplicate_K=dup, n_estimators=cfg.fd_n_estimators,
                bin_indexes=bin_idx, cat_indexes=cat_idx, int_indexes=int_idx,
                diffusion_type=diffusion_type, n_jobs=1, seed=seed, nthread=1)
    model._bench_extra = extra
    model._bench_info = {"n_t": cfg.fd_n_t, "duplicate_K": dup, "n_estimators": cfg.fd_n_estimators}
    return model


def sample_forest(model, codec, n, seed):
    np.random.seed(seed)
    out = model.generate(batch_size=n)
    C = out[:, :codec.p].astype(np.float64)
    for k, j in enumerate(model._bench_extra):
        C[out[:, codec.p + k] > 0.5, j] = np.nan
    return C


def fit_gmm(C, codec, cfg, seed):
    from sklearn.mixture import GaussianMixture

    X = codec.onehot(C)
    best, best_bic = None, np.inf
    grid = [k for k in (cfg.gmm_grid_large if len(X) > 20_000 else cfg.gmm_grid) if k <= max(1, len(X) // 10)] or [1]
    for k in grid:
        gmm = GaussianMixture(n_components=k, covariance_type="full", reg_covar=1e-3,
                              random_state=seed).fit(X)
        bic = gmm.bic(X)
        if bic < best_bic:
            best, best_bic = gmm, bic
    best._bench_info = {"k": best.n_components}
    return best


def sample_gmm(model, codec, n, seed):
    model.set_params(random_state=seed)
    X = model.sample(n)[0]
    X = X[np.random.default_rng(seed).permutation(n)]  # GaussianMixture.sample sorts by component
    return codec.from_onehot(X)


def smote_fit(C, codec, k=5):
    """The k nearest neighbours of every training row (standardized numerics + one-hot + missing
    indicators)."""
    from sklearn.neighbors import NearestNeighbors

    X = codec.onehot(C)
    k = min(k, len(X) - 1)
    nbrs = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X, return_distance=False)[:, 1:]
    return {"C": C, "nbrs": nbrs}


def smote_sample(model, codec, n, seed):
    """SMOTE-style interpolation: a random training row moved a uniform fraction towards one of
    its k nearest neighbours; numbers interpolated where both are observed (integers rounded on
    decoding), categories and missingness from one of the two rows at random (per cell)."""
    rng = np.random.default_rng(seed)
    C, nbrs = model["C"], model["nbrs"]
    k = nbrs.shape[1]
    i = rng.integers(0, len(C), n)
    j = nbrs[i, rng.integers(0, k, n)]
    a, b = C[i], C[j]
    lam = rng.random((n, 1))
    pick_b = rng.random(a.shape) < 0.5
    out = np.where(pick_b, b, a)  # categories, and any cell missing in one of the rows
    num = np.array(codec.num_idx, dtype=np.int64)
    both = ~np.isnan(a[:, num]) & ~np.isnan(b[:, num])
    out[:, num] = np.where(both, a[:, num] + lam * (b[:, num] - a[:, num]), out[:, num])
    return out


def fit_gan(kind, C, codec, cfg, seed):
    from ctgan import CTGAN, TVAE

    frame, discrete = codec.gan_frame(C)
    epochs = cfg.ctgan_epochs if kind == "CTGAN" else cfg.gan_epochs
    model = CTGAN(epochs=epochs, enable_gpu=False) if kind == "CTGAN" else TVAE(epochs=epochs, enable_gpu=False)
    model.set_random_state(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(frame, discrete_columns=discrete)
    model._bench_info = {"epochs": epochs}
    return model


def sample_gan(model, codec, n, seed):
    model.set_random_state(seed + 7919)
    return codec.from_gan_frame(model.sample(n))


def _rss_mb() -> float:
    """Peak resident memory of this process so far, MB: VmHWM of /proc/self/status (the high-water
    mark of this process's own address space). ``getrusage(RUSAGE_SELF).ru_maxrss`` is not used:
    Linux carries it over fork + exec, so a spawned child reports at least its parent's size."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kilobytes on Linux


def run_method(task: dict) -> dict:
    """Fit one method on the training table and sample (and impute) with it. Runs in a fresh
    spawned process: the peak memory is this process's own."""
    method, train, cfg, seed = task["method"], task["train"], task["cfg"], task["seed"]
    n = task["n_samples"]
    res = {"method": method, "status": "ok", "info": {}}
    try:
        from threadpoolctl import threadpool_limits
        if method in (*OURS, "TVAE", "CTGAN"):
            import torch
            torch.set_num_threads(1)
        if method in OURS:
            from anydiff.tabular import TabularDiffusion
        elif method in ("TVAE", "CTGAN"):
            import ctgan  # noqa: F401
        elif method.startswith("ForestDiffusion"):
            _forest_class()
        else:
            import sklearn.mixture  # noqa: F401
    except ImportError as err:
        return {"method": method, "status": f"not installed ({err.name})"}
    res["rss_imports_mb"] = _rss_mb()
    codec = Codec(train)
    try:
        with threadpool_limits(1):
            C = codec.codes(train)
            t0 = time.perf_counter()
            if method in OURS:
                model = TabularDiffusion(random_state=seed, device="cpu", **{**cfg.td_params, **OURS[method]})
                model.fit(train)
                res["fit_s"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                synth = model.sample(n, random_state=seed + 1)
            elif method == "ForestDiffusion-impute":
                model = fit_forest(C, codec, cfg, seed, diffusion_type="vp", indicators=False)
                res["fit_s"], synth = time.perf_counter() - t0, None
                res["info"] = model._bench_info
            else:
                if method == "GMM":
                    model = fit_gmm(C, codec, cfg, seed)
                elif method == "ForestDiffusion":
                    model = fit_forest(C, codec, cfg, seed)
                elif method in ("TVAE", "CTGAN"):
                    model = fit_gan(method, C, codec, cfg, seed)
                elif method == "SMOTE":
                    model = smote_fit(C, codec)
                else:
                    raise ValueError(method)
                res["fit_s"] = time.perf_counter() - t0
                res["info"] = getattr(model, "_bench_info", {}) if not isinstance(model, dict) else {}
                t0 = time.perf_counter()
                if method == "GMM":
                    S = sample_gmm(model, codec, n, seed + 1)
                elif method == "ForestDiffusion":
                    S = sample_forest(model, codec, n, seed + 1)
                elif method in ("TVAE", "CTGAN"):
                    S = sample_gan(model, codec, n, seed + 1)
                elif method == "SMOTE":
                    S = smote_sample(model, codec, n, seed + 1)
                else:
                    raise ValueError(method)
                synth = codec.frame(S)
            if synth is not None:
                res["sample_s"] = time.perf_counter() - t0
                res["synthetic"] = synth
            res["peak_mb"] = _rss_mb()
    except Exception as err:  # noqa: BLE001 - reported in the table, the run goes on
        res["status"] = f"error: {type(err).__name__}: {err}"
        res["traceback"] = traceback.format_exc()
        return res
    holes = task.get("impute")
    if holes is not None:
        try:
            with threadpool_limits(1):
                t0 = time.perf_counter()
                if method == "TabularDiffusion":
                    tables = model.impute(holes, n_imputations=cfg.n_imputations, random_state=seed + 2,
                                          **cfg.td_impute_kwargs)
                    draws = np.stack([codec.codes(t) for t in tables])
                else:  # ForestDiffusion-impute
                    Xs = model.transform_new(codec.codes(holes))
                    np.random.seed(seed + 2)
                    draws = np.asarray(model.impute(k=cfg.n_imputations, X=Xs)).reshape(
                        cfg.n_imputations, len(holes), -1)[:, :, :codec.p]
                res["impute_draws"] = draws
                res["impute_s"] = time.perf_counter() - t0
        except Exception as err:  # noqa: BLE001
            res["impute_status"] = f"error: {type(err).__name__}: {err}"
            res["impute_traceback"] = traceback.format_exc()
    return res


def in_child(task: dict) -> dict:
    if not task["cfg"].subprocess:  # --in-process: no memory figure
        r = run_method(task)
        r["peak_mb"] = r["rss_imports_mb"] = math.nan
        return r
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(run_method, task).result()


# ---------------------------------------------------------------------------------------------
# Imputation peers (cheap: run in the main process) and scores
# ---------------------------------------------------------------------------------------------

def sklearn_impute(kind: str, train_C: np.ndarray, holes_C: np.ndarray, codec: Codec, seed: int) -> np.ndarray:
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer

    mu, sd = np.nanmean(train_C, axis=0), np.nanstd(train_C, axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    keep = ~np.isnan(train_C).all(axis=0)
    Z_train, Z = (train_C - mu) / sd, (holes_C - mu) / sd
    if kind == "IterativeImputer":
        imp = IterativeImputer(max_iter=10, random_state=seed, keep_empty_features=True)
    else:
        imp = KNNImputer(n_neighbors=5, keep_empty_features=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = imp.fit(Z_train[:, keep]).transform(Z[:, keep])
    filled = holes_C.copy()
    filled[:, keep] = out * sd[keep] + mu[keep]
    for j in codec.cat_idx:  # ordinal codes back to levels
        filled[:, j] = np.clip(np.round(filled[:, j]), 0, len(codec.levels[codec.columns[j]]) - 1)
    return filled


def mean_mode_impute(train_C, holes_C, codec):
    filled = holes_C.copy()
    for j in range(codec.p):
        col = train_C[:, j][~np.isnan(train_C[:, j])]
        if col.size == 0:
            continue
        fill = np.bincount(col.astype(np.int64)).argmax() if codec.is_cat(j) else col.mean()
        filled[np.isnan(filled[:, j]), j] = fill
    return filled


def calibrated_coverage(k: int, n: int = 200_000) -> float:
    """Expected coverage of the 5-95 % percentile interval of k draws for a truth drawn from the
    same continuous distribution (a perfectly calibrated imputer), by simulation."""
    rng = np.random.default_rng(0)
    X, T = rng.standard_normal((n, k)), rng.standard_normal(n)
    lo, hi = np.percentile(X, [5, 95], axis=1)
    return float(np.mean((T >= lo) & (T <= hi)))


def summarize_draws(draws: np.ndarray, codec: Codec) -> np.ndarray:
    """(k, n, p) imputation draws -> one table: mean for numbers, mode for categories."""
    out = np.nanmean(draws, axis=0) if draws.shape[0] else None
    for j in codec.cat_idx:
        d = draws[:, :, j]
        modes = np.full(d.shape[1], np.nan)
        for r in range(d.shape[1]):
            v = d[~np.isnan(d[:, r]), r].astype(np.int64)
            if v.size:
                modes[r] = np.bincount(v).argmax()
        out[:, j] = modes
    return out


def impute_scores(filled, truth_C, hole_mask, codec, draws=None) -> dict:
    """RMSE on standardized numeric columns (mean over columns), accuracy on categorical cells,
    coverage of the 5-95 % interval of the draws on numeric cells."""
    scored = hole_mask & ~np.isnan(truth_C)
    rmses, right, total, inside, n_cov = [], 0, 0, 0, 0
    for j in range(codec.p):
        m = scored[:, j]
        if not m.any():
            continue
        if codec.is_cat(j):
            right += int(np.sum(filled[m, j] == truth_C[m, j]))
            total += int(m.sum())
        else:
            err = (filled[m, j] - truth_C[m, j]) / codec.sd[j]
            rmses.append(float(np.sqrt(np.nanmean(err ** 2))))
            if draws is not None:
                lo, hi = np.nanpercentile(draws[:, m, j], [5, 95], axis=0)
                inside += int(np.sum((truth_C[m, j] >= lo) & (truth_C[m, j] <= hi)))
                n_cov += int(m.sum())
    return {"rmse": float(np.mean(rmses)) if rmses else math.nan,
            "accuracy": right / total if total else math.nan,
            "coverage": inside / n_cov if n_cov else math.nan}


# ---------------------------------------------------------------------------------------------
# One data set, one seed
# ---------------------------------------------------------------------------------------------

def load_split(name: str, seed: int, cfg) -> tuple[pd.DataFrame, pd.DataFrame]:
    loader, _ = DATASETS[name]
    set_index = list(DATASETS).index(name)
    if name == "mixed":
        df = make_mixed(2 * cfg.mixed_rows, seed=1000 + seed)
    else:
        df = loader()
    rng = np.random.default_rng([seed, set_index])
    order = rng.permutation(len(df))
    half = min(len(df) // 2, cfg.max_rows) if cfg.max_rows else len(df) // 2
    train = df.iloc[order[:half]].reset_index(drop=True)
    holdout = df.iloc[order[half:2 * half]].reset_index(drop=True)
    return train, holdout


def make_holes(holdout: pd.DataFrame, train: pd.DataFrame, cfg, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The first ``impute_rows`` holdout rows with 20 % of their cells removed (MCAR), and the mask of
    the removed cells (the scored ones). A category the training table never shows is removed too
    (for every imputer; such a cell is not scored): TabularDiffusion.impute refuses unseen values."""
    rows = holdout.iloc[:cfg.impute_rows].reset_index(drop=True)
    for col in rows.columns:
        if isinstance(rows[col].dtype, pd.CategoricalDtype) or rows[col].dtype == object:
            unseen = rows[col].notna() & ~rows[col].isin(set(train[col].dropna().unique()))
            if unseen.any():
                rows[col] = rows[col].mask(unseen)
    rng = np.random.default_rng([seed, 77])
    mask = rng.random(rows.shape) < cfg.impute_fraction
    full = mask.all(axis=1)  # keep one cell of a row that lost every cell
    mask[np.flatnonzero(full), rng.integers(0, rows.shape[1], full.sum())] = False
    return rows.mask(mask), mask


def score(name, method, synth, train, holdout, cfg, seed) -> dict:
    from threadpoolctl import threadpool_limits

    from anydiff.tabular import metrics as M

    target = DATASETS[name][1]
    out = {}
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["c2st"] = M.c2st(holdout, synth, random_state=seed)
        out["shapes"] = float(np.nanmean(M.column_shapes(holdout, synth)["score"]))
        max_pairs = cfg.max_pairs if holdout.shape[1] * (holdout.shape[1] - 1) // 2 > cfg.max_pairs else None
        out["trends"] = float(np.nanmean(M.column_pair_trends(holdout, synth, max_pairs=max_pairs,
                                                               random_state=0)["score"]))
        out["ml"] = M.ml_efficiency(synth, holdout, target, random_state=seed)
        if method == "Real":
            out["dcr"], out["copies"] = math.nan, math.nan
            out["mre"] = float(M.missing_rate_error(train, holdout).max())
        else:
            d = M.dcr(synth, train, holdout, random_state=seed)
            out["dcr"], out["copies"] = d["share_closer_to_train"], d["exact_copies"]
            out["mre"] = float(M.missing_rate_error(train, synth).max())
    return out


def run_seed(name: str, seed: int, cfg, methods, impute: bool) -> dict:
    train, holdout = load_split(name, seed, cfg)
    n = len(train)
    holes, hole_mask = make_holes(holdout, train, cfg, seed) if impute else (None, None)
    res = {"quality": {}, "impute": {}, "shape": train.shape, "has_nan": bool(train.isna().any().any())}
    imp_draws = {}
    for method in methods:
        if method == "Real":
            r = {"status": "ok", "synthetic": train, "fit_s": math.nan, "sample_s": math.nan,
                 "peak_mb": math.nan, "rss_imports_mb": math.nan, "info": {}}
        elif not installed(method):
            r = {"status": "not installed"}
        elif method == "ForestDiffusion" and name not in cfg.fd_datasets:
            r = {"status": "skipped (CPU budget; see --fd-datasets)"}
        else:
            task = {"method": method, "train": train, "cfg": cfg, "seed": seed, "n_samples": n}
            if impute and method == "TabularDiffusion":
                task["impute"] = holes
            r = in_child(task)
        if r["status"] == "ok":
            assert len(r["synthetic"]) == n and list(r["synthetic"].columns) == list(train.columns)
            dtype_ok = r["synthetic"].dtypes.equals(train.dtypes)
            r.update(score(name, method, r["synthetic"], train, holdout, cfg, seed))
            r["dtype_ok"] = dtype_ok
            if "impute_draws" in r:
                imp_draws[method] = (r.pop("impute_draws"), r["impute_s"])
            elif "impute_status" in r:
                imp_draws[method] = r["impute_status"]
                print(f"  {name:9s} seed {seed} {method:16s} impute {r['impute_status']}\n{r['impute_traceback']}",
                      flush=True)
            print(f"  {name:9s} seed {seed} {method:16s} fit {r['fit_s']:7.1f} s  sample {r['sample_s']:6.1f} s  "
                  f"peak {r['peak_mb']:6.0f} MB  C2ST {r['c2st']:.3f}  shapes {r['shapes']:.3f}  "
                  f"trends {r['trends']:.3f}  ML {r['ml']:.3f}  DCR {r['dcr']:.3f}  copies {r['copies']}  "
                  f"MRE {r['mre']:.1f}  {r.get('info', {})}" + ("" if dtype_ok else "  DTYPES DIFFER"), flush=True)
        else:
            print(f"  {name:9s} seed {seed} {method:16s} {r['status']}", flush=True)
            if "traceback" in r:
                print(r["traceback"], flush=True)
        r.pop("synthetic", None)
        res["quality"][method] = r

    if impute:
        codec = Codec(train)
        train_C, holes_C, truth_C = codec.codes(train), codec.codes(holes), codec.codes(holdout.iloc[:len(holes)])
        for imputer in IMPUTERS:
            if imputer not in cfg.imputers:
                continue
            t0 = time.perf_counter()
            draws = None
            if imputer == "TabularDiffusion":
                if imputer not in imp_draws or isinstance(imp_draws[imputer], str):
                    res["impute"][imputer] = {"status": imp_draws.get(imputer) or
                                              res["quality"].get(imputer, {}).get("status", "not run")}
                    continue
                draws, secs = imp_draws[imputer]
                filled = summarize_draws(draws, codec)
            elif imputer == "ForestDiffusion":
                if not installed("ForestDiffusion"):
                    res["impute"][imputer] = {"status": "not installed"}
                    continue
                if name not in cfg.fd_datasets:
                    res["impute"][imputer] = {"status": "skipped (CPU budget; see --fd-datasets)"}
                    continue
                r = in_child({"method": "ForestDiffusion-impute", "train": train, "cfg": cfg, "seed": seed,
                              "n_samples": n, "impute": holes})
                if r["status"] != "ok":
                    res["impute"][imputer] = {"status": r["status"]}
                    print(f"  {name:9s} seed {seed} impute {imputer:16s} {r['status']}", flush=True)
                    if "traceback" in r:
                        print(r["traceback"], flush=True)
                    continue
                draws, secs = r["impute_draws"], r["fit_s"] + r["impute_s"]
                filled = summarize_draws(draws, codec)
            elif imputer in ("IterativeImputer", "KNNImputer"):
                filled = sklearn_impute(imputer, train_C, holes_C, codec, seed)
                secs = time.perf_counter() - t0
            else:
                filled = mean_mode_impute(train_C, holes_C, codec)
                secs = time.perf_counter() - t0
            s = impute_scores(filled, truth_C, hole_mask, codec, draws)
            s.update(status="ok", seconds=secs)
            res["impute"][imputer] = s
            print(f"  {name:9s} seed {seed} impute {imputer:16s} RMSE {s['rmse']:.3f}  acc {s['accuracy']:.3f}  "
                  f"coverage {s['coverage']:.3f}  {secs:.1f} s", flush=True)
    return res


def run_large(cfg) -> dict:
    df = make_mixed(cfg.large_rows, seed=4242, n_columns=cfg.large_columns)
    out = {}
    for method in LARGE_METHODS:
        if method not in cfg.methods:
            continue
        if not installed(method):
            out[method] = {"status": "not installed"}
            continue
        r = in_child({"method": method, "train": df, "cfg": cfg, "seed": 0, "n_samples": len(df)})
        if r["status"] == "ok":
            synth = r.pop("synthetic")
            r["dtype_ok"] = synth.dtypes.equals(df.dtypes)
            print(f"  large {method:16s} fit {r['fit_s']:7.1f} s  sample {r['sample_s']:6.1f} s  "
                  f"peak {r['peak_mb']:6.0f} MB (after imports {r['rss_imports_mb']:.0f})  {r.get('info', {})}",
                  flush=True)
        else:
            print(f"  large {method:16s} {r['status']}", flush=True)
        out[method] = r
    return out


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def agg(runs: list[dict], key: str) -> tuple[float, float]:
    vals = [r[key] for r in runs if r.get("status") == "ok" and key in r and not
            (isinstance(r[key], float) and math.isnan(r[key]))]
    if not vals:
        return math.nan, math.nan
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0


def fmt(mean: float, sd: float, digits: int = 3) -> str:
    if math.isnan(mean):
        return "--"
    return f"{mean:.{digits}f} +- {sd:.{digits}f}"


def status_of(runs: list[dict]) -> str | None:
    bad = [r.get("status") for r in runs if r.get("status") != "ok"]
    return bad[0] if bad and len(bad) == len(runs) else None


def quality_table(name: str, per_seed: list[dict], cfg) -> None:
    if True:
        rows = []
        for m in cfg.methods:
            runs = [s["quality"][m] for s in per_seed if m in s["quality"]]
            st = status_of(runs)
            if st is not None:
                rows.append([m, st[:60]] + [""] * 9)
                continue
            peak, imports = agg(runs, "peak_mb"), agg(runs, "rss_imports_mb")
            mem = "--" if math.isnan(peak[0]) else f"{peak[0]:.0f} (+{peak[0] - imports[0]:.0f})"
            copies = agg(runs, "copies")
            n_bad = sum(r.get("status") != "ok" for r in runs)
            label = m + (f" ({n_bad} of {len(runs)} runs failed)" if n_bad else "")
            label += "" if all(r.get("dtype_ok", True) for r in runs if r.get("status") == "ok") else " (dtypes differ!)"
            rows.append([label, fmt(*agg(runs, "c2st")), fmt(*agg(runs, "shapes")), fmt(*agg(runs, "trends")),
                         fmt(*agg(runs, "ml")), fmt(*agg(runs, "dcr")),
                         "--" if math.isnan(copies[0]) else f"{copies[0]:.1f}", fmt(*agg(runs, "mre"), 1),
                         fmt(*agg(runs, "fit_s"), 1), fmt(*agg(runs, "sample_s"), 1), mem])
        shape = per_seed[0]["shape"]
        print(table(f"{name}: {shape[0]} training rows x {shape[1]} columns, holdout of the same size; "
                    f"mean +- sd over {len(per_seed)} seeds",
                    ["method", "C2ST (0.5 best)", "column shapes", "pair trends",
                     f"ML efficiency (macro F1; target column {DATASETS[name][1]!r})",
                     "DCR share closer to train", "exact copies (mean)", "missing-rate error, max (points)",
                     "fit s", "sample s", "peak MB (+ over imports)"], rows), flush=True)


def report(results: dict, large: dict, cfg) -> None:
    print()

    if cfg.impute:
        rows = []
        for name, per_seed in results.items():
            for imp in cfg.imputers:
                runs = [s["impute"][imp] for s in per_seed if imp in s["impute"]]
                st = status_of(runs) if runs else "not run"
                if st is not None:
                    rows.append([name, imp, st[:60], "", "", ""])
                    continue
                rows.append([name, imp, fmt(*agg(runs, "rmse")), fmt(*agg(runs, "accuracy")),
                             fmt(*agg(runs, "coverage")), fmt(*agg(runs, "seconds"), 1)])
        print(table(f"Imputation: {int(cfg.impute_fraction * 100)} % of the cells of the first {cfg.impute_rows} "
                    f"holdout rows removed at random (MCAR); imputers fitted on the training table; mean +- sd "
                    f"over seeds. Coverage: share of the removed numeric cells inside the 5th-95th percentile "
                    f"(numpy, linear) of the {cfg.n_imputations} draws; a perfectly calibrated imputer scores "
                    f"{calibrated_coverage(cfg.n_imputations):.3f} on continuous columns with {cfg.n_imputations} "
                    f"draws, not 0.90", ["data set", "imputer", "numeric RMSE (standardized; lower is better)",
                                    "categorical accuracy", "90 % interval coverage (numeric cells)",
                                    "seconds (fit + impute for ForestDiffusion; impute only for TabularDiffusion)"],
                    rows))

    if large:
        rows = []
        for m, r in large.items():
            if r["status"] != "ok":
                rows.append([m, r["status"][:60], "", "", ""])
                continue
            rows.append([m + ("" if r.get("dtype_ok", True) else " (dtypes differ!)"), f"{r['fit_s']:.1f}",
                         f"{r['sample_s']:.1f}", f"{r['peak_mb']:.0f}", f"{r['peak_mb'] - r['rss_imports_mb']:.0f}"])
        print(table(f"Large table: generated mixed table, {cfg.large_rows} rows x {cfg.large_columns} columns, "
                    f"{cfg.large_rows} rows sampled, one seed",
                    ["method", "fit s", "sample s", "peak MB", "MB over imports"], rows))

    # -- targets ---------------------------------------------------------------------------------
    print("**Targets** (TabularDiffusion)\n")
    td = "TabularDiffusion"
    ok_all = True
    if td in cfg.methods:
        for name, per_seed in results.items():
            runs = lambda m: [s["quality"][m] for s in per_seed if m in s["quality"]]  # noqa: E731
            c_td = agg(runs(td), "c2st")[0]
            peer_c = {m: agg(runs(m), "c2st")[0] for m in cfg.methods if m not in (*OURS, "Real")}
            peer_c = {m: v for m, v in peer_c.items() if not math.isnan(v)}
            floor = agg(runs("Real"), "c2st")[0] if "Real" in cfg.methods else math.nan
            if math.isnan(c_td):
                print(f"- {name}: C2ST: FAIL (TabularDiffusion did not run)")
                ok_all = False
                continue
            if peer_c:
                best = min(peer_c, key=peer_c.get)
                ok = c_td < peer_c[best]
                ok_all &= ok
                print(f"- {name}: C2ST below the best peer: {'PASS' if ok else 'FAIL'} "
                      f"({c_td:.3f} vs {best} {peer_c[best]:.3f})")
            if math.isnan(floor) or floor <= 0.55:
                ok = c_td <= 0.55
                ok_all &= ok
                print(f"- {name}: C2ST <= 0.55: {'PASS' if ok else 'FAIL'} ({c_td:.3f}; real-data floor "
                      f"{floor:.3f})")
            else:
                print(f"- {name}: C2ST <= 0.55: n/a, the real-data floor is {floor:.3f} ({c_td:.3f})")
            t = agg(runs(td), "fit_s")[0] + agg(runs(td), "sample_s")[0]
            ok = t <= 30.0
            if name == "mixed":
                ok_all &= ok
            print(f"- {name}: fit + sample <= 30 s: {'PASS' if ok else 'FAIL'} ({t:.1f} s"
                  f"{'; the target is set on this table' if name == 'mixed' else '; informative'})")
            mre = agg(runs(td), "mre")[0]
            if any(s["has_nan"] for s in per_seed):
                ok = mre <= 2.0
                ok_all &= ok
                print(f"- {name}: missing rates within 2 points: {'PASS' if ok else 'FAIL'} (max {mre:.2f})")
            if cfg.impute:
                imp = lambda m: [s["impute"].get(m, {}) for s in per_seed]  # noqa: E731
                r_td, r_it = agg(imp(td), "rmse")[0], agg(imp("IterativeImputer"), "rmse")[0]
                cov = agg(imp(td), "coverage")[0]
                if not (math.isnan(r_td) or math.isnan(r_it)):
                    ok = r_td < r_it and 0.85 <= cov <= 0.95
                    ok_all &= ok
                    print(f"- {name}: imputation RMSE below IterativeImputer with coverage 85-95 %: "
                          f"{'PASS' if ok else 'FAIL'} (RMSE {r_td:.3f} vs {r_it:.3f}; coverage {cov:.3f}, where a "
                          f"calibrated imputer would score {calibrated_coverage(cfg.n_imputations):.3f})")
        print()
        print("OVERALL: " + ("PASS" if ok_all else "FAIL, see the lines above"))


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, steps and epochs")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 3; 1 with --quick)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, of {list(DATASETS)}")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {list(METHODS)}")
    parser.add_argument("--imputers", default=",".join(IMPUTERS), help=f"comma-separated, of {list(IMPUTERS)}")
    parser.add_argument("--impute", action=argparse.BooleanOptionalAction, default=True,
                        help="run the imputation table (default on)")
    parser.add_argument("--skip-large", action="store_true", help="skip the 100,000-row time and memory row")
    parser.add_argument("--tvae-epochs", type=int, default=None, help="TVAE epochs (default 300; 2 quick)")
    parser.add_argument("--ctgan-epochs", type=int, default=None, help="CTGAN epochs (default 150; 2 quick)")
    parser.add_argument("--impute-rows", type=int, default=None,
                        help="holdout rows with holes for the imputation table (default 100; 20 quick)")
    parser.add_argument("--max-pairs", type=int, default=None,
                        help="pairs scored by column_pair_trends on wide tables (default 500; 100 quick)")
    parser.add_argument("--fd-datasets", default=None,
                        help="sets ForestDiffusion runs on (default wine,cancer,penguins: see the module notes "
                             "on its cost)")
    parser.add_argument("--fd-n-t", type=int, default=None, help="ForestDiffusion noise levels (default 10; its own 50)")
    parser.add_argument("--fd-n-estimators", type=int, default=None,
                        help="ForestDiffusion trees per model (default 20; its own 100)")
    parser.add_argument("--fd-duplicate-k", type=int, default=None, help="ForestDiffusion duplicate_K (default 100)")
    parser.add_argument("--fd-max-rows", type=int, default=None,
                        help="cap on rows x duplicate_K of ForestDiffusion's training set (default 5000)")
    parser.add_argument("--in-process", dest="subprocess", action="store_false",
                        help="run every method in the main process (faster start, no memory figures)")
    parser.add_argument("--large-rows", type=int, default=100_000)
    parser.add_argument("--large-columns", type=int, default=50)
    cfg = parser.parse_args()
    quick = cfg.quick

    def pick(value, q, full):
        return value if value is not None else (q if quick else full)

    cfg.seeds = pick(cfg.seeds, 1, 3)
    cfg.gan_epochs = pick(cfg.tvae_epochs, 2, 300)
    cfg.ctgan_epochs = pick(cfg.ctgan_epochs, 2, 150)
    cfg.impute_rows = pick(cfg.impute_rows, 20, 100)
    cfg.max_pairs = pick(cfg.max_pairs, 100, 500)
    cfg.fd_datasets = [d.strip() for d in pick(cfg.fd_datasets, "wine,cancer,penguins", "wine,cancer,penguins").split(",")]
    cfg.fd_n_t = pick(cfg.fd_n_t, 10, 10)
    cfg.fd_n_estimators = pick(cfg.fd_n_estimators, 3, 20)
    cfg.fd_duplicate_k = pick(cfg.fd_duplicate_k, 2, 100)
    cfg.fd_max_rows = pick(cfg.fd_max_rows, 300, 5000)
    cfg.max_rows = 120 if quick else None  # rows per split (train and holdout)
    cfg.mixed_rows = 120 if quick else 5000
    cfg.impute_fraction = 0.2
    cfg.n_imputations = 10
    cfg.gmm_grid = (1, 2) if quick else (1, 2, 3, 5, 8, 12, 20)
    cfg.gmm_grid_large = (1, 5)
    cfg.td_params = {"max_steps": 100, "hidden": 64, "sampling_steps": 10} if quick else {}
    cfg.td_impute_kwargs = {"resample": 2} if quick else {}
    cfg.datasets = [d.strip() for d in cfg.datasets.split(",") if d.strip()]
    cfg.methods = [m.strip() for m in cfg.methods.split(",") if m.strip()]
    cfg.imputers = [m.strip() for m in cfg.imputers.split(",") if m.strip()]
    for given, allowed, what in ((cfg.datasets, DATASETS, "data sets"), (cfg.methods, METHODS, "methods"),
                                 (cfg.imputers, IMPUTERS, "imputers")):
        unknown = [g for g in given if g not in allowed]
        if unknown:
            parser.error(f"unknown {what} {unknown}; choose from {list(allowed)}")
    if quick:
        cfg.skip_large = True

    import sklearn
    import torch

    import anydiff

    start = time.perf_counter()
    print(f"# anydiff tabular benchmark{' (--quick smoke run)' if quick else ''}\n")
    print(f"anydiff {anydiff.__version__} (git {git_revision()}), torch {torch.__version__}, pandas {pd.__version__}, "
          f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, sdmetrics {version('sdmetrics')}, "
          f"ForestDiffusion {version('ForestDiffusion')}, xgboost {version('xgboost')}, ctgan {version('ctgan')}, "
          f"rdt {version('rdt')}, Python {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} CPU cores (shared; load average at start {os.getloadavg()[0]:.2f})")
    print(f"threads: 1 everywhere (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, torch.set_num_threads(1), "
          "threadpool_limits(1), ForestDiffusion n_jobs=1 and xgboost nthread=1)")
    print(f"seeds: 0..{cfg.seeds - 1} (split, mask, every method's random_state); data sets: {', '.join(cfg.datasets)}"
          f" (mixed: {cfg.mixed_rows} training rows, drawn afresh per seed)")
    print(f"TabularDiffusion: default settings{' except ' + str(cfg.td_params) if cfg.td_params else ''}, "
          f"device cpu; impute(n_imputations={cfg.n_imputations}"
          f"{''.join(f', {k}={v}' for k, v in cfg.td_impute_kwargs.items())})")
    print(f"GMM: full covariances, reg_covar 1e-3, components by BIC over {cfg.gmm_grid} (at most n/10; "
          f"{cfg.gmm_grid_large} on the large table)")
    print(f"ForestDiffusion: xgboost (max_depth 7, eta 0.3: its defaults), diffusion_type flow (vp for imputation), "
          f"n_t={cfg.fd_n_t}, n_estimators={cfg.fd_n_estimators}, duplicate_K=min({cfg.fd_duplicate_k}, "
          f"{cfg.fd_max_rows} // rows): a CPU budget, its defaults are n_t=50, n_estimators=100, duplicate_K=100; "
          f"run on {', '.join(cfg.fd_datasets)}")
    print(f"TVAE: {cfg.gan_epochs} epochs, CTGAN: {cfg.ctgan_epochs} epochs, other settings default (batch 500), cpu")
    print("SMOTE: k=5 nearest neighbours on standardized numerics + one-hot + missing indicators")
    print(f"column_pair_trends: at most {cfg.max_pairs} pairs on wide tables (fixed seed)\n", flush=True)

    results = {}
    for name in cfg.datasets:
        t0 = time.perf_counter()
        results[name] = [run_seed(name, seed, cfg, cfg.methods, cfg.impute) for seed in range(cfg.seeds)]
        print(f"  {name}: {time.perf_counter() - t0:.1f} s\n", flush=True)
        quality_table(name, results[name], cfg)
    large = {}
    if not cfg.skip_large:
        t0 = time.perf_counter()
        large = run_large(cfg)
        print(f"  large: {time.perf_counter() - t0:.1f} s\n", flush=True)
    report(results, large, cfg)
    print(f"\nTotal wall time: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
