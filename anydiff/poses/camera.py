"""Object pose from 2-D keypoints: pinhole projection, the reprojection error (a guidance energy)
and synthetic keypoint views of known objects, symmetric ones included (torch, differentiable).

Conventions: an object point ``X`` (object frame) is seen in the camera frame at ``X_c = R X + t``
and at the pixel ``(u, v) = (K X_c)[:2] / (K X_c)[2]``; the camera looks down its +z axis, so a
point is in front of the camera when its depth ``X_c[2] > 0`` (Hartley & Zisserman 2004,
Multiple View Geometry, ch. 6). ``R`` acts on column vectors, as everywhere in
:mod:`anydiff.poses`.

**Symmetric objects.** An object with a rotation symmetry group ``G`` (``(S, 3, 3)``, e.g.
:func:`~anydiff.poses.rotations.cyclic_group`) is one whose keypoints, as a *set*, are mapped to
themselves by every ``S`` in ``G``: ``{S X_i} = {X_i}``. If such keypoints were labelled, the
labels would still tell ``R`` from ``R S``; a real detector of, say, "corners" does not label
them. So here the keypoints of a symmetric object are **unlabelled within each orbit** of ``G``
(the keypoints ``G`` maps into one another; the orbits themselves, e.g. "bottom corner" and
"top corner", stay labelled): the projections of each orbit are presented in a canonical order,
sorted by their image angle around the orbit's 2-D centroid (:func:`canonical_order`), a
function of the set of 2-D points only. The observations of ``R`` and ``R S`` are then identical
for every ``S`` in ``G``, and the true answer to "which rotation?" is the set ``{R S : S in G}``.
:func:`reprojection_error` with ``symmetries=`` compares a hypothesis in the same canonical order.

The built-in :data:`OBJECTS`: ``"box"``, the 8 labelled corners of an asymmetric box (sides 1,
0.6, 0.3; no symmetry: every corner has its own label), and ``"frustum"``, a square frustum (a
square of side 1 at ``z = -0.3`` under one of side 0.5 at ``z = +0.3``, corners aligned), whose
corners as a set are invariant exactly under the rotations of C4 about z (a half-turn about a
horizontal axis would swap the two squares, of different sizes): its group, in
:data:`SYMMETRIES`, is ``cyclic_group(4)``, with two orbits of 4 unlabelled corners each.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .rotations import _check_tail, cyclic_group, random_rotations

__all__ = ["project", "reprojection_error", "default_intrinsics", "symmetry_orbits", "canonical_order",
           "observe_keypoints", "make_keypoint_views", "OBJECTS", "SYMMETRIES"]


def _box() -> Tensor:
    s = torch.tensor([0.5, 0.3, 0.15], dtype=torch.float64)
    signs = torch.tensor([[i, j, k] for i in (-1.0, 1.0) for j in (-1.0, 1.0) for k in (-1.0, 1.0)],
                         dtype=torch.float64)
    return signs * s


def _frustum() -> Tensor:
    a = torch.tensor([math.pi / 4 + k * math.pi / 2 for k in range(4)], dtype=torch.float64)
    ring = torch.stack([a.cos(), a.sin()], dim=-1) * (math.sqrt(2) / 2)  # corners of a unit square
    bottom = torch.cat([ring, torch.full((4, 1), -0.3, dtype=torch.float64)], dim=-1)
    top = torch.cat([0.5 * ring, torch.full((4, 1), 0.3, dtype=torch.float64)], dim=-1)
    return torch.cat([bottom, top])


#: Built-in objects: keypoints ``(N, 3)`` in the object frame (float64), centred at the origin.
OBJECTS: dict[str, Tensor] = {"box": _box(), "frustum": _frustum()}
#: Their rotation symmetry groups ``(S, 3, 3)``, or None for an object without symmetry.
SYMMETRIES: dict[str, Tensor | None] = {"box": None, "frustum": cyclic_group(4)}


def default_intrinsics(dtype: torch.dtype = torch.float64) -> Tensor:
    """A 640 x 480 pinhole camera: focal length 600 px, principal point (320, 240), no skew.

    Returns
    -------
    Tensor (3, 3)
    """
    return torch.tensor([[600.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]], dtype=dtype)


# -- checks ------------------------------------------------------------------------------------
def _float(x, name: str) -> Tensor:
    if not torch.is_tensor(x):
        try:
            x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be a tensor or a numeric array: {err}") from err
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def _check_rotations(R: Tensor, name: str = "R", tol: float = 1e-3) -> None:
    with torch.no_grad():
        eye = torch.eye(3, dtype=R.dtype, device=R.device)
        err = (R.transpose(-1, -2) @ R - eye).flatten(-2).norm(dim=-1)
        if bool((err > tol).any()) or not bool(torch.isfinite(err).all()):
            raise ValueError(f"{name} is not a rotation: |R^T R - I| = {float(err.nan_to_num(1e9).max()):.3g} "
                             f"> {tol} (rotation matrices act on column vectors, shape (..., 3, 3))")
        if bool((torch.linalg.det(R) < 0).any()):
            raise ValueError(f"{name} is not a rotation: a matrix has det -1 (a reflection)")


def _check_intrinsics(K) -> Tensor:
    K = _check_tail(_float(K, "K"), "K", (3, 3))
    last = torch.tensor([0.0, 0.0, 1.0], dtype=K.dtype, device=K.device)
    with torch.no_grad():
        if not bool(torch.allclose(K[..., 2, :], last.expand_as(K[..., 2, :]))):
            raise ValueError(f"K must be an intrinsic matrix with last row (0, 0, 1), got {K[..., 2, :].tolist()}")
        if not bool(((K[..., 0, 0] > 0) & (K[..., 1, 1] > 0)).all()):
            raise ValueError("K must have positive focal lengths K[0, 0] and K[1, 1]")
    return K


# -- projection --------------------------------------------------------------------------------
def project(points, R, t, K, *, min_depth: float | None = None) -> Tensor:
    """Pinhole projection of object points seen at pose ``(R, t)``.

    ``X_c = R X + t``, ``(u, v) = (K X_c)[:2] / (K X_c)[2]``. Differentiable in every argument.

    Parameters
    ----------
    points : Tensor (..., N, 3)
        Points in the object frame.
    R : Tensor (..., 3, 3)
        Rotations (object to camera), checked to be orthonormal with det +1 (tolerance 1e-3).
    t : Tensor (..., 3)
        Translations (the object origin in the camera frame).
    K : Tensor (3, 3) or (..., 3, 3)
        Intrinsics, last row (0, 0, 1). Leading dimensions of all arguments broadcast.
    min_depth : float, optional
        None (default): a ValueError if a point is at depth <= 0 (behind the camera). A number:
        depths are clamped below at it instead, so that an energy stays finite for any pose
        (what :func:`reprojection_error` does).

    Returns
    -------
    Tensor (..., N, 2)
        Pixel coordinates (u, v).
    """
    X = _check_tail(_float(points, "points"), "points", (3,))
    if X.ndim < 2:
        raise ValueError(f"points must have shape (..., N, 3), got {tuple(X.shape)}")
    R = _check_tail(_float(R, "R"), "R", (3, 3))
    t = _check_tail(_float(t, "t"), "t", (3,))
    K = _check_intrinsics(K)
    _check_rotations(R)
    dtype = torch.promote_types(R.dtype, t.dtype)  # the pose's precision (float32 in a float32 sampler)
    X, R, t, K = X.to(dtype=dtype, device=R.device), R.to(dtype), t.to(dtype), K.to(dtype=dtype, device=R.device)
    Xc = X @ R.transpose(-1, -2) + t[..., None, :]
    z = Xc[..., 2:]
    if min_depth is None:
        with torch.no_grad():
            if not bool((z > 0).all()):
                raise ValueError(f"points behind the camera: depth {float(z.min()):.3g} <= 0; t (..., 3) must place "
                                 "the object in front of the camera (t[..., 2] larger than the object's radius)")
    else:
        z = z.clamp_min(float(min_depth))
    p = Xc[..., :2] / z
    return p @ K[..., :2, :2].transpose(-1, -2) + K[..., None, :2, 2]


# -- symmetric objects ---------------------------------------------------------------------------
def symmetry_orbits(points, symmetries, *, tol: float = 1e-6) -> list[list[int]]:
    """The orbits of an object's keypoints under its symmetry group: lists of keypoint indices
    that the group maps into one another, ordered by their smallest index.

    Parameters
    ----------
    points : Tensor (N, 3)
    symmetries : Tensor (S, 3, 3) or None
        The group; None gives one orbit per keypoint.
    tol : float
        Distance below which two rotated points are the same point.

    Returns
    -------
    list of lists of int

    Raises
    ------
    ValueError naming ``symmetries`` if some element does not map the keypoints onto themselves.
    """
    X = _check_tail(_float(points, "points"), "points", (3,)).detach().double().cpu()
    if X.ndim != 2:
        raise ValueError(f"points must have shape (N, 3), got {tuple(X.shape)}")
    if symmetries is None:
        return [[i] for i in range(len(X))]
    G = _check_tail(_float(symmetries, "symmetries"), "symmetries", (3, 3)).detach().double().cpu()
    if G.ndim != 3 or len(G) == 0:
        raise ValueError(f"symmetries must have shape (S, 3, 3) with S >= 1, got {tuple(G.shape)}")
    _check_rotations(G, "symmetries")
    scale = max(1.0, float(X.abs().max()))
    parent = list(range(len(X)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for k, S in enumerate(G):
        D = torch.cdist(X @ S.T, X)
        j = D.argmin(dim=1)
        if bool((D.min(dim=1).values > tol * scale).any()) or len(set(j.tolist())) != len(X):
            raise ValueError(f"symmetries[{k}] does not map the object's points onto themselves; the keypoints "
                             "of a symmetric object must form a set invariant under every element of the group")
        for i, jj in enumerate(j.tolist()):
            parent[root(i)] = root(jj)
    groups: dict[int, list[int]] = {}
    for i in range(len(X)):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=min)


def canonical_order(uv: Tensor, orbits: list[list[int]]) -> Tensor:
    """The permutation that puts unlabelled keypoints in a canonical order, orbit by orbit.

    Within each orbit, the 2-D points are sorted by their angle ``atan2(v - v_c, u - u_c)`` around
    the orbit's 2-D centroid ``(u_c, v_c)``: in the first orbit of two or more points, from the
    cut at -pi; in every later one (of n points), counted from pi / n before the direction of the
    first orbit's first point, so that the orbits stay in register (for the frustum: top slot k
    is, in the image, the corner turned like bottom slot k). A function of the sets of points
    only; orbits keep their slots (the sorted points of an orbit fill the orbit's indices in
    increasing order).

    Parameters
    ----------
    uv : Tensor (..., N, 2)
    orbits : list of lists of int, a partition of range(N) (:func:`symmetry_orbits`).

    Returns
    -------
    Tensor (..., N), int64: ``uv.gather(-2, perm[..., None].expand_as(uv))`` is in canonical order.
    """
    uv = _check_tail(_float(uv, "uv"), "uv", (2,))
    N = uv.shape[-2]
    if sorted(i for o in orbits for i in o) != list(range(N)):
        raise ValueError(f"orbits must partition range({N}) (the keypoints of uv), got {orbits}")
    perm = torch.arange(N, device=uv.device).expand(uv.shape[:-1]).clone()
    ref = None
    for orbit in orbits:
        if len(orbit) < 2:
            continue
        idx = torch.tensor(sorted(orbit), device=uv.device)
        pts = uv.detach()[..., idx, :]
        d = pts - pts.mean(dim=-2, keepdim=True)
        angle = torch.atan2(d[..., 1], d[..., 0])
        if ref is None:  # the first orbit: from the cut at -pi; its first point sets the reference
            order = angle.argsort(dim=-1)
            ref = angle.gather(-1, order[..., :1])
        else:  # later orbits: from half a sector before the reference, so that they stay in register
            order = torch.remainder(angle - ref + math.pi / len(orbit), 2 * math.pi).argsort(dim=-1)
        perm[..., idx] = idx[order]
    return perm


def _gather(uv: Tensor, perm: Tensor) -> Tensor:
    return uv.gather(-2, perm[..., None].expand(*perm.shape, uv.shape[-1]))


# -- the energy --------------------------------------------------------------------------------
def reprojection_error(points, R, t, K, keypoints_2d, visible=None, *, symmetries=None,
                       smoothing: float = 1e-3, min_depth: float = 1e-3) -> Tensor:
    """The mean pixel distance between projected object points and observed keypoints.

    ``E = sum_i v_i (sqrt(|pi(R X_i + t) - x_i|^2 + eps^2) - eps) / max(1, sum_i v_i)``: the
    reprojection error (Hartley & Zisserman 2004, sec. 4.2.3), its norm smoothed at 0 by ``eps``
    so that the gradient is defined everywhere; a guidance energy for
    :meth:`anydiff.PoseDiffusion.sample`. Depths are clamped at ``min_depth`` rather than
    rejected, so any hypothesis gives a finite energy.

    Parameters
    ----------
    points : Tensor (N, 3) or (..., N, 3)
    R : Tensor (..., 3, 3); t : Tensor (..., 3); K : Tensor (3, 3)
    keypoints_2d : Tensor (..., N, 2), pixels.
    visible : Tensor (..., N), optional; 1 (or True) for keypoints to count, 0 for occluded ones.
    symmetries : Tensor (S, 3, 3), optional
        For a symmetric object whose keypoints are given in canonical order
        (:func:`make_keypoint_views`): the projections are put in the same canonical order
        (:func:`canonical_order`) before they are compared, so ``R`` and ``R S`` score alike.
    smoothing : float > 0, ``eps`` in pixels.
    min_depth : float > 0.

    Returns
    -------
    Tensor (...)
        Pixels; 0 where no keypoint is visible.
    """
    if not (isinstance(smoothing, (int, float)) and smoothing > 0):
        raise ValueError(f"smoothing={smoothing!r} must be a positive number of pixels")
    if not (isinstance(min_depth, (int, float)) and min_depth > 0):
        raise ValueError(f"min_depth={min_depth!r} must be a positive number")
    uv = project(points, R, t, K, min_depth=min_depth)
    obs = _check_tail(_float(keypoints_2d, "keypoints_2d"), "keypoints_2d", (2,)).to(uv)
    if obs.shape[-2] != uv.shape[-2]:
        raise ValueError(f"keypoints_2d has {obs.shape[-2]} keypoints but points has {uv.shape[-2]}")
    if symmetries is not None:
        X = _float(points, "points")
        if X.ndim != 2:
            raise ValueError(f"points must have shape (N, 3) with symmetries, got {tuple(X.shape)}")
        uv = _gather(uv, canonical_order(uv, symmetry_orbits(X, symmetries)))
    d = (uv - obs).pow(2).sum(-1).add(smoothing ** 2).sqrt() - smoothing
    if visible is None:
        return d.mean(-1)
    v = _float(visible, "visible").to(d)
    if v.shape[-1:] != d.shape[-1:]:
        raise ValueError(f"visible must have shape (..., {d.shape[-1]}), got {tuple(v.shape)}")
    return (v * d).sum(-1) / v.sum(-1).clamp_min(1.0)


# -- synthetic views ---------------------------------------------------------------------------
def _generator(generator) -> torch.Generator:
    if generator is None:
        return torch.Generator().manual_seed(int(torch.randint(0, 2 ** 62, ()).item()))
    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator))
    raise ValueError(f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}")


def _probability(p, name: str) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ValueError(f"{name}={p!r} must be a number in [0, 1)")
    return float(p)


def observe_keypoints(points, R, t, K=None, *, symmetries=None, noise_px: float = 1.0, occlusion: float = 0.2,
                      generator=None) -> tuple[Tensor, Tensor]:
    """What a keypoint detector reports for poses ``(R, t)``: projections, in canonical order for a
    symmetric object, plus Gaussian pixel noise, each keypoint occluded with probability
    ``occlusion`` (then reported as (0, 0), ``visible = 0``).

    The noise and occlusion are drawn per slot *after* the canonical ordering, so with one seeded
    generator the observations of ``R`` and ``R S`` (S in ``symmetries``) are identical.

    Parameters
    ----------
    points : Tensor (N, 3); R : Tensor (n, 3, 3); t : Tensor (n, 3); K : Tensor (3, 3), optional
        (:func:`default_intrinsics`).
    symmetries : Tensor (S, 3, 3), optional; see the module docstring.
    noise_px : float >= 0, the standard deviation of the noise per pixel coordinate.
    occlusion : float in [0, 1).
    generator : torch.Generator, int seed or None.

    Returns
    -------
    keypoints : Tensor (n, N, 2), float64, zeros where occluded.
    visible : Tensor (n, N), float64, 0 / 1.
    """
    K = default_intrinsics() if K is None else _check_intrinsics(K).double()
    if isinstance(noise_px, bool) or not isinstance(noise_px, (int, float)) or not noise_px >= 0:
        raise ValueError(f"noise_px={noise_px!r} must be a non-negative number of pixels")
    occlusion = _probability(occlusion, "occlusion")
    gen = _generator(generator)
    X = _check_tail(_float(points, "points"), "points", (3,)).detach().double()
    if X.ndim != 2 or len(X) < 1:
        raise ValueError(f"object_points must have shape (N, 3) with N >= 1, got {tuple(X.shape)}")
    R, t = _float(R, "R").detach().double(), _float(t, "t").detach().double()
    uv = project(X, R, t, K)
    uv = _gather(uv, canonical_order(uv, symmetry_orbits(X, symmetries)))
    uv = uv + noise_px * torch.randn(uv.shape, generator=gen, dtype=uv.dtype)
    visible = (torch.rand(uv.shape[:-1], generator=gen, dtype=uv.dtype) >= occlusion).to(uv.dtype)
    return uv * visible[..., None], visible


def make_keypoint_views(n: int, object_points, *, K=None, symmetries=None, noise_px: float = 1.0,
                        occlusion: float = 0.2, depth_range: tuple[float, float] = (4.0, 8.0),
                        lateral: float = 0.1, generator=None):
    """Synthetic views of an object: poses and the 2-D keypoints a detector would report.

    Rotations are Haar-uniform on SO(3) (Shoemake 1992); translations put the object in front of
    the camera: depth ``z`` uniform in ``depth_range``, ``x`` and ``y`` uniform in
    ``[-lateral z, lateral z]`` (near the optical axis). The observations are
    :func:`observe_keypoints`.

    With ``symmetries`` (the group ``G`` of the object, e.g. ``SYMMETRIES["frustum"]``) the
    observations of ``R`` and ``R S`` are identical (unlabelled keypoints in canonical order; see
    the module docstring), so the answer is the set ``{R S}``: the returned rotation is the drawn
    one times an element of ``G`` drawn uniformly, so the training data is genuinely ambiguous
    (a model must put mass on every ``R S``; a regression averages them).

    Parameters
    ----------
    n : int >= 1, the number of views.
    object_points : Tensor (N, 3), e.g. ``OBJECTS["box"]``.
    K : Tensor (3, 3), optional (:func:`default_intrinsics`).
    symmetries : Tensor (S, 3, 3), optional.
    noise_px, occlusion : see :func:`observe_keypoints`.
    depth_range : (low, high), 0 < low <= high; every keypoint must land in front of the camera.
    lateral : float >= 0.
    generator : torch.Generator, int seed or None.

    Returns
    -------
    pose : xarray.Dataset
        ``rotation`` (sample, row, col), kind ``"rotation_matrix"``; ``translation`` (sample,
        xyz), kind ``"position"``.
    cond : xarray.Dataset
        ``keypoints`` (sample, keypoint, uv), kind ``"position"``, pixels, zeros where occluded;
        ``visible`` (sample, keypoint), kind ``"position"``, 0 / 1.
    """
    import xarray as xr

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n={n!r} must be a positive integer")
    n = int(n)
    try:
        lo, hi = (float(v) for v in depth_range)
    except (TypeError, ValueError) as err:
        raise ValueError(f"depth_range={depth_range!r} must be a pair (low, high)") from err
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise ValueError(f"depth_range={depth_range!r} must satisfy 0 < low <= high")
    if isinstance(lateral, bool) or not isinstance(lateral, (int, float)) or not lateral >= 0:
        raise ValueError(f"lateral={lateral!r} must be a non-negative number")
    X = _check_tail(_float(object_points, "object_points"), "object_points", (3,)).detach().double()
    if X.ndim != 2 or len(X) < 1:
        raise ValueError(f"object_points must have shape (N, 3) with N >= 1, got {tuple(X.shape)}")
    radius = float(X.norm(dim=-1).max())
    if radius >= lo:
        raise ValueError(f"depth_range={depth_range!r}: the object (radius {radius:.3g}) would reach behind the "
                         "camera; its low end must exceed the object's radius")
    gen = _generator(generator)
    R = random_rotations(n, generator=gen)
    if symmetries is not None:
        G = _check_tail(_float(symmetries, "symmetries"), "symmetries", (3, 3)).detach().double()
        symmetry_orbits(X, G)  # checks the group and the object
        R = R @ G[torch.randint(len(G), (n,), generator=gen)]
    z = lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)
    xy = lateral * z[:, None] * (2 * torch.rand(n, 2, generator=gen, dtype=torch.float64) - 1)
    t = torch.cat([xy, z[:, None]], dim=-1)
    Kd = default_intrinsics() if K is None else _check_intrinsics(K).double()
    kp, vis = observe_keypoints(X, R, t, Kd, symmetries=symmetries, noise_px=noise_px, occlusion=occlusion,
                                generator=gen)
    N = len(X)
    pose = xr.Dataset({"rotation": (("sample", "row", "col"), R.numpy(), {"kind": "rotation_matrix"}),
                       "translation": (("sample", "xyz"), t.numpy(), {"kind": "position"})},
                      coords={"xyz": ["x", "y", "z"]})
    cond = xr.Dataset({"keypoints": (("sample", "keypoint", "uv"), kp.numpy(), {"kind": "position", "units": "px"}),
                       "visible": (("sample", "keypoint"), vis.numpy(), {"kind": "position"})},
                      coords={"keypoint": np.arange(N), "uv": ["u", "v"]},
                      attrs={"intrinsics": Kd.tolist(), "noise_px": float(noise_px), "occlusion": float(occlusion)})
    return pose, cond
