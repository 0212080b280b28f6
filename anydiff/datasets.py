"""Toy 2-D data sets for diffusion models, generated with numpy.

Every generator has the signature ``make_<name>(n_samples=1000, *, noise=<default>,
random_state=None)`` and returns a float64 array of shape ``(n_samples, 2)``, scaled so that the
data lie roughly within ``[-4, 4]**2`` (a few noisy points may fall just outside).

Labels. The sets with classes (moons, circles, spirals, pinwheel, eight Gaussians) take
``return_labels=False``; with ``return_labels=True`` they return ``(X, y)``, ``y`` an int64 array
of shape ``(n_samples,)``. So the return type of a call never depends on the data set, only on
that flag (as in :meth:`anydiff.oracles.GaussianMixture.sample`). The checkerboard and the 2-D
Swiss roll have no classes and no ``return_labels`` argument.

==================== ====================================== ======================== ==========
name                 shape                                  ``noise`` is             labels
==================== ====================================== ======================== ==========
``moons``            two interleaved half circles, radius 2 std of Gaussian jitter   moon
``circles``          concentric circles, radius 3 and 1.5   std of Gaussian jitter   circle
``spirals``          two interleaved Archimedean spirals    std of Gaussian jitter   spiral
``pinwheel``         5 curled arms (Johnson et al. 2016)    tangential std of an arm arm
``eight_gaussians``  8 modes on a circle of radius 2        std of each mode         mode
``checkerboard``     4x4 board on [-4, 4]^2, 8 black cells  std of Gaussian jitter   --
``swiss_roll``       (x, z) projection of the Swiss roll    std of Gaussian jitter   --
==================== ====================================== ======================== ==========

Classes are balanced exactly (class sizes differ by at most one, in random order) except for the
eight Gaussians, whose modes are drawn from the mixture weights. Exact densities are given where
they are known: :func:`eight_gaussians_mixture` and :func:`checkerboard_log_prob`.

``random_state`` is None (fresh entropy), a non-negative int, or a ``numpy.random.Generator``
(used and advanced in place); see :func:`as_rng`.
"""
from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable

import numpy as np

from .oracles import GaussianMixture

__all__ = ["as_rng", "make_moons", "make_circles", "make_spirals", "make_pinwheel",
           "make_eight_gaussians", "eight_gaussians_mixture", "make_checkerboard",
           "checkerboard_log_prob", "make_swiss_roll", "TOY_DATASETS", "load_toy"]

RandomState = int | np.random.Generator | None
Output = np.ndarray | tuple[np.ndarray, np.ndarray]

# geometry, in output units
_MOON_RADIUS = 2.0
_MOON_CENTRES = np.array([[-1.0, -0.5], [1.0, 0.5]])  # upper moon, lower moon
_CIRCLE_RADII = np.array([3.0, 1.5])                  # outer (label 0), inner (label 1)
_SPIRAL_TURNS = 1.5                                   # each spiral winds through 3 pi
_ROLL_RADIUS = 3.5                                    # outer radius of spirals and Swiss roll
_EIGHT_RADIUS = 2.0
_CHECKER_LOW, _CHECKER_SIDE, _CHECKER_CELLS = -4.0, 2.0, 4
_PINWHEEL_SCALE = 2.0


# -- shared helpers ---------------------------------------------------------------------------
def as_rng(random_state: RandomState = None) -> np.random.Generator:
    """Turn ``random_state`` into a ``numpy.random.Generator``.

    Parameters
    ----------
    random_state : None, int >= 0 or numpy.random.Generator
        None draws fresh OS entropy; an int seeds a new generator; a generator is returned as is
        (so successive calls advance it).
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool) and random_state >= 0:
        return np.random.default_rng(int(random_state))
    raise ValueError(f"random_state={random_state!r} must be None, a non-negative int or a "
                     "numpy.random.Generator")


def _check_n_samples(n_samples) -> int:
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 1:
        raise ValueError(f"n_samples={n_samples!r} must be a positive integer")
    return int(n_samples)


def _check_nonnegative(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}={value!r} must be a finite number >= 0")
    return float(value)


def _setup(n_samples, noise, random_state) -> tuple[int, float, np.random.Generator]:
    """Validate the arguments every generator shares."""
    return _check_n_samples(n_samples), _check_nonnegative(noise, "noise"), as_rng(random_state)


def _balanced_labels(n: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Labels 0..n_classes-1, shape (n,), class sizes differing by at most one, in random order."""
    return rng.permutation(np.arange(n) % n_classes).astype(np.int64)


def _polar(radius: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Points ``radius * (cos angle, sin angle)``, shape (n, 2)."""
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def _jitter(X: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """``X`` plus isotropic Gaussian noise of std ``noise``, shape like X."""
    return X + noise * rng.standard_normal(X.shape)


def _output(X: np.ndarray, y: np.ndarray, return_labels: bool) -> Output:
    return (X, y) if return_labels else X


# -- labelled sets ----------------------------------------------------------------------------
def make_moons(n_samples: int = 1000, *, noise: float = 0.1, random_state: RandomState = None,
               return_labels: bool = False) -> Output:
    """Two interleaved half circles ("two moons").

    Moon ``c`` is the half circle of radius 2 around ``(-1, -0.5)`` (c = 0) or
    ``(1, 0.5)`` (c = 1) at angles ``U(0, pi) + c pi``: the upper moon (label 0) spans x in [-3, 1],
    the lower (label 1) x in [-1, 3]; y lies in [-1.5, 1.5]. Angles are uniform.

    Parameters
    ----------
    n_samples : int, positive
    noise : float >= 0, std of the Gaussian jitter added to every point.
    random_state : None, int or numpy.random.Generator
    return_labels : bool, also return the moon of each point.

    Returns
    -------
    X : ndarray, shape (n_samples, 2), float64
    y : ndarray, shape (n_samples,), int64, only with ``return_labels``
    """
    n, noise, rng = _setup(n_samples, noise, random_state)
    y = _balanced_labels(n, 2, rng)
    angle = rng.uniform(0.0, np.pi, n) + np.pi * y
    return _output(_jitter(_MOON_CENTRES[y] + _polar(np.full(n, _MOON_RADIUS), angle), noise, rng), y, return_labels)


def make_circles(n_samples: int = 1000, *, noise: float = 0.1, random_state: RandomState = None,
               return_labels: bool = False) -> Output:
    """Two concentric circles around the origin, radius 3 (label 0) and 1.5 (label 1).

    Angles are uniform on each circle. Parameters and returns as in :func:`make_moons`.
    """
    n, noise, rng = _setup(n_samples, noise, random_state)
    y = _balanced_labels(n, 2, rng)
    angle = rng.uniform(0.0, 2 * np.pi, n)
    return _output(_jitter(_polar(_CIRCLE_RADII[y], angle), noise, rng), y, return_labels)


def make_spirals(n_samples: int = 1000, *, noise: float = 0.1, random_state: RandomState = None,
               return_labels: bool = False) -> Output:
    """Two interleaved Archimedean spirals, the second the first rotated by pi.

    Spiral ``c`` is ``r (cos(theta + c pi), sin(theta + c pi))`` with ``r = 3.5 theta / (3 pi)``
    for ``theta = 3 pi sqrt(u)``, ``u ~ U(0, 1)``: the square root makes the points about uniform
    along the arc (arc length grows like theta**2). Radius at most 3.5 before jitter.
    Parameters and returns as in :func:`make_moons`.
    """
    n, noise, rng = _setup(n_samples, noise, random_state)
    y = _balanced_labels(n, 2, rng)
    theta_max = 2 * np.pi * _SPIRAL_TURNS
    theta = theta_max * np.sqrt(rng.uniform(0.0, 1.0, n))
    X = _polar(_ROLL_RADIUS * theta / theta_max, theta + np.pi * y)
    return _output(_jitter(X, noise, rng), y, return_labels)


def make_pinwheel(n_samples: int = 1000, *, noise: float = 0.05, random_state: RandomState = None,
                  n_arms: int = 5, radial_std: float = 0.3, rate: float = 0.25,
                  return_labels: bool = False) -> Output:
    """Pinwheel: ``n_arms`` curved Gaussian arms (Johnson et al. 2016, "Composing graphical models
    with neural networks for structured representations and fast inference", sec. 6).

    A point of arm ``k`` starts as ``(r, s)`` with ``r ~ N(1, radial_std**2)`` and
    ``s ~ N(0, noise**2)`` and is rotated by ``2 pi k / n_arms + rate * exp(r)``, so the rotation
    grows with the radius and the arms curl; the result is scaled by 2 (radius about 2, within
    [-4, 4] to about three radial standard deviations). No extra jitter is added.

    Parameters
    ----------
    n_samples : int, positive
    noise : float >= 0, tangential std of an arm (before the scaling by 2).
    random_state : None, int or numpy.random.Generator
    n_arms : int, positive, the number of arms (labels 0..n_arms-1, balanced).
    radial_std : float >= 0, radial std of an arm (before the scaling by 2).
    rate : float, how fast the rotation grows with the radius.
    return_labels : bool, also return the arm of each point.

    Returns
    -------
    X : ndarray, shape (n_samples, 2), float64
    y : ndarray, shape (n_samples,), int64, only with ``return_labels``
    """
    n, noise, rng = _setup(n_samples, noise, random_state)
    if isinstance(n_arms, bool) or not isinstance(n_arms, numbers.Integral) or n_arms < 1:
        raise ValueError(f"n_arms={n_arms!r} must be a positive integer")
    radial_std = _check_nonnegative(radial_std, "radial_std")
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not math.isfinite(rate):
        raise ValueError(f"rate={rate!r} must be a finite number")
    y = _balanced_labels(n, int(n_arms), rng)
    r = 1.0 + radial_std * rng.standard_normal(n)
    s = noise * rng.standard_normal(n)
    angle = 2 * np.pi * y / n_arms + rate * np.exp(r)
    c, sn = np.cos(angle), np.sin(angle)
    X = _PINWHEEL_SCALE * np.stack([r * c - s * sn, r * sn + s * c], axis=1)
    return _output(X, y, return_labels)


def _eight_gaussians_params(noise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one definition of the eight-Gaussian ring: weights (8,), means (8, 2), stds (8,)."""
    angles = 2 * np.pi * np.arange(8) / 8
    return np.full(8, 1 / 8), _polar(np.full(8, _EIGHT_RADIUS), angles), np.full(8, noise)


def eight_gaussians_mixture(noise: float = 0.2) -> GaussianMixture:
    """The exact density of :func:`make_eight_gaussians` as an :class:`~anydiff.oracles.GaussianMixture`.

    Eight equally weighted isotropic Gaussians of std ``noise`` (> 0) centred at
    ``2 (cos(k pi / 4), sin(k pi / 4))``, k = 0..7 (component k is label k).
    """
    noise = _check_nonnegative(noise, "noise")
    if noise == 0:
        raise ValueError("noise=0 has no density; eight_gaussians_mixture needs noise > 0")
    return GaussianMixture(*_eight_gaussians_params(noise))


def make_eight_gaussians(n_samples: int = 1000, *, noise: float = 0.2, random_state: RandomState = None,
                         return_labels: bool = False) -> Output:
    """Samples of the eight-Gaussian ring: modes at ``2 (cos(k pi / 4), sin(k pi / 4))``, std ``noise``.

    The points are drawn from the parameters of :func:`eight_gaussians_mixture` (the mode from its
    weights, so mode counts are multinomial, not balanced); ``noise=0`` puts every point on its mode.
    Parameters and returns as in :func:`make_moons`; ``y`` is the mode k.
    """
    n, noise, rng = _setup(n_samples, noise, random_state)
    weights, means, stds = _eight_gaussians_params(noise)
    y = rng.choice(len(weights), size=n, p=weights).astype(np.int64)
    X = means[y] + stds[y, None] * rng.standard_normal((n, 2))
    return _output(X, y, return_labels)


# -- unlabelled sets ----------------------------------------------------------------------------
def _black_cells() -> np.ndarray:
    """Indices (i, j) of the black cells of the board, shape (8, 2): those with i + j even."""
    i, j = np.meshgrid(np.arange(_CHECKER_CELLS), np.arange(_CHECKER_CELLS), indexing="ij")
    cells = np.stack([i.ravel(), j.ravel()], axis=1)
    return cells[cells.sum(1) % 2 == 0]


def make_checkerboard(n_samples: int = 1000, *, noise: float = 0.0,
                      random_state: RandomState = None) -> np.ndarray:
    """Uniform samples on the black cells of a 4x4 checkerboard covering ``[-4, 4]**2``.

    Cell ``(i, j)`` is ``[-4 + 2i, -2 + 2i) x [-4 + 2j, -2 + 2j)``; it is black when ``i + j`` is
    even (8 cells of area 4, so the density is 1/32 there). With ``noise=0`` (the default) the
    samples follow :func:`checkerboard_log_prob` exactly; ``noise > 0`` adds Gaussian jitter.

    Returns
    -------
    X : ndarray, shape (n_samples, 2), float64
    """
    n, noise, rng = _setup(n_samples, noise, random_state)
    cells = _black_cells()
    corner = _CHECKER_LOW + _CHECKER_SIDE * cells[rng.integers(len(cells), size=n)]
    return _jitter(corner + _CHECKER_SIDE * rng.uniform(0.0, 1.0, (n, 2)), noise, rng)


def checkerboard_log_prob(x) -> np.ndarray:
    """Exact log-density of :func:`make_checkerboard` (with ``noise=0``).

    Parameters
    ----------
    x : array-like, shape (m, 2), no NaN

    Returns
    -------
    ndarray, shape (m,), float64: ``-log(32)`` on the black cells, ``-inf`` elsewhere.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (m, 2), got {x.shape}")
    if np.isnan(x).any():
        raise ValueError("x contains NaN")
    with np.errstate(invalid="ignore"):
        idx = np.floor((x - _CHECKER_LOW) / _CHECKER_SIDE)
    inside = ((idx >= 0) & (idx < _CHECKER_CELLS)).all(axis=1)
    black = inside & (np.nan_to_num(idx, posinf=1, neginf=1).sum(axis=1) % 2 == 0)
    area = len(_black_cells()) * _CHECKER_SIDE**2
    return np.where(black, -np.log(area), -np.inf)


def make_swiss_roll(n_samples: int = 1000, *, noise: float = 0.1,
                    random_state: RandomState = None) -> np.ndarray:
    """The 2-D Swiss roll: the ``(x, z)`` projection of the 3-D roll, ``t (cos t, sin t)``.

    ``t = 1.5 pi (1 + 2u)``, ``u ~ U(0, 1)`` (uniform in t, as in scikit-learn's
    ``make_swiss_roll``), scaled by ``3.5 / (4.5 pi)`` so that the outer radius is 3.5.

    Returns
    -------
    X : ndarray, shape (n_samples, 2), float64
    """
    n, noise, rng = _setup(n_samples, noise, random_state)
    t_max = 4.5 * np.pi
    t = 1.5 * np.pi * (1 + 2 * rng.uniform(0.0, 1.0, n))
    return _jitter(_polar(_ROLL_RADIUS * t / t_max, t), noise, rng)


# -- registry ---------------------------------------------------------------------------------
TOY_DATASETS: dict[str, Callable[..., np.ndarray]] = {
    "moons": make_moons,
    "circles": make_circles,
    "spirals": make_spirals,
    "pinwheel": make_pinwheel,
    "eight_gaussians": make_eight_gaussians,
    "checkerboard": make_checkerboard,
    "swiss_roll": make_swiss_roll,
}


def load_toy(name: str, n_samples: int = 1000, *, random_state: RandomState = None,
             noise: float | None = None, return_labels: bool = False) -> Output:
    """Generate the toy set ``name`` (a key of :data:`TOY_DATASETS`).

    Parameters
    ----------
    name : str, one of ``TOY_DATASETS``.
    n_samples : int, positive
    random_state : None, int or numpy.random.Generator
    noise : float >= 0, or None for the set's default (see the table in the module docstring).
    return_labels : bool, return ``(X, y)``; only for the labelled sets.

    Returns
    -------
    X : ndarray, shape (n_samples, 2), float64 (and y, shape (n_samples,), with ``return_labels``)
    """
    if name not in TOY_DATASETS:
        raise ValueError(f"name={name!r} is not a toy data set; choose one of {sorted(TOY_DATASETS)}")
    make = TOY_DATASETS[name]
    kwargs = {"random_state": random_state}
    if noise is not None:
        kwargs["noise"] = noise
    if return_labels:
        if "return_labels" not in inspect.signature(make).parameters:
            labelled = sorted(k for k, f in TOY_DATASETS.items() if "return_labels" in inspect.signature(f).parameters)
            raise ValueError(f"return_labels=True: {name!r} has no labels; labelled sets are {labelled}")
        kwargs["return_labels"] = True
    return make(n_samples, **kwargs)
