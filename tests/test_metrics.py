"""Tests of anydiff.metrics against brute force and closed forms."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anydiff.metrics import (c2st, energy_distance, mean_responsibilities, mmd, mode_weight_error, mode_weights,
                             sliced_wasserstein)
from anydiff.oracles import GaussianMixture


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def brute_force_w(a: np.ndarray, b: np.ndarray, p: float) -> float:
    """Exact 1-D W_p between empirical distributions of any sizes n and m: repeat every atom of a
    m times and every atom of b n times (equal masses 1/(nm)), then pair the sorted atoms."""
    n, m = len(a), len(b)
    a_rep, b_rep = np.sort(np.repeat(a, m)), np.sort(np.repeat(b, n))
    return float(np.mean(np.abs(a_rep - b_rep) ** p) ** (1 / p))


def ring(K: int = 8, radius: float = 2.0, std: float = 0.1) -> GaussianMixture:
    angles = torch.arange(K, dtype=torch.float64) * 2 * math.pi / K
    means = radius * torch.stack([angles.cos(), angles.sin()], 1)
    return GaussianMixture(torch.ones(K), means, torch.full((K,), std))


# -- sliced Wasserstein ------------------------------------------------------------------------

@pytest.mark.parametrize("p", [1, 2, 3])
def test_1d_equal_sizes_is_exact_w_by_sorting(p):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=60), rng.gamma(2.0, size=60)
    expected = float(np.mean(np.abs(np.sort(a) - np.sort(b)) ** p) ** (1 / p))
    got = sliced_wasserstein(torch.tensor(a)[:, None], torch.tensor(b)[:, None], n_projections=5,
                             generator=seeded(), p=p)
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n,m", [(7, 12), (12, 7), (1, 5), (13, 13), (30, 45)])
@pytest.mark.parametrize("p", [1, 2, 2.5])
def test_1d_unequal_sizes_match_brute_force(n, m, p):
    rng = np.random.default_rng(n * 100 + m)
    a, b = rng.normal(size=n), rng.exponential(size=m) - 0.5
    got = sliced_wasserstein(a, b, n_projections=2, generator=seeded(), p=p)  # 1-D arrays: scalars
    assert got == pytest.approx(brute_force_w(a, b, p), rel=1e-10)


samples_1d = st.lists(st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False), min_size=1, max_size=15)


@settings(max_examples=60, deadline=None)
@given(a=samples_1d, b=samples_1d, p=st.sampled_from([1.0, 1.5, 2.0, 3.0]))
def test_1d_any_sizes_match_brute_force(a, b, p):
    a, b = np.array(a), np.array(b)
    got = sliced_wasserstein(a, b, n_projections=1, generator=seeded(), p=p)
    assert got == pytest.approx(brute_force_w(a, b, p), rel=1e-9, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(a=samples_1d, b=samples_1d)
def test_1d_w1_matches_scipy(a, b):
    from scipy.stats import wasserstein_distance

    got = sliced_wasserstein(np.array(a), np.array(b), n_projections=1, generator=seeded(), p=1)
    assert got == pytest.approx(wasserstein_distance(a, b), rel=1e-9, abs=1e-9)


def test_gaussian_shift_matches_closed_form():
    # x ~ N(0, I), y ~ N(mu, I) in D dims: every projection is shifted by theta . mu, so
    # SW_2^2 = E[(theta . mu)^2] = |mu|^2 / D for theta uniform on the sphere.
    D, n = 8, 4000
    g = seeded(1)
    mu = torch.randn(D, generator=g, dtype=torch.float64)
    mu = 2.0 * mu / mu.norm()
    x = torch.randn(n, D, generator=g, dtype=torch.float64)
    y = torch.randn(n, D, generator=g, dtype=torch.float64) + mu
    sw = sliced_wasserstein(x, y, n_projections=1000, generator=seeded(2))
    assert sw**2 == pytest.approx(float(mu @ mu) / D, rel=0.1)


def test_event_shape_is_flattened_and_numpy_matches_torch():
    x = torch.randn(300, 2, 3, generator=seeded(3))
    y = torch.randn(300, 2, 3, generator=seeded(4)) + 0.3
    a = sliced_wasserstein(x, y, generator=seeded(5))
    b = sliced_wasserstein(x.reshape(300, 6).numpy(), y.reshape(300, 6).numpy(), generator=seeded(5))
    assert a == pytest.approx(b, rel=1e-12)


def test_identical_sets_symmetry_and_growth_with_shift():
    x = torch.randn(500, 4, generator=seeded(6), dtype=torch.float64)
    assert sliced_wasserstein(x, x.clone(), generator=seeded(7)) == pytest.approx(0.0, abs=1e-12)
    # a permuted copy is the same empirical distribution
    assert sliced_wasserstein(x, x[torch.randperm(500, generator=seeded(8))], generator=seeded(7)) == pytest.approx(0.0, abs=1e-12)
    y = torch.randn(700, 4, generator=seeded(9), dtype=torch.float64) + 0.5
    assert sliced_wasserstein(x, y, generator=seeded(7)) == pytest.approx(
        sliced_wasserstein(y, x, generator=seeded(7)), rel=1e-12)
    direction = torch.tensor([1.0, -1.0, 0.5, 2.0], dtype=torch.float64)
    values = [sliced_wasserstein(x, x + c * direction, generator=seeded(7)) for c in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert all(v1 < v2 for v1, v2 in zip(values, values[1:]))
    # a pure shift: SW_2 is linear in its size (every projection moves by theta . shift)
    assert values[4] == pytest.approx(2 * values[3], rel=1e-9)


def test_same_generator_seed_gives_same_value():
    x, y = torch.randn(200, 3, generator=seeded(10)), torch.randn(250, 3, generator=seeded(11))
    assert sliced_wasserstein(x, y, generator=seeded(12)) == sliced_wasserstein(x, y, generator=seeded(12))


def test_many_projections_use_several_blocks():
    # more projections than one memory block holds must give the same estimator
    import anydiff.metrics as metrics

    x, y = torch.randn(100, 3, generator=seeded(13)), torch.randn(130, 3, generator=seeded(14)) * 2
    full = sliced_wasserstein(x, y, n_projections=64, generator=seeded(15))
    old = metrics._BLOCK_ELEMENTS
    try:
        metrics._BLOCK_ELEMENTS = 230 * 5  # 5 projections per block
        blocked = sliced_wasserstein(x, y, n_projections=64, generator=seeded(15))
    finally:
        metrics._BLOCK_ELEMENTS = old
    assert blocked == pytest.approx(full, rel=1e-12)


# -- mode weights ------------------------------------------------------------------------------

def test_mode_weight_error_is_sampling_noise_on_fresh_data():
    gm = ring()
    x = gm.sample(4000, generator=seeded(20))
    # K = 8 equal weights, n = 4000: each fraction has std sqrt(w(1-w)/n) ~ 0.005
    assert mode_weight_error(x, gm) < 0.03
    w = mode_weights(x, gm)
    assert w.shape == (8,) and float(w.sum()) == pytest.approx(1.0)
    assert torch.allclose(w, gm.weights, atol=0.03)


def test_mode_weight_error_is_large_when_one_mode_only():
    gm = ring()
    x, labels = gm.sample(8000, generator=seeded(21), return_labels=True)
    one_mode = x[labels == 3]
    assert mode_weight_error(one_mode, gm) == pytest.approx(1 - 1 / 8, abs=1e-6)
    assert torch.equal(mode_weights(one_mode, gm), torch.eye(8, dtype=torch.float64)[3])


def test_soft_assignment_is_unbiased_where_argmax_is_not():
    # two overlapping 1-D components: argmax assignment of exact data is biased towards the
    # heavier one, the mean responsibility is not
    gm = GaussianMixture([0.7, 0.3], [[0.0], [1.0]], [1.0, 1.0])
    x = gm.sample(20000, generator=seeded(22))
    hard = mode_weights(x, gm)
    assert float(hard[0]) > 0.8  # about 0.83, far from 0.7: the bias the error metric avoids
    soft = mean_responsibilities(x, gm)
    assert torch.allclose(soft, gm.weights, atol=0.01)
    assert mode_weight_error(x, gm) < 0.01


def test_mode_weight_error_accepts_numpy():
    gm = ring()
    x = gm.sample(500, generator=seeded(23))
    assert mode_weight_error(x.numpy(), gm) == pytest.approx(mode_weight_error(x, gm), rel=1e-12)


# -- bad inputs --------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(x=[[0.0], [1.0]]), "x must be"),
    (dict(y="data"), "y must be"),
    (dict(x=torch.empty(0, 2)), "x is empty"),
    (dict(x=torch.tensor(1.0)), "x must have shape"),
    (dict(y=torch.tensor([[0.0, float("nan")]])), "y contains NaN"),
    (dict(y=torch.zeros(5, 3)), "y has 3 values per sample"),
    (dict(n_projections=0), "n_projections"),
    (dict(n_projections=2.5), "n_projections"),
    (dict(n_projections=True), "n_projections"),
    (dict(p=0.5), "p=0.5"),
    (dict(p=float("inf")), "p=inf"),
    (dict(generator=0), "generator"),
])
def test_sliced_wasserstein_bad_input(kwargs, match):
    args = dict(x=torch.zeros(4, 2), y=torch.ones(6, 2))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        sliced_wasserstein(**args)


@pytest.mark.parametrize("fn", [mode_weights, mean_responsibilities, mode_weight_error])
def test_mode_metrics_bad_input(fn):
    gm = ring()
    with pytest.raises(ValueError, match="gm must be"):
        fn(torch.zeros(3, 2), "not a mixture")
    with pytest.raises(ValueError, match="x must have shape"):
        fn(torch.zeros(3, 3), gm)
    with pytest.raises(ValueError, match="x must have shape"):
        fn(torch.zeros(3), gm)
    with pytest.raises(ValueError, match="x contains NaN"):
        fn(torch.full((3, 2), float("inf")), gm)
    with pytest.raises(ValueError, match="x is empty"):
        fn(torch.zeros(0, 2), gm)


# -- MMD and energy distance -------------------------------------------------------------------

def brute_force_mmd(a: np.ndarray, b: np.ndarray, h: float, unbiased: bool) -> float:
    def k(u, v):
        return math.exp(-float(np.sum((u - v) ** 2)) / (2 * h * h))

    def within(s):
        total = sum(k(s[i], s[j]) for i in range(len(s)) for j in range(len(s)) if i != j or not unbiased)
        return total / (len(s) * (len(s) - 1) if unbiased else len(s) ** 2)

    cross = sum(k(u, v) for u in a for v in b) / (len(a) * len(b))
    return within(a) + within(b) - 2 * cross


def brute_force_energy(a: np.ndarray, b: np.ndarray, unbiased: bool) -> float:
    def within(s):
        total = sum(np.linalg.norm(s[i] - s[j]) for i in range(len(s)) for j in range(len(s)))
        return total / (len(s) * (len(s) - 1) if unbiased else len(s) ** 2)

    cross = sum(np.linalg.norm(u - v) for u in a for v in b) / (len(a) * len(b))
    return 2 * cross - within(a) - within(b)


def brute_force_median_distance(z: np.ndarray) -> float:
    return float(np.median([np.linalg.norm(z[i] - z[j]) for i in range(len(z)) for j in range(i + 1, len(z))]))


@pytest.mark.parametrize("D", [1, 3, 40])  # 40 > 32: the |a|^2 + |b|^2 - 2 a.b branch
@pytest.mark.parametrize("unbiased", [True, False])
def test_mmd_and_energy_match_brute_force(D, unbiased):
    rng = np.random.default_rng(D)
    a, b = rng.normal(size=(7, D)) + 100.0, rng.standard_t(3, size=(9, D)) + 100.5  # far from 0
    for h in (0.3, 1.0, 2.5 * math.sqrt(D)):
        assert mmd(a, b, bandwidth=h, unbiased=unbiased) == pytest.approx(
            brute_force_mmd(a, b, h, unbiased), rel=1e-9, abs=1e-12)
    assert energy_distance(a, b, unbiased=unbiased) == pytest.approx(
        brute_force_energy(a, b, unbiased), rel=1e-9, abs=1e-12)
    # median heuristic: 6 + 8 pooled points have 91 pairs, an odd count, so the median is unique
    a, b = a[:6], b[:8]
    h = brute_force_median_distance(np.concatenate([a, b]))
    assert mmd(a, b, unbiased=unbiased) == pytest.approx(brute_force_mmd(a, b, h, unbiased), rel=1e-9, abs=1e-12)


def test_median_heuristic_skips_zero_distances_and_constant_data():
    # mostly duplicated points: the median distance is 0, so the positive distances are used
    a = np.array([[0.0], [0.0], [0.0], [0.0], [1.0]])
    b = np.array([[0.0], [0.0], [3.0]])
    assert mmd(a, b) == pytest.approx(brute_force_mmd(a, b, 2.0, True), rel=1e-12)  # 6 ones, one 2, 6 threes
    assert mmd(np.zeros((4, 2)), np.zeros((3, 2))) == 0.0


samples_1d_2 = st.lists(st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False), min_size=2, max_size=15)


@settings(max_examples=60, deadline=None)
@given(a=samples_1d, b=samples_1d)
def test_energy_1d_matches_scipy_squared(a, b):
    from scipy.stats import energy_distance as scipy_energy

    got = energy_distance(np.array(a), np.array(b), unbiased=False)
    assert got == pytest.approx(scipy_energy(a, b) ** 2, rel=1e-9, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(a=samples_1d_2, b=samples_1d_2)
def test_energy_unbiased_rescales_within_terms(a, b):
    # U-statistic within term = n / (n - 1) times the V-statistic one
    a, b = np.array(a), np.array(b)
    n, m = len(a), len(b)
    wa, wb = np.abs(a[:, None] - a).sum() / n**2, np.abs(b[:, None] - b).sum() / m**2
    expected = energy_distance(a, b, unbiased=False) + wa + wb - wa * n / (n - 1) - wb * m / (m - 1)
    assert energy_distance(a, b) == pytest.approx(expected, rel=1e-9, abs=1e-6)


@pytest.mark.parametrize("metric", [lambda x, y: mmd(x, y, bandwidth=2.0), energy_distance])
def test_two_sample_statistics_near_zero_for_same_distribution_and_grow_with_shift(metric):
    D, n = 3, 1500
    x = torch.randn(n, D, generator=seeded(30), dtype=torch.float64)
    y = torch.randn(n + 200, D, generator=seeded(31), dtype=torch.float64)
    direction = torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64)
    values = [metric(x, y + c * direction) for c in (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)]
    # same distribution: the unbiased estimate is noise around 0, far below a 0.25 shift's value
    assert abs(values[0]) < 0.1 * values[2]
    assert all(v1 < v2 for v1, v2 in zip(values[1:], values[2:]))
    assert metric(x, x.clone()) == pytest.approx(metric(x, x[torch.randperm(n, generator=seeded(32))]), abs=1e-12)
    assert metric(x, y + direction) == pytest.approx(metric(y + direction, x), rel=1e-9)


def test_biased_versions_are_nonnegative_and_zero_on_identical_sets():
    x = torch.randn(50, 2, 2, generator=seeded(33))
    assert mmd(x, x, unbiased=False) == pytest.approx(0.0, abs=1e-12)
    assert energy_distance(x, x, unbiased=False) == pytest.approx(0.0, abs=1e-12)
    # identical sets, unbiased: the within terms lose the zero diagonal, so the value is negative
    assert energy_distance(x, x) < 0 and mmd(x, x) < 0


def test_event_shape_flattened_numpy_matches_torch_and_subsampling():
    x = torch.randn(400, 2, 3, generator=seeded(34), dtype=torch.float64)
    y = torch.randn(300, 2, 3, generator=seeded(35), dtype=torch.float64) + 0.2
    for fn in (mmd, energy_distance):
        assert fn(x, y) == pytest.approx(fn(x.reshape(400, 6).numpy(), y.reshape(300, 6).numpy()), rel=1e-12)
        # subsampling is reproducible with a seeded generator and close to the full value
        sub = [fn(x, y, max_samples=200, generator=seeded(36)) for _ in range(2)]
        assert sub[0] == sub[1]
        assert sub[0] == pytest.approx(fn(x, y), rel=0.5)
        assert fn(x, y, max_samples=200, generator=seeded(37)) != sub[0]


def test_max_samples_bounds_blocked_computation():
    # a tiny memory block (several blocks per matrix) gives the same value
    import anydiff.metrics as metrics

    x, y = torch.randn(60, 3, generator=seeded(38)), torch.randn(45, 3, generator=seeded(39)) + 0.5
    full = (mmd(x, y), energy_distance(x, y))
    old = metrics._BLOCK_ELEMENTS
    try:
        metrics._BLOCK_ELEMENTS = 7 * 60
        blocked = (mmd(x, y), energy_distance(x, y))
    finally:
        metrics._BLOCK_ELEMENTS = old
    assert blocked == pytest.approx(full, rel=1e-12)


# -- classifier two-sample test ----------------------------------------------------------------

@pytest.fixture
def one_thread():
    """Run scikit-learn's OpenMP code on one thread: on a busy machine its spinning threads can
    make a 0.5 s fit take 30 s. The result does not depend on the thread count."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1):
        yield


def test_c2st_chance_for_same_distribution_and_one_for_separated(one_thread):
    g = seeded(40)
    x = torch.randn(1000, 2, generator=g, dtype=torch.float64)
    y = torch.randn(1200, 2, generator=g, dtype=torch.float64)
    same = c2st(x, y)
    assert same == pytest.approx(0.5, abs=0.05)
    assert c2st(x, y) == same  # deterministic with random_state
    assert c2st(x, y + 6.0) > 0.99
    assert 0.6 < c2st(x, y + 0.5) < 0.9


def test_c2st_balanced_subsampling_and_event_shapes(one_thread):
    x = np.random.default_rng(41).normal(size=(300, 2, 2))
    y = np.random.default_rng(42).normal(size=(5000, 2, 2)) + 3.0
    assert c2st(x, y, n_splits=3, max_samples=200) > 0.95
    assert c2st(x, y, n_splits=3, random_state=1) != c2st(x, y, n_splits=3, random_state=2)


# -- bad inputs and optional dependencies ------------------------------------------------------

@pytest.mark.parametrize("fn", [mmd, energy_distance, c2st])
@pytest.mark.parametrize("kwargs,match", [
    (dict(x=[[0.0], [1.0]]), "x must be"),
    (dict(y="data"), "y must be"),
    (dict(x=torch.empty(0, 2)), "x is empty"),
    (dict(y=np.zeros((0, 2))), "y is empty"),
    (dict(x=torch.tensor(1.0)), "x must have shape"),
    (dict(x=torch.tensor([[0.0, float("nan")]] * 6)), "x contains NaN"),
    (dict(y=torch.tensor([[0.0, float("inf")]] * 6)), "y contains NaN"),
    (dict(y=torch.zeros(6, 3)), "y has 3 values per sample"),
    (dict(y=torch.zeros(6, 1, 2, 1)), None),  # same number of values per sample: accepted
    (dict(max_samples=1), "max_samples"),
    (dict(max_samples=2.5), "max_samples"),
])
def test_two_sample_bad_input(fn, kwargs, match, one_thread):
    args = dict(x=torch.zeros(6, 2), y=torch.ones(7, 2))
    args.update(kwargs)
    if match is None:
        fn(**args)
        return
    with pytest.raises(ValueError, match=match):
        fn(**args)


@pytest.mark.parametrize("call,match", [
    (lambda x, y: mmd(x[:1], y), "x has 1 sample"),
    (lambda x, y: energy_distance(x, y[:1]), "y has 1 sample"),
    (lambda x, y: mmd(x, y, bandwidth=0.0), "bandwidth"),
    (lambda x, y: mmd(x, y, bandwidth=float("nan")), "bandwidth"),
    (lambda x, y: mmd(x, y, unbiased=1), "unbiased"),
    (lambda x, y: energy_distance(x, y, generator=0), "generator"),
    (lambda x, y: c2st(x[:4], y), "x has 4 samples"),
    (lambda x, y: c2st(x, y[:2], n_splits=3), "y has 2 samples"),
    (lambda x, y: c2st(x, y, n_splits=1), "n_splits"),
    (lambda x, y: c2st(x, y, random_state=1.5), "random_state"),
])
def test_two_sample_bad_options(call, match, one_thread):
    with pytest.raises(ValueError, match=match):
        call(torch.zeros(6, 2), torch.ones(7, 2))


def test_biased_statistics_accept_single_samples():
    assert mmd(torch.zeros(1, 2), torch.zeros(1, 2), unbiased=False) == 0.0
    assert energy_distance(np.array([0.0]), np.array([3.0]), unbiased=False) == pytest.approx(6.0)


def test_metrics_import_does_not_need_sklearn():
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    subprocess.run([sys.executable, "-c", "import anydiff.metrics, sys; assert 'sklearn' not in sys.modules"],
                   env=env, check=True)
