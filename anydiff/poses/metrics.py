"""Pose metrics: rotation errors (also modulo an object's symmetry), aggregation of sampled
hypotheses into one estimate, distribution metrics on SO(3), and the best-of-hypotheses oracle.

A diffusion model gives H hypotheses per input; an estimate needs one. ``aggregate_*`` reduce the
hypothesis dimension without the ground truth: a mean, a robust median or the medoid. Reporting
the hypothesis closest to the ground truth instead (D3DP, Shan et al. 2023; FinePOSE, Xu et al.
2024) is not an accuracy: it looks at the answer. It is available, under the name it deserves,
as :func:`best_of_hypotheses_oracle`.

Functions take torch tensors or numpy arrays and return the type of their first argument
(numpy inputs are computed in float64).
"""
from __future__ import annotations

import math

import numpy as np
import roma
import torch
from torch import Tensor

from .rotations import _check_tail, _rotation_dim, chordal_mean, geodesic_distance

__all__ = ["rotation_error_deg", "symmetric_rotation_error_deg", "aggregate_rotations",
           "aggregate_positions", "aggregate_angles", "best_of_hypotheses_oracle", "geodesic_mmd",
           "mode_coverage"]

_METHODS = ("mean", "median", "medoid")
_MAX_ITER, _TOL = 200, 1e-12  # Weiszfeld iterations: cap, and step size (radians / units) to stop
_BLOCK = 1 << 21  # pairwise geodesic distances: matrix entries per block (x 9 floats in temporaries)


def _tensor(x, name: str) -> tuple[Tensor, bool]:
    """``x`` as a floating tensor (float64 from numpy) and whether it came as numpy."""
    if torch.is_tensor(x):
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        return x, False
    try:
        return torch.as_tensor(np.asarray(x, dtype=np.float64)), True
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a tensor or a numeric array: {err}") from err


def _back(x: Tensor, as_numpy: bool):
    return x.detach().cpu().numpy() if as_numpy else x


def _check_method(method) -> str:
    if method not in _METHODS:
        raise ValueError(f"method={method!r} must be one of {list(_METHODS)}")
    return method


def _check_dim(x: Tensor, dim, name: str, event: int) -> int:
    """``dim`` as a non-negative index of a non-event dimension of ``x`` holding >= 1 hypothesis."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise ValueError(f"dim={dim!r} must be an integer")
    if not -x.ndim <= dim < x.ndim or dim % x.ndim >= x.ndim - event:
        raise ValueError(f"dim={dim} must index a hypothesis dimension of {name} (shape "
                         f"{tuple(x.shape)}), not one of its last {event}")
    dim %= x.ndim
    if x.shape[dim] == 0:
        raise ValueError(f"{name} has no hypotheses along dim={dim}")
    return dim


def _pairwise_geodesic(A: Tensor, B: Tensor) -> Tensor:
    """Geodesic distances (..., n, m) between (..., n, 3, 3) and (..., m, 3, 3)."""
    return geodesic_distance(A[..., :, None, :, :], B[..., None, :, :, :])


# -- errors ------------------------------------------------------------------------------------
def rotation_error_deg(R_pred, R_true):
    """The geodesic angle between predicted and true rotations, in degrees in [0, 180].

    Parameters
    ----------
    R_pred, R_true : Tensor or ndarray (..., 3, 3)
        Leading dimensions broadcast.

    Returns
    -------
    Tensor or ndarray (...)
    """
    (P, as_np), (T, _) = _tensor(R_pred, "R_pred"), _tensor(R_true, "R_true")
    P, T = _check_tail(P, "R_pred", (3, 3)), _check_tail(T, "R_true", (3, 3)).to(P)
    return _back(torch.rad2deg(geodesic_distance(P, T)), as_np)


def symmetric_rotation_error_deg(R_pred, R_true, symmetries):
    """The rotation error modulo the object's symmetry: ``min_{S in G} angle(R_pred, R_true S)``.

    For an object that looks the same rotated by each ``S`` of its symmetry group ``G`` (e.g.
    :func:`~anydiff.poses.rotations.cyclic_group`), poses ``R`` and ``R S`` are indistinguishable,
    and a plain error would charge a correct prediction (Hodan et al. 2016; Xiang et al. 2018).

    Parameters
    ----------
    R_pred, R_true : Tensor or ndarray (..., 3, 3)
    symmetries : Tensor or ndarray (S, 3, 3)
        The symmetry group, identity included.

    Returns
    -------
    Tensor or ndarray (...), degrees.
    """
    (P, as_np), (T, _) = _tensor(R_pred, "R_pred"), _tensor(R_true, "R_true")
    G, _ = _tensor(symmetries, "symmetries")
    P, T = _check_tail(P, "R_pred", (3, 3)), _check_tail(T, "R_true", (3, 3)).to(P)
    G = _check_tail(G, "symmetries", (3, 3)).to(P)
    if G.ndim != 3 or len(G) == 0:
        raise ValueError(f"symmetries must have shape (S, 3, 3) with S >= 1, got {tuple(G.shape)}")
    err = geodesic_distance(P[..., None, :, :], T[..., None, :, :] @ G).amin(dim=-1)
    return _back(torch.rad2deg(err), as_np)


# -- aggregation of hypotheses -----------------------------------------------------------------
def _weiszfeld_rotations(R: Tensor, S: Tensor) -> Tensor:
    """The geodesic L1 median of R (..., H, 3, 3) from S (..., 3, 3) (Hartley et al. 2011)."""
    for _ in range(_MAX_ITER):
        v = roma.rotmat_to_rotvec(S[..., None, :, :].transpose(-1, -2) @ R)  # log(S^T R_i)
        d = v.norm(dim=-1)
        w = torch.where(d > 1e-12, 1.0 / d.clamp_min(1e-12), torch.zeros_like(d))
        step = (w[..., None] * v).sum(-2) / w.sum(-1).clamp_min(1e-300)[..., None]
        S = S @ roma.rotvec_to_rotmat(step)
        if step.numel() == 0 or float(step.norm(dim=-1).max()) < _TOL:
            break
    return S


def _weiszfeld_points(x: Tensor, y: Tensor) -> Tensor:
    """The geometric median of x (..., H, D) from y (..., D) (Weiszfeld 1937; points equal to the
    current estimate are left out, as in Vardi & Zhang 2000)."""
    for _ in range(_MAX_ITER):
        d = (x - y[..., None, :]).norm(dim=-1)
        w = torch.where(d > 1e-12, 1.0 / d.clamp_min(1e-12), torch.zeros_like(d))
        y_new = torch.where(w.sum(-1, keepdim=True) > 0,
                            (w[..., None] * x).sum(-2) / w.sum(-1, keepdim=True).clamp_min(1e-300), y)
        step = float((y_new - y).norm(dim=-1).max()) if y.numel() else 0.0
        y = y_new
        if step < _TOL * (1.0 + float(y.abs().max())):
            break
    return y


def _take(x: Tensor, idx: Tensor, event: int) -> Tensor:
    """``x[..., idx, *event]`` along the hypothesis dim -event-1, for idx of shape (...)."""
    idx = idx.reshape(idx.shape + (1,) * (event + 1)).expand(idx.shape + (1,) + x.shape[x.ndim - event:])
    return torch.take_along_dim(x, idx, dim=x.ndim - event - 1).squeeze(x.ndim - event - 1)


def aggregate_rotations(R, method: str = "mean", dim: int = 0):
    """One rotation from H hypotheses, without the ground truth.

    * ``"mean"``: the chordal L2 mean (:func:`~anydiff.poses.rotations.chordal_mean`);
    * ``"median"``: the geodesic L1 median ``argmin_M sum_i angle(R_i, M)``, by Weiszfeld
      iterations on SO(3) (Hartley, Aftab & Trumpf 2011, CVPR, "L1 rotation averaging using the
      Weiszfeld algorithm") started from the chordal mean; robust to outlying hypotheses;
    * ``"medoid"``: the hypothesis with the smallest sum of geodesic distances to the others.

    Parameters
    ----------
    R : Tensor or ndarray (..., H, ..., 3, 3)
    method : {"mean", "median", "medoid"}
    dim : int
        The hypothesis dimension.

    Returns
    -------
    Tensor or ndarray: ``R.shape`` without ``dim``.
    """
    X, as_np = _tensor(R, "R")
    X = _check_tail(X, "R", (3, 3))
    _check_method(method)
    dim = _rotation_dim(X, dim)
    if X.shape[dim] == 0:
        raise ValueError(f"R has no hypotheses along dim={dim}")
    X = X.movedim(dim, -3)
    if method == "medoid":
        out = _take(X, _pairwise_geodesic(X, X).sum(-1).argmin(-1), 2)
    else:
        out = chordal_mean(X, dim=-3)
        if method == "median":
            out = _weiszfeld_rotations(X, out)
    return _back(out, as_np)


def aggregate_positions(x, method: str = "mean", dim: int = 0):
    """One position from H hypotheses: the mean, the geometric median (Weiszfeld iterations from
    the mean; Weiszfeld 1937) or the medoid (the hypothesis with the smallest summed Euclidean
    distance to the others).

    Parameters
    ----------
    x : Tensor or ndarray (..., H, ..., D)
        Coordinates on the last axis; hypotheses along ``dim``.

    Returns
    -------
    Tensor or ndarray: ``x.shape`` without ``dim``.
    """
    X, as_np = _tensor(x, "x")
    _check_method(method)
    dim = _check_dim(X, dim, "x", 1)
    X = X.movedim(dim, -2)
    if method == "medoid":
        out = _take(X, torch.cdist(X, X).sum(-1).argmin(-1), 1)
    else:
        out = X.mean(-2)
        if method == "median":
            out = _weiszfeld_points(X, out)
    return _back(out, as_np)


def _wrap(a: Tensor) -> Tensor:
    """Angles to [-pi, pi)."""
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


def aggregate_angles(theta, method: str = "mean", dim: int = 0):
    """One angle (radians) from H hypotheses, on the circle.

    * ``"mean"``: the circular mean ``atan2(mean sin, mean cos)``, in [-pi, pi] (undefined when
      the mean resultant is zero);
    * ``"median"``: the circular median, a minimiser over the whole circle of the summed arc
      distance ``sum_i |wrap(theta_i - phi)|`` (Fisher 1993, Statistical Analysis of Circular
      Data). The cost is piecewise linear with breaks at the samples and their
      antipodes, so it is searched there; when a whole arc minimises, one end is returned;
    * ``"medoid"``: the same cost, minimised over the hypotheses themselves.

    Parameters
    ----------
    theta : Tensor or ndarray (..., H, ...)
        Angles in radians; hypotheses along ``dim``.

    Returns
    -------
    Tensor or ndarray: ``theta.shape`` without ``dim``; median and medoid in [-pi, pi).
    """
    T, as_np = _tensor(theta, "theta")
    _check_method(method)
    T = T.movedim(_check_dim(T, dim, "theta", 0), -1)
    if method == "mean":
        out = torch.atan2(T.sin().mean(-1), T.cos().mean(-1))
    else:
        cand = T if method == "medoid" else torch.cat([T, T + math.pi], dim=-1)
        cost = _wrap(cand[..., :, None] - T[..., None, :]).abs().sum(-1)
        out = _wrap(torch.take_along_dim(cand, cost.argmin(-1, keepdim=True), -1).squeeze(-1))
    return _back(out, as_np)


# -- the oracle --------------------------------------------------------------------------------
def best_of_hypotheses_oracle(hypotheses, truth, distance, dim: int = 0):
    """**An oracle, not an estimate**: the hypothesis closest to the ground truth.

    It uses ``truth`` to choose, so its error is a lower bound on what any selection rule could
    reach, not an accuracy. D3DP (Shan et al. 2023, ICCV) and FinePOSE (Xu et al. 2024, CVPR)
    report such "best of H" numbers; compare methods with :func:`aggregate_rotations` /
    :func:`aggregate_positions` instead, and label this one as an oracle.

    Parameters
    ----------
    hypotheses : Tensor or ndarray (..., H, ..., *event)
    truth : Tensor or ndarray, the shape of ``hypotheses`` without ``dim`` (or broadcastable).
    distance : callable ``(a, b) -> Tensor``, or ``"geodesic"`` (rotations, radians) or
        ``"euclidean"`` (last axis). A callable gets tensors and must reduce the event dims,
        returning the broadcast leading shape.
    dim : int
        The hypothesis dimension (counted in ``hypotheses``).

    Returns
    -------
    (best, dist): the closest hypothesis (shape of ``truth``) and its distance, same type as
    ``hypotheses``.
    """
    Hy, as_np = _tensor(hypotheses, "hypotheses")
    Tr, _ = _tensor(truth, "truth")
    Tr = Tr.to(Hy)
    if distance == "geodesic":
        distance = geodesic_distance
    elif distance == "euclidean":
        def distance(a, b):
            return (a - b).norm(dim=-1)
    elif not callable(distance):
        raise ValueError(f"distance={distance!r} must be a callable, 'geodesic' or 'euclidean'")
    dim = _check_dim(Hy, dim, "hypotheses", 0)
    d = torch.as_tensor(distance(Hy, Tr.unsqueeze(dim)))
    if d.ndim <= dim or d.shape[dim] != Hy.shape[dim]:
        raise ValueError(f"distance returned shape {tuple(d.shape)}, which lacks the hypothesis "
                         f"dimension {dim} of size {Hy.shape[dim]}")
    idx = d.argmin(dim)
    best = _take(Hy.movedim(dim, d.ndim - 1), idx, Hy.ndim - d.ndim)
    return _back(best, as_np), _back(d.amin(dim), as_np)


# -- distributions on SO(3) --------------------------------------------------------------------
def _rotation_set(R, name: str) -> Tensor:
    X, _ = _tensor(R, name)
    X = _check_tail(X, name, (3, 3)).detach().to(device="cpu", dtype=torch.float64)
    if X.ndim != 3 or len(X) < 1:
        raise ValueError(f"{name} must have shape (n, 3, 3) with n >= 1, got {tuple(X.shape)}")
    return X


def _kernel_sum(A: Tensor, B: Tensor, bandwidth: float, skip_diagonal: bool) -> float:
    """``sum_{i, j} exp(-d(A_i, B_j)^2 / (2 bw^2))`` summed exactly (``math.fsum``), in blocks."""
    parts = []
    step = max(1, _BLOCK // max(1, len(B)))
    for i in range(0, len(A), step):
        K = torch.exp(-_pairwise_geodesic(A[i:i + step], B) ** 2 / (2 * bandwidth ** 2))
        if skip_diagonal:
            K[torch.arange(K.shape[0]), torch.arange(i, i + K.shape[0])] = 0.0
        parts.append(K.reshape(-1).numpy())
    return math.fsum(np.concatenate(parts))


def geodesic_mmd(R_a, R_b, *, bandwidth: float = 0.2) -> float:
    """Squared MMD between two sets of rotations, unbiased U-statistic (Gretton et al. 2012,
    JMLR), with the kernel ``k = exp(-angle(R, R')^2 / (2 bandwidth^2))`` (angle in radians).

    ``MMD^2 = mean_{i!=j} k(a_i, a_j) + mean_{i!=j} k(b_i, b_j) - 2 mean_{i,j} k(a_i, b_j)``; near 0
    (may be slightly negative) for samples of one distribution. Sums are exactly rounded, so the
    result is exactly symmetric in the two sets. This Gaussian kernel on the geodesic distance is
    not positive definite on SO(3) for every bandwidth (Feragen et al. 2015, CVPR): use it to
    compare models at a fixed bandwidth rather than as a calibrated test.

    Parameters
    ----------
    R_a, R_b : Tensor or ndarray (n, 3, 3) and (m, 3, 3), n, m >= 2.
    bandwidth : float > 0, radians.

    Returns
    -------
    float
    """
    A, B = _rotation_set(R_a, "R_a"), _rotation_set(R_b, "R_b")
    if not (isinstance(bandwidth, (int, float)) and math.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"bandwidth={bandwidth!r} must be a positive number (radians)")
    if len(A) < 2 or len(B) < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 rotations per set; R_a has {len(A)}, "
                         f"R_b {len(B)}")
    n, m = len(A), len(B)
    with torch.no_grad():
        aa = _kernel_sum(A, A, bandwidth, True) / (n * (n - 1))
        bb = _kernel_sum(B, B, bandwidth, True) / (m * (m - 1))
        ab = (_kernel_sum(A, B, bandwidth, False) if n <= m else _kernel_sum(B, A, bandwidth, False))
    return float(aa + bb - 2 * ab / (n * m))


def mode_coverage(R_samples, R_modes, *, threshold_deg: float = 15.0) -> dict:
    """How well samples cover known modes (e.g. the poses of a symmetric object).

    Returns
    -------
    dict
        ``"coverage"``: fraction of modes with at least one sample within ``threshold_deg``;
        ``"precision"``: fraction of samples within ``threshold_deg`` of some mode;
        ``"counts"``: int ndarray (n_modes,), the number of samples whose nearest mode is each
        mode (all samples, near or not).
    """
    S, M = _rotation_set(R_samples, "R_samples"), _rotation_set(R_modes, "R_modes")
    if not (isinstance(threshold_deg, (int, float)) and threshold_deg > 0):
        raise ValueError(f"threshold_deg={threshold_deg!r} must be a positive number (degrees)")
    with torch.no_grad():
        D = torch.rad2deg(_pairwise_geodesic(S, M)).numpy()  # (n_samples, n_modes)
    near = D <= threshold_deg
    return {"coverage": float(near.any(axis=0).mean()), "precision": float(near.any(axis=1).mean()),
            "counts": np.bincount(D.argmin(axis=1), minlength=len(M))}
