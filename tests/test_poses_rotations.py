"""Rotations against scipy.spatial.transform.Rotation and brute-force references: conversions,
distances, the chordal mean, random rotations, symmetry groups and the input checks."""
import itertools
import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import minimize
from scipy.spatial.transform import Rotation

from anydiff.poses.rotations import (check_quaternions, check_rotation_matrices, chordal_mean,
                                     cyclic_group, dihedral_group, geodesic_distance,
                                     matrix_to_quaternion, matrix_to_sixd, quaternion_distance,
                                     quaternion_to_matrix, random_rotations, sixd_to_matrix)

FAST = settings(max_examples=25, deadline=None)
unit = st.floats(-1, 1, allow_nan=False, width=64)


@st.composite
def quaternions(draw):
    """Unit quaternions (w, x, y, z), as numpy float64."""
    q = draw(arrays(np.float64, (4,), elements=unit))
    assume(np.linalg.norm(q) > 0.1)
    return q / np.linalg.norm(q)


def wxyz_to_xyzw(q):
    return np.concatenate([q[..., 1:], q[..., :1]], axis=-1)


def scipy_rotations(n, seed):
    return Rotation.random(n, random_state=seed)


def T(x):
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def is_rotation(R, atol=1e-10):
    R = np.asarray(R)
    return (np.allclose(np.swapaxes(R, -1, -2) @ R, np.eye(3), atol=atol)
            and np.allclose(np.linalg.det(R), 1.0, atol=atol))


# -- conversions -----------------------------------------------------------------------------
@FAST
@given(quaternions())
def test_quaternion_to_matrix_matches_scipy(q):
    expected = Rotation.from_quat(wxyz_to_xyzw(q)).as_matrix()
    np.testing.assert_allclose(quaternion_to_matrix(T(q)).numpy(), expected, atol=1e-12)


@FAST
@given(quaternions())
def test_quaternion_matrix_round_trip_up_to_sign(q):
    back = matrix_to_quaternion(quaternion_to_matrix(T(q))).numpy()
    assert min(np.abs(back - q).max(), np.abs(back + q).max()) < 1e-10
    assert back[0] >= 0


@FAST
@given(quaternions())
def test_matrix_sixd_round_trip(q):
    R = quaternion_to_matrix(T(q))
    x = matrix_to_sixd(R)
    np.testing.assert_array_equal(x.numpy(), np.concatenate([R[:, 0].numpy(), R[:, 1].numpy()]))
    np.testing.assert_allclose(sixd_to_matrix(x).numpy(), R.numpy(), atol=1e-14)


@FAST
@given(arrays(np.float64, (6,), elements=st.floats(-5, 5, allow_nan=False, width=64)))
def test_sixd_to_matrix_of_any_nondegenerate_vector(x):
    a, b = x[:3], x[3:]
    assume(np.linalg.norm(a) > 0.1 and np.linalg.norm(np.cross(a, b)) > 0.1 * np.linalg.norm(b) + 1e-3)
    R = sixd_to_matrix(T(x)).numpy()
    assert is_rotation(R)
    np.testing.assert_allclose(R[:, 0], a / np.linalg.norm(a), atol=1e-12)
    assert np.dot(R[:, 1], b) > 0  # the second column is b's component orthogonal to a


def test_matrix_to_quaternion_batched_and_canonical():
    rot = scipy_rotations(60, 0)
    q = matrix_to_quaternion(T(rot.as_matrix()).reshape(3, 20, 3, 3)).reshape(60, 4).numpy()
    ref = rot.as_quat()[:, [3, 0, 1, 2]]
    ref = np.where(ref[:, :1] < 0, -ref, ref)
    np.testing.assert_allclose(q, ref, atol=1e-12)


def test_conversions_differentiable_and_float32():
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(sixd_to_matrix, (x,))
    q = torch.randn(5, 4, requires_grad=True)
    R = quaternion_to_matrix(q)
    assert R.dtype == torch.float32
    R.sum().backward()
    assert torch.isfinite(q.grad).all()


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="q must have shape"):
        quaternion_to_matrix(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="x must have shape"):
        sixd_to_matrix(torch.zeros(5))
    with pytest.raises(ValueError, match="dim="):
        chordal_mean(torch.eye(3).expand(4, 3, 3), dim=1)


# -- distances -------------------------------------------------------------------------------
def test_geodesic_distance_matches_scipy():
    a, b = scipy_rotations(200, 1), scipy_rotations(200, 2)
    expected = (a.inv() * b).magnitude()
    got = geodesic_distance(T(a.as_matrix()), T(b.as_matrix())).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-7)
    assert got.min() >= 0 and got.max() <= np.pi


def test_geodesic_distance_small_and_half_turn():
    angles = np.array([0.0, 1e-9, 1e-5, 0.3, np.pi - 1e-3, np.pi])
    R = T(Rotation.from_rotvec(angles[:, None] * np.array([[0.0, 0.6, 0.8]])).as_matrix())
    np.testing.assert_allclose(geodesic_distance(torch.eye(3, dtype=torch.float64), R).numpy(),
                               angles, rtol=1e-7, atol=1e-7)


@FAST
@given(quaternions(), quaternions())
def test_quaternion_distance_is_geodesic_and_sign_invariant(q1, q2):
    expected = (Rotation.from_quat(wxyz_to_xyzw(q1)).inv() * Rotation.from_quat(wxyz_to_xyzw(q2))).magnitude()
    assert abs(float(quaternion_distance(T(q1), T(q2))) - expected) < 1e-9
    assert abs(float(quaternion_distance(T(q1), T(-q2))) - expected) < 1e-9
    assert float(quaternion_distance(T(q1), T(-q1))) < 1e-12


# -- chordal mean ----------------------------------------------------------------------------
def chordal_cost(M, R, w):
    return sum(wi * np.sum((Ri - M) ** 2) for Ri, wi in zip(R, w))


def brute_force_chordal_mean(R, w):
    """Minimize the chordal cost over rotation vectors from several starts (scipy.optimize)."""
    best = None
    for start in [np.zeros(3), *Rotation.from_matrix(R[:3]).as_rotvec()]:
        res = minimize(lambda v: chordal_cost(Rotation.from_rotvec(v).as_matrix(), R, w), start,
                       method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 4000})
        if best is None or res.fun < best.fun:
            best = res
    return Rotation.from_rotvec(best.x).as_matrix()


def test_chordal_mean_of_one_rotation_is_itself():
    R = T(scipy_rotations(1, 3).as_matrix())
    np.testing.assert_allclose(chordal_mean(R).numpy(), R[0].numpy(), atol=1e-12)


def test_chordal_mean_of_symmetric_pair_is_the_center():
    R0 = Rotation.random(random_state=4)
    w = Rotation.from_rotvec([0.4, -0.2, 0.7])
    pair = T(np.stack([(R0 * w).as_matrix(), (R0 * w.inv()).as_matrix()]))
    np.testing.assert_allclose(chordal_mean(pair).numpy(), R0.as_matrix(), atol=1e-12)


@pytest.mark.parametrize("seed", [5, 6])
def test_chordal_mean_minimizes_the_chordal_cost(seed):
    rng = np.random.default_rng(seed)
    center = Rotation.random(random_state=seed)
    R = (center * Rotation.from_rotvec(0.6 * rng.standard_normal((7, 3)))).as_matrix()
    w = rng.uniform(0.2, 2.0, 7)
    ours = chordal_mean(T(R), weights=T(w)).numpy()
    ref = brute_force_chordal_mean(R, w / w.sum())
    assert is_rotation(ours)
    assert chordal_cost(ours, R, w) <= chordal_cost(ref, R, w) + 1e-9
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_chordal_mean_along_a_dim_and_with_full_weights():
    R = T(scipy_rotations(12, 7).as_matrix()).reshape(3, 4, 3, 3)
    means = chordal_mean(R, dim=1)
    assert means.shape == (3, 3, 3)
    for i in range(3):
        np.testing.assert_allclose(means[i].numpy(), chordal_mean(R[i]).numpy(), atol=1e-12)
    w = torch.rand(3, 4, dtype=torch.float64)
    weighted = chordal_mean(R, dim=1, weights=w)
    np.testing.assert_allclose(weighted[2].numpy(), chordal_mean(R[2], weights=w[2]).numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="weights must have shape"):
        chordal_mean(R, dim=1, weights=torch.ones(5))


# -- random rotations and groups -------------------------------------------------------------
def test_random_rotations_reproducible_and_uniform():
    a = random_rotations(4000, generator=torch.Generator().manual_seed(0))
    b = random_rotations(4000, generator=torch.Generator().manual_seed(0))
    assert a.shape == (4000, 3, 3) and a.dtype == torch.float64
    assert torch.equal(a, b) and is_rotation(a.numpy())
    # Haar: E[R] = 0 and the angle has density (1 - cos t) / pi, so E[cos t] = -1/2
    assert float(a.mean(0).abs().max()) < 0.05
    cos = (torch.diagonal(a, dim1=-2, dim2=-1).sum(-1) - 1) / 2
    assert abs(float(cos.mean()) + 0.5) < 0.03


def group_closed(G):
    G = G.numpy()
    for A, B in itertools.product(G, G):
        if np.min(np.abs(G - A @ B).max(axis=(1, 2))) > 1e-12:
            return False
    return True


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_cyclic_group(n):
    for axis in ["x", "z", [1.0, 2.0, 2.0]]:
        G = cyclic_group(n, axis)
        assert G.shape == (n, 3, 3) and is_rotation(G.numpy())
        assert group_closed(G)
        assert len({tuple(np.round(g.numpy(), 8).ravel()) for g in G}) == n
    a = np.array([1.0, 2.0, 2.0]) / 3
    np.testing.assert_allclose(cyclic_group(n, [1.0, 2.0, 2.0]).numpy() @ a, np.tile(a, (n, 1)), atol=1e-14)
    np.testing.assert_allclose(cyclic_group(n)[0].numpy(), np.eye(3), atol=1e-15)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_dihedral_group(n):
    G = dihedral_group(n)
    assert G.shape == (2 * n, 3, 3) and is_rotation(G.numpy())
    assert group_closed(G)
    assert len({tuple(np.round(g.numpy(), 8).ravel()) for g in G}) == 2 * n


def test_group_arguments():
    for bad in [0, -1, 2.0, True]:
        with pytest.raises(ValueError, match="n="):
            cyclic_group(bad)
    with pytest.raises(ValueError, match="axis="):
        cyclic_group(3, "w")
    with pytest.raises(ValueError, match="axis="):
        cyclic_group(3, [0.0, 0.0, 0.0])


# -- checks of user data ---------------------------------------------------------------------
def test_check_quaternions_normalizes_with_a_warning():
    q = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.1, 0.0, 0.0]])
    with pytest.warns(UserWarning, match=r"rot_q.*1\.1"):
        out = check_quaternions(q, "rot_q")
    np.testing.assert_allclose(out, [[1, 0, 0, 0], [0, 1, 0, 0]])
    assert out.dtype == np.float64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = check_quaternions(q[:1] * (1 + 1e-5), "rot_q")  # within tol: no warning
    np.testing.assert_allclose(np.linalg.norm(quiet, axis=-1), 1.0)


def test_check_quaternions_errors():
    with pytest.raises(ValueError, match="rot_q has a zero quaternion at row 1"):
        check_quaternions(np.array([[1.0, 0, 0, 0], [0, 0, 0, 0]]), "rot_q")
    with pytest.raises(ValueError, match="rot_q contains NaN"):
        check_quaternions(np.array([[1.0, np.nan, 0, 0]]), "rot_q")
    with pytest.raises(ValueError, match=r"rot_q must have shape \(\.\.\., 4\)"):
        check_quaternions(np.ones((2, 3)), "rot_q")


def test_check_rotation_matrices():
    R = scipy_rotations(5, 8).as_matrix()
    noisy = R + 1e-6 * np.random.default_rng(0).standard_normal(R.shape)
    out = check_rotation_matrices(torch.as_tensor(noisy), "rot")
    assert is_rotation(out, atol=1e-13)
    np.testing.assert_allclose(out, R, atol=1e-5)
    reflection = R.copy()
    reflection[3] = -reflection[3]
    with pytest.raises(ValueError, match=r"rot is not a rotation at row 3.*reflection"):
        check_rotation_matrices(reflection, "rot")
    skewed = R.copy()
    skewed[2, 0, 0] += 0.1
    with pytest.raises(ValueError, match=r"rot is not a rotation at row 2.*not orthonormal"):
        check_rotation_matrices(skewed, "rot")
    nan = R.copy()
    nan[4, 1, 2] = np.nan
    with pytest.raises(ValueError, match="rot contains NaN or infinite values at row 4"):
        check_rotation_matrices(nan, "rot")
    with pytest.raises(ValueError, match="rot must have shape"):
        check_rotation_matrices(np.ones((3, 4)), "rot")
