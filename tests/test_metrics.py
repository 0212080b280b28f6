"""Tests of anydiff.metrics against brute force and closed forms."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anydiff.metrics import mean_responsibilities, mode_weight_error, mode_weights, sliced_wasserstein
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
