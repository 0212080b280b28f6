"""Sample-quality metrics: distances between sample sets and mode coverage of a Gaussian mixture.

* :func:`sliced_wasserstein` -- the sliced Wasserstein-p distance (Rabin et al. 2011; Bonneel et al.
  2015) between two sample sets of any event shape and of possibly different sizes.
* :func:`mode_weights`, :func:`mean_responsibilities` and :func:`mode_weight_error` -- how a set of
  samples spreads its mass over the components of an :class:`anydiff.oracles.GaussianMixture`.

All functions accept torch tensors or numpy arrays of shape ``(n, *event_shape)`` and compute in
float64.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor

__all__ = ["sliced_wasserstein", "mode_weights", "mean_responsibilities", "mode_weight_error"]

# Upper bound on the elements of one (rows x projections) block, so that the memory of
# sliced_wasserstein stays bounded (~64 MB of float64 per block) whatever n and n_projections.
_BLOCK_ELEMENTS = 1 << 23


def _as_samples(x, name: str, *, allow_1d: bool = True) -> Tensor:
    """Validate a sample set and return it as a float64 tensor of shape (n, *event_shape)."""
    if isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise ValueError(f"{name} must hold numbers, got a numpy array of dtype {x.dtype}")
        if np.iscomplexobj(x):
            raise ValueError(f"{name} must be real, got a complex array")
        x = torch.from_numpy(np.ascontiguousarray(x))
    elif not torch.is_tensor(x):
        raise ValueError(f"{name} must be a torch.Tensor or numpy.ndarray of shape (n, *event_shape), "
                         f"got {type(x).__name__}")
    if x.is_complex():
        raise ValueError(f"{name} must be real, got a complex tensor")
    if x.ndim == 1 and allow_1d:
        x = x[:, None]
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (n, *event_shape), got {tuple(x.shape)}")
    if x.shape[0] == 0 or x[0].numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); pass at least one sample")
    x = x.detach().to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values; drop or fix those samples first")
    return x


def _quantile_grid(n: int, m: int, device) -> tuple[Tensor, Tensor, Tensor]:
    """The common grid of quantile levels of two empirical distributions of n and m atoms.

    The quantile function of n sorted atoms is the step function ``Q(u) = x_(ceil(u n))``; on the
    merged breakpoints ``{i/n} U {j/m}`` both quantile functions are constant, so integrating
    over the intervals between them is exact. Returns the atom index of each distribution on
    every interval and the interval lengths (which sum to 1).
    """
    u = torch.cat([torch.arange(1, n, dtype=torch.float64, device=device) / n,
                   torch.arange(1, m, dtype=torch.float64, device=device) / m])
    edges = torch.cat([torch.zeros(1, dtype=torch.float64, device=device), u.sort().values,
                       torch.ones(1, dtype=torch.float64, device=device)])
    lengths = edges[1:] - edges[:-1]
    mid = 0.5 * (edges[1:] + edges[:-1])
    i = (mid * n).floor().long().clamp(0, n - 1)
    j = (mid * m).floor().long().clamp(0, m - 1)
    return i, j, lengths


def sliced_wasserstein(x, y, n_projections: int = 256, generator: torch.Generator | None = None,
                       p: float = 2) -> float:
    """Sliced Wasserstein-p distance between two sample sets.

    ``SW_p(x, y) = ( E_theta[ W_p^p(theta . x, theta . y) ] )^(1/p)`` with ``theta`` uniform on the
    unit sphere of R^D (Rabin et al. 2011, "Wasserstein barycenter and its application to texture
    mixing"; Bonneel et al. 2015), estimated with ``n_projections`` random directions. Each 1-D
    distance between the projected empirical distributions is exact: it integrates
    ``|F^-1(u) - G^-1(u)|^p`` over the common grid of quantile levels ``{i/n} U {j/m}``, which for
    equal sizes is the mean of ``|x_(i) - y_(i)|^p`` over the sorted projections.

    For ``D = 1`` the directions are +-1 and the result is the exact 1-D Wasserstein-p distance.
    For a shift, ``x ~ P`` and ``y ~ P + mu`` for any ``P``, every projection is shifted by
    ``theta . mu`` and the population value is ``SW_2^2 = E[(theta . mu)^2] = |mu|^2 / D``. Between two finite sets drawn from the same
    distribution it is positive: compare with that sampling-noise floor, not with 0.

    Parameters
    ----------
    x : Tensor or ndarray, shape (n, *event_shape)
        The first sample set, flattened to (n, D). A 1-D array is read as n scalar samples.
    y : Tensor or ndarray, shape (m, *event_shape)
        The second sample set, flattened to (m, D) with the same D; m may differ from n.
    n_projections : int, default 256
        Number of random directions; the Monte-Carlo error of ``SW_p^p`` falls as
        ``1 / sqrt(n_projections)``.
    generator : torch.Generator, optional
        Source of the directions (a fixed seed gives the same directions for every call, which
        makes values from several calls comparable). None uses torch's global generator.
    p : float, default 2
        Order of the distance, ``p >= 1``.

    Returns
    -------
    float
        ``SW_p`` in the units of the data.

    Raises
    ------
    ValueError
        If x or y is not a non-empty finite array of shape (n, *event_shape), if their event
        sizes differ, or if n_projections, generator or p is invalid.
    """
    x = _as_samples(x, "x")
    y = _as_samples(y, "y")
    if isinstance(n_projections, bool) or not isinstance(n_projections, numbers.Integral) or n_projections < 1:
        raise ValueError(f"n_projections={n_projections!r} must be a positive integer")
    n_projections = int(n_projections)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not math.isfinite(p) or p < 1:
        raise ValueError(f"p={p!r} must be a finite number >= 1")
    p = float(p)
    n, m = x.shape[0], y.shape[0]
    x, y = x.reshape(n, -1), y.reshape(m, -1)
    D = x.shape[1]
    if y.shape[1] != D:
        raise ValueError(f"y has {y.shape[1]} values per sample but x has {D}; both sets must have "
                         "the same event shape")
    dev = x.device
    y = y.to(dev)

    # directions uniform on the sphere: normalised standard normals
    gen_dev = generator.device if generator is not None else torch.device("cpu")
    theta = torch.randn(n_projections, D, generator=generator, dtype=torch.float64, device=gen_dev).to(dev)
    theta = theta / theta.norm(dim=1, keepdim=True).clamp(min=1e-300)

    if n != m:
        i, j, lengths = _quantile_grid(n, m, dev)
    chunk = max(1, _BLOCK_ELEMENTS // (n + m))
    total = torch.zeros((), dtype=torch.float64, device=dev)
    for start in range(0, n_projections, chunk):
        th = theta[start:start + chunk]                      # (L, D)
        xs = (x @ th.T).sort(dim=0).values                   # (n, L) sorted projections
        ys = (y @ th.T).sort(dim=0).values                   # (m, L)
        if n == m:
            # equal sizes: the optimal 1-D coupling pairs the i-th smallest with the i-th smallest
            total = total + (xs - ys).abs().pow(p).mean(dim=0).sum()
        else:
            # quantile functions on the merged grid of levels, weighted by interval length
            total = total + (lengths[:, None] * (xs[i] - ys[j]).abs().pow(p)).sum()
    return float((total / n_projections) ** (1.0 / p))


def _check_mixture(gm) -> None:
    if not (callable(getattr(gm, "responsibilities", None)) and torch.is_tensor(getattr(gm, "weights", None))):
        raise ValueError(f"gm must be an anydiff.oracles.GaussianMixture, got {type(gm).__name__}")


def _mixture_samples(x, gm) -> Tensor:
    _check_mixture(gm)
    x = _as_samples(x, "x", allow_1d=False)
    event_shape = tuple(gm.event_shape)
    if tuple(x.shape[1:]) != event_shape:
        raise ValueError(f"x must have shape (n, {', '.join(map(str, event_shape))}) to match gm, "
                         f"got {tuple(x.shape)}")
    return x


def mode_weights(x, gm) -> Tensor:
    """Fraction of the samples assigned to each component of a Gaussian mixture (hard assignment).

    Each sample goes to its most probable component, ``argmax_k p(k | x)``. Note that this is
    *not* an unbiased estimate of ``gm.weights`` when components overlap: exact data in the
    overlap of two components are all assigned to the heavier one. Use
    :func:`mean_responsibilities` (and :func:`mode_weight_error`) to compare with the weights.

    Parameters
    ----------
    x : Tensor or ndarray, shape (n, *gm.event_shape)
        Samples.
    gm : anydiff.oracles.GaussianMixture
        The reference mixture with K components.

    Returns
    -------
    Tensor, shape (K,), float64
        Fractions summing to 1.

    Raises
    ------
    ValueError
        If gm is not a GaussianMixture or x is not a non-empty finite array of its event shape.
    """
    x = _mixture_samples(x, gm)
    labels = gm.responsibilities(x).argmax(dim=1)
    counts = torch.bincount(labels.cpu(), minlength=gm.weights.numel()).to(torch.float64)
    return counts / x.shape[0]


def mean_responsibilities(x, gm) -> Tensor:
    """Mean posterior component probabilities of the samples (soft assignment).

    ``r_k = (1/n) sum_i p(k | x_i)``. For exact data ``x_i ~ gm`` its expectation is exactly
    ``gm.weights`` (``E_x[p(k | x)] = w_k``), whether or not the components overlap.

    Parameters
    ----------
    x : Tensor or ndarray, shape (n, *gm.event_shape)
        Samples.
    gm : anydiff.oracles.GaussianMixture
        The reference mixture with K components.

    Returns
    -------
    Tensor, shape (K,), float64
        Mean responsibilities, summing to 1.

    Raises
    ------
    ValueError
        If gm is not a GaussianMixture or x is not a non-empty finite array of its event shape.
    """
    x = _mixture_samples(x, gm)
    return gm.responsibilities(x).mean(dim=0).cpu()


def mode_weight_error(x, gm) -> float:
    """Total-variation distance between the samples' mean responsibilities and the mixture weights.

    ``0.5 * sum_k | mean_i p(k | x_i) - w_k |``, in [0, 1]. It uses soft assignment
    (:func:`mean_responsibilities`), so it is an unbiased-in-expectation comparison: for exact
    data from ``gm`` the mean responsibilities have expectation exactly ``gm.weights``, and the
    error is only sampling noise, of order ``sqrt(K / n)``. (The hard argmax fractions of
    :func:`mode_weights` would differ from the weights even for exact data when components
    overlap.) Samples that all sit in one well-separated component ``k`` score ``1 - w_k``.

    Parameters
    ----------
    x : Tensor or ndarray, shape (n, *gm.event_shape)
        Samples.
    gm : anydiff.oracles.GaussianMixture
        The reference mixture.

    Returns
    -------
    float
        Total-variation distance in [0, 1].

    Raises
    ------
    ValueError
        If gm is not a GaussianMixture or x is not a non-empty finite array of its event shape.
    """
    r = mean_responsibilities(x, gm)
    return float(0.5 * (r - gm.weights.to(torch.float64).cpu()).abs().sum())
