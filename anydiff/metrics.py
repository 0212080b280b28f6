"""Sample-quality metrics: distances between sample sets and mode coverage of a Gaussian mixture.

* :func:`sliced_wasserstein` -- the sliced Wasserstein-p distance (Rabin et al. 2011; Bonneel et al.
  2015) between two sample sets of any event shape and of possibly different sizes.
* :func:`mode_weights`, :func:`mean_responsibilities` and :func:`mode_weight_error` -- how a set of
  samples spreads its mass over the components of an :class:`anydiff.oracles.GaussianMixture`.
* :func:`mmd`, :func:`energy_distance` -- kernel / distance two-sample statistics (squared forms).
* :func:`c2st` -- classifier two-sample test: cross-validated ROC-AUC of a classifier (needs
  scikit-learn, imported only when called).

All functions accept torch tensors or numpy arrays of shape ``(n, *event_shape)`` and compute in
float64.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor

__all__ = ["sliced_wasserstein", "mode_weights", "mean_responsibilities", "mode_weight_error", "mmd",
           "energy_distance", "c2st"]

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


# -- two-sample statistics ---------------------------------------------------------------------

def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
    return int(value)


def _flat_pair(x, y) -> tuple[Tensor, Tensor]:
    x, y = _as_samples(x, "x"), _as_samples(y, "y")  # -> float64 (n, D), (m, D) on x's device
    x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1).to(x.device)
    if y.shape[1] != x.shape[1]:
        raise ValueError(f"y has {y.shape[1]} values per sample but x has {x.shape[1]}; both sets must "
                         "have the same event shape")
    return x, y


def _subsample(x: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """At most k rows of x, drawn without replacement (all of x, in order, if it has <= k rows)."""
    if x.shape[0] <= k:
        return x
    dev = generator.device if generator is not None else torch.device("cpu")
    return x[torch.randperm(x.shape[0], generator=generator, device=dev)[:k].to(x.device)]


def _prepare(x, y, max_samples, generator, unbiased) -> tuple[Tensor, Tensor]:
    """Shared validation and subsampling of mmd and energy_distance; returns centred sets."""
    x, y = _flat_pair(x, y)
    max_samples = _check_int(max_samples, "max_samples", 2)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if not isinstance(unbiased, bool):
        raise ValueError(f"unbiased={unbiased!r} must be True or False")
    for name, s in (("x", x), ("y", y)) if unbiased else ():
        if s.shape[0] < 2:
            raise ValueError(f"{name} has 1 sample; the unbiased estimate needs at least 2 (or unbiased=False)")
    x, y = _subsample(x, max_samples, generator), _subsample(y, max_samples, generator)
    # Both statistics are translation invariant; centring keeps _sq_dist_blocks' expansion accurate.
    centre = torch.cat([x, y]).mean(dim=0)
    return x - centre, y - centre


def _sq_dist_blocks(a: Tensor, b: Tensor, same: bool):
    """Yield (row offset, block of squared distances |a_i - b_j|^2) of bounded memory.

    Exact differences in low dimension (where duplicates are common and the cancellation of the
    faster expansion |a|^2 + |b|^2 - 2 a.b would matter); with ``same`` (b is a) the diagonal is 0.
    """
    b2 = (b * b).sum(dim=1)
    rows = max(1, _BLOCK_ELEMENTS // b.shape[0])
    for s in range(0, a.shape[0], rows):
        blk = a[s:s + rows]
        if a.shape[1] <= 32:
            d2 = torch.cdist(blk, b, compute_mode="donot_use_mm_for_euclid_dist").square_()
        else:
            d2 = ((blk * blk).sum(dim=1)[:, None] + b2[None, :] - 2.0 * (blk @ b.T)).clamp_(min=0.0)
        if same:
            r = torch.arange(blk.shape[0], device=a.device)
            d2[r, r + s] = 0.0
        yield s, d2


def _pair_mean(a: Tensor, b: Tensor, fn, same: bool, unbiased: bool) -> Tensor:
    """Mean of fn(|a_i - b_j|^2) over all pairs, or over i != j when same and unbiased."""
    total = sum(fn(d2).sum() for _, d2 in _sq_dist_blocks(a, b, same))
    n, m = a.shape[0], b.shape[0]
    if same and unbiased:
        return (total - n * fn(torch.zeros((), dtype=torch.float64))) / (n * (n - 1))
    return total / (n * m)


def _median_distance(z: Tensor) -> float:
    """Median of the pairwise distances |z_i - z_j|, i < j (of the positive ones if that is 0)."""
    n = z.shape[0]
    cols = torch.arange(n, device=z.device)
    d2 = torch.cat([d[cols[None, :] > cols[s:s + d.shape[0], None]] for s, d in _sq_dist_blocks(z, z, True)])
    med = float(d2.median()) if d2.numel() else 0.0
    if med == 0.0:
        pos = d2[d2 > 0]
        med = float(pos.median()) if pos.numel() else 1.0  # all points equal: any bandwidth gives 0
    return math.sqrt(med)


def mmd(x, y, *, bandwidth: float | None = None, unbiased: bool = True, max_samples: int = 5000,
        generator: torch.Generator | None = None) -> float:
    """Squared maximum mean discrepancy with a Gaussian (RBF) kernel.

    ``MMD^2 = E k(X, X') + E k(Y, Y') - 2 E k(X, Y)`` with ``k(a, b) = exp(-|a - b|^2 / (2 h^2))``
    (Gretton et al. 2012, "A kernel two-sample test", JMLR 13). The unbiased estimate (their
    ``MMD_u^2``, eq. 3) averages the within-set terms over pairs ``i != j``; it has expectation 0
    when x and y come from the same distribution and may then be slightly negative. The biased
    one (``MMD_b^2``) includes ``i == j`` and is always >= 0.

    Parameters
    ----------
    x : Tensor or ndarray, shape (n, *event_shape)
        The first sample set, flattened to (n, D). A 1-D array is read as n scalar samples.
    y : Tensor or ndarray, shape (m, *event_shape)
        The second sample set, flattened to (m, D) with the same D; m may differ from n.
    bandwidth : float, optional
        Kernel width ``h`` in the units of the data. None: the median heuristic, ``h`` = (lower)
        median of the distances ``|z_i - z_j|, i < j`` over a random subset of at most max_samples
        points of the pooled sets (median of the positive distances if that median is 0).
    unbiased : bool, default True
        U-statistic (``i != j``, needs n, m >= 2) or V-statistic.
    max_samples : int, default 5000
        Each set is subsampled at random to at most this many rows. Time is ``O(max_samples^2)``;
        memory is bounded blocks, except ``max_samples^2 / 2`` floats for the median heuristic.
    generator : torch.Generator, optional
        Source of the subsampling; None uses torch's global generator.

    Returns
    -------
    float
        The squared MMD, dimensionless, in ``[-2, 2]`` (biased: ``[0, 2]``).

    Raises
    ------
    ValueError
        If x or y is not a non-empty finite array of shape (n, *event_shape), if their event
        sizes differ, if a set has one sample with unbiased=True, or if an option is invalid.
    """
    x, y = _prepare(x, y, max_samples, generator, unbiased)
    if bandwidth is None:
        bandwidth = _median_distance(_subsample(torch.cat([x, y]), max_samples, generator))
    elif isinstance(bandwidth, bool) or not isinstance(bandwidth, numbers.Real) or not (
            math.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"bandwidth={bandwidth!r} must be a positive finite number or None")
    gamma = 1.0 / (2.0 * float(bandwidth) ** 2)
    kernel = lambda d2: torch.exp(-gamma * d2)  # noqa: E731
    return float(_pair_mean(x, x, kernel, True, unbiased) + _pair_mean(y, y, kernel, True, unbiased)
                 - 2.0 * _pair_mean(x, y, kernel, False, unbiased))


def energy_distance(x, y, *, unbiased: bool = True, max_samples: int = 5000,
                    generator: torch.Generator | None = None) -> float:
    """Energy distance in its squared form, ``2 E|X - Y| - E|X - X'| - E|Y - Y'|``.

    Székely & Rizzo 2013, "Energy statistics: a class of statistics based on distances", J. Stat.
    Plan. Inference 143; ``|.|`` is the Euclidean norm of the flattened samples. It is >= 0, and 0
    only for equal distributions; its square root is a metric, which is what
    ``scipy.stats.energy_distance`` returns for the empirical distributions: in 1-D
    ``energy_distance(u, v, unbiased=False) == scipy.stats.energy_distance(u, v) ** 2``.
    The default estimates the within-set terms by U-statistics (pairs ``i != j``): unbiased, of
    expectation 0 for equal distributions, then possibly slightly negative. ``unbiased=False``
    gives the plug-in (V-statistic) value, always >= 0.

    Parameters
    ----------
    x : Tensor or ndarray, shape (n, *event_shape)
        The first sample set, flattened to (n, D). A 1-D array is read as n scalar samples.
    y : Tensor or ndarray, shape (m, *event_shape)
        The second sample set, flattened to (m, D) with the same D; m may differ from n.
    unbiased : bool, default True
        U-statistics for ``E|X - X'|`` and ``E|Y - Y'|`` (needs n, m >= 2), or V-statistics.
    max_samples : int, default 5000
        Each set is subsampled at random to at most this many rows; time and memory are
        ``O(max_samples^2)`` (computed in blocks of bounded memory, in float64).
    generator : torch.Generator, optional
        Source of the subsampling; None uses torch's global generator.

    Returns
    -------
    float
        The squared energy distance, in the units of the data.

    Raises
    ------
    ValueError
        If x or y is not a non-empty finite array of shape (n, *event_shape), if their event
        sizes differ, if a set has one sample with unbiased=True, or if an option is invalid.
    """
    x, y = _prepare(x, y, max_samples, generator, unbiased)
    return float(2.0 * _pair_mean(x, y, torch.sqrt, False, unbiased)
                 - _pair_mean(x, x, torch.sqrt, True, unbiased) - _pair_mean(y, y, torch.sqrt, True, unbiased))


def c2st(x, y, *, n_splits: int = 5, random_state: int | None = 0, max_samples: int = 10000) -> float:
    """Classifier two-sample test: cross-validated ROC-AUC of a classifier telling y from x.

    Lopez-Paz & Oquab 2017, "Revisiting classifier two-sample tests", ICLR, with the ROC-AUC
    (threshold-free) in place of their accuracy. Both sets are subsampled at random to the same
    size ``k = min(n, m, max_samples)`` (balanced classes), labelled 0 (x) and 1 (y), and split by
    stratified K-fold; on each fold scikit-learn's ``HistGradientBoostingClassifier`` is fitted on
    the training part and scored on the held-out part. Requires scikit-learn (imported here only).

    0.5 is best (the sets cannot be told apart), 1.0 means perfectly separable. Values below 0.5
    are noise of a chance-level classifier (read them as 0.5), of order ``0.4 / sqrt(k)``.

    Parameters
    ----------
    x : Tensor or ndarray, shape (n, *event_shape)
        The first sample set (e.g. real data), flattened to (n, D). 1-D: n scalar samples.
    y : Tensor or ndarray, shape (m, *event_shape)
        The second sample set (e.g. generated), flattened to (m, D) with the same D.
    n_splits : int, default 5
        Number of folds, >= 2; each set needs at least this many samples.
    random_state : int or None, default 0
        Seed of the subsampling, the fold shuffling and the classifier; an int makes the result
        deterministic.
    max_samples : int, default 10000
        Most samples used from each set.

    Returns
    -------
    float
        Mean ROC-AUC over the folds, in [0, 1].

    Raises
    ------
    ValueError
        If x or y is not a non-empty finite array of shape (n, *event_shape), if their event
        sizes differ, if a set has fewer than n_splits samples, or if an option is invalid.
    """
    x, y = _flat_pair(x, y)
    n_splits = _check_int(n_splits, "n_splits", 2)
    max_samples = _check_int(max_samples, "max_samples", n_splits)
    if random_state is not None and (isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral)):
        raise ValueError(f"random_state={random_state!r} must be an int or None")
    for name, s in (("x", x), ("y", y)):
        if s.shape[0] < n_splits:
            raise ValueError(f"{name} has {s.shape[0]} samples; c2st needs at least n_splits={n_splits}")
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    k = min(x.shape[0], y.shape[0], max_samples)
    rng = np.random.default_rng(random_state)
    xs = x.cpu().numpy()[rng.choice(x.shape[0], size=k, replace=False)]
    ys = y.cpu().numpy()[rng.choice(y.shape[0], size=k, replace=False)]
    features = np.concatenate([xs, ys])
    labels = np.concatenate([np.zeros(k, dtype=np.int64), np.ones(k, dtype=np.int64)])
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    aucs = []
    for train, test in folds.split(features, labels):
        clf = HistGradientBoostingClassifier(random_state=random_state).fit(features[train], labels[train])
        aucs.append(roc_auc_score(labels[test], clf.predict_proba(features[test])[:, 1]))
    return float(np.mean(aucs))
