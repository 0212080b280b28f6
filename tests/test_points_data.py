"""Procedural shapes and mesh sampling against the geometry they claim: surfaces, area-uniformity,
rotations, labels and argument checks."""
import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import pdist

import anydiff as ad
from anydiff.points import SHAPE_CLASSES, make_shapes, sample_surface
from anydiff.points.shapes import _SHAPES, _frustum, _random_rotation, _sample_parts, _sample_shape

FAST = settings(max_examples=15, deadline=None)
ONE = (1.0, 1.0, 1.0)


def shape(name, n, seed, params, scale=ONE):
    """One shape with fixed proportions and scale, float64 (n, 3)."""
    return _sample_shape(name, n, np.random.default_rng(seed), params=params, scale=scale)


def ks_p(values, cdf):
    return stats.kstest(values, cdf).pvalue


# -- common contract -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", SHAPE_CLASSES)
def test_every_class_shape_dtype_determinism_and_centring(name):
    X = make_shapes(3, n_points=400, classes=[name], random_state=5)
    assert isinstance(X, np.ndarray) and X.shape == (3, 400, 3) and X.dtype == np.float32
    assert np.isfinite(X).all()
    np.testing.assert_array_equal(X, make_shapes(3, n_points=400, classes=[name], random_state=5))
    assert not np.array_equal(X, make_shapes(3, n_points=400, classes=[name], random_state=6))
    # bounding box centred, size of order 1 (400 points reach close to the true box)
    lo, hi = X.min(axis=1), X.max(axis=1)
    np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=0.05)
    assert np.all((hi - lo).max(axis=1) > 0.3) and np.all((hi - lo).max(axis=1) < 2.0)
    # the clouds of one class differ from each other (random proportions)
    assert not np.allclose(np.sort(X[0], axis=0), np.sort(X[1], axis=0), atol=1e-3)


def test_generators_and_random_state_kinds():
    X = make_shapes(4, n_points=50, random_state=3)
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(make_shapes(4, n_points=50, random_state=rng), X)
    assert not np.array_equal(make_shapes(4, n_points=50, random_state=rng), X)  # advanced in place
    a = make_shapes(2, n_points=50, random_state=np.random.RandomState(0))
    np.testing.assert_array_equal(a, make_shapes(2, n_points=50, random_state=np.random.RandomState(0)))


def test_lazy_access_from_the_package():
    X = ad.points.make_shapes(2, n_points=16, random_state=0)
    assert X.shape == (2, 16, 3)
    assert ad.points.metrics.chamfer_distance(X[0], X[0]) == pytest.approx(0.0, abs=1e-12)
    assert "points" in dir(ad)


# -- points on the intended surface -----------------------------------------------------------
def test_sphere_on_its_radius_and_archimedes_uniform():
    x = shape("sphere", 20000, 0, {"radius": 0.7})
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 0.7, rtol=1e-12)
    # Archimedes: on a sphere of radius r the height is uniform on [-r, r]
    assert ks_p(x[:, 2] / 0.7, stats.uniform(-1, 2).cdf) > 1e-3
    assert ks_p(np.arctan2(x[:, 1], x[:, 0]), stats.uniform(-np.pi, 2 * np.pi).cdf) > 1e-3


@FAST
@given(st.tuples(*[st.floats(0.6, 1.4)] * 3), st.floats(0.3, 0.8))
def test_anisotropic_sphere_is_the_ellipsoid(scale, radius):
    x = shape("sphere", 300, 1, {"radius": radius}, scale)
    np.testing.assert_allclose((((x / (radius * np.asarray(scale))) ** 2).sum(1)), 1.0, rtol=1e-9)


def test_cylinder_side_and_caps():
    R, h = 0.3, 0.8
    x = shape("cylinder", 30000, 2, {"radius": R, "height": h})
    rho, z = np.hypot(x[:, 0], x[:, 1]), x[:, 2]
    side = np.abs(rho - R) < 1e-9
    cap = np.abs(np.abs(z) - h / 2) < 1e-12
    assert np.all(side | cap) and np.all(rho <= R + 1e-9) and np.all(np.abs(z) <= h / 2 + 1e-12)
    side &= ~cap
    # area weighting: side 2 pi R h against two caps 2 pi R^2
    share = (2 * np.pi * R * h) / (2 * np.pi * R * h + 2 * np.pi * R ** 2)
    assert stats.binomtest(int(side.sum()), len(x), share).pvalue > 1e-3
    # uniform height on the side; radius^2 uniform on a cap (area element r dr)
    assert ks_p(z[side], stats.uniform(-h / 2, h).cdf) > 1e-3
    assert ks_p((rho[cap] / R) ** 2, stats.uniform(0, 1).cdf) > 1e-3
    top = cap & (z > 0)
    assert stats.binomtest(int(top.sum()), int(cap.sum()), 0.5).pvalue > 1e-3


def test_cone_side_follows_the_sqrt_law():
    R, h = 0.4, 1.0
    x = shape("cone", 30000, 3, {"radius": R, "height": h})
    rho, z = np.hypot(x[:, 0], x[:, 1]), x[:, 2]
    base = np.abs(z + h / 2) < 1e-12
    np.testing.assert_allclose(rho[~base], R * (h / 2 - z[~base]) / h, atol=1e-9)  # on the cone
    assert np.all(rho[base] <= R + 1e-12)
    slant = math.hypot(R, h)
    assert stats.binomtest(int((~base).sum()), len(x), slant / (slant + R)).pvalue > 1e-3
    # uniform on the side: the radius has density 2 r / R^2, so (r / R)^2 is uniform
    assert ks_p((rho[~base] / R) ** 2, stats.uniform(0, 1).cdf) > 1e-3


def test_frustum_between_two_radii():
    r0, r1, h = 0.5, 0.2, 0.4
    x = _sample_parts([_frustum(r0, r1, h)], 20000, np.random.default_rng(4), ONE)
    rho, z = np.hypot(x[:, 0], x[:, 1]), x[:, 2]
    np.testing.assert_allclose(rho, r0 + (z + h / 2) / h * (r1 - r0), atol=1e-9)
    assert ks_p((rho ** 2 - r1 ** 2) / (r0 ** 2 - r1 ** 2), stats.uniform(0, 1).cdf) > 1e-3


@FAST
@given(st.floats(0.3, 0.6), st.floats(0.1, 0.9))
def test_torus_equation(R, ratio):
    x = shape("torus", 400, 5, {"R": R, "ratio": ratio})
    r = R * ratio
    np.testing.assert_allclose((np.hypot(x[:, 0], x[:, 1]) - R) ** 2 + x[:, 2] ** 2, r ** 2, rtol=1e-9)


def test_torus_uniform_in_its_area_element():
    R, r = 0.5, 0.2
    x = shape("torus", 30000, 6, {"R": R, "ratio": r / R})
    theta = np.mod(np.arctan2(x[:, 2], np.hypot(x[:, 0], x[:, 1]) - R), 2 * np.pi)
    # area element r (R + r cos theta) dtheta dphi: CDF of theta is (R theta + r sin theta) / (2 pi R)
    assert ks_p(theta, lambda t: (R * t + r * np.sin(t)) / (2 * np.pi * R)) > 1e-3
    assert ks_p(np.arctan2(x[:, 1], x[:, 0]), stats.uniform(-np.pi, 2 * np.pi).cdf) > 1e-3
    # a uniform theta (no rejection) is rejected by the same test
    assert ks_p(np.random.default_rng(0).uniform(0, 2 * np.pi, 30000),
                lambda t: (R * t + r * np.sin(t)) / (2 * np.pi * R)) < 1e-3


def test_capsule_hemispheres_and_side():
    r, L = 0.25, 0.6
    x = shape("capsule", 30000, 7, {"radius": r, "length": L})
    z_axis = np.clip(x[:, 2], -L / 2, L / 2)  # nearest point of the axis segment
    axis_point = np.c_[np.zeros_like(z_axis), np.zeros_like(z_axis), z_axis]
    np.testing.assert_allclose(np.linalg.norm(x - axis_point, axis=1), r, rtol=1e-9)
    cap = np.abs(x[:, 2]) > L / 2
    share = 4 * np.pi * r ** 2 / (4 * np.pi * r ** 2 + 2 * np.pi * r * L)  # two hemispheres: one sphere
    assert stats.binomtest(int(cap.sum()), len(x), share).pvalue > 1e-3
    # Archimedes on each hemisphere: the height above the cylinder end is uniform on [0, r]
    assert ks_p(np.abs(x[cap, 2]) - L / 2, stats.uniform(0, r).cdf) > 1e-3


def test_box_faces_weighted_by_area_after_anisotropic_scale():
    # a unit cube scaled by (1, 2, 3) is the box 1 x 2 x 3: faces of area 6 (x), 3 (y), 2 (z)
    x = shape("box", 30000, 8, {"sx": 1.0, "sy": 1.0, "sz": 1.0}, (1.0, 2.0, 3.0))
    half = np.array([0.5, 1.0, 1.5])
    on = np.abs(np.abs(x) - half) < 1e-9
    assert np.all(on.sum(1) >= 1) and np.all(np.abs(x) <= half + 1e-9)
    counts = on.sum(0)
    assert stats.chisquare(counts, counts.sum() * np.array([6, 3, 2]) / 11).pvalue > 1e-3
    x_face = np.abs(np.abs(x[:, 0]) - 0.5) < 1e-9
    assert ks_p(x[x_face, 2], stats.uniform(-1.5, 3).cdf) > 1e-3


def test_anisotropic_ellipsoid_matches_a_mesh_reference():
    trimesh = pytest.importorskip("trimesh")
    scale = (0.5, 1.0, 2.0)
    ours = shape("sphere", 20000, 9, {"radius": 1.0}, scale)
    mesh = trimesh.creation.icosphere(subdivisions=5)
    mesh.apply_scale(scale)
    ref = sample_surface(mesh, 20000, random_state=0)
    for axis in range(3):
        assert stats.ks_2samp(ours[:, axis], ref[:, axis]).pvalue > 1e-3
    # without the area correction (points of the unit sphere stretched) the heights are uniform
    naive = shape("sphere", 20000, 9, {"radius": 1.0}) * scale
    assert stats.ks_2samp(naive[:, 2], ref[:, 2]).pvalue < 1e-3


@pytest.mark.parametrize("name", ["table", "chair", "lamp", "airplane"])
def test_composites_made_of_their_parts(name):
    x = make_shapes(1, n_points=3000, classes=[name], anisotropy=0.0, random_state=1)[0]
    ext = x.max(0) - x.min(0)
    if name in ("table", "chair", "lamp"):  # upright: z spans legs/pole; more points low than a box
        assert ext[2] > 0.3
    if name == "airplane":  # span (y) and length (x) much larger than the height
        assert ext[0] > 2 * ext[2] and ext[1] > 2 * ext[2]
    if name == "table":  # top slab is the widest part: the top 10 % of heights are the widest
        z = x[:, 2]
        top = z >= np.quantile(z, 0.9)
        assert np.ptp(x[top, 0]) > 0.8 * ext[0]


def parts_in_place(name, seed):
    """Proportions and points (20,000) of one shape, in its building frame (before centring)."""
    rng = np.random.default_rng(seed)
    params = _SHAPES[name][0](rng)
    parts = _SHAPES[name][1](params)
    centre = (np.min([q.lo for q in parts], 0) + np.max([q.hi for q in parts], 0)) / 2
    return params, _sample_parts(parts, 20000, rng, ONE) + centre


@pytest.mark.parametrize("seed", [0, 1])
def test_hidden_faces_are_left_out(seed):
    p, x = parts_in_place("airplane", seed)  # wings, tailplane and fin stop at the fuselage
    r, L = p["body_radius"], p["body_length"]
    inside = (np.abs(x[:, 0]) < L / 2) & (x[:, 1] ** 2 + x[:, 2] ** 2 < r ** 2 * (1 - 1e-9))
    assert inside.mean() < 0.002
    assert np.sum(np.abs(x[:, 1]) > p["wing_span"] / 2 + 1e-9) == 0
    p, x = parts_in_place("table", seed)  # no leg top inside the top slab
    h, top = p["height"], p["top"]
    in_slab = (x[:, 2] > h - top + 1e-9) & (x[:, 2] < h - 1e-9) & (np.abs(x[:, 0]) < p["width"] / 2 - 1e-9) \
        & (np.abs(x[:, 1]) < p["depth"] / 2 - 1e-9)
    assert in_slab.sum() == 0


# -- rotations ---------------------------------------------------------------------------------
def test_rotate_preserves_pairwise_distances():
    a = make_shapes(1, n_points=300, classes=["chair"], random_state=11)[0]
    b = make_shapes(1, n_points=300, classes=["chair"], rotate=True, random_state=11)[0]
    np.testing.assert_allclose(pdist(b), pdist(a), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), np.linalg.norm(a, axis=1), atol=1e-5)
    assert not np.allclose(a, b, atol=1e-2)


def test_random_rotation_is_uniform_on_so3():
    rng = np.random.default_rng(12)
    Rs = np.stack([_random_rotation(rng) for _ in range(3000)])
    np.testing.assert_allclose(Rs @ Rs.transpose(0, 2, 1), np.broadcast_to(np.eye(3), Rs.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(Rs), 1.0, atol=1e-12)
    # the image of a fixed vector is uniform on the sphere (Archimedes), and so is every column
    for col in range(3):
        assert ks_p(Rs[:, 2, col], stats.uniform(-1, 2).cdf) > 1e-3
    # Haar measure: the rotation angle has density (1 - cos w) / pi on [0, pi]
    w = np.arccos(np.clip((np.trace(Rs, axis1=1, axis2=2) - 1) / 2, -1, 1))
    assert ks_p(w, lambda t: (t - np.sin(t)) / np.pi) > 1e-3


# -- labels --------------------------------------------------------------------------------------
def test_labels_balanced_and_aligned_with_the_shapes():
    X, y = make_shapes(23, n_points=200, classes=["sphere", "box", "torus"], anisotropy=0.0,
                       random_state=2, return_labels=True)
    assert y.shape == (23,) and y.dtype.kind == "U"
    counts = np.array([np.sum(y == c) for c in ("sphere", "box", "torus")])
    assert counts.sum() == 23 and counts.max() - counts.min() <= 1
    norms = np.linalg.norm(X, axis=2)
    is_round = norms.std(axis=1) < 1e-5 * norms.mean(axis=1)  # only spheres have constant norm
    np.testing.assert_array_equal(is_round, y == "sphere")
    X_all, y_all = make_shapes(30, n_points=8, random_state=0, return_labels=True)
    assert sorted(set(y_all)) == sorted(SHAPE_CLASSES) and all(np.sum(y_all == c) == 3 for c in SHAPE_CLASSES)


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    ({"n_shapes": 0}, "n_shapes"), ({"n_shapes": -2}, "n_shapes"), ({"n_shapes": 1.5}, "n_shapes"),
    ({"n_shapes": True}, "n_shapes"), ({"n_points": 0}, "n_points"), ({"n_points": "8"}, "n_points"),
    ({"classes": ["sphere", "blob"]}, "blob.*airplane"), ({"classes": []}, "classes"),
    ({"classes": ["box", "box"]}, "distinct"), ({"anisotropy": 1.0}, "anisotropy"),
    ({"anisotropy": -0.1}, "anisotropy"), ({"random_state": -1}, "random_state"),
])
def test_make_shapes_bad_input(kwargs, match):
    args = {"n_shapes": 2, "n_points": 8} | kwargs
    with pytest.raises(ValueError, match=match):
        make_shapes(args.pop("n_shapes"), **args)


# -- sample_surface -------------------------------------------------------------------------------
TETRA_OBJ = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n"


def test_sample_surface_on_a_hand_written_tetrahedron(tmp_path):
    pytest.importorskip("trimesh")
    path = tmp_path / "tetra.obj"
    path.write_text(TETRA_OBJ)
    x = sample_surface(path, 6000, random_state=0)
    assert x.shape == (6000, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x, sample_surface(str(path), 6000, random_state=0))
    assert not np.array_equal(x, sample_surface(path, 6000, random_state=1))
    x = x.astype(np.float64)
    assert np.all(x >= -1e-6) and np.all(x.sum(1) <= 1 + 1e-6)  # inside the closed tetrahedron
    slanted = np.abs(x.sum(1) - 1) < 1e-6
    on_face = slanted | (x.min(1) < 1e-6)
    assert on_face.all()
    # areas: three right triangles of 1/2 and the slanted face sqrt(3)/2
    share = (math.sqrt(3) / 2) / (1.5 + math.sqrt(3) / 2)
    assert stats.binomtest(int(slanted.sum()), len(x), share).pvalue > 1e-3


def test_sample_surface_stl_cube_and_mesh_object(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    cube = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    for suffix in (".stl", ".obj"):
        path = tmp_path / f"cube{suffix}"
        cube.export(path)
        x = sample_surface(path, 3000, random_state=2).astype(np.float64)
        np.testing.assert_allclose(np.abs(x).max(1), 0.5, atol=1e-6)  # on a face of the cube
        counts = (np.abs(np.abs(x) - 0.5) < 1e-6).sum(0)
        assert stats.chisquare(counts).pvalue > 1e-3  # all three pairs of faces equally often
    x = sample_surface(cube, 500, random_state=np.random.default_rng(0))
    np.testing.assert_allclose(np.abs(x).max(1), 0.5, atol=1e-6)


def test_sample_surface_errors(tmp_path, monkeypatch):
    trimesh = pytest.importorskip("trimesh")
    with pytest.raises(ValueError, match="mesh=.*not an existing file"):
        sample_surface(tmp_path / "missing.obj", 10)
    points_only = tmp_path / "points.obj"
    points_only.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(ValueError, match="mesh has no faces"):
        sample_surface(points_only, 10)
    flat = trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, 0], [2, 0, 0]], faces=[[0, 1, 2]], process=False)
    with pytest.raises(ValueError, match="zero surface area"):
        sample_surface(flat, 10)
    with pytest.raises(ValueError, match="mesh must be"):
        sample_surface(np.zeros((4, 3)), 10)
    with pytest.raises(ValueError, match="n_points"):
        sample_surface(trimesh.creation.box(), 0)
    monkeypatch.setitem(sys.modules, "trimesh", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"anydiff\[points\]"):
        sample_surface(points_only, 10)
