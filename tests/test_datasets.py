"""Toy 2-D data sets against their stated geometry and exact densities."""
import math

import numpy as np
import pytest
import torch
from scipy import spatial, stats

from anydiff import datasets
from anydiff.datasets import (TOY_DATASETS, checkerboard_log_prob, eight_gaussians_mixture, load_toy,
                              make_checkerboard, make_circles, make_eight_gaussians, make_moons,
                              make_pinwheel, make_spirals, make_swiss_roll)

NAMES = sorted(TOY_DATASETS)
LABELLED = {"moons": 2, "circles": 2, "spirals": 2, "pinwheel": 5, "eight_gaussians": 8}
UNLABELLED = sorted(set(NAMES) - set(LABELLED))


def nearest_distance(points: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """Brute force: distance from each point to the nearest of a dense set of curve points."""
    return spatial.cKDTree(curve).query(points)[0]


def arc(centre, radius, start, stop, n=200_000):
    a = np.linspace(start, stop, n)
    return np.asarray(centre) + radius * np.stack([np.cos(a), np.sin(a)], 1)


# -- common contract ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_and_reproducibility(name):
    X = load_toy(name, 301, random_state=7)
    assert isinstance(X, np.ndarray) and X.shape == (301, 2) and X.dtype == np.float64
    assert np.isfinite(X).all()
    np.testing.assert_array_equal(X, load_toy(name, 301, random_state=7))
    assert not np.array_equal(X, load_toy(name, 301, random_state=8))
    # a numpy Generator is used in place: the same stream as its seed, then advanced
    rng = np.random.default_rng(7)
    np.testing.assert_array_equal(load_toy(name, 301, random_state=rng), X)
    assert not np.array_equal(load_toy(name, 301, random_state=rng), X)
    assert load_toy(name, 1, random_state=None).shape == (1, 2)


@pytest.mark.parametrize("name", NAMES)
def test_values_roughly_within_box(name):
    X = load_toy(name, 4000, random_state=0)
    assert np.mean(np.abs(X).max(1) <= 4) > 0.995
    assert np.abs(X).max() < 5
    assert np.abs(X).max() > 1.5  # uses the box, not a tiny corner of it


def test_load_toy_defaults_and_noise_pass_through():
    np.testing.assert_array_equal(load_toy("moons", 50, random_state=3), make_moons(50, random_state=3))
    np.testing.assert_array_equal(load_toy("swiss_roll", 50, random_state=3, noise=0.0),
                                  make_swiss_roll(50, random_state=3, noise=0.0))
    X, y = load_toy("spirals", 50, random_state=3, return_labels=True)
    X2, y2 = make_spirals(50, random_state=3, return_labels=True)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)


# -- labels -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(LABELLED))
def test_labels_and_class_balance(name):
    n_classes = LABELLED[name]
    X, y = load_toy(name, 1003, random_state=1, return_labels=True)
    assert y.shape == (1003,) and y.dtype == np.int64
    np.testing.assert_array_equal(X, load_toy(name, 1003, random_state=1))
    counts = np.bincount(y, minlength=n_classes)
    assert counts.size == n_classes and counts.sum() == 1003
    if name == "eight_gaussians":  # drawn from the mixture weights: multinomial counts
        assert stats.chisquare(counts).pvalue > 1e-3
    else:  # balanced exactly, in random order
        assert counts.max() - counts.min() <= 1
        assert not np.array_equal(y, np.sort(y))


@pytest.mark.parametrize("name", UNLABELLED)
def test_unlabelled_sets_refuse_labels(name):
    with pytest.raises(ValueError, match=r"^return_labels\b"):
        load_toy(name, 10, return_labels=True)


# -- geometry at noise=0 ------------------------------------------------------------------------
def test_moons_lie_on_their_arcs():
    X, y = make_moons(500, noise=0.0, random_state=0, return_labels=True)
    upper = arc((-1.0, -0.5), 2.0, 0, np.pi)
    lower = arc((1.0, 0.5), 2.0, np.pi, 2 * np.pi)
    assert nearest_distance(X[y == 0], upper).max() < 1e-4
    assert nearest_distance(X[y == 1], lower).max() < 1e-4
    assert nearest_distance(X[y == 0], lower).min() > 0.05  # each point on its own moon only
    assert X[:, 0].min() > -3 - 1e-9 and X[:, 0].max() < 3 + 1e-9


def test_circles_lie_on_their_circles():
    X, y = make_circles(500, noise=0.0, random_state=0, return_labels=True)
    radius = np.hypot(X[:, 0], X[:, 1])
    np.testing.assert_allclose(radius, np.where(y == 0, 3.0, 1.5), rtol=0, atol=1e-12)


def test_spirals_and_swiss_roll_lie_on_their_curves():
    theta = np.linspace(0, 3 * np.pi, 400_000)
    spiral = (3.5 * theta / (3 * np.pi))[:, None] * np.stack([np.cos(theta), np.sin(theta)], 1)
    X, y = make_spirals(500, noise=0.0, random_state=0, return_labels=True)
    assert nearest_distance(X[y == 0], spiral).max() < 1e-4
    assert nearest_distance(-X[y == 1], spiral).max() < 1e-4  # the second arm is the first turned by pi
    t = np.linspace(1.5 * np.pi, 4.5 * np.pi, 400_000)
    roll = (3.5 * t / (4.5 * np.pi))[:, None] * np.stack([np.cos(t), np.sin(t)], 1)
    assert nearest_distance(make_swiss_roll(500, noise=0.0, random_state=0), roll).max() < 1e-4


def test_pinwheel_without_spread_is_one_point_per_arm():
    """radial_std = noise = 0: every point of arm k sits at radius 2 and angle 2 pi k / K + rate e."""
    X, y = make_pinwheel(200, noise=0.0, radial_std=0.0, n_arms=4, rate=0.3, random_state=0, return_labels=True)
    expected = 2.0 * np.stack([np.cos(2 * np.pi * y / 4 + 0.3 * math.e), np.sin(2 * np.pi * y / 4 + 0.3 * math.e)], 1)
    np.testing.assert_allclose(X, expected, atol=1e-12)


def test_pinwheel_rotation_grows_with_radius():
    # radial_std small enough that r = 1 + radial_std z stays positive (else the point flips by pi)
    X = make_pinwheel(4000, noise=0.0, n_arms=1, radial_std=0.2, rate=0.25, random_state=0)
    r = np.hypot(X[:, 0], X[:, 1]) / 2
    np.testing.assert_allclose(np.arctan2(X[:, 1], X[:, 0]), 0.25 * np.exp(r), atol=1e-9)


# -- eight Gaussians: the generator against its mixture -------------------------------------------
def test_eight_gaussians_mixture_parameters():
    gm = eight_gaussians_mixture(0.3)
    angles = np.arange(8) * np.pi / 4
    np.testing.assert_allclose(gm.means.numpy(), 2 * np.stack([np.cos(angles), np.sin(angles)], 1), atol=1e-12)
    np.testing.assert_allclose(gm.weights.numpy(), np.full(8, 1 / 8))
    np.testing.assert_allclose(gm.covs.numpy(), np.broadcast_to(0.09 * np.eye(2), (8, 2, 2)))


def test_eight_gaussians_moments_and_modes_match_the_mixture():
    noise, n = 0.25, 20_000
    gm = eight_gaussians_mixture(noise)
    X, y = make_eight_gaussians(n, noise=noise, random_state=0, return_labels=True)
    w, mu, cov = gm.weights.numpy(), gm.means.numpy(), gm.covs.numpy()
    mean = w @ mu
    second = np.einsum("k,kij->ij", w, cov + mu[:, :, None] * mu[:, None, :])
    total_cov = second - np.outer(mean, mean)
    stderr = np.sqrt(np.diag(total_cov) / n)
    assert (np.abs(X.mean(0) - mean) < 4 * stderr).all()
    # sample covariance: std error of each entry about total_var * sqrt(2 / n)
    np.testing.assert_allclose(np.cov(X.T), total_cov, atol=4 * total_cov.max() * math.sqrt(2 / n))
    # mode frequencies against the mixture weights
    counts = np.bincount(y, minlength=8)
    assert stats.chisquare(counts, n * w).pvalue > 1e-3
    # the label is the component: P(y = k | x) is the mixture's responsibility r_k(x), so the mean of
    # r_y(x) and of sum_k r_k(x)^2 estimate the same number; and the spread around a mode is noise
    resp = gm.responsibilities(torch.from_numpy(X)).numpy()
    r_label, r_square = resp[np.arange(n), y], (resp**2).sum(1)
    assert abs(r_label.mean() - r_square.mean()) < 4 * r_label.std() / math.sqrt(n)
    assert r_label.mean() < 0.999  # the modes overlap at this noise: the check above has teeth
    resid = X - mu[y]
    np.testing.assert_allclose(resid.std(0), noise, rtol=0.03)
    # the mixture's own samples agree with the generator's (two-sample KS on each coordinate)
    Z = gm.sample(n, torch.Generator().manual_seed(0), dtype=torch.float64).numpy()
    for d in range(2):
        assert stats.ks_2samp(X[:, d], Z[:, d]).pvalue > 1e-3


def test_eight_gaussians_without_noise_sit_on_the_modes():
    X, y = make_eight_gaussians(100, noise=0.0, random_state=0, return_labels=True)
    np.testing.assert_allclose(X, 2 * np.stack([np.cos(y * np.pi / 4), np.sin(y * np.pi / 4)], 1), atol=1e-12)
    with pytest.raises(ValueError, match=r"^noise\b"):
        eight_gaussians_mixture(0.0)


# -- checkerboard ------------------------------------------------------------------------------
def test_checkerboard_samples_fill_the_black_cells_uniformly():
    n = 16_000
    X = make_checkerboard(n, random_state=0)
    cell = np.floor((X + 4) / 2).astype(int)
    assert ((cell >= 0) & (cell <= 3)).all()
    assert ((cell.sum(1) % 2) == 0).all()
    np.testing.assert_array_equal(checkerboard_log_prob(X), np.full(n, -np.log(32)))
    # per-cell counts: uniform over the 8 black cells
    counts = np.bincount(cell[:, 0] * 4 + cell[:, 1], minlength=16)
    black = (np.add.outer(np.arange(4), np.arange(4)) % 2 == 0).ravel()
    assert (counts[~black] == 0).all()
    assert stats.chisquare(counts[black]).pvalue > 1e-3
    # uniform within cells: 4 x 4 sub-cells in local coordinates
    local = np.floor(((X + 4) / 2 - cell) * 4).astype(int)
    sub = np.bincount(local[:, 0] * 4 + local[:, 1], minlength=16)
    assert stats.chisquare(sub).pvalue > 1e-3


def test_checkerboard_log_prob_integrates_to_one():
    h = 0.05  # midpoints of a grid on [-5, 5]^2 whose cells never straddle a board edge
    centres = -5 + h * (np.arange(200) + 0.5)
    gx, gy = np.meshgrid(centres, centres)
    lp = checkerboard_log_prob(np.stack([gx.ravel(), gy.ravel()], 1))
    assert np.exp(lp).sum() * h * h == pytest.approx(1.0, abs=1e-12)
    assert set(np.unique(lp)) == {-np.inf, -np.log(32)}


def test_checkerboard_log_prob_cells_and_outside():
    pts = np.array([[-3.0, -3.0], [-1.0, -3.0], [1.0, 1.0], [3.0, -1.0], [4.5, 0.0], [-np.inf, 0.0], [0.0, np.inf]])
    np.testing.assert_array_equal(checkerboard_log_prob(pts), [-np.log(32), -np.inf, -np.log(32), -np.log(32)]
                                  + [-np.inf] * 3)
    assert checkerboard_log_prob(torch.zeros(3, 2, dtype=torch.float64)).shape == (3,)


def test_checkerboard_noise_jitters():
    X = make_checkerboard(2000, noise=0.3, random_state=0)
    assert np.isinf(checkerboard_log_prob(X)).any()


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10", None])
def test_bad_n_samples(name, bad):
    with pytest.raises(ValueError, match=r"^n_samples\b"):
        TOY_DATASETS[name](bad)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "0.1", True])
def test_bad_noise(name, bad):
    with pytest.raises(ValueError, match=r"^noise\b"):
        TOY_DATASETS[name](10, noise=bad)


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True, np.random.RandomState(0), torch.Generator()])
def test_bad_random_state(bad):
    with pytest.raises(ValueError, match=r"^random_state\b"):
        make_moons(10, random_state=bad)


def test_as_rng_accepts_numpy_ints():
    a = datasets.as_rng(np.int64(5)).standard_normal(3)
    np.testing.assert_array_equal(a, np.random.default_rng(5).standard_normal(3))


@pytest.mark.parametrize("kwargs, arg", [({"n_arms": 0}, "n_arms"), ({"n_arms": 2.0}, "n_arms"),
                                         ({"radial_std": -1.0}, "radial_std"), ({"rate": float("nan")}, "rate")])
def test_bad_pinwheel_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=rf"^{arg}\b"):
        make_pinwheel(10, **kwargs)


def test_unknown_name_lists_the_names():
    with pytest.raises(ValueError, match=r"^name=.*moons.*swiss_roll"):
        load_toy("moon", 10)


@pytest.mark.parametrize("bad", [np.zeros(2), np.zeros((3, 3)), np.array([[np.nan, 0.0]])])
def test_bad_checkerboard_points(bad):
    with pytest.raises(ValueError, match=r"^x\b"):
        checkerboard_log_prob(bad)
