"""Procedural 3-D shapes with points uniform on their surface, and uniform sampling of user meshes.

:func:`make_shapes` draws labelled point clouds from ten classes (``SHAPE_CLASSES``): six primitives
(sphere, box, cylinder, cone, torus, capsule) and four composites made of primitives (table, chair,
lamp, airplane). Every shape is a union of *parts* (rectangles, discs, cone frusta, spheres and
hemispheres, tori), each sampled uniformly on its own surface by an exact formula; the number of
points of a part is multinomial with probabilities proportional to the part's area, so the points
are uniform (i.i.d. with a density proportional to area) on the whole surface.

* rectangle: two uniform coordinates; disc of radius R: radius ``R sqrt(u)``, uniform angle;
* frustum from radius r0 to r1 (cylinder side if r0 = r1, cone side if r1 = 0): the area element
  is proportional to the radius, so ``r = sqrt(r0**2 + u (r1**2 - r0**2))`` (for a cone of base R
  this is the law ``r = R sqrt(u)``); height linear in r, uniform angle;
* sphere: normalised standard Gaussian vectors (Muller 1959); hemisphere: the same, folded;
* torus with radii R > r: angle phi around the axis uniform, angle theta around the tube drawn by
  rejection from the exact area element ``r (R + r cos theta) dtheta dphi``.

Each shape gets random proportions (ranges in ``_SHAPES`` below and in ``datasets/procshapes.md``),
then an anisotropic scale ``S = diag(s)``, ``s_i ~ U(1 - anisotropy, 1 + anisotropy)``. A linear
map ``S`` multiplies the area element at a point with unit normal ``n`` by ``det(S) |S^{-T} n|``, so
points are kept by rejection with probability ``min(s) |S^{-1} n|`` (at most 1): the scaled points
are again uniform on the scaled surface. Shapes are centred at the centre of their bounding box.
``rotate=True`` applies a rotation uniform on SO(3), from a normalised standard Gaussian
quaternion (Shoemake 1992).

Where parts of a composite meet, faces hidden inside the contact are left out when they are whole
faces (the tops of table and chair legs, the bottom of the chair back, the roots of the wings,
which start at the fuselage's surface); faces only partly covered (the table top's underside above
the legs, the seat under the chair back) are sampled whole: at most about 3 % of a shape's area.

:func:`sample_surface` samples a user's mesh uniformly by area with ``trimesh``
(``pip install 'anydiff[points]'``).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datasets import _balanced_labels, as_rng
from ..nn._checks import check_positive_int

__all__ = ["SHAPE_CLASSES", "make_shapes", "sample_surface"]

# a part is built along its local z axis; these cyclic permutations (proper rotations) send local z
# to the named world axis: world = local[:, perm]
_PERM = {"x": [2, 0, 1], "y": [1, 2, 0], "z": [0, 1, 2]}
_UNIT = {"x": np.array([1.0, 0, 0]), "y": np.array([0, 1.0, 0]), "z": np.array([0, 0, 1.0])}


# -- parts: one primitive surface, sampled uniformly ------------------------------------------
@dataclass(frozen=True)
class _Part:
    """A surface of area ``area``; ``sample(rng, k)`` gives ``k`` uniform points and their unit
    normals, both (k, 3); ``lo``/``hi`` bound it."""
    area: float
    sample: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]
    lo: np.ndarray
    hi: np.ndarray


def _place(area, local_sample, lo, hi, centre, axis) -> _Part:
    """A part from a sampler in its local frame (axis = local z), moved to ``centre``, ``axis``."""
    perm, centre = _PERM[axis], np.asarray(centre, dtype=np.float64)

    def sample(rng, k):
        p, n = local_sample(rng, k)
        return p[:, perm] + centre, n[:, perm]
    lo, hi = np.asarray(lo, dtype=np.float64)[perm] + centre, np.asarray(hi, dtype=np.float64)[perm] + centre
    return _Part(float(area), sample, lo, hi)


def _angle(rng, k):
    phi = rng.uniform(0.0, 2 * np.pi, k)
    return np.cos(phi), np.sin(phi)


def _rect(a, b, centre=(0, 0, 0), axis="z") -> _Part:
    """Rectangle ``a x b`` (local x, y), normal along ``axis``."""
    def sample(rng, k):
        p = np.stack([rng.uniform(-a / 2, a / 2, k), rng.uniform(-b / 2, b / 2, k), np.zeros(k)], 1)
        return p, np.tile([0.0, 0.0, 1.0], (k, 1))
    return _place(a * b, sample, [-a / 2, -b / 2, 0], [a / 2, b / 2, 0], centre, axis)


def _disc(radius, centre=(0, 0, 0), axis="z") -> _Part:
    """Disc of radius R: the radius of a uniform point is ``R sqrt(u)`` (area element r dr dphi)."""
    def sample(rng, k):
        r = radius * np.sqrt(rng.random(k))
        c, s = _angle(rng, k)
        return np.stack([r * c, r * s, np.zeros(k)], 1), np.tile([0.0, 0.0, 1.0], (k, 1))
    return _place(np.pi * radius ** 2, sample, [-radius, -radius, 0], [radius, radius, 0], centre, axis)


def _frustum(r0, r1, height, centre=(0, 0, 0), axis="z") -> _Part:
    """Side of a cone frustum, radius ``r0`` at local z = -h/2 and ``r1`` at +h/2.

    The area element is ``r dphi dl``, l the slant length, linear in r; so ``r**2`` is uniform
    between ``r0**2`` and ``r1**2``. Area ``pi (r0 + r1) sqrt(h**2 + (r1 - r0)**2)``.
    """
    dr = r1 - r0

    def sample(rng, k):
        u = rng.random(k)
        if abs(dr) < 1e-12 * max(r0, r1):  # cylinder side: height uniform
            r, t = np.full(k, float(r0)), u
        else:
            r = np.sqrt(r0 ** 2 + u * (r1 ** 2 - r0 ** 2))
            t = (r - r0) / dr
        c, s = _angle(rng, k)
        p = np.stack([r * c, r * s, (t - 0.5) * height], 1)
        n = np.stack([height * c, height * s, np.full(k, -dr)], 1) / math.hypot(height, dr)
        return p, n
    rmax = max(r0, r1)
    return _place(np.pi * (r0 + r1) * math.hypot(height, dr), sample,
                  [-rmax, -rmax, -height / 2], [rmax, rmax, height / 2], centre, axis)


def _sphere(radius, centre=(0, 0, 0), axis="z", half=0) -> _Part:
    """Sphere (``half=0``) or the hemisphere local z >= 0 (``half=1``) or <= 0 (``half=-1``):
    normalised Gaussian vectors are uniform on the sphere (Muller 1959)."""
    def sample(rng, k):
        n = rng.standard_normal((k, 3))
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        if half:
            n[:, 2] = half * np.abs(n[:, 2])
        return radius * n, n
    lo_z, hi_z = (-radius, radius) if half == 0 else ((0.0, radius) if half > 0 else (-radius, 0.0))
    area = 4 * np.pi * radius ** 2 / (2 if half else 1)
    return _place(area, sample, [-radius, -radius, lo_z], [radius, radius, hi_z], centre, axis)


def _torus(R, r, centre=(0, 0, 0), axis="z") -> _Part:
    """Torus ``(sqrt(x**2 + y**2) - R)**2 + z**2 = r**2`` (R > r), area ``4 pi**2 R r``.

    theta (around the tube) has density proportional to ``R + r cos theta``: drawn uniform and kept
    with probability ``(R + r cos theta) / (R + r)``.
    """
    def sample(rng, k):
        theta = np.empty(0)
        while theta.size < k:
            cand = rng.uniform(0.0, 2 * np.pi, 2 * (k - theta.size) + 8)
            keep = rng.random(cand.size) * (R + r) < R + r * np.cos(cand)
            theta = np.concatenate([theta, cand[keep]])
        theta = theta[:k]
        c, s = _angle(rng, k)
        ring = R + r * np.cos(theta)
        p = np.stack([ring * c, ring * s, r * np.sin(theta)], 1)
        n = np.stack([np.cos(theta) * c, np.cos(theta) * s, np.sin(theta)], 1)
        return p, n
    return _place(4 * np.pi ** 2 * R * r, sample, [-R - r, -R - r, -r], [R + r, R + r, r], centre, axis)


# -- compound surfaces --------------------------------------------------------------------------
def _box(size, centre=(0, 0, 0), skip=()) -> list[_Part]:
    """The six faces of an axis-aligned box of side lengths ``size``; ``skip`` names faces to leave
    out, e.g. ``("+z",)`` for the top."""
    sx, sy, sz = size
    centre = np.asarray(centre, dtype=np.float64)
    # (axis, face extents in the local x, y of that axis, half-size along the axis)
    faces = [("x", sy, sz, sx / 2), ("y", sz, sx, sy / 2), ("z", sx, sy, sz / 2)]
    return [_rect(a, b, centre + sign * half * _UNIT[axis], axis)
            for axis, a, b, half in faces for sign in (1, -1)
            if f"{'+' if sign > 0 else '-'}{axis}" not in skip]


def _closed_cylinder(radius, height, centre=(0, 0, 0), axis="z") -> list[_Part]:
    centre = np.asarray(centre, dtype=np.float64)
    return [_frustum(radius, radius, height, centre, axis),
            _disc(radius, centre + height / 2 * _UNIT[axis], axis),
            _disc(radius, centre - height / 2 * _UNIT[axis], axis)]


def _capsule(radius, length, centre=(0, 0, 0), axis="z") -> list[_Part]:
    """A cylinder side of length ``length`` closed by two hemispheres."""
    centre = np.asarray(centre, dtype=np.float64)
    return [_frustum(radius, radius, length, centre, axis),
            _sphere(radius, centre + length / 2 * _UNIT[axis], axis, half=1),
            _sphere(radius, centre - length / 2 * _UNIT[axis], axis, half=-1)]


# -- the classes: random proportions, then parts ------------------------------------------------
def _draw(rng, **ranges) -> dict[str, float]:
    """One uniform draw per named ``(low, high)`` range, in the order given."""
    return {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in ranges.items()}


def _table(p) -> list[_Part]:
    w, d, top, leg, h, inset = p["width"], p["depth"], p["top"], p["leg"], p["height"], p["inset"]
    parts = _box((w, d, top), (0, 0, h - top / 2))
    lx, ly = w / 2 - inset - leg / 2, d / 2 - inset - leg / 2
    for sx in (1, -1):
        for sy in (1, -1):  # legs touch the top: their top faces are hidden
            parts += _box((leg, leg, h - top), (sx * lx, sy * ly, (h - top) / 2), skip=("+z",))
    return parts


def _chair(p) -> list[_Part]:
    w, d, seat, leg, h = p["width"], p["depth"], p["seat"], p["leg"], p["seat_height"]
    parts = _box((w, d, seat), (0, 0, h - seat / 2))
    lx, ly = w / 2 - leg / 2, d / 2 - leg / 2
    for sx in (1, -1):
        for sy in (1, -1):
            parts += _box((leg, leg, h - seat), (sx * lx, sy * ly, (h - seat) / 2), skip=("+z",))
    back, bh = p["back"], p["back_height"]  # the back stands on the rear edge of the seat
    return parts + _box((w, back, bh), (0, -(d / 2 - back / 2), h + bh / 2), skip=("-z",))


def _lamp(p) -> list[_Part]:
    br, bh, pr, ph = p["base_radius"], p["base_height"], p["pole_radius"], p["pole_height"]
    sb, sh = p["shade_bottom"], p["shade_height"]
    parts = _closed_cylinder(br, bh, (0, 0, bh / 2))
    parts.append(_frustum(pr, pr, ph, (0, 0, bh + ph / 2)))  # pole, up to the top of the shade
    parts.append(_frustum(sb, sb * p["shade_ratio"], sh, (0, 0, bh + ph - sh / 2)))  # open shade
    return parts


def _airplane(p) -> list[_Part]:
    r, L = p["body_radius"], p["body_length"]  # fuselage along x, nose towards +x
    parts = _capsule(r, L, axis="x")
    t, tc, fc, fh = p["wing_thickness"], p["tail_chord"], p["fin_chord"], p["fin_height"]
    # wings and tailplane: a left and a right half each, from where a slab of thickness t
    # meets the fuselage (|y| = sqrt(r^2 - (t/2)^2)); their root faces are hidden in it
    for chord, span, thick, x in ((p["wing_chord"], p["wing_span"], t, p["wing_position"] * L),
                                  (tc, p["tail_span"], 0.8 * t, -L / 2 + tc / 2)):
        root = math.sqrt(r ** 2 - (thick / 2) ** 2)
        half = span / 2 - root
        for side in (1, -1):
            parts += _box((chord, half, thick), (x, side * (root + half / 2), 0),
                          skip=("-y",) if side > 0 else ("+y",))
    root = math.sqrt(r ** 2 - (0.4 * t) ** 2)  # the fin stands on top of the fuselage
    return parts + _box((fc, 0.8 * t, fh), (-L / 2 + fc / 2, 0, root + fh / 2), skip=("-z",))


# name -> (draw proportions from rng, build the parts from proportions); lengths before scaling
_SHAPES: dict[str, tuple[Callable, Callable]] = {
    "sphere": (lambda rng: _draw(rng, radius=(0.45, 0.6)),
               lambda p: [_sphere(p["radius"])]),
    "box": (lambda rng: _draw(rng, sx=(0.4, 1.1), sy=(0.4, 1.1), sz=(0.4, 1.1)),
            lambda p: _box((p["sx"], p["sy"], p["sz"]))),
    "cylinder": (lambda rng: _draw(rng, radius=(0.2, 0.45), height=(0.5, 1.2)),
                 lambda p: _closed_cylinder(p["radius"], p["height"])),
    "cone": (lambda rng: _draw(rng, radius=(0.25, 0.5), height=(0.6, 1.2)),
             lambda p: [_frustum(p["radius"], 0.0, p["height"]),
                        _disc(p["radius"], (0, 0, -p["height"] / 2))]),
    "torus": (lambda rng: _draw(rng, R=(0.35, 0.55), ratio=(0.2, 0.45)),
              lambda p: [_torus(p["R"], p["R"] * p["ratio"])]),
    "capsule": (lambda rng: _draw(rng, radius=(0.15, 0.3), length=(0.3, 0.9)),
                lambda p: _capsule(p["radius"], p["length"])),
    "table": (lambda rng: _draw(rng, width=(0.9, 1.4), depth=(0.5, 0.9), top=(0.03, 0.07),
                                leg=(0.04, 0.08), height=(0.5, 0.8), inset=(0.0, 0.08)), _table),
    "chair": (lambda rng: _draw(rng, width=(0.4, 0.6), depth=(0.4, 0.6), seat=(0.04, 0.07),
                                leg=(0.03, 0.06), seat_height=(0.35, 0.5), back_height=(0.35, 0.65),
                                back=(0.03, 0.06)), _chair),
    "lamp": (lambda rng: _draw(rng, base_radius=(0.15, 0.3), base_height=(0.03, 0.08),
                               pole_radius=(0.012, 0.025), pole_height=(0.6, 1.0),
                               shade_bottom=(0.2, 0.35), shade_ratio=(0.35, 0.8),
                               shade_height=(0.2, 0.35)), _lamp),
    "airplane": (lambda rng: _draw(rng, body_radius=(0.05, 0.09), body_length=(0.9, 1.3),
                                   wing_span=(1.0, 1.5), wing_chord=(0.15, 0.28),
                                   wing_thickness=(0.015, 0.03), wing_position=(-0.1, 0.15),
                                   tail_span=(0.3, 0.5), tail_chord=(0.08, 0.14),
                                   fin_height=(0.15, 0.3), fin_chord=(0.1, 0.18)), _airplane),
}
#: The class names that :func:`make_shapes` knows: six primitives, then four composites.
SHAPE_CLASSES: tuple[str, ...] = tuple(_SHAPES)


# -- sampling -----------------------------------------------------------------------------------
def _sample_parts(parts: Sequence[_Part], n: int, rng: np.random.Generator, scale) -> np.ndarray:
    """``n`` points uniform on the union of ``parts`` after the map ``x -> diag(scale) (x - c)``,
    c the centre of the parts' bounding box. Returns float64 (n, 3)."""
    scale = np.asarray(scale, dtype=np.float64)
    areas = np.array([p.area for p in parts])
    centre = (np.min([p.lo for p in parts], 0) + np.max([p.hi for p in parts], 0)) / 2
    # the smallest acceptance probability is min(s) / max(s): draw enough candidates for one round
    oversample = scale.max() / scale.min()
    kept, n_kept = [], 0
    while n_kept < n:
        m = int(math.ceil((n - n_kept) * oversample * 1.1)) + 8
        counts = rng.multinomial(m, areas / areas.sum())
        drawn = [p.sample(rng, k) for p, k in zip(parts, counts) if k]
        x = np.concatenate([d[0] for d in drawn])
        normal = np.concatenate([d[1] for d in drawn])
        # area change of diag(s) on a surface with normal n: det(S) |S^-1 n|, at most det(S) / min(s)
        accept = rng.random(m) < scale.min() * np.linalg.norm(normal / scale, axis=1)
        kept.append(x[accept])
        n_kept += int(accept.sum())
    x = np.concatenate(kept)
    x = x[rng.permutation(len(x))[:n]]  # a random subset, so no part is favoured by the order
    return (x - centre) * scale


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A 3x3 rotation uniform on SO(3): a normalised standard Gaussian quaternion (Shoemake 1992)."""
    w, x, y, z = (q := rng.standard_normal(4)) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def _sample_shape(name: str, n_points: int, rng: np.random.Generator, *, rotate: bool = False,
                  anisotropy: float = 0.2, params: dict | None = None, scale=None) -> np.ndarray:
    """One shape of class ``name`` as float64 (n_points, 3). ``params`` and ``scale`` fix the
    proportions and the anisotropic scale (drawn from ``rng`` when None)."""
    draw, build = _SHAPES[name]
    params = draw(rng) if params is None else params
    scale = rng.uniform(1 - anisotropy, 1 + anisotropy, 3) if scale is None else scale
    x = _sample_parts(build(params), n_points, rng, scale)
    return x @ _random_rotation(rng).T if rotate else x


# -- argument checks ----------------------------------------------------------------------------
def _rng(random_state) -> np.random.Generator:
    """:func:`anydiff.datasets.as_rng`, also accepting a legacy ``numpy.random.RandomState`` (one
    seed is drawn from it, which advances it)."""
    if isinstance(random_state, np.random.RandomState):
        return as_rng(int(random_state.randint(np.iinfo(np.int32).max)))
    return as_rng(random_state)


def _check_classes(classes) -> tuple[str, ...]:
    if classes is None:
        return SHAPE_CLASSES
    if isinstance(classes, str):
        classes = [classes]
    classes = list(classes)
    unknown = [c for c in classes if c not in SHAPE_CLASSES]
    if unknown:
        raise ValueError(f"classes has unknown names {unknown}; choose among {list(SHAPE_CLASSES)}")
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes={classes!r} must be None or a non-empty list of distinct names "
                         f"from {list(SHAPE_CLASSES)}")
    return tuple(classes)


# -- public -------------------------------------------------------------------------------------
def make_shapes(n_shapes: int, *, n_points: int = 2048, classes: Sequence[str] | None = None,
                rotate: bool = False, anisotropy: float = 0.2, random_state=None,
                return_labels: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Labelled procedural shapes ("ProcShapes"), points uniform on each surface.

    Parameters
    ----------
    n_shapes : int, positive, the number of point clouds.
    n_points : int, positive, points per cloud.
    classes : None or list of str
        Names from ``SHAPE_CLASSES`` (sphere, box, cylinder, cone, torus, capsule, table, chair,
        lamp, airplane); None takes all. Classes are balanced exactly: their counts differ by at
        most one, in random order (as the toy sets of :mod:`anydiff.datasets`).
    rotate : bool
        Apply to each shape its own rotation, uniform on SO(3). Without it shapes are upright
        (z up; the airplane's nose along +x).
    anisotropy : float in [0, 1)
        Each axis of each shape is scaled by a factor ``U(1 - anisotropy, 1 + anisotropy)``
        (before the rotation); 0 keeps the drawn proportions exactly (spheres stay spheres).
    random_state : None, int >= 0, numpy.random.Generator or numpy.random.RandomState
        See :func:`anydiff.datasets.as_rng`; a RandomState gives one seed.
    return_labels : bool
        Also return the class of each shape.

    Returns
    -------
    X : ndarray, shape (n_shapes, n_points, 3), float32
        Each shape centred at its bounding-box centre; sizes of order 1 (the largest extent of
        a shape lies between about 0.3 and 1.9).
    y : ndarray, shape (n_shapes,), str (numpy unicode dtype), only with ``return_labels``
        The class name of each shape.

    Examples
    --------
    >>> X, y = make_shapes(20, n_points=512, classes=["chair", "table"], random_state=0,
    ...                    return_labels=True)
    >>> X.shape, sorted(set(y.tolist()))
    ((20, 512, 3), ['chair', 'table'])
    """
    n_shapes = check_positive_int(n_shapes, "n_shapes")
    n_points = check_positive_int(n_points, "n_points")
    names = _check_classes(classes)
    if isinstance(anisotropy, bool) or not isinstance(anisotropy, numbers.Real) or not 0 <= anisotropy < 1:
        raise ValueError(f"anisotropy={anisotropy!r} must be a number in [0, 1)")
    rng = _rng(random_state)
    y = np.asarray(names)[_balanced_labels(n_shapes, len(names), rng)]
    X = np.empty((n_shapes, n_points, 3), dtype=np.float32)
    for i, name in enumerate(y):
        X[i] = _sample_shape(str(name), n_points, rng, rotate=bool(rotate), anisotropy=float(anisotropy))
    return (X, y) if return_labels else X


def sample_surface(mesh, n_points: int, random_state=None) -> np.ndarray:
    """Points uniform (by area) on the surface of a triangle mesh.

    A face is chosen with probability proportional to its area and a point uniform on it
    (``trimesh.sample.sample_surface``). Needs ``trimesh`` (``pip install 'anydiff[points]'``).

    Parameters
    ----------
    mesh : str, pathlib.Path or trimesh.Trimesh
        A mesh file that trimesh reads (.obj, .ply, .stl, .off, ...; a scene is merged into one
        mesh) or a mesh object.
    n_points : int, positive
    random_state : None, int >= 0, numpy.random.Generator or numpy.random.RandomState

    Returns
    -------
    ndarray, shape (n_points, 3), float32, in the mesh's own coordinates (not centred or scaled).
    """
    try:
        import trimesh
    except ImportError as err:
        raise ImportError("sample_surface needs trimesh: pip install 'anydiff[points]'") from err
    n_points = check_positive_int(n_points, "n_points")
    rng = _rng(random_state)
    if isinstance(mesh, (str, Path)):
        path = Path(mesh)
        if not path.is_file():
            raise ValueError(f"mesh={str(mesh)!r} is not an existing file; give the path of a mesh "
                             "file (.obj, .ply, .stl, .off) or a trimesh.Trimesh")
        try:
            mesh = trimesh.load(path, force="mesh")
        except Exception as err:  # trimesh raises many types for unreadable files
            raise ValueError(f"mesh={str(path)!r} could not be read as a mesh by trimesh: {err}") from err
    if not isinstance(mesh, trimesh.Trimesh):
        raise ValueError(f"mesh must be a path to a mesh file or a trimesh.Trimesh with faces, got "
                         f"{type(mesh).__name__}")
    if len(mesh.faces) == 0:
        raise ValueError("mesh has no faces (a point cloud or an empty file?); give a triangle mesh")
    if not np.isfinite(mesh.vertices).all():
        raise ValueError("mesh has NaN or infinite vertex coordinates; repair the mesh first")
    if not mesh.area > 0:
        raise ValueError("mesh has zero surface area (all faces degenerate); give a mesh with "
                         "non-degenerate triangles")
    points, _ = trimesh.sample.sample_surface(mesh, n_points, seed=int(rng.integers(2 ** 63 - 1)))
    return np.asarray(points, dtype=np.float32)
