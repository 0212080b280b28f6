"""Rotations in 3-D: conversions, distances, averaging, random and symmetry groups (torch), and
checks of user-given quaternions and rotation matrices (numpy).

Conventions, everywhere in :mod:`anydiff.poses`:

* a rotation matrix ``R`` (..., 3, 3) acts on column vectors, ``x' = R x``;
* a quaternion is **(w, x, y, z)**, scalar first; ``q`` and ``-q`` are the same rotation, and
  :func:`matrix_to_quaternion` returns the one with ``w >= 0``. (roma and scipy put the scalar
  last; the conversions here take care of it.)
* the 6-D representation is the first two **columns** of ``R`` (Zhou et al. 2019, CVPR, "On the
  continuity of rotation representations in neural networks"), mapped back by Gram-Schmidt.

The torch functions broadcast over any leading dimensions and are differentiable. The rotation
math is roma's (Bregier 2021, "Deep regression on manifolds: a 3D rotation case study").
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import roma
import torch
from torch import Tensor

__all__ = ["quaternion_to_matrix", "matrix_to_quaternion", "matrix_to_sixd", "sixd_to_matrix",
           "geodesic_distance", "quaternion_distance", "chordal_mean", "random_rotations",
           "cyclic_group", "dihedral_group", "check_quaternions", "check_rotation_matrices"]

_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


def _check_tail(x, name: str, tail: tuple[int, ...]) -> Tensor:
    """``x`` itself if it is a floating tensor whose last dims are ``tail``; else ``ValueError``."""
    if not torch.is_tensor(x):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if tuple(x.shape[x.ndim - len(tail):]) != tail or x.ndim < len(tail):
        want = "(..., " + ", ".join(map(str, tail)) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    return x


# -- conversions -------------------------------------------------------------------------------
def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Rotation matrices of quaternions.

    Parameters
    ----------
    q : Tensor (..., 4)
        Quaternions (w, x, y, z). They should be unit; they are normalized first.

    Returns
    -------
    Tensor (..., 3, 3)
    """
    q = _check_tail(q, "q", (4,))
    q = q / q.norm(dim=-1, keepdim=True)
    return roma.unitquat_to_rotmat(roma.quat_wxyz_to_xyzw(q))


def matrix_to_quaternion(R: Tensor) -> Tensor:
    """Unit quaternions (w, x, y, z) of rotation matrices, with the sign chosen so that ``w >= 0``.

    Markley's method (2008, J. Guid. Control Dyn.), stable for every angle. For a half-turn
    (``w = 0``) both signs remain valid and either may be returned.

    Parameters
    ----------
    R : Tensor (..., 3, 3)
        Rotation matrices.

    Returns
    -------
    Tensor (..., 4)
    """
    R = _check_tail(R, "R", (3, 3))
    q = roma.quat_xyzw_to_wxyz(roma.rotmat_to_unitquat(R))
    return torch.where(q[..., :1] < 0, -q, q)


def matrix_to_sixd(R: Tensor) -> Tensor:
    """The continuous 6-D representation of Zhou et al. (2019): ``[R[..., :, 0], R[..., :, 1]]``.

    Parameters
    ----------
    R : Tensor (..., 3, 3)

    Returns
    -------
    Tensor (..., 6)
        The first column of ``R`` followed by the second.
    """
    R = _check_tail(R, "R", (3, 3))
    return torch.cat([R[..., :, 0], R[..., :, 1]], dim=-1)


def sixd_to_matrix(x: Tensor) -> Tensor:
    """Rotation matrices from 6-vectors by Gram-Schmidt (Zhou et al. 2019).

    With ``a = x[..., :3]`` and ``b = x[..., 3:]``: ``c1 = a / |a|``, ``c2`` the normalized part of
    ``b`` orthogonal to ``c1``, ``c3 = c1 x c2``; ``R = [c1 c2 c3]``. The inverse of
    :func:`matrix_to_sixd` on rotations. Any 6-vector with ``a`` and ``b`` not parallel (and
    nonzero) gives a rotation; for degenerate ones the result is NaN or not a rotation.

    Parameters
    ----------
    x : Tensor (..., 6)

    Returns
    -------
    Tensor (..., 3, 3)
    """
    x = _check_tail(x, "x", (6,))
    return roma.special_gramschmidt(torch.stack([x[..., :3], x[..., 3:]], dim=-1))


# -- distances ---------------------------------------------------------------------------------
def geodesic_distance(R1: Tensor, R2: Tensor) -> Tensor:
    """The angle of ``R1^T R2``, in radians in [0, pi] (the geodesic distance on SO(3)).

    Computed as ``2 asin(|R1 - R2|_F / (2 sqrt 2))``, accurate for small angles (Hartley et al.
    2013, IJCV, "Rotation averaging").

    Parameters
    ----------
    R1, R2 : Tensor (..., 3, 3)
        Rotation matrices; the leading dimensions broadcast.

    Returns
    -------
    Tensor (...)
    """
    R1, R2 = _check_tail(R1, "R1", (3, 3)), _check_tail(R2, "R2", (3, 3))
    return roma.rotmat_geodesic_distance(R1, R2)


def quaternion_distance(q1: Tensor, q2: Tensor) -> Tensor:
    """The rotation angle between two quaternions, in radians in [0, pi]; ``q`` and ``-q`` are at
    distance 0.

    ``4 atan2(|q1 - s q2|, |q1 + s q2|)`` with ``s = sign(q1 . q2)``, which equals
    ``2 acos(|q1 . q2|)`` but stays accurate near 0.

    Parameters
    ----------
    q1, q2 : Tensor (..., 4)
        Quaternions (w, x, y, z), normalized first; the leading dimensions broadcast.

    Returns
    -------
    Tensor (...)
    """
    q1, q2 = _check_tail(q1, "q1", (4,)), _check_tail(q2, "q2", (4,))
    q1 = q1 / q1.norm(dim=-1, keepdim=True)
    q2 = q2 / q2.norm(dim=-1, keepdim=True)
    s = torch.where((q1 * q2).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(q2.dtype)
    return 4.0 * torch.atan2((q1 - s * q2).norm(dim=-1), (q1 + s * q2).norm(dim=-1))


# -- averaging ---------------------------------------------------------------------------------
def _rotation_dim(R: Tensor, dim: int, name: str = "R") -> int:
    """``dim`` as a non-negative index of one of the leading (batch) dimensions of ``R``."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise ValueError(f"dim={dim!r} must be an integer")
    if not -R.ndim <= dim < R.ndim or dim % R.ndim >= R.ndim - 2:
        raise ValueError(f"dim={dim} must index a leading dimension of {name} "
                         f"(shape {tuple(R.shape)}), not the trailing 3 x 3")
    return dim % R.ndim


def chordal_mean(R: Tensor, dim: int = 0, weights: Tensor | None = None) -> Tensor:
    """The chordal L2 mean: ``argmin_M sum_i w_i |R_i - M|_F^2`` over SO(3).

    It is the projection of the weighted arithmetic mean of the matrices onto SO(3) (Hartley et
    al. 2013, IJCV, "Rotation averaging"), computed by SVD / Horn's method. Exact, no
    iteration; not the geodesic (Karcher) mean, but close to it for concentrated sets. Undefined
    (any rotation fits) when the arithmetic mean is rank deficient, e.g. for a symmetric group.

    Parameters
    ----------
    R : Tensor (..., H, ..., 3, 3)
        Rotations, averaged along ``dim``.
    dim : int
        The dimension to average over (a leading one).
    weights : Tensor, optional
        Non-negative weights, either (H,) or of shape ``R.shape[:-2]``; normalized to sum to 1.

    Returns
    -------
    Tensor
        ``R.shape`` without ``dim``: one rotation per remaining index.
    """
    R = _check_tail(R, "R", (3, 3))
    dim = _rotation_dim(R, dim)
    if R.shape[dim] == 0:
        raise ValueError(f"R has no rotations along dim={dim}; the mean is undefined")
    if weights is None:
        M = R.mean(dim=dim)
    else:
        w = torch.as_tensor(weights, dtype=R.dtype, device=R.device)
        if w.ndim == 1 and w.shape[0] == R.shape[dim]:
            w = w.reshape((-1,) + (1,) * (R.ndim - 3 - dim))
        elif tuple(w.shape) != tuple(R.shape[:-2]):
            raise ValueError(f"weights must have shape ({R.shape[dim]},) or {tuple(R.shape[:-2])}, "
                             f"got {tuple(w.shape)}")
        w = w.broadcast_to(R.shape[:-2])
        M = (w[..., None, None] * R).sum(dim=dim) / w.sum(dim=dim)[..., None, None]
    return roma.special_procrustes(M)


# -- random rotations and symmetry groups ------------------------------------------------------
def random_rotations(n: int, *, generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """``n`` rotations drawn independently from the uniform (Haar) distribution on SO(3).

    Normalized Gaussian quaternions are uniform on the 3-sphere, hence their rotations are Haar
    distributed (Shoemake 1992). Reproducible with a seeded ``generator``.

    Returns
    -------
    Tensor (n, 3, 3)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n={n!r} must be a non-negative integer")
    if device is None and generator is not None:
        device = generator.device
    return roma.random_rotmat(n, dtype=dtype, device=device, generator=generator)


def _axis_rotations(axes: Tensor, angles: Tensor) -> Tensor:
    return roma.rotvec_to_rotmat(angles[..., None] * axes)


def cyclic_group(n: int, axis="z", *, dtype: torch.dtype = torch.float64) -> Tensor:
    """The cyclic group C_n: rotations about ``axis`` by ``2 pi k / n``, ``k = 0, ..., n - 1``.

    The symmetries of an object with n-fold rotational symmetry about ``axis`` (for
    :func:`anydiff.poses.metrics.symmetric_rotation_error_deg`). Element 0 is the identity.

    Parameters
    ----------
    n : int >= 1
    axis : "x", "y", "z" or a nonzero 3-vector (normalized).

    Returns
    -------
    Tensor (n, 3, 3)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} must be a positive integer")
    if isinstance(axis, str):
        if axis not in _AXES:
            raise ValueError(f"axis={axis!r} must be 'x', 'y', 'z' or a 3-vector")
        axis = _AXES[axis]
    a = torch.as_tensor(axis, dtype=dtype)
    if a.shape != (3,) or not bool(torch.isfinite(a).all()) or float(a.norm()) == 0.0:
        raise ValueError(f"axis={axis!r} must be a finite nonzero 3-vector")
    k = torch.arange(n, dtype=dtype)
    return _axis_rotations(a / a.norm(), 2 * math.pi * k / n)


def dihedral_group(n: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """The dihedral group D_n (2n elements): C_n about z, then the n half-turns about the
    horizontal axes at angles ``pi k / n`` from x.

    The symmetries of, e.g., a regular n-gonal prism. A half-turn about the axis at angle ``a``
    times one about the axis at ``b`` is the rotation about z by ``2 (a - b)``, so the set is
    closed.

    Returns
    -------
    Tensor (2n, 3, 3)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} must be a positive integer")
    a = math.pi * torch.arange(n, dtype=dtype) / n
    axes = torch.stack([a.cos(), a.sin(), torch.zeros_like(a)], dim=-1)
    flips = _axis_rotations(axes, torch.full((n,), math.pi, dtype=dtype))
    return torch.cat([cyclic_group(n, "z", dtype=dtype), flips])


# -- checks of user data (numpy) ---------------------------------------------------------------
def _as_float_array(x, name: str, tail: tuple[int, ...]) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array: {err}") from err
    if x.shape[x.ndim - len(tail):] != tail or x.ndim < len(tail):
        want = "(..., " + ", ".join(map(str, tail)) + ")"
        raise ValueError(f"{name} must have shape {want}, got {x.shape}")
    bad = ~np.isfinite(x).all(axis=tuple(range(-len(tail), 0)))
    if bad.any():
        raise ValueError(f"{name} contains NaN or infinite values at row {_row(bad)}")
    return x


def _row(bad: np.ndarray):
    """The index of the first True in ``bad`` (an int, or a tuple for several leading dims)."""
    if bad.ndim == 0:
        return 0
    idx = np.unravel_index(int(np.argmax(bad)), bad.shape)
    return int(idx[0]) if len(idx) == 1 else tuple(int(i) for i in idx)


def check_quaternions(q, name: str, *, tol: float = 1e-3) -> np.ndarray:
    """Check user quaternions (w, x, y, z) and return them normalized, as float64.

    Raises ``ValueError`` naming ``name`` for a wrong shape, NaN / infinity or a zero quaternion;
    warns (``UserWarning``) when some norm is off 1 by more than ``tol``.

    Parameters
    ----------
    q : array-like (..., 4)
    name : str
        The argument's name, for the messages.
    tol : float
        Largest ``| |q| - 1 |`` accepted without a warning.

    Returns
    -------
    ndarray (..., 4), float64, unit norm.
    """
    q = _as_float_array(q, name, (4,))
    norm = np.linalg.norm(q, axis=-1)
    if (norm < 1e-8).any():
        raise ValueError(f"{name} has a zero quaternion at row {_row(norm < 1e-8)}; "
                         "a rotation needs a nonzero (unit) quaternion")
    off = np.abs(norm - 1.0)
    if off.size and off.max() > tol:
        worst = float(norm.reshape(-1)[int(np.argmax(off))])
        warnings.warn(f"{name}: {int((off > tol).sum())} quaternion(s) are not unit (worst norm "
                      f"{worst:.6g}, at row {_row(off == off.max())}); normalizing them",
                      UserWarning, stacklevel=2)
    return q / norm[..., None]


def check_rotation_matrices(R, name: str, *, tol: float = 1e-3) -> np.ndarray:
    """Check user rotation matrices and return the nearest rotations, as float64.

    Raises ``ValueError`` naming ``name`` and the first bad row for a wrong shape, NaN / infinity,
    a matrix that is not orthonormal (``|R^T R - I|_F > tol``) or a reflection (``det R = -1``).
    Matrices that pass are projected onto SO(3) by SVD, which cleans small float errors.

    Returns
    -------
    ndarray (..., 3, 3), float64.
    """
    R = _as_float_array(R, name, (3, 3))
    err = np.linalg.norm(np.swapaxes(R, -1, -2) @ R - np.eye(3), axis=(-2, -1))
    if (err > tol).any():
        row = _row(err > tol)
        raise ValueError(f"{name} is not a rotation at row {row}: the matrix is not orthonormal "
                         f"(|R^T R - I| = {float(err.max()):.3g} > tol={tol})")
    det = np.linalg.det(R)
    if (det < 0).any():
        raise ValueError(f"{name} is not a rotation at row {_row(det < 0)}: the matrix is a "
                         "reflection (det -1); flip the sign of one column or axis")
    U, _, Vt = np.linalg.svd(R)
    return U @ Vt  # det(U Vt) = +1 here: the matrices are near rotations
